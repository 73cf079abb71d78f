"""The Compare detectors tab: several detectors on one file, what a presenter shows stakeholders."""

from __future__ import annotations

import gradio as gr
import numpy as np

from forensics import compare as comparing
from forensics import settings as deployment
from forensics.catalog import METHOD_TITLES, METHODS
from forensics.detector_notes import CAUTION_PREFIXES, detector_note, offered_detectors
from forensics.media import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS
from forensics.render.figures import comparison_figure
from forensics.render.frames import enlarge
from ui.common import engine, errors_as_one_line, progress_of, superseding
from ui.present import face_panel

HEADERS = ["face / person", "detector", "P(fake)", "threshold", "call", "agreement"]


def table(comparison: comparing.Comparison) -> list[list]:
    """Rows for a table: unit, detector, P(fake) (to the detector's precision), threshold, call, agreement."""
    return [cells for _, cells in comparing.table(comparison)]


def summary(comparison: comparing.Comparison) -> str:
    """A short Markdown paragraph: how many detectors ran, how far they agree, which could not run."""
    agree = comparing.agreement(comparison)
    lines = []
    if not agree:
        lines.append(f"No face found in {comparison.input}: no detector gives a verdict.")
    else:
        unanimous = sum(a.startswith(("all", "none")) for a in agree.values())
        what = "people" if comparison.kind == "video" else "faces"
        lines.append(f"{len(comparison.done)} detector(s) on {len(agree)} {what}: they agree on {unanimous} of "
                     f"{len(agree)} (each at its own threshold).")
        lines += [f"- **{unit}**: {text}" for unit, text in agree.items()]
    for run in comparison.done:  # what the detector is, then its cautions for this input (a small face, a poor JPEG, a close call)
        cautions = "".join(f" {n}" for n in run.result.notes if n.startswith(CAUTION_PREFIXES))
        # maps asked for that this detector cannot draw: said here, since the maps below just lack them
        skipped = run.result.explanations.skipped if run.result.explanations else {}
        no_maps = "".join(f" No {METHOD_TITLES.get(m, m)} map: {why}." for m, why in skipped.items())
        lines.append(f"- `{run.detector}`: {detector_note(run.detector).line}{cautions}{no_maps}")
    for run in comparison.runs:
        if run.error:
            lines.append(f"- `{run.detector}` could not run: {run.error}")
    return "\n".join(lines)


def compare_maps(comparison, unit: str | None, alpha: float = 0.5) -> list[tuple[np.ndarray, str]]:
    """The selected face's maps from every detector, detector by detector, captioned "detector:
    method"; maps a detector cannot give are left out (its caption row says which)."""
    index = comparing.face_for_unit(comparison, unit)
    if index is None:
        return []
    return [(image, f"{run.detector}: {caption}") for run in comparison.done
            for image, caption in face_panel(run.result, index, alpha) if image is not None]


def _shown_units(comparison: comparing.Comparison | None) -> list[tuple[str, object]]:
    """(unit, face) for each face (each person, in a video: their most suspicious face) whose crop the
    first detector to answer was given."""
    if comparison is None or not comparison.done:
        return []
    first = comparison.done[0]
    return [(unit, face) for unit in comparing.units(comparison)
            if (face := comparing.unit_face(comparison, first, unit)) is not None and face.crop is not None]


def faces_compared(comparison: comparing.Comparison | None) -> list[tuple[np.ndarray, str]]:
    """Who is who: each face compared as the detectors were given it, captioned with the number every
    row, chart and map uses."""
    return [(enlarge(face.crop, 160), unit) for unit, face in _shown_units(comparison)]


class CompareTab:
    """Detectors side by side on one file: what a presenter shows stakeholders."""

    def __init__(self):
        gr.Markdown("Run several detectors on one image or video. Faces are found once and numbered the same for "
                    "every detector (people, in a video); each detector is judged at its own threshold.")
        with gr.Row():
            with gr.Column(scale=2):
                self.media = gr.File(label="Image or video", type="filepath",
                                     file_types=sorted(IMAGE_EXTENSIONS | VIDEO_EXTENSIONS))
                offered = offered_detectors()
                self.detectors = gr.Dropdown(offered + deployment.operator_choices(),  # as the Image and Video tabs
                                             value=[v for _, v in offered[:2]], multiselect=True,
                                             allow_custom_value=True,
                                             label="Detectors" if deployment.is_public() else
                                             "Detectors (names, :onnx/:int8 builds, model folders or Hub ids)")
                self.methods = gr.CheckboxGroup(list(METHODS), value=["gradcam"], label="Maps of each detector")
                self.frames = gr.Slider(1, 64, value=16, step=1, label="Frames sampled (videos, animations)")
                self.alpha = gr.Slider(0.0, 1.0, value=0.5, step=0.05, label="Overlay opacity")
                self.run = gr.Button("Compare detectors", variant="primary")
            with gr.Column(scale=3):
                self.summary = gr.Markdown()
                self.table = gr.Dataframe(headers=HEADERS, label="P(fake) per face per detector", interactive=False,
                                          max_height=320)
                self.chart = gr.Plot(label="P(fake) per detector")
                self.faces = gr.Gallery(label="The faces compared (click one for its maps)", columns=6, height="auto",
                                        allow_preview=False, object_fit="contain", elem_classes=["clear-label", "fit-content"],
                                        elem_id="faces-compared")
                self.unit = gr.Dropdown(label="Maps of", choices=[], interactive=True)
                self.maps = gr.Gallery(label="Maps of the selected face, detector by detector (click to enlarge)",
                                       columns=4, height="auto", object_fit="contain", elem_classes="clear-label")
                # Built on request, for handing on: the table, the agreement, each face's maps from each detector.
                self.make_reports = gr.Button("Build the comparison report (JSON and self-contained HTML)")
                self.reports = gr.File(label="Comparison report", file_count="multiple", interactive=False)
        self.state = gr.State(time_to_live=3600)
        # First the last comparison goes (a failed one changes no output: its table, maps and report stayed)
        self.run.click(self.cleared, None, [self.summary, self.table, self.chart, self.unit, self.maps, self.state,
                                            self.faces, self.reports], api_visibility="private", queue=False).then(
            self.compare_detectors, [self.media, self.detectors, self.methods, self.frames, self.alpha, self.state],
            [self.summary, self.table, self.chart, self.unit, self.maps, self.state],
            api_name="compare_detectors", show_progress_on=[self.summary]
        ).then(self.after_comparison, [self.state], [self.faces, self.reports], api_visibility="private")  # API unchanged
        self.faces.select(self.pick_unit, [self.state], [self.unit], api_visibility="private")
        self.make_reports.click(self.build_reports, [self.state], [self.reports], api_name="compare_reports")
        self.unit.change(self.show_compared_face, [self.state, self.unit, self.alpha], self.maps,
                         api_visibility="private")
        self.alpha.release(self.show_compared_face, [self.state, self.unit, self.alpha], self.maps,
                           api_visibility="private")  # the maps on screen redrawn, as in the Image tab

    def compare_detectors(self, media, detectors=None, methods=("gradcam",), frames=16, alpha=0.5, previous=None,
                          progress=gr.Progress()):
        """Several detectors on one image or video: a row per face (per person in a video) per detector,
        their agreement, a chart, and the maps of the most suspicious face from each detector."""
        chosen = [detectors] if isinstance(detectors, str) else list(detectors or [])
        with superseding(previous, "comparison"), errors_as_one_line():
            comparison = engine.compare(media, chosen, list(methods or []), int(frames), progress_of(progress))
        ranked = sorted(comparing.rows(comparison), key=lambda r: -r.fake_probability)
        first = ranked[0].unit if ranked else None
        return {self.summary: summary(comparison), self.table: table(comparison),
                self.chart: comparison_figure(comparison),
                self.unit: gr.Dropdown(choices=comparing.units(comparison), value=first),
                self.maps: compare_maps(comparison, first, alpha), self.state: comparison}

    def cleared(self) -> dict:
        """Every output of a comparison emptied, the comparison dropped."""
        return {self.summary: "", self.table: None, self.chart: None, self.unit: gr.Dropdown(choices=[], value=None),
                self.maps: None, self.state: None, self.faces: None, self.reports: None}

    def after_comparison(self, comparison) -> dict:
        """The strip of the faces compared; the last comparison's report, if any, taken away."""
        return {self.faces: faces_compared(comparison), self.reports: None}

    @staticmethod
    def build_reports(comparison) -> list[str]:
        """The comparison on screen as JSON and a self-contained HTML page (the API: ``/compare_reports``
        after ``/compare_detectors``)."""
        with errors_as_one_line():
            return list(engine.write_comparison_reports(comparison))

    def show_compared_face(self, comparison, unit, alpha=0.5):
        return {self.maps: [] if comparison is None else compare_maps(comparison, unit, alpha)}

    @staticmethod
    def pick_unit(comparison, evt: gr.SelectData):
        """A click on a face of the strip shows its maps (the list below follows)."""
        units = [unit for unit, _ in _shown_units(comparison)]
        return units[evt.index] if isinstance(evt.index, int) and 0 <= evt.index < len(units) else gr.skip()
