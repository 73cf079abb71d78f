"""What the app (and any other front end) calls: cached models, one call per analysis, results as
plain data the UI can show. No UI code here, and no model code in the UI."""

from __future__ import annotations

import threading
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from forensics.analysis import AnalysisResult, Analyzer
from forensics.detectors import available_detectors, load_detector
from forensics.errors import ForensicsError
from forensics.explain import METHODS
from forensics.explain.overlay import overlay
from forensics.faces import FaceDetector

METHOD_TITLES = {"attention": "Last-layer attention", "rollout": "Attention rollout", "gradcam": "Grad-CAM",
                 "gradcam++": "Grad-CAM++"}
MAX_FACES_SHOWN = 8


def detector_choices() -> list[str]:
    """Names of the trained detectors a user may pick (bundled and in ``$FORENSICS_DETECTORS``)."""
    return list(available_detectors())


def default_detector() -> str | None:
    names = detector_choices()
    return "default" if "default" in names else (names[0] if names else None)


@lru_cache(maxsize=1)
def face_detector() -> FaceDetector:
    return FaceDetector()


_lock = threading.Lock()


def analyzer(detector: str | None, methods: Sequence[str] = METHODS, frames: int = 16) -> Analyzer:
    """An analyzer over a cached detector and the shared MTCNN (models load once per process)."""
    name = (detector or "").strip() or default_detector()
    if not name:
        raise ForensicsError("no trained detector is bundled yet: enter a model folder or a Hub id")
    with _lock:
        model = load_detector(name)
    return Analyzer(model, face_detector(), methods=list(methods), frames=int(frames))


def analyze_path(path: str | Path, detector: str | None, methods: Sequence[str] = METHODS, frames: int = 16,
                 progress=None) -> AnalysisResult:
    """Analyse one uploaded file; a bad input raises ``ForensicsError`` with a one-line message."""
    if not path:
        raise ForensicsError("no file was uploaded")
    result = analyzer(detector, methods, frames).analyze(path, name=Path(path).name, progress=progress)
    if result.error:
        raise ForensicsError(result.error)
    return result


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
            f"(threshold {result.threshold:.2f}), {faces} face(s), detector `{result.detector}`. "
            f"{result.aggregation}.")
    if result.notes:
        text += " " + " ".join(result.notes)
    return text


def gallery(result: AnalysisResult, alpha: float = 0.5) -> list[tuple[np.ndarray, str]]:
    """The most suspicious faces, each as its crop followed by its overlays, with captions."""
    items: list[tuple[np.ndarray, str]] = []
    ranked = sorted(result.faces, key=lambda f: -f.fake_probability)[:MAX_FACES_SHOWN]
    for face in ranked:
        where = f"frame {face.frame}" + (f", person {face.track}" if face.track is not None else "")
        head = f"{where}: P(fake) {face.fake_probability:.3f}"
        items.append((face.crop, head + (" (whole image, no face)" if face.fallback else "")))
        for method, heatmap in face.heatmaps.items():
            items.append((overlay(face.crop, heatmap, alpha=alpha), f"{METHOD_TITLES[method]} ({where})"))
    return items


def annotated(result: AnalysisResult) -> np.ndarray | None:
    """The image (or the video's most suspicious sampled frame) with every face boxed and scored."""
    if not result.frames:
        return None
    faces = [f for f in result.faces if not f.fallback]
    top = max(result.faces, key=lambda f: f.fake_probability, default=None)
    index = 0
    if result.kind == "video" and top is not None and result.media.get("sampled_indices"):
        index = result.media["sampled_indices"].index(top.frame)
    canvas = np.ascontiguousarray(result.frames[index]).copy()
    thickness = max(2, round(max(canvas.shape[:2]) / 400))
    for face in faces:
        if result.kind == "video" and top is not None and face.frame != top.frame:
            continue
        x0, y0, x1, y1 = (int(round(v)) for v in face.box)
        red = face.fake_probability >= (result.threshold or 0.5)
        colour = (220, 40, 40) if red else (40, 180, 60)
        cv2.rectangle(canvas, (x0, y0), (x1, y1), colour, thickness)
        text = f"{face.fake_probability:.2f}"
        scale = thickness * 0.45
        (w, h), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
        cv2.rectangle(canvas, (x0, max(0, y0 - h - 8)), (x0 + w + 6, y0), colour, -1)
        cv2.putText(canvas, text, (x0 + 3, max(h, y0 - 5)), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), thickness)
    return canvas
