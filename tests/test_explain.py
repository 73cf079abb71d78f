"""Explanations: maps are finite, crop-sized, class-specific, made from one pass, and the attention
formulas match hand computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from forensics.detectors import load_detector
from forensics.detectors.random_models import RANDOM_BUILDS, RANDOM_MODELS, make_random_detector
from forensics.explain import METHODS, ExplainOptions, explain, parse_methods
from forensics.explain.attention import attention_rollout, last_layer_attention
from forensics.overlay import colorize, normalize_map, overlay, paste_overlay


def _batch(det, n=2):
    rng = np.random.default_rng(3)
    crops = [rng.integers(0, 256, (det.input_size, det.input_size, 3), dtype=np.uint8) for _ in range(n)]
    return det.preprocess(crops)


@pytest.mark.parametrize("model", RANDOM_MODELS)
def test_every_map_is_finite_crop_sized_and_depends_on_the_target(model, model_dirs):
    det = load_detector(model_dirs[model], allow_untrained=True)
    batch = _batch(det)
    for_real = explain(det, batch, METHODS, target=0)
    for_fake = explain(det, batch, METHODS, target=1)
    expected = [m for m in METHODS if det.has_attention or m.startswith("gradcam")]
    assert list(for_fake.maps) == expected
    if not det.has_attention:
        assert set(for_fake.skipped) == {"attention", "rollout"}
    assert for_real.targets == [0, 0] and for_fake.targets == [1, 1]
    for method in expected:
        a, b = for_real.maps[method], for_fake.maps[method]
        assert a.shape == (2, det.input_size, det.input_size) == b.shape
        assert np.isfinite(a).all() and np.isfinite(b).all()
        assert a.min() >= 0.0 and a.max() <= 1.0 + 1e-6
        assert np.abs(a - b).max() > 0.05, f"{method} ignores the target class"


@pytest.mark.parametrize("build", RANDOM_BUILDS)
def test_every_build_gives_the_maps_its_graph_outputs(build, model_dirs, onnx_build):
    """ONNX builds have no gradients: attention and rollout (class-agnostic) where the model has
    attention, patch scores where it scores patches, and Grad-CAM skipped with the reason."""
    model, variant = build.split(":")
    pytorch = load_detector(model_dirs[model], allow_untrained=True)
    det = load_detector(f"{onnx_build(model)}:{variant}", allow_untrained=True)
    batch = _batch(det)
    result = explain(det, batch, [*METHODS, "patches"])
    expected = {"attention", "rollout"} if pytorch.has_attention else set()
    expected |= {"patches"} if pytorch.patch_score_module is not None else set()
    assert set(result.maps) == expected
    assert "gradient" in result.skipped["gradcam"] and "gradient" in result.skipped["gradcam++"]
    for method, maps in result.maps.items():
        assert maps.shape == (2, det.input_size, det.input_size) and np.isfinite(maps).all()
        assert maps.min() >= 0.0 and maps.max() <= 1.0 + 1e-6
    if variant == "onnx":  # the float build's maps are PyTorch's class-agnostic maps
        same = explain(pytorch, batch, list(expected), options=ExplainOptions(class_weighted=False))
        for method in expected:
            np.testing.assert_allclose(result.maps[method], same.maps[method], atol=1e-3, err_msg=method)


def test_class_agnostic_attention_does_not_depend_on_the_target(model_dirs):
    det = load_detector(model_dirs["timm-vit"], allow_untrained=True)
    batch = _batch(det)
    options = ExplainOptions(class_weighted=False)
    a = explain(det, batch, ["attention", "rollout"], target=0, options=options)
    b = explain(det, batch, ["attention", "rollout"], target=1, options=options)
    for method in ("attention", "rollout"):
        np.testing.assert_allclose(a.maps[method], b.maps[method], atol=1e-6)


def test_all_four_maps_share_one_forward_and_one_backward_pass(model_dirs):
    det = load_detector(model_dirs["timm-vit"], allow_untrained=True)
    calls = {"forward": 0, "backward": 0}

    def count_forward(*_):
        calls["forward"] += 1

    def count_backward(*_):
        calls["backward"] += 1

    handles = [det.model.register_forward_hook(count_forward), det.model.head.register_full_backward_hook(count_backward)]
    try:
        result = explain(det, _batch(det, 3), METHODS, target="fake")
    finally:
        for h in handles:
            h.remove()
    assert len(result.maps) == 4
    assert calls == {"forward": 1, "backward": 1}
    # The Grad-CAM hooks are gone afterwards: later predictions record nothing.
    assert not det.cam_target_layers[0]._forward_hooks


def test_grid_is_derived_from_the_model_not_assumed(tmp_path):
    det = load_detector(make_random_detector(tmp_path / "m", "timm-vit", size=48), allow_untrained=True)
    assert det.grid_size == (6, 6)
    result = explain(det, _batch(det, 1), ["attention", "gradcam"])
    assert result.maps["attention"].shape == (1, 48, 48) == result.maps["gradcam"].shape


def _random_attention(layers, batch, heads, tokens, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.softmax(torch.randn(batch, heads, tokens, tokens, generator=g), dim=-1) for _ in range(layers)]


def _rollout_reference(attentions, fusion, discard_ratio, prefix):
    """Straight numpy transcription of Abnar & Zuidema's rollout, as in the reference vit-explain code."""
    att = [a.numpy() for a in attentions]
    b, _, n, _ = att[0].shape
    out = []
    for i in range(b):
        result = np.eye(n)
        for a in att:
            fused = {"mean": a[i].mean(0), "max": a[i].max(0), "min": a[i].min(0)}[fusion]
            flat = fused.flatten().copy()
            k = int(flat.size * discard_ratio)
            if k:
                idx = np.argsort(flat, kind="stable")[:k]
                keep0 = flat[0]
                flat[idx] = 0
                if prefix:
                    flat[0] = keep0
            fused = flat.reshape(n, n)
            mixed = (fused + np.eye(n)) / 2
            mixed = mixed / mixed.sum(-1, keepdims=True)
            result = mixed @ result
        out.append(result[0, prefix:] if prefix else result.mean(0))
    return np.stack(out)


@pytest.mark.parametrize("fusion", ["mean", "max", "min"])
@pytest.mark.parametrize("discard", [0.0, 0.5])
@pytest.mark.parametrize("prefix", [1, 0])
def test_rollout_matches_the_reference_formula(fusion, discard, prefix):
    grid = (3, 3)
    attentions = _random_attention(3, 2, 4, 9 + prefix)
    got = attention_rollout(attentions, prefix, grid, fusion, discard).numpy()
    want = _rollout_reference(attentions, fusion, discard, prefix).reshape(2, 3, 3)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


def test_last_layer_attention_reads_the_cls_row_or_the_patch_columns():
    attentions = _random_attention(2, 1, 2, 5)  # CLS + 2x2 patches
    got = last_layer_attention(attentions, 1, (2, 2)).numpy()
    np.testing.assert_allclose(got.reshape(-1), attentions[-1][0].mean(0)[0, 1:].numpy(), rtol=1e-6)
    pure = _random_attention(2, 1, 2, 4)  # SigLIP-like: 2x2 patches, no CLS
    got = last_layer_attention(pure, 0, (2, 2)).numpy()
    np.testing.assert_allclose(got.reshape(-1), pure[-1][0].mean(0).mean(0).numpy(), rtol=1e-6)


def test_gradient_weighting_keeps_only_positive_evidence():
    attentions = _random_attention(1, 1, 2, 5)
    grads = [torch.ones_like(attentions[0]) * -1.0]  # every head argues against the class
    got = last_layer_attention(attentions, 1, (2, 2), grads).numpy()
    assert np.all(got == 0)


def test_parse_methods():
    assert parse_methods("all") == [*METHODS, "patches"]
    assert parse_methods("none") == []
    assert parse_methods("gradcam++, attention") == ["gradcam++", "attention"]
    assert parse_methods("Grad-CAM,attn") == ["gradcam", "attention"]
    with pytest.raises(ValueError, match="unknown explanation method"):
        parse_methods("lime")
    with pytest.raises(ValueError, match="head_fusion"):
        ExplainOptions(head_fusion="median")
    with pytest.raises(ValueError, match="discard_ratio"):
        ExplainOptions(discard_ratio=1.0)


def test_overlays():
    assert np.all(normalize_map(np.full((4, 4), 7.0)) == 0)
    m = normalize_map(np.array([[np.nan, 1.0], [2.0, np.inf]]))
    assert np.isfinite(m).all() and m.max() == 1.0
    hot = np.zeros((8, 8), np.float32)
    hot[0, 0] = 1.0
    colour = colorize(hot)
    assert colour.shape == (8, 8, 3) and colour.dtype == np.uint8
    assert colour[0, 0, 0] > 100 and colour[7, 7, 2] > 100  # jet: red where hot, blue where cold
    image = np.full((40, 60, 3), 128, np.uint8)
    blended = overlay(image, hot, alpha=0.5)
    assert blended.shape == image.shape and not np.array_equal(blended, image)
    # A crop box running past the image edge is clipped; outside the box nothing changes.
    pasted = paste_overlay(image, hot, (40, -10, 80, 30), alpha=0.6)
    assert np.array_equal(pasted[:, :40], image[:, :40]) and np.array_equal(pasted[30:], image[30:])
    assert not np.array_equal(pasted[:30, 40:], image[:30, 40:])


def test_patch_detector_explains_itself_with_its_patch_scores(model_dirs):
    det = load_detector(model_dirs["patch"], allow_untrained=True)
    batch = _batch(det, 2)
    result = explain(det, batch, ["gradcam", "patches"], target="fake")
    scores = torch.sigmoid(det.model.patch_scores(batch))  # P(fake) of each 4x4-pixel cell
    assert result.maps["patches"].shape == (2, 64, 64)
    np.testing.assert_allclose(result.maps["patches"][:, ::4, ::4].mean(), scores.mean().item(), atol=0.02)
    as_real = explain(det, batch, ["patches"], target="real").maps["patches"]
    np.testing.assert_allclose(as_real, 1.0 - result.maps["patches"], atol=1e-5)
    assert explain(det, batch, ["patches", "attention"]).skipped.keys() == {"attention"}
    vit = load_detector(model_dirs["timm-vit"], allow_untrained=True)
    assert "patches" in explain(vit, _batch(vit, 1), ["patches"]).skipped
