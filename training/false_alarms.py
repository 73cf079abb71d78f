"""False alarms on real photographs: every image under a folder of real photos (none of them in any
training data) through the app's own analysis (MTCNN, the detector's crop, its calibration and size
temperatures), and the share of faces and of photos over the detector's threshold, per subfolder and
by face size. A "fake" verdict on a real photo is a false alarm, so this is the false-alarm rate an
analyst meets on ordinary photographs, which may be of another kind than the detector's training
reals. ``python -m training evaluate`` measures it on ``<data's folder>/photos`` when there is one
(``metrics.json``'s ``real_photos``); ``scripts/false-alarms.py`` compares detectors."""
from __future__ import annotations

from pathlib import Path

from forensics.core.labelled import IMAGE_EXTENSIONS
from forensics.core.labelled import images_under as photos_under
from forensics.detectors.card import REAL_PHOTO_SMALL_FACE as SMALL_FACE  # faces narrower are counted apart


def _rate(flags: list[bool]) -> float | None:
    return sum(flags) / len(flags) if flags else None


def _summary(rows: list[dict], threshold: float) -> dict:
    faces = [f for r in rows for f in r["faces"]]
    scored = [r for r in rows if r["p_fake"] is not None]
    small = [f for f in faces if (f["width"] or 0) < SMALL_FACE]
    large = [f for f in faces if (f["width"] or 0) >= SMALL_FACE]
    return {"photos": len(rows), "photos_with_faces": len(scored), "faces": len(faces),
            "faces_flagged": _rate([f["p_fake"] > threshold for f in faces]),
            "photos_flagged": _rate([r["p_fake"] > threshold for r in scored]),
            "mean_p_fake": sum(f["p_fake"] for f in faces) / len(faces) if faces else None,
            "faces_small": len(small), "faces_small_flagged": _rate([f["p_fake"] > threshold for f in small]),
            "faces_large": len(large), "faces_large_flagged": _rate([f["p_fake"] > threshold for f in large])}


def real_photo_false_alarms(detector, folder: str | Path, photos: list[Path] | None = None,
                            keep_photos: bool = True, trained: set[Path] = frozenset()) -> dict:
    """``detector`` (a loaded detector or a name) on every photo below ``folder``: the shares over its
    threshold overall (``all``) and per first-level subfolder (``groups``), and, with ``keep_photos``,
    each photo's faces (``photos``). Photos in ``trained`` (resolved paths: the model trained on them,
    ``trained_photos``) are left out and counted (``trained_left_out``)."""
    from tqdm import tqdm

    from forensics.analysis import Analyzer
    from forensics.detectors import load_detector

    root = Path(folder)
    photos = photos_under(root) if photos is None else photos
    if not photos:
        raise FileNotFoundError(f"{root}: no image ({', '.join(sorted(IMAGE_EXTENSIONS))}) below it")
    kept = [p for p in photos if Path(p).resolve() not in trained]
    left_out = len(photos) - len(kept)
    if not kept:
        raise ValueError(f"{root}: the model trained on every photo below it")
    photos = kept
    model = load_detector(detector) if isinstance(detector, (str, Path)) else detector
    analyzer = Analyzer(model, methods=[])
    rows = []
    for photo in tqdm(photos, desc="real photos", unit="photo", leave=False):
        result = analyzer.analyze(photo)
        relative = photo.relative_to(root)
        rows.append({"photo": relative.as_posix(), "group": relative.parts[0] if len(relative.parts) > 1 else ".",
                     "p_fake": result.fake_probability, "error": result.error,
                     "faces": [{"p_fake": f.fake_probability, "width": (f.box[2] - f.box[0]) if f.box else None}
                               for f in result.faces if f.fake_probability is not None]})
    threshold = float(model.threshold)
    groups = sorted({r["group"] for r in rows})
    out = {"folder": root.as_posix(), "threshold": threshold, "small_face_px": SMALL_FACE, "trained_left_out": left_out,
           "all": _summary(rows, threshold),
           "groups": {g: _summary([r for r in rows if r["group"] == g], threshold) for g in groups}}
    if keep_photos:
        out["photos"] = rows
    return out


def real_photos_folder(data: str | Path, photos: str | Path | None = None) -> Path | None:
    """Where ``evaluate`` measures false alarms on real photos: ``photos`` when given ("none": nowhere),
    else a ``photos`` folder beside the labels CSV ``data``, when it holds an image."""
    if photos is not None:
        return None if str(photos) == "none" else Path(photos)
    beside = Path(data).parent / "photos"
    if Path(data).is_file() and beside.is_dir() and photos_under(beside):
        return beside
    return None


def trained_photos(config: dict, data: str | Path) -> set[Path]:
    """The photos a model trained on (its config's ``photo_folders``, relative to the labels CSV
    ``data``), as resolved paths: a false-alarm measure leaves them out."""
    return {p.resolve() for folder in config.get("photo_folders") or []
            for p in photos_under(Path(data).parent / folder)}


def detector_trained_photos(detector) -> set[Path]:
    """``trained_photos`` of a loaded detector, from its folder's training record (none without one)."""
    from forensics.core.io import read_json

    config = (read_json(Path(detector.path) / "training.json") or {}).get("config") or {}
    return trained_photos(config, config["data"]) if config.get("photo_folders") and config.get("data") else set()
