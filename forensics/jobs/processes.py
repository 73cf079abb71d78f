"""The processes of a job: the environment that caps their threads, and how to tell whether a
recorded process still runs (a pid alone can be reused after a restart) and stop its whole group."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path
from typing import Sequence


def max_jobs() -> int:
    """Jobs run at once (``FORENSICS_MAX_JOBS``, default 1: training takes every core it is given)."""
    return max(1, int(os.environ.get("FORENSICS_MAX_JOBS", "1")))


def job_threads() -> int:
    """Threads a job may use (``FORENSICS_JOB_THREADS``, default 1), so the app stays responsive."""
    return max(1, int(os.environ.get("FORENSICS_JOB_THREADS", "1")))


def job_env(threads: int | None = None) -> dict[str, str]:
    """The environment of a training process: every thread pool capped (torch follows OMP)."""
    n = str(threads or job_threads())
    caps = {k: n for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS",
                           "VECLIB_MAXIMUM_THREADS", "OPENCV_FOR_THREADS_NUM")}
    return {**os.environ, **caps, "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1"}


def _stat(pid: int) -> list[str] | None:
    """The fields of ``/proc/<pid>/stat`` after the command name (the state first, the parent's
    group third, the start time twentieth), or None where it cannot be read."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None


def process_start_token(pid: int | None) -> str | None:
    """The process's start time (``/proc/<pid>/stat`` field 22): with the pid, it names one
    process for good, where a pid alone may be reused after a restart. None where unknown."""
    fields = _stat(pid) if pid else None
    return fields[19] if fields and len(fields) > 19 else None


def process_alive(pid: int | None, token: str | None = None) -> bool:
    """Whether ``pid`` runs (not a zombie) and is the same process that ``token`` recorded."""
    if not pid:
        return False
    if Path("/proc/self/stat").exists():
        rest = _stat(pid)
        if not rest or rest[0] in ("Z", "X"):
            return False
        return token is None or (len(rest) > 19 and rest[19] == token)
    try:  # no /proc (macOS): the pid alone
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stop_process_group(pid: int | None, token: str | None, others: Sequence[int | None] = (),
                       wait_s: float = 10.0) -> None:
    """SIGTERM the process group led by ``pid`` (and any of ``others`` still alive), then SIGKILL
    what is left after ``wait_s``; returns when all are gone."""
    targets = [p for p in [pid, *others] if p]
    if pid and process_alive(pid, token):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGTERM)
    for other in others:
        if other and process_alive(other):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(other, signal.SIGTERM)
    deadline = time.time() + wait_s
    while time.time() < deadline and any(process_alive(p) for p in targets):
        time.sleep(0.05)
    for p in targets:
        if process_alive(p):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(p, signal.SIGKILL) if p == pid else os.kill(p, signal.SIGKILL)
    deadline = time.time() + 5
    while time.time() < deadline and any(process_alive(p) for p in targets):
        time.sleep(0.05)


def stop_orphan(group: int | None, pid: int | None) -> bool:
    """Stop a training process whose supervisor died (it would otherwise train on, unwatched, and a
    resume would run beside it). Only a process still in the supervisor's group and running
    ``training`` is touched: after a reboot the same pid may be someone else's."""
    if not group or not pid or not process_alive(pid):
        return False
    stat = _stat(pid)
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    if not stat or len(stat) < 3 or int(stat[2]) != group or b"training" not in cmdline:
        return False
    stop_process_group(None, None, [pid])
    return True
