"""What every tab shares: the one error helper, progress, the lazily imported engine, a detector's line."""

from __future__ import annotations

import importlib

import gradio as gr

from forensics import detector_notes


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
