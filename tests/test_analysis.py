"""The pipeline end to end on real photos and videos, and the aggregation rules."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from forensics.analysis import NO_FACE_NOTE, SMALL_FACES_ONLY, Analyzer, FaceResult, aggregate_image, aggregate_video, reading_order
from forensics.detectors import load_detector
from forensics.core import DetectorError
from forensics.explain import METHODS
from forensics.media import sample_frame_indices
from tests.conftest import ROOT, data_path


def _face(frame, track, p, fallback=False):
    return FaceResult(frame=frame, track=track, box=[0, 0, 10, 10], face_confidence=0.99, fake_probability=p,
                      probabilities={"real": 1 - p, "fake": p}, crop_box=[0, 0, 10, 10], fallback=fallback)


def test_image_verdict_is_the_most_suspicious_face():
    score, text = aggregate_image([_face(0, None, 0.2), _face(0, None, 0.7), _face(0, None, 0.4)])
    assert score == 0.7 and "max over 3" in text


def test_video_verdict_is_the_max_over_tracks_of_each_tracks_mean():
    faces = [_face(i, 0, p) for i, p in enumerate([0.2, 0.4, 0.3, 0.3])]  # person 0: mean 0.3
    faces += [_face(i, 1, p) for i, p in enumerate([0.9, 0.5, 0.7])]  # person 1: mean 0.7
    faces += [_face(2, 2, 0.99)]  # one stray detection: left out
    score, tracks, text = aggregate_video(faces, sampled_frames=4)
    assert score == pytest.approx(0.7)
    by_id = {t.track: t for t in tracks}
    assert by_id[0].mean_fake_probability == pytest.approx(0.3) and by_id[0].counted
    assert by_id[1].max_fake_probability == pytest.approx(0.9) and by_id[1].frames == 3
    assert not by_id[2].counted and "1 person(s) seen in fewer than 3" in text


def test_short_tracks_count_when_no_track_is_long_enough():
    score, tracks, _ = aggregate_video([_face(0, 0, 0.2), _face(1, 1, 0.6)], sampled_frames=8)
    assert score == pytest.approx(0.6) and all(t.counted for t in tracks)


def test_video_without_faces_averages_the_whole_frames():
    score, tracks, text = aggregate_video([_face(i, None, p, fallback=True) for i, p in enumerate([0.2, 0.4])], 2)
    assert score == pytest.approx(0.3) and tracks == [] and "no face" in text


@pytest.fixture(scope="module")
def analyzer(model_dirs, face_detector):
    return Analyzer(load_detector(model_dirs["timm-vit"], allow_untrained=True), face_detector, frames=6)


def test_group_photo_end_to_end_with_maps_on_disk(analyzer, tmp_path):
    from forensics.render.maps import write_maps

    photo = data_path("photos/deepface/couple.jpg")
    result, frames = analyzer.analyze_with_frames(photo)
    assert result.error is None and result.kind == "image"
    assert not any(f.maps for f in result.faces) and not list(tmp_path.iterdir())  # the analysis writes nothing
    assert result.explanations.methods == list(METHODS) and result.explanations.skipped == {}
    write_maps(result, frames, tmp_path)
    assert len(result.faces) == 2 and not any(f.fallback for f in result.faces)
    assert result.fake_probability == max(f.fake_probability for f in result.faces)
    assert result.label == ("fake" if result.fake_probability >= result.threshold else "real")
    for face in result.faces:
        assert set(face.maps) == set(METHODS)
        for path in face.maps.values():
            assert Path(path).is_file() and str(tmp_path) in path
            assert Image.open(path).size == (64, 64)  # the crop's size
    width, height = Image.open(photo).size
    assert Image.open(result.full_maps["gradcam"]).size == (width, height)
    assert set(result.timings_ms) >= {"decode", "faces", "classify", "explain", "total"}
    data = result.to_dict()
    assert data["faces"][0]["maps"]["gradcam++"].endswith(".png") and len(data["media"]["sha256"]) == 64


def test_faces_are_cropped_as_the_detector_was_trained_to_see_them(model_dirs, face_detector, tmp_path):
    """A model folder that records landmark framing and margin 0 gets landmark-framed crops."""
    import shutil

    from forensics.faces import crop_face
    from forensics.media import load_image

    folder = shutil.copytree(model_dirs["timm-cnn"], tmp_path / "landmarks")
    config = json.loads((folder / "config.json").read_text())
    config["forensics"].update(face_framing="landmarks", face_margin=0.0)
    (folder / "config.json").write_text(json.dumps(config))
    det = load_detector(folder, allow_untrained=True, cache=False)
    assert (det.info.face_framing, det.info.face_margin) == ("landmarks", 0.0)
    photo = data_path("photos/deepface/couple.jpg")
    result = Analyzer(det, face_detector, methods=[]).analyze(photo)
    image = load_image(photo)
    faces = sorted(face_detector.detect(image), key=lambda f: f.box[0])
    assert result.error is None and len(result.faces) == len(faces) == 2
    for got, face in zip(sorted(result.faces, key=lambda f: f.box[0]), faces):
        assert tuple(got.crop_box) == crop_face(image, face, 64, 0.0, framing="landmarks").crop_box
        assert tuple(got.crop_box) != crop_face(image, face, 64, 0.0).crop_box
    config["forensics"]["face_framing"] = "ears"
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(DetectorError, match="face_framing 'ears' is not one of box, landmarks"):
        load_detector(folder, allow_untrained=True, cache=False)


def test_whole_image_is_scored_only_on_request_and_never_gets_a_verdict(model_dirs, face_detector, tmp_path):
    rng = np.random.default_rng(0)
    noise = tmp_path / "texture.png"
    Image.fromarray(rng.integers(90, 160, (240, 320, 3), dtype=np.uint8)).save(noise)
    det = load_detector(model_dirs["timm-vit"], allow_untrained=True)
    result = Analyzer(det, face_detector, fallback_whole_image=True).analyze(noise)
    assert result.error is None and len(result.faces) == 1
    assert result.faces[0].fallback and result.faces[0].box is None
    assert result.label == "no_face" and result.fake_probability is not None  # a score, not a verdict
    assert any("outside what the detector was trained for" in note for note in result.notes)


def test_no_face_gives_no_verdict_by_default(model_dirs, face_detector):
    cat = ROOT / "assets" / "examples" / "chelsea-no-face.jpg"
    det = load_detector(model_dirs["timm-cnn"], allow_untrained=True)
    result = Analyzer(det, face_detector).analyze(cat)
    assert result.faces == [] and result.fake_probability is None and result.label == "no_face"
    assert any(note.startswith("no face found: no verdict") for note in result.notes)
    # The smallest image accepted (16 x 16) has room for no face searched for: no face, not an internal error.
    import io

    tiny = io.BytesIO()
    Image.open(ROOT / "assets" / "examples" / "astronaut.jpg").convert("RGB").resize((16, 16)).save(tiny, "PNG")
    small = Analyzer(det, face_detector).analyze(tiny.getvalue(), name="tiny.png")
    assert small.error is None and small.label == "no_face" and small.faces == []


def test_faces_are_numbered_in_reading_order(analyzer):
    """Top row first, left to right within a row, whatever order the face detector found them in."""
    from types import SimpleNamespace as Face

    boxes = [(300, 20, 380, 110), (10, 200, 90, 290), (20, 30, 100, 120), (200, 210, 280, 300), (150, 60, 220, 140)]
    order = reading_order([Face(box=b) for b in boxes])
    assert [f.box for f in order] == [boxes[2], boxes[4], boxes[0], boxes[1], boxes[3]]
    result = analyzer.analyze(data_path("photos/deepface/couple.jpg"))
    xs = [f.box[0] for f in result.faces]
    assert len(xs) == 2 and xs == sorted(xs)  # side by side: left face is face 1


def test_real_video_yields_tracked_faces(analyzer):
    video = data_path("video/hamilton_clip.mp4")
    result = analyzer.analyze(video)
    assert result.error is None and result.kind == "video"
    assert result.media.sampled_frames == 6
    tracked = [f for f in result.faces if f.track is not None]
    assert tracked and result.tracks
    assert {f.track for f in tracked} == {t.track for t in result.tracks}
    assert min(t.track for t in result.tracks) == 1  # people are numbered from 1
    assert len(result.tracks) < len(tracked), "a video reports per person, not per box"
    counted = [t for t in result.tracks if t.counted]
    assert result.fake_probability == pytest.approx(max(t.mean_fake_probability for t in counted), abs=1e-6)
    assert all(f.timestamp is not None for f in result.faces)


def test_bad_inputs_become_errors_not_exceptions(analyzer, tmp_path):
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    result = analyzer.analyze(empty)
    assert result.error and "empty.jpg" in result.error and "\n" not in result.error
    assert result.fake_probability is None and result.faces == []


def test_bytes_input_with_a_name(analyzer):
    photo = data_path("photos/face_recognition/obama.jpg")
    result = analyzer.analyze(photo.read_bytes(), name="upload.jpg")
    assert result.error is None and result.input == "upload.jpg" and len(result.faces) == 1
    # the file's size and hash, as of the bytes given: the same as the file's on disk
    size = photo.stat().st_size
    assert result.media.file_bytes == size and result.to_dict()["media"]["file_bytes"] == size
    assert result.media.sha256 == analyzer.analyze(photo).media.sha256
    from forensics.render.report import report_json

    assert report_json(result)["report"]["input"]["size_bytes"] == size  # an upload's size is in its report too


def test_animated_gif_is_analysed_as_a_short_video(analyzer, tmp_path):
    from forensics.media import load_video

    clip = load_video(ROOT / "assets" / "examples" / "astronaut-pan.mp4", frames=10)
    frames = [Image.fromarray(f) for f in clip.frames]
    gif = tmp_path / "astronaut.gif"
    frames[0].save(gif, save_all=True, append_images=frames[1:], duration=100, loop=0)
    result = analyzer.analyze(gif)
    assert result.error is None and result.kind == "video" and result.media.animated_image is True
    assert result.media.sampled_frames == 6 and result.media.frame_count == 10
    assert result.faces and {f.track for f in result.faces} == {1} and result.label in ("fake", "real")
    assert [f.timestamp for f in result.faces] == sorted(f.timestamp for f in result.faces)


def test_a_detector_chosen_by_its_folder_keeps_its_measured_note_under_the_verdict(tmp_path):
    """A model folder whose own name resolves to nothing (a copy, renamed): the verdict's small print
    and the CLI's JSON name the detector as it was chosen, so its measured note (ECE, what it
    catches) is found, not "calibration unmeasured"."""
    import shutil

    from forensics.cli import main as forensics_main
    from forensics.detector_notes import detector_note
    from forensics.service import analyze
    from ui.present import summary

    folder = tmp_path / "my-copy"
    shutil.copytree(ROOT / "assets/detectors/default", folder,
                    ignore=shutil.ignore_patterns("*.onnx", "onnx.json", "audit*"))
    config = json.loads((folder / "config.json").read_text())
    config["forensics"]["name"] = "renamed-copy"
    (folder / "config.json").write_text(json.dumps(config))
    assert not detector_note("renamed-copy").measured  # the model's own name finds no card
    note = detector_note(str(folder))
    assert note.measured and note.ece is not None

    photo = data_path("photos/face_recognition/obama.jpg")
    result = analyze(str(photo), detector=str(folder), methods=[]).result
    assert result.detector == str(folder)
    text = summary(result)
    assert f"± {note.ece:.2f} (its calibration error)" in text and "calibration unmeasured" not in text
    assert note.line in text

    out = tmp_path / "out.json"
    assert forensics_main(["analyze", str(photo), "--detector", str(folder), "--explain", "none", "--json", str(out)]) == 0
    assert json.loads(out.read_text().splitlines()[0])["detector"] == str(folder)


def test_a_verdict_decided_by_a_small_face_says_so_with_the_detectors_own_figures(model_dirs, face_detector, tmp_path):
    """A face far from the camera is judged from a few dozen pixels, enlarged: the verdict says so,
    with the detector's measured ROC-AUC on faces that small (its metrics.json); a full-size face
    gets no such caution, and a detector without the measurement says it was not measured."""
    import shutil

    import cv2

    from forensics.analysis import deciding_faces
    from forensics.detector_notes import small_face_caution

    folder = tmp_path / "measured"
    shutil.copytree(model_dirs["timm-vit"], folder)
    (folder / "metrics.json").write_text(json.dumps({"robustness_auc": {
        "h264_crf_32": 0.87, "small_128_h264_crf_32": 0.78, "small_96_h264_crf_32": 0.71}}))
    analyzer = Analyzer(load_detector(folder, allow_untrained=True, cache=False), face_detector)
    photo = np.asarray(Image.open(data_path("photos/face_recognition/obama.jpg")).convert("RGB"))
    big = analyzer.analyze(data_path("photos/face_recognition/obama.jpg"))
    assert big.error is None and len(big.faces) == 1
    assert min(big.faces[0].crop_box[2] - big.faces[0].crop_box[0], 128) == 128  # a large face
    assert not any("small face" in n for n in big.notes)

    scale = 94 / (big.faces[0].crop_box[2] - big.faces[0].crop_box[0])  # the face's crop about 80 px across
    small_photo = cv2.resize(photo, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    Image.fromarray(small_photo).save(tmp_path / "far.png")
    small = analyzer.analyze(tmp_path / "far.png")
    assert small.error is None and len(small.faces) == 1
    side = small.faces[0].crop_box[2] - small.faces[0].crop_box[0]
    assert 88 <= side < 100
    caution = [n for n in small.notes if "small face" in n]
    assert caution == [f"Caution: the verdict rests on a small face (face 1, {side} px across), which the detector "
                       "sees enlarged, with little of the detail it reads: on validation faces 96 px across, through "
                       "H.264 (CRF 32), its ROC-AUC is 0.71, against 0.87 at full size through the same codec."]
    from ui.present import summary
    assert caution[0] in summary(small)  # shown under the verdict in the app
    assert small_face_caution(60, "face 1", None).endswith("(its accuracy on small faces was not measured).")
    measured = json.loads((folder / "metrics.json").read_text())
    assert ", larger than this one" in small_face_caution(60, "face 1", measured)
    assert small_face_caution(60, "face 1", measured, build=True).endswith("this build was made from).")
    assert small_face_caution(128, "face 1", measured) == ""

    # with size temperatures in its calibration, the small face's probabilities are softened by its
    # own (interpolated) temperature, and a large face's are not touched
    from forensics.detectors.base import size_temperature
    config = json.loads((folder / "config.json").read_text())
    config["forensics"]["size_temperatures"] = {"64": 4.0, "96": 3.0, "128": 2.0}
    (folder / "config.json").write_text(json.dumps(config))
    tempered = Analyzer(load_detector(folder, allow_untrained=True, cache=False), face_detector)
    soft = tempered.analyze(tmp_path / "far.png").faces[0]
    raw = small.faces[0]
    t = size_temperature(config["forensics"]["size_temperatures"], side)
    assert 2.0 < t < 4.0 and soft.size_temperature == pytest.approx(t, abs=1e-4)
    def logit(q):
        return np.log(q / (1 - q))

    assert logit(soft.fake_probability) == pytest.approx(logit(raw.fake_probability) / t, rel=1e-3, abs=1e-4)
    assert tempered.analyze(data_path("photos/face_recognition/obama.jpg")).faces[0].size_temperature == 1.0

    # a video: the faces of the highest-scoring counted track decide, named by person
    faces = [_face(i, 1, 0.2) for i in range(4)] + [_face(i, 2, 0.8) for i in range(3)] + [_face(1, 3, 0.99)]
    from forensics.results import AnalysisResult
    result = AnalysisResult(input="clip.mp4", kind="video", detector="x")
    result.faces = faces
    result.fake_probability, result.tracks, _ = aggregate_video(faces, 4)
    chosen, what = deciding_faces(result)
    assert what == "person 2" and len(chosen) == 3 and all(f.track == 2 for f in chosen)


def test_a_low_quality_jpeg_says_so_with_the_detectors_own_figures(model_dirs, face_detector, tmp_path):
    """A real photo saved as a JPEG of quality 35: the result records the quality read from the file's
    quantization table, and the verdict carries a caution with the detector's ROC-AUC at the nearest
    measured quality at or below it and its false alarms at quality 50 (its metrics.json). The same
    photo at quality 90, or as PNG, gets no caution; a detector without the rows says so."""
    import shutil

    from forensics.detector_notes import jpeg_caution
    from ui.present import summary

    folder = tmp_path / "measured"
    shutil.copytree(model_dirs["timm-vit"], folder)
    (folder / "metrics.json").write_text(json.dumps({
        "robustness_auc": {"jpeg_95": 0.93, "jpeg_50": 0.87, "jpeg_40": 0.85, "jpeg_30": 0.83, "clean": 0.94},
        "real_faces": {"processing": {"clean": {"flagged": 0.13}, "JPEG quality 50": {"flagged": 0.24}}}}))
    analyzer = Analyzer(load_detector(folder, allow_untrained=True, cache=False), face_detector, methods=())
    photo = Image.open(data_path("photos/face_recognition/obama.jpg")).convert("RGB")
    for quality in (35, 90):
        photo.save(tmp_path / f"q{quality}.jpg", quality=quality)
    photo.save(tmp_path / "lossless.png")

    low = analyzer.analyze(tmp_path / "q35.jpg")
    assert low.error is None and low.media.jpeg_quality == 35 and low.media.to_dict()["jpeg_quality"] == 35
    caution = [n for n in low.notes if "JPEG" in n]
    assert caution == ["Caution: the image is a JPEG of quality 35 (of 100), whose compression erases some of the "
                       "detail the detector reads: on validation faces re-encoded at quality 30, its ROC-AUC is 0.83 "
                       "(0.94 as stored), and at quality 50 it flags 24% of real faces (13% as stored)."]
    assert caution[0] in summary(low)  # shown under the verdict in the app
    high = analyzer.analyze(tmp_path / "q90.jpg")
    assert high.media.jpeg_quality == 90 and not any("JPEG" in n for n in high.notes)
    png = analyzer.analyze(tmp_path / "lossless.png")
    assert png.media.jpeg_quality is None and "jpeg_quality" not in png.media.to_dict()
    assert not any("JPEG" in n for n in png.notes)
    # the nearest measured quality at or below; milder when none is; unmeasured said as such
    measured = json.loads((folder / "metrics.json").read_text())
    assert "re-encoded at quality 50, its ROC-AUC is 0.87" in jpeg_caution(55, measured)
    assert "re-encoded at quality 30 (milder than this image's), its ROC-AUC is 0.83" in jpeg_caution(12, measured)
    assert jpeg_caution(61, measured) == "" and jpeg_caution(None, measured) == ""
    assert jpeg_caution(40, None).endswith("(its accuracy at that quality was not measured).")
    assert jpeg_caution(40, measured, build=True).endswith("this build was made from).")


def test_a_score_where_the_threshold_could_have_fallen_says_so(model_dirs, face_detector, tmp_path):
    """A score farther from the threshold than the calibration error, but inside the range the threshold
    rule gives on resamples of the validation faces (metrics.json's threshold_spread), is called unsettled
    under the verdict and the range goes into the JSON; outside the range, or with a close call, it is not."""
    import shutil

    from forensics.detector_notes import threshold_caution

    folder = tmp_path / "measured"
    shutil.copytree(model_dirs["timm-vit"], folder)
    photo = data_path("photos/face_recognition/obama.jpg")

    def analyse(threshold: float, metrics: dict):
        config = json.loads((folder / "config.json").read_text())
        config.setdefault("forensics", {})["threshold"] = threshold
        (folder / "config.json").write_text(json.dumps(config))
        (folder / "metrics.json").write_text(json.dumps(metrics))
        return Analyzer(load_detector(folder, allow_untrained=True, cache=False), face_detector, methods=()).analyze(photo)

    p = analyse(0.5, {}).fake_probability
    threshold = min(0.99, p + 0.08) if p < 0.5 else max(0.01, p - 0.08)
    spread = {"threshold_spread": {"p05": threshold - 0.1, "p95": threshold + 0.1, "median": threshold}}
    result = analyse(threshold, {"calibration": {"ece": 0.02}, **spread})
    notes = [n for n in result.notes if n.startswith("Unsettled threshold")]
    assert notes == [f"Unsettled threshold: P(fake) {p:.3f} lies where the threshold ({threshold:.3f}) could have "
                     f"fallen: its rule, run on resamples of the detector's validation faces, puts it between "
                     f"{threshold - 0.1:.3f} and {threshold + 0.1:.3f}, so a threshold chosen on another draw of those "
                     "faces could call this the other way."]
    assert not any(n.startswith("Close call") for n in result.notes)
    from forensics.cli import _summary_line
    from forensics.compare import Comparison, DetectorRun
    from ui.compare import summary as compare_summary
    assert _summary_line(result).splitlines()[1:] == [f"  {notes[0]}"]  # under the CLI's summary line
    assert notes[0] in compare_summary(Comparison(str(photo), "image", [DetectorRun(str(folder), result)]))
    assert result.uncertainty == {"calibration_error": 0.02, "close_call": False,
                                  "threshold_range": [round(threshold - 0.1, 4), round(threshold + 0.1, 4)]}
    narrow = {"threshold_spread": {"p05": threshold - 0.05, "p95": threshold + 0.05}}  # p is 0.08 away: outside
    assert not any(n.startswith("Unsettled") for n in analyse(threshold, {"calibration": {"ece": 0.02}, **narrow}).notes)
    close = analyse(threshold, {"calibration": {"ece": 0.1}, **spread})  # a close call says it, once
    assert [n[:12] for n in close.notes if n.startswith(("Close call", "Unsettled"))] == ["Close call: "]
    # the rule: a threshold inside the range must lie on the score's other side
    assert threshold_caution(0.60, 0.68, spread_of(0.55, 0.70)) and threshold_caution(0.69, 0.68, spread_of(0.55, 0.70))
    assert not threshold_caution(0.50, 0.68, spread_of(0.55, 0.70)) and not threshold_caution(0.71, 0.68, spread_of(0.55, 0.70))
    assert not threshold_caution(0.60, 0.68, {}) and not threshold_caution(0.60, 0.68, spread_of(0.7, 0.5))
    assert threshold_caution(0.60, 0.68, spread_of(0.55, 0.70), build=True).endswith("(measured on the float model this build was made from).")
    # a score just inside the range reads as inside it: every figure to three decimals (0.547 is not "under 0.55")
    assert "P(fake) 0.547 lies where the threshold (0.683) could have fallen: its rule, run on resamples of the " \
        "detector's validation faces, puts it between 0.547 and 0.706," in threshold_caution(0.5472, 0.683, spread_of(0.5471, 0.7064))


def spread_of(low: float, high: float) -> dict:
    return {"threshold_spread": {"p05": low, "p95": high}}


def test_a_verdict_within_the_calibration_error_of_the_threshold_is_a_close_call(model_dirs, face_detector, tmp_path):
    """A score that lies within the detector's calibration error (its metrics.json's ECE) of its threshold
    says so under the verdict: the probability is known only that closely, so the call could go either
    way. A score farther away, or a detector whose calibration was not measured, gets no such note."""
    import shutil

    from forensics.detector_notes import close_call_caution
    from ui.present import summary

    folder = tmp_path / "measured"
    shutil.copytree(model_dirs["timm-vit"], folder)
    photo = data_path("photos/face_recognition/obama.jpg")

    def analyse(threshold: float, ece: float | None):
        config = json.loads((folder / "config.json").read_text())
        config.setdefault("forensics", {})["threshold"] = threshold
        (folder / "config.json").write_text(json.dumps(config))
        (folder / "metrics.json").write_text(json.dumps({} if ece is None else {"calibration": {"ece": ece}}))
        result = Analyzer(load_detector(folder, allow_untrained=True, cache=False), face_detector, methods=()).analyze(photo)
        assert result.error is None and len(result.faces) == 1
        return result

    p = analyse(0.5, None).fake_probability
    threshold = min(0.99, p + 0.012) if p < 0.5 else max(0.01, p - 0.012)
    close = analyse(threshold, 0.03)
    assert close.fake_probability == pytest.approx(p)
    side = "below" if p < threshold else "above"
    notes = [n for n in close.notes if n.startswith("Close call")]
    assert notes == [f"Close call: P(fake) {p:.3f} lies {abs(p - threshold):.3f} {side} the threshold {threshold:.3f}, "
                     "within the detector's calibration error (ECE 0.030 on its validation faces), so the verdict "
                     "could go either way."]
    assert notes[0] in summary(close)  # shown under the verdict in the app
    assert close.uncertainty == {"calibration_error": 0.03, "close_call": True}  # and in the JSON, for a program
    assert close.to_dict()["uncertainty"]["close_call"] is True
    from forensics.compare import Comparison, DetectorRun
    from ui.compare import summary as compare_summary
    compared = compare_summary(Comparison(str(photo), "image", [DetectorRun(str(folder), close)]))
    assert notes[0] in compared  # and beside that detector in *Compare detectors*
    from forensics.cli import _summary_line
    assert _summary_line(close).splitlines()[1:] == [f"  {notes[0]}"]  # and under the CLI's summary line
    assert len(_summary_line(analyse(threshold, 0.005)).splitlines()) == 1
    assert not any(n.startswith("Close call") for n in analyse(threshold, 0.005).notes)  # farther than its error
    unmeasured = analyse(threshold, None)
    assert not any(n.startswith("Close call") for n in unmeasured.notes) and unmeasured.uncertainty == {}  # calibration unmeasured
    # a video: the deciding person's mean over the sampled frames is known to its standard error too
    from types import SimpleNamespace

    from forensics.analysis import _close_call
    from forensics.results import AnalysisResult
    video = AnalysisResult(input="clip.mp4", kind="video", detector="x")
    frames = [0.2, 0.9, 0.3, 0.8, 0.25, 0.85, 0.3, 0.8]  # person 1: mean 0.55, spread 0.31 over 8 frames
    video.faces = [_face(i, 1, p) for i, p in enumerate(frames)] + [_face(i, 2, 0.1) for i in range(8)]
    video.fake_probability, video.tracks, _ = aggregate_video(video.faces, 8)
    se = float(np.std(frames, ddof=1) / np.sqrt(8))
    (folder / "metrics.json").write_text(json.dumps({"calibration": {"ece": 0.02}}))
    det = SimpleNamespace(threshold=0.75, path=str(folder), variant=None)  # 0.2 above: beyond 0.02, within 0.02 + 2 SE
    note = _close_call(video, det)[1]
    assert note == (f"Close call: P(fake) 0.550 lies 0.200 below the threshold 0.750, within the detector's calibration "
                    f"error (ECE 0.020 on its validation faces) plus twice the standard error of person 1's mean over 8 "
                    f"sampled frames (2 x {se:.3f}), so the verdict could go either way; more sampled frames narrow the second.")
    far = _close_call(video, SimpleNamespace(threshold=0.55 + 0.03 + 2 * se, path=str(folder), variant=None))
    assert far == ({"calibration_error": 0.02, "sampling_error": round(se, 4), "sampled_frames": 8,
                    "deciding": "person 1", "close_call": False}, "")
    assert _close_call(video, det)[0]["close_call"] is True
    # In *Compare detectors*, each person's row is marked the same way: person 1 (mean 0.55, 0.2 under the
    # threshold, within 0.02 + 2 SE) a close call, person 2 (0.1, steady) not; and an image's face, as its verdict.
    from forensics.compare import rows as compare_rows
    from ui.compare import table as compare_table

    video.threshold, video.uncertainty = 0.75, _close_call(video, det)[0]
    people = {r.unit: r.close_call for r in compare_rows(Comparison("clip.mp4", "video", [DetectorRun("x", video)]))}
    assert people == {"Person 1": True, "Person 2": False}
    (face_row,) = compare_table(Comparison(str(photo), "image", [DetectorRun(str(folder), close)]))
    assert face_row[4] == f"{'flagged' if p >= threshold else 'not flagged'} (close call)"
    (far_row,) = compare_rows(Comparison(str(photo), "image", [DetectorRun(str(folder), analyse(threshold, 0.005))]))
    assert far_row.close_call is False and compare_rows(
        Comparison(str(photo), "image", [DetectorRun(str(folder), unmeasured)]))[0].close_call is False
    (folder / "metrics.json").write_text(json.dumps({"calibration": {"ece": 0.02}}))  # as the video's checks below read it
    video.label, video.threshold = "real", 0.75  # the app's small print gives the video's standard error beside the ECE
    assert f", ± {se:.2f} over 8 sampled frames of person 1 (the mean's standard error)" in summary(video)
    assert "sampled frames" not in summary(close)  # an image's score is no mean over frames
    steady = [0.55] * 8
    video.faces = [_face(i, 1, p) for i, p in enumerate(steady)]
    video.fake_probability, video.tracks, _ = aggregate_video(video.faces, 8)
    assert _close_call(video, det)[1] == ""  # frames that agree leave only the calibration error
    assert close_call_caution(0.6, 0.6, {"calibration": {"ece": 0.02}}).startswith("Close call: P(fake) 0.600 lies at the")
    assert close_call_caution(0.59, 0.6, {"calibration": {"ece": 0.02}}, build=True).endswith("this build was made from).")
    assert close_call_caution(0.5, 0.6, {"calibration": {"ece": 0.02}}) == "" and close_call_caution(None, 0.6, {}) == ""


def test_a_close_call_on_a_video_is_sampled_again_at_about_twice_the_frames(model_dirs, face_detector, tmp_path,
                                                                              monkeypatch):
    """A video verdict that is a close call looks again: N frames, then 2N - 1, then 4N - 3 (each pass keeps
    the frames it has and adds those between), until the call is no longer close or ``look_again`` passes
    are spent. Only the new frames are decoded, searched for faces and scored, and the verdict is the one a
    single pass over all those frames gives."""
    import shutil

    from forensics.cli import _summary_line
    from forensics.media import load_video

    folder = tmp_path / "measured"
    shutil.copytree(model_dirs["timm-vit"], folder)
    video = data_path("video/hamilton_clip.mp4")

    class Counting:
        def __init__(self, inner):
            self.inner, self.frames = inner, 0

        def detect_batch(self, frames, batch_size=2):
            self.frames += len(frames)
            return self.inner.detect_batch(frames, batch_size)

    def analyse(ece: float, threshold: float = 0.5, source=video, **options):
        config = json.loads((folder / "config.json").read_text())
        config.setdefault("forensics", {})["threshold"] = threshold
        (folder / "config.json").write_text(json.dumps(config))
        (folder / "metrics.json").write_text(json.dumps({"calibration": {"ece": ece}}))
        counting = Counting(face_detector)
        analyzer = Analyzer(load_detector(folder, allow_untrained=True, cache=False), counting, methods=(), **options)
        result, frames = analyzer.analyze_with_frames(source)
        assert result.error is None and result.kind == "video"
        return result, frames, counting.frames

    # An error as wide as the scale: every verdict is a close call, so both passes are taken.
    again, frames, searched = analyse(1.0, frames=6)
    passes = again.uncertainty["passes"]
    assert [p["frames"] for p in passes] == [6, 11, 21] and all(p["close_call"] for p in passes)
    assert again.media.sampled_frames == 21 == len(frames) == len(again.media.sampled_indices)
    assert searched == 21, "frames already searched are not searched again"
    first = load_video(video, frames=6).indices
    assert set(first) <= set(again.media.sampled_indices) == set(load_video(video, frames=21).indices)
    assert again.media.sampled_indices == sorted(again.media.sampled_indices)
    once, _, _ = analyse(1.0, frames=21, look_again=0)  # one pass over the same 21 frames
    assert once.media.sampled_indices == again.media.sampled_indices
    assert again.fake_probability == pytest.approx(once.fake_probability, abs=1e-5)
    assert [(f.frame, f.track) for f in again.faces] == [(f.frame, f.track) for f in once.faces]
    assert passes[-1]["fake_probability"] == pytest.approx(again.fake_probability, abs=1e-6)
    assert f"{passes[-1]['fake_probability']:.3f}" == f"{again.fake_probability:.3f}"  # the note and the verdict agree
    note = [n for n in again.notes if n.startswith("Looked again:")]
    assert note == [f"Looked again: P(fake) {passes[0]['fake_probability']:.3f} over 6 sampled frames was a close call, "
                    f"so the video was sampled again at 11, 21 frames; the verdict rests on 21 (P(fake) "
                    f"{passes[-1]['fake_probability']:.3f}, still a close call)."]
    assert note[0] in _summary_line(again)  # the CLI prints it under the summary line
    assert again.to_dict()["uncertainty"]["passes"] == passes
    assert [f.frame for f in again.faces] == sorted(f.frame for f in again.faces)
    # One pass allowed: 6 then 11 frames.
    one, _, searched = analyse(1.0, frames=6, look_again=1)
    assert [p["frames"] for p in one.uncertainty["passes"]] == [6, 11] and searched == 11
    # Not a close call (threshold far beyond every face's score, no error): one pass, no note.
    clear, _, searched = analyse(0.0, threshold=0.999, frames=6)
    assert "passes" not in clear.uncertainty and clear.media.sampled_frames == 6 and searched == 6
    assert not any(n.startswith("Looked again") for n in clear.notes)
    # A video without a face has no verdict to look at again (and no error).
    import cv2

    cat = np.asarray(Image.open(ROOT / "assets" / "examples" / "chelsea-no-face.jpg").convert("RGB"))
    cat = np.ascontiguousarray(cat[: cat.shape[0] // 2 * 2, : cat.shape[1] // 2 * 2])
    faceless = tmp_path / "cat.mp4"
    writer = cv2.VideoWriter(str(faceless), cv2.VideoWriter_fourcc(*"mp4v"), 10, (cat.shape[1], cat.shape[0]))
    for shift in range(12):
        writer.write(np.roll(cat, shift * 3, axis=1)[..., ::-1])
    writer.release()
    # A video in which no face is found is looked at again too (4, 7, then all 12 frames here), and still
    # has no verdict, and no error, when there is no face to find.
    nobody = Analyzer(load_detector(folder, allow_untrained=True, cache=False), face_detector, methods=(),
                      frames=4).analyze(faceless)
    assert nobody.error is None and nobody.label == "no_face" and nobody.fake_probability is None
    assert [(p["frames"], p["frames_with_faces"], p["fake_probability"]) for p in nobody.uncertainty["passes"]] == [
        (4, 0, None), (7, 0, None), (12, 0, None)]
    assert nobody.media.sampled_frames == 12 and nobody.notes[0] == (
        "Looked again: no face was found in 4 sampled frames, so the video was sampled again at 7, 12 frames; "
        "still no face in 12.")
    # With a variable frame rate the second look samples by time as the first did (25 fps for 2 s, then
    # 5 fps for 10 s): 7 frames spread over the 11.8 s keeping the first 4, two of them in the first 3 s
    # (by frame number, four of the 7 would lie there).
    import subprocess

    vfr = tmp_path / "vfr.mp4"
    subprocess.run(["ffmpeg", "-v", "error", "-f", "lavfi", "-i", "testsrc=size=160x120:rate=25:duration=4", "-vf",
                    "setpts='if(lt(N,50),N/(25*TB),(2+(N-50)/5)/TB)'", "-fps_mode", "vfr", "-c:v", "libx264",
                    str(vfr)], check=True)
    timed = Analyzer(load_detector(folder, allow_untrained=True, cache=False), face_detector, methods=(),
                     frames=4, look_again=1).analyze(vfr)
    assert timed.error is None and timed.label == "no_face" and timed.media.sampled_frames == 7
    assert timed.media.variable_frame_rate and not nobody.media.variable_frame_rate  # said so in the JSON and report
    from forensics.render.report import report_html

    assert "on average: variable (frames unevenly spaced" in report_html(timed)
    assert "on average: variable" not in report_html(nobody)
    times = [k / 25 if k < 50 else 2 + (k - 50) / 5 for k in range(100)]
    first = sample_frame_indices(100, frames=4, times=times)
    assert timed.media.sampled_indices == sample_frame_indices(100, frames=7, times=times)
    assert set(first) < set(timed.media.sampled_indices) and timed.uncertainty["passes"][0]["frames"] == 4
    assert sum(times[k] < 3 for k in timed.media.sampled_indices) == 2
    assert sum(times[k] < 3 for k in sample_frame_indices(100, frames=7)) == 4
    once = Analyzer(load_detector(folder, allow_untrained=True, cache=False), face_detector, methods=(),
                    frames=4, look_again=0).analyze(faceless)
    assert once.label == "no_face" and once.media.sampled_frames == 4 and "passes" not in once.uncertainty
    # A face only in frames the first look skipped: the second look finds it, and the video has a verdict.
    skipped = sorted(set(sample_frame_indices(12, frames=7)) - set(sample_frame_indices(12, frames=4)))
    person = np.asarray(Image.open(ROOT / "assets" / "examples" / "astronaut.jpg").convert("RGB").resize(
        (cat.shape[1], cat.shape[0])))
    hidden = tmp_path / "hidden.mp4"
    writer = cv2.VideoWriter(str(hidden), cv2.VideoWriter_fourcc(*"mp4v"), 10, (cat.shape[1], cat.shape[0]))
    for k in range(12):
        writer.write(np.ascontiguousarray((person if k in skipped else np.roll(cat, k * 3, axis=1))[..., ::-1]))
    writer.release()
    late, _, searched = analyse(0.0, threshold=0.999, frames=4, look_again=1, source=hidden)
    assert late.label == "real" and late.fake_probability is not None and searched == 7
    assert sorted({f.frame for f in late.faces}) == skipped
    assert [(p["frames"], p["frames_with_faces"]) for p in late.uncertainty["passes"]] == [(4, 0), (7, len(skipped))]
    assert late.notes[0] == (f"Looked again: no face was found in 4 sampled frames, so the video was sampled again "
                             f"at 7 frames; faces were found in {len(skipped)} of the 7 (P(fake) "
                             f"{late.fake_probability:.3f}).")
    assert not any(n == NO_FACE_NOTE for n in late.notes)
    # Frames a second look cannot decode leave the first look's verdict standing, not an error.
    import forensics.analysis as analysis
    from forensics.core import MediaError

    def unreadable_between(source, *args, indices=None, **kwargs):
        if indices is not None:
            raise MediaError("clip.mp4: none of the frames asked for exists")
        return load_video(source, *args, **kwargs)

    monkeypatch.setattr(analysis, "load_video", unreadable_between)
    stuck, _, searched = analyse(1.0, frames=6)
    assert stuck.error is None and stuck.media.sampled_frames == 6 and searched == 6
    assert stuck.uncertainty["close_call"] and "passes" not in stuck.uncertainty
    monkeypatch.undo()
    # Sampled by rate, the frames are the caller's choice: never looked at again.
    rated, _, _ = analyse(1.0, fps=2.0)
    assert rated.uncertainty["close_call"] and "passes" not in rated.uncertainty
    with pytest.raises(ValueError, match="look_again must be a non-negative integer"):
        Analyzer(load_detector(folder, allow_untrained=True, cache=False), face_detector, look_again=-1)


def test_faces_too_small_to_judge_are_told_apart_from_no_face(tmp_path):
    """With no face of 40 px found, MTCNN searches again down to 20 px: an image or video whose only faces
    are smaller says so (and how small), with the detector's smallest measured figure, and still has no
    verdict; a faceless one is left as it was."""
    photo = Image.open(ROOT / "assets" / "examples" / "astronaut.jpg").convert("RGB")
    small = tmp_path / "far-away.png"
    photo.resize((photo.width // 3, photo.height // 3)).save(small)
    analyzer = Analyzer(load_detector("default"), methods=())
    result = analyzer.analyze(small)
    assert result.error is None and result.label == "no_face" and result.fake_probability is None
    assert result.faces == [] and NO_FACE_NOTE in result.notes
    note = result.notes[0]
    assert note.startswith(f"{SMALL_FACES_ONLY} searching down to 20 px, MTCNN finds 1 face(s) under 40 px across in "
                           "this image (the largest 2"), note
    assert note.endswith("too small for the detector to judge; on faces 96 px across, the smallest it was measured "
                         "on (H.264, CRF 32), its ROC-AUC is 0.75.")
    # Where it is: kept in the result (and its JSON), boxed in grey with its size on the picture.
    from forensics.render.frames import SMALL_BOX_COLOUR, annotated

    [seen] = result.small_faces
    x0, y0, x1, y1 = seen["box"]
    assert seen["frame"] == 0 and 20 <= min(x1 - x0, y1 - y0) < 40 and seen["confidence"] >= 0.9
    assert json.loads(json.dumps(result.to_dict()))["small_faces"] == [seen]
    picture = np.asarray(Image.open(small).convert("RGB"))
    drawn = annotated(result, [picture])
    edge = drawn[int(round(y0)), int(round(x0)):int(round(x1))]
    assert (edge == SMALL_BOX_COLOUR).all(axis=1).mean() > 0.8 and not (picture[int(round(y0))] == drawn[int(round(y0))]).all()
    cat = analyzer.analyze(ROOT / "assets" / "examples" / "chelsea-no-face.jpg")
    assert cat.label == "no_face" and not any(n.startswith(SMALL_FACES_ONLY) for n in cat.notes)
    assert cat.small_faces == []
    # An image so large that its detection copy (1280 px) cannot show a face under 40 px is not searched again.
    from forensics.faces import FaceDetector

    class Asked(FaceDetector):
        sizes: list = []

        def detect_batch(self, images, batch_size=2, min_face_size=None):
            self.sizes.append(min_face_size)
            return super().detect_batch(images, batch_size, min_face_size)

    big = tmp_path / "big-cat.jpg"
    cat_photo = Image.open(ROOT / "assets" / "examples" / "chelsea-no-face.jpg")
    cat_photo.resize((6000, round(6000 * cat_photo.height / cat_photo.width))).save(big)
    for path, asked in ((big, [None]), (small, [None, 20])):
        finder = Asked()
        finder.sizes = []
        Analyzer(load_detector("default"), finder, methods=()).analyze(path)
        assert finder.sizes == asked, (path, finder.sizes)
    # The HTML report's headline tells the two apart too, and lists the note.
    import html

    from forensics.render.report import report_html

    far, none = html.unescape(report_html(result)), html.unescape(report_html(cat))
    assert "No face large enough to judge: no verdict" in far and note in far and "NO FACE FOUND" in far
    assert "No face found: no verdict" in none and "No face large enough" not in none
    # A video: searched again on at most 8 of its sampled frames.
    import cv2

    frame = np.asarray(photo.resize((photo.width // 3, photo.height // 3)))[:170, :170]
    video = tmp_path / "far-away.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10, (170, 170))
    for k in range(12):
        writer.write(np.ascontiguousarray(np.roll(frame, k, axis=1)[..., ::-1]))
    writer.release()
    moving, frames = Analyzer(load_detector("default"), methods=(), frames=4, look_again=0).analyze_with_frames(video)
    assert moving.error is None and moving.label == "no_face" and moving.media.sampled_frames == 4
    assert moving.small_faces and {s["frame"] for s in moving.small_faces} <= set(moving.media.sampled_indices)
    from forensics.render.frames import suspicious_frames

    shown = suspicious_frames(moving, frames)  # the Video tab's gallery: the frames where they were seen
    assert len(shown) == len({s["frame"] for s in moving.small_faces})
    assert all(caption.endswith(" px)") and "face(s) too small to judge (2" in caption for _, caption in shown)
    assert all((picture == SMALL_BOX_COLOUR).all(axis=-1).any() for picture, _ in shown)
    assert moving.notes[0].startswith(f"{SMALL_FACES_ONLY} searching down to 20 px, MTCNN finds faces under 40 px "
                                      "across in 4 of the 4 sampled frames it searched again (the largest 2"), moving.notes[0]


def test_a_strongly_compressed_video_carries_a_caution_with_the_detectors_own_figures(tmp_path):
    """A video stream under 0.02 bits per pixel per frame (H.264 or MPEG-4 Part 2) is strongly compressed:
    the verdict says so with the detector's measured H.264 figures; the bundled example as stored does not."""
    av = pytest.importorskip("av")
    import cv2

    from forensics.detector_notes import video_compression_caution
    from forensics.media import video_codec_name

    source = ROOT / "assets" / "examples" / "astronaut-pan.mp4"
    cap = cv2.VideoCapture(str(source))
    frames = []
    while (ok_frame := cap.read())[0]:
        frames.append(ok_frame[1][..., ::-1])
    cap.release()
    squeezed = tmp_path / "squeezed.mp4"
    with av.open(str(squeezed), "w") as container:
        stream = container.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuv420p"
        stream.options = {"crf": "45", "preset": "veryfast"}
        for picture in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(picture), format="rgb24")))
        container.mux(stream.encode(None))
    analyzer = Analyzer(load_detector("default"), methods=(), frames=4, look_again=0)
    hard, stored = analyzer.analyze(squeezed), analyzer.analyze(source)
    assert hard.error is None and hard.fake_probability is not None
    assert hard.media.codec == "h264" and 0 < hard.media.bits_per_pixel < 0.02
    [caution] = [n for n in hard.notes if n.startswith("Caution: the video is strongly compressed")]
    assert caution.startswith(f"Caution: the video is strongly compressed (H.264 at {hard.media.bits_per_pixel:.3f} "
                              "bits per pixel per frame;")
    # the bundled default's own figures (its metrics.json), whichever version is bundled
    measured = json.loads((ROOT / "assets" / "detectors" / "default" / "metrics.json").read_text())
    auc, real = measured["robustness_auc"], measured["real_faces"]["processing"]
    assert caution.endswith(f"its ROC-AUC is {auc['h264_crf_32']:.2f} and {auc['h264_crf_40']:.2f} ({auc['clean']:.2f} as "
                            f"stored), and it flags {real['H.264 CRF 32']['flagged']:.0%} and "
                            f"{real['H.264 CRF 40']['flagged']:.0%} of real faces ({real['clean']['flagged']:.0%} as stored).")
    assert stored.media.codec == "h264" and stored.media.bits_per_pixel >= 0.02
    assert not any("strongly compressed" in n for n in stored.notes)
    assert json.loads(json.dumps(hard.to_dict()))["media"]["codec"] == "h264"
    from forensics.render.report import report_html

    page = report_html(hard)
    assert f"H.264 (FourCC h264), {hard.media.bits_per_pixel:.4f} bits per pixel per frame" in page
    assert "strongly compressed" in page
    # The rule itself: codecs it is measured for, the bound, and a detector without the figures.
    assert video_compression_caution("hevc", 0.001, None) == ""  # more efficient codecs: not judged
    assert video_compression_caution("h264", 0.02, None) == ""
    assert video_compression_caution("FMP4", 0.01, None).endswith("(its accuracy on compressed faces was not measured).")
    assert video_codec_name(0) is None and video_codec_name(int.from_bytes(b"h264", "little")) == "h264"
