"""transformers ``AutoModelForImageClassification`` models (ViT, SigLIP, ...) with eager attention.

Models published by others load as they are: labels come from ``id2label`` and are mapped to
real/fake by name; normalisation comes from ``preprocessor_config.json`` when present. The
``forensics`` block in ``config.json`` (threshold, fake labels) is optional. Remote code is never
trusted, and only safetensors weights are read.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Iterator

import torch
from torch import nn

from forensics.detectors.base import (
    CONFIG_NAME,
    WEIGHTS_NAME,
    Detector,
    DetectorFamily,
    DetectorInfo,
    register_family,
)
from forensics.core import DetectorError, write_atomic


class _LogitsOnly(nn.Module):
    """Make a transformers classifier a plain ``tensor -> logits`` module (what Grad-CAM expects),
    optionally collecting the attentions that the same forward pass returns."""

    def __init__(self, hf_model: nn.Module):
        super().__init__()
        self.hf = hf_model
        self.collect: list[torch.Tensor] | None = None

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        want = self.collect is not None
        out = self.hf(pixel_values=pixel_values, output_attentions=want, return_dict=True)
        if want:
            for attention in out.attentions:
                if attention.requires_grad:
                    attention.retain_grad()
                self.collect.append(attention)
        return out.logits


class TransformersDetector(Detector):
    kind = "transformers"

    def __init__(self, model: nn.Module, info: DetectorInfo, path: Path | None = None):
        super().__init__(_LogitsOnly(model), info, path)
        self.hf = model
        cfg = model.config
        vision = getattr(cfg, "vision_config", None) or cfg
        self._patch = int(vision.patch_size)
        self._layers = _encoder_layers(model)
        # ViT-style models prepend a CLS token; SigLIP's vision tower has none (pure patch grid).
        self._prefix = 1 if _has_cls(model) else 0

    @property
    def has_attention(self) -> bool:
        return True

    @property
    def num_prefix_tokens(self) -> int:
        return self._prefix

    @property
    def grid_size(self) -> tuple[int, int]:
        side = self.input_size // self._patch
        return side, side

    @contextlib.contextmanager
    def capture_attention(self) -> Iterator[list[torch.Tensor]]:
        captured: list[torch.Tensor] = []
        self.model.collect = captured
        try:
            yield captured
        finally:
            self.model.collect = None

    @property
    def cam_target_layers(self) -> list[nn.Module]:
        last = self._layers[-1]
        norms = [m for m in last.children() if isinstance(m, nn.LayerNorm)]
        if not norms:
            raise DetectorError(f"{self.name}: the last encoder layer has no LayerNorm to read for Grad-CAM")
        return [norms[0]]


def _has_cls(model: nn.Module) -> bool:
    return any(isinstance(p, nn.Parameter) and name.endswith("cls_token") for name, p in model.named_parameters())


def _encoder_layers(model: nn.Module) -> nn.ModuleList:
    """The transformer layers, wherever this version of transformers keeps them (``vit.layers``,
    ``vit.encoder.layer``, ``vision_model.encoder.layers``): the longest ModuleList."""
    lists = [m for m in model.modules() if isinstance(m, nn.ModuleList) and len(m) > 0]
    if not lists:
        raise DetectorError(f"{type(model).__name__}: found no transformer layers")
    return max(lists, key=len)


@register_family
class TransformersFamily(DetectorFamily):
    name = "transformers"
    random_models = ("hf-vit", "hf-siglip")

    @classmethod
    def accepts(cls, config: dict) -> bool:
        return "model_type" in config

    @classmethod
    def info(cls, folder: Path, config: dict) -> DetectorInfo:
        """Labels, input size, normalisation and threshold, from config.json and preprocessor_config.json."""
        id2label = config.get("id2label") or {}
        labels = [id2label[k] for k in sorted(id2label, key=int)]
        if not labels:
            raise DetectorError(f"{folder}: config.json has no id2label")
        forensic = dict(config.get("forensics", {}))
        forensic.setdefault("name", folder.name)
        vision = config.get("vision_config", config)
        forensic.setdefault("input_size", int(vision.get("image_size", 224)))
        mean, std = _normalisation(folder)
        forensic.setdefault("mean", mean)
        forensic.setdefault("std", std)
        return DetectorInfo.from_dict({**forensic, "labels": labels})

    @classmethod
    def load(cls, folder: Path, config: dict) -> Detector:
        from transformers import AutoModelForImageClassification

        if not (folder / WEIGHTS_NAME).is_file() and not any(folder.glob("model-*.safetensors")):
            raise DetectorError(f"{folder}: no {WEIGHTS_NAME}; only safetensors weights are loaded")
        info = cls.info(folder, config)
        try:
            model = AutoModelForImageClassification.from_pretrained(
                folder,
                attn_implementation="eager",  # sdpa returns no attention probabilities
                trust_remote_code=False,
                use_safetensors=True,
                local_files_only=True,
            )
        except (OSError, ValueError, KeyError, RuntimeError) as exc:
            raise DetectorError(f"{folder}: transformers cannot load this model ({' '.join(str(exc).split())})") from exc
        return TransformersDetector(model, info, folder)

    @classmethod
    def save_random(cls, folder: Path, model: str, info: DetectorInfo) -> Path:
        """A two-layer ViT or SigLIP vision tower (8 px patches, width 48)."""
        from transformers import SiglipConfig, SiglipForImageClassification, ViTConfig, ViTForImageClassification

        labels = dict(num_labels=len(info.labels), id2label=dict(enumerate(info.labels)),
                      label2id={name: i for i, name in enumerate(info.labels)})
        tower = dict(image_size=info.input_size, patch_size=8, hidden_size=48, num_hidden_layers=2,
                     num_attention_heads=3, intermediate_size=96)
        if model == "hf-vit":
            return save_transformers_detector(ViTForImageClassification(ViTConfig(**tower, **labels)), folder, info)
        if model == "hf-siglip":
            text = dict(hidden_size=48, num_hidden_layers=1, num_attention_heads=3, intermediate_size=96, vocab_size=64,
                        bos_token_id=1, eos_token_id=2, pad_token_id=0)
            config = SiglipConfig(vision_config=tower, text_config=text, **labels)
            return save_transformers_detector(SiglipForImageClassification(config), folder, info)
        raise ValueError(f"unknown random transformers model {model!r}; choose from {', '.join(cls.random_models)}")


def _normalisation(folder: Path) -> tuple[list[float], list[float]]:
    path = folder / "preprocessor_config.json"
    if path.is_file():
        try:
            pre = json.loads(path.read_text(encoding="utf-8"))
            return list(pre.get("image_mean", [0.5] * 3)), list(pre.get("image_std", [0.5] * 3))
        except (OSError, json.JSONDecodeError) as exc:
            raise DetectorError(f"{path}: not valid JSON ({exc})") from exc
    return [0.5] * 3, [0.5] * 3


def save_transformers_detector(model: nn.Module, folder: str | Path, info: DetectorInfo, card: str | None = None) -> Path:
    """Write a transformers classifier as a model folder with the forensics block and a card."""
    folder = Path(folder)
    model.config.id2label = dict(enumerate(info.labels))
    model.config.label2id = {name: i for i, name in enumerate(info.labels)}
    model.save_pretrained(folder, safe_serialization=True)
    config = json.loads((folder / CONFIG_NAME).read_text(encoding="utf-8"))
    config["forensics"] = {k: v for k, v in info.to_dict().items() if k != "labels"}
    write_atomic(folder / CONFIG_NAME, config)
    write_atomic(
        folder / "preprocessor_config.json",
        {
            "image_processor_type": "ViTImageProcessor",
            "do_resize": True,
            "size": {"height": info.input_size, "width": info.input_size},
            "do_normalize": True,
            "image_mean": list(info.mean),
            "image_std": list(info.std),
        },
    )
    from forensics.detectors.card import write_model_card

    write_model_card(folder, info, type(model).__name__, "transformers", extra=card)
    return folder
