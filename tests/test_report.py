"""JSON and HTML reports from real analyses of a real photo and a real video."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import io
import json
import re
from datetime import datetime, timedelta, timezone
from html.parser import HTMLParser

import pytest
from PIL import Image

import forensics
from forensics.analysis import AnalysisResult, Analyzer
from forensics.detectors import load_detector
from forensics.explain import METHODS
from forensics.render.report import (
    MAX_REPORT_FACES,
    detector_extra,
    report_html,
    report_json,
    write_report_html,
    write_report_json,
)
from tests.conftest import data_path

EVIL = "<script>alert(1)</script>"


class _Page(HTMLParser):
    """Every start tag with its attributes, and the visible text, of an HTML page."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text_parts: list[str] = []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_startendtag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text_parts.append(data)

    @property
    def text(self) -> str:
        return " ".join(" ".join(self.text_parts).split())

    def find(self, tag: str, css: str | None = None) -> list[dict[str, str | None]]:
        return [a for t, a in self.tags if t == tag and (css is None or css in (a.get("class") or "").split())]


def _assert_self_contained(page: _Page) -> None:
    assert not page.find("script"), "a report runs no script at all"
    assert not [a for a in page.find("link") if a.get("href")]
    imgs = page.find("img")
    assert imgs and all((a.get("src") or "").startswith(("data:image/png;base64,", "data:image/jpeg;base64,"))
                        for a in imgs)
    for tag, attrs in page.tags:  # nothing else may pull a resource in either
        for key in ("src", "href", "srcset", "poster", "data"):
            value = attrs.get(key)
            assert value is None or value.startswith("data:"), f"<{tag} {key}={value!r}> is external"


def _decode(uri: str) -> Image.Image:
    header, payload = uri.split(",", 1)
    image = Image.open(io.BytesIO(base64.b64decode(payload)))
    image.load()
    assert image.format == ("PNG" if "image/png" in header else "JPEG")
    return image


@pytest.fixture(scope="module")
def detector(model_dirs):
    return load_detector(model_dirs["timm-vit"], allow_untrained=True)


@pytest.fixture(scope="module")
def analyzer(detector, face_detector):
    return Analyzer(detector, face_detector, frames=4)


@pytest.fixture(scope="module")
def photo():
    return data_path("photos/deepface/couple.jpg")


@pytest.fixture(scope="module")
def photo_analysis(analyzer, photo):
    result, frames = analyzer.analyze_with_frames(photo)
    assert result.error is None and len(result.faces) == 2 and len(frames) == 1
    return result, frames


@pytest.fixture(scope="module")
def photo_result(photo_analysis):
    return photo_analysis[0]


@pytest.fixture(scope="module")
def video_analysis(analyzer):
    result, frames = analyzer.analyze_with_frames(data_path("video/hamilton_clip.mp4"))
    assert result.error is None and result.kind == "video" and result.tracks and len(frames) == 4
    return result, frames


@pytest.fixture(scope="module")
def video_result(video_analysis):
    return video_analysis[0]


@pytest.fixture(scope="module")
def photo_html(photo_analysis, detector):
    result, frames = photo_analysis
    return report_html(result, extra=detector_extra(detector), frames=frames)


@pytest.fixture(scope="module")
def video_html(video_analysis, detector):
    result, frames = video_analysis
    return report_html(result, extra=detector_extra(detector), frames=frames)


# -- JSON -----------------------------------------------------------------------------------------


def test_json_report_round_trips_with_hash_time_detector_and_input(photo_result, photo, detector):
    data = json.loads(json.dumps(report_json(photo_result, extra=detector_extra(detector)), allow_nan=False))
    report = data["report"]
    assert report["input"]["sha256"] == hashlib.sha256(photo.read_bytes()).hexdigest()
    assert report["input"]["file_name"] == "couple.jpg" and str(photo.parent) not in json.dumps(report["input"])
    assert report["input"]["size_bytes"] == photo.stat().st_size and report["input"]["format"] == "JPEG"
    assert report["input"]["jpeg_quality"] == 94
    assert (report["input"]["width"], report["input"]["height"]) == Image.open(photo).size
    generated = datetime.fromisoformat(report["generated_at"])
    assert generated.utcoffset() == timedelta(0)
    assert abs(datetime.now(timezone.utc) - generated) < timedelta(minutes=5)
    assert report["tool"] == "Deepfake Forensics Studio" and report["tool_version"] == forensics.__version__
    assert report["detector"]["name"] == detector.name == photo_result.detector
    assert report["detector"]["kind"] == "timm-vit" and report["detector"]["labels"] == detector.labels
    assert report["detector"]["threshold"] == detector.threshold and report["detector"]["trained"] is False
    assert "path" not in report["detector"], "the analyst's folders stay out of a report"
    assert len(data["faces"]) == len(photo_result.faces) == 2
    assert data["fake_probability"] == pytest.approx(photo_result.fake_probability, abs=1e-6)


def test_json_extra_is_merged_but_the_result_wins(photo_result):
    report = report_json(photo_result, extra={"detector": {"name": "an impostor", "kind": "timm-cnn"},
                                              "input": {"uploaded_by": "case 17"}, "case": "A-42"})["report"]
    assert report["detector"]["name"] == photo_result.detector and report["detector"]["kind"] == "timm-cnn"
    assert report["input"]["uploaded_by"] == "case 17" and report["extra"] == {"case": "A-42"}
    plain = report_json(photo_result)["report"]["detector"]
    assert plain["labels"] == list(photo_result.faces[0].probabilities) and plain["kind"] is None


def test_write_report_json_is_complete_and_leaves_no_temporary_file(photo_result, tmp_path):
    target = tmp_path / "out" / "couple.report.json"
    assert write_report_json(photo_result, target) == target
    first = json.loads(target.read_text(encoding="utf-8"))
    write_report_json(photo_result, target, extra={"case": "again"})  # replaces in place
    second = json.loads(target.read_text(encoding="utf-8"))
    assert len(first["faces"]) == len(second["faces"]) == 2 and second["report"]["extra"] == {"case": "again"}
    assert target.read_text(encoding="utf-8").startswith('{\n  "input"')  # indent=2
    assert [p.name for p in target.parent.iterdir()] == [target.name]


# -- HTML: photo ----------------------------------------------------------------------------------


def test_photo_html_is_self_contained_and_says_what_it_is_about(photo_html, photo_result, photo, detector):
    page = _Page(photo_html)
    _assert_self_contained(page)
    text = page.text
    from forensics.detector_notes import detector_note, format_against_threshold

    shown, threshold = format_against_threshold(photo_result.fake_probability, photo_result.threshold,
                                                detector_note(photo_result.detector))
    assert photo_result.label.upper() in text and f"Calibrated P(fake) ≈ {shown}" in text  # as the app says it
    assert f"≈ {shown} ({photo_result.fake_probability:.3f} to three decimals) " in text and f"; threshold {threshold}" in text
    assert photo_result.aggregation in text and "no manipulation detected" not in text
    assert hashlib.sha256(photo.read_bytes()).hexdigest() in text
    assert detector.name in text and "timm-vit" in text and "couple.jpg" in text
    assert "2280 × 1588 px" in text and forensics.__version__ in text
    assert photo_result.media.jpeg_quality == 94 and "JPEG quality 94 of 100" in text  # read from the file
    assert "Interpreting this report" in text and "not proof" in text
    assert len(page.find("style")) == 1 and not re.search(r"url\(|@import|https?://", photo_html)
    assert len(photo_html.encode("utf-8")) < 3_000_000


def test_photo_html_shows_each_face_crop_with_every_overlay(photo_html, photo_result):
    page = _Page(photo_html)
    crops, overlays = page.find("img", "crop"), page.find("img", "overlay")
    assert len(crops) == len(photo_result.faces) == 2
    assert len(overlays) == sum(len(f.heatmaps) for f in photo_result.faces) == 2 * len(METHODS)
    assert sorted(a["data-method"] for a in overlays) == sorted(list(METHODS) * 2)
    for title in ("Last-layer attention", "Attention rollout", "Grad-CAM", "Grad-CAM++"):
        assert title in page.text
    assert _rows(page, "faces") == 1 + len(photo_result.faces)  # header + one row per face


def _rows(page: _Page, css: str) -> int:
    """<tr> rows of the table with class ``css`` (tables in a report are not nested)."""
    rows, inside = 0, False
    for tag, attrs in page.tags:
        if tag == "table":
            inside = css in (attrs.get("class") or "").split()
        elif tag == "tr" and inside:
            rows += 1
    return rows


def test_embedded_images_decode_to_plausible_sizes(photo_html, photo, photo_result):
    page = _Page(photo_html)
    (annotated,) = page.find("img", "annotated-image")
    image = _decode(annotated["src"])
    width, height = Image.open(photo).size
    assert image.format == "JPEG" and image.width == 1280  # the longest side, downscaled
    assert image.height == pytest.approx(height * 1280 / width, abs=1)
    crop = _decode(page.find("img", "crop")[0]["src"])
    overlay = _decode(page.find("img", "overlay")[0]["src"])
    assert crop.size == overlay.size == (64, 64) and overlay.format == "PNG"  # the detector's input size
    # The frames are not part of the result: without them (a held analysis) the page has no annotated image.
    assert "frames" not in photo_result.to_dict() and not _Page(report_html(photo_result)).find("img", "annotated-image")


# -- HTML: video ----------------------------------------------------------------------------------


def test_video_html_has_track_table_and_timeline_with_one_line_per_counted_track(video_html, video_result):
    page = _Page(video_html)
    _assert_self_contained(page)
    (svg,) = page.find("svg", "timeline")
    lines = page.find("polyline", "track")
    counted = [t for t in video_result.tracks if t.counted]
    assert len(lines) == len(counted) >= 1
    assert sorted(a["data-track"] for a in lines) == sorted(f"person {t.track}" for t in counted)
    assert len(page.find("line", "threshold")) == 1 and page.find("line", "threshold")[0]["stroke-dasharray"]
    for line, track in zip(sorted(lines, key=lambda a: a["data-track"]), sorted(counted, key=lambda t: f"person {t.track}")):
        assert len(line["points"].split()) == track.frames  # one point per sampled frame the person is in
    assert _rows(page, "tracks") == 1 + len(video_result.tracks)
    text = page.text
    assert "29.97 fps" in text and "Sampled frames 4" in text and "time (s)" in text
    assert "Codec H.264 (FourCC h264), " in text and "bits per pixel per frame" in text
    assert "<th>Person</th>" in video_html and "Track" not in page.text  # one word for a face followed over frames
    # the headline says what the app's small print says: the mean's standard error, frames with faces, people
    from forensics.results import sampling_error

    found = len({f.frame for f in video_result.faces})
    people = len({f.track for f in video_result.faces if f.track is not None})
    assert f"; faces in {found} of 4 sampled frames, {people} person(s)" in text
    assert sampling_error(video_result) is None and "the mean's standard error" not in text  # 4 frames: one each
    import forensics.results

    with pytest.MonkeyPatch.context() as mp:  # a person seen in 3 frames: their mean's standard error is given
        mp.setattr(forensics.results, "sampling_error", lambda result: ("person 2", 3, 0.0123))
        again = _Page(report_html(video_result)).text
    assert "± 0.01 over 3 sampled frames of person 2 (the mean's standard error); faces in" in again
    shown = min(len(video_result.faces), MAX_REPORT_FACES)
    assert len(page.find("img", "crop")) == shown
    assert len(page.find("img", "overlay")) == sum(len(f.heatmaps) for f in video_result.faces[:shown]) > 0


def test_gallery_caps_faces_and_says_how_many_were_left_out(photo_result):
    faces = [dataclasses.replace(photo_result.faces[i % 2], fake_probability=i / 40) for i in range(30)]
    many = dataclasses.replace(photo_result, faces=faces)
    page = _Page(report_html(many))
    assert len(page.find("img", "crop")) == MAX_REPORT_FACES
    assert f"{30 - MAX_REPORT_FACES} less suspicious face(s) are not shown" in page.text
    scores = [float(m) for m in re.findall(r"Face \d+: P\(fake\) ([0-9.]+)", page.text)]
    assert scores == sorted(scores, reverse=True) and scores[0] == pytest.approx(29 / 40, abs=1e-3)


# -- escaping and errors --------------------------------------------------------------------------


def test_user_supplied_text_is_escaped(detector, face_detector, photo):
    name = f"{EVIL}.jpg"
    result = Analyzer(detector, face_detector, methods=[]).analyze(photo.read_bytes(), name=name)
    assert result.error is None and result.input == name
    result.notes.append('<img src="x" onerror="alert(2)">')
    page_text = report_html(result)
    assert EVIL not in page_text and "onerror=\"alert" not in page_text
    assert html_escaped(EVIL) in page_text
    page = _Page(page_text)
    _assert_self_contained(page)
    assert f"{EVIL}.jpg" in page.text  # shown to the reader as text
    assert report_json(result)["report"]["input"]["file_name"] == name


def html_escaped(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def test_error_result_gives_a_short_report_showing_the_error(analyzer, tmp_path):
    empty = tmp_path / "broken.jpg"
    empty.write_bytes(b"")
    result = analyzer.analyze(empty)
    assert result.error and not result.faces
    page = _Page(report_html(result))
    assert "ANALYSIS FAILED" in page.text and result.error in page.text
    assert not page.find("img") and not page.find("svg") and "Faces (" not in page.text
    crafted = AnalysisResult(input="clip.mp4", kind="video", detector="d", error=f"clip.mp4: bad header {EVIL}")
    crafted_page = report_html(crafted)
    assert EVIL not in crafted_page and html_escaped(EVIL) in crafted_page
    assert report_json(crafted)["error"] == crafted.error


def test_write_report_html_writes_the_whole_page(video_result, tmp_path):
    target = tmp_path / "hamilton.html"
    assert write_report_html(video_result, target) == target
    written = target.read_text(encoding="utf-8")
    assert written.startswith("<!DOCTYPE html>") and written.rstrip().endswith("</html>")
    assert video_result.media.sha256 in written and len(_Page(written).find("polyline", "track")) >= 1
    assert [p.name for p in tmp_path.iterdir()] == [target.name]


def test_scored_maps_show_their_scores_against_random_and_their_curves(detector, face_detector, photo):
    from forensics.explain.faithfulness import FaithfulnessOptions

    scored = Analyzer(detector, face_detector, faithfulness=FaithfulnessOptions(steps=4)).analyze(photo)
    assert scored.error is None and all(face.faithfulness for face in scored.faces)
    data = report_json(scored)
    first = data["faces"][0]["faithfulness"]
    assert set(first) == set(METHODS) and {"deletion", "random_deletion", "insertion_curve"} <= set(first["gradcam"])
    page = _Page(report_html(scored))
    _assert_self_contained(page)
    assert len(page.find("table", "faithfulness")) == len(scored.faces)
    rows = [a["data-method"] for a in page.find("tr") if a.get("data-method")]
    assert rows.count("gradcam") == len(scored.faces)
    lines = page.find("polyline", "deletion") + page.find("polyline", "insertion")
    assert len(lines) == len(scored.faces) * 2 * (len(METHODS) + 1)  # every map and the random one, both curves
    marked = [f.most_faithful for f in scored.faces]
    assert page.text.count("★ most faithful") == sum(m is not None for m in marked)
    assert "Deletion AUC (lower is better)" in page.text


def test_a_score_is_never_shown_on_the_wrong_side_of_its_threshold():
    """P(fake) to the detector's precision, unless that rounds it onto the threshold as shown (or past it):
    then both get more decimals, up to 4."""
    from forensics.detector_notes import DetectorNote, format_against_threshold, format_probability

    coarse, fine = DetectorNote("uncalibrated"), DetectorNote("calibrated", ece=0.02)
    assert format_against_threshold(0.46, 0.5, coarse) == ("0.46", "0.50")  # not "0.5" beside "0.50", not flagged
    assert format_against_threshold(0.31, 0.5, coarse) == ("0.3", "0.50")  # plainly below: the usual precision
    assert format_against_threshold(0.5, 0.5, coarse) == ("0.5", "0.50")  # at the threshold is flagged
    assert format_against_threshold(0.678, 0.683, fine) == ("0.678", "0.683")  # not "0.68" against "0.68"
    assert format_against_threshold(0.685, 0.683, fine) == ("0.69", "0.68")
    assert format_against_threshold(0.68249, 0.6825, fine) == ("0.6825", "0.6825")  # 4 decimals at most
    assert format_probability(0.46, coarse) == "0.5" and format_probability(0.46, coarse, 0.5) == "0.46"


def test_a_close_call_is_said_in_the_reports_verdict_and_notes(photo_result):
    """A verdict within the detector's uncertainty of its threshold (a "Close call" note) is headed as a
    close call leaning that way, not as "no manipulation detected", and the note itself is listed."""
    plain = _Page(report_html(photo_result))
    assert "close call" not in plain.text
    note = ("Close call: P(fake) 0.590 lies 0.014 below the threshold 0.604, within the detector's calibration "
            "error (ECE 0.025 on its validation faces), so the verdict could go either way.")
    for label, leaning in (("real", "leaning real"), ("fake", "leaning manipulated")):
        close = dataclasses.replace(photo_result, label=label, notes=[*photo_result.notes, note])
        page = _Page(report_html(close))
        assert f"but within its uncertainty: a close call, {leaning}" in page.text and note in page.text
        assert "no manipulation detected" not in page.text


def test_the_timeline_puts_faceless_and_small_face_frames_where_a_player_shows_them():
    """Every mark on the Video tab's timeline is at its frame's time: faces at their timestamps, and the
    frames without a face (or with faces too small to judge) at the sampled frames' own times, which for
    a variable frame rate are not frame / rate (the clip here: 25 fps for 2 s, then 5 fps)."""
    from forensics.render.figures import timeline_figure
    from forensics.results import FaceResult, MediaInfo, TrackSummary

    indices = [0, 25, 60, 80, 99]
    times = [k / 25 if k < 50 else 2 + (k - 50) / 5 for k in indices]  # 0, 1, 4, 8, 11.8 s
    faces = [FaceResult(frame=k, track=1, box=[0, 0, 50, 50], face_confidence=0.99, fake_probability=0.3,
                        probabilities={"real": 0.7, "fake": 0.3}, crop_box=[0, 0, 50, 50], timestamp=t)
             for k, t in zip(indices[:2], times[:2])]
    result = AnalysisResult(input="vfr.mp4", kind="video", detector="x", fake_probability=0.3, label="real",
                            threshold=0.6, faces=faces,
                            tracks=[TrackSummary(1, 2, 0.3, 0.3, 0, 25, True)],
                            media=MediaInfo(fps=8.7, frame_count=100, duration_s=12.0, sampled_frames=5,
                                            sampled_indices=indices, sampled_times=times))
    result.small_faces = [{"frame": 80, "box": [0, 0, 9, 9], "confidence": 0.9}]
    figure = timeline_figure(result)
    marks = {t.name: list(t.x) for t in figure.data}
    assert marks["person 1"] == [0.0, 1.0]
    assert marks["no face in this frame"] == [4.0, 8.0, 11.8]  # not 60 / 8.7 = 6.9 s, 80 / 8.7, 99 / 8.7
    assert marks["face too small to judge"] == [8.0]
    older = dataclasses.replace(result, media=dataclasses.replace(result.media, sampled_times=[]))  # a record without times
    assert {t.name: list(t.x) for t in timeline_figure(older).data}["no face in this frame"] == pytest.approx(
        [60 / 8.7, 80 / 8.7, 99 / 8.7])
    import numpy as np

    from forensics.render.frames import _small_face_frames

    result.faces = []  # a video where only faces too small to judge were seen: the gallery's caption, timed alike
    ((_, caption),) = _small_face_frames(result, [np.zeros((60, 80, 3), np.uint8)] * 5)
    assert caption == "8.00s: 1 face(s) too small to judge (9 px)"


def test_the_timeline_names_its_threshold_and_verdict_in_the_margin_without_overlap():
    """The threshold and the verdict are named beside their lines' ends, right of the plot (not over
    the curves), the lower label under its line and the upper one above, so that 0.60 and 0.62 do not
    print over each other."""
    from forensics.render.figures import timeline_figure

    result = AnalysisResult(input="clip.mp4", kind="video", detector="x", fake_probability=0.62, label="fake",
                            threshold=0.60)
    labels = {a.text: a for a in timeline_figure(result).layout.annotations}
    assert set(labels) == {"threshold 0.60", "verdict 0.62"}
    assert all(a.x == 1 and a.xref == "paper" and a.xanchor == "left" for a in labels.values())
    assert (labels["threshold 0.60"].yanchor, labels["verdict 0.62"].yanchor) == ("top", "bottom")
    below = dataclasses.replace(result, fake_probability=0.31, label="real")
    labels = {a.text: a for a in timeline_figure(below).layout.annotations}
    assert (labels["verdict 0.31"].yanchor, labels["threshold 0.60"].yanchor) == ("top", "bottom")
    assert [a.yanchor for a in timeline_figure(dataclasses.replace(result, fake_probability=None)).layout.annotations] == [
        "bottom"]


def test_crowd_labels_cover_no_face_and_no_other_label_and_the_most_suspicious_keep_their_score():
    """In a crowd, labels the size of a face's box would hide the faces: each goes where it covers no other
    face and no label placed before it (the most suspicious first), else its number alone, else none."""
    import numpy as np

    from forensics.render.frames import Labels, annotated
    from forensics.results import FaceResult

    boxes = [[x, y, x + 40, y + 48] for y in (60, 130, 200) for x in range(20, 560, 55)]  # 3 rows, 10 a row
    crowd = AnalysisResult(input="crowd.jpg", kind="image", detector="x", threshold=0.6)
    crowd.faces = [FaceResult(frame=0, track=None, box=box, face_confidence=0.99, fake_probability=p,
                              probabilities={"real": 1 - p, "fake": p}, crop_box=[0, 0, 1, 1])
                   for box, p in zip(boxes, np.linspace(0.1, 0.9, len(boxes)))]
    crowd.small_faces = [{"frame": 0, "box": [600, 20, 624, 44], "confidence": 0.95}]
    picture = np.full((320, 640, 3), 128, np.uint8)
    drawn = annotated(crowd, [picture])
    assert drawn.shape == picture.shape and (drawn != picture).any()
    # The same placement, step by step: the most suspicious face first, as annotated() labels them.
    labels = Labels(picture.shape, boxes + [crowd.small_faces[0]["box"]])
    order = sorted(range(len(boxes)), key=lambda i: -crowd.faces[i].fake_probability)
    placed = {i: labels.place(boxes[i], [f"{i + 1}: {crowd.faces[i].fake_probability:.2f}", str(i + 1)], 0.5, 1)
              for i in order}
    rects = [p[1] for p in placed.values() if p is not None]
    assert all(not Labels._overlap(a, b) for k, a in enumerate(rects) for b in rects[k + 1:])
    for i, p in placed.items():
        if p is not None:
            assert not any(Labels._overlap(p[1], tuple(b)) for j, b in enumerate(boxes) if j != i)
    assert placed[order[0]][0].startswith(f"{order[0] + 1}: 0.90")  # the most suspicious keeps its score
    assert sum(p is not None for p in placed.values()) >= len(boxes) // 2  # most faces keep at least their number
    assert any(p is not None and ":" not in p[0] for p in placed.values())  # where a score does not fit, the number
    # Alone, a label goes above its box, as it always did.
    assert Labels(picture.shape).place((100, 100, 140, 148), ["7: 0.50"], 0.5, 1)[1][3] == 100


def test_the_timeline_gathers_the_people_left_out_under_one_grey_legend_entry():
    """People seen too briefly to count are drawn thin and grey under one legend entry naming them (a crowd's
    legend took a row per two people and squeezed the plot); the counted ones keep a line and entry each."""
    from forensics.render.figures import timeline_figure
    from forensics.results import FaceResult, MediaInfo, TrackSummary

    def face(frame, track, p):
        return FaceResult(frame=frame, track=track, box=[0, 0, 50, 50], face_confidence=0.99, fake_probability=p,
                          probabilities={"real": 1 - p, "fake": p}, crop_box=[0, 0, 50, 50], timestamp=frame / 10)

    faces = [face(k, track, 0.2 + 0.1 * track) for track in (1, 3, 10) for k in range(0, 40, 10)]
    faces += [face(20, 2, 0.9), face(30, 12, 0.8)]
    tracks = [TrackSummary(t, 4, 0.2 + 0.1 * t, 0.2 + 0.1 * t, 0, 30, True) for t in (1, 3, 10)]
    tracks += [TrackSummary(2, 1, 0.9, 0.9, 20, 20, False), TrackSummary(12, 1, 0.8, 0.8, 30, 30, False)]
    result = AnalysisResult(input="crowd.mp4", kind="video", detector="x", fake_probability=0.5, label="real",
                            threshold=0.6, faces=faces, tracks=tracks,
                            media=MediaInfo(fps=10, frame_count=40, duration_s=4.0, sampled_frames=4,
                                            sampled_indices=[0, 10, 20, 30]))
    figure = timeline_figure(result)
    shown = [t.name for t in figure.data if t.showlegend is not False]
    assert shown == ["person 1", "person 3", "person 10", "left out, too short: people 2, 12"]  # 10 after 3
    grey = [t for t in figure.data if t.legendgroup == "left out"]
    assert [list(t.x) for t in grey] == [[2.0], [3.0]] and all(t.line.color == "rgb(160, 160, 160)" for t in grey)
    assert "person 12 (left out: too short)" in grey[1].hovertemplate  # each still named where pointed at
    one = dataclasses.replace(result, faces=faces[:-1], tracks=tracks[:-1])
    assert "left out, too short: person 2" in [t.name for t in timeline_figure(one).data]


def test_comparison_report_is_self_contained_and_escapes_what_came_from_files(tmp_path):
    """The comparison's page carries its images inside and never runs a name: a file or detector name
    holding markup is shown as text; a video's rows are people; the JSON keeps every row."""
    import numpy as np

    from forensics.compare import Comparison, DetectorRun
    from forensics.render.compare_report import write_compare_reports
    from forensics.results import FaceResult, MediaInfo, TrackSummary

    def result(p):
        face = FaceResult(frame=0, track=1, box=[0, 0, 50, 50], face_confidence=0.99, fake_probability=p,
                          probabilities={"real": 1 - p, "fake": p}, crop_box=[0, 0, 50, 50], timestamp=0.0)
        face.crop = np.full((64, 64, 3), 120, np.uint8)
        face.heatmaps = {"gradcam": np.linspace(0, 1, 64 * 64).reshape(64, 64)}
        return AnalysisResult(input="x", kind="video", detector="d", threshold=0.5, fake_probability=p,
                              label="fake" if p >= 0.5 else "real", faces=[face],
                              tracks=[TrackSummary(1, 1, p, p, 0, 0, True)], media=MediaInfo(sha256="ab" * 32))

    evil = '<img src=x onerror="alert(1)">.mp4'
    comparison = Comparison(input=evil, kind="video", runs=[DetectorRun("<b>one</b>", result(0.8)),
                                                             DetectorRun("two", result(0.2)),
                                                             DetectorRun("three", error="<i>no such model</i>")])
    json_path, html_path = write_compare_reports(comparison, tmp_path, "clip")
    html = html_path.read_text()
    assert "<img src=x" not in html and "&lt;img src=x" in html and "<b>one</b>" not in html
    assert "<i>no such model</i>" not in html and "could not run: &lt;i&gt;no such model&lt;/i&gt;" in html
    assert "2 detector(s) on 1 people: they agree on 0 of 1" in html and "<tr><td>Person 1</td>" in html
    assert "1 of 2 flag it" in html and "ab" * 32 in html
    assert html.count("data:image/") == 3 and "http" not in html  # the face and two maps, inside the page
    saved = json.loads(json_path.read_text())
    assert [(r["unit"], r["detector"], r["flagged"]) for r in saved["rows"]] == [("Person 1", "<b>one</b>", True),
                                                                                  ("Person 1", "two", False)]
    assert saved["agreement"] == {"Person 1": "1 of 2 flag it"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip-comparison.html", "clip-comparison.json"]  # no temporaries
    assert "the face as" not in html  # one crop: both detectors cropped the face alike

    wide = result(0.7)  # a detector of another input size or framing crops the face its own way
    wide.faces[0].crop = np.full((96, 96, 3), 60, np.uint8)
    framed = Comparison(input="a.mp4", kind="video", runs=[DetectorRun("one", result(0.8)), DetectorRun("wide", wide)])
    _, framed_html = write_compare_reports(framed, tmp_path / "framed", "a")
    page = framed_html.read_text()
    assert page.count("data:image/") == 4  # each detector's crop, then its map over it
    assert page.index("the face as one crops it") < page.index("one: ") < page.index("the face as wide crops it") \
        < page.index("wide: ")
