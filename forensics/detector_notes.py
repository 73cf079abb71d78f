"""What a detector's own measurements say about it, in one line, for the place a verdict is shown.

A score means little without knowing what the detector was shown to catch and to miss, and how well
its probabilities are calibrated. Every trained model folder carries ``metrics.json`` (written by
``python -m training evaluate``); this module reads it (JSON only, no torch: the app calls it while
drawing the page) and turns it into:

- one line on what the detector catches and misses (per-source ROC-AUC on held-out faces; generated
  faces against identically prepared reals; generators it never saw, from the leave-one-generator-out
  runs its training record carries),
- how many decimals its probabilities deserve (from the expected calibration error), and
- whether it is close to chance (then the app does not offer it), and
- a caution where real faces after a phone camera's smoothing (noise reduction, beauty mode), or
  after a video stream's compression, are flagged far more often than unprocessed ones, and
- a caution beside a verdict decided by a small face (:func:`small_face_caution`), with the
  detector's measured ROC-AUC on faces that small, and
- a caution beside the verdict on an image saved as a low-quality JPEG (:func:`jpeg_caution`), with
  the detector's measured ROC-AUC at that quality and the share of real faces it flags there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from forensics.catalog import available_detectors, detector_choices, onnx_builds, split_variant
from forensics.core import read_json
from forensics.results import within_errors
from forensics.settings import operator_models

METRICS_NAME = "metrics.json"
# A detector whose validation ROC-AUC is below this ranks fakes above reals barely more often than a coin.
NEAR_CHANCE_AUC = 0.6
# Subsets it "catches" or "misses", by held-out ROC-AUC.
CATCHES_AUC, MISSES_AUC = 0.8, 0.7
# Probabilities are shown to two decimals only when calibration error is below this; else to one.
FINE_ECE = 0.05
# A caution is shown when this share of smoothed real faces is flagged, and at least this much more than unprocessed.
SMOOTHED_FLAGGED, SMOOTHED_RISE = 0.25, 0.10
# Uneven false alarms: a group of real faces (the evaluation's ``real_faces.unseen``: faces no split of the run
# held) flagged at least this many times as often as all of them, with its 95% interval wholly above their share.
UNEVEN_RATIO = 1.25
# The same rule for real faces through a fair video stream (the real-face probe's re-encoding row).
VIDEO_REALS_ROW = "H.264 CRF 32"
# A verdict decided by a face whose crop is under this many source pixels across gets a caution:
# the detector sees it enlarged, with little of the detail it reads (the evaluation's small-face rows).
SMALL_FACE_PX = 128
# How this input's cautions begin (``AnalysisResult.notes``), so that a view listing them can pick them out.
CAUTION_PREFIXES = ("Caution:", "Close call:", "Unsettled threshold:")
SMALL_FACE_ROW = re.compile(r"small_(\d+)_h264_crf_(\d+)$")


@dataclass(frozen=True)
class DetectorNote:
    """The facts shown beside a verdict: measured, never guessed."""

    name: str
    auc: float | None = None
    ece: float | None = None
    catches: str = ""
    misses: str = ""
    measured: bool = False
    caution: str = ""

    @property
    def digits(self) -> int:
        """Decimals a probability of this detector deserves: one unless it is well calibrated."""
        return 2 if self.ece is not None and self.ece < FINE_ECE else 1

    @property
    def near_chance(self) -> bool:
        return self.auc is not None and self.auc < NEAR_CHANCE_AUC

    @property
    def line(self) -> str:
        """One sentence: what it catches, what it misses, how good it is overall."""
        if not self.measured:
            return "No measurements ship with this detector (no metrics.json): its scores are unverified."
        parts = []
        if self.catches:
            parts.append(f"Catches {self.catches}")
        if self.misses:
            parts.append(f"misses {self.misses}" if parts else f"Misses {self.misses}")
        head = "; ".join(parts) + ". " if parts else ""
        overall = f"Validation ROC-AUC {self.auc:.2f}" if self.auc is not None else "No overall ROC-AUC recorded"
        if self.near_chance:
            overall += " (close to chance)"
        if split_variant(self.name)[1]:
            overall += ", measured on the float model this build was made from"
        return head + overall + "." + (f" Caution: {self.caution}." if self.caution else "")

    @property
    def short(self) -> str:
        """A few words for a dropdown entry."""
        if not self.measured:
            return "unmeasured"
        bits = []
        if self.auc is not None:
            bits.append(f"AUC {self.auc:.2f}" + (" (close to chance)" if self.near_chance else ""))
        if self.catches:
            bits.append("catches " + re.sub(r" \(AUC [^)]*\)", "", self.catches))
        if self.misses:
            bits.append("misses " + re.sub(r" \(AUC [^)]*\)", "", self.misses))
        return "; ".join(bits)


def format_probability(p: float, note: DetectorNote | None, threshold: float | None = None) -> str:
    """P(fake) with no more decimals than the detector's calibration supports; beside a ``threshold``,
    with as many more (up to 4) as keep it on its side of the threshold as shown (see
    :func:`format_against_threshold`)."""
    if threshold is not None:
        return format_against_threshold(p, threshold, note)[0]
    digits = note.digits if note is not None else 1
    return f"{p:.{digits}f}"


def format_against_threshold(p: float, threshold: float, note: DetectorNote | None) -> tuple[str, str]:
    """P(fake) and the threshold as text, P to the detector's precision and the threshold to 2 decimals,
    unless that shows them on the wrong side of each other: 0.46 against 0.50 is "0.5" at one decimal,
    a score equal to a threshold it lies below; 0.675 against 0.683 is "0.68" against "0.68". Then both
    get more decimals (up to 4), until the score shown is below the threshold shown exactly when the
    score is below the threshold."""
    flagged = p >= threshold
    digits = note.digits if note is not None else 1
    for d in range(digits, 5):
        shown, line = round(p, d), round(threshold, max(2, d))
        if (shown >= line) == flagged:
            break
    return f"{p:.{d}f}", f"{threshold:.{max(2, d)}f}"


def _folder(name: str | Path | None) -> Path | None:
    if not name:
        return None
    base = split_variant(str(name))[0]
    folder = available_detectors().get(base) or onnx_builds().get(str(name))
    if folder is None:  # a folder the operator lists (FORENSICS_MODELS), by the name the app offers it under
        listed = next((Path(e.source) for e in operator_models() if e.name == base and Path(e.source).is_dir()), None)
        folder = listed or (Path(base) if Path(base).is_dir() else None)
    return folder


def _subject(subset: str) -> str:
    """'SBI of FFHQ vs all held-out reals' -> 'blended face swaps';
    'StyleGAN2 (x) vs ...' -> 'generated faces (StyleGAN2)'."""
    what = subset.split(" vs ")[0].strip()
    if what.startswith("SBI of"):
        return "blended face swaps"
    return f"generated faces ({what.split(' (')[0]})"


def _grouped(items: list[tuple[str, float]]) -> str:
    by_subject: dict[str, list[float]] = {}
    for subset, auc in items:
        by_subject.setdefault(_subject(subset), []).append(auc)
    return ", ".join(f"{subject} (AUC {_span(aucs)})" for subject, aucs in by_subject.items())


def _span(aucs: list[float]) -> str:
    """'0.92' or '0.92-0.97': the range of some ROC-AUCs, one value when they round alike."""
    low, high = min(aucs), max(aucs)
    return f"{low:.2f}" if abs(high - low) < 0.005 else f"{low:.2f}-{high:.2f}"


def _auc(row) -> float | None:
    return float(row["roc_auc"]) if isinstance(row, dict) and row.get("roc_auc") is not None else None


def _kind_rows(per_source: dict) -> list[tuple[str, float]]:
    """The per-source rows that say what kind of fake it sees: each kind against all held-out reals,
    except generated faces, which are read against FFHQ's reals where that row exists (the reals
    prepared exactly like the generated faces, the data README's pair: against reals of another look
    a detector can score the look, not the generator)."""
    rows = []
    for key, row in per_source.items():
        auc = _auc(row)
        if auc is None or not re.search(r"vs all held-out reals$", key):
            continue
        what = key.split(" vs ")[0].strip()
        paired = _auc(per_source.get(f"{what} vs FFHQ reals"))
        rows.append((key, paired) if paired is not None and not what.startswith("SBI of") else (key, auc))
    return rows


def _unseen_generators(record: dict | None) -> list[float]:
    """The ROC-AUCs of the recipe's leave-one-generator-out runs (``training.json``'s
    ``leave_one_out``, from scripts/leave-one-out.py) on the generator each run never saw, against
    FFHQ's reals; empty when the record has none."""
    aucs = []
    for run in (record or {}).get("leave_one_out") or []:
        for held in run.get("held_out") or []:
            auc = _auc((run.get("subsets") or {}).get(f"{held} vs FFHQ reals"))
            if auc is not None:
                aucs.append(auc)
    return aucs


def detector_note(name: str | Path | None) -> DetectorNote:
    """The note for a named detector, an ONNX build or a model folder; unmeasured when no metrics."""
    label = str(name or "")
    folder = _folder(name)
    metrics = read_json(folder / METRICS_NAME) if folder is not None else None
    if not isinstance(metrics, dict):
        return DetectorNote(label)
    summary = metrics.get("summary") or {}
    rows = _kind_rows(metrics.get("per_source") or {})
    catches = _grouped([r for r in rows if r[1] >= CATCHES_AUC])
    misses = _grouped([r for r in rows if r[1] < MISSES_AUC])
    unseen = _unseen_generators(read_json(folder / "training.json"))
    phrase = f"generators it never saw (AUC {_span(unseen)} with one held out of training)" if unseen else ""
    if unseen and max(unseen) < MISSES_AUC:
        misses = ", ".join(filter(None, [misses, phrase]))
    elif unseen and min(unseen) >= CATCHES_AUC:
        catches = ", ".join(filter(None, [catches, phrase]))
    auc = summary.get("roc_auc")
    return DetectorNote(label, None if auc is None else float(auc), calibration_error(metrics),
                        catches, misses, measured=True,
                        caution=_smoothing_caution(metrics.get("real_faces"), metrics.get("real_photos")))


def _smoothing_caution(real: dict | None, photos: dict | None = None) -> str:
    """'it flags 45% of real faces smoothed as a phone's beauty mode does (17% unsmoothed)', from
    the evaluation's camera-processing probe, when that share is high and well above the clean one
    (the same for real faces colour-graded as studio photographs are);
    the same for real faces through H.264 at CRF 32 (a fair video stream), and for the faces of a
    full-size face or larger in real photographs of another kind than its training reals (the
    evaluation's ``real_photos``), and groups of real faces it flags far more often than all
    (:func:`uneven_false_alarms`), joined by '; '."""
    processing = (real or {}).get("processing") if isinstance(real, dict) else None
    if not isinstance(processing, dict):
        return ""
    clean = (processing.get("clean") or {}).get("flagged")

    def flagged(prefix: str) -> float | None:
        return next((v.get("flagged") for k, v in processing.items() if k.startswith(prefix) and isinstance(v, dict)),
                    None)

    def high(share: float | None) -> bool:
        return clean is not None and share is not None and share >= SMOOTHED_FLAGGED and share - clean >= SMOOTHED_RISE

    smoothed, graded, video = flagged("smoothed"), flagged("colour graded"), flagged(VIDEO_REALS_ROW)
    parts = []
    if high(smoothed):
        parts.append(f"it flags {smoothed:.0%} of real faces smoothed as a phone's noise reduction or beauty mode does "
                     f"({clean:.0%} unsmoothed)")
    if high(graded):
        parts.append(f"it flags {graded:.0%} of real faces colour-graded as studio and press photographs are "
                     f"({clean:.0%} as stored)")
    if high(video):
        parts.append(f"it flags {video:.0%} of real faces compressed as video sites do (H.264, CRF 32; "
                     f"{clean:.0%} as stored)")
    uneven = uneven_false_alarms(real)
    if uneven:
        parts.append(uneven)
    overall = photos.get("all") if isinstance(photos, dict) else None
    large = overall.get("faces_large_flagged") if isinstance(overall, dict) else None
    if high(large):
        side = photos.get("small_face_px", SMALL_FACE_PX)
        parts.append(f"it flags {large:.0%} of the faces {side} px or wider in {overall.get('photos')} real photographs "
                     f"unlike its training faces ({clean:.0%} of its real validation faces)")
    return "; ".join(parts)


def uneven_false_alarms(real: dict | None) -> str:
    """'its false alarms are uneven: of 3452 real UTKFace faces it never saw it flags 8% in all, but 13% of those
    labelled Black (8%-20%) (95% intervals)', from the evaluation's ``real_faces.unseen`` (faces no split of its run held), naming each group flagged
    :data:`UNEVEN_RATIO` times as often as all of them or more with its interval wholly above their share; ""
    when none is, or when it was not measured."""
    unseen = (real or {}).get("unseen") if isinstance(real, dict) else None
    overall = (unseen or {}).get("all") if isinstance(unseen, dict) else None
    if not isinstance(overall, dict) or not isinstance(overall.get("flagged"), (int, float)):
        return ""
    share = float(overall["flagged"])
    named = []
    for group, row in (unseen.get("groups") or {}).items():
        flagged, interval = row.get("flagged"), row.get("flagged_ci95") or [0.0, 1.0]
        if isinstance(flagged, (int, float)) and flagged >= UNEVEN_RATIO * share and interval[0] > share:
            named.append(f"{flagged:.0%} of those {_group_words(group)} ({interval[0]:.0%}-{interval[1]:.0%})")
    if not named:
        return ""
    sources = " and ".join(unseen.get("sources") or {}) or "real"
    return (f"its false alarms are uneven: of {overall['faces']} real {sources} faces it never saw it flags "
            f"{share:.0%} in all, but " + ", ".join(named) + " (95% intervals)")


def _group_words(group: str) -> str:
    """'UTKFace Black' -> 'labelled Black', 'UTKFace age 13-19' -> 'aged 13-19', 'UTKFace female' -> 'labelled female'."""
    words = group.split(" ", 1)[-1]
    return f"aged {words[4:]}" if words.startswith("age ") else f"labelled {words}"


def small_face_caution(side: float, what: str, metrics: dict | None, build: bool = False) -> str:
    """A one-line caution for a verdict decided by a face ``side`` source pixels across (``what``
    names it: "face 2", "person 1"), or "" when it is not small. The figures are the detector's own
    (``metrics.json``'s ``robustness_auc``: faces shrunk to N px and compressed at that size, against
    full-size faces through the same codec): the row of the smallest size at or above ``side``.
    ``build``: the detector is an ONNX build, whose figures are its float model's."""
    if not side or side >= SMALL_FACE_PX:
        return ""
    text = (f"Caution: the verdict rests on a small face ({what}, {side:.0f} px across), which the detector "
            f"sees enlarged, with little of the detail it reads")
    rows = [row for row in _small_face_rows(metrics) if row[3] is not None]
    if not rows:
        return text + " (its accuracy on small faces was not measured)."
    at_least = [r for r in rows if r[0] >= side]  # the nearest measured size this face is no larger than
    size, crf, auc, full = min(at_least) if at_least else max(rows)
    smaller = ", larger than this one" if side < size - 8 else ""
    return (text + f": on validation faces {size} px across{smaller}, through H.264 (CRF {crf}), its ROC-AUC is "
            f"{auc:.2f}, against {full:.2f} at full size through the same codec"
            + (" (measured on the float model this build was made from)." if build else "."))


def _small_face_rows(metrics: dict | None) -> list[tuple[int, int, float, float | None]]:
    """``metrics.json``'s small-face rows (``robustness_auc``: faces shrunk to N px and compressed there)
    as (side, CRF, ROC-AUC, ROC-AUC of full-size faces through the same codec or None)."""
    rob = metrics.get("robustness_auc") if isinstance(metrics, dict) else None
    rows = []
    for key, auc in (rob if isinstance(rob, dict) else {}).items():
        m = SMALL_FACE_ROW.match(key)
        if m and isinstance(auc, (int, float)):
            full = rob.get(f"h264_crf_{m[2]}")
            rows.append((int(m[1]), int(m[2]), float(auc), float(full) if isinstance(full, (int, float)) else None))
    return rows


def smallest_measured_face(metrics: dict | None) -> tuple[int, int, float] | None:
    """The smallest face size the detector was measured on as (side, CRF, ROC-AUC), or None."""
    rows = _small_face_rows(metrics)
    return min(rows)[:3] if rows else None


def calibration_error(metrics: dict | None) -> float | None:
    """The detector's measured calibration error (``metrics.json``'s ``calibration.ece`` on its
    validation faces), or None where it was not measured."""
    calibration = metrics.get("calibration") if isinstance(metrics, dict) else None
    ece = calibration.get("ece") if isinstance(calibration, dict) else None
    return float(ece) if isinstance(ece, (int, float)) and not isinstance(ece, bool) else None


def close_call_caution(p: float | None, threshold: float | None, metrics: dict | None, build: bool = False,
                       sampling: tuple[str, int, float] | None = None) -> str:
    """A one-line caution for a verdict whose score ``p`` lies within what is known of it from its
    ``threshold``, so that the call could go either way; "" when it is farther, or when the
    detector's calibration was not measured. What is known: the detector's calibration error
    (``metrics.json``'s validation ECE) and, for a video, ``sampling = (who, frames, standard error)``:
    the score is the deciding person's mean P(fake) over the sampled frames, whose standard error
    (frame scores' spread / sqrt(frames)) counts twice (about a 95% interval). ``build``: an ONNX
    build (its float model's calibration)."""
    ece = calibration_error(metrics)
    if p is None or threshold is None or ece is None:
        return ""
    se = float(sampling[2]) if sampling else 0.0
    if not within_errors(p, threshold, ece, se):
        return ""
    side = "above" if p > threshold else "below" if p < threshold else "at"
    gap = f"{abs(p - threshold):.3f} {side}" if side != "at" else "at"
    text = (f"Close call: P(fake) {p:.3f} lies {gap} the threshold {threshold:.3f}, within the detector's "
            f"calibration error (ECE {ece:.3f} on its validation faces)")
    if sampling and se > 0:
        who, frames = sampling[0], int(sampling[1])
        text += (f" plus twice the standard error of {who}'s mean over {frames} sampled frames (2 x {se:.3f}), "
                 "so the verdict could go either way; more sampled frames narrow the second")
    else:
        text += ", so the verdict could go either way"
    return text + (" (the calibration of the float model this build was made from)." if build else ".")


def threshold_spread(metrics: dict | None) -> tuple[float, float] | None:
    """Where the detector's threshold rule puts the threshold on resamples of its validation faces
    (``metrics.json``'s ``threshold_spread``: 5th and 95th percentiles), or None when not measured."""
    spread = (metrics or {}).get("threshold_spread") or {}
    try:
        low, high = float(spread["p05"]), float(spread["p95"])
    except (KeyError, TypeError, ValueError):
        return None
    return (low, high) if 0.0 <= low <= high <= 1.0 else None


def threshold_caution(p: float | None, threshold: float | None, metrics: dict | None, build: bool = False) -> str:
    """A one-line caution for a score that lies where the threshold itself could have fallen: inside the
    range the detector's threshold rule gives on resamples of its validation faces, on the other side of
    some of it. "" when it is outside, or when the spread was not measured (a close call by the
    calibration error says more, and is given instead where both hold)."""
    spread = threshold_spread(metrics)
    if p is None or threshold is None or spread is None:
        return ""
    low, high = spread
    other_way = low <= p < threshold if p < threshold else p < high  # a threshold in the range on p's other side
    if not other_way:
        return ""
    # Every figure to the score's three decimals: at two, a score just inside the range could read as outside it.
    return (f"Unsettled threshold: P(fake) {p:.3f} lies where the threshold ({threshold:.3f}) could have fallen: "
            f"its rule, run on resamples of the detector's validation faces, puts it between {low:.3f} and {high:.3f}, "
            "so a threshold chosen on another draw of those faces could call this the other way"
            + (" (measured on the float model this build was made from)." if build else "."))


# An image saved at this JPEG quality or lower gets a caution: the detail the detectors read is going.
LOW_JPEG_QUALITY = 60
JPEG_ROW = re.compile(r"jpeg_(\d+)$")
JPEG_REALS_ROW = "JPEG quality 50"  # the real-face probe's re-encoding row (training.evaluate.RE_ENCODING)


def jpeg_caution(quality: int | None, metrics: dict | None, build: bool = False) -> str:
    """A one-line caution for an image saved as a JPEG of ``quality`` (libjpeg's scale), or "" when
    it is above :data:`LOW_JPEG_QUALITY`. The figures are the detector's own (``metrics.json``):
    ROC-AUC on validation faces re-encoded at the nearest measured quality at or below this one
    (the lowest measured when none is), against the same faces as stored, and the share of real
    faces flagged at quality 50 against as stored. ``build``: an ONNX build (its float model's figures)."""
    if quality is None or quality > LOW_JPEG_QUALITY:
        return ""
    text = (f"Caution: the image is a JPEG of quality {quality} (of 100), whose compression erases some of "
            "the detail the detector reads")
    rob = (metrics or {}).get("robustness_auc") if isinstance(metrics, dict) else None
    rows = sorted((int(m[1]), float(v)) for k, v in (rob or {}).items()
                  if (m := JPEG_ROW.match(k)) and isinstance(v, (int, float)))
    clean = (rob or {}).get("clean")
    if not rows or not isinstance(clean, (int, float)):
        return text + " (its accuracy at that quality was not measured)."
    at_most = [r for r in rows if r[0] <= quality]
    measured, auc = max(at_most) if at_most else min(rows)
    milder = " (milder than this image's)" if measured > quality else ""
    text += (f": on validation faces re-encoded at quality {measured}{milder}, its ROC-AUC is {auc:.2f} "
             f"({clean:.2f} as stored)")
    processing = (metrics.get("real_faces") or {}).get("processing") or {}  # metrics is a dict: it had the rows
    low, stored = (processing.get(JPEG_REALS_ROW) or {}).get("flagged"), (processing.get("clean") or {}).get("flagged")
    if isinstance(low, (int, float)) and isinstance(stored, (int, float)):
        text += f", and at quality 50 it flags {low:.0%} of real faces ({stored:.0%} as stored)"
    return text + (" (measured on the float model this build was made from)." if build else ".")


# A video stream under this many bits per pixel per frame is strongly compressed. Measured on the labelled
# videos (H.264): as published 0.033-0.176 (20 videos), re-encoded with libx264 at CRF 23 0.024-0.087,
# at CRF 32 0.0025-0.024, at CRF 40 0.0006-0.014 (docs/experiments.md, twenty-eighth session).
STRONG_VIDEO_COMPRESSION_BPP = 0.02
# Codecs the bound holds for: H.264, and MPEG-4 Part 2, which spends more bits for the same quality, so
# that under the bound it is compressed at least as hard. HEVC, VP9 and AV1 spend fewer: not judged.
COMPRESSION_CODECS = {"h264": "H.264", "avc1": "H.264", "x264": "H.264", "FMP4": "MPEG-4 Part 2",
                      "mp4v": "MPEG-4 Part 2", "XVID": "MPEG-4 Part 2", "DIVX": "MPEG-4 Part 2", "DX50": "MPEG-4 Part 2"}
VIDEO_CODEC_ROWS = (32, 40)  # the card's H.264 rows (robustness_auc "h264_crf_N", real_faces "H.264 CRF N")


def video_compression_caution(codec: str | None, bits_per_pixel: float | None, metrics: dict | None,
                              build: bool = False) -> str:
    """A one-line caution for a video whose stream spends under :data:`STRONG_VIDEO_COMPRESSION_BPP` bits
    per pixel per frame in a codec of :data:`COMPRESSION_CODECS`, or "". The figures are the detector's
    own (``metrics.json``): ROC-AUC on validation faces through H.264 at CRF 32 and 40 against the same
    faces as stored, and the share of real faces flagged after each. ``build``: an ONNX build."""
    if (not isinstance(bits_per_pixel, (int, float)) or bits_per_pixel >= STRONG_VIDEO_COMPRESSION_BPP
            or codec not in COMPRESSION_CODECS):
        return ""
    text = (f"Caution: the video is strongly compressed ({COMPRESSION_CODECS[codec]} at {bits_per_pixel:.3f} bits "
            f"per pixel per frame; the labelled videos as published carry 0.03-0.18, and under 0.025 after "
            f"H.264 at CRF 32), which erases some of the detail the detector reads")
    rob = (metrics or {}).get("robustness_auc") if isinstance(metrics, dict) else None
    aucs = [(rob or {}).get(f"h264_crf_{crf}") for crf in VIDEO_CODEC_ROWS]
    clean = (rob or {}).get("clean")
    if not all(isinstance(a, (int, float)) for a in aucs) or not isinstance(clean, (int, float)):
        return text + " (its accuracy on compressed faces was not measured)."
    text += (f": on validation faces through H.264 at CRF {' and '.join(map(str, VIDEO_CODEC_ROWS))}, its ROC-AUC is "
             f"{' and '.join(f'{a:.2f}' for a in aucs)} ({clean:.2f} as stored)")
    processing = (metrics.get("real_faces") or {}).get("processing") or {}
    flagged = [(processing.get(f"H.264 CRF {crf}") or {}).get("flagged") for crf in VIDEO_CODEC_ROWS]
    stored = (processing.get("clean") or {}).get("flagged")
    if all(isinstance(f, (int, float)) for f in flagged) and isinstance(stored, (int, float)):
        text += f", and it flags {' and '.join(f'{f:.0%}' for f in flagged)} of real faces ({stored:.0%} as stored)"
    return text + (" (measured on the float model this build was made from)." if build else ".")


def offered_detectors() -> list[tuple[str, str]]:
    """(label, name) pairs for the analysis tabs' detector boxes: every named detector and ONNX
    build with its strength in a few words, leaving out those close to chance (they can still be
    typed in by name)."""
    choices = []
    for name in detector_choices():
        note = detector_note(name)
        if note.near_chance:
            continue
        choices.append((f"{name} — {note.short}", name))
    return choices


def supported_methods(name: str | Path | None) -> list[str]:
    """The explanation methods a detector can give, known without loading it: from its measured
    description (``metrics.json``: kind, attention) and, for ONNX builds, the outputs the graph
    was exported with (``onnx.json``). Unknown detectors (Hub ids) are offered every method; the
    analysis then says which it skipped and why."""
    from forensics.catalog import EXTRA_METHODS, METHODS

    everything = list(METHODS + EXTRA_METHODS)
    folder = _folder(name)
    if folder is None:
        return everything
    described = (read_json(folder / METRICS_NAME) or {}).get("detector") or {}
    kind = described.get("kind", described.get("family"))  # "family": metrics written before the name said what it is
    if kind is None:
        return everything
    attention = bool(described.get("attention"))
    patches = kind == "patch"
    cams = True
    variant = split_variant(str(name))[1]
    if variant:
        try:
            outputs = read_json(folder / "onnx.json")["float"]["outputs"]
        except (KeyError, TypeError):  # no build record (None), or one that does not list the outputs
            outputs = ["logits"]
        attention, patches, cams = "attentions" in outputs, "patch_logits" in outputs, False
    wanted = {"attention": attention, "rollout": attention, "gradcam": cams, "gradcam++": cams, "patches": patches}
    return [m for m in everything if wanted[m]]
