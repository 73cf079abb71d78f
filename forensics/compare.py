"""Several detectors on one image or video: P(fake) per face (per person in a video) per detector,
whether they agree, and each one's maps of the same face.

What a presenter shows stakeholders: one detector's score says little; several that agree (or do
not) say more. Faces are found once (MTCNN) and shared, so face 1 is the same face for every
detector; each detector then crops, scores and explains with its own input size and framing
(``forensics.service.compare`` runs them; this module reads their results, torch-free).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from forensics.detector_notes import detector_note, format_against_threshold
from forensics.results import AnalysisResult, FaceResult, face_number, standard_error, within_errors


@dataclass
class DetectorRun:
    """One detector's analysis of the input, or why it could not run."""

    detector: str
    result: AnalysisResult | None = None
    error: str | None = None


@dataclass
class Comparison:
    input: str
    kind: str | None
    runs: list[DetectorRun] = field(default_factory=list)
    superseded: str | None = None  # a later comparison in the same session failed (see service.Session)

    @property
    def done(self) -> list[DetectorRun]:
        return [r for r in self.runs if r.result is not None]


@dataclass
class Row:
    """One unit (a face of an image, a person of a video) as one detector scored it."""

    unit: str  # "Face 1" / "Person 2"
    detector: str
    fake_probability: float
    threshold: float
    flagged: bool  # at or above that detector's own threshold
    face_index: int  # the face whose maps stand for the unit (for a person: their most suspicious face)
    # Within what is known of the score from the threshold: the detector's calibration error, plus for a
    # person twice the standard error of their mean over the frames (as the verdict's close call). False
    # where the detector's calibration was not measured.
    close_call: bool = False


def rows(comparison: Comparison) -> list[Row]:
    """A row per face (image) or per person (video) per detector, faces and people in number order."""
    out = []
    for run in comparison.done:
        result = run.result
        threshold = float(result.threshold if result.threshold is not None else 0.5)
        ece = result.uncertainty.get("calibration_error")

        def close(p: float, scores: list[float]) -> bool:
            return ece is not None and within_errors(p, threshold, float(ece), standard_error(scores))

        if result.kind == "video" and result.tracks:
            for track in result.tracks:
                mine = [i for i, f in enumerate(result.faces) if f.track == track.track]
                worst = max(mine, key=lambda i: result.faces[i].fake_probability)
                p = float(track.mean_fake_probability)
                out.append(Row(f"Person {track.track}", run.detector, p, threshold, p >= threshold, worst,
                               close(p, [result.faces[i].fake_probability for i in mine])))
        else:
            for i, face in enumerate(result.faces):
                if face.fallback:
                    continue
                p = float(face.fake_probability)
                out.append(Row(f"Face {face_number(result, i)}", run.detector, p, threshold, p >= threshold, i,
                               close(p, [])))
    return out


def units(comparison: Comparison) -> list[str]:
    """The faces (or people) compared, in number order."""
    return list(dict.fromkeys(r.unit for r in rows(comparison)))


def agreement(comparison: Comparison) -> dict[str, str]:
    """Per unit: "all 3 flag it", "none of 3 flag it" or "2 of 3 flag it" (each at its own threshold)."""
    by_unit: dict[str, list[bool]] = {}
    for row in rows(comparison):
        by_unit.setdefault(row.unit, []).append(row.flagged)
    out = {}
    for unit, flags in by_unit.items():
        n, k = len(flags), sum(flags)
        out[unit] = (f"all {n} flag it" if k == n else f"none of {n} flag it" if k == 0 else f"{k} of {n} flag it")
    return out


def face_for_unit(comparison: Comparison, unit: str | None) -> int | None:
    """The face index whose maps are shown for a unit (the same index in every detector's result)."""
    for row in rows(comparison):
        if row.unit == unit:
            return row.face_index
    return None


def unit_face(comparison: Comparison, run: DetectorRun, unit: str | None) -> FaceResult | None:
    """The face that stands for a unit in one detector's result (its crop and maps), if that run has it."""
    index = face_for_unit(comparison, unit)
    faces = run.result.faces if run.result is not None else []
    return faces[index] if index is not None and index < len(faces) else None


def table(comparison: Comparison) -> list[tuple[Row, list[str]]]:
    """Each row with its cells as the app's table and the report show them: unit, detector, P(fake) as text
    to the detector's precision ("0.00", "0.20", not a table's "0" and "0.2"), threshold to 2 decimals, the
    call (a close call marked) and the agreement; units in number order, detectors in the order chosen."""
    agree = agreement(comparison)
    order = {unit: k for k, unit in enumerate(units(comparison))}
    return [(row, [row.unit, row.detector,
                   *format_against_threshold(row.fake_probability, row.threshold, detector_note(row.detector)),
                   ("flagged" if row.flagged else "not flagged") + (" (close call)" if row.close_call else ""),
                   agree[row.unit]])
            for row in sorted(rows(comparison), key=lambda r: order[r.unit])]  # stable: detectors in chosen order
