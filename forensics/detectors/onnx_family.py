"""ONNX float and int8 builds of a detector, run with onnxruntime.

A model folder may hold ``model.onnx`` and ``model_quantized.onnx`` beside its PyTorch weights
(made by :mod:`forensics.int8.quantize`). ``<name>:onnx`` and ``<name>:int8`` load them as detectors
like any other: same labels, preprocessing and face crops (from the folder's config.json); the
int8 build uses the decision threshold tuned to keep the float model's operating point.

Without gradients there is no Grad-CAM: an ONNX detector shows the maps its graph outputs:
attention and rollout (class-agnostic) when exported with attentions, and the patch-score map of
patch-level detectors.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Iterator

import torch
from torch import nn

from forensics.catalog import ONNX_BUILDS as VARIANTS
from forensics.catalog import read_config
from forensics.core import DetectorError
from forensics.detectors.base import VARIANTS as REGISTERED_VARIANTS
from forensics.detectors.base import Detector, DetectorInfo, family_for
from forensics.settings import is_public

VARIANT_TITLES = {"onnx": "ONNX float", "int8": "ONNX int8"}
VARIANT_KINDS = {"onnx": "onnx-float", "int8": "onnx-int8"}  # what Detector.kind says of a build
BUILD_NAME = "onnx.json"  # how the builds were made (forensics.int8.quantize)
INPUT_NAME = "pixel_values"


class OnnxModule(nn.Module):
    """An onnxruntime session behind ``nn.Module``'s interface: torch batch in, logits out.

    While attention is being captured the ``attentions`` output is fetched too; the patch logits
    pass through ``self.score`` so that forward hooks on it see them, as on the PyTorch model.
    """

    def __init__(self, session, outputs: list[str]):
        super().__init__()
        self.session = session
        self.outputs = outputs
        self.score = nn.Identity()
        self.capture: list[torch.Tensor] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        wanted = ["logits"]
        if self.capture is not None and "attentions" in self.outputs:
            wanted.append("attentions")
        if "patch_logits" in self.outputs and self.score._forward_hooks:
            wanted.append("patch_logits")
        values = dict(zip(wanted, self.session.run(wanted, {INPUT_NAME: x.detach().float().numpy()})))
        if "attentions" in values:
            stacked = torch.from_numpy(values["attentions"])
            self.capture.extend(stacked[:, i] for i in range(stacked.shape[1]))
        if "patch_logits" in values:
            self.score(torch.from_numpy(values["patch_logits"])[:, None])
        return torch.from_numpy(values["logits"])


class OnnxDetector(Detector):
    """A detector whose forward pass is an ONNX graph (float or int8)."""

    differentiable = False

    def __init__(self, module: OnnxModule, info: DetectorInfo, path: Path, variant: str, build: dict):
        super().__init__(module, info, path)
        self.variant = variant
        self.build = build
        self.file = path / VARIANTS[variant]
        self._grid = tuple(build.get("float", {}).get("grid") or ()) or None
        self._prefix = int(build.get("float", {}).get("prefix_tokens", 0))

    @property
    def kind(self) -> str:
        return VARIANT_KINDS[self.variant]

    @property
    def has_attention(self) -> bool:
        return "attentions" in self.model.outputs and self._grid is not None

    @property
    def grid_size(self) -> tuple[int, int] | None:
        return self._grid

    @property
    def num_prefix_tokens(self) -> int:
        return self._prefix

    @property
    def patch_score_module(self) -> nn.Module | None:
        return self.model.score if "patch_logits" in self.model.outputs else None

    @contextlib.contextmanager
    def capture_attention(self) -> Iterator[list[torch.Tensor]]:
        if not self.has_attention:
            raise DetectorError(f"{self.name}: this ONNX build was exported without attention outputs")
        captured: list[torch.Tensor] = []
        self.model.capture = captured
        try:
            yield captured
        finally:
            self.model.capture = None

    @property
    def cam_target_layers(self) -> list[nn.Module]:
        raise DetectorError(f"{self.name}: an ONNX build has no gradients; Grad-CAM needs the PyTorch model")

    def describe(self) -> dict:
        data = super().describe()
        data.update({"parameters": None, "runtime": f"onnxruntime ({VARIANT_TITLES[self.variant]})",
                     "file": self.file.name, "bytes": self.file.stat().st_size})
        return data


def session_options(threads: int | None = None):
    """onnxruntime options for sharing a process with torch: no spinning threads (they slow torch
    down), as many intra-op threads as torch uses."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = int(threads or torch.get_num_threads())
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return options


def open_session(path: str | Path, threads: int | None = None):
    import onnxruntime as ort

    try:
        return ort.InferenceSession(str(path), session_options(threads), providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph/... types
        raise DetectorError(f"{path}: onnxruntime cannot load it ({' '.join(str(exc).split())[:200]})") from exc


def read_build(folder: str | Path) -> dict:
    path = Path(folder) / BUILD_NAME
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DetectorError(f"{path}: not valid JSON ({exc})") from exc


def load_onnx_detector(folder: Path, variant: str, threads: int | None = None) -> OnnxDetector:
    """The ONNX build ``variant`` ("onnx" or "int8") of the model folder ``folder``: registered as
    the loader of those variants, so ``load_detector("<name>:int8")`` is the way in."""
    path = folder / VARIANTS[variant]
    if not path.is_file():
        if is_public():  # a visitor learns nothing of the server's folders
            raise DetectorError(f"{folder.name}: no {variant} build on this server")
        raise DetectorError(f"{folder.name}: no {path.name}; make it with `python -m forensics quantize "
                            f"--detector {folder}`")
    config = read_config(folder)
    info = family_for(folder, config).info(folder, config)
    build = read_build(folder)
    info.name = f"{info.name}:{variant}"
    if variant == "int8" and "threshold" in build.get("int8", {}):
        info.threshold = float(build["int8"]["threshold"])
    session = open_session(path, threads)
    outputs = [o.name for o in session.get_outputs()]
    if "logits" not in outputs:
        raise DetectorError(f"{path}: the ONNX graph has no 'logits' output")
    return OnnxDetector(OnnxModule(session, outputs), info, folder, variant, build)


REGISTERED_VARIANTS.update(dict.fromkeys(VARIANTS, load_onnx_detector))  # <name>:onnx, <name>:int8
