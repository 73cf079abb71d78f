"""Deepfake Forensics Studio: the Gradio app (`python app.py`; the Space's entry point).

This file only wires components to ``forensics.service``; it holds no model code. Every analysis
is an API endpoint (``analyze_image``, ``analyze_video``) callable with the media alone.
"""

from __future__ import annotations

import argparse
import importlib
import os
import threading
from pathlib import Path

import gradio as gr

from forensics import access, catalog, jobs_ui
from forensics import detector_notes, held, int8_ui
from forensics import settings as deployment
from forensics.catalog import EXTRA_METHODS, METHOD_TITLES, METHODS
from forensics.core import ForensicsError
from forensics.media import IMAGE_EXTENSIONS
from forensics.overlay import colour_scale


class _Lazy:
    """``forensics.service`` pulls in torch, timm and the models: import it on first use (or in the
    warm-up thread), so the page is served within seconds of start."""

    def __getattr__(self, name):
        return getattr(importlib.import_module("forensics.service"), name)


service = _Lazy()

INTRO = """# Deepfake Forensics Studio
Upload an image or a video: faces are found with MTCNN, the chosen detector gives each face's
probability of being manipulated, and the overlays show where the model looked. **A probability is
evidence, not proof.**"""

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

Attention maps need a transformer; for CNN detectors only Grad-CAM and Grad-CAM++ are shown.

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
misses. Animated GIF and WebP files are analysed as short videos.

## Limits
A detector only knows the manipulations it was trained on; new generators, heavy compression,
resizing, filters and unusual faces all move its scores. A high score is a reason to look closer,
never proof; a low score is not proof of authenticity. Keep the report's SHA-256 with the file.

## Detectors
"""


def _fail(exc: Exception):
    raise gr.Error(str(exc), print_exception=False) from None


def _progress(progress: gr.Progress):
    return lambda fraction, text: progress(fraction, desc=text)


def _maps(session, face: int | None, alpha: float):
    panel = service.face_panel(session.result, face, alpha)
    shown = [gr.Image(value=image, label=caption) for image, caption in panel[: len(METHODS)]]
    # The patch-score map exists only for patch-level detectors: its slot shows only then.
    return shown + [gr.Image(value=image, label=caption, visible=image is not None)
                    for image, caption in panel[len(METHODS):]]


def _outputs(session, alpha: float, with_annotated: bool = True) -> list:
    result = session.result
    if result.label == "no_face":
        gr.Warning("No face found: no verdict." + (" The whole-image score you asked for is outside what the "
                   "detector was trained for." if result.faces else ""))
    choices = service.face_choices(result)
    first = service.first_face(result)
    head = [service.verdict(result), service.summary(result)]
    if with_annotated:
        head.append(service.annotated(result))
    # The reports slot stays empty here: they are written after the answer is on screen (_then_reports).
    return [*head, gr.Dropdown(choices=choices, value=first), *_maps(session, first, alpha), None, session]


def _then_reports(outputs: list):
    """Stream an answer: first everything the analyst reads, then the same outputs with the JSON
    and HTML reports, whose images and encoding would otherwise hold the answer back. The second
    update is complete (not "skip" for what did not change) because an API client's ``predict``
    returns only the last update."""
    yield outputs
    session = outputs[-1]
    reports = list(service.write_reports(session))
    service.hold(session)  # the answer and its reports are made: free the frames, keep within the memory budget
    yield [*outputs[:-2], reports, session]


def analyze_image(image, pasted=None, detector=None, methods=list(METHODS + EXTRA_METHODS), target="fake",
                  head_fusion="mean", discard_ratio=0.9, alpha=0.5, whole_image=False, score_maps=False,
                  progress=gr.Progress()):
    try:
        session = service.analyze(image or pasted, detector, methods, 16, target, head_fusion, discard_ratio,
                                  _progress(progress), whole_image=whole_image, score_maps=bool(score_maps))
    except ForensicsError as exc:
        _fail(exc)
    yield from _then_reports(_outputs(session, alpha))


def analyze_video(video, detector=None, methods=list(METHODS + EXTRA_METHODS), frames=16, target="fake",
                  head_fusion="mean", discard_ratio=0.9, alpha=0.5, whole_image=False, score_maps=False,
                  progress=gr.Progress()):
    try:
        session = service.analyze(video, detector, methods, frames, target, head_fusion, discard_ratio,
                                  _progress(progress), whole_image=whole_image, score_maps=bool(score_maps))
    except ForensicsError as exc:
        _fail(exc)
    result = session.result
    outputs = _outputs(session, alpha, with_annotated=False)
    extras = [service.timeline_figure(result), service.suspicious_frames(result, alpha=alpha), service.face_table(result)]
    yield from _then_reports(outputs[:2] + extras + outputs[2:])


def update_maps(session, face, target, head_fusion, discard_ratio, alpha, progress=gr.Progress()):
    """New explanation settings: recompute the maps only (no decoding, detection or scoring)."""
    if session is None:
        raise gr.Error("analyse something first", print_exception=False)
    try:
        session = service.reexplain(session, target, head_fusion, discard_ratio, _progress(progress))
    except ForensicsError as exc:
        _fail(exc)
    return [*_maps(session, face, alpha), session]


def show_face(session, face, alpha):
    if session is None:
        return [gr.Image(value=None) for _ in METHODS + EXTRA_METHODS]
    return _maps(session, face, alpha)


def pick_frame(session, evt: gr.SelectData):
    """A click on a frame of the gallery selects that frame's most suspicious face."""
    frame = service.suspicious_frame_order(session.result)[evt.index]
    return service.most_suspicious_face_in_frame(session.result, frame)


def pick_row(session, evt: gr.SelectData):
    """A click on a row of the face table selects that face."""
    return service.ranked_faces(session.result)[evt.index[0]]


COMPARE_HEADERS = ["face / person", "detector", "P(fake)", "threshold", "call", "agreement"]


def compare_detectors(media, detectors=None, methods=("gradcam",), frames=16, alpha=0.5, progress=gr.Progress()):
    """Several detectors on one image or video: a row per face (per person in a video) per detector,
    their agreement, a chart, and the maps of the most suspicious face from each detector."""
    chosen = [detectors] if isinstance(detectors, str) else list(detectors or [])
    try:
        comparison = service.compare(media, chosen, list(methods or []), int(frames), _progress(progress))
    except ForensicsError as exc:
        _fail(exc)
    from forensics import compare as comparing

    units = comparing.units(comparison)
    ranked = sorted(comparing.rows(comparison), key=lambda r: -r.fake_probability)
    first = ranked[0].unit if ranked else None
    return [comparing.summary(comparison), comparing.table(comparison), service.comparison_figure(comparison),
            gr.Dropdown(choices=units, value=first), service.compare_maps(comparison, first, alpha), comparison]


def show_compared_face(comparison, unit, alpha=0.5):
    return [] if comparison is None else service.compare_maps(comparison, unit, alpha)


def _compare_tab() -> dict:
    """Detectors side by side on one file: what a presenter shows stakeholders."""
    from forensics.detector_notes import offered_detectors
    from forensics.media import VIDEO_EXTENSIONS

    c = {}
    gr.Markdown("Run several detectors on one image or video. Faces are found once and numbered the same for "
                "every detector (people, in a video); each detector is judged at its own threshold.")
    with gr.Row():
        with gr.Column(scale=2):
            c["media"] = gr.File(label="Image or video", type="filepath",
                                 file_types=sorted(IMAGE_EXTENSIONS | VIDEO_EXTENSIONS))
            offered = offered_detectors()
            c["detectors"] = gr.Dropdown(offered, value=[v for _, v in offered[:2]], multiselect=True,
                                         allow_custom_value=True,
                                         label="Detectors (names, :onnx/:int8 builds, model folders or Hub ids)")
            c["methods"] = gr.CheckboxGroup(list(METHODS), value=["gradcam"], label="Maps of each detector")
            c["frames"] = gr.Slider(1, 64, value=16, step=1, label="Frames sampled (videos, animations)")
            c["alpha"] = gr.Slider(0.0, 1.0, value=0.5, step=0.05, label="Overlay opacity")
            c["run"] = gr.Button("Compare detectors", variant="primary")
        with gr.Column(scale=3):
            c["summary"] = gr.Markdown()
            c["table"] = gr.Dataframe(headers=COMPARE_HEADERS, label="P(fake) per face per detector",
                                      interactive=False, max_height=320)
            c["chart"] = gr.Plot(label="P(fake) per detector")
            c["unit"] = gr.Dropdown(label="Maps of", choices=[], interactive=True)
            c["maps"] = gr.Gallery(label="Maps of the selected face, detector by detector (click to enlarge)",
                                   columns=4, height="auto", object_fit="contain")
    c["state"] = gr.State(time_to_live=3600)
    return c


def _detector_line(name: str | None) -> str:
    """What a detector catches and misses, in one line under its box (from its measurements)."""
    return f"<small>{detector_notes.detector_note(name).line}</small>" if name else ""


def on_detector_change(name):
    """A new detector: the classes its maps can explain, the methods it supports, its one line.
    In public mode an unregistered name or path reads nothing from disk (it is treated as unknown)."""
    name = deployment.visible_detector(name)
    supported = detector_notes.supported_methods(name)
    return (gr.Dropdown(choices=catalog.target_choices(name)), gr.CheckboxGroup(choices=supported, value=supported),
            _detector_line(name))


def _example_picker(examples: list[str]):
    """A select handler that puts the clicked example's file into the upload box."""
    def pick(evt: gr.SelectData) -> str:
        return examples[evt.index]
    return pick


def _media_tab(kind: str):
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
            c["note"] = gr.Markdown(_detector_line(catalog.default_detector()))
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


def _train_tab(detector_boxes: list) -> None:
    """Background jobs and Hub pushes (behind the admin credential); wired to ``forensics.jobs_ui``."""
    gr.Markdown(jobs_ui.INTRO + "\n\n" + jobs_ui.admin_note())
    admin = access.admin_configured()  # off: the forms are hidden and the job list is read only
    with gr.Row():
        with gr.Column(scale=2, visible=admin):
            kind = gr.Radio(jobs_ui.KIND_CHOICES, value="train", label="Job")
            base = gr.Dropdown(jobs_ui.detector_names(), value=None, allow_custom_value=True,
                               label="Base detector (fine-tune: start from; distil: teacher; evaluate: measured)")
            model = gr.Dropdown(list(jobs_ui.MODEL_CHOICES), value="hybrid", label="Architecture (train, distil)")
            data = gr.Textbox(label="Dataset on the server (ImageFolder folder with real/ and fake/, or labels.csv; "
                                    "federated: its YAML config)")
            data_zip = gr.File(label="...or upload a zip of an ImageFolder tree", file_types=[".zip"], type="filepath")
            with gr.Row():
                epochs = gr.Number(4, label="Epochs", precision=0, minimum=1)
                lr = gr.Number(3e-4, label="Learning rate")
                batch = gr.Number(16, label="Batch size", precision=0, minimum=1)
                size = gr.Number(224, label="Image size", precision=0, minimum=16)
            with gr.Row():
                sbi = gr.Checkbox(True, label="Self-blended pseudo-fakes")
                labels = gr.Radio(jobs_ui.LABEL_ORDER_CHOICES, value="real fake", label="Label order")
            with gr.Accordion("More", open=False):
                max_steps = gr.Number(None, label="Stop after this many steps (empty: all)", precision=0)
                mu = gr.Number(0.01, label="FedProx mu (federated; 0 is FedAvg)", minimum=0)
                name = gr.Textbox(label="Name of the model it makes (default job<id>-<architecture>)")
            token = gr.Textbox(label="Admin token", type="password")
            submit = gr.Button("Start job", variant="primary")
            message = gr.Markdown()
            with gr.Accordion("Push a model to the Hugging Face Hub", open=False):
                push_from = gr.Dropdown(jobs_ui.detector_names(), allow_custom_value=True,
                                        label="Model (a detector name or a model folder)")
                repo = gr.Textbox(label="Hub repo (user-or-org/name)")
                private = gr.Checkbox(True, label="Private repo")
                push = gr.Button("Push to the Hub")
                pushed = gr.Markdown()
        with gr.Column(scale=3):
            table = gr.Dataframe(headers=jobs_ui.TABLE_HEADERS, label="Jobs (click a row)", interactive=False,
                                 max_height=260)
            with gr.Row(equal_height=True, visible=admin):
                job = gr.Number(None, label="Job", precision=0, min_width=80)
                show, cancel, resume, delete = (gr.Button(text, min_width=80) for text in
                                                ("Show", "Cancel", "Resume", "Delete"))
            status = gr.Markdown()
            curves = gr.Plot(label="Loss and validation metrics")
            log = gr.Textbox(label="Log", lines=12, max_lines=12, autoscroll=True, interactive=False)
            card = gr.Markdown()
    seen = gr.State({})
    settings = [kind, base, model, data, data_zip, epochs, lr, batch, size, sbi, labels, max_steps, name, token, mu]
    submit.click(jobs_ui.submit_job, settings, [message, job, table], api_name="submit_job")
    show.click(jobs_ui.show_job, [job, token], [status, curves, log, card], api_name="show_job")
    cancel.click(jobs_ui.cancel_job, [job, token], [message, table], api_name="cancel_job")
    resume.click(jobs_ui.resume_job, [job, token], [message, table], api_name="resume_job")
    delete.click(jobs_ui.delete_job, [job, token], [message, job, table], api_name="delete_job")
    push.click(jobs_ui.push_model, [push_from, repo, private, token], [pushed], api_name="push_model")
    gr.api(jobs_ui.list_jobs, api_name="list_jobs")
    table.select(jobs_ui.pick_job, [table], [job], api_visibility="private")
    gr.Timer(2.0).tick(jobs_ui.refresh, [job, token, seen],
                       [table, status, curves, log, card, *detector_boxes, base, push_from, seen],
                       api_visibility="private", concurrency_limit=None, show_progress="hidden")


def build_demo() -> gr.Blocks:
    ttl = deployment.temp_file_ttl_s()  # uploads and outputs in Gradio's cache are deleted after this
    with gr.Blocks(title="Deepfake Forensics Studio", delete_cache=(ttl, ttl)) as demo:
        gr.Markdown(INTRO)
        if not list(catalog.available_detectors()):
            gr.Markdown("> No trained detector is bundled yet: type a model folder or a Hub id into the detector box.")
        with gr.Tab("Image"):
            im = _media_tab("image")
        with gr.Tab("Video"):
            vi = _media_tab("video")
        with gr.Tab("Compare detectors"):
            cd = _compare_tab()
        with gr.Tab("Float vs int8"):
            q8 = int8_ui.build_tab()
        with gr.Tab("Train"):
            _train_tab([im["detector"], vi["detector"]])
        with gr.Tab("About"):
            gr.Markdown(ABOUT)
            cards = catalog.detector_cards()
            if not cards:
                gr.Markdown(catalog.about_detectors())
            for name, card in cards:  # one accordion per model card, closed: the page stays short
                with gr.Accordion(f"{name}: {detector_notes.detector_note(name).short}", open=False):
                    gr.Markdown(card)

        int8_ui.wire(q8, demo)
        settings = ["target", "head_fusion", "discard", "alpha"]
        im["run"].click(analyze_image, [im["media"], im["pasted"], im["detector"], im["methods"],
                                        *[im[k] for k in settings], im["whole_image"], im["score"]],
                        [im["verdict"], im["summary"], im["annotated"], im["face"], *im["maps"], im["reports"],
                         im["state"]], api_name="analyze_image", show_progress_on=[im["verdict"]])
        vi["run"].click(analyze_video, [vi["media"], vi["detector"], vi["methods"], vi["frames"],
                                        *[vi[k] for k in settings], vi["whole_image"], vi["score"]],
                        [vi["verdict"], vi["summary"], vi["timeline"], vi["frames_gallery"], vi["table"], vi["face"],
                         *vi["maps"], vi["reports"], vi["state"]], api_name="analyze_video",
                        show_progress_on=[vi["verdict"]])
        cd["run"].click(compare_detectors, [cd["media"], cd["detectors"], cd["methods"], cd["frames"], cd["alpha"]],
                        [cd["summary"], cd["table"], cd["chart"], cd["unit"], cd["maps"], cd["state"]],
                        api_name="compare_detectors", show_progress_on=[cd["summary"]])
        cd["unit"].change(show_compared_face, [cd["state"], cd["unit"], cd["alpha"]], cd["maps"],
                          api_visibility="private")
        vi["frames_gallery"].select(pick_frame, [vi["state"]], [vi["face"]], api_visibility="private")
        vi["table"].select(pick_row, [vi["state"]], [vi["face"]], api_visibility="private")
        for tab in (im, vi):
            tab["face"].change(show_face, [tab["state"], tab["face"], tab["alpha"]], tab["maps"],
                               api_visibility="private")
            tab["alpha"].release(show_face, [tab["state"], tab["face"], tab["alpha"]], tab["maps"],
                                 api_visibility="private")
            tab["update"].click(update_maps, [tab["state"], tab["face"], *[tab[k] for k in settings]],
                                [*tab["maps"], tab["state"]], api_visibility="private")
            tab["detector"].change(on_detector_change, [tab["detector"]], [tab["target"], tab["methods"], tab["note"]],
                                   api_visibility="private")
    return demo


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve the Deepfake Forensics Studio app")
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
    parser.add_argument("--share", action="store_true", help="ask Gradio for a public share link")
    parser.add_argument("--concurrency", type=int, default=int(os.environ.get("FORENSICS_CONCURRENCY", "2")),
                        help="analyses run at once (memory grows with it; default 2)")
    args = parser.parse_args()
    deployment.serving(args.host, args.share)  # the mode follows where the app listens
    held.limit_malloc_arenas()  # before Gradio's threads: memory that levels off (docs/deployment.md)
    print(deployment.describe(), flush=True)
    demo = build_demo()
    demo.queue(default_concurrency_limit=args.concurrency, max_size=64)
    demo.launch(server_name=args.host, server_port=args.port, share=args.share, show_error=True,
                max_file_size=deployment.max_upload_bytes(),  # larger uploads are refused before they are written
                theme=gr.themes.Soft(), prevent_thread_lock=True, auth=access.admin_login())
    jobs_ui.open_store()  # jobs interrupted by a restart are marked failed; queued ones start
    threading.Thread(target=warm_up, daemon=True).start()
    demo.block_thread()


def warm_up() -> None:
    """Import the model code and load the default detector and MTCNN while the page is already up."""
    try:
        service.face_detector().detect(__import__("numpy").zeros((64, 64, 3), "uint8"))
        if catalog.default_detector():
            service.get_detector(None)
    except Exception as exc:  # a broken bundled model must not stop the server; requests report it
        print(f"warm-up: {exc}")


if __name__ == "__main__":
    main()
