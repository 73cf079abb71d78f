"""A result's explanation maps as PNG files: each face's overlay and, for an image, the whole image
with every face's map pasted in (what the CLI's ``--out`` folder holds)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from forensics.overlay import OverlayStyle, overlay, paste_overlay
from forensics.results import AnalysisResult


def write_maps(result: AnalysisResult, frames: Sequence[np.ndarray], out_dir: str | Path,
               style: OverlayStyle | None = None) -> None:
    """Write each face's overlays (and, for images, the full-image overlays on ``frames[0]``) as PNGs under ``out_dir``.

    Paths go into ``FaceResult.maps`` and ``AnalysisResult.full_maps``; files are written through
    a temporary name so a crash leaves no half-written PNG.
    """
    if not any(f.heatmaps for f in result.faces):
        return
    style = style or OverlayStyle()
    stem = re.sub(r"[^\w.-]+", "_", Path(result.input).stem)[:60] or "input"
    digest = (result.media.sha256 or "")[:8]
    folder = Path(out_dir) / (f"{stem}-{digest}" if digest else stem)
    folder.mkdir(parents=True, exist_ok=True)
    for n, face in enumerate(result.faces):
        for method, heatmap in face.heatmaps.items():
            path = folder / f"frame{face.frame:05d}_face{n + 1:02d}_{_safe(method)}.png"
            _write_png(path, overlay(face.crop, heatmap, style.alpha, style.colormap, style.gamma))
            face.maps[method] = str(path)
    if result.kind == "image" and frames:
        for method in sorted({m for f in result.faces for m in f.heatmaps}):
            canvas = frames[0]
            for face in result.faces:
                if method in face.heatmaps:
                    canvas = paste_overlay(canvas, face.heatmaps[method], face.crop_box, style.alpha, style.colormap,
                                           style.gamma)
            path = folder / f"full_{_safe(method)}.png"
            _write_png(path, canvas)
            result.full_maps[method] = str(path)


def _safe(method: str) -> str:
    return method.replace("+", "p")


def _write_png(path: Path, rgb: np.ndarray) -> None:
    tmp = path.with_name(path.stem + ".tmp.png")
    Image.fromarray(rgb).save(tmp, format="PNG", compress_level=1)  # level 6 costs seconds on large photos
    tmp.replace(path)
