"""Shared fixtures: the real data folder, small untrained model folders of every family, MTCNN."""

from __future__ import annotations

import os
import shutil

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DATA = (ROOT / ".." / "shared" / "data").resolve()


def data_path(relative: str) -> Path:
    """A file under ../shared/data, or skip the test with the reason."""
    path = DATA / relative
    if not path.exists():
        pytest.skip(f"real data not available: {path} (../shared/data is absent on this machine)")
    return path


@pytest.fixture(scope="session")
def model_dirs(tmp_path_factory) -> dict[str, Path]:
    """One small randomly initialised model folder per random model of every family (marked untrained)."""
    from forensics.detectors.random_models import RANDOM_MODELS, make_random_detector

    root = tmp_path_factory.mktemp("models")
    return {model: make_random_detector(root / model, model, size=64) for model in RANDOM_MODELS}


@pytest.fixture(scope="session")
def onnx_build(model_dirs, tmp_path_factory):
    """``onnx_build(model)``: a copy of a random model's folder with its ONNX float and int8 builds
    (dynamic int8: no calibration faces), made on first use."""
    from forensics.detectors import load_detector
    from forensics.int8.quantize import build_onnx

    made: dict[str, Path] = {}

    def build(model: str) -> Path:
        if model not in made:
            folder = Path(shutil.copytree(model_dirs[model], tmp_path_factory.mktemp("onnx") / model))
            build_onnx(load_detector(folder, allow_untrained=True, cache=False), mode="dynamic")
            made[model] = folder
        return made[model]

    return build


@pytest.fixture(scope="session")
def face_detector():
    from forensics.faces import FaceDetector

    return FaceDetector()


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


class Squares:
    """A learnable toy task for training loops: fakes (odd indices) carry a bright square.
    Deterministic per (epoch, index), as the training datasets are."""

    def __init__(self, n: int = 32, size: int = 32):
        self.n, self.size, self.epoch = n, size, 0

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        rng = np.random.default_rng((self.epoch, i))
        image = rng.integers(0, 120, (self.size, self.size, 3), dtype=np.uint8)
        label = i % 2
        if label:
            image[8:20, 8:20] = 250
        return [image], [label]


@pytest.fixture(scope="session")
def browser():
    """Debian's chromium, driven by Playwright (one browser for every UI test)."""
    from tests.served_app import CHROMIUM, CHROMIUM_ARGS

    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (make test installs it)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()
