"""Federated fine-tuning on Flower, really run: the smoke config in Flower's simulation engine (Ray),
with a site whose data is gone (its failures cost its update, not the run), a resume after the last
completed round, and the same apps under the deployment engine: a SuperLink and two SuperNodes on
localhost driven by `flwr run`."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, data_path

SMOKE = ROOT / "configs" / "federated-smoke.yaml"
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def crops(tmp_path_factory) -> Path:
    """One face-crop cache for the module's runs (cropping is the slow part of preparing a run)."""
    data_path("labels.csv")
    return tmp_path_factory.mktemp("crops")


def _config(tmp_path: Path, crops: Path, **changes) -> Path:
    config = yaml.safe_load(SMOKE.read_text())
    config.update({"data": str(data_path("labels.csv")), "cache": str(crops)}, **changes)
    path = tmp_path / f"federated-{len(list(tmp_path.glob('*.yaml')))}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_smoke_run_survives_a_failing_site_writes_a_model_folder_and_resumes(tmp_path, crops, capsys, recwarn):
    from forensics.cli import main as forensics_main
    from training.cli import main as training_main

    gone = {"name": "site-without-data", "data": str(tmp_path / "no-such-site" / "labels.csv")}
    clients = yaml.safe_load(SMOKE.read_text())["clients"] + [gone]
    out = tmp_path / "run"
    config = _config(tmp_path, crops, clients=clients, min_available_clients=3)
    assert training_main(["federated", "--config", str(config), "--out", str(out)]) == 0
    capsys.readouterr()
    model = out / "model"
    for name in ("config.json", "model.safetensors", "README.md", "training.json", "metrics.json", "report.html"):
        assert (model / name).is_file(), name
    record = json.loads((model / "training.json").read_text())
    fed = record["federated"]
    assert fed["strategy"] == "FedProx" and fed["mu"] == 0.01 and fed["rounds"] == 1
    (round1,) = [r for r in fed["rounds_history"] if r["round"] == 1]
    # The site whose data is gone failed; the two others were aggregated and the run went on.
    assert round1["clients_sampled"] == 3 and round1["clients_ok"] == 2 and round1["clients_failed"] == 1
    assert "does not exist on this node" in round1["failures"][0]
    assert {c["client"] for c in round1["clients"]} == {"photo-desk", "portrait-desk"}
    assert all(c["steps"] == 3 and c["num-examples"] > 0 for c in round1["clients"])
    assert 0.0 <= round1["server"]["auc"] <= 1.0 and round1["server"]["images"] > 0
    # Non-IID by source: each site holds only its own sources; generated faces on one site only.
    by_name = {c["name"]: c["train"] for c in fed["clients"]}
    assert set(by_name["photo-desk"]) == {"real/UTKFace"}
    assert set(by_name["portrait-desk"]) == {"real/FFHQ", "fake/Stable Diffusion 2.1 (SDFD)"}
    # Calibrated and measured as a central model is; the card carries the federated record.
    metrics = json.loads((model / "metrics.json").read_text())
    assert "ece" in metrics["calibration"] and metrics["validation_faces"] == sum(fed["server_evaluation"].values())
    card = (model / "README.md").read_text()
    assert "## Federated training" in card and "FedProx (mu 0.01)" in card and "`photo-desk`" in card
    assert (out / "rounds.html").stat().st_size > 10_000
    assert [r["round"] for r in json.loads((out / "federated_metrics.json").read_text())["rounds"]] == [0, 1]
    # Ray keeps hiding GPUs from the clients, which are allotted none, and says nothing about it.
    assert os.environ["RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO"] == "1"
    assert not [w for w in recwarn if "future versions of Ray" in str(w.message)]

    # The model folder is a detector like any other.
    photo = data_path("photos/face_recognition/obama.jpg")
    assert forensics_main(["analyze", str(photo), "--detector", str(model), "--explain", "none",
                           "--out", str(tmp_path / "maps"), "--json", "-"]) == 0
    analysed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert analysed["error"] is None and analysed["detector"] == str(model)  # as chosen: the folder
    assert json.loads((model / "config.json").read_text())["forensics"]["name"] == "federated-smoke"
    assert len(analysed["faces"]) == 1 and 0.0 <= analysed["fake_probability"] <= 1.0

    # A restart resumes after the last completed round: round 1 is kept as it was, only round 2 runs.
    # One answer is enough here: on a loaded machine the simulation once sampled two of the three
    # sites for round 2, one of them the failing one (sampling is Flower's, not this test's subject).
    resumed = _config(tmp_path, crops, clients=clients, min_available_clients=3, min_train_clients=1, rounds=2,
                      evaluate=False)
    assert training_main(["federated", "--config", str(resumed), "--out", str(out), "--resume"]) == 0
    fed2 = json.loads((model / "training.json").read_text())["federated"]
    assert [r["round"] for r in fed2["rounds_history"]] == [0, 1, 2]
    assert fed2["rounds_history"][1] == round1
    round2 = fed2["rounds_history"][2]
    assert round2["clients_ok"] >= 1 and round2["clients_ok"] + round2["clients_failed"] == round2["clients_sampled"]
    assert all("does not exist on this node" in f for f in round2["failures"])
    assert json.loads((out / "checkpoint" / "state.json").read_text())["round"] == 2


def test_three_labels_for_a_binary_architecture_stop_in_one_line(tmp_path, crops):
    from training.cli import main as training_main

    config = _config(tmp_path, crops, labels=["real", "manipulated", "synthetic"])  # the smoke model is patch-level
    with pytest.raises(SystemExit, match=r"^the patch-level architecture patch\S* scores real vs fake only: choose a binary"):
        training_main(["federated", "--config", str(config), "--out", str(tmp_path / "run")])
    assert not (tmp_path / "run" / "model").exists()


def test_a_round_below_the_minimum_of_clients_stops_with_a_clear_error(monkeypatch):
    """Flower's own messages through the strategy: a failed and a missing reply are counted; below
    ``min_train_clients`` the round is refused (the checkpoint keeps the last completed one)."""
    import numpy as np
    from flwr.app import ArrayRecord, ConfigRecord, Error, Message, MetricRecord, RecordDict
    from flwr.supercore.task_identity import TaskIdentity

    from training.federated.server_app import RoundFedProx

    for key in ("_run_id", "_task_id", "_node_id"):  # what a running ServerApp process has set
        monkeypatch.setattr(TaskIdentity, key, 1)
    sent = Message(RecordDict(), dst_node_id=7, message_type="train")
    ok = Message(RecordDict({"arrays": ArrayRecord([np.full(3, 2.0)]), "client": ConfigRecord({"name": "a"}),
                             "metrics": MetricRecord({"num-examples": 4, "train-loss": 0.5})}), reply_to=sent)
    failed = Message(Error(code=0, reason="ClientApp raised: data gone"), reply_to=sent)
    strict = RoundFedProx(proximal_mu=0.1, min_train_nodes=2)
    strict.rounds[1] = {"clients_sampled": 3}  # three asked, one answered, one failed, one never replied
    with pytest.raises(RuntimeError, match=r"round 1: 1 client\(s\) answered, fewer than min_train_clients 2 "
                                           r"\(node 7: ClientApp raised: data gone; no reply within"):
        strict.aggregate_train(1, [ok, failed])
    lenient = RoundFedProx(proximal_mu=0.1, min_train_nodes=1, round_offset=4)  # resumed after round 4
    lenient.rounds[5] = {"clients_sampled": 2}
    arrays, metrics = lenient.aggregate_train(1, [ok, failed])
    assert np.allclose(arrays.to_numpy_ndarrays()[0], 2.0) and metrics["train-loss"] == 0.5
    assert lenient.rounds[5]["clients_ok"] == 1 and lenient.rounds[5]["clients_failed"] == 1


def test_proximal_term_is_half_mu_times_the_squared_distance_to_the_global_model():
    import torch

    from training.federated.task import ProximalLoss

    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2)
    x, y = torch.randn(5, 4), torch.tensor([0, 1, 0, 1, 1])
    loss = ProximalLoss(model, mu=0.5)
    assert float(loss.penalty(model).detach()) == 0.0
    with torch.no_grad():
        model.weight.add_(0.1)  # 8 weights moved by 0.1: squared distance 0.08
    plain = torch.nn.functional.cross_entropy(model(x), y)
    assert torch.isclose(loss(model, x, y) - plain, torch.tensor(0.5 / 2 * 0.08), atol=1e-6)
    assert torch.isclose(ProximalLoss(model, mu=0.0)(model, x, y), plain)  # mu = 0: FedAvg's plain loss


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(args: list[str], log: Path, env: dict) -> subprocess.Popen:
    # Each in its own session: SuperLink and SuperNodes spawn helpers (superexec, apps) killed with them.
    return subprocess.Popen(args, cwd=ROOT, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def _stop(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    for proc in procs:
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)


def _wait_for(what: str, ready, seconds: float = 90.0) -> None:
    deadline = time.monotonic() + seconds
    while not ready():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not ready after {seconds:.0f} s")
        time.sleep(0.5)


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_deployment_engine_superlink_and_two_supernodes_on_localhost(tmp_path, crops):
    home = tmp_path / "flwr-home"
    home.mkdir()
    link = _free_port()
    (home / "config.toml").write_text(f'[superlink]\ndefault = "local-test"\n\n[superlink.local-test]\n'
                                      f'address = "127.0.0.1:{link}"\ninsecure = true\n')
    env = dict(os.environ, FLWR_HOME=str(home), FLWR_TELEMETRY_ENABLED="0", HF_HUB_OFFLINE="1",
               PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
               PYTHONPATH=f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    config = _config(tmp_path, crops, evaluate=False)
    out = tmp_path / "run"
    procs = [_start([str(BIN / "flower-superlink"), "--insecure", "--port", str(link),
                     "--disable-runtime-dependency-installation"], tmp_path / "superlink.log", env)]
    try:
        _wait_for("SuperLink", lambda: _listening(link))
        for i in range(2):  # each site's node says which faces are its own
            procs.append(_start([str(BIN / "flower-supernode"), "--insecure", "--superlink", f"127.0.0.1:{link}",
                                 "--port", str(_free_port()), "--node-config", f"partition-id={i}"],
                                tmp_path / f"supernode{i}.log", env))
        log = tmp_path / "superlink.log"
        _wait_for("two SuperNodes", lambda: log.read_text(errors="replace").count("Activated node_id") >= 2)
        run = subprocess.run([str(BIN / "flwr"), "run", str(ROOT / "training" / "federated" / "flower-app"),
                              "local-test", "--stream", "--run-config", f"config='{config}' out='{out}'"],
                             cwd=ROOT, env=env, capture_output=True, text=True, timeout=420)
    finally:
        _stop(procs)
    logs = "\n".join(p.read_text()[-2000:] for p in tmp_path.glob("*.log"))
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:] + logs
    assert "aggregate_train: Received 2 results and 0 failures" in run.stdout + run.stderr
    record = json.loads((out / "model" / "training.json").read_text())
    (round1,) = [r for r in record["federated"]["rounds_history"] if r["round"] == 1]
    assert round1["clients_ok"] == 2 and {c["client"] for c in round1["clients"]} == {"photo-desk", "portrait-desk"}
    assert (out / "model" / "model.safetensors").is_file() and (out / "model" / "README.md").is_file()
    assert all(p.poll() is not None for p in procs)


def test_federated_job_settings_are_checked_and_become_the_federated_command(tmp_path):
    from forensics.core import JobError
    from forensics.jobs import JobSettings, build_command, validate

    with pytest.raises(JobError, match="a federated job needs its YAML config"):
        validate(JobSettings(kind="federated", data=str(tmp_path)))
    with pytest.raises(JobError, match="mu -1.0 must be from 0"):
        validate(JobSettings(kind="federated", data=str(SMOKE), mu=-1))
    settings = validate(JobSettings(kind="federated", data=str(SMOKE), epochs=3, max_steps=7, mu=0))
    command = build_command(settings, tmp_path / "run", "cache", "fed", tmp_path / "models")
    assert command[1:] == ["-m", "training", "federated", "--config", str(SMOKE), "--out", str(tmp_path / "run"),
                           "--cache", "cache", "--rounds", "3", "--mu", "0.0", "--name", "fed", "--local-steps", "7"]
    from training.cli import build_parser

    args = build_parser().parse_args(command[3:])  # the training CLI takes every option the job passes
    assert (args.rounds, args.mu, args.local_steps, args.cache) == (3, 0.0, 7, "cache")


def test_partitions_by_source_and_by_dirichlet_keep_groups_whole():
    from training.data import CachedFace
    from training.federated.partitions import assign_by_source, assign_dirichlet

    def face(source: str, group: int, frame: int = 0) -> CachedFace:
        return CachedFace(f"{source}-{group}-{frame}.png", "real", source, f"{source}-{group}", [], 1.0, 0.0)

    pool = [face("A", g) for g in range(40)] + [face("B", g) for g in range(40)] + \
        [face("clips", g, f) for g in range(6) for f in range(5)]  # six clips of five frames
    specs = [{"name": "a", "sources": ["A"]}, {"name": "ab", "sources": ["A", "B"]}, {"name": "v", "videos": "x"}]
    a, ab, v = assign_by_source(pool, specs, "clips")
    assert {f.source for f in a} == {"A"} and {f.source for f in ab} == {"A", "B"} and {f.source for f in v} == {"clips"}
    assert len([f for f in a if f.source == "A"]) == 20 and len(v) == 30  # a shared source split evenly
    assert not {f.group for f in a} & {f.group for f in ab}
    skewed = assign_dirichlet(pool, 3, alpha=0.1, seed=0)
    assert sorted(f.crop_path for part in skewed for f in part) == sorted(f.crop_path for f in pool)
    for part in skewed:  # frames of one clip never straddle two clients
        for other in skewed:
            if other is not part:
                assert not {f.group for f in part} & {f.group for f in other}
    # Small alpha: each source lands mostly on one client.
    for source in ("A", "B"):
        counts = sorted(sum(f.source == source for f in part) for part in skewed)
        assert counts[-1] >= 0.7 * 40
