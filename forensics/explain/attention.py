"""Attention maps from captured attention probabilities.

``last_layer_attention``: the last layer's attention (heads averaged) from the CLS token to each
patch, or, for models without a CLS token (SigLIP), the mean attention each patch receives.
``attention_rollout``: Abnar & Zuidema (2020): per layer, fuse heads (mean/max/min), drop the
weakest links (``discard_ratio``), add the residual identity, renormalise, and multiply the
layers together.

When gradients of a target class are given, each head's attention is weighted by them
(``relu(grad * attention)``, Chefer et al. 2021): the maps then answer "what did the model look
at for this class" rather than "what did it look at". Without gradients the maps are the
papers' class-agnostic ones.
"""

from __future__ import annotations

from typing import Sequence

import torch

HEAD_FUSIONS = ("mean", "max", "min")


def _fuse_heads(attention: torch.Tensor, fusion: str) -> torch.Tensor:
    if fusion == "mean":
        return attention.mean(dim=1)
    if fusion == "max":
        return attention.amax(dim=1)
    if fusion == "min":
        return attention.amin(dim=1)
    raise ValueError(f"head fusion must be one of {HEAD_FUSIONS}, not {fusion!r}")


def _class_weighted(attention: torch.Tensor, grad: torch.Tensor | None) -> torch.Tensor:
    return attention if grad is None else (grad * attention).clamp(min=0)


def _patch_scores(matrix: torch.Tensor, prefix: int, grid: tuple[int, int]) -> torch.Tensor:
    """``(B, N, N)`` token-to-token matrix -> ``(B, rows, cols)`` relevance of each patch."""
    if prefix > 0:
        scores = matrix[:, 0, prefix:]  # what the CLS token draws from each patch
    else:
        scores = matrix.mean(dim=1)  # pure patch grid: attention received, averaged over queries
    rows, cols = grid
    return scores.reshape(matrix.shape[0], rows, cols)


def last_layer_attention(
    attentions: Sequence[torch.Tensor],
    prefix: int,
    grid: tuple[int, int],
    grads: Sequence[torch.Tensor | None] | None = None,
) -> torch.Tensor:
    """``(B, rows, cols)`` map from the last layer, heads averaged."""
    grad = grads[-1] if grads else None
    fused = _class_weighted(attentions[-1].detach(), grad).mean(dim=1)
    return _patch_scores(fused, prefix, grid)


def attention_rollout(
    attentions: Sequence[torch.Tensor],
    prefix: int,
    grid: tuple[int, int],
    head_fusion: str = "mean",
    discard_ratio: float = 0.9,
    grads: Sequence[torch.Tensor | None] | None = None,
) -> torch.Tensor:
    """``(B, rows, cols)`` attention rollout over all layers."""
    if not 0.0 <= discard_ratio < 1.0:
        raise ValueError(f"discard_ratio must be in [0, 1), not {discard_ratio}")
    batch, _, tokens, _ = attentions[0].shape
    eye = torch.eye(tokens, dtype=torch.float32).expand(batch, tokens, tokens)
    result = eye.clone()
    for index, attention in enumerate(attentions):
        grad = grads[index] if grads else None
        fused = _fuse_heads(_class_weighted(attention.detach().float(), grad), head_fusion)
        if discard_ratio > 0:
            flat = fused.reshape(batch, -1)
            drop = int(flat.shape[1] * discard_ratio)
            lowest = flat.topk(drop, dim=-1, largest=False).indices
            kept = flat.scatter(1, lowest, 0.0)
            if prefix > 0:
                kept[:, 0] = flat[:, 0]  # never discard the CLS token's attention to itself
            fused = kept.reshape(batch, tokens, tokens)
        mixed = (fused + eye) / 2.0
        mixed = mixed / mixed.sum(dim=-1, keepdim=True)
        result = mixed @ result
    return _patch_scores(result, prefix, grid)

