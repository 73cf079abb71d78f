"""The Video tab: sampled frames, people tracked across them, a timeline and the most suspicious frames."""

from __future__ import annotations

import gradio as gr

from forensics.catalog import EXTRA_METHODS, METHODS
from forensics.plots import timeline_figure
from forensics.render.frames import suspicious_frame_order, suspicious_frames
from ui import media, present


def analyze_video(video, detector=None, methods=list(METHODS + EXTRA_METHODS), frames=16, target="fake",
                  head_fusion="mean", discard_ratio=0.9, alpha=0.5, whole_image=False, score_maps=False,
                  progress=gr.Progress()):
    session = media.analyze(video, detector, methods, frames, target, head_fusion, discard_ratio, progress,
                            whole_image, score_maps)
    result = session.result
    outputs = media.outputs(session, alpha, with_annotated=False)
    extras = [timeline_figure(result), suspicious_frames(result, alpha=alpha), present.face_table(result)]
    yield from media.then_reports(outputs[:2] + extras + outputs[2:])


def pick_frame(session, evt: gr.SelectData):
    """A click on a frame of the gallery selects that frame's most suspicious face."""
    frame = suspicious_frame_order(session.result)[evt.index]
    return present.most_suspicious_face_in_frame(session.result, frame)


def pick_row(session, evt: gr.SelectData):
    """A click on a row of the face table selects that face."""
    return present.ranked_faces(session.result)[evt.index[0]]


def build() -> dict:
    """Lay out and wire the tab; returns its components."""
    c = media.layout("video")
    c["run"].click(analyze_video, [c["media"], c["detector"], c["methods"], c["frames"],
                                   *[c[k] for k in media.SETTINGS], c["whole_image"], c["score"]],
                   [c["verdict"], c["summary"], c["timeline"], c["frames_gallery"], c["table"], c["face"],
                    *c["maps"], c["reports"], c["state"]], api_name="analyze_video", show_progress_on=[c["verdict"]])
    c["frames_gallery"].select(pick_frame, [c["state"]], [c["face"]], api_visibility="private")
    c["table"].select(pick_row, [c["state"]], [c["face"]], api_visibility="private")
    media.wire_maps(c)
    return c
