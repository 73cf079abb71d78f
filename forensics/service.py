"""What the app (and any other front end) calls: cached models, one call per analysis, results as
plain data the UI can show. No UI code here, and no model code in the UI."""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from forensics.analysis import AnalysisResult, Analyzer, FaceResult
from forensics.catalog import EXTRA_METHODS, METHOD_TITLES, METHODS, default_detector

ALL_METHODS = METHODS + EXTRA_METHODS
from forensics.detectors import Detector, load_detector
from forensics.errors import ForensicsError
from forensics.explain import ExplainOptions
from forensics.explain.faithfulness import FaithfulnessOptions
from forensics.overlay import downscale, overlay, paste_overlay
from forensics.plots import timeline_figure  # noqa: F401  (re-exported for the UI)

MAX_FACES_SHOWN = 8
MAX_FRAMES_SHOWN = 8
DISPLAY_SIZE = 256  # overlays are shown at least this large, whatever the detector's input size


@lru_cache(maxsize=1)
def face_detector():
    from forensics.faces import FaceDetector

    return FaceDetector()


def get_detector(detector: str | None) -> Detector:
    """The named (or default) detector, loaded once per process and then shared."""
    name = (detector or "").strip() or default_detector()
    if not name:
        raise ForensicsError("no trained detector is bundled yet: enter a model folder or a Hub id")
    return load_detector(name)  # cached, and locked, by the registry


@dataclass
class Session:
    """What the UI keeps between events: the analysis and how its maps were made."""

    result: AnalysisResult
    detector: str
    target: str = "fake"
    options: ExplainOptions = field(default_factory=ExplainOptions)
    methods: list[str] = field(default_factory=lambda: list(ALL_METHODS))
    score_maps: bool = False


def _analyzer(det: Detector, methods: Sequence[str], target: str, options: ExplainOptions, frames: int,
              score_maps: bool = False) -> Analyzer:
    return Analyzer(det, face_detector(), methods=list(methods), target=target or "fake", options=options,
                    frames=int(frames), faithfulness=FaithfulnessOptions() if score_maps else None)


def analyze(path: str | Path | None, detector: str | None = None, methods: Sequence[str] = ALL_METHODS,
            frames: int = 16, target: str = "fake", head_fusion: str = "mean", discard_ratio: float = 0.9,
            progress=None, score_maps: bool = False) -> Session:
    """Analyse one uploaded file; a bad input raises ``ForensicsError`` with a one-line message.
    ``score_maps``: each face's maps get deletion/insertion scores against a random map."""
    if not path:
        raise ForensicsError("no file was uploaded")
    name = (detector or "").strip() or default_detector() or ""
    det = get_detector(name)
    options = _options(head_fusion, discard_ratio)
    analyzer = _analyzer(det, methods, target, options, frames, bool(score_maps))
    result = analyzer.analyze(path, name=Path(path).name, progress=progress)
    if result.error:
        raise ForensicsError(result.error)
    return Session(result, name, target or "fake", options, list(methods), bool(score_maps))


def reexplain(session: Session, target: str, head_fusion: str, discard_ratio: float, progress=None) -> Session:
    """New maps for the same faces with other settings: no decoding, detection or classification."""
    det = get_detector(session.detector)
    options = _options(head_fusion, discard_ratio)
    _analyzer(det, session.methods, target, options, 1, session.score_maps).explain_faces(session.result, progress)
    return Session(session.result, session.detector, target, options, session.methods, session.score_maps)


def _options(head_fusion: str, discard_ratio: float) -> ExplainOptions:
    try:
        return ExplainOptions(head_fusion=head_fusion or "mean", discard_ratio=float(discard_ratio))
    except ValueError as exc:
        raise ForensicsError(str(exc)) from None


# -- what the UI shows ----------------------------------------------------------------------------


def verdict(result: AnalysisResult) -> dict[str, float]:
    """Confidences for a label component: P(fake) and P(real) of the whole input."""
    if result.fake_probability is None:
        return {}
    p = float(result.fake_probability)
    return {"fake": p, "real": 1.0 - p}


def summary(result: AnalysisResult) -> str:
    if result.fake_probability is None:
        return "No verdict: " + "; ".join(result.notes)
    faces = sum(not f.fallback for f in result.faces)
    text = (f"**{result.label.upper()}**: P(fake) = {result.fake_probability:.3f} "
            f"(threshold {result.threshold:.2f}), {faces} face(s), detector `{result.detector}`.  \n"
            f"How: {result.aggregation}.")
    if result.notes:
        text += "  \n" + " ".join(result.notes)
    return text


def ranked_faces(result: AnalysisResult) -> list[int]:
    """Face indices, most suspicious first."""
    return sorted(range(len(result.faces)), key=lambda i: -result.faces[i].fake_probability)


def face_label(face: FaceResult, number: int) -> str:
    where = f"frame {face.frame}" + (f" ({face.timestamp:.2f}s)" if face.timestamp is not None else "")
    who = f", person {face.track}" if face.track is not None else ""
    what = " (whole image: no face found)" if face.fallback else ""
    return f"Face {number}: {where}{who}, P(fake) {face.fake_probability:.3f}{what}"


def face_choices(result: AnalysisResult) -> list[tuple[str, int]]:
    """(label, index) pairs for a face picker, most suspicious first."""
    return [(face_label(result.faces[i], n + 1), i) for n, i in enumerate(ranked_faces(result))]


def face_panel(result: AnalysisResult, index: int | None, alpha: float = 0.5) -> list[tuple[np.ndarray | None, str]]:
    """The selected face's explanations side by side: (overlay, caption) for each of the four
    methods and the patch-score map; one the detector cannot give comes back as (None, reason)."""
    if index is None or not result.faces:
        return [(None, METHOD_TITLES[m]) for m in ALL_METHODS]
    face = result.faces[int(index)]
    skipped = result.explanations.get("skipped", {})
    panel = []
    for method in ALL_METHODS:
        title = METHOD_TITLES[method]
        if method in face.heatmaps:
            why = f" ('{face.explained_class}')" if face.explained_class else ""
            crop = _enlarge(face.crop, DISPLAY_SIZE)
            caption = f"{title}{why}" + map_score_caption(face, method)
            panel.append((overlay(crop, face.heatmaps[method], alpha=float(alpha)), caption))
        elif method in skipped:
            panel.append((None, f"{title}: not available ({skipped[method]})"))
        else:
            panel.append((None, f"{title}: not computed"))
    return panel


def map_score_caption(face: FaceResult, method: str) -> str:
    """`` ★ most faithful · vs random: del -0.26 ✓, ins +0.06 ✓`` when the maps were scored: the map's
    deletion and insertion AUC minus the random map's (lower deletion and higher insertion than
    random earn a ✓); the star marks the most faithful map. Short, so it fits above a map."""
    scores = face.faithfulness.get(method)
    if not scores:
        return ""
    deletion = scores["deletion"] - scores["random_deletion"]
    insertion = scores["insertion"] - scores["random_insertion"]
    star = " ★ most faithful" if face.most_faithful == method else ""
    return (f"{star} · vs random: del {deletion:+.2f} {'✓' if deletion < 0 else '✗'}, "
            f"ins {insertion:+.2f} {'✓' if insertion > 0 else '✗'}")


def annotated(result: AnalysisResult, frame: int | None = None) -> np.ndarray | None:
    """The image (or one sampled video frame, by default the most suspicious) with every face boxed
    and scored; red at or above the threshold, green below."""
    if not result.frames:
        return None
    if frame is None:
        top = max(result.faces, key=lambda f: f.fake_probability, default=None)
        frame = top.frame if top is not None else None
    position = _frame_position(result, frame)
    canvas = np.ascontiguousarray(result.frames[position]).copy()
    thickness = max(2, round(max(canvas.shape[:2]) / 400))
    for face in result.faces:
        if face.fallback or (result.kind == "video" and face.frame != frame):
            continue
        _draw_box(canvas, face, result.threshold or 0.5, thickness)
    return canvas


def _frame_position(result: AnalysisResult, frame: int | None) -> int:
    indices = result.media.get("sampled_indices") or [0]
    return indices.index(frame) if frame in indices else 0


def _draw_box(canvas: np.ndarray, face: FaceResult, threshold: float, thickness: int) -> None:
    x0, y0, x1, y1 = (int(round(v)) for v in face.box)
    colour = (220, 40, 40) if face.fake_probability >= threshold else (40, 180, 60)
    cv2.rectangle(canvas, (x0, y0), (x1, y1), colour, thickness)
    text = f"{face.fake_probability:.2f}" + (f" #{face.track}" if face.track is not None else "")
    scale = thickness * 0.45
    (w, h), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    cv2.rectangle(canvas, (x0, max(0, y0 - h - 8)), (x0 + w + 6, y0), colour, -1)
    cv2.putText(canvas, text, (x0 + 3, max(h, y0 - 5)), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thickness)


def suspicious_frame_order(result: AnalysisResult) -> list[int]:
    """Sampled frame indices, most suspicious first (a frame's score: its worst face), capped."""
    best: dict[int, float] = {}
    for face in result.faces:
        best[face.frame] = max(best.get(face.frame, 0.0), face.fake_probability)
    return sorted(best, key=lambda f: -best[f])[:MAX_FRAMES_SHOWN]


def suspicious_frames(result: AnalysisResult, method: str = "gradcam", alpha: float = 0.5) -> list[tuple[np.ndarray, str]]:
    """The most suspicious sampled frames, each with its faces' maps pasted in and boxes drawn."""
    items = []
    for frame in suspicious_frame_order(result):
        faces = [f for f in result.faces if f.frame == frame]
        canvas = np.ascontiguousarray(result.frames[_frame_position(result, frame)]).copy()
        for face in faces:
            if method in face.heatmaps:
                canvas = paste_overlay(canvas, face.heatmaps[method], face.crop_box, alpha=alpha)
        thickness = max(2, round(max(canvas.shape[:2]) / 400))
        for face in faces:
            if not face.fallback:
                _draw_box(canvas, face, result.threshold or 0.5, thickness)
        stamp = faces[0].timestamp
        when = f" ({stamp:.2f}s)" if stamp is not None else ""
        worst = max(f.fake_probability for f in faces)
        items.append((downscale(canvas, 960), f"frame {frame}{when}: max P(fake) {worst:.3f}"))
    return items


def most_suspicious_face_in_frame(result: AnalysisResult, frame: int) -> int | None:
    candidates = [i for i, f in enumerate(result.faces) if f.frame == frame]
    return max(candidates, key=lambda i: result.faces[i].fake_probability, default=None)


def face_table(result: AnalysisResult) -> list[list]:
    """Rows of (face number, frame, time, person, P(fake), face confidence), most suspicious first."""
    rows = []
    for n, i in enumerate(ranked_faces(result)):
        f = result.faces[i]
        rows.append([n + 1, f.frame, f.timestamp, f.track, round(f.fake_probability, 4), f.face_confidence])
    return rows


def write_reports(session: Session, folder: str | Path | None = None) -> tuple[str, str]:
    """The analysis as a JSON file and a self-contained HTML report; returns their paths."""
    from forensics.report import detector_extra, write_report_html, write_report_json

    result = session.result
    folder = Path(folder or tempfile.mkdtemp(prefix="forensics-report-"))
    stem = re.sub(r"[^\w.-]+", "_", Path(result.input).stem)[:60] or "analysis"
    extra = detector_extra(get_detector(session.detector))
    json_path = write_report_json(result, folder / f"{stem}-report.json", extra)
    html_path = write_report_html(result, folder / f"{stem}-report.html", extra)
    return str(json_path), str(html_path)


def _enlarge(rgb: np.ndarray, min_side: int) -> np.ndarray:
    h, w = rgb.shape[:2]
    if min(h, w) >= min_side:
        return rgb
    scale = min_side / min(h, w)
    return cv2.resize(rgb, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_CUBIC)
