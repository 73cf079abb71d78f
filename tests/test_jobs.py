"""Background jobs for real: tiny `python -m training` runs as subprocesses, a real SQLite store,
the queue, the thread cap, cancel (the processes really stop), restart survival with resume from
the checkpoint, publishing into the catalog, and the `python -m forensics jobs` command line."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from forensics import catalog
from forensics.core import JobError
from forensics.jobs import JobSettings, JobStore, build_command, process_start_token, validate
from tests.conftest import ROOT, data_path

# One epoch of two steps on 32 px crops of a tiny architecture, validation on a third of the faces.
TINY = dict(model="patch-tiny", epochs=1, batch_size=2, image_size=32, max_steps=2,
            extra=["--holdout-sources", "--val-fraction", "0.34"])
TIMEOUT_S = 240


def gone(pid: int | None) -> bool:
    """No such process, or a zombie (it has exited; only its parent's bookkeeping remains)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return True
    return state in ("Z", "X")


def wait_for(predicate, timeout: float = TIMEOUT_S, every: float = 0.2):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s")


def wait_done(store: JobStore, job_id: int):
    wait_for(lambda: not store.get(job_id).active)
    return store.get(job_id)


@pytest.fixture(scope="module")
def faces(tmp_path_factory) -> Path:
    """An ImageFolder tree: 6 real faces (FFHQ) and 2 StyleGAN2 faces."""
    root = tmp_path_factory.mktemp("faces")
    for label, folder, count in (("real", "faces/real/ffhq", 6), ("fake", "faces/fake/stylegan2_tpdne", 2)):
        (root / label).mkdir()
        for path in sorted(data_path(folder).glob("*.jpg"))[:count]:
            shutil.copy(path, root / label / path.name)
    return root


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """A FORENSICS_HOME of its own, one job at a time, one thread per job."""
    home = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FORENSICS_HOME", str(home))
        mp.setenv("FORENSICS_MAX_JOBS", "1")
        mp.setenv("FORENSICS_JOB_THREADS", "1")
        yield home


@pytest.fixture(scope="module")
def base_detector(model_dirs, tmp_path_factory) -> Path:
    """A patch-level detector marked trained: what a fine-tune starts from."""
    folder = shutil.copytree(model_dirs["patch"], tmp_path_factory.mktemp("base") / "patch-base")
    config = json.loads((folder / "config.json").read_text())
    config["forensics"]["trained"] = True
    (folder / "config.json").write_text(json.dumps(config))
    return folder


@pytest.fixture(scope="module")
def two_jobs(home, faces, base_detector):
    """A training job and a fine-tune submitted together: the second waits for the first."""
    store = JobStore()
    first = store.submit(JobSettings(kind="train", data=str(faces), name="tiny-a", **TINY))
    second = store.submit(JobSettings(kind="finetune", data=str(faces), base=str(base_detector),
                                      **{**TINY, "model": "hybrid"}))
    seen = {"first": first, "second": second}
    child = wait_for(lambda: store.get(first.id).child_pid)
    seen["child_environ"] = wait_for(lambda: _environ(child), timeout=10, every=0.02)
    seen["second_while_first_runs"] = store.get(second.id).status
    seen["first_done"], seen["second_done"] = wait_done(store, first.id), wait_done(store, second.id)
    return store, seen


def _environ(pid: int) -> dict | None:
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError:
        return None
    return dict(item.split("=", 1) for item in raw.decode(errors="replace").split("\0") if "=" in item) or None


def test_jobs_queue_run_in_capped_processes_and_publish_their_models(two_jobs, base_detector):
    store, seen = two_jobs
    first, second = seen["first_done"], seen["second_done"]
    assert seen["first"].status == "running" and seen["second"].status == "queued"
    assert seen["second_while_first_runs"] == "queued"  # one job at a time: the fine-tune waited
    assert first.status == second.status == "finished", (first.error, second.error)
    assert second.started_at >= first.finished_at - 0.5
    assert seen["child_environ"]["OMP_NUM_THREADS"] == seen["child_environ"]["MKL_NUM_THREADS"] == "1"
    assert first.pid != first.child_pid and gone(first.pid) and gone(first.child_pid)

    # The model is in the catalog (and so in the app's detector boxes), with its card.
    assert first.model_dir == str(catalog.job_models_dir() / "tiny-a")
    assert catalog.available_detectors()["tiny-a"] == Path(first.model_dir)
    card = (Path(first.model_dir) / "README.md").read_text()
    assert "python -m training train --model patch-tiny" in card and "## Validation during training" in card
    assert "## Intended use and limits" in card and f"Data: `{seen['first'].settings['data']}`" in card
    from forensics.detectors import load_detector

    assert load_detector("tiny-a").labels == ["real", "fake"]  # trained: offered and loadable
    assert 0.0 <= first.metrics["val_roc_auc"] <= 1.0 and first.metrics["best_epoch"] == 1
    assert not (Path(first.run_dir) / "model").exists() and (Path(first.run_dir) / "checkpoint").is_dir()

    # The fine-tune started from the base detector's weights, with its architecture.
    assert second.command[second.command.index("--init-from") + 1] == str(base_detector)
    assert second.command[second.command.index("--model") + 1] == "patch"
    assert json.loads((Path(second.model_dir) / "config.json").read_text())["architecture"] == "forensics_patch_cnn"

    # What the Train tab shows: progress, log, curves.
    assert first.progress() == (1.0, "finished")
    assert "epoch 1: loss" in first.log_tail() and "job 1 finished" in first.log_tail()
    from ui.train import curves_figure, job_card, job_status

    figure = curves_figure(first)
    assert [t.name for t in figure.data] == ["epoch mean loss", "validation ROC-AUC", "validation F1"]
    assert "finished" in job_status(first) and "val_roc_auc" in job_status(first)
    assert job_card(first).startswith("#### Model card") and "\n##### Training data and splits" in job_card(first)
    import gradio as gr
    import pandas as pd

    from ui.train import pick_job

    table = pd.DataFrame([[2, "b"], [1, "a"]], columns=["id", "name"])
    assert pick_job(table, gr.SelectData(None, {"index": [1, 1], "value": "a"})) == 1


def test_cancel_stops_a_running_job_and_a_queued_one_never_starts(home, faces):
    store = JobStore()
    running = store.submit(JobSettings(kind="train", data=str(faces), **{**TINY, "epochs": 50, "max_steps": None}))
    queued = store.submit(JobSettings(kind="train", data=str(faces), **TINY))
    assert store.cancel(queued.id).status == "cancelled"
    job = store.get(running.id)
    child = wait_for(lambda: store.get(running.id).child_pid)
    job = store.get(running.id)
    assert not gone(job.pid) and not gone(child)
    start = time.time()
    cancelled = store.cancel(running.id)
    assert time.time() - start < 15
    assert cancelled.status == "cancelled" and cancelled.error == "cancelled"
    assert gone(job.pid) and gone(child)  # the supervisor and the training process
    time.sleep(1.0)  # a late report from a dying supervisor must not overwrite the cancel
    assert store.get(running.id).status == "cancelled" and store.get(queued.id).pid is None
    with pytest.raises(JobError, match=f"job {queued.id} is cancelled: there is nothing to cancel"):
        store.cancel(queued.id)

    # A cancel recorded before the supervisor could be signalled: the supervisor notices and stops.
    late = store.submit(JobSettings(kind="train", data=str(faces), **{**TINY, "epochs": 50, "max_steps": None}))
    child = wait_for(lambda: store.get(late.id).child_pid)
    store.update(late.id, status="cancelled")
    assert wait_for(lambda: gone(child) and gone(store.get(late.id).pid), timeout=15)
    assert store.get(late.id).status == "cancelled"


def test_a_job_whose_process_died_is_failed_on_restart_and_resumes_from_its_checkpoint(two_jobs, faces):
    store, seen = two_jobs
    done = seen["first_done"]
    job = store.submit(JobSettings(kind="train", data=str(faces), **{**TINY, "epochs": 2, "max_steps": None}),
                       start=False)
    # What a machine restart leaves: the run's checkpoint and best model after epoch 1, the job
    # marked running, its recorded process gone.
    shutil.copytree(Path(done.run_dir) / "checkpoint", Path(job.run_dir) / "checkpoint")
    shutil.copy(Path(done.run_dir) / "history.json", Path(job.run_dir) / "history.json")
    shutil.copytree(done.model_dir, Path(job.run_dir) / "model")
    # Its supervisor was killed; its training process lives on in the supervisor's process group.
    code = ("import subprocess, sys, time; child = subprocess.Popen([sys.executable, '-c', "
            "'import time; time.sleep(60)', 'training']); print(child.pid, flush=True); time.sleep(60)")
    dead = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, start_new_session=True)
    orphan = int(dead.stdout.readline())
    token = process_start_token(dead.pid)
    dead.kill()
    dead.wait()
    assert gone(dead.pid) and not gone(orphan)
    store.update(job.id, status="running", pid=dead.pid, pid_started=token, child_pid=orphan,
                 started_at=time.time() - 5)

    reopened = JobStore()  # the app starting again
    failed = reopened.get(job.id)
    assert failed.status == "failed" and failed.error.startswith("interrupted: its process is gone")
    assert wait_for(lambda: gone(orphan), timeout=15)  # stopped, so a resume never trains beside it
    resumed = reopened.resume(job.id)
    assert resumed.command[-1] == "--resume" and resumed.status == "running"
    finished = wait_done(reopened, job.id)
    assert finished.status == "finished", finished.error
    assert "resumed from" in finished.log_tail() and "at epoch 1" in finished.log_tail()
    assert [h["epoch"] for h in finished.history()] == [1, 2] and finished.attempts == 1
    with pytest.raises(JobError, match="only failed or cancelled jobs can be resumed"):
        reopened.resume(job.id)


def test_settings_are_checked_and_commands_built_per_kind(tmp_path, faces, base_detector, model_dirs):
    ok = dict(kind="train", data=str(faces))
    for bad, match in [({"kind": "bake"}, "unknown job kind 'bake'"),
                       ({"data": str(tmp_path / "missing")}, "is neither a folder nor a labels.csv"),
                       ({"lr": "fast"}, "learning rate 'fast' is not a number"),
                       ({"lr": 2}, r"learning rate 2.0 must be in \(0, 1\)"),
                       ({"lr": 1}, r"learning rate 1.0 must be in \(0, 1\)"),  # as python -m training refuses it
                       ({"epochs": 0}, "epochs 0 must be a whole number from 1 to 1000"),
                       ({"labels": ["real", "deepfake"]}, "label order 'real deepfake' must be one of 'real fake', "
                                                          "'fake real', 'real manipulated synthetic'"),
                       ({"labels": ["real", "manipulated", "synthetic"], "model": "patch-tiny"},
                        "patch-tiny scores real vs fake only: choose a binary label order"),
                       ({"image_size": 40}, "must be a multiple of 16 for hybrid"),
                       ({"image_size": 40, "model": "hybrid-lite0"}, "must be a multiple of 16 for hybrid-lite0"),
                       ({"name": "../escape"}, "name '../escape'"),
                       ({"kind": "finetune"}, "a finetune job needs the detector to fine-tune"),
                       ({"model": "resnet"}, "unknown architecture 'resnet'")]:
        with pytest.raises(JobError, match=match):
            validate(JobSettings(**{**ok, **bad}))
    # The data's labels are checked at submission, from its listing, before any face is cropped.
    empty = tmp_path / "empty"
    (empty / "real").mkdir(parents=True)
    (empty / "real" / "notes.txt").write_text("no image here")
    only_reals = tmp_path / "reals"
    shutil.copytree(faces / "real", only_reals / "real")
    rows = [f"{p.relative_to(faces).as_posix()},{p.parent.name}" for p in sorted(faces.rglob("*.jpg"))]
    (faces / "labels.csv").write_text("path,label\n" + "\n".join(rows) + "\n")
    (faces / "no-label.csv").write_text("path,kind\n" + rows[0].replace(",", ",x") + "\n")
    junk = tmp_path / "junk"  # text files named as photos
    for label in ("real", "fake"):
        (junk / label).mkdir(parents=True)
        (junk / label / "a.jpg").write_text("not a picture")
    (faces / "missing.csv").write_text("path,label\n" + "\n".join(rows[:3]) + "\nnope/a.jpg,real\nnope/b.jpg,fake\n")
    try:
        for bad, match in [({"data": str(empty)}, r"^data empty: no image in a folder named for its label \(real/, fake/"),
                           ({"data": str(junk)}, r"^data junk: 2 of 2 images checked are not readable images \(the "
                                                 r"first: fake/a.jpg\)$"),
                           ({"data": str(faces / "missing.csv")}, r"^data missing.csv: 2 of 5 rows name files that "
                                                                   r"are not there \(the first: nope/a.jpg\)$"),
                           ({"kind": "evaluate", "base": str(base_detector), "data": str(junk)},
                            "data junk: 2 of 2 images checked are not readable"),
                           ({"kind": "evaluate", "base": str(base_detector), "data": str(empty)}, "data empty: no image"),
                           ({"data": str(faces / "no-label.csv")}, "data no-label.csv: not a labels CSV"),
                           ({"data": str(only_reals), "sbi": False},
                            "the data has only 'real' faces: without self-blended fakes"),
                           ({"labels": ["real", "manipulated", "synthetic"]},
                            "the data has labels 'fake' that the label order 'real manipulated synthetic' lacks"),
                           ({"data": str(faces / "labels.csv"), "labels": ["real", "manipulated", "synthetic"]},
                            "the data has labels 'fake' that the label order"),
                           ({"kind": "finetune", "base": str(base_detector), "data": str(empty)}, "data empty: no"),
                           ({"kind": "distill", "base": str(base_detector), "data": str(only_reals),
                             "sbi": False}, "the data has only 'real' faces")]:
            with pytest.raises(JobError, match=match):
                validate(JobSettings(**{**ok, **bad}))
        assert validate(JobSettings(kind="train", data=str(faces / "labels.csv"))).labels == ["real", "fake"]
        assert validate(JobSettings(kind="train", data=str(only_reals))).sbi  # self-blends bring the fakes
        # An evaluation reads the detector's labels, and a config in the extra options maps its own.
        validate(JobSettings(kind="evaluate", base=str(base_detector), data=str(only_reals)))
        validate(JobSettings(kind="train", data=str(empty), extra=["--config", "mine.yaml"]))
    finally:
        for made in ("labels.csv", "no-label.csv", "missing.csv"):
            (faces / made).unlink()

    store = JobStore(tmp_path / "home")
    with pytest.raises(JobError, match="architecture 'vit' cannot be fine-tuned here"):
        store.submit(JobSettings(kind="finetune", data=str(faces), base=str(model_dirs["hf-vit"])), start=False)
    hybrid = model_dirs["hybrid"]  # built with a smaller ViT than training builds
    with pytest.raises(JobError, match="cannot be fine-tuned here"):
        store.submit(JobSettings(kind="finetune", data=str(faces), base=str(hybrid)), start=False)
    assert store.list() == []  # refused submissions leave no row

    settings = validate(JobSettings(kind="distill", data=str(faces), base=str(base_detector), model="patch-tiny"))
    command = build_command(settings, tmp_path / "run", "cache", "student", tmp_path / "models", base_detector)
    assert command[:4] == [sys.executable, "-m", "training", "distill"]
    assert command[command.index("--teacher") + 1] == str(base_detector) and "--sbi" in command
    settings = validate(JobSettings(kind="evaluate", data=str(faces), base=str(base_detector)))
    command = build_command(settings, tmp_path / "run", "cache", "e", tmp_path / "models", base_detector)
    assert command[3:5] == ["evaluate", "--detector"] and command[-2:] == ["--out", str(tmp_path / "run")]
    own = tmp_path / "models" / "mine"
    command = build_command(settings, tmp_path / "run", "cache", "e", tmp_path / "models", own)
    assert "--out" not in command  # a job's own model keeps its metrics and card beside it


def test_a_three_class_job_trains_real_manipulated_synthetic_and_a_mismatched_order_fails_in_one_line(
        home, faces, tmp_path):
    """The form's third label order: an ImageFolder with real/ and synthetic/ faces, self-blends as
    the manipulated class; the model it publishes says which kind of fake it suspects. The same
    order on a real/fake tree is refused at submission, with one line naming the labels, and
    `train` itself refuses it the same way before training."""
    tree = tmp_path / "three"
    for label, folder, count in (("real", "faces/real/ffhq", 6), ("synthetic", "faces/fake/stylegan2_tpdne", 2),
                                 ("synthetic", "faces/fake/sd21_sdfd", 2)):
        (tree / label).mkdir(parents=True, exist_ok=True)
        for path in sorted(data_path(folder).glob("*.jpg"))[:count]:
            shutil.copy(path, tree / label / path.name)
    store = JobStore()
    three = ["real", "manipulated", "synthetic"]
    settings = dict(TINY, model="hybrid", labels=three)
    good = store.submit(JobSettings(kind="train", data=str(tree), name="tiny-three", **settings))
    line = ("the data has labels 'fake' that the label order 'real manipulated synthetic' lacks: "
            "choose a label order with every label of the data (or map them with label_map)")
    jobs_before = len(store.list())
    with pytest.raises(JobError) as refused:
        store.submit(JobSettings(kind="train", data=str(faces), name="tiny-mismatch", **settings))
    assert str(refused.value) == line and len(store.list()) == jobs_before  # no row, no run folder
    from training.data import image_folder
    from training.pipeline import ConfigError, check_labels

    with pytest.raises(ConfigError) as refused:  # `python -m training train`, after cropping, says the same
        check_labels(image_folder(faces), three, sbi=True)
    assert str(refused.value) == line
    good = wait_done(store, good.id)
    assert good.status == "finished", good.error
    assert good.command[good.command.index("--labels") + 1:][:3] == three
    config = json.loads((Path(good.model_dir) / "config.json").read_text())
    assert config["label_names"] == three and config["num_classes"] == 3
    import dataclasses

    from forensics.detectors import load_detector
    from forensics.service import analyze
    from ui.present import face_label, summary

    assert load_detector("tiny-three").labels == three
    # The analysis of a real photo says which kind of fake each face most resembles.
    result = analyze(str(sorted((tree / "real").iterdir())[0]), detector="tiny-three", methods=[]).result
    face = result.faces[0]
    assert set(face.probabilities) == set(three) and set(face.fake_kinds) == {"manipulated", "synthetic"}
    assert list(face.fake_kinds.values()) == sorted(face.fake_kinds.values(), reverse=True)
    assert abs(sum(face.fake_kinds.values()) - face.fake_probability) < 1e-5
    assert abs(face.fake_probability - (1 - face.probabilities["real"])) < 1e-5
    assert face.to_dict()["fake_kinds"].keys() == face.fake_kinds.keys()
    assert f"P(fake) {face.fake_probability:.2f}, likeliest {face.fake_kind} " in face_label(face, 1)
    line = f"Suspected kind of fake (the most suspicious face): **{face.fake_kind}** ({face.fake_kind} "
    assert (line in summary(dataclasses.replace(result, label="fake"))) and line not in summary(
        dataclasses.replace(result, label="real"))

    # Its evaluation counts how often each kind of fake is called its own kind, and its card says so.
    from training.evaluate import run_evaluation

    metrics = run_evaluation(good.model_dir, str(tree), str(tmp_path / "cache"), videos=False)
    record = json.loads((Path(good.model_dir) / "training.json").read_text())
    counts = record["counts"]["validation"]
    kinds = metrics["fake_kinds"]
    assert list(kinds) == ["manipulated", "synthetic"]
    # One self-blend per validation real is the manipulated kind; the validation generated faces are synthetic.
    assert kinds["manipulated"]["faces"] == sum(v for k, v in counts.items() if k.startswith("real/")) > 0
    assert kinds["synthetic"]["faces"] == sum(v for k, v in counts.items() if k.startswith("synthetic/")) > 0
    for kind, m in kinds.items():
        assert sum(m["called"].values()) == m["faces"] and m["accuracy"] == round(m["called"][kind] / m["faces"], 4)
    card = (Path(good.model_dir) / "README.md").read_text()
    assert "Which kind of fake" in card and f"| synthetic | {kinds['synthetic']['faces']} |" in card



def test_command_line_evaluates_lists_shows_and_deletes(two_jobs, home, faces):
    store, seen = two_jobs
    env = dict(os.environ, OMP_NUM_THREADS="1")

    def cli(*args, check=True):
        proc = subprocess.run([sys.executable, "-m", "forensics", *args], cwd=ROOT, env=env, capture_output=True,
                              text=True, timeout=TIMEOUT_S)
        assert not check or proc.returncode == 0, proc.stderr[-2000:]
        return proc

    out = cli("jobs", "submit", "evaluate", "--base", "tiny-a", "--data", str(faces), "--wait").stdout
    job_id = int(out.split()[1])
    assert f"job {job_id} finished" in out
    listed = {j["id"]: j for j in json.loads(cli("jobs", "list", "--json").stdout)}
    evaluation = listed[job_id]
    assert evaluation["kind"] == "evaluate" and evaluation["status"] == "finished"
    assert 0.0 <= evaluation["metrics"]["roc_auc"] <= 1.0
    model = Path(seen["first_done"].model_dir)
    assert evaluation["metrics"]["model_metrics_json"] == str(model / "metrics.json")  # beside its own model
    own = Path(evaluation["metrics"]["metrics_json"])  # and the job's own copy, which a later evaluation leaves
    assert own == Path(evaluation["run_dir"]) / "metrics.json" and json.loads(own.read_text()) == json.loads(
        (model / "metrics.json").read_text())
    assert "## Measured (python -m training evaluate)" in (model / "README.md").read_text()
    assert "evaluate" in cli("jobs", "show", str(job_id)).stdout
    bad = cli("jobs", "cancel", str(job_id), check=False)
    assert bad.returncode == 1 and bad.stderr == f"error: job {job_id} is finished: there is nothing to cancel\n"

    first = seen["first_done"]
    assert cli("jobs", "delete", str(first.id)).stdout == f"job {first.id} deleted\n"
    assert not Path(first.run_dir).exists() and not model.exists() and "tiny-a" not in catalog.available_detectors()
    assert cli("jobs", "show", str(first.id), check=False).stderr == f"error: no job {first.id}\n"


def test_submission_refuses_a_taken_name_and_forgets_a_refused_upload(tmp_path, faces, monkeypatch):
    """A model's name is its own (a taken one was silently renamed, and `--base NAME` then found the other
    model); a refused zip leaves nothing unpacked unless a job uses it; a job id must be given."""
    import zipfile

    from tests.conftest import cli_in_process

    monkeypatch.setenv("FORENSICS_HOME", str(tmp_path / "home"))
    store = JobStore(tmp_path / "home")
    with pytest.raises(JobError, match="^name 'default' is taken by a detector already: choose another$"):
        store.submit(JobSettings(kind="train", data=str(faces), name="default", **TINY), start=False)
    queued = store.submit(JobSettings(kind="train", data=str(faces), name="mine", **TINY), start=False)
    with pytest.raises(JobError, match="^name 'mine' is taken by a job that will publish a model under it"):
        store.submit(JobSettings(kind="train", data=str(faces), name="mine", **TINY), start=False)
    store.cancel(queued.id)
    for given, message in ((None, "no job chosen: click a row"), (0, "no job chosen"), ("x", "'x' is not a job id"),
                           (2.5, "2.5 is not a job id")):
        with pytest.raises(JobError, match=message):
            store.get(given)
    # a zip of text files named as photos: refused at submission, and its unpacked copy removed
    junk = tmp_path / "junk.zip"
    with zipfile.ZipFile(junk, "w") as z:
        for name in ("set/real/a.jpg", "set/fake/b.jpg"):
            z.writestr(name, "not a picture")
    root = store.unpack_dataset(junk)
    with pytest.raises(JobError, match="2 of 2 images checked are not readable images"):
        store.submit(JobSettings(kind="train", data=str(root), **TINY), start=False)
    assert not root.exists() and list(store.uploads_dir.iterdir()) == []
    # a good zip a job uses stays when a later submission of it is refused
    good = tmp_path / "good.zip"
    with zipfile.ZipFile(good, "w") as z:
        for path in sorted(faces.rglob("*.jpg")):
            z.write(path, f"set/{path.relative_to(faces)}")
    root = store.unpack_dataset(good)
    store.submit(JobSettings(kind="train", data=str(root), **TINY), start=False)
    with pytest.raises(JobError, match="the label order 'real manipulated synthetic' lacks"):
        store.submit(JobSettings(kind="train", data=str(root), **{**TINY, "model": "hybrid", "image_size": 32,
                                                                  "labels": ["real", "manipulated", "synthetic"]}),
                     start=False)
    assert root.is_dir()
    # the command line: three labels are a label order too; its own options after --training-args are refused
    wrong = cli_in_process("jobs", "submit", "train", "--data", faces, "--image-size", "32", "--labels", "real",
                           "manipulated", "synthetic")
    assert wrong.returncode == 1 and "the label order 'real manipulated synthetic' lacks" in wrong.stderr
    late = cli_in_process("jobs", "submit", "train", "--data", faces, "--training-args", "--val-fraction", "0.3",
                          "--wait")
    assert late.returncode == 1
    assert late.stderr == "error: --wait must come before --training-args, which passes on everything after it\n"
    for job in store.list(["queued"]):
        store.cancel(job.id)


def test_a_finetune_keeps_the_input_size_of_every_model_with_position_embeddings(tmp_path):
    """Every architecture that takes an img_size (ViTs and hybrids, hybrid-lite0 included) must be
    fine-tuned at its base's input size; a CNN may change it."""
    from forensics.jobs.settings import ARCHITECTURES, check_finetune_size

    (tmp_path / "config.json").write_text(json.dumps({"pretrained_cfg": {"input_size": [3, 224, 224]}}))
    for model, (_, args) in ARCHITECTURES.items():
        if "img_size" in args:
            with pytest.raises(JobError, match="must keep its input size 224"):
                check_finetune_size(tmp_path, model, 160)
            check_finetune_size(tmp_path, model, 224)
        else:
            check_finetune_size(tmp_path, model, 160)
    assert "hybrid-lite0" in ARCHITECTURES and "img_size" in ARCHITECTURES["hybrid-lite0"][1]


def test_a_jobs_log_reads_as_a_person_reads_it():
    """tqdm's redraws collapsed to their last state, terminal colours (Ray's, Flower's) gone, the failing line found."""
    from forensics.jobs.logs import clean_log, last_error_line, last_progress_bar

    raw = ("\x1b[92mINFO \x1b[0m:      Starting Flower simulation\n"
           "\x1b[36m(ClientAppActor pid=41)\x1b[0m local step 2\n"
           "epoch 1/2:  50%|#####     | 1/2 [00:01<00:01]\repoch 1/2: 100%|##########| 2/2 [00:02<00:00]\n"
           "Traceback (most recent call last):\n  File \"x.py\", line 1\nValueError: the data has no face\n")
    text = clean_log(raw)
    assert "\x1b" not in text and "[92m" not in text
    assert text.splitlines()[:2] == ["INFO :      Starting Flower simulation", "(ClientAppActor pid=41) local step 2"]
    assert "epoch 1/2: 100%|##########| 2/2" in text and " 50%" not in text
    assert last_progress_bar(raw) == ("epoch 1/2", 2, 2)
    assert last_error_line(raw) == "ValueError: the data has no face"
