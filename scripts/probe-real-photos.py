"""Why a detector flags real photographs (docs/experiments.md, twenty-fifth session): two probes.

``crop-path``: the false alarms on ``photos/`` and the labelled videos when the app cuts each face at
``--cut`` pixels and then resizes it to the model's input (the crop cache's 256 px, then the input
size), or with ``--cut 0`` straight to the input size (the app until the twenty-fifth session); never
fitted inside the image (``scripts/probe-crop-path.py`` takes that part too, on validation faces).

``sharpness``: the mean absolute Laplacian of face crops at 224 px, per source of the labels CSV (the
training crop cache's crops) and for the faces found in ``photos/`` (the app's crops), beside each photo
face's P(fake): whether sharpness is what the detector reads on large faces.

``grading`` (thirty-third session): the detector's validation faces (``python -m training faces
--detector FOLDER --out FACES.npz``) colour-graded as photographs are (saturation, a tone curve, gamma,
a colour cast, a vignette): mean P(fake) and the share flagged of the real faces, the mean P(fake) of the
generated and self-blended ones, and the ROC-AUC, per grade.

    .venv/bin/python scripts/probe-real-photos.py crop-path default --cut 256
    .venv/bin/python scripts/probe-real-photos.py sharpness default
    .venv/bin/python scripts/probe-real-photos.py grading default --faces /tmp/valfaces.npz
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


def _vignette(image, strength: float = 0.6):
    import numpy as np

    h, w = image.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w]
    radius = np.hypot((xx - w / 2) / (w / 2), (yy - h / 2) / (h / 2))
    return np.clip(image * (1 - strength * np.clip(radius - 0.5, 0, None))[..., None], 0, 255).astype(np.uint8)


GRADES = {  # name: (saturation, tone curve, gamma, R, G, B) of training.augment.grade, or a function
    "as stored": None,
    "saturation x1.3": (1.3, 0, 1, 1, 1, 1), "saturation x0.7": (0.7, 0, 1, 1, 1, 1),
    "S curve 0.4": (1, 0.4, 1, 1, 1, 1), "flatter curve -0.4": (1, -0.4, 1, 1, 1, 1),
    "warm cast": (1, 0, 1, 1.08, 1, 0.92), "cool cast": (1, 0, 1, 0.92, 1, 1.08),
    "gamma 0.8": (1, 0, 0.8, 1, 1, 1), "gamma 1.25": (1, 0, 1.25, 1, 1, 1),
    "vignette": _vignette,
    "studio look (the evaluation's grade)": "studio",  # training.evaluate.STUDIO_GRADE
}


def grading(detector: str, faces: str) -> dict:
    import numpy as np
    from sklearn.metrics import roc_auc_score

    from forensics.detectors import load_detector
    from forensics.faces import resize_square
    from training.augment import grade
    from training.evaluate import STUDIO_GRADE

    model = load_detector(detector)
    with np.load(faces, allow_pickle=False) as data:
        labels, sources = data["labels"], data["sources"]
        images = [data[f"image_{i}"] for i in range(len(labels))]
    generated = np.array([y == 1 and not s.startswith("SBI of ") for y, s in zip(labels, sources)])
    blended, real = (labels == 1) & ~generated, labels == 0
    out = {"faces": {"real": int(real.sum()), "generated": int(generated.sum()), "self-blended": int(blended.sum())},
           "threshold": float(model.threshold), "grades": {}}
    for name, how in GRADES.items():
        how = STUDIO_GRADE if how == "studio" else how
        graded = [im if how is None else how(im) if callable(how) else grade(im, *how) for im in images]
        p = model.fake_probability(model.predict_crops([resize_square(im, model.input_size) for im in graded], 32))
        out["grades"][name] = {"reals_mean_p_fake": round(float(p[real].mean()), 3),
                               "reals_flagged": round(float((p[real] >= model.threshold).mean()), 3),
                               "generated_mean_p_fake": round(float(p[generated].mean()), 3),
                               "self_blends_mean_p_fake": round(float(p[blended].mean()), 3),
                               "roc_auc": round(float(roc_auc_score(labels, p)), 3)}
        print(name, out["grades"][name], file=sys.stderr, flush=True)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="probe", required=True)
    one = sub.add_parser("crop-path")
    one.add_argument("detector")
    one.add_argument("--cut", type=int, default=256, help="the side faces are cut at first (0: straight to the input)")
    two = sub.add_parser("sharpness")
    two.add_argument("detector")
    three = sub.add_parser("grading")
    three.add_argument("detector")
    three.add_argument("--faces", required=True, help="the .npz of `python -m training faces --detector ...`")
    args = parser.parse_args()
    if args.probe == "crop-path":
        result = crop_path(args.detector, args.cut)
    elif args.probe == "sharpness":
        result = sharpness(args.detector)
    else:
        result = grading(args.detector, args.faces)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
