"""Explanations for a detector's decision, all from one forward and one backward pass.

``explain`` runs the model once with attention captured and Grad-CAM's recorder attached, takes
one backward pass from the target class's logit (parameters are frozen, so only activation
gradients are computed), and derives every requested map from that record:

- ``attention``: last-layer attention (:func:`~forensics.explain.attention.last_layer_attention`)
- ``rollout``: attention rollout (:func:`~forensics.explain.attention.attention_rollout`)
- ``gradcam`` / ``gradcam++``: through pytorch_grad_cam, sharing the pass (:mod:`.cam`)
- ``patches``: a patch-level detector's own patch scores, P(target) per patch, read from the same pass

Maps come back at the detector's input size (the crop's size), normalised to [0, 1].
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from forensics.catalog import EXTRA_METHODS, METHODS, parse_methods  # noqa: F401  (parse_methods: re-exported)
from forensics.detectors.base import Detector
from forensics.explain.attention import HEAD_FUSIONS, attention_rollout, last_layer_attention
from forensics.explain.cam import CAM_METHODS, SharedCams
from forensics.overlay import normalize_map, resize_map

ATTENTION_METHODS = ("attention", "rollout")


@dataclass
class ExplainOptions:
    """How the maps are made. ``class_weighted`` weights attention heads by the target class's
    gradients; off, attention and rollout are the class-agnostic maps of the papers."""

    head_fusion: str = "mean"
    discard_ratio: float = 0.9
    class_weighted: bool = True

    def __post_init__(self) -> None:
        if self.head_fusion not in HEAD_FUSIONS:
            raise ValueError(f"head_fusion must be one of {HEAD_FUSIONS}, not {self.head_fusion!r}")
        if not 0.0 <= self.discard_ratio < 1.0:
            raise ValueError(f"discard_ratio must be in [0, 1), not {self.discard_ratio}")


@dataclass
class Explanation:
    """Maps ``method -> (B, S, S)`` float32 in [0, 1], with what the pass also produced."""

    maps: dict[str, np.ndarray]
    probabilities: np.ndarray
    targets: list[int]
    skipped: dict[str, str] = field(default_factory=dict)


def explain(
    detector: Detector,
    batch: torch.Tensor,
    methods: Sequence[str] = METHODS,
    target: int | str | None = None,
    options: ExplainOptions | None = None,
) -> Explanation:
    """Every requested map for a preprocessed batch, from a single forward+backward pass.

    ``target``: a class index or label, ``"fake"`` (default: the most probable fake class),
    ``"real"`` or ``"predicted"``. Attention methods on a model without attention are skipped
    with the reason in ``Explanation.skipped``.
    """
    with detector.lock:  # hooks on the shared model: no other thread may run it meanwhile
        return _explain(detector, batch, methods, target, options)


def _explain(detector: Detector, batch: torch.Tensor, methods: Sequence[str], target: int | str | None,
             options: ExplainOptions | None) -> Explanation:
    options = options or ExplainOptions()
    methods = list(dict.fromkeys(methods))
    skipped: dict[str, str] = {}
    attention_wanted = [m for m in methods if m in ATTENTION_METHODS]
    if attention_wanted and not detector.has_attention:
        for m in attention_wanted:
            skipped[m] = f"{detector.kind} detector has no attention layers"
        attention_wanted = []
    patches_wanted = "patches" in methods and detector.patch_score_module is not None
    if "patches" in methods and not patches_wanted:
        skipped["patches"] = f"{detector.kind} detector does not score patches"
    cam_wanted = [m for m in methods if m in CAM_METHODS]
    if not detector.differentiable:
        for m in cam_wanted:
            skipped[m] = f"{detector.kind} detector has no gradients (Grad-CAM needs the PyTorch model)"
        cam_wanted = []
        options = ExplainOptions(options.head_fusion, options.discard_ratio, class_weighted=False)
    needs_backward = bool(cam_wanted) or (bool(attention_wanted) and options.class_weighted)

    inputs = batch.detach().clone().requires_grad_(needs_backward)
    cams = SharedCams(detector.model, detector.cam_target_layers, detector.cam_reshape, cam_wanted) if cam_wanted else None
    attention_ctx = detector.capture_attention() if attention_wanted else contextlib.nullcontext([])
    patch_logits: list[torch.Tensor] = []
    patch_hook = (detector.patch_score_module.register_forward_hook(lambda m, i, o: patch_logits.append(o.detach()))
                  if patches_wanted else None)
    try:
        with torch.enable_grad(), attention_ctx as attentions:
            logits = cams.recorder(inputs) if cams else detector.model(inputs)
            probabilities = detector.probabilities(logits).numpy()
            targets = detector.resolve_target(target, probabilities)
            if needs_backward:
                logits[torch.arange(len(targets)), torch.tensor(targets)].sum().backward()
        maps: dict[str, np.ndarray] = {}
        if patch_logits:
            p_fake = torch.sigmoid(patch_logits[-1][:, 0].float())
            fake = set(detector.fake_indices)
            per_item = torch.stack([p_fake[i] if t in fake else 1.0 - p_fake[i] for i, t in enumerate(targets)])
            size = (int(inputs.shape[-2]), int(inputs.shape[-1]))
            maps["patches"] = np.stack([resize_map(m, size) for m in per_item.numpy()]).astype(np.float32)
        if cams:
            maps.update(cams.maps(inputs, targets))
        if attention_wanted:
            grads = [a.grad for a in attentions] if options.class_weighted else None
            prefix, grid = detector.num_prefix_tokens, detector.grid_size
            if "attention" in attention_wanted:
                maps["attention"] = _to_input_size(last_layer_attention(attentions, prefix, grid, grads), inputs)
            if "rollout" in attention_wanted:
                rollout = attention_rollout(attentions, prefix, grid, options.head_fusion, options.discard_ratio, grads)
                maps["rollout"] = _to_input_size(rollout, inputs)
    finally:
        if cams:
            cams.__exit__()
        if patch_hook is not None:
            patch_hook.remove()
    ordered = {m: maps[m] for m in methods if m in maps}
    return Explanation(ordered, probabilities, targets, skipped)


def _to_input_size(grid_maps: torch.Tensor, inputs: torch.Tensor) -> np.ndarray:
    size = (int(inputs.shape[-2]), int(inputs.shape[-1]))
    return np.stack([normalize_map(resize_map(m, size)) for m in grid_maps.detach().float().numpy()]).astype(np.float32)


__all__ = ["ATTENTION_METHODS", "EXTRA_METHODS", "METHODS", "ExplainOptions", "Explanation", "explain", "parse_methods"]
