"""How a face crop is framed, as names: what configs and model folders may say, importable without
the face detector (a command line can refuse a bad setting before it loads torch)."""

from __future__ import annotations

# How a crop is framed around a face: "box" squares MTCNN's box; "landmarks" squares a region
# scaled from the five landmarks (``forensics.faces`` does the geometry and says why).
FRAMINGS = ("box", "landmarks")
# How model cards name each framing.
FRAMING_TEXT = {"box": "MTCNN box", "landmarks": "square scaled from the MTCNN landmarks"}


def check_framing(framing: str) -> str:
    """``framing`` if it is one of ``FRAMINGS``; otherwise a one-line ``ValueError``."""
    if framing not in FRAMINGS:
        raise ValueError(f"face framing must be one of {', '.join(FRAMINGS)}, got {framing!r}")
    return framing
