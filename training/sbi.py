"""Self-blended images (Shiohara & Yamasaki, CVPR 2022): pseudo-fakes from real faces alone.

A face is blended into a colour- and geometry-jittered copy of itself through a face-shaped mask
with a blurred boundary: the result carries the artefacts of a face swap (a blending seam, a
colour and sharpness mismatch, slight misalignment) and nothing else, so a detector trained on
it learns blending, not a source. Only MTCNN's 5 landmarks are needed: an affine fit from a
5-point template maps hand-made face outlines onto the face.
"""

from __future__ import annotations

import cv2
import numpy as np

# ArcFace's 5-point template in a 112x112 frame: left eye, right eye, nose, mouth left, mouth right.
TEMPLATE = np.array([[38.29, 51.70], [73.53, 51.50], [56.03, 71.74], [41.55, 92.37], [70.73, 92.20]], np.float32)


def _ellipse(cx: float, cy: float, rx: float, ry: float, n: int = 24, start: float = 0.0, end: float = 2 * np.pi):
    t = np.linspace(start, end, n, endpoint=False)
    return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], axis=1)


# Face outlines in template coordinates.
OUTLINES = {
    "full": _ellipse(56, 62, 42, 54),  # forehead, jaw and cheeks
    "inner": _ellipse(56, 70, 30, 34),  # brows to chin, inside the cheeks
    "lower": np.concatenate([_ellipse(56, 80, 34, 30, 16, 0, np.pi), [[22, 64], [90, 64]]]),  # nose and below
    "eyes": _ellipse(56, 56, 36, 16),  # the eye band
}
OUTLINE_WEIGHTS = {"full": 0.4, "inner": 0.35, "lower": 0.15, "eyes": 0.1}


def landmark_transform(landmarks: np.ndarray) -> np.ndarray:
    """2x3 similarity transform from the template to these landmarks."""
    matrix, _ = cv2.estimateAffinePartial2D(TEMPLATE, np.asarray(landmarks, np.float32), method=cv2.LMEDS)
    if matrix is None:
        raise ValueError("cannot fit the 5-point template to these landmarks")
    return matrix


def face_mask(shape: tuple[int, int], landmarks: np.ndarray, rng: np.random.Generator,
              outline: str | None = None) -> np.ndarray:
    """A float mask in [0, 1]: an outline mapped onto the face, jittered, elastically warped, blurred."""
    h, w = shape
    matrix = landmark_transform(landmarks)
    name = outline or rng.choice(list(OUTLINES), p=list(OUTLINE_WEIGHTS.values()))
    points = OUTLINES[name] + rng.normal(0, 2.0, OUTLINES[name].shape)  # vertex jitter (template px)
    points = points * rng.uniform(0.9, 1.1) + (1 - rng.uniform(0.9, 1.1)) * 56  # scale about the centre
    mapped = cv2.transform(points[None].astype(np.float32), matrix)[0]
    mask = np.zeros((h, w), np.float32)
    cv2.fillPoly(mask, [np.round(cv2.convexHull(mapped)).astype(np.int32)], 1.0)
    mask = _elastic(mask, rng, alpha=w * rng.uniform(0.01, 0.04), sigma=w * 0.06)
    k = int(rng.integers(3, max(5, w // 12))) | 1
    mask = cv2.GaussianBlur(mask, (k, k), 0)
    mask = cv2.GaussianBlur(mask, (k, k), 0) if rng.random() < 0.5 else mask
    return np.clip(mask, 0.0, 1.0)


def _elastic(mask: np.ndarray, rng: np.random.Generator, alpha: float, sigma: float) -> np.ndarray:
    h, w = mask.shape
    k = int(sigma * 3) | 1
    dx = cv2.GaussianBlur(rng.uniform(-1, 1, (h, w)).astype(np.float32), (k, k), sigma) * alpha
    dy = cv2.GaussianBlur(rng.uniform(-1, 1, (h, w)).astype(np.float32), (k, k), sigma) * alpha
    scale = 1.0 / max(np.abs(dx).max(), np.abs(dy).max(), 1e-6) * alpha
    xs, ys = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    return cv2.remap(mask, xs + dx * scale, ys + dy * scale, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)


def _jitter_source(image: np.ndarray, rng: np.random.Generator, downscale: float = 0.0) -> np.ndarray:
    """The copy that gets blended in: colour, brightness, sharpness and a small shift or scale.

    ``downscale``: the share of copies that are also shrunk 2-4x and enlarged again (SBI's
    RandomDownScale: the resolution gap of a swapped face rendered small and pasted large). Drawn
    last and only when asked for, so that a run without it (and every validation set) draws as before."""
    out = image.astype(np.float32)
    hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV).astype(np.float32)
    hsv[..., 0] = (hsv[..., 0] + rng.uniform(-6, 6)) % 180
    hsv[..., 1] = np.clip(hsv[..., 1] * rng.uniform(0.8, 1.2), 0, 255)
    out = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB).astype(np.float32)
    out = out * rng.uniform(0.85, 1.15) + rng.uniform(-15, 15) + rng.normal(0, 4, 3)  # contrast, brightness, tint
    if rng.random() < 0.5:
        k = int(rng.choice([3, 5]))
        blurred = cv2.GaussianBlur(out, (k, k), 0)
        out = blurred if rng.random() < 0.5 else np.clip(out * 1.6 - blurred * 0.6, 0, 255)  # blur or sharpen
    h, w = image.shape[:2]
    scale = rng.uniform(0.95, 1.05)
    shift = rng.uniform(-0.03, 0.03, 2) * (w, h)
    matrix = np.array([[scale, 0, (1 - scale) * w / 2 + shift[0]], [0, scale, (1 - scale) * h / 2 + shift[1]]],
                      np.float32)
    out = cv2.warpAffine(np.clip(out, 0, 255), matrix, (w, h), borderMode=cv2.BORDER_REFLECT)
    if downscale > 0 and rng.random() < downscale:
        factor = rng.uniform(2.0, 4.0)
        small = cv2.resize(out, (max(1, round(w / factor)), max(1, round(h / factor))), interpolation=cv2.INTER_AREA)
        out = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    return out


def self_blend(image: np.ndarray, landmarks: np.ndarray, rng: np.random.Generator,
               outline: str | None = None, downscale: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """A self-blended pseudo-fake of an RGB uint8 face and the blending mask used (float, HxW);
    ``downscale``: see :func:`_jitter_source`."""
    source = _jitter_source(image, rng, downscale)
    mask = face_mask(image.shape[:2], landmarks, rng, outline) * rng.uniform(0.25, 1.0)
    blended = source * mask[..., None] + image.astype(np.float32) * (1.0 - mask[..., None])
    return np.clip(np.round(blended), 0, 255).astype(np.uint8), mask
