"""Turn explanation maps into pictures: normalise, resize, gamma, colormap, blend; and paste a
face's map back onto the full image at the face's crop box."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

COLORMAPS = {"jet": cv2.COLORMAP_JET, "inferno": cv2.COLORMAP_INFERNO, "viridis": cv2.COLORMAP_VIRIDIS,
             "turbo": cv2.COLORMAP_TURBO, "magma": cv2.COLORMAP_MAGMA}


@dataclass(frozen=True)
class OverlayStyle:
    """How maps are drawn: opacity, OpenCV colormap name, gamma (< 1 brightens weak areas)."""

    alpha: float = 0.5
    colormap: str = "jet"
    gamma: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"overlay alpha must be in [0, 1], not {self.alpha}")
        if self.colormap not in COLORMAPS:
            raise ValueError(f"colormap must be one of {sorted(COLORMAPS)}, not {self.colormap!r}")
        if self.gamma <= 0:
            raise ValueError(f"gamma must be positive, not {self.gamma}")


def normalize_map(heatmap: np.ndarray) -> np.ndarray:
    """Min-max to [0, 1], float32; non-finite values become 0 and a flat map stays 0."""
    m = np.nan_to_num(np.asarray(heatmap, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    low, high = float(m.min()), float(m.max())
    if high - low < 1e-12:
        return np.zeros_like(m)
    return (m - low) / (high - low)


def resize_map(heatmap: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize a map to ``(height, width)`` (bilinear, clipped to the input's range)."""
    h, w = size
    out = cv2.resize(heatmap.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    return np.clip(out, float(heatmap.min()), float(heatmap.max()))


def colorize(heatmap: np.ndarray, colormap: str = "jet", gamma: float = 1.0) -> np.ndarray:
    """[0, 1] map -> RGB uint8 through an OpenCV colormap; ``gamma`` < 1 brightens weak areas."""
    m = normalize_map(heatmap) ** float(gamma)
    bgr = cv2.applyColorMap(np.uint8(np.round(m * 255)), COLORMAPS[colormap])
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def overlay(image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.5, colormap: str = "jet", gamma: float = 1.0) -> np.ndarray:
    """Blend the coloured map over an RGB uint8 image of any size (the map is resized to it)."""
    colour = colorize(resize_map(normalize_map(heatmap), image.shape[:2]), colormap, gamma)
    return cv2.addWeighted(image, 1.0 - alpha, colour, alpha, 0.0)


def paste_overlay(
    full_image: np.ndarray,
    heatmap: np.ndarray,
    crop_box: tuple[int, int, int, int],
    alpha: float = 0.5,
    colormap: str = "jet",
    gamma: float = 1.0,
) -> np.ndarray:
    """Blend a face's map onto the full image inside its square crop box (clipped to the image).

    Several faces: call repeatedly on the returned image.
    """
    x0, y0, x1, y1 = (int(round(v)) for v in crop_box)
    h, w = full_image.shape[:2]
    side_w, side_h = x1 - x0, y1 - y0
    if side_w <= 0 or side_h <= 0:
        return full_image.copy()
    colour = colorize(resize_map(normalize_map(heatmap), (side_h, side_w)), colormap, gamma)
    cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    out = full_image.copy()
    if cx1 <= cx0 or cy1 <= cy0:
        return out
    patch = colour[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0]
    out[cy0:cy1, cx0:cx1] = cv2.addWeighted(full_image[cy0:cy1, cx0:cx1], 1.0 - alpha, patch, alpha, 0.0)
    return out


def colour_scale(width: int = 512, height: int = 28, colormap: str = "jet") -> np.ndarray:
    """A legend for the overlays' shared colour scale: low (0) to high (1) relevance."""
    bar = colorize(np.tile(np.linspace(0.0, 1.0, width, dtype=np.float32), (height, 1)), colormap)
    canvas = np.full((height + 22, width, 3), 255, np.uint8)
    canvas[:height] = bar
    for text, x in (("low", 2), ("relevance (each map scaled to its own 0..1)", width // 2 - 150), ("high", width - 36)):
        cv2.putText(canvas, text, (x, height + 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (30, 30, 30), 1, cv2.LINE_AA)
    return canvas


def downscale(rgb: np.ndarray, max_side: int) -> np.ndarray:
    """Shrink so the longest side is at most ``max_side`` (area filter: sharp, alias-free)."""
    h, w = rgb.shape[:2]
    scale = max_side / max(h, w)
    if scale >= 1.0:
        return rgb
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(np.ascontiguousarray(rgb), size, interpolation=cv2.INTER_AREA)
