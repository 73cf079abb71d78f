"""One training core for fine-tuning (and the loops built on it), through Hugging Face Accelerate:
the same code runs on this CPU and on several GPUs or nodes with ``accelerate launch``.

AdamW with decoupled weight decay (none on norms, biases, tokens), a lower learning rate for the
pretrained trunk, linear warm-up then cosine decay, gradient clipping, mixed precision where the
hardware has it, evaluation every epoch, the best model kept by validation ROC-AUC, early
stopping, and a checkpoint at every epoch end (model, optimizer, scheduler, RNG, history) from
which ``resume=True`` continues exactly as if never stopped.
"""

from __future__ import annotations

import json
import os
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from forensics.core import atomic_path, write_atomic
from training.metrics import binary_metrics


@dataclass
class TrainConfig:
    out_dir: str
    epochs: int = 10
    lr: float = 3e-4
    trunk_lr_scale: float = 0.3  # pretrained layers learn slower than new ones
    weight_decay: float = 0.05
    batch_size: int = 32
    warmup_fraction: float = 0.05
    grad_clip: float = 1.0
    patience: int = 4  # epochs without a better validation AUC before stopping
    max_steps: int | None = None
    precision: str = "auto"  # auto: bf16 on CUDA with support, else fp32
    seed: int = 0
    num_workers: int = 1
    resume: bool = False
    log_every: int = 10


NO_CPU_BF16 = ("precision bf16: this CPU has no native bfloat16 (oneDNN reports no bf16 kernels), where bf16 "
               "runs several times slower than fp32; training in fp32")


def cpu_has_native_bf16() -> bool:
    """Whether oneDNN has bfloat16 kernels for this CPU (AVX-512 or AMX). Without them bf16
    autocast is emulated: measured on an AMD EPYC with AVX2 only, a training step of the default's
    hybrid took six times as long in bf16 as in fp32."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_precision(requested: str, cuda: bool | None = None) -> tuple[str, str | None]:
    """The mixed precision a run uses, and a one-line note when it is not the one asked for.

    ``auto``: bf16 on a CUDA GPU that has it, else fp32 (``"no"``). ``bf16`` on the CPU falls back
    to fp32 where the CPU has no native bfloat16 (:func:`cpu_has_native_bf16`): there it would only
    make training several times slower. ``cuda``: whether the run uses the GPU (default: whether
    there is one)."""
    cuda = torch.cuda.is_available() if cuda is None else cuda
    if requested == "auto":
        return ("bf16" if cuda and torch.cuda.is_bf16_supported() else "no"), None
    if requested == "bf16" and not cuda and not cpu_has_native_bf16():
        return "no", NO_CPU_BF16
    return requested, None


def param_groups(model: nn.Module, lr: float, weight_decay: float, trunk_lr_scale: float,
                 trunk_prefixes: tuple[str, ...] = ()) -> list[dict]:
    """No decay on biases, norms and learned tokens; parameters under ``trunk_prefixes`` (the
    pretrained part) get ``lr * trunk_lr_scale``."""
    groups: dict[tuple[bool, bool], list] = {(d, t): [] for d in (True, False) for t in (True, False)}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        no_decay = p.ndim <= 1 or name.endswith((".bias", "cls_token", "pos_embed", "reg_token"))
        trunk = bool(trunk_prefixes) and name.startswith(trunk_prefixes)
        groups[(not no_decay, trunk and trunk_lr_scale != 1.0)].append(p)
    out = []
    for (decay, trunk), params in groups.items():
        if params:
            out.append({"params": params, "weight_decay": weight_decay if decay else 0.0,
                        "lr": lr * (trunk_lr_scale if trunk else 1.0)})
    return out


def cosine_with_warmup(optimizer, warmup: int, total: int):
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / max(1, warmup)
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _set_epoch(dataset: Dataset, epoch: int) -> None:
    if hasattr(dataset, "epoch"):
        dataset.epoch = epoch


@torch.no_grad()
def predict_fake(model: nn.Module, loader: DataLoader, fake_indices: list[int], accelerator=None) -> tuple[np.ndarray, np.ndarray]:
    """(labels, P(fake)) over a loader, in eval mode."""
    model.eval()
    ys, ps = [], []
    for images, labels in loader:
        logits = model(images.to(next(model.parameters()).device)).float()
        probs = torch.softmax(logits, dim=-1)[:, fake_indices].sum(dim=1)
        if accelerator is not None and accelerator.num_processes > 1:
            # Each process saw a shard: every process gets the whole set (padding dropped).
            labels, probs = accelerator.gather_for_metrics((labels.to(probs.device), probs))
        ys.append(labels.cpu().numpy())
        ps.append(probs.cpu().numpy())
    return np.concatenate(ys), np.concatenate(ps)


def train(model: nn.Module, train_set: Dataset, val_set: Dataset, config: TrainConfig, collate: Callable,
          fake_indices: list[int], on_best: Callable[[nn.Module, dict], None] | None = None,
          loss_fn: Callable | None = None, trunk_prefixes: tuple[str, ...] = (),
          on_epoch_end: Callable[[dict], bool] | None = None) -> dict:
    """Train ``model``; returns the history. ``on_best(model, metrics)`` is called whenever the
    validation AUC improves (e.g. to write the model folder); ``loss_fn(model, images, labels)``
    replaces cross-entropy (distillation and adversarial training use it); ``on_epoch_end(entry)``
    runs after each epoch's checkpoint and stops training when it returns True (cancellation)."""
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    out = Path(config.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    precision, precision_note = resolve_precision(config.precision)
    accelerator = Accelerator(mixed_precision=precision, cpu=not torch.cuda.is_available())
    if precision_note:
        accelerator.print(precision_note)
    set_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    train_loader = DataLoader(train_set, batch_size=config.batch_size, shuffle=True, generator=generator,
                              collate_fn=collate, num_workers=config.num_workers, drop_last=True,
                              persistent_workers=False)
    val_loader = DataLoader(val_set, batch_size=config.batch_size, shuffle=False, collate_fn=collate,
                            num_workers=config.num_workers)
    steps_per_epoch = len(train_loader)
    total = config.max_steps or steps_per_epoch * config.epochs
    optimizer = torch.optim.AdamW(param_groups(model, config.lr, config.weight_decay, config.trunk_lr_scale,
                                               trunk_prefixes))
    scheduler = cosine_with_warmup(optimizer, int(config.warmup_fraction * total), total)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    distributed = accelerator.num_processes > 1
    if distributed:
        # Under `accelerate launch` each process takes its own shard of every epoch (and of the
        # validation set, gathered back for the metrics); one process alone keeps the plain
        # loaders, so a run here is reproducible and resumes identically.
        train_loader, val_loader = accelerator.prepare(train_loader, val_loader)
    main = accelerator.is_main_process
    loss_fn = loss_fn or (lambda m, x, y: nn.functional.cross_entropy(m(x), y))

    state = {"epoch": 0, "step": 0, "best_auc": -1.0, "bad_epochs": 0, "history": []}
    ckpt = out / "checkpoint"
    if config.resume and (ckpt / "state.json").is_file():
        state = _load_checkpoint(ckpt, accelerator.unwrap_model(model), optimizer, scheduler, generator)
        accelerator.print(f"resumed from {ckpt} at epoch {state['epoch']}, step {state['step']}")
    log = open(out / "train_log.jsonl", "a", encoding="utf-8") if main else open(os.devnull, "w")
    try:
        while state["epoch"] < config.epochs and state["step"] < total:
            epoch = state["epoch"]
            _set_epoch(train_set, epoch)
            generator.manual_seed(config.seed * 1000 + epoch)  # the epoch's order, whatever happened before
            model.train()
            started, losses = time.time(), []
            bar = tqdm(train_loader, desc=f"epoch {epoch + 1}/{config.epochs}", disable=not accelerator.is_main_process)
            for images, labels in bar:
                with accelerator.autocast():
                    loss = loss_fn(model, images, labels)
                accelerator.backward(loss)
                if config.grad_clip:
                    accelerator.clip_grad_norm_(model.parameters(), config.grad_clip)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                state["step"] += 1
                losses.append(float(loss.detach()))
                if state["step"] % config.log_every == 0:
                    record = {"step": state["step"], "epoch": epoch, "loss": float(np.mean(losses[-config.log_every:])),
                              "lr": scheduler.get_last_lr()[0], "time": time.time()}
                    log.write(json.dumps(record) + "\n")
                    log.flush()
                    bar.set_postfix(loss=f"{record['loss']:.4f}")
                if state["step"] >= total:
                    break
            y, p = predict_fake(model, val_loader, fake_indices, accelerator)
            metrics = binary_metrics(np.isin(y, fake_indices), p)
            entry = {"epoch": epoch + 1, "step": state["step"], "train_loss": float(np.mean(losses)),
                     "val": metrics, "seconds": round(time.time() - started, 1),
                     "images_per_s": round(len(losses) * config.batch_size / max(1e-6, time.time() - started), 1)}
            state["history"].append(entry)
            accelerator.print(f"epoch {epoch + 1}: loss {entry['train_loss']:.4f}  val AUC {metrics['roc_auc']}  "
                              f"F1 {metrics['f1']:.3f}  ({entry['seconds']} s)")
            auc = metrics["roc_auc"] if metrics["roc_auc"] is not None else metrics["f1"]
            state["epoch"] = epoch + 1
            if auc > state["best_auc"]:
                state["best_auc"], state["bad_epochs"] = auc, 0
                if on_best is not None and main:  # one process writes the model folder
                    on_best(accelerator.unwrap_model(model), entry)
            else:
                state["bad_epochs"] += 1
            if main:
                _save_checkpoint(ckpt, accelerator.unwrap_model(model), optimizer, scheduler, generator, state)
                write_atomic(out / "history.json", state["history"])
            accelerator.wait_for_everyone()
            if state["bad_epochs"] >= config.patience:
                accelerator.print(f"early stop: no better validation AUC for {config.patience} epochs")
                break
            if on_epoch_end is not None and on_epoch_end(entry):
                break
    finally:
        log.close()
    return {"history": state["history"], "best_auc": state["best_auc"], "steps": state["step"],
            "config": asdict(config), "precision": precision,
            **({"precision_note": precision_note} if precision_note else {})}


def _save_checkpoint(folder: Path, model, optimizer, scheduler, generator, state: dict) -> None:
    """Written to a temporary folder and swapped in, so a stop never leaves half a checkpoint."""
    with atomic_path(folder) as tmp:
        tmp.mkdir()
        save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(tmp / "model.safetensors"))
        torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                    "torch_rng": torch.get_rng_state(), "generator": generator.get_state()}, tmp / "training_state.pt")
        (tmp / "state.json").write_text(json.dumps(state))


def _load_checkpoint(folder: Path, model, optimizer, scheduler, generator) -> dict:
    model.load_state_dict(load_file(str(folder / "model.safetensors")))
    extra = torch.load(folder / "training_state.pt", map_location="cpu", weights_only=True)
    optimizer.load_state_dict(extra["optimizer"])
    scheduler.load_state_dict(extra["scheduler"])
    torch.set_rng_state(extra["torch_rng"])
    generator.set_state(extra["generator"])
    return json.loads((folder / "state.json").read_text())
