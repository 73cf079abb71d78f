"""Whole images and video frames with every face boxed, numbered and scored."""

from __future__ import annotations

import dataclasses
from typing import Sequence

import cv2
import numpy as np

from forensics.results import AnalysisResult, FaceResult, face_number
from forensics.overlay import paste_overlay

MAX_FRAMES_SHOWN = 8
THUMBNAIL_SIDE = 480


def annotated(result: AnalysisResult, frames: Sequence[np.ndarray], frame: int | None = None,
              selected: int | None = None) -> np.ndarray | None:
    """The image (or one sampled video frame, by default the most suspicious) of ``frames`` (those
    decoded for ``result``) with every face boxed and scored; red at or above the threshold, green below.
    The ``selected`` face (the one whose maps are shown), where it is in that frame, is drawn last and
    ringed in white edged in black, so that it can be found in a crowd. Faces too small to judge (``result.small_faces``:
    only where no face was found) are boxed in amber with their size, and a video without a face shows
    the first frame that has one of those."""
    if not frames:
        return None
    frame = shown_frame(result) if frame is None else frame
    canvas = np.ascontiguousarray(frames[_frame_position(result, frame)]).copy()
    thickness = max(2, round(max(canvas.shape[:2]) / 400))
    shown = [i for i, face in enumerate(result.faces)
             if not face.fallback and face.box is not None and (result.kind != "video" or face.frame == frame)]
    smalls = [small["box"] for small in result.small_faces if result.kind != "video" or small["frame"] == frame]
    labels = Labels(canvas.shape, [result.faces[i].box for i in shown] + smalls)
    if selected in shown:
        x0, y0, x1, y1 = (int(round(v)) for v in result.faces[selected].box)
        ring = 2 * thickness  # white edged in black: seen on light and dark backgrounds alike
        corners = (x0 - ring, y0 - ring), (x1 + ring, y1 + ring)
        cv2.rectangle(canvas, *corners, (0, 0, 0), 2 * thickness)
        cv2.rectangle(canvas, *corners, (255, 255, 255), thickness)
    # Labelled in turn (the selected face, then the most suspicious first), each where it covers no face
    # and no label before it: in a crowd the later ones shrink to their number, or go without.
    for i in sorted(shown, key=lambda i: (i != selected, -result.faces[i].fake_probability)):
        draw_box(canvas, result.faces[i], result.threshold or 0.5, thickness, face_number(result, i), labels)
    for box in smalls:
        draw_small_box(canvas, box, thickness, labels)
    return canvas


class Labels:
    """Where the labels of one picture go: each where it covers no face's box (but its own) and no label
    placed before it, above its box, else below it; where neither is free, its shorter form (a face's
    number alone), there or inside its box's top; else no label (the box stays, and its number is in every
    list). Without faces to avoid, labels go above their box as they always did."""

    def __init__(self, shape: Sequence[int], boxes: Sequence[Sequence[float]] = ()):
        self.height, self.width = int(shape[0]), int(shape[1])
        self.boxes = [tuple(int(round(v)) for v in box) for box in boxes]
        self.placed: list[tuple[int, int, int, int]] = []

    @staticmethod
    def _overlap(a, b) -> bool:
        return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]

    def place(self, box: Sequence[int], texts: Sequence[str], scale: float,
              weight: int) -> tuple[str, tuple[int, int, int, int], int] | None:
        """(text, its background rectangle, its height) for the first text that fits somewhere, or None."""
        x0, y0, x1, y1 = box
        own = tuple(box)
        for k, text in enumerate(texts):
            (w, h), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, weight)
            left = max(0, min(x0, self.width - w - 6))
            tops = [y0 - h - 8, y1] + ([y0] if k == len(texts) - 1 and len(texts) > 1 else [])
            for top in tops:
                rect = (left, max(0, top), left + w + 6, max(0, top) + h + 8)
                if rect[3] > self.height and top != tops[0]:
                    continue
                if any(self._overlap(rect, b) for b in self.boxes if b != own) or \
                        any(self._overlap(rect, r) for r in self.placed):
                    continue
                self.placed.append(rect)
                return text, rect, h
        return None


SMALL_BOX_COLOUR = (230, 160, 0)  # a face too small to judge: no score, so neither red nor green


def draw_small_box(canvas: np.ndarray, box: Sequence[float], thickness: int, labels: Labels | None = None) -> None:
    """A face too small to judge: an amber box labelled with its size (white on amber), no score."""
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    cv2.rectangle(canvas, (x0, y0), (x1, y1), SMALL_BOX_COLOUR, thickness)
    text = f"{min(box[2] - box[0], box[3] - box[1]):.0f} px"
    placed = (labels or Labels(canvas.shape)).place((x0, y0, x1, y1), [text], thickness * 0.3, 1)
    if placed is not None:
        text, (lx0, ly0, lx1, ly1), h = placed
        cv2.rectangle(canvas, (lx0, ly0), (lx1 - 2, ly1 - 2), SMALL_BOX_COLOUR, -1)
        cv2.putText(canvas, text, (lx0 + 2, ly0 + h + 2), cv2.FONT_HERSHEY_SIMPLEX, thickness * 0.3, (255, 255, 255), 1,
                    cv2.LINE_AA)


def shown_frame_position(result: AnalysisResult) -> int:
    """Where, in the analysis's decoded frames, the frame ``annotated`` draws by default lies: the
    most suspicious face's frame (the only frame an image has). The report shows it too, so a held
    analysis keeps it."""
    return _frame_position(result, shown_frame(result))


def shown_frame(result: AnalysisResult) -> int | None:
    """The frame shown by default: the most suspicious face's, or without a face the first with a face
    too small to judge."""
    frame = _most_suspicious_frame(result)
    if frame is None and result.small_faces:
        frame = result.small_faces[0]["frame"]
    return frame


def _most_suspicious_frame(result: AnalysisResult) -> int | None:
    top = max(result.faces, key=lambda f: f.fake_probability, default=None)
    return top.frame if top is not None else None


def _frame_position(result: AnalysisResult, frame: int | None) -> int:
    indices = result.media.sampled_indices or [0]
    return indices.index(frame) if frame in indices else 0


def draw_box(canvas: np.ndarray, face: FaceResult, threshold: float, thickness: int, number: int,
             labels: Labels | None = None) -> None:
    """The face's box with its number (the one every table and dropdown uses) and P(fake); with ``labels``,
    the label goes where it covers no other face or label (its number alone, or none, where nothing is free)."""
    x0, y0, x1, y1 = (int(round(v)) for v in face.box)
    colour = (220, 40, 40) if face.fake_probability >= threshold else (40, 180, 60)
    cv2.rectangle(canvas, (x0, y0), (x1, y1), colour, thickness)
    text = f"{number}: {face.fake_probability:.2f}" + (f" (person {face.track})" if face.track is not None else "")
    scale = min(thickness * 0.45, max(0.5, (y1 - y0) / 40))  # in a crowd, no taller than about half a face
    weight = max(1, min(thickness, round(2 * scale)))
    placed = (labels or Labels(canvas.shape)).place((x0, y0, x1, y1), [text, str(number)], scale, weight)
    if placed is not None:
        text, (lx0, ly0, lx1, ly1), h = placed
        cv2.rectangle(canvas, (lx0, ly0), (lx1, ly1), colour, -1)
        cv2.putText(canvas, text, (lx0 + 3, ly0 + h + 3), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), weight)


def suspicious_frame_order(result: AnalysisResult) -> list[int]:
    """Sampled frame indices, most suspicious first (a frame's score: its worst face), capped."""
    best: dict[int, float] = {}
    for face in result.faces:
        best[face.frame] = max(best.get(face.frame, 0.0), face.fake_probability)
    return sorted(best, key=lambda f: -best[f])[:MAX_FRAMES_SHOWN]


def suspicious_frames(result: AnalysisResult, frames: Sequence[np.ndarray], method: str = "gradcam",
                      alpha: float = 0.5) -> list[tuple[np.ndarray, str]]:
    """The most suspicious sampled frames as thumbnails cropped around their faces (a whole 1080p
    frame shows a face a few pixels wide), each with its faces' maps pasted in and boxes drawn. With no
    face, the frames with faces too small to judge (``result.small_faces``), whole, their faces boxed."""
    if not result.faces and result.small_faces:
        return _small_face_frames(result, frames)
    items = []
    for frame in suspicious_frame_order(result):
        faces = [(i, f) for i, f in enumerate(result.faces) if f.frame == frame]
        canvas = np.ascontiguousarray(frames[_frame_position(result, frame)]).copy()
        for _, face in faces:
            if method in face.heatmaps:
                canvas = paste_overlay(canvas, face.heatmaps[method], face.crop_box, alpha=alpha)
        cut, (dx, dy) = _around_faces(canvas, [f for _, f in faces])
        side = max(cut.shape[:2])  # every thumbnail THUMBNAIL_SIDE px on its longest side, small faces enlarged
        size = (round(cut.shape[1] * THUMBNAIL_SIDE / side), round(cut.shape[0] * THUMBNAIL_SIDE / side))
        canvas = cv2.resize(np.ascontiguousarray(cut), size,
                            interpolation=cv2.INTER_AREA if side > THUMBNAIL_SIDE else cv2.INTER_CUBIC)
        scale = canvas.shape[1] / max(1, cut.shape[1])
        # Letterboxed to a square: a gallery tile shows a square, and would cut the sides (and labels) of a wider one.
        h, w = canvas.shape[:2]
        square = np.full((max(h, w), max(h, w), 3), 24, np.uint8)
        px, py = (max(h, w) - w) // 2, (max(h, w) - h) // 2
        square[py:py + h, px:px + w] = canvas
        canvas = square
        # Boxes drawn on the thumbnail itself, so their labels stay readable; the most suspicious labelled first,
        # each where it covers no other face and no other label.
        boxed = [(i, dataclasses.replace(face, box=[(face.box[0] - dx) * scale + px, (face.box[1] - dy) * scale + py,
                                                    (face.box[2] - dx) * scale + px, (face.box[3] - dy) * scale + py]))
                 for i, face in faces if not face.fallback and face.box is not None]
        labels = Labels(canvas.shape, [face.box for _, face in boxed])
        for i, face in sorted(boxed, key=lambda item: -item[1].fake_probability):
            draw_box(canvas, face, result.threshold or 0.5, 2, face_number(result, i), labels)
        stamp = faces[0][1].timestamp
        when = f"{stamp:.2f}s" if stamp is not None else f"frame {frame}"
        # Short enough for a gallery tile's caption (a longer one is cut): the time and the frame's highest P(fake).
        items.append((canvas, f"{when} · {max(f.fake_probability for _, f in faces):.2f}"))
    return items


def _small_face_frames(result: AnalysisResult, frames: Sequence[np.ndarray]) -> list[tuple[np.ndarray, str]]:
    """The sampled frames in which only faces too small to judge were seen, each whole (at most
    2 x THUMBNAIL_SIDE px wide) with those faces boxed and a caption saying so."""
    items = []
    shown = list(dict.fromkeys(small["frame"] for small in result.small_faces))[:MAX_FRAMES_SHOWN]
    for frame in shown:
        canvas = annotated(result, frames, frame)
        if canvas is None:
            continue
        if canvas.shape[1] > 2 * THUMBNAIL_SIDE:
            scale = 2 * THUMBNAIL_SIDE / canvas.shape[1]
            canvas = cv2.resize(canvas, (2 * THUMBNAIL_SIDE, round(canvas.shape[0] * scale)), interpolation=cv2.INTER_AREA)
        sides = [min(s["box"][2] - s["box"][0], s["box"][3] - s["box"][1]) for s in result.small_faces
                 if s["frame"] == frame]
        t = result.media.frame_time(frame)
        when = f"{t:.2f}s" if t is not None else f"frame {frame}"
        items.append((canvas, f"{when}: {len(sides)} face(s) too small to judge ({max(sides):.0f} px)"))
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
    # Square where the frame allows: a gallery tile shows a square, and cuts the sides of anything wider.
    side = max(x1 - x0, y1 - y0)
    x0, x1 = _widened(x0, x1, side, w)
    y0, y1 = _widened(y0, y1, side, h)
    return (canvas[y0:y1, x0:x1], (x0, y0)) if x1 > x0 and y1 > y0 else (canvas, (0, 0))


def _widened(lo: int, hi: int, size: int, limit: int) -> tuple[int, int]:
    """[lo, hi) grown about its centre to ``size`` (at most ``limit``), kept inside [0, limit)."""
    size = min(size, limit)
    lo = max(0, min(lo - (size - (hi - lo)) // 2, limit - size))
    return lo, lo + max(size, hi - lo)


def enlarge(rgb: np.ndarray, min_side: int) -> np.ndarray:
    """Enlarge (bicubic) so the shortest side is at least ``min_side``."""
    h, w = rgb.shape[:2]
    if min(h, w) >= min_side:
        return rgb
    scale = min_side / min(h, w)
    return cv2.resize(rgb, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_CUBIC)
