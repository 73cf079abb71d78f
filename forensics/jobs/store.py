"""Background jobs: training, fine-tuning, distillation and evaluation as ``python -m training``
subprocesses, never in the web server's process, with their state in an embedded SQLite database.

Why this shape:

- **A process per job, supervised by a process of its own.** ``dispatch`` starts
  ``python -m forensics.jobs.runner ID`` in a new session (its own process group); that supervisor
  runs the training command with a thread cap and a lower priority, waits, publishes the model and
  records the outcome. The app (or the CLI) only starts supervisors, so jobs run on when the app is
  restarted, and the CLI and the app share them through the database.
- **State in SQLite** (``$FORENSICS_HOME/jobs.db``, WAL mode): status, settings, the command, times,
  metrics, log path and the published model folder, so jobs and results survive restarts. Opening
  the store reconciles it: a job marked running whose supervisor is gone (the machine or container
  stopped) is marked failed; ``resume`` runs it again with ``--resume`` from its last checkpoint.
- **A queue**: at most ``FORENSICS_MAX_JOBS`` (default 1) run at once; the rest wait, oldest
  first. Jobs on the same data share its face-crop cache, so they never run side by side.
- **Cancel really stops**: the supervisor's whole process group gets SIGTERM, then SIGKILL.

Settings and commands live in ``settings``, process handling in ``processes``, log reading
in ``logs``; the supervisor is ``runner``. Layout under ``$FORENSICS_HOME``: ``jobs.db``; ``jobs/<id>/`` (the run folder: ``job.log``,
checkpoint, history, metrics); ``models/<name>/`` (published models, a detector root of the
catalog); ``cache/<data hash>/`` (face crops); ``uploads/`` (unpacked dataset zips).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Iterator, Sequence

from forensics import catalog
from forensics.core import ForensicsError, JobError, read_json, sha256_file
from forensics.jobs.logs import clean_log, last_progress_bar, tail
from forensics.jobs.settings import (
    TRAINING_KINDS,
    JobSettings,
    check_finetune_size,
    inside_folder,
    build_command,
    model_choice_for,
    resolve_detector_folder,
    validate,
)
from forensics.jobs.processes import (
    max_jobs,
    stop_orphan,
    process_alive,
    process_start_token,
    stop_process_group,
)

ROOT = Path(__file__).resolve().parents[2]
STATUSES = ("queued", "running", "finished", "failed", "cancelled")
STARTING_GRACE_S = 120.0  # a job set running whose supervisor has not reported yet, and is not stale
SCHEMA_VERSION = 1


@dataclass
class Job:
    """One row of the store (the table is made from these fields: ``_schema``), with what the UI and the CLI show."""

    id: int
    kind: str
    name: str
    status: str                 # one of STATUSES
    settings: dict              # JSON: what was asked for (JobSettings)
    command: list[str]          # JSON list: the argv run (with --resume once resumed)
    cache: str                  # the face-crop cache it uses (jobs sharing one never overlap)
    run_dir: str                # checkpoint, history, metrics, job.log
    log_path: str
    model_dir: str | None       # the published model folder, once finished
    metrics: dict | None        # JSON summary: best epoch (training) or metrics.json summary
    error: str | None           # one line, for failed and cancelled jobs
    pid: int | None             # the supervisor: leader of the job's process group
    pid_started: str | None     # its start time, so a reused pid is not taken for it
    child_pid: int | None       # the training process
    returncode: int | None
    attempts: int
    created_at: float
    started_at: float | None
    finished_at: float | None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> "Job":
        data = dict(row)
        data["settings"] = json.loads(data["settings"])
        data["command"] = json.loads(data["command"])
        data["metrics"] = json.loads(data["metrics"]) if data["metrics"] else None
        return cls(**data)

    @property
    def active(self) -> bool:
        return self.status in ("queued", "running")

    def to_dict(self) -> dict:
        out = asdict(self)
        out["progress"], out["stage"] = self.progress()
        return out

    # -- what the run folder tells ----------------------------------------------------------------
    def history(self) -> list[dict]:
        """Per-epoch entries (``train_loss``, ``val`` metrics) written by the training loop."""
        return read_json(Path(self.run_dir) / "history.json") or []

    def step_losses(self) -> list[dict]:
        """The loop's step-level log (``train_log.jsonl``: step, epoch, loss, lr)."""
        path = Path(self.run_dir) / "train_log.jsonl"
        rows = []
        if path.is_file():
            for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
                with contextlib.suppress(json.JSONDecodeError):
                    rows.append(json.loads(line))
        return rows

    def log_tail(self, lines: int = 200, max_bytes: int = 256_000) -> str:
        """The end of ``job.log``, with tqdm's carriage-return redraws collapsed to their last state."""
        return clean_log(tail(Path(self.log_path), max_bytes), lines)

    def progress(self) -> tuple[float, str]:
        """(fraction done, what it is doing) from the training loop's tqdm bars and epoch count."""
        if self.status == "finished":
            return 1.0, "finished"
        if self.status != "running":
            return (0.0 if self.status == "queued" else self._fraction_done()), self.status
        bar = last_progress_bar(tail(Path(self.log_path), 64_000))
        if bar is None:
            return self._fraction_done(), "starting"
        desc, done, total = bar
        epoch = re.fullmatch(r"epoch (\d+)/(\d+)", desc)
        if epoch and self.kind != "federated":  # a federated job's bars are rounds (its clients' epochs are not)
            current, epochs = int(epoch.group(1)), int(epoch.group(2))
            return min(1.0, (current - 1 + done / max(1, total)) / max(1, epochs)), f"{desc}: step {done}/{total}"
        return self._fraction_done(), f"{desc}: {done}/{total}"

    def _fraction_done(self) -> float:
        epochs = int(self.settings.get("epochs") or 1)
        return min(1.0, len(self.history()) / max(1, epochs)) if self.kind in TRAINING_KINDS else 0.0


def _schema() -> str:
    """The jobs table, a column for each field of ``Job``: dicts and lists as JSON text, ``| None`` fields nullable."""
    constraints = {"id": " PRIMARY KEY AUTOINCREMENT", "status": f" NOT NULL CHECK (status IN {STATUSES})",
                   "attempts": " NOT NULL DEFAULT 0"}
    columns = [f"{f.name} {({'int': 'INTEGER', 'float': 'REAL'}).get(f.type.split(' |')[0], 'TEXT')}"
               + constraints.get(f.name, "" if "None" in f.type else " NOT NULL") for f in fields(Job)]
    return (f"CREATE TABLE IF NOT EXISTS jobs ({', '.join(columns)});\n"
            "CREATE INDEX IF NOT EXISTS jobs_status ON jobs (status);")


# -- the store --------------------------------------------------------------------------------------


class JobStore:
    """The jobs of one ``FORENSICS_HOME``. Cheap to open; every call uses its own connection, so
    one store serves the app's threads, the CLI and the job supervisors alike."""

    def __init__(self, home: str | Path | None = None, reconcile: bool = True):
        self.home = Path(home) if home else catalog.forensics_home()
        self.home.mkdir(parents=True, exist_ok=True)
        self.db_path = self.home / "jobs.db"
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(_schema())
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        if reconcile:
            self.reconcile()

    # -- folders ----------------------------------------------------------------------------------
    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def uploads_dir(self) -> Path:
        return self.home / "uploads"

    def run_dir(self, job_id: int) -> Path:
        return self.home / "jobs" / str(job_id)

    def unpack_dataset(self, zip_path: str | Path) -> Path:
        """Unpack an uploaded dataset zip safely (``forensics.jobs.archives``) into ``uploads/<sha256>``
        and return its dataset root; the same zip uploaded again is unpacked once and keeps its
        face-crop cache."""
        from forensics.jobs.archives import dataset_root, extract_zip

        target = self.uploads_dir / sha256_file(zip_path)[:16]
        if not target.is_dir():
            extract_zip(zip_path, target)
        return dataset_root(target)

    # -- reading ----------------------------------------------------------------------------------
    def get(self, job_id: int | str) -> Job:
        job_id = _job_id(job_id)
        with self._connect() as db:
            row = db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise JobError(f"no job {job_id}")
        return Job.from_row(row)

    def list(self, statuses: Sequence[str] | None = None) -> list[Job]:
        with self._connect() as db:
            rows = db.execute("SELECT * FROM jobs ORDER BY id DESC").fetchall()
        jobs = [Job.from_row(r) for r in rows]
        return [j for j in jobs if statuses is None or j.status in statuses]

    # -- actions ----------------------------------------------------------------------------------
    def submit(self, settings: JobSettings, start: bool = True) -> Job:
        """Validate, queue, and (with ``start``) start it when a slot is free. A refused job whose data is
        an uploaded zip no job uses leaves nothing of it behind."""
        try:
            return self._submit(settings, start)
        except ForensicsError:
            self._forget_unused_upload(settings.data)
            raise

    def _forget_unused_upload(self, data: str | None) -> None:
        """Remove the unpacked upload holding ``data`` (``uploads/<sha>``) unless a job's data lies in it."""
        if not data or not inside_folder(Path(data), self.uploads_dir):
            return
        folder = self.uploads_dir / Path(data).resolve().relative_to(self.uploads_dir.resolve()).parts[0]
        if not any(inside_folder(Path(job.settings.get("data") or "/"), folder) for job in self.list()):
            shutil.rmtree(folder, ignore_errors=True)

    def _submit(self, settings: JobSettings, start: bool) -> Job:
        settings = validate(settings)
        # The slow parts (a Hub download, the architecture table) happen before the write lock.
        base = resolve_detector_folder(settings.base) if settings.kind not in ("train", "federated") else None
        model = model_choice_for(base) if settings.kind == "finetune" else settings.model
        if settings.kind == "finetune":
            check_finetune_size(base, model, settings.image_size)
        if settings.name and settings.kind in TRAINING_KINDS:
            self._check_name_free(settings.name)
        cache = str(self.home / "cache" / _data_key(settings.data))
        with self._transaction() as db:
            cursor = db.execute(
                "INSERT INTO jobs (kind, name, status, settings, command, cache, run_dir, log_path, created_at) "
                "VALUES (?, ?, 'queued', ?, '[]', ?, '', '', ?)",
                (settings.kind, settings.name or "", json.dumps(settings.to_dict()), cache, time.time()))
            job_id = int(cursor.lastrowid)
            name = settings.name or _default_name(settings, job_id)
            run = self.run_dir(job_id)
            command = build_command(settings, run, cache, name, self.models_dir, base, model)
            run.mkdir(parents=True, exist_ok=True)
            db.execute("UPDATE jobs SET name = ?, command = ?, cache = ?, run_dir = ?, log_path = ? WHERE id = ?",
                       (name, json.dumps(command), cache, str(run), str(run / "job.log"), job_id))
        if start:
            self.dispatch()
        return self.get(job_id)

    def _check_name_free(self, name: str) -> None:
        """A model's name must be its own: a detector (bundled or published) or a job that will publish one
        under it would otherwise leave the new model under another name, or be chosen in its place."""
        if publish_name(self.models_dir, name) != name:
            raise JobError(f"name {name!r} is taken by a detector already: choose another")
        if any(job.name == name and job.kind in TRAINING_KINDS for job in self.list(["queued", "running"])):
            raise JobError(f"name {name!r} is taken by a job that will publish a model under it: choose another")

    def dispatch(self) -> list[int]:
        """Start queued jobs while fewer than ``max_jobs()`` run (oldest first, one per cache)."""
        with self._transaction() as db:
            running = [Job.from_row(r) for r in db.execute("SELECT * FROM jobs WHERE status = 'running'")]
            queued = [Job.from_row(r) for r in db.execute("SELECT * FROM jobs WHERE status = 'queued' ORDER BY id")]
            slots = max_jobs() - len(running)
            busy = {j.cache for j in running}
            picked = []
            for job in queued:
                if slots <= 0:
                    break
                if job.cache in busy:
                    continue
                busy.add(job.cache)
                slots -= 1
                picked.append(job.id)
                db.execute("UPDATE jobs SET status = 'running', started_at = ?, finished_at = NULL, pid = NULL, "
                           "pid_started = NULL, child_pid = NULL, returncode = NULL, error = NULL, "
                           "attempts = attempts + 1 WHERE id = ?", (time.time(), job.id))
        for job_id in picked:
            self._launch(job_id)
        return picked

    def cancel(self, job_id: int | str, wait_s: float = 10.0) -> Job:
        """Stop a job: a queued one never starts; a running one's process group is terminated
        (SIGTERM, then SIGKILL after ``wait_s``) and this returns once its processes are gone."""
        job = self.get(job_id)
        if not job.active:
            raise JobError(f"job {job.id} is {job.status}: there is nothing to cancel")
        with self._transaction() as db:
            db.execute("UPDATE jobs SET status = 'cancelled', finished_at = ?, error = 'cancelled' "
                       "WHERE id = ? AND status IN ('queued', 'running')", (time.time(), job.id))
        if job.status == "running":
            job = self.get(job.id)  # the supervisor may have reported its pid meanwhile
            stop_process_group(job.pid, job.pid_started, [job.child_pid], wait_s)
        self.dispatch()
        return self.get(job.id)

    def resume(self, job_id: int | str) -> Job:
        """Queue a failed or cancelled job again: training continues from its last checkpoint
        (``--resume``); an evaluation simply runs again."""
        job = self.get(job_id)
        if job.status not in ("failed", "cancelled"):
            raise JobError(f"job {job.id} is {job.status}: only failed or cancelled jobs can be resumed")
        command = list(job.command)
        if job.kind in TRAINING_KINDS and "--resume" not in command:
            command.append("--resume")
        with self._transaction() as db:
            db.execute("UPDATE jobs SET status = 'queued', command = ?, error = NULL, finished_at = NULL, "
                       "returncode = NULL WHERE id = ? AND status IN ('failed', 'cancelled')",
                       (json.dumps(command), job.id))
        self.dispatch()
        return self.get(job.id)

    def delete(self, job_id: int | str) -> None:
        """Remove a job: cancelled first if it runs, then its run folder, its published model
        (only a folder under this home's ``models/``) and its row."""
        job = self.get(job_id)
        if job.active:
            self.cancel(job.id)
        for folder in (job.run_dir, job.model_dir):
            if folder and inside_folder(Path(folder), self.home):
                shutil.rmtree(folder, ignore_errors=True)
        with self._transaction() as db:
            db.execute("DELETE FROM jobs WHERE id = ?", (job.id,))

    def reconcile(self) -> list[int]:
        """Mark failed the jobs marked running whose supervisor is gone (the app, container or
        machine stopped while they ran); then start what the queue allows."""
        lost = []
        now = time.time()
        for job in self.list(["running"]):
            if job.pid is None and now - (job.started_at or now) < STARTING_GRACE_S:
                continue  # just dispatched: its supervisor is starting
            if job.pid is None or not process_alive(job.pid, job.pid_started):
                lost.append(job.id)
        for job_id in lost:
            job = self.get(job_id)
            stop_orphan(job.pid, job.child_pid)
            self.update(job_id, where_status="running", status="failed", finished_at=now,
                        error="interrupted: its process is gone (killed, or the app or the machine stopped while it ran); "
                              "resume continues from its last checkpoint")
        if lost or self.list(["queued"]):
            self.dispatch()
        return lost

    # -- for the supervisor -----------------------------------------------------------------------
    def update(self, job_id: int, where_status: str | None = None, **values) -> bool:
        """Set columns of one job (JSON-encoding dicts and lists); with ``where_status``, only if
        the job still has that status (a cancel must not be overwritten by a late report)."""
        if not values:
            return False
        unknown = set(values) - set(Job.__dataclass_fields__)
        if unknown:
            raise ValueError(f"unknown job fields {sorted(unknown)}")
        encoded = {k: json.dumps(v) if isinstance(v, (dict, list)) else v for k, v in values.items()}
        sql = f"UPDATE jobs SET {', '.join(f'{k} = ?' for k in encoded)} WHERE id = ?"
        params = [*encoded.values(), job_id]
        if where_status:
            sql += " AND status = ?"
            params.append(where_status)
        with self._transaction() as db:
            return db.execute(sql, params).rowcount > 0

    # -- plumbing ---------------------------------------------------------------------------------
    def _launch(self, job_id: int) -> None:
        job = self.get(job_id)
        env = dict(os.environ, FORENSICS_HOME=str(self.home), PYTHONUNBUFFERED="1")
        Path(job.log_path).parent.mkdir(parents=True, exist_ok=True)
        try:
            with open(job.log_path, "ab") as log:
                proc = subprocess.Popen([sys.executable, "-m", "forensics.jobs.runner", str(job_id)], cwd=ROOT,
                                        env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        except OSError as exc:
            self.update(job_id, where_status="running", status="failed", finished_at=time.time(),
                        error=f"could not start: {exc}")
            return
        self.update(job_id, pid=proc.pid, pid_started=process_start_token(proc.pid))
        # Reap it when it ends, so a finished supervisor does not linger as a zombie of this process.
        threading.Thread(target=proc.wait, name=f"job-{job_id}-reaper", daemon=True).start()

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.db_path, timeout=30, isolation_level=None)
        db.row_factory = sqlite3.Row
        try:
            yield db
        finally:
            db.close()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction taken up front (BEGIN IMMEDIATE): two dispatchers never both see a free slot."""
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")


# -- helpers -----------------------------------------------------------------------------------------


def _job_id(value: int | str | None) -> int:
    if value is None or str(value).strip() in ("", "0"):
        raise JobError("no job chosen: click a row of the jobs table, or give a job's id")
    try:
        number = float(str(value).strip().lstrip("#"))
    except (TypeError, ValueError):
        raise JobError(f"{value!r} is not a job id") from None
    if number != int(number) or number < 1:
        raise JobError(f"{value!r} is not a job id")
    return int(number)


def _default_name(settings: JobSettings, job_id: int) -> str:
    what = settings.kind if settings.kind in ("finetune", "federated") else settings.model
    return f"job{job_id}-{what}" if settings.kind != "evaluate" else f"job{job_id}-evaluate"


def _data_key(data: str) -> str:
    return hashlib.sha1(str(Path(data).resolve()).encode()).hexdigest()[:16]


def publish_name(models_dir: Path, wanted: str) -> str:
    """A model folder name not taken by a published or a bundled detector."""
    taken = set(catalog.available_detectors()) | ({p.name for p in models_dir.iterdir()} if models_dir.is_dir() else set())
    name, n = wanted, 2
    while name in taken:
        name, n = f"{wanted}-{n}", n + 1
    return name
