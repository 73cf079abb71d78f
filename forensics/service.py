"""What the app (and any other front end) calls: cached models, one call per analysis, results as
plain data the UI can show. No UI code here, and no model code in the UI."""

from __future__ import annotations

import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from forensics.analysis import AnalysisResult, Analyzer, FaceResult, face_number
from forensics.catalog import (EXTRA_METHODS, METHOD_TITLES, METHODS, available_detectors, default_detector,
                               split_variant)
from forensics.detector_notes import detector_note, format_probability

from forensics import settings
from forensics.detectors import Detector, load_detector
from forensics.core import ForensicsError
from forensics.held import HELD, RELEASED, is_released
from forensics.explain import ExplainOptions
from forensics.explain.faithfulness import FaithfulnessOptions
from forensics.overlay import overlay, paste_overlay
from forensics.plots import comparison_figure, timeline_figure  # noqa: F401  (re-exported for the UI)

ALL_METHODS = METHODS + EXTRA_METHODS

MAX_FACES_SHOWN = 8
MAX_FRAMES_SHOWN = 8
DISPLAY_SIZE = 256  # overlays are shown at least this large, whatever the detector's input size


@lru_cache(maxsize=1)
def face_detector():
    from forensics.faces import FaceDetector

    return FaceDetector()


def get_detector(detector: str | None) -> Detector:
    """The named (or default) detector, loaded once per process and then shared. In public mode
    only a registered name loads (``settings.allowed_detector``)."""
    name = (detector or "").strip() or default_detector()
    if not name:
        raise ForensicsError("no trained detector is bundled yet: enter a model folder or a Hub id")
    return load_detector(settings.allowed_detector(name))  # cached, and locked, by the registry


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
                    frames=int(frames), limits=settings.media_limits(),
                    faithfulness=FaithfulnessOptions() if score_maps else None)


def analyze(path: str | Path | None, detector: str | None = None, methods: Sequence[str] = ALL_METHODS,
            frames: int = 16, target: str = "fake", head_fusion: str = "mean", discard_ratio: float = 0.9,
            progress=None, whole_image: bool = False, score_maps: bool = False) -> Session:
    """Analyse one uploaded file; a bad input raises ``ForensicsError`` with a one-line message.
    ``whole_image``: with no face found, score the whole image anyway (labelled as such, no verdict);
    ``score_maps``: each face's maps get deletion/insertion scores against a random map."""
    if not path:
        raise ForensicsError("no file was uploaded")
    name = (detector or "").strip() or default_detector() or ""
    det = get_detector(name)
    options = _options(head_fusion, discard_ratio)
    analyzer = _analyzer(det, methods, target, options, frames, bool(score_maps))
    analyzer.fallback_whole_image = bool(whole_image)
    result = analyzer.analyze(path, name=Path(path).name, progress=progress)
    if result.error:
        raise ForensicsError(result.error)
    return Session(result, name, target or "fake", options, list(methods), bool(score_maps))


def hold(session: Session) -> Session:
    """Once the answer is drawn: keep only what later events need, within the server's memory
    budget for all sessions (see ``forensics.held``). Returns the session, for the UI's state."""
    HELD.hold(session.result)
    return session


def reexplain(session: Session, target: str, head_fusion: str, discard_ratio: float, progress=None) -> Session:
    """New maps for the same faces with other settings: no decoding, detection or classification."""
    if is_released(session.result):
        raise ForensicsError(f"this analysis was {RELEASED}")
    det = get_detector(session.detector)
    options = _options(head_fusion, discard_ratio)
    _analyzer(det, session.methods, target, options, 1, session.score_maps).explain_faces(session.result, progress)
    HELD.hold(session.result)  # the new maps count against the budget too
    return Session(session.result, session.detector, target, options, session.methods, session.score_maps)


def _options(head_fusion: str, discard_ratio: float) -> ExplainOptions:
    try:
        return ExplainOptions(head_fusion=head_fusion or "mean", discard_ratio=float(discard_ratio))
    except ValueError as exc:
        raise ForensicsError(str(exc)) from None


# -- what the UI shows ----------------------------------------------------------------------------


def verdict(result: AnalysisResult) -> str | None:
    """The headline: the detector's call at its own threshold ("fake" or "real"), or the plain
    words "no face found". Only the call: its probability, at the precision the detector's
    calibration allows, stands in the small print under it (``summary``), never as a big "94%"."""
    if result.label == "no_face":
        return "no face found"
    return result.label


def frames_with_faces(result: AnalysisResult) -> tuple[int, int]:
    """(sampled frames in which a face was found, sampled frames)."""
    sampled = len(result.media.get("sampled_indices") or result.frames or [0])
    return len({f.frame for f in result.faces if not f.fallback}), sampled


def summary(result: AnalysisResult) -> str:
    """The verdict's small print, right under it: the calibrated probability, the threshold, what
    the detector catches and misses (from its card), and how the number was reached."""
    note = detector_note(result.detector)
    card = _card_link(result.detector)
    if result.label == "no_face":
        text = ("**No face found: no verdict.** The detector judges faces; there is none here to judge.")
        if result.fake_probability is not None:
            text += (f"  \nWhole-image score on request: {format_probability(result.fake_probability, note)} "
                     "(outside what the detector was trained for: a score, not a verdict).")
        return text + f"  \nDetector `{result.detector}`: {note.line} {card}"
    if result.fake_probability is None:
        return "No verdict: " + "; ".join(result.notes)
    faces = sum(not f.fallback for f in result.faces)
    side = "at or above" if result.label == "fake" else "below"
    shown = format_probability(result.fake_probability, note)
    where = f"{faces} face(s)"
    if result.kind == "video":
        found, sampled = frames_with_faces(result)
        people = len({f.track for f in result.faces if f.track is not None})
        where = f"faces in {found} of {sampled} sampled frames, {people} person(s)"
    error = f" ± {note.ece:.2f} (its calibration error)" if note.ece is not None else " (calibration unmeasured)"
    text = (f"**{result.label.upper()}** ({side} the threshold): calibrated P(fake) ≈ {shown}{error}, "
            f"threshold {result.threshold:.2f}; {where}; detector `{result.detector}`.  \n"
            f"What this detector catches and misses: {note.line} {card}  \nHow: {result.aggregation}.")
    if result.notes:
        text += "  \n" + " ".join(result.notes)
    return text


def _card_link(detector: str) -> str:
    """Where to read the detector's model card: the About tab for bundled ones, the Hub for Hub ids."""
    base = split_variant(detector)[0]
    if base in available_detectors():
        return "(model card: About tab)"
    if re.fullmatch(r"[\w.-]+/[\w.-]+", base) and not Path(base).exists():
        return f"([model card](https://huggingface.co/{base}))"
    return ""


def ranked_faces(result: AnalysisResult) -> list[int]:
    """Face indices, most suspicious first."""
    return sorted(range(len(result.faces)), key=lambda i: -result.faces[i].fake_probability)


def face_label(face: FaceResult, number: int, video: bool = False) -> str:
    """"Face 2: P(fake) 0.3" (images); videos add the frame, time and person."""
    where = ""
    if video:
        where = f"frame {face.frame}" + (f" ({face.timestamp:.2f}s)" if face.timestamp is not None else "")
        where += (f", person {face.track}" if face.track is not None else "") + ", "
    what = " (whole image: no face found)" if face.fallback else ""
    return f"Face {number}: {where}P(fake) {face.fake_probability:.2f}{what}"


def face_choices(result: AnalysisResult) -> list[tuple[str, int]]:
    """(label, index) pairs for a face picker, in face-number order (reading order per frame)."""
    video = result.kind == "video"
    return [(face_label(face, face_number(result, i), video), i) for i, face in enumerate(result.faces)]


def first_face(result: AnalysisResult) -> int | None:
    """The face shown first: the most suspicious one."""
    ranked = ranked_faces(result)
    return ranked[0] if ranked else None


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
        if face.crop is None:
            panel.append((None, f"{title}: {RELEASED}"))
        elif method in face.heatmaps:
            agnostic = method in ("attention", "rollout") and not result.explanations.get("class_weighted", True)
            why = " (class-agnostic)" if agnostic else f" ('{face.explained_class}')" if face.explained_class else ""
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
    for i, face in enumerate(result.faces):
        if face.fallback or (result.kind == "video" and face.frame != frame):
            continue
        _draw_box(canvas, face, result.threshold or 0.5, thickness, face_number(result, i))
    return canvas


def _frame_position(result: AnalysisResult, frame: int | None) -> int:
    indices = result.media.get("sampled_indices") or [0]
    return indices.index(frame) if frame in indices else 0


def _draw_box(canvas: np.ndarray, face: FaceResult, threshold: float, thickness: int, number: int) -> None:
    """The face's box with its number (the one every table and dropdown uses) and P(fake)."""
    x0, y0, x1, y1 = (int(round(v)) for v in face.box)
    colour = (220, 40, 40) if face.fake_probability >= threshold else (40, 180, 60)
    cv2.rectangle(canvas, (x0, y0), (x1, y1), colour, thickness)
    text = f"{number}: {face.fake_probability:.2f}" + (f" (person {face.track})" if face.track is not None else "")
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
    """The most suspicious sampled frames as thumbnails cropped around their faces (a whole 1080p
    frame shows a face a few pixels wide), each with its faces' maps pasted in and boxes drawn."""
    items = []
    for frame in suspicious_frame_order(result):
        faces = [(i, f) for i, f in enumerate(result.faces) if f.frame == frame]
        canvas = np.ascontiguousarray(result.frames[_frame_position(result, frame)]).copy()
        for _, face in faces:
            if method in face.heatmaps:
                canvas = paste_overlay(canvas, face.heatmaps[method], face.crop_box, alpha=alpha)
        cut, (dx, dy) = _around_faces(canvas, [f for _, f in faces])
        side = max(cut.shape[:2])  # every thumbnail 480 px on its longest side, small faces enlarged
        canvas = cv2.resize(np.ascontiguousarray(cut), (round(cut.shape[1] * 480 / side), round(cut.shape[0] * 480 / side)),
                            interpolation=cv2.INTER_AREA if side > 480 else cv2.INTER_CUBIC)
        scale = canvas.shape[1] / max(1, cut.shape[1])
        for i, face in faces:  # boxes drawn on the thumbnail itself, so their labels stay readable
            if not face.fallback:
                shifted = FaceResult(**{**face.__dict__, "box": [(face.box[0] - dx) * scale, (face.box[1] - dy) * scale,
                                                                 (face.box[2] - dx) * scale, (face.box[3] - dy) * scale]})
                _draw_box(canvas, shifted, result.threshold or 0.5, 2, face_number(result, i))
        stamp = faces[0][1].timestamp
        when = f"{stamp:.2f}s" if stamp is not None else f"frame {frame}"
        worst = max(f.fake_probability for _, f in faces)
        items.append((canvas, f"{when}: max P(fake) {worst:.2f}"))
    return items


def _around_faces(canvas: np.ndarray, faces: list[FaceResult]) -> tuple[np.ndarray, tuple[int, int]]:
    """The part of a frame around its faces (their crop boxes, padded by half their size), and
    where it starts in the frame."""
    boxes = [f.crop_box for f in faces if not f.fallback and f.crop_box]
    if not boxes:
        return canvas, (0, 0)
    h, w = canvas.shape[:2]
    x0, y0 = min(b[0] for b in boxes), min(b[1] for b in boxes)
    x1, y1 = max(b[2] for b in boxes), max(b[3] for b in boxes)
    pad = max(x1 - x0, y1 - y0) // 2
    x0, y0, x1, y1 = max(0, x0 - pad), max(0, y0 - pad), min(w, x1 + pad), min(h, y1 + pad)
    return (canvas[y0:y1, x0:x1], (x0, y0)) if x1 > x0 and y1 > y0 else (canvas, (0, 0))


def most_suspicious_face_in_frame(result: AnalysisResult, frame: int) -> int | None:
    candidates = [i for i, f in enumerate(result.faces) if f.frame == frame]
    return max(candidates, key=lambda i: result.faces[i].fake_probability, default=None)


def face_table(result: AnalysisResult) -> list[list]:
    """Rows of (face number, frame, time, person, P(fake), face confidence), most suspicious first."""
    rows = []
    for i in ranked_faces(result):
        f = result.faces[i]
        rows.append([face_number(result, i), f.frame, f.timestamp, f.track, round(f.fake_probability, 3),
                     f.face_confidence])
    return rows


def write_reports(session: Session, folder: str | Path | None = None) -> tuple[str, str]:
    """The analysis as a JSON file and a self-contained HTML report; returns their paths."""
    from forensics.report import detector_extra, write_report_html, write_report_json

    result = session.result
    folder = Path(folder or tempfile.mkdtemp(prefix="report-", dir=_reports_root()))
    stem = re.sub(r"[^\w.-]+", "_", Path(result.input).stem)[:60] or "analysis"
    extra = detector_extra(get_detector(session.detector))
    json_path = write_report_json(result, folder / f"{stem}-report.json", extra)
    html_path = write_report_html(result, folder / f"{stem}-report.html", extra)
    return str(json_path), str(html_path)


def _reports_root() -> Path:
    """Where the app's reports are written; folders older than ``settings.temp_file_ttl_s()`` are
    removed as new ones are made (Gradio has copied them to its own cache by then)."""
    root = Path(tempfile.gettempdir()) / "forensics-reports"
    root.mkdir(exist_ok=True)
    cutoff = time.time() - settings.temp_file_ttl_s()
    for old in root.iterdir():
        try:
            if old.stat().st_mtime < cutoff:
                shutil.rmtree(old, ignore_errors=True)
        except OSError:
            pass
    return root


def _enlarge(rgb: np.ndarray, min_side: int) -> np.ndarray:
    h, w = rgb.shape[:2]
    if min(h, w) >= min_side:
        return rgb
    scale = min_side / min(h, w)
    return cv2.resize(rgb, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_CUBIC)


# -- several detectors side by side ---------------------------------------------------------------


def compare(path: str | Path | None, detectors: Sequence[str], methods: Sequence[str] = ("gradcam",),
            frames: int = 16, progress=None):
    """Run each chosen detector on one file (faces found once, shared); see ``forensics.compare``."""
    from forensics.compare import compare_detectors

    if not path:
        raise ForensicsError("no file was uploaded")
    return compare_detectors(path, detectors, get_detector, face_detector(), methods, frames, progress)


def compare_maps(comparison, unit: str | None, alpha: float = 0.5) -> list[tuple[np.ndarray, str]]:
    """The selected face's maps from every detector, detector by detector, captioned "detector:
    method"; maps a detector cannot give are left out (its caption row says which)."""
    from forensics.compare import face_for_unit

    index = face_for_unit(comparison, unit)
    if index is None:
        return []
    out = []
    for run in comparison.done:
        for image, caption in face_panel(run.result, index, alpha):
            if image is not None:
                out.append((image, f"{run.detector}: {caption}"))
    return out
