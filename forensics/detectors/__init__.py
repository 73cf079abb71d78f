"""Detector registry: find a model folder (bundled name, local path or Hub id) and load it.

Families register themselves (``@register_family``) in their own modules, imported here. A
detector folder says whether it was trained (``forensics.trained``); untrained models are only
loaded when a caller asks for them explicitly (tests, benchmarks), never offered to a user.
"""

from __future__ import annotations

import threading
from pathlib import Path

from forensics.catalog import HUB_ID, available_detectors, detector_dirs, split_variant  # noqa: F401  (re-exported)
from forensics.detectors import onnx_family, timm_family, transformers_family  # noqa: F401  (register them)
from forensics.detectors.base import (
    FAMILIES,
    VARIANTS,
    Detector,
    DetectorInfo,
    fake_label_indices,
    family_for,
    register_family,
)
from forensics.hub_download import resolve_model_folder, trained_config

__all__ = [
    "Detector",
    "DetectorInfo",
    "FAMILIES",
    "available_detectors",
    "fake_label_indices",
    "load_detector",
    "register_family",
    "resolve_model_folder",
]

_CACHE: dict[tuple[str, bool], Detector] = {}
_LOCK = threading.Lock()


def load_detector(name_or_path: str | Path, allow_untrained: bool = False, cache: bool = True) -> Detector:
    """Load (once, then from cache) the detector a name, folder or Hub id points at.

    ``<name>:onnx`` and ``<name>:int8`` load the folder's ONNX float and int8 builds."""
    base, variant = split_variant(str(name_or_path))
    folder = resolve_model_folder(base)
    key = (str(folder), allow_untrained) if variant is None else (f"{folder}:{variant}", allow_untrained)
    with _LOCK:
        if cache and key in _CACHE:
            return _CACHE[key]
        config = trained_config(folder, allow_untrained)
        if variant is None:
            detector = family_for(folder, config).load(folder, config)
        else:  # split_variant knows only registered builds
            detector = VARIANTS[variant](folder, variant)
        if cache:
            _CACHE[key] = detector
        return detector
