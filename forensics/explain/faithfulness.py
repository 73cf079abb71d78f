"""How faithful is a map? Deletion and insertion (Petsiuk et al., RISE, 2018), forward passes only.

A map ranks the crop's pixels. **Deletion** removes them in that order, most relevant first, in
``steps`` equal steps, and records the detector's probability for the explained class after each
step; **insertion** starts from the removed image and puts the pixels back in the same order. The
area under each curve (fraction of pixels on x, probability on y) is the score: a map that points at
what the decision rests on makes the deletion curve fall early (low area) and the insertion curve
rise early (high area). The same curves for a **random map** of the same face (uniform noise on the
model's patch grid, upsampled like the real maps, so the baseline removes blobs of the same grain
rather than scattered single pixels) are the baseline printed beside them.

"Removed" means, by default, replaced by a Gaussian-blurred copy of the crop (``removal="blur"``,
sigma = 1/16 of the side), not by black: black squares add sharp edges of their own. Three
alternatives are there to measure against it (``explain-bench --removal``, ``bench/removal_check.py``):
the pixels **imputed** from those kept (``"impute"``: push-pull, normalised averaging on an image
pyramid, a fast stand-in for ROAD's linear imputation), ROAD's noisy linear imputation itself
(``"road"``: a sparse solve per image, seconds each on a CPU) and the crop's **mean** colour
(``"mean"``). No removal is neutral to a
detector of blending, which reads any region whose sharpness or colour differs from its
surroundings as a blend; the benchmark measures how much evidence each one adds on real faces and
whether removing the known blend region first beats removing random blobs (docs/explanations.md).

Cost: the curves of every map of a face (and of its random map) are one stack of images, built and
sent through :meth:`Detector.predict` in batches (``max_batch``): 4 steps (the default) give
1 + 2 x 3 x (maps + 1) images, 31 for four maps; the crop with every pixel removed (the end of every
deletion curve and the start of every insertion curve) is run once, and the crop itself not at all
when the caller passes its probability (the analysis has it). 4 steps are the 8-step curves' even
points (the same images); ``bench/faithfulness_cost.py`` measures how far the per-face scores agree.
Only forward passes, so ONNX float and int8 builds are scored as well as PyTorch models; and a
PyTorch detector whose folder has an ONNX float build that gives its probabilities is scored through
that build (``runtime="auto"``, :func:`scoring_detector`), which is faster on a CPU.

ROAD (Rong et al. 2022, ``pytorch_grad_cam.metrics.road``) is used by the explanation benchmark
only (:func:`road_scores`): its noisy linear imputation solves a sparse system per image and map
(about 0.1-0.3 s each on a CPU), too slow for every face of an analysis, and it answers the same
question (does removing the top-ranked pixels hurt the class?) with an in-distribution fill.
"""

from __future__ import annotations

import logging
import threading
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from forensics.catalog import FAITHFULNESS_STEPS, REMOVALS, faithfulness_steps
from forensics.detectors.base import Detector
from forensics.overlay import normalize_map, resize_map

log = logging.getLogger(__name__)

RANDOM = "random"
CENTRE = "centre"
RUNTIMES = ("auto", "detector")
ONNX_BATCH, TORCH_BATCH = 8, 64  # images per forward pass when FaithfulnessOptions.max_batch is None


@dataclass(frozen=True)
class FaithfulnessOptions:
    """``steps``: points on each curve after the start; ``removal``: what replaces a removed pixel
    (:data:`REMOVALS`); ``max_batch``: images per forward pass (``None``: what was fastest on a 2-core
    CPU in ``bench/faithfulness_cost.py``, :data:`ONNX_BATCH` for onnxruntime, which slows down on larger
    batches, :data:`TORCH_BATCH` for PyTorch, which speeds up); ``grid``: the random map's grid
    (default: the detector's patch grid, else 14x14); ``runtime``: ``"auto"`` runs the curves through
    the ONNX float build of a PyTorch detector's folder when it has one that gives the same
    probabilities (:func:`scoring_detector`), ``"detector"`` through the detector itself."""

    steps: int = FAITHFULNESS_STEPS
    removal: str = "blur"
    blur_sigma_fraction: float = 1.0 / 16.0
    max_batch: int | None = None
    grid: int | None = None
    seed: int = 0
    runtime: str = "auto"

    def __post_init__(self) -> None:
        faithfulness_steps(self.steps)
        if self.max_batch is not None and int(self.max_batch) < 1:
            raise ValueError(f"max_batch must be at least 1, not {self.max_batch}")
        if self.removal not in REMOVALS:
            raise ValueError(f"removal must be one of {', '.join(REMOVALS)}, not {self.removal!r}")
        if self.runtime not in RUNTIMES:
            raise ValueError(f"runtime must be one of {', '.join(RUNTIMES)}, not {self.runtime!r}")

    def describe(self) -> str:
        """One line for a JSON or a page: what a removed pixel becomes."""
        return REMOVALS[self.removal].format(sigma=f"side/{round(1 / self.blur_sigma_fraction)}")


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
    original: float | None = None,
) -> dict[str, MapScore]:
    """Deletion and insertion curves of several maps of one preprocessed crop ``(3, S, S)``.

    Every intermediate image of every curve is built and scored in batches of at most
    ``options.max_batch``; the crop with every pixel removed (the end of every deletion curve and the
    start of every insertion curve) once. ``original``: the probability of ``target`` for the crop
    itself, when the caller has it already (the analysis does): then the crop is not run again.
    """
    size = int(image.shape[-1])
    steps = int(options.steps)
    keep = step_masks(maps, size, steps, options.seed)
    ends = [torch.zeros(1, 1, size, size, dtype=torch.bool)]  # the crop with every pixel removed
    if original is None:
        ends.insert(0, torch.ones(1, 1, size, size, dtype=torch.bool))  # and the crop itself
    keep = torch.cat([*ends, keep])
    scorer = scoring_detector(detector) if options.runtime == "auto" else detector
    probabilities = _predict_removed(scorer, image, keep, options)[:, target]
    if original is None:
        original, probabilities = float(probabilities[0]), probabilities[1:]
    empty, inner_all = float(probabilities[0]), probabilities[1:]
    fractions = [j / steps for j in range(steps + 1)]
    scores = {}
    for n, name in enumerate(maps):
        inner = inner_all[n * 2 * (steps - 1) : (n + 1) * 2 * (steps - 1)]
        deletion = [float(original), *[float(v) for v in inner[0::2]], empty]
        insertion = [empty, *[float(v) for v in inner[1::2]], float(original)]
        scores[name] = MapScore(curve_area(fractions, deletion), curve_area(fractions, insertion), deletion, insertion)
    return scores


def step_masks(maps: dict[str, np.ndarray], size: int, steps: int, seed: int = 0) -> torch.Tensor:
    """``(maps x 2 x (steps - 1), 1, S, S)`` booleans: the pixels each inner image of the curves shows
    (the rest are removed). Per map, deletion then insertion, step by step: deletion keeps all but the
    map's first ``j / steps`` of the pixels, insertion only those."""
    pixels = size * size
    rng = np.random.default_rng(seed)
    counts = torch.tensor([round(pixels * j / steps) for j in range(1, steps)])
    ranks = []
    for heatmap in maps.values():
        if heatmap.shape != (size, size):
            heatmap = resize_map(heatmap, (size, size))
        ranks.append(torch.from_numpy(pixel_ranks(heatmap, rng)))
    first = torch.stack(ranks)[:, None, :, :] < counts[None, :, None, None]  # (maps, steps - 1, S, S)
    return torch.stack([~first, first], dim=2).reshape(-1, 1, size, size)


_SCORERS: "weakref.WeakKeyDictionary[Detector, Detector]" = weakref.WeakKeyDictionary()
_SCORERS_LOCK = threading.Lock()
SAME_PROBABILITY = 1e-4  # largest difference to the PyTorch model for its ONNX build to score in its place


def scoring_detector(detector: Detector) -> Detector:
    """The detector whose forward passes score ``detector``'s curves (``runtime="auto"``).

    For a PyTorch detector whose model folder holds an ONNX float build (``model.onnx``, made by
    ``python -m forensics quantize``): that build, run by onnxruntime, which is faster on a CPU
    (measured in ``bench/faithfulness_cost.py``: onnxruntime does not spin its threads, so it also
    keeps its speed on a busy machine where PyTorch's do not). Only if the build gives the model's
    probabilities (within :data:`SAME_PROBABILITY`) on a fixed probe batch: a build left from older
    weights, or a detector changed in memory (the sanity check's re-initialised copy), fails that and
    is scored by itself. Otherwise, and for ONNX detectors: ``detector``. Decided once per detector.
    """
    with _SCORERS_LOCK:
        if detector in _SCORERS:
            return _SCORERS[detector]
    scorer = detector
    path = getattr(detector, "path", None)
    if type(detector).differentiable and path is not None:
        from forensics.detectors import load_detector
        from forensics.detectors.onnx_family import VARIANTS

        if (Path(path) / VARIANTS["onnx"]).is_file():
            try:  # through the registry: the same cached build that `<name>:onnx` serves
                build = load_detector(f"{path}:onnx", allow_untrained=True)
                probe = torch.randn(2, 3, detector.input_size, detector.input_size,
                                    generator=torch.Generator().manual_seed(0))
                if build.labels == detector.labels and float(
                        np.abs(build.predict(probe) - detector.predict(probe)).max()) <= SAME_PROBABILITY:
                    scorer = build
            except Exception as exc:  # a build onnxruntime cannot run: score with the detector itself
                log.warning("%s: its ONNX float build is not used for scoring (%s)", detector.name, exc)
            if scorer is detector:
                log.info("%s: scored by PyTorch (its ONNX float build gives other probabilities)", detector.name)
    with _SCORERS_LOCK:
        _SCORERS[detector] = scorer
    return scorer


def _predict_removed(detector: Detector, image: torch.Tensor, keep: torch.Tensor,
                     options: FaithfulnessOptions) -> np.ndarray:
    """Probabilities of the crop with the pixels outside each ``keep`` mask removed, ``max_batch``
    images at a time (built batch by batch, so memory holds one batch of images, not the stack); the
    blurred crop made once for all of them."""
    parts = []
    blur = blurred(image, options.blur_sigma_fraction)[None] if options.removal == "blur" else None
    batch = options.max_batch or (TORCH_BATCH if type(detector).differentiable else ONNX_BATCH)
    for i in range(0, len(keep), int(batch)):
        part = keep[i : i + int(batch)]
        parts.append(detector.predict(remove_pixels(image, part, options.removal, blur)))
    return np.concatenate(parts)


def remove_pixels(image: torch.Tensor, keep: torch.Tensor, removal: str,
                  blur: torch.Tensor | None = None) -> torch.Tensor:
    """``(N, 3, S, S)``: the crop ``(3, S, S)`` with the pixels outside each boolean mask of ``keep``
    ``(N, 1, S, S)`` removed (see :data:`REMOVALS`); ``blur``: the crop already blurred, for ``"blur"``
    (else blurred here at the default sigma)."""
    shown = keep.to(image.dtype)
    crop = image[None]
    if removal == "blur":
        fill = blur if blur is not None else blurred(image, FaithfulnessOptions.blur_sigma_fraction)[None]
    elif removal == "mean":
        fill = image.mean(dim=(1, 2), keepdim=True)[None]
    elif removal == "impute":
        fill = push_pull(crop.expand(len(keep), -1, -1, -1), shown)
    elif removal == "road":
        fill = noisy_linear_imputation(image, keep)
    else:
        raise ValueError(f"removal must be one of {', '.join(REMOVALS)}, not {removal!r}")
    return torch.where(keep, crop, fill)


def push_pull(images: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Fill every pixel of ``images`` ``(N, C, H, W)`` from the pixels where ``weights`` ``(N, 1, H, W)``
    is 1: push-pull (Gortler et al. 1996), i.e. normalised averaging on an image pyramid, halved down
    to one pixel, then brought back up, each level keeping its own average where it has known pixels
    and taking the coarser one where it has none. A smooth fill that continues the colours around a
    hole, in a few pooling passes (batched, forward-only); where nothing is known at all: the mean of
    ``images``. A fast stand-in for ROAD's noisy linear imputation, which solves a sparse system
    per image."""
    levels = []
    total, weight = images * weights, weights
    while max(total.shape[-2:]) > 1:
        levels.append((total, weight))
        total = F.avg_pool2d(total, 2, ceil_mode=True)
        weight = F.avg_pool2d(weight, 2, ceil_mode=True)
    fill = torch.where(weight > 0, total / weight.clamp_min(1e-12), images.mean(dim=(2, 3), keepdim=True))
    for total, weight in reversed(levels):
        coarse = F.interpolate(fill, size=total.shape[-2:], mode="bilinear", align_corners=False)
        share = weight.clamp(0.0, 1.0)
        fill = total / weight.clamp_min(1e-12) * share + coarse * (1.0 - share)
    return fill


def noisy_linear_imputation(image: torch.Tensor, keep: torch.Tensor, noise: float = 0.01) -> torch.Tensor:
    """``(N, 3, S, S)``: ROAD's fill (``pytorch_grad_cam.metrics.road.NoisyLinearImputer``, Rong et al.
    2022) of the crop outside each mask of ``keep`` ``(N, 1, S, S)``: each removed pixel the weighted
    mean of its 8 neighbours (a sparse linear system, one per image), plus Gaussian noise of
    ``noise`` (seeded: the same masks give the same fill). Where nothing is kept: the crop's mean."""
    from pytorch_grad_cam.metrics.road import NoisyLinearImputer

    imputer = NoisyLinearImputer(noise=noise)
    mean = image.mean(dim=(1, 2), keepdim=True)
    out = []
    with torch.random.fork_rng():
        torch.manual_seed(0)
        for mask in keep[:, 0]:
            if mask.all():
                out.append(image)
            elif not mask.any():
                out.append(mean.expand_as(image))
            else:
                out.append(imputer(image.float(), mask.float()).to(image.dtype))
    return torch.stack(out)


def score_face(
    detector: Detector,
    image: torch.Tensor,
    maps: dict[str, np.ndarray],
    target: int,
    options: FaithfulnessOptions = FaithfulnessOptions(),
    centre: bool = False,
    original: float | None = None,
) -> FaceFaithfulness:
    """A face's maps scored against a random map of the same face (and, with ``centre``, against the
    centre blob), all in the same batched passes; ``original``: see :func:`deletion_insertion`."""
    size = int(image.shape[-1])
    grid = options.grid or (detector.grid_size[0] if detector.grid_size else 14)
    baselines = {RANDOM: random_map(size, grid, np.random.default_rng(options.seed + 1))}
    if centre:
        baselines[CENTRE] = centre_map(size)
    if set(maps) & set(baselines):
        raise ValueError(f"map names {sorted(set(maps) & set(baselines))} are reserved for the baselines")
    scores = deletion_insertion(detector, image, {**maps, **baselines}, target, options, original)
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


__all__ = ["CENTRE", "RANDOM", "REMOVALS", "RUNTIMES", "FaceFaithfulness", "FaithfulnessOptions", "MapScore",
           "blurred", "centre_map", "curve_area", "deletion_insertion", "most_faithful", "noisy_linear_imputation",
           "pixel_ranks", "push_pull", "random_map", "remove_pixels", "road_scores", "score_face",
           "scoring_detector", "step_masks"]
