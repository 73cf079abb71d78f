"""ONNX float and int8 builds of a detector, beside its PyTorch weights in the same folder.

- :func:`export_onnx`: any PyTorch detector to ``model.onnx`` (dynamic batch axis), with its
  attention probabilities (``attentions``, ``(B, layers, heads, N, N)``) and, for patch-level
  detectors, its patch logits (``patch_logits``) as extra outputs, so that the ONNX model still
  shows attention, rollout and patch maps. Checked against PyTorch with onnxruntime.
- :func:`quantize_onnx`: int8, ``dynamic`` (weights int8, activations quantized on the fly: for
  transformers) or ``static`` (QDQ, activations calibrated on real face crops: for CNNs, the
  hybrid and the patch-level detector, where dynamic quantization barely touches convolutions).
  Per-channel weights. Static builds are mixed precision: the nodes whose int8 moves P(fake) most,
  measured one at a time, stay float (:func:`quantize_onnx`). The products of two activations
  inside attention (``q @ k``, ``attn @ v``) and the softmax stay float: quantizing them costs
  accuracy for little speed.
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
from forensics.detectors.base import Detector, calibrated_softmax
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
        fused = fuse_gelu(tmp)
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
              "max_abs_error_vs_pytorch": errors, "bytes": path.stat().st_size, "kind": detector.kind,
              "fused_gelu": fused}
    if "attentions" in names:  # what the maps need to lay tokens on the face
        record["grid"] = list(detector.grid_size)
        record["prefix_tokens"] = int(detector.num_prefix_tokens)
    return record


def fuse_gelu(path: str | Path) -> int:
    """Rewrite the exact GELUs of the ONNX model at ``path`` (the Div, Erf, Add, Mul, Mul pattern the
    exporter writes for ``nn.GELU``) as onnxruntime's single Gelu kernel, in place; returns how many.
    The same formula in one pass over the activations: the same logits, about 6% less time at batch 1
    for the hybrid (measured on its int8 build). The export's check against PyTorch runs after it."""
    import onnx
    from onnxruntime.transformers.fusion_gelu import FusionGelu
    from onnxruntime.transformers.onnx_model import OnnxModel

    model = OnnxModel(onnx.load(str(path)))
    FusionGelu(model).apply()
    count = sum(1 for node in model.nodes() if node.op_type == "Gelu")
    if count:
        model.prune_graph()
        model.topological_sort()
        onnx.save(model.model, str(path))
    return count


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
    MobileNetV2 trunk cost it its accuracy: max |delta P(fake)| 0.94 measured). Static: the
    products, and the activations and residual Adds between them, so that int8 flows from one
    convolution to the next without a dequantize/quantize pair at each step (measured on the
    hybrid, everything int8: 1.35x the ONNX float build with convolutions and products alone,
    1.66x with the ReLU6 and Adds too)."""
    return ["MatMul", "Gemm"] if mode == "dynamic" else ["Conv", "MatMul", "Gemm", "Clip", "Relu", "Add"]


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


def _graph(model_path: Path):
    import onnx

    return onnx.load(str(model_path), load_external_data=False).graph


def quantizable_units(model_path: Path, op_types: Sequence[str], excluded: Sequence[str] = ()) -> list[list[str]]:
    """The nodes a static build can put in int8, as units that go int8 or stay float together,
    in graph order: a convolution with the ReLU/Clip that follows it (quantized apart, the
    activation would cost a quantize step of its own), or one matrix product or residual Add.
    Adds of a constant (biases) are left out: they stay float, beside the product they follow."""
    graph = _graph(model_path)
    constants = {init.name for init in graph.initializer} | {n.output[0] for n in graph.node if n.op_type == "Constant"}
    consumers: dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    skip, units, taken = set(excluded), [], set()
    for node in graph.node:
        if node.op_type not in op_types or node.name in skip or node.name in taken:
            continue
        if node.op_type == "Add" and any(i in constants for i in node.input):
            continue
        unit = [node.name]
        if node.op_type == "Conv":
            unit += [c.name for c in consumers.get(node.output[0], []) if c.op_type in ("Relu", "Clip")
                     and c.op_type in op_types and c.name not in skip]
        elif node.op_type in ("Relu", "Clip"):
            continue  # only after a convolution
        taken.update(unit)
        units.append(unit)
    return units


def _probabilities(session, batch: np.ndarray, temperature: float = 1.0,
                   bias: Sequence[float] | None = None) -> np.ndarray:
    """Class probabilities ``(B, C)`` at ``temperature`` (then ``bias`` added, when calibration fitted
    one) from an onnxruntime session, 16 faces at a time."""
    logits = np.concatenate([session.run(["logits"], {INPUT_NAME: batch[i : i + 16]})[0]
                             for i in range(0, len(batch), 16)])
    return calibrated_softmax(logits, temperature, bias).numpy()


def _probe_faces(p_fake: np.ndarray, count: int) -> np.ndarray:
    """Indices of the ``count`` faces with P(fake) nearest 0.5: a logit error moves P(fake) most
    there (dP = p(1-p) dlogit), so they show a node's largest effect with few faces."""
    return np.sort(np.argsort(np.abs(p_fake - 0.5), kind="stable")[:count])


def quantize_onnx(src: str | Path, dst: str | Path, mode: str, calibration: np.ndarray | None = None,
                  per_channel: bool = True, keep_float: str | Sequence[str] = "auto", max_delta: float = 0.015,
                  temperature: float = 1.0, probe_faces: int = 32, progress=None,
                  bias: Sequence[float] | None = None, reduce_range: bool = False) -> dict:
    """int8 ``dst`` from float ``src`` (both single files; ``dst`` written atomically).

    Static builds are mixed precision, chosen by measurement. Forensic detectors read faint,
    high-frequency traces that 8-bit activations wipe out in some layers and not in others (the
    bundled hybrid: its first convolution alone in int8 moves P(fake) by 0.48, a transformer
    weight product by under 0.003). ``keep_float="auto"`` measures each quantizable node's
    sensitivity (that node alone in int8: max |delta P(fake)| on the ``probe_faces`` calibration
    faces nearest P=0.5), then keeps the fewest most-sensitive nodes float (0, 1, 2, 4, ...
    then halving the gap) for which P(fake) on every calibration face moves by at most
    ``max_delta``: 0.015, a margin under the audit's 0.02 for faces beyond the calibration set
    (the default's build searched at 0.02 held 0.018 on its 256 calibration faces and moved P(fake)
    by 0.023 on 200 validation faces). Activations are calibrated once (MinMax) and reused by every
    trial build.
    A list of node names instead keeps exactly those float. P(fake) is read at ``temperature`` and ``bias``,
    as the detector reports it.
    ``reduce_range``: 7-bit weights. On x86 CPUs without VNNI (AVX2 only) onnxruntime multiplies
    uint8 activations by int8 weights with an instruction whose pairwise sums saturate at 16 bits;
    7-bit weights cannot, at a little precision (docs/int8.md).
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_dynamic, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if mode not in ("dynamic", "static"):
        raise ValueError(f"quantization mode must be dynamic or static, not {mode!r}")
    if mode == "static" and (calibration is None or len(calibration) == 0):
        raise DetectorError("static int8 quantization needs calibration faces")
    step = progress or (lambda fraction, text: None)
    src, dst = Path(src), Path(dst)
    work = Path(tempfile.mkdtemp(prefix="quantize-"))
    search: dict = {}
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
                                 op_types_to_quantize=op_types_for(mode), nodes_to_exclude=excluded,
                                 reduce_range=reduce_range)
            else:
                ops = op_types_for(mode)
                units = quantizable_units(pre, ops, excluded)
                in_units = {name for unit in units for name in unit}
                # Nodes of those types outside every unit (bias Adds, a lone Clip) stay float.
                excluded += [n.name for n in _graph(pre).node if n.op_type in ops and n.name not in in_units]
                cache = work / "calibration.json"

                def build(floats: Sequence[str], path: Path, only: Sequence[str] | None = None) -> None:
                    quantize_static(str(pre), str(path), _Calibration(calibration), quant_format=QuantFormat.QDQ,
                                    op_types_to_quantize=ops, nodes_to_exclude=[*excluded, *floats],
                                    nodes_to_quantize=list(only) if only else None, per_channel=per_channel,
                                    reduce_range=reduce_range, weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8,
                                    calibrate_method=CalibrationMethod.MinMax, calibration_cache_path=str(cache))

                if keep_float != "auto":
                    kept = [u for u in units if any(name in keep_float for name in u)]
                    build([name for u in kept for name in u], out)
                else:
                    reference = _probabilities(open_session(pre), calibration, temperature, bias)[:, -1]
                    probe = _probe_faces(reference, probe_faces)

                    def delta(path: Path, faces: np.ndarray | None = None) -> float:
                        batch = calibration if faces is None else calibration[faces]
                        ref = reference if faces is None else reference[faces]
                        # With two classes this is the largest move of P(fake).
                        return float(np.abs(_probabilities(open_session(path), batch, temperature, bias)[:, -1] - ref).max())

                    trial = work / "trial.onnx"
                    sensitivity = []
                    for i, unit in enumerate(units):
                        step(0.6 * i / len(units), f"sensitivity of {unit[0]} ({i + 1}/{len(units)})")
                        build([], trial, only=unit)
                        sensitivity.append(delta(trial, probe))
                    order = [units[i] for i in np.argsort(sensitivity, kind="stable")[::-1]]

                    def floats(k: int) -> list[str]:
                        return [name for unit in order[:k] for name in unit]

                    tried: dict[int, float] = {}

                    def holds(k: int, path: Path) -> bool:
                        step(0.6 + 0.4 * len(tried) / (2 + 2 * np.log2(len(units) + 1)), f"{k} nodes float")
                        build(floats(k), path)
                        tried[k] = delta(path)
                        return tried[k] <= max_delta

                    # Doubling until P(fake) holds, then halving the gap to the last count that failed.
                    candidates = sorted({0, *[2**j for j in range(12) if 2**j < len(units)], len(units)})
                    low, kept_float = -1, len(units)
                    for k in candidates:
                        if holds(k, out):
                            kept_float = k
                            break
                        low = k
                    while kept_float - low > 1:
                        mid = (low + kept_float) // 2
                        if holds(mid, trial):
                            kept_float = mid
                            os.replace(trial, out)
                        else:
                            low = mid
                    by_name = {unit[0]: d for unit, d in zip(units, sensitivity)}
                    kept = order[:kept_float]
                    search = {
                        "method": "per-node sensitivity: each node alone in int8, max |delta P(fake)| on the "
                                  f"{len(probe)} calibration faces nearest P=0.5; the most sensitive kept float, the "
                                  f"fewest that keep P(fake) within {max_delta:g} on all calibration faces",
                        "max_delta": max_delta, "probe_faces": int(len(probe)),
                        "steps": [{"float_nodes": k, "max_abs_delta": round(d, 5)} for k, d in tried.items()],
                        "sensitivity": {name: round(d, 5) for name, d in by_name.items()},
                    }
        with atomic_path(dst) as final:
            shutil.move(str(out), str(final))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    info = {"file": dst.name, "mode": mode, "per_channel": per_channel,
            "weights": "int8 (7-bit range: reduce_range)" if reduce_range else "int8",
            "int8_ops": op_types_for(mode),
            "activations": "uint8, calibrated (MinMax)" if mode == "static" else "quantized per batch at run time",
            "float_nodes": "attention products (q@k, attn@v) and softmax", "bytes": dst.stat().st_size}
    if mode == "dynamic":
        info["float_nodes"] += "; every convolution"
    else:
        info["calibration_faces"] = int(len(calibration))
        info["float_units"] = f"{len(kept)} of {len(units)}"
        info["kept_float"] = [{"node": unit[0], "with": unit[1:], "sensitivity": search["sensitivity"][unit[0]]}
                              if search else {"node": unit[0], "with": unit[1:]} for unit in kept]
        if search:
            info["mixed_precision_search"] = search
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
               attention: bool = True, out_dir: str | Path | None = None, progress=None,
               max_delta: float = 0.015, reduce_range: bool = False) -> dict:
    """``model.onnx`` + ``model_quantized.onnx`` + ``onnx.json`` in the detector's folder (or
    ``out_dir``). The int8 threshold is tuned on ``calibration_crops`` to keep the float
    model's decisions; :mod:`forensics.int8.audit` measures it on labelled faces. ``max_delta``:
    the static search's bound on P(fake) moves over the calibration faces (see :func:`quantize_onnx`)."""
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
    quantized = quantize_onnx(folder / ONNX_NAME, folder / INT8_NAME, mode, batch,
                              temperature=detector.info.temperature, bias=detector.info.logit_bias, max_delta=max_delta,
                              reduce_range=reduce_range, progress=lambda fraction, text: step(0.5 + 0.4 * fraction, f"int8: {text}"))
    record = {"source_weights": "model.safetensors", "float": exported, "int8": quantized}
    if batch is not None:
        step(0.9, "tuning the int8 threshold")
        p_float = detector.fake_probability(detector.predict(torch.from_numpy(batch)))
        p_int8 = detector.fake_probability(_probabilities(open_session(folder / INT8_NAME), batch,
                                                           detector.info.temperature, detector.info.logit_bias))
        tuned = operating_point_threshold(p_float, p_int8, detector.threshold)
        quantized["threshold"] = tuned
        quantized["threshold_tuned_on"] = f"{len(batch)} calibration faces (agreement with float at {detector.threshold:g})"
        quantized["calibration_agreement"] = float(np.mean((p_int8 >= tuned) == (p_float >= detector.threshold)))
        quantized["calibration_max_abs_delta"] = float(np.abs(p_int8 - p_float).max())
    write_atomic(folder / BUILD_NAME, record)
    step(1.0, "done")
    return record
