"""Copy the figures of leave-one-out runs (the same recipe with one source held out, or other
talking-head clips held out whole) into a model folder's training record, so that its card shows them
beside its own figures; then rewrite the card.

    .venv/bin/python scripts/leave-one-out.py assets/detectors/default runs/logo-sg2/model runs/logo-sd/model \
        runs/fold2/model
    .venv/bin/python scripts/leave-one-out.py --add assets/detectors/default runs/fold3/model   # keep the others
    .venv/bin/python scripts/leave-one-out.py --keep-from runs/default/model runs/all-clips/model runs/default/model
        # a new model: the runs another model's record holds, plus that model itself as one more run
    .venv/bin/python scripts/leave-one-out.py --note "These runs are stages 1 and 2 of ..." runs/default-grade/model ...
        # a model trained further than its runs were: the card says so instead of "the same recipe"

Each run must have been evaluated (`python -m training evaluate`): its metrics.json is read, never
typed in.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from forensics.core import write_atomic  # noqa: E402
from forensics.detectors.card import holdout_sources, write_card  # noqa: E402


def summary(run: Path) -> dict:
    record = json.loads((run / "training.json").read_text())
    metrics = json.loads((run / "metrics.json").read_text())
    held = list(record["config"].get("holdout_sources") or [])
    robust = metrics.get("robustness_auc_per_source") or {}
    wanted = [name for name in metrics["per_source"]
              if any(name.startswith(h) and name.endswith("vs FFHQ reals") for h in held)
              or name.startswith(tuple(f"{h} reals vs" for h in holdout_sources(record["config"]) if h not in held))]
    return {
        "config": Path(record.get("command", "").split("--config ")[-1].split()[0]).as_posix()
        if "--config" in record.get("command", "") else str(run),
        "held_out": held,
        "held_out_videos": [Path(v).stem for v in record["config"].get("holdout_videos") or []],
        "subsets": {name: {"roc_auc": (metrics["per_source"][name] or {}).get("roc_auc"),
                           "jpeg_50": robust.get(name, {}).get("jpeg_50")} for name in wanted},
        "video_auc": (metrics.get("videos") or {}).get("roc_auc"),
        # how many videos that figure is over (the clips the split held back for validation count since
        # the twenty-fourth session; records from before have no count)
        "videos": sum(v.get("fake_probability") is not None for v in (metrics.get("videos") or {}).get("videos", []))
        or None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="the model folder whose card gets the figures")
    parser.add_argument("runs", nargs="+", help="evaluated model folders of the leave-one-out runs")
    parser.add_argument("--add", action="store_true",
                        help="keep the runs already in the record (a run of the same config is replaced)")
    parser.add_argument("--keep-from", metavar="MODEL",
                        help="start from the runs in another model folder's record (e.g. the model this one replaces)")
    parser.add_argument("--note", help="where the runs' recipe and this model's differ (a model trained further "
                                       "than the runs were): heads the card's section; '' removes it")
    args = parser.parse_args(argv)
    folder = Path(args.model)
    path = folder / "training.json"
    record = json.loads(path.read_text())
    if args.keep_from:
        other = Path(args.keep_from) / "training.json"
        if not other.is_file():
            print(f"error: {args.keep_from}: no training.json to keep the runs of", file=sys.stderr)
            return 2
        record["leave_one_out"] = json.loads(other.read_text()).get("leave_one_out") or []
    run_dirs = [Path(r) for r in args.runs]
    for run in run_dirs:
        missing = [name for name in ("training.json", "metrics.json") if not (run / name).is_file()]
        if missing:
            print(f"error: {run}: no {' or '.join(missing)} (evaluate it first: python -m training evaluate "
                  f"--detector {run} --data ../shared/data/labels.csv)", file=sys.stderr)
            return 2
    runs = [summary(run) for run in run_dirs]
    if args.add or args.keep_from:  # keep the runs already there (or just carried over)
        new = {run["config"] for run in runs}
        runs = [run for run in record.get("leave_one_out") or [] if run.get("config") not in new] + runs
    record["leave_one_out"] = runs
    if args.note is not None:
        record.pop("leave_one_out_note", None)
        if args.note.strip():
            record["leave_one_out_note"] = args.note.strip()
    write_atomic(path, record)
    metrics = json.loads((folder / "metrics.json").read_text()) if (folder / "metrics.json").is_file() else None
    write_card(folder, metrics)
    print(json.dumps(record["leave_one_out"], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
