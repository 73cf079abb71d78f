"""ONNX float and int8 builds of a detector, beside its PyTorch weights in the same folder.

- :func:`export_onnx`: any PyTorch detector to ``model.onnx`` (dynamic batch axis), with its
  attention probabilities (``attentions``, ``(B, layers, heads, N, N)``) and, for patch-level
  detectors, its patch logits (``patch_logits``) as extra outputs, so that the ONNX model still
  shows attention, rollout and patch maps. Checked against PyTorch with onnxruntime.
- :func:`quantize_onnx`: int8, ``dynamic`` (weights int8, activations quantized on the fly: for
  transformers) or ``static`` (QDQ, activations calibrated on real face crops: for CNNs, the
  hybrid and the patch-level detector, where dynamic quantization barely touches convolutions).
  Per-channel weights. The products of two activations inside attention (``q @ k``, ``attn @ v``)
  and the softmax stay float: quantizing them costs accuracy for little speed.
- :func:`build_onnx`: both files for a model folder, plus ``onnx.json`` saying how they were made
  (opset, exporter, quantization mode, calibration faces, verification errors, the int8 decision
  threshold that keeps the float model's operating point).

Both builds then load as detectors (``<name>:onnx``, ``<name>:int8``; see
:mod:`forensics.detectors.onnx_family`).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from forensics.catalog import ONNX_BUILDS
from forensics.core import DetectorError, atomic_path, write_atomic
from forensics.detectors.base import Detector
from forensics.detectors.onnx_family import BUILD_NAME, INPUT_NAME, open_session

ONNX_NAME = ONNX_BUILDS["onnx"]
INT8_NAME = ONNX_BUILDS["int8"]
MODES = ("auto", "dynamic", "static")


class _ExportWrapper(nn.Module):
    """The detector's model returning ``(logits[, attentions][, patch_logits])`` in one pass."""

    def __init__(self, detector: Detector, attention: bool):
        super().__init__()
        self.model = detector.model
        self.attention = bool(attention and detector.has_attention)
        self.detector = detector
        self.patches = detector.patch_score_module

    def forward(self, x: torch.Tensor):
        caught: list[torch.Tensor] = []
        patch: list[torch.Tensor] = []
        handles = []
        if self.patches is not None:
            handles.append(self.patches.register_forward_hook(lambda _m, _i, out: patch.append(out)))
        ctx = self.detector.capture_attention() if self.attention else None
        try:
            if ctx is not None:
                with ctx as attentions:
                    logits = self.model(x)
                caught = list(attentions)
            else:
                logits = self.model(x)
        finally:
            for handle in handles:
                handle.remove()
        outputs = [logits]
        if self.attention:
            outputs.append(torch.stack(caught, dim=1))
        if patch:
            outputs.append(patch[-1][:, 0])
        return tuple(outputs)


def output_names(detector: Detector, attention: bool = True) -> list[str]:
    names = ["logits"]
    if attention and detector.has_attention:
        names.append("attentions")
    if detector.patch_score_module is not None:
        names.append("patch_logits")
    return names


def export_onnx(detector: Detector, path: str | Path, attention: bool = True, opset: int = 18,
                check: torch.Tensor | None = None, atol: float = 1e-3) -> dict:
    """Export ``detector`` to a single-file ONNX model at ``path`` (written atomically) and check it
    against PyTorch on ``check`` (default: two random inputs). Returns what was done."""
    path = Path(path)
    size = detector.input_size
    wrapper = _ExportWrapper(detector, attention).eval()
    names = output_names(detector, attention)
    example = torch.randn(2, 3, size, size)
    tmp_dir = Path(tempfile.mkdtemp(prefix="onnx-export-"))
    tmp = tmp_dir / "model.onnx"
    exporter = "dynamo"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                torch.onnx.export(wrapper, (example,), str(tmp), input_names=[INPUT_NAME], output_names=names,
                                  dynamo=True, external_data=False, opset_version=opset, verbose=False,
                                  dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=1024)},))
            except Exception as exc:  # some graphs (e.g. data-dependent top-k) do not export with dynamo
                exporter = f"torchscript (dynamo failed: {type(exc).__name__})"
                axes = {name: {0: "batch"} for name in [INPUT_NAME, *names]}
                torch.onnx.export(wrapper, (example,), str(tmp), input_names=[INPUT_NAME], output_names=names,
                                  dynamo=False, opset_version=min(opset, 17), dynamic_axes=axes)
        session = open_session(tmp)
        batch = check if check is not None else torch.randn(3, 3, size, size)
        errors = _compare(wrapper, session, batch, names)
        if errors["logits"] > atol:
            raise DetectorError(f"ONNX export of {detector.name} differs from PyTorch by {errors['logits']:.2e} "
                                f"(tolerance {atol:g})")
        with atomic_path(path) as final:
            shutil.move(str(tmp), str(final))
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    record = {"file": path.name, "exporter": exporter, "opset": opset, "outputs": names,
              "max_abs_error_vs_pytorch": errors, "bytes": path.stat().st_size, "kind": detector.kind}
    if "attentions" in names:  # what the maps need to lay tokens on the face
        record["grid"] = list(detector.grid_size)
        record["prefix_tokens"] = int(detector.num_prefix_tokens)
    return record


@torch.inference_mode()
def _compare(wrapper: nn.Module, session, batch: torch.Tensor, names: Sequence[str]) -> dict[str, float]:
    ours = wrapper(batch)
    theirs = session.run(list(names), {INPUT_NAME: batch.numpy().astype(np.float32)})
    return {name: float(np.abs(a.float().numpy() - b).max()) for name, a, b in zip(names, ours, theirs)}


def choose_mode(detector: Detector) -> str:
    """Dynamic for transformer-style models (ViTs and the CNN+ViT hybrid), static for CNNs and
    patch-level detectors, whose work is all in convolutions."""
    return "dynamic" if detector.has_attention else "static"


def op_types_for(mode: str) -> list[str]:
    """What gets int8 kernels. Dynamic: the weight matrix products only (convolutions stay float:
    dynamic ConvInteger is slower than float here, and int8 activations in the hybrid's
    MobileNetV2 trunk cost it its accuracy: max |delta P(fake)| 0.94 measured). Static: all."""
    return ["MatMul", "Gemm"] if mode == "dynamic" else ["Conv", "MatMul", "Gemm"]


def _attention_matmuls(model_path: Path) -> list[str]:
    """MatMul nodes whose two inputs are activations (``q @ k^T``, ``attn @ v``): left float."""
    import onnx

    model = onnx.load(str(model_path), load_external_data=False)
    constants = {init.name for init in model.graph.initializer}
    constants |= {n.output[0] for n in model.graph.node if n.op_type == "Constant"}
    # Weights reach a MatMul directly or through a Transpose/Cast of an initializer.
    for node in model.graph.node:
        if node.op_type in ("Transpose", "Cast", "Reshape", "Identity") and node.input and node.input[0] in constants:
            constants.add(node.output[0])
    return [n.name for n in model.graph.node if n.op_type == "MatMul" and not any(i in constants for i in n.input)]


class _Calibration:
    """onnxruntime's calibration reader over a preprocessed batch, one face at a time."""

    def __init__(self, batch: np.ndarray):
        self.batch, self.i = batch.astype(np.float32), 0

    def get_next(self):
        if self.i >= len(self.batch):
            return None
        self.i += 1
        return {INPUT_NAME: self.batch[self.i - 1 : self.i]}

    def rewind(self) -> None:
        self.i = 0


def _conv_nodes(model_path: Path) -> list[str]:
    """Convolutions in graph (topological) order: the first ones see the input's finest detail."""
    import onnx

    model = onnx.load(str(model_path), load_external_data=False)
    return [n.name for n in model.graph.node if n.op_type == "Conv"]


def _probabilities(session, batch: np.ndarray) -> np.ndarray:
    """Class probabilities ``(B, C)`` from an onnxruntime session, 16 faces at a time."""
    logits = np.concatenate([session.run(["logits"], {INPUT_NAME: batch[i : i + 16]})[0]
                             for i in range(0, len(batch), 16)])
    return _softmax(logits)


def quantize_onnx(src: str | Path, dst: str | Path, mode: str, calibration: np.ndarray | None = None,
                  per_channel: bool = True, float_convs: int | str = "auto", max_delta: float = 0.02) -> dict:
    """int8 ``dst`` from float ``src`` (both single files; ``dst`` written atomically).

    Static: ``float_convs`` first convolutions stay float. Forensic detectors read faint,
    high-frequency traces that 8-bit activations in the first layers wipe out (measured on the
    patch-level detector: all convolutions int8, max |delta P(fake)| 0.15 and 92% agreement; its
    MobileNetV2 stages float, 0.008 and 100%). ``"auto"`` keeps the fewest first convolutions
    float (0, 1, 2, 4, 8, ...) for which P(fake) on the calibration faces moves by at most
    ``max_delta``: mixed precision chosen by measurement.
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_dynamic, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if mode not in ("dynamic", "static"):
        raise ValueError(f"quantization mode must be dynamic or static, not {mode!r}")
    if mode == "static" and (calibration is None or len(calibration) == 0):
        raise DetectorError("static int8 quantization needs calibration faces")
    src, dst = Path(src), Path(dst)
    work = Path(tempfile.mkdtemp(prefix="quantize-"))
    tried: list[dict] = []
    try:
        pre = work / "pre.onnx"
        # Dynamo graphs need shape inference and constant folding before quantization.
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=False)
        excluded = _attention_matmuls(pre)
        out = work / "int8.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if mode == "dynamic":
                quantize_dynamic(str(pre), str(out), weight_type=QuantType.QInt8, per_channel=per_channel,
                                 op_types_to_quantize=op_types_for(mode), nodes_to_exclude=excluded)
            else:
                convs = _conv_nodes(pre)
                if float_convs == "auto":
                    candidates = sorted({0, *[k for k in (1, 2, 4, 8, 16, 32, 64) if k < len(convs)], len(convs)})
                else:
                    candidates = [min(int(float_convs), len(convs))]
                reference = _probabilities(open_session(pre), calibration) if float_convs == "auto" else None

                def build(k: int, path: Path) -> float:
                    quantize_static(str(pre), str(path), _Calibration(calibration), quant_format=QuantFormat.QDQ,
                                    op_types_to_quantize=op_types_for(mode), nodes_to_exclude=excluded + convs[:k],
                                    per_channel=per_channel, weight_type=QuantType.QInt8,
                                    activation_type=QuantType.QUInt8, calibrate_method=CalibrationMethod.MinMax)
                    if reference is None:
                        return 0.0
                    # With two classes this is the largest move of P(fake).
                    delta = float(np.abs(_probabilities(open_session(path), calibration) - reference).max())
                    tried.append({"float_convs": k, "max_abs_delta": round(delta, 5)})
                    return delta

                # Doubling until P(fake) holds, then halving the gap to the last count that failed.
                low, kept_float = -1, candidates[-1]
                for k in candidates:
                    if build(k, out) <= max_delta:
                        kept_float = k
                        break
                    low = k
                while reference is not None and kept_float - low > 1:
                    mid = (low + kept_float) // 2
                    trial = work / f"int8-{mid}.onnx"
                    if build(mid, trial) <= max_delta:
                        kept_float = mid
                        os.replace(trial, out)
                    else:
                        low = mid
        with atomic_path(dst) as final:
            shutil.move(str(out), str(final))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    info = {"file": dst.name, "mode": mode, "per_channel": per_channel, "weights": "int8",
            "int8_ops": op_types_for(mode),
            "activations": "uint8, calibrated (MinMax)" if mode == "static" else "quantized per batch at run time",
            "float_nodes": "attention products (q@k, attn@v) and softmax", "bytes": dst.stat().st_size}
    if mode == "dynamic":
        info["float_nodes"] += "; every convolution"
    else:
        info["calibration_faces"] = int(len(calibration))
        info["float_convolutions"] = f"the first {kept_float} of {len(convs)}"
        if tried:
            info["mixed_precision_search"] = tried
    return info


def operating_point_threshold(p_float: np.ndarray, p_int8: np.ndarray, threshold: float) -> float:
    """The int8 threshold that keeps the float model's operating point: the one whose decisions
    agree most often with the float model's at ``threshold`` (ties: the closest to ``threshold``)."""
    p_float, p_int8 = np.asarray(p_float, float), np.asarray(p_int8, float)
    if len(p_float) == 0:
        return float(threshold)
    decisions = p_float >= threshold
    candidates = np.unique(np.concatenate([[threshold], p_int8, np.nextafter(p_int8, 2.0)]))
    candidates = candidates[(candidates > 0) & (candidates <= 1)]
    agreement = np.array([np.mean((p_int8 >= c) == decisions) for c in candidates])
    best = np.flatnonzero(agreement == agreement.max())
    return float(candidates[best[np.argmin(np.abs(candidates[best] - threshold))]])


def build_onnx(detector: Detector, calibration_crops: Sequence[np.ndarray] | None = None, mode: str = "auto",
               attention: bool = True, out_dir: str | Path | None = None, progress=None) -> dict:
    """``model.onnx`` + ``model_quantized.onnx`` + ``onnx.json`` in the detector's folder (or
    ``out_dir``). The int8 threshold is tuned on ``calibration_crops`` to keep the float
    model's decisions; :mod:`forensics.int8.audit` measures it on labelled faces."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}")
    folder = Path(out_dir or detector.path)
    step = progress or (lambda fraction, text: None)
    mode = choose_mode(detector) if mode == "auto" else mode
    crops = list(calibration_crops or [])
    if mode == "static" and not crops:
        raise DetectorError("static int8 quantization needs calibration face crops (--calibration)")
    batch = detector.preprocess(crops).numpy() if crops else None
    step(0.05, "exporting to ONNX")
    check = torch.from_numpy(batch[:4]) if batch is not None else None
    started = time.perf_counter()
    exported = export_onnx(detector, folder / ONNX_NAME, attention=attention, check=check)
    exported["seconds"] = round(time.perf_counter() - started, 1)
    step(0.5, f"quantizing ({mode} int8)")
    quantized = quantize_onnx(folder / ONNX_NAME, folder / INT8_NAME, mode, batch)
    record = {"source_weights": "model.safetensors", "float": exported, "int8": quantized}
    if batch is not None:
        step(0.9, "tuning the int8 threshold")
        p_float = detector.fake_probability(detector.predict(torch.from_numpy(batch)))
        p_int8 = detector.fake_probability(_probabilities(open_session(folder / INT8_NAME), batch))
        tuned = operating_point_threshold(p_float, p_int8, detector.threshold)
        quantized["threshold"] = tuned
        quantized["threshold_tuned_on"] = f"{len(batch)} calibration faces (agreement with float at {detector.threshold:g})"
        quantized["calibration_agreement"] = float(np.mean((p_int8 >= tuned) == (p_float >= detector.threshold)))
        quantized["calibration_max_abs_delta"] = float(np.abs(p_int8 - p_float).max())
    write_atomic(folder / BUILD_NAME, record)
    step(1.0, "done")
    return record


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)
