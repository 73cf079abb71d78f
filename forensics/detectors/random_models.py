"""Small randomly initialised model folders of every family, for tests and benchmarks.

They are written with ``trained: false``: ``load_detector`` refuses them unless asked with
``allow_untrained=True``, so none is ever offered to a user as a detector.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import timm
import torch

from forensics.detectors.base import DetectorInfo
from forensics.detectors.timm_family import save_timm_detector
from forensics.detectors.transformers_family import save_transformers_detector

KINDS = ("timm-vit", "timm-vit-nocls", "timm-cnn", "hybrid", "patch", "hf-vit", "hf-siglip")


def _timm_spec(kind: str, size: int) -> tuple[str, dict]:
    if kind == "timm-vit":
        return "vit_tiny_patch16_224", dict(img_size=size, patch_size=8, embed_dim=48, depth=2, num_heads=3)
    if kind == "timm-vit-nocls":
        return "vit_tiny_patch16_224", dict(
            img_size=size, patch_size=8, embed_dim=48, depth=2, num_heads=3, class_token=False, global_pool="avg"
        )
    if kind == "timm-cnn":
        return "mobilenetv3_small_050", {}
    if kind == "hybrid":
        return "forensics_hybrid_mnv2_vit", dict(img_size=size, embed_dim=48, depth=2, num_heads=3)
    if kind == "patch":
        return "forensics_patch_cnn", {}
    if kind == "patch-tiny":
        return "forensics_patch_cnn_tiny", {}
    if kind == "vit-small":
        return "vit_small_patch16_224", dict(img_size=size)
    raise ValueError(f"unknown kind {kind!r}; choose from {KINDS}")


def make_random_detector(
    folder: str | Path,
    kind: str = "timm-vit",
    size: int = 64,
    labels: Sequence[str] = ("real", "fake"),
    seed: int = 0,
) -> Path:
    """Write an untrained model folder of the given family and return its path."""
    torch.manual_seed(seed)
    folder = Path(folder)
    info = DetectorInfo(
        name=f"random-{kind}", family="", labels=list(labels), input_size=size, trained=False,
        description=f"Randomly initialised {kind} for tests.",
    )
    if kind.startswith("hf-"):
        return save_transformers_detector(_hf_model(kind, size, labels), folder, info)
    arch, args = _timm_spec(kind, size)
    model = timm.create_model(arch, pretrained=False, num_classes=len(labels), **args)
    return save_timm_detector(model, folder, arch, info, model_args=args)


def _hf_model(kind: str, size: int, labels: Sequence[str]):
    from transformers import SiglipConfig, SiglipForImageClassification, ViTConfig, ViTForImageClassification

    id2label = dict(enumerate(labels))
    tower = dict(
        image_size=size, patch_size=8, hidden_size=48, num_hidden_layers=2, num_attention_heads=3, intermediate_size=96
    )
    if kind == "hf-vit":
        config = ViTConfig(**tower, num_labels=len(labels), id2label=id2label, label2id={v: k for k, v in id2label.items()})
        return ViTForImageClassification(config)
    if kind == "hf-siglip":
        text = dict(hidden_size=48, num_hidden_layers=1, num_attention_heads=3, intermediate_size=96, vocab_size=64,
                    bos_token_id=1, eos_token_id=2, pad_token_id=0)
        config = SiglipConfig(vision_config=tower, text_config=text, num_labels=len(labels), id2label=id2label,
                              label2id={v: k for k, v in id2label.items()})
        return SiglipForImageClassification(config)
    raise ValueError(f"unknown kind {kind!r}; choose from {KINDS}")
