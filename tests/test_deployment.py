"""Public and private mode (forensics.settings), Hub downloads under control (against the local
Hub-API server of test_hub), upload limits shared by the CLI, and held analyses within a budget."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from forensics import held, hub_download, settings
from forensics.analysis import AnalysisResult, FaceResult
from forensics.catalog import ASSETS
from forensics.detectors import load_detector, resolve_model_folder
from forensics.detectors.random_models import make_random_detector
from forensics.core import DetectorError
from tests.conftest import ROOT
from tests.test_hub import _FakeHub, start_fake_hub, use_local_hub

DEFAULT = ASSETS / "default"


@pytest.fixture(autouse=True)
def clean_settings(monkeypatch):
    """No deployment setting leaks in from the environment or from another test."""
    for name in list(os.environ):
        if name.startswith("FORENSICS_") and name not in ("FORENSICS_HOME",) or name == "SPACE_ID":
            monkeypatch.delenv(name)
    monkeypatch.setattr(settings, "_served", {"host": None, "share": False})


def test_mode_follows_the_switch_the_listening_address_and_spaces(monkeypatch):
    assert settings.mode() == "private"
    settings.serving("127.0.0.1")
    assert settings.mode() == "private"
    settings.serving("::1")
    assert settings.mode() == "private"
    for host in ("0.0.0.0", "192.168.1.20", "studio.example.org"):
        settings.serving(host)
        assert settings.mode() == "public", host
    settings.serving("127.0.0.1", share=True)
    assert settings.mode() == "public"
    settings.serving("127.0.0.1")
    monkeypatch.setenv("SPACE_ID", "someone/forensics-studio")
    assert settings.mode() == "public"
    monkeypatch.setenv("FORENSICS_MODE", "private")
    assert settings.mode() == "private"  # the switch wins over everything
    monkeypatch.setenv("FORENSICS_MODE", "pubilc")  # a typo must not open the server
    assert settings.mode() == "public"


def test_public_mode_gives_every_unregistered_name_the_same_answer(monkeypatch, tmp_path):
    monkeypatch.setenv("FORENSICS_MODE", "public")
    monkeypatch.chdir(ROOT)
    names = ["/etc", "/no/such/folder", "../../etc", str(DEFAULT), "assets/detectors/default", "~",
             "someone/else-model", "hf-hub:someone/else-model@main", str(tmp_path), "default:pickle"]
    answers = set()
    for name in names:
        with pytest.raises(DetectorError) as err:
            settings.allowed_detector(name)
        answers.add(str(err.value))
    assert answers == {settings.NOT_AVAILABLE}
    # The registered ones: bundled names and their ONNX builds.
    assert settings.allowed_detector("default") == str(DEFAULT)
    assert settings.allowed_detector("default:int8") == f"{DEFAULT}:int8"
    assert settings.visible_detector("/etc") is None and settings.visible_detector("default") == str(DEFAULT)
    # a registered folder's build that was never made is as unavailable as any other name: no path, no command
    assert not (ROOT / "assets/detectors/patch/model_quantized.onnx").exists()
    with pytest.raises(DetectorError, match=f"^{settings.NOT_AVAILABLE}$"):
        settings.allowed_detector("patch:int8")


def test_operator_listed_folders_and_hub_ids_are_registered(monkeypatch, tmp_path):
    folder = make_random_detector(tmp_path / "lab-model", "timm-cnn", size=32)
    monkeypatch.setenv("FORENSICS_MODE", "public")
    monkeypatch.setenv("FORENSICS_MODELS", f"{folder},lab/detector@v1")
    assert settings.allowed_detector("lab-model") == str(folder.resolve())
    assert settings.allowed_detector(str(folder)) == str(folder.resolve())
    assert settings.allowed_detector("lab/detector@v1") == "lab/detector@v1"
    with pytest.raises(DetectorError, match=f"^{settings.NOT_AVAILABLE}$"):
        settings.allowed_detector("lab-model:onnx")  # listed, but never exported
    from forensics.detectors.onnx_family import load_onnx_detector

    with pytest.raises(DetectorError) as err:  # a Hub id's missing build, known once downloaded: no path
        load_onnx_detector(folder, "int8")
    assert str(err.value) == "lab-model: no int8 build on this server"
    assert settings.operator_choices() == ["lab-model", "lab/detector@v1"]
    assert settings.hub_allowed("lab/detector") and not settings.hub_allowed("lab/other")
    with pytest.raises(DetectorError, match=settings.NOT_AVAILABLE):
        settings.allowed_detector(str(tmp_path))  # the folder above a listed one is not listed


def test_an_operator_listed_folder_keeps_its_measurements_card_and_place_in_every_tab(monkeypatch, tmp_path):
    """Chosen by the name the app offers it under, a listed folder is the same detector as by its path:
    its figures (metrics.json) beside the verdict, its card in About, a place in the Compare tab's list."""
    import shutil

    import gradio as gr

    from forensics.detector_notes import detector_note
    from ui.about import operator_folders
    from ui.compare import CompareTab
    from forensics.catalog import detector_cards

    folder = make_random_detector(tmp_path / "lab-model", "timm-cnn", size=32)
    for name in ("metrics.json", "README.md"):  # the patch detector's measurements and card, as if this model's
        shutil.copy(ASSETS / "patch" / name, folder / name)
    monkeypatch.setenv("FORENSICS_MODE", "public")
    monkeypatch.setenv("FORENSICS_MODELS", f"{folder},lab/detector@v1")
    by_name, by_path = detector_note("lab-model"), detector_note(str(folder))
    assert by_name.measured and by_name.ece == by_path.ece is not None and by_name.line == by_path.line
    assert operator_folders() == {"lab-model": str(folder.resolve())}  # the Hub id has no folder (yet)
    cards = dict(detector_cards(operator_folders()))
    assert cards["lab-model"] == cards["patch"] and {"default", "mobilenetv2"} <= set(cards)  # the copied card
    with gr.Blocks():
        box = CompareTab().detectors
    assert {"lab-model", "lab/detector@v1"} <= {value for _, value in box.choices} and box.label == "Detectors"


def test_private_mode_loads_folders_as_before(monkeypatch, model_dirs):
    monkeypatch.setenv("FORENSICS_MODE", "private")
    path = str(model_dirs["timm-cnn"])
    assert settings.allowed_detector(path) == path
    assert load_detector(settings.allowed_detector(path), allow_untrained=True, cache=False).kind == "timm-cnn"


def test_public_mode_service_refuses_an_absolute_path_to_the_bundled_default(monkeypatch):
    from forensics import service

    monkeypatch.setenv("FORENSICS_MODE", "public")
    with pytest.raises(DetectorError, match=settings.NOT_AVAILABLE):
        service.get_detector(str(DEFAULT))


# -- Hub downloads ------------------------------------------------------------------------------


@pytest.fixture
def local_hub(monkeypatch, tmp_path):
    """The local Hub-API server, online, with an empty cache of its own."""
    from huggingface_hub import constants

    server = start_fake_hub()
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    use_local_hub(monkeypatch, server)
    yield _FakeHub
    server.shutdown()


def _publish(hub, repo_id: str, folder: Path, **extra: bytes) -> None:
    files = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
    hub.repos[repo_id] = {**files, **extra}


def _fetched(hub, repo_id: str) -> list[str]:
    return sorted(p.rsplit("/", 1)[1] for p, _ in hub.requests if p.startswith(f"GET /{repo_id}/resolve/"))


def test_a_repo_over_the_size_cap_is_refused_before_any_download(local_hub, tmp_path, monkeypatch):
    folder = make_random_detector(tmp_path / "big", "timm-cnn", size=32)
    _publish(local_hub, "big/model", folder)
    local_hub.declared[("big/model", "model.safetensors")] = 3 * 2**30  # listed at 3 GB
    with pytest.raises(DetectorError) as err:
        resolve_model_folder("big/model")
    assert str(err.value) == ("Hub model 'big/model': its model files take 3072.0 MB, over this server's limit of "
                              "1024.0 MB (FORENSICS_HUB_MAX_MB); nothing was downloaded")
    assert _fetched(local_hub, "big/model") == []
    assert not list(hub_download.cache_root().rglob("*.safetensors"))


def test_only_the_model_files_are_fetched_and_the_model_loads(local_hub, tmp_path):
    folder = make_random_detector(tmp_path / "ok", "timm-cnn", size=32)
    _publish(local_hub, "fine/model", folder, **{"modeling_evil.py": b"raise SystemExit\n",
                                                  "optimizer.pt": b"pickled", "data/train.csv": b"a,b\n"})
    detector = load_detector("fine/model", allow_untrained=True, cache=False)
    assert detector.kind == "timm-cnn"
    assert _fetched(local_hub, "fine/model") == sorted(p.name for p in folder.iterdir() if p.is_file())


def test_hub_allowlist_and_public_mode_never_fetch_pickles(local_hub, tmp_path, monkeypatch):
    folder = make_random_detector(tmp_path / "m", "timm-cnn", size=32)
    _publish(local_hub, "lab/allowed", folder)
    _publish(local_hub, "else/where", folder)
    monkeypatch.setenv("FORENSICS_HUB_ALLOW", "lab/*")
    with pytest.raises(DetectorError, match=r"^Hub model 'else/where': not on this server's Hub allowlist"):
        resolve_model_folder("else/where")
    assert resolve_model_folder("lab/allowed").is_dir()
    assert not any("else/where" in p for p, _ in local_hub.requests)  # refused before the network
    # Public mode: a repo with only a pickled checkpoint gets nothing fetched but its configs.
    weights = (folder / "model.safetensors").read_bytes()
    local_hub.repos["lab/old"] = {"config.json": (folder / "config.json").read_bytes(), "pytorch_model.bin": weights}
    monkeypatch.setenv("FORENSICS_MODE", "public")
    plan = hub_download.plan_download("lab/old", None)
    assert plan.patterns == ["config.json"]
    monkeypatch.setenv("FORENSICS_MODE", "private")
    assert hub_download.plan_download("lab/old", None).patterns == ["config.json", "pytorch_model.bin"]


def test_the_hub_cache_keeps_to_its_budget_least_recently_used_first(local_hub, tmp_path, monkeypatch):
    folder = make_random_detector(tmp_path / "m", "timm-cnn", size=32)
    size = sum(p.stat().st_size for p in folder.iterdir())
    for repo in ("lab/a", "lab/b", "lab/c"):
        _publish(local_hub, repo, folder)
    monkeypatch.setenv("FORENSICS_HUB_CACHE_MB", str(2.5 * size / 2**20))  # room for two copies
    resolve_model_folder("lab/a")
    resolve_model_folder("lab/b")
    os.utime(hub_download.repo_folder("lab/a") / hub_download.LAST_USED, (1, 1))  # a: used longest ago
    resolve_model_folder("lab/c")
    cached = sorted(p.name for p in hub_download.cache_root().glob("models--*"))
    assert cached == ["models--lab--b", "models--lab--c"]
    monkeypatch.setenv("FORENSICS_HUB_CACHE_MB", str(0.5 * size / 2**20))
    with pytest.raises(DetectorError, match="more than this server's whole Hub cache"):
        resolve_model_folder("lab/a")


# -- uploads ------------------------------------------------------------------------------------


def test_upload_limits_come_from_one_place_and_the_cli_applies_them(monkeypatch):
    monkeypatch.setenv("FORENSICS_MAX_IMAGE_MB", "0.0625")
    monkeypatch.setenv("FORENSICS_MAX_VIDEO_MB", "2")
    limits = settings.media_limits()
    assert limits.max_image_bytes == 65536 and limits.max_video_bytes == 2 * 2**20
    monkeypatch.setenv("FORENSICS_ZIP_MAX_BYTES", str(3 * 2**20))
    assert settings.max_upload_bytes() == 3 * 2**20  # private: the Train tab's zips get through the door
    monkeypatch.setenv("FORENSICS_MODE", "public")
    assert settings.max_upload_bytes() == 2 * 2**20  # public: Gradio's max_file_size is the video limit
    image = ROOT / "assets" / "examples" / "astronaut.jpg"  # 68,052 bytes
    env = dict(os.environ, FORENSICS_MAX_IMAGE_MB="0.0625", HF_HUB_OFFLINE="1")
    proc = subprocess.run([sys.executable, "-m", "forensics", "analyze", str(image), "--explain", "none"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stdout == "ERROR  astronaut.jpg: file is 0.1 MB; the limit is 0.0625 MB\n"
    monkeypatch.setenv("FORENSICS_MAX_VIDEO_MB", "lots")
    with pytest.raises(DetectorError, match="FORENSICS_MAX_VIDEO_MB='lots' is not a number of megabytes"):
        settings.media_limits()


# -- held analyses ------------------------------------------------------------------------------


def _result(faces: int) -> AnalysisResult:
    rng = np.random.default_rng(faces)
    result = AnalysisResult(input="clip.mp4", kind="video", detector="test")
    for i in range(faces):
        result.faces.append(FaceResult(frame=i, track=0, box=[0, 0, 10, 10], face_confidence=0.9,
                                       fake_probability=float(rng.random()), probabilities={}, crop_box=[0, 0, 10, 10],
                                       crop=rng.integers(0, 255, (224, 224, 3), dtype=np.uint8),
                                       heatmaps={m: rng.random((224, 224), dtype=np.float32)
                                                 for m in ("attention", "gradcam")}))
    return result


def test_holding_an_analysis_drops_frames_and_caps_its_faces():
    from forensics import service

    result = _result(faces=70)
    before = held.result_bytes(result)
    frames = [np.full((480, 480, 3), n, np.uint8) for n in range(4)]
    session = service.hold(service.Session(result, "test", frames=list(frames)))
    # the one frame the report shows stays (the most suspicious face's; no sampled indices: the first)
    assert session.frames[0] is frames[0] and session.frames[1:] == [None] * 3 and session.result is result
    kept = [f for f in result.faces if f.crop is not None]
    assert len(kept) == held.MAX_HELD_FACES
    assert min(f.fake_probability for f in kept) >= max(f.fake_probability for f in result.faces if f.crop is None)
    assert all(m.dtype == np.float16 for f in kept for m in f.heatmaps.values())
    assert held.result_bytes(result) < 0.6 * before


def test_holding_keeps_the_frame_its_report_shows_and_counts_it():
    result = _result(faces=3)
    frames = [np.full((48, 64, 3), n, np.uint8) for n in range(4)]
    frame = frames[2]
    held.slim(result, frames, keep_frames={2})
    assert frames[2] is frame and [f is None for f in frames] == [True, True, False, True]
    # what is kept counts against the budget
    assert held.result_bytes(result, frames) == held.result_bytes(result) + frame.nbytes
    none_kept = [np.zeros((4, 4, 3), np.uint8)] * 2
    held.slim(result, none_kept)
    assert none_kept == []


def test_held_analyses_share_one_budget_and_the_oldest_are_released(monkeypatch):
    from forensics import service
    from ui.present import face_panel

    one = _result(faces=8)
    held.slim(one)
    size = held.result_bytes(one)
    monkeypatch.setenv("FORENSICS_SESSION_MEMORY_MB", str(2.5 * size / 2**20))  # room for two
    store = held.HeldResults()
    results = [_result(faces=8) for _ in range(4)]
    frame_lists = [[np.zeros((8, 8, 3), np.uint8)] for _ in results]
    for r, frames in zip(results, frame_lists):
        store.hold(r, frames, keep_frames={0})
    assert [held.is_released(r) for r in results] == [True, True, False, False]
    assert [len(f) for f in frame_lists] == [0, 0, 1, 1]  # a released analysis's frame goes with it
    assert len(store) == 2 and store.total_bytes() <= 2.5 * size
    assert results[0].fake_probability is None and results[0].faces  # its numbers stay
    session = service.Session(results[0], "default")
    panel = face_panel(results[0], 0)
    assert all(image is None and held.RELEASED in caption for image, caption in panel)
    with pytest.raises(Exception, match="released to free the server's memory"):
        service.reexplain(session, "fake", "mean", 0.9)
    with pytest.raises(Exception, match="released to free the server's memory"):
        service.write_reports(session)  # a report without its crops and maps would mislead: none
    del results[2]  # a session Gradio dropped is forgotten, not counted
    assert len(store) == 1


def test_freed_memory_goes_back_once_the_server_is_idle_not_after_every_analysis(monkeypatch):
    trims = []
    monkeypatch.setattr(held, "return_freed_memory", lambda: trims.append(1))
    idle = held.IdleTrim(delay_s=30.0)
    monkeypatch.setattr(held, "IDLE_TRIM", idle)
    store = held.HeldResults()
    store.hold(_result(faces=2))
    first = idle._timer
    store.hold(_result(faces=2))  # a second analysis restarts the countdown: one trim waits, not two
    assert trims == [] and idle.pending and first.finished.is_set() and idle._timer is not first
    idle._timer.cancel()
    idle.delay_s = 0.05
    store.hold(_result(faces=2))
    for _ in range(400):
        if trims:
            break
        time.sleep(0.025)
    assert trims == [1] and not idle.pending


def test_the_server_asks_glibc_for_one_malloc_arena(monkeypatch):
    calls = []

    class FakeLibc:
        def mallopt(self, parameter, value):
            calls.append((parameter, value))
            return 1

    monkeypatch.setattr(held, "_LIBC", FakeLibc())
    assert held.limit_malloc_arenas() and calls == [(held.M_ARENA_MAX, 1)]


def test_the_server_log_line_names_the_mode_and_the_limits(monkeypatch):
    assert settings.describe().startswith("mode private: detectors any name, folder or Hub id; Hub downloads any")
    monkeypatch.setenv("FORENSICS_MODE", "public")
    monkeypatch.setenv("FORENSICS_MAX_VIDEO_MB", "100")
    assert settings.describe() == ("mode public: detectors registered only; Hub downloads none "
                                   "(at most 1024 MB each); uploads at most 100 MB; videos with a close call or no face "
                                   "sampled again at most 2 times")
    monkeypatch.setenv("FORENSICS_HUB_ALLOW", "any,org/*")  # "any" counts for nothing in public mode: not said
    monkeypatch.setenv("FORENSICS_MODELS", "lab/detector@v1")
    assert "; Hub downloads org/*, lab/detector (at most" in settings.describe()
    assert not settings.hub_allowed("evil/x") and settings.hub_allowed("org/x") and settings.hub_allowed("lab/detector")


def test_the_operator_bounds_how_often_a_close_call_video_is_sampled_again(monkeypatch, tmp_path):
    """``FORENSICS_LOOK_AGAIN`` caps the passes the app and its API may take (each costs about what its
    new frames cost); a bad value is a one-line error naming the variable."""
    import re

    from forensics import service
    from forensics.core import ForensicsError
    from forensics.explain import ExplainOptions

    det = load_detector(make_random_detector(tmp_path / "m", "timm-cnn", size=32), allow_untrained=True, cache=False)
    made = lambda asked: service._analyzer(det, [], "fake", ExplainOptions(), 16, look_again=asked).look_again  # noqa: E731
    monkeypatch.delenv(settings.LOOK_AGAIN_ENV, raising=False)
    assert settings.look_again_passes() == 2 and made(2) == 2 and made(0) == 0
    for value, passes in (("0", 0), ("1", 1), ("4", 4)):
        monkeypatch.setenv(settings.LOOK_AGAIN_ENV, value)
        assert settings.look_again_passes() == passes and made(2) == min(2, passes)
    for bad in ("-1", "two", "5", "1.5"):
        monkeypatch.setenv(settings.LOOK_AGAIN_ENV, bad)
        with pytest.raises(ForensicsError, match=rf"^FORENSICS_LOOK_AGAIN='{re.escape(bad)}' must be a whole number "
                                                 "from 0 to 4$"):
            settings.look_again_passes()


def test_the_video_tab_samples_again_as_often_as_the_operator_allows(monkeypatch):
    """The tab's box means "as the operator allows" (3 or 4 passes were once capped at the tab's own 2),
    and says how far that goes; with 0 it is off and says so."""
    import gradio as gr

    from ui import media
    from ui.common import engine
    from ui.video import VideoTab

    asked = []
    monkeypatch.setattr(engine, "analyze", lambda *args, look_again, **kw: asked.append(look_again))
    for value, label in (("4", "at up to about 16x the frames"), ("0", "sampling the video again is off")):
        monkeypatch.setenv(settings.LOOK_AGAIN_ENV, value)
        media.analyze("clip.mp4", "default", [], 16, "fake", "mean", 0.9, lambda *a, **k: None, False, False, True)
        with gr.Blocks():
            box = VideoTab().look_again
        assert label in box.label and box.value is (value != "0") and box.interactive is (value != "0")
    assert asked == [4, 0]



@pytest.mark.parametrize("setting", ["FORENSICS_LOOK_AGAIN=9", "FORENSICS_MAX_IMAGE_MB=abc", "FORENSICS_HUB_MAX_MB=-1",
                                     "FORENSICS_SESSION_MEMORY_MB=abc", "FORENSICS_TEMP_TTL_S=abc",
                                     "FORENSICS_ZIP_MAX_BYTES=1e9", "FORENSICS_MODELS=/no/such/folder",
                                     "FORENSICS_CONCURRENCY=two"])
def test_a_bad_setting_stops_the_server_at_its_start_in_one_line(setting, monkeypatch, capsys):
    """Not a traceback at the start, nor a server that starts and then fails every visitor's request
    (app.py's main in process; the first case also as `python app.py`)."""
    import app

    name, _, value = setting.partition("=")
    monkeypatch.setenv(name, value)
    monkeypatch.setattr(sys, "argv", ["app.py", "--port", "1"])
    with pytest.raises(SystemExit) as stopped:
        app.main()
    assert stopped.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("app.py: error: ") and name in last and repr(value) in last, last
    if name == "FORENSICS_LOOK_AGAIN":
        env = dict(os.environ, HF_HUB_OFFLINE="1", GRADIO_ANALYTICS_ENABLED="False")
        proc = subprocess.run([sys.executable, "app.py", "--port", "1"], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=120)
        assert proc.returncode == 2 and proc.stderr.strip() == last, proc.stderr
