"""Empirical bias correction of a static int8 build (a probe; lost for the default: docs/int8.md).

    .venv/bin/python scripts/probe-int8-bias-correction.py [--detector default] [--keep-float 3] [--fit 128]

Builds the default's ONNX graph as a QDQ int8 model with every quantizable unit int8 but the first
``--keep-float`` trunk units (graph order) and the attention products (the builds that reach 1.5x the
ONNX float build's speed), then shifts each int8 convolution's int32 bias so that its output's
per-channel mean over ``--fit`` calibration faces equals the float model's, convolution by convolution
in graph order. Prints the largest and mean move of P(fake) against the float model on the 256
calibration faces (the model's training faces) and on 400 of its validation faces, before and after.
Needs the face-crop cache of the training data (`.cache/crops256`, made by `python -m training`).

A trap it avoids: where the int8 graph fuses a ReLU6 into its convolution, the convolution's output
carries the float graph's *activation* name; the float target is the convolution's own output.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--detector", default="default")
    parser.add_argument("--keep-float", type=int, default=3, help="trunk units kept float, in graph order")
    parser.add_argument("--fit", type=int, default=128, help="calibration faces the corrections are fitted on")
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "labels.csv"))
    parser.add_argument("--cache", default=str(ROOT / ".cache" / "crops256"))
    args = parser.parse_args()

    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from forensics.detectors import load_detector
    from forensics.int8.audit import faces_from_record
    from forensics.int8.quantize import (INPUT_NAME, _attention_matmuls, _Calibration, _graph, _probabilities,
                                         op_types_for, quantizable_units)

    detector = load_detector(args.detector, cache=False)
    folder = Path(detector.path)
    t, bias = detector.info.temperature, detector.info.logit_bias
    cal = detector.preprocess(faces_from_record(folder, args.data, args.cache, 256, split="training").crops).numpy()
    val = detector.preprocess(faces_from_record(folder, args.data, args.cache, 400, split="validation").crops).numpy()
    work = Path(tempfile.mkdtemp(prefix="bias-correction-"))
    pre, built = work / "pre.onnx", work / "int8.onnx"
    quant_pre_process(str(folder / "model.onnx"), str(pre), skip_symbolic_shape=False)
    ops = op_types_for("static")
    excluded = _attention_matmuls(pre)
    units = quantizable_units(pre, ops, excluded)
    inside = {name for unit in units for name in unit}
    excluded += [n.name for n in _graph(pre).node if n.op_type in ops and n.name not in inside]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quantize_static(str(pre), str(built), _Calibration(cal), quant_format=QuantFormat.QDQ, op_types_to_quantize=ops,
                        nodes_to_exclude=[*excluded, *[n for u in units[:args.keep_float] for n in u]],
                        per_channel=True, weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8,
                        calibrate_method=CalibrationMethod.MinMax)

    def session(model):
        options = ort.SessionOptions()
        options.intra_op_num_threads = 2
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])

    def with_outputs(model, names):
        out = onnx.ModelProto()
        out.CopyFrom(model)
        have = {o.name for o in out.graph.output}
        out.graph.output.extend(onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None)
                                for n in names if n not in have)
        return out

    def channel_means(model, names, batch):
        run, total = session(with_outputs(model, names)), None
        for i in range(0, len(batch), 16):
            outs = run.run(names, {INPUT_NAME: batch[i:i + 16]})
            sums = [o.astype(np.float64).mean(axis=(2, 3)).sum(axis=0) for o in outs]
            total = sums if total is None else [a + b for a, b in zip(total, sums)]
        return [s / len(batch) for s in total]

    floating, quantized = onnx.load(str(pre)), onnx.load(str(built))
    made = {o: n for n in quantized.graph.node for o in n.output}
    made_float = {o: n for n in floating.graph.node for o in n.output}
    initializers = {i.name: i for i in quantized.graph.initializer}
    convs = []  # (output in the int8 graph, its float counterpart, int32 bias, its scale)
    for node in quantized.graph.node:
        if node.op_type == "Conv" and len(node.input) > 2 and getattr(made.get(node.input[2]), "op_type", "") == \
                "DequantizeLinear":
            out = node.output[0]
            before = made_float[out]
            target = before.input[0] if before.op_type in ("Clip", "Relu") else out  # the ReLU6 fused: the conv's own
            dq = made[node.input[2]]
            convs.append((out, target, dq.input[0], dq.input[1]))
    reference = session(floating)
    ref_cal, ref_val = (_probabilities(reference, b, t, bias)[:, -1] for b in (cal, val))

    def report(tag: str) -> None:
        run = session(quantized)
        d_cal = np.abs(_probabilities(run, cal, t, bias)[:, -1] - ref_cal)
        d_val = np.abs(_probabilities(run, val, t, bias)[:, -1] - ref_val)
        print(f"{tag}: |dP(fake)| calibration max {d_cal.max():.3f} mean {d_cal.mean():.4f}; "
              f"validation max {d_val.max():.3f} mean {d_val.mean():.4f}", flush=True)

    fit = cal[:args.fit]
    targets = channel_means(floating, [c[1] for c in convs], fit)
    report(f"{len(convs)} int8 convolutions, first {args.keep_float} trunk units float; before")
    for (out, _target, b, scale), want in zip(convs, targets):
        shift = channel_means(quantized, [out], fit)[0] - want
        step = numpy_helper.to_array(initializers[scale]).astype(np.float64)
        value = numpy_helper.to_array(initializers[b]).astype(np.int64) - np.round(shift / step).astype(np.int64)
        initializers[b].CopyFrom(numpy_helper.from_array(np.clip(value, -2**31, 2**31 - 1).astype(np.int32), b))
    report("after bias correction")
    return 0


if __name__ == "__main__":
    sys.exit(main())
