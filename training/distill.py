"""Teacher -> student knowledge distillation (Hinton et al., 2015), as a loss for the training core.

``loss = alpha * T^2 * KL(student_T || teacher_T) + (1 - alpha) * CE(student, labels)`` on logits
(``kind="kl"``), or the mean squared error between logits or between patch-score maps
(``kind="mse"``, ``on="patches"``: a patch-level student learns the teacher's map itself).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class DistillationLoss:
    def __init__(self, teacher: nn.Module, temperature: float = 4.0, alpha: float = 0.7, kind: str = "kl",
                 on: str = "logits"):
        if kind not in ("kl", "mse") or on not in ("logits", "patches"):
            raise ValueError("kind must be kl or mse, on must be logits or patches")
        if on == "patches" and kind != "mse":
            raise ValueError("patch scores are distilled with mse")
        self.teacher = teacher.eval().requires_grad_(False)
        self.temperature, self.alpha, self.kind, self.on = float(temperature), float(alpha), kind, on

    def soft_loss(self, student: nn.Module, images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            target = self.teacher.patch_scores(images) if self.on == "patches" else self.teacher(images)
        if self.on == "patches":
            mine = student.patch_scores(images)
            if mine.shape != target.shape:
                target = F.interpolate(target[:, None], size=mine.shape[-2:], mode="bilinear")[:, 0]
            return F.mse_loss(mine, target)
        logits = student(images)
        if self.kind == "mse":
            return F.mse_loss(logits, target)
        t = self.temperature
        return F.kl_div(F.log_softmax(logits / t, -1), F.softmax(target / t, -1), reduction="batchmean") * t * t

    def __call__(self, student: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        hard = F.cross_entropy(student(images), labels)
        return self.alpha * self.soft_loss(student, images) + (1.0 - self.alpha) * hard
