"""What an analysis returns: typed, serialisable results (numpy only, no torch: the UI and the
renderers import them while the page is drawn)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np


@dataclass
class FaceResult:
    """One scored face (or whole-image fallback) in one frame."""

    frame: int
    track: int | None
    box: list[float] | None
    face_confidence: float | None
    fake_probability: float
    probabilities: dict[str, float]
    crop_box: list[int]
    timestamp: float | None = None
    fallback: bool = False
    maps: dict[str, str] = field(default_factory=dict)
    explained_class: str | None = None
    # map -> {deletion, insertion, random_deletion, random_insertion, curves}: see forensics.explain.faithfulness
    faithfulness: dict[str, dict] = field(default_factory=dict)
    most_faithful: str | None = None
    crop: np.ndarray | None = field(default=None, repr=False)
    heatmaps: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict:
        data = {k: v for k, v in asdict(self).items() if k not in ("crop", "heatmaps")}
        data["fake_probability"] = round(float(self.fake_probability), 6)
        data["probabilities"] = {k: round(float(v), 6) for k, v in self.probabilities.items()}
        return data


@dataclass
class TrackSummary:
    track: int
    frames: int
    mean_fake_probability: float
    max_fake_probability: float
    first_frame: int
    last_frame: int
    counted: bool


@dataclass
class AnalysisResult:
    input: str
    kind: str | None
    detector: str
    detector_version: str = ""
    fake_probability: float | None = None
    label: str | None = None
    threshold: float | None = None
    faces: list[FaceResult] = field(default_factory=list)
    tracks: list[TrackSummary] = field(default_factory=list)
    aggregation: str = ""
    timings_ms: dict[str, float] = field(default_factory=dict)
    media: dict = field(default_factory=dict)
    explanations: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    error: str | None = None
    frames: list[np.ndarray] = field(default_factory=list, repr=False)
    full_maps: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict:
        data = {
            "input": self.input,
            "kind": self.kind,
            "detector": self.detector,
            "detector_version": self.detector_version,
            "fake_probability": None if self.fake_probability is None else round(float(self.fake_probability), 6),
            "label": self.label,
            "threshold": self.threshold,
            "faces": [f.to_dict() for f in self.faces],
            "tracks": [asdict(t) for t in self.tracks],
            "aggregation": self.aggregation,
            "timings_ms": {k: round(v, 1) for k, v in self.timings_ms.items()},
            "media": self.media,
            "explanations": self.explanations,
            "full_maps": self.full_maps,
            "notes": self.notes,
            "error": self.error,
        }
        return data


def face_number(result: AnalysisResult, index: int) -> int:
    """The number a face is shown with everywhere: its position in ``result.faces`` (frames in
    order, faces in reading order within a frame), counted from 1."""
    return int(index) + 1
