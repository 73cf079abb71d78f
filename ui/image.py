"""The Image tab: one photo (or an animated GIF/WebP, analysed as a short video)."""

from __future__ import annotations

import gradio as gr

from forensics.catalog import EXTRA_METHODS, METHODS
from forensics.render.frames import annotated
from ui import media, present


class ImageTab(media.MediaTab):
    kind = "image"

    def __init__(self):
        super().__init__()
        self.run.click(self.analyze_image, [self.media, self.pasted, self.detector, self.methods, *self.settings,
                                            self.whole_image, self.score],
                       [self.verdict, self.summary, self.annotated, self.face, *self.maps, self.reports, self.state],
                       api_name="analyze_image", show_progress_on=[self.verdict])
        # A click on a face in the picture shows that face's maps (in a crowd, quicker than the list).
        self.annotated.select(self.pick_face_at, [self.state], [self.face], api_visibility="private")

    def analyze_image(self, image, pasted=None, detector=None, methods=list(METHODS + EXTRA_METHODS), target="fake",
                      head_fusion="mean", discard_ratio=0.9, alpha=0.5, whole_image=False, score_maps=False,
                      progress=gr.Progress()):
        session = media.analyze(image or pasted, detector, methods, 16, target, head_fusion, discard_ratio, progress,
                                whole_image, score_maps)
        return self.held({**self.answer(session, alpha), self.annotated: annotated(session.result, session.frames)})

    @staticmethod
    def pick_face_at(session, evt: gr.SelectData):
        """The face under the click, else the selection stays."""
        face = None if session is None or not evt.index else present.face_at(session.result, *evt.index[:2])
        return gr.skip() if face is None else face
