"""What the Image and Video tabs share: their layout, the map panel, the events that redraw the maps
(another face, opacity, explanation settings) and the detector choice."""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from forensics import catalog, detector_notes
from forensics import settings as deployment
from forensics.catalog import EXTRA_METHODS, METHOD_TITLES, METHODS
from forensics.errors import ForensicsError
from forensics.media import IMAGE_EXTENSIONS
from forensics.overlay import colour_scale
from forensics.render.frames import annotated
from ui import present
from ui.common import detector_line, engine, fail, progress_of

SETTINGS = ["target", "head_fusion", "discard", "alpha"]  # the explanation settings, in handler order


def maps(session, face: int | None, alpha: float) -> list:
    panel = present.face_panel(session.result, face, alpha)
    shown = [gr.Image(value=image, label=caption) for image, caption in panel[: len(METHODS)]]
    # The patch-score map exists only for patch-level detectors: its slot shows only then.
    return shown + [gr.Image(value=image, label=caption, visible=image is not None)
                    for image, caption in panel[len(METHODS):]]


def analyze(path, detector, methods, frames, target, head_fusion, discard_ratio, progress, whole_image, score_maps):
    """The engine's analysis of one upload, a bad input as a one-line error."""
    try:
        return engine.analyze(path, detector, methods, frames, target, head_fusion, discard_ratio,
                              progress_of(progress), whole_image=whole_image, score_maps=bool(score_maps))
    except ForensicsError as exc:
        fail(exc)


def outputs(session, alpha: float, with_annotated: bool = True) -> list:
    result = session.result
    if result.label == "no_face":
        gr.Warning("No face found: no verdict." + (" The whole-image score you asked for is outside what the "
                   "detector was trained for." if result.faces else ""))
    first = present.first_face(result)
    head = [present.verdict(result), present.summary(result)]
    if with_annotated:
        head.append(annotated(result))
    # The reports slot stays empty here: they are written after the answer is on screen (then_reports).
    return [*head, gr.Dropdown(choices=present.face_choices(result), value=first), *maps(session, first, alpha), None,
            session]


def then_reports(answer: list):
    """Stream an answer: first everything the analyst reads, then the same outputs with the JSON
    and HTML reports, whose images and encoding would otherwise hold the answer back. The second
    update is complete (not "skip" for what did not change) because an API client's ``predict``
    returns only the last update."""
    yield answer
    session = answer[-1]
    reports = list(engine.write_reports(session))
    engine.hold(session)  # the answer and its reports are made: free the frames, keep within the memory budget
    yield [*answer[:-2], reports, session]


def update_maps(session, face, target, head_fusion, discard_ratio, alpha, progress=gr.Progress()):
    """New explanation settings: recompute the maps only (no decoding, detection or scoring)."""
    if session is None:
        fail("analyse something first")
    try:
        session = engine.reexplain(session, target, head_fusion, discard_ratio, progress_of(progress))
    except ForensicsError as exc:
        fail(exc)
    return [*maps(session, face, alpha), session]


def show_face(session, face, alpha):
    if session is None:
        return [gr.Image(value=None) for _ in METHODS + EXTRA_METHODS]
    return maps(session, face, alpha)


def on_detector_change(name):
    """A new detector: the classes its maps can explain, the methods it supports, its one line.
    In public mode an unregistered name or path reads nothing from disk (it is treated as unknown)."""
    name = deployment.visible_detector(name)
    supported = detector_notes.supported_methods(name)
    return (gr.Dropdown(choices=catalog.target_choices(name)), gr.CheckboxGroup(choices=supported, value=supported),
            detector_line(name))


def _example_picker(examples: list[str]):
    """A select handler that puts the clicked example's file into the upload box."""
    def pick(evt: gr.SelectData) -> str:
        return examples[evt.index]
    return pick


def layout(kind: str) -> dict:
    """The shared layout of the Image and Video tabs; returns the components to wire."""
    c = {}
    with gr.Row():
        with gr.Column(scale=2):
            if kind == "image":
                # A file, not gr.Image: the analysis must see the original bytes (hash, EXIF, format).
                c["media"] = gr.File(label="Image (JPEG, PNG, WebP, BMP, TIFF, GIF; animated GIF and WebP: as a short video)",
                                     type="filepath",
                                     file_types=sorted(IMAGE_EXTENSIONS))
                c["pasted"] = gr.Image(label="...or paste an image", sources=["clipboard"], type="filepath", height=120)
                examples = catalog.example_files("image")
            else:
                c["media"] = gr.Video(label="Video (MP4, WebM, AVI, MOV)", sources=["upload"])
                examples = catalog.example_files("video")
            # Public mode: only registered detectors load; any other name gets one "not available".
            c["detector"] = gr.Dropdown(detector_notes.offered_detectors() + deployment.operator_choices(),
                                        value=catalog.default_detector(), allow_custom_value=True,
                                        label="Detector" if deployment.is_public() else "Detector (name, model folder or Hub id)")
            c["note"] = gr.Markdown(detector_line(catalog.default_detector()))
            supported = detector_notes.supported_methods(catalog.default_detector())
            c["methods"] = gr.CheckboxGroup(supported, value=supported,
                                            label="Explanations (only those this detector can give)")
            c["score"] = gr.Checkbox(False, label="Score the maps (deletion/insertion against a random map; "
                                               "about 70 extra forward passes a face: see About)")
            if kind == "video":
                c["frames"] = gr.Slider(1, 64, value=16, step=1, label="Frames sampled")
            with gr.Accordion("Explanation settings", open=False):
                c["target"] = gr.Dropdown(catalog.target_choices(catalog.default_detector()), value="fake",
                                          allow_custom_value=True, label="Explain the class")
                c["head_fusion"] = gr.Radio(["mean", "max", "min"], value="mean", label="Rollout head fusion")
                c["discard"] = gr.Slider(0.0, 0.99, value=0.9, step=0.01, label="Rollout discard ratio")
                c["alpha"] = gr.Slider(0.0, 1.0, value=0.5, step=0.05, label="Overlay opacity")
                c["update"] = gr.Button("Update maps")
                c["whole_image"] = gr.Checkbox(False, label="No face found: score the whole image anyway (outside "
                                               "what detectors are trained for; a score, never a verdict)")
            c["run"] = gr.Button(f"Analyse {kind}", variant="primary")
            if examples and kind == "image":  # thumbnails, not bare file-name chips: a click loads the file
                c["examples"] = gr.Gallery([(path, Path(path).name) for path in examples], columns=3, height=200,
                                           allow_preview=False, object_fit="cover",
                                           label="Examples (click one to load it)")
                c["examples"].select(_example_picker(examples), None, c["media"], api_visibility="private")
            elif examples:
                gr.Examples(examples, inputs=[c["media"]], label="Examples")
        with gr.Column(scale=3):
            c["verdict"] = gr.Label(label="Verdict (the detector's call at its threshold; its probability below)")
            c["summary"] = gr.Markdown()
            if kind == "image":
                c["annotated"] = gr.Image(label="Faces found", type="numpy", interactive=False, height=480)
            else:
                c["timeline"] = gr.Plot(label="Timeline")
                c["frames_gallery"] = gr.Gallery(label="Most suspicious frames (click one)", columns=4,
                                                 height="auto")
                c["table"] = gr.Dataframe(headers=["#", "frame", "time (s)", "person", "P(fake)", "face conf."],
                                          label="Faces (click a row)", interactive=False, max_height=240)
            c["face"] = gr.Dropdown(label="Face shown below", choices=[], interactive=True)
            c["maps"] = []
            methods = METHODS + EXTRA_METHODS
            for row in range(0, len(methods), 2):  # two maps a row: large enough to read; fullscreen on click
                with gr.Row(equal_height=True):
                    c["maps"] += [gr.Image(label=METHOD_TITLES[m], type="numpy", interactive=False, min_width=240,
                                           height=340, visible=m in METHODS, buttons=["fullscreen"])
                                  for m in methods[row:row + 2]]
            gr.Image(colour_scale(), show_label=False, interactive=False, container=False, height=50,
                     buttons=[])
            c["reports"] = gr.File(label="Report (JSON and self-contained HTML)", file_count="multiple",
                                   interactive=False)
    c["state"] = gr.State(time_to_live=3600)  # an analysis holds its frames: free it after an hour
    return c


def wire_maps(c: dict) -> None:
    """The events both tabs share: another face, another opacity, new settings, another detector."""
    c["face"].change(show_face, [c["state"], c["face"], c["alpha"]], c["maps"], api_visibility="private")
    c["alpha"].release(show_face, [c["state"], c["face"], c["alpha"]], c["maps"], api_visibility="private")
    c["update"].click(update_maps, [c["state"], c["face"], *[c[k] for k in SETTINGS]], [*c["maps"], c["state"]],
                      api_visibility="private")
    c["detector"].change(on_detector_change, [c["detector"]], [c["target"], c["methods"], c["note"]],
                         api_visibility="private")
