"""Cross-identity face swaps made here from real faces: the graphics method behind FaceSwap-type
fakes. Another person's face is warped onto this one by their 5 landmarks, colour-corrected to it
and blended in through a face-shaped mask (alpha or Poisson), so the fake carries what a real swap
does and a self-blend does not: another identity's features, skin and lighting inside the face.
The mask is the one returned with the fake (the region that was replaced)."""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from training.sbi import _jitter_source, face_mask


def yaw_proxy(landmarks: np.ndarray) -> float:
    """How far the nose sits from the eyes' midpoint, in eye distances: ~0 for a frontal face,
    negative or positive as the head turns. Swap partners are matched on it (a turned face
    warped onto a frontal one is not a swap anyone would make)."""
    points = np.asarray(landmarks, np.float32)
    eyes = points[1] - points[0]
    distance = float(np.linalg.norm(eyes)) or 1.0
    offset = points[2] - (points[0] + points[1]) / 2
    return float(np.dot(offset, eyes) / distance ** 2)


def partners(landmarks: Sequence[np.ndarray], groups: Sequence[str], nearest: int = 16) -> list[np.ndarray]:
    """For each face, the indices of the ``nearest`` faces of other identities (groups) with the
    closest head turn: the candidates to swap onto it."""
    yaw = np.array([yaw_proxy(p) for p in landmarks])
    groups = np.asarray(groups)
    out = []
    for i in range(len(yaw)):
        other = np.flatnonzero(groups != groups[i])
        out.append(other[np.argsort(np.abs(yaw[other] - yaw[i]))[:nearest]])
    return out


def match_colour(source: np.ndarray, target: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Reinhard colour transfer inside the mask: the source's LAB mean and spread made the target's."""
    inside = mask > 0.5
    if inside.sum() < 16:
        return source
    src = cv2.cvtColor(np.clip(source, 0, 255).astype(np.uint8), cv2.COLOR_RGB2LAB).astype(np.float32)
    tgt = cv2.cvtColor(target, cv2.COLOR_RGB2LAB).astype(np.float32)
    s_mean, s_std = src[inside].mean(0), src[inside].std(0) + 1e-3
    t_mean, t_std = tgt[inside].mean(0), tgt[inside].std(0) + 1e-3
    out = (src - s_mean) / s_std * t_std + t_mean
    return cv2.cvtColor(np.clip(out, 0, 255).astype(np.uint8), cv2.COLOR_LAB2RGB).astype(np.float32)


def face_swap(target: np.ndarray, target_landmarks: np.ndarray, source: np.ndarray, source_landmarks: np.ndarray,
              rng: np.random.Generator, poisson: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """``source``'s face swapped onto ``target`` (RGB uint8 crops of any sizes, with their 5
    landmarks in crop pixels): (the fake, uint8; the blending mask, float HxW in [0, 1]).
    ``poisson``: the share blended by Poisson editing (OpenCV's seamless clone) instead of alpha."""
    h, w = target.shape[:2]
    matrix, _ = cv2.estimateAffinePartial2D(np.asarray(source_landmarks, np.float32),
                                            np.asarray(target_landmarks, np.float32), method=cv2.LMEDS)
    if matrix is None:
        raise ValueError("cannot fit the source face's landmarks to the target's")
    warped = cv2.warpAffine(source, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    return paste(target, warped, target_landmarks, rng, poisson)


def paste(target: np.ndarray, warped: np.ndarray, target_landmarks: np.ndarray, rng: np.random.Generator,
          poisson: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """A new face already in ``target``'s frame (``warped``, same size) blended in as swap tools do:
    through a face mask on the target's landmarks, colour-matched, alpha or Poisson blended.
    (the fake, uint8; the blending mask, float HxW in [0, 1])."""
    h, w = target.shape[:2]
    mask = face_mask((h, w), target_landmarks, rng)
    coloured = match_colour(warped, target, mask)
    coloured = _jitter_source(np.clip(coloured, 0, 255).astype(np.uint8), rng)  # rendering differences
    if rng.random() < poisson:
        hard = (mask > 0.5).astype(np.uint8) * 255
        ys, xs = np.nonzero(hard)
        if len(xs) and xs.min() > 0 and ys.min() > 0 and xs.max() < w - 1 and ys.max() < h - 1:
            centre = (int((xs.min() + xs.max() + 1) // 2), int((ys.min() + ys.max() + 1) // 2))
            fake = cv2.seamlessClone(np.clip(coloured, 0, 255).astype(np.uint8), target, hard.copy(), centre,
                                     cv2.NORMAL_CLONE)
            # Poisson editing also shifts a thin band around the mask: the mask says what changed
            changed = np.abs(fake.astype(np.int16) - target.astype(np.int16)).max(axis=-1) > 0
            return fake, np.maximum(hard > 0, changed).astype(np.float32)
    alpha = mask * rng.uniform(0.75, 1.0)
    blended = coloured * alpha[..., None] + target.astype(np.float32) * (1.0 - alpha[..., None])
    return np.clip(np.round(blended), 0, 255).astype(np.uint8), alpha


# Expression swaps: reenactment-like fakes (Face2Face, NeuralTextures) keep the person and replace
# their expression, mostly around the mouth. Made here from talking-head clips: the same person's
# face from another frame of the clip, warped onto this frame by the landmarks and blended in.
EXPRESSION_OUTLINES = {"lower": 0.5, "inner": 0.3, "full": 0.2}


def expression_partners(landmarks: Sequence[np.ndarray], groups: Sequence[str], eligible: Sequence[bool],
                        nearest: int = 12) -> list[np.ndarray]:
    """For each eligible face (a frame of a clip), the indices of up to ``nearest`` other eligible
    frames of the same clip (group) with the closest head turn; empty for the others."""
    yaw = np.array([yaw_proxy(p) for p in landmarks]) if len(landmarks) else np.zeros(0)
    groups, eligible = np.asarray(groups), np.asarray(eligible, bool)
    out = []
    for i in range(len(yaw)):
        if not eligible[i]:
            out.append(np.zeros(0, np.int64))
            continue
        same = np.flatnonzero((groups == groups[i]) & eligible)
        same = same[same != i]
        out.append(same[np.argsort(np.abs(yaw[same] - yaw[i]), kind="stable")[:nearest]])
    return out


def expression_swap(target: np.ndarray, target_landmarks: np.ndarray,
                    sources: Sequence[tuple[np.ndarray, np.ndarray]], rng: np.random.Generator,
                    jitter: float = 0.5, outline: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """A reenactment-like fake of ``target``: of the candidate ``sources`` (other frames of the same
    person, with their landmarks), the one whose warped face differs most from the target inside
    the mask (another expression) is colour-matched and alpha-blended in through a lower-face,
    inner-face or full-face mask. ``jitter``: the share given rendering differences (colour,
    sharpness, a small shift); the rest differ from the real frame only by the new expression and
    the seam. (the fake, uint8; the blending mask, float HxW in [0, 1])."""
    if not len(sources):
        raise ValueError("an expression swap needs at least one other frame of the same person")
    h, w = target.shape[:2]
    tl = np.asarray(target_landmarks, np.float32)
    name = outline or str(rng.choice(list(EXPRESSION_OUTLINES), p=list(EXPRESSION_OUTLINES.values())))
    mask = face_mask((h, w), tl, rng, name)
    best, best_change = None, -1.0
    for source, source_landmarks in sources:
        matrix, _ = cv2.estimateAffinePartial2D(np.asarray(source_landmarks, np.float32), tl, method=cv2.LMEDS)
        if matrix is None:
            continue
        warped = cv2.warpAffine(source, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        change = float((np.abs(warped.astype(np.float32) - target).mean(axis=-1) * mask).sum() / max(mask.sum(), 1.0))
        if change > best_change:
            best, best_change = warped, change
    if best is None:
        raise ValueError("cannot fit another frame's landmarks to this face's")
    coloured = match_colour(best, target, mask)
    if rng.random() < jitter:
        coloured = _jitter_source(np.clip(coloured, 0, 255).astype(np.uint8), rng)
    alpha = mask * rng.uniform(0.75, 1.0)
    blended = coloured * alpha[..., None] + target.astype(np.float32) * (1.0 - alpha[..., None])
    return np.clip(np.round(blended), 0, 255).astype(np.uint8), alpha
