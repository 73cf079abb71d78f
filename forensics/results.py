"""What an analysis returns: typed, serialisable results (numpy only, no torch: the UI and the
renderers import them while the page is drawn)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields

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
    # A detector with more than one fake class (real / manipulated / synthetic): their probabilities,
    # likeliest first (empty for a binary detector).
    fake_kinds: dict[str, float] = field(default_factory=dict)
    maps: dict[str, str] = field(default_factory=dict)  # method -> the overlay's file, once written (render)
    explained_class: str | None = None
    # map -> {deletion, insertion, random_deletion, random_insertion, curves}: see forensics.explain.faithfulness
    faithfulness: dict[str, dict] = field(default_factory=dict)
    most_faithful: str | None = None
    # The extra temperature its probabilities were softened by for its size (1: none; a small face,
    # calibrated on validation faces that small: DetectorInfo.size_temperatures).
    size_temperature: float = 1.0
    crop: np.ndarray | None = field(default=None, repr=False)
    heatmaps: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict:
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("crop", "heatmaps")}
        data["fake_probability"] = round(float(self.fake_probability), 6)
        data["probabilities"] = {k: round(float(v), 6) for k, v in self.probabilities.items()}
        data["fake_kinds"] = {k: round(float(v), 6) for k, v in self.fake_kinds.items()}
        return data

    @property
    def fake_kind(self) -> str | None:
        """The likeliest fake class of a detector with several ("synthetic"), else None."""
        return next(iter(self.fake_kinds), None)


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
class MediaInfo:
    """What was decoded: the size, the file's SHA-256 and its length in bytes, a JPEG's quality, and for a video (or an animated
    image) its frame rate, length and the frames sampled. A file that failed to decode has none of it."""

    width: int | None = None
    height: int | None = None
    fps: float | None = None
    frame_count: int | None = None
    duration_s: float | None = None
    sampled_frames: int | None = None
    sampled_indices: list[int] = field(default_factory=list)
    sampled_times: list[float] = field(default_factory=list)  # each sampled frame's time (s), as a player shows it
    # Frames unevenly spaced (a phone's variable frame rate; an animation's uneven durations): ``fps`` is then
    # an average, and times are the container's own
    variable_frame_rate: bool = False
    animated_image: bool = False
    sha256: str | None = None
    file_bytes: int | None = None  # the file's size, as hashed
    jpeg_quality: int | None = None  # a JPEG image's quality on libjpeg's scale, from its quantization table
    codec: str | None = None  # a video's codec (its FourCC as FFmpeg names it: "h264", "hevc", "FMP4")
    # A video stream's bits per pixel per frame (bit rate / (fps x width x height)): how hard it was compressed.
    bits_per_pixel: float | None = None

    def to_dict(self) -> dict:
        """What was measured: the rest is left out of the JSON, not written as null."""
        return {k: v for k, v in asdict(self).items() if v is not None and v is not False and v != []}

    def frame_time(self, frame: int) -> float | None:
        """Where a player shows a sampled frame (seconds): its recorded time (a variable frame rate's own),
        else frame / fps; None without either."""
        if len(self.sampled_times) == len(self.sampled_indices) and frame in self.sampled_indices:
            return self.sampled_times[self.sampled_indices.index(frame)]
        return frame / self.fps if self.fps else None


@dataclass
class Explanations:
    """How the maps of a result were made: for which class and with which settings, which methods
    gave maps and which were skipped (and why), and how they were scored when they were."""

    explained_faces: int = 0
    methods: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    target: int | str = "fake"
    head_fusion: str = "mean"
    discard_ratio: float = 0.9
    class_weighted: bool = True  # False for attention without gradients (ONNX builds): class-agnostic maps
    faithfulness: dict | None = None  # the metric's description, when the maps were scored
    note: str | None = None

    def to_dict(self) -> dict:
        data = asdict(self)
        return {k: v for k, v in data.items() if v is not None or k not in ("faithfulness", "note")}


@dataclass
class AnalysisResult:
    """One input's analysis, as it is serialised. The decoded frames its pictures are drawn on are
    not part of it: ``Analyzer.analyze_with_frames`` returns them beside it."""

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
    media: MediaInfo = field(default_factory=MediaInfo)
    explanations: Explanations | None = None  # None: no maps were asked for
    notes: list[str] = field(default_factory=list)
    # What is known of fake_probability (``forensics.analysis``): the detector's calibration error, for a
    # video the deciding person's standard error over the sampled frames, and whether it is a close call.
    uncertainty: dict = field(default_factory=dict)
    error: str | None = None
    full_maps: dict[str, str] = field(default_factory=dict)  # method -> the full image's overlay, once written
    # With no face found: faces under the face finder's smallest size seen by a finer search (never scored;
    # ``Analyzer._small_faces``): {"frame", "box" [x0, y0, x1, y1] in source pixels, "confidence"}.
    small_faces: list[dict] = field(default_factory=list)

    def to_dict(self) -> dict:
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        p_fake = None if self.fake_probability is None else round(float(self.fake_probability), 6)
        return {**data, "fake_probability": p_fake, "faces": [f.to_dict() for f in self.faces],
                "tracks": [asdict(t) for t in self.tracks], "media": self.media.to_dict(),
                "timings_ms": {k: round(v, 1) for k, v in self.timings_ms.items()},
                "explanations": self.explanations.to_dict() if self.explanations else {}}


def face_number(result: AnalysisResult, index: int) -> int:
    """The number a face is shown with everywhere: its position in ``result.faces`` (frames in
    order, faces in reading order within a frame), counted from 1."""
    return int(index) + 1


def deciding_faces(result: AnalysisResult) -> tuple[list[FaceResult], str]:
    """The faces the verdict rests on and what to call them: an image's most suspicious face
    ("face 2"), a video's highest-scoring counted track ("person 1")."""
    faces = [f for f in result.faces if not f.fallback]
    if not faces:
        return [], ""
    if result.kind == "video" and result.tracks:
        counted = [t for t in result.tracks if t.counted] or result.tracks
        top = max(counted, key=lambda t: t.mean_fake_probability)
        mine = [f for f in faces if (f.track if f.track is not None else -1) == top.track]
        if mine:
            return mine, f"person {top.track}" if top.track >= 1 else "the tracked face"
    i = max(range(len(result.faces)), key=lambda k: result.faces[k].fake_probability)
    return [result.faces[i]], f"face {face_number(result, i)}"


def sampling_error(result: AnalysisResult) -> tuple[str, int, float] | None:
    """How well a video's sampled frames pin its score down: ``(who, frames, standard error)`` of the
    deciding person's mean P(fake) over the frames they appear in (their frame scores' spread /
    sqrt(frames)); None for an image or a person seen in one frame."""
    if result.kind != "video":
        return None
    faces, who = deciding_faces(result)
    scores = [f.fake_probability for f in faces]
    if len(scores) < 2:
        return None
    return who, len(scores), standard_error(scores)


def frames_with_faces(result: AnalysisResult) -> tuple[int, int]:
    """(sampled frames in which a face was found, sampled frames)."""
    sampled = len(result.media.sampled_indices or [0])
    return len({f.frame for f in result.faces if not f.fallback}), sampled


def scored_from(result: AnalysisResult) -> str:
    """What a verdict's score comes from, as the app's small print and the report say it: "3 face(s)";
    for a video "faces in 12 of 16 sampled frames, 8 person(s)"."""
    if result.kind != "video":
        return f"{sum(not f.fallback for f in result.faces)} face(s)"
    found, sampled = frames_with_faces(result)
    people = len({f.track for f in result.faces if f.track is not None})
    return f"faces in {found} of {sampled} sampled frames, {people} person(s)"


def score_errors(result: AnalysisResult, ece: float | None) -> str:
    """What is known of a verdict's score, as the app's small print and the report say it: the detector's
    calibration error and, for a video, the deciding person's mean's standard error."""
    text = f"± {ece:.2f} (its calibration error)" if ece is not None else "(calibration unmeasured)"
    sampled = sampling_error(result)
    if sampled:  # a video's score is a person's mean over the sampled frames: known to its standard error too
        who, count, se = sampled
        text += f", ± {se:.2f} over {count} sampled frames of {who} (the mean's standard error)"
    return text


def standard_error(scores: Sequence[float]) -> float:
    """The standard error of the mean of a person's frame scores (their spread / sqrt(frames)); 0 for one."""
    return float(np.std(scores, ddof=1) / np.sqrt(len(scores))) if len(scores) > 1 else 0.0


def within_errors(p: float, threshold: float, ece: float, se: float = 0.0) -> bool:
    """A close call: ``p`` lies within what is known of it from the threshold, the detector's calibration
    error plus twice the standard error of a mean over sampled frames (about a 95% interval)."""
    return abs(p - threshold) <= ece + 2 * se
