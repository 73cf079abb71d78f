"""Score several detectors on one model's validation images, each detector cropping them at its own
margin and framing (read from its folder): how a new detector compares with the one it replaces on
faces neither trained on (keep to sources the older one never saw: generated faces, held-out videos).

    .venv/bin/python scripts/compare-on-validation-faces.py --faces-of runs/default/model \
        --sources "Stable Diffusion 2.1 (SDFD)" "StyleGAN2 (thispersondoesnotexist)" FFHQ \
        "talking-head video, held out" -- assets/detectors/default runs/default/model
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from forensics.catalog import read_config  # noqa: E402
from forensics.detectors import load_detector  # noqa: E402
from training.augment import jpeg  # noqa: E402
from training.cli import DEFAULTS  # noqa: E402
from training.data import FaceCropCache, Sample  # noqa: E402
from training.evaluate import _score, evaluation_images  # noqa: E402
from training.pipeline import cached_faces, relative_to_data  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faces-of", required=True, help="the model folder whose validation images are scored")
    parser.add_argument("--sources", nargs="*", default=None, help="keep only these sources")
    parser.add_argument("--data", default="../shared/data/labels.csv")
    parser.add_argument("--cache", default=".cache/crops256")
    parser.add_argument("detectors", nargs="+")
    args = parser.parse_args()
    record = json.loads((Path(args.faces_of) / "training.json").read_text())
    wanted = set(record["validation_images"])
    config = {**DEFAULTS, **record["config"], "data": args.data, "cache": args.cache}
    # The images (and their sources), found through the model's own crops; each detector re-crops them.
    faces = [f for f in cached_faces(config) if relative_to_data(f.image_path, args.data) in wanted
             and (args.sources is None or f.source in args.sources)]
    print(f"{len(faces)} faces: " + ", ".join(f"{s} {sum(f.source == s for f in faces)}"
                                              for s in sorted({f.source for f in faces})), flush=True)
    samples = [Sample(f.image_path, f.label, f.source, f.group) for f in faces]
    for d in args.detectors:
        info = read_config(Path(d)).get("forensics", {})
        mine = FaceCropCache(args.cache, size=256, margin=float(info.get("face_margin", 0.3)),
                             framing=str(info.get("face_framing", "box"))).build(samples, progress=False)
        items = evaluation_images(mine)
        images, y, source = [i[0] for i in items], np.array([i[1] for i in items]), np.array([i[2] for i in items])
        det = load_detector(d)
        for name, now in (("clean", images), ("jpeg 50", [jpeg(im, 50) for im in images])):
            p = _score(det, now)
            row = []
            for fake in sorted(set(source[y == 1])):
                for real in sorted(set(source[y == 0])):
                    keep = (source == real) | (source == fake)
                    if fake.startswith("SBI of ") and fake != f"SBI of {real}":
                        continue
                    row.append(f"{fake} vs {real} {roc_auc_score(y[keep], p[keep]):.3f}")
            print(f"{d} [{name}]: " + "; ".join(row), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
