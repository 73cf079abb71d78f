"""The "Float vs int8" tab: a detector's stored audit, the same image through the float and the
int8 model side by side, and an audit on an uploaded zip of labelled images.

The measuring is :mod:`forensics.int8.audit`, the builds :mod:`forensics.int8.quantize`.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import gradio as gr

from forensics import catalog, settings
from forensics.core import ForensicsError
from ui.common import engine, errors_as_one_line, fail, progress_of
from ui.present import face_panel

AUDIT_FACE_LIMIT = 240  # an audit from the browser is kept short; the CLI has no limit
TABLE_HEADERS = ["measure", "PyTorch float", "ONNX float", "ONNX int8"]

INTRO = """A detector deployed to CPUs or phones is an int8 build. Here its float model (PyTorch), its ONNX
float build and its ONNX int8 build are compared on labelled faces: agreement of decisions, how far
the probabilities move, ROC-AUC, size, load time and latency. The int8 build has no gradients, so it
shows attention, rollout and patch maps but no Grad-CAM. Builds are made with
`python -m forensics quantize --detector NAME`; audits with `python -m forensics audit --detector NAME`."""


def _no_paths(text: str) -> str:
    """Text without the server's absolute paths: each one shortened to its last part (a model
    folder's name), which is all a visitor needs and all the server should disclose."""
    return re.sub(r"(?<![\w.])/(?:[^\s/]+/)*([^\s/]+)", r"\1", str(text))


def int8_detectors() -> list[str]:
    """Named detectors that have an int8 build."""
    return [base for base, variant in map(catalog.split_variant, catalog.onnx_builds()) if variant == "int8"]


class Int8Tab:
    """Lays out and wires the tab; its stored audit shows when ``demo`` loads. Handlers answer
    ``{component: update}``."""

    def __init__(self, demo: gr.Blocks):
        gr.Markdown(INTRO)
        choices = int8_detectors()
        with gr.Row():
            first = "default" if "default" in choices else (choices[0] if choices else None)
            self.detector = gr.Dropdown(choices, value=first, label="Detector (those with an int8 build)", scale=2)
            self.refresh = gr.Button("Show its audit", scale=1)
        self.verdict = gr.Markdown()
        self.table = gr.Dataframe(headers=TABLE_HEADERS, label="Side by side", interactive=False, wrap=True)
        with gr.Row():
            self.scatter = gr.Plot(label="P(fake): float vs int8")
            self.latency = gr.Plot(label="Latency per face")
        # Each disagreement is one wide strip (the face, then each model's maps): shown large, one at a time,
        # the thumbnails under it to switch (in a grid, a strip was a thin band in a square tile).
        self.gallery = gr.Gallery(label="Faces where they disagree: the face, the float model's maps, the int8 "
                                        "model's", preview=True, height=300, columns=8, object_fit="contain",
                                  allow_preview=True, visible=False)
        with gr.Accordion("Audit on your own labelled images", open=False):
            self.zip = gr.File(label="Zip of labelled images (real/ and fake/ subfolders, or a labels.csv)",
                               file_types=[".zip"], type="filepath")
            with gr.Row():
                self.min_agreement = gr.Slider(0.8, 1.0, value=0.99, step=0.005, label="Tolerance: agreement at least")
                self.max_auc_delta = gr.Slider(0.0, 0.1, value=0.01, step=0.005, label="Tolerance: |ΔAUC| at most")
            self.run_audit = gr.Button("Run the audit", variant="primary")
            self.files = gr.File(label="audit.json and audit.html", file_count="multiple", interactive=False)
        with gr.Accordion("One image through both models", open=True):
            with gr.Row():
                self.image = gr.File(label="Image", type="filepath", file_types=["image"])
                self.compare = gr.Button("Compare", variant="primary")
            self.comparison = gr.Markdown()
            with gr.Row():
                self.float_maps, self.int8_maps = (gr.Gallery(label=label, columns=3, height=300, object_fit="contain",
                                                               elem_classes="clear-label")
                                                   for label in ("Float model (PyTorch)", "int8 model (ONNX Runtime)"))
        shown = [self.verdict, self.table, self.scatter, self.latency, self.gallery]
        self.refresh.click(self.show_stored_audit, [self.detector], shown, api_visibility="private")
        self.detector.change(self.show_stored_audit, [self.detector], shown, api_visibility="private")
        # Another detector: the previous one's comparison and audit files must not stay on screen beside it.
        self.detector.change(self.clear_comparison, [self.detector],
                             [self.comparison, self.float_maps, self.int8_maps, self.files], api_visibility="private")
        demo.load(self.show_stored_audit, [self.detector], shown, api_visibility="private")
        self.compare.click(self.compare_image, [self.image, self.detector],
                           [self.comparison, self.float_maps, self.int8_maps], api_name="compare_int8")
        self.run_audit.click(self.run_uploaded_audit, [self.zip, self.detector, self.min_agreement,
                                                       self.max_auc_delta], [*shown, self.files], api_name="audit_int8")

    def _empty(self, message: str) -> dict:
        return {self.verdict: message, self.table: gr.Dataframe(value=None), self.scatter: None, self.latency: None,
                self.gallery: gr.Gallery(value=[], visible=False)}

    def _audit_outputs(self, audit: dict, folder: Path | None) -> dict:
        from forensics.int8.audit import figures, measured_on, summary_rows, verdict_line

        rows = summary_rows(audit)
        names = list(audit["models"])
        headers = ["measure", *[TABLE_HEADERS[1 + ["float", "onnx", "int8"].index(n)] for n in names]]
        c = audit["comparison"]
        text = (f"**{verdict_line(audit)}**\n\n"
                f"Faces: {audit['faces']['count']} ({audit['faces']['real']} real, {audit['faces']['fake']} fake), "
                f"{_no_paths(audit['faces']['origin'])}. Float threshold {c['float_threshold']:.3f}; the int8 build's threshold, tuned "
                f"to keep the float operating point: **{c['int8_threshold_stored']:.4f}** (agreement at the float "
                f"threshold instead: {c.get('agreement_at_float_threshold', c['agreement']):.2%}; the best threshold on "
                f"these faces: {c['int8_threshold_tuned']:.4f}, agreement {c['agreement_at_tuned_threshold']:.2%}). Mean |ΔP(fake)| {c['mean_abs_delta']:.4f}, "
                f"max {c['max_abs_delta']:.4f}. Tolerance: agreement ≥ {audit['tolerance']['min_agreement']:.0%}, "
                f"|ΔAUC| ≤ {audit['tolerance']['max_auc_delta']}. Timed with {audit['threads']} thread(s)"
                + (f" on {cpu}" if (cpu := measured_on(audit)) else "")
                + ", every model in the same interleaved rounds.")
        figs = figures(audit)
        gallery = []
        for entry in audit["disagreements"]:
            image = folder / entry["image"] if folder is not None and "image" in entry else None
            if image is not None and image.is_file():
                gallery.append((str(image), f"{entry['name']}: {'fake' if entry['label'] else 'real'}; "
                                            f"float {entry['p_float']:.3f}, int8 {entry['p_int8']:.3f}"))
        if not audit["disagreements"]:
            text += "\n\nThe two models decide every face alike."
        elif gallery:
            text += (f"\n\n**Below: the {len(gallery)} face(s) where they disagree**, each with the float model's maps "
                     "and the int8 model's (the thumbnails under it switch between them).")
        return {self.verdict: text, self.table: gr.Dataframe(value=rows[1:], headers=headers),
                self.scatter: figs["scatter"], self.latency: figs["latency"],
                self.gallery: gr.Gallery(value=gallery, visible=bool(gallery))}

    def show_stored_audit(self, detector: str | None) -> dict:
        """The audit kept with the detector (``audit --bundle``), if any."""
        from forensics.int8.audit import read_audit

        if not detector:
            return self._empty("No detector with an int8 build is available.")
        folder = catalog.available_detectors().get(detector)
        if folder is None:
            return self._empty(f"{detector!r} is not a named detector.")
        audit = read_audit(folder)
        if audit is None:
            return self._empty(f"`{detector}` has no stored audit yet: run one below, or `python -m forensics audit "
                          f"--detector {detector} --bundle`.")
        return self._audit_outputs(audit, folder / "audit")

    def compare_image(self, path, detector, alpha=0.5, progress=gr.Progress()):
        """One image through the float and the int8 model: each face's P(fake), and the maps of the
        most suspicious face from both."""
        if not path:
            fail("no file was uploaded")
        if not detector:
            fail("choose a detector with an int8 build")
        with errors_as_one_line():
            progress(0.1, desc="float model")
            float_session = engine.analyze(path, detector, list(catalog.METHODS + catalog.EXTRA_METHODS), 1)
            progress(0.55, desc="int8 model")
            int8_session = engine.analyze(path, f"{detector}:int8", list(catalog.METHODS + catalog.EXTRA_METHODS), 1)
        a, b = float_session.result, int8_session.result
        if not a.faces and not b.faces:
            return {self.comparison: "**No face found: no verdict** from either model (they judge faces, and there is "
                                     "none here to judge).", self.float_maps: [], self.int8_maps: []}
        lines = ["| face | float P(fake) | int8 P(fake) | Δ | decisions |", "|---|---|---|---|---|"]
        for i, (fa, fb) in enumerate(zip(a.faces, b.faces)):
            same = (fa.fake_probability >= a.threshold) == (fb.fake_probability >= b.threshold)
            lines.append(f"| {i + 1} | {fa.fake_probability:.4f} | {fb.fake_probability:.4f} | "
                         f"{fb.fake_probability - fa.fake_probability:+.4f} | {'agree' if same else '**disagree**'} |")
        lines.append(f"\nThresholds: float {a.threshold:.3f}, int8 {b.threshold:.4f} (tuned to keep the float "
                     "operating point).")
        top = max(range(len(a.faces)), key=lambda i: a.faces[i].fake_probability) if a.faces else None
        galleries = [[(image, caption) for image, caption in (face_panel(result, top, alpha) if top is not None else [])
                      if image is not None] for result in (a, b)]
        return {self.comparison: "\n".join(lines), self.float_maps: galleries[0], self.int8_maps: galleries[1]}

    def run_uploaded_audit(self, upload, detector, min_agreement=0.99, max_auc_delta=0.01, progress=gr.Progress()):
        """An audit on a zip of labelled images (class subfolders such as real/ and fake/, or a
        labels.csv), at most AUDIT_FACE_LIMIT faces."""
        from forensics.jobs.archives import dataset_root, extract_zip
        from forensics.int8.audit import Tolerance, faces_from_files, run_audit
        from forensics.detectors import load_detector

        if not upload:
            fail("upload a zip of labelled images (real/ and fake/ subfolders)")
        if not detector:
            fail("choose a detector with an int8 build")
        zip_name = Path(upload).name
        with tempfile.TemporaryDirectory(prefix="audit-", ignore_cleanup_errors=True) as work:
            try:
                detector = settings.allowed_detector(detector)  # public mode: registered detectors only
                data = dataset_root(extract_zip(upload, Path(work) / "data"))
                det = load_detector(detector)
                faces = faces_from_files(data, det.input_size, limit=AUDIT_FACE_LIMIT,
                                         progress=progress_of(progress), **det.info.crop_options())
                faces.origin = f"from the uploaded zip {zip_name}"  # not the server's temporary folder
                out = engine.output_folder("audit-out-")  # removed after FORENSICS_TEMP_TTL_S, as reports are
                audit = run_audit(detector, faces, Tolerance(float(min_agreement), float(max_auc_delta)), out,
                                  repeats=10, progress=progress_of(progress))
            except ForensicsError as exc:  # the zip's folder inside the server's temporary one is "the zip"
                message = str(exc).replace(str(Path(work) / "data"), f"the zip {zip_name}")
                fail(_no_paths(message) if settings.is_public() else message)
        return {**self._audit_outputs(audit, out), self.files: [str(out / "audit.json"), str(out / "audit.html")]}

    def clear_comparison(self, _detector=None) -> dict:
        """Empty comparison, maps and audit files: what a new detector choice leaves on screen."""
        return {self.comparison: "", self.float_maps: [], self.int8_maps: [], self.files: None}
