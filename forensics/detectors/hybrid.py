"""CNN+ViT hybrids: MobileNetV2 or EfficientNet-Lite0 features as patch tokens for a small transformer.

Registered as a timm architecture, so the hybrid is a genuine timm ``VisionTransformer`` (with
``HybridEmbed``): it loads, saves and explains through exactly the same code as any timm ViT.
The backbone is torchvision's MobileNetV2 ``features`` cut at stride 16 (96 channels), so the
ImageNet weights in torchvision's layout load into ``patch_embed.backbone`` unchanged.
"""

from __future__ import annotations

from functools import partial

import timm
from timm.layers import HybridEmbed
from timm.models import register_model
from timm.models.vision_transformer import VisionTransformer
from torch import nn
from torchvision.models import mobilenet_v2

# torchvision MobileNetV2 ``features`` indices: 14 ends the stride-16 stage (96 channels),
# 18 is the full stride-32 network (1280 channels).
_STRIDE_OF_CUT = {7: 8, 14: 16, 18: 32}


def mobilenet_v2_trunk(cut: int = 14) -> nn.Module:
    """MobileNetV2 ``features[:cut]`` (randomly initialised; pretrained weights are loaded by training)."""
    if cut not in _STRIDE_OF_CUT:
        raise ValueError(f"cut must be one of {sorted(_STRIDE_OF_CUT)}")
    return mobilenet_v2(weights=None).features[:cut]


def efficientnet_lite0_trunk() -> nn.Module:
    """timm's EfficientNet-Lite0 (ReLU6, no squeeze-excitation: quantises well) up to the end of
    its stride-16 stages (112 channels), randomly initialised; training loads the ImageNet weights."""
    net = timm.create_model("efficientnet_lite0", pretrained=False)
    return nn.Sequential(net.conv_stem, net.bn1, *net.blocks[:5])


def _hybrid(name: str, trunk: nn.Module, pretrained: bool, kwargs: dict) -> VisionTransformer:
    """Trunk -> 1x1 projection -> CLS + position embeddings -> transformer blocks."""
    if pretrained:
        raise ValueError(f"{name} has no hub weights; load a model folder instead")
    for key in [k for k in kwargs if k.startswith("pretrained_cfg") or k == "cache_dir"]:
        kwargs.pop(key)  # timm's factory passes these; VisionTransformer does not take them
    args = dict(img_size=224, embed_dim=192, depth=4, num_heads=3, mlp_ratio=4.0)
    args.update(kwargs)
    return VisionTransformer(embed_layer=partial(HybridEmbed, backbone=trunk), patch_size=1, **args)


@register_model
def forensics_hybrid_mnv2_vit(pretrained: bool = False, cut: int = 14, **kwargs) -> VisionTransformer:
    """MobileNetV2 trunk (cut at stride 16 by default) under a small ViT."""
    return _hybrid("forensics_hybrid_mnv2_vit", mobilenet_v2_trunk(cut), pretrained, kwargs)


@register_model
def forensics_hybrid_effl0_vit(pretrained: bool = False, **kwargs) -> VisionTransformer:
    """EfficientNet-Lite0 trunk (stride 16) under a small ViT."""
    return _hybrid("forensics_hybrid_effl0_vit", efficientnet_lite0_trunk(), pretrained, kwargs)
