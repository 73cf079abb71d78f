"""The model and data code both Flower apps share (Flower's ``task.py``): the project's detectors
built as central training builds them, a client's local fine-tuning through the one training core
(``training.loop.train``) with FedProx's proximal term added to its loss, and scoring a model on
faces with their self-blended fakes."""

from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from training.data import CachedFace
from training.datasets import Collate
from training.evaluate import source_subsets
from training.loop import TrainConfig, predict_fake, train
from training.metrics import binary_metrics
from training.models import PRETRAINED_PREFIXES, build_model
from training.pipeline import IMAGENET, ConfigError, augment_options, face_datasets, init_weights


def build_detector(config: dict) -> tuple[nn.Module, str, dict]:
    """(model, timm architecture, model_args): the global model's starting point, the same on every
    node (ImageNet trunk where the architecture has one, or ``init_from``: a trained detector to
    fine-tune further)."""
    try:
        model, arch, args = build_model(config["model"], len(config["labels"]), bool(config["pretrained"]),
                                        int(config["image_size"]))
    except ValueError as exc:  # e.g. three labels for a binary architecture: one line, not a traceback
        raise ConfigError(str(exc)) from None
    if config.get("init_from"):
        init_weights(model, config["init_from"])
    return model, arch, args


def load_state(model: nn.Module, state: dict[str, torch.Tensor]) -> nn.Module:
    """Load an aggregated state dict; averaged integer buffers (BatchNorm's step counts) are cast back."""
    own = model.state_dict()
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()})
    return model


class ProximalLoss:
    """Cross-entropy plus FedProx's ``mu / 2 * ||w - w_global||^2`` over the trainable weights
    (Li et al. 2020): it keeps each client's update near the global model, which is what keeps
    non-IID clients from pulling it apart. ``mu = 0`` is plain cross-entropy (FedAvg)."""

    def __init__(self, model: nn.Module, mu: float):
        self.mu = float(mu)
        self.anchor = [p.detach().clone() for p in model.parameters() if p.requires_grad]

    def penalty(self, model: nn.Module) -> torch.Tensor:
        params = [p for p in model.parameters() if p.requires_grad]
        return sum(((p - a) ** 2).sum() for p, a in zip(params, self.anchor))

    def __call__(self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        loss = nn.functional.cross_entropy(model(images), labels)
        if self.mu > 0:
            loss = loss + self.mu / 2.0 * self.penalty(model)
        return loss


def fit_local(model: nn.Module, train_faces: Sequence[CachedFace], val_faces: Sequence[CachedFace], config: dict,
              server_round: int, mu: float, local_steps: int, work_dir: Path) -> dict:
    """Fine-tune ``model`` in place for ``local_steps`` optimiser steps on a client's faces (reals and
    their self-blended fakes, augmented as central training augments), with the proximal term.
    The pseudo-fakes and augmentation differ every round (seeded by the round). Returns the
    client's metrics: its training loss, steps, and how far it moved from the global model."""
    labels = list(config["labels"])
    size = int(config["image_size"])
    seed = int(config["seed"]) + 1000 * int(server_round)
    train_set = face_datasets(train_faces, labels, size, bool(config["sbi"]), True, seed, augment_options(config))
    # train() scores a validation set after each pass; without held-back faces it scores a few training ones.
    val_set = face_datasets(list(val_faces) or list(train_faces)[:8], labels, size, bool(config["sbi"]), False,
                            int(config["seed"]) + 1)
    batch = max(1, min(int(config["batch_size"]), len(train_set)))
    steps_per_pass = max(1, len(train_set) // batch)
    loss = ProximalLoss(model, mu)
    result = train(model, train_set, val_set, TrainConfig(
        out_dir=str(work_dir), epochs=math.ceil(local_steps / steps_per_pass), lr=float(config["lr"]),
        weight_decay=float(config["weight_decay"]), batch_size=batch, patience=10**6, seed=seed,
        max_steps=int(local_steps), num_workers=0, precision=str(config.get("precision", "auto"))),
        Collate(*IMAGENET), [i for i, x in enumerate(labels) if x != "real"], loss_fn=loss,
        trunk_prefixes=PRETRAINED_PREFIXES.get(config["model"], ()))
    shutil.rmtree(work_dir / "checkpoint", ignore_errors=True)  # a round starts from the global model, never from here
    # The same keys from every client (Flower aggregates only consistent replies).
    return {"train-loss": float(np.mean([h["train_loss"] for h in result["history"]])),
            "steps": float(result["steps"]), "proximal-distance": float(loss.penalty(model).detach())}


def score_faces(model: nn.Module, faces: Sequence[CachedFace], config: dict,
                holdout_sources: Sequence[str] = ()) -> dict:
    """AUC (and F1, accuracy, loss) of ``model`` on faces with one self-blended fake per real, fixed
    across rounds; per-source AUCs as ``python -m training evaluate`` splits them."""
    labels = list(config["labels"])
    fakes = [i for i, x in enumerate(labels) if x != "real"]
    data = face_datasets(faces, labels, int(config["image_size"]), bool(config["sbi"]), False,
                         int(config["seed"]) + 1)
    loader = DataLoader(data, batch_size=int(config["batch_size"]), shuffle=False, collate_fn=Collate(*IMAGENET))
    y, p = predict_fake(model, loader, fakes)
    y = np.isin(y, fakes).astype(int)
    metrics = binary_metrics(y, p)
    eps = 1e-7
    out = {"auc": metrics["roc_auc"], "f1": metrics["f1"], "accuracy": metrics["accuracy"],
           "loss": float(-np.mean(y * np.log(p + eps) + (1 - y) * np.log(1 - p + eps))), "images": len(y)}
    sources = _item_sources(data)
    for name, mask in source_subsets(sources, y, holdout_sources).items():
        if mask.sum() and len(np.unique(y[mask])) == 2:
            out[f"auc: {name}"] = binary_metrics(y[mask], p[mask])["roc_auc"]
    return out


def _item_sources(data) -> list[str]:
    """Each image's source in the order the datasets yield them: a real then its SBI fake, then labelled fakes."""
    from training.datasets import SelfBlendedPairs

    sources: list[str] = []
    for part in data.parts:
        for face in part.faces:
            if isinstance(part, SelfBlendedPairs):
                sources += [face.source, f"SBI of {face.source}"]
            else:
                sources.append(face.source)
    return sources
