"""What every tab shares: the one error helper, progress, the lazily imported engine, a detector's line."""

from __future__ import annotations

import importlib
from pathlib import Path

import gradio as gr
from gradio import processing_utils

from forensics import detector_notes
from forensics.core import atomic_path


class _Lazy:
    """``forensics.service`` pulls in torch, timm and the models: import it on first use (or in the
    warm-up thread), so the page is served within seconds of start."""

    def __getattr__(self, name):
        return getattr(importlib.import_module("forensics.service"), name)


engine = _Lazy()


def fail(exc: Exception | str):
    """A one-line error in the UI (and the API), without a traceback."""
    raise gr.Error(str(exc), print_exception=False) from None


def progress_of(progress: gr.Progress):
    """Gradio's progress bar as the engine's ``progress(fraction, text)``."""
    return lambda fraction, text: progress(fraction, desc=text)


def detector_line(name: str | None) -> str:
    """What a detector catches and misses, in one line under its box (from its measurements)."""
    return f"<small>{detector_notes.detector_note(name).line}</small>" if name else ""


def _save_pil_to_cache(img, cache_dir: str, name: str = "image", format: str = "webp") -> str:
    """Gradio's image cache, written atomically. Gradio names a cached image after its bytes and
    rewrites the file every time the same image is sent again (a streamed answer sends its images
    twice); a browser fetching the first copy then gets a file that grows under it, and the server
    logs "Response content longer than Content-Length". Here an existing copy is reused and a new
    one appears whole (written aside, then renamed)."""
    data = processing_utils.encode_pil_to_bytes(img, format)
    folder = Path(cache_dir) / processing_utils.hash_bytes(data)
    folder.mkdir(exist_ok=True, parents=True)
    target = (folder / f"{name}.{format}").resolve()
    if not target.exists():
        with atomic_path(target) as staging:
            staging.write_bytes(data)
    return str(target)


processing_utils.save_pil_to_cache = _save_pil_to_cache  # also used by save_img_array_to_cache
