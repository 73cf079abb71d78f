"""Deepfake Forensics Studio: the Gradio app (`python app.py`; the Space's entry point).

This file only wires components to ``forensics.service``; it holds no model code.
"""

from __future__ import annotations

import argparse
import os

import gradio as gr

from forensics import service
from forensics.errors import ForensicsError
from forensics.explain import METHODS
from forensics.media import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS

INTRO = """# Deepfake Forensics Studio
Upload an image or a video: faces are found with MTCNN, the chosen detector gives each face's
probability of being manipulated, and the overlays show where the model looked
(last-layer attention, attention rollout, Grad-CAM, Grad-CAM++). A probability is evidence, not proof."""


def _run(path, detector, methods, frames, progress=gr.Progress()):
    try:
        result = service.analyze_path(path, detector, methods, frames, progress=lambda f, text: progress(f, desc=text))
    except ForensicsError as exc:
        raise gr.Error(str(exc), print_exception=False) from None
    return (service.verdict(result), service.summary(result), service.annotated(result), service.gallery(result),
            result.to_dict())


def analyze_image(image, detector=None, methods=list(METHODS), progress=gr.Progress()):
    return _run(image, detector, methods, 1, progress)


def analyze_video(video, detector=None, methods=list(METHODS), frames=16, progress=gr.Progress()):
    return _run(video, detector, methods, frames, progress)


def _outputs():
    with gr.Column(scale=3):
        verdict = gr.Label(label="Verdict", num_top_classes=2)
        summary = gr.Markdown()
        annotated = gr.Image(label="Faces found (most suspicious frame)", type="numpy", interactive=False)
        maps = gr.Gallery(label="Faces and explanations", columns=5, height="auto")
        details = gr.JSON(label="Result (JSON)", open=False)
    return [verdict, summary, annotated, maps, details]


def build_demo() -> gr.Blocks:
    choices = service.detector_choices()
    with gr.Blocks(title="Deepfake Forensics Studio") as demo:
        gr.Markdown(INTRO)
        if not choices:
            gr.Markdown("> No trained detector is bundled yet: type a model folder or a Hub id in the detector box.")
        with gr.Tab("Image"):
            with gr.Row():
                with gr.Column(scale=2):
                    # A file, not gr.Image: the analysis must see the original bytes (hash, EXIF, format),
                    # and a bad upload must reach our loader for a clear message.
                    image = gr.File(label="Image (JPEG, PNG, WebP, BMP, TIFF)", file_types=sorted(IMAGE_EXTENSIONS), type="filepath")
                    detector = gr.Dropdown(choices, value=service.default_detector(), allow_custom_value=True,
                                           label="Detector (name, model folder or Hub id)")
                    methods = gr.CheckboxGroup(list(METHODS), value=list(METHODS), label="Explanations")
                    run_image = gr.Button("Analyse image", variant="primary")
                image_outputs = _outputs()
            run_image.click(analyze_image, [image, detector, methods], image_outputs, api_name="analyze_image")
        with gr.Tab("Video"):
            with gr.Row():
                with gr.Column(scale=2):
                    video = gr.File(label="Video (MP4, WebM, AVI, MOV)", file_types=sorted(VIDEO_EXTENSIONS), type="filepath")
                    video_detector = gr.Dropdown(choices, value=service.default_detector(), allow_custom_value=True,
                                                 label="Detector (name, model folder or Hub id)")
                    video_methods = gr.CheckboxGroup(list(METHODS), value=list(METHODS), label="Explanations")
                    frames = gr.Slider(1, 64, value=16, step=1, label="Frames sampled")
                    run_video = gr.Button("Analyse video", variant="primary")
                video_outputs = _outputs()
            run_video.click(analyze_video, [video, video_detector, video_methods, frames], video_outputs,
                            api_name="analyze_video")
    return demo


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve the Deepfake Forensics Studio app")
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
    parser.add_argument("--share", action="store_true", help="ask Gradio for a public share link")
    parser.add_argument("--concurrency", type=int, default=2, help="analyses run at once (memory grows with it)")
    args = parser.parse_args()
    demo = build_demo()
    demo.queue(default_concurrency_limit=args.concurrency, max_size=32)
    demo.launch(server_name=args.host, server_port=args.port, share=args.share, show_error=True)


if __name__ == "__main__":
    main()
