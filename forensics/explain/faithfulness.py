"""How faithful is a map? Deletion and insertion (Petsiuk et al., RISE, 2018), forward passes only.

A map ranks the crop's pixels. **Deletion** removes them in that order, most relevant first, in
``steps`` equal steps, and records the detector's probability for the explained class after each
step; **insertion** starts from the removed image and puts the pixels back in the same order. The
area under each curve (fraction of pixels on x, probability on y) is the score: a map that points at
what the decision rests on makes the deletion curve fall early (low area) and the insertion curve
rise early (high area). The same curves for a **random map** of the same face (uniform noise on the
model's patch grid, upsampled like the real maps, so the baseline removes blobs of the same grain
rather than scattered single pixels) are the baseline printed beside them.

"Removed" means replaced by a blurred copy of the crop (Gaussian, sigma = 1/16 of the side), not by
black: black squares add sharp new edges, which a detector of blending seams reads as evidence of
their own; blur takes the fine detail (the seams, the texture) away and keeps the coarse face.

Cost: the curves of every map of a face (and of its random map) are built as one stack of images
and sent through :meth:`Detector.predict` in as few batches as ``max_batch`` allows; the two end
points every curve shares (the crop and its blurred copy) are run once. Only forward passes, so
ONNX float and int8 builds are scored as well as PyTorch models. With 4 maps and ``steps=8``: 72
images per face.

ROAD (Rong et al. 2022, ``pytorch_grad_cam.metrics.road``) is used by the explanation benchmark
only (:func:`road_scores`): its noisy linear imputation solves a sparse system per image and map
(about 0.1-0.3 s each on a CPU), too slow for every face of an analysis, and it answers the same
question (does removing the top-ranked pixels hurt the class?) with an in-distribution fill.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch

from forensics.detectors.base import Detector
from forensics.overlay import normalize_map, resize_map

RANDOM = "random"
CENTRE = "centre"


@dataclass(frozen=True)
class FaithfulnessOptions:
    """``steps``: points on each curve after the start; ``max_batch``: images per forward pass;
    ``grid``: the random map's grid (default: the detector's patch grid, else 14x14)."""

    steps: int = 8
    blur_sigma_fraction: float = 1.0 / 16.0
    max_batch: int = 96
    grid: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if not 2 <= int(self.steps) <= 100:
            raise ValueError(f"faithfulness steps must be in 2..100, not {self.steps}")
        if int(self.max_batch) < 1:
            raise ValueError(f"max_batch must be at least 1, not {self.max_batch}")


@dataclass
class MapScore:
    """One map's curves (probability of the explained class after each step) and their areas."""

    deletion: float
    insertion: float
    deletion_curve: list[float]
    insertion_curve: list[float]


@dataclass
class FaceFaithfulness:
    """Every map of one face, its random baseline, and the x of the curves (fraction of pixels)."""

    fractions: list[float]
    target: int
    methods: dict[str, MapScore]
    random: MapScore
    extra: dict[str, MapScore] = field(default_factory=dict)  # other baselines (e.g. the centre blob)

    def to_dict(self) -> dict:
        """``{method: {deletion, insertion, random_deletion, random_insertion, curves...}}``: the JSON
        of an analysed face (lower deletion and higher insertion are better)."""
        out = {}
        for name, score in self.methods.items():
            out[name] = {
                "deletion": _round(score.deletion), "insertion": _round(score.insertion),
                "random_deletion": _round(self.random.deletion), "random_insertion": _round(self.random.insertion),
                "deletion_curve": [_round(v) for v in score.deletion_curve],
                "insertion_curve": [_round(v) for v in score.insertion_curve],
                "random_deletion_curve": [_round(v) for v in self.random.deletion_curve],
                "random_insertion_curve": [_round(v) for v in self.random.insertion_curve],
                "fractions": [_round(v) for v in self.fractions],
            }
        return out


def _round(value: float) -> float:
    return round(float(value), 4)


def random_map(size: int, grid: int, rng: np.random.Generator) -> np.ndarray:
    """Uniform noise on a ``grid x grid`` lattice, upsampled bilinearly to ``size``: a map with no
    information but the grain of a patch-level explanation."""
    return resize_map(rng.random((grid, grid)).astype(np.float32), (size, size))


def centre_map(size: int, sigma_fraction: float = 0.25) -> np.ndarray:
    """A Gaussian blob on the crop's centre: "the face is in the middle", the map that knows nothing
    about the decision but where faces are framed."""
    axis = (np.arange(size, dtype=np.float32) - (size - 1) / 2.0) / (sigma_fraction * size)
    return np.exp(-0.5 * (axis[:, None] ** 2 + axis[None, :] ** 2)).astype(np.float32)


def blurred(image: torch.Tensor, sigma_fraction: float) -> torch.Tensor:
    """The "removed" version of a ``(3, S, S)`` crop: Gaussian blur, sigma relative to the side."""
    from torchvision.transforms.functional import gaussian_blur

    sigma = max(0.5, sigma_fraction * image.shape[-1])
    kernel = int(2 * round(3 * sigma) + 1)
    kernel = min(kernel, (image.shape[-1] // 2) * 2 - 1)
    return gaussian_blur(image[None], [kernel, kernel], [sigma, sigma])[0]


def pixel_ranks(heatmap: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each pixel's place in the map's order, most relevant first (0 = first removed). Ties (flat
    regions, a constant map) are broken at random, so a flat map behaves like a random one rather
    than removing rows top to bottom."""
    flat = normalize_map(heatmap).ravel()
    order = np.lexsort((rng.random(flat.size), -flat))
    ranks = np.empty(flat.size, dtype=np.int64)
    ranks[order] = np.arange(flat.size)
    return ranks.reshape(heatmap.shape)


def curve_area(fractions: Sequence[float], values: Sequence[float]) -> float:
    """Trapezoidal area under a curve on [0, 1]."""
    x, y = np.asarray(fractions, dtype=np.float64), np.asarray(values, dtype=np.float64)
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2.0))


def deletion_insertion(
    detector: Detector,
    image: torch.Tensor,
    maps: dict[str, np.ndarray],
    target: int,
    options: FaithfulnessOptions = FaithfulnessOptions(),
) -> dict[str, MapScore]:
    """Deletion and insertion curves of several maps of one preprocessed crop ``(3, S, S)``.

    Every intermediate image of every curve is stacked and scored in batches of at most
    ``options.max_batch``; the crop and its blurred copy (every curve's two ends) once.
    """
    size = int(image.shape[-1])
    steps = int(options.steps)
    pixels = size * size
    removed = blurred(image, options.blur_sigma_fraction)
    rng = np.random.default_rng(options.seed)
    counts = [round(pixels * j / steps) for j in range(1, steps)]
    stack: list[torch.Tensor] = [image, removed]
    for heatmap in maps.values():
        if heatmap.shape != (size, size):
            heatmap = resize_map(heatmap, (size, size))
        ranks = torch.from_numpy(pixel_ranks(heatmap, rng))
        for count in counts:
            gone = (ranks < count)[None]
            stack.append(torch.where(gone, removed, image))  # deletion: the top pixels blurred
            stack.append(torch.where(gone, image, removed))  # insertion: only the top pixels sharp
    probabilities = _predict_stack(detector, stack, int(options.max_batch))[:, target]
    original, empty = float(probabilities[0]), float(probabilities[1])
    fractions = [j / steps for j in range(steps + 1)]
    scores = {}
    for n, name in enumerate(maps):
        inner = probabilities[2 + n * 2 * (steps - 1) : 2 + (n + 1) * 2 * (steps - 1)]
        deletion = [original, *[float(v) for v in inner[0::2]], empty]
        insertion = [empty, *[float(v) for v in inner[1::2]], original]
        scores[name] = MapScore(curve_area(fractions, deletion), curve_area(fractions, insertion), deletion, insertion)
    return scores


def _predict_stack(detector: Detector, stack: list[torch.Tensor], max_batch: int) -> np.ndarray:
    parts = [detector.predict(torch.stack(stack[i : i + max_batch])) for i in range(0, len(stack), max_batch)]
    return np.concatenate(parts)


def score_face(
    detector: Detector,
    image: torch.Tensor,
    maps: dict[str, np.ndarray],
    target: int,
    options: FaithfulnessOptions = FaithfulnessOptions(),
    centre: bool = False,
) -> FaceFaithfulness:
    """A face's maps scored against a random map of the same face (and, with ``centre``, against the
    centre blob), all in the same batched passes."""
    size = int(image.shape[-1])
    grid = options.grid or (detector.grid_size[0] if detector.grid_size else 14)
    baselines = {RANDOM: random_map(size, grid, np.random.default_rng(options.seed + 1))}
    if centre:
        baselines[CENTRE] = centre_map(size)
    if set(maps) & set(baselines):
        raise ValueError(f"map names {sorted(set(maps) & set(baselines))} are reserved for the baselines")
    scores = deletion_insertion(detector, image, {**maps, **baselines}, target, options)
    fractions = [j / options.steps for j in range(options.steps + 1)]
    return FaceFaithfulness(
        fractions=fractions,
        target=int(target),
        methods={name: scores[name] for name in maps},
        random=scores[RANDOM],
        extra={name: scores[name] for name in baselines if name != RANDOM},
    )


def most_faithful(scores: dict[str, dict]) -> str | None:
    """The map whose insertion minus deletion is highest, if it beats the random map on that
    measure; ``None`` when no map does (then no map should be trusted more than noise)."""
    def margin(s: dict) -> float:
        return (s["insertion"] - s["deletion"]) - (s["random_insertion"] - s["random_deletion"])

    best = max(scores, key=lambda m: margin(scores[m]), default=None)
    return best if best is not None and margin(scores[best]) > 0 else None


def road_scores(
    detector: Detector,
    batch: torch.Tensor,
    maps: dict[str, np.ndarray],
    targets: Sequence[int],
    percentiles: Sequence[int] = (20, 50, 80),
) -> dict[str, np.ndarray]:
    """ROAD (``pytorch_grad_cam.metrics.road.ROADCombined``) per map and face: the mean of "remove
    least relevant first" minus "remove most relevant first" probability changes over
    ``percentiles``, divided by 2; higher is more faithful. Forward passes only (the model is any
    callable detector model, ONNX included), with noisy linear imputation in place of the pixels."""
    from pytorch_grad_cam.metrics.road import ROADCombined
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputSoftmaxTarget

    metric = ROADCombined(percentiles=list(percentiles))
    wanted = [ClassifierOutputSoftmaxTarget(int(t)) for t in targets]

    def model(x: torch.Tensor) -> torch.Tensor:
        return detector.model(x).float()

    with torch.no_grad():
        return {name: np.asarray(metric(batch, np.asarray(stack, np.float32), wanted, model), np.float64)
                for name, stack in maps.items()}


__all__ = ["CENTRE", "RANDOM", "FaceFaithfulness", "FaithfulnessOptions", "MapScore", "blurred", "centre_map",
           "curve_area", "deletion_insertion", "most_faithful", "pixel_ranks", "random_map", "road_scores",
           "score_face"]
