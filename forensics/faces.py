"""Face detection, cropping and tracking: the step that turns a picture into face crops.

Deepfake detectors judge faces, not whole pictures: a swapped face is a small region of a frame,
and its artefacts (blending seams, mismatched texture) are lost when the whole frame is shrunk to
a classifier's input. This module finds every face with MTCNN (``facenet_pytorch``; its weights
ship inside the wheel, so nothing is downloaded), cuts square crops with context around each face
(blending boundaries lie at the face's edge, so the crop must reach past it), and links faces
across sampled video frames into tracks so that per-frame scores can be pooled per person.

Coordinates are always those of the source image, in pixels, ``(x0, y0, x1, y1)``.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from typing import Any, Sequence

import cv2
import numpy as np

from forensics import mtcnn as mtcnn_pass
from forensics.core import DetectorError, MediaError
from forensics.core.framing import FRAMING_TEXT, FRAMINGS, check_framing

__all__ = [
    "FRAMINGS",
    "FRAMING_TEXT",
    "Face",
    "FaceCrop",
    "FaceDetector",
    "box_iou",
    "check_framing",
    "crop_face",
    "crop_faces",
    "face_region",
    "landmark_box",
    "square_crop_box",
    "track_faces",
    "whole_image_crop",
]

Box = tuple[float, float, float, float]

# MTCNN's P-Net scans 12x12 windows: asking it for faces smaller than that makes it upsample the
# whole image, which would undo the speed gained by downscaling large images for detection.
_MTCNN_MIN_WINDOW = 12.0

# Faces cut by the image border are kept when at least this share of their box is inside.
_MIN_VISIBLE = 1.0 / 3.0

# How a crop is framed around a face (``FRAMINGS``, in forensics.core.framing): "box" squares MTCNN's
# box; "landmarks" squares a region scaled from the five landmarks. MTCNN's box depends on the
# picture around the face: relative to the eyes and mouth it is 16% tighter on UTKFace's tight
# 200x200 crops than on FFHQ's full-head images, and centred lower, so box crops frame the same face
# differently by source.
# Landmark framing: the larger of the eye distance and the eyes-to-mouth distance is this share of
# the side (between UTKFace's MTCNN boxes, 0.43, and FFHQ's, 0.37); the side stays within
# 0.6..1.6 box sides so that a bad landmark cannot shrink or blow up a crop.
LANDMARK_FACE_SHARE = 0.40
_LANDMARK_SIDE_LIMITS = (0.6, 1.6)


@dataclass
class Face:
    """One detected face, in source-image pixel coordinates.

    ``landmarks`` are MTCNN's five points (left eye, right eye, nose, mouth left, mouth right) as
    seen in the image (the subject's right eye is the image's left eye). They are not clipped: a
    face cut by the image border keeps its true geometry, which alignment needs.
    """

    box: Box
    confidence: float
    landmarks: list[tuple[float, float]] = field(default_factory=list)
    frame: int = 0
    track: int | None = None

    @property
    def width(self) -> float:
        """Box width in pixels."""
        return float(self.box[2] - self.box[0])

    @property
    def height(self) -> float:
        """Box height in pixels."""
        return float(self.box[3] - self.box[1])

    @property
    def size(self) -> float:
        """The box's shorter side: the number that decides whether a face is big enough to judge."""
        return min(self.width, self.height)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able form for reports (rounded: sub-pixel digits are noise, not information)."""
        return {
            "box": [round(float(v), 1) for v in self.box],
            "confidence": round(float(self.confidence), 4),
            "landmarks": [[round(float(x), 1), round(float(y), 1)] for x, y in self.landmarks],
            "frame": int(self.frame),
            "track": None if self.track is None else int(self.track),
        }


@dataclass
class FaceCrop:
    """A square RGB uint8 crop ready for a detector.

    ``crop_box`` is the square region in source-image coordinates; it may reach past the image,
    in which case that part of ``image`` is black padding. ``face`` is ``None`` and ``fallback``
    is ``True`` when no face was found and the crop is the whole-image fallback, so reports can
    say the score does not come from a face. ``margin`` is the context margin the crop was cut with
    (lower than asked where ``fit_inside`` fitted it into the image; ``None`` for the fallback).
    """

    face: Face | None
    image: np.ndarray
    crop_box: tuple[int, int, int, int]
    fallback: bool = False
    margin: float | None = None


def _check_image(image: Any, what: str = "image") -> np.ndarray:
    """Reject anything that is not an RGB uint8 ``H x W x 3`` array with a one-line reason.

    MTCNN silently gives nonsense on float or BGRA input, so the mistake is caught here.
    """
    if not isinstance(image, np.ndarray):
        raise MediaError(f"{what}: expected a numpy array, got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise MediaError(f"{what}: expected an RGB image of shape HxWx3, got shape {image.shape}")
    if image.dtype != np.uint8:
        raise MediaError(f"{what}: expected uint8 pixels, got {image.dtype}")
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise MediaError(f"{what}: image is empty (shape {image.shape})")
    return image


#: Grey-level span (1st to 99th percentile, of 255) under which an image is stretched for face finding.
CONTRAST_SPAN = 128


def stretched_contrast(image: np.ndarray, span: float = CONTRAST_SPAN) -> np.ndarray:
    """``image`` (RGB uint8) with its grey levels' 1st-99th percentile stretched to 0-255 when they span
    less than ``span``; the image itself otherwise. What MTCNN looks at, never what a detector scores."""
    step = max(1, min(image.shape[:2]) // 256)  # a sparse sample reads the levels of a large frame
    grey = cv2.cvtColor(np.ascontiguousarray(image[::step, ::step]), cv2.COLOR_RGB2GRAY)
    lo, hi = (float(v) for v in np.percentile(grey, (1, 99)))
    if hi - lo >= span or hi - lo < 1.0:  # wide enough already, or a flat image with nothing to find
        return image
    lut = np.clip((np.arange(256, dtype=np.float32) - lo) * (255.0 / (hi - lo)), 0, 255).astype(np.uint8)
    return lut[image]


class FaceDetector:
    """Finds every face in images or video frames with MTCNN.

    MTCNN is built on first use, not in ``__init__``: building it loads three networks, and a
    detector object is often created (by a CLI or UI) long before, or without, any detection.
    Once built it is reused. Calls are serialised by a lock, because the per-call minimum face
    size is set on the shared MTCNN object.

    Parameters:
        min_face_size: faces whose shorter box side is under this many pixels (source image) are
            dropped: too few pixels for a deepfake detector to judge.
        confidence: faces with an MTCNN probability under this are dropped. Sharp faces score
            > 0.99; blurred or half-hidden real faces 0.94-0.98, while face-like textures reach
            0.8-0.94 (a dark desk corner in obama-1080p.jpg scores 0.936). 0.9 favours finding
            faces; raise it to 0.95 where a false face costs more than a missed one.
        detect_max_side: images whose longer side exceeds this are downscaled for detection only
            (MTCNN's cost grows with pixel count; faces large enough to judge stay findable).
            Boxes and landmarks are mapped back to the source image.
        thresholds: MTCNN's per-stage (P-, R-, O-Net) candidate thresholds. The first two are
            below facenet-pytorch's (0.6, 0.7) so that partly hidden and border-cut faces reach
            the final stage; ``confidence`` still decides what is kept.
        device: torch device for MTCNN.
        edge_pad: black border, as a share of the (downscaled) image's shorter side, added on
            every side before detection. MTCNN's sliding windows cannot reach past the image,
            so faces cut by its edge (common in selfies and video) are otherwise missed. Costs
            about (1 + 2 * edge_pad)^2 times the pixels; 0 turns it off.
        stretch_contrast: an image whose grey levels span less than :data:`CONTRAST_SPAN` (1st to
            99th percentile) is stretched to the full range for face finding only (the crops are
            cut from the image as it is). MTCNN misses faces in dark, flat footage: in 16 frames
            of the labelled DFDC clip ``dfdc_abofeumbvv.mp4`` (grey levels 7-69) it found the face
            at 0.9 in 9 frames as stored and in none after H.264 at CRF 32; stretched, in 16 and
            16. No photo of ``../shared/data/photos`` spans less than 163, so none is touched.
    """

    def __init__(
        self,
        min_face_size: int = 40,
        confidence: float = 0.9,
        detect_max_side: int = 1280,
        thresholds: Sequence[float] = (0.5, 0.6, 0.7),
        device: str = "cpu",
        edge_pad: float = 0.2,
        stretch_contrast: bool = True,
    ) -> None:
        if not min_face_size >= 1:
            raise ValueError(f"min_face_size must be at least 1, got {min_face_size}")
        if not 0.0 <= confidence <= 1.0:
            raise ValueError(f"confidence must be within [0, 1], got {confidence}")
        if not detect_max_side >= 32:
            raise ValueError(f"detect_max_side must be at least 32, got {detect_max_side}")
        thresholds = tuple(float(t) for t in thresholds)
        if len(thresholds) != 3 or not all(0.0 <= t <= 1.0 for t in thresholds):
            raise ValueError(f"thresholds must be three values within [0, 1], got {thresholds}")
        self.min_face_size = int(min_face_size)
        self.confidence = float(confidence)
        self.detect_max_side = int(detect_max_side)
        self.thresholds = thresholds
        self.device = str(device)
        if not 0.0 <= edge_pad <= 1.0:
            raise ValueError(f"edge_pad must be within [0, 1], got {edge_pad}")
        self.edge_pad = float(edge_pad)
        self.stretch_contrast = bool(stretch_contrast)
        self._mtcnn: Any = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return (
            f"FaceDetector(min_face_size={self.min_face_size}, confidence={self.confidence}, "
            f"detect_max_side={self.detect_max_side}, thresholds={self.thresholds}, "
            f"device={self.device!r}, edge_pad={self.edge_pad}, stretch_contrast={self.stretch_contrast})"
        )

    def _get_mtcnn(self) -> Any:
        """Build MTCNN once (caller holds the lock)."""
        if self._mtcnn is None:
            try:
                import torch
                from facenet_pytorch import MTCNN

                mtcnn = MTCNN(
                    keep_all=True,
                    select_largest=False,
                    post_process=False,
                    min_face_size=self.min_face_size,
                    thresholds=list(self.thresholds),
                    device=torch.device(self.device),
                )
                mtcnn.eval()
            except Exception as exc:  # import errors, bad device names, missing weights
                raise DetectorError(f"MTCNN face detector could not be built: {exc}") from exc
            self._mtcnn = mtcnn
        return self._mtcnn

    def search_floor(self, shape: Sequence[int], min_face_size: int | None = None) -> float:
        """The smallest face side (source pixels) a search for ``min_face_size`` (the detector's own by
        default) can find in an image of ``shape``: larger than asked where the image is downscaled for
        detection so far that MTCNN's 12-pixel window is the limit."""
        smallest = float(self.min_face_size if min_face_size is None else min_face_size)
        side = max(int(shape[0]), int(shape[1]))
        scale = min(1.0, self.detect_max_side / side) if side > 0 else 1.0
        return smallest if scale >= 1.0 else max(smallest, _MTCNN_MIN_WINDOW / scale)

    def detect(self, image: np.ndarray) -> list[Face]:
        """All faces in one RGB uint8 image, left to right; an empty list when there is none."""
        return self.detect_batch([image], batch_size=1)[0]

    def detect_batch(self, images: Sequence[np.ndarray], batch_size: int = 2,
                     min_face_size: int | None = None) -> list[list[Face]]:
        """All faces in each image; ``result[i]`` belongs to ``images[i]`` (``Face.frame == i``).
        ``min_face_size`` overrides the detector's own for this call (a finer, costlier search).

        Video frames share one size, so they are stacked and run through MTCNN together (one
        image pyramid pass per batch instead of per frame). Images of different sizes are
        grouped by size (MTCNN only stacks equal sizes), so mixed input works too. The default
        batch of 2 is as fast here as 8 on 1080p frames and needs about 400 MB less memory.
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if min_face_size is not None and not min_face_size >= 1:
            raise ValueError(f"min_face_size must be at least 1, got {min_face_size}")
        smallest = self.min_face_size if min_face_size is None else int(min_face_size)
        images = list(images)
        results: list[list[Face]] = [[] for _ in images]
        if not images:
            return results

        # Grouping by source shape also groups by detection shape, scale and padding, which one
        # MTCNN batch needs. A batch is downscaled and padded for detection when its turn comes:
        # 16 padded 1080p frames prepared up front held about 75 MB more at the peak.
        groups: dict[tuple[int, int], list[int]] = {}
        for i, image in enumerate(images):
            _check_image(image, f"image {i}")
            groups.setdefault(image.shape[:2], []).append(i)

        for indices in groups.values():
            for start in range(0, len(indices), batch_size):
                chunk = indices[start : start + batch_size]
                prepared = [self._detection_image(images[i]) for i in chunk]
                _, sx, sy, pad = prepared[0]  # the same for every image of one shape
                raw = self._run_mtcnn([small for small, _, _, _ in prepared], min(sx, sy), smallest)
                for i, (boxes, probs, points) in zip(chunk, raw):
                    results[i] = self._to_faces(images[i], boxes, probs, points, (sx, sy), pad, i, smallest)
        return results

    def _detection_image(self, image: np.ndarray) -> tuple[np.ndarray, float, float, int]:
        """The image MTCNN sees: (image, x factor, y factor, border) from source pixels.

        Downscaled so its longer side is at most ``detect_max_side``, then given a black border
        of ``edge_pad`` times its shorter side on every side.
        """
        h, w = image.shape[:2]
        sx = sy = 1.0
        small = image
        if max(h, w) > self.detect_max_side:
            scale = self.detect_max_side / max(h, w)
            size = (max(1, round(w * scale)), max(1, round(h * scale)))
            small = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
            # The exact per-axis ratios applied (rounding differs per axis), so boxes mapped
            # back line up with the source.
            sx, sy = size[0] / w, size[1] / h
        if self.stretch_contrast:
            small = stretched_contrast(small)
        pad = int(round(self.edge_pad * min(small.shape[:2])))
        if pad > 0:
            small = cv2.copyMakeBorder(small, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=(0, 0, 0))
        return small, sx, sy, pad

    def _run_mtcnn(
        self, images: list[np.ndarray], scale: float, smallest: int
    ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """MTCNN on same-size images; per image (boxes Nx4, probs N, points Nx5x2), N may be 0.

        On the CPU the pass is ``forensics.mtcnn.detect``: facenet-pytorch's, bit for bit, with its
        area resizes taken from one table of sums (on a 16-frame 1080p video, face finding takes
        about 40% less CPU time). Elsewhere MTCNN's own ``detect`` runs; it returns ``None`` for an
        image without faces and packs batch results in object arrays whose layout depends on how
        many faces each image has; this normalises both.
        """
        with self._lock:
            mtcnn = self._get_mtcnn()
            # A face of ``smallest`` source pixels is smallest*scale detection pixels.
            min_size = smallest * scale
            if scale < 1.0:
                min_size = max(_MTCNN_MIN_WINDOW, min_size)
            mtcnn.min_face_size = min_size
            if min(images[0].shape[:2]) < min_size:  # smaller than the smallest face searched for: MTCNN's
                return [_normalise(None, None, None) for _ in images]  # pyramid would be empty (and its pass fail)
            try:
                if self.device == "cpu":  # the same pass, its area resizes from one table of sums
                    import torch

                    with torch.no_grad():
                        found = mtcnn_pass.detect(np.stack(images), mtcnn.min_face_size, mtcnn.pnet, mtcnn.rnet,
                                                  mtcnn.onet, mtcnn.thresholds, mtcnn.factor)
                    per_image = [(box[:, :4], box[:, 4], points) for box, points in found]
                elif len(images) == 1:
                    boxes, probs, points = mtcnn.detect(images[0], landmarks=True)
                    per_image = [(boxes, probs, points)]
                else:
                    batch = np.ascontiguousarray(np.stack(images))
                    try:
                        boxes, probs, points = mtcnn.detect(batch, landmarks=True)
                        per_image = [(boxes[k], probs[k], points[k]) for k in range(len(images))]
                    except ValueError:
                        # numpy can refuse to pack ragged per-image results into MTCNN's
                        # object arrays; detecting one by one gives the same boxes.
                        per_image = [mtcnn.detect(img, landmarks=True) for img in images]
            except MemoryError as exc:
                raise DetectorError(f"MTCNN ran out of memory on {len(images)} image(s): {exc}") from exc
        return [_normalise(b, p, q) for b, p, q in per_image]

    def _to_faces(
        self,
        image: np.ndarray,
        boxes: np.ndarray,
        probs: np.ndarray,
        points: np.ndarray,
        scale: tuple[float, float],
        pad: int,
        index: int,
        smallest: int,
    ) -> list[Face]:
        """Map detections back to source pixels, filter, and sort left to right."""
        h, w = image.shape[:2]
        sx, sy = scale
        boxes = (boxes - pad) / np.array([sx, sy, sx, sy])
        points = (points - pad) / np.array([sx, sy])
        faces: list[Face] = []
        for box, prob, pts in zip(boxes, probs, points):
            if not np.isfinite(prob) or prob < self.confidence:
                continue
            # Judge size on the unclipped box: a big face cut by the border is still a big face.
            bw, bh = box[2] - box[0], box[3] - box[1]
            if min(bw, bh) < smallest:
                continue
            x0, x1 = (float(np.clip(v, 0, w)) for v in (box[0], box[2]))
            y0, y1 = (float(np.clip(v, 0, h)) for v in (box[1], box[3]))
            # A face mostly in the black border leaves too little to judge.
            if (x1 - x0) * (y1 - y0) < _MIN_VISIBLE * bw * bh:
                continue
            faces.append(
                Face(
                    box=(x0, y0, x1, y1),
                    confidence=float(prob),
                    landmarks=[(float(x), float(y)) for x, y in pts],
                    frame=index,
                )
            )
        faces.sort(key=lambda f: (f.box[0], f.box[1]))
        return faces


def _normalise(boxes: Any, probs: Any, points: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """MTCNN's per-image output as float arrays (N x 4, N, N x 5 x 2); N = 0 for ``None``."""
    if boxes is None or len(boxes) == 0:
        return np.zeros((0, 4)), np.zeros((0,)), np.zeros((0, 5, 2))
    boxes = np.asarray(np.stack([np.asarray(b, dtype=np.float64) for b in boxes]), dtype=np.float64)
    probs = np.asarray([np.nan if p is None else float(p) for p in probs], dtype=np.float64)
    if points is None:
        points = np.full((len(boxes), 5, 2), np.nan)
    else:
        points = np.asarray(np.stack([np.asarray(p, dtype=np.float64) for p in points]), dtype=np.float64)
    return boxes.reshape(-1, 4), probs.reshape(-1), points.reshape(-1, 5, 2)


def square_crop_box(
    box: Sequence[float], image_shape: Sequence[int], margin: float = 0.3
) -> tuple[int, int, int, int]:
    """The square region to cut around a face: side ``max(w, h) * (1 + margin)``, centred on it.

    A square keeps the face's aspect ratio when resized to a detector's square input; the margin
    keeps the face's border (where blending seams lie) inside the crop. Along each axis the
    square is shifted to lie inside the image when it fits, so real pixels are used instead of
    padding; when it is larger than the image along an axis it stays centred there, and
    ``crop_face`` pads the part outside.
    """
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    x0, y0, x1, y1 = (float(v) for v in box)
    img_h, img_w = int(image_shape[0]), int(image_shape[1])
    side = max(1, int(round(max(x1 - x0, y1 - y0) * (1.0 + margin))))

    def place(centre: float, limit: int) -> int:
        start = int(math.floor(centre - side / 2.0 + 0.5))
        if side <= limit:
            start = min(max(start, 0), limit - side)
        return start

    left = place((x0 + x1) / 2.0, img_w)
    top = place((y0 + y1) / 2.0, img_h)
    return left, top, left + side, top + side


def _cut_square(image: np.ndarray, crop_box: tuple[int, int, int, int], size: int) -> np.ndarray:
    """Cut ``crop_box`` from ``image`` (black outside it) and resize to ``size x size``."""
    if size < 1:
        raise ValueError(f"crop size must be at least 1, got {size}")
    img_h, img_w = image.shape[:2]
    left, top, right, bottom = crop_box
    side = right - left
    inner = image[max(top, 0) : min(bottom, img_h), max(left, 0) : min(right, img_w)]
    if inner.size == 0:  # the square misses the image entirely
        square = np.zeros((side, side, 3), dtype=np.uint8)
    else:
        square = cv2.copyMakeBorder(
            np.ascontiguousarray(inner),
            max(0, -top),
            max(0, bottom - img_h),
            max(0, -left),
            max(0, right - img_w),
            cv2.BORDER_CONSTANT,
            value=(0, 0, 0),
        )
    return np.ascontiguousarray(resize_square(square, size))


def resize_square(image: np.ndarray, size: int) -> np.ndarray:
    """A square image at ``size x size``: the one resize rule of crops, for inference and training.
    INTER_AREA averages when shrinking (no aliasing that a detector could mistake for artefacts);
    INTER_CUBIC is the smoother choice when enlarging."""
    if image.shape[:2] == (size, size):
        return image
    return cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA if image.shape[0] > size else cv2.INTER_CUBIC)


def landmark_box(face: Face) -> Box:
    """A square face region scaled from the landmarks rather than MTCNN's box: centred halfway
    between the eyes' centre and the mouth's centre, its side makes the larger of the eye distance
    and the eyes-to-mouth distance ``LANDMARK_FACE_SHARE`` of it (the larger of the two, so that a
    turned head, whose eyes close up, or a tilted one, whose eyes and mouth close up, keeps its
    size). Falls back to the box when the five landmarks are missing or not finite."""
    points = np.asarray(face.landmarks, dtype=np.float64)
    if points.shape != (5, 2) or not np.isfinite(points).all():
        return face.box
    eyes, mouth = (points[0] + points[1]) / 2.0, (points[3] + points[4]) / 2.0
    span = max(float(np.hypot(*(points[1] - points[0]))), float(np.hypot(*(mouth - eyes))))
    box_side = max(face.width, face.height)
    low, high = _LANDMARK_SIDE_LIMITS
    side = float(np.clip(span / LANDMARK_FACE_SHARE, low * box_side, high * box_side))
    cx, cy = (eyes + mouth) / 2.0
    return (float(cx - side / 2.0), float(cy - side / 2.0), float(cx + side / 2.0), float(cy + side / 2.0))


def face_region(face: Face, framing: str = "box") -> Box:
    """The region a crop is framed around: MTCNN's box, or ``landmark_box`` (see ``FRAMINGS``)."""
    return face.box if check_framing(framing) == "box" else landmark_box(face)


def fit_region(region: Box, image_shape: Sequence[int], margin: float, shrink: bool = True) -> tuple[Box, float]:
    """``region`` and ``margin`` made to fit inside the image, as the training crops are
    (``training.data.FaceCropCache``'s ``fit_inside``): with ``shrink``, a square region larger than the
    image's shorter side is shrunk about its centre to that side; the margin is lowered so that the
    margined square fits too. Tightly cropped images then give a face, not a face on a black surround."""
    x0, y0, x1, y1 = (float(v) for v in region)
    img_h, img_w = int(image_shape[0]), int(image_shape[1])
    if shrink and x1 - x0 > min(img_h, img_w):
        cx, cy, side = (x0 + x1) / 2.0, (y0 + y1) / 2.0, float(min(img_h, img_w))
        x0, y0, x1, y1 = cx - side / 2.0, cy - side / 2.0, cx + side / 2.0, cy + side / 2.0
    margin = min(margin, max(0.0, min(img_h, img_w) / max(x1 - x0, y1 - y0) - 1.0))
    return (x0, y0, x1, y1), margin


def crop_face(image: np.ndarray, face: Face, size: int, margin: float = 0.3, framing: str = "box",
              cut_size: int | None = None, fit_inside: bool = False) -> FaceCrop:
    """Square crop of ``face`` with ``margin`` context around its ``framing`` region (MTCNN's box by
    default), resized to ``size x size`` RGB uint8.

    Parts of the square outside the image are black (constant 0) rather than replicated edge
    pixels, which would invent texture for the detector to judge. A model trained here crops the
    way its training crops were cut (its ``crop_size`` and ``fit_inside``): ``fit_inside`` fits the
    region into the image (``fit_region``), and ``cut_size`` cuts the square at that side first and
    then resizes it to ``size``, the two resizes its training and validation faces went through.
    """
    image = _check_image(image)
    region = face_region(face, framing)
    if fit_inside:
        region, margin = fit_region(region, image.shape, margin, shrink=framing != "box")
    crop_box = square_crop_box(region, image.shape, margin)
    cut = _cut_square(image, crop_box, cut_size or size)
    if cut.shape[0] != size:
        cut = np.ascontiguousarray(resize_square(cut, size))
    return FaceCrop(face=face, image=cut, crop_box=crop_box, margin=float(margin))


def crop_faces(
    image: np.ndarray, faces: Sequence[Face], size: int, margin: float = 0.3, framing: str = "box",
    cut_size: int | None = None, fit_inside: bool = False,
) -> list[FaceCrop]:
    """``crop_face`` for each face, in the given order."""
    return [crop_face(image, face, size, margin, framing, cut_size, fit_inside) for face in faces]


def whole_image_crop(image: np.ndarray, size: int) -> FaceCrop:
    """Fallback when no face is found: the centred largest square of the image, resized.

    The picture can still be scored (e.g. a fully synthetic image whose face MTCNN misses),
    while ``fallback=True`` lets reports say the score is not from a face.
    """
    image = _check_image(image)
    img_h, img_w = image.shape[:2]
    side = min(img_h, img_w)
    left, top = (img_w - side) // 2, (img_h - side) // 2
    crop_box = (left, top, left + side, top + side)
    return FaceCrop(face=None, image=_cut_square(image, crop_box, size), crop_box=crop_box, fallback=True)


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two ``(x0, y0, x1, y1)`` boxes; 0.0 when they do not overlap."""
    ix0, iy0 = max(a[0], b[0]), max(a[1], b[1])
    ix1, iy1 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, ix1 - ix0) * max(0.0, iy1 - iy0)
    area_a = max(0.0, a[2] - a[0]) * max(0.0, a[3] - a[1])
    area_b = max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1])
    union = area_a + area_b - inter
    return float(inter / union) if union > 0 else 0.0


def track_faces(
    faces_per_frame: Sequence[Sequence[Face]], iou_threshold: float = 0.3, max_gap: int = 2
) -> int:
    """Link faces across consecutive sampled frames; sets ``Face.track`` in place.

    Scores of one person's face over a video are pooled per track, so a deepfake that swaps only
    one of several people is not averaged away by the others. Matching is greedy by IoU (highest
    pairs first, each pair at least ``iou_threshold``) against each live track's last box. A track
    missing in more than ``max_gap`` consecutive frames ends (a face reappearing later gets a new
    id: after a long gap position says little about identity). Unmatched faces start new tracks.
    Track ids are 0, 1, 2, ... in order of first appearance (left to right within a frame).
    Frames are counted by their position in ``faces_per_frame``.

    Returns the number of tracks.
    """
    if max_gap < 0:
        raise ValueError(f"max_gap must be >= 0, got {max_gap}")
    last_box: list[Box] = []  # indexed by track id
    last_seen: list[int] = []
    for t, faces in enumerate(faces_per_frame):
        faces = list(faces)
        live = [k for k in range(len(last_box)) if t - last_seen[k] - 1 <= max_gap]
        pairs = []
        for k in live:
            for j, face in enumerate(faces):
                iou = box_iou(last_box[k], face.box)
                if iou > 0 and iou >= iou_threshold:
                    pairs.append((-iou, k, j))
        pairs.sort()
        used_tracks: set[int] = set()
        assigned: dict[int, int] = {}
        for _neg_iou, k, j in pairs:
            if k in used_tracks or j in assigned:
                continue
            used_tracks.add(k)
            assigned[j] = k
        for j, face in enumerate(faces):
            k = assigned.get(j)
            if k is None:
                k = len(last_box)
                last_box.append(face.box)
                last_seen.append(t)
            else:
                last_box[k] = face.box
                last_seen[k] = t
            face.track = k
    return len(last_box)
