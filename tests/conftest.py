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


def script_module(name: str):
    """A script under scripts/ loaded as a module, to call its functions (or its ``main(argv)``) in the
    test's process: a script run as a process pays for its imports (torch, ~6 s) every time."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name.removesuffix(".py").replace("-", "_"), ROOT / "scripts" / name)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def cli_in_process(*args):
    """`python -m forensics ARGS` as ``forensics.cli.main`` runs it in this process, from the repository root:
    a CompletedProcess of its exit code, stdout and stderr (a process would pay ~6 s of imports)."""
    import contextlib
    import io
    import subprocess

    from forensics.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.chdir(ROOT), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in args])
        except SystemExit as exc:  # argparse's refusals
            code = exc.code
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


def data_path(relative: str) -> Path:
    """A file under ../shared/data, or skip the test with the reason."""
    path = DATA / relative
    if not path.exists():
        pytest.skip(f"real data not available: {path} (../shared/data is absent on this machine)")
    return path


_REFUSAL_PROBE = """
import contextlib, io, json, sys
from {module} import main
results = []
for argv in json.loads(sys.argv[1]):
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            code = main(argv)
        except SystemExit as exc:
            code = exc.code
    said = code if isinstance(code, str) else err.getvalue().strip()
    results.append([1 if isinstance(code, str) else code, said])
print(json.dumps({{"results": results, "torch": "torch" in sys.modules}}))
"""


def refusals_without_torch(module: str, cases: list[list[str]], cwd: Path = ROOT) -> list[tuple[int, str]]:
    """``module``'s command line (``training.cli``, ``forensics.cli``) on each argument list, in one
    child process: (exit code, what it said on stderr or in its SystemExit) per case. Asserts that no
    case raised anything else (a traceback fails the child) and that torch was never imported: the
    refusals come before the seconds of imports."""
    import json
    import subprocess
    import sys

    env = dict(os.environ, PYTHONPATH=str(ROOT), HF_HUB_OFFLINE="1")
    run = subprocess.run([sys.executable, "-c", _REFUSAL_PROBE.format(module=module), json.dumps([list(map(str, c))
                          for c in cases])], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    report = json.loads(run.stdout.splitlines()[-1])
    assert report["torch"] is False, report["results"]
    return [tuple(r) for r in report["results"]]


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
