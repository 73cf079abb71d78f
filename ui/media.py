"""What the Image and Video tabs share: their layout, the map panel, the events that redraw the maps
(another face, opacity, explanation settings) and the detector choice."""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from forensics import catalog, detector_notes
from forensics import settings as deployment
from forensics.catalog import EXTRA_METHODS, METHOD_TITLES, METHODS
from forensics.media import IMAGE_EXTENSIONS
from forensics.overlay import colour_scale
from ui import present
from ui.common import detector_line, engine, errors_as_one_line, fail, progress_of, superseding


def analyze(path, detector, methods, frames, target, head_fusion, discard_ratio, progress, whole_image, score_maps,
            look_again=True, previous=None):
    """The engine's analysis of one upload, a bad input as a one-line error. ``look_again``: a video
    whose verdict is a close call, or with no face found, is sampled again, each pass at about twice the
    frames, as many times as the operator allows (``FORENSICS_LOOK_AGAIN``, default 2: about 4x the frames). ``previous``: the session's last analysis, marked superseded if this one fails."""
    with superseding(previous, "analysis"), errors_as_one_line():
        return engine.analyze(path, detector, methods, frames, target, head_fusion, discard_ratio,
                              progress_of(progress), whole_image=whole_image, score_maps=bool(score_maps),
                              look_again=deployment.look_again_passes() if look_again else 0)


def _example_picker(examples: list[str]):
    """A select handler that puts the clicked example's file into the upload box."""
    def pick(evt: gr.SelectData) -> str:
        return examples[evt.index]
    return pick


class MediaTab:
    """The layout both tabs share, and the events that redraw the maps; every handler answers
    ``{component: update}``. A subclass adds what its kind of media shows and its analysis endpoint."""

    kind = ""

    def __init__(self):
        with gr.Row():
            with gr.Column(scale=2):
                if self.kind == "image":
                    # A file, not gr.Image: the analysis must see the original bytes (hash, EXIF, format).
                    self.media = gr.File(label="Image (JPEG, PNG, WebP, BMP, TIFF, GIF; animated GIF and WebP: as a short video)",
                                         type="filepath",
                                         file_types=sorted(IMAGE_EXTENSIONS))
                    # One source: its source bar (cut off at the bottom of the box) is hidden by ui.CSS. image_mode
                    # None: the pasted file as the browser sent it (with Gradio's default "RGB" an RGBA screenshot was
                    # re-saved converted before the analysis saw it: its hash was no longer the pasted file's).
                    self.pasted = gr.Image(label="...or paste an image", sources=["clipboard"], type="filepath", height=170,
                                           image_mode=None, elem_classes=["paste-box"], elem_id="paste-box")
                    examples = catalog.example_files("image")
                else:
                    self.media = gr.Video(label="Video (MP4, WebM, AVI, MOV, MKV, M4V)", sources=["upload"],
                                          elem_id="forensics-video")
                    examples = catalog.example_files("video")
                # Public mode: only registered detectors load; any other name gets one "not available".
                self.detector = gr.Dropdown(detector_notes.offered_detectors() + deployment.operator_choices(),
                                            value=catalog.default_detector(), allow_custom_value=True,
                                            label="Detector" if deployment.is_public() else "Detector (name, model folder or Hub id)")
                self.note = gr.Markdown(detector_line(catalog.default_detector()))
                # Every method is a valid choice for the API (which validates against these choices: a patch-level
                # detector's "patches" must get through); the page narrows them to the detector's on load.
                supported = detector_notes.supported_methods(catalog.default_detector())
                self.methods = gr.CheckboxGroup(list(METHODS + EXTRA_METHODS), value=supported,
                                                label="Explanations (only those this detector can give)")
                self.score = gr.Checkbox(False, label="Score the maps (deletion/insertion against a random map; "
                                                   "about 31 extra forward passes a face, batched: see About)")
                if self.kind == "video":
                    self.frames = gr.Slider(1, 64, value=16, step=1, label="Frames sampled")
                    passes = deployment.look_again_passes()
                    self.look_again = gr.Checkbox(
                        passes > 0, interactive=passes > 0,
                        label=f"Close call or no face: sample the video again, at up to about {2 ** passes}x the frames, "
                              "until it has a verdict that is not close" if passes else
                              "Close call or no face: sampling the video again is off on this server")
                with gr.Accordion("Explanation settings", open=False):
                    self.target = gr.Dropdown(catalog.target_choices(catalog.default_detector()), value="fake",
                                              allow_custom_value=True, label="Explain the class")
                    self.head_fusion = gr.Radio(["mean", "max", "min"], value="mean", label="Rollout head fusion")
                    self.discard = gr.Slider(0.0, 0.99, value=0.9, step=0.01, label="Rollout discard ratio")
                    self.alpha = gr.Slider(0.0, 1.0, value=0.5, step=0.05, label="Overlay opacity")
                    self.update = gr.Button("Update maps")
                    self.whole_image = gr.Checkbox(False, label="No face found: score the whole image anyway (outside "
                                                   "what detectors are trained for; a score, never a verdict)")
                self.run = gr.Button(f"Analyse {self.kind}", variant="primary")
                if examples and self.kind == "image":  # thumbnails, not bare file-name chips: a click loads the file
                    self.examples = gr.Gallery([(path, Path(path).name) for path in examples], columns=3, height=200,
                                               allow_preview=False, object_fit="cover",
                                               label="Examples (click one to load it)", elem_classes="clear-label")
                    self.examples.select(_example_picker(examples), None, self.media, api_visibility="private")
                elif examples:
                    gr.Examples(examples, inputs=[self.media], label="Examples")
            with gr.Column(scale=3):
                self.verdict = gr.Label(label="Verdict (the detector's call at its threshold; its probability below)")
                self.summary = gr.Markdown()
                if self.kind == "image":
                    self.annotated = gr.Image(label="Faces found (click a face to show its maps)", type="numpy", interactive=False,
                                              height=480, elem_id="faces-found")
                else:
                    self.timeline = gr.Plot(label="Timeline")
                    self.frames_gallery = gr.Gallery(label="Most suspicious frames (time · the frame's highest P(fake); click one)", columns=4,
                                                     height="auto", elem_classes=["clear-label", "fit-content"])
                    self.table = gr.Dataframe(headers=present.FACE_TABLE_HEADERS,
                                              label="Faces (click a row)", interactive=False, max_height=240)
                self.face = gr.Dropdown(label="Face shown below", choices=[], interactive=True)
                self.maps = []
                methods = METHODS + EXTRA_METHODS
                for row in range(0, len(methods), 2):  # two maps a row: large enough to read; fullscreen on click
                    with gr.Row(equal_height=True):
                        self.maps += [gr.Image(label=METHOD_TITLES[m], type="numpy", interactive=False, min_width=240,
                                               height=340, visible=m in METHODS, buttons=["fullscreen"],
                                               elem_classes=["map-slot"])
                                      for m in methods[row:row + 2]]
                gr.Image(colour_scale(), show_label=False, interactive=False, container=False, height=50,
                         buttons=[])
                # Built on request, not before the answer: the answer is what the analyst waits for.
                self.make_reports = gr.Button("Build the reports (JSON and self-contained HTML)")
                self.reports = gr.File(label="Reports", file_count="multiple", interactive=False)
        self.state = gr.State(time_to_live=3600)  # an analysis holds its frames: free it after an hour
        self.face.change(self.show_face, [self.state, self.face, self.alpha], self.maps, api_visibility="private")
        self.alpha.release(self.show_face, [self.state, self.face, self.alpha], self.maps, api_visibility="private")
        self.update.click(self.update_maps, [self.state, self.face, *self.settings], [*self.maps, self.state],
                          api_visibility="private")
        self.make_reports.click(self.build_reports, [self.state], [self.reports], api_name=f"{self.kind}_reports")
        self.detector.change(self.on_detector_change, [self.detector], [self.target, self.methods, self.note],
                             api_visibility="private")

    def narrow_on_load(self, demo: gr.Blocks) -> None:
        """A page, as it loads, offers only the methods, classes and note of the detector in its box."""
        demo.load(self.on_detector_change, [self.detector], [self.target, self.methods, self.note],
                  api_visibility="private", queue=False)

    @property
    def settings(self) -> list:
        """The explanation settings, in the handlers' order."""
        return [self.target, self.head_fusion, self.discard, self.alpha]

    def show_maps(self, session, face: int | None, alpha: float) -> dict:
        panel = present.face_panel(session.result, face, alpha)
        # The patch-score map exists only for patch-level detectors: its slot shows only then.
        return {slot: gr.Image(value=image, label=caption, visible=n < len(METHODS) or image is not None)
                for n, (slot, (image, caption)) in enumerate(zip(self.maps, panel))}

    def answer(self, session, alpha: float) -> dict:
        """What the analyst reads; the reports slot is emptied (``build_reports`` fills it on request)."""
        result = session.result
        if result.label == "no_face":
            small = bool(result.small_faces)
            gr.Warning("No face found: no verdict." + (" Only faces too small to judge (the small print says how "
                       "small)." if small else "") + (" The whole-image score you asked for is outside what the "
                       "detector was trained for." if result.faces else ""))
        first = present.first_face(result)
        return {self.verdict: present.verdict(result), self.summary: present.summary(result),
                self.face: gr.Dropdown(choices=present.face_choices(result), value=first),
                **self.show_maps(session, first, alpha), self.reports: None, self.state: session}

    def analysis_event(self, handler, inputs: list, outputs: list, api_name: str) -> None:
        """The Analyse button: first the last analysis goes (its verdict, pictures, maps, reports and the
        session a report is built from), then the new one runs. A failed analysis (a bad file) raises
        its one-line error, and Gradio then changes no output: without this step the last file's verdict
        stayed on screen under the new file's name, and "Build the reports" exported it. The API runs the
        handler alone: it is given the session's last analysis too (``previous``, a State: not an API
        parameter), which a failure marks as superseded."""
        self.run.click(self.cleared, None, outputs, api_visibility="private", queue=False).then(
            handler, [*inputs, self.state], outputs, api_name=api_name, show_progress_on=[self.verdict])

    def cleared(self) -> dict:
        """Every output of an analysis emptied, the session dropped."""
        empty = {self.verdict: None, self.summary: "", self.face: gr.Dropdown(choices=[], value=None),
                 self.reports: None, self.state: None, **{slot: None for slot in self.maps}}
        if self.kind == "image":
            return {**empty, self.annotated: None}
        return {**empty, self.timeline: None, self.frames_gallery: None, self.table: None}

    def held(self, answer: dict) -> dict:
        """The answer, once everything in it is drawn: its session keeps only what later events need
        (maps, crops, the frame the report shows), which keeps the server within its memory budget."""
        engine.hold(answer[self.state])
        return answer

    def build_reports(self, session) -> list[str]:
        """The JSON and HTML reports of the analysis on screen, built when asked for: they cost the
        answer nothing (the API: ``/image_reports`` or ``/video_reports`` after an analysis)."""
        if session is None:
            fail("analyse something first")
        with errors_as_one_line():
            return list(engine.write_reports(session))

    def update_maps(self, session, face, target, head_fusion, discard_ratio, alpha, progress=gr.Progress()):
        """New explanation settings: recompute the maps only (no decoding, detection or scoring)."""
        if session is None:
            fail("analyse something first")
        with errors_as_one_line():
            session = engine.reexplain(session, target, head_fusion, discard_ratio, progress_of(progress))
        return {**self.show_maps(session, face, alpha), self.state: session}

    def show_face(self, session, face, alpha):
        if session is None:
            return {slot: gr.Image(value=None) for slot in self.maps}
        return self.show_maps(session, face, alpha)

    def on_detector_change(self, name):
        """A new detector: the classes its maps can explain, the methods it supports, its one line.
        In public mode an unregistered name or path reads nothing from disk (it is treated as unknown)."""
        name = deployment.visible_detector(name)
        supported = detector_notes.supported_methods(name)
        # An ONNX build has no gradients: its attention maps are class-agnostic, and only patch scores follow
        # the class asked for. Where it draws none, the choice is said to change nothing.
        agnostic = bool(name) and catalog.split_variant(str(name))[1] in ("onnx", "int8") and "patches" not in supported
        label = ("Explain the class (no effect with this build: its maps are class-agnostic, without gradients)"
                 if agnostic else "Explain the class")
        return {self.target: gr.Dropdown(choices=catalog.target_choices(name), label=label),
                self.methods: gr.CheckboxGroup(choices=supported, value=supported), self.note: detector_line(name)}
