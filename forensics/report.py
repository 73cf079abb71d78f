"""Downloadable reports of one analysis: JSON for machines, one self-contained HTML page for people.

An analyst hands these to someone else, often someone without the tool, the model or the input's
folder. So the HTML carries everything inside itself (images as ``data:`` URIs, CSS in one
``<style>`` block, the timeline as hand-written SVG; no script, no external file, no font), says
which detector and which exact file (SHA-256) it is about, and explains how to read it, including
that a probability is not proof. Everything that came from a user or a file (names, labels, notes,
errors) is HTML-escaped: a report must never run what an uploaded file name smuggles in.

``extra`` (optional, both formats) adds what the result itself does not record::

    {"detector": {...},  # merged into the detector block, e.g. detector_extra(det)["detector"]
     "input": {...},     # merged into the input block, e.g. {"size_bytes": ..., "format": ...}
     ...}                # anything else is kept under report["extra"] in the JSON

The result's own name, version and threshold always win over ``extra``: they are what was run.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path, PurePath
from typing import Any, Iterable, Sequence

import numpy as np
from PIL import Image

import forensics
from forensics.analysis import AnalysisResult, FaceResult
from forensics.overlay import downscale, overlay
from forensics.render.frames import annotated

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
    """``extra`` for a loaded detector: its family, labels and the rest of ``describe()``.

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
    text = json.dumps(report_json(result, extra), indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    return _write_atomic(Path(path), text)


def _report_meta(result: AnalysisResult, extra: dict | None) -> dict:
    extra = dict(extra or {})
    detector = {
        "name": result.detector,
        "version": result.detector_version,
        "family": None,
        "labels": _labels_from_faces(result.faces),
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
    try:
        source = Path(str(result.input))
        if source.is_file():
            block["size_bytes"] = source.stat().st_size
    except (OSError, ValueError):  # a name that is no path on this machine (an upload): no size
        pass
    block.update({k: v for k, v in result.media.to_dict().items() if k != "sha256"})
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


def _labels_from_faces(faces: Sequence[FaceResult]) -> list[str] | None:
    """The detector's labels as the result recorded them (the keys of a face's probabilities)."""
    return list(faces[0].probabilities) if faces else None


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


def _write_atomic(path: Path, text: str) -> Path:
    """Write through a temporary file in the same folder and ``os.replace`` it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


# -- HTML -----------------------------------------------------------------------------------------


def report_html(result: AnalysisResult, extra: dict | None = None, alpha: float = 0.5) -> str:
    """One self-contained HTML page for the result (see the module docstring for why)."""
    meta = _report_meta(result, extra)
    name = meta["input"]["file_name"]
    parts = [_header(result, meta)]
    if result.error:
        parts.append(_error_section(result))
        parts.append(_details_section(result, meta))
    else:
        parts.append(_verdict_section(result, meta))
        parts.append(_details_section(result, meta))
        parts.append(_annotated_section(result))
        parts.append(_faces_table(result))
        if result.kind == "video":
            parts.append(_tracks_section(result))
        parts.append(_gallery_section(result, alpha))
        parts.append(_interpretation_section(result))
    parts.append(_footer(meta))
    body = "\n".join(p for p in parts if p)
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        f"<title>{_e(f'Deepfake forensics report: {name}')}</title>\n<style>{_CSS}</style>\n</head>\n"
        f"<body>\n<main>\n{body}\n</main>\n</body>\n</html>\n"
    )


def write_report_html(result: AnalysisResult, path: str | Path, extra: dict | None = None,
                      alpha: float = 0.5) -> Path:
    """Write :func:`report_html` atomically (UTF-8)."""
    return _write_atomic(Path(path), report_html(result, extra, alpha))


_CSS = """
:root { --fake: #c62828; --real: #2e7d32; --muted: #666; --line: #ddd; }
* { box-sizing: border-box; }
body { margin: 0; background: #f6f6f4; color: #222;
       font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; }
main { max-width: 1100px; margin: 0 auto; padding: 24px; background: #fff; }
h1 { font-size: 1.6em; margin: 0 0 4px; } h2 { font-size: 1.2em; margin: 28px 0 8px;
     border-bottom: 1px solid var(--line); padding-bottom: 4px; }
.sub { color: var(--muted); margin: 0; word-break: break-all; }
.caption { color: var(--muted); font-size: .9em; }
.verdict { border-radius: 6px; padding: 14px 18px; margin: 18px 0; border-left: 8px solid var(--muted);
           background: #f2f2f2; }
.verdict.fake { border-color: var(--fake); background: #fdecea; }
.verdict.real { border-color: var(--real); background: #e8f5e9; }
.verdict.error { border-color: var(--fake); background: #fdecea; }
.badge { font-size: 1.5em; font-weight: 700; letter-spacing: .04em; }
.fake .badge { color: var(--fake); } .real .badge { color: var(--real); }
.warn { background: #fff8e1; border-left: 6px solid #f9a825; padding: 8px 12px; margin: 10px 0; }
table { border-collapse: collapse; width: 100%; margin: 6px 0 12px; font-size: .92em; }
th, td { border-bottom: 1px solid var(--line); padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #fafafa; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
table.kv th { width: 13em; } code, .mono { font-family: ui-monospace, Menlo, Consolas, monospace;
     font-size: .9em; word-break: break-all; }
.above { color: var(--fake); font-weight: 600; }
figure { margin: 0; } figcaption { font-size: .82em; color: var(--muted); max-width: 180px; }
.annotated img { max-width: 100%; height: auto; border: 1px solid var(--line); }
.face { border: 1px solid var(--line); border-radius: 6px; padding: 10px; margin: 12px 0; page-break-inside: avoid; }
.face h3 { font-size: 1em; margin: 0 0 8px; }
.strip { display: flex; flex-wrap: wrap; gap: 10px; }
.strip img { width: 160px; height: 160px; object-fit: contain; background: #000; display: block; }
svg.timeline { max-width: 100%; height: auto; background: #fff; }
.notes li { margin: 2px 0; } dl dt { font-weight: 600; margin-top: 8px; } dl dd { margin: 2px 0 0 0; }
footer { margin-top: 32px; color: var(--muted); font-size: .85em; border-top: 1px solid var(--line); padding-top: 8px; }
@media print { body { background: #fff; } main { padding: 0; } }
"""


def _e(value: Any) -> str:
    """HTML-escape anything for text and attribute values."""
    return html.escape("" if value is None else str(value), quote=True)


def _p(value: float | None, digits: int = 3) -> str:
    return "–" if value is None or not math.isfinite(float(value)) else f"{float(value):.{digits}f}"


def _header(result: AnalysisResult, meta: dict) -> str:
    return (
        "<header>\n<h1>Deepfake forensics report</h1>\n"
        f"<p class=\"sub\">{_e(meta['input']['file_name'])} · {_e(result.kind or 'unknown kind')} · "
        f"generated {_e(meta['generated_at'])}</p>\n</header>"
    )


def _error_section(result: AnalysisResult) -> str:
    return (
        "<section class=\"verdict error\" id=\"error\">\n<div class=\"badge\">ANALYSIS FAILED</div>\n"
        f"<p class=\"error-message\">{_e(result.error)}</p>\n"
        "<p>No verdict was reached; nothing in this report says whether the input is manipulated.</p>\n"
        "</section>"
    )


def _verdict_section(result: AnalysisResult, meta: dict) -> str:
    label = (result.label or "no verdict").lower()
    css = label if label in ("fake", "real") else "none"
    head = {"fake": "Scored at or above the detector's threshold: likely manipulated",
            "real": "Scored below the detector's threshold: no manipulation detected",
            "no_face": "No face found: no verdict (the detector judges faces, and there is none to judge)"}.get(
        label, "No verdict")
    badge = "NO FACE FOUND" if label == "no_face" else label.replace("_", " ").upper()
    lines = [f"<section class=\"verdict {css}\" id=\"verdict\">",
             f"<div class=\"badge\">{_e(badge)}</div>",
             f"<p>{_e(head)}.</p>"]
    if result.fake_probability is not None and label == "no_face":
        lines.append(f"<p>Whole-image score, on request: {_p(result.fake_probability, 2)} (outside what the "
                     "detector was trained for: a score, not a verdict)</p>")
    elif result.fake_probability is not None:
        lines.append(f"<p><strong>P(fake) = {_p(result.fake_probability)}</strong> "
                     f"(threshold {_p(result.threshold, 2)})</p>")
    from forensics.detector_notes import detector_note

    lines.append(f"<p class=\"card-line\">What this detector catches and misses: "
                 f"{_e(detector_note(result.detector).line)}</p>")
    if result.aggregation:
        lines.append(f"<p>How: {_e(result.aggregation)}.</p>")
    if result.notes:
        lines.append("<ul class=\"notes\">" + "".join(f"<li>{_e(n)}</li>" for n in result.notes) + "</ul>")
    lines.append("</section>")
    if meta["detector"].get("trained") is False:
        lines.append("<p class=\"warn\">This detector is marked <strong>untrained</strong>: its scores are "
                     "random and carry no meaning.</p>")
    return "\n".join(lines)


def _kv_table(rows: Iterable[tuple[str, str]], css: str = "kv") -> str:
    body = "".join(f"<tr><th>{_e(k)}</th><td>{v}</td></tr>" for k, v in rows)
    return f"<table class=\"{css}\">{body}</table>"


def _details_section(result: AnalysisResult, meta: dict) -> str:
    det, inp = meta["detector"], meta["input"]
    det_rows = [("Name", _e(det.get("name"))), ("Version", _e(det.get("version") or "–")),
                ("Family", _e(det.get("family") or "–"))]
    if det.get("labels"):
        det_rows.append(("Labels", _e(", ".join(str(x) for x in det["labels"]))))
    if det.get("threshold") is not None:
        det_rows.append(("Threshold", _p(det["threshold"], 2)))
    for key in ("input_size", "parameters", "trained"):
        if det.get(key) is not None:
            det_rows.append((key.replace("_", " ").capitalize(), _e(det[key])))
    in_rows = [("File name", f"<span class=\"mono\">{_e(inp.get('file_name'))}</span>"),
               ("SHA-256", f"<code class=\"sha256\">{_e(inp.get('sha256') or 'not recorded')}</code>"),
               ("Kind", _e(inp.get("kind") or "–"))]
    if inp.get("format"):
        in_rows.append(("Format", _e(inp["format"])))
    if inp.get("width") and inp.get("height"):
        in_rows.append(("Dimensions", f"{_e(inp['width'])} × {_e(inp['height'])} px"))
    if inp.get("size_bytes") is not None:
        in_rows.append(("Size", _e(_fmt_bytes(inp["size_bytes"]))))
    if result.kind == "video":
        if inp.get("fps") is not None:
            in_rows.append(("Frame rate", f"{_e(inp['fps'])} fps"))
        if inp.get("duration_s") is not None:
            in_rows.append(("Duration", f"{_p(inp['duration_s'], 2)} s ({_e(inp.get('frame_count', '?'))} frames)"))
        if inp.get("sampled_frames") is not None:
            indices = ", ".join(str(i) for i in inp.get("sampled_indices") or [])
            in_rows.append(("Sampled frames", f"{_e(inp['sampled_frames'])}" + (f" (frames {_e(indices)})" if indices else "")))
    rep_rows = [("Generated at (UTC)", f"<span class=\"generated-at\">{_e(meta['generated_at'])}</span>"),
                ("Tool", f"{_e(meta['tool'])} {_e(meta['tool_version'])}")]
    if result.explanations is not None:
        methods = ", ".join(_method_title(m) for m in result.explanations.methods) or "none"
        rep_rows.append(("Explanation maps", _e(methods)
                         + (f" (explaining class “{_e(result.explanations.target)}”)"
                            if result.explanations.target else "")))
        for method, reason in result.explanations.skipped.items():
            rep_rows.append((f"Skipped: {_method_title(method)}", _e(reason)))
    return ("<section id=\"details\">\n<h2>Detector</h2>\n" + _kv_table(det_rows)
            + "\n<h2>Input</h2>\n" + _kv_table(in_rows)
            + "\n<h2>Report</h2>\n" + _kv_table(rep_rows) + "\n</section>")


def _fmt_bytes(n: Any) -> str:
    n = float(n)
    return f"{n / 1e6:.2f} MB ({int(n):,} bytes)" if n >= 1e5 else f"{int(n):,} bytes"


def _method_title(method: str) -> str:
    # Imported here, not at the top: the service layer may one day import this module.
    from forensics.catalog import METHOD_TITLES

    return METHOD_TITLES.get(method, method)


def _annotated_section(result: AnalysisResult) -> str:
    """The image (for videos: the most suspicious sampled frame) with faces boxed and scored."""
    canvas = annotated(result)
    if canvas is None:
        return ""
    uri = _data_uri(downscale(canvas, ANNOTATED_MAX_SIDE), "JPEG")
    if result.kind == "video":
        caption = "The most suspicious sampled frame, every face in it boxed with its P(fake)"
    elif any(f.fallback for f in result.faces):
        caption = "The image (no face was found, so the whole image was scored)"
    else:
        caption = "Every face found, boxed with its P(fake) (red: at or above the threshold)"
    return (f"<section class=\"annotated\" id=\"annotated\">\n<h2>{'Frame' if result.kind == 'video' else 'Image'}</h2>\n"
            f"<figure><img class=\"annotated-image\" alt=\"{_e(caption)}\" src=\"{uri}\">"
            f"<figcaption style=\"max-width:none\">{_e(caption)}</figcaption></figure>\n</section>")


def _faces_table(result: AnalysisResult) -> str:
    if not result.faces:
        return "<section id=\"faces\"><h2>Faces</h2><p>No face and no whole-image score.</p></section>"
    threshold = result.threshold if result.threshold is not None else 0.5
    rows = []
    for n, f in enumerate(result.faces, 1):
        box = "–" if f.box is None else ", ".join(str(int(round(v))) for v in f.box)
        stamp = "–" if f.timestamp is None else f"{f.timestamp:.2f} s"
        css = " class=\"above\"" if f.fake_probability >= threshold else ""
        rows.append(
            f"<tr><td class=\"num\">{n}</td><td class=\"num\">{_e(f.frame)}</td><td class=\"num\">{_e(stamp)}</td>"
            f"<td class=\"num\">{_e('–' if f.track is None else f.track)}</td><td class=\"mono\">{_e(box)}</td>"
            f"<td class=\"num\">{_p(f.face_confidence, 4)}</td><td class=\"num\"{css}>{_p(f.fake_probability)}</td>"
            f"<td>{'yes' if f.fallback else 'no'}</td></tr>"
        )
    head = ("<tr><th>#</th><th>Frame</th><th>Time</th><th>Track</th><th>Box (x0, y0, x1, y1)</th>"
            "<th>Face confidence</th><th>P(fake)</th><th>Whole image</th></tr>")
    return (f"<section id=\"faces\">\n<h2>Faces ({len(result.faces)})</h2>\n"
            f"<table class=\"faces\"><thead>{head}</thead><tbody>{''.join(rows)}</tbody></table>\n</section>")


def _tracks_section(result: AnalysisResult) -> str:
    rows = "".join(
        f"<tr><td class=\"num\">{_e(t.track)}</td><td class=\"num\">{_e(t.frames)}</td>"
        f"<td class=\"num\">{_p(t.mean_fake_probability)}</td><td class=\"num\">{_p(t.max_fake_probability)}</td>"
        f"<td class=\"num\">{_e(t.first_frame)}–{_e(t.last_frame)}</td><td>{'yes' if t.counted else 'no'}</td></tr>"
        for t in result.tracks
    )
    table = ("<table class=\"tracks\"><thead><tr><th>Track (person)</th><th>Frames</th><th>Mean P(fake)</th>"
             "<th>Max P(fake)</th><th>Frame range</th><th>Counted</th></tr></thead>"
             f"<tbody>{rows}</tbody></table>") if result.tracks else "<p>No tracked faces.</p>"
    return (f"<section id=\"tracks\">\n<h2>People over time</h2>\n{table}\n{timeline_svg(result)}\n"
            "<p class=\"caption\">Each line is one counted person’s P(fake) in the sampled frames; the dashed line is "
            "the threshold. Tracks seen in too few frames are not counted (grey markers).</p>\n</section>")


def timeline_svg(result: AnalysisResult, width: int = 720, height: int = 260) -> str:
    """P(fake) per track over time as inline SVG: one ``<polyline class="track">`` per counted track.

    Hand-written, so the page needs no plotting library and no script. x is the timestamp in
    seconds when every face has one, else the frame index; y is 0..1 with the threshold dashed.
    A video without faces plots its whole-frame scores as one series instead.
    """
    faces = list(result.faces)
    if not faces:
        return ""
    use_time = all(f.timestamp is not None for f in faces)
    xs = [float(f.timestamp if use_time else f.frame) for f in faces]
    x_max = max(xs + [float(result.media.duration_s or 0.0) if use_time else 0.0]) or 1.0
    left, right, top, bottom = 52, 120, 14, 40
    pw, ph = width - left - right, height - top - bottom

    def sx(x: float) -> float:
        return left + pw * x / x_max

    def sy(y: float) -> float:
        y = float(y) if math.isfinite(float(y)) else 0.0
        return top + ph * (1.0 - min(max(y, 0.0), 1.0))

    out = [f"<svg class=\"timeline\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" "
           f"viewBox=\"0 0 {width} {height}\" role=\"img\" aria-label=\"P(fake) per person over time\">",
           f"<rect x=\"{left}\" y=\"{top}\" width=\"{pw}\" height=\"{ph}\" fill=\"none\" stroke=\"#999\"/>"]
    for y in (0.0, 0.25, 0.5, 0.75, 1.0):
        out.append(f"<line x1=\"{left}\" x2=\"{left + pw}\" y1=\"{sy(y):.1f}\" y2=\"{sy(y):.1f}\" stroke=\"#eee\"/>"
                   f"<text x=\"{left - 6}\" y=\"{sy(y) + 4:.1f}\" font-size=\"11\" text-anchor=\"end\">{y:.2f}</text>")
    for x in _ticks(x_max):
        label = f"{x:g}"
        out.append(f"<text x=\"{sx(x):.1f}\" y=\"{top + ph + 16}\" font-size=\"11\" text-anchor=\"middle\">{label}</text>")
    out.append(f"<text x=\"{left + pw / 2:.1f}\" y=\"{height - 6}\" font-size=\"12\" text-anchor=\"middle\">"
               f"{'time (s)' if use_time else 'frame'}</text>")
    out.append(f"<text x=\"14\" y=\"{top + ph / 2:.1f}\" font-size=\"12\" text-anchor=\"middle\" "
               f"transform=\"rotate(-90 14 {top + ph / 2:.1f})\">P(fake)</text>")
    if result.threshold is not None:
        ty = sy(float(result.threshold))
        out.append(f"<line class=\"threshold\" x1=\"{left}\" x2=\"{left + pw}\" y1=\"{ty:.1f}\" y2=\"{ty:.1f}\" "
                   f"stroke=\"#c62828\" stroke-dasharray=\"6 4\"/><text x=\"{left + 4}\" y=\"{ty - 4:.1f}\" "
                   f"font-size=\"11\" fill=\"#c62828\">threshold {result.threshold:.2f}</text>")
    series = _timeline_series(result)
    legend: list[tuple[str, str]] = []
    for n, (name, points, counted) in enumerate(series):
        points = sorted((float(f.timestamp if use_time else f.frame), f.fake_probability) for f in points)
        colour = TRACK_COLOURS[n % len(TRACK_COLOURS)] if counted else "#aaa"
        if counted:
            coords = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in points)
            out.append(f"<polyline class=\"track\" data-track=\"{_e(name)}\" points=\"{coords}\" fill=\"none\" "
                       f"stroke=\"{colour}\" stroke-width=\"2\"/>")
        for x, y in points:
            fill = colour if counted else "none"
            out.append(f"<circle cx=\"{sx(x):.1f}\" cy=\"{sy(y):.1f}\" r=\"3.5\" fill=\"{fill}\" stroke=\"{colour}\">"
                       f"<title>{_e(name)}: P(fake) {y:.3f} at {'%.2f s' % x if use_time else 'frame %d' % x}</title>"
                       "</circle>")
        if counted:
            legend.append((name, colour))
    shown = legend if len(legend) * 14 <= ph else legend[: ph // 14 - 1] + [(f"+{len(legend) - ph // 14 + 1} more", "#666")]
    for n, (name, colour) in enumerate(shown):
        out.append(f"<text x=\"{left + pw + 8}\" y=\"{top + 10 + 14 * n}\" font-size=\"11\" fill=\"{colour}\">"
                   f"{_e(name)}</text>")
    out.append("</svg>")
    return "\n".join(out)


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


def _gallery_section(result: AnalysisResult, alpha: float) -> str:
    """The most suspicious faces, each as its crop and its explanation overlays side by side."""
    ranked = sorted(enumerate(result.faces, 1), key=lambda nf: -nf[1].fake_probability)
    shown = ranked[:MAX_REPORT_FACES]
    if not shown:
        return ""
    threshold = result.threshold if result.threshold is not None else 0.5
    blocks = []
    for n, face in shown:  # n: the face's number, the same as in the table and the app
        where = [f"frame {face.frame}" + (f" ({face.timestamp:.2f} s)" if face.timestamp is not None else "")
                 ] if result.kind == "video" else []
        if face.track is not None:
            where.append(f"person {face.track}")
        flag = " — at or above the threshold" if face.fake_probability >= threshold else ""
        title = f"Face {n}: " + "".join(w + ", " for w in where) + f"P(fake) {face.fake_probability:.3f}{flag}"
        if face.fallback:
            title += " (whole image, no face found)"
        figures = []
        if face.crop is not None:
            figures.append(_figure(face.crop, "crop", "The crop the detector saw", "JPEG"))
            for method, heatmap in face.heatmaps.items():
                picture = overlay(face.crop, heatmap, alpha=alpha)
                figures.append(_figure(picture, "overlay", _method_title(method), "PNG", method))
        if face.crop is None:
            figures.append("<p>The crop is not available (this result was not analysed in this process).</p>")
        elif not face.heatmaps:
            figures.append("<p>No explanation maps for this face.</p>")
        scores = _faithfulness_block(face)
        blocks.append(f"<article class=\"face\"><h3>{_e(title)}</h3><div class=\"strip\">{''.join(figures)}</div>"
                      f"{scores}</article>")
    left = len(ranked) - len(shown)
    more = (f"<p class=\"left-out\">{left} less suspicious face(s) are not shown here; the table above lists "
            "every face.</p>") if left else ""
    return (f"<section id=\"gallery\">\n<h2>Faces and explanation maps (most suspicious first)</h2>\n"
            + "\n".join(blocks) + f"\n{more}\n</section>")


def _faithfulness_block(face: FaceResult) -> str:
    """A scored face's maps: deletion and insertion against the random map, the most faithful marked,
    and the curves as inline SVG."""
    if not face.faithfulness:
        return ""
    first = next(iter(face.faithfulness.values()))
    rows = [f"<tr><td>random map (baseline)</td><td class=\"num\">{first['random_deletion']:.3f}</td>"
            f"<td class=\"num\">{first['random_insertion']:.3f}</td><td></td></tr>"]
    for method, s in face.faithfulness.items():
        mark = "★ most faithful" if face.most_faithful == method else ""
        rows.insert(len(rows) - 1, f"<tr data-method=\"{_e(method)}\"><td>{_e(_method_title(method))}</td>"
                    f"<td class=\"num\">{s['deletion']:.3f}</td><td class=\"num\">{s['insertion']:.3f}</td>"
                    f"<td>{mark}</td></tr>")
    table = ("<table class=\"faithfulness\"><thead><tr><th>Map</th><th>Deletion AUC (lower is better)</th>"
             "<th>Insertion AUC (higher is better)</th><th></th></tr></thead><tbody>" + "".join(rows)
             + "</tbody></table>")
    return f"<div class=\"scores\">{table}{faithfulness_svg(face)}</div>"


def faithfulness_svg(face: FaceResult, width: int = 720, height: int = 230) -> str:
    """A face's deletion and insertion curves side by side as inline SVG (no script, like the
    timeline): one line per map, the random map dashed grey; x is the share of pixels removed
    (deletion) or restored (insertion), y the probability of the explained class."""
    if not face.faithfulness:
        return ""
    gap, left, top, bottom = 40, 44, 22, 34
    pw, ph = (width - 2 * left - gap - 150) / 2, height - top - bottom
    out = [f"<svg class=\"curves\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" "
           f"viewBox=\"0 0 {width} {height}\" role=\"img\" aria-label=\"deletion and insertion curves\">"]
    series = [(m, s, TRACK_COLOURS[n % len(TRACK_COLOURS)], "") for n, (m, s) in enumerate(face.faithfulness.items())]
    first = next(iter(face.faithfulness.values()))
    for panel, kind in enumerate(("deletion", "insertion")):
        x0 = left + panel * (pw + gap + left)

        def sx(x: float) -> float:
            return x0 + pw * x

        def sy(y: float) -> float:
            return top + ph * (1.0 - min(max(float(y), 0.0), 1.0))

        out.append(f"<rect x=\"{x0}\" y=\"{top}\" width=\"{pw:.1f}\" height=\"{ph}\" fill=\"none\" stroke=\"#999\"/>"
                   f"<text x=\"{x0 + pw / 2:.1f}\" y=\"{top - 7}\" font-size=\"12\" "
                   f"text-anchor=\"middle\">{kind}</text>"
                   f"<text x=\"{x0 + pw / 2:.1f}\" y=\"{height - 6}\" font-size=\"11\" text-anchor=\"middle\">share of "
                   f"pixels {'removed' if kind == 'deletion' else 'restored'}</text>")
        for y in (0.0, 0.5, 1.0):
            out.append(f"<text x=\"{x0 - 5}\" y=\"{sy(y) + 4:.1f}\" font-size=\"10\" "
                       f"text-anchor=\"end\">{y:.1f}</text>")
        lines = [*series, ("random", {f"{kind}_curve": first[f"random_{kind}_curve"], "fractions": first["fractions"]},
                           "#888", " stroke-dasharray=\"5 4\"")]
        for method, s, colour, dash in lines:
            coords = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in zip(s["fractions"], s[f"{kind}_curve"]))
            out.append(f"<polyline class=\"{kind}\" data-method=\"{_e(method)}\" points=\"{coords}\" fill=\"none\" "
                       f"stroke=\"{colour}\" stroke-width=\"2\"{dash}/>")
    for n, (method, _s, colour, _d) in enumerate([*series, ("random", None, "#888", "")]):
        out.append(f"<text x=\"{width - 144}\" y=\"{top + 10 + 14 * n}\" font-size=\"11\" fill=\"{colour}\">"
                   f"{_e(_method_title(method) if method != 'random' else 'random map')}</text>")
    out.append("</svg>")
    return "\n".join(out)


def _figure(rgb: np.ndarray, css: str, caption: str, fmt: str, method: str | None = None) -> str:
    data_method = f" data-method=\"{_e(method)}\"" if method else ""
    uri = _data_uri(downscale(rgb, CROP_MAX_SIDE), fmt)
    return (f"<figure><img class=\"{css}\"{data_method} alt=\"{_e(caption)}\" src=\"{uri}\">"
            f"<figcaption>{_e(caption)}</figcaption></figure>")


def _interpretation_section(result: AnalysisResult) -> str:
    methods = [m for f in result.faces for m in f.heatmaps]
    methods = list(dict.fromkeys(methods)) or list(METHOD_HELP)
    items = "".join(f"<dt>{_e(_method_title(m))}</dt><dd>{_e(METHOD_HELP.get(m, ''))}</dd>" for m in methods)
    return f"""<section id="interpreting">
<h2>Interpreting this report</h2>
<p><strong>A probability is not proof.</strong> P(fake) is the detector's estimate that a face was manipulated,
learned from the examples it was trained on. It can be wrong in both directions, especially on heavy
compression, low resolution, unusual lighting or poses, and manipulation methods the detector never saw.
Treat it as one signal to weigh together with the file's provenance, its metadata and human review.</p>
<p>An image is as suspicious as its most suspicious face; a video as its most suspicious person (each person's
score is the mean over the sampled frames they appear in). A score marked “whole image” means no face was
found, so a detector trained on face crops judged something it was not trained for.</p>
<p>Explanation maps colour each face from blue (little influence) to red (most influence). Each map is
scaled to its own range, so compare regions within one face, not colours between faces. They show where the
model's evidence lies, not what the manipulation is.</p>
<dl>{items}</dl>
</section>"""


def _footer(meta: dict) -> str:
    return (f"<footer>Generated by {_e(meta['tool'])} {_e(meta['tool_version'])} at {_e(meta['generated_at'])} "
            f"(UTC). Input SHA-256: <code>{_e(meta['input'].get('sha256') or 'not recorded')}</code></footer>")


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


__all__ = [
    "MAX_REPORT_FACES",
    "detector_extra",
    "report_html",
    "report_json",
    "timeline_svg",
    "write_report_html",
    "write_report_json",
]
