"""The Hugging Face Hub: models published by others load from a local cache in Hub layout (with
revisions, labels mapped to real/fake, pickles refused, remote code never run); a push goes to a
local HTTP server that speaks the endpoints huggingface_hub 2.4.0 calls; offline, both fail fast."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch

from forensics.detectors import load_detector, resolve_model_folder
from forensics.detectors.random_models import make_random_detector
from forensics.core import DetectorError, HubError
from tests.conftest import ROOT, refusals_without_torch

SHA = "0123456789abcdef0123456789abcdef01234567"
SHA2 = "89abcdef0123456789abcdef0123456789abcdef"


def _publish(cache: Path, repo_id: str, folder: Path, sha: str = SHA, refs: tuple[str, ...] = ("main",)) -> Path:
    """Lay a folder out as huggingface_hub caches a download: models--org--name/snapshots/<sha>, refs/<branch>."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / sha
    shutil.copytree(folder, snapshot)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    for ref in refs:
        (repo / "refs" / ref).write_text(sha)
    return snapshot


def _as_published(folder: Path, drop_forensics: bool = True, **config_changes) -> Path:
    """A model folder as someone else publishes it: no `forensics` block, their own labels."""
    config = json.loads((folder / "config.json").read_text())
    if drop_forensics:
        config.pop("forensics", None)
    config.update(config_changes)
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "README.md").write_text("# Someone's deepfake detector\n")
    return folder


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


@pytest.mark.parametrize("id2label, fake", [({"0": "Real", "1": "Fake"}, ["Fake"]),
                                            ({"0": "fake", "1": "real"}, ["fake"]),
                                            ({"0": "Realism", "1": "Deepfake"}, ["Deepfake"])])
def test_transformers_vit_classifier_published_by_others_loads_from_the_cache(hub_cache, tmp_path, id2label, fake):
    folder = make_random_detector(tmp_path / "vit", "hf-vit", size=32)
    labels = [id2label[k] for k in sorted(id2label)]
    _as_published(folder, id2label=id2label, label2id={v: int(k) for k, v in id2label.items()},
                  architectures=["ViTForImageClassification"], _name_or_path="google/vit-base-patch16-224-in21k")
    _publish(hub_cache, "someone/vit-deepfake", folder)
    detector = load_detector("someone/vit-deepfake", cache=False)
    assert detector.kind == "transformers" and detector.labels == labels
    assert detector.describe()["fake_labels"] == fake
    crops = [torch.randint(0, 255, (32, 32, 3), dtype=torch.uint8).numpy()]
    probabilities = detector.predict_crops(crops)
    assert detector.fake_probability(probabilities)[0] == pytest.approx(probabilities[0, labels.index(fake[0])])


def test_timm_hf_hub_model_with_revisions_loads_from_the_cache(hub_cache, tmp_path):
    v1 = _as_published(make_random_detector(tmp_path / "v1", "timm-vit", size=32, labels=("authentic", "manipulated")))
    v2 = _as_published(make_random_detector(tmp_path / "v2", "timm-cnn", size=32, labels=("real", "fake")))
    first = _publish(hub_cache, "timm-user/face-vit", v1, SHA, refs=("v1",))
    second = _publish(hub_cache, "timm-user/face-vit", v2, SHA2, refs=("main",))
    assert resolve_model_folder("hf-hub:timm-user/face-vit") == second  # timm's own spelling, refs/main
    assert resolve_model_folder("timm-user/face-vit@v1") == first  # a branch or tag
    assert resolve_model_folder(f"timm-user/face-vit@{SHA}") == first  # a commit
    detector = load_detector("timm-user/face-vit@v1", cache=False)
    assert detector.kind == "timm-vit" and detector.labels == ["authentic", "manipulated"]
    assert detector.describe()["fake_labels"] == ["manipulated"]
    assert load_detector("timm-user/face-vit", cache=False).kind == "timm-cnn"
    with pytest.raises(DetectorError, match="offline and not in the local cache"):
        resolve_model_folder("timm-user/face-vit@v9")


def test_cli_pull_loads_a_cached_hub_model_and_refuses_a_bad_id_before_torch(hub_cache, tmp_path, capsys):
    from forensics.cli import main

    _publish(hub_cache, "someone/face-cnn", _as_published(make_random_detector(tmp_path / "cnn", "timm-cnn", size=32)))
    assert main(["pull", "someone/face-cnn@main"]) == 0
    described = json.loads(capsys.readouterr().out)
    assert described["kind"] == "timm-cnn" and described["input_size"] == 32
    (code, line), = refusals_without_torch("forensics.cli", [["pull", "bad//id"]])
    assert code == 1 and line.startswith("error: detector 'bad//id' is not a model folder, a bundled name")


class _Payload:
    """Not a tensor: unpickling it would run this module's code, which weights_only refuses."""


def test_pickled_only_weights_are_refused_and_remote_code_never_runs(hub_cache, tmp_path):
    folder = _as_published(make_random_detector(tmp_path / "pickled", "timm-cnn", size=32))
    state = load_detector(folder, allow_untrained=True, cache=False).model.state_dict()
    (folder / "model.safetensors").unlink()
    torch.save({"state": state, "payload": _Payload()}, folder / "pytorch_model.bin")
    _publish(hub_cache, "evil/pickled", folder)
    with pytest.raises(DetectorError, match="refused: it does not load with weights_only=True") as err:
        load_detector("evil/pickled", cache=False)
    assert "\n" not in str(err.value) and len(str(err.value)) < 400

    # A plain state dict in a .bin is tensors only: weights_only accepts it.
    torch.save(state, folder / "pytorch_model.bin")
    _publish(hub_cache, "fair/pickled", folder)
    assert load_detector("fair/pickled", cache=False).kind == "timm-cnn"

    # Remote code: the config points at a module in the repo; it is never imported.
    vit = _as_published(make_random_detector(tmp_path / "remote", "hf-vit", size=32),
                        auto_map={"AutoModelForImageClassification": "modeling_evil.EvilModel"})
    marker = tmp_path / "remote-code-ran"
    (vit / "modeling_evil.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    _publish(hub_cache, "evil/remote-code", vit)
    assert load_detector("evil/remote-code", cache=False).kind == "transformers"
    assert not marker.exists()


def test_online_a_repo_without_safetensors_has_its_bin_fetched_and_checked(tmp_path, monkeypatch):
    """Over HTTP from the local Hub server: the repo's listing shows no safetensors, so (private
    mode) its pytorch_model.bin is fetched with the configs, and it loads only because it holds
    tensors alone. Its code file is listed and never fetched."""
    from huggingface_hub import constants

    folder = _as_published(make_random_detector(tmp_path / "bin-only", "timm-cnn", size=32))
    state = load_detector(folder, allow_untrained=True, cache=False).model.state_dict()
    torch.save(state, tmp_path / "weights.bin")
    server = start_fake_hub()
    try:
        _FakeHub.repos["old/bin-only"] = {"config.json": (folder / "config.json").read_bytes(),
                                          "README.md": (folder / "README.md").read_bytes(),
                                          "pytorch_model.bin": (tmp_path / "weights.bin").read_bytes(),
                                          "modeling_evil.py": b"raise SystemExit('remote code ran')\n"}
        monkeypatch.setenv("HF_HUB_OFFLINE", "0")
        monkeypatch.setenv("FORENSICS_MODE", "private")
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        use_local_hub(monkeypatch, server)
        monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
        detector = load_detector("old/bin-only@v2", cache=False)
    finally:
        server.shutdown()
    assert detector.kind == "timm-cnn"
    fetched = sorted(path.rsplit("/", 1)[1] for path, _ in _FakeHub.requests if path.startswith("GET /old/bin-only/resolve"))
    assert fetched == ["README.md", "config.json", "pytorch_model.bin"]
    assert any(path == "GET /api/models/old/bin-only/tree/v2" for path, _ in _FakeHub.requests)


def test_uncached_hub_id_offline_fails_fast_with_one_line(hub_cache):
    start = time.perf_counter()
    with pytest.raises(DetectorError) as err:
        resolve_model_folder("nobody/not-cached@main")
    assert time.perf_counter() - start < 10
    # the revision asked for is named: it is what the cache lacks (the repository may be cached at another)
    assert str(err.value) == "Hub model 'nobody/not-cached@main': offline and not in the local cache"
    with pytest.raises(DetectorError) as err:
        resolve_model_folder("nobody/not-cached")
    assert str(err.value) == "Hub model 'nobody/not-cached': offline and not in the local cache"


# -- push ----------------------------------------------------------------------------------------


class _FakeHub(BaseHTTPRequestHandler):
    """The endpoints create_repo + upload_folder call (huggingface_hub 2.4.0, hf_xet installed):
    POST /api/repos/create, /api/validate-yaml (README metadata), /api/models/{repo}/preupload/{rev}
    (answered "regular", so small files go inline and neither LFS nor Xet is involved) and
    /api/models/{repo}/commit/{rev} (NDJSON, files base64-encoded).

    And the endpoints a pull calls: GET /api/models/{repo}/revision/{rev} (repo_info),
    /api/models/{repo}/tree/{rev} (the file listing, with sizes) and HEAD/GET
    /{repo}/resolve/{rev}/{file} (the files, plain HTTP). ``repos`` holds each repo's files;
    ``declared`` may give a file a listed size other than its length (a large repo, without
    writing gigabytes)."""

    requests: list[tuple[str, dict]] = []
    files: dict[str, bytes] = {}
    repos: dict[str, dict[str, bytes]] = {}
    declared: dict[tuple[str, str], int] = {}

    def do_GET(self):
        self._pull(with_body=True)

    def do_HEAD(self):
        self._pull(with_body=False)

    def _pull(self, with_body: bool) -> None:
        import hashlib
        from urllib.parse import unquote, urlparse

        path = unquote(urlparse(self.path).path)
        self.requests.append((f"{self.command} {path}", dict(self.headers)))
        parts = path.strip("/").split("/")
        if parts[:2] == ["api", "models"] and len(parts) >= 6 and parts[4] in ("revision", "tree"):
            repo = "/".join(parts[2:4])
            if repo not in self.repos:
                return self._not_found()
            files = self.repos[repo]
            if parts[4] == "revision":
                return self._reply({"id": repo, "sha": SHA, "siblings": [{"rfilename": f} for f in files]})
            return self._reply([{"type": "file", "path": f, "oid": hashlib.sha1(data).hexdigest(),
                                 "size": self.declared.get((repo, f), len(data))} for f, data in files.items()])
        if len(parts) >= 5 and parts[2] == "resolve":
            repo, name = "/".join(parts[:2]), "/".join(parts[4:])
            data = self.repos.get(repo, {}).get(name)
            if data is None:
                return self._not_found()
            self.send_response(200)
            self.send_header("X-Repo-Commit", SHA)
            self.send_header("ETag", f'"{hashlib.sha1(data).hexdigest()}"')
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if with_body:
                self.wfile.write(data)
            return None
        return self._not_found()

    def _not_found(self) -> None:
        body = b'{"error": "Repository not found"}'
        self.send_response(404)
        self.send_header("X-Error-Code", "RepoNotFound")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, *args):
        pass

    def _reply(self, data: dict, status: int = 200) -> None:
        body = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.requests.append((self.path, dict(self.headers)))
        host = f"http://{self.headers['host']}"
        if self.path == "/api/repos/create":
            payload = json.loads(body)
            self.requests[-1][1]["payload"] = payload
            return self._reply({"url": f"{host}/{payload['organization']}/{payload['name']}"})
        if self.path == "/api/validate-yaml":
            return self._reply({})
        parts = self.path.split("/")  # /api/models/{org}/{name}/{preupload|commit}/{revision}
        if len(parts) == 7 and parts[5] == "preupload":
            files = json.loads(body)["files"]
            return self._reply({"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False,
                                           "oid": None} for f in files]})
        if len(parts) == 7 and parts[5] == "commit":
            for line in body.splitlines():
                item = json.loads(line)
                if item["key"] == "file":
                    self.files[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
                assert item["key"] in ("header", "file"), item["key"]  # no lfsFile: nothing went through LFS/Xet
            return self._reply({"commitUrl": f"{host}/{parts[3]}/{parts[4]}/commit/{SHA}", "commitOid": SHA})
        self._reply({"error": f"unexpected {self.path}"}, 404)


def start_fake_hub() -> ThreadingHTTPServer:
    """The local Hub-API server on a free loopback port, emptied; ``.shutdown()`` when done."""
    _FakeHub.requests, _FakeHub.files, _FakeHub.repos, _FakeHub.declared = [], {}, {}, {}
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeHub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def use_local_hub(monkeypatch, server: ThreadingHTTPServer) -> str:
    """Point huggingface_hub (in this process) at the local server, as HF_ENDPOINT would at start."""
    from huggingface_hub import constants

    endpoint = f"http://127.0.0.1:{server.server_port}"
    monkeypatch.setattr(constants, "ENDPOINT", endpoint)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", endpoint + "/{repo_id}/resolve/{revision}/{filename}")
    return endpoint


@pytest.fixture
def fake_hub(monkeypatch):
    from huggingface_hub import constants

    server = start_fake_hub()
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_TOKEN", "hf_local_test_token")
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


@pytest.fixture
def trained_folder(tmp_path):
    """A model folder as a training job leaves it: safetensors, training record, metrics."""
    folder = make_random_detector(tmp_path / "model", "timm-vit", size=32)
    config = json.loads((folder / "config.json").read_text())
    config["forensics"]["trained"] = True
    (folder / "config.json").write_text(json.dumps(config))
    record = {"config": {"model": "vit-tiny", "data": "/data/faces", "epochs": 3, "batch_size": 8, "lr": 0.0003,
                         "image_size": 32, "sbi": True, "labels": ["real", "fake"], "holdout_sources": ["GAN"],
                         "val_fraction": 0.2, "max_padding": 0.15, "weight_decay": 0.05, "seed": 0,
                         "precision": "no"},
              "counts": {"train": {"real/FFHQ": 40}, "validation": {"real/FFHQ": 10, "fake/GAN": 5}},
              "best_epoch": {"epoch": 2, "train_loss": 0.41, "val": {"n": 20, "roc_auc": 0.875, "f1": 0.8,
                                                                       "accuracy": 0.75}},
              "command": "python -m training train --model vit-tiny --data /data/faces"}
    (folder / "training.json").write_text(json.dumps(record))
    (folder / "optimizer.pt").write_bytes(b"pickled optimizer state, never uploaded")
    return folder


def test_push_creates_a_private_repo_and_uploads_card_and_safetensors_only(fake_hub, trained_folder):
    from forensics.hub import push_model

    result = push_model(str(trained_folder), "me/face-vit", endpoint=fake_hub)
    assert result["private"] is True and result["repo_url"] == f"{fake_hub}/me/face-vit"
    paths = [path for path, _ in _FakeHub.requests]
    assert paths == ["/api/repos/create", "/api/validate-yaml", "/api/models/me/face-vit/preupload/main",
                     "/api/models/me/face-vit/commit/main"]
    create = _FakeHub.requests[0][1]
    assert create["payload"] == {"name": "face-vit", "organization": "me", "visibility": "private", "type": "model"}
    assert all(headers.get("authorization") == "Bearer hf_local_test_token" for _, headers in _FakeHub.requests)
    assert set(_FakeHub.files) == {"README.md", "config.json", "model.safetensors", "training.json"}
    assert _FakeHub.files["model.safetensors"] == (trained_folder / "model.safetensors").read_bytes()
    card = _FakeHub.files["README.md"].decode()
    assert card.startswith("---\nlibrary_name: timm\n")
    for heading in ("## Training data and splits", "## Training settings", "## Validation during training",
                    "## Intended use and limits"):
        assert heading in card, heading
    assert "| ROC-AUC | 0.875 |" in card and "/data/faces" in card and "| `epochs` | 3 |" in card
    assert "python -m training train --model vit-tiny" in card


def test_push_public_with_measured_metrics(fake_hub, trained_folder):
    from forensics.hub import push_model

    metrics = {"summary": {"roc_auc": 0.91, "f1": 0.83, "accuracy": 0.8, "threshold": 0.5, "tuned_threshold": 0.45},
               "validation_faces": 15, "evaluated_images": 25, "calibration": {"ece": 0.05},
               "per_source": {"GAN vs all held-out reals": {"roc_auc": 0.7, "f1": 0.6}},
               "robustness_auc": {"images": 20, "jpeg_50": 0.8}}
    (trained_folder / "metrics.json").write_text(json.dumps(metrics))
    push_model(str(trained_folder), "me/face-vit", private=False, endpoint=fake_hub)
    assert _FakeHub.requests[0][1]["payload"]["visibility"] == "public"
    card = _FakeHub.files["README.md"].decode()
    assert "| ROC-AUC | 0.910 |" in card and "metrics.json" in _FakeHub.files


def test_push_refuses_pickled_only_weights_bad_ids_and_missing_tokens(fake_hub, trained_folder, monkeypatch):
    from forensics.hub import push_model

    with pytest.raises(HubError, match="repo id 'no-slash' must look like"):
        push_model(str(trained_folder), "no-slash", endpoint=fake_hub)
    pickled = trained_folder.parent / "pickled"
    shutil.copytree(trained_folder, pickled)
    (pickled / "model.safetensors").unlink()
    (pickled / "pytorch_model.bin").write_bytes(b"pickle")
    with pytest.raises(HubError, match=r"refused: only pickled weights \(optimizer.pt, pytorch_model.bin\)"):
        push_model(str(pickled), "me/pickled", endpoint=fake_hub)
    monkeypatch.delenv("HF_TOKEN")
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(trained_folder.parent / "no-token-here"))
    with pytest.raises(HubError, match="no Hugging Face token: set HF_TOKEN or run `hf auth login`"):
        push_model(str(trained_folder), "me/face-vit", endpoint=fake_hub)
    inside = ROOT / ".pytest_cache" / "hf-token-test"  # a token file inside the repository is refused
    inside.parent.mkdir(exist_ok=True)
    inside.write_text("hf_leaked")
    try:
        monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(inside))
        with pytest.raises(HubError, match="is inside the repository"):
            push_model(str(trained_folder), "me/face-vit", endpoint=fake_hub)
    finally:
        inside.unlink()
    assert _FakeHub.requests == []  # every refusal came before the network


def test_push_to_an_unreachable_hub_fails_fast(trained_folder, monkeypatch):
    from huggingface_hub import constants

    from forensics.hub import push_model

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_TOKEN", "hf_x")
    start = time.perf_counter()
    with pytest.raises(HubError, match="cannot reach http://127.0.0.1:9"):
        push_model(str(trained_folder), "me/x", endpoint="http://127.0.0.1:9")
    assert time.perf_counter() - start < 10


def test_cli_push_offline_fails_fast_with_one_line(trained_folder):
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_TOKEN="hf_x")
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "forensics", "push", str(trained_folder), "me/x"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert time.perf_counter() - start < 10
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr == "error: offline (HF_HUB_OFFLINE=1): pushing to the Hub needs the network; unset HF_HUB_OFFLINE\n"
