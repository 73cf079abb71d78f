"""How often detectors call real photographs manipulated: every image under a folder of real photos
(none of them in any training data) through the app's own analysis (MTCNN, the detector's crop, its
calibration and size temperatures), and the share of faces and of images over each detector's
threshold, per subfolder and by face size. A verdict on a real photo that says "fake" is a false
alarm, so this is the false-alarm rate an analyst meets on ordinary photographs.

    .venv/bin/python scripts/false-alarms.py default runs/default-v7 --photos ../shared/data/photos \
        --json runs/false-alarms.json
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from forensics.core import write_atomic  # noqa: E402
from forensics.media import IMAGE_EXTENSIONS  # noqa: E402

SMALL_FACE = 128  # faces narrower than this (source pixels) are reported apart: the detector sees them enlarged


def photos_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def _rate(flags: list[bool]) -> float | None:
    return sum(flags) / len(flags) if flags else None


def score(detector: str, photos: list[Path], root: Path) -> dict:
    """Each photo's faces through the app's analysis; the shares over the detector's threshold."""
    from tqdm import tqdm

    from forensics.analysis import Analyzer
    from forensics.detectors import load_detector

    model = load_detector(detector)
    analyzer = Analyzer(model, methods=[])
    rows = []
    for photo in tqdm(photos, desc=f"false alarms {detector}", unit="photo", leave=False):
        result = analyzer.analyze(photo)
        faces = [{"p_fake": f.fake_probability, "width": (f.box[2] - f.box[0]) if f.box else None}
                 for f in result.faces if f.fake_probability is not None]
        rows.append({"photo": photo.relative_to(root).as_posix(), "group": photo.relative_to(root).parts[0]
                     if len(photo.relative_to(root).parts) > 1 else ".", "p_fake": result.fake_probability,
                     "faces": faces, "error": result.error})
    threshold = float(model.threshold)

    def summary(chosen: list[dict]) -> dict:
        faces = [f for r in chosen for f in r["faces"]]
        scored = [r for r in chosen if r["p_fake"] is not None]
        return {"photos": len(chosen), "photos_with_faces": len(scored),
                "faces": len(faces), "faces_flagged": _rate([f["p_fake"] > threshold for f in faces]),
                "photos_flagged": _rate([r["p_fake"] > threshold for r in scored]),
                "mean_p_fake": sum(f["p_fake"] for f in faces) / len(faces) if faces else None,
                "faces_small": len([f for f in faces if (f["width"] or 0) < SMALL_FACE]),
                "faces_small_flagged": _rate([f["p_fake"] > threshold for f in faces if (f["width"] or 0) < SMALL_FACE]),
                "faces_large_flagged": _rate([f["p_fake"] > threshold for f in faces if (f["width"] or 0) >= SMALL_FACE])}

    groups = sorted({r["group"] for r in rows})
    return {"detector": detector, "threshold": threshold, "all": summary(rows),
            "groups": {g: summary([r for r in rows if r["group"] == g]) for g in groups}, "photos": rows}


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.0f}%"


def table(results: list[dict]) -> str:
    lines = ["| detector | photos (with faces) | faces | faces flagged | photos flagged | faces under "
             f"{SMALL_FACE} px flagged | larger faces flagged | mean P(fake) |", "|---|---|---|---|---|---|---|---|"]
    for r in results:
        for name, s in [("all", r["all"]), *r["groups"].items()]:
            mean = "n/a" if s["mean_p_fake"] is None else f"{s['mean_p_fake']:.3f}"
            lines.append(f"| {r['detector']} ({name}) | {s['photos']} ({s['photos_with_faces']}) | {s['faces']} "
                         f"| {_pct(s['faces_flagged'])} | {_pct(s['photos_flagged'])} "
                         f"| {_pct(s['faces_small_flagged'])} ({s['faces_small']}) | {_pct(s['faces_large_flagged'])} "
                         f"| {mean} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("detectors", nargs="+", help="bundled names or model folders")
    parser.add_argument("--photos", default="../shared/data/photos", help="folder of real photographs")
    parser.add_argument("--json", help="write every photo's scores and the summaries here")
    args = parser.parse_args()
    root = Path(args.photos)
    if not root.is_dir():
        print(f"false-alarms: {root}: no such folder", file=sys.stderr)
        return 2
    photos = photos_under(root)
    if not photos:
        print(f"false-alarms: {root}: no image ({', '.join(sorted(IMAGE_EXTENSIONS))}) below it", file=sys.stderr)
        return 2
    from forensics.catalog import available_detectors, split_variant

    known = set(available_detectors())
    for name in args.detectors:
        base, _ = split_variant(name)
        if base not in known and not (Path(base) / "config.json").is_file():
            print(f"false-alarms: detector {name!r} is neither a bundled name nor a model folder", file=sys.stderr)
            return 2
    results = [score(d, photos, root) for d in args.detectors]
    print(table(results))
    if args.json:
        write_atomic(Path(args.json), results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
