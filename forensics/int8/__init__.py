"""ONNX float and int8 builds of a detector and what they cost: ``quantize`` (export, int8
quantization, the build record), ``audit`` (float vs int8 on labelled faces), ``cli``
(``python -m forensics quantize|audit``). Nothing is imported here: onnxruntime and torch load
only when a build or an audit is asked for."""
