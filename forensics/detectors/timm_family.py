"""timm models: ViTs (attention read with fused attention off), CNNs (EfficientNet, MobileNet)
and the CNN+ViT hybrid, all from a folder in timm's Hugging Face layout.

``config.json`` is what ``timm.models.load_model_config_from_hf`` reads (``architecture``,
``num_classes``, ``label_names``, ``model_args``, ``pretrained_cfg``), plus a ``forensics``
block with the decision threshold and which labels are fake. Weights are ``model.safetensors``;
a ``pytorch_model.bin`` is read only with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator

import timm
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from forensics.detectors import hybrid, patch  # noqa: F401  (register our architectures with timm)
from forensics.detectors.base import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    Detector,
    DetectorFamily,
    DetectorInfo,
    register_family,
)
from forensics.core import DetectorError, atomic_path, write_atomic


def _attention_modules(model: nn.Module) -> list[nn.Module]:
    """timm attention blocks: they carry ``fused_attn`` and an ``attn_drop`` applied to the probabilities."""
    return [m for m in model.modules() if hasattr(m, "fused_attn") and isinstance(getattr(m, "attn_drop", None), nn.Module)]


class TimmViTDetector(Detector):
    """A timm VisionTransformer (or the hybrid, whose patch tokens come from a CNN)."""

    kind = "timm-vit"

    def __init__(self, model: nn.Module, info: DetectorInfo, path: Path | None = None):
        super().__init__(model, info, path)
        self._attention = _attention_modules(model)
        for module in self._attention:
            # Fused (SDPA) attention never materialises the probabilities: hooks would see nothing.
            module.fused_attn = False

    @property
    def has_attention(self) -> bool:
        return bool(self._attention)

    @property
    def num_prefix_tokens(self) -> int:
        return int(getattr(self.model, "num_prefix_tokens", 1))

    @property
    def grid_size(self) -> tuple[int, int]:
        rows, cols = self.model.patch_embed.grid_size
        return int(rows), int(cols)

    @contextlib.contextmanager
    def capture_attention(self) -> Iterator[list[torch.Tensor]]:
        captured: list[torch.Tensor] = []

        def keep(_module, _inputs, output):
            if output.requires_grad:
                output.retain_grad()
            captured.append(output)

        handles = [m.attn_drop.register_forward_hook(keep) for m in self._attention]
        try:
            yield captured
        finally:
            for handle in handles:
                handle.remove()

    @property
    def cam_target_layers(self) -> list[nn.Module]:
        # The last block's first norm: its tokens still carry spatial layout and feed the final attention.
        return [self.model.blocks[-1].norm1]


class TimmHybridDetector(TimmViTDetector):
    """The CNN+ViT hybrid: a ViT whose patch tokens come from a CNN (``patch_embed.backbone``)."""

    kind = "hybrid"


class TimmCNNDetector(Detector):
    """A timm CNN: Grad-CAM reads the last feature map before global pooling."""

    kind = "timm-cnn"

    def __init__(self, model: nn.Module, info: DetectorInfo, path: Path | None = None):
        super().__init__(model, info, path)
        self._target = _last_feature_map_module(model, info.input_size)

    @property
    def cam_target_layers(self) -> list[nn.Module]:
        return [self._target]


class TimmPatchDetector(TimmCNNDetector):
    """The patch-level detector: Grad-CAM as for any CNN, plus its own patch-score map."""

    kind = "patch"

    @property
    def patch_score_module(self) -> nn.Module:
        return self.model.score


def _last_feature_map_module(model: nn.Module, size: int) -> nn.Module:
    """The top-level child that produces ``forward_features``' map (bn2, blocks, stages...).

    Found by one small forward pass, so it holds for any timm CNN layout, including those whose
    head convolution comes after global pooling (MobileNetV3).
    """
    seen: list[tuple[nn.Module, tuple]] = []

    def record(module, _inputs, output):
        if isinstance(output, torch.Tensor) and output.ndim == 4:
            seen.append((module, tuple(output.shape)))

    hooks = [child.register_forward_hook(record) for child in model.children()]
    try:
        with torch.inference_mode():
            features = model.forward_features(torch.zeros(1, 3, size, size))
    finally:
        for hook in hooks:
            hook.remove()
    matching = [module for module, shape in seen if shape == tuple(features.shape)]
    if features.ndim != 4 or not matching:
        raise DetectorError(f"{type(model).__name__}: found no convolutional feature map for Grad-CAM")
    return matching[-1]


def _is_vit(model: nn.Module) -> bool:
    return hasattr(model, "blocks") and hasattr(model, "patch_embed") and bool(_attention_modules(model))


@register_family
class TimmFamily(DetectorFamily):
    name = "timm"
    random_models = ("timm-vit", "timm-vit-nocls", "timm-cnn", "hybrid", "patch")
    bench_models = ("vit-small",)

    @classmethod
    def accepts(cls, config: dict) -> bool:
        return "architecture" in config and "model_type" not in config

    @classmethod
    def info(cls, folder: Path, config: dict) -> DetectorInfo:
        """Labels, input size, normalisation and threshold, from config.json alone."""
        pretrained = config.get("pretrained_cfg", {})
        labels = config.get("label_names") or pretrained.get("label_names")
        num_classes = int(config.get("num_classes") or pretrained.get("num_classes") or 0)
        if not labels:
            raise DetectorError(f"{folder}: config.json names no label_names for its {num_classes} classes")
        forensic = dict(config.get("forensics", {}))
        input_size = pretrained.get("input_size", [3, 224, 224])
        forensic.setdefault("name", folder.name)
        forensic.setdefault("input_size", int(input_size[-1]))
        forensic.setdefault("mean", pretrained.get("mean", (0.485, 0.456, 0.406)))
        forensic.setdefault("std", pretrained.get("std", (0.229, 0.224, 0.225)))
        return DetectorInfo.from_dict({**forensic, "labels": list(labels)})

    @classmethod
    def load(cls, folder: Path, config: dict) -> Detector:
        arch = config["architecture"]
        pretrained = config.get("pretrained_cfg", {})
        num_classes = int(config.get("num_classes") or pretrained.get("num_classes") or 0)
        info = cls.info(folder, config)
        try:
            model = timm.create_model(arch, pretrained=False, num_classes=num_classes, **config.get("model_args", {}))
        except (RuntimeError, ValueError, TypeError, KeyError) as exc:
            raise DetectorError(f"{folder}: cannot build timm architecture {arch!r} ({exc})") from exc
        model.load_state_dict(read_state_dict(folder), strict=True)
        if hasattr(model, "patch_scores"):
            return TimmPatchDetector(model, info, folder)
        if not _is_vit(model):
            return TimmCNNDetector(model, info, folder)
        cnn_tokens = isinstance(getattr(model.patch_embed, "backbone", None), nn.Module)
        return (TimmHybridDetector if cnn_tokens else TimmViTDetector)(model, info, folder)

    @classmethod
    def save_random(cls, folder: Path, model: str, info: DetectorInfo) -> Path:
        architecture, args = _random_spec(model, info.input_size)
        network = timm.create_model(architecture, pretrained=False, num_classes=len(info.labels), **args)
        return save_timm_detector(network, folder, architecture, info, model_args=args)


def _random_spec(model: str, size: int) -> tuple[str, dict]:
    """The timm architecture and arguments of a random model: tiny ViTs (8 px patches), the smallest
    MobileNetV3, the hybrid and the patch CNN; ViT-Small at full size for benchmarks."""
    vit = dict(img_size=size, patch_size=8, embed_dim=48, depth=2, num_heads=3)
    specs = {"timm-vit": ("vit_tiny_patch16_224", vit),
             "timm-vit-nocls": ("vit_tiny_patch16_224", dict(vit, class_token=False, global_pool="avg")),
             "timm-cnn": ("mobilenetv3_small_050", {}),
             "hybrid": ("forensics_hybrid_mnv2_vit", dict(img_size=size, embed_dim=48, depth=2, num_heads=3)),
             "patch": ("forensics_patch_cnn", {}),
             "vit-small": ("vit_small_patch16_224", dict(img_size=size))}
    if model not in specs:
        raise ValueError(f"unknown random timm model {model!r}; choose from {', '.join(specs)}")
    return specs[model]


def read_state_dict(folder: Path) -> dict[str, torch.Tensor]:
    """Weights from ``model.safetensors``; a ``.bin`` only if it loads without unpickling code."""
    safetensors = folder / WEIGHTS_NAME
    if safetensors.is_file():
        try:
            return load_file(str(safetensors))
        except Exception as exc:  # safetensors raises its own error types
            raise DetectorError(f"{safetensors}: unreadable safetensors file ({exc})") from exc
    pickled = folder / "pytorch_model.bin"
    if pickled.is_file():
        try:
            return torch.load(pickled, map_location="cpu", weights_only=True)
        except Exception as exc:
            raise DetectorError(f"{pickled}: refused: it does not load with weights_only=True "
                                f"({_unpickling_reason(exc)})") from exc
    raise DetectorError(f"{folder}: no {WEIGHTS_NAME} in the model folder")


def _unpickling_reason(exc: Exception) -> str:
    """torch's weights_only refusal in a few words (its own message is a page of advice)."""
    import re

    text = " ".join(str(exc).split())
    found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
    return f"it would unpickle {found.group(1)}" if found else text[:160]


def save_timm_detector(
    model: nn.Module,
    folder: str | Path,
    architecture: str,
    info: DetectorInfo,
    model_args: dict | None = None,
    card: str | None = None,
) -> Path:
    """Write a timm model as a model folder (config.json, model.safetensors, README.md)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    size = info.input_size
    config = {
        "architecture": architecture,
        "num_classes": len(info.labels),
        "num_features": int(getattr(model, "num_features", 0)),
        "label_names": list(info.labels),
        "model_args": dict(model_args or {}),
        "pretrained_cfg": {
            "input_size": [3, size, size],
            "mean": list(info.mean),
            "std": list(info.std),
            "interpolation": "bicubic",
            "crop_pct": 1.0,
            "num_classes": len(info.labels),
        },
        "forensics": {k: v for k, v in info.to_dict().items() if k != "labels"},
    }
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(folder / WEIGHTS_NAME) as tmp:
        save_file(state, str(tmp))
    write_atomic(folder / CONFIG_NAME, config)
    from forensics.detectors.card import write_model_card

    write_model_card(folder, info, architecture, "timm", extra=card)
    return folder
