"""Several detectors on one image or video: P(fake) per face (per person in a video) per detector,
whether they agree, and each one's maps of the same face.

What a presenter shows stakeholders: one detector's score says little; several that agree (or do
not) say more. Faces are found once (MTCNN) and shared, so face 1 is the same face for every
detector; each detector then crops, scores and explains with its own input size and framing.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from forensics.analysis import AnalysisResult, Analyzer, face_number
from forensics.detector_notes import detector_note
from forensics.core import ForensicsError
from forensics.explain import ExplainOptions
from forensics.faces import FaceDetector

Progress = Callable[[float, str], None]
MAX_DETECTORS = 6  # each one is a full analysis; more would keep a shared CPU busy for minutes


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


@dataclass
class DetectorRun:
    """One detector's analysis of the input, or why it could not run."""

    detector: str
    result: AnalysisResult | None = None
    error: str | None = None


@dataclass
class Comparison:
    input: str
    kind: str | None
    runs: list[DetectorRun] = field(default_factory=list)

    @property
    def done(self) -> list[DetectorRun]:
        return [r for r in self.runs if r.result is not None]


@dataclass
class Row:
    """One unit (a face of an image, a person of a video) as one detector scored it."""

    unit: str  # "Face 1" / "Person 2"
    detector: str
    fake_probability: float
    threshold: float
    flagged: bool  # at or above that detector's own threshold
    face_index: int  # the face whose maps stand for the unit (for a person: their most suspicious face)


def compare_detectors(path: str | Path, detectors: Sequence[str], load: Callable[[str], object],
                      face_detector: FaceDetector, methods: Sequence[str] = ("gradcam",), frames: int = 16,
                      progress: Progress | None = None) -> Comparison:
    """Analyse ``path`` with each of ``detectors`` (names, folders, Hub ids, ``:onnx``/``:int8``
    builds; ``load`` turns a name into a detector). A detector that cannot be loaded is reported
    in its run, not raised; a bad input, or no detector at all, raises ``ForensicsError``."""
    names = list(dict.fromkeys(d.strip() for d in detectors if d and d.strip()))
    if len(names) < 1:
        raise ForensicsError("choose at least one detector to compare (two or more to see them side by side)")
    if len(names) > MAX_DETECTORS:
        raise ForensicsError(f"{len(names)} detectors chosen; compare at most {MAX_DETECTORS} at once")
    shared = _SharedFaces(face_detector)
    comparison = Comparison(input=Path(path).name, kind=None)
    for k, name in enumerate(names):
        def step(fraction: float, text: str, k=k, name=name) -> None:
            if progress is not None:
                progress((k + fraction) / len(names), f"{name}: {text}")

        try:
            detector = load(name)
        except ForensicsError as exc:
            comparison.runs.append(DetectorRun(name, error=str(exc)))
            continue
        analyzer = Analyzer(detector, shared, methods=list(methods), target="fake", options=ExplainOptions(),
                            frames=int(frames))
        result = analyzer.analyze(path, name=Path(path).name, progress=step)
        if result.error:  # the input itself is bad: every detector would say the same
            raise ForensicsError(result.error)
        result.detector = name  # the name the user chose (e.g. "default:int8"), not the model's own
        comparison.kind = result.kind
        comparison.runs.append(DetectorRun(name, result))
    if not comparison.done:
        reasons = "; ".join(f"{r.detector}: {r.error}" for r in comparison.runs)
        raise ForensicsError(f"no detector could be loaded: {reasons}")
    return comparison


def rows(comparison: Comparison) -> list[Row]:
    """A row per face (image) or per person (video) per detector, faces and people in number order."""
    out = []
    for run in comparison.done:
        result = run.result
        threshold = float(result.threshold if result.threshold is not None else 0.5)
        if result.kind == "video" and result.tracks:
            for track in result.tracks:
                mine = [i for i, f in enumerate(result.faces) if f.track == track.track]
                worst = max(mine, key=lambda i: result.faces[i].fake_probability)
                p = float(track.mean_fake_probability)
                out.append(Row(f"Person {track.track}", run.detector, p, threshold, p >= threshold, worst))
        else:
            for i, face in enumerate(result.faces):
                if face.fallback:
                    continue
                p = float(face.fake_probability)
                out.append(Row(f"Face {face_number(result, i)}", run.detector, p, threshold, p >= threshold, i))
    return out


def units(comparison: Comparison) -> list[str]:
    """The faces (or people) compared, in number order."""
    return list(dict.fromkeys(r.unit for r in rows(comparison)))


def agreement(comparison: Comparison) -> dict[str, str]:
    """Per unit: "all 3 flag it", "none of 3 flag it" or "2 of 3 flag it" (each at its own threshold)."""
    by_unit: dict[str, list[bool]] = {}
    for row in rows(comparison):
        by_unit.setdefault(row.unit, []).append(row.flagged)
    out = {}
    for unit, flags in by_unit.items():
        n, k = len(flags), sum(flags)
        out[unit] = (f"all {n} flag it" if k == n else f"none of {n} flag it" if k == 0 else f"{k} of {n} flag it")
    return out


def table(comparison: Comparison) -> list[list]:
    """Rows for a table: unit, detector, P(fake) (to the detector's precision), threshold, call, agreement."""
    agree = agreement(comparison)
    order = {unit: k for k, unit in enumerate(units(comparison))}
    out = []
    for row in sorted(rows(comparison), key=lambda r: order[r.unit]):  # stable: detectors stay in chosen order
        digits = detector_note(row.detector).digits
        out.append([row.unit, row.detector, round(row.fake_probability, digits), round(row.threshold, 2),
                    "flagged" if row.flagged else "not flagged", agree[row.unit]])
    return out


def summary(comparison: Comparison) -> str:
    """A short Markdown paragraph: how many detectors ran, how far they agree, which could not run."""
    agree = agreement(comparison)
    lines = []
    if not agree:
        lines.append(f"No face found in {comparison.input}: no detector gives a verdict.")
    else:
        unanimous = sum(a.startswith(("all", "none")) for a in agree.values())
        what = "people" if comparison.kind == "video" else "faces"
        lines.append(f"{len(comparison.done)} detector(s) on {len(agree)} {what}: they agree on {unanimous} of "
                     f"{len(agree)} (each at its own threshold).")
        lines += [f"- **{unit}**: {text}" for unit, text in agree.items()]
    for run in comparison.done:
        lines.append(f"- `{run.detector}`: {detector_note(run.detector).line}")
    for run in comparison.runs:
        if run.error:
            lines.append(f"- `{run.detector}` could not run: {run.error}")
    return "\n".join(lines)


def face_for_unit(comparison: Comparison, unit: str | None) -> int | None:
    """The face index whose maps are shown for a unit (the same index in every detector's result)."""
    for row in rows(comparison):
        if row.unit == unit:
            return row.face_index
    return None
