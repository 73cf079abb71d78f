"""The Video tab: sampled frames, people tracked across them, a timeline and the most suspicious frames."""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from forensics import media as media_files
from forensics import settings as deployment
from forensics.catalog import EXTRA_METHODS, METHODS
from forensics.core import MediaError
from forensics.render.figures import timeline_figure
from forensics.render.frames import suspicious_frame_order, suspicious_frames
from ui import media, present


SEEK_INTO_FRAME_S = 0.004
# Pauses the Video tab's player on a time (seconds); nothing where there is no player or no time.
SEEK_PLAYER_JS = """(t) => {
    const player = document.querySelector("#forensics-video video");
    if (player && t !== null && t !== undefined && t >= 0) { player.pause(); player.currentTime = t; }
    return [];
}"""


# The player's "Video not playable" error for an upload that is about to be shown through a copy is noise: from
# the upload until the copy is made (or found unneeded), the player's error is held back, not shown. Where no copy
# replaced the upload, an error held meanwhile is let through as Gradio would have shown it; later errors (a copy
# the browser cannot play either) are never held. An error before this ran (it runs as the upload event fires)
# shows as before.
HOLD_PLAYER_ERRORS_JS = """() => {
    if (!window.forensicsHoldErrors) {
        window.addEventListener("error", (e) => {
            const player = e.target;
            if (!window.forensicsHolding || e.forensicsLetThrough || !(player instanceof HTMLVideoElement)
                || !player.closest("#forensics-video")) return;
            e.stopImmediatePropagation();
            window.forensicsHeldErrors += 1;
        }, true);
        window.forensicsHoldErrors = true;
    }
    window.forensicsHeldErrors = 0;
    window.forensicsHolding = true;
    return [];
}"""
RELEASE_PLAYER_ERRORS_JS = """(copied) => {
    window.forensicsHolding = false;
    const player = document.querySelector("#forensics-video video");
    if (player && !copied && window.forensicsHeldErrors && player.error) {
        const again = new Event("error");
        again.forensicsLetThrough = true;
        player.dispatchEvent(again);
    }
    return [];
}"""


class VideoTab(media.MediaTab):
    kind = "video"

    def __init__(self):
        super().__init__()
        # A video browsers do not play is shown through a copy that they do; the analysis reads the original.
        self.shown = gr.State(time_to_live=3600)  # {"copy": the copy's path, "original": the upload's}
        self.copied = gr.Checkbox(visible=False)  # whether the player now shows a copy (for the browser's side)
        self.media.upload(None, None, None, js=HOLD_PLAYER_ERRORS_JS, queue=False)
        self.media.upload(self.playable, [self.media], [self.media, self.shown, self.copied], api_visibility="private",
                          show_progress="minimal").then(None, [self.copied], None, js=RELEASE_PLAYER_ERRORS_JS)
        self.analysis_event(self.analyze_video, [self.media, self.detector, self.methods, self.frames, *self.settings,
                                                 self.whole_image, self.score, self.look_again, self.shown],
                            [self.verdict, self.summary, self.timeline, self.frames_gallery, self.table, self.face,
                             *self.maps, self.reports, self.state], api_name="analyze_video")
        # The face shown below (picked from the gallery, the table or the list, or the worst after an analysis):
        # the player above goes to its frame, so that the moment can be watched, not only read.
        self.seek_to = gr.Number(visible=False)
        self.face.change(self.face_time, [self.state, self.face], [self.seek_to], api_visibility="private",
                         show_progress="hidden", queue=False).then(None, [self.seek_to], None, js=SEEK_PLAYER_JS)
        self.frames_gallery.select(self.pick_frame, [self.state], [self.face], api_visibility="private")
        self.table.select(self.pick_row, [self.state], [self.face], api_visibility="private")

    def analyze_video(self, video, detector=None, methods=list(METHODS + EXTRA_METHODS), frames=16, target="fake",
                      head_fusion="mean", discard_ratio=0.9, alpha=0.5, whole_image=False, score_maps=False,
                      look_again=True, shown=None, previous=None, progress=gr.Progress()):
        session = media.analyze(self.original(video, shown), detector, methods, frames, target, head_fusion, discard_ratio, progress,
                                whole_image, score_maps, look_again, previous)
        result = session.result
        return self.held({**self.answer(session, alpha), self.timeline: timeline_figure(result),
                          self.frames_gallery: suspicious_frames(result, session.frames, alpha=alpha),
                          self.table: present.face_table(result)})

    @staticmethod
    def playable(video):
        """An upload that browsers do not play (MPEG-4 Part 2, an AVI, a MOV...) is replaced in the player by
        a copy that they do (the same stream in an MP4 where it can be, else re-encoded to H.264), and the
        original is remembered for the analysis; a note says so. Where no copy can be made, the upload
        stays as it is (the player cannot show it; the analysis is not affected)."""
        if not video:
            return gr.skip(), None, False
        try:
            if media_files.browser_playable(video):
                return gr.skip(), None, False
            copy = media_files.browser_copy(video, limits=deployment.media_limits())
        except MediaError as exc:
            text = str(exc)
            gr.Warning(text if text.endswith(media_files.COPY_REFUSED) else f"{text}; the player cannot show it, the "
                       "analysis reads it as it is.")
            return gr.skip(), None, False
        gr.Info(copy.note, duration=20)
        return str(copy.path), {"copy": str(copy.path), "original": str(video)}, True

    @staticmethod
    def original(video, shown):
        """The file to analyse: the upload itself where the player shows a copy of it."""
        if video and shown and Path(video).resolve() == Path(shown["copy"]).resolve():
            return shown["original"]
        return video

    @staticmethod
    def face_time(session, face) -> float | None:
        """Where the player shows a face: 4 ms into its frame (a seek to the frame's first instant can land on
        the frame before; 4 ms stays inside a frame up to 250 fps, and inside the shortest frame of a
        variable frame rate, where half the average frame would not), or None."""
        if session is None or face is None or not 0 <= int(face) < len(session.result.faces):
            return None
        found = session.result.faces[int(face)]
        return None if found.timestamp is None else round(found.timestamp + SEEK_INTO_FRAME_S, 4)

    def pick_frame(self, session, evt: gr.SelectData):
        """A click on a frame of the gallery selects that frame's most suspicious face."""
        frame = suspicious_frame_order(session.result)[evt.index]
        return present.most_suspicious_face_in_frame(session.result, frame)

    def pick_row(self, session, evt: gr.SelectData):
        """A click on a row of the face table selects that face."""
        return present.ranked_faces(session.result)[evt.index[0]]
