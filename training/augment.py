"""Augmentations applied identically to a real face and its pseudo-fake, so that nothing but the
manipulation separates them: flips, small crops, colour, blur, resizing and compression (JPEG
quality 30..100, and a video-codec-like pass: chroma blur plus heavy JPEG) and, when asked for,
real H.264 (libx264 through PyAV, constant rate factor 23..40: what video sites do to a face),
small faces (the crop shrunk to 64..192 px, as a face far from the camera is, and compressed at
that size before it is enlarged, as a frame's codec does before the detector sees the face),
sharpening and sensor-like noise (sources differ in sharpness: UTKFace's crops are soft, FFHQ's
crisp; measured, that was not what a new source's score hinged on, see the README), and colour
grading (saturation, a tone curve, gamma and a colour cast: the look of studio, press and phone
photographs, which moved the default's P(fake) on real faces, docs/experiments.md)."""

from __future__ import annotations

from dataclasses import dataclass, replace

import cv2
import numpy as np

from forensics.faces import resize_square


@dataclass(frozen=True)
class AugmentParams:
    flip: bool
    crop: tuple[float, float, float]  # scale, x offset, y offset (fractions)
    brightness: float
    contrast: float
    blur: int
    downscale: float
    jpeg: int | None
    codec_like: bool
    sharpen: float = 0.0  # unsharp-mask amount (0: none)
    noise: float = 0.0  # Gaussian noise sigma in pixel units (0: none)
    noise_seed: int = 0
    h264: int = 0  # H.264 constant rate factor of a re-encode (0: none; replaces JPEG and codec_like)
    smooth: tuple[int, float, float] = (0, 0.0, 0.0)  # bilateral filter (diameter, sigma colour, sigma space); 0: none
    lowres: int = 0  # a small face: the crop's longer side in pixels while it is compressed (0: none)
    grade: tuple[float, float, float, float, float, float] = ()  # saturation, tone curve, gamma, R, G, B gains; (): none


LOWRES_SIDES = (64, 192)  # the small-face crop sides drawn (log-uniform): faces 64-192 px across in the frame


def draw_params(rng: np.random.Generator, strength: float = 1.0, jpeg_prob: float = 0.75,
                sharpen_prob: float = 0.0, noise_prob: float = 0.0, h264_prob: float = 0.0,
                smooth_prob: float = 0.0, lowres_prob: float = 0.0, grade_prob: float = 0.0) -> AugmentParams:
    """One random set of augmentation parameters (shared by a real and its fake). The sharpening,
    noise, H.264, smoothing and small-face draws come last and only when asked for, so runs without
    them draw exactly as before. Smoothing is an edge-preserving (bilateral) filter, what a phone camera's
    noise reduction and "beauty" mode do to skin: applied to every class alike, it keeps a detector
    from reading smooth skin as generated (the bundled v5 doubles a real face's P(fake) under it).
    Colour grading (:func:`grade`) does the same for the look of graded photographs."""
    scale = rng.uniform(0.9, 1.0)
    params = AugmentParams(
        flip=bool(rng.random() < 0.5),
        crop=(scale, rng.uniform(0, 1 - scale), rng.uniform(0, 1 - scale)),
        brightness=float(rng.uniform(-20, 20) * strength) if rng.random() < 0.5 else 0.0,
        contrast=float(rng.uniform(0.85, 1.15)) if rng.random() < 0.5 else 1.0,
        blur=int(rng.choice([3, 5])) if rng.random() < 0.15 * strength else 0,
        downscale=float(rng.uniform(0.4, 0.9)) if rng.random() < 0.3 * strength else 1.0,
        jpeg=int(rng.integers(30, 101)) if rng.random() < min(1.0, jpeg_prob * strength) else None,
        codec_like=bool(rng.random() < 0.15 * strength),
    )
    if sharpen_prob > 0 and rng.random() < sharpen_prob:
        params = replace(params, sharpen=float(rng.uniform(0.5, 3.5)))
    if noise_prob > 0 and rng.random() < noise_prob:
        params = replace(params, noise=float(rng.uniform(1.0, 6.0)), noise_seed=int(rng.integers(2**31)))
    if h264_prob > 0 and rng.random() < h264_prob:
        params = replace(params, h264=int(rng.integers(23, 41)))
    if smooth_prob > 0 and rng.random() < smooth_prob:
        params = replace(params, smooth=(int(rng.choice([5, 7, 9])), float(rng.uniform(20, 75)), float(rng.uniform(3, 9))))
    if lowres_prob > 0 and rng.random() < lowres_prob:
        low, high = np.log(LOWRES_SIDES[0]), np.log(LOWRES_SIDES[1])
        params = replace(params, lowres=int(round(float(np.exp(rng.uniform(low, high))))))
    if grade_prob > 0 and rng.random() < grade_prob:
        cast = rng.uniform(-0.08, 0.08, 3)
        params = replace(params, grade=(float(np.exp(rng.uniform(np.log(0.6), np.log(1.5)))), float(rng.uniform(-0.6, 0.6)),
                                        float(np.exp(rng.uniform(np.log(0.8), np.log(1.25)))),
                                        *(float(1.0 + c - cast.mean()) for c in cast)))
    return params


def apply(image: np.ndarray, p: AugmentParams, size: int) -> np.ndarray:
    """Apply ``p`` to an RGB uint8 image and resize it to ``size`` x ``size``."""
    h, w = image.shape[:2]
    scale, ox, oy = p.crop
    cw, ch = int(w * scale), int(h * scale)
    x0, y0 = int(ox * w), int(oy * h)
    out = image[y0 : y0 + ch, x0 : x0 + cw]
    if p.flip:
        out = out[:, ::-1]
    out = out.astype(np.float32)
    if p.contrast != 1.0 or p.brightness:
        out = (out - 128.0) * p.contrast + 128.0 + p.brightness
    out = np.clip(out, 0, 255).astype(np.uint8)
    if p.grade:
        out = grade(out, *p.grade)
    if p.blur:
        out = cv2.GaussianBlur(out, (p.blur, p.blur), 0)
    if p.smooth[0]:
        out = smooth(out, *p.smooth)
    if p.sharpen:
        out = sharpen(out, p.sharpen)
    if p.downscale < 1.0:
        small = (max(16, int(out.shape[1] * p.downscale)), max(16, int(out.shape[0] * p.downscale)))
        out = cv2.resize(cv2.resize(out, small, interpolation=cv2.INTER_AREA), (out.shape[1], out.shape[0]),
                         interpolation=cv2.INTER_LINEAR)
    if p.noise:
        noise = np.random.default_rng(p.noise_seed).normal(0.0, p.noise, out.shape)
        out = np.clip(np.round(out.astype(np.float32) + noise), 0, 255).astype(np.uint8)
    if p.lowres:
        out = shrink(out, p.lowres)
    if p.h264:
        out = h264(out, p.h264)
    elif p.codec_like:
        out = video_codec_like(out, quality=30)
    elif p.jpeg is not None:
        out = jpeg(out, p.jpeg)
    return resize_square(out, size)


def shrink(image: np.ndarray, side: int) -> np.ndarray:
    """``image`` with its longer side at most ``side`` pixels (area averaging, aspect kept): a face
    as small as it is in a wide shot. Compressing the result and enlarging it with
    :func:`forensics.faces.resize_square` is what happens to such a face on its way to the detector."""
    h, w = image.shape[:2]
    scale = side / max(h, w)
    if scale >= 1.0:
        return image
    return cv2.resize(image, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)


def small_face(image: np.ndarray, side: int, compress=None) -> np.ndarray:
    """``image`` as a small face: shrunk to ``side`` pixels, passed through ``compress`` (an
    image -> image function, e.g. ``lambda im: h264(im, 32)``) at that size, and enlarged back to
    its own size as the detector's crop resize does (the evaluation's small-face cases)."""
    out = shrink(image, side)
    if compress is not None:
        out = compress(out)
    return cv2.resize(out, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_CUBIC)


def sharpen(image: np.ndarray, amount: float, sigma: float = 1.2) -> np.ndarray:
    """Unsharp mask: ``image + amount * (image - blurred)`` (RGB uint8 in and out)."""
    blurred = cv2.GaussianBlur(image, (0, 0), sigma).astype(np.float32)
    return np.clip(np.round(image.astype(np.float32) * (1.0 + amount) - blurred * amount), 0, 255).astype(np.uint8)


def smooth(image: np.ndarray, diameter: int, sigma_colour: float, sigma_space: float) -> np.ndarray:
    """Edge-preserving (bilateral) smoothing, as a phone's noise reduction or beauty mode (RGB uint8 in and out)."""
    return cv2.bilateralFilter(np.ascontiguousarray(image), diameter, sigma_colour, sigma_space)


def grade(image: np.ndarray, saturation: float, curve: float, gamma: float, red: float, green: float,
          blue: float) -> np.ndarray:
    """Colour grading (RGB uint8 in and out): saturation scaled in HSV, a tone curve (``curve`` > 0 an S
    curve, darker shadows and brighter highlights; < 0 flatter; at most 2/3 either way), gamma, and a colour cast (per-channel
    gains), the way a photographer's or a phone's processing gives a picture its look."""
    out = image
    if saturation != 1.0:
        hsv = cv2.cvtColor(np.ascontiguousarray(out), cv2.COLOR_RGB2HSV).astype(np.float32)
        hsv[..., 1] = np.clip(hsv[..., 1] * saturation, 0, 255)
        out = cv2.cvtColor(np.round(hsv).astype(np.uint8), cv2.COLOR_HSV2RGB)
    x = out.astype(np.float32) / 255.0
    if curve:
        x = x + 1.5 * curve * x * (1.0 - x) * (2.0 * x - 1.0)  # monotonic for |curve| <= 2/3; 0 and 1 stay
    if gamma != 1.0:
        x = np.clip(x, 0.0, 1.0) ** gamma
    x = x * np.array([red, green, blue], dtype=np.float32)
    return np.clip(np.round(x * 255.0), 0, 255).astype(np.uint8)


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    """Round-trip through JPEG at ``quality`` (RGB in, RGB out)."""
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def h264(image: np.ndarray, crf: int) -> np.ndarray:
    """Round-trip through H.264 (libx264, one intra frame, 4:2:0 chroma) at constant rate factor
    ``crf`` (23: a good stream, 40: a heavily compressed one). RGB uint8 in and out, same size.

    The RGB <-> YUV 4:2:0 conversions ask swscale for bit-exact results: its default SIMD paths round
    differently from one CPU to another (up to 29 levels on a pixel, 1.1 on average, against its C
    path here), which moved evaluation figures measured through H.264 by up to 0.017 AUC between two
    machines. libx264 and the H.264 decoder are bit-exact already."""
    import av  # PyAV: FFmpeg's libx264 in process (a subprocess per face would cost more than the step)
    from av.video.reformatter import Interpolation

    exact = Interpolation.BILINEAR | Interpolation.BITEXACT | Interpolation.ACCURATE_RND
    h, w = image.shape[:2]
    even = np.ascontiguousarray(np.pad(image, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge"))
    encoder = av.CodecContext.create("libx264", "w")
    encoder.width, encoder.height, encoder.pix_fmt = even.shape[1], even.shape[0], "yuv420p"
    encoder.options = {"crf": str(int(crf)), "preset": "veryfast", "tune": "zerolatency"}
    frame = av.VideoFrame.from_ndarray(even, format="rgb24").reformat(format="yuv420p", interpolation=exact)
    packets = encoder.encode(frame) + encoder.encode(None)
    decoder = av.CodecContext.create("h264", "r")
    frames = [f for packet in packets for f in decoder.decode(packet)] + list(decoder.decode(None))
    if not frames:
        raise RuntimeError("H.264 round trip produced no frame")
    return frames[0].reformat(format="rgb24", interpolation=exact).to_ndarray()[:h, :w]


def video_codec_like(image: np.ndarray, quality: int = 30) -> np.ndarray:
    """Roughly what low-bitrate H.264 does to a face: smoothed detail, chroma at a quarter
    resolution, blockiness. Not a codec, but it removes the same fine cues."""
    ycc = cv2.cvtColor(image, cv2.COLOR_RGB2YCrCb)
    h, w = ycc.shape[:2]
    for c in (1, 2):
        ycc[..., c] = cv2.resize(cv2.resize(ycc[..., c], (max(1, w // 4), max(1, h // 4)), interpolation=cv2.INTER_AREA),
                                 (w, h), interpolation=cv2.INTER_LINEAR)
    ycc[..., 0] = cv2.bilateralFilter(ycc[..., 0], 5, 20, 3)
    return jpeg(cv2.cvtColor(ycc, cv2.COLOR_YCrCb2RGB), quality)
