"""What scoring the maps costs per face, as ratios taken in one run (so a busy machine moves the
seconds, not the comparison): one forward pass of a face, the four maps, and the deletion/insertion
scores of the four maps and the random map at several curve resolutions, in interleaved rounds.

    .venv/bin/python bench/faithfulness_cost.py [--detector default] [--rounds 5] [--json FILE]

The faces are the bundled example and real photos from ../shared/data when it is there.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PHOTOS = ["assets/examples/astronaut.jpg", "../shared/data/photos/face_recognition/obama.jpg",
          "../shared/data/photos/deepface/couple.jpg"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--detector", default="default")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, nargs="+", default=[4, 6, 8])
    parser.add_argument("--json", dest="json_out", default=None)
    args = parser.parse_args()

    import torch

    from forensics.detectors import load_detector
    from forensics.explain import METHODS, explain
    from forensics.explain.faithfulness import FaithfulnessOptions, score_face
    from forensics.faces import FaceDetector, crop_faces
    from forensics.media import load_image

    det = load_detector(args.detector)
    finder = FaceDetector()
    crops = []
    for name in PHOTOS:
        path = ROOT / name
        if path.is_file():
            image = load_image(path)
            crops += [c.image for c in crop_faces(image, finder.detect(image), det.input_size, det.info.face_margin,
                                                  det.info.face_framing)]
    batch = det.preprocess(crops)
    timings: dict[str, list[float]] = {"forward": [], "maps": [], **{f"score_steps{s}": [] for s in args.steps}}
    for _ in range(args.rounds):
        for i in range(len(crops)):
            x = batch[i : i + 1]
            start = time.perf_counter()
            det.predict(x)
            timings["forward"].append(time.perf_counter() - start)
            start = time.perf_counter()
            maps = explain(det, x, METHODS)
            timings["maps"].append(time.perf_counter() - start)
            face_maps = {m: v[0] for m, v in maps.maps.items()}
            for steps in args.steps:
                start = time.perf_counter()
                score_face(det, x[0], face_maps, maps.targets[0], FaithfulnessOptions(steps=steps))
                timings[f"score_steps{steps}"].append(time.perf_counter() - start)
    median = {k: statistics.median(v) for k, v in timings.items()}
    report = {"detector": det.name, "faces": len(crops), "rounds": args.rounds, "threads": torch.get_num_threads(),
              "median_s": {k: round(v, 4) for k, v in median.items()},
              "ratio_to_one_forward": {k: round(v / median["forward"], 1) for k, v in median.items()},
              "images_per_face": {f"score_steps{s}": 2 + 2 * (s - 1) * (len(face_maps) + 1) for s in args.steps}}
    print(json.dumps(report, indent=2))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
