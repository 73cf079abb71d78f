"""CNN+ViT hybrid: MobileNetV2 features as patch tokens for a small transformer.

Registered as a timm architecture, so the hybrid is a genuine timm ``VisionTransformer`` (with
``HybridEmbed``): it loads, saves and explains through exactly the same code as any timm ViT.
The backbone is torchvision's MobileNetV2 ``features`` cut at stride 16 (96 channels), so the
ImageNet weights in torchvision's layout load into ``patch_embed.backbone`` unchanged.
"""

from __future__ import annotations

from functools import partial

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


@register_model
def forensics_hybrid_mnv2_vit(pretrained: bool = False, cut: int = 14, **kwargs) -> VisionTransformer:
    """MobileNetV2 trunk -> 1x1 projection -> CLS + position embeddings -> transformer blocks."""
    if pretrained:
        raise ValueError("forensics_hybrid_mnv2_vit has no hub weights; load a model folder instead")
    for key in [k for k in kwargs if k.startswith("pretrained_cfg") or k == "cache_dir"]:
        kwargs.pop(key)  # timm's factory passes these; VisionTransformer does not take them
    args = dict(img_size=224, embed_dim=192, depth=4, num_heads=3, mlp_ratio=4.0)
    args.update(kwargs)
    embed_layer = partial(HybridEmbed, backbone=mobilenet_v2_trunk(cut))
    return VisionTransformer(embed_layer=embed_layer, patch_size=1, **args)
