"""Honest probabilities: temperature scaling (Guo et al. 2017) fitted on validation faces, and the
decision threshold chosen on the same faces, both written into the model folder's ``config.json``
so that every loader (PyTorch, ONNX float, int8) gives the calibrated P(fake).

Why temperature scaling: one parameter cannot overfit a few hundred validation faces and keeps the
ranking (ROC-AUC) exactly as it was; isotonic regression can lower ECE further on the fitting set
but makes ties and steps of its own and does not travel into the ONNX builds as a single number.
Temperature scaling minimises the likelihood, not the calibration error, and cannot move a model
whose probabilities are off by a constant on the logit scale (too many or too few fakes predicted
everywhere): binary models are also offered Platt scaling (a temperature and a bias on the fake
logit, still monotone, still two numbers every build applies), and the method with the lower
cross-validated ECE on the validation faces is the one fitted.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from forensics.core import write_atomic
from forensics.detectors.base import calibrated_softmax
from training.metrics import binary_metrics, calibration


@torch.no_grad()
def collect_logits(model: torch.nn.Module, dataset: Dataset, collate, batch_size: int = 32,
                   desc: str = "calibration faces") -> tuple[np.ndarray, np.ndarray]:
    """(logits, label indices) of a dataset, in eval mode (a progress bar named ``desc``)."""
    model.eval()
    logits, labels = [], []
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate)
    for images, y in tqdm(loader, desc=desc, unit="batch", leave=False):
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


def fit_platt(logits: np.ndarray, labels: np.ndarray, fake_indices: Sequence[int]) -> tuple[float, list[float]] | None:
    """Platt scaling of a binary model: P(fake) = sigmoid(a * (z_fake - z_real) + c) by maximum
    likelihood, returned as a temperature 1/a and a logit bias with c on the fake class (the
    detector's softmax(z / T + bias) is then that sigmoid). None where it does not apply: not two
    classes, one class only, or a margin that does not rank fakes higher (a <= 0)."""
    from sklearn.linear_model import LogisticRegression

    z = np.asarray(logits, np.float64)
    y = np.isin(labels, list(fake_indices)).astype(int)
    if z.ndim != 2 or z.shape[1] != 2 or len(fake_indices) != 1 or y.min() == y.max():
        return None
    fake = int(fake_indices[0])
    margin = (z[:, fake] - z[:, 1 - fake])[:, None]
    fitted = LogisticRegression(C=1e4).fit(margin, y)
    a, c = float(fitted.coef_[0, 0]), float(fitted.intercept_[0])
    if a <= 0:
        return None
    bias = [0.0, 0.0]
    bias[fake] = float(np.clip(c, -100.0, 100.0))
    return float(np.clip(1.0 / a, 0.05, 100.0)), bias


def fake_probability(logits: np.ndarray, fake_indices: Sequence[int], temperature: float = 1.0,
                     bias: Sequence[float] | None = None) -> np.ndarray:
    """P(fake) as a detector reports it: :func:`calibrated_softmax`, summed over the fake classes."""
    return calibrated_softmax(np.asarray(logits, np.float32), temperature, bias).numpy()[:, list(fake_indices)].sum(axis=1)


METHODS = {"temperature": "temperature scaling", "platt": "Platt scaling (temperature and bias)"}


def _fit(method: str, logits: np.ndarray, labels: np.ndarray, fake_indices: Sequence[int]):
    """(temperature, bias or None) of ``method``; Platt falls back to the temperature where it does not apply."""
    if method == "platt":
        fitted = fit_platt(logits, labels, fake_indices)
        if fitted is not None:
            return fitted
    return fit_temperature(logits, labels), None


def cross_validated_ece(logits: np.ndarray, labels: np.ndarray, fake_indices: Sequence[int], method: str,
                        folds: int = 5, seed: int = 0) -> float:
    """ECE of ``method`` on faces it was not fitted on: each fold's P(fake) from a fit on the other folds."""
    labels = np.asarray(labels)
    order = np.random.default_rng(seed).permutation(len(labels))
    p = np.empty(len(labels))
    for part in np.array_split(order, folds):
        rest = np.setdiff1d(order, part)
        temperature, bias = _fit(method, logits[rest], labels[rest], fake_indices)
        p[part] = fake_probability(logits[part], fake_indices, temperature, bias)
    return calibration(np.isin(labels, list(fake_indices)).astype(int), p)["ece"]


def choose_method(logits: np.ndarray, labels: np.ndarray, fake_indices: Sequence[int],
                  min_faces: int = 100) -> tuple[str, dict]:
    """The calibration to fit: Platt scaling where a binary model has at least ``min_faces``
    validation faces of both classes and its cross-validated ECE is lower; temperature scaling
    otherwise. Returns the method and the cross-validated ECE of each candidate."""
    is_fake = np.isin(labels, list(fake_indices))
    if (np.asarray(logits).shape[1] != 2 or min(is_fake.sum(), (~is_fake).sum()) < min_faces // 2
            or fit_platt(logits, labels, fake_indices) is None):
        return "temperature", {}
    scores = {m: cross_validated_ece(np.asarray(logits), labels, fake_indices, m) for m in ("temperature", "platt")}
    return ("platt" if scores["platt"] < scores["temperature"] else "temperature"), scores


def balanced_threshold(is_fake: np.ndarray, p_fake: np.ndarray) -> float:
    """The threshold with the best balanced accuracy (mean of the two recalls; ties: nearest 0.5):
    unlike F1 it does not move with the share of fakes in the validation set."""
    y = np.asarray(is_fake).astype(bool)
    p = np.asarray(p_fake, np.float64)
    if y.all() or not y.any():
        return 0.5
    candidates = np.unique(np.concatenate([p, [0.5]]))
    fakes, reals = np.sort(p[y]), np.sort(p[~y])
    caught = (len(fakes) - np.searchsorted(fakes, candidates, "left")) / len(fakes)  # fakes at or over t
    cleared = np.searchsorted(reals, candidates, "left") / len(reals)  # reals under t
    score = np.round(0.5 * (caught + cleared), 6)
    best = np.lexsort((candidates, -np.abs(candidates - 0.5), score))[-1]  # score first, then nearest 0.5
    return float(candidates[best])


def threshold_spread(is_fake: np.ndarray, p_fake: np.ndarray, resamples: int = 200, seed: int = 0) -> dict | None:
    """How far :func:`balanced_threshold` moves when the same faces are drawn again (a bootstrap: faces
    resampled with replacement, the calibration kept): the 5th, 50th and 95th percentiles of the thresholds
    it picks. An argmax over a few hundred faces is noisy; a score nearer the threshold than this spread is
    within the noise of where the threshold was put. None without both classes."""
    y = np.asarray(is_fake).astype(bool)
    p = np.asarray(p_fake, np.float64)
    if y.all() or not y.any():
        return None
    rng = np.random.default_rng(seed)
    picks = []
    for _ in range(resamples):
        i = rng.integers(0, len(y), len(y))
        picks.append(balanced_threshold(y[i], p[i]))
    low, median, high = np.percentile(picks, [5, 50, 95])
    return {"resamples": resamples, "faces": int(len(y)), "threshold": balanced_threshold(y, p),
            "p05": float(low), "median": float(median), "p95": float(high)}


def calibrate_folder(model_dir: str | Path, logits: np.ndarray, labels: np.ndarray,
                     fake_indices: Sequence[int]) -> dict:
    """Fit the calibration (:func:`choose_method`) and the threshold on validation ``logits`` and
    write them into ``model_dir/config.json``; returns the record (ECE, reliability curves and
    accuracy before and after) that the training record and the model card keep."""
    is_fake = np.isin(labels, list(fake_indices)).astype(int)
    before = fake_probability(logits, fake_indices)
    method, scores = choose_method(logits, labels, fake_indices)
    temperature, bias = _fit(method, np.asarray(logits), np.asarray(labels), fake_indices)
    after = fake_probability(logits, fake_indices, temperature, bias)
    threshold = balanced_threshold(is_fake, after)
    path = Path(model_dir) / "config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    block = config.setdefault("forensics", {})
    block["temperature"], block["threshold"] = round(temperature, 6), round(threshold, 6)
    block.pop("logit_bias", None)
    block.pop("size_temperatures", None)  # fitted on the old calibration: fit_size_temperatures writes them again
    if bias is not None:
        block["logit_bias"] = [round(v, 6) for v in bias]
    write_atomic(path, config)
    return {
        "method": METHODS[method],
        "faces": int(len(labels)),
        "temperature": temperature,
        **({"logit_bias": bias} if bias is not None else {}),
        **({"cross_validated_ece": scores} if scores else {}),
        "threshold": threshold,
        "before": {**calibration(is_fake, before), "accuracy_at_0.5": binary_metrics(is_fake, before, 0.5)["accuracy"]},
        "after": {**calibration(is_fake, after),
                  "accuracy_at_threshold": binary_metrics(is_fake, after, threshold)["accuracy"]},
    }


# Face sides (source pixels) at which small faces are calibrated: the validation faces shrunk to each
# and compressed there (H.264, CRF 32), as a face far from the camera reaches the detector.
SIZE_SIDES = (64, 96, 128, 176)
SIZE_CRF = 32


class SmallFaces(Dataset):
    """Items of ``dataset`` (lists of images with their labels) with every image made a small face of
    ``side`` pixels (:func:`training.augment.small_face`)."""

    def __init__(self, dataset: Dataset, side: int, crf: int = SIZE_CRF):
        self.dataset, self.side, self.crf = dataset, int(side), int(crf)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int):
        from training import augment

        images, labels = self.dataset[i]
        return [augment.small_face(im, self.side, lambda s: augment.h264(s, self.crf)) for im in images], labels


def fit_size_temperatures(model: torch.nn.Module, dataset: Dataset, collate, model_dir: str | Path,
                          fake_indices: Sequence[int], sides: Sequence[int] = SIZE_SIDES) -> dict:
    """Calibrate small faces: for each side, the validation faces shrunk to it and H.264-compressed
    there are scored and one more temperature (at least 1: a small face is never scored more sharply
    than a full-size one) is fitted on their calibrated logits. Written into ``config.json``
    (``size_temperatures``); returns the record with each side's ECE before and after (fitting faces)."""
    path = Path(model_dir) / "config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    block = config.setdefault("forensics", {})
    temperature, bias = float(block.get("temperature", 1.0)), block.get("logit_bias")
    record: dict = {"crf": SIZE_CRF, "sides": {}}
    for side in sides:
        logits, labels = collect_logits(model, SmallFaces(dataset, side), collate, desc=f"small faces {side} px")
        calibrated = logits / temperature + (np.asarray(bias, np.float64) if bias is not None else 0.0)
        extra = max(1.0, fit_temperature(calibrated, labels))
        is_fake = np.isin(labels, list(fake_indices)).astype(int)
        before = fake_probability(calibrated, fake_indices)
        after = fake_probability(calibrated, fake_indices, extra)
        record["sides"][str(int(side))] = {"temperature": round(extra, 4), "faces": int(len(labels)),
                                           "ece_before": calibration(is_fake, before)["ece"],
                                           "ece_after": calibration(is_fake, after)["ece"],
                                           "roc_auc": binary_metrics(is_fake, before)["roc_auc"]}
    block["size_temperatures"] = {k: v["temperature"] for k, v in record["sides"].items()}
    write_atomic(path, config)
    return record
