"""Misuse of a public server, through gradio_client against app.py served with FORENSICS_MODE=public:
absolute and ``..`` paths, paths that exist and paths that do not (one identical answer), a Hub id
over the size cap (the local Hub-API server of test_hub), an upload over the limit, a model folder
holding a pickle. Each is refused in one line and the server keeps serving; then a short soak
(bench/soak.py) sends a few dozen mixed requests from 8 clients."""

from __future__ import annotations

import importlib.util
import json
import urllib.request
import uuid
from pathlib import Path

import pytest
import torch

from forensics.catalog import ASSETS
from forensics.detectors.random_models import make_random_detector
from forensics.settings import NOT_AVAILABLE
from tests.conftest import ROOT, DATA
from tests.served_app import api_client, assert_clean_log, base_env, serve, stop, wait_served
from tests.test_hub import _FakeHub, start_fake_hub

EXAMPLES = ROOT / "assets" / "examples"


class _OpensAFile:
    """Unpickling this calls open(marker, "w"): code run by loading, which weights_only refuses."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


@pytest.fixture(scope="module")
def public_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("misuse")
    hub = start_fake_hub()
    big = make_random_detector(root / "big", "timm-cnn", size=32)
    _FakeHub.repos["big/model"] = {p.name: p.read_bytes() for p in big.iterdir() if p.is_file()}
    _FakeHub.declared[("big/model", "model.safetensors")] = 5 * 2**20
    pickled = make_random_detector(root / "pickled", "timm-cnn", size=32)
    config = json.loads((pickled / "config.json").read_text())
    config["forensics"]["trained"] = True
    (pickled / "config.json").write_text(json.dumps(config))
    (pickled / "model.safetensors").unlink()
    marker = root / "pickle-code-ran"
    torch.save({"payload": _OpensAFile(marker)}, pickled / "pytorch_model.bin")
    env = base_env(FORENSICS_MODE="public", HF_ENDPOINT=f"http://127.0.0.1:{hub.server_port}",
                   HF_HUB_CACHE=str(root / "hub-cache"), FORENSICS_MODELS=f"big/model,{pickled}",
                   FORENSICS_HUB_MAX_MB="1", FORENSICS_MAX_IMAGE_MB="1", FORENSICS_MAX_VIDEO_MB="2",
                   GRADIO_TEMP_DIR=str(root / "gradio"), FORENSICS_HOME=str(root / "home"))
    env["HF_HUB_OFFLINE"] = "0"  # online, to the local Hub server only
    url, proc, log = serve(root, env)
    wait_served(url, proc, log)
    yield {"url": url, "proc": proc, "marker": marker, "gradio": root / "gradio", "root": root}
    text = stop(proc, log)
    hub.shutdown()
    assert_clean_log(text)
    assert "mode public: detectors registered only" in text


def _refusal(url: str, media: Path, detector: str) -> str:
    from gradio_client import handle_file

    with pytest.raises(Exception) as err:
        api_client(url).predict(handle_file(str(media)), None, detector, api_name="/analyze_image")
    message = str(err.value)
    assert "\n" not in message.strip() and "Traceback" not in message, message
    return message


def _still_serving(url: str) -> None:
    from gradio_client import handle_file

    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.status == 200
    verdict, summary, *_ = api_client(url).predict(handle_file(str(EXAMPLES / "astronaut.jpg")),
                                                              api_name="/analyze_image")
    assert verdict["label"] in ("fake", "real") and "detector `default`" in summary


def test_paths_existing_or_not_absolute_or_dotted_get_one_identical_answer(public_server):
    url = public_server["url"]
    names = [str(ASSETS / "default"), "/etc", "/no/such/folder", "../../../etc", "assets/detectors/default",
             str(public_server["root"]), "nobody/unlisted-model", "patch:int8"]  # the last: a build never made
    answers = {name: _refusal(url, EXAMPLES / "astronaut.jpg", name) for name in names}
    assert set(answers.values()) == {NOT_AVAILABLE}, answers
    assert not any("unlisted-model" in path for path, _ in _FakeHub.requests)  # refused before the network
    _still_serving(url)


def test_a_listed_hub_id_over_the_size_cap_is_refused_before_downloading(public_server):
    message = _refusal(public_server["url"], EXAMPLES / "astronaut.jpg", "big/model")
    assert message == ("Hub model 'big/model': its model files take 5.0 MB, over this server's limit of 1.0 MB "
                       "(FORENSICS_HUB_MAX_MB); nothing was downloaded")
    paths = [path for path, _ in _FakeHub.requests]
    assert "GET /api/models/big/model/tree/main" in paths
    assert not any("/resolve/" in path for path in paths)


def test_a_listed_model_folder_holding_a_pickle_is_refused_and_its_code_never_runs(public_server):
    message = _refusal(public_server["url"], EXAMPLES / "astronaut.jpg", "pickled")
    assert "refused: it does not load with weights_only=True" in message
    assert not public_server["marker"].exists()
    _still_serving(public_server["url"])


def test_uploads_over_the_limit_are_refused_at_the_door_and_by_the_analysis(public_server, tmp_path):
    url = public_server["url"]
    jpeg = (EXAMPLES / "astronaut.jpg").read_bytes()
    over_door = tmp_path / "huge.jpg"
    over_door.write_bytes(jpeg + bytes(3 * 2**20))  # over max_file_size (2 MB, the video limit)
    # The server itself, asked without gradio_client's own check: 413 before anything is kept.
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"huge.jpg\"\r\n"
            f"Content-Type: image/jpeg\r\n\r\n").encode() + over_door.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    request = urllib.request.Request(f"{url}gradio_api/upload", data=body, method="POST",
                                     headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(request, timeout=30)
    assert err.value.code == 413
    assert "File size exceeded maximum allowed size of 2097152 bytes" in err.value.read().decode()
    assert not [p for p in public_server["gradio"].rglob("huge.jpg")]
    # gradio_client reads the same limit from the server and refuses before sending.
    from gradio_client import handle_file

    with pytest.raises(ValueError, match="exceeds the maximum file size of 2097152 bytes"):
        api_client(url).predict(handle_file(str(over_door)), api_name="/analyze_image")
    # Under the door's limit, over the image limit (1 MB): refused by the analysis, in one line.
    over_image = tmp_path / "large.jpg"
    over_image.write_bytes(jpeg + bytes(int(1.5 * 2**20)))
    assert _refusal(url, over_image, "default") == "large.jpg: file is 1.6 MB; the limit is 1 MB"
    with pytest.raises(Exception) as err:  # the comparison holds to the same limits
        api_client(url).predict(handle_file(str(over_image)), ["default"], ["gradcam"], 16, 0.5,
                                api_name="/compare_detectors")
    assert str(err.value).strip() == "large.jpg: file is 1.6 MB; the limit is 1 MB"
    _still_serving(url)


def test_short_soak_mixed_requests_from_eight_clients(public_server, tmp_path):
    """bench/soak.py's loop, small: good images and videos and bad files from 8 concurrent clients;
    only the bad files are refused, each in one line, and the server's memory is sampled."""
    spec = importlib.util.spec_from_file_location("soak", ROOT / "bench" / "soak.py")
    soak = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(soak)
    images = [EXAMPLES / "astronaut.jpg", EXAMPLES / "chelsea-no-face.jpg"]
    images += [p for p in (DATA / "photos" / "face_recognition").glob("*.jpg") if p.stat().st_size < 2**20][:6]
    jobs = soak.schedule(24, images, [EXAMPLES / "astronaut-pan.mp4"], soak.make_bad_files(tmp_path / "bad"),
                         video_share=0.1, bad_share=0.2)
    report = soak.run_soak(public_server["url"], public_server["proc"].pid, jobs, clients=8, frames=2,
                           session_every=3, methods=["gradcam"], log=lambda _text: None)
    s = report["summary"]
    print(f"\nshort soak: {s['requests']} requests, {s['bad_files']} bad, {s['unexpected_errors']} unexpected, "
          f"RSS peak {s['peak_rss_mb']:.0f} MB, final {s['final_rss_mb']:.0f} MB, {s['seconds']:.0f} s")
    assert s["requests"] == 24 and s["bad_files"] >= 1 and s["images"] >= 1
    assert s["unexpected_errors"] == 0, s["unexpected"]
    assert s["bad_files_refused_in_one_line"] == s["bad_files"]
    assert len(report["samples"]) >= 2 and s["peak_rss_mb"] > 100
    assert public_server["proc"].poll() is None


def test_public_mode_with_no_other_setting_refuses_the_bundled_default_by_path(tmp_path):
    """The issue's bar: FORENSICS_MODE=public and nothing else; the bundled default's absolute
    path is refused, and /etc and a path that does not exist get the very same message."""
    url, proc, log = serve(tmp_path, base_env(FORENSICS_MODE="public", FORENSICS_HOME=str(tmp_path / "home")))
    try:
        wait_served(url, proc, log)
        answers = [_refusal(url, EXAMPLES / "astronaut.jpg", name)
                   for name in (str(ASSETS / "default"), "/etc", "/no/such/path")]
    finally:
        text = stop(proc, log)
    assert answers == [NOT_AVAILABLE] * 3
    assert_clean_log(text)
