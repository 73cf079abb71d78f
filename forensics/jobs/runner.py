"""``python -m forensics.jobs.runner ID``: the process that runs one job and reports on it.

Started by ``JobStore.dispatch`` as the leader of a new process group, it runs the job's
``python -m training`` command with capped threads and a lower CPU priority, its output appended to
``job.log``; when the command ends it publishes the model folder (training jobs) into the catalog's
job models root with its full model card, records metrics and status, and starts whatever the
queue allows next. A cancel kills this whole group; the store then already says "cancelled", and
every report here is conditional on the job still being "running", so nothing overwrites it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

from forensics.core import read_json, write_atomic
from forensics.jobs.logs import last_error_line
from forensics.jobs.store import ROOT, TRAINING_KINDS, Job, JobStore, publish_name
from forensics.jobs.processes import job_env, process_start_token

NICE = int(os.environ.get("FORENSICS_JOB_NICE", "10"))


def run(job_id: int) -> int:
    store = JobStore(reconcile=False)
    job = store.get(job_id)
    if job.status != "running":  # cancelled between dispatch and this start
        return 0
    store.update(job_id, pid=os.getpid(), pid_started=process_start_token(os.getpid()))
    with contextlib.suppress(OSError, AttributeError):
        os.nice(NICE)  # training yields the CPU to the web server's requests
    with open(job.log_path, "ab", buffering=0) as log:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        log.write(f"[{stamp}] job {job.id} (attempt {job.attempts}): {shlex.join(_shown(job.command))}\n".encode())
        child = subprocess.Popen(job.command, cwd=ROOT, env=job_env(), stdin=subprocess.DEVNULL, stdout=log,
                                 stderr=subprocess.STDOUT)
        store.update(job_id, child_pid=child.pid)
        signal.signal(signal.SIGTERM, lambda *_: child.terminate())
        returncode = _wait(store, job_id, child)
        try:
            values = _outcome(store, store.get(job_id), returncode)
        except Exception as exc:  # publishing failed: the job failed, with the reason
            values = {"status": "failed", "error": f"{type(exc).__name__}: {' '.join(str(exc).split())}"[:500]}
        log.write(f"[{time.strftime('%Y-%m-%d %H:%M:%S')}] job {job.id} {values['status']}"
                  f"{': ' + values['error'] if values.get('error') else ''}\n".encode())
    store.update(job_id, where_status="running", returncode=returncode, finished_at=time.time(), **values)
    store.dispatch()
    return 0


def _wait(store: JobStore, job_id: int, child: subprocess.Popen, every_s: float = 2.0) -> int:
    """Wait for the training process, stopping it if the job stops being "running" meanwhile (a
    cancel that came before this supervisor had reported its pid, so it could not be signalled)."""
    while True:
        try:
            return child.wait(timeout=every_s)
        except subprocess.TimeoutExpired:
            if store.get(job_id).status != "running":
                child.terminate()


def _outcome(store: JobStore, job: Job, returncode: int) -> dict:
    if job.status != "running":
        return {"status": job.status}
    if returncode != 0:
        reason = (f"killed by signal {-returncode}" if returncode < 0
                  else last_error_line(Path(job.log_path).read_text(encoding="utf-8", errors="replace")))
        return {"status": "failed", "error": reason}
    if job.kind in TRAINING_KINDS:
        model_dir = publish_model(store, job)
        record = read_json(model_dir / "training.json") or {}
        return {"status": "finished", "model_dir": str(model_dir), "metrics": best_epoch_metrics(record)}
    metrics_path = _evaluation_metrics_path(job)
    metrics = json.loads(metrics_path.read_text())
    # The job keeps its own copy: a later evaluation of the same model rewrites the one beside the model, and
    # this job's record must still point at the figures it reports.
    own = Path(job.run_dir) / "metrics.json"
    if own.resolve() != metrics_path.resolve():
        write_atomic(own, metrics)
    figures = {**metrics.get("summary", {}), "metrics_json": str(own)}
    if own.resolve() != metrics_path.resolve():
        figures["model_metrics_json"] = str(metrics_path)  # the model's card reads this one: its latest evaluation
    return {"status": "finished", "metrics": figures}


def publish_model(store: JobStore, job: Job) -> Path:
    """Move ``run/model`` into the catalog's job models root under the job's name, with the
    training command in its record and the full model card (data, settings, validation, limits)."""
    source = Path(job.run_dir) / "model"
    if not (source / "config.json").is_file():
        raise RuntimeError("training ended without writing a model folder")
    record_path = source / "training.json"
    if record_path.is_file():
        record = json.loads(record_path.read_text())
        record["command"] = shlex.join(["python", *job.command[1:]])
        record["job"] = {"id": job.id, "kind": job.kind, "attempts": job.attempts}
        write_atomic(record_path, record)
        from forensics.detectors.card import write_card

        write_card(source, read_json(source / "metrics.json"))  # a federated run measures its model before publishing
    store.models_dir.mkdir(parents=True, exist_ok=True)
    target = store.models_dir / publish_name(store.models_dir, job.name)
    source.replace(target)  # one rename: the catalog sees the whole folder or none of it
    return target


def best_epoch_metrics(record: dict) -> dict:
    """The summary a job table shows: the chosen epoch's validation figures."""
    best = record.get("best_epoch") or {}
    val = best.get("val") or {}
    return {"best_epoch": best.get("epoch"), "val_roc_auc": val.get("roc_auc"), "val_f1": val.get("f1"),
            "val_accuracy": val.get("accuracy"), "train_loss": best.get("train_loss")}


def _evaluation_metrics_path(job: Job) -> Path:
    command = job.command
    out = command[command.index("--out") + 1] if "--out" in command else command[command.index("--detector") + 1]
    return Path(out) / "metrics.json"


def _shown(command: list[str]) -> list[str]:
    return ["python", *command[1:]] if command and command[0] == sys.executable else command


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or not args[0].isdigit():
        print("usage: python -m forensics.jobs.runner JOB_ID", file=sys.stderr)
        return 2
    return run(int(args[0]))


if __name__ == "__main__":
    sys.exit(main())
