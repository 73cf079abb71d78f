"""The Video tab: sampled frames, people tracked across them, a timeline and the most suspicious frames."""

from __future__ import annotations

import gradio as gr

from forensics.catalog import EXTRA_METHODS, METHODS
from forensics.render.figures import timeline_figure
from forensics.render.frames import suspicious_frame_order, suspicious_frames
from ui import media, present


class VideoTab(media.MediaTab):
    kind = "video"

    def __init__(self):
        super().__init__()
        self.run.click(self.analyze_video, [self.media, self.detector, self.methods, self.frames, *self.settings,
                                            self.whole_image, self.score, self.look_again],
                       [self.verdict, self.summary, self.timeline, self.frames_gallery, self.table, self.face,
                        *self.maps, self.reports, self.state],
                       api_name="analyze_video", show_progress_on=[self.verdict])
        self.frames_gallery.select(self.pick_frame, [self.state], [self.face], api_visibility="private")
        self.table.select(self.pick_row, [self.state], [self.face], api_visibility="private")

    def analyze_video(self, video, detector=None, methods=list(METHODS + EXTRA_METHODS), frames=16, target="fake",
                      head_fusion="mean", discard_ratio=0.9, alpha=0.5, whole_image=False, score_maps=False,
                      look_again=True, progress=gr.Progress()):
        session = media.analyze(video, detector, methods, frames, target, head_fusion, discard_ratio, progress,
                                whole_image, score_maps, look_again)
        result = session.result
        return self.held({**self.answer(session, alpha), self.timeline: timeline_figure(result),
                          self.frames_gallery: suspicious_frames(result, session.frames, alpha=alpha),
                          self.table: present.face_table(result)})

    def pick_frame(self, session, evt: gr.SelectData):
        """A click on a frame of the gallery selects that frame's most suspicious face."""
        frame = suspicious_frame_order(session.result)[evt.index]
        return present.most_suspicious_face_in_frame(session.result, frame)

    def pick_row(self, session, evt: gr.SelectData):
        """A click on a row of the face table selects that face."""
        return present.ranked_faces(session.result)[evt.index[0]]
