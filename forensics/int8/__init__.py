"""ONNX float and int8 builds: ``quantize`` (export, int8, the build record), ``audit`` (float vs
int8 on labelled faces), ``cli``. Nothing imported here: torch and onnxruntime load when asked for."""
