"""Which removal takes evidence away? The explain-bench removal check for every removal, on the same faces.

    .venv/bin/python bench/removal_check.py [--detector default] [--faces 48] [--road-faces 12]
        [--removals blur impute mean road] [--json FILE]

For each self-blended fake (as ``explain-bench`` makes them) and each removal
(:data:`forensics.explain.faithfulness.REMOVALS`), :func:`training.explain_bench.removal_check`: (1)
the P(fake) change of the real face the fake was made from while random blobs are removed (a rise is
evidence the removal adds), (2) P(fake) with every pixel removed, (3) the blend mask used as a map
minus the random map, on deletion (negative: removing the manipulated region first lowers P(fake)
faster than removing random blobs, i.e. the removal removes evidence) and insertion. A removal
passes when (1)'s interval contains or is below zero and (3)'s deletion interval is below zero. No maps
are made, so it is quick; ``road`` (ROAD's noisy linear imputation: a sparse solve per image) runs
on the first ``--road-faces`` only, and the others are reported on those faces as well.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--detector", default="default")
    parser.add_argument("--data", default="../shared/data/labels.csv")
    parser.add_argument("--cache", default=".cache/crops256")
    parser.add_argument("--faces", type=int, default=48)
    parser.add_argument("--road-faces", type=int, default=12)
    parser.add_argument("--steps", type=int, default=None, help="curve steps (default: the library's)")
    parser.add_argument("--removals", nargs="+", default=["blur", "impute", "mean", "road"])
    parser.add_argument("--json", dest="json_out", default=None)
    args = parser.parse_args()

    import numpy as np
    from tqdm import tqdm

    from forensics.detectors import load_detector
    from forensics.explain.faithfulness import FaithfulnessOptions, random_map
    from training.explain_bench import bench_faces, bootstrap, removal_check, removal_figures

    det = load_detector(args.detector)
    faces, where = bench_faces(Path(det.path), args.data, args.cache, args.faces)
    steps = args.steps or FaithfulnessOptions.steps
    grid = det.grid_size[0] if det.grid_size else 14
    def summary(removal_rows: list[dict]) -> dict:
        groups = [r["group"] for r in removal_rows]

        def stat(values) -> list[float]:
            mean, low, high = bootstrap(values, groups)
            return [round(mean, 4), round(low, 4), round(high, 4)]

        figures = removal_figures(removal_rows, stat)
        rise, deletion = figures["real_rise_while_removing"], figures["mask_deletion_minus_random"]
        return {"faces": len(removal_rows), **figures, "passes": bool(rise[1] <= 0 and deletion[2] < 0)}

    def report_of(rows: dict[str, list[dict]]) -> dict:
        report = {"detector": det.name, "faces_from": where, "steps": steps,
                  "criteria": "passes: the real faces' rise interval reaches zero or below, and the blend mask beats "
                              "the random map on deletion (interval below zero); [mean, 95% low, 95% high]",
                  "removals": {r: {"what": FaithfulnessOptions(removal=r).describe(), "all_faces": summary(v)}
                               for r, v in rows.items() if v}}
        if rows.get("road"):  # the others on ROAD's faces too, for a like-for-like comparison
            for removal, values in rows.items():
                if removal != "road" and values:
                    report["removals"][removal]["road_faces"] = summary(values[: len(rows["road"])])
        return report

    def write(rows: dict[str, list[dict]]) -> None:
        if args.json_out:
            Path(args.json_out).write_text(json.dumps(report_of(rows), indent=2) + "\n")

    rows: dict[str, list[dict]] = {r: [] for r in args.removals}
    crops = [det.preprocess([face.image]) for face in faces]
    probabilities = [det.predict(crop) for crop in crops]
    targets = [det.resolve_target("fake", p)[0] for p in probabilities]
    for removal in args.removals:  # in the order given
        count = min(args.road_faces, len(faces)) if removal == "road" else len(faces)
        for n in tqdm(range(count), desc=f"removal check: {removal}", file=sys.stderr):
            noise = random_map(det.input_size, grid, np.random.default_rng(n + 1))
            options = FaithfulnessOptions(steps=steps, removal=removal, seed=n)
            row = removal_check(det, faces[n], crops[n][0], targets[n], noise, options,
                                float(probabilities[n][0, targets[n]]), random=True)
            rows[removal].append({"group": faces[n].group, **row})
            if n >= 1:  # ROAD can take minutes a face on a busy machine: what is done is kept
                write(rows)
    write(rows)
    print(json.dumps(report_of(rows), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
