"""A/B the in-process engine (the analysis ``bench/app_load.py`` calls "engine") of two checkouts on
one file, interleaved, so that a busy machine weighs on both alike:

    git archive OLD_COMMIT | tar -x -C /tmp/old
    .venv/bin/python bench/engine_ab.py --old /tmp/old --detector assets/detectors/default \\
        --media ../shared/data/video/dfdc_abofeumbvv.mp4 --rounds 4 --repeats 2 [--threads 1]

Each round starts one process per checkout (their order alternating), which analyses the file once
to warm up and then ``--repeats`` times, timing each run's wall time, the process's CPU time
(``time.process_time``: less swayed by other processes than wall time, though a loaded machine
still inflates it through shared caches and, with more than one thread, spinning workers) and the
engine's own stages (``timings_ms``). Prints per-checkout medians, new/old ratios, and whether
every run of both gave the same answer (each face's frame, box and P(fake)), as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_CHILD = r"""
import json, os, sys, time
sys.path.insert(0, sys.argv[1])
threads = int(sys.argv[5])
if threads:
    import cv2, torch
    torch.set_num_threads(threads)
    cv2.setNumThreads(threads)
from forensics import service
from ui.present import face_panel
media, repeats = sys.argv[2], int(sys.argv[3])
service.analyze(media, sys.argv[4], frames=16)  # load once, warm up
runs = []
for _ in range(repeats):
    wall, cpu = time.perf_counter(), time.process_time()
    session = service.analyze(media, sys.argv[4], frames=16)
    face_panel(session.result, 0)
    runs.append({"wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu,
                 "faces": len(session.result.faces),
                 "answer": [[f.frame, f.box, f.fake_probability] for f in session.result.faces],
                 **{k + "_ms": v for k, v in session.result.timings_ms.items()}})
print(json.dumps(runs))
"""


def _run(tree: Path, zoo: Path, name: str, media: str, repeats: int, threads: int) -> list[dict]:
    env = dict(os.environ, FORENSICS_DETECTORS=str(zoo), HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False")
    out = subprocess.run([sys.executable, "-c", _CHILD, str(tree), media, str(repeats), name, str(threads)],
                         cwd=tree, env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old", required=True, help="a checkout of the code to compare against")
    parser.add_argument("--new", default=str(ROOT), help="the checkout under test (default: this one)")
    parser.add_argument("--detector", default=str(ROOT / "assets" / "detectors" / "default"))
    parser.add_argument("--media", default=str(ROOT / ".." / "shared" / "data" / "video" / "dfdc_abofeumbvv.mp4"))
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="torch and OpenCV threads (0: their defaults)")
    args = parser.parse_args()

    zoo = Path(tempfile.mkdtemp(prefix="engine-ab-"))
    name = Path(args.detector).name
    shutil.copytree(args.detector, zoo / name)
    media = str(Path(args.media).resolve())
    trees = {"old": Path(args.old).resolve(), "new": Path(args.new).resolve()}
    runs: dict[str, list[dict]] = {"old": [], "new": []}
    try:
        for r in range(args.rounds):
            for which in (("old", "new") if r % 2 == 0 else ("new", "old")):
                runs[which] += _run(trees[which], zoo, name, media, args.repeats, args.threads)
    finally:
        shutil.rmtree(zoo, ignore_errors=True)
    keys = [k for k in runs["old"][0] if k not in ("faces", "answer")
            and all(k in run for run in runs["old"] + runs["new"])]
    answers = {json.dumps(run["answer"]) for run in runs["old"] + runs["new"]}
    medians = {w: {k: statistics.median(run[k] for run in runs[w]) for k in keys} for w in runs}
    report = {"media": media, "threads": args.threads or "default", "runs_each": len(runs["old"]),
              "faces": {w: sorted({run["faces"] for run in runs[w]}) for w in runs},
              "same_answer": len(answers) == 1,  # frames, boxes and P(fake) of every face, every run
              "median": {w: {k: round(v, 3) for k, v in m.items()} for w, m in medians.items()},
              "new_over_old": {k: round(medians["new"][k] / medians["old"][k], 3) for k in keys
                               if medians["old"][k] > 0}}
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
