"""Which part of the app's crop path moves a detector's scores (docs/experiments.md, twenty-fifth
session): the validation reals and generated faces of a model trained here, found again in their
source images with the app's MTCNN settings, cut four ways and scored beside their crop-cache crops
(the path the validation figures take: the landmark square fitted inside the image, cut at 256 px, then
resized to the input):

- ``direct``: straight to the input size, black outside the image (the app until the twenty-fifth session);
- ``cut256``: cut at the cache's 256 px first, then resized;
- ``fit``: the square shrunk to fit inside the image, as the cache does, straight to the input size;
- ``fit256``: both, the cache's own path.

    .venv/bin/python scripts/probe-crop-path.py default
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("detector", help="a bundled name or a model folder trained here")
    parser.add_argument("--data", default="../shared/data/labels.csv")
    parser.add_argument("--cache", default=".cache/crops256")
    args = parser.parse_args()

    import numpy as np

    from forensics.detectors import load_detector
    from forensics.faces import crop_face
    from training.evaluate import _score, evaluation_images, refound_faces, validation_faces
    from training.metrics import binary_metrics

    det = load_detector(args.detector)
    val = validation_faces(det.path, args.data, args.cache)
    items = evaluation_images(val)
    own = [i for i, (_, _, source) in enumerate(items) if not source.startswith("SBI of ")]
    cache_scores = _score(det, [items[i][0] for i in own])
    margin, framing = det.info.face_margin, det.info.face_framing
    crops: dict[str, list] = {"direct": [], "cut256": [], "fit": [], "fit256": []}
    kept = []
    for k, image, largest in refound_faces(val, desc="probe crop path"):
        kept.append(k)
        size = det.input_size
        crops["direct"].append(crop_face(image, largest, size, margin, framing).image)
        crops["cut256"].append(crop_face(image, largest, size, margin, framing, cut_size=256).image)
        crops["fit"].append(crop_face(image, largest, size, margin, framing, fit_inside=True).image)  # the cache's fit
        crops["fit256"].append(crop_face(image, largest, size, margin, framing, cut_size=256, fit_inside=True).image)
    kept_ = np.array(kept)
    cache = cache_scores[kept_]
    sources = np.array([val[k].source for k in kept])
    fake = np.array([val[k].label != "real" for k in kept])
    threshold = det.threshold
    print(f"{len(kept)} of {len(val)} validation faces found again; cache crops: generated vs real ROC-AUC "
          f"{binary_metrics(fake, cache)['roc_auc']:.4f}, reals flagged {(cache[~fake] > threshold).mean():.3f}")
    for name, images in crops.items():
        p = np.concatenate([_score(det, images[i:i + 32]) for i in range(0, len(images), 32)])
        delta = np.abs(p - cache)
        print(f"{name}: ROC-AUC {binary_metrics(fake, p)['roc_auc']:.4f}, reals flagged "
              f"{(p[~fake] > threshold).mean():.3f}, mean |dP| {delta.mean():.3f}")
        for source in sorted(set(sources)):
            m = sources == source
            print(f"    {source}: {m.sum()} faces, mean |dP| {delta[m].mean():.3f}, "
                  f"mean P(fake) cache {cache[m].mean():.3f} / this crop {p[m].mean():.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
