"""The app as a real server: its API through gradio_client, and its page in real Chromium."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import ROOT, data_path

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(model_dirs, tmp_path_factory):
    """app.py on a free port, offering a copy of a small model marked as trained (a test fixture,
    in a temporary folder: nothing untrained is offered by the real app)."""
    zoo = tmp_path_factory.mktemp("zoo")
    folder = shutil.copytree(model_dirs["timm-vit"], zoo / "test-vit")
    config = json.loads((folder / "config.json").read_text())
    config["forensics"]["trained"] = True
    (folder / "config.json").write_text(json.dumps(config))
    port = _free_port()
    env = dict(os.environ, FORENSICS_DETECTORS=str(zoo), GRADIO_ANALYTICS_ENABLED="False", HF_HUB_OFFLINE="1")
    log = open(tmp_path_factory.mktemp("log") / "app.log", "w+")
    proc = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--port", str(port)], cwd=ROOT, env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    break
        except OSError:
            if proc.poll() is not None:
                log.seek(0)
                pytest.fail(f"app.py exited early:\n{log.read()}")
            time.sleep(0.5)
    else:
        proc.kill()
        pytest.fail("app.py did not serve its page within 120 s")
    yield url
    proc.terminate()
    proc.wait(timeout=20)
    log.close()


def test_api_analyses_a_real_photo_with_the_media_alone(server):
    from gradio_client import Client, handle_file

    photo = data_path("photos/deepface/couple.jpg")
    client = Client(server, verbose=False)
    verdict, summary, annotated, gallery, result = client.predict(handle_file(str(photo)), api_name="/analyze_image")
    assert result["kind"] == "image" and result["error"] is None
    assert len([f for f in result["faces"] if not f["fallback"]]) == 2
    assert verdict["label"] in ("fake", "real")
    assert "P(fake)" in summary and Path(annotated).is_file()
    assert len(gallery) == 2 * 5  # each face: its crop and four overlays


def test_api_bad_file_gets_a_clear_error_and_the_server_keeps_serving(server, tmp_path):
    from gradio_client import Client, handle_file

    fake_jpeg = tmp_path / "notes.jpg"
    fake_jpeg.write_text("this is not a picture")
    client = Client(server, verbose=False)
    with pytest.raises(Exception, match="notes.jpg: not an image"):
        client.predict(handle_file(str(fake_jpeg)), api_name="/analyze_image")
    with urllib.request.urlopen(server, timeout=5) as response:
        assert response.status == 200


@pytest.mark.browser
def test_page_in_chromium_uploads_an_image_and_shows_the_verdict(server, tmp_path):
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (make test installs it)")
    from playwright.sync_api import expect, sync_playwright

    photo = data_path("photos/face_recognition/obama.jpg")
    args = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=args)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(server, timeout=60_000)
        expect(page.get_by_text("Deepfake Forensics Studio").first).to_be_visible(timeout=30_000)
        page.locator("input[type=file]").first.set_input_files(str(photo))
        page.get_by_role("button", name="Analyse image").click()
        expect(page.get_by_text("P(fake) =").first).to_be_visible(timeout=90_000)
        shots = Path(os.environ.get("SCREENSHOT_DIR", tmp_path))
        page.screenshot(path=str(shots / "image-tab.png"), full_page=True)
        assert page.locator("img").count() >= 5  # annotated image + gallery thumbnails
        browser.close()
