"""Does a map point at the manipulated region, where it is known (self-blended fakes' blend masks)?

- **Pointing game** (Zhang et al. 2016): is the map's peak inside the region? Ties at the peak
  (flat maps) count as a hit only in the share of them that falls inside.
- **Pixel AUC**: the map used as a per-pixel classifier of the region (ROC-AUC over pixels): 0.5
  is no better than chance, 1 ranks every pixel of the region above every pixel outside it.
"""

from __future__ import annotations

import cv2
import numpy as np


def region_from_mask(mask: np.ndarray, size: int, level: float = 0.5) -> np.ndarray:
    """A soft blend mask (any size, values in [0, 1]) -> the boolean region at the map's size: where
    the mask reaches ``level`` of its own maximum (a blend's core, not its feathered edge)."""
    resized = cv2.resize(np.asarray(mask, np.float32), (size, size), interpolation=cv2.INTER_LINEAR)
    peak = float(resized.max())
    return resized >= level * peak if peak > 0 else np.zeros((size, size), bool)


def pointing_game(heatmap: np.ndarray, region: np.ndarray) -> float:
    """1.0 when the map's maximum lies in the region, 0.0 when outside (ties: the share inside)."""
    at_peak = heatmap >= heatmap.max() - 1e-6
    return float(region[at_peak].mean())


def region_auc(heatmap: np.ndarray, region: np.ndarray, side: int = 56) -> float:
    """ROC-AUC of the map's values as a classifier of the region's pixels (on a ``side`` grid);
    NaN when the region is empty or covers everything."""
    from sklearn.metrics import roc_auc_score

    values = cv2.resize(np.asarray(heatmap, np.float32), (side, side), interpolation=cv2.INTER_AREA).ravel()
    truth = cv2.resize(region.astype(np.float32), (side, side), interpolation=cv2.INTER_AREA).ravel() >= 0.5
    if truth.all() or not truth.any():
        return float("nan")
    return float(roc_auc_score(truth, values))


__all__ = ["pointing_game", "region_auc", "region_from_mask"]
