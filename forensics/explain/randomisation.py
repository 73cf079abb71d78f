"""The model-randomisation sanity check (Adebayo et al., "Sanity checks for saliency maps", 2018).

A map that explains a model must change when the model's learnt weights are destroyed. The check
re-initialises the detector's top (its last blocks and the head after them), makes the same maps
of the same faces, and measures how similar they stay: the Spearman rank correlation of each pair
of maps. Near 1: the map reflects the input (edges, the face's layout) more than the model; near 0
or below: it depends on what the model learnt, as an explanation should.
"""

from __future__ import annotations

import copy

import cv2
import numpy as np
import torch
from torch import nn

from forensics.detectors.base import Detector
from forensics.core import DetectorError


def _reinitialise(module: nn.Module) -> int:
    """Reset every parameterised submodule to a fresh initialisation; returns how many were reset."""
    count = 0
    for sub in module.modules():
        if hasattr(sub, "reset_parameters") and any(True for _ in sub.parameters(recurse=False)):
            sub.reset_parameters()
            count += 1
        if isinstance(sub, nn.modules.batchnorm._BatchNorm):
            sub.reset_running_stats()
    return count


def top_modules(model: nn.Module, blocks: int = 2) -> list[nn.Module]:
    """What "the last blocks" are: with a ``blocks`` stack (timm ViTs, the hybrid, timm CNNs), its
    last ``blocks`` entries and every top-level module registered after it (norm, head); otherwise
    the last third of the parameterised layers (at least two)."""
    children = list(model.named_children())
    names = [name for name, _ in children]
    stack = getattr(model, "blocks", None)
    if isinstance(stack, (nn.Sequential, nn.ModuleList)) and len(stack) >= 2 and "blocks" in names:
        after = [module for _, module in children[names.index("blocks") + 1 :]]
        return [*list(stack)[-blocks:], *after]
    layers = [m for m in model.modules() if any(True for _ in m.parameters(recurse=False))]
    return layers[-max(2, len(layers) // 3) :]


def randomised_detector(detector: Detector, blocks: int = 2, seed: int = 0) -> Detector:
    """A copy of ``detector`` whose last ``blocks`` blocks and head are re-initialised (the loaded
    detector is left untouched). ONNX builds hold no weights to re-initialise: refused."""
    if not detector.differentiable:
        raise DetectorError(f"{detector.name}: an ONNX build has no weights to re-initialise; check its PyTorch model")
    model = copy.deepcopy(detector.model)
    torch.manual_seed(seed)
    reset = sum(_reinitialise(module) for module in top_modules(model, blocks))
    if reset == 0:
        raise DetectorError(f"{detector.name}: found no layer to re-initialise")
    return type(detector)(model, detector.info, detector.path)


def rank_correlation(first: np.ndarray, second: np.ndarray, side: int = 56) -> float:
    """Spearman correlation of two maps, compared on a ``side x side`` grid (area-averaged: the
    maps' own grain is coarser, and ranking 50k pixels costs more for no information). A constant
    map correlates with nothing: NaN."""
    from scipy.stats import spearmanr

    a = cv2.resize(np.asarray(first, np.float32), (side, side), interpolation=cv2.INTER_AREA).ravel()
    b = cv2.resize(np.asarray(second, np.float32), (side, side), interpolation=cv2.INTER_AREA).ravel()
    if np.ptp(a) < 1e-12 or np.ptp(b) < 1e-12:
        return float("nan")
    return float(spearmanr(a, b).statistic)


__all__ = ["randomised_detector", "rank_correlation", "top_modules"]
