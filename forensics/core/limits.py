"""What one input may cost: a media file (image, video, GIF) and an uploaded dataset zip."""

from __future__ import annotations

import os
from dataclasses import dataclass

from forensics.core.errors import ArchiveError


@dataclass(frozen=True)
class MediaLimits:
    """Resource limits for one input; defaults suit a web upload, tests and batch jobs may tighten them."""

    max_image_bytes: int = 50 * 2**20
    max_video_bytes: int = 500 * 2**20
    max_pixels: int = 40_000_000  # decompression-bomb guard, checked from the header before decoding
    min_side: int = 16  # smaller images carry no usable face
    max_duration_s: float = 600.0
    max_frames: int = 256  # most frames one call may sample


DEFAULT_LIMITS = MediaLimits()


@dataclass(frozen=True)
class ZipLimits:
    """What an upload may hold. Defaults fit a training set of face images (tens of thousands of
    files, a few GB) and are overridden by ``FORENSICS_ZIP_MAX_FILES`` / ``FORENSICS_ZIP_MAX_BYTES``."""

    max_files: int = 100_000
    max_total_bytes: int = 4 << 30
    max_ratio: float = 200.0  # uncompressed / compressed size of one entry; JPEGs and PNGs are ~1
    ratio_floor: int = 1 << 20  # entries smaller than this are not ratio-checked (tiny text files compress well)

    @classmethod
    def from_env(cls) -> "ZipLimits":
        """The limits with the environment's overrides; a bad value is a one-line ``ArchiveError``."""
        return cls(max_files=_env_count("FORENSICS_ZIP_MAX_FILES", cls.max_files),
                   max_total_bytes=_env_count("FORENSICS_ZIP_MAX_BYTES", cls.max_total_bytes))


def _env_count(name: str, default: int) -> int:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    if not text.isdigit() or int(text) < 1:
        raise ArchiveError(f"{name}={text!r} must be a whole number of at least 1")
    return int(text)
