"""The app as a real server: in-process handlers, its API through gradio_client, and its page in
real Chromium (Debian's, driven by Playwright)."""

from __future__ import annotations

import json
import os
import shutil
import statistics
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import gradio as gr
import pytest

from tests.conftest import ROOT, data_path
from tests.served_app import assert_clean_log, base_env, serve, stop, wait_served

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
def app_module(zoo):
    os.environ["FORENSICS_DETECTORS"] = str(zoo)
    import app

    return app


def test_image_handler_gives_verdict_boxes_maps_and_reports(app_module):
    verdict, summary, annotated, faces, *maps, reports, session = app_module.analyze_image(
        str(data_path("photos/deepface/couple.jpg")))
    assert set(verdict) == {"fake", "real"} and abs(sum(verdict.values()) - 1) < 1e-6
    assert "threshold" in summary and "2 face(s)" in summary
    assert annotated.shape[2] == 3
    assert len(faces.choices) == 2 and faces.value == faces.choices[0][1]
    assert len(maps) == 5 and all(m.value is not None for m in maps[:4])
    assert maps[4].visible is False  # no patch-score map for a ViT
    panel = app_module.service.face_panel(session.result, faces.value)
    assert [image.shape for image, _ in panel[:4]] == [(256, 256, 3)] * 4  # 64 px crops, shown at 256 px
    assert panel[4][0] is None and "not available" in panel[4][1]
    assert [m.label.split(" (")[0] for m in maps[:4]] == ["Last-layer attention", "Attention rollout", "Grad-CAM",
                                                              "Grad-CAM++"]
    json_path, html_path = reports
    assert json.loads(Path(json_path).read_text())["report"]["input"]["sha256"]
    assert "<html" in Path(html_path).read_text()[:200].lower()


def test_patch_level_detector_shows_its_patch_score_map(app_module):
    *_, maps, reports, session = app_module.analyze_image(str(data_path("photos/face_recognition/obama.jpg")),
                                                          detector="zz-test-patch")
    assert maps.visible is True and maps.value is not None and maps.label.startswith("Patch scores")
    assert session.result.explanations["skipped"].keys() == {"attention", "rollout"}


def test_new_settings_recompute_maps_only(app_module):
    *_, session = app_module.analyze_image(str(data_path("photos/face_recognition/obama.jpg")))
    before = [f.heatmaps["rollout"].copy() for f in session.result.faces]
    probability = session.result.fake_probability
    *maps, session = app_module.update_maps(session, 0, "real", "max", 0.5, 0.7)
    assert session.options.head_fusion == "max" and session.result.fake_probability == probability
    assert session.result.faces[0].explained_class == "real"
    assert not (before[0] == session.result.faces[0].heatmaps["rollout"]).all()
    assert "'real'" in maps[0].label


def test_video_handler_gives_timeline_frames_and_table(app_module):
    out = app_module.analyze_video(str(data_path("video/hamilton_clip.mp4")), frames=6)
    verdict, summary, timeline, frames, table, faces, *maps, reports, session = out
    assert "tracked face" in summary
    assert timeline.data and {t.name.split(" (")[0] for t in timeline.data} <= {f"person {t.track}" for t in
                                                                                session.result.tracks}
    assert 1 <= len(frames) <= 8 and table and len(table) == len(session.result.faces)
    assert app_module.pick_row(session, gr.SelectData(None, {"index": [0, 0], "value": 1})) == faces.value


@pytest.mark.parametrize("name, content, message", [
    ("notes.jpg", b"not an image at all", "notes.jpg: not an image"),
    ("empty.png", b"", "empty.png: file is empty"),
    ("broken.mp4", b"\x00\x00\x00\x18ftypmp42" + os.urandom(2000), "broken.mp4: "),
])
def test_bad_files_raise_a_one_line_gradio_error(app_module, tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    handler = app_module.analyze_video if name.endswith(".mp4") else app_module.analyze_image
    with pytest.raises(gr.Error) as err:
        handler(str(path))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_no_face_warns_and_still_scores(app_module):
    with pytest.warns(UserWarning, match="No face found"):
        verdict, summary, *_ = app_module.analyze_image(str(EXAMPLES / "chelsea-no-face.jpg"))
    assert verdict and "no face found" in summary


# -- the real server ----------------------------------------------------------------------------


def test_api_analyses_an_image_and_a_video_with_the_media_alone(server):
    from gradio_client import Client, handle_file

    client = Client(server, verbose=False)
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    assert {"/analyze_image", "/analyze_video"} <= set(endpoints)
    verdict, summary, annotated, faces, *maps, reports = client.predict(
        handle_file(str(data_path("photos/deepface/couple.jpg"))), api_name="/analyze_image")
    assert verdict["label"] in ("fake", "real") and "2 face(s)" in summary and Path(annotated).is_file()
    assert all(Path(m["value"]).is_file() for m in maps[:4]) and len(reports) == 2
    out = client.predict(handle_file(str(EXAMPLES / "astronaut-pan.mp4")), api_name="/analyze_video")
    verdict, summary, timeline, frames, table = out[:5]
    assert timeline["type"] == "plotly" and frames and table["data"]


def test_api_bad_file_gets_a_clear_error_and_the_server_keeps_serving(server, tmp_path):
    from gradio_client import Client, handle_file

    fake_jpeg = tmp_path / "notes.jpg"
    fake_jpeg.write_text("this is not a picture")
    client = Client(server, verbose=False)
    with pytest.raises(Exception, match="notes.jpg: not an image"):
        client.predict(handle_file(str(fake_jpeg)), api_name="/analyze_image")
    with urllib.request.urlopen(server, timeout=5) as response:
        assert response.status == 200
    verdict, *_ = client.predict(handle_file(str(EXAMPLES / "astronaut.jpg")), api_name="/analyze_image")
    assert verdict["label"] in ("fake", "real")


def test_load_eight_concurrent_image_requests_all_succeed(server):
    """A load check, not a timed test: the latencies are printed for the record."""
    from gradio_client import Client, handle_file

    photos = [data_path("photos/face_recognition/obama.jpg"), EXAMPLES / "astronaut.jpg"]

    def one(i):
        client = Client(server, verbose=False)
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
    page.locator("input[type=file]").first.set_input_files(str(data_path("photos/face_recognition/obama.jpg")))
    page.get_by_role("button", name="Analyse image").click()
    expect(page.get_by_text("P(fake) =").first).to_be_visible(timeout=90_000)
    for title in ("Last-layer attention", "Attention rollout", "Grad-CAM", "Grad-CAM++"):
        expect(page.get_by_text(f"{title} ('fake')").first).to_be_visible(timeout=30_000)
    expect(page.locator("img[src*='image']").nth(4)).to_be_visible()  # annotated image + 4 maps
    page.screenshot(path=str(_shots(tmp_path) / "image-tab.png"), full_page=True)
    page.close()


@pytest.mark.browser
def test_browser_video_tab_shows_the_timeline(server, browser, tmp_path):
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(server, timeout=60_000)
    page.get_by_role("tab", name="Video").click()
    page.locator("input[type=file][accept*='video']").set_input_files(str(EXAMPLES / "astronaut-pan.mp4"))
    page.get_by_role("button", name="Analyse video").click()
    expect(page.locator(".js-plotly-plot").first).to_be_visible(timeout=120_000)
    expect(page.get_by_text("P(fake) per tracked face over time").first).to_be_visible()
    page.screenshot(path=str(_shots(tmp_path) / "video-tab.png"), full_page=True)
    page.close()


@pytest.mark.browser
def test_browser_bad_file_shows_the_error(server, browser, tmp_path):
    from playwright.sync_api import expect

    bad = tmp_path / "holiday.jpg"
    bad.write_bytes(b"GIF89a but not really")
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(server, timeout=60_000)
    page.locator("input[type=file]").first.set_input_files(str(bad))
    page.get_by_role("button", name="Analyse image").click()
    expect(page.get_by_text("holiday.jpg: not an image").first).to_be_visible(timeout=60_000)
    page.screenshot(path=str(_shots(tmp_path) / "bad-file.png"), full_page=True)
    page.close()


def test_scored_maps_have_their_scores_in_the_captions_and_survive_new_settings(app_module):
    photo = str(data_path("photos/face_recognition/obama.jpg"))
    _v, _s, _a, faces, *maps, _reports, session = app_module.analyze_image(
        photo, None, "test-vit", ["gradcam", "gradcam++"], "fake", "mean", 0.9, 0.5, True)
    face = session.result.faces[faces.value]
    assert set(face.faithfulness) == {"gradcam", "gradcam++"}
    for caption, method in ((maps[2].label, "gradcam"), (maps[3].label, "gradcam++")):
        s = face.faithfulness[method]
        assert f"vs random: del {s['deletion'] - s['random_deletion']:+.2f}" in caption
        assert f"ins {s['insertion'] - s['random_insertion']:+.2f}" in caption
        deletion_mark = caption.split("vs random: del ")[1].split(",")[0].split()[-1]
        assert deletion_mark == ("✓" if s["deletion"] < s["random_deletion"] else "✗")
    assert sum("★ most faithful" in m.label for m in maps[2:4]) == (face.most_faithful is not None)
    *new_maps, session = app_module.update_maps(session, faces.value, "real", "mean", 0.9, 0.5)
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
    expect(page.get_by_text("P(fake) =").first).to_be_visible(timeout=180_000)
    for title in ("Last-layer attention", "Attention rollout", "Grad-CAM", "Grad-CAM++"):
        expect(page.get_by_text(f"{title} ('fake')").first).to_be_visible(timeout=30_000)
    expect(page.get_by_text("vs random: del").first).to_be_visible()
    expect(page.locator("img[src*='image']").nth(4)).to_be_visible()  # annotated image + 4 maps
    page.wait_for_timeout(1500)  # let the images paint before the screenshot
    page.screenshot(path=str(_shots(tmp_path) / "image-tab-scored.png"), full_page=True)
    page.get_by_role("tab", name="About").click()
    expect(page.get_by_text("How to read the map scores").first).to_be_visible(timeout=30_000)
    page.close()
