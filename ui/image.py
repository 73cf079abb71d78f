"""The Image tab: one photo (or an animated GIF/WebP, analysed as a short video)."""

from __future__ import annotations

import gradio as gr

from forensics.catalog import EXTRA_METHODS, METHODS
from forensics.render.frames import annotated, shown_frame_position
from ui import media, present


class ImageTab(media.MediaTab):
    kind = "image"

    def __init__(self):
        super().__init__()
        self.analysis_event(self.analyze_image, [self.media, self.pasted, self.detector, self.methods, *self.settings,
                                                 self.whole_image, self.score],
                            [self.verdict, self.summary, self.annotated, self.face, *self.maps, self.reports,
                             self.state], api_name="analyze_image")
        # A click on a face in the picture shows that face's maps (in a crowd, quicker than the list); the
        # face shown is ringed in the picture, however it was picked.
        self.annotated.select(self.pick_face_at, [self.state], [self.face, self.annotated], api_visibility="private")
        self.face.input(self.ring_face, [self.state, self.face], [self.annotated], api_visibility="private")

    def analyze_image(self, image, pasted=None, detector=None, methods=list(METHODS + EXTRA_METHODS), target="fake",
                      head_fusion="mean", discard_ratio=0.9, alpha=0.5, whole_image=False, score_maps=False,
                      previous=None, progress=gr.Progress()):
        session = media.analyze(image or pasted, detector, methods, 16, target, head_fusion, discard_ratio, progress,
                                whole_image, score_maps, previous=previous)
        shown = present.first_face(session.result)  # the face whose maps the answer shows, ringed
        return self.held({**self.answer(session, alpha),
                          self.annotated: annotated(session.result, session.frames, selected=shown)})

    def pick_face_at(self, session, evt: gr.SelectData):
        """The face under the click, ringed; elsewhere the selection stays."""
        face = None if session is None or not evt.index else present.face_at(session.result, *evt.index[:2])
        if face is None:
            return {self.face: gr.skip(), self.annotated: gr.skip()}
        return {self.face: face, self.annotated: self.ring_face(session, face)}

    @staticmethod
    def ring_face(session, face):
        """The picture again, the face now shown ringed (where its frame is still held)."""
        if session is None or face is None:
            return gr.skip()
        frames = session.frames
        position = shown_frame_position(session.result)
        if not frames or position >= len(frames) or frames[position] is None:
            return gr.skip()
        return annotated(session.result, frames, selected=face)
