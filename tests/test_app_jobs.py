"""The Train tab of the served app: its admin-only API refuses without the credential (when none
is configured, and when a wrong or no token is given), lets the admin through, and in real Chromium
a tiny job launched from an uploaded zip runs to the end and its model joins the detector box."""

from __future__ import annotations

import os
import re
import time
import zipfile
from pathlib import Path

import pytest

from tests.conftest import ROOT, data_path
from tests.served_app import api_client, base_env, serve, stop, wait_served

TOKEN = "test-admin-token-7f3a"
ADMIN_ENDPOINT = re.compile(r"train|job|push|delete")
EXPECTED_ADMIN_ENDPOINTS = {"/submit_job", "/list_jobs", "/show_job", "/cancel_job", "/resume_job", "/delete_job",
                            "/push_model"}


def _serve(tmp: Path, **env_changes):
    """Start app.py on a free port; returns (url, process, log)."""
    return serve(tmp, base_env(FORENSICS_HOME=str(tmp / "home"), FORENSICS_MAX_JOBS="1", FORENSICS_JOB_THREADS="1",
                               **env_changes))


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """Two apps, started together: one with no admin credential configured, one with a token."""
    open_tmp, admin_tmp = tmp_path_factory.mktemp("open"), tmp_path_factory.mktemp("admin")
    started = {"open": _serve(open_tmp), "admin": _serve(admin_tmp, FORENSICS_ADMIN_TOKEN=TOKEN)}
    for url, proc, log in started.values():
        wait_served(url, proc, log)
    yield {name: url for name, (url, _, _) in started.items()} | {"admin_home": admin_tmp / "home"}
    for name, (_, proc, log) in started.items():
        text = stop(proc, log)
        assert "Traceback" not in text or "gradio.exceptions.Error" in text, text[-3000:]


def _admin_endpoints(client) -> dict[str, dict]:
    endpoints = client.view_api(print_info=False, return_format="dict")["named_endpoints"]
    return {name: info for name, info in endpoints.items() if ADMIN_ENDPOINT.search(name)}


def _arguments(info: dict, token: str | None) -> list:
    """An argument per parameter (defaults, examples, no files), with the admin token as given."""
    args = []
    for p in info["parameters"]:
        if p["parameter_name"] == "admin_token":
            args.append(token)
        elif p["component"] == "File":
            args.append(None)
        elif p["parameter_name"] == "job_id":
            args.append(12345)
        else:
            args.append(p["parameter_default"] if p["parameter_has_default"] else p["example_input"])
    return args


def test_without_a_configured_credential_every_admin_endpoint_refuses(servers):
    from gradio_client import handle_file
    from gradio_client.exceptions import AppError

    client = api_client(servers["open"])
    admin = _admin_endpoints(client)
    assert set(admin) == EXPECTED_ADMIN_ENDPOINTS
    for name, info in admin.items():
        for token in (None, TOKEN):
            with pytest.raises(AppError, match="needs an admin credential, and none is configured on this server"):
                client.predict(*_arguments(info, token), api_name=name)
    # Analysis stays open to everyone.
    verdict, *_ = client.predict(handle_file(str(ROOT / "assets/examples/astronaut.jpg")), api_name="/analyze_image")
    assert verdict["label"] in ("fake", "real")


def test_the_test_client_survives_a_late_close_stream_that_breaks_gradio_client(servers, monkeypatch):
    """The race behind a red CI run: the server's close_stream reaching the client's reader late (a
    loaded machine) made the next call of the same plain Client end in CancelledError. Delayed here
    on purpose; api_client waits for its reader to close after each call, and every call answers."""
    import concurrent.futures

    import httpx
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    read = httpx.Response.iter_bytes

    def late_close(self, *args, **kwargs):
        for chunk in read(self, *args, **kwargs):
            at = chunk.find(b"close_stream")
            at = chunk.rfind(b"data:", 0, at) if at >= 0 else -1
            if at >= 0:
                yield chunk[:at]
                time.sleep(0.3)
                chunk = chunk[at:]
            yield chunk

    monkeypatch.setattr(httpx.Response, "iter_bytes", late_close)

    def answers(client, calls=6) -> list[str]:
        out = []
        for _ in range(calls):
            try:
                client.predict(None, api_name="/list_jobs")
                out.append("result")
            except AppError:
                out.append("refused")
            except concurrent.futures.CancelledError:
                out.append("cancelled")
        return out

    assert "cancelled" in answers(Client(servers["open"], verbose=False))  # the race, reproduced
    assert answers(api_client(servers["open"])) == ["refused"] * 6


def test_with_a_token_configured_wrong_or_missing_tokens_are_refused_and_the_right_one_works(servers):
    from gradio_client.exceptions import AppError

    client = api_client(servers["admin"])
    admin = _admin_endpoints(client)
    assert set(admin) == EXPECTED_ADMIN_ENDPOINTS
    for name, info in admin.items():
        with pytest.raises(AppError, match=r"needs an admin credential: enter the admin token"):
            client.predict(*_arguments(info, ""), api_name=name)
        with pytest.raises(AppError, match="needs an admin credential: the admin token given is wrong"):
            client.predict(*_arguments(info, TOKEN + "x"), api_name=name)
    # With the token, the actions run (and answer with their own one-line errors).
    assert isinstance(client.predict(TOKEN, api_name="/list_jobs"), list)
    for name in ("/show_job", "/cancel_job", "/resume_job", "/delete_job"):
        with pytest.raises(AppError, match="^no job 12345$"):
            client.predict(*_arguments(admin[name], TOKEN), api_name=name)
    with pytest.raises(AppError, match="data 'Hello!!' is neither a folder nor a labels.csv on the server"):
        client.predict(*_arguments(admin["/submit_job"], TOKEN), api_name="/submit_job")
    start = time.time()
    with pytest.raises(AppError, match=r"offline \(HF_HUB_OFFLINE=1\): pushing to the Hub needs the network"):
        client.predict("default", "me/model", True, TOKEN, api_name="/push_model")
    assert time.time() - start < 10


def _zip_tree(path: Path, tree) -> Path:
    """A zip of an ImageFolder tree under faces/: (label, data folder, count) per part."""
    with zipfile.ZipFile(path, "w") as archive:
        for label, folder, count in tree:
            for image in sorted(data_path(folder).glob("*.jpg"))[:count]:
                archive.write(image, f"faces/{label}/{image.name}")
    return path


@pytest.fixture(scope="module")
def faces_zip(tmp_path_factory) -> Path:
    """A zip of an ImageFolder tree: faces/real (6 FFHQ faces), faces/fake (2 StyleGAN2 faces)."""
    return _zip_tree(tmp_path_factory.mktemp("upload") / "faces.zip",
                     (("real", "faces/real/ffhq", 6), ("fake", "faces/fake/stylegan2_tpdne", 2)))


@pytest.fixture(scope="module")
def three_class_zip(tmp_path_factory) -> Path:
    """A zip of a three-class ImageFolder tree: faces/real (6 FFHQ faces), faces/synthetic (2
    StyleGAN2 and 2 Stable Diffusion faces); self-blends of the reals make the manipulated class."""
    return _zip_tree(tmp_path_factory.mktemp("upload3") / "three.zip",
                     (("real", "faces/real/ffhq", 6), ("synthetic", "faces/fake/stylegan2_tpdne", 2),
                      ("synthetic", "faces/fake/sd21_sdfd", 2)))


def _run_tiny_job(browser, url: str, archive: Path, name: str, architecture: str | None = None,
                  label_order: str | None = None):
    """In real Chromium: the Train tab, the admin token, the uploaded zip, one epoch of two steps
    on 32 px crops, started and waited for; returns the page."""
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1500, "height": 1100})
    page.goto(url, timeout=60_000)
    page.get_by_role("tab", name="Train").click()
    page.get_by_label("Admin token").fill(TOKEN)
    page.locator("input[type=file][accept*='.zip']").set_input_files(str(archive))
    # The uploaded file's row: Gradio renders its name as two spans ("faces", ".zip"), so the
    # text "faces.zip" exists only in the cell's accessible name (only a transient progress
    # line carries it as text, and waiting on that raced the upload).
    expect(page.get_by_role("cell", name=archive.name, exact=True)).to_be_visible(timeout=30_000)
    if architecture:
        page.get_by_label("Architecture (train, distil)").click()
        page.get_by_role("option", name=architecture).click()
    for label, value in (("Epochs", "1"), ("Batch size", "2"), ("Image size", "32")):
        page.get_by_label(label, exact=True).fill(value)
    if label_order:
        page.get_by_label(label_order).check()
    page.get_by_text("More", exact=True).click()
    page.get_by_label("Stop after this many steps (empty: all)").fill("2")
    page.get_by_label("Name of the model it makes (default job<id>-<architecture>)").fill(name)
    page.get_by_role("button", name="Start job").click()
    expect(page.get_by_text(re.compile(rf"Job \d+ \({name}\) started\.")).first).to_be_visible(timeout=30_000)
    expect(page.get_by_text(re.compile(r"finished, 100%")).first).to_be_visible(timeout=180_000)
    return page


@pytest.mark.browser
def test_browser_train_tab_runs_a_job_from_a_zip_and_its_model_joins_the_detector_box(servers, browser, faces_zip,
                                                                                     tmp_path):
    from playwright.sync_api import expect

    page = _run_tiny_job(browser, servers["admin"], faces_zip, "browser-tiny", architecture="patch-tiny")
    expect(page.get_by_label("Log")).to_have_value(re.compile(r"epoch 1: loss"), timeout=30_000)
    expect(page.get_by_text("Model card").first).to_be_visible()
    expect(page.locator(".js-plotly-plot").first).to_be_visible()
    page.screenshot(path=str(Path(os.environ.get("SCREENSHOT_DIR", tmp_path)) / "train-tab.png"), full_page=True)
    # The same name again: refused in one line (a name is its model's own), and the last job's line goes
    page.get_by_role("button", name="Start job").click()
    expect(page.get_by_text("name 'browser-tiny' is taken by a detector already: choose another").first).to_be_visible(
        timeout=30_000)
    expect(page.get_by_text(re.compile(r"Job \d+ \(browser-tiny\) started\."))).to_have_count(0)

    page.get_by_role("tab", name="Image").click()
    page.get_by_label("Detector (name, model folder or Hub id)").first.click()
    expect(page.get_by_role("option", name="browser-tiny")).to_be_visible(timeout=30_000)
    assert (servers["admin_home"] / "models" / "browser-tiny" / "model.safetensors").is_file()
    page.close()


@pytest.mark.browser
def test_browser_a_three_class_job_and_its_detector_names_the_kind_of_fake(servers, browser, three_class_zip):
    """The Train tab's third label order trains a real / manipulated / synthetic detector; in the
    Image tab its face picker names the likeliest kind of fake beside P(fake)."""
    from playwright.sync_api import expect

    page = _run_tiny_job(browser, servers["admin"], three_class_zip, "browser-three",
                         label_order="real manipulated synthetic")
    config = (servers["admin_home"] / "models" / "browser-three" / "config.json").read_text()
    assert '"num_classes": 3' in config and '"synthetic"' in config

    page.get_by_role("tab", name="Image").click()
    box = page.get_by_label("Detector (name, model folder or Hub id)").first
    box.fill("browser-three")
    box.press("Enter")
    page.locator("input[type=file]").first.set_input_files(str(data_path("photos/face_recognition/obama.jpg")))
    page.get_by_role("button", name="Analyse image").click()
    expect(page.get_by_text("calibrated P(fake) ≈").first).to_be_visible(timeout=90_000)
    expect(page.get_by_label("Face shown below").first).to_have_value(
        re.compile(r"^Face 1: P\(fake\) \d\.\d\d, likeliest (manipulated|synthetic) \d\.\d\d$"), timeout=30_000)
    page.close()


def test_a_job_whose_processes_died_is_found_while_the_app_runs(tmp_path, monkeypatch):
    """The tab's timer reconciles every RECONCILE_EVERY_S: a job marked running whose processes are gone
    (killed, out of memory) is failed and the queue moves on, without waiting for the app's next start."""
    import subprocess
    import sys

    from forensics.jobs import JobSettings, JobStore
    from ui import train

    monkeypatch.setenv("FORENSICS_HOME", str(tmp_path / "home"))
    faces = tmp_path / "faces"
    for label, folder in (("real", "faces/real/ffhq"), ("fake", "faces/fake/stylegan2_tpdne")):
        (faces / label).mkdir(parents=True)
        for path in sorted(data_path(folder).glob("*.jpg"))[:4]:
            (faces / label / path.name).write_bytes(path.read_bytes())
    jobs = JobStore(tmp_path / "home")
    job = jobs.submit(JobSettings(kind="train", data=str(faces), model="patch-tiny", image_size=32), start=False)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    jobs.update(job.id, status="running", pid=dead.pid, started_at=time.time() - 60)
    train.store.cache_clear()
    monkeypatch.setattr(train, "_RECONCILED", {"at": 0.0})
    train._reconcile_now_and_then()
    failed = jobs.get(job.id)
    assert failed.status == "failed" and failed.error.startswith("interrupted: its process is gone (killed, or")
    train.store.cache_clear()


def test_a_public_server_without_an_admin_shows_visitors_nothing_of_its_jobs(monkeypatch):
    """No form, no job list (its names and errors are the operator's), no empty log and plot to click into."""
    import gradio as gr

    from ui import train

    for name in ("FORENSICS_ADMIN_TOKEN", "FORENSICS_ADMIN_USER", "FORENSICS_ADMIN_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    for mode, listed in (("public", False), ("private", True)):
        monkeypatch.setenv("FORENSICS_MODE", mode)
        with gr.Blocks() as page:
            train.build([])
        def column(block):  # the nearest column holding it (a textbox sits in a form inside one)
            while not isinstance(block, gr.Column):
                block = block.parent
            return block

        table = next(b for b in page.blocks.values() if isinstance(b, gr.Dataframe))
        assert column(table).visible is listed and table.label == "Jobs (read only)"
        log = next(b for b in page.blocks.values() if isinstance(b, gr.Textbox) and b.label == "Log")
        assert column(log).visible is False
