"""The Image tab: one photo (or an animated GIF/WebP, analysed as a short video)."""

from __future__ import annotations

import gradio as gr

from forensics.catalog import EXTRA_METHODS, METHODS
from ui import media


def analyze_image(image, pasted=None, detector=None, methods=list(METHODS + EXTRA_METHODS), target="fake",
                  head_fusion="mean", discard_ratio=0.9, alpha=0.5, whole_image=False, score_maps=False,
                  progress=gr.Progress()):
    session = media.analyze(image or pasted, detector, methods, 16, target, head_fusion, discard_ratio, progress,
                            whole_image, score_maps)
    yield from media.then_reports(media.outputs(session, alpha))


def build() -> dict:
    """Lay out and wire the tab; returns its components."""
    c = media.layout("image")
    c["run"].click(analyze_image, [c["media"], c["pasted"], c["detector"], c["methods"],
                                   *[c[k] for k in media.SETTINGS], c["whole_image"], c["score"]],
                   [c["verdict"], c["summary"], c["annotated"], c["face"], *c["maps"], c["reports"], c["state"]],
                   api_name="analyze_image", show_progress_on=[c["verdict"]])
    media.wire_maps(c)
    return c
