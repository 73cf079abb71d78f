"""The transformers ``Trainer`` path for transformers image classifiers: a data collator that
turns face crops into ``pixel_values``/``labels``, ``compute_metrics`` from scikit-learn, and
``EarlyStoppingCallback`` on validation ROC-AUC."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from training.datasets import Collate
from training.metrics import binary_metrics


class PixelCollator:
    """Our items (lists of images and labels) -> the dict transformers models take."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        self.collate = Collate(mean, std)

    def __call__(self, items) -> dict:
        pixels, labels = self.collate(items)
        return {"pixel_values": pixels, "labels": labels}


def metrics_for(fake_indices: Sequence[int]):
    def compute_metrics(prediction) -> dict:
        logits, labels = prediction.predictions, prediction.label_ids
        logits = logits[0] if isinstance(logits, tuple) else logits
        probs = torch.softmax(torch.from_numpy(np.asarray(logits)).float(), -1).numpy()
        p_fake = probs[:, list(fake_indices)].sum(1)
        m = binary_metrics(np.isin(labels, fake_indices), p_fake)
        return {"roc_auc": m["roc_auc"] or 0.0, "f1": m["f1"], "accuracy": m["accuracy"]}

    return compute_metrics


def train_with_trainer(model, train_set: Dataset, val_set: Dataset, out_dir: str, mean, std,
                       fake_indices: Sequence[int], epochs: int = 3, lr: float = 5e-5, batch_size: int = 16,
                       patience: int = 2, max_steps: int = -1):
    from transformers import EarlyStoppingCallback, Trainer, TrainingArguments

    args = TrainingArguments(
        output_dir=out_dir, num_train_epochs=epochs, learning_rate=lr, per_device_train_batch_size=batch_size,
        per_device_eval_batch_size=batch_size, eval_strategy="epoch", save_strategy="epoch",
        load_best_model_at_end=True, metric_for_best_model="roc_auc", greater_is_better=True,
        lr_scheduler_type="cosine", warmup_steps=0.05, weight_decay=0.05, max_grad_norm=1.0,
        bf16=torch.cuda.is_available() and torch.cuda.is_bf16_supported(), report_to=[], max_steps=max_steps,
        remove_unused_columns=False, save_total_limit=2, logging_steps=5, dataloader_num_workers=0,
        dataloader_pin_memory=torch.cuda.is_available(),  # pinned memory only helps a GPU (and warns on a CPU)
    )
    trainer = Trainer(model=model, args=args, train_dataset=train_set, eval_dataset=val_set,
                      data_collator=PixelCollator(mean, std), compute_metrics=metrics_for(fake_indices),
                      callbacks=[EarlyStoppingCallback(early_stopping_patience=patience)])
    trainer.train()
    return trainer
