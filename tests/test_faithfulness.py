"""The faithfulness metric itself, on detectors built so that the truth is known: the fake logit is
the mean of one image region (or its mean energy: texture, which a smooth fill removes), so a map on
that region must score better than a random map, and a random map better than one pointing away,
on deletion and on insertion, with every way of removing pixels."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from forensics.detectors.base import Detector, DetectorInfo
from forensics.explain.faithfulness import (REMOVALS, FaithfulnessOptions, centre_map, curve_area,
                                            deletion_insertion, most_faithful, pixel_ranks, push_pull,
                                            remove_pixels, score_face)

SIZE = 64
REGION = (slice(0, SIZE // 2), slice(0, SIZE // 2))  # top-left quadrant: the only evidence


class RegionEnergy(nn.Module):
    """logits = [0, 8 * mean(x^2 over the region) - 4]: noise there reads as fake, a blur as real."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        energy = (x[:, :, REGION[0], REGION[1]] ** 2).mean(dim=(1, 2, 3))
        return torch.stack([torch.zeros_like(energy), 8.0 * energy - 4.0], dim=1)


class RegionMean(nn.Module):
    """logits = [0, 4 * mean(x over the region) - 3]: a bright region reads as fake. A blur keeps a
    region's mean, so only removals that replace the colour (impute, mean) can take this evidence away."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        level = x[:, :, REGION[0], REGION[1]].mean(dim=(1, 2, 3))
        return torch.stack([torch.zeros_like(level), 4.0 * level - 3.0], dim=1)


class RegionDetector(Detector):
    kind = "test-region"

    @property
    def cam_target_layers(self) -> list[nn.Module]:
        return []


def _detector(model: nn.Module | None = None) -> Detector:
    info = DetectorInfo(name="region", labels=["real", "fake"], input_size=SIZE)
    return RegionDetector(model or RegionEnergy(), info)


def _maps() -> dict[str, np.ndarray]:
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32) / SIZE
    towards = np.exp(-((xx - 0.25) ** 2 + (yy - 0.25) ** 2) / 0.02)  # a blob on the evidence
    away = np.exp(-((xx - 0.75) ** 2 + (yy - 0.75) ** 2) / 0.02)  # the opposite corner
    return {"towards": towards, "away": away}


def _noise_face(seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).normal(0, 1, (3, SIZE, SIZE)).astype(np.float32))


def _bright_face(seed: int = 0) -> torch.Tensor:
    """Dark noise with the evidence region bright: the region's mean is 2, the crop's 0.5."""
    image = torch.from_numpy(np.random.default_rng(seed).normal(0, 0.3, (3, SIZE, SIZE)).astype(np.float32))
    image[:, REGION[0], REGION[1]] += 2.0
    return image


def _quadrant_maps() -> dict[str, np.ndarray]:
    """Maps that cover a whole quadrant (softened at its edges): the evidence, or the opposite one."""
    import cv2

    towards, away = np.zeros((SIZE, SIZE), np.float32), np.zeros((SIZE, SIZE), np.float32)
    towards[REGION] = 1.0
    away[SIZE // 2 :, SIZE // 2 :] = 1.0
    return {"towards": cv2.GaussianBlur(towards, (0, 0), 3), "away": cv2.GaussianBlur(away, (0, 0), 3)}


@pytest.mark.parametrize("removal", ["impute", "mean"])
def test_on_a_region_mean_detector_the_map_on_the_region_wins_deletion_and_insertion(removal):
    """Imputation fills a hole from around it, so the bright region's mean survives until the map has
    removed the whole region (its centre alone is filled in from its rim): the maps cover quadrants."""
    det = _detector(RegionMean())
    image = _bright_face()
    assert det.predict(image[None])[0, 1] > 0.95
    face = score_face(det, image, _quadrant_maps(), target=1, options=FaithfulnessOptions(steps=8, removal=removal))
    towards, away, rnd = face.methods["towards"], face.methods["away"], face.random
    assert towards.deletion + 0.3 < away.deletion and towards.insertion > away.insertion + 0.3
    assert towards.deletion < rnd.deletion - 0.1 and rnd.deletion < away.deletion  # random between them
    assert away.insertion < rnd.insertion < towards.insertion
    assert towards.insertion_curve[0] < 0.5  # all removed: the evidence is gone


@pytest.mark.parametrize("removal", sorted(REMOVALS))
def test_a_map_on_the_evidence_beats_random_and_random_beats_one_pointing_away(removal):
    det = _detector()
    image = _noise_face()
    assert det.predict(image[None])[0, 1] > 0.9  # the crop reads as fake to start with
    face = score_face(det, image, _maps(), target=1, options=FaithfulnessOptions(steps=8, removal=removal),
                      centre=True)
    towards, away, rnd = face.methods["towards"], face.methods["away"], face.random
    assert towards.deletion < rnd.deletion - 0.1 < away.deletion - 0.2
    assert towards.insertion > rnd.insertion + 0.1 > away.insertion + 0.2
    # the curves start and end where they must: the crop, and the crop with every pixel removed
    assert towards.deletion_curve[0] == pytest.approx(away.deletion_curve[0]) == pytest.approx(0.982, abs=0.02)
    assert towards.deletion_curve[-1] == pytest.approx(towards.insertion_curve[0])
    assert towards.insertion_curve[0] < 0.1
    assert len(towards.deletion_curve) == 9 and face.fractions[0] == 0 and face.fractions[-1] == 1
    scores = face.to_dict()
    assert set(scores["towards"]) >= {"deletion", "insertion", "random_deletion", "random_insertion"}
    assert most_faithful(scores) == "towards"
    # the centre blob covers half of the evidence: between the two
    assert towards.deletion < face.extra["centre"].deletion < away.deletion


def test_no_map_is_called_most_faithful_when_none_beats_random():
    det = _detector()
    scores = score_face(det, _noise_face(1), {"away": _maps()["away"]}, target=1).to_dict()
    assert most_faithful(scores) is None


def test_every_step_of_every_map_goes_through_few_forward_passes():
    calls: list[int] = []

    class Counting(RegionEnergy):
        def forward(self, x):
            calls.append(len(x))
            return super().forward(x)

    det = _detector(Counting())
    score_face(det, _noise_face(), _maps(), target=1, options=FaithfulnessOptions(steps=8, max_batch=96))
    # 3 maps (2 + random) x 2 curves x 7 inner steps + the two shared ends = 44 images, one pass
    assert calls == [44]
    calls.clear()
    score_face(det, _noise_face(), _maps(), target=1, options=FaithfulnessOptions(steps=8, max_batch=20))
    assert calls == [20, 20, 4]
    # The crop's own probability, when the caller has it, is not run again: it starts every deletion
    # curve and ends every insertion curve as given.
    calls.clear()
    face = score_face(det, _noise_face(), _maps(), target=1, options=FaithfulnessOptions(steps=4, max_batch=96),
                      original=0.75)
    assert calls == [1 + 3 * 2 * 3]
    for score in [*face.methods.values(), face.random]:
        assert score.deletion_curve[0] == 0.75 and score.insertion_curve[-1] == 0.75
        assert score.deletion_curve[-1] == score.insertion_curve[0]  # the crop with every pixel removed


def test_fewer_steps_are_the_same_curves_at_fewer_points():
    """4 steps remove the pixels 8 steps remove at every other step: the same images, the same values."""
    det, image = _detector(), _noise_face(3)
    eight = deletion_insertion(det, image, _maps(), 1, FaithfulnessOptions(steps=8))
    four = deletion_insertion(det, image, _maps(), 1, FaithfulnessOptions(steps=4))
    for name in _maps():
        assert four[name].deletion_curve == pytest.approx(eight[name].deletion_curve[::2], abs=1e-6)
        assert four[name].insertion_curve == pytest.approx(eight[name].insertion_curve[::2], abs=1e-6)


def test_auto_runtime_scores_through_the_folders_onnx_float_build_only_when_it_gives_the_models_scores(
        model_dirs, tmp_path):
    import shutil

    from forensics.detectors import load_detector
    from forensics.detectors.onnx_family import OnnxDetector
    from forensics.explain.faithfulness import scoring_detector
    from forensics.int8.quantize import export_onnx

    folder = shutil.copytree(model_dirs["hybrid"], tmp_path / "hybrid")
    det = load_detector(folder, allow_untrained=True, cache=False)
    assert scoring_detector(det) is det  # no ONNX build in the folder: the model itself
    export_onnx(det, folder / "model.onnx", attention=False)
    det = load_detector(folder, allow_untrained=True, cache=False)
    scorer = scoring_detector(det)
    assert isinstance(scorer, OnnxDetector) and scorer.variant == "onnx" and scoring_detector(det) is scorer
    image = det.preprocess([np.random.default_rng(4).integers(0, 255, (64, 64, 3), dtype=np.uint8)])[0]
    maps = {"a": np.random.default_rng(5).random((8, 8)).astype(np.float32)}
    by_onnx = deletion_insertion(det, image, maps, 1, FaithfulnessOptions(steps=4))
    by_torch = deletion_insertion(det, image, maps, 1, FaithfulnessOptions(steps=4, runtime="detector"))
    assert by_onnx["a"].deletion_curve == pytest.approx(by_torch["a"].deletion_curve, abs=1e-4)
    assert by_onnx["a"].insertion_curve == pytest.approx(by_torch["a"].insertion_curve, abs=1e-4)
    # A build that no longer matches the weights (here: the model changed after the export) is not used.
    changed = load_detector(folder, allow_untrained=True, cache=False)
    with torch.no_grad():
        for parameter in changed.model.parameters():
            parameter.add_(0.5 * torch.randn_like(parameter))
    assert scoring_detector(changed) is changed
    with pytest.raises(ValueError, match="runtime"):
        FaithfulnessOptions(runtime="gpu")


def test_road_imputation_fills_holes_from_their_surroundings_and_keeps_the_rest():
    from forensics.explain.faithfulness import noisy_linear_imputation

    image = torch.zeros(3, 32, 32)
    image[:, :, 16:] = 1.0  # left half 0, right half 1
    keep = torch.ones(2, 1, 32, 32, dtype=torch.bool)
    keep[0, :, 12:20, 2:8] = False  # a hole inside the dark half
    keep[1] = False  # nothing kept
    out = noisy_linear_imputation(image, keep)
    assert torch.equal(out[0][:, keep[0, 0]], image[:, keep[0, 0]])  # kept pixels untouched
    assert out[0][:, 12:20, 2:8].abs().max() < 0.1  # filled from dark neighbours (plus small noise)
    assert torch.allclose(out[1], image.mean(dim=(1, 2), keepdim=True).expand_as(image))
    assert torch.equal(out, noisy_linear_imputation(image, keep))  # seeded


def test_onnx_runtime_scores_like_pytorch(tmp_path):
    """Forward passes only: the same model exported to ONNX and run by onnxruntime scores the same."""
    import onnxruntime as ort

    from forensics.detectors.onnx_family import OnnxModule
    from forensics.int8.quantize import INPUT_NAME

    path = tmp_path / "region.onnx"
    torch.onnx.export(RegionEnergy(), (torch.zeros(1, 3, SIZE, SIZE),), str(path), input_names=[INPUT_NAME],
                      output_names=["logits"], dynamic_axes={INPUT_NAME: {0: "batch"}, "logits": {0: "batch"}},
                      dynamo=False)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    onnx_det = _detector(OnnxModule(session, ["logits"]))
    image = _noise_face(2)
    torch_scores = deletion_insertion(_detector(), image, _maps(), 1)
    onnx_scores = deletion_insertion(onnx_det, image, _maps(), 1)
    for name in _maps():
        assert onnx_scores[name].deletion == pytest.approx(torch_scores[name].deletion, abs=1e-4)
        assert onnx_scores[name].insertion == pytest.approx(torch_scores[name].insertion, abs=1e-4)


def test_push_pull_fills_holes_smoothly_from_what_is_kept():
    ramp = torch.linspace(-1, 1, SIZE)[None, None, None, :].expand(1, 3, SIZE, SIZE).contiguous()
    keep = torch.ones(1, 1, SIZE, SIZE, dtype=torch.bool)
    keep[..., 20:44, 20:44] = False  # a square hole in a left-to-right ramp
    filled = remove_pixels(ramp[0], keep, "impute")
    assert torch.equal(filled[keep.expand_as(filled)], ramp[keep.expand_as(ramp)])  # kept pixels untouched
    hole = filled[0, 0, 20:44, 20:44]
    assert (hole - ramp[0, 0, 20:44, 20:44]).abs().mean() < 0.15  # continues the ramp across the hole
    assert hole.std() < ramp[0, 0].std()  # and is no sharper than it
    nothing = push_pull(ramp, torch.zeros(1, 1, SIZE, SIZE))
    assert torch.allclose(nothing, ramp.mean(dim=(2, 3), keepdim=True).expand_as(ramp), atol=1e-5)  # mean colour
    mean_fill = remove_pixels(ramp[0], torch.zeros(1, 1, SIZE, SIZE, dtype=torch.bool), "mean")
    assert torch.allclose(mean_fill, nothing, atol=1e-5)  # "impute" and "mean" share the fully removed end
    with pytest.raises(ValueError, match="removal must be one of"):
        FaithfulnessOptions(removal="black")


def test_pixel_ranks_put_the_highest_first_and_break_ties_at_random():
    rng = np.random.default_rng(0)
    heatmap = np.zeros((4, 4), np.float32)
    heatmap[2, 3] = 1.0
    ranks = pixel_ranks(heatmap, rng)
    assert ranks[2, 3] == 0 and sorted(ranks.ravel()) == list(range(16))
    flat = pixel_ranks(np.zeros((8, 8), np.float32), rng)
    assert not np.array_equal(flat.ravel(), np.arange(64))  # not row by row


def test_curve_area_and_centre_map():
    assert curve_area([0, 0.5, 1], [1, 1, 1]) == pytest.approx(1.0)
    assert curve_area([0, 1], [0, 1]) == pytest.approx(0.5)
    blob = centre_map(33)
    assert blob[16, 16] == pytest.approx(1.0) and blob[0, 0] < 0.03


def test_localisation_scores_a_map_on_the_region_above_one_off_it():
    from forensics.explain.localisation import pointing_game, region_auc, region_from_mask

    mask = np.zeros((128, 128), np.float32)
    mask[:64, :64] = 0.6  # a blend mask at its own strength, larger than the maps
    region = region_from_mask(mask, SIZE)
    assert region[: SIZE // 2, : SIZE // 2].all() and not region[SIZE // 2 :, :].any()
    maps = _maps()
    assert pointing_game(maps["towards"], region) == 1.0 and pointing_game(maps["away"], region) == 0.0
    assert region_auc(maps["towards"], region) > 0.95
    assert region_auc(maps["away"], region) < 0.25
    assert pointing_game(np.zeros((SIZE, SIZE)), region) == pytest.approx(0.25)  # a flat map: the share inside


def test_model_randomisation_changes_the_model_not_the_loaded_detector(model_dirs):
    from forensics.detectors import load_detector
    from forensics.explain import explain
    from forensics.explain.randomisation import randomised_detector, rank_correlation

    det = load_detector(model_dirs["timm-vit"], allow_untrained=True)
    before = {k: v.clone() for k, v in det.model.state_dict().items()}
    shuffled = randomised_detector(det, blocks=1)
    assert all(torch.equal(before[k], v) for k, v in det.model.state_dict().items())
    changed = [k for k, v in shuffled.model.state_dict().items() if not torch.equal(before[k], v)]
    assert changed and all(k.startswith(("blocks.", "norm", "head", "fc_norm")) for k in changed)
    batch = torch.from_numpy(np.random.default_rng(0).normal(0, 1, (1, 3, det.input_size, det.input_size))).float()
    same = explain(det, batch, ["gradcam"]).maps["gradcam"][0]
    assert rank_correlation(same, same) == pytest.approx(1.0)
    assert rank_correlation(same, np.zeros_like(same)) != rank_correlation(same, np.zeros_like(same))  # NaN
    other = explain(shuffled, batch, ["gradcam"]).maps["gradcam"][0]
    assert rank_correlation(same, other) < 0.99


def test_road_ranks_the_map_on_the_evidence_above_one_pointing_away():
    from forensics.explain.faithfulness import road_scores

    det = _detector()
    batch = torch.stack([_noise_face(3), _noise_face(4)])
    maps = {name: np.stack([m, m]) for name, m in _maps().items()}
    road = road_scores(det, batch, maps, [1, 1], percentiles=(50,))
    assert road["towards"].shape == (2,) and (road["towards"] > road["away"] + 0.2).all()
