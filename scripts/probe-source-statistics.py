"""How each source's face crops differ before any model sees them: framing (eye distance in the
crop) and image statistics (Laplacian variance of the face centre: fine detail; mean saturation;
contrast), per source and per talking-head clip. A source that differs in one of these teaches it
to a detector unless every class is augmented alike (docs/experiments.md, seventh session).

Reads the crop cache's landmark-framed, margin-0 crops (the default's; `python -m training train`
builds them).

    .venv/bin/python scripts/probe-source-statistics.py [--data ../shared/data/labels.csv] [--cache .cache/crops256]
"""
from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training.cli import DEFAULTS  # noqa: E402
from training.pipeline import cached_faces  # noqa: E402


def statistics(crop_path: str, landmarks) -> tuple[float, float, float, float]:
    bgr = cv2.imread(crop_path, cv2.IMREAD_COLOR)
    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY).astype(np.float64)
    h, w = gray.shape
    centre = gray[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4]
    eyes = np.asarray(landmarks, dtype=float)[:2]
    return (float(np.linalg.norm(eyes[0] - eyes[1])), float(cv2.Laplacian(centre, cv2.CV_64F).var()),
            float(cv2.cvtColor(bgr, cv2.COLOR_BGR2HSV)[..., 1].mean()), float(gray.std()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/labels.csv")
    parser.add_argument("--cache", default=".cache/crops256")
    parser.add_argument("--per-source", type=int, default=300, help="faces measured per source (clips: all frames)")
    args = parser.parse_args()
    config = {**DEFAULTS, "data": args.data, "cache": args.cache, "face_margin": 0.0, "face_framing": "landmarks",
              "video_frames": 40, "video_folders": ["video/real_talking"], "max_per_source": 1500}
    groups: dict[str, list] = defaultdict(list)
    for face in cached_faces(config):
        key = face.source if face.source != "talking-head video" else f"clip {Path(face.group).name}"
        if len(groups[key]) < args.per_source:
            groups[key].append(statistics(face.crop_path, face.landmarks))
    print(f"{'source':58s} {'faces':>5s}  eye distance p10/p50/p90   detail  saturation  contrast")
    for key in sorted(groups, key=lambda k: (k.startswith("clip"), k)):
        a = np.asarray(groups[key])
        p10, p50, p90 = np.percentile(a[:, 0], [10, 50, 90])
        print(f"{key[:58]:58s} {len(a):5d}  {p10:6.1f} {p50:6.1f} {p90:6.1f}        "
              f"{np.median(a[:, 1]):7.1f} {np.median(a[:, 2]):9.1f} {np.median(a[:, 3]):9.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
