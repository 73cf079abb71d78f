"""Turn user-supplied images and videos into RGB uint8 arrays, or refuse them with one clear line.

Everything that reaches a detector goes through here, so this module is the one place that
decides what input is acceptable: every failure is a :class:`~forensics.core.errors.MediaError` whose
message names the file and the problem, and no raw PIL/OpenCV exception escapes.
"""

from __future__ import annotations

import io
import math
import os
import tempfile
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Sequence

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from forensics.core import DEFAULT_LIMITS, MediaError, MediaLimits
from forensics.core.labelled import IMAGE_EXTENSIONS

__all__ = [
    "BrowserCopy",
    "DEFAULT_LIMITS",
    "IMAGE_EXTENSIONS",
    "VIDEO_EXTENSIONS",
    "MediaLimits",
    "VideoFrames",
    "browser_copy",
    "browser_playable",
    "check_file",
    "codec_title",
    "fourcc_title",
    "is_animated",
    "load_animation",
    "load_image",
    "load_video",
    "media_kind",
    "sample_frame_indices",
]

VIDEO_EXTENSIONS = {".mp4", ".webm", ".avi", ".mov", ".mkv", ".m4v"}

# PIL formats we let Image.open try. Restricting them keeps exotic plugins (EPS runs
# Ghostscript, PSD, ICO, ...) away from untrusted uploads. (Multi-picture phone JPEGs come back
# from the JPEG opener with format "MPO".)
_PIL_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF")
# Formats where several frames mean an animation (TIFF pages and MPO stereo/previews do not).
_ANIMATED_FORMATS = {"GIF", "PNG", "WEBP"}

# Sample step (in frames) above which seeking beats decoding every frame in between.
_SEEK_STEP = 60
# Frame rate assumed when the container reports none, so timestamps stay defined.
_FALLBACK_FPS = 30.0

# Image.MAX_IMAGE_PIXELS is process-global; this lock keeps our temporary override of it from
# racing with itself (two threads restoring each other's value would disable it for good).
_PIL_LIMIT_LOCK = threading.Lock()


@dataclass
class VideoFrames:
    """Frames sampled from a video, with where they came from (for per-frame reports)."""

    frames: list[np.ndarray]  # RGB uint8 HxWx3
    indices: list[int]  # frame index in the video of each sampled frame
    # seconds on a player's timeline: from the first frame (the container's own times where frames are unevenly
    # spaced), plus the video stream's own start time (_player_start; 0 for most files)
    timestamps: list[float]
    fps: float
    frame_count: int  # as decoded when the end was reached, else as reported by the container
    duration_s: float
    width: int
    height: int
    codec: str | None = None  # the stream's FourCC as FFmpeg names it ("h264", "hevc", "FMP4"), when known
    bitrate_kbps: float | None = None  # the video stream's bit rate (audio not counted), when the container says
    frame_times: list[float] | None = None  # every frame's time, where frames are unevenly spaced (else None)


def video_codec_name(fourcc: float) -> str | None:
    """OpenCV's CAP_PROP_FOURCC as text ("h264"), or None for none or an unprintable code."""
    code = int(fourcc)
    text = "".join(chr((code >> 8 * i) & 0xFF) for i in range(4)).strip("\x00 ")
    return text if text and text.isprintable() and text.isascii() else None


# --------------------------------------------------------------------------------------------
# shared helpers


def _label(source: Any, name: str | None) -> str:
    """What error messages call the input: the caller's name, the file name, or "upload"."""
    if name:
        return str(name)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return "upload"
    try:
        return Path(source).name or str(source)
    except TypeError:
        return "input"


def _fmt_mb(n_bytes: float) -> str:
    return f"{n_bytes / 2**20:.1f}"


def _fmt_limit_mb(n_bytes: int) -> str:
    return f"{n_bytes / 2**20:g}"


def _check_size(label: str, size: int, limit: int) -> None:
    if size == 0:
        raise MediaError(f"{label}: file is empty")
    if size > limit:
        raise MediaError(f"{label}: file is {_fmt_mb(size)} MB; the limit is {_fmt_limit_mb(limit)} MB")


def _check_path(path: Path, label: str, limit: int) -> None:
    """Refuse missing, non-regular, empty or oversized files before anything reads them."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise MediaError(f"{label}: file not found") from None
    except OSError as exc:
        raise MediaError(f"{label}: cannot read file ({exc.strerror or exc})") from None
    if path.is_dir():
        raise MediaError(f"{label}: is a directory, not a file")
    _check_size(label, st.st_size, limit)


def _as_bytes(source: bytes | bytearray | memoryview) -> bytes:
    return source if isinstance(source, bytes) else bytes(source)


def media_kind(path: str | Path) -> str:
    """Return "image" or "video" from the file extension, so callers can route an upload."""
    p = Path(path)
    ext = p.suffix.lower()
    if ext in IMAGE_EXTENSIONS:
        return "image"
    if ext in VIDEO_EXTENSIONS:
        return "video"
    supported = " ".join(sorted(IMAGE_EXTENSIONS | VIDEO_EXTENSIONS))
    if p.is_dir():  # a folder named like no media file: say what it is, not that its name lacks an extension
        raise MediaError(f"{p.name or path}: is a directory, not a file")
    if not ext:
        raise MediaError(f"{p.name or path}: file has no extension; supported: {supported}")
    raise MediaError(f"{p.name}: unsupported file type '{ext}'; supported: {supported}")


# --------------------------------------------------------------------------------------------
# images


def check_file(path: str | Path, limits: MediaLimits = DEFAULT_LIMITS, header: bool = False) -> str:
    """What can be told of an input file without decoding it: a supported type, present, a regular
    file, not empty and within the size limit of its kind; with ``header``, an image's header too (that it
    is an image at all, and within the pixel limits: milliseconds, no pixel decoded). Returns the kind
    ("image" or "video"); raises MediaError with the same one-line message that loading it would give."""
    kind = media_kind(path)
    path = Path(path)
    _check_path(path, path.name, limits.max_image_bytes if kind == "image" else limits.max_video_bytes)
    if header and kind == "image":
        with _open_image(path, path.name, limits.max_image_bytes) as im:
            _check_pixels(im, path.name, limits)
    return kind


@contextmanager
def _open_image(source: str | Path | bytes, label: str, limit_bytes: int) -> Iterator[Image.Image]:
    """Open (header only) with PIL, mapping every failure to MediaError; yields the image.

    PIL's own decompression-bomb check runs inside Image.open and would fire before ours with a
    less useful message, so it is switched off for the header parse only (under a lock); callers
    apply ``limits.max_pixels`` themselves before decoding.
    """
    fh: IO[bytes]
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = _as_bytes(source)
        _check_size(label, len(data), limit_bytes)
        fh = io.BytesIO(data)
    else:
        path = Path(source)
        _check_path(path, label, limit_bytes)
        try:
            fh = open(path, "rb")  # noqa: SIM115 - closed in finally
        except OSError as exc:
            raise MediaError(f"{label}: cannot read file ({exc.strerror or exc})") from None
    try:
        try:
            with _PIL_LIMIT_LOCK:
                saved = Image.MAX_IMAGE_PIXELS
                Image.MAX_IMAGE_PIXELS = None
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore")
                        im = Image.open(fh, formats=_PIL_FORMATS)
                finally:
                    Image.MAX_IMAGE_PIXELS = saved
        except UnidentifiedImageError:
            hint = " (this looks like a video; load it as one)" if Path(label).suffix.lower() in VIDEO_EXTENSIONS else ""
            raise MediaError(f"{label}: not an image (cannot identify image file){hint}") from None
        except Image.DecompressionBombError as exc:  # only if our override did not apply
            raise MediaError(f"{label}: {exc} (possible decompression bomb)") from None
        except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError) as exc:
            raise MediaError(f"{label}: image header is corrupt ({exc})") from None
        except Exception as exc:  # hostile input must never surface a raw PIL exception
            raise MediaError(f"{label}: cannot open image ({type(exc).__name__}: {exc})") from None
        with im:
            yield im
    finally:
        fh.close()


def _check_pixels(im: Image.Image, label: str, limits: MediaLimits) -> None:
    """Refuse bombs and thumbnails from the header size, before a single pixel is decoded."""
    w, h = im.size
    if w * h > limits.max_pixels:
        raise MediaError(
            f"{label}: {w}x{h} = {w * h / 1e6:g} megapixels exceeds the limit of "
            f"{limits.max_pixels / 1e6:g} megapixels (possible decompression bomb)"
        )
    if min(w, h) < limits.min_side:
        raise MediaError(
            f"{label}: image is {w}x{h} pixels; at least {limits.min_side}x{limits.min_side} is needed"
        )


def _frame_count(im: Image.Image) -> int:
    try:
        return int(getattr(im, "n_frames", 1))
    except Exception:  # counting GIF frames parses the whole file; a broken tail is "corrupt" later
        return 1


def _to_rgb(im: Image.Image) -> np.ndarray:
    """Any PIL mode -> RGB uint8, scaling high bit depths and flattening alpha onto white."""
    mode = im.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        a = np.asarray(im)
        if a.ndim == 3:  # defensive: multi-band high-depth data is reduced to its first band
            a = a[..., 0]
        a = a.astype(np.float64)
        if mode.startswith("I;16"):
            a = a / 257.0  # 65535 -> 255, 32768 -> 127.5 -> 128
        elif mode == "I":
            lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
            if lo >= 0 and hi <= 65535:  # PIL's "I" almost always holds 16-bit PNG/TIFF samples
                a = a / 257.0
            else:
                a = (a - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(a)
        else:  # "F": [0, 1] floats are the usual convention; anything else is stretched
            a = np.nan_to_num(a, nan=0.0, posinf=0.0, neginf=0.0)
            lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
            if lo >= 0 and hi <= 1.0:
                a = a * 255.0
            elif lo >= 0 and hi <= 255.0:
                pass
            else:
                a = (a - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(a)
        g = np.clip(np.rint(a), 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(g[..., None], 3, axis=2))

    has_alpha = mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in im.info
    if has_alpha:
        rgba = np.asarray(im.convert("RGBA"), dtype=np.uint16)
        alpha = rgba[..., 3:4]
        rgb = (rgba[..., :3] * alpha + 255 * (255 - alpha) + 127) // 255
        return np.ascontiguousarray(rgb.astype(np.uint8))
    if mode != "RGB":
        im = im.convert("RGB")  # 1, L, P, CMYK (incl. Adobe-inverted), YCbCr, LAB, HSV
    return np.ascontiguousarray(np.asarray(im, dtype=np.uint8))


def load_image(
    source: str | Path | bytes,
    name: str | None = None,
    limits: MediaLimits = DEFAULT_LIMITS,
) -> np.ndarray:
    """Decode an image (path or bytes) to a contiguous RGB uint8 HxWx3 array, upright per EXIF.

    Accepts JPEG, PNG, WebP, BMP, TIFF and static GIF in any common mode; refuses empty, oversized,
    truncated, animated, tiny and decompression-bomb inputs with a one-line MediaError.
    """
    label = _label(source, name)
    with _open_image(source, label, limits.max_image_bytes) as im:
        _check_pixels(im, label, limits)
        if im.format in _ANIMATED_FORMATS and getattr(im, "is_animated", False):
            n = _frame_count(im)
            raise MediaError(
                f"{label}: animated image with {n} frames: load it with load_animation (the analysis does)"
            )
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # e.g. TIFF metadata warnings: not the user's problem
                im.load()  # LOAD_TRUNCATED_IMAGES stays False: a cut file raises here
        except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, Image.DecompressionBombError) as exc:
            detail = str(exc)
            if "truncated" in detail.lower() or isinstance(exc, EOFError):
                raise MediaError(f"{label}: image is truncated or corrupt") from None
            raise MediaError(f"{label}: image is truncated or corrupt ({detail})") from None
        except Exception as exc:  # any other decoder failure on hostile input
            raise MediaError(f"{label}: image is truncated or corrupt ({type(exc).__name__}: {exc})") from None
        try:
            upright = ImageOps.exif_transpose(im)
        except Exception:  # malformed EXIF should not cost the user a decodable image
            upright = im
        try:
            return _to_rgb(upright if upright is not None else im)
        except (OSError, ValueError, TypeError) as exc:
            raise MediaError(f"{label}: cannot convert {im.mode} image to RGB ({exc})") from None


# The JPEG standard's luminance quantization table (Annex K), which libjpeg scales by quality.
_JPEG_LUMINANCE = np.array([
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99])


def _ijg_table(quality: int) -> np.ndarray:
    """libjpeg's luminance table at ``quality`` (1-100), entries clamped to 1..255 (baseline)."""
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    return np.clip((_JPEG_LUMINANCE * scale + 50) // 100, 1, 255)


def jpeg_quality(source: str | Path | bytes, name: str | None = None,
                 limits: MediaLimits = DEFAULT_LIMITS) -> int | None:
    """The quality (1-100) on libjpeg's scale that the image's luminance quantization table is
    nearest to, read from the file's header: exact for files written by libjpeg (OpenCV, PIL, most
    software), an estimate for cameras and editors with tables of their own. None for an image that
    is not a JPEG. Compared as sorted entries, so the table's storage order does not matter."""
    label = _label(source, name)
    with _open_image(source, label, limits.max_image_bytes) as im:
        tables = getattr(im, "quantization", None) if im.format in ("JPEG", "MPO") else None
        try:
            table = np.sort(np.asarray(tables[min(tables)], dtype=np.int64).ravel()) if tables else None
        except (TypeError, ValueError, KeyError):  # a header PIL parsed oddly: no estimate, not an error
            table = None
    if table is None or table.size != 64:
        return None
    errors = [np.abs(np.sort(_ijg_table(q)) - table).sum() for q in range(1, 101)]
    return int(np.argmin(errors)) + 1


# --------------------------------------------------------------------------------------------
# animated images (GIF, WebP, APNG): short videos


def is_animated(source: str | Path | bytes, name: str | None = None, limits: MediaLimits = DEFAULT_LIMITS) -> bool:
    """True for a GIF, WebP or PNG with more than one frame (reads the header only)."""
    label = _label(source, name)
    with _open_image(source, label, limits.max_image_bytes) as im:
        return im.format in _ANIMATED_FORMATS and bool(getattr(im, "is_animated", False))


def load_animation(
    source: str | Path | bytes,
    frames: int = 16,
    fps: float | None = None,
    name: str | None = None,
    limits: MediaLimits = DEFAULT_LIMITS,
    indices: Sequence[int] | None = None,
) -> VideoFrames:
    """Sample an animated GIF/WebP/PNG like a video: the same sampling rule as :func:`load_video`
    (``frames`` evenly, ``fps``, or just the frames at ``indices``), timestamps from the frames' own
    durations, RGB uint8 frames (each frame composited as a viewer shows it). Short manipulated clips
    circulate as GIFs."""
    label = _label(source, name)
    with _open_image(source, label, limits.max_image_bytes) as im:
        _check_pixels(im, label, limits)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                count = _frame_count(im)
                starts, t = [], 0.0
                for i in range(count):  # durations live in each frame's header: a cheap pass for GIF
                    im.seek(i)
                    if im.format == "WEBP":
                        im.load()  # Pillow's WebP reader sets a frame's duration only once it is decoded
                    starts.append(t)
                    t += max(float(im.info.get("duration") or 100.0), 10.0) / 1000.0  # browsers floor 0 ms at ~10 ms
                if t > limits.max_duration_s:
                    raise MediaError(f"{label}: animation is {t:.1f} s long; the limit is {limits.max_duration_s:g} s")
                fps_in = count / t if t > 0 else _FALLBACK_FPS
                try:
                    wanted = ([i for i in _checked_indices(indices, label, limits) if i < count] if indices is not None
                              else sample_frame_indices(count, frames=None if fps else frames, fps_in=fps_in, fps=fps,
                                                        max_frames=limits.max_frames,
                                                        times=starts if _unevenly_spaced(starts, count, fps_in) else None))
                except ValueError as exc:
                    raise MediaError(f"{label}: {exc}") from None
                if not wanted:
                    raise MediaError(f"{label}: none of the frames asked for exists (the animation has {count} frames)")
                out = []
                for i in wanted:
                    im.seek(i)
                    out.append(_to_rgb(im.convert("RGBA")))
        except MediaError:
            raise
        except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, MemoryError) as exc:
            raise MediaError(f"{label}: animation is truncated or corrupt ({exc})") from None
        height, width = out[0].shape[:2]
        return VideoFrames(frames=out, indices=list(wanted), timestamps=[starts[i] for i in wanted], fps=fps_in,
                           frame_count=count, duration_s=t, width=int(width), height=int(height),
                           frame_times=starts if _unevenly_spaced(starts, count, fps_in) else None)


# --------------------------------------------------------------------------------------------
# videos


def sample_frame_indices(
    frame_count: int,
    frames: int | None = None,
    fps_in: float | None = None,
    fps: float | None = None,
    max_frames: int = 256,
    times: Sequence[float] | None = None,
) -> list[int]:
    """Which frame indices to decode: the pure sampling rule behind :func:`load_video`.

    * ``fps`` given: one frame every ``fps_in / fps`` frames starting at 0 (every frame if ``fps``
      is at least ``fps_in``); with ``times`` (each frame's time, for a video whose frames are unevenly
      spaced), the frame on screen at each 1 / ``fps`` seconds instead. If that is more than
      ``max_frames``, ``max_frames`` frames spread evenly over the whole video instead, so the end of
      a long video is never silently dropped.
    * else ``frames=N``: N indices from linspace over [0, frame_count - 1], rounded and
      deduplicated (first and last included when N > 1; N == 1 picks the middle frame; all
      frames when the video has fewer than N). With ``times``, the frame nearest each of N instants
      spread evenly from the first frame's time to the last's instead (a frame nearest two instants
      counts once), so a variable frame rate's bursts of frames do not take the samples from its calm
      stretches; evenly spaced times give the same frames. Both rules keep the N frames when asked
      again for 2N - 1.

    Returns a sorted list of unique ints in [0, frame_count). Bad arguments raise ValueError.
    """
    if frame_count <= 0:
        return []
    if fps is not None:
        if not (isinstance(fps, (int, float)) and math.isfinite(fps) and fps > 0):
            raise ValueError(f"fps must be a positive number, got {fps!r}")
        if fps_in is None or not math.isfinite(fps_in) or fps_in <= 0:
            raise ValueError("fps sampling needs the video's frame rate (fps_in)")
        step = fps_in / fps
        if times is not None and len(times) == frame_count:
            ticks = np.arange(0.0, float(times[-1]) + 1e-9, 1.0 / fps)
            shown = np.searchsorted(np.asarray(times, dtype=np.float64), ticks + 1e-9, side="right") - 1
            idx = sorted({int(i) for i in shown})  # the frame on screen at each tick
        elif step <= 1.0:
            idx = list(range(frame_count))
        else:
            n = int(math.floor((frame_count - 1) / step + 1e-9)) + 1
            idx = sorted({min(int(round(k * step)), frame_count - 1) for k in range(n)})
        if len(idx) <= max_frames:
            return idx
        frames = max_frames
    if frames is None:
        raise ValueError("give either frames or fps")
    if isinstance(frames, bool) or not isinstance(frames, (int, np.integer)) or frames < 1:
        raise ValueError(f"frames must be a positive integer, got {frames!r}")
    frames = int(frames)
    if frames >= frame_count:
        return list(range(frame_count))
    if times is not None and len(times) == frame_count:
        at = np.asarray(times, dtype=np.float64)
        ticks = np.array([(at[0] + at[-1]) / 2]) if frames == 1 else np.linspace(at[0], at[-1], frames)
        after = np.clip(np.searchsorted(at, ticks), 1, frame_count - 1)  # the frames either side of each instant
        nearest = np.where(ticks - at[after - 1] < at[after] - ticks, after - 1, after)
        return sorted({int(i) for i in nearest})
    if frames == 1:
        return [(frame_count - 1) // 2]
    raw = np.rint(np.linspace(0, frame_count - 1, frames)).astype(np.int64)
    return sorted({int(i) for i in raw})


def _checked_indices(indices: Sequence[int], label: str, limits: MediaLimits) -> list[int]:
    """Frame indices asked for by a caller: sorted, unique, non-negative ints, at most ``limits.max_frames``."""
    try:
        out = sorted({int(i) for i in indices if not isinstance(i, bool) and int(i) == i})
    except (TypeError, ValueError):
        raise MediaError(f"{label}: frame indices must be integers, got {list(indices)!r}"[:300]) from None
    if not out or out[0] < 0 or len(out) != len(list(indices)):
        raise MediaError(f"{label}: frame indices must be distinct integers from 0, got {list(indices)!r}"[:300])
    if len(out) > limits.max_frames:
        raise MediaError(f"{label}: {len(out)} frames asked for; the limit is {limits.max_frames}")
    return out


@contextmanager
def _video_path(source: str | Path | bytes, label: str, limits: MediaLimits) -> Iterator[Path]:
    """A filesystem path OpenCV can open; bytes go to a temp file with a matching suffix."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = _as_bytes(source)
        _check_size(label, len(data), limits.max_video_bytes)
        suffix = Path(label).suffix.lower()
        if suffix not in VIDEO_EXTENSIONS:
            suffix = ".mp4"
        tmp = tempfile.NamedTemporaryFile(prefix="forensics-", suffix=suffix, delete=False)
        try:
            with tmp:
                tmp.write(data)
            yield Path(tmp.name)
        finally:
            try:
                os.unlink(tmp.name)
            except OSError:
                pass
    else:
        path = Path(source)
        _check_path(path, label, limits.max_video_bytes)
        yield path


def _open_capture(path: Path, label: str) -> cv2.VideoCapture:
    # FFMPEG only: OpenCV's image-sequence backend would read printf patterns in file names.
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    if not cap.isOpened():
        cap.release()
        codecs = _stream_codecs(path)
        if codecs is not None and codecs[0] is None:  # FFmpeg reads the file, and finds no picture in it
            what = "audio only" if codecs[1] else "no stream of pictures"
            raise MediaError(f"{label}: has no video stream ({what}): nothing to analyse")
        raise MediaError(f"{label}: not a readable video (corrupt file or unsupported format/codec)")
    return cap


def _bgr_to_rgb(frame: np.ndarray) -> np.ndarray:
    if frame.ndim == 2:
        rgb = cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB)
    elif frame.shape[2] == 4:
        rgb = cv2.cvtColor(frame, cv2.COLOR_BGRA2RGB)
    elif frame.shape[2] == 1:
        rgb = cv2.cvtColor(frame, cv2.COLOR_GRAY2RGB)
    else:
        rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    if rgb.dtype != np.uint8:  # 16-bit decodes (rare) -> 8-bit
        rgb = (rgb.astype(np.float64) / 257.0).round().clip(0, 255).astype(np.uint8)
    return np.ascontiguousarray(rgb)


def _read_sequential(cap: cv2.VideoCapture, wanted: list[int]) -> tuple[dict[int, np.ndarray], int | None]:
    """Decode from the start up to the last wanted index, keeping the wanted ones.

    Returns (frames by index, number of frames in the stream if its end was reached, else None).
    grab() only demuxes/decodes; retrieve() (colour conversion) is paid for wanted frames only.
    """
    want = set(wanted)
    last = wanted[-1]
    got: dict[int, np.ndarray] = {}
    i = 0
    while i <= last:
        if not cap.grab():
            return got, i
        if i in want:
            ok, frame = cap.retrieve()
            if ok and frame is not None and frame.size:
                got[i] = _bgr_to_rgb(frame)
        i += 1
    return got, None


# What the skipping decoder below is known to read exactly as OpenCV does (checked frame by frame on
# every video under ../shared/data; tests/test_media.py): other codecs and pixel formats go to OpenCV.
_SKIPPING_CODECS = {"h264"}
_SKIPPING_PIXELS = {"yuv420p"}


def _read_skipping(path: Path, wanted: list[int], count: int) -> dict[int, np.ndarray] | None:
    """The frames ``_read_sequential`` gives, pixel for pixel, decoding less: PyAV runs FFmpeg's decoder
    in process and tells it to skip the frames no other frame refers to (H.264's non-reference B-frames)
    unless one is wanted. On the DFDC 1080p clip that decodes 16 of 300 frames in about 40% less CPU time.

    Frames are numbered as OpenCV numbers them (in presentation order: a packet's rank by timestamp),
    and converted to RGB as OpenCV converts (by the stream's colour matrix and range, BT.601 and limited
    range where it names none). ``None`` where that is not
    known to hold, and the caller reads with OpenCV: a codec or pixel format not checked, more than one
    video stream, packets without distinct timestamps, marked to be discarded, or not numbering the
    container's ``count`` frames, a rotated picture, a wanted frame not decoded, or any decoding error.
    """
    try:
        import av
    except ImportError:
        return None
    want = set(wanted)
    got: dict[int, np.ndarray] = {}
    try:
        with av.open(str(path)) as container:
            if len(container.streams.video) != 1:
                return None
            stream = container.streams.video[0]
            context = stream.codec_context
            if context.name not in _SKIPPING_CODECS or context.pix_fmt not in _SKIPPING_PIXELS:
                return None
            stamps = []
            for packet in container.demux(stream):
                if packet.size:
                    if packet.pts is None or packet.is_discard:
                        return None
                    stamps.append(packet.pts)
        if len(stamps) != count or len(set(stamps)) != count:
            return None
        stamps.sort()
        rank = {pts: i for i, pts in enumerate(stamps)}
        wanted_pts = {stamps[i] for i in wanted}
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for packet in container.demux(stream):
                stream.codec_context.skip_frame = "DEFAULT" if packet.pts in wanted_pts else "NONREF"
                for frame in packet.decode():
                    if frame.rotation:
                        return None
                    i = rank.get(frame.pts)
                    if i in want:
                        got[i] = frame.to_ndarray(format="rgb24")  # the stream's own colour matrix and range
                if len(got) == len(want):
                    break
    except (av.FFmpegError, OSError, ValueError, MemoryError):
        return None
    return got if len(got) == len(want) else None


def _read_seek(cap: cv2.VideoCapture, wanted: list[int]) -> dict[int, np.ndarray] | None:
    """Seek to each wanted index; None as soon as one seek or read fails (caller reads sequentially)."""
    got: dict[int, np.ndarray] = {}
    for i in wanted:
        if not cap.set(cv2.CAP_PROP_POS_FRAMES, float(i)):
            return None
        ok, frame = cap.read()
        if not ok or frame is None or not frame.size:
            return None
        pos = cap.get(cv2.CAP_PROP_POS_FRAMES)
        if pos > 0 and int(round(pos)) != i + 1:  # the backend landed elsewhere
            return None
        got[i] = _bgr_to_rgb(frame)
    return got


def _frame_times(path: Path) -> list[float] | None:
    """Every frame's time in seconds from the first, in presentation order (as OpenCV numbers frames), from
    the container's packet timestamps: only packets are read, nothing is decoded. None where they cannot
    be read or do not say (not exactly one video stream, a packet without a timestamp, two alike)."""
    try:
        import av
    except ImportError:
        return None
    try:
        with av.open(str(path)) as container:
            if len(container.streams.video) != 1:
                return None
            stream = container.streams.video[0]
            base = stream.time_base
            stamps = [p.pts for p in container.demux(stream) if p.size]
    except (av.FFmpegError, OSError, ValueError, MemoryError):
        return None
    if base is None or not stamps or None in stamps or len(set(stamps)) != len(stamps):
        return None
    stamps.sort()
    return [float((pts - stamps[0]) * base) for pts in stamps]


def _player_start(path: Path) -> float:
    """Where the first video frame lies on a player's timeline, in seconds: its stream's own start time.
    0 for most files; hamilton_clip.mp4's video starts at 0.852 s (its audio at 0.008 s), and Chromium
    shows its frame 219 from 8.159 s (0.852 + 219 frames), not at the 7.307 s counted from the first
    frame (measured by seeking a <video> and comparing the pixels: tests/test_app.py). 0 where not known."""
    try:
        import av
    except ImportError:
        return 0.0
    try:
        with av.open(str(path)) as container:
            if len(container.streams.video) != 1:
                return 0.0
            stream = container.streams.video[0]
            if stream.start_time is None or stream.time_base is None:
                return 0.0
            start = float(stream.start_time * stream.time_base)
    except (av.FFmpegError, OSError, ValueError, MemoryError):
        return 0.0
    return start if 0.0 < start < 3600.0 else 0.0


def _unevenly_spaced(times: list[float] | None, count: int, fps: float) -> bool:
    """Whether a video's frames are not where index / rate puts them (a phone's variable frame rate: OpenCV's
    rate is then an average, or the first rate, and frame / rate can be seconds off), by more than half a
    frame; False where the times do not number ``count`` frames."""
    return times is not None and len(times) == count and any(abs(t - i / fps) > 0.5 / fps for i, t in enumerate(times))


# Matroska (and WebM) store no frame count: OpenCV's is duration x rate, which a variable frame rate makes
# wrong (a 100-frame clip counted as 296), so the packets are counted instead.
_ESTIMATED_COUNT_SUFFIXES = {".mkv", ".webm"}


def _count_frames(path: Path, label: str, fps_in: float, limits: MediaLimits) -> int:
    """Count frames by decoding (for containers that report none), enforcing the duration limit."""
    cap = _open_capture(path, label)
    try:
        cap_frames = int(limits.max_duration_s * fps_in) + 1
        n = 0
        while cap.grab():
            n += 1
            if n > cap_frames:
                raise MediaError(
                    f"{label}: video is longer than the limit of {limits.max_duration_s:g} s"
                )
        return n
    finally:
        cap.release()


def _prop(cap: cv2.VideoCapture, prop: int) -> float:
    try:
        v = float(cap.get(prop))
    except (cv2.error, TypeError, ValueError):
        return 0.0
    return v if math.isfinite(v) else 0.0


def load_video(
    source: str | Path | bytes,
    frames: int = 16,
    fps: float | None = None,
    name: str | None = None,
    limits: MediaLimits = DEFAULT_LIMITS,
    indices: Sequence[int] | None = None,
) -> VideoFrames:
    """Sample frames from a video through OpenCV/FFmpeg as RGB uint8 arrays.

    ``frames=N`` samples N frames evenly over the whole video; ``fps=R`` samples R frames per
    second instead (see :func:`sample_frame_indices`); ``indices`` decodes just those frames (a
    second look at a video already sampled: indices past its end are dropped). A missing or wrong
    container frame count is tolerated: an unknown count is found by decoding, and a count that
    overshoots the real stream is corrected and the samples redrawn. Frames that fail to decode are
    skipped.
    """
    label = _label(source, name)
    if indices is not None:
        indices = _checked_indices(indices, label, limits)
    elif fps is not None:
        if isinstance(fps, bool) or not isinstance(fps, (int, float, np.integer, np.floating)) or not math.isfinite(fps) or fps <= 0:
            raise MediaError(f"{label}: fps must be a positive number, got {fps!r}")
        fps = float(fps)
    elif isinstance(frames, bool) or not isinstance(frames, (int, np.integer)) or not 1 <= frames <= limits.max_frames:
        raise MediaError(f"{label}: frames must be an integer from 1 to {limits.max_frames}, got {frames!r}")

    try:
        with _video_path(source, label, limits) as path:
            return _load_video_path(path, label, frames, fps, limits, indices)
    except MediaError:
        raise
    except (cv2.error, OSError, ValueError, MemoryError) as exc:
        raise MediaError(f"{label}: cannot read video ({type(exc).__name__}: {exc})") from None


def _load_video_path(path: Path, label: str, frames: int | None, fps: float | None, limits: MediaLimits,
                     indices: list[int] | None = None) -> VideoFrames:
    cap = _open_capture(path, label)
    try:
        fps_in = _prop(cap, cv2.CAP_PROP_FPS)
        if not 0 < fps_in <= 1000:
            fps_in = _FALLBACK_FPS
        count = int(_prop(cap, cv2.CAP_PROP_FRAME_COUNT))
        w, h = int(_prop(cap, cv2.CAP_PROP_FRAME_WIDTH)), int(_prop(cap, cv2.CAP_PROP_FRAME_HEIGHT))
        codec, bitrate = video_codec_name(_prop(cap, cv2.CAP_PROP_FOURCC)), _prop(cap, cv2.CAP_PROP_BITRATE)
        if w * h > limits.max_pixels:
            raise MediaError(
                f"{label}: video frames of {w}x{h} = {w * h / 1e6:g} megapixels exceed the limit of "
                f"{limits.max_pixels / 1e6:g} megapixels"
            )
        if 0 < min(w, h) < limits.min_side:  # as an image's: no face fits (0: not said, checked once decoded)
            raise MediaError(
                f"{label}: video is {w}x{h} pixels; at least {limits.min_side}x{limits.min_side} is needed"
            )
        if count > 0 and count / fps_in > limits.max_duration_s:
            raise MediaError(
                f"{label}: video is {count / fps_in:.1f} s long; the limit is {limits.max_duration_s:g} s"
            )
    except BaseException:
        cap.release()
        raise

    try:
        times = _frame_times(path)
        if times is not None and path.suffix.lower() in _ESTIMATED_COUNT_SUFFIXES:
            count = len(times)
        if count <= 0:
            cap.release()
            count = _count_frames(path, label, fps_in, limits)
            if count == 0:
                raise MediaError(f"{label}: video has no decodable frames")
            cap = _open_capture(path, label)

        def pick(n: int) -> list[int]:
            if indices is not None:
                return [i for i in indices if i < n]
            return sample_frame_indices(n, frames=None if fps else frames, fps_in=fps_in, fps=fps, max_frames=limits.max_frames,
                                        times=times if _unevenly_spaced(times, n, fps_in) else None)

        wanted = pick(count)
        if not wanted:
            raise MediaError(f"{label}: none of the frames asked for exists (the video has {count} frames)")
        gaps = np.diff(wanted) if len(wanted) > 1 else np.array([wanted[0] + 1])
        got: dict[int, np.ndarray] | None = None
        if int(gaps.min()) > _SEEK_STEP:
            got = _read_seek(cap, wanted)
            if got is None:  # seeking unsupported or inaccurate here: start over, sequentially
                cap.release()
                cap = _open_capture(path, label)
        if got is None:
            got = _read_skipping(path, wanted, count)
        if got is None:
            got, end = _read_sequential(cap, wanted)
            if end is not None:
                if end == 0:
                    raise MediaError(f"{label}: video has no decodable frames")
                if end < count:  # the container overstated its length: redraw over what exists
                    count = end
                    wanted = pick(count)
                    if any(i not in got for i in wanted):
                        cap.release()
                        cap = _open_capture(path, label)
                        got, _ = _read_sequential(cap, wanted)
        kept = [i for i in wanted if i in got]
        if not kept:
            raise MediaError(f"{label}: video has no decodable frames")
        out = [got[i] for i in kept]
        height, width = out[0].shape[:2]
        if min(height, width) < limits.min_side:
            raise MediaError(f"{label}: video is {width}x{height} pixels; at least {limits.min_side}x{limits.min_side} "
                             "is needed")
        uneven = _unevenly_spaced(times, count, fps_in)
        start = _player_start(path)  # times as a player shows them, where the video stream starts late
        return VideoFrames(
            frames=out,
            indices=kept,
            timestamps=[start + (times[i] if uneven else i / fps_in) for i in kept],
            fps=fps_in,
            frame_count=count,
            duration_s=start + (2 * times[-1] - times[-2] if uneven else count / fps_in),  # the last frame's end
            width=int(width),
            height=int(height),
            codec=codec,
            bitrate_kbps=bitrate if bitrate > 0 else None,
            frame_times=list(times) if uneven else None,
        )
    finally:
        cap.release()


# --------------------------------------------------------------------------------------------
# a copy the browser can play: for the player only, the analysis always reads the original

# Container and codec pairs that the major browsers play (Gradio's own list): anything else gets a copy.
_BROWSER_PLAYABLE = {(".mp4", "h264"), (".m4v", "h264"), (".mp4", "av1"), (".webm", "vp8"), (".webm", "vp9"),
                     (".webm", "av1"), (".ogg", "theora")}
_MP4_VIDEO_CODECS = {"h264", "av1"}  # copied into an MP4 container as they are (no re-encoding)
_MP4_AUDIO_CODECS = {"aac", "mp3"}
_CODEC_TITLES = {"h264": "H.264", "hevc": "HEVC", "mpeg4": "MPEG-4 Part 2", "msmpeg4v3": "MS MPEG-4 v3",
                 "mjpeg": "Motion JPEG", "mpeg2video": "MPEG-2", "mpeg1video": "MPEG-1", "vp8": "VP8", "vp9": "VP9",
                 "av1": "AV1", "prores": "ProRes", "rawvideo": "uncompressed video", "theora": "Theora"}
# A re-encoded copy is at most this many rows (libx264's veryfast preset): enough to watch, and quick to make
# (a 1080p clip of 300 frames in 4.5 s on 2 cores); a video longer than BROWSER_COPY_LONG_S gets
# BROWSER_COPY_LONG_ROWS and the ultrafast preset, so that an hour of 1080p is copied in minutes.
BROWSER_COPY_ROWS = 720
BROWSER_COPY_LONG_S = 300
BROWSER_COPY_LONG_ROWS = 360
BROWSER_COPY_TIMEOUT_S = 600


@dataclass(frozen=True)
class BrowserCopy:
    """A copy of a video that browsers play, for showing it; ``note`` says what it is, in one line."""

    path: Path
    reencoded: bool  # False: the same video stream, put in an MP4 container
    note: str


def _stream_codecs(path: Path) -> tuple[str | None, str | None, float | None] | None:
    """The first video and audio streams' codecs as FFmpeg names them and the duration in seconds (when the
    container says), or None for a file FFmpeg can't open."""
    import av

    try:
        with av.open(str(path)) as container:
            video = container.streams.video[0].codec_context.name if container.streams.video else None
            audio = container.streams.audio[0].codec_context.name if container.streams.audio else None
            duration = container.duration / 1e6 if container.duration else None  # av.time_base: microseconds
    except (av.FFmpegError, OSError, ValueError, IndexError):
        return None
    return video, audio, duration


# OpenCV's FourCCs (MediaInfo.codec) as people know them; the report shows both ("MPEG-4 Part 2 (FourCC FMP4)").
_FOURCC_TITLES = {"h264": "H.264", "avc1": "H.264", "x264": "H.264", "H264": "H.264", "hevc": "HEVC", "hvc1": "HEVC",
                  "hev1": "HEVC", "FMP4": "MPEG-4 Part 2", "mp4v": "MPEG-4 Part 2", "XVID": "MPEG-4 Part 2",
                  "DIVX": "MPEG-4 Part 2", "DX50": "MPEG-4 Part 2", "MJPG": "Motion JPEG", "VP80": "VP8",
                  "VP90": "VP9", "vp09": "VP9", "av01": "AV1", "AV01": "AV1"}


def fourcc_title(fourcc: str | None) -> str | None:
    """A stream's FourCC as the report shows it: "MPEG-4 Part 2 (FourCC FMP4)", or the code alone when it is
    not one of the common ones; None for none."""
    if not fourcc:
        return None
    title = _FOURCC_TITLES.get(fourcc)
    return f"{title} (FourCC {fourcc})" if title else f"FourCC {fourcc}"


def codec_title(codec: str | None) -> str:
    """A codec's name as people know it ("MPEG-4 Part 2" for FFmpeg's "mpeg4")."""
    return _CODEC_TITLES.get(codec or "", codec or "an unknown codec")


def browser_playable(path: str | Path) -> bool:
    """Whether browsers play this video as it is (its container and video codec). A file that is not a
    video by its extension, or that FFmpeg cannot open, counts as playable: there is nothing to copy,
    and the analysis says what is wrong with it."""
    path = Path(path)
    if path.suffix.lower() not in VIDEO_EXTENSIONS:
        return True
    codecs = _stream_codecs(path)
    return codecs is None or codecs[0] is None or (path.suffix.lower(), codecs[0]) in _BROWSER_PLAYABLE


def _run_ffmpeg(args: list[str], out: Path, label: str, timeout: float) -> None:
    """FFmpeg writing ``out`` through a temporary name (no half-written file), at low priority (the copy
    must not slow analyses down); a failure is one MediaError line."""
    import shutil
    import subprocess

    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise MediaError(f"{label}: no playable copy can be made without FFmpeg (install the ffmpeg package)")
    part = out.with_name(f".{out.stem}.part.mp4")
    nice = (lambda: os.nice(10)) if hasattr(os, "nice") else None
    try:
        done = subprocess.run([ffmpeg, "-nostdin", "-y", "-loglevel", "error", *args, str(part)], capture_output=True,
                              text=True, timeout=timeout, preexec_fn=nice)
        if done.returncode != 0 or not part.exists() or part.stat().st_size == 0:
            last = (done.stderr.strip().splitlines() or ["FFmpeg failed"])[-1]
            raise MediaError(f"{label}: no playable copy could be made ({last[:200]})")
        os.replace(part, out)
    except subprocess.TimeoutExpired:
        raise MediaError(f"{label}: no playable copy within {timeout:.0f} s (the video is long; "
                         "the analysis is not affected)") from None
    finally:
        part.unlink(missing_ok=True)


# The end of browser_copy's refusal of a video over the limits: the analysis refuses it too, so the player
# needs no copy (the Video tab says so as it is, not "the analysis reads it as it is").
COPY_REFUSED = "no copy is made for the player, and the analysis refuses it too"


def browser_copy(path: str | Path, dest_dir: str | Path | None = None, *, rows: int = BROWSER_COPY_ROWS,
                 timeout: float = BROWSER_COPY_TIMEOUT_S, limits: MediaLimits = DEFAULT_LIMITS) -> BrowserCopy:
    """An MP4 copy that browsers play of a video that not all of them do (MPEG-4 Part 2, Motion JPEG, HEVC,
    an AVI, a MOV...), named ``<file name>.browser-copy.mp4``: beside the video, and then reused when it is
    already there, or in ``dest_dir``. H.264 and AV1 streams are put in an MP4 container as they are;
    anything else is re-encoded with libx264 at no more than ``rows`` rows (``BROWSER_COPY_LONG_ROWS`` for a
    video longer than ``BROWSER_COPY_LONG_S``). The copy is for watching: it
    is not the evidence, and an analysis must read ``path``. Raises MediaError (one line) where no copy
    can be made, and where the video breaks ``limits`` (its size, its length): no copy is made of what an
    analysis under them refuses."""
    path = Path(path)
    label = path.name
    try:
        _check_path(path, label, limits.max_video_bytes)
    except MediaError as exc:
        raise MediaError(f"{exc}; {COPY_REFUSED}") from None
    codecs = _stream_codecs(path)
    if codecs is None or codecs[0] is None:
        raise MediaError(f"{label}: not a readable video (corrupt file or unsupported format/codec)")
    video, audio, duration = codecs
    if duration is not None and duration > limits.max_duration_s:
        raise MediaError(f"{label}: video is {duration:.1f} s long; the limit is {limits.max_duration_s:g} s; "
                         f"{COPY_REFUSED}")
    out = Path(dest_dir or path.parent) / f"{path.name}.browser-copy.mp4"
    out.parent.mkdir(parents=True, exist_ok=True)
    reuse = dest_dir is None and out.exists() and out.stat().st_mtime >= path.stat().st_mtime
    kind = f"{codec_title(video)} in {path.suffix.lstrip('.').upper() or 'a file without extension'}"
    audio_args = [] if audio is None else ["-c:a", "copy" if audio in _MP4_AUDIO_CODECS else "aac"]
    common = ["-i", str(path), "-map", "0:v:0", "-map", "0:a:0?", "-map_metadata", "-1", "-movflags", "+faststart"]
    if video in _MP4_VIDEO_CODECS:
        try:
            if not reuse:
                _run_ffmpeg([*common, "-c:v", "copy", *audio_args], out, label, timeout)
            return BrowserCopy(out, False, f"{label}: {kind} does not play in every browser, so the player shows "
                               "the same video stream in an MP4 container; the analysis reads the file you uploaded.")
        except MediaError:  # streams an MP4 can't take as they are (timestamps, say): re-encoded below
            reuse = False
    long = duration is not None and duration > BROWSER_COPY_LONG_S
    rows = min(rows, BROWSER_COPY_LONG_ROWS) if long else rows
    if not reuse:
        scale = f"scale=-2:'2*trunc(min({rows},ih)/2)'"
        _run_ffmpeg([*common, "-vf", scale, "-fps_mode", "passthrough",  # each frame at its own time, none added
                     "-c:v", "libx264", "-preset", "ultrafast" if long else "veryfast",
                     "-crf", "23", "-pix_fmt",
                     "yuv420p", *(["-c:a", "aac"] if audio else [])], out, label, timeout)
    return BrowserCopy(out, True, f"{label}: browsers do not play {kind}, so the player shows a copy re-encoded to "
                       f"H.264 (at most {rows} rows); the analysis reads the file you uploaded.")
