"""Media in, verdict out: decode -> faces -> classify -> explain -> one result per input.

How a verdict is reached
------------------------
- A face's score is the detector's P(fake) for its crop (the summed probability of the fake
  classes).
- An image is as suspicious as its most suspicious face: ``fake_probability = max`` over faces.
- A video reports per person, not per box: faces are tracked across the sampled frames (IoU),
  each track's score is the **mean** of its faces' scores over the frames it appears in
  (frame scores of one face spread by about 0.2; averaging steadies them), and the video's score
  is the **max over tracks** (one manipulated person makes a manipulated video). Tracks seen in
  fewer than ``min(3, sampled frames)`` frames are passers-by or false detections and are left out,
  unless no track is long enough, in which case every track counts.
- No face at all: no verdict. ``label`` is ``no_face`` and ``fake_probability`` is ``None``: a
  detector trained on face crops has nothing to judge. Scoring the whole image (or each whole
  frame, averaged) is an explicit choice (``fallback_whole_image=True``); its entries are marked
  ``fallback: true``, ``fake_probability`` holds that out-of-domain score, and ``label`` stays
  ``no_face``: such a score is never turned into a fake/real verdict. With no face of the face
  finder's smallest size (40 px) found, MTCNN searches again down to 20 px (on at most 8 sampled
  frames; less far, or not at all, in images larger than about 2,500 px, whose detection copy is
  downscaled to 1,280): faces found only there are too small to judge and are not scored, but a note starting
  ``Faces too small:`` says how many and how small, so "nobody there" and "too far away" differ.
- ``label`` is ``fake`` when ``fake_probability >= threshold`` (the detector's own threshold) and at
  least one face was found.
- A verdict that rests on a small face (the deciding faces' median crop side under 128 source
  pixels) carries a caution in ``notes`` with the detector's measured ROC-AUC on faces that small.
- A verdict whose score lies within the detector's calibration error (its validation ECE) of the
  threshold, plus for a video twice the standard error of the deciding person's mean over the
  sampled frames, carries a "close call" caution in ``notes``: the call could go either way.
- A video whose verdict is a close call, or in which no face was found, is sampled again at about
  twice the frames (``look_again`` passes at most: N, 2N - 1, 4N - 3 frames, each pass keeping the
  frames it has), until it has a verdict that is not close; only the new frames are decoded,
  searched and scored, and ``notes`` says so.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import sys
import time
import traceback
from collections import defaultdict
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from forensics.detectors.base import Detector, size_temperature, temper
from forensics.core import ForensicsError, sha256_file
from forensics.explain import METHODS, ExplainOptions, explain
from forensics.explain.faithfulness import FaithfulnessOptions, most_faithful, score_face, scoring_detector
from forensics.results import (AnalysisResult, Explanations, FaceResult, MediaInfo, TrackSummary, deciding_faces,  # noqa: F401
                               face_number, sampling_error)
from forensics.faces import FaceCrop, FaceDetector, crop_faces, track_faces, whole_image_crop
from forensics.media import (DEFAULT_LIMITS, MediaLimits, VideoFrames, is_animated, jpeg_quality, load_animation,
                            load_image, load_video, media_kind, sample_frame_indices)

Progress = Callable[[float, str], None]

NO_FACE_NOTE = "no face found: no verdict (the detector judges faces, and there is none to judge)"
LOOKED_AGAIN = "Looked again:"  # the note of a video sampled again: a close call or no face (Analyzer.look_again)
NOT_LOOKED_AGAIN = "Not sampled again:"  # the note of one that would have been, with look_again 0
SMALL_FACES_ONLY = "Faces too small:"  # the note of an input whose only faces are under the face finder's smallest
SMALL_FACE_SEARCH_PX = 20  # how small a face the second search for a missing one looks for (Analyzer._small_faces)
SMALL_FACE_SEARCH_FRAMES = 8  # on at most this many of the sampled frames (a 720p frame: about 0.2 s)
WHOLE_IMAGE_NOTE = ("whole image scored on request, outside what the detector was trained for (face crops): "
                    "a score, not a verdict")


def reading_order(faces: Sequence) -> list:
    """Faces (anything with ``box = (x0, y0, x1, y1)``) top to bottom in rows, left to right within a
    row: the order people read a photo in, so "face 1" is the same face in every table, dropdown
    and report. A face joins the current row when its centre lies within the row's first box."""
    rest = sorted(faces, key=lambda f: (f.box[1] + f.box[3]) / 2)
    ordered: list = []
    while rest:
        top = rest[0]
        row = [f for f in rest if top.box[1] <= (f.box[1] + f.box[3]) / 2 <= top.box[3]] or [top]
        ordered += sorted(row, key=lambda f: f.box[0])
        rest = [f for f in rest if not any(f is r for r in row)]
    return ordered


def aggregate_image(faces: Sequence[FaceResult]) -> tuple[float, str]:
    """An image's score: the max over its faces."""
    score = max(f.fake_probability for f in faces)
    if faces[0].fallback:
        return score, WHOLE_IMAGE_NOTE
    return score, f"max over {len(faces)} face(s) of P(fake)"


def aggregate_video(faces: Sequence[FaceResult], sampled_frames: int) -> tuple[float, list[TrackSummary], str]:
    """A video's score: max over tracks of each track's mean P(fake) (see the module docstring)."""
    if faces and faces[0].fallback:
        score = float(np.mean([f.fake_probability for f in faces]))
        text = f"no face in any of {sampled_frames} sampled frames; {WHOLE_IMAGE_NOTE} (mean over the frames)"
        return score, [], text
    by_track: dict[int, list[FaceResult]] = defaultdict(list)
    for face in faces:
        by_track[int(face.track if face.track is not None else -1)].append(face)
    min_frames = min(3, max(sampled_frames, 1))
    tracks = []
    for track, items in sorted(by_track.items()):
        scores = [f.fake_probability for f in items]
        tracks.append(
            TrackSummary(
                track=track,
                frames=len({f.frame for f in items}),
                mean_fake_probability=round(float(np.mean(scores)), 6),
                max_fake_probability=round(float(np.max(scores)), 6),
                first_frame=min(f.frame for f in items),
                last_frame=max(f.frame for f in items),
                counted=False,
            )
        )
    long_enough = [t for t in tracks if t.frames >= min_frames] or tracks
    for t in long_enough:
        t.counted = True
    score = max(t.mean_fake_probability for t in long_enough)
    left_out = len(tracks) - len(long_enough)
    text = (f"max over {len(long_enough)} person(s) (a face followed from frame to frame) of each "
            "person's mean P(fake) over their frames")
    if left_out:
        text += f"; {left_out} person(s) seen in fewer than {min_frames} of {sampled_frames} frames left out"
    return score, tracks, text


def _side(crop_box) -> float:
    """A crop's side in source pixels (its larger one)."""
    return float(max(crop_box[2] - crop_box[0], crop_box[3] - crop_box[1]))


def _detector_metrics(detector: Detector) -> dict | None:
    """The detector folder's own measurements (``metrics.json``), or None without them; parsed once per
    version of the file (every verdict reads its calibration), never to be changed by the caller."""
    from forensics.detector_notes import METRICS_NAME

    folder = Path(detector.path) if getattr(detector, "path", None) else None
    try:
        stat = (folder / METRICS_NAME).stat() if folder is not None else None
    except OSError:
        return None
    return _read_metrics(str(folder / METRICS_NAME), stat.st_mtime_ns, stat.st_size) if stat else None


@functools.lru_cache(maxsize=16)
def _read_metrics(path: str, mtime_ns: int, size: int) -> dict | None:
    from forensics.core import read_json

    return read_json(Path(path))


def _small_face_caution(result: AnalysisResult, detector: Detector) -> str:
    """The caution for a verdict decided by a small face (median crop side of the deciding faces),
    with the detector's measured figures where its folder has them."""
    from forensics.detector_notes import SMALL_FACE_PX, small_face_caution

    faces, what = deciding_faces(result)
    sides = [_side(f.crop_box) for f in faces if f.crop_box]
    if not sides:
        return ""
    side = float(np.median(sides))
    if side >= SMALL_FACE_PX:  # the common case: no file read
        return ""
    return small_face_caution(side, what, _detector_metrics(detector), build=bool(getattr(detector, "variant", None)))


def _jpeg_caution(result: AnalysisResult, detector: Detector) -> str:
    """The caution for an image saved as a low-quality JPEG, with the detector's measured figures
    where its folder has them."""
    from forensics.detector_notes import LOW_JPEG_QUALITY, jpeg_caution

    quality = result.media.jpeg_quality
    if quality is None or quality > LOW_JPEG_QUALITY:  # the common case: no file read
        return ""
    return jpeg_caution(quality, _detector_metrics(detector), build=bool(getattr(detector, "variant", None)))


def _compression_caution(result: AnalysisResult, detector: Detector) -> str:
    """The caution for a strongly compressed video (``detector_notes.video_compression_caution``), with the
    detector's measured figures where its folder has them."""
    from forensics.detector_notes import STRONG_VIDEO_COMPRESSION_BPP, video_compression_caution

    bpp = result.media.bits_per_pixel
    if result.kind != "video" or bpp is None or bpp >= STRONG_VIDEO_COMPRESSION_BPP:  # the common case
        return ""
    return video_compression_caution(result.media.codec, bpp, _detector_metrics(detector),
                                     build=bool(getattr(detector, "variant", None)))


def _close_call(result: AnalysisResult, detector: Detector) -> tuple[dict, str]:
    """What is known of the verdict's score (``AnalysisResult.uncertainty``: the detector's calibration
    error, for a video the deciding person's standard error over the sampled frames, ``close_call``, and
    ``threshold_range``, where its threshold rule puts the threshold on resamples of its validation faces)
    and the caution for a close call (``forensics.detector_notes.close_call_caution``), else for a score
    inside that range (``threshold_caution``), else ""."""
    from forensics.detector_notes import calibration_error, close_call_caution, threshold_caution, threshold_spread

    metrics = _detector_metrics(detector)
    sampling = sampling_error(result)
    note = close_call_caution(result.fake_probability, detector.threshold, metrics,
                              build=bool(getattr(detector, "variant", None)), sampling=sampling)
    ece = calibration_error(metrics)
    known: dict = {}
    if ece is not None:
        known["calibration_error"] = round(ece, 4)
    if sampling:
        known.update(sampling_error=round(sampling[2], 4), sampled_frames=sampling[1], deciding=sampling[0])
    if "calibration_error" in known:
        known["close_call"] = bool(note)
    spread = threshold_spread(metrics)
    if spread:
        known["threshold_range"] = [round(spread[0], 4), round(spread[1], 4)]
    if not note:  # a close call already says the verdict could go either way
        note = threshold_caution(result.fake_probability, detector.threshold, metrics,
                                 build=bool(getattr(detector, "variant", None)))
    return known, note


class Analyzer:
    """Runs the whole pipeline with one detector; reusable across inputs (models load once)."""

    def __init__(
        self,
        detector: Detector,
        face_detector: FaceDetector | None = None,
        methods: Sequence[str] = METHODS,
        target: int | str | None = None,
        options: ExplainOptions | None = None,
        frames: int = 16,
        fps: float | None = None,
        limits: MediaLimits = DEFAULT_LIMITS,
        fallback_whole_image: bool = False,
        max_explained: int = 64,
        batch_size: int = 4,  # faces per explanation pass: 8 costs ~250 MB more (ViT-S) for no speed-up
        faithfulness: FaithfulnessOptions | None = None,
        detector_name: str | None = None,
        look_again: int = 2,
    ):
        self.detector = detector
        # The detector as the caller chose it (a name, a model folder, a Hub id, ":int8"), which its
        # card and measured note are found by; results record it. Default: the model's own name.
        self.detector_name = detector_name or detector.name
        self.face_detector = face_detector or FaceDetector()
        self.methods = list(methods)
        self.target = target
        self.options = options or ExplainOptions()
        self.frames, self.fps, self.limits = frames, fps, limits
        self.fallback_whole_image = fallback_whole_image
        self.max_explained = max_explained
        self.batch_size = batch_size
        self.faithfulness = faithfulness  # None: maps are not scored (deletion/insertion: 31 images a face at 4 steps)
        # A video verdict that is a close call, or a video with no face found, is sampled again at about
        # twice the frames, at most this many times (2: up to 4N - 3 frames from N); 0 never. Frames
        # sampled by rate (``fps``) are not.
        if isinstance(look_again, bool) or not isinstance(look_again, int) or look_again < 0:
            raise ValueError(f"look_again must be a non-negative integer, got {look_again!r}")
        self.look_again = look_again
        # Settings that hold for every input are refused here, once, not as each input's error.
        if isinstance(frames, bool) or not isinstance(frames, int) or frames < 1:
            raise ValueError(f"frames must be a positive integer, got {frames!r}")
        if fps is not None and not (isinstance(fps, (int, float)) and not isinstance(fps, bool) and 0 < fps < float("inf")):
            raise ValueError(f"fps must be a positive number, got {fps!r}")
        if self.methods:  # the class the maps explain: a label, an index, fake, real or predicted
            detector.resolve_target(target, np.zeros((0, len(detector.labels)), np.float32))

    # -- entry points -------------------------------------------------------------------------
    def analyze(
        self,
        source: str | Path | bytes,
        name: str | None = None,
        progress: Progress | None = None,
    ) -> AnalysisResult:
        """Analyse one file (or its bytes with a ``name``). Never raises for a bad input: the
        result's ``error`` holds a one-line message instead. Writes nothing: ``forensics.render``
        draws and writes the maps and reports."""
        return self.analyze_with_frames(source, name, progress)[0]

    def analyze_with_frames(self, source: str | Path | bytes, name: str | None = None,
                            progress: Progress | None = None) -> tuple[AnalysisResult, list[np.ndarray]]:
        """:meth:`analyze`, and the decoded RGB frames (one for an image) that ``forensics.render``
        draws the result on: apart from the result, which is serialised, and dropped once drawn."""
        frames: list[np.ndarray] = []
        label = name or (Path(source).name if not isinstance(source, bytes) else "upload")
        result = AnalysisResult(input=name or (label if isinstance(source, bytes) else str(source)), kind=None,
                                detector=self.detector_name, detector_version=self.detector.info.version)
        start = time.perf_counter()
        try:
            kind = media_kind(name or source) if not isinstance(source, bytes) or name else "image"
            result.kind = kind
            result.timings_ms.update(decode=0.0, faces=0.0, classify=0.0, explain=0.0)
            step = functools.partial(timed, result.timings_ms)
            _report(progress, 0.02, "decoding")
            load: Callable[[list[int]], VideoFrames] | None = None
            with step("decode"):
                if kind == "image" and is_animated(source, name=label, limits=self.limits):
                    kind = result.kind = "video"  # an animated GIF or WebP is a short video
                    video = load_animation(source, frames=self.frames, fps=self.fps, name=label, limits=self.limits)
                    load = functools.partial(load_animation, source, name=label, limits=self.limits)
                    result.media = _video_media(video, animated=True)
                elif kind == "image":
                    image = load_image(source, name=label, limits=self.limits)
                    video = None
                    result.media = MediaInfo(width=int(image.shape[1]), height=int(image.shape[0]),
                                             jpeg_quality=jpeg_quality(source, name=label, limits=self.limits))
                else:
                    video = load_video(source, frames=self.frames, fps=self.fps, name=label, limits=self.limits)
                    load = functools.partial(load_video, source, name=label, limits=self.limits)
                    result.media = _video_media(video)
            result.media.sha256 = (hashlib.sha256(source).hexdigest() if isinstance(source, bytes)
                                   else sha256_file(source))
            result.media.file_bytes = len(source) if isinstance(source, bytes) else Path(source).stat().st_size
            if video is None:
                frames = [image]
                self._run(result, frames, [None], [0], step, progress)
            else:
                seen: dict[int, _Seen] = {}
                self._run(result, video.frames, video.timestamps, video.indices, step, progress, seen)
                if self.look_again and load is not None:
                    video = self._look_again(result, lambda new: load(indices=new), video, step, progress, seen)
                elif load is not None and self.fps is None and (why := _worth_another_look(result)):
                    # said, so that a reader knows more frames were not tried (the app's box was unticked)
                    result.notes.append(f"{NOT_LOOKED_AGAIN} {why} over {len(video.indices)} sampled frames, "
                                        "and sampling the video again is off: more frames were not tried.")
                frames = video.frames
            if result.label == "no_face":
                self._small_faces(result, frames, step, progress)
            if self.methods and result.faces:  # none when no face was found (and no whole image asked for)
                self.explain_faces(result, progress)
        except ForensicsError as exc:
            result.error = str(exc)
        except Exception as exc:  # keep going: one broken input must not stop the others
            traceback.print_exc(file=sys.stderr)
            result.error = f"{label}: internal error: {type(exc).__name__}: {' '.join(str(exc).split())}"[:500]
        result.timings_ms["total"] = (time.perf_counter() - start) * 1000.0
        if result.error:
            result.fake_probability, result.label = None, None
        _report(progress, 1.0, "done")
        return result, frames

    # -- the pipeline ---------------------------------------------------------------------------
    def _run(self, result, frames, timestamps, indices, step, progress, seen: dict | None = None) -> None:
        """Faces, scores and the verdict of ``frames`` (explanations apart: :meth:`explain_faces`).
        ``seen``: what earlier passes over the same video found, by frame index (:class:`_Seen`); only
        frames not in it are searched for faces and scored, and it gains them."""
        det = self.detector
        seen = {} if seen is None else seen
        result.threshold = det.threshold
        result.faces, result.notes = [], []
        _report(progress, 0.15, "finding faces")
        with step("faces"):
            new = [k for k, i in enumerate(indices) if int(i) not in seen]
            found = self.face_detector.detect_batch([frames[k] for k in new]) if new else []
            for k, faces in zip(new, found):
                seen[int(indices[k])] = _Seen(list(faces))
            faces_per_frame = [seen[int(i)].faces for i in indices]
            if result.kind == "video":
                track_faces(faces_per_frame)  # all frames again: a new frame can join two tracks
            crops: list[FaceCrop] = []
            owners: list[int] = []
            for k in new:
                for crop in crop_faces(frames[k], reading_order(faces_per_frame[k]), det.input_size,
                                       **det.info.crop_options()):
                    crops.append(crop)
                    owners.append(k)
            if any(faces_per_frame):  # a sampled frame without a face is never drawn: freed now, in place
                for k, faces in enumerate(faces_per_frame):
                    if not faces and isinstance(frames, list):
                        frames[k] = None
            else:
                result.label = "no_face"
                result.notes.append(NO_FACE_NOTE)
                result.aggregation = "no face found"
                if not self.fallback_whole_image:
                    return
                crops = [whole_image_crop(frame, det.input_size) for frame in frames]
                owners = list(range(len(frames)))
                result.notes.append(WHOLE_IMAGE_NOTE)
        if crops:
            _report(progress, 0.35, f"classifying {len(crops)} face(s)")
            with step("classify"):
                probabilities = det.predict_crops([c.image for c in crops], batch_size=16)
                temperatures = [1.0 if c.fallback else size_temperature(det.info.size_temperatures, _side(c.crop_box))
                                for c in crops]
                probabilities = temper(probabilities, temperatures)  # small faces: calibrated for their size
                fake = det.fake_probability(probabilities)
            # Scores are kept by frame for a later pass; the whole frames, scored on request, are not.
            scored = defaultdict(list) if crops[0].fallback else {k: seen[int(indices[k])].scored for k in set(owners)}
            for crop, owner, probs, p_fake, t in zip(crops, owners, probabilities, fake, temperatures):
                scored[owner].append((crop, probs, float(p_fake), float(t)))
            if crops[0].fallback:
                for k in sorted(scored):
                    for crop, probs, p_fake, t in scored[k]:
                        result.faces.append(self._face_result(crop, int(indices[k]), timestamps[k], probs, p_fake, t))
        if not result.faces:
            for k in range(len(indices)):
                for crop, probs, p_fake, t in seen[int(indices[k])].scored:
                    result.faces.append(self._face_result(crop, int(indices[k]), timestamps[k], probs, p_fake, t))
        if result.kind == "video":
            result.fake_probability, result.tracks, result.aggregation = aggregate_video(result.faces, len(frames))
        else:
            result.fake_probability, result.aggregation = aggregate_image(result.faces)
        if not result.faces[0].fallback:
            result.label = "fake" if result.fake_probability >= det.threshold else "real"
            result.uncertainty, close_call = _close_call(result, det)
            for caution in (close_call, _small_face_caution(result, det), _jpeg_caution(result, det),
                            _compression_caution(result, det)):
                if caution:
                    result.notes.append(caution)

    def _face_result(self, crop: FaceCrop, frame: int, timestamp, probs, p_fake: float, t: float) -> FaceResult:
        det, face = self.detector, crop.face
        return FaceResult(
            frame=frame,
            track=None if face is None or face.track is None else face.track + 1,  # people from 1
            box=[round(float(v), 1) for v in face.box] if face is not None else None,
            face_confidence=round(float(face.confidence), 4) if face is not None else None,
            fake_probability=p_fake,
            probabilities={label: float(p) for label, p in zip(det.labels, probs)},
            crop_box=[int(v) for v in crop.crop_box],
            timestamp=None if timestamp is None else round(float(timestamp), 3),
            fallback=crop.fallback,
            fake_kinds={det.labels[i]: float(probs[i]) for i in sorted(det.fake_indices, key=lambda i: -probs[i])}
            if len(det.fake_indices) > 1 else {},
            crop=crop.image,
            size_temperature=round(t, 4),
        )

    def _look_again(self, result: AnalysisResult, load: Callable[[list[int]], VideoFrames], video: VideoFrames,
                    step, progress, seen: dict) -> VideoFrames:
        """A video whose verdict is a close call, or in which no face was found, is sampled again at
        about twice the frames (N, then 2N - 1, 4N - 3, ...: each pass keeps the frames already
        sampled and adds the ones between), up to ``look_again`` times or until there is a verdict
        that is not close; only the new frames are decoded, searched and scored. Returns the frames
        the verdict now rests on."""
        if _worth_another_look(result) is None:
            return video
        passes = [_pass_record(result, len(video.frames))]
        while len(passes) <= self.look_again and self.fps is None and _worth_another_look(result):
            have = [int(i) for i in video.indices]
            wanted = sample_frame_indices(video.frame_count, frames=min(2 * len(have) - 1, self.limits.max_frames),
                                          times=video.frame_times)
            new = sorted(set(wanted) - set(have))
            if not new:  # every frame is already sampled, or the limit is reached
                break
            _report(progress, 0.4, f"{_worth_another_look(result)} at {len(have)} frames: sampling {len(new)} more")
            again = None if progress is None else (lambda f, text: progress(0.4 + 0.1 * f, f"looking again: {text}"))
            try:
                with step("decode"):
                    more = load(new)
            except ForensicsError:  # frames the first look could not reach either: the verdict stands as it is
                break
            order = sorted(range(len(have) + len(more.indices)),
                           key=lambda k: (have + [int(i) for i in more.indices])[k])
            frames = video.frames + more.frames
            stamps = video.timestamps + more.timestamps
            every = have + [int(i) for i in more.indices]
            video = dataclasses.replace(video, frames=[frames[k] for k in order], indices=[every[k] for k in order],
                                        timestamps=[stamps[k] for k in order],
                                        frame_count=max(video.frame_count, more.frame_count))
            self._run(result, video.frames, video.timestamps, video.indices, step, again, seen)
            passes.append(_pass_record(result, len(video.frames)))
        if len(passes) > 1:
            for key, value in _sampled(video).items():
                setattr(result.media, key, value)
            result.uncertainty["passes"] = passes
            result.notes.insert(0, _looked_again_note(passes))
        return video

    def _small_faces(self, result: AnalysisResult, frames: Sequence[np.ndarray | None], step, progress) -> None:
        """With no face found, MTCNN searches again below the smallest face it hands the detector
        (down to :data:`SMALL_FACE_SEARCH_PX`, on at most :data:`SMALL_FACE_SEARCH_FRAMES` of the
        sampled frames): a person too small to judge is not "no face", and the note says which it
        was. The verdict stays "no face": such faces are not scored."""
        finder = self.face_detector
        floor = getattr(finder, "min_face_size", None)
        if not isinstance(finder, FaceDetector) or not isinstance(floor, int) or floor <= SMALL_FACE_SEARCH_PX:
            return
        positions = [k for k, frame in enumerate(frames) if frame is not None]
        if len(positions) > SMALL_FACE_SEARCH_FRAMES:
            positions = [positions[int(round(i))] for i in np.linspace(0, len(positions) - 1, SMALL_FACE_SEARCH_FRAMES)]
        held = [frames[k] for k in positions]
        if not held:
            return
        reach = max(finder.search_floor(frame.shape, SMALL_FACE_SEARCH_PX) for frame in held)
        if reach >= floor:  # an image so large that its detection copy cannot show a smaller face
            return
        _report(progress, 0.5, f"no face of {floor} px or more: looking for smaller ones")
        with step("faces"):
            found = finder.detect_batch(held, min_face_size=SMALL_FACE_SEARCH_PX)
        sides = [min(f.box[2] - f.box[0], f.box[3] - f.box[1]) for faces in found for f in faces]  # as MTCNN's floor
        if not sides:
            return
        from forensics.detector_notes import smallest_measured_face

        where = (f"{len(sides)} face(s) under {floor} px across in this image" if result.kind == "image" else
                 f"faces under {floor} px across in {sum(bool(faces) for faces in found)} of the {len(held)} sampled frames "
                 "it searched again")
        measured = smallest_measured_face(_detector_metrics(self.detector))
        figure = ("" if measured is None else
                  f"; on faces {measured[0]} px across, the smallest it was measured on (H.264, CRF {measured[1]}), "
                  f"its ROC-AUC is {measured[2]:.2f}")
        result.notes.insert(0, f"{SMALL_FACES_ONLY} searching down to {reach:.0f} px, MTCNN finds {where} "
                               f"(the largest {max(sides):.0f} px): too small for the detector to judge{figure}.")
        result.aggregation = f"no face of {floor} px or more (smaller ones found)"
        indices = result.media.sampled_indices or [0]  # the frames' own numbers in the video (0 for an image)
        result.small_faces = [{"frame": int(indices[k]),
                               "box": [round(float(v), 1) for v in face.box], "confidence": round(face.confidence, 4)}
                              for k, faces in zip(positions, found) for face in faces]

    def explain_faces(self, result: AnalysisResult, progress: Progress | None = None) -> None:
        """(Re)compute the maps of an analysed result's faces with this analyzer's methods, target
        and options; faces are neither detected nor classified again (the app's controls use it).
        ``timings_ms``: ``explain`` is the explanation passes alone, ``faithfulness`` their scoring."""
        faces = result.faces
        chosen = sorted(range(len(faces)), key=lambda i: -faces[i].fake_probability)[: self.max_explained]
        skipped: dict[str, str] = {}
        for face in faces:
            face.heatmaps, face.maps, face.explained_class = {}, {}, None
            face.faithfulness, face.most_faithful = {}, None
        result.timings_ms["explain"] = 0.0
        if self.faithfulness is not None:
            result.timings_ms["faithfulness"] = 0.0
        for start in range(0, len(chosen), self.batch_size):
            part = sorted(chosen)[start : start + self.batch_size]
            doing = "explaining and scoring the maps of" if self.faithfulness is not None else "explaining"
            _report(progress, 0.5 + 0.45 * start / max(len(chosen), 1),
                    f"{doing} faces {start + 1}-{start + len(part)}")
            with timed(result.timings_ms, "explain"):
                batch = self.detector.preprocess([faces[i].crop for i in part])
                explanation = explain(self.detector, batch, self.methods, self.target, self.options)
            skipped.update(explanation.skipped)
            for j, i in enumerate(part):
                faces[i].heatmaps = {m: maps[j] for m, maps in explanation.maps.items()}
                faces[i].explained_class = self.detector.labels[explanation.targets[j]]
                if self.faithfulness is not None and faces[i].heatmaps:
                    options = dataclasses.replace(self.faithfulness, seed=self.faithfulness.seed + i)  # own random map
                    target = explanation.targets[j]  # the crop's own probability is known: not run again
                    original = (faces[i].probabilities.get(self.detector.labels[target])  # unless tempered for size
                                if faces[i].size_temperature == 1.0 else None)
                    with timed(result.timings_ms, "faithfulness"):
                        scores = score_face(self.detector, batch[j], faces[i].heatmaps, target, options,
                                            original=original).to_dict()
                    faces[i].faithfulness, faces[i].most_faithful = scores, most_faithful(scores)
        result.explanations = Explanations(
            explained_faces=len(chosen),
            methods=[m for m in self.methods if m not in skipped],
            skipped=skipped,
            target="fake" if self.target is None else self.target,
            head_fusion=self.options.head_fusion,
            discard_ratio=self.options.discard_ratio,
            # Without gradients (ONNX builds) attention maps are class-agnostic whatever was asked.
            class_weighted=self.options.class_weighted and getattr(self.detector, "differentiable", True),
            note=(f"explained the {len(chosen)} most suspicious of {len(faces)} faces"
                  if len(chosen) < len(faces) else None),
        )
        if self.faithfulness is not None:
            result.explanations.faithfulness = {
                "metric": "deletion/insertion AUC (RISE) of P(explained class); removed pixels are "
                          + self.faithfulness.describe(),
                "steps": self.faithfulness.steps, "baseline": "random map on the patch grid, same face",
                "better": "lower deletion, higher insertion",
                "scored_by": (scoring_detector(self.detector).name if self.faithfulness.runtime == "auto"
                              else self.detector.name)}


@dataclasses.dataclass
class _Seen:
    """One sampled frame of a video, as a pass found it: its faces (tracked anew by each pass) and the
    scored crops of them, (crop, class probabilities, P(fake), size temperature) each."""

    faces: list
    scored: list = dataclasses.field(default_factory=list)


def _worth_another_look(result: AnalysisResult) -> str | None:
    """Why a video's verdict is worth sampling again (``Analyzer.look_again``): "no face" found in the
    sampled frames, a "close call", or None."""
    if result.label == "no_face":
        return "no face"
    if result.fake_probability is not None and result.uncertainty.get("close_call"):
        return "close call"
    return None


def _pass_record(result: AnalysisResult, frames: int) -> dict:
    """A pass over a video's sampled frames, as ``uncertainty["passes"]`` lists it: its frames, the
    frames in which a face was found, P(fake) (None without a face) and whether it was a close call."""
    found = result.label != "no_face"
    sampling = sampling_error(result) if found else None
    return {"frames": int(frames),
            "frames_with_faces": len({f.frame for f in result.faces}) if found else 0,
            "fake_probability": round(float(result.fake_probability), 6) if found else None,
            "sampling_error": None if sampling is None else round(sampling[2], 4),
            "close_call": bool(found and result.uncertainty.get("close_call"))}


def _looked_again_note(passes: list[dict]) -> str:
    """The note of a video sampled again: why, at which frames, and what the verdict rests on."""
    first, last = passes[0], passes[-1]
    why = (f"no face was found in {first['frames']} sampled frames" if first["fake_probability"] is None else
           f"P(fake) {first['fake_probability']:.3f} over {first['frames']} sampled frames was a close call")
    if last["fake_probability"] is None:
        rests = f"still no face in {last['frames']}."
    elif first["fake_probability"] is None:
        rests = (f"faces were found in {last['frames_with_faces']} of the {last['frames']} (P(fake) "
                 f"{last['fake_probability']:.3f}" + (", a close call)." if last["close_call"] else ")."))
    else:
        rests = (f"the verdict rests on {last['frames']} (P(fake) {last['fake_probability']:.3f}"
                 + (", still a close call)." if last["close_call"] else ")."))
    return (f"{LOOKED_AGAIN} {why}, so the video was sampled again at "
            f"{', '.join(str(p['frames']) for p in passes[1:])} frames; {rests}")


def _video_media(video: VideoFrames, animated: bool = False) -> MediaInfo:
    pixels = float(video.fps) * video.width * video.height
    bpp = (round(video.bitrate_kbps * 1000.0 / pixels, 5)
           if video.bitrate_kbps and pixels > 0 and not animated else None)
    return MediaInfo(width=video.width, height=video.height, fps=round(float(video.fps), 3),
                     frame_count=int(video.frame_count), duration_s=round(float(video.duration_s), 3),
                     variable_frame_rate=video.frame_times is not None, **_sampled(video),
                     animated_image=animated, codec=None if animated else video.codec, bits_per_pixel=bpp)


def _sampled(video: VideoFrames) -> dict:
    """The sampled frames as ``MediaInfo`` records them: how many, their numbers and their times."""
    return {"sampled_frames": len(video.frames), "sampled_indices": [int(i) for i in video.indices],
            "sampled_times": [round(float(t), 4) for t in video.timestamps]}


def _report(progress: Progress | None, fraction: float, text: str) -> None:
    if progress is not None:
        progress(fraction, text)


@contextlib.contextmanager
def timed(timings: dict[str, float], key: str):
    """Add the wall time of the ``with`` block to ``timings[key]``, in milliseconds."""
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[key] = timings.get(key, 0.0) + (time.perf_counter() - start) * 1000.0


__all__ = ["AnalysisResult", "Analyzer", "FaceResult", "TrackSummary", "aggregate_image", "aggregate_video",
           "face_number", "reading_order", "timed"]
