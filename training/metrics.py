"""Classification metrics from scikit-learn (not hand-written), threshold tuning and calibration."""

from __future__ import annotations

import math

import numpy as np
from sklearn.calibration import calibration_curve
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    confusion_matrix,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
    roc_curve,
)


def binary_metrics(y_true, p_fake, threshold: float = 0.5) -> dict:
    """Accuracy, precision, recall, F1 at ``threshold``; ROC-AUC and average precision over all
    thresholds (None when only one class is present); the confusion matrix [[TN, FP], [FN, TP]]."""
    y = np.asarray(y_true).astype(int)
    p = np.asarray(p_fake, dtype=np.float64)
    pred = (p >= threshold).astype(int)
    both = len(np.unique(y)) == 2
    return {
        "n": int(len(y)),
        "positives": int(y.sum()),
        "threshold": float(threshold),
        "accuracy": float(accuracy_score(y, pred)),
        "precision": float(precision_score(y, pred, zero_division=0)),
        "recall": float(recall_score(y, pred, zero_division=0)),
        "f1": float(f1_score(y, pred, zero_division=0)),
        "roc_auc": float(roc_auc_score(y, p)) if both else None,
        "average_precision": float(average_precision_score(y, p)) if both else None,
        "confusion_matrix": confusion_matrix(y, pred, labels=[0, 1]).tolist(),
    }


def tune_threshold(y_true, p_fake) -> float:
    """The threshold with the best F1 on a validation set (ties: the one closest to 0.5)."""
    y = np.asarray(y_true).astype(int)
    p = np.asarray(p_fake, dtype=np.float64)
    candidates = np.unique(np.concatenate([p, [0.5]]))
    scores = [(f1_score(y, (p >= t).astype(int), zero_division=0), -abs(t - 0.5), t) for t in candidates]
    return float(max(scores)[2])


def calibration(y_true, p_fake, bins: int = 10) -> dict:
    """Reliability curve (sklearn) and expected calibration error over equal-width bins."""
    y = np.asarray(y_true).astype(int)
    p = np.clip(np.asarray(p_fake, dtype=np.float64), 0, 1)
    frac_pos, mean_pred = calibration_curve(y, p, n_bins=bins, strategy="uniform")
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    ece = sum(abs(y[which == b].mean() - p[which == b].mean()) * (which == b).mean()
              for b in range(bins) if (which == b).any())
    return {"ece": float(ece), "mean_predicted": mean_pred.tolist(), "fraction_positive": frac_pos.tolist()}


def roc_points(y_true, p_fake, most: int = 200) -> dict:
    fpr, tpr, _ = roc_curve(np.asarray(y_true).astype(int), np.asarray(p_fake, dtype=np.float64))
    keep = np.unique(np.linspace(0, len(fpr) - 1, min(most, len(fpr))).astype(int))
    return {"fpr": fpr[keep].tolist(), "tpr": tpr[keep].tolist()}


def wilson_interval(hits: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a proportion ``hits / n`` (95% by default): honest at small ``n``
    and near 0 or 1, where the normal approximation is not. ``(0, 1)`` when ``n`` is 0."""
    if n <= 0:
        return 0.0, 1.0
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (0.0 if hits == 0 else max(0.0, centre - half)), (1.0 if hits == n else min(1.0, centre + half))


def mcnemar_exact(only_first: int, only_second: int) -> float:
    """The two-sided exact McNemar p-value of two detectors judged on the same items: ``only_first`` items
    only the first flags, ``only_second`` only the second (items both or neither flag carry no evidence).
    Under "they flag alike" each such item is either's with probability 1/2 (a binomial test); 1.0 when
    there are none."""
    n = only_first + only_second
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, k) for k in range(min(only_first, only_second) + 1)) / 2**n
    return min(1.0, 2 * tail)
