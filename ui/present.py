"""What the analysis tabs show of a result: the verdict's small print, face pickers, map panels and
table rows (words and numbers; the pictures are drawn by ``forensics.render``)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from forensics.results import AnalysisResult, FaceResult, face_number, score_errors, scored_from
from forensics.catalog import EXTRA_METHODS, METHOD_TITLES, METHODS, available_detectors, split_variant
from forensics.detector_notes import detector_note, format_against_threshold, format_probability
from forensics.held import RELEASED
from forensics.overlay import overlay
from forensics.render.frames import enlarge, shown_frame

ALL_METHODS = METHODS + EXTRA_METHODS
DISPLAY_SIZE = 256  # overlays are shown at least this large, whatever the detector's input size


def verdict(result: AnalysisResult) -> str | None:
    """The headline: the detector's call at its own threshold ("fake" or "real"), or the plain
    words "no face found". Only the call: its probability, at the precision the detector's
    calibration allows, stands in the small print under it (``summary``), never as a big "94%". A call
    that the score's known errors could turn ("close call": within the calibration error, or for a
    video the sampling error, of the threshold) says so in the headline too: "fake (close call)"."""
    if result.label == "no_face":
        return "no face found"
    return f"{result.label} (close call)" if result.label and result.uncertainty.get("close_call") else result.label


def summary(result: AnalysisResult) -> str:
    """The verdict's small print, right under it: the calibrated probability, the threshold, what
    the detector catches and misses (from its card), and how the number was reached."""
    note = detector_note(result.detector)
    card = _card_link(result.detector)
    if result.label == "no_face":
        from forensics.analysis import LOOKED_AGAIN, SMALL_FACES_ONLY

        text = "**No face found: no verdict.** The detector judges faces; there is none here to judge."
        said = [n for n in result.notes if n.startswith((SMALL_FACES_ONLY, LOOKED_AGAIN))]
        if said:  # faces too small to judge, and how many frames were searched
            text += "  \n" + " ".join(said)
        if result.fake_probability is not None:
            text += (f"  \nWhole-image score on request: {format_probability(result.fake_probability, note)} "
                     "(outside what the detector was trained for: a score, not a verdict).")
        return text + f"  \nDetector `{result.detector}`: {note.line} {card}"
    if result.fake_probability is None:
        return "No verdict: " + "; ".join(result.notes)
    side = "at or above" if result.label == "fake" else "below"
    shown, threshold = format_against_threshold(result.fake_probability, result.threshold, note)
    if len(shown.partition(".")[2]) < 2:  # the faces' own readings (list, boxes) have two decimals: this one too
        shown += f" ({result.fake_probability:.2f} to two decimals)"
    where, error = scored_from(result), " " + score_errors(result, note.ece)
    close = ", a close call" if result.uncertainty.get("close_call") else ""
    text = (f"**{result.label.upper()}{close}** ({side} the threshold): calibrated P(fake) ≈ {shown}{error}, "
            f"threshold {threshold}; {where}; detector `{result.detector}`.  \n"
            f"What this detector catches and misses: {note.line} {card}  \nHow: {result.aggregation}.")
    top = first_face(result)
    if result.label == "fake" and top is not None and result.faces[top].fake_kind:
        text += f"  \nSuspected kind of fake (the most suspicious face): {kind_of_fake(result.faces[top])}."
    if result.notes:
        text += "  \n" + " ".join(result.notes)
    return text


def kind_of_fake(face: FaceResult) -> str:
    """"**synthetic** (synthetic 0.61, manipulated 0.22)": which of a three-class detector's fake
    classes the face most resembles, with every fake class's probability; "" for a binary detector."""
    if not face.fake_kind:
        return ""
    return f"**{face.fake_kind}** ({', '.join(f'{label} {p:.2f}' for label, p in face.fake_kinds.items())})"


def _card_link(detector: str) -> str:
    """Where to read the detector's model card: the About tab for bundled ones, the Hub for Hub ids."""
    base = split_variant(detector)[0]
    if base in available_detectors():
        return "(model card: About tab)"
    if re.fullmatch(r"[\w.-]+/[\w.-]+", base) and not Path(base).exists():
        return f"([model card](https://huggingface.co/{base}))"
    return ""


def ranked_faces(result: AnalysisResult) -> list[int]:
    """Face indices, most suspicious first."""
    return sorted(range(len(result.faces)), key=lambda i: -result.faces[i].fake_probability)


def face_label(face: FaceResult, number: int, video: bool = False) -> str:
    """"Face 2: P(fake) 0.3" (images); videos add the frame, time and person."""
    where = ""
    if video:
        where = f"frame {face.frame}" + (f" ({face.timestamp:.2f}s)" if face.timestamp is not None else "")
        where += (f", person {face.track}" if face.track is not None else "") + ", "
    what = " (whole image: no face found)" if face.fallback else ""
    kind = f", likeliest {face.fake_kind} {face.fake_kinds[face.fake_kind]:.2f}" if face.fake_kind else ""
    return f"Face {number}: {where}P(fake) {face.fake_probability:.2f}{kind}{what}"


def face_choices(result: AnalysisResult) -> list[tuple[str, int]]:
    """(label, index) pairs for a face picker, in face-number order (reading order per frame)."""
    video = result.kind == "video"
    return [(face_label(face, face_number(result, i), video), i) for i, face in enumerate(result.faces)]


def first_face(result: AnalysisResult) -> int | None:
    """The face shown first: the most suspicious one."""
    ranked = ranked_faces(result)
    return ranked[0] if ranked else None


def most_suspicious_face_in_frame(result: AnalysisResult, frame: int) -> int | None:
    candidates = [i for i, f in enumerate(result.faces) if f.frame == frame]
    return max(candidates, key=lambda i: result.faces[i].fake_probability, default=None)


def face_at(result: AnalysisResult, x: float, y: float) -> int | None:
    """The face drawn at pixel ``(x, y)`` of the annotated picture (a video's: its shown frame): of the
    boxes that hold the point, the smallest (a face in front of a larger one); None off every box."""
    frame = shown_frame(result) if result.kind == "video" else None
    holding = [i for i, f in enumerate(result.faces) if f.box is not None and not f.fallback
               and (frame is None or f.frame == frame)
               and f.box[0] <= x <= f.box[2] and f.box[1] <= y <= f.box[3]]
    return min(holding, key=lambda i: (result.faces[i].box[2] - result.faces[i].box[0])
               * (result.faces[i].box[3] - result.faces[i].box[1]), default=None)


def face_panel(result: AnalysisResult, index: int | None, alpha: float = 0.5) -> list[tuple[np.ndarray | None, str]]:
    """The selected face's explanations side by side: (overlay, caption) for each of the four
    methods and the patch-score map; one the detector cannot give comes back as (None, reason)."""
    if index is None or not result.faces:
        return [(None, METHOD_TITLES[m]) for m in ALL_METHODS]
    face = result.faces[int(index)]
    made = result.explanations
    skipped = made.skipped if made else {}
    panel = []
    for method in ALL_METHODS:
        title = METHOD_TITLES[method]
        if face.crop is None:
            panel.append((None, f"{title}: {RELEASED}"))
        elif method in face.heatmaps:
            agnostic = method in ("attention", "rollout") and not (made is None or made.class_weighted)
            why = " (class-agnostic)" if agnostic else f" ('{face.explained_class}')" if face.explained_class else ""
            caption = f"{title}{why}" + map_score_caption(face, method)
            picture = overlay(enlarge(face.crop, DISPLAY_SIZE), face.heatmaps[method], alpha=float(alpha))
            panel.append((picture, caption))
        elif method in skipped:
            panel.append((None, f"{title}: not available ({skipped[method]})"))
        else:
            panel.append((None, f"{title}: not computed"))
    return panel


def map_score_caption(face: FaceResult, method: str) -> str:
    """`` ★ most faithful · vs random: del -0.26 ✓, ins +0.06 ✓`` when the maps were scored: the map's
    deletion and insertion AUC minus the random map's (lower deletion and higher insertion than
    random earn a ✓); the star marks the most faithful map. Short, so it fits above a map."""
    scores = face.faithfulness.get(method)
    if not scores:
        return ""
    deletion = scores["deletion"] - scores["random_deletion"]
    insertion = scores["insertion"] - scores["random_insertion"]
    star = " ★ most faithful" if face.most_faithful == method else ""
    return (f"{star} · vs random: del {deletion:+.2f} {'✓' if deletion < 0 else '✗'}, "
            f"ins {insertion:+.2f} {'✓' if insertion > 0 else '✗'}")


FACE_TABLE_HEADERS = ["#", "frame", "time (s)", "person", "P(fake)", "face conf."]


def face_table(result: AnalysisResult) -> dict:
    """The Video tab's table of faces, most suspicious first: (face number, frame, time, person, P(fake), face
    confidence). The cells are numbers, so that the table sorts and filters by value; each is shown to its
    precision (``metadata.display_value``): P(fake) to the detector's, as under the verdict ("0.70", where a
    number column shows "0.7"), the time to the millisecond ("7.140"), the face confidence to three decimals
    ("1.000", not "1")."""
    note = detector_note(result.detector)
    data, shown = [], []
    for i in ranked_faces(result):
        f = result.faces[i]
        time = None if f.timestamp is None else round(f.timestamp, 3)
        conf = None if f.face_confidence is None else round(f.face_confidence, 3)
        data.append([face_number(result, i), f.frame, time, f.track, round(f.fake_probability, 4), conf])
        shown.append([str(face_number(result, i)), str(f.frame), "" if time is None else f"{time:.3f}", str(f.track),
                      format_probability(f.fake_probability, note, result.threshold),
                      "" if conf is None else f"{conf:.3f}"])
    return {"headers": FACE_TABLE_HEADERS, "data": data, "metadata": {"display_value": shown, "styling": None}}
