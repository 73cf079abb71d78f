"""What every tab shares: the one error helper, progress, the lazily imported engine, a detector's line."""

from __future__ import annotations

import contextlib
import importlib
import io
from pathlib import Path

import gradio as gr
from gradio import processing_utils

from forensics import detector_notes
from forensics.core import ForensicsError, atomic_path


class _Lazy:
    """``forensics.service`` pulls in torch, timm and the models: import it on first use (or in the
    warm-up thread), so the page is served within seconds of start."""

    def __getattr__(self, name):
        return getattr(importlib.import_module("forensics.service"), name)


engine = _Lazy()


def fail(exc: Exception | str):
    """A one-line error in the UI (and the API), without a traceback."""
    raise gr.Error(str(exc), print_exception=False) from None


@contextlib.contextmanager
def errors_as_one_line(*also: type[Exception]):
    """The library's errors (and ``also``) raised inside reach the UI as :func:`fail`'s one line."""
    try:
        yield
    except (ForensicsError, *also) as exc:
        fail(exc)


@contextlib.contextmanager
def superseding(previous, what: str):
    """A run that fails (a bad file) leaves Gradio's state as it was: the last run (``previous``, a session or
    a comparison) is marked, so that its reports, asked for next (the API has no clearing step), are refused
    in one line instead of standing in for the file that failed."""
    try:
        yield
    except Exception:
        if previous is not None:
            previous.superseded = f"the last {what} failed: nothing to report until one succeeds"
        raise


def progress_of(progress: gr.Progress):
    """Gradio's progress bar as the engine's ``progress(fraction, text)``."""
    return lambda fraction, text: progress(fraction, desc=text)


def detector_line(name: str | None) -> str:
    """What a detector catches and misses, in one line under its box (from its measurements)."""
    return f"<small>{detector_notes.detector_note(name).line}</small>" if name else ""


def _save_pil_to_cache(img, cache_dir: str, name: str = "image", format: str = "webp") -> str:
    """Gradio's image cache, written atomically and encoded once. Gradio names a cached image after
    its encoded bytes, so it encodes every image it sends, again each time the same image is sent,
    and rewrites the file; a browser fetching the first copy then gets a file that grows under it,
    and the server logs "Response content longer than Content-Length". Here the folder is named
    after the pixels (hashing them costs about a thirtieth of encoding them), an image already
    there is neither encoded nor written again, and a new one appears whole (written aside, then
    renamed). WebP is encoded with libwebp's fastest method at Gradio's quality (a 1 MP image:
    about 18 ms instead of 70, the file about a quarter larger): the answer waits on it."""
    fmt = format.lower()
    key = f"{img.mode} {img.size} {fmt}".encode() + img.tobytes()
    folder = Path(cache_dir) / processing_utils.hash_bytes(key)
    target = (folder / f"{name}.{format}").resolve()
    if target.exists():
        return str(target)
    if fmt == "webp" and img.mode in ("RGB", "RGBA", "L"):
        with io.BytesIO() as buffer:
            img.save(buffer, "webp", method=0)
            data = buffer.getvalue()
    else:
        data = processing_utils.encode_pil_to_bytes(img, format)
    folder.mkdir(exist_ok=True, parents=True)
    with atomic_path(target) as staging:
        staging.write_bytes(data)
    return str(target)


processing_utils.save_pil_to_cache = _save_pil_to_cache  # also used by save_img_array_to_cache
