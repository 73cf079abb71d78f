"""Reading a job's log: tqdm's redraws collapsed, the last progress bar, the line that says why it failed."""

from __future__ import annotations

import os
import re
from pathlib import Path


_BAR = re.compile(r"(?P<desc>[^\r\n:|]+?):\s+(?P<pct>\d+)%\|[^|\r\n]*\|\s*(?P<done>\d+)/(?P<total>\d+)")


def last_progress_bar(text: str) -> tuple[str, int, int] | None:
    """(description, done, total) of the last tqdm bar drawn in ``text``."""
    matches = list(_BAR.finditer(text))
    if not matches:
        return None
    m = matches[-1]
    return m.group("desc").strip(), int(m.group("done")), int(m.group("total"))


_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")  # terminal colours and cursor moves (Ray's and Flower's logs)


def clean_log(text: str, lines: int = 200) -> str:
    """A log as a person reads it: each line as tqdm last redrew it, without terminal colour codes,
    the last ``lines`` lines."""
    text = _ANSI.sub("", text)
    out = [line.rsplit("\r", 1)[-1] if "\r" in line.rstrip("\r") else line.rstrip("\r")
           for line in text.split("\n")]
    return "\n".join(out[-lines:]).strip("\n")


def last_error_line(text: str) -> str:
    """The line that says why a process failed: the exception at the end of a traceback, a
    ``usage``/``error:`` line from argparse, or the last line printed."""
    rows = [r.strip() for r in clean_log(text, 400).splitlines() if r.strip()]
    for row in reversed(rows):
        if re.match(r"^([\w.]+(Error|Exception|Exit)|error:|[\w. ]+: error:)", row):
            return row[:500]
    return rows[-1][:500] if rows else "no output"


def tail(path: Path, max_bytes: int) -> str:
    """The last ``max_bytes`` of a file as text (empty if it is missing)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - max_bytes))
            return handle.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
