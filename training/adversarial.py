"""FGSM and PGD adversarial examples (Goodfellow et al. 2015; Madry et al. 2018), adversarial
training as a loss for the training core, and accuracy under attack for evaluation.

Budgets ``eps`` are in pixel units of 0..255 images; attacks work on normalised inputs, so the
budget is divided by the normalisation's std per channel and results stay within the valid range.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class PixelSpace:
    """Bounds and step scale of a normalised input (mean/std as fractions of 255)."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        self.mean = torch.tensor(mean).view(1, 3, 1, 1)
        self.std = torch.tensor(std).view(1, 3, 1, 1)
        self.low, self.high = (0 - self.mean) / self.std, (1 - self.mean) / self.std

    def budget(self, eps: float) -> torch.Tensor:
        return (eps / 255.0) / self.std

    def clamp(self, x: torch.Tensor) -> torch.Tensor:
        return torch.max(torch.min(x, self.high), self.low)


def _grad(model: nn.Module, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    with torch.enable_grad():  # attacks need input gradients even when called under no_grad
        x = x.detach().requires_grad_(True)
        loss = F.cross_entropy(model(x), labels)
        (grad,) = torch.autograd.grad(loss, x)
    return grad


def fgsm(model: nn.Module, x: torch.Tensor, labels: torch.Tensor, eps: float, space: PixelSpace) -> torch.Tensor:
    return space.clamp(x + space.budget(eps) * _grad(model, x, labels).sign()).detach()


def pgd(model: nn.Module, x: torch.Tensor, labels: torch.Tensor, eps: float, space: PixelSpace, steps: int = 5,
        step_size: float | None = None, random_start: bool = True) -> torch.Tensor:
    budget = space.budget(eps)
    step = space.budget(step_size if step_size is not None else 2.5 * eps / steps)
    adv = x + (torch.rand_like(x) * 2 - 1) * budget if random_start else x.clone()
    for _ in range(steps):
        adv = adv + step * _grad(model, space.clamp(adv), labels).sign()
        adv = space.clamp(torch.min(torch.max(adv, x - budget), x + budget))
    return adv.detach()


class AdversarialLoss:
    """Cross-entropy on a mix of clean and attacked images (``ratio`` of the loss on attacked ones)."""

    def __init__(self, space: PixelSpace, eps: float = 2.0, attack: str = "fgsm", ratio: float = 0.5, steps: int = 3):
        self.space, self.eps, self.attack, self.ratio, self.steps = space, eps, attack, ratio, steps

    def __call__(self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        was_training = model.training
        model.eval()  # attack the model as it will be used (batch norm in eval mode)
        if self.attack == "pgd":
            adv = pgd(model, images, labels, self.eps, self.space, self.steps)
        else:
            adv = fgsm(model, images, labels, self.eps, self.space)
        model.train(was_training)
        clean = F.cross_entropy(model(images), labels)
        attacked = F.cross_entropy(model(adv), labels)
        return (1 - self.ratio) * clean + self.ratio * attacked


@torch.no_grad()
def _accuracy(model, x, labels) -> float:
    return float((model(x).argmax(-1) == labels).float().mean())


def robust_accuracy(model: nn.Module, batches, space: PixelSpace, epsilons: Sequence[float] = (0.5, 1, 2, 4, 8),
                    pgd_steps: int = 5) -> dict:
    """Accuracy on clean images and under FGSM and PGD at each budget (pixel units)."""
    model.eval()
    totals: dict[str, float] = {}
    count = 0
    for images, labels in batches:
        n = len(labels)
        count += n
        totals["clean"] = totals.get("clean", 0.0) + _accuracy(model, images, labels) * n
        for eps in epsilons:
            f = fgsm(model, images, labels, eps, space)
            p = pgd(model, images, labels, eps, space, pgd_steps)
            totals[f"fgsm_{eps}"] = totals.get(f"fgsm_{eps}", 0.0) + _accuracy(model, f, labels) * n
            totals[f"pgd_{eps}"] = totals.get(f"pgd_{eps}", 0.0) + _accuracy(model, p, labels) * n
    return {k: v / max(count, 1) for k, v in totals.items()}
