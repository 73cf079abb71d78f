"""Score detectors on the validation faces they have in common, each at its own crop margin and
framing (read from its model folder), clean and after JPEG 50: the same faces, so the figures of
detectors validated on different splits compare.

    .venv/bin/python scripts/compare-on-common-faces.py assets/detectors/default runs/default5/model
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from forensics.detectors import load_detector  # noqa: E402
from training.augment import jpeg  # noqa: E402
from training.evaluate import _score, evaluation_images, validation_faces  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("detectors", nargs="+", help="model folders with a training record")
    parser.add_argument("--data", default="../shared/data/labels.csv")
    parser.add_argument("--cache", default=".cache/crops256")
    args = parser.parse_args()
    per = {d: {f.image_path: f for f in validation_faces(d, args.data, args.cache)} for d in args.detectors}
    common = sorted(set.intersection(*(set(v) for v in per.values())))
    first = per[args.detectors[0]]
    counts = {s: sum(first[p].source == s for p in common) for s in sorted({first[p].source for p in common})}
    print(f"{len(common)} common faces: {counts}")
    for d in args.detectors:
        items = evaluation_images([per[d][p] for p in common])
        images, y = [i[0] for i in items], np.array([i[1] for i in items])
        source = np.array([i[2] for i in items])
        det = load_detector(d)
        for name, images_now in (("clean", images), ("jpeg 50", [jpeg(im, 50) for im in images])):
            p = _score(det, images_now)
            row = [f"all {roc_auc_score(y, p):.3f}"]
            for s in sorted(set(source[y == 1])):
                keep = (y == 0) | (source == s)
                row.append(f"{s} vs all reals {roc_auc_score(y[keep], p[keep]):.3f}")
            print(f"{d} [{name}]: " + "; ".join(row), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
