"""Reports of a comparison of detectors (*Compare detectors*): JSON for machines, one self-contained
HTML page for the people a presenter hands it to.

Like an analysis's report (:mod:`forensics.render.report`), the page carries everything inside itself
(images as ``data:`` URIs, CSS in one ``<style>`` block, no script, no external file), says which exact
file it is about (SHA-256) and which detectors, each at its own threshold, and is autoescaped: a file
or detector name never runs as HTML.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import numpy as np

import forensics
from forensics import compare as comparing
from forensics.core import write_atomic
from forensics.detector_notes import detector_note
from forensics.overlay import overlay
from forensics.render.report import _TEMPLATE, TOOL, _figure, _jsonable, _method_title

_PAGE = _TEMPLATE.environment.get_template("compare.html.j2")


def _meta(comparison: comparing.Comparison) -> dict:
    first = comparison.done[0].result if comparison.done else None
    return {"tool": TOOL, "version": forensics.__version__, "kind": "comparison",
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "input": comparison.input, "input_kind": comparison.kind,
            "sha256": first.media.sha256 if first is not None else None}


def _detectors(comparison: comparing.Comparison) -> list[dict]:
    out = []
    for run in comparison.runs:
        if run.result is None:
            out.append({"name": run.detector, "error": run.error})
            continue
        result = run.result
        out.append({"name": run.detector, "error": None, "version": result.detector_version,
                    "threshold": result.threshold if result.threshold is not None else 0.5,
                    "note": detector_note(run.detector).line, "notes": list(result.notes)})
    return out


def compare_report_json(comparison: comparing.Comparison) -> dict:
    """What was compared, by which detectors, and every face's (person's) score from each."""
    return _jsonable({"report": _meta(comparison), "detectors": _detectors(comparison),
                      "rows": [{"unit": r.unit, "detector": r.detector, "fake_probability": round(r.fake_probability, 6),
                                "threshold": r.threshold, "flagged": r.flagged, "close_call": r.close_call,
                                "face_index": r.face_index} for r in comparing.rows(comparison)],
                      "agreement": comparing.agreement(comparison)})


def compare_report_html(comparison: comparing.Comparison, alpha: float = 0.5) -> str:
    """The page: the verdicts side by side, how far the detectors agree, and each face's maps from each."""
    agreement = comparing.agreement(comparison)
    rows = [{"unit": unit, "detector": detector, "p": p, "threshold": threshold, "call": call, "flagged": row.flagged,
             "agreement": agree} for row, (unit, detector, p, threshold, call, agree) in comparing.table(comparison)]
    units = []
    for unit in comparing.units(comparison):
        faces = [(run, face) for run in comparison.done
                 if (face := comparing.unit_face(comparison, run, unit)) is not None and face.crop is not None]
        # Detectors of other input sizes or framings crop the face differently: each such crop is shown
        # before its maps, so that no map is seen over another detector's crop.
        one_crop = all(f.crop.shape == faces[0][1].crop.shape and np.array_equal(f.crop, faces[0][1].crop)
                       for _, f in faces)
        figures = []
        for run, face in faces:
            if not one_crop:
                figures.append(_figure(face.crop, "crop", f"the face as {run.detector} crops it", "JPEG"))
            elif not figures:
                figures.append(_figure(face.crop, "crop", "the face", "JPEG"))
            figures += [_figure(overlay(face.crop, heatmap, alpha=alpha), "overlay",
                                f"{run.detector}: {_method_title(method)}", "PNG", method)
                        for method, heatmap in face.heatmaps.items()]
        units.append({"name": unit, "agreement": agreement[unit], "figures": figures})
    unanimous = sum(a.startswith(("all", "none")) for a in agreement.values())
    return _PAGE.render(meta=_meta(comparison), detectors=_detectors(comparison), rows=rows, units=units,
                        people=comparison.kind == "video", unanimous=unanimous, count=len(agreement),
                        ran=len(comparison.done))


def write_compare_reports(comparison: comparing.Comparison, folder: str | Path, stem: str,
                          alpha: float = 0.5) -> tuple[Path, Path]:
    """``<stem>-comparison.json`` and ``<stem>-comparison.html`` in ``folder``, each written atomically."""
    folder = Path(folder)
    json_path = write_atomic(folder / f"{stem}-comparison.json", compare_report_json(comparison))
    html_path = write_atomic(folder / f"{stem}-comparison.html", compare_report_html(comparison, alpha))
    return json_path, html_path
