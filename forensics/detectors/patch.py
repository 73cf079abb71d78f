"""Patch-level detector in the LaDeDa style (Cavia et al., 2024): a CNN with a small receptive
field scores every local patch; the image score is the mean of the top-k patch scores. The map of
patch scores is its own explanation: which local textures look manipulated.

Registered as timm architectures, so it saves, loads and runs through the timm family. Its two
logits are ``[-s/2, s/2]`` for the image score ``s``: softmax gives ``P(fake) = sigmoid(s)``, and
both classes have a gradient for Grad-CAM.
"""

from __future__ import annotations

import torch
from timm.models import register_model
from torch import nn


def _block(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class PatchScoreNet(nn.Module):
    """Four 3x3 convolutions (two of stride 2) and 1x1 layers: each output cell sees a 19x19 pixel
    patch, one cell per 4x4 pixels. ``topk`` is the share of patches averaged into the image score."""

    def __init__(self, width: int = 32, topk: float = 0.1, num_classes: int = 2, **_ignored):
        super().__init__()
        if num_classes != 2:
            raise ValueError("the patch-level detector scores real vs fake: num_classes must be 2")
        self.topk = float(topk)
        self.num_classes = num_classes
        self.num_features = self.build_features(width)
        self.score = nn.Conv2d(self.num_features, 1, 1)
        self.pretrained_cfg = {}

    def build_features(self, width: int) -> int:
        """Make the layers that turn pixels into per-patch features; returns their channel count."""
        self.features = nn.Sequential(
            _block(3, width, 1), _block(width, width, 2), _block(width, 2 * width, 1), _block(2 * width, 2 * width, 2),
            nn.Conv2d(2 * width, 2 * width, 1), nn.ReLU(inplace=True),
        )
        return 2 * width

    def patch_scores(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, H/4, W/4)`` logit of each patch being manipulated."""
        return self.score(self.forward_features(x))[:, 0]

    def pool(self, scores: torch.Tensor) -> torch.Tensor:
        flat = scores.flatten(1)
        k = max(1, int(round(flat.shape[1] * self.topk)))
        return flat.topk(k, dim=1).values.mean(dim=1)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.pool(self.patch_scores(x))
        return torch.stack([-0.5 * s, 0.5 * s], dim=1)


def _clean(kwargs: dict) -> dict:
    return {k: v for k, v in kwargs.items() if not (k.startswith("pretrained_cfg") or k == "cache_dir")}


class PretrainedPatchScoreNet(PatchScoreNet):
    """LaDeDa's recipe (an ImageNet backbone cut to a small receptive field) with MobileNetV2: its
    first four stages (torchvision's ``features[:4]``: stride 4, a 19x19 pixel receptive field)
    give each patch ImageNet features; 1x1 layers of width ``width`` score it. The trunk loads
    torchvision's ImageNet weights under the same names (``features.*``)."""

    def __init__(self, width: int = 176, topk: float = 0.1, num_classes: int = 2, **_ignored):
        super().__init__(width, topk, num_classes)

    def build_features(self, width: int) -> int:
        from torchvision.models import mobilenet_v2

        self.features = mobilenet_v2().features[:4]
        self.head = nn.Sequential(nn.Conv2d(24, width, 1), nn.ReLU(inplace=True), nn.Conv2d(width, width, 1),
                                  nn.ReLU(inplace=True))
        return width

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@register_model
def forensics_patch_mnv2(pretrained: bool = False, **kwargs) -> PretrainedPatchScoreNet:
    """The patch-level teacher on an ImageNet MobileNetV2 trunk (about 52k parameters)."""
    return PretrainedPatchScoreNet(**_clean(kwargs))


@register_model
def forensics_patch_cnn(pretrained: bool = False, **kwargs) -> PatchScoreNet:
    """The patch-level teacher (width 32, about 70k parameters)."""
    return PatchScoreNet(**{"width": 32, **_clean(kwargs)})


@register_model
def forensics_patch_cnn_tiny(pretrained: bool = False, **kwargs) -> PatchScoreNet:
    """The distilled student (width 8, about 5k parameters: over 10x fewer than the teacher)."""
    return PatchScoreNet(**{"width": 8, **_clean(kwargs)})
