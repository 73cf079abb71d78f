"""Tests for forensics.media: every input is generated in tmp_path, except one real-video test."""

from __future__ import annotations

import io
import re
import struct
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageFile

from forensics import media
from forensics.core import MediaError
from forensics.media import (
    DEFAULT_LIMITS,
    IMAGE_EXTENSIONS,
    VIDEO_EXTENSIONS,
    MediaLimits,
    check_file,
    load_image,
    load_video,
    media_kind,
    sample_frame_indices,
)

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"

RED, BLUE = (220, 30, 30), (30, 40, 210)


def two_tone(w: int = 40, h: int = 24) -> Image.Image:
    """Left half red, right half blue: lets tests see both colour and orientation."""
    a = np.zeros((h, w, 3), np.uint8)
    a[:, : w // 2] = RED
    a[:, w // 2 :] = BLUE
    return Image.fromarray(a)


def assert_rgb(a: np.ndarray, h: int, w: int) -> None:
    assert isinstance(a, np.ndarray)
    assert a.shape == (h, w, 3)
    assert a.dtype == np.uint8
    assert a.flags["C_CONTIGUOUS"]


def close(px: np.ndarray, colour: tuple[int, int, int], tol: int) -> bool:
    return bool(np.all(np.abs(px.astype(int) - np.array(colour)) <= tol))


def check_error(exc_info: pytest.ExceptionInfo, name: str) -> str:
    msg = str(exc_info.value)
    assert name in msg, msg
    assert "\n" not in msg and "\r" not in msg, msg
    return msg


# ------------------------------------------------------------------------------------------
# images: formats and modes


@pytest.mark.parametrize(
    ("fmt", "ext", "tol"),
    [("JPEG", ".jpg", 20), ("PNG", ".png", 0), ("WEBP", ".webp", 20), ("BMP", ".bmp", 0),
     ("TIFF", ".tiff", 0), ("GIF", ".gif", 12)],
)
def test_each_format_loads(tmp_path: Path, fmt: str, ext: str, tol: int) -> None:
    p = tmp_path / f"img{ext}"
    kwargs = {"quality": 95} if fmt in ("JPEG", "WEBP") else {}
    two_tone().save(p, fmt, **kwargs)
    a = load_image(p)
    assert_rgb(a, 24, 40)
    assert close(a[12, 5], RED, tol), a[12, 5]
    assert close(a[12, 35], BLUE, tol), a[12, 35]


def test_exif_orientation_6_rotates(tmp_path: Path) -> None:
    p = tmp_path / "rot.jpg"
    im = two_tone(40, 24)
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated 90 degrees clockwise
    im.save(p, "JPEG", quality=95, exif=exif)
    a = load_image(p)
    assert_rgb(a, 40, 24)  # shape swapped
    # 90 degrees clockwise: the stored left half (red) ends up on top.
    assert close(a[5, 12], RED, 25), a[5, 12]
    assert close(a[35, 12], BLUE, 25), a[35, 12]


def test_grayscale_and_bilevel(tmp_path: Path) -> None:
    g = np.tile(np.linspace(0, 255, 32).astype(np.uint8), (20, 1))
    Image.fromarray(g, "L").save(tmp_path / "g.png")
    a = load_image(tmp_path / "g.png")
    assert_rgb(a, 20, 32)
    assert np.array_equal(a[..., 0], g) and np.array_equal(a[..., 1], g) and np.array_equal(a[..., 2], g)

    b = Image.fromarray(np.where(np.arange(32)[None, :].repeat(20, 0) < 16, 0, 255).astype(np.uint8)).convert("1")
    b.save(tmp_path / "b.png")
    a = load_image(tmp_path / "b.png")
    assert_rgb(a, 20, 32)
    assert a[0, 0].tolist() == [0, 0, 0] and a[0, 31].tolist() == [255, 255, 255]


def test_rgba_transparent_becomes_white(tmp_path: Path) -> None:
    a = np.zeros((20, 30, 4), np.uint8)
    a[:, :10] = (255, 0, 0, 0)  # fully transparent red -> white
    a[:, 10:20] = (0, 0, 255, 255)  # opaque blue stays blue
    a[:, 20:] = (0, 0, 0, 128)  # half-transparent black -> mid grey
    Image.fromarray(a, "RGBA").save(tmp_path / "t.png")
    out = load_image(tmp_path / "t.png")
    assert_rgb(out, 20, 30)
    assert out[5, 5].tolist() == [255, 255, 255]
    assert out[5, 15].tolist() == [0, 0, 255]
    assert np.all(np.abs(out[5, 25].astype(int) - 127) <= 1), out[5, 25]

    la = Image.fromarray(a[..., [0, 3]], "LA")  # grey + alpha
    la.save(tmp_path / "la.png")
    out = load_image(tmp_path / "la.png")
    assert out[5, 5].tolist() == [255, 255, 255]


def test_palette_with_and_without_transparency(tmp_path: Path) -> None:
    p = two_tone().quantize(colors=4)
    assert p.mode == "P"
    p.save(tmp_path / "p.png")
    a = load_image(tmp_path / "p.png")
    assert_rgb(a, 24, 40)
    assert close(a[0, 0], RED, 8) and close(a[0, 39], BLUE, 8)

    idx_red = p.getpixel((0, 0))
    p.info["transparency"] = idx_red
    p.save(tmp_path / "pt.png", transparency=idx_red)
    a = load_image(tmp_path / "pt.png")
    assert a[0, 0].tolist() == [255, 255, 255]  # transparent palette entry -> white
    assert close(a[0, 39], BLUE, 8)


def test_16bit_png_scales_not_clips(tmp_path: Path) -> None:
    a = np.zeros((20, 30), np.uint16)
    a[:, :10] = 65535
    a[:, 10:20] = 32768
    a[:, 20:] = 257
    Image.fromarray(a).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")
    out = load_image(tmp_path / "deep.png")
    assert_rgb(out, 20, 30)
    assert out[0, 0].tolist() == [255, 255, 255]
    assert np.all(np.abs(out[0, 15].astype(int) - 128) <= 1)
    assert out[0, 25].tolist() == [1, 1, 1]


def test_cmyk_jpeg_to_rgb(tmp_path: Path) -> None:
    Image.new("CMYK", (32, 20), (0, 255, 255, 0)).save(tmp_path / "cmyk.jpg", quality=95)
    assert Image.open(tmp_path / "cmyk.jpg").mode == "CMYK"
    a = load_image(tmp_path / "cmyk.jpg")
    assert_rgb(a, 20, 32)
    assert close(a[10, 16], (255, 0, 0), 10), a[10, 16]


def test_lab_tiff_to_rgb(tmp_path: Path) -> None:
    two_tone().convert("LAB").save(tmp_path / "lab.tif")
    assert Image.open(tmp_path / "lab.tif").mode == "LAB"
    a = load_image(tmp_path / "lab.tif")
    assert close(a[12, 5], RED, 6) and close(a[12, 35], BLUE, 6)


def test_bytes_input_matches_path(tmp_path: Path) -> None:
    p = tmp_path / "x.png"
    two_tone().save(p)
    from_bytes = load_image(p.read_bytes())
    assert np.array_equal(from_bytes, load_image(p))
    with pytest.raises(MediaError, match=r"^upload: file is empty$"):
        load_image(b"")
    with pytest.raises(MediaError, match=r"^selfie\.jpg: not an image"):
        load_image(b"hello", name="selfie.jpg")


# ------------------------------------------------------------------------------------------
# images: the bad-input corpus


def _jpeg_bytes() -> bytes:
    rng = np.random.default_rng(0)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def _gif_3_frames(p: Path) -> None:
    frames = [Image.new("RGB", (32, 32), c) for c in (RED, BLUE, (0, 200, 0))]
    frames[0].save(p, save_all=True, append_images=frames[1:], duration=100, loop=0)


BAD_IMAGES = {
    "empty.jpg": (lambda p: p.write_bytes(b""), r"file is empty"),
    "notes.jpg": (lambda p: p.write_text("just some notes\n"), r"not an image \(cannot identify image file\)"),
    "cut.jpg": (lambda p: p.write_bytes(_jpeg_bytes()[: len(_jpeg_bytes()) // 2]), r"image is truncated or corrupt"),
    "tiny.png": (lambda p: Image.new("RGB", (1, 1)).save(p), r"image is 1x1 pixels; at least 16x16 is needed"),
    "thin.png": (lambda p: Image.new("RGB", (200, 8)).save(p), r"image is 200x8 pixels"),
    "anim.gif": (_gif_3_frames, r"animated image with 3 frames: load it with load_animation"),
}


@pytest.mark.parametrize("fname", sorted(BAD_IMAGES))
def test_bad_images_refused_clearly(tmp_path: Path, fname: str) -> None:
    make, pattern = BAD_IMAGES[fname]
    p = tmp_path / fname
    make(p)
    with pytest.raises(MediaError, match=pattern) as ei:
        load_image(p)
    msg = check_error(ei, fname)
    assert msg.startswith(f"{fname}: ")
    # the same bytes, uploaded, fail the same way under the caller's name
    with pytest.raises(MediaError, match=pattern) as ei:
        load_image(p.read_bytes(), name="up_" + fname)
    check_error(ei, "up_" + fname)


def test_truncated_jpeg_does_not_change_global_flag(tmp_path: Path) -> None:
    data = _jpeg_bytes()
    before = ImageFile.LOAD_TRUNCATED_IMAGES
    with pytest.raises(MediaError, match=r"^cut\.jpg: image is truncated or corrupt"):
        load_image(data[: len(data) * 2 // 3], name="cut.jpg")
    assert ImageFile.LOAD_TRUNCATED_IMAGES is before is False
    assert load_image(data).shape == (64, 64, 3)  # the intact file is fine


def _png_bomb(path: Path, side: int = 20000) -> None:
    """A valid 1-bit greyscale PNG of side x side pixels that is tiny on disk."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    row = b"\x00" * (1 + (side + 7) // 8)  # filter byte + packed bits
    comp = zlib.compressobj(9)
    block = row * 400
    parts = [comp.compress(block) for _ in range(side // 400)] + [comp.flush()]
    ihdr = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"".join(parts)) + chunk(b"IEND", b""))


def test_decompression_bomb_refused_before_decoding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = tmp_path / "bomb.png"
    _png_bomb(p)
    assert p.stat().st_size < 200_000
    pil_limit = Image.MAX_IMAGE_PIXELS
    decoded = []
    monkeypatch.setattr(ImageFile.ImageFile, "load", lambda self: decoded.append(1))
    t0 = time.perf_counter()
    with pytest.raises(MediaError, match=r"20000x20000 = 400 megapixels exceeds the limit of 40 megapixels \(possible decompression bomb\)") as ei:
        load_image(p)
    assert time.perf_counter() - t0 < 1.0
    check_error(ei, "bomb.png")
    assert decoded == []  # refused from the header
    assert Image.MAX_IMAGE_PIXELS == pil_limit  # PIL's own guard restored
    # a lower limit of ours applies to ordinary images too
    two_tone(400, 300).save(tmp_path / "big.png")
    with pytest.raises(MediaError, match=r"^big\.png: 400x300 = 0\.12 megapixels exceeds the limit of 0\.1 megapixels"):
        load_image(tmp_path / "big.png", limits=MediaLimits(max_pixels=100_000))


def test_missing_file_and_size_limit(tmp_path: Path) -> None:
    with pytest.raises(MediaError, match=r"^photo\.jpg: file not found$"):
        load_image(tmp_path / "photo.jpg")
    with pytest.raises(MediaError, match=r"^x\.mp4: file not found$"):
        load_video(tmp_path / "x.mp4")
    big = tmp_path / "big.jpg"
    big.write_bytes(b"\xff" * (3 * 2**20 // 2))
    with pytest.raises(MediaError, match=r"^big\.jpg: file is 1\.5 MB; the limit is 1 MB$"):
        load_image(big, limits=MediaLimits(max_image_bytes=2**20))
    with pytest.raises(MediaError, match=r"^clip\.mp4: file is 1\.5 MB; the limit is 1 MB$"):
        load_video(big.read_bytes(), name="clip.mp4", limits=MediaLimits(max_video_bytes=2**20))
    with pytest.raises(MediaError, match=r"is a directory"):
        load_image(tmp_path)
    # check_file tells the same without reading: each kind against its own limit
    limits = MediaLimits(max_image_bytes=2**20, max_video_bytes=2 * 2**20)
    with pytest.raises(MediaError, match=r"^big\.jpg: file is 1\.5 MB; the limit is 1 MB$"):
        media.check_file(big, limits)
    clip = tmp_path / "clip.mp4"
    clip.write_bytes(big.read_bytes())
    assert media.check_file(clip, limits) == "video"
    with pytest.raises(MediaError, match=r"^photo\.jpg: file not found$"):
        media.check_file(tmp_path / "photo.jpg")


def test_media_kind() -> None:
    assert media_kind("a/b/Photo.JPG") == "image"
    assert media_kind(Path("clip.webm")) == "video"
    assert all(media_kind("f" + e) == "image" for e in IMAGE_EXTENSIONS)
    assert all(media_kind("f" + e) == "video" for e in VIDEO_EXTENSIONS)
    with pytest.raises(MediaError, match=r"^report\.pdf: unsupported file type '\.pdf'") as ei:
        media_kind("/tmp/report.pdf")
    check_error(ei, "report.pdf")
    with pytest.raises(MediaError, match=r"^README: file has no extension"):
        media_kind("README")


def test_a_folder_is_called_a_folder_whatever_its_name(tmp_path: Path) -> None:
    for name in ("plain", "looks.jpg", "clip.mp4"):
        (tmp_path / name).mkdir()
        with pytest.raises(MediaError, match=rf"^{re.escape(name)}: is a directory, not a file$"):
            check_file(tmp_path / name)
    with pytest.raises(MediaError, match=r"^plain: is a directory, not a file$"):
        media_kind(tmp_path / "plain")


# ------------------------------------------------------------------------------------------
# sampling rule


def test_sample_frame_indices_even() -> None:
    assert sample_frame_indices(100, frames=5) == [0, 25, 50, 74, 99]
    assert sample_frame_indices(10, frames=2) == [0, 9]
    assert sample_frame_indices(9, frames=1) == [4]
    assert sample_frame_indices(5, frames=16) == [0, 1, 2, 3, 4]
    assert sample_frame_indices(0, frames=8) == []
    idx = sample_frame_indices(1000, frames=16)
    assert len(idx) == 16 and idx[0] == 0 and idx[-1] == 999 and idx == sorted(set(idx))


def test_sample_frame_indices_fps_by_time() -> None:
    """With each frame's time (a variable frame rate), fps sampling takes the frame on screen at each tick;
    evenly spaced times give what the rate alone gives."""
    even = [i / 10 for i in range(100)]
    assert sample_frame_indices(100, fps_in=10, fps=2, times=even) == sample_frame_indices(100, fps_in=10, fps=2)
    uneven = [i / 10 for i in range(50)] + [5 + i for i in range(50)]  # 10 fps, then 1 fps
    assert sample_frame_indices(100, fps_in=2, fps=1, times=uneven) == [0, 10, 20, 30, 40, *range(50, 100)]
    # Over the cap: max_frames spread evenly in time, as frames=N is when the times are known.
    assert sample_frame_indices(100, fps_in=2, fps=1, times=uneven, max_frames=8) == sample_frame_indices(
        100, frames=8, times=uneven)


def test_sample_frame_indices_frames_by_time() -> None:
    """With each frame's time, N frames are the frames nearest N instants spread evenly over the video:
    a burst of frames does not take the samples from a calm stretch; evenly spaced times change nothing;
    asking again for 2N - 1 keeps the N (a close call sampled again adds frames between them)."""
    even = [i / 10 for i in range(100)]
    for n in (2, 5, 16, 34):  # (N = 1 lands on a tie here: 4.95 s lies between two frames)
        assert sample_frame_indices(100, frames=n, times=even) == sample_frame_indices(100, frames=n)
    uneven = [i / 10 for i in range(50)] + [5 + i for i in range(50)]  # 5 s at 10 fps, then 50 s at 1 fps
    assert sample_frame_indices(100, frames=7) == [0, 16, 33, 50, 66, 82, 99]  # by index: three in the first 5 s of 54
    assert sample_frame_indices(100, frames=7, times=uneven) == [0, 54, 63, 72, 81, 90, 99]  # at 0, 9, 18, ... 54 s
    assert sample_frame_indices(100, frames=1, times=uneven) == [72]  # the frame at 27 s
    for n in (3, 5, 9, 17):
        assert set(sample_frame_indices(100, frames=n, times=uneven)) <= set(
            sample_frame_indices(100, frames=2 * n - 1, times=uneven))
    held = [0.0, 0.1, 0.2, 10.0]  # the frame nearest 0 s and 5 s counts once
    assert sample_frame_indices(4, frames=3, times=held) == [0, 2, 3]
    assert sample_frame_indices(4, frames=3, times=[0.0, 9.8, 9.9, 10.0]) == [0, 1, 3]
    assert sample_frame_indices(4, frames=3, times=held[:3]) == sample_frame_indices(4, frames=3)  # times of other frames: ignored


def test_sample_frame_indices_fps() -> None:
    assert sample_frame_indices(30, fps_in=10, fps=2.5) == [0, 4, 8, 12, 16, 20, 24, 28]
    assert sample_frame_indices(100, fps_in=29.97, fps=1) == [0, 30, 60, 90]
    assert sample_frame_indices(6, fps_in=10, fps=50) == [0, 1, 2, 3, 4, 5]
    # over the cap: spread max_frames evenly over the whole video rather than truncating it
    capped = sample_frame_indices(10_000, fps_in=30, fps=30, max_frames=8)
    assert len(capped) == 8 and capped[0] == 0 and capped[-1] == 9999
    with pytest.raises(ValueError):
        sample_frame_indices(10, fps=0, fps_in=10)
    with pytest.raises(ValueError):
        sample_frame_indices(10, fps=1, fps_in=None)
    with pytest.raises(ValueError):
        sample_frame_indices(10, frames=0)


# ------------------------------------------------------------------------------------------
# videos

BITS, BLOCK_W, VH = 8, 16, 32  # frame index written as 8 black/white blocks, 16x32 px each


def encode(i: int) -> np.ndarray:
    f = np.zeros((VH, BITS * BLOCK_W, 3), np.uint8)
    for b in range(BITS):
        if (i >> b) & 1:
            f[:, b * BLOCK_W : (b + 1) * BLOCK_W] = 255
    return f


def decode(rgb: np.ndarray) -> int:
    g = rgb.mean(axis=2)
    return sum(1 << b for b in range(BITS) if g[4:-4, b * BLOCK_W + 4 : (b + 1) * BLOCK_W - 4].mean() > 127)


def write_video(path: Path, fourcc: str, n: int, fps: float = 10.0) -> Path:
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (BITS * BLOCK_W, VH))
    if not w.isOpened():
        w.release()
        pytest.skip(f"this OpenCV build cannot write {fourcc} into {path.suffix}")
    for i in range(n):
        w.write(encode(i))
    w.release()
    return path


@pytest.fixture
def mp4_30(tmp_path: Path) -> Path:
    return write_video(tmp_path / "clip.mp4", "mp4v", 30)


def test_frame_counter_roundtrip() -> None:
    assert [decode(encode(i)[..., ::-1]) for i in (0, 1, 77, 255)] == [0, 1, 77, 255]


@pytest.mark.parametrize(("ext", "fourcc"), [(".mp4", "mp4v"), (".avi", "MJPG"), (".mov", "mp4v"), (".webm", "VP80"), (".mkv", "MJPG")])
def test_video_containers_even_sampling(tmp_path: Path, ext: str, fourcc: str) -> None:
    p = write_video(tmp_path / f"v{ext}", fourcc, 30)
    vf = load_video(p, frames=4)
    assert vf.indices == [0, 10, 19, 29]
    assert [decode(f) for f in vf.frames] == vf.indices
    for f in vf.frames:
        assert_rgb(f, VH, BITS * BLOCK_W)
    assert vf.fps == pytest.approx(10.0)
    assert vf.frame_count == 30 and vf.duration_s == pytest.approx(3.0)
    assert (vf.width, vf.height) == (BITS * BLOCK_W, VH)
    assert vf.timestamps == pytest.approx([0.0, 1.0, 1.9, 2.9])


def test_video_colour_is_rgb(tmp_path: Path) -> None:
    p = tmp_path / "red.avi"
    w = cv2.VideoWriter(str(p), cv2.VideoWriter_fourcc(*"MJPG"), 10, (32, 32))
    assert w.isOpened()
    for _ in range(3):
        w.write(np.full((32, 32, 3), (30, 30, 220), np.uint8))  # BGR red
    w.release()
    f = load_video(p, frames=1).frames[0]
    assert close(f[16, 16], (220, 30, 30), 12), f[16, 16]


def test_video_fps_sampling(mp4_30: Path) -> None:
    vf = load_video(mp4_30, fps=2.5)
    assert vf.indices == [0, 4, 8, 12, 16, 20, 24, 28]
    assert [decode(f) for f in vf.frames] == vf.indices
    assert vf.timestamps == pytest.approx([0.0, 0.4, 0.8, 1.2, 1.6, 2.0, 2.4, 2.8])
    capped = load_video(mp4_30, fps=100, limits=MediaLimits(max_frames=5))
    assert capped.indices == [0, 7, 14, 22, 29]
    assert [decode(f) for f in capped.frames] == capped.indices


def test_video_bad_arguments(mp4_30: Path) -> None:
    with pytest.raises(MediaError, match=r"^clip\.mp4: frames must be an integer from 1 to 256, got 257$"):
        load_video(mp4_30, frames=257)
    with pytest.raises(MediaError, match=r"frames must be an integer from 1 to 256, got 0"):
        load_video(mp4_30, frames=0)
    with pytest.raises(MediaError, match=r"fps must be a positive number"):
        load_video(mp4_30, fps=0)
    with pytest.raises(MediaError, match=r"^clip\.mp4: video is 3\.0 s long; the limit is 1 s$"):
        load_video(mp4_30, limits=MediaLimits(max_duration_s=1.0))


def test_video_frames_by_index(mp4_30: Path) -> None:
    """A second look decodes just the frames asked for: the ones between those already sampled."""
    first = load_video(mp4_30, frames=4)
    between = sorted(set(sample_frame_indices(30, frames=7)) - set(first.indices))
    more = load_video(mp4_30, indices=between)
    assert more.indices == between == [5, 14, 24] and [decode(f) for f in more.frames] == between
    assert more.timestamps == pytest.approx([i / 10 for i in between]) and more.frame_count == 30
    assert load_video(mp4_30, indices=[29, 40, 3]).indices == [3, 29]  # sorted; past the end: dropped
    with pytest.raises(MediaError, match=r"^clip\.mp4: none of the frames asked for exists \(the video has 30 frames\)$"):
        load_video(mp4_30, indices=[30, 31])
    for bad in ([], [-1], [2, 2], [1.5], ["x"]):
        with pytest.raises(MediaError, match=r"^clip\.mp4: frame indices must be"):
            load_video(mp4_30, indices=bad)
    with pytest.raises(MediaError, match=r"^clip\.mp4: 3 frames asked for; the limit is 2$"):
        load_video(mp4_30, indices=[0, 1, 2], limits=MediaLimits(max_frames=2))


def test_video_bytes_input_and_temp_cleanup(mp4_30: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    monkeypatch.setattr(media.tempfile, "tempdir", str(tmpdir))
    vf = load_video(mp4_30.read_bytes(), frames=3, name="upload.mp4")
    assert vf.indices == [0, 14, 29]
    assert [decode(f) for f in vf.frames] == [0, 14, 29]
    assert list(tmpdir.iterdir()) == []  # temp copy removed
    with pytest.raises(MediaError, match=r"^upload\.mp4: "):
        load_video(b"\x00\x01" * 500, name="upload.mp4")
    assert list(tmpdir.iterdir()) == []  # removed on failure too


def test_video_long_step_seeks_and_falls_back(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = write_video(tmp_path / "long.mp4", "mp4v", 200, fps=25)
    calls = []
    real_seek = media._read_seek
    monkeypatch.setattr(media, "_read_seek", lambda cap, wanted: calls.append(wanted) or real_seek(cap, wanted))
    vf = load_video(p, frames=3)
    assert calls == [[0, 100, 199]]  # step of ~100 frames: seek
    assert [decode(f) for f in vf.frames] == vf.indices == [0, 100, 199]

    calls.clear()
    load_video(p, frames=16)  # step of ~13 frames: sequential
    assert calls == []

    monkeypatch.setattr(media, "_read_seek", lambda cap, wanted: None)  # seeking fails
    vf = load_video(p, frames=3)
    assert [decode(f) for f in vf.frames] == vf.indices == [0, 100, 199]


def test_video_wrong_frame_count(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = write_video(tmp_path / "v.avi", "MJPG", 40)
    real_prop = media._prop
    reported = {"n": 0}

    def fake_prop(cap, prop):
        return float(reported["n"]) if prop == cv2.CAP_PROP_FRAME_COUNT else real_prop(cap, prop)

    monkeypatch.setattr(media, "_prop", fake_prop)
    vf = load_video(p, frames=5)  # count unknown: decoded to find it
    assert vf.frame_count == 40 and vf.indices == [0, 10, 20, 29, 39]
    assert [decode(f) for f in vf.frames] == vf.indices

    reported["n"] = 90  # overstated: samples are redrawn over the 40 real frames
    vf = load_video(p, frames=5)
    assert vf.frame_count == 40 and vf.indices == [0, 10, 20, 29, 39]
    assert [decode(f) for f in vf.frames] == vf.indices


def test_corrupt_videos(tmp_path: Path, mp4_30: Path) -> None:
    rnd = tmp_path / "noise.mp4"
    rnd.write_bytes(np.random.default_rng(1).integers(0, 256, 20_000, dtype=np.uint8).tobytes())
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(mp4_30.read_bytes()[:64])
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    for p, pattern in [(rnd, r"not a readable video|no decodable frames"),
                       (cut, r"not a readable video|no decodable frames"),
                       (empty, r"file is empty")]:
        with pytest.raises(MediaError, match=pattern) as ei:
            load_video(p)
        check_error(ei, p.name)


def write_h264(path: Path, n: int, fps: int = 25, **tags: str) -> Path:
    """The frame counter as H.264 with B-frames (x264's default pyramid: some B-frames are referred
    to, some not) and a picture texture, with optional colour tags (``colorspace``, ``color_range``:
    FFmpeg's numbers, 1 = BT.709; range 1 = limited, 2 = full)."""
    av = pytest.importorskip("av")
    rng = np.random.default_rng(5)
    texture = rng.integers(0, 256, (VH, BITS * BLOCK_W, 3), dtype=np.uint8)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = BITS * BLOCK_W, VH, "yuv420p"
        stream.options = {"bframes": "3", "b-pyramid": "normal", "crf": "18", "preset": "veryfast"}
        for name, value in tags.items():
            setattr(stream.codec_context, name, value)
        for i in range(n):
            picture = np.where(encode(i) > 0, 235, texture // 4).astype(np.uint8)
            frame = av.VideoFrame.from_ndarray(picture, format="rgb24")
            for name, value in tags.items():
                setattr(frame, name, value)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def _opencv_frames(path: Path, wanted: list[int]) -> dict[int, np.ndarray]:
    cap = media._open_capture(path, path.name)
    try:
        return media._read_sequential(cap, wanted)[0]
    finally:
        cap.release()


@pytest.mark.parametrize(("tags", "taken"), [({}, True), ({"colorspace": 1, "color_range": 1}, True),
                                             ({"colorspace": 1, "color_range": 2}, False)],
                         ids=["untagged", "bt709-limited", "bt709-full"])
def test_h264_skipping_decoder_gives_opencvs_frames(tmp_path: Path, tags: dict, taken: bool) -> None:
    """H.264 is decoded by PyAV skipping unreferenced B-frames unless wanted: the frames sampled must be
    OpenCV's, numbered alike (the counter says which frame each is) and pixel for pixel, with the
    stream's colour matrix. Full range (decoded as yuvj420p, not checked) is left to OpenCV."""
    p = write_h264(tmp_path / "b.mp4", 60, **tags)
    wanted = sample_frame_indices(60, frames=16)
    skipped = media._read_skipping(p, wanted, 60)
    reference = _opencv_frames(p, wanted)
    assert (skipped is not None) == taken
    if taken:
        assert sorted(skipped) == wanted
        for i in wanted:
            assert decode(skipped[i]) == i
            assert np.array_equal(skipped[i], reference[i]), i
    vf = load_video(p, frames=16)
    assert vf.indices == wanted and all(np.array_equal(f, reference[i]) for f, i in zip(vf.frames, wanted))
    assert media._read_skipping(p, wanted, 61) is None  # packets that do not number the frames: OpenCV reads


def test_skipping_decoder_leaves_other_codecs_to_opencv(mp4_30: Path) -> None:
    assert media._read_skipping(mp4_30, [0, 10, 29], 30) is None  # MPEG-4 part 2: not checked, not taken


@pytest.mark.parametrize("name", ["dfdc_abofeumbvv.mp4", "hamilton_clip.mp4"])
def test_real_h264_videos_read_alike_by_both_decoders(name: str) -> None:
    """The app's 1080p DFDC clip (untagged colour) and a BT.709-tagged clip: the skipping decoder
    samples OpenCV's frames, pixel for pixel."""
    path = DATA / "video" / name
    if not path.is_file():
        pytest.skip(f"real test data not found at {path.resolve()}")
    count = int(cv2.VideoCapture(str(path)).get(cv2.CAP_PROP_FRAME_COUNT))
    wanted = sample_frame_indices(count, frames=16)
    skipped = media._read_skipping(path, wanted, count)
    assert skipped is not None
    reference = _opencv_frames(path, wanted)
    assert sorted(skipped) == sorted(reference) == wanted
    assert all(np.array_equal(skipped[i], reference[i]) for i in wanted)


def test_real_video_hamilton() -> None:
    path = DATA / "video" / "hamilton_clip.mp4"
    if not path.is_file():
        pytest.skip(f"real test data not found at {path.resolve()}")
    vf = load_video(path, frames=8)
    assert len(vf.frames) == 8 == len(vf.indices) == len(vf.timestamps)
    assert (vf.width, vf.height) == (640, 360)
    for f in vf.frames:
        assert_rgb(f, 360, 640)
        assert f.std() > 5  # real picture content, not a blank frame
    assert all(a < b for a, b in zip(vf.indices, vf.indices[1:]))
    assert all(a < b for a, b in zip(vf.timestamps, vf.timestamps[1:]))
    assert vf.indices[0] == 0 and vf.indices[-1] == vf.frame_count - 1
    assert 5 < vf.duration_s < DEFAULT_LIMITS.max_duration_s


# -- animated GIF and WebP: short videos ----------------------------------------------------------


def _real_clip_frames(n: int = 12, side: int = 256) -> list[Image.Image]:
    """Frames of the bundled astronaut clip (a real face), as a GIF maker would take them."""
    clip = Path(__file__).resolve().parents[1] / "assets" / "examples" / "astronaut-pan.mp4"
    video = load_video(clip, frames=n)
    return [Image.fromarray(f).resize((side, side)) for f in video.frames]


@pytest.mark.parametrize("suffix", [".gif", ".webp"])
def test_animated_images_are_sampled_like_videos(tmp_path: Path, suffix: str) -> None:
    frames = _real_clip_frames()
    path = tmp_path / f"clip{suffix}"
    durations = [80] * 6 + [120] * 6  # 1.2 s in all
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=durations, loop=0)
    assert media.is_animated(path) and not media.is_animated(Path(__file__).parents[1] / "assets/examples/astronaut.jpg")
    got = media.load_animation(path, frames=6)  # the frames nearest 0, 0.216, ... 1.08 s, the last frame's start
    assert got.indices == [0, 3, 5, 7, 9, 11] and len(got.frames) == 6
    assert sample_frame_indices(12, frames=6) == [0, 2, 4, 7, 9, 11]  # by frame number: early, where frames are short
    assert got.frame_count == 12 and got.duration_s == pytest.approx(1.2)
    assert got.timestamps == pytest.approx([sum(durations[:i]) / 1000 for i in got.indices])
    assert all(f.shape == (256, 256, 3) and f.dtype == np.uint8 for f in got.frames)
    # each sampled frame is that frame of the animation, not the first one again
    assert np.abs(got.frames[-1].astype(int) - np.asarray(frames[11].convert("RGB"), int)).mean() < 12
    assert np.abs(got.frames[-1].astype(int) - got.frames[0].astype(int)).mean() > 3
    every = media.load_animation(path.read_bytes(), fps=100, name="up" + suffix)
    assert every.indices == list(range(12))
    assert media.load_animation(path, fps=5).indices == [0, 2, 5, 7, 8, 10]  # the frame on screen every 0.2 s
    some = media.load_animation(path, indices=[11, 3, 40])  # a second look: just these frames
    assert some.indices == [3, 11] and some.timestamps == pytest.approx([0.24, 1.08])
    assert np.array_equal(some.frames[1], got.frames[-1])
    with pytest.raises(media.MediaError, match="none of the frames asked for exists"):
        media.load_animation(path, indices=[12])


def test_animation_longer_than_the_limit_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "long.gif"
    frames = [Image.new("RGB", (32, 32), c) for c in (RED, BLUE)]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=5000, loop=0)
    with pytest.raises(MediaError, match=r"long.gif: animation is 10.0 s long; the limit is 5 s"):
        media.load_animation(path, limits=media.MediaLimits(max_duration_s=5))


def test_jpeg_quality_is_read_from_the_quantization_table():
    """Files written by PIL and by OpenCV (both libjpeg) give back the quality they were saved at,
    from bytes and from a path; UTKFace's crops were saved at 75; a PNG is not a JPEG; a file that
    is not an image is refused in one line as every reader here refuses it."""
    from tests.conftest import data_path

    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
    for quality in (5, 30, 50, 51, 75, 95, 100):
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, "JPEG", quality=quality)
        assert media.jpeg_quality(buffer.getvalue(), name="pil.jpg") == quality
        ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
        assert ok and media.jpeg_quality(encoded.tobytes(), name="cv.jpg") == quality
    utk = sorted(data_path("faces/real/utkface").glob("*.jpg"))[0]
    assert media.jpeg_quality(utk) == 75
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "PNG")
    assert media.jpeg_quality(buffer.getvalue(), name="x.png") is None
    with pytest.raises(MediaError, match="not an image"):
        media.jpeg_quality(b"plain text, not a picture", name="notes.jpg")


# -- a copy that browsers play (for the player only; the analysis reads the original) -------------


def _ffmpeg(*args: str) -> None:
    import subprocess

    subprocess.run(["ffmpeg", "-nostdin", "-y", "-loglevel", "error", *args], check=True)


def _video_packets(path: Path) -> list[bytes]:
    import av

    with av.open(str(path)) as container:
        return [bytes(p) for p in container.demux(container.streams.video[0]) if p.size]


def test_browser_playable_by_container_and_codec(tmp_path: Path) -> None:
    h264 = write_h264(tmp_path / "h264.mp4", 10)
    _ffmpeg("-i", str(h264), "-c", "copy", str(tmp_path / "h264.mov"))
    broken = tmp_path / "broken.avi"
    broken.write_bytes(b"RIFF" + bytes(500))
    photo = tmp_path / "photo.jpg"
    two_tone().save(photo)
    assert media.browser_playable(h264) and media.browser_playable(write_video(tmp_path / "v.webm", "VP80", 10))
    assert not media.browser_playable(tmp_path / "h264.mov")  # H.264, but in a container not every browser plays
    assert not media.browser_playable(write_video(tmp_path / "mp4v.mp4", "mp4v", 10))  # MPEG-4 Part 2
    assert not media.browser_playable(write_video(tmp_path / "mjpg.avi", "MJPG", 10))
    assert media.browser_playable(broken) and media.browser_playable(photo)  # nothing to copy: the analysis says why


def test_browser_copy_reencodes_what_browsers_do_not_play(tmp_path: Path) -> None:
    import hashlib

    avi = write_video(tmp_path / "clip.avi", "XVID", 30)
    before = hashlib.sha256(avi.read_bytes()).hexdigest()
    copy = media.browser_copy(avi)
    assert copy.reencoded and copy.path == tmp_path / "clip.avi.browser-copy.mp4" and media.browser_playable(copy.path)
    assert "browsers do not play MPEG-4 Part 2 in AVI" in copy.note and "reads the file you uploaded" in copy.note
    video = load_video(copy.path, frames=30)
    assert video.codec == "h264" and [decode(f) for f in video.frames] == list(range(30))  # every frame, in order
    assert hashlib.sha256(avi.read_bytes()).hexdigest() == before  # the evidence is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.avi", "clip.avi.browser-copy.mp4"]  # no part file
    made = copy.path.stat().st_mtime_ns
    assert media.browser_copy(avi).path.stat().st_mtime_ns == made  # beside the video: made once, then reused
    small = media.browser_copy(avi, tmp_path / "small", rows=VH // 2)
    assert load_video(small.path, frames=1).height == VH // 2 and small.path.parent.name == "small"


def test_a_long_video_is_copied_smaller(tmp_path: Path) -> None:
    """Over five minutes, the copy is at most 360 rows (and made with x264's fastest preset)."""
    long = tmp_path / "long.avi"
    _ffmpeg("-f", "lavfi", "-i", "testsrc=size=160x400:rate=1:duration=301", "-c:v", "mpeg4", str(long))
    short = tmp_path / "short.avi"
    _ffmpeg("-f", "lavfi", "-i", "testsrc=size=160x400:rate=1:duration=299", "-c:v", "mpeg4", str(short))
    assert load_video(media.browser_copy(long).path, frames=1).height == media.BROWSER_COPY_LONG_ROWS == 360
    assert load_video(media.browser_copy(short).path, frames=1).height == 400  # under 720 rows: as it is


def _packet_times(path: Path) -> list[float]:
    """Every frame's presentation time from the first, as FFprobe reads the container."""
    import subprocess

    out = subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "packet=pts_time",
                          "-of", "csv=p=0", str(path)], capture_output=True, text=True, check=True).stdout.split()
    times = sorted(float(t) for t in out)
    return [t - times[0] for t in times]


def _variable_rate(path: Path, codec: str) -> Path:
    """4 s of test pattern: 50 frames at 25 fps, then 50 at 5 fps (a phone slowing down in the dark)."""
    _ffmpeg("-f", "lavfi", "-i", "testsrc=size=160x120:rate=25:duration=4", "-vf",
            "setpts='if(lt(N,50),N/(25*TB),(2+(N-50)/5)/TB)'", "-fps_mode", "vfr", "-c:v", codec, str(path))
    return path


@pytest.mark.parametrize("codec, suffix", [("libx264", ".mp4"), ("mpeg4", ".mkv")])
def test_a_variable_frame_rate_video_keeps_its_own_times(tmp_path: Path, codec: str, suffix: str) -> None:
    """OpenCV's frame rate for such a video is one number (an average from an MP4, 8.7 fps; the first rate
    from an MKV, 25), so frame / rate is seconds off: its frames get the container's times, as a player
    shows them, and its duration is the last frame's end."""
    vfr = _variable_rate(tmp_path / f"vfr{suffix}", codec)
    video = load_video(vfr, frames=8)
    truth = _packet_times(vfr)
    assert video.frame_count == 100 and max(abs(i / video.fps - truth[i]) for i in video.indices) > 1
    assert video.duration_s == pytest.approx(12.0)  # the last frame at 11.8 s, lasting 0.2 s
    assert video.timestamps == pytest.approx([truth[i] for i in video.indices], abs=1e-6)
    # The 8 frames are the frames nearest 8 instants from 0 to 11.8 s, not 8 frame numbers (which put
    # four of them in the first 2 s, the 25-fps stretch).
    ticks = np.linspace(0, truth[-1], 8)
    assert video.timestamps == pytest.approx([min(truth, key=lambda t: abs(t - tick)) for tick in ticks], abs=1e-6)
    assert video.timestamps[1] == pytest.approx(1.68) and video.timestamps[-1] == pytest.approx(11.8)
    # A close call sampled again at 15 frames keeps the 8 and adds the ones between, by time too.
    assert video.frame_times == pytest.approx(truth, abs=1e-6)
    again = sample_frame_indices(video.frame_count, frames=15, times=video.frame_times)
    assert set(video.indices) < set(again) and len(again) == 15
    assert load_video(vfr, indices=[60]).timestamps == pytest.approx([4.0])  # a second look: the same times
    assert load_video(vfr, fps=1).timestamps == pytest.approx(list(range(12)))  # one frame a second, by time
    copy = media.browser_copy(vfr)  # the player's copy keeps every frame at its time, none added
    assert _packet_times(copy.path) == pytest.approx(truth, abs=1e-3)
    steady = load_video(write_h264(tmp_path / "steady.mp4", 30), frames=5)  # constant rate: frame / rate, exactly
    assert steady.timestamps == [i / steady.fps for i in steady.indices] and steady.frame_times is None


def test_a_video_stream_that_starts_late_keeps_the_players_times() -> None:
    """hamilton_clip.mp4's video starts at 0.852 s (its audio at 0.008 s): its frames' times are on the
    player's timeline (where tests/test_app.py's Chromium shows each frame), the duration to its last frame's end."""
    from tests.conftest import data_path

    late = load_video(data_path("video/hamilton_clip.mp4"), indices=[0, 219])
    assert late.timestamps == pytest.approx([0.852019, 0.852019 + 219 / late.fps], abs=1e-5)
    assert late.duration_s == pytest.approx(0.852019 + late.frame_count / late.fps, abs=1e-5)  # 10.02 s: the file's 10.01


def test_a_video_too_small_or_without_pictures_is_refused_in_one_line(tmp_path: Path) -> None:
    """As an image under 16 x 16 is: a 2 x 2 video (no face fits) is refused, from its header; a file
    with sound but no pictures says so, rather than "not a readable video"."""
    tiny = tmp_path / "tiny.mp4"
    _ffmpeg("-f", "lavfi", "-i", "testsrc=size=2x2:rate=10:duration=1", "-c:v", "libx264", str(tiny))
    with pytest.raises(MediaError, match=r"^tiny\.mp4: video is 2x2 pixels; at least 16x16 is needed$"):
        load_video(tiny, frames=4)
    assert load_video(tiny, frames=4, limits=MediaLimits(min_side=2)).width == 2  # the limit, not the codec
    strip = tmp_path / "strip.mp4"
    _ffmpeg("-f", "lavfi", "-i", "testsrc=size=16x64:rate=10:duration=1", "-c:v", "libx264", str(strip))
    assert load_video(strip, frames=4).frames[0].shape == (64, 16, 3)  # 16 px is enough
    sound = tmp_path / "sound.mp4"
    _ffmpeg("-f", "lavfi", "-i", "sine=duration=1", "-c:a", "aac", str(sound))
    with pytest.raises(MediaError, match=r"^sound\.mp4: has no video stream \(audio only\): nothing to analyse$"):
        load_video(sound, frames=4)


def test_browser_copy_puts_h264_in_an_mp4_as_it_is(tmp_path: Path) -> None:
    mkv = tmp_path / "clip.mkv"
    _ffmpeg("-i", str(write_h264(tmp_path / "h264.mp4", 20)), "-c", "copy", str(mkv))
    copy = media.browser_copy(mkv)
    assert not copy.reencoded and "the same video stream in an MP4 container" in copy.note
    assert _video_packets(copy.path) == _video_packets(mkv)  # not re-encoded: the same bytes, frame by frame
    assert media.browser_playable(copy.path)


def test_browser_copy_refuses_in_one_line_and_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    broken = tmp_path / "broken.avi"
    broken.write_bytes(b"RIFF" + bytes(500))
    with pytest.raises(MediaError, match=r"^broken\.avi: not a readable video") as err:
        media.browser_copy(broken)
    assert "\n" not in str(err.value)
    avi = write_video(tmp_path / "clip.avi", "XVID", 30)
    with pytest.raises(MediaError, match=r"^clip\.avi: no playable copy within 0 s"):
        media.browser_copy(avi, timeout=0.001)
    which = shutil.which
    monkeypatch.setattr(shutil, "which", lambda name: None if name == "ffmpeg" else which(name))
    with pytest.raises(MediaError, match=r"^clip\.avi: no playable copy can be made without FFmpeg"):
        media.browser_copy(avi)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.avi", "clip.avi"]  # no copy, whole or half
    monkeypatch.undo()
    # What an analysis under the same limits refuses gets no copy either (no CPU spent on a long re-encode).
    with pytest.raises(MediaError, match=r"^clip\.avi: video is 3\.0 s long; the limit is 2 s; no copy is made for "
                                         r"the player, and the analysis refuses it too$"):
        media.browser_copy(avi, limits=MediaLimits(max_duration_s=2))
    with pytest.raises(MediaError, match=r"^clip\.avi: file is \S+ MB; the limit is \S+ MB; no copy is made"):
        media.browser_copy(avi, limits=MediaLimits(max_video_bytes=1000))
    with pytest.raises(MediaError, match=r"^clip\.avi: video is 3\.0 s long; the limit is 2 s$"):
        load_video(avi, limits=MediaLimits(max_duration_s=2))  # as the analysis says
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.avi", "clip.avi"]


def test_a_fourcc_is_named_as_people_know_it() -> None:
    from forensics.media import fourcc_title

    assert fourcc_title("FMP4") == "MPEG-4 Part 2 (FourCC FMP4)" and fourcc_title("avc1") == "H.264 (FourCC avc1)"
    assert fourcc_title("WXYZ") == "FourCC WXYZ" and fourcc_title(None) is None and fourcc_title("") is None
