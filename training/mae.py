"""Masked-image-modelling pretraining of a timm ViT, MAE-style (He et al., 2022): 75% of the
patches are hidden, the encoder sees the rest, a light decoder predicts the hidden patches'
pixels (normalised per patch), and the loss counts only the hidden patches. The encoder's weights
then start fine-tuning (``train --init-from``), so a ViT can learn faces from real images alone."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.models.vision_transformer import Block, VisionTransformer
from torch import nn


class MaskedAutoencoder(nn.Module):
    def __init__(self, encoder: VisionTransformer, decoder_dim: int = 64, decoder_depth: int = 1,
                 mask_ratio: float = 0.75):
        super().__init__()
        if not 0 < mask_ratio < 1:
            raise ValueError("mask_ratio must be in (0, 1)")
        self.encoder, self.mask_ratio = encoder, mask_ratio
        self.patch = encoder.patch_embed.patch_size[0]
        dim = encoder.embed_dim
        n = encoder.patch_embed.num_patches
        self.to_decoder = nn.Linear(dim, decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_dim))
        self.decoder_pos = nn.Parameter(torch.randn(1, n, decoder_dim) * 0.02)
        self.decoder = nn.Sequential(*[Block(decoder_dim, max(1, decoder_dim // 32)) for _ in range(decoder_depth)])
        self.to_pixels = nn.Linear(decoder_dim, self.patch * self.patch * 3)

    def patchify(self, images: torch.Tensor) -> torch.Tensor:
        b, c, h, w = images.shape
        p = self.patch
        x = images.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 3, 5, 1)
        return x.reshape(b, (h // p) * (w // p), p * p * c)

    def forward(self, images: torch.Tensor, generator: torch.Generator | None = None):
        """(loss on masked patches, predictions, mask: 1 where hidden)."""
        enc = self.encoder
        tokens = enc.patch_embed(images)
        prefix = enc.num_prefix_tokens
        pos = enc.pos_embed[:, prefix:] if enc.pos_embed is not None else 0
        tokens = tokens + pos
        b, n, d = tokens.shape
        keep = int(round(n * (1 - self.mask_ratio)))
        noise = torch.rand(b, n, generator=generator, device=tokens.device)
        order = noise.argsort(dim=1)
        visible = order[:, :keep]
        x = torch.gather(tokens, 1, visible[..., None].expand(-1, -1, d))
        if enc.cls_token is not None:
            cls = enc.cls_token + (enc.pos_embed[:, :1] if enc.pos_embed is not None else 0)
            x = torch.cat([cls.expand(b, -1, -1), x], dim=1)
        x = enc.norm(enc.blocks(x))[:, prefix:]
        x = self.to_decoder(x)
        full = self.mask_token.to(x.dtype).expand(b, n, -1).clone()  # bf16 under autocast
        full.scatter_(1, visible[..., None].expand(-1, -1, full.shape[-1]), x)
        pred = self.to_pixels(self.decoder(full + self.decoder_pos))
        target = self.patchify(images)
        target = (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True) + 1e-6).sqrt()
        mask = torch.ones(b, n, device=tokens.device)
        mask.scatter_(1, visible, 0.0)
        per_patch = F.mse_loss(pred.float(), target.float(), reduction="none").mean(-1)
        return (per_patch * mask).sum() / mask.sum(), pred, mask

