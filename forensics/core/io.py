"""Atomic writes: a reader (the app, a job, the catalog, a resumed run) sees the old file or folder
or the new one, never half of one."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any, Iterator


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path`` (same folder and suffix, a name of its own) for the
    caller to write a file or a folder to. When the block ends it takes ``path``'s place in one
    rename (a folder already there is moved aside first, then removed); if the block raises, it
    is removed and ``path`` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{uuid.uuid4().hex[:12]}.tmp{path.suffix}")
    try:
        yield tmp
        if tmp.is_dir() and path.is_dir():
            old = tmp.with_name(tmp.name + ".old")
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old)
        else:
            os.replace(tmp, path)
    except BaseException:
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise


def write_atomic(path: str | Path, content: str | dict | list) -> Path:
    """Write ``content`` to ``path`` through :func:`atomic_path`: text as UTF-8, a dict or a list
    as indented JSON."""
    text = content if isinstance(content, str) else json.dumps(content, indent=2, default=str) + "\n"
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def sha256_file(path: str | Path) -> str:
    """The file's SHA-256 (hex), read a megabyte at a time: uploads can be large."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_json(path: str | Path) -> Any:
    """A JSON file's content, or ``None`` when it is missing, unreadable or not JSON: for the
    optional records beside a model or a run (metrics, training record, history), which may be absent
    or half-written by an older version, and whose absence the caller answers with a default."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
