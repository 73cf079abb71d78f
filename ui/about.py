"""The About tab: how to read the maps, their scores and a verdict; the limits; the detectors' cards."""

from __future__ import annotations

import gradio as gr

from pathlib import Path

from forensics import catalog, detector_notes
from forensics.settings import operator_models


def operator_folders() -> dict:
    """The model folders the operator lists (``FORENSICS_MODELS``), by the name the app offers them under:
    their cards are shown beside the bundled ones."""
    bundled = catalog.available_detectors()
    return {e.name: e.source for e in operator_models() if e.shown and e.name not in bundled and Path(e.source).is_dir()}

ABOUT = """## What the explanations show
All four maps of a face come from one forward and one backward pass of the detector, for the
class chosen under *Explanation settings* (by default *fake*: "what made this look manipulated").
Each map is scaled to its own 0..1 range and drawn on the same colour scale (blue low, red high).

- **Last-layer attention**: where the classification token looked in the transformer's last layer
  (for models without one, how much attention each patch received), heads weighted by how much
  they pushed the chosen class. It shows what the model attended to, not proof of what it used.
- **Attention rollout** (Abnar & Zuidema, 2020): attention followed through every layer, with
  residual connections; *head fusion* and *discard ratio* change how heads are combined and how
  many weak links are dropped.
- **Grad-CAM** and **Grad-CAM++**: the regions whose features most raised the chosen class's score
  in the last block. Coarse (one cell per patch), but tied to this very decision.

- **Patch scores** (patch-level detectors, such as `patch`): the detector's own P(fake) for each small
  patch of the face, before the highest are averaged into the face's score: not an explanation drawn
  afterwards, but the score itself, place by place.

Which maps a detector gives depends on what it is. Attention maps need a transformer: the default
(a CNN trunk with a transformer head) gives all four, a plain CNN such as `mobilenetv2` only Grad-CAM
and Grad-CAM++. The ONNX and int8 builds (`:onnx`, `:int8`) have no gradients: they give no Grad-CAM,
their attention maps are the same whichever class is chosen, and a build of a CNN gives only its
patch scores, where it has them. The *Explanations* box offers only what the chosen detector can give.

## How to read the map scores
Tick *Score the maps* and each map's caption says how it does against a random map of the same face
(`del` and `ins`: its score minus the random map's; ✓ where it beats random). **Deletion**: blur the
face's pixels in the map's order, most important first, and follow P(explained class); the area
under that curve is low when the map found what the decision rests on. **Insertion**: start from
the blurred face and restore pixels in the map's order; the area is high when it did. A map that
does no better than the random one explains nothing about this decision, however plausible it
looks. **★ most faithful** marks the map with the largest margin over random (insertion minus
deletion); none is marked when no map beats random. One face's scores are noisy:
`python -m forensics explain-bench` measures each method over hundreds of faces
(docs/explanations.md). A blending detector may read a half-blurred face as blended, so curves can
rise before they fall; that is why the random map, which suffers the same, is the yardstick.
Scoring a face's maps costs about 31 forward passes of that face (batched): 0.25-0.44 s a face on a
quiet 2-core CPU, so it is off unless ticked.

## How a verdict is reached
A face's score is the detector's P(fake) for its crop. An image is as suspicious as its most
suspicious face. In a video, faces are tracked across the sampled frames; each person's score is the
mean over the frames they appear in, and the video's score is the highest person's score (people
seen in fewer than 3 frames are left out unless nobody is seen longer). Faces are numbered from 1 in
reading order (top to bottom, left to right), people in a video from 1; the numbers are drawn on the
boxes and used in every table, dropdown and report. With no face there is **no verdict**: the
detector judges faces. Scoring the whole image instead is an explicit choice (*Explanation
settings*), shown as a score outside what the detector was trained for, never as fake or real.
Beside every verdict: its calibrated probability, to no more decimals than the detector's
calibration error allows, its threshold, and what the detector's measurements say it catches and
misses. A score within its calibration error of the threshold (in a video, its calibration error plus
twice the standard error of the person's mean over the sampled frames) is a **close call**, and the headline
says so: "fake (close call)". A video that is a close call, or in which no face was found, is sampled
again at about twice the frames, up to about four times those asked for (the tickbox under *Frames
sampled*; the server's operator sets how many times: `FORENSICS_LOOK_AGAIN`), until the call is no
longer close. Animated GIF and WebP files are analysed as short videos.

## Limits
A detector only knows the manipulations it was trained on; new generators, heavy compression,
resizing, filters and unusual faces all move its scores. A high score is a reason to look closer,
never proof; a low score is not proof of authenticity. Keep the report's SHA-256 with the file.

## Detectors
"""


def build() -> None:
    gr.Markdown(ABOUT)
    cards = catalog.detector_cards(operator_folders())
    if not cards:
        gr.Markdown("No trained detector is bundled yet. A detector folder's model card (its README.md) is shown "
                    "here: the data it was trained on, how it was validated and its measured metrics.")
    for name, card in cards:  # one accordion per model card, closed: the page stays short
        with gr.Accordion(f"{name}: {detector_notes.detector_note(name).short}", open=False):
            gr.Markdown(card)
