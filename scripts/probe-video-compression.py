"""How a detector's video verdicts hold when the videos are compressed again, as videos passed around
are (docs/experiments.md, twenty-seventh session): each labelled video the model never trained on is
re-encoded with ffmpeg's H.264 (libx264) at each ``--crf`` (optionally shrunk to ``--height`` too),
then scored as the card scores it (``--frames``, fixed) and as the app does (half as many, a close
call sampled again), through the full analysis (MTCNN, tracking, the person's mean). Prints a table
of video-level ROC-AUC and each video's P(fake), and writes them to ``--out``/compression.json.

    .venv/bin/python scripts/probe-video-compression.py default --crf 23 32 40 --height 0 480
"""
from __future__ import annotations

import argparse
import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def reencode(src: Path, dst: Path, crf: int, height: int) -> None:
    """``src`` through libx264 at ``crf`` (and shrunk to ``height`` rows, even width, when given); written
    beside ``dst`` and renamed, so a stopped run leaves no half-written video to be reused."""
    scale = ["-vf", f"scale=-2:{height}"] if height else []
    part = dst.with_name(dst.stem + ".part.mp4")
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-i", str(src), *scale, "-c:v", "libx264",
                    "-preset", "veryfast", "-crf", str(crf), "-pix_fmt", "yuv420p", "-an", str(part)], check=True)
    part.replace(dst)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("detector", help="a bundled name or a model folder trained here")
    parser.add_argument("--data", default="../shared/data/labels.csv")
    parser.add_argument("--crf", type=int, nargs="+", default=[23, 32, 40], help="x264 CRFs (0-51)")
    parser.add_argument("--height", type=int, nargs="+", default=[0], help="frame heights (0: as stored)")
    parser.add_argument("--frames", type=int, default=32, help="the card's fixed frames; the app uses half")
    parser.add_argument("--out", default="runs/probe-video-compression")
    args = parser.parse_args()
    if shutil.which("ffmpeg") is None:
        raise SystemExit("probe-video-compression: ffmpeg is not installed (make system-deps)")
    if not all(0 <= c <= 51 for c in args.crf) or not all(h == 0 or h >= 64 for h in args.height):
        raise SystemExit("probe-video-compression: --crf must lie in 0-51 and --height be 0 or at least 64")

    from tqdm import tqdm

    from forensics.detectors import load_detector
    from training.data import VIDEO_EXTENSIONS, read_labels_csv
    from training.evaluate import _record, _training_videos, video_results

    det = load_detector(args.detector)
    trained, validated = _training_videos(_record(Path(det.path)), args.data)
    videos = [v for v in read_labels_csv(Path(args.data), kinds=VIDEO_EXTENSIONS) if Path(v.path).name not in trained]
    out = Path(args.out)
    variants = [("as stored", None, 0)] + [(f"CRF {c}" + (f", {h} px high" if h else ""), c, h)
                                           for h in args.height for c in args.crf]
    results = {}
    for name, crf, height in variants:
        folder = out / (f"crf{crf}-h{height}" if crf is not None else "stored")
        folder.mkdir(parents=True, exist_ok=True)
        table = folder / "labels.csv"
        with table.open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["path", "label", "source"])
            for v in tqdm(videos, desc=f"encoding ({name})", leave=False):
                path = Path(v.path)
                if crf is not None:
                    path = folder / f"{Path(v.path).stem}.mp4"
                    if not path.exists():
                        reencode(Path(v.path), path, crf, height)
                writer.writerow([str(path.resolve()), v.label, v.source])
        scored = video_results(det.path, str(table), frames=args.frames, validated=validated)
        results[name] = {"roc_auc": scored["roc_auc"], "app_roc_auc": scored["app_sampling"]["roc_auc"],
                         "videos": {r["video"]: {"label": r["label"], "fake_probability": r["fake_probability"],
                                                 "app": r["app"]} for r in scored["videos"]}}
        fmt = lambda x: "-" if x is None else f"{x:.3f}"  # noqa: E731  (no AUC: one class had no face)
        missing = sum(r["fake_probability"] is None for r in scored["videos"])
        print(f"{name:<24} video AUC {args.frames} frames {fmt(scored['roc_auc'])}   the app's sampling "
              f"{fmt(scored['app_sampling']['roc_auc'])}   videos with no face found: {missing}", flush=True)
    (out / "compression.json").write_text(json.dumps({"detector": args.detector, "frames": args.frames,
                                                      "variants": results}, indent=2))
    names = list(next(iter(results.values()))["videos"])
    print("\n| video | label | " + " | ".join(results) + " |")
    print("|---|---|" + "---|" * len(results))
    for video in names:
        first = results["as stored"]["videos"][video]
        cells = []
        for r in results.values():
            v = r["videos"].get(video)
            cells.append(" / ".join("no face" if p is None else f"{p:.3f}"
                                    for p in (v["fake_probability"], v["app"]["fake_probability"])))
        print(f"| {video} | {first['label']} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
