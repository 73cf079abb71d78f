"""Downloadable reports of one analysis: JSON for machines, one self-contained HTML page for people.

An analyst hands these to someone else, often someone without the tool, the model or the input's
folder. So the HTML carries everything inside itself (images as ``data:`` URIs, CSS in one
``<style>`` block, the timeline and the curves as inline SVG; no script, no external file, no font),
says which detector and which exact file (SHA-256) it is about, and explains how to read it,
including that a probability is not proof. The page is ``templates/report.html.j2``, rendered by
Jinja2 with autoescape: everything that came from a user or a file (names, labels, notes, errors)
is HTML-escaped, so a report never runs what an uploaded file name smuggles in.

``extra`` (optional, both formats) adds what the result itself does not record::

    {"detector": {...},  # merged into the detector block, e.g. detector_extra(det)["detector"]
     "input": {...},     # merged into the input block, e.g. {"size_bytes": ..., "format": ...}
     ...}                # anything else is kept under report["extra"] in the JSON

The result's own name, version and threshold always win over ``extra``: they are what was run.
"""

from __future__ import annotations

import base64
import io
import json
import math
from datetime import datetime, timezone
from pathlib import Path, PurePath
from typing import Any, Sequence

import numpy as np
from jinja2 import Environment, FileSystemLoader, StrictUndefined
from PIL import Image

import forensics
from forensics.core import write_atomic
from forensics.catalog import METHOD_TITLES
from forensics.detector_notes import detector_note, format_against_threshold
from forensics.media import fourcc_title
from forensics.overlay import downscale, overlay
from forensics.render.frames import annotated
from forensics.results import AnalysisResult, FaceResult, score_errors, scored_from

TOOL = "Deepfake Forensics Studio"
MAX_REPORT_FACES = 24  # faces shown with crops and maps; the table lists every face
ANNOTATED_MAX_SIDE = 1280  # longest side of the embedded annotated image
CROP_MAX_SIDE = 320  # crops and overlays are at the detector's input size; cap odd large ones
JPEG_QUALITY = 85
PNG_MAX_BYTES = 64_000  # a PNG overlay bigger than this is re-encoded as JPEG to keep the page small
TRACK_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2")

METHOD_HELP = {
    "attention": "Where the classification token looked in the model's last layer. It shows what the model "
    "attended to when deciding, which is not always the same as the evidence it relied on.",
    "rollout": "Attention combined through all layers (attention rollout): how much each image patch flowed "
    "into the decision. Broader and smoother than last-layer attention.",
    "gradcam": "Grad-CAM: regions whose features most increased the score of the explained class, from the "
    "gradients of the last block. Coarse, but tied to this particular decision.",
    "gradcam++": "Grad-CAM++: a Grad-CAM variant that weighs positive gradients per location, often better at "
    "showing several separate regions or small details.",
}

_EXTENSION_FORMATS = {"jpg": "JPEG", "jpeg": "JPEG", "tif": "TIFF"}


# -- JSON -----------------------------------------------------------------------------------------


def detector_extra(detector: Any) -> dict:
    """``extra`` for a loaded detector: its kind, labels and the rest of ``describe()``.

    The local ``path`` is left out: a report travels, the analyst's folder layout should not.
    """
    info = dict(detector.describe())
    info.pop("path", None)
    info["trained"] = bool(getattr(getattr(detector, "info", None), "trained", True))
    return {"detector": info}


def report_json(result: AnalysisResult, extra: dict | None = None) -> dict:
    """``result.to_dict()`` plus a ``report`` block (when, by what, with which detector, on which file).

    The returned dict holds only JSON types (numpy scalars converted, non-finite floats as ``None``),
    so ``json.dumps`` of it always gives valid, strict JSON.
    """
    data = _jsonable(result.to_dict())
    data["report"] = _jsonable(_report_meta(result, extra))
    return data


def write_report_json(result: AnalysisResult, path: str | Path, extra: dict | None = None) -> Path:
    """Write :func:`report_json` as UTF-8 JSON (indent 2) atomically: a crash never leaves half a file."""
    return write_atomic(path, json.dumps(report_json(result, extra), indent=2, ensure_ascii=False, allow_nan=False) + "\n")


def _report_meta(result: AnalysisResult, extra: dict | None) -> dict:
    extra = dict(extra or {})
    detector = {
        "name": result.detector,
        "version": result.detector_version,
        "kind": None,
        "labels": list(result.faces[0].probabilities) if result.faces else None,  # as the result recorded them
        "threshold": result.threshold,
    }
    detector.update(extra.pop("detector", None) or {})
    detector.update({"name": result.detector, "version": result.detector_version})
    if result.threshold is not None:
        detector["threshold"] = result.threshold
    meta = {
        "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "tool": TOOL,
        "tool_version": forensics.__version__,
        "detector": detector,
        "input": _input_block(result, extra.pop("input", None) or {}),
    }
    if extra:
        meta["extra"] = extra
    return meta


def _input_block(result: AnalysisResult, extra: dict) -> dict:
    name = _file_name(str(result.input))
    suffix = PurePath(name).suffix.lower().lstrip(".")
    block: dict[str, Any] = {
        "file_name": name,
        "sha256": result.media.sha256,
        "kind": result.kind,
        "format": _EXTENSION_FORMATS.get(suffix, suffix.upper()) or None,
    }
    if result.media.file_bytes is not None:  # measured when the file was hashed
        block["size_bytes"] = result.media.file_bytes
    else:  # a result from before file_bytes was recorded
        try:
            source = Path(str(result.input))
            if source.is_file():
                block["size_bytes"] = source.stat().st_size
        except (OSError, ValueError):  # a name that is no path on this machine (an upload): no size
            pass
    block.update({k: v for k, v in result.media.to_dict().items() if k not in ("sha256", "file_bytes")})
    block.update(extra)
    return block


def _file_name(text: str) -> str:
    """The input's file name without the analyst's folders.

    ``result.input`` is a local path for files and the name as given for uploaded bytes. Folders
    are stripped only from something that is a path here (existing or absolute): an upload's own
    name is what the user called the file, slashes and all.
    """
    try:
        local = Path(text)
        is_path = local.is_absolute() or local.is_file()
    except (OSError, ValueError):
        is_path = False
    return (PurePath(text).name or text) if is_path else text


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(float(value)) else None
    if isinstance(value, PurePath):
        return str(value)
    if value is None or isinstance(value, str):
        return value
    return str(value)


# -- HTML -----------------------------------------------------------------------------------------


def report_html(result: AnalysisResult, extra: dict | None = None, alpha: float = 0.5,
                frames: Sequence[np.ndarray] = ()) -> str:
    """One self-contained HTML page for the result (see the module docstring for why); with its
    decoded ``frames``, the image (or most suspicious frame) with every face boxed."""
    meta = _report_meta(result, extra)
    failed = bool(result.error)
    ranked = sorted(enumerate(result.faces, 1), key=lambda nf: -nf[1].fake_probability)
    methods = list(dict.fromkeys(m for f in result.faces for m in f.heatmaps)) or list(METHOD_HELP)
    return _TEMPLATE.render(
        r=result, meta=meta, p=_p, box=_box, verdict=_verdict(result),
        details=_details(result, meta),
        threshold=result.threshold if result.threshold is not None else 0.5,
        annotated=None if failed else _annotated(result, frames),
        timeline=None if failed or result.kind != "video" else _timeline(result),
        gallery=[] if failed else [_gallery_face(result, n, face, alpha) for n, face in ranked[:MAX_REPORT_FACES]],
        left_out=max(0, len(ranked) - MAX_REPORT_FACES),
        method_help=[(_method_title(m), METHOD_HELP.get(m, "")) for m in methods],
    )


def write_report_html(result: AnalysisResult, path: str | Path, extra: dict | None = None,
                      alpha: float = 0.5, frames: Sequence[np.ndarray] = ()) -> Path:
    """Write :func:`report_html` atomically (UTF-8)."""
    return write_atomic(path, report_html(result, extra, alpha, frames))


_TEMPLATE = Environment(loader=FileSystemLoader(Path(__file__).parent / "templates"), autoescape=True,
                        trim_blocks=True, lstrip_blocks=True, undefined=StrictUndefined,
                        finalize=lambda value: "" if value is None else value).get_template("report.html.j2")


def _p(value: float | None, digits: int = 3) -> str:
    return "–" if value is None or not math.isfinite(float(value)) else f"{float(value):.{digits}f}"


def _box(face: FaceResult) -> str:
    return "–" if face.box is None else ", ".join(str(int(round(v))) for v in face.box)


def _method_title(method: str) -> str:
    return METHOD_TITLES.get(method, method)


def _verdict(result: AnalysisResult) -> dict:
    label = (result.label or "no verdict").lower()
    head = {"fake": "Scored at or above the detector's threshold: likely manipulated",
            "real": "Scored below the detector's threshold: not flagged as manipulated (a low score is not proof "
                    "that the face is authentic)",
            "no_face": "No face found: no verdict (the detector judges faces, and there is none to judge)"}
    if result.small_faces:  # Analyzer._small_faces: only faces too small to judge were seen
        head["no_face"] = ("No face large enough to judge: no verdict (faces too small for the detector were "
                           "seen: see the notes)")
    if any(note.startswith("Close call:") for note in result.notes):  # within what is known of the score
        head.update(fake="Scored at or above the detector's threshold, but within its uncertainty: a close call, "
                         "leaning manipulated (see the notes)",
                    real="Scored below the detector's threshold, but within its uncertainty: a close call, "
                         "leaning real (see the notes)")
    note = detector_note(result.detector)
    score = threshold = error = None
    if result.fake_probability is not None and result.threshold is not None and label != "no_face":
        # as the app's verdict gives it: no more decimals than the calibration supports, on its side of the threshold
        score, threshold = format_against_threshold(result.fake_probability, result.threshold, note)
        error = score_errors(result, note.ece)
        if result.kind == "video":  # as the app's small print says where the score comes from
            error += f"; {scored_from(result)}"
    return {"css": label if label in ("fake", "real") else "none", "head": head.get(label, "No verdict"),
            "badge": "NO FACE FOUND" if label == "no_face" else label.replace("_", " ").upper(),
            "card_line": note.line, "score": score, "threshold": threshold, "error": error}


def _details(result: AnalysisResult, meta: dict) -> dict:
    """The three key-value tables: (label, value, wrap), where wrap names the element around the value."""
    det, inp = meta["detector"], meta["input"]
    detector = [("Name", det.get("name"), None), ("Version", det.get("version") or "–", None),
                ("Kind", det.get("kind") or "–", None)]
    if det.get("labels"):
        detector.append(("Labels", ", ".join(str(x) for x in det["labels"]), None))
    if det.get("threshold") is not None:
        detector.append(("Threshold", _p(det["threshold"], 2), None))
    detector += [(key.replace("_", " ").capitalize(), det[key], None) for key in ("input_size", "parameters", "trained")
                 if det.get(key) is not None]
    given = [("File name", inp.get("file_name"), "mono"), ("SHA-256", inp.get("sha256") or "not recorded", "sha256"),
             ("Kind", inp.get("kind") or "–", None)]
    if inp.get("format"):
        given.append(("Format", inp["format"], None))
    if inp.get("width") and inp.get("height"):
        given.append(("Dimensions", f"{inp['width']} × {inp['height']} px", None))
    if inp.get("jpeg_quality") is not None:
        given.append(("JPEG quality", f"{inp['jpeg_quality']} of 100 (libjpeg's scale, read from the quantization table)",
                      None))
    if inp.get("size_bytes") is not None:
        n = float(inp["size_bytes"])
        given.append(("Size", f"{n / 1e6:.2f} MB ({int(n):,} bytes)" if n >= 1e5 else f"{int(n):,} bytes", None))
    if result.kind == "video":
        if inp.get("fps") is not None:
            given.append(("Frame rate", f"{inp['fps']} fps" + (" on average: variable (frames unevenly spaced; every "
                                                               "time here is the container's own)"
                                                               if inp.get("variable_frame_rate") else ""), None))
        if inp.get("duration_s") is not None:
            given.append(("Duration", f"{_p(inp['duration_s'], 2)} s ({inp.get('frame_count', '?')} frames)", None))
        if inp.get("codec") is not None:
            bpp = inp.get("bits_per_pixel")
            given.append(("Codec", f"{fourcc_title(inp['codec'])}" + (f", {bpp:.4f} bits per pixel per frame (how hard it was "
                                                        "compressed)" if bpp is not None else ""), None))
        if inp.get("sampled_frames") is not None:
            indices = ", ".join(str(i) for i in inp.get("sampled_indices") or [])
            given.append(("Sampled frames", f"{inp['sampled_frames']}" + (f" (frames {indices})" if indices else ""),
                          None))
    report = [("Generated at (UTC)", meta["generated_at"], "generated-at"),
              ("Tool", f"{meta['tool']} {meta['tool_version']}", None)]
    made = result.explanations
    if made is not None:
        methods = ", ".join(_method_title(m) for m in made.methods) or "none"
        report.append(("Explanation maps", methods + (f" (explaining class “{made.target}”)" if made.target else ""),
                       None))
        report += [(f"Skipped: {_method_title(m)}", reason, None) for m, reason in made.skipped.items()]
    return {"detector": detector, "input": given, "report": report}


def _annotated(result: AnalysisResult, frames: Sequence[np.ndarray]) -> dict | None:
    """The image (for videos: the most suspicious sampled frame) with faces boxed and scored."""
    canvas = annotated(result, frames)
    if canvas is None:
        return None
    if result.kind == "video":
        caption = "The most suspicious sampled frame, every face in it boxed with its P(fake)"
    elif any(f.fallback for f in result.faces):
        caption = "The image (no face was found, so the whole image was scored)"
    else:
        caption = "Every face found, boxed with its P(fake) (red: at or above the threshold)"
    return {"uri": _data_uri(downscale(canvas, ANNOTATED_MAX_SIDE), "JPEG"), "caption": caption}


def _timeline(result: AnalysisResult, width: int = 720, height: int = 260) -> dict | None:
    """P(fake) per track over time, as the numbers of an inline SVG: one line per counted track.

    The page needs no plotting library and no script. x is the timestamp in seconds when every
    face has one, else the frame index; y is 0..1 with the threshold dashed. A video without faces
    plots its whole-frame scores as one series instead.
    """
    faces = list(result.faces)
    if not faces:
        return None
    use_time = all(f.timestamp is not None for f in faces)
    xs = [float(f.timestamp if use_time else f.frame) for f in faces]
    x_max = max(xs + [float(result.media.duration_s or 0.0) if use_time else 0.0]) or 1.0
    left, right, top, bottom = 52, 120, 14, 40
    pw, ph = width - left - right, height - top - bottom

    def sx(x: float) -> float:
        return round(left + pw * x / x_max, 1)

    def sy(y: float) -> float:
        y = float(y) if math.isfinite(float(y)) else 0.0
        return round(top + ph * (1.0 - min(max(y, 0.0), 1.0)), 1)

    series, legend = [], []
    for n, (name, members, counted) in enumerate(_timeline_series(result)):
        points = sorted((float(f.timestamp if use_time else f.frame), f.fake_probability) for f in members)
        colour = TRACK_COLOURS[n % len(TRACK_COLOURS)] if counted else "#aaa"
        series.append({"name": name, "colour": colour, "counted": counted,
                       "coords": " ".join(f"{sx(x)},{sy(y)}" for x, y in points),
                       "points": [(sx(x), sy(y), f"{name}: P(fake) {y:.3f} at "
                                   + ("%.2f s" % x if use_time else "frame %d" % x)) for x, y in points]})
        if counted:
            legend.append((name, colour))
    if len(legend) * 14 > ph:
        legend = legend[: ph // 14 - 1] + [(f"+{len(legend) - ph // 14 + 1} more", "#666")]
    threshold = None if result.threshold is None else {"y": sy(result.threshold),
                                                       "label": f"threshold {result.threshold:.2f}"}
    return {"width": width, "height": height, "left": left, "top": top, "pw": pw, "ph": ph,
            "grid": [(sy(y), f"{y:.2f}") for y in (0.0, 0.25, 0.5, 0.75, 1.0)],
            "ticks": [(sx(x), f"{x:g}") for x in _ticks(x_max)], "x_title": "time (s)" if use_time else "frame",
            "threshold": threshold, "series": series,
            "legend": [(top + 10 + 14 * n, name, colour) for n, (name, colour) in enumerate(legend)]}


def _ticks(high: float, most: int = 7) -> list[float]:
    """Round tick values 0, step, 2*step, ... <= high, with step 1, 2 or 5 times a power of ten."""
    raw = high / max(most - 1, 1)
    power = 10.0 ** math.floor(math.log10(raw)) if raw > 0 else 1.0
    step = next((m * power for m in (1, 2, 5, 10) if m * power >= raw), 10 * power)
    return [round(i * step, 10) for i in range(int(high / step + 1e-9) + 1)]


def _timeline_series(result: AnalysisResult) -> list[tuple[str, list[FaceResult], bool]]:
    """(legend name, faces, counted) per track; whole-frame scores as one series when no face was found."""
    if not result.tracks:
        return [("whole frames", list(result.faces), True)] if result.faces else []
    by_track: dict[int, list[FaceResult]] = {}
    for face in result.faces:
        by_track.setdefault(-1 if face.track is None else int(face.track), []).append(face)
    counted = {t.track: t.counted for t in result.tracks}
    return [(f"person {track}", by_track.get(track, []), counted.get(track, False)) for track in sorted(counted)]


def _gallery_face(result: AnalysisResult, n: int, face: FaceResult, alpha: float) -> dict:
    """One of the most suspicious faces: its crop and its explanation overlays side by side, and
    its maps' scores when they were scored. ``n``: the face's number, as in the table and the app."""
    threshold = result.threshold if result.threshold is not None else 0.5
    where = [f"frame {face.frame}" + (f" ({face.timestamp:.2f} s)" if face.timestamp is not None else "")
             ] if result.kind == "video" else []
    if face.track is not None:
        where.append(f"person {face.track}")
    flag = " — at or above the threshold" if face.fake_probability >= threshold else ""
    title = f"Face {n}: " + "".join(w + ", " for w in where) + f"P(fake) {face.fake_probability:.3f}{flag}"
    if face.fake_kinds:  # a detector with several fake classes: which kind it suspects
        title += " (" + ", ".join(f"{label} {p:.3f}" for label, p in face.fake_kinds.items()) + ")"
    if face.fallback:
        title += " (whole image, no face found)"
    figures, missing = [], None
    if face.crop is None:
        missing = "The crop is not available (this result was not analysed in this process)."
    else:
        figures.append(_figure(face.crop, "crop", "The crop the detector saw", "JPEG"))
        figures += [_figure(overlay(face.crop, heatmap, alpha=alpha), "overlay", _method_title(method), "PNG", method)
                    for method, heatmap in face.heatmaps.items()]
        if not face.heatmaps:
            missing = "No explanation maps for this face."
    return {"title": title, "figures": figures, "missing": missing, "scores": _scores(face)}


def _figure(rgb: np.ndarray, css: str, caption: str, fmt: str, method: str | None = None) -> dict:
    return {"css": css, "caption": caption, "method": method, "uri": _data_uri(downscale(rgb, CROP_MAX_SIDE), fmt)}


def _scores(face: FaceResult, width: int = 720, height: int = 230) -> dict | None:
    """A scored face's maps: deletion and insertion against the random map, the most faithful marked,
    and the numbers of their curves side by side as inline SVG (one line per map, the random map
    dashed grey; x is the share of pixels removed or restored, y the explained class's probability)."""
    if not face.faithfulness:
        return None
    first = next(iter(face.faithfulness.values()))
    gap, left, top, bottom = 40, 44, 22, 34
    pw, ph = (width - 2 * left - gap - 150) / 2, height - top - bottom
    series = [(m, s, TRACK_COLOURS[n % len(TRACK_COLOURS)], False)
              for n, (m, s) in enumerate(face.faithfulness.items())]
    panels = []
    for panel, kind in enumerate(("deletion", "insertion")):
        x0 = left + panel * (pw + gap + left)

        def point(x: float, y: float, x0: float = x0) -> str:
            return f"{x0 + pw * x:.1f},{top + ph * (1.0 - min(max(float(y), 0.0), 1.0)):.1f}"

        random = ("random", {f"{kind}_curve": first[f"random_{kind}_curve"], "fractions": first["fractions"]},
                  "#888", True)
        panels.append({"x0": x0, "kind": kind, "verb": "removed" if kind == "deletion" else "restored",
                       "grid": [(top + ph * (1.0 - y), f"{y:.1f}") for y in (0.0, 0.5, 1.0)],
                       "lines": [(m, " ".join(point(x, y) for x, y in zip(s["fractions"], s[f"{kind}_curve"])), colour,
                                  dashed) for m, s, colour, dashed in [*series, random]]})
    names = [(_method_title(m), colour) for m, _s, colour, _d in series] + [("random map", "#888")]
    return {"rows": [{"method": m, "title": _method_title(m), "deletion": s["deletion"], "insertion": s["insertion"],
                      "best": face.most_faithful == m} for m, s in face.faithfulness.items()],
            "random_deletion": first["random_deletion"], "random_insertion": first["random_insertion"],
            "curves": {"width": width, "height": height, "top": top, "pw": pw, "ph": ph, "panels": panels,
                       "legend": [(top + 10 + 14 * n, name, colour) for n, (name, colour) in enumerate(names)]}}


# -- images ---------------------------------------------------------------------------------------


def _data_uri(rgb: np.ndarray, fmt: str = "JPEG") -> str:
    """An RGB uint8 array as a base64 ``data:`` URI.

    JPEG (quality 85) for photographs; PNG for small overlays (sharp colour edges), but a PNG
    larger than ``PNG_MAX_BYTES`` falls back to JPEG so a page with many faces stays small.
    """
    image = Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8))
    if image.mode != "RGB":
        image = image.convert("RGB")
    buffer = io.BytesIO()
    if fmt.upper() == "PNG":
        image.save(buffer, format="PNG", optimize=False, compress_level=6)
        if buffer.tell() <= PNG_MAX_BYTES:
            return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
        buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=JPEG_QUALITY, optimize=True)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


__all__ = ["MAX_REPORT_FACES", "detector_extra", "report_html", "report_json", "write_report_html",
           "write_report_json"]
