"""The Gradio app's page: one module per tab, each laying out and wiring its own components."""

from __future__ import annotations

import gradio as gr

from forensics import catalog
from forensics import settings as deployment
from ui import about, compare, image, int8, train, video

INTRO = """# Deepfake Forensics Studio
Upload an image or a video: faces are found with MTCNN, the chosen detector gives each face's
probability of being manipulated, and the overlays show where the model looked. **A probability is
evidence, not proof.**"""

# Passed to ``launch(css=...)`` by app.py. A gallery's label floats over its first row of thumbnails, where it
# hid the tiles' own labels (the face number and P(fake) drawn over each frame): those galleries start lower.
# A gallery whose height is "auto" still keeps 450 px: "fit-content" ones shrink to their thumbnails. A map's
# caption (with its faithfulness scores, two lines) stops short of the fullscreen button, which hid its end.
CSS = """.clear-label .grid-container { padding-top: 2.6rem !important; }
.fit-content .grid-wrap { min-height: 0 !important; max-height: none !important; }
.paste-box .source-selection { display: none !important; }
.map-slot label[data-testid="block-label"] { max-width: calc(100% - 2.8rem) !important; }"""


def build_demo() -> gr.Blocks:
    ttl = deployment.temp_file_ttl_s()  # uploads and outputs in Gradio's cache are deleted after this
    with gr.Blocks(title="Deepfake Forensics Studio", delete_cache=(ttl, ttl)) as demo:
        gr.Markdown(INTRO)
        if not list(catalog.available_detectors()):
            gr.Markdown("> No trained detector is bundled yet: type a model folder or a Hub id into the detector box.")
        with gr.Tab("Image"):
            im = image.ImageTab()
        with gr.Tab("Video"):
            vi = video.VideoTab()
        with gr.Tab("Compare detectors"):
            compare.CompareTab()
        with gr.Tab("Float vs int8"):
            int8.Int8Tab(demo)
        with gr.Tab("Train"):
            train.build([im.detector, vi.detector])
        with gr.Tab("About"):
            about.build()
        for tab in (im, vi):
            tab.narrow_on_load(demo)
    return demo
