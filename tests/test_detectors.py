"""Detector registry and families: every family round-trips through a model folder."""

from __future__ import annotations

import json
import pickle
import shutil
import time

import numpy as np
import pytest
import torch

from forensics.detectors import FAMILIES, available_detectors, fake_label_indices, load_detector, resolve_model_folder
from forensics.detectors.random_models import RANDOM_BUILDS, RANDOM_MODELS, make_random_detector
from forensics.core import DetectorError


def _crops(n: int = 3, size: int = 80) -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    return [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(n)]


@pytest.mark.parametrize("model", RANDOM_MODELS + RANDOM_BUILDS)
def test_every_family_and_build_loads_predicts_and_round_trips(model, model_dirs, onnx_build, tmp_path):
    base, _, variant = model.partition(":")
    folder = onnx_build(base) if variant else model_dirs[base]
    build = f":{variant}" if variant else ""
    assert {"config.json", "model.safetensors", "README.md"} <= {p.name for p in folder.iterdir()}
    det = load_detector(f"{folder}{build}", allow_untrained=True, cache=False)  # builds load through the registry
    probs = det.predict_crops(_crops())
    assert probs.shape == (3, 2)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    fake = det.fake_probability(probs)
    np.testing.assert_allclose(fake, probs[:, 1], atol=1e-6)  # labels (real, fake)
    # A copy of the folder gives the very same numbers: weights and preprocessing are all on disk.
    copy = shutil.copytree(folder, tmp_path / "copy")
    again = load_detector(f"{copy}{build}", allow_untrained=True, cache=False).predict_crops(_crops())
    np.testing.assert_allclose(again, probs, atol=1e-5)
    # Frozen: inference never accumulates parameter gradients.
    assert not any(p.requires_grad for p in det.model.parameters())
    if variant:  # a build scores as its PyTorch model does: float to rounding, int8 nearly
        pytorch = load_detector(model_dirs[base], allow_untrained=True).predict_crops(_crops())
        np.testing.assert_allclose(probs, pytorch, atol=1e-4 if variant == "onnx" else 0.02)
        assert det.name.endswith(build) and det.describe()["kind"] == {"onnx": "onnx-float", "int8": "onnx-int8"}[variant]


@pytest.mark.parametrize("model", RANDOM_MODELS)
def test_explanation_hooks_fit_the_model(model, model_dirs):
    det = load_detector(model_dirs[model], allow_untrained=True)
    assert det.cam_target_layers, "Grad-CAM needs a target layer"
    if model in ("timm-cnn", "patch"):
        assert not det.has_attention and det.grid_size is None
        assert (det.patch_score_module is not None) == (model == "patch")
        return
    assert det.has_attention
    # 64 px input: 8 px patches give 8x8; the hybrid's CNN has stride 16, so 4x4.
    rows, cols = (4, 4) if model == "hybrid" else (8, 8)
    assert det.grid_size == (rows, cols)
    assert det.num_prefix_tokens == (0 if model in ("timm-vit-nocls", "hf-siglip") else 1)
    with det.capture_attention() as attentions:
        det.model(det.preprocess(_crops(2)))
    tokens = rows * cols + det.num_prefix_tokens
    assert len(attentions) == 2 and attentions[-1].shape == (2, 3, tokens, tokens)
    np.testing.assert_allclose(attentions[-1].sum(-1).detach().numpy(), 1.0, atol=1e-4)


def test_every_registered_family_provides_random_models_and_the_tests_run_over_them():
    for family in FAMILIES.values():  # a new family with none would go untested
        assert family.random_models and set(family.random_models) <= set(RANDOM_MODELS)
    assert set(RANDOM_BUILDS) == {f"{m}:{v}" for m in RANDOM_MODELS for v in ("onnx", "int8")}


def test_hybrid_grid_comes_from_the_cnn_stride(tmp_path):
    det = load_detector(make_random_detector(tmp_path / "h", "hybrid", size=96), allow_untrained=True)
    assert det.kind == "hybrid"
    assert det.grid_size == (6, 6)  # MobileNetV2 cut at stride 16: 96 / 16
    tokens = det.cam_reshape(torch.zeros(2, 37, 48))
    assert tokens.shape == (2, 48, 6, 6)


def test_untrained_models_are_refused_unless_asked_and_never_listed(model_dirs, monkeypatch):
    with pytest.raises(DetectorError, match="untrained"):
        load_detector(model_dirs["timm-vit"])
    monkeypatch.setenv("FORENSICS_DETECTORS", str(model_dirs["timm-vit"].parent))
    assert not any(name.startswith("timm") or name.startswith("hf") for name in available_detectors())


def test_trained_folders_in_the_detector_path_are_listed(model_dirs, tmp_path, monkeypatch):
    folder = shutil.copytree(model_dirs["timm-cnn"], tmp_path / "zoo" / "my-cnn")
    config = json.loads((folder / "config.json").read_text())
    config["forensics"]["trained"] = True
    (folder / "config.json").write_text(json.dumps(config))
    monkeypatch.setenv("FORENSICS_DETECTORS", str(tmp_path / "zoo"))
    assert available_detectors()["my-cnn"] == folder
    assert load_detector("my-cnn", cache=False).kind == "timm-cnn"


@pytest.mark.parametrize(
    "labels, expected",
    [
        (["real", "fake"], [1]),
        (["FAKE", "REAL"], [0]),
        (["Realism", "Deepfake"], [1]),
        (["synthetic", "tampered", "real"], [0, 1]),
        (["authentic", "manipulated"], [1]),
        (["LABEL_0", "LABEL_1"], [1]),
    ],
)
def test_fake_labels_are_mapped_from_names(labels, expected):
    assert fake_label_indices(labels) == expected


def test_fake_labels_from_config_win_and_are_checked():
    assert fake_label_indices(["a", "b", "c"], ["c"]) == [2]
    with pytest.raises(DetectorError, match="not among"):
        fake_label_indices(["a", "b"], ["z"])
    with pytest.raises(DetectorError, match="cannot tell"):
        fake_label_indices(["cat", "dog", "bird"])


def test_three_class_model_sums_the_fake_classes(tmp_path):
    folder = make_random_detector(tmp_path / "m", "hf-vit", size=32, labels=("synthetic", "tampered", "real"))
    det = load_detector(folder, allow_untrained=True)
    probs = det.predict_crops(_crops(2, 32))
    np.testing.assert_allclose(det.fake_probability(probs), probs[:, 0] + probs[:, 1], atol=1e-6)
    assert det.resolve_target("real", probs) == [2, 2]
    assert det.resolve_target("tampered", probs) == [1, 1]
    with pytest.raises(DetectorError, match="not one of"):
        det.resolve_target("cat", probs)


def test_bad_model_folders_give_one_line_errors(tmp_path, model_dirs):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DetectorError, match="no config.json"):
        load_detector(empty, cache=False)
    broken = shutil.copytree(model_dirs["timm-vit"], tmp_path / "broken")
    (broken / "config.json").write_text("{not json")
    with pytest.raises(DetectorError, match="not valid JSON"):
        load_detector(broken, cache=False)
    no_weights = shutil.copytree(model_dirs["timm-vit"], tmp_path / "noweights")
    (no_weights / "model.safetensors").unlink()
    with pytest.raises(DetectorError, match="no model.safetensors"):
        load_detector(no_weights, allow_untrained=True, cache=False)
    garbage = shutil.copytree(model_dirs["timm-vit"], tmp_path / "garbage")
    (garbage / "model.safetensors").write_bytes(b"\x00" * 100)
    with pytest.raises(DetectorError, match="unreadable safetensors") as err:
        load_detector(garbage, allow_untrained=True, cache=False)
    assert "\n" not in str(err.value)
    with pytest.raises(DetectorError, match="not a model folder"):
        load_detector("./no/such/folder", cache=False)


class _Payload:
    """Unpickling this would run code of the file's choosing: weights_only must refuse it."""

    def __reduce__(self):
        return (print, ("pickle ran",))


def test_pickled_weights_are_refused_unless_weights_only(tmp_path, model_dirs, capsys):
    folder = shutil.copytree(model_dirs["timm-vit"], tmp_path / "pickled")
    state = {k: v.clone() for k, v in load_detector(folder, allow_untrained=True, cache=False).model.state_dict().items()}
    (folder / "model.safetensors").unlink()
    with open(folder / "pytorch_model.bin", "wb") as handle:
        pickle.dump({"payload": _Payload()}, handle)
    with pytest.raises(DetectorError, match="weights_only"):
        load_detector(folder, allow_untrained=True, cache=False)
    assert "pickle ran" not in capsys.readouterr().out
    torch.save(state, folder / "pytorch_model.bin")  # a plain tensor dict passes weights_only
    assert load_detector(folder, allow_untrained=True, cache=False).kind == "timm-vit"


def _hub_cache(root, repo_id: str, source) -> None:
    """Lay out a model folder as huggingface_hub's cache does (refs/main -> snapshots/<sha>)."""
    sha = "0123456789abcdef0123456789abcdef01234567"
    repo = root / f"models--{repo_id.replace('/', '--')}"
    shutil.copytree(source, repo / "snapshots" / sha)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(sha)


def test_hub_ids_resolve_from_the_cache_offline_and_fail_fast_otherwise(tmp_path, model_dirs, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    _hub_cache(tmp_path / "hub", "someone/vit-deepfake", model_dirs["hf-vit"])
    folder = resolve_model_folder("someone/vit-deepfake")
    assert (folder / "config.json").is_file() and "snapshots" in str(folder)
    det = load_detector("someone/vit-deepfake", allow_untrained=True, cache=False)
    assert det.kind == "transformers"
    start = time.perf_counter()
    with pytest.raises(DetectorError, match="offline and not in the local cache"):
        resolve_model_folder("someone/not-cached")
    assert time.perf_counter() - start < 5, "offline must fail fast, not retry"


def test_every_bundled_card_was_measured_on_the_weights_it_ships_with():
    """Each bundled folder's metrics.json (and so its card and the app's figures) names the SHA-256
    of the weights it measured, and they are the folder's weights: new weights without a new
    `python -m training evaluate` fail here. The path is the bundled folder's, not a machine's."""
    from forensics.core import sha256_file
    from tests.conftest import ROOT

    bundled = sorted(p for p in (ROOT / "assets" / "detectors").iterdir() if (p / "metrics.json").is_file())
    assert [p.name for p in bundled] == ["default", "mobilenetv2", "patch"]
    for folder in bundled:
        measured = json.loads((folder / "metrics.json").read_text())["detector"]
        assert measured["weights_sha256"] == sha256_file(folder / "model.safetensors"), folder.name
        assert measured["path"] == f"assets/detectors/{folder.name}"
        assert f"Weights measured: SHA-256 `{measured['weights_sha256'][:16]}`" in (folder / "README.md").read_text()
