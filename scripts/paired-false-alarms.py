"""False alarms of detectors on the same real faces, paired: the real faces no split of their runs drew
(the runs' ``max_per_source`` left them out: never trained on, validated on or calibrated on), by group
(UTKFace's file names), each detector at its own threshold. For the first detector against each other:
the share each flags, the faces only one of them flags, and the exact McNemar p-value (paired, so far
stronger than comparing two shares with their own intervals). ``--matched`` adds each other detector at the
threshold that flags as many of these faces as the first: how evenly its false alarms fall across groups, apart
from where its validation put its threshold.

    .venv/bin/python scripts/paired-false-alarms.py assets/detectors/default runs/ft-groups/model \
        runs/ft-groups-control/model --union "UTKFace Black" "UTKFace Indian" "UTKFace age 13-19" --matched --json /tmp/paired.json
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from forensics.core import write_atomic  # noqa: E402
from forensics.detectors import load_detector  # noqa: E402
from training.data import group_members  # noqa: E402
from training.evaluate import score_faces, unseen_real_samples  # noqa: E402
from training.metrics import mcnemar_exact  # noqa: E402
from training.pipeline import cached_faces  # noqa: E402


def unseen_reals(detector: str, data: str, cache: str) -> tuple[dict, dict]:
    """The detector's crop config and {image path: sample} of the real images its run left out of its pool."""
    config, reals = unseen_real_samples(detector, data, cache)
    return config, {s.path: s for s in reals}


def paired_rows(flags: dict[str, np.ndarray], members: dict[str, list[int]]) -> list[dict]:
    """One row per (group, other detector): each share flagged, the discordant faces, McNemar's p."""
    names = list(flags)
    first = names[0]
    rows = []
    for group, idx in [("all", list(range(len(flags[first]))))] + sorted(members.items()):
        a = flags[first][idx]
        for other in names[1:]:
            b = flags[other][idx]
            only_a, only_b = int((a & ~b).sum()), int((b & ~a).sum())
            rows.append({"group": group, "faces": len(idx), "first": first, "other": other,
                         "first_flagged": float(a.mean()), "other_flagged": float(b.mean()),
                         "only_first": only_a, "only_other": only_b, "p": mcnemar_exact(only_a, only_b)})
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("detectors", nargs="+", help="model folders with training records (the first is the reference)")
    parser.add_argument("--data", default="../shared/data/labels.csv")
    parser.add_argument("--cache", default=".cache/crops256")
    parser.add_argument("--union", nargs="*", default=[],
                        help="groups also counted together as one row (e.g. the groups a run trained more often)")
    parser.add_argument("--matched", action="store_true",
                        help="also each other detector at the threshold that flags as many of the faces as the first: "
                             "how evenly its false alarms fall, whatever its own threshold")
    parser.add_argument("--json", dest="json_out", default=None)
    args = parser.parse_args()
    if len(args.detectors) < 2:
        raise SystemExit("give two detectors or more: the first is compared with each other")
    configs, unseen = zip(*(unseen_reals(d, args.data, args.cache) for d in args.detectors))
    common = sorted(set.intersection(*(set(u) for u in unseen)))
    if not common:
        raise SystemExit("these detectors' runs left out no real image in common")
    flags: dict[str, np.ndarray] = {}
    all_scores: dict[str, np.ndarray] = {}
    faces = None
    for d, config in zip(args.detectors, configs):
        mine = {f.image_path: f for f in cached_faces(config, samples=[unseen[0][p] for p in common])}
        faces = faces or [mine[p] for p in sorted(mine)]
        keep = [mine[f.image_path] for f in faces]  # the same faces in the same order for every detector
        detector = load_detector(d)
        scores = score_faces(detector, keep, desc=Path(d).parent.name or d)
        flags[d] = scores >= float(detector.threshold)
        all_scores[d] = scores
    if args.matched:  # each other detector at the threshold that flags as many of these faces as the first does
        share = flags[args.detectors[0]].mean()
        for d in args.detectors[1:]:
            cut = np.quantile(all_scores[d], 1 - share, method="higher") if share > 0 else np.inf
            flags[f"{d} (as many flagged)"] = all_scores[d] >= cut
    members = group_members(faces)
    unknown = sorted(set(args.union) - set(members))
    if unknown:
        raise SystemExit(f"--union names groups no face is in: {', '.join(unknown)}")
    if args.union:
        members[" + ".join(args.union)] = sorted({i for g in args.union for i in members[g]})
    rows = paired_rows(flags, members)
    print(f"{len(faces)} real faces no run drew; {args.detectors[0]} against each other detector")
    print("| group | faces | other | first flagged | other flagged | only first | only other | McNemar p |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['group']} | {r['faces']} | {r['other']} | {r['first_flagged']:.3f} | {r['other_flagged']:.3f} | "
              f"{r['only_first']} | {r['only_other']} | {r['p']:.3g} |")
    if args.json_out:
        write_atomic(Path(args.json_out), {"faces": len(faces), "detectors": args.detectors, "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
