"""The app as a real server: in-process handlers, its API through gradio_client, and its page in
real Chromium (Debian's, driven by Playwright)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import statistics
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import gradio as gr
import pytest

from tests.conftest import ROOT, data_path
from tests.served_app import api_client, assert_clean_log, base_env, serve, stop, wait_served

EXAMPLES = ROOT / "assets" / "examples"


@pytest.fixture(scope="module")
def zoo(model_dirs, tmp_path_factory):
    """A detector folder holding a copy of a small model marked as trained: a test fixture in a
    temporary folder (the real app never offers an untrained model)."""
    root = tmp_path_factory.mktemp("zoo")
    for kind, name in (("timm-vit", "test-vit"), ("patch", "zz-test-patch")):
        folder = shutil.copytree(model_dirs[kind], root / name)
        config = json.loads((folder / "config.json").read_text())
        config["forensics"]["trained"] = True
        (folder / "config.json").write_text(json.dumps(config))
    return root


@pytest.fixture(scope="module")
def server(zoo, tmp_path_factory):
    """app.py on a free port, as `python app.py` runs it."""
    start = time.time()
    url, proc, log = serve(tmp_path_factory.mktemp("log"), base_env(FORENSICS_DETECTORS=str(zoo),
                                                                   FORENSICS_HOME=str(tmp_path_factory.mktemp("home"))))
    wait_served(url, proc, log)
    print(f"\napp.py served its page {time.time() - start:.1f} s after start")
    yield url
    assert_clean_log(stop(proc, log))


# -- handlers in process ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tabs(zoo):
    """The analysis tabs, laid out in a page of their own (their handlers answer {component: update})."""
    os.environ["FORENSICS_DETECTORS"] = str(zoo)
    from types import SimpleNamespace

    from ui.compare import CompareTab
    from ui.image import ImageTab
    from ui.video import VideoTab

    with gr.Blocks():
        return SimpleNamespace(image=ImageTab(), video=VideoTab(), compare=CompareTab())


class Shown:
    """A handler's {component: update}, read by the tab's names for its components."""

    def __init__(self, tab, updates: dict):
        self.tab, self.updates = tab, updates

    def __getattr__(self, name):
        part = getattr(self.tab, name)
        return [self.updates[p] for p in part] if isinstance(part, list) else self.updates[part]


def answered(tab, handler, *args, **kwargs) -> Shown:
    """Run a handler: one answer (no reports: they are built when asked for), its session held."""
    answer = handler(*args, **kwargs)
    assert isinstance(answer, dict) and answer[tab.reports] is None  # the last analysis's reports go
    return Shown(tab, answer)


def test_image_handler_gives_verdict_boxes_maps_and_reports(tabs):
    from ui.present import face_panel

    out = answered(tabs.image, tabs.image.analyze_image, str(data_path("photos/deepface/couple.jpg")))
    verdict, summary, annotated, faces, maps, session = out.verdict, out.summary, out.annotated, out.face, out.maps, out.state
    assert len(out.updates) == 11  # every output of the endpoint: verdict, summary, boxes, face, 5 maps, reports, state
    assert verdict == session.result.label and verdict in ("fake", "real")
    assert "threshold" in summary and "2 face(s)" in summary
    assert annotated.shape[2] == 3
    assert [label.split(':')[0] for label, _ in faces.choices] == ['Face 1', 'Face 2']  # reading order
    assert faces.value == max(range(2), key=lambda i: session.result.faces[i].fake_probability)  # worst first
    # The face shown is ringed in white in the picture; a click on another face picks it and rings it instead;
    # a click beside every box changes nothing.
    def ringed(picture, face) -> bool:  # the ring's bottom edge: a white line 2 box-thicknesses under the box
        x0, y0, x1, y1 = (int(round(v)) for v in face.box)
        ring = 2 * max(2, round(max(picture.shape[:2]) / 400))
        return bool((picture[y1 + ring, x0:x1] == 255).all())

    shown = session.result.faces[faces.value]
    other = 1 - faces.value
    assert ringed(annotated, shown) and not ringed(annotated, session.result.faces[other])
    x0, y0, x1, y1 = session.result.faces[other].box
    click = tabs.image.pick_face_at(session, gr.SelectData(None, {"index": [(x0 + x1) / 2, (y0 + y1) / 2], "value": None}))
    assert click[tabs.image.face] == other
    assert ringed(click[tabs.image.annotated], session.result.faces[other])
    assert not ringed(click[tabs.image.annotated], shown)
    assert ringed(tabs.image.ring_face(session, faces.value), shown)  # picked from the list
    beside = tabs.image.pick_face_at(session, gr.SelectData(None, {"index": [1, 1], "value": None}))
    assert beside == {tabs.image.face: gr.skip(), tabs.image.annotated: gr.skip()}
    assert len(maps) == 5 and all(m.value is not None for m in maps[:4])
    assert maps[4].visible is False  # no patch-score map for a ViT
    panel = face_panel(session.result, faces.value)
    assert [image.shape for image, _ in panel[:4]] == [(256, 256, 3)] * 4  # 64 px crops, shown at 256 px
    assert panel[4][0] is None and "not available" in panel[4][1]
    assert [m.label.split(" (")[0] for m in maps[:4]] == ["Last-layer attention", "Attention rollout", "Grad-CAM",
                                                              "Grad-CAM++"]
    assert session.frames and session.frames[0] is not None  # held: the image (its report shows it) kept
    json_path, html_path = tabs.image.build_reports(session)  # built when asked for, from the held session
    assert json.loads(Path(json_path).read_text())["report"]["input"]["sha256"]
    html = Path(html_path).read_text()
    assert "<html" in html[:200].lower() and html.count("data:image/jpeg") >= 2  # boxed image and crops
    assert "Face 2" in html and "Grad-CAM" in html


def test_the_face_under_a_click_is_the_smallest_box_there_in_the_frame_shown():
    from forensics.results import AnalysisResult, FaceResult
    from ui.present import face_at

    def face(frame, box, p):
        return FaceResult(frame=frame, track=1, box=box, face_confidence=0.99, fake_probability=p,
                          probabilities={"real": 1 - p, "fake": p}, crop_box=[0, 0, 1, 1])

    photo = AnalysisResult(input="group.jpg", kind="image", detector="x")
    photo.faces = [face(0, [0, 0, 200, 200], 0.2), face(0, [50, 50, 100, 100], 0.1), face(0, [300, 0, 400, 90], 0.3)]
    assert face_at(photo, 75, 75) == 1  # inside both: the smaller face, in front
    assert (face_at(photo, 10, 190), face_at(photo, 350, 45), face_at(photo, 250, 45)) == (0, 2, None)
    photo.faces.append(FaceResult(frame=0, track=None, box=None, face_confidence=None, fake_probability=0.9,
                                  probabilities={}, crop_box=[0, 0, 400, 200], fallback=True))  # the whole image
    assert face_at(photo, 250, 45) is None
    # A video (an animated image in the Image tab) shows the most suspicious face's frame: only its faces count.
    clip = AnalysisResult(input="clip.gif", kind="video", detector="x")
    clip.faces = [face(0, [0, 0, 100, 100], 0.2), face(5, [0, 0, 100, 100], 0.8), face(5, [200, 0, 300, 100], 0.1)]
    assert (face_at(clip, 50, 50), face_at(clip, 250, 50)) == (1, 2)


def test_reports_without_an_analysis_or_after_release_are_one_line_errors(tabs):
    from forensics import held

    with pytest.raises(gr.Error, match="analyse something first"):
        tabs.image.build_reports(None)
    session = answered(tabs.image, tabs.image.analyze_image, str(EXAMPLES / "astronaut.jpg")).state
    held.release(session.result)
    with pytest.raises(gr.Error, match="released to free the server's memory") as err:
        tabs.image.build_reports(session)
    assert "\n" not in str(err.value)


def test_patch_level_detector_shows_its_patch_score_map(tabs):
    out = answered(tabs.image, tabs.image.analyze_image, str(data_path("photos/face_recognition/obama.jpg")),
                   detector="zz-test-patch")
    maps, session = out.maps[4], out.state
    assert maps.visible is True and maps.value is not None and maps.label.startswith("Patch scores")
    assert session.result.explanations.skipped.keys() == {"attention", "rollout"}


def test_new_settings_recompute_maps_only(tabs):
    session = answered(tabs.image, tabs.image.analyze_image, str(data_path("photos/face_recognition/obama.jpg"))).state
    before = [f.heatmaps["rollout"].copy() for f in session.result.faces]
    probability = session.result.fake_probability
    shown = Shown(tabs.image, tabs.image.update_maps(session, 0, "real", "max", 0.5, 0.7))
    maps, session = shown.maps, shown.state
    assert session.options.head_fusion == "max" and session.result.fake_probability == probability
    assert session.result.faces[0].explained_class == "real"
    assert not (before[0] == session.result.faces[0].heatmaps["rollout"]).all()
    assert "'real'" in maps[0].label


def test_video_handler_gives_timeline_frames_and_table(tabs):
    out = answered(tabs.video, tabs.video.analyze_video, str(data_path("video/hamilton_clip.mp4")), frames=6)
    summary, timeline, frames, table, faces, session = (out.summary, out.timeline, out.frames_gallery, out.table,
                                                        out.face, out.state)
    assert "person(s) (a face followed from frame to frame)" in summary
    assert "Caution: the verdict rests on a small face (person" in summary  # the broadcast clip's faces: ~110 px
    people = [t for t in timeline.data if t.name != "no face in this frame"]
    counted = {f"person {t.track}" for t in session.result.tracks if t.counted}
    assert people and {t.name for t in people if t.legendgroup != "left out"} == counted
    rows, shown = table["data"], table["metadata"]["display_value"]  # numbers, each shown to its precision
    assert 1 <= len(frames) <= 8 and rows and len(rows) == len(shown) == len(session.result.faces)
    assert sum(f is not None for f in session.frames) == 1  # held: only the frame its report shows
    assert "data:image/jpeg" in Path(tabs.video.build_reports(session)[1]).read_text()
    found = len({f.frame for f in session.result.faces})
    assert f"faces in {found} of 6 sampled frames" in summary and f"faces in {found} of 6" in timeline.layout.title.text
    gaps = [t for t in timeline.data if t.name == "no face in this frame"]
    assert (len(gaps[0].x) if gaps else 0) == 6 - found  # each faceless frame marked on the timeline
    # Cropped around faces, square (a gallery tile shows a square: a wider thumbnail lost its sides, labels and all)
    assert all(image.shape[:2] == (480, 480) for image, _ in frames)
    # Each tile's caption, short enough not to be cut: the frame's time and its highest P(fake).
    stamps = {f.frame: (f.timestamp, max(g.fake_probability for g in session.result.faces if g.frame == f.frame))
              for f in session.result.faces}
    assert sorted(caption for _, caption in frames) == sorted(f"{t:.2f}s · {p:.2f}" for t, p in stamps.values())
    assert sorted(row[0] for row in rows) == list(range(1, len(rows) + 1))  # face numbers from 1
    # P(fake) shown as under the verdict (the default's calibration allows two decimals: "0.70", not a column's
    # "0.7"), the time to the millisecond and the face confidence to three decimals ("1.000", not "1").
    assert all(re.fullmatch(r"[01]\.\d\d", row[4]) for row in shown)
    assert all(re.fullmatch(r"\d+\.\d{3}", row[2]) and re.fullmatch(r"[01]\.\d{3}", row[5]) for row in shown)
    from ui import present

    ranked = [session.result.faces[i] for i in present.ranked_faces(session.result)]
    assert [row[4] for row in shown] == [f"{f.fake_probability:.2f}" for f in ranked]
    assert [row[4] for row in rows] == [round(f.fake_probability, 4) for f in ranked]  # sorts by value
    assert [row[2] for row in rows] == [round(f.timestamp, 3) for f in ranked]
    assert tabs.video.pick_row(session, gr.SelectData(None, {"index": [0, 0], "value": 1})) == faces.value
    shown = session.result.faces[faces.value]  # the player goes 4 ms into the shown face's frame
    assert tabs.video.face_time(session, faces.value) == round(shown.timestamp + 0.004, 4)
    assert tabs.video.face_time(None, 0) is None and tabs.video.face_time(session, None) is None


def test_a_close_call_on_a_video_is_sampled_again_unless_unticked(tabs):
    """The labelled DFDC fake is a close call for the bundled default at 16 frames: the Video tab samples it
    again (up to about 4x the frames) and says so in the small print, on the timeline and in the table;
    unticked, it rests on the 16 frames asked for."""
    video = str(data_path("video/dfdc_abqwwspghj.mp4"))
    again = answered(tabs.video, tabs.video.analyze_video, video, "default", [], 16)  # no maps: the verdict alone
    result = again.state.result
    passes = result.uncertainty["passes"]
    assert passes[0]["frames"] == 16 and passes[0]["close_call"] and len(passes) >= 2
    sampled = result.media.sampled_frames
    assert sampled == passes[-1]["frames"] > 16
    assert "Looked again: P(fake)" in again.summary and f"the verdict rests on {sampled}" in again.summary
    # Still close at the end or not, the headline says which: the call alone, or the call and "close call".
    close = result.uncertainty["close_call"]
    assert again.verdict == (f"{result.label} (close call)" if close else result.label)
    assert again.summary.startswith(f"**{result.label.upper()}, a close call** (" if close else f"**{result.label.upper()}** (")
    import dataclasses

    from ui import present

    for close in (True, False):  # both ways, whichever this video ended as
        marked = dataclasses.replace(result, uncertainty={**result.uncertainty, "close_call": close})
        assert present.verdict(marked) == (f"{result.label} (close call)" if close else result.label)
        assert (", a close call** (" in present.summary(marked)) is close
    found = len({f.frame for f in result.faces})
    assert f"faces in {found} of {sampled} sampled frames" in again.summary
    assert len(again.table["data"]) == len(result.faces) > 16
    once = answered(tabs.video, tabs.video.analyze_video, video, "default", [], 16, look_again=False)
    assert once.state.result.media.sampled_frames == 16 and "Looked again" not in once.summary
    assert "Close call:" in once.summary and "passes" not in once.state.result.uncertainty
    # and the small print says more frames were not tried
    assert ("Not sampled again: close call over 16 sampled frames, and sampling the video again is off: more frames "
            "were not tried.") in once.summary


def test_a_video_browsers_do_not_play_is_shown_through_a_copy_and_analysed_as_uploaded(tabs, tmp_path):
    """An AVI in MPEG-4 Part 2 (what OpenCV and old cameras write) does not play in a browser: the Video
    tab's player gets an H.264 copy, and the analysis of what the player shows reads the upload itself."""
    import subprocess

    from forensics import media as media_files

    avi = tmp_path / "pan.avi"
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-i", str(EXAMPLES / "astronaut-pan.mp4"), "-c:v",
                    "mpeg4", "-vtag", "XVID", str(avi)], check=True)
    shown_path, shown, copied = tabs.video.playable(str(avi))
    assert copied is True
    assert shown_path.endswith("pan.avi.browser-copy.mp4") and media_files.browser_playable(shown_path)
    out = answered(tabs.video, tabs.video.analyze_video, shown_path, "default", [], 4, shown=shown)
    analysed = out.state.result.media
    assert analysed.sha256 == hashlib.sha256(avi.read_bytes()).hexdigest() and analysed.codec == "FMP4"  # MPEG-4 Part 2
    report = json.loads(Path(tabs.video.build_reports(out.state)[0]).read_text())["report"]["input"]
    assert report["sha256"] == analysed.sha256 and Path(tabs.video.build_reports(out.state)[0]).name == "pan-report.json"
    copy = answered(tabs.video, tabs.video.analyze_video, shown_path, "default", [], 4)  # without the link: the copy
    assert copy.state.result.media.codec == "h264" and copy.state.result.media.sha256 != analysed.sha256
    assert tabs.video.playable(str(EXAMPLES / "astronaut-pan.mp4")) == (gr.skip(), None, False)  # plays: nothing to do
    broken = tmp_path / "broken.avi"
    broken.write_bytes(b"RIFF" + bytes(500))
    assert tabs.video.playable(str(broken)) == (gr.skip(), None, False)  # the analysis says what is wrong with it
    # Over the deployment's size limit (FORENSICS_MAX_VIDEO_MB): no copy, and the warning says the analysis refuses it.
    os.environ["FORENSICS_MAX_VIDEO_MB"] = "0.001"
    try:
        again = tmp_path / "again.avi"
        again.write_bytes(avi.read_bytes())
        with pytest.warns(UserWarning, match=r"^again\.avi: file is \S+ MB; the limit is \S+ MB; no copy is made for the "
                                             r"player, and the analysis refuses it too$"):
            assert tabs.video.playable(str(again)) == (gr.skip(), None, False)
        assert not list(tmp_path.glob("again.avi.*"))
    finally:
        del os.environ["FORENSICS_MAX_VIDEO_MB"]


@pytest.mark.parametrize("name, content, message", [
    ("notes.jpg", b"not an image at all", "notes.jpg: not an image"),
    ("empty.png", b"", "empty.png: file is empty"),
    ("broken.mp4", b"\x00\x00\x00\x18ftypmp42" + os.urandom(2000), "broken.mp4: "),
])
def test_bad_files_raise_a_one_line_gradio_error(tabs, tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    handler = tabs.video.analyze_video if name.endswith(".mp4") else tabs.image.analyze_image
    with pytest.raises(gr.Error) as err:
        handler(str(path))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_no_face_gives_no_verdict_and_whole_image_only_on_request(tabs):
    with pytest.warns(UserWarning, match="No face found: no verdict"):
        out = answered(tabs.image, tabs.image.analyze_image, str(EXAMPLES / "chelsea-no-face.jpg"))
    verdict, summary, faces = out.verdict, out.summary, out.face
    assert verdict == "no face found" and summary.startswith("**No face found: no verdict.**")
    assert faces.choices == [] and "Whole-image score" not in summary
    with pytest.warns(UserWarning, match="outside what the detector was trained for"):
        out = answered(tabs.image, tabs.image.analyze_image, str(EXAMPLES / "chelsea-no-face.jpg"), whole_image=True)
    verdict, summary = out.verdict, out.summary
    assert verdict == "no face found" and "Whole-image score on request" in summary and "not a verdict" in summary



def test_a_face_too_small_to_judge_is_named_in_the_small_print(tabs, tmp_path):
    from PIL import Image

    photo = Image.open(EXAMPLES / "astronaut.jpg")
    far = tmp_path / "far-away.png"
    photo.resize((photo.width // 3, photo.height // 3)).save(far)
    with pytest.warns(UserWarning, match=r"No face found: no verdict\. Only faces too small to judge"):
        out = answered(tabs.image, tabs.image.analyze_image, str(far))
    assert out.verdict == "no face found" and out.summary.startswith("**No face found: no verdict.**")
    assert "Faces too small: searching down to 20 px, MTCNN finds 1 face(s) under 40 px across" in out.summary
    # A video of it: the gallery shows the frames where such faces were seen, boxed; the report still builds.
    import cv2
    import numpy as np

    frame = np.asarray(photo.convert("RGB").resize((photo.width // 3, photo.height // 3)))[:170, :170]
    video = tmp_path / "far-away.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10, (170, 170))
    for k in range(12):
        writer.write(np.ascontiguousarray(np.roll(frame, k, axis=1)[..., ::-1]))
    writer.release()
    with pytest.warns(UserWarning, match="Only faces too small to judge"):
        out = answered(tabs.video, tabs.video.analyze_video, str(video), "default", [], 4, look_again=False)
    session = out.state
    assert out.verdict == "no face found" and "Faces too small:" in out.summary and out.table["data"] == []
    assert len(out.frames_gallery) == len({s["frame"] for s in session.result.small_faces}) >= 1
    assert all("too small to judge" in caption for _, caption in out.frames_gallery)
    [marked] = [t for t in out.timeline.data if t.name == "face too small to judge"]
    assert len(marked.x) == len(out.frames_gallery) and marked.showlegend  # on the timeline too, named in its legend
    report = Path(tabs.video.build_reports(session)[1]).read_text()
    assert "No face large enough to judge" in report and "data:image/jpeg" in report


def test_verdict_shows_calibration_threshold_and_what_the_detector_misses(tabs):
    """The bundled default: its measured calibration error decides the decimals (one while ECE is 0.05
    or more), and the line beside the verdict says what its per-source AUCs say it catches."""
    metrics = json.loads((ROOT / "assets" / "detectors" / "default" / "metrics.json").read_text())
    ece, threshold = metrics["calibration"]["ece"], metrics["detector"]["threshold"]
    out = answered(tabs.image, tabs.image.analyze_image, str(EXAMPLES / "astronaut.jpg"), detector="default")
    verdict, summary = out.verdict, out.summary
    assert verdict in ("fake", "real")  # the call alone: no "94%" headline
    assert "calibrated P(fake) ≈ 0." in summary and f"± {ece:.2f} (its calibration error)" in summary
    assert f"threshold {threshold:.2f}" in summary
    assert "generated faces (Stable Diffusion 2.1)" in summary and "model card" in summary
    assert re.search(r"≈ 0\.\d ±", summary) if ece >= 0.05 else re.search(r"≈ 0\.\d\d ±", summary)
    # a detector whose calibration allows one decimal: the headline gives two as well, as the face list does
    coarse = answered(tabs.image, tabs.image.analyze_image, str(EXAMPLES / "astronaut.jpg"), detector="mobilenetv2")
    listed = coarse.face.choices[0][0]  # "Face 1: P(fake) 0.62 ..."
    two = re.search(r"≈ 0\.\d \((0\.\d\d) to two decimals\) ±", coarse.summary)
    assert two and f"P(fake) {two.group(1)}" in listed, (coarse.summary, listed)


def test_compare_handler_gives_a_row_per_face_per_detector_and_their_maps(tabs):
    tab = tabs.compare
    out = Shown(tab, tab.compare_detectors(
        str(data_path("photos/deepface/couple.jpg")), ["test-vit", "zz-test-patch", "no/such-model"],
        ["gradcam", "attention"]))
    summary, table, chart, unit, maps, comparison = out.summary, out.table, out.chart, out.unit, out.maps, out.state
    assert [(row[0], row[1]) for row in table] == [("Face 1", "test-vit"), ("Face 1", "zz-test-patch"),
                                                   ("Face 2", "test-vit"), ("Face 2", "zz-test-patch")]
    assert all(0 <= float(row[2]) <= 1 and row[4] in ("flagged", "not flagged") and "flag it" in row[5] for row in table)
    # P(fake) as text to each detector's precision (an uncalibrated one: 1 decimal), thresholds to 2: "0.0", "0.50";
    # more of both only where that would show a score on the wrong side of its threshold ("0.5" below "0.50")
    from forensics import compare as comparing

    rows = {(r.unit, r.detector): r for r in comparing.rows(comparison)}
    for row in table:
        p, threshold = rows[(row[0], row[1])].fake_probability, rows[(row[0], row[1])].threshold
        if (round(p, 1) >= threshold) == (p >= threshold):
            assert (row[2], row[3]) == (f"{p:.1f}", f"{threshold:.2f}")
        assert (float(row[2]) >= float(row[3])) == (row[4].startswith("flagged"))
    assert "2 detector(s) on 2 faces" in summary and "`no/such-model` could not run" in summary
    # maps asked for that a detector cannot draw are named in its line (the patch model has no attention)
    lines = {line.split("`")[1]: line for line in summary.splitlines() if line.startswith("- `")}
    assert "No Last-layer attention map:" in lines["zz-test-patch"] and " map: " not in lines["test-vit"]
    assert [t.name for t in chart.data] == ["test-vit", "zz-test-patch"] and list(chart.data[0].x) == ["Face 1", "Face 2"]
    assert unit.choices == [("Face 1", "Face 1"), ("Face 2", "Face 2")]
    captions = [caption for _, caption in maps]
    assert "test-vit: Grad-CAM ('fake')" in captions and "zz-test-patch: Grad-CAM ('fake')" in captions
    assert any(c.startswith("test-vit: Last-layer attention") for c in captions)
    other = [u for u, _ in unit.choices if u != unit.value][0]
    assert len(tab.show_compared_face(comparison, other)[tab.maps]) == len(maps)
    # Who is who: each face as the detectors were given it, numbered as every row; a click on one shows its maps.
    from ui.compare import faces_compared

    strip = faces_compared(comparison)
    assert [caption for _, caption in strip] == ["Face 1", "Face 2"]
    assert all(crop.shape[0] >= 160 and crop.shape[2] == 3 for crop, _ in strip)
    assert tab.pick_unit(comparison, gr.SelectData(None, {"index": 1, "value": None})) == "Face 2"
    # The comparison as a report to hand on: JSON with every row, a self-contained page with each face's maps.
    json_path, html_path = tab.build_reports(comparison)
    report = json.loads(Path(json_path).read_text())
    assert report["report"]["kind"] == "comparison" and report["report"]["input"] == "couple.jpg"
    assert len(report["report"]["sha256"]) == 64 and len(report["rows"]) == 4
    assert {d["name"]: bool(d["error"]) for d in report["detectors"]} == {"test-vit": False, "zz-test-patch": False,
                                                                         "no/such-model": True}
    html = Path(html_path).read_text()
    assert "Detectors compared" in html and "2 detector(s) on 2 faces" in html and "could not run" in html
    assert html.count("<tr><td>Face ") == 4 and "src=\"http" not in html and "<script" not in html
    assert html.count("data:image/") == 2 * (1 + sum(len(m) for m in (["gradcam", "attention"], ["gradcam"])))
    with pytest.raises(gr.Error, match="compare detectors first"):
        tab.build_reports(None)
    with pytest.raises(gr.Error, match="choose at least one detector"):
        tab.compare_detectors(str(EXAMPLES / "astronaut.jpg"), [])


def test_compare_summary_carries_each_detectors_caution_on_a_poor_jpeg(tabs, tmp_path):
    """A real photo saved at JPEG quality 35, compared: the default's line carries its own caution with
    its measured figures at that quality; the same photo at quality 90 gets none."""
    from PIL import Image

    photo = Image.open(data_path("photos/deepface/couple.jpg")).convert("RGB")
    photo.save(tmp_path / "poor.jpg", quality=35)
    photo.save(tmp_path / "fine.jpg", quality=90)
    poor = Shown(tabs.compare, tabs.compare.compare_detectors(str(tmp_path / "poor.jpg"), ["default"], ["gradcam"]))
    line = [x for x in poor.summary.splitlines() if x.startswith("- `default`:")]
    assert len(line) == 1 and "Caution: the image is a JPEG of quality 35 (of 100)" in line[0]
    clean = json.loads((ROOT / "assets" / "detectors" / "default" / "metrics.json").read_text())[
        "real_faces"]["processing"]["clean"]["flagged"]  # the bundled default's own figure
    assert "re-encoded at quality 30, its ROC-AUC is" in line[0] and f"of real faces ({clean:.0%} as stored)" in line[0]
    fine = Shown(tabs.compare, tabs.compare.compare_detectors(str(tmp_path / "fine.jpg"), ["default"], ["gradcam"]))
    assert "JPEG of quality" not in fine.summary


def test_the_manipulated_example_made_by_the_project_is_flagged_by_the_default(tabs):
    out = answered(tabs.image, tabs.image.analyze_image, str(EXAMPLES / "astronaut-self-blended.jpg"), detector="default")
    verdict, summary = out.verdict, out.summary
    assert verdict == "fake" and "at or above the threshold" in summary
    assert answered(tabs.image, tabs.image.analyze_image, str(EXAMPLES / "astronaut.jpg"), detector="default").verdict == "real"
    assert "astronaut-self-blended.jpg" in (EXAMPLES / "README.md").read_text()  # its provenance


def test_detector_choice_is_guided(tabs):
    """Each detector offered with its strength; close-to-chance ones not offered; only the methods a
    detector supports (from its measurements and ONNX outputs) are offered."""
    from forensics.detector_notes import offered_detectors

    offered = {name: label for label, name in offered_detectors()}
    assert "patch-tiny" not in offered and {"default", "mobilenetv2", "default:int8"} <= set(offered)
    auc = json.loads((ROOT / "assets" / "detectors" / "default" / "metrics.json").read_text())["summary"]["roc_auc"]
    assert f"AUC {auc:.2f}" in offered["default"] and "generated faces (Stable Diffusion 2.1)" in offered["default"]
    assert "misses generated faces (StyleGAN2)" in offered["mobilenetv2"]
    expected = {"default": ["attention", "rollout", "gradcam", "gradcam++"], "mobilenetv2": ["gradcam", "gradcam++"],
                "patch": ["gradcam", "gradcam++", "patches"], "default:int8": ["attention", "rollout"]}
    for name, methods in expected.items():
        shown = Shown(tabs.image, tabs.image.on_detector_change(name))
        boxes, line = shown.methods, shown.note
        assert [value for _, value in boxes.choices] == methods and boxes.value == methods
        assert "ROC-AUC" in line
        # the class to explain: an int8 build's maps are class-agnostic, which its box says
        assert ("no effect" in shown.target.label) == (name == "default:int8")


def test_int8_attention_maps_are_captioned_class_agnostic(tabs):
    maps = answered(tabs.image, tabs.image.analyze_image, str(EXAMPLES / "astronaut.jpg"), detector="default:int8").maps
    assert maps[0].label == "Last-layer attention (class-agnostic)" and "not available" in maps[2].label


# -- the real server ----------------------------------------------------------------------------


def test_api_analyses_an_image_and_a_video_with_the_media_alone(server):
    from gradio_client import handle_file

    client = api_client(server)
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert {"/analyze_image", "/analyze_video"} <= set(endpoints)
    assert {"/image_reports", "/video_reports"} <= set(endpoints)
    verdict, summary, annotated, faces, *maps, reports = client.predict(
        handle_file(str(data_path("photos/deepface/couple.jpg"))), api_name="/analyze_image")
    assert verdict["label"] in ("fake", "real") and "2 face(s)" in summary and Path(annotated).is_file()
    assert all(Path(m["value"]).is_file() for m in maps[:4]) and reports is None
    json_path, html_path = client.predict(api_name="/image_reports")  # this client's session: the photo above
    assert json.loads(Path(json_path).read_text())["input"] == "couple.jpg" and Path(html_path).suffix == ".html"
    out = client.predict(handle_file(str(EXAMPLES / "astronaut-pan.mp4")), api_name="/analyze_video")
    verdict, summary, timeline, frames, table = out[:5]
    assert timeline["type"] == "plotly" and frames and table["data"]
    assert json.loads(Path(client.predict(api_name="/video_reports")[0]).read_text())["kind"] == "video"


def test_api_compare_detectors_returns_a_row_per_face_per_detector(server):
    """The bar: couple.jpg and two detectors through gradio_client."""
    from gradio_client import handle_file

    client = api_client(server)
    summary, table, chart, unit, maps = client.predict(
        handle_file(str(data_path("photos/deepface/couple.jpg"))), ["test-vit", "default:int8"], ["attention"], 16,
        0.5, api_name="/compare_detectors")
    rows = table["data"]
    assert table["headers"][:2] == ["face / person", "detector"] and len(rows) == 4
    assert {(r[0], r[1]) for r in rows} == {(f, d) for f in ("Face 1", "Face 2") for d in ("test-vit", "default:int8")}
    assert chart["type"] == "plotly" and "agree on" in summary and maps
    json_path, html_path = client.predict(api_name="/compare_reports")  # of this client's last comparison
    assert len(json.loads(Path(json_path).read_text())["rows"]) == 4 and Path(html_path).suffix == ".html"


def test_api_animated_gif_is_analysed_not_refused(server, tmp_path):
    from gradio_client import handle_file
    from PIL import Image

    from forensics.media import load_video

    frames = [Image.fromarray(f) for f in load_video(EXAMPLES / "astronaut-pan.mp4", frames=8).frames]
    gif = tmp_path / "astronaut.gif"
    frames[0].save(gif, save_all=True, append_images=frames[1:], duration=120, loop=0)
    verdict, summary, *_ = api_client(server).predict(handle_file(str(gif)), api_name="/analyze_image")
    # The default calls this GIF's 8 frames (every frame: none left to sample again) a close call, and says so.
    assert verdict["label"] in ("fake", "real", "fake (close call)", "real (close call)")
    assert "faces in 8 of 8 sampled frames" in summary


def test_api_bad_file_gets_a_clear_error_and_the_server_keeps_serving(server, tmp_path):
    from gradio_client import handle_file

    fake_jpeg = tmp_path / "notes.jpg"
    fake_jpeg.write_text("this is not a picture")
    client = api_client(server)
    with pytest.raises(Exception, match="notes.jpg: not an image"):
        client.predict(handle_file(str(fake_jpeg)), api_name="/analyze_image")
    with urllib.request.urlopen(server, timeout=5) as response:
        assert response.status == 200
    verdict, *_ = client.predict(handle_file(str(EXAMPLES / "astronaut.jpg")), api_name="/analyze_image")
    assert verdict["label"] in ("fake", "real")
    # The API has no clearing step: a failed analysis must not leave the last one to be reported in its place.
    (json_path, _) = client.predict(api_name="/image_reports")
    assert Path(json_path).name == "astronaut-report.json"
    with pytest.raises(Exception, match="notes.jpg: not an image"):
        client.predict(handle_file(str(fake_jpeg)), api_name="/analyze_image")
    with pytest.raises(Exception) as err:
        client.predict(api_name="/image_reports")
    assert str(err.value).strip() == "the last analysis failed: nothing to report until one succeeds"
    client.predict(handle_file(str(EXAMPLES / "astronaut.jpg")), ["default"], ["gradcam"], 16, 0.5,
                   api_name="/compare_detectors")
    with pytest.raises(Exception, match="notes.jpg: not an image"):
        client.predict(handle_file(str(fake_jpeg)), ["default"], ["gradcam"], 16, 0.5, api_name="/compare_detectors")
    with pytest.raises(Exception) as err:
        client.predict(api_name="/compare_reports")
    assert str(err.value).strip() == "the last comparison failed: nothing to report until one succeeds"
    client.predict(handle_file(str(EXAMPLES / "astronaut.jpg")), api_name="/analyze_image")
    assert Path(client.predict(api_name="/image_reports")[0]).name == "astronaut-report.json"  # a success reports again


def test_api_gives_a_patch_level_detectors_own_map(server):
    """The API's method choices are every method: a patch-level detector's patch scores can be asked for."""
    from gradio_client import handle_file

    out = api_client(server).predict(handle_file(str(EXAMPLES / "astronaut.jpg")), None, "zz-test-patch",
                                     ["gradcam", "patches"], api_name="/analyze_image")
    maps = out[4:9]  # verdict, summary, picture, face; then the five map slots (the last: patch scores)
    assert maps[4]["label"].startswith("Patch scores") and maps[4]["value"] is not None
    assert maps[2]["value"] is not None and maps[0]["value"] is None  # Grad-CAM drawn; attention not asked for


def test_load_eight_concurrent_image_requests_all_succeed(server):
    """A load check, not a timed test: the latencies are printed for the record."""
    from gradio_client import handle_file

    photos = [data_path("photos/face_recognition/obama.jpg"), EXAMPLES / "astronaut.jpg"]

    def one(i):
        client = api_client(server)
        start = time.perf_counter()
        verdict, *_ = client.predict(handle_file(str(photos[i % 2])), api_name="/analyze_image")
        return verdict["label"], time.perf_counter() - start

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(one, range(8)))
    assert all(label in ("fake", "real") for label, _ in results)
    latencies = sorted(t for _, t in results)
    print(f"\n8 concurrent requests: median {statistics.median(latencies):.2f} s, "
          f"p95 {latencies[min(7, round(0.95 * 7))]:.2f} s")


# -- the page in Chromium -----------------------------------------------------------------------


def _shots(tmp_path) -> Path:
    return Path(os.environ.get("SCREENSHOT_DIR", tmp_path))


@pytest.mark.browser
def test_browser_image_tab_shows_score_and_four_overlays(server, browser, tmp_path):
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(server, timeout=60_000)
    expect(page.get_by_text("Deepfake Forensics Studio").first).to_be_visible(timeout=30_000)
    # the page offers the default's four methods only (the API's choices hold a patch detector's fifth too)
    expect(page.get_by_role("checkbox", name="gradcam++", exact=True).first).to_be_visible(timeout=30_000)
    expect(page.get_by_role("checkbox", name="patches", exact=True)).to_have_count(0, timeout=30_000)
    page.locator("input[type=file]").first.set_input_files(str(data_path("photos/face_recognition/obama.jpg")))
    page.get_by_role("button", name="Analyse image").click()
    expect(page.get_by_text("calibrated P(fake) ≈").first).to_be_visible(timeout=90_000)
    for title in ("Last-layer attention", "Attention rollout", "Grad-CAM", "Grad-CAM++"):
        expect(page.get_by_text(f"{title} ('fake')").first).to_be_visible(timeout=30_000)
    expect(page.locator("img[src*='image']").nth(4)).to_be_visible()  # annotated image + 4 maps
    page.get_by_role("button", name="Build the reports").first.click()  # built when asked for
    expect(page.get_by_text("obama-report").nth(1)).to_be_visible(timeout=60_000)  # the file list: stem, then suffix
    expect(page.get_by_text(".html", exact=True).first).to_be_visible()
    expect(page.get_by_text(".json", exact=True).first).to_be_visible()
    page.screenshot(path=str(_shots(tmp_path) / "image-tab.png"), full_page=True)
    page.close()


@pytest.mark.browser
def test_browser_a_click_on_a_face_in_the_picture_shows_that_face(server, browser, tmp_path):
    import numpy as np
    from PIL import Image
    from playwright.sync_api import expect

    from forensics.faces import FaceDetector

    photo = data_path("photos/deepface/couple.jpg")
    boxes = sorted(face.box for face in FaceDetector().detect(np.asarray(Image.open(photo).convert("RGB"))))
    assert len(boxes) == 2  # left to right: face 1 and face 2, as the app numbers them
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(server, timeout=60_000)
    page.locator("input[type=file]").first.set_input_files(str(photo))
    page.get_by_role("button", name="Analyse image").click()
    face_box = page.locator("input[aria-label='Face shown below']:visible")
    expect(face_box).to_have_value(re.compile(r"^Face [12]: "), timeout=90_000)
    picture = page.locator("#faces-found img")
    loaded = "s => { const i = document.querySelector('#faces-found img'); return i && i.src !== s && i.complete && i.naturalWidth > 0; }"

    def click(x: float, y: float) -> None:
        """A click on pixel (x, y) of the picture (scrolled into view), as Gradio maps a click back to its pixels."""
        picture.scroll_into_view_if_needed()
        rect = picture.bounding_box()
        width, height = picture.evaluate("img => [img.naturalWidth, img.naturalHeight]")
        scale = min(rect["width"] / width, rect["height"] / height, 1)
        picture.click(position={"x": (rect["width"] - width * scale) / 2 + scale * x,
                                "y": (rect["height"] - height * scale) / 2 + scale * y})

    page.wait_for_function(loaded, arg="")
    for number in (2, 1, 2):  # each face once away from the one shown
        x0, y0, x1, y1 = boxes[number - 1]
        before = picture.get_attribute("src")
        click((x0 + x1) / 2, (y0 + y1) / 2)
        expect(face_box).to_have_value(re.compile(rf"^Face {number}: "), timeout=20_000)
        page.wait_for_function(loaded, arg=before, timeout=20_000)  # drawn again, this face ringed
    click(3, 3)  # beside every face: the selection stays
    page.wait_for_timeout(1000)
    expect(face_box).to_have_value(re.compile(r"^Face 2: "))
    page.close()


@pytest.mark.browser
def test_browser_an_image_pasted_from_the_clipboard_is_analysed_as_pasted(server, browser, tmp_path):
    """The paste box: a screenshot (an RGBA PNG) put on the clipboard and pasted is analysed as the
    very file pasted (its SHA-256 in the report), not a copy converted to RGB; the box shows no cut-off
    source bar (one source: hidden)."""
    import base64

    from PIL import Image
    from playwright.sync_api import expect

    shot = tmp_path / "screenshot.png"
    picture = Image.open(EXAMPLES / "astronaut.jpg").convert("RGBA")
    picture.paste((0, 0, 0, 0), (0, 0, 40, 40))  # a transparent corner, as screenshots of windows have
    picture.save(shot)
    context = browser.new_context(viewport={"width": 1400, "height": 1000},
                                  permissions=["clipboard-read", "clipboard-write"])
    page = context.new_page()
    page.goto(server, timeout=60_000)
    box = page.locator("#paste-box")
    prompt = box.get_by_text("Paste from Clipboard")
    expect(prompt).to_be_visible(timeout=30_000)
    inside = """e => { const o = e.getBoundingClientRect(), wrap = e.querySelector('[data-testid=upload-text]');
        const range = document.createRange(); range.selectNodeContents(wrap); const i = range.getBoundingClientRect();
        return o.top < i.top && i.bottom < o.bottom; }"""
    assert box.evaluate(inside)  # the prompt (icon and words) whole inside the box
    expect(box.locator(".source-selection")).to_be_hidden()  # one source: no bar, cut off at the bottom as it was
    # the bytes the page can paste (Chromium re-encodes an image put on the clipboard), hashed as they are read back
    pasted = page.evaluate("""async b64 => {
        const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
        await navigator.clipboard.write([new ClipboardItem({'image/png': new Blob([bytes], {type: 'image/png'})})]);
        const [item] = await navigator.clipboard.read();
        const digest = await crypto.subtle.digest('SHA-256', await (await item.getType('image/png')).arrayBuffer());
        return [...new Uint8Array(digest)].map(b => b.toString(16).padStart(2, '0')).join('');
    }""", base64.b64encode(shot.read_bytes()).decode())
    box.get_by_text("Paste from Clipboard").click()
    expect(box.locator("img")).to_be_visible(timeout=30_000)
    page.get_by_role("button", name="Analyse image").click()
    expect(page.locator("input[aria-label='Face shown below']:visible")).to_have_value(re.compile(r"^Face 1: "),
                                                                                       timeout=90_000)
    page.get_by_role("button", name="Build the reports").first.click()
    link = page.locator("a[href*='-report.json']").first
    expect(link).to_be_attached(timeout=60_000)
    report = page.request.get(link.get_attribute("href")).json()["report"]["input"]
    assert report["sha256"] == pasted
    assert (report["width"], report["height"]) == Image.open(shot).size
    context.close()


@pytest.mark.browser
def test_browser_video_tab_shows_the_timeline(server, browser, tmp_path):
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(server, timeout=60_000)
    page.get_by_role("tab", name="Video").click()
    expect(page.get_by_label("Close call or no face: sample the video again", exact=False)).to_be_checked()  # on by default
    page.locator("input[type=file][accept*='video']").set_input_files(str(EXAMPLES / "astronaut-pan.mp4"))
    page.get_by_role("button", name="Analyse video").click()
    expect(page.locator(".js-plotly-plot").first).to_be_visible(timeout=120_000)
    expect(page.get_by_text("P(fake) per person over time").first).to_be_visible()

    face_box = page.locator("input[aria-label='Face shown below']:visible")  # the Image tab has one too

    def player_at_shown_face() -> tuple[float, float]:
        """(the player's time, the time of the face shown below), once the player has gone there."""
        shown = face_box.input_value()
        at = float(re.search(r"\(([\d.]+)s\)", shown).group(1))  # "Face 10: frame 43 (1.79s), person 1, ..."
        page.wait_for_function("t => Math.abs(document.querySelector('#forensics-video video').currentTime - t) < 0.05",
                               arg=at + 0.004, timeout=10_000)  # 4 ms into the frame
        return page.evaluate("() => document.querySelector('#forensics-video video').currentTime"), at

    first = player_at_shown_face()  # after the analysis: the most suspicious face's moment
    page.locator("button.thumbnail-item:visible").nth(3).click()  # another frame from the gallery
    expect(face_box).not_to_have_value(re.compile(rf"\({first[1]:.2f}s\)"))
    assert player_at_shown_face()[1] != first[1]
    # The face table, sorted by time in the browser (by value: numbers shown to their precision), still picks
    # the face of the row clicked: the earliest.
    rows = page.locator("[role=tabpanel]:visible div.virtual-row")
    assert re.fullmatch(r"\d+ \d+ \d+\.\d{3} \d+ [01]\.\d\d [01]\.\d{3}", " ".join(rows.first.inner_text().split()))
    header = page.locator("[role=tabpanel]:visible th[data-testid=header-2]").first  # "time (s)"
    header.hover()
    header.locator("button.cell-menu-button").click(force=True)
    page.get_by_text("Sort ascending", exact=True).click()
    times = ("() => [...document.querySelectorAll('[role=tabpanel] div.virtual-row [data-col=\"2\"]')]"
             ".filter(c => c.offsetParent).map(c => parseFloat(c.innerText))")
    page.wait_for_function(f"() => {{ const t = ({times})(); return t.length > 1 && t.every((x, i) => !i || t[i - 1] <= x); }}")
    earliest = min(page.evaluate(times))
    assert rows.first.locator("[data-col='2']").inner_text() == f"{earliest:.3f}"
    rows.first.locator("[data-col='1']").click()
    expect(face_box).to_have_value(re.compile(rf"\({earliest:.2f}s\)"))
    page.screenshot(path=str(_shots(tmp_path) / "video-tab.png"), full_page=True)
    page.close()


@pytest.mark.browser
def test_browser_plays_an_avi_through_a_copy_and_reports_the_upload(server, browser, tmp_path):
    """Chromium cannot play MPEG-4 Part 2 in an AVI: the player shows an H.264 copy that it plays (with no
    "Video not playable" error about the upload on the way), and the report of the analysis names the
    uploaded file (its SHA-256 and codec), not the copy."""
    import subprocess

    from playwright.sync_api import expect

    avi = tmp_path / "pan.avi"
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-i", str(EXAMPLES / "astronaut-pan.mp4"), "-c:v",
                    "mpeg4", "-vtag", "XVID", str(avi)], check=True)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(server, timeout=60_000)
    page.get_by_role("tab", name="Video").click()
    page.locator("input[type=file][accept*='video']").set_input_files(str(avi))
    expect(page.get_by_text("browsers do not play MPEG-4 Part 2 in AVI", exact=False).first).to_be_visible(timeout=60_000)
    player = page.locator("video[src*='browser-copy']").first
    expect(player).to_be_attached(timeout=30_000)
    page.wait_for_function("v => v.readyState >= 2 && v.videoWidth > 0", arg=player.element_handle(), timeout=30_000)
    assert page.evaluate("window.forensicsHeldErrors") == 1  # the player erred on the upload
    expect(page.get_by_text("Video not playable")).to_have_count(0)  # and was held back: the copy took its place
    page.get_by_label("Frames sampled", exact=False).first.fill("4")
    page.get_by_role("button", name="Analyse video").click()
    expect(page.locator(".js-plotly-plot").first).to_be_visible(timeout=120_000)
    page.get_by_role("button", name="Build the reports").last.click()
    link = page.locator("a[href*='pan-report.json']").first
    expect(link).to_be_attached(timeout=60_000)
    report = page.request.get(link.get_attribute("href")).json()["report"]["input"]
    assert report["sha256"] == hashlib.sha256(avi.read_bytes()).hexdigest() and report["codec"] == "FMP4"
    page.screenshot(path=str(_shots(tmp_path) / "video-avi.png"), full_page=True)
    page.close()


@pytest.mark.browser
def test_browser_a_video_the_player_cannot_show_and_no_copy_replaces_still_says_so(server, browser, tmp_path):
    """The player's own error is held back only while a copy may take the upload's place: an MP4 that the
    browser cannot play and of which no copy is made (its header is not a video's) still shows Gradio's
    "Video not playable"."""
    from playwright.sync_api import expect

    broken = tmp_path / "torn.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 40)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(server, timeout=60_000)
    page.get_by_role("tab", name="Video").click()
    page.locator("input[type=file][accept*='video']").set_input_files(str(broken))
    expect(page.get_by_text("Video not playable").first).to_be_visible(timeout=30_000)
    assert page.locator("video[src*='browser-copy']").count() == 0 and page.evaluate("window.forensicsHolding") is False
    page.close()


@pytest.mark.browser
def test_browser_bad_file_shows_the_error(server, browser, tmp_path):
    from playwright.sync_api import expect

    bad = tmp_path / "holiday.jpg"
    bad.write_bytes(b"GIF89a but not really")
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(server, timeout=60_000)
    # a report asked for before any analysis: one line; its error badge goes with the next analysis
    page.get_by_role("button", name="Build the reports (JSON and self-contained HTML)").first.click()
    expect(page.get_by_text("analyse something first").first).to_be_visible(timeout=30_000)
    page.locator("input[type=file]").first.set_input_files(str(EXAMPLES / "astronaut.jpg"))
    page.get_by_role("button", name="Analyse image").click()
    expect(page.get_by_text("calibrated P(fake)").first).to_be_visible(timeout=120_000)
    expect(page.locator("input[aria-label='Face shown below']:visible")).to_have_value(re.compile(r"^Face 1: "))
    # the report's refusal left no error badge on its box (a component's status, not the toast)
    expect(page.locator("[data-testid='status-tracker']").get_by_text("Error", exact=True)).to_have_count(0)
    # A bad file next: its error, and nothing of the last analysis left on screen under the new file's name
    page.locator("button[aria-label='Clear']").first.click()
    page.locator("input[type=file]").first.set_input_files(str(bad))
    page.get_by_role("button", name="Analyse image").click()
    expect(page.get_by_text("holiday.jpg: not an image").first).to_be_visible(timeout=60_000)
    expect(page.get_by_text("calibrated P(fake)")).to_have_count(0)
    expect(page.locator("input[aria-label='Face shown below']:visible")).to_have_value("")
    assert page.locator("#faces-found img").count() == 0  # the astronaut's boxed picture went too
    page.get_by_role("button", name="Build the reports (JSON and self-contained HTML)").first.click()
    expect(page.get_by_text("analyse something first").first).to_be_visible(timeout=30_000)
    expect(page.get_by_text("astronaut-report")).to_have_count(0)  # no report of the last file
    page.screenshot(path=str(_shots(tmp_path) / "bad-file.png"), full_page=True)
    page.close()


@pytest.mark.browser
def test_browser_a_face_too_small_to_judge_is_named_not_missed(server, browser, tmp_path):
    from PIL import Image
    from playwright.sync_api import expect

    photo = Image.open(EXAMPLES / "astronaut.jpg")
    far = tmp_path / "far-away.png"
    photo.resize((photo.width // 3, photo.height // 3)).save(far)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(server, timeout=60_000)
    page.locator("input[type=file]").first.set_input_files(str(far))
    page.get_by_role("button", name="Analyse image").click()
    expect(page.get_by_text("Only faces too small to judge").first).to_be_visible(timeout=60_000)  # the warning
    expect(page.get_by_text("No face found: no verdict.").first).to_be_visible()
    expect(page.get_by_text("MTCNN finds 1 face(s) under 40 px across in this image", exact=False).first).to_be_visible()
    page.screenshot(path=str(_shots(tmp_path) / "face-too-small.png"), full_page=True)
    page.close()


@pytest.mark.browser
def test_browser_a_frames_time_is_where_the_player_shows_it_when_the_video_starts_late(browser, tmp_path):
    """hamilton_clip.mp4's video stream starts at 0.852 s: a frame's time (a face's timestamp, where the
    Video tab's player seeks) is on the player's timeline, not counted from the first frame. Seeked there
    in Chromium's own <video>, the picture is that frame's (of its neighbours, the nearest in pixels)."""
    import base64
    import io

    import numpy as np
    from PIL import Image

    from forensics.media import load_video
    from ui.video import SEEK_INTO_FRAME_S

    clip = data_path("video/hamilton_clip.mp4")
    shown = """async (t) => { const v = document.getElementById('v');
        await new Promise(r => { if (v.readyState >= 1) r(); else v.onloadedmetadata = r; });
        v.currentTime = t; await new Promise(r => v.onseeked = r);
        const c = document.getElementById('c'); c.width = v.videoWidth; c.height = v.videoHeight;
        c.getContext('2d').drawImage(v, 0, 0); return c.toDataURL('image/png'); }"""
    around = list(range(216, 223))
    video = load_video(clip, indices=around)
    assert video.timestamps[0] > 0.85  # 0.852 s + 216 frames
    page = browser.new_page()
    try:  # the clip inline (0.6 MB): a page of its own, no server
        source = base64.b64encode(clip.read_bytes()).decode()
        page.set_content(f"<video id=v src='data:video/mp4;base64,{source}' muted></video><canvas id=c></canvas>")
        for k in (1, 3, 5):  # frames 217, 219 (where a face of a person in the audience is), 221
            url = page.evaluate(shown, video.timestamps[k] + SEEK_INTO_FRAME_S)
            seen = np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",")[1]))).convert("RGB"), float)
            distance = [np.abs(seen - frame.astype(float)).mean() for frame in video.frames]
            assert int(np.argmin(distance)) == k, (around[k], [round(float(d), 2) for d in distance])
    finally:
        page.close()


@pytest.mark.browser
def test_browser_compare_tab_shows_table_chart_and_maps(server, browser, tmp_path):
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(server, timeout=60_000)
    page.get_by_role("tab", name="Compare detectors").click()
    page.locator("input[type=file][accept*='.mp4']").last.set_input_files(str(data_path("photos/deepface/couple.jpg")))
    page.get_by_role("button", name="Compare detectors").click()
    expect(page.get_by_text("they agree on").first).to_be_visible(timeout=120_000)
    expect(page.locator(".js-plotly-plot").first).to_be_visible(timeout=30_000)
    expect(page.get_by_text("Face 2").first).to_be_visible()
    # The strip of the faces compared: a click on one shows that face's maps.
    strip = page.locator("#faces-compared button.thumbnail-item")
    expect(strip).to_have_count(2, timeout=30_000)
    shown = page.locator("input[aria-label='Maps of']:visible")
    other = "Face 1" if shown.input_value() == "Face 2" else "Face 2"
    strip.nth(int(other[-1]) - 1).click()
    expect(shown).to_have_value(other, timeout=20_000)
    page.get_by_role("button", name="Build the comparison report").click()  # to hand on
    expect(page.get_by_text("couple-comparison").first).to_be_visible(timeout=60_000)
    page.screenshot(path=str(_shots(tmp_path) / "compare-tab.png"), full_page=True)
    # A file that cannot be compared next: its error, and the couple's table, strip and report gone with it
    bad = tmp_path / "not-a-photo.jpg"
    bad.write_bytes(b"no image here")
    page.locator("button[aria-label='Clear']").last.click()
    page.locator("input[type=file][accept*='.mp4']").last.set_input_files(str(bad))
    page.get_by_role("button", name="Compare detectors").click()
    expect(page.get_by_text("not-a-photo.jpg: not an image").first).to_be_visible(timeout=60_000)
    expect(page.get_by_text("they agree on")).to_have_count(0)
    expect(strip).to_have_count(0)
    expect(page.get_by_text("couple-comparison")).to_have_count(0)
    page.close()


@pytest.mark.browser
def test_browser_about_is_one_accordion_per_card_and_train_says_once_that_admin_is_off(server, browser, tmp_path):
    from playwright.sync_api import expect

    from forensics import catalog

    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(server, timeout=60_000)
    page.get_by_role("tab", name="About").click()
    names = list(catalog.available_detectors())
    for name in names:
        expect(page.get_by_role("button", name=re.compile(rf"^{re.escape(name)}: ")).first).to_be_visible(timeout=30_000)
    assert page.get_by_text("Decision threshold on P(fake)").count() == 0 or not page.get_by_text(
        "Decision threshold on P(fake)").first.is_visible()  # cards closed until asked for
    height = page.evaluate("document.body.scrollHeight")
    page.screenshot(path=str(_shots(tmp_path) / "about-tab.png"), full_page=True)
    assert height < 4000, f"About tab is {height} px tall"
    page.get_by_role("tab", name="Train").click()
    expect(page.get_by_text("Admin actions are switched off").first).to_be_visible(timeout=30_000)
    page.wait_for_timeout(2500)  # a tick of the jobs timer: it must not repeat the note
    assert page.get_by_text("Admin actions are switched off").count() == 1
    assert not page.get_by_role("button", name="Start job").is_visible()
    expect(page.get_by_text("Jobs (read only)").first).to_be_visible()  # this private server's jobs, nothing to click
    page.screenshot(path=str(_shots(tmp_path) / "train-tab.png"), full_page=True)
    page.close()


@pytest.mark.browser
def test_browser_example_thumbnails_load_the_file(server, browser, tmp_path):
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(server, timeout=60_000)
    thumbs = page.locator("img[alt*='astronaut'], img[src*='astronaut']")
    expect(thumbs.first).to_be_visible(timeout=30_000)
    page.get_by_text("Examples (click one to load it)").first.scroll_into_view_if_needed()
    page.screenshot(path=str(_shots(tmp_path) / "examples.png"))
    page.locator("button.thumbnail-item, .thumbnail-item").nth(0).click()  # the self-blended portrait (sorted first)
    expect(page.get_by_text("66.1 KB").first).to_be_visible(timeout=30_000)  # its size, in the upload box
    page.get_by_role("button", name="Analyse image").click()
    expect(page.get_by_text("at or above the threshold").first).to_be_visible(timeout=90_000)  # the default flags it
    page.screenshot(path=str(_shots(tmp_path) / "example-analysed.png"), full_page=True)


def test_scored_maps_have_their_scores_in_the_captions_and_survive_new_settings(tabs):
    photo = str(data_path("photos/face_recognition/obama.jpg"))
    out = answered(tabs.image, tabs.image.analyze_image, photo, None, "test-vit", ["gradcam", "gradcam++"], "fake",
                   "mean", 0.9, 0.5, score_maps=True)
    faces, maps, session = out.face, out.maps, out.state
    face = session.result.faces[faces.value]
    assert set(face.faithfulness) == {"gradcam", "gradcam++"}
    for caption, method in ((maps[2].label, "gradcam"), (maps[3].label, "gradcam++")):
        s = face.faithfulness[method]
        assert f"vs random: del {s['deletion'] - s['random_deletion']:+.2f}" in caption
        assert f"ins {s['insertion'] - s['random_insertion']:+.2f}" in caption
        deletion_mark = caption.split("vs random: del ")[1].split(",")[0].split()[-1]
        assert deletion_mark == ("✓" if s["deletion"] < s["random_deletion"] else "✗")
    assert sum("★ most faithful" in m.label for m in maps[2:4]) == (face.most_faithful is not None)
    shown = Shown(tabs.image, tabs.image.update_maps(session, faces.value, "real", "mean", 0.9, 0.5))
    new_maps, session = shown.maps, shown.state
    assert "vs random: del" in new_maps[2].label and session.result.faces[faces.value].explained_class == "real"


@pytest.mark.browser
def test_browser_score_the_maps_shows_scores_against_random(server, browser, tmp_path):
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1500, "height": 1100})
    page.goto(server, timeout=60_000)
    expect(page.get_by_text("Deepfake Forensics Studio").first).to_be_visible(timeout=30_000)
    page.locator("input[type=file]").first.set_input_files(str(data_path("photos/face_recognition/obama.jpg")))
    page.get_by_label("Score the maps").first.check()
    page.get_by_role("button", name="Analyse image").click()
    expect(page.get_by_text("calibrated P(fake) ≈").first).to_be_visible(timeout=180_000)
    for title in ("Last-layer attention", "Attention rollout", "Grad-CAM", "Grad-CAM++"):
        expect(page.get_by_text(f"{title} ('fake')").first).to_be_visible(timeout=30_000)
    expect(page.get_by_text("vs random: del").first).to_be_visible()
    expect(page.locator("img[src*='image']").nth(4)).to_be_visible()  # annotated image + 4 maps
    page.wait_for_timeout(1500)  # let the images paint before the screenshot
    page.screenshot(path=str(_shots(tmp_path) / "image-tab-scored.png"), full_page=True)
    page.get_by_role("tab", name="About").click()
    expect(page.get_by_text("How to read the map scores").first).to_be_visible(timeout=30_000)
    page.close()


def test_an_image_sent_twice_is_cached_once_and_whole(tmp_path):
    """A streamed answer sends its images twice: Gradio's cache must hand back the same file,
    never rewrite it under a browser that is fetching it (and leave no staging file behind)."""
    import numpy as np
    from gradio import processing_utils

    import ui.common  # noqa: F401  (installs the atomic cache write)

    image = np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    first = processing_utils.save_img_array_to_cache(image, str(tmp_path))
    inode = os.stat(first).st_ino
    def no_encoding(*args, **kwargs):
        raise AssertionError("an image already in the cache was encoded again")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("PIL.Image.Image.save", no_encoding)
        second = processing_utils.save_img_array_to_cache(image, str(tmp_path))
    assert second == first and os.stat(second).st_ino == inode
    assert sorted(p.name for p in Path(first).parent.iterdir()) == ["image.webp"]
    from PIL import Image

    with Image.open(first) as cached:  # what the browser gets is the image, whole
        assert cached.format == "WEBP" and cached.size == (32, 32)
    changed = image.copy()
    changed[0, 0] += 1
    assert processing_utils.save_img_array_to_cache(changed, str(tmp_path)) != first  # named after its pixels
