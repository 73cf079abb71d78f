"""Honest probabilities: the temperature fit recovers a known temperature, the threshold is the
balanced one, the folder records both and every loader applies them; training videos enter as
frames grouped by video, with whole videos held out."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
import torch

from forensics.detectors import load_detector
from tests.conftest import data_path
from training.calibrate import balanced_threshold, calibrate_folder, fake_probability, fit_temperature
from training.metrics import calibration


def _overconfident(n: int = 4000, temperature: float = 2.5, seed: int = 0):
    """Logits whose labels were drawn from softmax(logits / temperature): a model this
    overconfident is calibrated exactly by that temperature."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 4, (n, 2)).astype(np.float32)
    p_fake = torch.softmax(torch.from_numpy(logits) / temperature, -1)[:, 1].numpy()
    labels = (rng.random(n) < p_fake).astype(int)
    return logits, labels


def test_temperature_fit_recovers_the_true_temperature_and_lowers_ece():
    logits, labels = _overconfident()
    t = fit_temperature(logits, labels)
    assert t == pytest.approx(2.5, rel=0.1)
    before = calibration(labels, fake_probability(logits, [1]))["ece"]
    after = calibration(labels, fake_probability(logits, [1], t))["ece"]
    assert before > 0.08 and after < 0.03


def test_temperature_fit_stays_in_bounds_on_separable_and_uninformative_faces():
    """A handful of faces the model ranks perfectly (or exactly wrongly) has no finite best
    temperature: the fit stops at its bounds instead of overflowing (LBFGS did, on 4 faces)."""
    confident = np.array([[0.0, 50.0], [50.0, 0.0], [0.0, 9.0], [7.0, 0.0]])
    assert fit_temperature(confident, np.array([1, 0, 1, 0])) == pytest.approx(0.05)
    assert fit_temperature(confident, np.array([0, 1, 0, 1])) == pytest.approx(100.0)
    three = np.random.default_rng(0).normal(0, 2, (300, 3))  # three classes, labels unrelated to logits
    assert fit_temperature(three, np.random.default_rng(1).integers(0, 3, 300)) > 20

def test_balanced_threshold_ignores_the_share_of_fakes():
    # 10 reals at 0.1..0.3 and 100 fakes at 0.35..0.9: any threshold in (0.3, 0.35] separates them;
    # F1 would be just as happy far lower, balanced accuracy is not.
    reals, fakes = np.linspace(0.1, 0.3, 10), np.linspace(0.35, 0.9, 100)
    p = np.concatenate([reals, fakes])
    y = np.r_[np.zeros(10), np.ones(100)]
    assert balanced_threshold(y, p) == pytest.approx(0.35)
    assert balanced_threshold(np.ones(3), np.array([0.2, 0.4, 0.9])) == 0.5  # one class: nothing to choose


def test_balanced_threshold_picks_what_a_plain_search_picks():
    """The vectorised search against the plain loop it replaced (ties: nearest 0.5, then the higher)."""
    def plain(y, p):
        best = (-1.0, 0.0, 0.5)
        for t in np.unique(np.concatenate([p, [0.5]])):
            pred = p >= t
            best = max(best, (round(float(0.5 * (pred[y].mean() + (~pred[~y]).mean())), 6), -abs(float(t) - 0.5), float(t)))
        return best[2]

    rng = np.random.default_rng(3)
    for n, noise in ((40, 0.3), (300, 0.15), (958, 0.25)):
        y = rng.random(n) < 0.6
        p = np.clip(0.5 + (y - 0.5) * 0.4 + rng.normal(0, noise, n), 0, 1).round(2)  # rounded: many ties
        assert balanced_threshold(y, p) == plain(y, p)


def test_threshold_spread_is_wide_on_few_faces_and_narrows_on_many():
    """The bootstrap of the threshold's choice: its range holds the chosen threshold, and shrinks as
    faces are added (the same two overlapping classes, 60 faces against 2,000)."""
    from training.calibrate import threshold_spread

    rng = np.random.default_rng(0)

    def draw(n):
        y = rng.random(n) < 0.5
        return y, 1 / (1 + np.exp(-(np.where(y, 1.0, -1.0) + rng.normal(0, 1.5, n))))

    few, many = threshold_spread(*draw(60)), threshold_spread(*draw(2000))
    for spread in (few, many):
        assert spread["p05"] <= spread["median"] <= spread["p95"] and spread["resamples"] == 200
        assert spread["p05"] <= spread["threshold"] <= spread["p95"]
    assert (few["p95"] - few["p05"]) > 2 * (many["p95"] - many["p05"]) > 0
    assert threshold_spread(np.ones(5), np.linspace(0, 1, 5)) is None
    from forensics.detectors.card import threshold_spread_lines

    text = " ".join(threshold_spread_lines({**few, "p05": 0.41, "p95": 0.63, "median": 0.52, "threshold": 0.5}))
    assert f"on 200 bootstrap resamples of the {few['faces']} evaluated validation images" in text
    assert "between 0.410 and 0.630 (5th-95th percentile; median 0.520; on all of them once, 0.500)" in text
    assert threshold_spread_lines(None) == []


def _model_copy(tmp_path, model_dirs):
    """A copy of the small CNN detector's folder, the detector, a batch of 6 crops and its logits."""
    folder = tmp_path / "model"
    shutil.copytree(model_dirs["timm-cnn"], folder)
    det = load_detector(folder, allow_untrained=True, cache=False)
    crops = [np.random.default_rng(i).integers(0, 255, (64, 64, 3), dtype=np.uint8) for i in range(6)]
    batch = det.preprocess(crops)
    with torch.no_grad():
        logits = det.model(batch).float().numpy()
    return folder, det, batch, logits


def test_calibrated_folder_is_applied_by_the_detector(tmp_path, model_dirs):
    folder, det, batch, logits = _model_copy(tmp_path, model_dirs)
    logits_scaled, labels = logits * 40.0, np.array([0, 1, 0, 1, 1, 0])  # an overconfident set to fit
    record = calibrate_folder(folder, logits_scaled, labels, det.fake_indices)
    config = json.loads((folder / "config.json").read_text())
    assert config["forensics"]["temperature"] == pytest.approx(record["temperature"], rel=1e-5)
    assert config["forensics"]["threshold"] == pytest.approx(record["threshold"], rel=1e-5)
    assert record["before"]["ece"] >= 0 and record["after"]["ece"] >= 0
    again = load_detector(folder, allow_untrained=True, cache=False)
    expected = torch.softmax(torch.from_numpy(logits) / record["temperature"], -1).numpy()
    assert np.allclose(again.predict(batch), expected, atol=1e-5)
    assert again.threshold == pytest.approx(record["threshold"], rel=1e-5)


def test_a_bad_temperature_is_refused(tmp_path, model_dirs):
    from forensics.core import DetectorError

    folder = tmp_path / "model"
    shutil.copytree(model_dirs["timm-cnn"], folder)
    config = json.loads((folder / "config.json").read_text())
    config["forensics"]["temperature"] = -1
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(DetectorError, match="temperature -1.0 must be a positive number"):
        load_detector(folder, allow_untrained=True, cache=False)


def _shifted(n: int = 4000, slope: float = 2.0, shift: float = -1.5, seed: int = 1):
    """Logits whose labels were drawn from sigmoid(slope * margin + shift): a model that predicts
    too many fakes everywhere, which no temperature alone can calibrate."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(0, 2, (n, 2)).astype(np.float32)
    margin = logits[:, 1] - logits[:, 0]
    labels = (rng.random(n) < 1 / (1 + np.exp(-(slope * margin + shift)))).astype(int)
    return logits, labels


def test_platt_scaling_recovers_a_shift_and_is_chosen_only_where_it_lowers_cross_validated_ece():
    from training.calibrate import choose_method, fit_platt

    logits, labels = _shifted()
    temperature, bias = fit_platt(logits, labels, [1])
    assert temperature == pytest.approx(0.5, rel=0.1) and bias[0] == 0 and bias[1] == pytest.approx(-1.5, abs=0.2)
    method, scores = choose_method(logits, labels, [1])
    assert method == "platt" and scores["platt"] < scores["temperature"] - 0.02, scores
    platt = calibration(labels, fake_probability(logits, [1], temperature, bias))["ece"]
    only_t = calibration(labels, fake_probability(logits, [1], fit_temperature(logits, labels)))["ece"]
    assert platt < 0.03 < only_t
    # a model off by a temperature only: the bias buys nothing out of fold, and the plain fit is kept
    logits, labels = _overconfident()
    method, scores = choose_method(logits, labels, [1])
    assert set(scores) == {"temperature", "platt"} and abs(scores["platt"] - scores["temperature"]) < 0.02
    # too few faces, three classes or a margin that ranks reals higher: temperature scaling, no contest
    assert choose_method(logits[:40], labels[:40], [1]) == ("temperature", {})
    assert choose_method(np.c_[logits, logits[:, :1]], labels, [1, 2]) == ("temperature", {})
    assert fit_platt(logits, 1 - labels, [1]) is None


def test_a_platt_calibrated_folder_is_applied_by_every_loader(tmp_path, model_dirs):
    """The bias reaches config.json, the card and the detector's probabilities; a bad one is refused."""
    from forensics.core import DetectorError
    from forensics.detectors.card import calibration_lines

    folder, det, batch, logits = _model_copy(tmp_path, model_dirs)
    fit_logits, labels = _shifted()
    record = calibrate_folder(folder, fit_logits, labels, det.fake_indices)
    assert record["method"].startswith("Platt") and record["logit_bias"][0] == 0
    config = json.loads((folder / "config.json").read_text())
    assert config["forensics"]["logit_bias"] == pytest.approx(record["logit_bias"], abs=1e-5)
    again = load_detector(folder, allow_untrained=True, cache=False)
    expected = torch.softmax(torch.from_numpy(logits) / record["temperature"]
                             + torch.tensor(record["logit_bias"]), -1).numpy()
    assert np.allclose(again.predict(batch), expected, atol=1e-5)
    text = "\n".join(calibration_lines(record))
    assert "Platt scaling" in text and "logit bias -1." in text and "cross-validated ECE" in text
    # recalibrated by temperature alone, the old bias goes
    calibrate_folder(folder, *_overconfident(n=60), det.fake_indices)
    assert "logit_bias" not in json.loads((folder / "config.json").read_text())["forensics"]
    for bad, message in (([0.0], "one number under 1000 per label"), (["x", 1], "must be a list of numbers"),
                         ([0.0, float("nan")], "one number under 1000 per label")):
        config["forensics"]["logit_bias"] = bad
        (folder / "config.json").write_text(json.dumps(config))
        with pytest.raises(DetectorError, match=message):
            load_detector(folder, allow_untrained=True, cache=False)


def test_video_frames_are_samples_grouped_by_video_with_whole_videos_held_out(tmp_path):
    from training.data import video_frame_samples
    from forensics.detectors.card import holdout_sources
    from training.pipeline import relative_to_data

    clips = sorted(data_path("video/real_talking").glob("*.mp4"))[:2]
    data = tmp_path / "data"
    (data / "talk").mkdir(parents=True)
    (data / "other").mkdir()
    for clip in clips:
        (data / "talk" / clip.name).symlink_to(clip)
    (data / "other" / "x.mp4").symlink_to(clips[0])
    table = data / "labels.csv"
    with open(table, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "source"])
        w.writerows([[f"talk/{c.name}", "real", c.stem] for c in clips] + [["other/x.mp4", "real", "elsewhere"]])
    cache = tmp_path / "cache"
    samples = video_frame_samples(table, ["talk"], 3, cache, holdout=[clips[1].name], source="talk")
    assert len(samples) == 6  # 3 frames of each video under talk/, none of other/
    assert {s.group for s in samples} == {f"talk/{c.name}" for c in clips}
    assert {s.source for s in samples if s.group.endswith(clips[1].name)} == {"talk, held out"}
    assert all(s.path.endswith(".png") and (cache / "frames").as_posix() in s.path for s in samples)
    assert relative_to_data(samples[0].path, str(table)).startswith(f"frames/talk__{clips[0].name}@3/")
    # cached: the second call decodes nothing (the frames are read back from the cache's record)
    stamp = [p.stat().st_mtime_ns for p in sorted((cache / "frames").rglob("*.png"))]
    assert [s.path for s in video_frame_samples(table, ["talk"], 3, cache, holdout=[clips[1].name],
                                                source="talk")] == [s.path for s in samples]
    assert [p.stat().st_mtime_ns for p in sorted((cache / "frames").rglob("*.png"))] == stamp
    # the held-out video's frames all validate, never train
    config = {"video_frames": 3, "holdout_videos": [clips[1].name], "holdout_sources": [], "val_fraction": 0.0,
              "seed": 0}
    assert holdout_sources(config) == ["talking-head video, held out"]


def test_small_faces_are_softened_by_their_own_fitted_temperature(tmp_path, model_dirs):
    """Size temperatures: one per calibrated side, fitted (at least 1) on the validation faces made
    small and H.264-compressed; between sides linear in log side, 1 at the model's input size; a
    row's probabilities softened as its logits divided by the temperature; bad values refused."""
    from PIL import Image
    from torch.utils.data import Dataset

    from forensics.core import DetectorError
    from forensics.detectors.base import calibrated_softmax, size_temperature, temper
    from training.calibrate import SmallFaces, fit_size_temperatures
    from training.datasets import Collate

    table = {"64": 4.0, "96": 2.0, "128": 1.5}
    assert size_temperature(table, 224, 224) == 1.0 and size_temperature(table, 300, 224) == 1.0
    assert size_temperature(table, 96, 224) == pytest.approx(2.0) and size_temperature(table, 40, 224) == 4.0
    assert size_temperature(table, np.sqrt(64 * 96), 224) == pytest.approx(3.0)  # halfway in log side
    assert 1.0 < size_temperature(table, 180, 224) < 1.5 and size_temperature(None, 50, 224) == 1.0
    logits = np.array([[0.3, 2.5], [1.0, -1.0]], np.float32)
    p = calibrated_softmax(logits).numpy()
    assert np.allclose(temper(p, [2.0, 1.0]), np.stack([calibrated_softmax(logits[:1] / 2.0).numpy()[0], p[1]]),
                       atol=1e-5)
    three = calibrated_softmax(np.array([[0.2, 0.1, 3.0]], np.float32)).numpy()
    assert np.allclose(temper(three, [3.0]), calibrated_softmax(np.array([[0.2, 0.1, 3.0]]) / 3.0).numpy(), atol=1e-5)

    folder, det, batch, _ = _model_copy(tmp_path, model_dirs)
    config = json.loads((folder / "config.json").read_text())
    for bad, message in (({"96": 0.5}, r"temperatures in \[1, 100\]"), ({"big": 2.0}, "must map face sides")):
        config["forensics"]["size_temperatures"] = bad
        (folder / "config.json").write_text(json.dumps(config))
        with pytest.raises(DetectorError, match=message):
            load_detector(folder, allow_untrained=True, cache=False)
    config["forensics"].pop("size_temperatures")
    (folder / "config.json").write_text(json.dumps(config))

    face = np.asarray(Image.open(data_path("faces/real/ffhq/ffhq_1.jpg")).convert("RGB").resize((64, 64)))

    class Pairs(Dataset):  # a real face and a sharp-edged "fake" of it, as the selection set yields them
        def __len__(self):
            return 6

        def __getitem__(self, i):
            fake = face.copy()
            fake[20:44, 20:44] = 255 - fake[20:44, 20:44]
            return [face, fake], [0, 1]

    assert SmallFaces(Pairs(), 32)[0][0][0].shape == face.shape  # made small, then back to the crop's size
    record = fit_size_temperatures(det.model, Pairs(), Collate(det.info.mean, det.info.std), folder,
                                   det.fake_indices, sides=(32, 48))
    fitted = json.loads((folder / "config.json").read_text())["forensics"]["size_temperatures"]
    assert set(fitted) == {"32", "48"} and all(v >= 1.0 for v in fitted.values())
    assert {k: v["temperature"] for k, v in record["sides"].items()} == fitted
    assert all(v["faces"] == 12 and 0 <= v["ece_after"] <= 1 for v in record["sides"].values())
    assert load_detector(folder, allow_untrained=True, cache=False).info.size_temperatures == fitted
    calibrate_folder(folder, np.zeros((4, 2), np.float32), np.array([0, 1, 0, 1]), det.fake_indices)
    assert "size_temperatures" not in json.loads((folder / "config.json").read_text())["forensics"]  # refit after


def test_a_threshold_spread_is_measured_only_around_a_threshold_the_rule_picked():
    """A detector whose threshold is a fixed 0.5 (the uncalibrated bundled ones) or was set by hand gets no
    spread: the rule's spread lies around another threshold, and the app would call the wrong scores unsettled."""
    from training.evaluate import threshold_from_rule

    record = {"calibration": {"threshold": 0.6831797}}
    assert threshold_from_rule(record, 0.68318)  # config.json keeps it to six decimals
    assert not threshold_from_rule(record, 0.5) and not threshold_from_rule(record, None)
    assert not threshold_from_rule({}, 0.5) and not threshold_from_rule({"calibration": {}}, 0.5)
    assert not threshold_from_rule({"calibration": {"threshold": "n/a"}}, 0.5)
