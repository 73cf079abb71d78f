"""What scoring the maps costs per face, and whether the cheaper setting measures the same thing.

    .venv/bin/python bench/faithfulness_cost.py [--detector default] [--faces 48] [--timed-faces 4]
        [--rounds 2] [--json FILE]

Faces: self-blended fakes of the detector's validation reals (as ``explain-bench`` makes them), maps
for the fake class. Two parts, in one run:

- **Cost** (interleaved rounds on the first ``--timed-faces`` faces, so a busy machine moves the
  seconds, not the comparison): one forward pass of a face (PyTorch, and the ONNX float build that
  scores in its place), and scoring four maps and the random map with every setting in
  :data:`SETTINGS` (runtime, steps, whether the crop's own probability is reused), as seconds and as
  ratios to one forward pass.
- **Agreement** (all ``--faces``): per-face deletion and insertion AUCs (and their margins over the
  random map, what the app shows) at 2, 3 and 4 steps against 8 steps, the old default, as
  Spearman rank correlations over faces; the 2 and 4 step curves are the 8 step curves' points at
  multiples of 1/4 and 1/2 (the same images: checked on the first face), 3 steps are run.

The JSON is written after the cost part and after every face of the agreement (a stopped run keeps
what it measured).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# name: (runtime, steps, reuse the crop's own probability, max_batch)
SETTINGS = {
    "old: PyTorch, 8 steps, crop re-run": ("detector", 8, False, 128),
    "PyTorch, 4 steps": ("detector", 4, True, 64),
    "ONNX float, 8 steps": ("auto", 8, True, 64),
    "ONNX float, 4 steps (new default)": ("auto", 4, True, 64),
    "ONNX float, 4 steps, batches of 4": ("auto", 4, True, 4),
    "ONNX float, 4 steps, batches of 8": ("auto", 4, True, 8),
    "ONNX float, 4 steps, batches of 16": ("auto", 4, True, 16),
    "ONNX float, 3 steps": ("auto", 3, True, 64),
    "ONNX float, 2 steps": ("auto", 2, True, 64),
}
AGREEMENT_STEPS = (2, 3, 4)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--detector", default="default")
    parser.add_argument("--data", default="../shared/data/labels.csv")
    parser.add_argument("--cache", default=".cache/crops256")
    parser.add_argument("--faces", type=int, default=48, help="faces for the agreement (default 48)")
    parser.add_argument("--timed-faces", type=int, default=4, help="faces timed in every round (default 4)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", dest="json_out", default=None)
    args = parser.parse_args()

    import torch
    from scipy.stats import spearmanr
    from tqdm import tqdm

    from forensics.detectors import load_detector
    from forensics.explain import METHODS, explain
    from forensics.explain.faithfulness import (FaithfulnessOptions, curve_area, score_face, scoring_detector,
                                                step_masks)
    from training.explain_bench import bench_faces

    det = load_detector(args.detector)
    scorer = scoring_detector(det)
    faces, _ = bench_faces(Path(det.path), args.data, args.cache, max(args.faces, args.timed_faces))
    crops, maps, targets, originals = [], [], [], []
    for start in range(0, len(faces), 4):
        batch = det.preprocess([f.image for f in faces[start : start + 4]])
        probabilities = det.predict(batch)
        explanation = explain(det, batch, METHODS, "fake")
        for j in range(len(batch)):
            crops.append(batch[j])
            maps.append({m: v[j] for m, v in explanation.maps.items()})
            targets.append(explanation.targets[j])
            originals.append(float(probabilities[j, explanation.targets[j]]))

    def score(i: int, runtime: str, steps: int, reuse: bool, max_batch: int):
        options = FaithfulnessOptions(steps=steps, runtime=runtime, max_batch=max_batch, seed=i)
        return score_face(det, crops[i], maps[i], targets[i], options, original=originals[i] if reuse else None)

    # -- cost ---------------------------------------------------------------------------------------
    timings: dict[str, list[float]] = {"forward PyTorch": [], "forward ONNX float": [], **{k: [] for k in SETTINGS}}
    score(0, "auto", 4, True, 64)  # warm-up (and the one-off check that the ONNX build matches)
    for _ in tqdm(range(args.rounds), desc="cost rounds", file=sys.stderr):
        for i in range(args.timed_faces):
            for name, forward in (("forward PyTorch", det), ("forward ONNX float", scorer)):
                start = time.perf_counter()
                forward.predict(crops[i][None])
                timings[name].append(time.perf_counter() - start)
            for name, setting in SETTINGS.items():
                start = time.perf_counter()
                score(i, *setting)
                timings[name].append(time.perf_counter() - start)
    median = {k: statistics.median(v) for k, v in timings.items()}
    maps_per_face = len(maps[0]) + 1
    report = {
        "detector": det.name, "scored_by": scorer.name, "threads": torch.get_num_threads(),
        "load_average_after_cost": [round(v, 2) for v in os.getloadavg()],
        "timed_faces": args.timed_faces, "rounds": args.rounds,
        "median_ms": {k: round(v * 1000, 1) for k, v in median.items()},
        "ratio_to_one_pytorch_forward": {k: round(v / median["forward PyTorch"], 2) for k, v in median.items()},
        "ratio_to_one_onnx_forward": {k: round(v / median["forward ONNX float"], 2) for k, v in median.items()},
        "images_per_face": {name: (0 if reuse else 1) + 1 + 2 * (steps - 1) * maps_per_face
                            for name, (_, steps, reuse, _) in SETTINGS.items()},
    }
    _write(report, args.json_out)

    # -- agreement ----------------------------------------------------------------------------------
    aucs: dict[int, list[dict]] = {s: [] for s in (8, *AGREEMENT_STEPS)}
    duplicates = 0
    for i in tqdm(range(args.faces), desc="agreement", file=sys.stderr):
        full = score(i, "auto", 8, True, 64)
        per_steps = {8: full}
        per_steps[3] = score(i, "auto", 3, True, 64)
        for steps, step in ((4, 2), (2, 4)):  # the 8 step curves' points at multiples of 1 / steps
            per_steps[steps] = _subsampled(full, step, curve_area)
        if i == 0:
            direct = score(0, "auto", 4, True, 64)
            assert all(abs(direct.methods[m].deletion - per_steps[4].methods[m].deletion) < 1e-6 and
                       abs(direct.methods[m].insertion - per_steps[4].methods[m].insertion) < 1e-6
                       for m in direct.methods), "4 steps are not the 8 step curves' even points"
        masks = step_masks(maps[i], int(crops[i].shape[-1]), 4, i)  # the maps' inner images at 4 steps
        duplicates += len(masks) - len(torch.unique(masks.flatten(1), dim=0))
        for steps, face in per_steps.items():
            aucs[steps].append({**{f"{m}/{c}": getattr(s, c) for m, s in face.methods.items()
                                   for c in ("deletion", "insertion")},
                                "random/deletion": face.random.deletion, "random/insertion": face.random.insertion})
        if i >= 2:
            report.update(agreement_faces=i + 1, identical_images_between_maps_at_4_steps=duplicates,
                          spearman_per_face_auc=_agreement(aucs, spearmanr))
            _write(report, args.json_out)
    print(json.dumps(report, indent=2))
    return 0


def _agreement(aucs: dict, spearmanr) -> dict:
    """Per score: Spearman correlation over faces between each setting and 8 steps, and (for the maps)
    of their margins over the random map, with the mean margin at both."""
    import numpy as np

    agreement = {}
    for steps in AGREEMENT_STEPS:
        rows = {}
        for key in aucs[8][0]:
            ref, new = np.array([a[key] for a in aucs[8]]), np.array([a[key] for a in aucs[steps]])
            rows[key] = round(float(spearmanr(ref, new).statistic), 3)
            if not key.startswith("random/"):
                curve = key.split("/")[1]
                margin_ref = ref - np.array([a[f"random/{curve}"] for a in aucs[8]])
                margin_new = new - np.array([a[f"random/{curve}"] for a in aucs[steps]])
                rows[f"{key} - random"] = round(float(spearmanr(margin_ref, margin_new).statistic), 3)
                rows[f"{key} - random, mean at 8 / at {steps} steps"] = [round(float(margin_ref.mean()), 4),
                                                                       round(float(margin_new.mean()), 4)]
        agreement[f"{steps} steps vs 8"] = rows
    return agreement


def _write(report: dict, path: str | None) -> None:
    if path:
        Path(path).write_text(json.dumps(report, indent=2) + "\n")


def _subsampled(face, step: int, curve_area):
    """The same face's scores from every ``step``-th point of its curves."""
    import dataclasses

    fractions = face.fractions[::step]

    def thin(s):
        deletion, insertion = s.deletion_curve[::step], s.insertion_curve[::step]
        return dataclasses.replace(s, deletion=curve_area(fractions, deletion), insertion=curve_area(fractions, insertion),
                                   deletion_curve=deletion, insertion_curve=insertion)

    return dataclasses.replace(face, fractions=fractions, methods={m: thin(s) for m, s in face.methods.items()},
                               random=thin(face.random), extra={m: thin(s) for m, s in face.extra.items()})


if __name__ == "__main__":
    sys.exit(main())
