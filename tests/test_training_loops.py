"""A few steps of each loop on tiny models: distillation, adversarial training, MAE pretraining and
the transformers Trainer path. Each must lower its loss (or reach its target) for real."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import timm
import torch

import forensics.detectors  # noqa: F401  (registers the patch-level architectures)
from tests.conftest import Squares
from training.adversarial import AdversarialLoss, PixelSpace, fgsm, pgd, robust_accuracy
from training.datasets import Collate
from training.distill import DistillationLoss
from training.loop import TrainConfig, train
from training.mae import MaskedAutoencoder

MEAN, STD = (0.5,) * 3, (0.5,) * 3


def _batch(n=8):
    return Collate(MEAN, STD)([Squares()[i] for i in range(n)])


def test_patch_student_has_ten_times_fewer_parameters_and_learns_from_the_teacher(tmp_path):
    teacher = timm.create_model("forensics_patch_cnn", num_classes=2)
    student = timm.create_model("forensics_patch_cnn_tiny", num_classes=2)
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(teacher) >= 10 * count(student)
    images, labels = _batch(16)
    loss = DistillationLoss(teacher, kind="mse", on="patches", alpha=1.0)
    first = loss.soft_loss(student, images).item()
    optimizer = torch.optim.Adam(student.parameters(), 1e-2)
    for _ in range(30):
        optimizer.zero_grad()
        loss(student, images, labels).backward()
        optimizer.step()
    assert loss.soft_loss(student, images).item() < 0.3 * first


def test_kl_distillation_runs_in_the_training_core(tmp_path):
    torch.manual_seed(0)
    teacher = timm.create_model("forensics_patch_cnn", num_classes=2)
    student = timm.create_model("forensics_patch_cnn_tiny", num_classes=2)
    config = TrainConfig(out_dir=str(tmp_path), epochs=3, lr=3e-3, batch_size=8, num_workers=0, log_every=1)
    result = train(student, Squares(), Squares(16), config, Collate(MEAN, STD), [1],
                   loss_fn=DistillationLoss(teacher, temperature=2.0, alpha=0.5))
    losses = [h["train_loss"] for h in result["history"]]
    assert len(losses) == 3 and losses[-1] < losses[0]


def test_fgsm_and_pgd_stay_in_budget_and_hurt_more_than_noise():
    torch.manual_seed(0)
    model = timm.create_model("forensics_patch_cnn_tiny", num_classes=2).eval()
    images, labels = _batch(8)
    space = PixelSpace(MEAN, STD)
    budget = space.budget(4.0)
    for adv in (fgsm(model, images, labels, 4.0, space), pgd(model, images, labels, 4.0, space, steps=4)):
        assert (adv - images).abs().max() <= budget.max() + 1e-5
        assert (adv >= space.low - 1e-5).all() and (adv <= space.high + 1e-5).all()
    loss = torch.nn.functional.cross_entropy
    with torch.no_grad():
        clean = loss(model(images), labels)
        attacked = loss(model(pgd(model, images, labels, 4.0, space, steps=4)), labels)
    assert attacked > clean
    report = robust_accuracy(model, [(images, labels)], space, epsilons=(1, 4), pgd_steps=2)
    assert set(report) == {"clean", "fgsm_1", "pgd_1", "fgsm_4", "pgd_4"}


def test_adversarial_training_lowers_the_adversarial_loss(tmp_path):
    torch.manual_seed(0)
    model = timm.create_model("forensics_patch_cnn_tiny", num_classes=2)
    space = PixelSpace(MEAN, STD)
    config = TrainConfig(out_dir=str(tmp_path), epochs=4, lr=3e-3, batch_size=8, num_workers=0, log_every=1)
    result = train(model, Squares(), Squares(16), config, Collate(MEAN, STD), [1],
                   loss_fn=AdversarialLoss(space, eps=2.0, attack="fgsm"))
    losses = [h["train_loss"] for h in result["history"]]
    assert losses[-1] < losses[0]


def test_mae_pretraining_learns_and_its_encoder_starts_a_classifier(tmp_path):
    torch.manual_seed(0)
    args = dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2)
    encoder = timm.create_model("vit_tiny_patch16_224", num_classes=0, **args)
    mae = MaskedAutoencoder(encoder, decoder_dim=32, mask_ratio=0.75)
    # Smooth images (random linear ramps): a hidden patch is predictable from the visible ones.
    rng = np.random.default_rng(0)
    ys, xs = np.mgrid[0:32, 0:32] / 31.0
    ramps = [np.clip(128 + 120 * (a * xs + b * ys), 0, 255) for a, b in rng.uniform(-1, 1, (8, 2))]
    images = Collate(MEAN, STD)([([np.repeat(r[..., None], 3, 2).astype(np.uint8)], [0]) for r in ramps])[0]
    loss, pred, mask = mae(images, torch.Generator().manual_seed(0))
    assert pred.shape == (8, 16, 8 * 8 * 3) and mask.sum(1).eq(12).all()  # 75% of 16 patches hidden
    optimizer = torch.optim.AdamW(mae.parameters(), 3e-3)
    first = loss.item()
    for step in range(60):
        optimizer.zero_grad()
        loss, _, _ = mae(images, torch.Generator().manual_seed(step))
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.5 * first
    # As `pretrain` writes the encoder and `train --init-from` starts a classifier from it.
    from safetensors.torch import save_file

    from training.pipeline import init_weights

    save_file({k: v.contiguous() for k, v in mae.encoder.state_dict().items()}, str(tmp_path / "encoder.safetensors"))
    classifier = timm.create_model("vit_tiny_patch16_224", num_classes=2, **args)
    assert init_weights(classifier, tmp_path / "encoder.safetensors") == ["head.bias", "head.weight"]
    assert torch.equal(classifier.blocks[0].attn.qkv.weight, mae.encoder.blocks[0].attn.qkv.weight)


def test_transformers_trainer_path(tmp_path):
    pytest.importorskip("transformers")
    from transformers import ViTConfig, ViTForImageClassification

    from training.hf_trainer import train_with_trainer

    torch.manual_seed(0)
    config = ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                       intermediate_size=64, num_labels=2, id2label={0: "real", 1: "fake"})
    model = ViTForImageClassification(config)
    trainer = train_with_trainer(model, Squares(), Squares(16), str(tmp_path), MEAN, STD, [1], epochs=2,
                                 lr=1e-3, batch_size=8)
    evaluated = [h for h in trainer.state.log_history if "eval_roc_auc" in h]
    assert len(evaluated) == 2 and all(0 <= h["eval_roc_auc"] <= 1 for h in evaluated)
    assert trainer.state.best_metric is not None


DISTRIBUTED_SCRIPT = '''
import json, os, sys
import timm, torch
sys.path.insert(0, os.getcwd())
import forensics.detectors  # noqa: F401
from tests.conftest import Squares
from training.datasets import Collate
from training.loop import TrainConfig, train
torch.manual_seed(0)
model = timm.create_model("forensics_patch_cnn_tiny", num_classes=2)
calls = []
config = TrainConfig(out_dir=sys.argv[1], epochs=2, lr=3e-3, batch_size=4, num_workers=0, log_every=1)
result = train(model, Squares(32), Squares(16), config, Collate((0.5,) * 3, (0.5,) * 3), [1],
               on_best=lambda m, e: calls.append(e["epoch"]))
rank = int(os.environ.get("RANK", 0))
with open(os.path.join(sys.argv[2], f"result-{rank}.json"), "w") as out:
    json.dump({"rank": rank, "world": int(os.environ.get("WORLD_SIZE", 1)), "steps": result["steps"],
               "on_best": calls, "val_n": result["history"][-1]["val"]["n"]}, out)
'''


def test_training_core_shards_across_processes(tmp_path):
    """Under a distributed launcher (torchrun, as `accelerate launch` starts it) each process takes
    half of every epoch, validation is gathered whole, and only one process writes."""
    import json
    import os
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    script = tmp_path / "dist.py"
    script.write_text(DISTRIBUTED_SCRIPT)
    torchrun = Path(sys.executable).with_name("torchrun")
    # A clean launch: nothing of an earlier distributed or Accelerate setting leaks in.
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ACCELERATE_", "TORCHELASTIC", "MASTER_", "RANK", "LOCAL_RANK", "WORLD_SIZE"))}
    env["OMP_NUM_THREADS"] = "1"
    results_dir = tmp_path / "results"
    results_dir.mkdir()
    root = Path(__file__).resolve().parents[1]
    run = subprocess.run([str(torchrun if torchrun.exists() else shutil.which("torchrun")), "--standalone",
                          "--nproc_per_node", "2", str(script), str(tmp_path / "run"), str(results_dir)], cwd=root, env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    results = sorted((json.loads(f.read_text()) for f in results_dir.glob("result-*.json")), key=lambda r: r["rank"])
    assert [r["rank"] for r in results] == [0, 1] and all(r["world"] == 2 for r in results)
    # 32 items, batch 4, two processes: 4 steps per process per epoch (8 alone), 2 epochs.
    assert all(r["steps"] == 8 for r in results)
    assert all(r["val_n"] == 16 for r in results)  # the whole validation set, gathered from both shards
    assert results[0]["on_best"] and results[1]["on_best"] == []
    assert (tmp_path / "run" / "checkpoint" / "state.json").is_file()


@pytest.mark.parametrize("native", [False, True])
def test_bf16_falls_back_to_fp32_on_a_cpu_without_native_bfloat16(monkeypatch, tmp_path, capsys, native):
    """bf16 autocast on a CPU without bf16 kernels is emulated and several times slower than fp32:
    there a run asked for bf16 trains in fp32 and says so in one line; where the CPU has them, bf16."""
    from accelerate.state import AcceleratorState

    from training import loop

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(loop, "cpu_has_native_bf16", lambda: native)
    AcceleratorState._reset_state(True)  # accelerate keeps one precision per process: start clean, leave clean
    assert loop.resolve_precision("auto") == ("no", None)  # auto: bf16 only on a GPU that has it
    assert loop.resolve_precision("no") == ("no", None)
    torch.manual_seed(0)
    model = timm.create_model("forensics_patch_cnn_tiny", num_classes=2)
    config = TrainConfig(out_dir=str(tmp_path), epochs=1, lr=3e-3, batch_size=8, num_workers=0, precision="bf16")
    seen = []
    conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))  # the output is cast back to fp32
    conv.register_forward_hook(lambda _m, _i, out: seen.append(out.dtype))
    try:
        result = train(model, Squares(16), Squares(8), config, Collate(MEAN, STD), [1])
    finally:
        AcceleratorState._reset_state(True)
    printed = capsys.readouterr().out
    if native:
        assert result["precision"] == "bf16" and "precision_note" not in result and torch.bfloat16 in seen
        assert "no native bfloat16" not in printed
    else:
        assert result["precision"] == "no" and set(seen) == {torch.float32}
        assert result["precision_note"].startswith("precision bf16: this CPU has no native bfloat16")
        assert result["precision_note"] in printed and "training in fp32" in result["precision_note"]
    assert len(result["history"]) == 1 and np.isfinite(result["history"][0]["train_loss"])


def test_mae_runs_under_bf16_autocast():
    """`pretrain` with precision bf16: the decoder's inputs are bf16, the loss stays fp32 and finite."""
    torch.manual_seed(0)
    encoder = timm.create_model("vit_tiny_patch16_224", num_classes=0, img_size=32, patch_size=8, embed_dim=32,
                                depth=2, num_heads=2)
    mae = MaskedAutoencoder(encoder, decoder_dim=32, mask_ratio=0.75)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, pred, _ = mae(torch.randn(4, 3, 32, 32), torch.Generator().manual_seed(0))
    loss.backward()
    assert loss.dtype == torch.float32 and torch.isfinite(loss) and pred.dtype == torch.bfloat16
    assert all(torch.isfinite(p.grad).all() for p in mae.parameters() if p.grad is not None)


def test_pretrain_command_learns_from_real_training_faces_only(monkeypatch, tmp_path, capsys):
    """`python -m training pretrain` end to end on real face photos: only the real faces of the
    training split are pretrained on, the encoder is written after each epoch, and it starts a
    ViT classifier (everything but the head loaded)."""
    import json

    import cv2

    from training import cli, pipeline
    from training.data import CachedFace

    photos = sorted((Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "faces" / "real" / "ffhq").glob("*.jpg"))[:12]
    assert len(photos) == 12
    faces = []
    for i, photo in enumerate(photos):
        crop = cv2.resize(cv2.imread(str(photo)), (64, 64), interpolation=cv2.INTER_AREA)
        path = tmp_path / f"{i}.png"
        cv2.imwrite(str(path), crop)
        faces.append(CachedFace(str(path), "real" if i < 9 else "fake", "FFHQ" if i < 9 else "StyleGAN2", f"p{i}",
                                [], 1.0, 0.0))
    monkeypatch.setattr(pipeline, "cached_faces", lambda config, samples=None: faces)
    config = {**cli.DEFAULTS, "model": "vit-tiny", "out": str(tmp_path / "mae"), "image_size": 64, "epochs": 2,
              "batch_size": 4, "lr": 1e-3, "holdout_sources": [], "val_fraction": 0.2, "precision": "bf16",
              "workers": 0, "mask_ratio": 0.75}
    train, _ = pipeline.split_faces(faces, config)
    from training import loop

    monkeypatch.setattr(loop, "cpu_has_native_bf16", lambda: False)  # bf16 asked for, on a CPU without it
    result = pipeline.run_pretraining(config)
    assert loop.NO_CPU_BF16 in capsys.readouterr().out  # pretrained in fp32, and said so
    assert result["faces"] == sum(f.label == "real" for f in train) < 9
    history = json.loads((tmp_path / "mae" / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2] and all(np.isfinite(h["loss"]) and h["loss"] > 0 for h in history)
    from training.models import build_model

    classifier, _, _ = build_model("vit-tiny", 2, pretrained=False, image_size=64)
    assert pipeline.init_weights(classifier, result["encoder"]) == ["head.bias", "head.weight"]
    assert sorted(p.name for p in (tmp_path / "mae").iterdir()) == ["encoder.safetensors", "history.json"]
    # Too few faces for one batch: a clear error, not an empty epoch with loss 0.
    with pytest.raises(ValueError, match="fewer than one batch of 64"):
        pipeline.run_pretraining({**config, "batch_size": 64, "out": str(tmp_path / "none")})
    # And the command says what is wrong in one line.
    monkeypatch.undo()
    with pytest.raises(SystemExit, match=r"^pretrain: .*missing\.csv"):
        cli.main(["pretrain", "--model", "vit-tiny", "--data", str(tmp_path / "missing.csv"), "--out",
                  str(tmp_path / "none")])
