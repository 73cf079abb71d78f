"""Benchmark: what the four-map explanation costs against one forward and one forward+backward.

All cases run interleaved in one process, round after round, and each is reported as a median;
the figures that matter are the ratios, which shared, noisy machines leave stable.

Cases (same model, same batch, attention unfused as the explanations need it):
- ``forward``: inference only.
- ``forward_backward``: forward + backward of the target logit with parameter gradients (a
  training step without the optimizer).
- ``forward_backward_input``: the same with frozen parameters, gradients to activations only
  (what the explanation pass needs).
- ``four_maps``: :func:`forensics.explain.explain` for attention, rollout, Grad-CAM and Grad-CAM++.
- ``four_maps_naive``: pytorch_grad_cam's ``GradCAM(...)(x)`` and ``GradCAMPlusPlus(...)(x)``
  plus one attention-capturing forward each for attention and rollout: a pass per method.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from pytorch_grad_cam import GradCAM, GradCAMPlusPlus
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

from forensics.detectors import load_detector
from forensics.detectors.base import Detector
from forensics.detectors.random_models import make_random_detector
from forensics.explain import METHODS, explain
from forensics.explain.attention import attention_rollout, last_layer_attention


def _cases(det: Detector, batch: torch.Tensor) -> dict[str, Callable[[], object]]:
    model, targets = det.model, [1] * len(batch)

    def forward():
        with torch.inference_mode():
            model(batch)

    def forward_backward():
        model.requires_grad_(True)
        try:
            model.zero_grad(set_to_none=True)
            model(batch)[:, 1].sum().backward()
        finally:
            model.requires_grad_(False)
            model.zero_grad(set_to_none=True)

    def forward_backward_input():
        x = batch.clone().requires_grad_(True)
        model(x)[:, 1].sum().backward()

    def four_maps():
        explain(det, batch, METHODS, target=1)

    def four_maps_naive():
        wanted = [ClassifierOutputTarget(t) for t in targets]
        x = batch.clone().requires_grad_(True)
        for cam_class in (GradCAM, GradCAMPlusPlus):
            with cam_class(model, det.cam_target_layers, det.cam_reshape) as cam:
                cam(x, wanted)
        if det.has_attention:
            for method in ("attention", "rollout"):
                with torch.inference_mode(), det.capture_attention() as attentions:
                    model(batch)
                if method == "attention":
                    last_layer_attention(attentions, det.num_prefix_tokens, det.grid_size)
                else:
                    attention_rollout(attentions, det.num_prefix_tokens, det.grid_size)

    return {
        "forward": forward,
        "forward_backward": forward_backward,
        "forward_backward_input": forward_backward_input,
        "four_maps": four_maps,
        "four_maps_naive": four_maps_naive,
    }


def measure(det: Detector, batch_size: int = 1, repeats: int = 10, warmup: int = 2) -> dict:
    """Median milliseconds per case and the ratios between them."""
    rng = np.random.default_rng(0)
    crops = [rng.integers(0, 256, (det.input_size, det.input_size, 3), dtype=np.uint8) for _ in range(batch_size)]
    batch = det.preprocess(crops)
    cases = _cases(det, batch)
    times: dict[str, list[float]] = {name: [] for name in cases}
    for round_index in range(warmup + repeats):
        for name, fn in cases.items():
            start = time.perf_counter()
            fn()
            elapsed = (time.perf_counter() - start) * 1000.0
            if round_index >= warmup:
                times[name].append(elapsed)
    median = {name: statistics.median(values) for name, values in times.items()}
    return {
        "model": det.name,
        "parameters": sum(p.numel() for p in det.model.parameters()),
        "input_size": det.input_size,
        "batch": batch_size,
        "repeats": repeats,
        "threads": torch.get_num_threads(),
        "median_ms": {k: round(v, 2) for k, v in median.items()},
        "ratios": {
            "four_maps / forward_backward": round(median["four_maps"] / median["forward_backward"], 3),
            "four_maps / forward_backward_input": round(median["four_maps"] / median["forward_backward_input"], 3),
            "four_maps / forward": round(median["four_maps"] / median["forward"], 3),
            "four_maps_naive / four_maps": round(median["four_maps_naive"] / median["four_maps"], 3),
        },
    }


def run_bench(args) -> int:
    """CLI entry: ``python -m forensics bench``."""
    if args.model == "vit-small":
        with tempfile.TemporaryDirectory(prefix="bench-") as scratch:  # the random model is not kept
            folder = Path(scratch) / "vit-small"
            make_random_detector(folder, "vit-small", size=args.size)
            det = load_detector(folder, allow_untrained=True, cache=False)
    else:
        det = load_detector(args.model, allow_untrained=True, cache=False)
    report = measure(det, batch_size=args.batch, repeats=args.repeats)
    text = json.dumps(report, indent=2)
    if args.json_out == "-":
        print(text)
    else:
        if args.json_out:
            Path(args.json_out).write_text(text + "\n", encoding="utf-8")
        print(f"{report['model']}: {report['parameters'] / 1e6:.1f}M parameters, "
              f"{report['input_size']}px, batch {report['batch']}, {report['threads']} threads, median of {report['repeats']}")
        for name, ms in report["median_ms"].items():
            print(f"  {name:<24} {ms:9.1f} ms")
        for name, ratio in report["ratios"].items():
            print(f"  {name:<36} {ratio:6.2f}x")
        bar = report["ratios"]["four_maps / forward_backward"]
        print(f"four maps cost {bar:.2f}x one forward+backward (bar: <= 1.5x): {'PASS' if bar <= 1.5 else 'FAIL'}",
              file=sys.stderr)
    return 0
