"""Honest probabilities: temperature scaling (Guo et al. 2017) fitted on validation faces, and the
decision threshold chosen on the same faces, both written into the model folder's ``config.json``
so that every loader (PyTorch, ONNX float, int8) gives the calibrated P(fake).

Why temperature scaling: one parameter cannot overfit a few hundred validation faces and keeps the
ranking (ROC-AUC) exactly as it was; isotonic regression can lower ECE further on the fitting set
but makes ties and steps of its own and does not travel into the ONNX builds as a single number.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from forensics.core import write_atomic
from training.metrics import binary_metrics, calibration


@torch.no_grad()
def collect_logits(model: torch.nn.Module, dataset: Dataset, collate, batch_size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """(logits, label indices) of a dataset, in eval mode."""
    model.eval()
    logits, labels = [], []
    for images, y in DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate):
        logits.append(model(images).float().numpy())
        labels.append(y.numpy())
    return np.concatenate(logits), np.concatenate(labels)


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature in [0.05, 100] that minimises the negative log-likelihood of the labels.

    The likelihood is convex in the inverse temperature, so a golden-section search over it finds
    the minimum without a step size to tune; on separable faces (a few, or an over-confident model)
    the minimum lies at the bound instead of sending a gradient method to overflow."""
    z = np.asarray(logits, np.float64)
    y = np.asarray(labels, np.int64)

    margins = z - z[np.arange(len(y)), y][:, None]  # each class's logit minus the true class's
    margins[np.arange(len(y)), y] = -np.inf

    def nll(beta: float) -> float:
        # log(1 + sum_j exp(beta * margin_j)), kept exact for confident faces (log1p of a tiny sum)
        scaled = margins * beta
        top = np.maximum(scaled.max(axis=1), 0.0)
        rest = np.exp(scaled - top[:, None]).sum(axis=1)
        return float(np.where(top > 0, top + np.log(np.exp(-top) + rest), np.log1p(rest)).mean())

    low, high = 1.0 / 100.0, 1.0 / 0.05
    ratio = (np.sqrt(5.0) - 1.0) / 2.0
    a, b = high - ratio * (high - low), low + ratio * (high - low)
    fa, fb = nll(a), nll(b)
    for _ in range(80):  # the bracket shrinks by 0.618 a step: far below 1e-6 of the inverse temperature
        if fa <= fb:
            high, b, fb = b, a, fa
            a = high - ratio * (high - low)
            fa = nll(a)
        else:
            low, a, fa = a, b, fb
            b = low + ratio * (high - low)
            fb = nll(b)
    return float(np.clip(1.0 / ((low + high) / 2.0), 0.05, 100.0))


def fake_probability(logits: np.ndarray, fake_indices: Sequence[int], temperature: float = 1.0) -> np.ndarray:
    probs = torch.softmax(torch.from_numpy(np.asarray(logits, np.float32)) / temperature, dim=-1).numpy()
    return probs[:, list(fake_indices)].sum(axis=1)


def balanced_threshold(is_fake: np.ndarray, p_fake: np.ndarray) -> float:
    """The threshold with the best balanced accuracy (mean of the two recalls; ties: nearest 0.5):
    unlike F1 it does not move with the share of fakes in the validation set."""
    y = np.asarray(is_fake).astype(bool)
    p = np.asarray(p_fake, np.float64)
    if y.all() or not y.any():
        return 0.5
    best = (-1.0, 0.0, 0.5)
    for t in np.unique(np.concatenate([p, [0.5]])):
        pred = p >= t
        score = 0.5 * (pred[y].mean() + (~pred[~y]).mean())
        best = max(best, (round(float(score), 6), -abs(float(t) - 0.5), float(t)))
    return best[2]


def calibrate_folder(model_dir: str | Path, logits: np.ndarray, labels: np.ndarray,
                     fake_indices: Sequence[int]) -> dict:
    """Fit the temperature and the threshold on validation ``logits`` and write both into
    ``model_dir/config.json``; returns the record (ECE, reliability curves and accuracy before and
    after) that the training record and the model card keep."""
    is_fake = np.isin(labels, list(fake_indices)).astype(int)
    before = fake_probability(logits, fake_indices)
    temperature = fit_temperature(logits, labels)
    after = fake_probability(logits, fake_indices, temperature)
    threshold = balanced_threshold(is_fake, after)
    path = Path(model_dir) / "config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    block = config.setdefault("forensics", {})
    block["temperature"], block["threshold"] = round(temperature, 6), round(threshold, 6)
    write_atomic(path, config)
    return {
        "method": "temperature scaling",
        "faces": int(len(labels)),
        "temperature": temperature,
        "threshold": threshold,
        "before": {**calibration(is_fake, before), "accuracy_at_0.5": binary_metrics(is_fake, before, 0.5)["accuracy"]},
        "after": {**calibration(is_fake, after),
                  "accuracy_at_threshold": binary_metrics(is_fake, after, threshold)["accuracy"]},
    }
