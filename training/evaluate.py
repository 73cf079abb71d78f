"""Measure a detector folder through the inference path (``load_detector`` + ``predict_crops`` on
the same MTCNN crops): validation metrics, per-source results, threshold tuning, calibration,
robustness to JPEG, resizing and blur, and video-level results. Writes metrics.json and a Plotly
report.html."""

from __future__ import annotations

from collections import Counter
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import cv2
import numpy as np
from tqdm import tqdm

from forensics.core import read_json, sha256_file, write_atomic
from forensics.detectors import load_detector
from forensics.detectors.base import size_temperature, temper
from forensics.detectors.card import VIDEO_SOURCE
from forensics.detectors.card import holdout_sources as held_out_sources
from forensics.detectors.card import write_card
from training import augment
from training.calibrate import threshold_spread
from training.checks import video_evaluation_inputs
from training.data import FRAMES_DIR, VIDEO_EXTENSIONS, CachedFace, _inside, group_members, load_crop, read_labels_csv
from training.false_alarms import real_photo_false_alarms, real_photos_folder, trained_photos
from training.metrics import binary_metrics, calibration, roc_points, tune_threshold, wilson_interval
from training.sbi import self_blend
from training.swap import EXPRESSION_OUTLINES, expression_partners, expression_swap

JPEG_QUALITIES = (95, 85, 75, 65, 50, 40, 30)
H264_RATE_FACTORS = (32, 40)  # a fair stream and a heavily compressed one
SMALL_FACE_SIDES = (128, 96)  # crop sides of small faces: a face that many pixels across in the frame


def evaluation_images(faces: Sequence[CachedFace], seed: int = 0) -> list[tuple[np.ndarray, int, str]]:
    """(image, is_fake, source) for each validation face, plus one self-blended fake per real
    (deterministic: the same pseudo-fakes every run), marked with source "SBI of <source>"."""
    items = []
    for i, face in enumerate(faces):
        image = load_crop(face)
        items.append((image, int(face.label != "real"), face.source))
        if face.label == "real":
            fake, _ = self_blend(image, np.asarray(face.landmarks, np.float32), np.random.default_rng((seed, i)))
            items.append((fake, 1, f"SBI of {face.source}"))
    return items


def fake_kind_accuracy(detector, faces: Sequence[CachedFace], items: Sequence[tuple[np.ndarray, int, str]],
                       probabilities: np.ndarray) -> dict:
    """For a detector with several fake classes (real / manipulated / synthetic): how often each
    kind of fake is called its own kind (the likeliest of the fake classes), as the app names it.
    The kinds are those training gave: self-blends take "manipulated" (else the first fake class),
    a labelled fake its own label. Items are :func:`evaluation_images` of ``faces``; ``probabilities``
    the detector's class probabilities for them, row for row."""
    fake_labels = [detector.labels[i] for i in detector.fake_indices]
    blend_kind = "manipulated" if "manipulated" in fake_labels else fake_labels[0]
    kinds, face_iter = [], iter(faces)
    for _, is_fake, source in items:
        if source.startswith("SBI of "):
            kinds.append(blend_kind)
            continue
        face = next(face_iter)
        kinds.append(face.label if is_fake and face.label in fake_labels else None)
    chosen = [i for i, kind in enumerate(kinds) if kind is not None]
    called = [fake_labels[j] for j in probabilities[chosen][:, detector.fake_indices].argmax(1)]
    out = {}
    for kind in fake_labels:
        mine = [c for i, c in zip(chosen, called) if kinds[i] == kind]
        out[kind] = {"faces": len(mine), "called": {k: mine.count(k) for k in fake_labels},
                     "accuracy": round(mine.count(kind) / len(mine), 4) if mine else None}
    return out


def _probabilities(detector, images: Sequence[np.ndarray], transform: Callable | None = None) -> np.ndarray:
    """Class probabilities ``(N, C)`` of ``images`` (each through ``transform`` first), in batches."""
    batch_size = 32
    out = []
    for start in range(0, len(images), batch_size):
        chunk = images[start : start + batch_size]
        if transform is not None:
            chunk = [transform(im) for im in chunk]
        out.append(detector.predict_crops(chunk, batch_size=batch_size))
    return np.concatenate(out) if out else np.zeros((0, len(detector.labels)), dtype=np.float32)


def refound_faces(faces: Sequence[CachedFace], desc: str = "app crop path") -> Iterator[tuple[int, np.ndarray, Any]]:
    """Each of ``faces`` found again in its source image as the app finds faces (MTCNN with the app's
    settings, the largest face): ``(index, image, face)``, one image at a time. A source that no longer
    loads or shows no face is skipped (the caller counts what it got back)."""
    from forensics.faces import FaceDetector
    from forensics.media import load_image

    finder = FaceDetector()
    for k, face in enumerate(tqdm(faces, desc=desc, unit="face", leave=False)):
        try:
            image = load_image(face.image_path)
        except Exception:  # noqa: BLE001 - a source that no longer loads is counted as not found
            continue
        found = finder.detect(image)
        if found:
            yield k, image, max(found, key=lambda f: f.width * f.height)


def app_crop_path(detector, faces: Sequence[CachedFace], cache_scores: np.ndarray, batch_size: int = 32) -> dict:
    """The validation faces (reals and generated faces: their source images) cut the app's way and scored
    as their cache crops are: MTCNN with the app's settings on the source image, its largest face cut as
    the app cuts it for this model (``forensics.faces.crop_face`` with its ``crop_options``: since the
    twenty-fifth session a model trained here is cut the cache's way too, fitted inside the image, at
    256 px, then resized; before, straight to the input size), against the crop cache's own crops. The card's
    validation figures come through the cache's path and the app's verdicts through the other; this says
    how far the two part: P(fake) of the same faces, reals flagged and generated-vs-real ROC-AUC by each."""
    from forensics.faces import crop_face

    kept, crops = [], []
    for k, image, largest in refound_faces(faces):
        crops.append(crop_face(image, largest, detector.input_size, **detector.info.crop_options()).image)
        kept.append(k)
    if not kept:
        return {}
    app = np.concatenate([_score(detector, crops[i:i + batch_size]) for i in range(0, len(crops), batch_size)])
    cache = np.asarray(cache_scores, dtype=np.float64)[kept]
    fake = np.array([faces[k].label != "real" for k in kept])
    delta = np.abs(app - cache)
    out = {"faces": len(faces), "scored": len(kept), "reals": int((~fake).sum()), "generated": int(fake.sum()),
           "mean_abs_delta": float(delta.mean()), "p95_abs_delta": float(np.percentile(delta, 95)),
           "max_abs_delta": float(delta.max()), "threshold": float(detector.threshold),
           "crop_size": detector.info.crop_size, "fit_inside": detector.info.fit_inside}
    for name, scores in (("cache", cache), ("app", app)):
        out[name] = {"reals_flagged": float((scores[~fake] > detector.threshold).mean()) if (~fake).any() else None,
                     "mean_p_fake_reals": float(scores[~fake].mean()) if (~fake).any() else None,
                     "roc_auc": binary_metrics(fake, scores)["roc_auc"] if fake.any() and (~fake).any() else None}
    return out


def _score(detector, images: Sequence[np.ndarray], transform: Callable | None = None) -> np.ndarray:
    """P(fake) of ``images``: the summed probability of the fake classes."""
    return detector.fake_probability(_probabilities(detector, images, transform))


HELD_OUT_ONLY = "held-out sources only (never trained on)"
# The frames of talking-head clips: the validated share of the training clips and the clips held out whole.
CLIP_SOURCES = (VIDEO_SOURCE, f"{VIDEO_SOURCE}, held out")

# The look of a studio or press photograph (more saturation, more mid-tone contrast, a warm cast): what the Stable
# Diffusion portraits have and few training reals do (docs/experiments.md, thirty-third session); the arguments of
# training.augment.grade after the image.
STUDIO_GRADE = (1.2, 0.4, 1.0, 1.05, 1.0, 0.95)
# What a phone camera does to a real face before anyone analyses it: noise reduction / beauty mode
# (edge-preserving smoothing) and sharpening. A detector that reads smooth skin as generated
# flags such reals; the shift of their mean P(fake) measures it.
CAMERA_PROCESSING: dict[str, Callable] = {
    "smoothed (bilateral filter 9, 50, 7)": lambda im: augment.smooth(im, 9, 50, 7),
    "sharpened (unsharp mask 1.5)": lambda im: augment.sharpen(im, 1.5),
    "colour graded (saturation 1.2, S curve 0.4, warm cast)": lambda im: augment.grade(im, *STUDIO_GRADE),
}
# What sharing does to it after: re-encoding. Compression pushes real faces towards "fake" too.
RE_ENCODING: dict[str, Callable] = {
    "JPEG quality 50": partial(augment.jpeg, quality=50),
    "H.264 CRF 32": partial(augment.h264, crf=32),
    "H.264 CRF 40": partial(augment.h264, crf=40),
}
# The robustness cases whose calibration is reported beside the clean one (``codec_calibration``).
CODEC_CALIBRATION_CASES = ("jpeg_50", "h264_crf_32", "h264_crf_40")


def real_face_probes(detector, faces: Sequence[CachedFace], images: Sequence[np.ndarray], scores: np.ndarray,
                     seed: int = 0, count: int = 300) -> dict:
    """How real faces never trained on fare, as mean P(fake) and the share flagged at the
    detector's threshold: by group (:func:`face_groups`), and on a fixed subset of ``count`` of
    them after camera processing (:data:`CAMERA_PROCESSING`). ``images``/``scores``: the real
    faces' crops and clean scores, in the order of ``faces``."""
    threshold = float(detector.threshold)
    scores = np.asarray(scores, dtype=float)

    def row(p: np.ndarray) -> dict:
        return {"faces": int(len(p)), "mean_p_fake": float(p.mean()), "flagged": float((p >= threshold).mean())}

    out: dict = {"faces": int(len(faces)), "threshold": threshold}
    if not len(faces):
        return out
    members = group_members(faces)
    out["groups"] = {g: row(scores[members[g]]) for g in sorted(members)}
    pick = np.sort(np.random.default_rng(seed).permutation(len(faces))[:count])
    chosen = [images[i] for i in pick]
    out["processing"] = {"clean": row(scores[pick])}
    for name, fn in {**CAMERA_PROCESSING, **RE_ENCODING}.items():
        out["processing"][name] = row(_score(detector, chosen, fn))
    return out


def group_false_alarms(faces: Sequence[CachedFace], scores: np.ndarray, threshold: float) -> dict:
    """Real faces' false alarms by group (:func:`face_groups`) and in all: mean P(fake), the share
    flagged at ``threshold`` and its 95% Wilson interval, per group."""
    scores = np.asarray(scores, dtype=float)

    def row(p: np.ndarray) -> dict:
        hits = int((p >= threshold).sum())
        low, high = wilson_interval(hits, len(p))
        return {"faces": int(len(p)), "mean_p_fake": float(p.mean()), "flagged": hits / len(p),
                "flagged_ci95": [low, high]}

    members = group_members(faces)
    return {"all": row(scores) if len(scores) else None,
            "groups": {g: row(scores[members[g]]) for g in sorted(members)}}


def unseen_real_samples(folder: str | Path, data: str, cache: str) -> tuple[dict, list]:
    """The model's training config pointed at ``data`` and ``cache`` with its own crop framing, and the
    real images its run's ``max_per_source`` left out of the pool (no split holds them)."""
    from training.pipeline import config_samples

    _, config = _crop_config(folder, data, cache)
    _, left_out = config_samples(config)
    return config, [s for s in left_out if s.label == "real"]


def score_faces(detector, faces: Sequence[CachedFace], batch: int = 256, desc: str = "faces") -> np.ndarray:
    """P(fake) of cached face crops, read and scored ``batch`` at a time (a progress bar on the CLI)."""
    if not faces:
        return np.zeros(0)
    return np.concatenate([_score(detector, [load_crop(f) for f in faces[i : i + batch]])
                           for i in tqdm(range(0, len(faces), batch), desc=desc, leave=False)])


def unseen_real_faces(detector, folder: str | Path, data: str, cache: str, batch: int = 256) -> dict | None:
    """The false-alarm probe on many more faces: the real faces the run's ``max_per_source`` left out of its
    pool (no split holds them: never trained on, never validated on, never used to calibrate),
    scored like validation faces, by group (:func:`group_false_alarms`). None when the cap left no
    real face out."""
    from training.pipeline import cached_faces

    config, reals = unseen_real_samples(folder, data, cache)
    if not reals:
        return None
    faces = cached_faces(config, samples=reals)
    scores = score_faces(detector, faces, batch, "unseen real faces")
    sources = dict(sorted(Counter(f.source for f in faces).items()))
    return {"images": len(reals), "faces": len(faces), "sources": sources,
            "threshold": float(detector.threshold), **group_false_alarms(faces, scores, float(detector.threshold))}


def source_subsets(sources: Sequence[str], y, holdout_sources: Sequence[str] = ()) -> dict[str, np.ndarray]:
    """The per-source comparisons, as boolean masks over the images: each fake source against all
    held-out reals and against each real source alone (a pair with the same preprocessing, such as
    FFHQ and StyleGAN2, is the fair one), each real source against its own self-blended fakes, and,
    when both classes have one, the images of the held-out sources only (a held-out real source's
    self-blended fakes count as held out): the source-held-out figure."""
    y = np.asarray(y)
    real_sources = sorted({s for s, t in zip(sources, y) if t == 0})
    fake_sources = sorted({s for s, t in zip(sources, y) if t == 1})
    out = {}
    for fake_source in fake_sources:
        out[f"{fake_source} vs all held-out reals"] = np.array([s == fake_source or s in real_sources for s in sources])
        for real_source in real_sources if len(real_sources) > 1 else ():
            if fake_source != f"SBI of {real_source}":  # that pair is the row "<real> reals vs their SBI fakes"
                out[f"{fake_source} vs {real_source} reals"] = np.array([s in (fake_source, real_source)
                                                                        for s in sources])
    for real_source in real_sources:
        out[f"{real_source} reals vs their SBI fakes"] = np.array([s in (real_source, f"SBI of {real_source}")
                                                                  for s in sources])
    held = set(holdout_sources)
    held_mask = np.array([s in held or (s.startswith("SBI of ") and s[len("SBI of "):] in held) for s in sources])
    if len(held_mask) and len(np.unique(y[held_mask])) == 2:
        out[HELD_OUT_ONLY] = held_mask
    return out


def _subset(y, p, mask) -> dict | None:
    if mask.sum() == 0 or len(np.unique(y[mask])) < 2:
        return None
    return binary_metrics(y[mask], p[mask])


def robustness(detector, images, y, seed: int = 0, count: int = 600, sources: Sequence[str] | None = None,
               holdout_sources: Sequence[str] = (), scores: np.ndarray | None = None) -> dict:
    """ROC-AUC under JPEG re-compression, half-size resizing, blur, a video-codec-like pass, H.264
    (libx264) at two rate factors and small faces (the crop shrunk to 128 or 96 px, H.264 at CRF 32
    at that size, enlarged again: a face in a wide shot of a compressed video), on a
    fixed random subset of ``count`` images stratified by label (each transform rescans the set).
    With ``sources``, ``per_source`` holds the same curves for each per-source comparison of that
    subset (see :func:`source_subsets`), so that a kind of fake the model holds up on is not hidden
    behind one it never learnt. ``scores``: the images' clean scores, when already computed."""
    rng = np.random.default_rng(seed)
    pick = np.concatenate([rng.permutation(np.flatnonzero(y == label))[: count // 2] for label in (0, 1)])
    images, y = [images[i] for i in pick], y[pick]
    clean = scores[pick] if scores is not None else None
    cases: dict[str, Callable | None] = {f"jpeg_{q}": (lambda im, q=q: augment.jpeg(im, q)) for q in JPEG_QUALITIES}
    cases["resize_0.5"] = lambda im: cv2.resize(cv2.resize(im, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA),
                                                (im.shape[1], im.shape[0]), interpolation=cv2.INTER_LINEAR)
    cases["blur_5"] = lambda im: cv2.GaussianBlur(im, (5, 5), 0)
    cases["video_codec_like"] = lambda im: augment.video_codec_like(im, 30)
    for crf in H264_RATE_FACTORS:  # a real codec pass, as video sites re-encode
        cases[f"h264_crf_{crf}"] = lambda im, crf=crf: augment.h264(im, crf)
    small_sides = {f"small_{side}_h264_crf_32": side for side in SMALL_FACE_SIDES}
    for name, side in small_sides.items():  # a face far from the camera: compressed small, then enlarged for the detector
        cases[name] = lambda im, side=side: augment.small_face(im, side, lambda s: augment.h264(s, 32))
    cases["clean"] = None
    subsets = source_subsets([sources[i] for i in pick], y, holdout_sources) if sources is not None else {}
    out: dict = {"images": int(len(pick))}
    per_source: dict[str, dict] = {name: {} for name in subsets}
    small_calibration: dict = {}
    codec_calibration: dict = {}
    for name, fn in tqdm(cases.items(), desc="robustness", leave=False):
        if name in small_sides:  # how honest P(fake) is on faces that small, with and without their temperature
            probabilities = _probabilities(detector, images, fn)
            p = detector.fake_probability(probabilities)
            side = small_sides[name]
            t = size_temperature(detector.info.size_temperatures, side)
            softened = detector.fake_probability(temper(probabilities, [t] * len(p)))
            small_calibration[str(side)] = {"temperature": round(t, 4), "ece_without": calibration(y, p)["ece"],
                                            "ece_with": calibration(y, softened)["ece"]}
        else:
            p = clean if name == "clean" and clean is not None else _score(detector, images, fn)
        out[name] = binary_metrics(y, p)["roc_auc"]
        if name == "clean" or name in CODEC_CALIBRATION_CASES:  # how honest P(fake) stays after compression
            codec_calibration[name] = calibration(y, p)["ece"]
        for subset, mask in subsets.items():
            m = _subset(y, p, mask)
            per_source[subset][name] = m["roc_auc"] if m else None
    if subsets:
        out["per_source"] = {name: {"images": int(subsets[name].sum()), **curve} for name, curve in per_source.items()}
    out["small_face_calibration"] = small_calibration
    out["codec_calibration"] = codec_calibration
    return out


def expression_swaps(detector, faces: Sequence[CachedFace], seed: int = 0, real_images: Sequence[np.ndarray] | None = None,
                     real_scores: np.ndarray | None = None) -> dict:
    """Reenactment-like fakes of the validation talking-head frames: each real frame with the same
    person's face from another frame of its clip blended in (:func:`training.swap.expression_swap`,
    no rendering jitter: colour-matched, only the expression and the seam differ), drawn with a fixed
    seed. ROC-AUC of the frames against their swaps, clean and through H.264 at CRF 32, overall and
    per mask (lower face, inner face, full face). ``real_images``/``real_scores``: the frames and
    their clean scores, when already at hand (in the order of ``faces``' clip frames)."""
    frames = [f for f in faces if f.label == "real" and f.source in CLIP_SOURCES]
    out: dict = {"faces": len(frames), "clips": len({f.group for f in frames})}
    reals = list(real_images) if real_images is not None else [load_crop(f) for f in frames]
    pairs = expression_partners([np.asarray(f.landmarks) for f in frames], [f.group for f in frames],
                                [True] * len(frames))
    fakes, outlines, kept = [], [], []
    for i, face in enumerate(frames):
        if not len(pairs[i]):
            continue
        rng = np.random.default_rng((seed, 14, i))
        outline = str(rng.choice(list(EXPRESSION_OUTLINES), p=list(EXPRESSION_OUTLINES.values())))
        picked = rng.choice(pairs[i], size=min(3, len(pairs[i])), replace=False)
        sources = [(reals[int(j)], np.asarray(frames[int(j)].landmarks, np.float32)) for j in picked]  # decoded once
        fake, _ = expression_swap(reals[i], np.asarray(face.landmarks, np.float32), sources, rng, jitter=0.0,
                                  outline=outline)
        fakes.append(fake)
        outlines.append(outline)
        kept.append(i)
    out["swaps"] = len(fakes)
    if not fakes:
        return out
    real_pick = [reals[i] for i in kept]
    outlines = np.array(outlines)
    clean_real = np.asarray(real_scores)[kept] if real_scores is not None else _score(detector, real_pick)
    h264 = partial(augment.h264, crf=32)
    for name, real_p, fake_p in (("clean", clean_real, _score(detector, fakes)),
                                 ("h264_crf_32", _score(detector, real_pick, h264), _score(detector, fakes, h264))):
        y = np.r_[np.zeros(len(real_p)), np.ones(len(fake_p))]
        row = {"roc_auc": binary_metrics(y, np.r_[real_p, fake_p])["roc_auc"],
               "mean_p_real": float(np.mean(real_p)), "mean_p_fake": float(np.mean(fake_p)),
               "flagged": float(np.mean(fake_p >= float(detector.threshold)))}
        for outline in EXPRESSION_OUTLINES:
            chosen = outlines == outline
            if chosen.any():
                y_o = np.r_[np.zeros(len(real_p)), np.ones(int(chosen.sum()))]
                row[f"roc_auc_{outline}"] = binary_metrics(y_o, np.r_[real_p, fake_p[chosen]])["roc_auc"]
        out[name] = row
    return out


def adversarial(detector, images, y, seed: int = 0, count: int = 64, epsilons=(0.5, 1.0, 2.0, 4.0)) -> dict:
    """Accuracy (argmax class) on clean images and under FGSM and
    PGD (5 steps) at several budgets in pixel units, on a fixed random subset of the images."""
    import torch

    from training.adversarial import PixelSpace, robust_accuracy

    torch.manual_seed(seed)  # PGD's random start: the same figures on every run
    pick = np.random.default_rng(seed).permutation(len(images))[:count]
    batch = detector.preprocess([images[i] for i in pick])
    labels = torch.tensor([detector.fake_indices[0] if y[i] else _real_index(detector) for i in pick])
    report = robust_accuracy(detector.model, [(batch, labels)], PixelSpace(detector.info.mean, detector.info.std),
                             epsilons=epsilons, pgd_steps=5)
    return {"images": int(len(pick)), **{k: round(v, 4) for k, v in report.items()}}


def _real_index(detector) -> int:
    return next(i for i in range(len(detector.labels)) if i not in detector.fake_indices)


def threshold_from_rule(record: dict, threshold: float | None) -> bool:
    """Whether ``threshold`` (the detector's, as loaded) is the one the balanced-accuracy rule picked on its
    validation faces at training (the record's calibration). Only such a threshold has a spread worth
    measuring: a fixed 0.5, or one set by hand, is not where that rule would put it, and a spread around the
    rule's pick would make the app call scores near the wrong threshold unsettled."""
    picked = ((record or {}).get("calibration") or {}).get("threshold")
    try:
        return threshold is not None and abs(float(picked) - float(threshold)) < 1e-3
    except (TypeError, ValueError):
        return False


def _record(folder: Path) -> dict:
    return read_json(Path(folder) / "training.json") or {}


def _crop_config(folder: str | Path, data: str, cache: str) -> tuple[dict, dict]:
    """A model folder's training record, and its training config pointed at ``data`` and ``cache``
    with the detector's own crop margin and framing (its config.json: how inference crops, whatever the
    record says)."""
    from forensics.catalog import read_config

    record = _record(Path(folder))
    config = dict(record.get("config", {}))
    config.update({"data": data, "cache": cache})
    config.setdefault("max_padding", 0.15)
    info = read_config(Path(folder)).get("forensics", {})
    config["face_margin"] = float(info.get("face_margin", config.get("face_margin", 0.3)))
    config["face_framing"] = str(info.get("face_framing", config.get("face_framing", "box")))
    return record, config


def validation_faces(folder: str | Path, data: str, cache: str) -> list[CachedFace]:
    """The faces a model folder's training record kept for validation (all faces without a record)."""
    from training.pipeline import cached_faces, relative_to_data

    record, config = _crop_config(folder, data, cache)
    faces = cached_faces(config)
    wanted = set(record.get("validation_images", []))
    chosen = [f for f in faces if relative_to_data(f.image_path, data) in wanted] if wanted else faces
    # Other data than the model was trained on: none of it was seen in training, all of it validates.
    return chosen or faces


def training_items(folder: str | Path, data: str, cache: str, count: int = 256,
                   seed: int = 0) -> list[tuple[np.ndarray, int, str]]:
    """``count`` faces from a model's training side (never its validation faces): half reals,
    half their self-blended fakes; calibration faces for its int8 build."""
    from training.pipeline import cached_faces, relative_to_data

    record, config = _crop_config(folder, data, cache)
    held = set(record.get("validation_images", []))
    holdout = set(held_out_sources(config))
    faces = [f for f in cached_faces(config) if relative_to_data(f.image_path, data) not in held
             and f.source not in holdout and f.label == "real"]
    rng = np.random.default_rng(seed)
    picked = [faces[i] for i in sorted(rng.permutation(len(faces))[: max(1, count // 2)])]
    items = evaluation_images(picked, seed + 7)
    return items[:count]


def save_record_faces(folder: str | Path, data: str, cache: str, out: str | Path, split: str = "validation",
                      limit: int | None = None, seed: int = 0) -> int:
    """Write a model's validation faces (label-stratified to ``limit``) or
    ``limit`` calibration faces from its training side (:func:`training_items`) to ``out``, an .npz
    of plain arrays: how the library's int8 audit and quantizer read them (``python -m training
    faces``) without importing training. Returns the number of faces."""
    if split == "training":
        items = training_items(folder, data, cache, limit or 256, seed)
    else:
        items = evaluation_images(validation_faces(folder, data, cache), seed)  # as run_evaluation scores them
        if limit and len(items) > limit:
            y = np.array([t for _, t, _ in items])
            rng = np.random.default_rng(seed)
            pick = np.concatenate([rng.permutation(np.flatnonzero(y == v))[: limit // 2] for v in (0, 1)])
            items = [items[i] for i in sorted(pick)]
    np.savez(out, labels=np.array([t for _, t, _ in items], int), sources=np.array([s for _, _, s in items], str),
             **{f"image_{i}": im for i, (im, _, _) in enumerate(items)})
    return len(items)


def measured_weights(folder: Path) -> dict:
    """Which model the figures are of: its folder (relative to the working directory when inside it, so
    that a record made in a checkout names no one's home directory) and the SHA-256 of its weights, which
    ties the figures to the weights wherever the folder is copied."""
    folder = Path(folder)
    try:
        shown = str(folder.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        shown = str(folder)
    weights = folder / "model.safetensors"
    return {"path": shown, "weights_sha256": sha256_file(weights) if weights.is_file() else None}


def run_evaluation(detector_dir: str, data: str, cache: str, out: str | None = None,
                   holdout_sources: Sequence[str] | None = None, seed: int = 0, videos: bool = True,
                   photos: str | None = None) -> dict:
    """Every figure of a model's card, into ``metrics.json``, ``report.html`` and the card. ``photos``: a
    folder of real photographs for the false-alarm probe (default: ``photos`` beside the labels CSV, when
    there is one; "none": no probe)."""
    detector = load_detector(detector_dir, cache=False)
    folder = Path(detector.path)
    record = _record(folder)
    val = validation_faces(folder, data, cache)
    if holdout_sources is None:
        holdout_sources = held_out_sources(record.get("config", {}))
    items = evaluation_images(val, seed)
    images = [im for im, _, _ in items]
    y = np.array([t for _, t, _ in items])
    sources = [s for _, _, s in items]
    probabilities = _probabilities(detector, images)  # one pass: P(fake) and, with several fake classes, the kinds
    p = detector.fake_probability(probabilities)
    summary = binary_metrics(y, p, detector.threshold)
    tuned = tune_threshold(y, p)
    per_source = {name: _subset(y, p, mask) for name, mask in source_subsets(sources, y, holdout_sources).items()}
    metrics = {
        "detector": {**detector.describe(), **measured_weights(folder)},
        "validation_faces": len(val),
        "evaluated_images": len(items),
        "holdout_sources": list(holdout_sources),
        "summary": {"roc_auc": summary["roc_auc"], "f1": summary["f1"], "accuracy": summary["accuracy"],
                    "threshold": detector.threshold, "tuned_threshold": tuned},
        "validation": summary,
        "at_tuned_threshold": binary_metrics(y, p, tuned),
        "per_source": per_source,
        "calibration": calibration(y, p),
        "threshold_spread": threshold_spread(y, p) if threshold_from_rule(record, detector.threshold) else None,
        "roc": roc_points(y, p),
        "robustness_auc": robustness(detector, images, y, seed, sources=sources, holdout_sources=holdout_sources,
                                     scores=p),
    }
    metrics["robustness_auc_per_source"] = metrics["robustness_auc"].pop("per_source", {})
    metrics["small_face_calibration"] = metrics["robustness_auc"].pop("small_face_calibration", {})
    metrics["codec_calibration"] = metrics["robustness_auc"].pop("codec_calibration", {})
    metrics["summary"]["jpeg_50_auc"] = metrics["robustness_auc"]["jpeg_50"]
    # The figure: the sources never trained on, alone (None when they hold only one class).
    held = per_source.get(HELD_OUT_ONLY)
    metrics["summary"]["source_heldout_auc"] = held["roc_auc"] if held else None
    metrics["summary"]["source_heldout_jpeg_50_auc"] = (
        metrics["robustness_auc_per_source"].get(HELD_OUT_ONLY, {}).get("jpeg_50") if held else None)
    metrics["adversarial_accuracy"] = adversarial(detector, images, y, seed)
    reals = [i for i, (_, t, _) in enumerate(items) if t == 0]  # the real faces, in the order of `val`
    metrics["real_faces"] = real_face_probes(detector, [f for f in val if f.label == "real"],
                                             [images[i] for i in reals], p[reals], seed)
    unseen = unseen_real_faces(detector, folder, data, cache)
    if unseen:
        metrics["real_faces"]["unseen"] = unseen
    real_val = [f for f in val if f.label == "real"]
    clip_frames = [k for k, f in enumerate(real_val) if f.source in CLIP_SOURCES]
    metrics["expression_swaps"] = expression_swaps(detector, real_val, seed, [images[reals[k]] for k in clip_frames],
                                                   p[[reals[k] for k in clip_frames]])
    if len(detector.fake_indices) > 1:
        metrics["fake_kinds"] = fake_kind_accuracy(detector, val, items, probabilities)
    own = [i for i, (_, _, source) in enumerate(items) if not source.startswith("SBI of ")]  # one per face of `val`
    metrics["app_crop_path"] = app_crop_path(detector, val, p[own])
    if videos:
        trained, validated = _training_videos(record, data)
        metrics["videos"] = video_results(detector_dir, data, trained, validated=validated)
    photos_dir = real_photos_folder(data, photos)
    if photos_dir:
        metrics["real_photos"] = real_photo_false_alarms(load_detector(detector_dir), photos_dir, keep_photos=False,
                                                         trained=trained_photos(record.get("config", {}), data))
    out_dir = Path(out) if out else folder
    out_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(out_dir / "metrics.json", metrics)
    write_report(metrics, out_dir / "report.html", folder)
    if out_dir == folder and record:
        write_card(folder, metrics)  # the card states what was just measured
    return metrics


def run_video_evaluation(detector_dir: str, data: str, out: str | None = None, frames: int = 32) -> dict:
    """The labelled videos alone (``video_results``, those the model trained on left out): the
    video-level figures of ``run_evaluation`` in a minute or two, written to ``out/videos.json``."""
    video_evaluation_inputs(data, frames)
    detector = load_detector(detector_dir)  # cached: video_results' Analyzer gets this same load
    trained, validated = _training_videos(_record(Path(detector.path)), data)
    videos = video_results(detector.path, data, trained, frames, validated=validated)
    if not videos:
        raise ValueError(f"{data} labels no video this model has not trained on")
    if out:
        write_atomic(Path(out) / "videos.json", videos)
    return videos


def _frame_folders(images) -> set[str]:
    """The frame folders (``<video group, '/' as '__'>``, without ``@frames``) that image paths of a
    training record lie in: which videos' frames they are."""
    found = set()
    for image in images:
        parts = Path(image).parts
        for above, part in zip(parts, parts[1:]):
            if above == FRAMES_DIR and "@" in part:
                found.add(part.rsplit("@", 1)[0])
    return found


def _training_videos(record: dict, data: str) -> tuple[set[str], set[str]]:
    """File names of the videos of a model's ``video_folders`` (those held out whole by
    ``holdout_videos`` left out), split in two: those whose frames it trained on, and those the grouped
    split held back whole for validation (a video is one group: none of their frames trained, but the
    epoch and the calibration were chosen on them)."""
    config = record.get("config", {})
    data = Path(data)
    if not config.get("video_frames") or not data.is_file():
        return set(), set()
    held = set(config.get("holdout_videos") or [])
    in_validation = _frame_folders(record.get("validation_images") or [])
    folders = [data.parent / f for f in config.get("video_folders") or []]
    trained, validated = set(), set()
    for sample in read_labels_csv(data, kinds=VIDEO_EXTENSIONS):
        name = Path(sample.path).name
        if name not in held and any(_inside(sample.path, f) for f in folders):
            (validated if sample.group.replace("/", "__") in in_validation else trained).add(name)
    return trained, validated


def validated_videos(record: dict, data: str) -> set[str]:
    """File names of the training videos that the grouped split held back whole for validation: scored
    as unseen videos, and marked as such (:func:`_training_videos`)."""
    return _training_videos(record, data)[1]


def trained_videos(record: dict, data: str) -> set[str]:
    """File names of the videos whose frames a model trained on (never scored as unseen videos): the
    videos of its ``video_folders`` but those held out whole and those the grouped split kept for
    validation (:func:`_training_videos`)."""
    return _training_videos(record, data)[0]


VIDEO_AGGREGATIONS = {
    "mean": lambda s, w: float(np.mean(s)),
    "median": lambda s, w: float(np.median(s)),
    "top25_mean": lambda s, w: float(np.mean(np.sort(s)[-max(1, len(s) // 4):])),
    "max": lambda s, w: float(np.max(s)),
    # Quality-weighted means (the "quality-weighted aggregation over a track"): each frame's
    # P(fake) weighted by how much the detector can see in it (``frame_quality``).
    "quality_mean": lambda s, w: float(np.average(s, weights=w["quality"])),
    "sharpness_mean": lambda s, w: float(np.average(s, weights=w["sharpness"])),
}

#: The face side (pixels in the frame) at which a face fills the detector's input without upscaling;
#: smaller faces are upsampled and weigh less.
QUALITY_FULL_SIDE = 128.0


def frame_quality(face) -> dict[str, float]:
    """Weights of one tracked face for the quality-weighted poolings:

    - ``quality``: MTCNN's confidence times the face's resolution, min(1, sqrt(w*h) / 128): a face
      that was upsampled into the detector's input, or that MTCNN was unsure of, counts less;
    - ``sharpness``: the variance of the Laplacian of the crop's grey levels (motion blur and
      defocus lower it), so sharp frames count more. Both are positive (floored at 1e-6)."""
    conf = float(face.face_confidence) if face.face_confidence is not None else 1.0
    side = float(np.sqrt(max(face.box[2] - face.box[0], 0) * max(face.box[3] - face.box[1], 0))) if face.box else 0.0
    quality = conf * min(1.0, side / QUALITY_FULL_SIDE)
    sharpness = 0.0
    if face.crop is not None:
        grey = face.crop if face.crop.ndim == 2 else cv2.cvtColor(np.ascontiguousarray(face.crop), cv2.COLOR_RGB2GRAY)
        sharpness = float(cv2.Laplacian(grey.astype(np.float32), cv2.CV_32F).var())
    return {"quality": max(quality, 1e-6), "sharpness": max(sharpness, 1e-6)}


def video_results(detector_dir: str, data: str, skip: set[str] = frozenset(), frames: int = 32,
                  validated: set[str] = frozenset()) -> dict:
    """Each labelled video's verdict through the full analysis (MTCNN, tracking, aggregation);
    videos in ``skip`` (trained on) are left out. Beside the app's verdict, the video-level AUC of
    other ways to pool a track's frame scores (mean, median, mean of the top quarter, max), on all
    ``frames`` sampled frames and on every other one (half as many), from the same single pass. Videos
    in ``validated`` (held back by the training split: never trained on, validated on) are marked.
    ``app_sampling``: the app's way, a second pass at half the frames in which a close call is sampled
    again at about twice the frames, up to twice (``Analyzer.look_again``), with each video's score and
    the frames it rested on."""
    from forensics.analysis import Analyzer

    path = Path(data)
    if path.suffix.lower() != ".csv":
        return {}
    videos = [v for v in read_labels_csv(path, kinds=VIDEO_EXTENSIONS)
              if Path(v.path).name not in skip]
    if not videos:
        return {}
    analyzer = Analyzer(load_detector(detector_dir), methods=[], frames=frames, look_again=0)  # the card: fixed frames
    app = Analyzer(analyzer.detector, analyzer.face_detector, methods=[], frames=max(1, frames // 2), look_again=2)
    rows = []
    for sample in tqdm(videos, desc="videos", leave=False):
        result = analyzer.analyze(sample.path)
        again = app.analyze(sample.path)
        rows.append({"video": Path(sample.path).name, "label": sample.label, "source": sample.source,
                     "fake_probability": result.fake_probability, "error": result.error,
                     "pooled": _pooled_scores(result),
                     "app": {"fake_probability": again.fake_probability, "frames": again.media.sampled_frames
                             if again.media else None, "looked_again": "passes" in again.uncertainty},
                     **({"validation_clip": True} if Path(sample.path).name in validated else {})})
    scored = [r for r in rows if r["fake_probability"] is not None]
    y = np.array([r["label"] != "real" for r in scored])
    both = len(set(y)) == 2
    auc = binary_metrics(y, [r["fake_probability"] for r in scored])["roc_auc"] if both else None
    variants = {}
    for key in (scored[0]["pooled"] if scored and both else {}):
        values = [r["pooled"].get(key) for r in scored]
        if all(v is not None for v in values):
            variants[key] = binary_metrics(y, values)["roc_auc"]
    app_rows = [r for r in rows if r["app"]["fake_probability"] is not None]  # a face found at the app's frames
    app_y = np.array([r["label"] != "real" for r in app_rows])
    app_auc = (binary_metrics(app_y, [r["app"]["fake_probability"] for r in app_rows])["roc_auc"]
               if len(set(app_y)) == 2 else None)
    return {"videos": rows, "roc_auc": auc, "frames": frames, "aggregation_auc": variants,
            "app_sampling": {"frames": app.frames, "look_again": app.look_again, "roc_auc": app_auc},
            "note": f"{len(scored)} videos: an AUC over so few is a coarse step"}


def _pooled_scores(result) -> dict[str, float]:
    """The video's score (max over counted tracks) under each pooling of a track's frame scores,
    with all sampled frames and with every other one."""
    counted = {t.track for t in result.tracks if t.counted}
    by_track: dict[int, list[tuple[int, float, dict[str, float]]]] = {}
    for face in result.faces:
        if face.track in counted:
            by_track.setdefault(face.track, []).append((face.frame, face.fake_probability, frame_quality(face)))
    if not by_track:
        return {}
    frames = sorted({f for items in by_track.values() for f, _, _ in items})
    half = set(frames[::2])

    def pooled(pool, items):
        scores = np.array([p for _, p, _ in items])
        weights = {k: np.array([q[k] for _, _, q in items]) for k in items[0][2]}
        return pool(scores, weights)

    out = {}
    for name, pool in VIDEO_AGGREGATIONS.items():
        out[f"{name}, all frames"] = max(pooled(pool, items) for items in by_track.values())
        halves = [[i for i in items if i[0] in half] for items in by_track.values()]
        out[f"{name}, half the frames"] = max(pooled(pool, h) for h in halves if h) if any(halves) else None
    return out


def write_report(metrics: dict, path: Path, model_dir: Path) -> None:
    """ROC, robustness curve, confusion matrix and (when the training history is there) loss curves."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=2, cols=2, subplot_titles=("ROC (validation)", "ROC-AUC under JPEG re-compression",
                                                         "Confusion matrix", "Training loss / validation AUC"))
    fig.add_trace(go.Scatter(x=metrics["roc"]["fpr"], y=metrics["roc"]["tpr"], name="ROC"), row=1, col=1)
    rob = metrics["robustness_auc"]
    qualities = [q for q in JPEG_QUALITIES]
    fig.add_trace(go.Scatter(x=qualities, y=[rob[f"jpeg_{q}"] for q in qualities], mode="lines+markers",
                             name="AUC vs JPEG quality (all)"), row=1, col=2)
    for subset, curve in (metrics.get("robustness_auc_per_source") or {}).items():
        fig.add_trace(go.Scatter(x=qualities, y=[curve.get(f"jpeg_{q}") for q in qualities], mode="lines+markers",
                                 line={"dash": "dot"}, name=f"{subset} ({curve.get('images')} images)"), row=1, col=2)
    cm = metrics["validation"]["confusion_matrix"]
    fig.add_trace(go.Heatmap(z=cm, x=["pred real", "pred fake"], y=["real", "fake"], text=cm, texttemplate="%{text}",
                             showscale=False), row=2, col=1)
    history = _record(model_dir).get("history")
    if history:
        fig.add_trace(go.Scatter(x=[h["epoch"] for h in history], y=[h["train_loss"] for h in history],
                                 name="train loss"), row=2, col=2)
        fig.add_trace(go.Scatter(x=[h["epoch"] for h in history], y=[h["val"]["roc_auc"] for h in history],
                                 name="val AUC"), row=2, col=2)
    fig.update_layout(height=800, title=f"Evaluation of {metrics['detector']['name']}")
    write_atomic(path, fig.to_html(include_plotlyjs=True))
