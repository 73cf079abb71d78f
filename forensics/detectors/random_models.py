"""Small randomly initialised model folders of every registered family, for tests and benchmarks.

Each family names its random models and writes them (``DetectorFamily.random_models``,
``save_random``): tests parametrised over :data:`RANDOM_MODELS` and :data:`RANDOM_BUILDS` cover a
new family, and a new build, without being told. They are written with ``trained: false``:
``load_detector`` refuses them unless asked with ``allow_untrained=True``, so none is ever offered to
a user as a detector.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from forensics.detectors import FAMILIES
from forensics.detectors.base import VARIANTS, DetectorInfo

RANDOM_MODELS = tuple(model for family in FAMILIES.values() for model in family.random_models)
# Their registered builds (``timm-vit:onnx``, ``timm-vit:int8``, ...), made by forensics.int8.quantize.
RANDOM_BUILDS = tuple(f"{model}:{variant}" for model in RANDOM_MODELS for variant in VARIANTS)


def make_random_detector(folder: str | Path, model: str = "timm-vit", size: int = 64,
                         labels: Sequence[str] = ("real", "fake"), seed: int = 0) -> Path:
    """Write the untrained random model ``model`` (see :data:`RANDOM_MODELS`) and return its folder."""
    family = next((f for f in FAMILIES.values() if model in f.random_models + f.bench_models), None)
    if family is None:
        raise ValueError(f"unknown random model {model!r}; choose from {', '.join(RANDOM_MODELS)}")
    torch.manual_seed(seed)
    info = DetectorInfo(name=f"random-{model}", labels=list(labels), input_size=size, trained=False,
                        description=f"Randomly initialised {model} for tests.")
    return family.save_random(Path(folder), model, info)
