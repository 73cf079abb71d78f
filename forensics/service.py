"""What the app (and any other front end) calls: cached models, one call per analysis (kept as a
``Session`` for the UI's later events), the reports of one. Results are plain data; what is shown
of them is ``ui/`` and ``forensics.render``."""

from __future__ import annotations

import hashlib
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np

from forensics import settings
from forensics.analysis import AnalysisResult, Analyzer
from forensics.catalog import EXTRA_METHODS, METHODS, default_detector
from forensics.compare import Comparison, DetectorRun
from forensics.detectors import Detector, load_detector
from forensics.core import ForensicsError
from forensics.held import HELD, RELEASED, is_released
from forensics.explain import ExplainOptions
from forensics.explain.faithfulness import FaithfulnessOptions
from forensics.faces import FaceDetector
from forensics.render.compare_report import write_compare_reports
from forensics.render.frames import shown_frame_position
from forensics.render.report import detector_extra, write_report_html, write_report_json

ALL_METHODS = METHODS + EXTRA_METHODS
MAX_DETECTORS = 6  # each one is a full analysis; more would keep a shared CPU busy for minutes


@lru_cache(maxsize=1)
def face_detector() -> FaceDetector:
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
    """What the UI keeps between events: the analysis, how its maps were made, and its decoded frames
    until the answer is drawn (``hold``)."""

    result: AnalysisResult
    detector: str
    target: str = "fake"
    options: ExplainOptions = field(default_factory=ExplainOptions)
    methods: list[str] = field(default_factory=lambda: list(ALL_METHODS))
    score_maps: bool = False
    frames: list[np.ndarray] = field(default_factory=list, repr=False)
    # Set when a later analysis in the same session failed: Gradio then leaves its state as it was, so this
    # one is still there; its reports and maps must not stand in for the file that failed.
    superseded: str | None = None


def _analyzer(det: Detector, methods: Sequence[str], target: str, options: ExplainOptions, frames: int,
              score_maps: bool = False, name: str | None = None, look_again: int = 2) -> Analyzer:
    return Analyzer(det, face_detector(), methods=list(methods), target=target or "fake", options=options,
                    frames=int(frames), limits=settings.media_limits(),
                    faithfulness=FaithfulnessOptions() if score_maps else None, detector_name=name,
                    look_again=min(int(look_again), settings.look_again_passes()))  # the operator's bound


def analyze(path: str | Path | None, detector: str | None = None, methods: Sequence[str] = ALL_METHODS,
            frames: int = 16, target: str = "fake", head_fusion: str = "mean", discard_ratio: float = 0.9,
            progress=None, whole_image: bool = False, score_maps: bool = False, look_again: int = 2) -> Session:
    """Analyse one uploaded file; a bad input raises ``ForensicsError`` with a one-line message.
    ``whole_image``: with no face found, score the whole image anyway (labelled as such, no verdict);
    ``score_maps``: each face's maps get deletion/insertion scores against a random map; ``look_again``:
    a video whose verdict is a close call, or with no face found, is sampled again at about twice the
    frames, up to that many times (``Analyzer.look_again``)."""
    if not path:
        raise ForensicsError("no file was uploaded")
    name = (detector or "").strip() or default_detector() or ""
    det = get_detector(name)
    options = _options(head_fusion, discard_ratio)
    analyzer = _analyzer(det, methods, target, options, frames, bool(score_maps), name, look_again)
    analyzer.fallback_whole_image = bool(whole_image)
    result, frames = analyzer.analyze_with_frames(path, name=Path(path).name, progress=progress)
    if result.error:
        raise ForensicsError(result.error)
    return Session(result, name, target or "fake", options, list(methods), bool(score_maps), frames)


def hold(session: Session) -> Session:
    """Once the answer is drawn: keep only what later events need (the report, built on request,
    needs the frame it shows), within the server's memory budget for all sessions (see
    ``forensics.held``). Returns the session, for the UI's state."""
    HELD.hold(session.result, session.frames, keep_frames={shown_frame_position(session.result)})
    return session


def reexplain(session: Session, target: str, head_fusion: str, discard_ratio: float, progress=None) -> Session:
    """New maps for the same faces with other settings: no decoding, detection or classification."""
    if session.superseded:
        raise ForensicsError(session.superseded)
    if is_released(session.result):
        raise ForensicsError(f"this analysis was {RELEASED}")
    det = get_detector(session.detector)
    options = _options(head_fusion, discard_ratio)
    _analyzer(det, session.methods, target, options, 1, session.score_maps).explain_faces(session.result, progress)
    return hold(Session(session.result, session.detector, target, options, session.methods,
                        session.score_maps, session.frames))  # the new maps count against the budget too


def _options(head_fusion: str, discard_ratio: float) -> ExplainOptions:
    try:
        return ExplainOptions(head_fusion=head_fusion or "mean", discard_ratio=float(discard_ratio))
    except ValueError as exc:
        raise ForensicsError(str(exc)) from None


def write_reports(session: Session, folder: str | Path | None = None) -> tuple[str, str]:
    """The analysis as a JSON file and a self-contained HTML report; returns their paths. A held
    analysis still has what its report shows; one released to free memory has not (says so)."""
    result = session.result
    if session.superseded:
        raise ForensicsError(session.superseded)
    if is_released(result):
        raise ForensicsError(f"this analysis was {RELEASED}")
    folder = Path(folder or output_folder())
    stem = _stem(result.input, "analysis")
    extra = detector_extra(get_detector(session.detector))
    json_path = write_report_json(result, folder / f"{stem}-report.json", extra)
    html_path = write_report_html(result, folder / f"{stem}-report.html", extra, frames=session.frames)
    return str(json_path), str(html_path)


def write_comparison_reports(comparison: Comparison | None, folder: str | Path | None = None) -> tuple[str, str]:
    """A comparison of detectors as a JSON file and a self-contained HTML page; returns their paths."""
    if comparison is not None and comparison.superseded:
        raise ForensicsError(comparison.superseded)
    if comparison is None or not comparison.done:
        raise ForensicsError("compare detectors first")
    folder = Path(folder or output_folder())
    json_path, html_path = write_compare_reports(comparison, folder, _stem(comparison.input, "comparison"))
    return str(json_path), str(html_path)


def _stem(name: str, fallback: str) -> str:
    """A report's file name stem from its input's name: safe characters only, at most 60."""
    return re.sub(r"[^\w.-]+", "_", Path(name).stem)[:60] or fallback


def output_folder(prefix: str = "report-") -> Path:
    """A new folder for what the app writes for a visitor (reports, audits): under the reports' root,
    so that it is removed after ``settings.temp_file_ttl_s()`` like every other output."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir=_reports_root()))


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


# -- several detectors side by side ---------------------------------------------------------------


class _SharedFaces:
    """A face detector that finds the faces of a set of frames once and hands the same answer to
    every detector (so faces, their numbers and their tracks are the same for all)."""

    def __init__(self, inner: FaceDetector):
        self.inner = inner
        self._key: str | None = None
        self._faces: list | None = None

    def detect_batch(self, frames: Sequence[np.ndarray], batch_size: int = 2) -> list:
        digest = hashlib.blake2b(digest_size=16)
        for frame in frames:
            digest.update(str(frame.shape).encode())
            digest.update(np.ascontiguousarray(frame[::7, ::7]).tobytes())  # a sparse sample tells frames apart
        key = digest.hexdigest()
        if key != self._key:
            self._key, self._faces = key, self.inner.detect_batch(frames, batch_size)
        return self._faces

    def __getattr__(self, name):
        return getattr(self.inner, name)


def compare(path: str | Path | None, detectors: Sequence[str], methods: Sequence[str] = ("gradcam",),
            frames: int = 16, progress=None) -> Comparison:
    """Analyse ``path`` with each of ``detectors`` (names, folders, Hub ids, ``:onnx``/``:int8``
    builds), faces found once and shared (see ``forensics.compare``). A detector that cannot be
    loaded is reported in its run, not raised; a bad input, or no detector at all, raises
    ``ForensicsError``."""
    if not path:
        raise ForensicsError("no file was uploaded")
    names = list(dict.fromkeys(d.strip() for d in detectors if d and d.strip()))
    if len(names) < 1:
        raise ForensicsError("choose at least one detector to compare (two or more to see them side by side)")
    if len(names) > MAX_DETECTORS:
        raise ForensicsError(f"{len(names)} detectors chosen; compare at most {MAX_DETECTORS} at once")
    shared = _SharedFaces(face_detector())
    comparison = Comparison(input=Path(path).name, kind=None)
    for k, name in enumerate(names):
        def step(fraction: float, text: str, k=k, name=name) -> None:
            if progress is not None:
                progress((k + fraction) / len(names), f"{name}: {text}")

        try:
            detector = get_detector(name)
        except ForensicsError as exc:
            comparison.runs.append(DetectorRun(name, error=str(exc)))
            continue
        analyzer = Analyzer(detector, shared, methods=list(methods), target="fake", options=ExplainOptions(),
                            frames=int(frames), detector_name=name,  # e.g. "default:int8", not the model's own
                            limits=settings.media_limits(),  # the same upload limits as every other way in
                            look_again=0)  # every detector on the same frames: a close call is not sampled again
        result = analyzer.analyze(path, name=Path(path).name, progress=step)
        if result.error:  # the input itself is bad: every detector would say the same
            raise ForensicsError(result.error)
        comparison.kind = result.kind
        comparison.runs.append(DetectorRun(name, result))
    if not comparison.done:
        reasons = "; ".join(f"{r.detector}: {r.error}" for r in comparison.runs)
        raise ForensicsError(f"no detector could be loaded: {reasons}")
    return comparison
