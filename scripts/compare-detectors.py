"""Score detectors on the same faces, each cropping them at its own margin and framing (read from its
model folder), clean and after JPEG 50: the figures of detectors validated on different splits compare.

Which faces:

- by default, the validation faces the detectors have in common, each fake source scored against
  all reals;
- with ``--faces-of MODEL``, that model's validation images (of ``--sources`` only, if given), each
  fake source against each real source (a self-blend only against the source it was made from): how
  a new detector compares with the one it replaces on faces neither trained on (keep to sources the
  older one never saw: generated faces, held-out videos).

    .venv/bin/python scripts/compare-detectors.py assets/detectors/default runs/default5/model
    .venv/bin/python scripts/compare-detectors.py --faces-of runs/default/model \
        --sources "Stable Diffusion 2.1 (SDFD)" "StyleGAN2 (thispersondoesnotexist)" FFHQ \
        "talking-head video, held out" -- assets/detectors/default runs/default/model
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Iterator

import numpy as np
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from forensics.catalog import read_config  # noqa: E402
from forensics.detectors import load_detector  # noqa: E402
from training.augment import jpeg  # noqa: E402
from training.cli import DEFAULTS  # noqa: E402
from training.data import CachedFace, FaceCropCache, Sample  # noqa: E402
from training.evaluate import _score, evaluation_images, validation_faces  # noqa: E402
from training.pipeline import cached_faces, relative_to_data  # noqa: E402


def common_faces(detectors: list[str], data: str, cache: str) -> dict[str, list[CachedFace]]:
    """Each detector's crops of the validation faces all of them have."""
    per = {d: {f.image_path: f for f in validation_faces(d, data, cache)} for d in detectors}
    common = sorted(set.intersection(*(set(v) for v in per.values())))
    return {d: [per[d][p] for p in common] for d in detectors}


def faces_of(model: str, sources: list[str] | None, detectors: list[str], data: str,
             cache: str) -> dict[str, list[CachedFace]]:
    """Each detector's crops of one model's validation images, found through the model's own crops."""
    record = json.loads((Path(model) / "training.json").read_text())
    wanted = set(record["validation_images"])
    config = {**DEFAULTS, **record["config"], "data": data, "cache": cache}
    samples = [Sample(f.image_path, f.label, f.source, f.group) for f in cached_faces(config)
               if relative_to_data(f.image_path, data) in wanted and (sources is None or f.source in sources)]
    crops = {}
    for d in detectors:
        info = read_config(Path(d)).get("forensics", {})
        crops[d] = FaceCropCache(cache, size=256, margin=float(info.get("face_margin", 0.3)),
                                 framing=str(info.get("face_framing", "box"))).build(samples, progress=False)
    return crops


def subsets(y: np.ndarray, source: np.ndarray, each_real: bool) -> Iterator[tuple[str, np.ndarray]]:
    """(row name, faces it keeps): all faces and each fake source against all reals, or (``each_real``)
    each fake source against each real source."""
    fakes, reals = sorted(set(source[y == 1])), sorted(set(source[y == 0]))
    if not each_real:
        yield "all", np.ones(len(y), bool)
        yield from ((f"{s} vs all reals", (y == 0) | (source == s)) for s in fakes)
        return
    for fake in fakes:
        for real in reals:
            if not fake.startswith("SBI of ") or fake == f"SBI of {real}":
                yield f"{fake} vs {real}", (source == real) | (source == fake)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("detectors", nargs="+", help="model folders (with a training record, without --faces-of)")
    parser.add_argument("--faces-of", default=None, help="the model folder whose validation images are scored")
    parser.add_argument("--sources", nargs="*", default=None, help="with --faces-of: keep only these sources")
    parser.add_argument("--data", default="../shared/data/labels.csv")
    parser.add_argument("--cache", default=".cache/crops256")
    args = parser.parse_args()
    if args.faces_of:
        crops = faces_of(args.faces_of, args.sources, args.detectors, args.data, args.cache)
    else:
        crops = common_faces(args.detectors, args.data, args.cache)
    first = crops[args.detectors[0]]
    print(f"{len(first)} {'' if args.faces_of else 'common '}faces: "
          + ", ".join(f"{s} {sum(f.source == s for f in first)}" for s in sorted({f.source for f in first})), flush=True)
    for d in args.detectors:
        items = evaluation_images(crops[d])
        images, y, source = [i[0] for i in items], np.array([i[1] for i in items]), np.array([i[2] for i in items])
        det = load_detector(d)
        for name, now in (("clean", images), ("jpeg 50", [jpeg(im, 50) for im in images])):
            p = _score(det, now)
            row = [f"{s} {roc_auc_score(y[k], p[k]):.3f}" for s, k in subsets(y, source, bool(args.faces_of))]
            print(f"{d} [{name}]: " + "; ".join(row), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
