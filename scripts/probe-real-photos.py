"""Why a detector flags real photographs (docs/experiments.md, twenty-fifth session): two probes.

``crop-path``: the false alarms on ``photos/`` and the labelled videos when the app cuts each face at
``--cut`` pixels and then resizes it to the model's input (the crop cache's 256 px, then the input
size), or with ``--cut 0`` straight to the input size (the app until the twenty-fifth session); never
fitted inside the image (``scripts/probe-crop-path.py`` takes that part too, on validation faces).

``sharpness``: the mean absolute Laplacian of face crops at 224 px, per source of the labels CSV (the
training crop cache's crops) and for the faces found in ``photos/`` (the app's crops), beside each photo
face's P(fake): whether sharpness is what the detector reads on large faces.

    .venv/bin/python scripts/probe-real-photos.py crop-path default --cut 256
    .venv/bin/python scripts/probe-real-photos.py sharpness default
"""
from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DATA = Path("../shared/data")


def crop_path(detector: str, cut: int) -> dict:
    import numpy as np

    import forensics.analysis as analysis
    from forensics.faces import FaceCrop, crop_faces, resize_square
    from training.evaluate import run_video_evaluation
    from training.false_alarms import real_photo_false_alarms

    def cut_then_resize(image, faces, size, margin=0.3, framing="box", **_):
        return [FaceCrop(face=c.face, image=np.ascontiguousarray(resize_square(c.image, size)), crop_box=c.crop_box)
                for c in crop_faces(image, faces, cut or size, margin, framing)]

    analysis.crop_faces = cut_then_resize  # whatever the model folder says (its crop_size, fit_inside)
    photos = real_photo_false_alarms(detector, DATA / "photos", keep_photos=False)
    videos = run_video_evaluation(detector, str(DATA / "labels.csv"))
    return {"cut": cut, "photos": photos["all"], "video_auc": videos["roc_auc"],
            "videos": {v["video"]: v["fake_probability"] for v in videos["videos"]}}


def _laplacian(rgb) -> float:
    import cv2
    import numpy as np

    gray = cv2.cvtColor(cv2.resize(rgb, (224, 224), interpolation=cv2.INTER_AREA), cv2.COLOR_RGB2GRAY)
    return float(np.abs(cv2.Laplacian(gray.astype(np.float32), cv2.CV_32F)).mean())


def sharpness(detector: str) -> dict:
    import cv2
    import numpy as np
    from scipy.stats import spearmanr

    from forensics.analysis import reading_order
    from forensics.detectors import load_detector
    from forensics.faces import FaceDetector, crop_faces
    from forensics.media import load_image
    from training.data import FaceCropCache
    from training.false_alarms import real_photo_false_alarms
    from training.pipeline import CROP_CACHE_SIZE, load_samples

    model = load_detector(detector)
    margin, framing = model.info.face_margin, model.info.face_framing
    cache = FaceCropCache(".cache/crops256", size=CROP_CACHE_SIZE, margin=margin, framing=framing)
    index = json.loads((Path(".cache/crops256") / "index.json").read_text())
    by_source: dict[str, list] = {}
    for sample in load_samples(DATA / "labels.csv"):
        by_source.setdefault(sample.source, []).append(sample)
    rng = random.Random(0)
    out = {"sources": {}}
    for source, samples in sorted(by_source.items()):
        entries = [index.get(cache._key(s.path)) for s in rng.sample(samples, min(150, len(samples)))]
        values = [_laplacian(cv2.cvtColor(cv2.imread(e["crop_path"]), cv2.COLOR_BGR2RGB))
                  for e in entries if e and e.get("crop_path")]
        if values:
            out["sources"][source] = {"crops": len(values), "median": float(np.median(values))}
    scored = real_photo_false_alarms(model, DATA / "photos", keep_photos=True)
    finder, rows = FaceDetector(), []
    for photo in scored["photos"]:
        if not photo["faces"]:
            continue
        image = load_image(DATA / "photos" / photo["photo"])
        crops = crop_faces(image, reading_order(finder.detect(image)), model.input_size, margin, framing)
        if len(crops) == len(photo["faces"]):
            rows += [(f["width"], f["p_fake"], _laplacian(c.image)) for c, f in zip(crops, photo["faces"])]
    rows = np.array(rows)
    large = rows[rows[:, 0] >= 128]
    out["photo_faces"] = {"large": len(large), "large_median": float(np.median(large[:, 2])),
                          "small_median": float(np.median(rows[rows[:, 0] < 128][:, 2])),
                          "large_spearman_p_fake_vs_sharpness": float(spearmanr(large[:, 1], large[:, 2])[0])}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="probe", required=True)
    one = sub.add_parser("crop-path")
    one.add_argument("detector")
    one.add_argument("--cut", type=int, default=256, help="the side faces are cut at first (0: straight to the input)")
    two = sub.add_parser("sharpness")
    two.add_argument("detector")
    args = parser.parse_args()
    result = crop_path(args.detector, args.cut) if args.probe == "crop-path" else sharpness(args.detector)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
