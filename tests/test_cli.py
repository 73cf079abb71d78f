"""`python -m forensics` as a user runs it: real processes, real files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from PIL import Image

from forensics.media import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS
from tests.conftest import ROOT, cli_in_process, data_path, refusals_without_torch, script_module

KEYS = {"input", "kind", "detector", "fake_probability", "label", "threshold", "faces", "timings_ms", "error"}


def _cli(*args, env=None, process=False):
    """`python -m forensics ARGS`: its exit code, stdout and stderr. As a process where the test is about
    the process (what a person types) or needs its own environment; otherwise ``forensics.cli.main`` in
    this process, from the repository root, as `python -m forensics` calls it (a process pays ~6 s of
    imports every time)."""
    if process or env:
        full_env = dict(os.environ, HF_HUB_OFFLINE="1", **(env or {}))
        return subprocess.run([sys.executable, "-m", "forensics", *map(str, args)], cwd=ROOT, env=full_env,
                              capture_output=True, text=True, timeout=600)
    return cli_in_process(*args)


def test_analyze_mixed_inputs_writes_one_object_each_and_exits_2(model_dirs, tmp_path):
    photo = data_path("photos/face_recognition/obama_and_biden.jpg")
    video = data_path("video/hamilton_clip.mp4")
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(os.urandom(4096))
    out = tmp_path / "maps"
    proc = _cli("analyze", photo, broken, video, "--detector", model_dirs["hf-vit"], "--allow-untrained",
                "--frames", "4", "--explain", "gradcam,rollout", "--out", out, "--json", "-", process=True)
    assert proc.returncode == 2, proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(lines) == 3 and all(KEYS <= set(obj) for obj in lines)
    image, bad, clip = lines
    # Biden, Obama and the girl in the lower right corner.
    assert image["kind"] == "image" and image["error"] is None and len(image["faces"]) == 3
    for face in image["faces"]:
        assert set(face) >= {"frame", "track", "box", "face_confidence", "fake_probability", "maps"}
        assert set(face["maps"]) == {"gradcam", "rollout"}
        assert all(Path(p).is_file() and Path(p).is_relative_to(out) for p in face["maps"].values())
    assert bad["error"].startswith("broken.mp4: ") and "\n" not in bad["error"] and bad["fake_probability"] is None
    assert clip["kind"] == "video" and clip["error"] is None and clip["faces"]
    assert all(face["track"] is not None for face in clip["faces"])
    assert set(image["timings_ms"]) >= {"decode", "faces", "classify", "explain", "total"}


def test_inputs_that_cannot_be_analysed_are_refused_before_torch_is_loaded(tmp_path):
    """Every input missing, of an unsupported type, a folder or empty: each gets its one-line error
    (and its JSON object) without the detector, or torch, being loaded."""
    empty = tmp_path / "empty.mp4"
    empty.touch()
    inputs = [tmp_path / "missing.jpg", tmp_path / "notes.txt", tmp_path, empty, tmp_path / "renamed.jpg",
              tmp_path / "tiny.png"]
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "renamed.jpg").write_text("not an image either")  # told by its header, still before torch
    Image.new("RGB", (8, 8)).save(tmp_path / "tiny.png")
    report = tmp_path / "out" / "results.jsonl"
    proc = _cli_noting_torch("analyze", *inputs, "--json", report)
    assert proc.returncode == 2, proc.stderr
    assert "torch loaded: False" in proc.stdout and "Traceback" not in proc.stderr
    errors = [json.loads(line)["error"] for line in report.read_text().splitlines()]
    assert errors == ["missing.jpg: file not found", f"notes.txt: unsupported file type '.txt'; supported: "
                      f"{' '.join(sorted(IMAGE_EXTENSIONS | VIDEO_EXTENSIONS))}",
                      f"{tmp_path.name}: is a directory, not a file", "empty.mp4: file is empty",
                      "renamed.jpg: not an image (cannot identify image file)", "tiny.png: image is 8x8 pixels; at least 16x16 is needed"]
    assert [line for line in proc.stdout.splitlines() if line.startswith("ERROR")] == [f"ERROR  {e}" for e in errors]
    # One input that can be read: the detector is loaded and the others keep the same messages.
    photo = data_path("photos/face_recognition/obama.jpg")
    proc = _cli("analyze", inputs[0], photo, "--explain", "none", "--json", "-")
    assert proc.returncode == 2, proc.stderr
    missing, analysed = [json.loads(line) for line in proc.stdout.splitlines()]
    assert missing["error"] == errors[0] and missing["kind"] == "image"
    assert analysed["error"] is None and analysed["fake_probability"] is not None


def test_analyze_to_a_file_with_no_maps_exits_0(model_dirs, tmp_path):
    photo = data_path("photos/face_recognition/obama.jpg")
    report = tmp_path / "out" / "results.jsonl"
    proc = _cli("analyze", photo, "--detector", model_dirs["timm-cnn"], "--allow-untrained", "--explain", "none",
                "--json", report, "--out", tmp_path / "maps")
    assert proc.returncode == 0, proc.stderr
    (obj,) = [json.loads(line) for line in report.read_text().splitlines()]
    assert obj["faces"][0]["maps"] == {} and not (tmp_path / "maps").exists()
    assert "P(fake)=" in proc.stdout  # a human summary line on stdout when JSON goes to a file


def test_maps_asked_for_by_name_that_the_detector_cannot_draw_are_named_once(tmp_path):
    examples = ROOT / "assets" / "examples"
    proc = _cli("analyze", examples / "astronaut.jpg", examples / "astronaut-self-blended.jpg", "--detector", "patch",
                "--explain", "rollout,gradcam", "--out", tmp_path / "maps", "--json", tmp_path / "out.jsonl")
    assert proc.returncode == 0, proc.stderr
    notes = [line for line in proc.stderr.splitlines() if line.startswith("note:")]
    assert notes == ["note: no rollout map: patch detector has no attention layers"]  # once, not per input
    for obj in map(json.loads, (tmp_path / "out.jsonl").read_text().splitlines()):
        assert obj["explanations"]["skipped"] == {"rollout": "patch detector has no attention layers"}
        assert set(obj["faces"][0]["maps"]) == {"gradcam"}  # the map it can draw is drawn
    everything = _cli("analyze", examples / "astronaut.jpg", "--detector", "patch", "--out", tmp_path / "all")
    assert everything.returncode == 0 and "note:" not in everything.stderr  # "all": what it can, no note


def _cli_noting_torch(*args):
    """`python -m forensics ARGS` in-process in a child, which says at exit whether torch was loaded."""
    code = ("import sys; from forensics.cli import main; rc = main(sys.argv[1:]); "
            "print('torch loaded:', 'torch' in sys.modules); sys.exit(rc)")
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], cwd=ROOT,
                          env=dict(os.environ, HF_HUB_OFFLINE="1"), capture_output=True, text=True, timeout=120)


def test_untrained_and_unknown_detectors_are_refused_plainly(model_dirs, tmp_path):
    # refused before torch is loaded: what the folder's name and config.json say is enough
    # (one child process for the three; it fails on a traceback and asserts that torch was never loaded)
    photo = data_path("photos/face_recognition/obama.jpg")
    untrained, missing, lime = refusals_without_torch("forensics.cli", [
        ["analyze", photo, "--detector", model_dirs["timm-vit"]],
        ["analyze", photo, "--detector", tmp_path / "nothing-here"],
        ["analyze", photo, "--explain", "lime", "--detector", model_dirs["timm-vit"], "--allow-untrained"]])
    assert untrained[0] == 1 and "marked untrained" in untrained[1]
    assert missing[0] == 1 and "not a model folder" in missing[1]
    assert lime[0] == 1 and "unknown explanation method" in lime[1]


def test_settings_that_hold_for_every_input_are_refused_once_before_anything_is_analysed(model_dirs, tmp_path):
    """A bad option is a usage error (exit 1, one line, before torch or the detector): argparse's own
    refusals too, so that exit 2 keeps meaning "an input failed"; a place to write to that is a file
    where a folder must be (or a folder where a file must be) is refused before the analysis, not after it."""
    photo = data_path("photos/face_recognition/obama.jpg")
    blank = tmp_path / "blank.png"
    blank.touch()
    cases = {"--bogus": "analyze: error: unrecognized arguments: --bogus",
             "--head-fusion foo": "analyze: error: argument --head-fusion: invalid choice: 'foo'",
             "--fps -1": "--fps must be a positive number, not -1",
             "--discard-ratio 1.5": "--discard-ratio must be in [0, 1), not 1.5",
             "--alpha 5": "overlay alpha must be in [0, 1], not 5.0",
             "--frames 4 --fps 2": "--frames and --fps both choose the frames sampled from a video: give one",
             f"--out {blank}": f"--out {blank}: {blank} is a file, not a folder",
             f"--json {tmp_path}": f"--json {tmp_path} is a folder: give a file name",
             f"--json {blank}/r.jsonl": f"--json {blank}/r.jsonl: {blank} is a file, not a folder"}
    said = refusals_without_torch("forensics.cli", [["analyze", photo, *case.split()] for case in cases])
    for (code, text), line in zip(said, cases.values()):
        assert code == 1 and line in text, (code, text)
    assert not list(tmp_path.glob("**/*.jsonl"))  # nothing half-written
    # With no maps asked for, --out is not used, so it is not checked.
    fine = _cli("analyze", photo, "--detector", model_dirs["timm-cnn"], "--allow-untrained", "--explain", "none",
                "--out", blank, "--json", tmp_path / "r.jsonl")
    assert fine.returncode == 0, fine.stderr
    # A class the maps cannot explain is the detector's to tell: refused once, after loading it, not per input.
    bad = _cli("analyze", photo, photo, "--detector", model_dirs["timm-cnn"], "--allow-untrained", "--target", "bogus")
    assert bad.returncode == 1 and bad.stderr.strip() == "error: target class 'bogus' is not one of ['real', 'fake']"
    assert bad.stdout == ""


def test_detectors_lists_only_trained_models(model_dirs, tmp_path):
    zoo = tmp_path / "zoo"
    trained = zoo / "good"
    import shutil

    shutil.copytree(model_dirs["timm-cnn"], trained)
    config = json.loads((trained / "config.json").read_text())
    config["forensics"]["trained"] = True
    (trained / "config.json").write_text(json.dumps(config))
    shutil.copytree(model_dirs["timm-vit"], zoo / "untrained")
    proc = _cli("detectors", "--json", env={"FORENSICS_DETECTORS": str(zoo)})
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    mine = [r for r in rows if r["path"].startswith(str(zoo))]
    assert [(r["name"], r["path"]) for r in mine] == [("good", str(trained))]  # the name --detector takes
    assert all(r["kind"] for r in rows)


def test_bench_reports_the_ratios(model_dirs, tmp_path):
    report = tmp_path / "bench.json"
    proc = _cli("bench", "--model", model_dirs["timm-vit"], "--repeats", "2", "--json", report)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(report.read_text())
    assert set(data["median_ms"]) == {"forward", "forward_backward", "forward_backward_input", "four_maps",
                                      "four_maps_naive"}
    assert all(v > 0 for v in data["median_ms"].values())
    assert "four_maps / forward_backward" in data["ratios"]
    # the default, a random ViT-Small made for the run, leaves nothing behind in the temp folder
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    small = _cli("bench", "--size", "32", "--repeats", "1", "--json", "-", env={"TMPDIR": str(scratch)})
    assert small.returncode == 0, small.stderr
    assert json.loads(small.stdout)["input_size"] == 32 and not list(scratch.iterdir())
    # bad settings and a model that resolves to nothing: one line each, before torch is loaded
    repeats, size, model = (line for _, line in refusals_without_torch("forensics.cli", [
        ["bench", "--repeats", "0"], ["bench", "--size", "200"], ["bench", "--model", str(tmp_path / "none")]]))
    assert repeats == "error: --repeats must be from 1 to 10000, not 0"
    assert size == "error: --size 200 must be a multiple of 16 (the ViT's patch size)"
    assert model.startswith(f"error: detector '{tmp_path / 'none'}' is not a model folder, a bundled name")


def test_analyze_the_bundled_cat_says_no_face_and_gives_no_verdict(tmp_path):
    """The bar: no face means no fake/real label; the whole-image score only on request, labelled."""
    cat = ROOT / "assets" / "examples" / "chelsea-no-face.jpg"
    proc = _cli("analyze", cat, "--explain", "none", process=True)  # the README's first command, as typed
    assert proc.returncode == 0, proc.stderr
    line = proc.stdout.strip()
    assert line.startswith("no face found: no verdict") and "P(fake)" not in line
    assert not {"fake", "real"} & set(line.replace(":", " ").split()), line
    asked = _cli("analyze", cat, "--explain", "none", "--whole-image")
    assert "whole-image score" in asked.stdout and "not a verdict" in asked.stdout
    assert not {"fake", "real"} & set(asked.stdout.replace(":", " ").split())
    # A face too small to judge: no verdict either, and the line under it says why.
    from PIL import Image

    photo = Image.open(ROOT / "assets" / "examples" / "astronaut.jpg")
    far = tmp_path / "far-away.png"
    photo.resize((photo.width // 3, photo.height // 3)).save(far)
    tiny = _cli("analyze", far, "--explain", "none")
    first, second = tiny.stdout.strip().splitlines()
    assert first.startswith("no face found: no verdict") and "P(fake)" not in tiny.stdout
    assert second.strip().startswith("Faces too small: searching down to 20 px, MTCNN finds 1 face(s) under 40 px")


def test_detectors_lists_readable_sizes_and_the_onnx_builds():
    proc = _cli("detectors")
    assert proc.returncode == 0, proc.stderr
    lines = {line.split()[0]: line for line in proc.stdout.splitlines()}
    assert "0.00M" not in proc.stdout and "51.5k params" in lines["patch"] and "2.4M params" in lines["default"]
    assert "misses generated faces" in lines["patch"] and "generated faces (Stable Diffusion" in lines["default"]
    assert "ONNX build of default" in lines["default:int8"] and "onnx-int8" in lines["default:int8"]
    assert "MB file" in lines["default:onnx"]
    # sizes as the README and the audit give them (decimal megabytes)
    int8_bytes = (ROOT / "assets" / "detectors" / "default" / "model_quantized.onnx").stat().st_size
    assert f"{int8_bytes / 1e6:.1f} MB file" in lines["default:int8"]


def test_analyze_faithfulness_scores_every_map_against_random_with_the_int8_build(tmp_path):
    """ONNX int8 has no gradients, but the scores need only forward passes: its attention maps are scored."""
    photo = ROOT / "assets" / "examples" / "astronaut.jpg"
    proc = _cli("analyze", photo, "--detector", "default:int8", "--faithfulness", "--faithfulness-steps", "4",
                "--out", tmp_path / "maps", "--json", "-")
    assert proc.returncode == 0, proc.stderr
    (obj,) = [json.loads(line) for line in proc.stdout.splitlines()]
    (face,) = obj["faces"]
    assert set(face["faithfulness"]) == {"attention", "rollout"}  # what the int8 graph gives
    for scores in face["faithfulness"].values():
        assert {"deletion", "insertion", "random_deletion", "random_insertion"} <= set(scores)
        assert all(0.0 <= scores[k] <= 1.0 for k in ("deletion", "insertion", "random_deletion", "random_insertion"))
        assert len(scores["deletion_curve"]) == 5
        # both curves end where the other starts: the crop itself and the crop blurred all over
        assert scores["deletion_curve"][0] == scores["insertion_curve"][-1]
        assert scores["deletion_curve"][-1] == scores["insertion_curve"][0]
    assert face["most_faithful"] in {None, "attention", "rollout"}
    assert obj["timings_ms"]["faithfulness"] > 0 and obj["explanations"]["faithfulness"]["steps"] == 4
    # refused before the detector and torch are loaded, in one line
    (code, said), (steps_code, steps_said) = refusals_without_torch("forensics.cli", [
        ["analyze", photo, "--explain", "none", "--faithfulness"],
        ["analyze", photo, "--faithfulness", "--faithfulness-steps", "1"]])
    assert code == 1 and "needs --explain" in said
    assert steps_code == 1 and steps_said.endswith("faithfulness steps must be in 2..100, not 1")


def _trained_folder(tmp_path, model_dirs, name: str):
    """A copy of a random model folder marked trained, under tmp_path/detectors (FORENSICS_DETECTORS
    is pointed there by the caller), for the note's tests to give measurements of their own."""
    import shutil

    folder = shutil.copytree(model_dirs["patch"], tmp_path / "detectors" / name)
    config = json.loads((folder / "config.json").read_text())
    config["forensics"]["trained"] = True
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def test_a_detector_close_to_chance_is_named_so_and_not_offered(tmp_path, monkeypatch, model_dirs):
    """No bundled detector is close to chance any more: a folder measured at AUC 0.53 stands in."""
    from forensics import detector_notes

    folder = _trained_folder(tmp_path, model_dirs, "coin")
    (folder / "metrics.json").write_text(json.dumps({
        "summary": {"roc_auc": 0.53}, "calibration": {"ece": 0.2},
        "per_source": {"SBI of FFHQ vs all held-out reals": {"roc_auc": 0.55}}}))
    monkeypatch.setenv("FORENSICS_DETECTORS", str(tmp_path / "detectors"))
    note = detector_notes.detector_note("coin")
    assert note.near_chance and "close to chance" in note.line and note.digits == 1
    assert "coin" not in {name for _, name in detector_notes.offered_detectors()}
    assert "default" in {name for _, name in detector_notes.offered_detectors()}


def test_a_detector_that_flags_smoothed_real_faces_carries_a_caution(tmp_path, monkeypatch, model_dirs):
    """The evaluation's camera-processing probe reaches the note shown beside a verdict: a caution
    when many smoothed real faces are flagged and far more than unprocessed ones, none otherwise."""
    from forensics import detector_notes

    folder = _trained_folder(tmp_path, model_dirs, "smoothy")
    monkeypatch.setenv("FORENSICS_DETECTORS", str(tmp_path / "detectors"))

    def measured(clean, smoothed, video=None, photos=None, graded=None):
        processing = {"clean": {"faces": 300, "mean_p_fake": 0.3, "flagged": clean},
                      "smoothed (bilateral filter 9, 50, 7)": {"faces": 300, "mean_p_fake": 0.6, "flagged": smoothed},
                      "sharpened (unsharp mask 1.5)": {"faces": 300, "mean_p_fake": 0.2, "flagged": 0.05}}
        if graded is not None:
            processing["colour graded (saturation 1.2, S curve 0.4, warm cast)"] = {
                "faces": 300, "mean_p_fake": 0.45, "flagged": graded}
        if video is not None:
            processing["H.264 CRF 32"] = {"faces": 300, "mean_p_fake": 0.5, "flagged": video}
        (folder / "metrics.json").write_text(json.dumps({
            "summary": {"roc_auc": 0.9}, "calibration": {"ece": 0.03}, "per_source": {},
            "real_faces": {"faces": 300, "threshold": 0.5, "processing": processing},
            **({"real_photos": {"small_face_px": 128, "all": {"photos": 120, "faces_large_flagged": photos}}}
               if photos is not None else {})}))
        return detector_notes.detector_note("smoothy")

    note = measured(0.17, 0.45)
    assert note.line.endswith("Caution: it flags 45% of real faces smoothed as a phone's noise reduction or beauty "
                              "mode does (17% unsmoothed).")
    assert not measured(0.17, 0.20).caution  # few flagged
    assert not measured(0.30, 0.35).caution  # no more than unprocessed faces
    # real faces through a video stream's compression: the same rule, both cautions in one line
    both = measured(0.19, 0.45, video=0.64)
    assert both.line.endswith("Caution: it flags 45% of real faces smoothed as a phone's noise reduction or beauty "
                              "mode does (19% unsmoothed); it flags 64% of real faces compressed as video sites do "
                              "(H.264, CRF 32; 19% as stored).")
    assert measured(0.13, 0.20, video=0.64).caution.startswith("it flags 64% of real faces compressed")
    assert not measured(0.13, 0.20, video=0.17).caution  # no caution from these figures
    # real photographs unlike its training faces (the evaluation's real_photos): the same rule, large faces
    assert measured(0.13, 0.22, video=0.17, photos=0.31).caution == (
        "it flags 31% of the faces 128 px or wider in 120 real photographs unlike its training faces "
        "(13% of its real validation faces)")
    assert not measured(0.13, 0.22, video=0.17, photos=0.20).caution
    assert not measured(0.13, 0.22, video=0.17, photos=None).caution
    # real faces with a studio photograph's look (the probe's colour grade): the same rule
    assert measured(0.12, 0.20, graded=0.27).caution == (
        "it flags 27% of real faces colour-graded as studio and press photographs are (12% as stored)")
    assert not measured(0.12, 0.20, graded=0.20).caution
    (folder / "metrics.json").write_text(json.dumps({"summary": {"roc_auc": 0.9}}))  # measured before the probe
    assert not detector_notes.detector_note("smoothy").caution


def test_uneven_false_alarms_across_groups_reach_the_caution():
    """The evaluation's false alarms by group on real faces its run never held (``real_faces.unseen``):
    a group flagged 1.25 times as often as all of them or more, with its 95% interval wholly above their
    share, is named in the caution; one within the noise (a wide interval) or near the share is not."""
    from forensics.detector_notes import _smoothing_caution, uneven_false_alarms

    def row(flagged, low, high, faces=400):
        return {"faces": faces, "mean_p_fake": 0.3, "flagged": flagged, "flagged_ci95": [low, high]}

    unseen = {"faces": 3452, "sources": {"UTKFace": 3452}, "all": row(0.080, 0.072, 0.090, 3452),
              "groups": {"UTKFace Black": row(0.128, 0.081, 0.195, 133),
                         "UTKFace age 13-19": row(0.113, 0.082, 0.152, 320),
                         "UTKFace Other": row(0.140, 0.060, 0.290, 20),  # often, but within the noise
                         "UTKFace Indian": row(0.095, 0.082, 0.110),  # above, but under 1.25x
                         "UTKFace White": row(0.075, 0.064, 0.088)}}
    text = uneven_false_alarms({"unseen": unseen})
    assert text == ("its false alarms are uneven: of 3452 real UTKFace faces it never saw it flags 8% in all, but "
                    "13% of those labelled Black (8%-20%), 11% of those aged 13-19 (8%-15%) (95% intervals)")
    real = {"processing": {"clean": {"faces": 300, "mean_p_fake": 0.3, "flagged": 0.09}}, "unseen": unseen}
    assert _smoothing_caution(real) == text  # the note beside every verdict carries it
    even = {**unseen, "groups": {"UTKFace White": row(0.075, 0.064, 0.088)}}
    assert uneven_false_alarms({"unseen": even}) == "" and uneven_false_alarms({}) == ""
    assert uneven_false_alarms(None) == "" and uneven_false_alarms({"unseen": {"all": None}}) == ""


def test_the_bundled_default_states_its_uneven_false_alarms_beside_every_verdict():
    """The default's evaluation holds the unseen-face groups (``real_faces.unseen``), its card the table,
    and the note the app shows beside its verdicts names the groups it flags most."""
    from forensics.core import read_json
    from forensics.detector_notes import detector_note

    folder = ROOT / "assets" / "detectors" / "default"
    unseen = read_json(folder / "metrics.json")["real_faces"]["unseen"]
    assert unseen["faces"] >= 3000 and set(unseen["sources"]) == {"UTKFace"}
    assert f"| all | {unseen['faces']} |" in (folder / "README.md").read_text()
    caution = detector_note("default").caution
    assert "its false alarms are uneven" in caution and "labelled Black" in caution, caution


def test_the_note_reads_generated_faces_against_identical_reals_and_names_unseen_generators(tmp_path, monkeypatch,
                                                                                           model_dirs):
    """Generated faces are judged against FFHQ's reals (prepared exactly like them) where the
    metrics have that row, not against reals of another look; the recipe's leave-one-generator-out
    runs (the training record's ``leave_one_out``) say what it does on generators it never saw."""
    from forensics import detector_notes

    folder = _trained_folder(tmp_path, model_dirs, "gens")
    monkeypatch.setenv("FORENSICS_DETECTORS", str(tmp_path / "detectors"))
    (folder / "metrics.json").write_text(json.dumps({
        "summary": {"roc_auc": 0.9}, "calibration": {"ece": 0.03}, "per_source": {
            "SBI of FFHQ vs all held-out reals": {"roc_auc": 0.95},
            "StyleGAN2 (x) vs all held-out reals": {"roc_auc": 0.85},  # flattered by UTKFace's look
            "StyleGAN2 (x) vs FFHQ reals": {"roc_auc": 0.52},
            "Stable Diffusion 2.1 (y) vs all held-out reals": {"roc_auc": 0.90}}}))  # no FFHQ row: as is
    note = detector_notes.detector_note("gens")
    assert note.catches == "blended face swaps (AUC 0.95), generated faces (Stable Diffusion 2.1) (AUC 0.90)"
    assert note.misses == "generated faces (StyleGAN2) (AUC 0.52)"
    record = json.loads((folder / "training.json").read_text()) if (folder / "training.json").is_file() else {}
    record["leave_one_out"] = [
        {"held_out": ["StyleGAN2 (x)"], "subsets": {"StyleGAN2 (x) vs FFHQ reals": {"roc_auc": 0.36},
                                                      "talking-head video, held out reals vs their SBI fakes":
                                                          {"roc_auc": 0.95}}},
        {"held_out": ["Stable Diffusion 2.1 (y)"], "subsets": {"Stable Diffusion 2.1 (y) vs FFHQ reals":
                                                                {"roc_auc": 0.41}}}]
    (folder / "training.json").write_text(json.dumps(record))
    note = detector_notes.detector_note("gens")
    assert note.misses.endswith(", generators it never saw (AUC 0.36-0.41 with one held out of training)")
    assert "misses generated faces (StyleGAN2), generators it never saw" in note.short
    record["leave_one_out"][0]["subsets"]["StyleGAN2 (x) vs FFHQ reals"]["roc_auc"] = 0.85
    record["leave_one_out"][1]["subsets"]["Stable Diffusion 2.1 (y) vs FFHQ reals"]["roc_auc"] = 0.88
    (folder / "training.json").write_text(json.dumps(record))
    note = detector_notes.detector_note("gens")
    assert note.catches.endswith("generators it never saw (AUC 0.85-0.88 with one held out of training)")
    assert "never saw" not in note.misses


def test_leave_one_out_runs_and_other_folds_go_into_the_card_from_their_own_metrics(tmp_path, model_dirs, capsys):
    """``scripts/leave-one-out.py`` copies each run's figures from its own metrics.json into the model's
    training record and rewrites the card: a leave-one-generator-out run names its generator, a run
    that held out other talking-head clips names them; ``--add`` keeps the runs already there, a run
    of the same config replaces its old entry, and a run never evaluated is refused in one line with
    the record untouched."""
    import shutil

    from forensics import detector_notes

    model = shutil.copytree(model_dirs["patch"], tmp_path / "model")
    own = ["a_clip.mp4", "b_clip.mp4"]
    (model / "training.json").write_text(json.dumps({"config": {"video_frames": 8, "holdout_videos": own}}))

    def run(name: str, config: dict, blend: float, video: float, scored: int = 0):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "training.json").write_text(json.dumps({
            "command": f"python -m training train --config configs/experiments/{name}.yaml",
            "config": {"video_frames": 8, **config}}))
        (folder / "metrics.json").write_text(json.dumps({
            "per_source": {"StyleGAN2 (x) vs FFHQ reals": {"roc_auc": 0.36},
                           "talking-head video, held out reals vs their SBI fakes": {"roc_auc": blend}},
            "robustness_auc_per_source": {"talking-head video, held out reals vs their SBI fakes": {"jpeg_50": 0.9}},
            "videos": {"roc_auc": video, "videos": [{"video": f"v{i}.mp4", "fake_probability": 0.5}
                                                    for i in range(scored)]
                       + ([{"video": "broken.mp4", "fake_probability": None}] if scored else [])}}))
        return folder

    logo = run("logo", {"holdout_sources": ["StyleGAN2 (x)"], "holdout_videos": own}, 0.95, 0.944)
    fold = run("fold2", {"holdout_videos": ["c_clip.mp4", "d_clip.mp4"]}, 0.957, 1.0)
    script = ROOT / "scripts" / "leave-one-out.py"
    module = script_module("leave-one-out.py")

    def leave_one_out(*args):
        """The script's main in this process (a process each cost ~6 s of imports); the last refusal
        below runs it as a process, as a person does."""
        capsys.readouterr()
        code = module.main([str(a) for a in args])
        out = capsys.readouterr()
        return subprocess.CompletedProcess(args, code, out.out, out.err)

    assert leave_one_out(model, logo).returncode == 0
    done = leave_one_out("--add", model, fold)
    assert done.returncode == 0, done.stderr
    record = json.loads((model / "training.json").read_text())
    assert [r["config"] for r in record["leave_one_out"]] == ["configs/experiments/logo.yaml",
                                                              "configs/experiments/fold2.yaml"]
    assert record["leave_one_out"][1]["held_out"] == [] and record["leave_one_out"][1]["held_out_videos"] == [
        "c_clip", "d_clip"]
    card = (model / "README.md").read_text()
    assert ("| `configs/experiments/logo.yaml` | StyleGAN2 (x) | StyleGAN2 (x) vs FFHQ reals | 0.360 | n/a |"
            in card)
    assert ("| `configs/experiments/fold2.yaml` | talking-head clips c_clip, d_clip (instead of this model's) "
            "| videos never trained on, video level | 1.000 | |") in card
    assert "| `configs/experiments/fold2.yaml` | talking-head clips c_clip, d_clip (instead of this model's) " \
           "| talking-head video, held out reals vs their SBI fakes | 0.957 | 0.900 |" in card
    assert "| `configs/experiments/logo.yaml` | StyleGAN2 (x) | videos never trained on, video level | 0.944 | |" in card
    # the fold names no generator, so the note's unseen-generator span is the leave-one-generator-out run's alone
    assert detector_notes._unseen_generators(record) == [0.36]

    # one fold and no figures of the model's own (never evaluated): no spread to give
    assert "Over the folds" not in card

    again = leave_one_out("--add", model, fold)  # the same config again: replaced, not doubled
    assert again.returncode == 0
    assert len(json.loads((model / "training.json").read_text())["leave_one_out"]) == 2

    # a second fold: the card gives the spread and mean over the two, and leaves the generator run out
    fold3 = run("fold3", {"holdout_videos": ["e_clip.mp4", "f_clip.mp4"]}, 0.914, 0.875, scored=9)
    assert leave_one_out("--add", model, fold3).returncode == 0
    card = (model / "README.md").read_text()
    # a run whose evaluation lists its videos says how many the figure is over (a video not scored is not counted)
    assert "| `configs/experiments/fold3.yaml` | talking-head clips e_clip, f_clip (instead of this model's) " \
           "| videos never trained on (9 videos), video level | 0.875 | |" in card
    assert "A video figure without a count was measured before the clips" in card  # fold2's has none
    assert ("Over the folds of held-out talking-head clips (2 runs above, the same recipe): blending on the held-out "
            "clips 0.914-0.957 (mean 0.935 over 2 folds), video-level ROC-AUC 0.875-1.000 (mean 0.938 over 2 folds)."
            ) in card
    assert len(json.loads((model / "training.json").read_text())["leave_one_out"]) == 3

    # A model trained on every clip replaces this one: it keeps this one's runs and adds this one as a fold.
    (model / "metrics.json").write_text(json.dumps({
        "per_source": {"talking-head video, held out reals vs their SBI fakes": {"roc_auc": 0.935}},
        "videos": {"roc_auc": 0.889}}))
    (model / "training.json").write_text(json.dumps({
        **json.loads((model / "training.json").read_text()),
        "command": "python -m training train --config configs/default.yaml"}))
    every = shutil.copytree(model_dirs["patch"], tmp_path / "every")
    (every / "training.json").write_text(json.dumps({"config": {"video_frames": 8, "holdout_videos": []}}))
    done = leave_one_out("--keep-from", model, every, model)
    assert done.returncode == 0, done.stderr
    runs = json.loads((every / "training.json").read_text())["leave_one_out"]
    assert [r["config"] for r in runs] == ["configs/experiments/logo.yaml", "configs/experiments/fold2.yaml",
                                           "configs/experiments/fold3.yaml", "configs/default.yaml"]
    card = (every / "README.md").read_text()
    assert "| `configs/default.yaml` | talking-head clips a_clip, b_clip | videos never trained on, video level " \
           "| 0.889 | |" in card and "instead of this model's" not in card
    assert "video-level ROC-AUC 0.875-1.000 (mean 0.921 over 3 folds)" in card
    missing = leave_one_out("--keep-from", tmp_path / "nowhere", every, model)
    assert missing.returncode == 2 and "nowhere: no training.json" in missing.stderr

    # A model trained further than its runs were: --note heads the section and "the same recipe" is not claimed
    note = "These runs are stages 1 and 2; this model trained a third."
    assert leave_one_out("--add", "--note", note, every, fold3).returncode == 0
    card = (every / "README.md").read_text()
    assert f"## Leave-one-out runs (the recipe of the runs below, one generator or other talking-head clips held out " \
           f"whole)\n\n{note}\n\n| run |" in card
    assert "the same recipe" not in card and "(3 runs above): blending" in card
    assert json.loads((every / "training.json").read_text())["leave_one_out_note"] == note
    assert leave_one_out("--add", "--note", "", every, fold3).returncode == 0  # '' takes it away
    assert "(the same recipe, one generator" in (every / "README.md").read_text()

    before = (model / "training.json").read_bytes()
    never = tmp_path / "never"
    never.mkdir()
    (never / "training.json").write_text("{}")
    refused = subprocess.run([sys.executable, str(script), "--add", str(model), str(never)], cwd=ROOT,
                             capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2
    assert refused.stderr.strip().count("\n") == 0 and "no metrics.json" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert (model / "training.json").read_bytes() == before


def test_the_fold_summary_counts_the_model_itself_only_with_its_own_figures():
    """The model's own held-out clips make a fold when its evaluation measured them; a run that held
    out the model's own clips, or a generator, is no fold; one fold alone gives no spread."""
    from forensics.detectors.card import HELD_OUT_BLENDING, fold_summary_lines

    own = {"a_clip", "b_clip"}
    fold = {"held_out": [], "held_out_videos": ["c_clip"], "subsets": {HELD_OUT_BLENDING: {"roc_auc": 0.957}},
            "video_auc": 1.0}
    logo = {"held_out": ["StyleGAN2"], "held_out_videos": ["a_clip", "b_clip"],
            "subsets": {HELD_OUT_BLENDING: {"roc_auc": 0.5}}, "video_auc": 0.5}
    same = {**fold, "held_out_videos": ["b_clip", "a_clip"]}
    metrics = {"per_source": {HELD_OUT_BLENDING: {"roc_auc": 0.935}}, "videos": {"roc_auc": 0.875}}

    line = fold_summary_lines([logo, fold, same], own, metrics)[-1]
    assert line.startswith("Over the folds of held-out talking-head clips (this model and 1 run above, ")
    assert "blending on the held-out clips 0.935-0.957 (mean 0.946 over 2 folds)" in line
    assert "video-level ROC-AUC 0.875-1.000 (mean 0.938 over 2 folds)" in line
    assert fold_summary_lines([logo, fold], own, None) == []  # one fold: no spread
    assert fold_summary_lines([logo, fold], own, {"per_source": {}, "videos": {}}) == []
    assert fold_summary_lines([logo, same], own, metrics) == []  # no run held out other clips


def test_false_alarms_script_scores_real_photos_per_folder_and_refuses_bad_input(tmp_path, capsys):
    """scripts/false-alarms.py: real photos (MTCNN on real files) through the app's analysis, the share
    of faces and photos over the detector's threshold, per subfolder; a photo without a face counts as a
    photo, not as a face; a missing or empty folder or an unknown detector is refused in one line."""
    import shutil

    photos = tmp_path / "photos"
    (photos / "portraits").mkdir(parents=True)
    (photos / "other").mkdir()
    shutil.copy(data_path("photos/face_recognition/biden.jpg"), photos / "portraits" / "biden.jpg")
    shutil.copy(data_path("photos/face_recognition/obama.jpg"), photos / "portraits" / "obama.jpg")
    from PIL import Image

    Image.new("RGB", (200, 200), (90, 120, 150)).save(photos / "other" / "wall.png")  # no face
    script = ROOT / "scripts" / "false-alarms.py"
    false_alarms = script_module("false-alarms.py").main  # in this process: a process pays ~6 s of imports
    capsys.readouterr()
    assert false_alarms(["patch", "--photos", str(photos), "--json", str(tmp_path / "fa.json")]) == 0
    done = capsys.readouterr()
    [result] = json.loads((tmp_path / "fa.json").read_text())
    assert result["detector"] == "patch" and set(result["groups"]) == {"portraits", "other"}
    assert result["all"]["photos"] == 3 and result["all"]["photos_with_faces"] == 2 and result["all"]["faces"] >= 2
    assert result["groups"]["other"]["faces"] == 0 and result["groups"]["other"]["faces_flagged"] is None
    flagged = [f["p_fake"] > result["threshold"] for r in result["photos"] for f in r["faces"]]
    assert result["all"]["faces_flagged"] == sum(flagged) / len(flagged)
    assert "| patch (portraits) | 2 (2) |" in done.out
    empty = tmp_path / "empty"
    empty.mkdir()
    for argv, line in [(["no-such-detector", "--photos", str(photos)], "neither a bundled name nor a model folder"),
                       (["patch", "--photos", str(empty)], "no image below it")]:
        assert false_alarms(argv) == 2
        err = capsys.readouterr().err
        assert err.strip().count("\n") == 0 and line in err, err
    # as a person runs it: a process, one line, exit 2
    bad = subprocess.run([sys.executable, str(script), "patch", "--photos", str(tmp_path / "nowhere")], cwd=ROOT,
                         capture_output=True, text=True, timeout=120, env=dict(os.environ, HF_HUB_OFFLINE="1"))
    assert bad.returncode == 2 and bad.stderr.strip().count("\n") == 0 and "no such folder" in bad.stderr, bad.stderr


def test_an_empty_job_list_says_so(tmp_path):
    proc = _cli("jobs", "list", env={"FORENSICS_HOME": str(tmp_path / "home")})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"No jobs in {tmp_path / 'home'}: `python -m forensics jobs submit ...` queues one.\n"
    listed = _cli("jobs", "list", "--json", env={"FORENSICS_HOME": str(tmp_path / "home")})
    assert json.loads(listed.stdout) == []
