"""The one interface every detector family implements, and the registry of families.

A detector is an inference object: a model in eval mode with frozen parameters, its labels,
its preprocessing and the hooks that the explanations need. Families (one file each) register
themselves with :func:`register_family`; :func:`forensics.detectors.load_detector` asks each
family in turn whether it can read a folder's ``config.json``.
"""

from __future__ import annotations

import contextlib
import re
import threading
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, ClassVar, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from forensics.core import DetectorError
from forensics.faces import FRAMINGS
from forensics.preprocess import crops_to_tensor

from forensics.catalog import CARD_NAME, CONFIG_NAME, WEIGHTS_NAME, read_config  # noqa: F401  (re-exported)

# Label names that mean "manipulated" or "authentic" in models published by others
# (e.g. "Deepfake"/"Realism", "FAKE"/"REAL", "synthetic"/"tampered"/"real").
_FAKE_WORDS = re.compile(
    r"fake|deepfake|manipul|synthetic|spoof|tamper|forged|forgery|generated|artificial|\bai\b|swap|morph",
    re.IGNORECASE,
)
_REAL_WORDS = re.compile(r"real|authentic|genuine|bona|original|pristine|human|natural|live", re.IGNORECASE)


def fake_label_indices(labels: Sequence[str], fake_labels: Sequence[str] | None = None) -> list[int]:
    """Which class indices count as "fake"; the fake probability is their summed probability.

    ``fake_labels`` from the model's config wins; otherwise names are matched against common
    wordings, a label that reads as real never counts as fake, and with two unknown labels the
    second is taken as fake (the usual ``0=real, 1=fake`` convention).
    """
    if fake_labels:
        missing = [name for name in fake_labels if name not in labels]
        if missing:
            raise DetectorError(f"fake_labels {missing} are not among the model's labels {list(labels)}")
        return [labels.index(name) for name in fake_labels]
    fake = [i for i, name in enumerate(labels) if _FAKE_WORDS.search(name) and not _looks_real(name)]
    if fake:
        return fake
    real = [i for i, name in enumerate(labels) if _looks_real(name)]
    if real and len(real) < len(labels):
        return [i for i in range(len(labels)) if i not in real]
    if len(labels) == 2:
        return [1]
    raise DetectorError(f"cannot tell which of the labels {list(labels)} mean fake; set forensics.fake_labels")


def _looks_real(name: str) -> bool:
    return bool(_REAL_WORDS.search(name)) and not re.search(r"unreal|not[ _-]?real", name, re.IGNORECASE)


def calibrated_softmax(logits, temperature: float = 1.0, bias: Sequence[float] | None = None) -> torch.Tensor:
    """``softmax(logits / temperature + bias)``: class probabilities as every build of a calibrated
    detector reports them (``bias``: the logit bias of Platt scaling, when calibration fitted one).
    ``logits``: a tensor or an array ``(B, C)``."""
    scaled = torch.as_tensor(logits).detach().float() / temperature
    if bias is not None:
        scaled = scaled + torch.tensor(list(bias), dtype=scaled.dtype)
    return torch.softmax(scaled, dim=-1)


# Faces this many source pixels across or more are scored as calibrated (the validation faces the
# calibration is fitted on are crops of about this size).
FULL_FACE_PX = 224


def size_temperature(size_temperatures: dict | None, side: float, full_size: int = FULL_FACE_PX) -> float:
    """The extra temperature of a face ``side`` source pixels across: between the calibrated sides
    (``size_temperatures``: side -> temperature, fitted on validation faces shrunk to that side and
    compressed there) linear in log side, falling to 1 at ``full_size`` and staying 1 above it; below
    the smallest side, the smallest side's."""
    if not size_temperatures or not side or side >= full_size:
        return 1.0
    points = sorted((float(k), float(v)) for k, v in size_temperatures.items() if float(k) < full_size)
    sides, temperatures = zip(*points, (float(full_size), 1.0))
    return float(np.interp(np.log(side), np.log(sides), temperatures))


def temper(probabilities: np.ndarray, temperatures: Sequence[float]) -> np.ndarray:
    """Each row of class probabilities softened by its temperature: ``softmax(log p / t)``, which is
    the calibrated softmax with its logits divided by ``t`` (a row with ``t == 1`` is unchanged)."""
    p = np.asarray(probabilities, dtype=np.float64)
    t = np.asarray(temperatures, dtype=np.float64)[:, None]
    z = np.log(np.clip(p, 1e-12, 1.0)) / t
    z -= z.max(axis=1, keepdims=True)
    out = np.exp(z)
    out /= out.sum(axis=1, keepdims=True)
    return np.where(t == 1.0, p, out).astype(np.asarray(probabilities).dtype)


@dataclass
class DetectorInfo:
    """The ``forensics`` block of a model folder's ``config.json``: what inference needs to know."""

    name: str
    labels: list[str]
    fake_labels: list[str] = field(default_factory=list)
    threshold: float = 0.5
    temperature: float = 1.0  # logits are divided by it before the softmax: calibrated on validation faces
    logit_bias: list[float] | None = None  # added to the tempered logits before the softmax (Platt scaling)
    # {side in px: temperature}: faces that small are scored less sharply (calibrated on validation
    # faces shrunk to that side and compressed there; see size_temperature). None: every face alike.
    size_temperatures: dict[str, float] | None = None
    input_size: int = 224
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    face_margin: float = 0.3
    face_framing: str = "box"  # what the margin is added around: MTCNN's box or a landmark-scaled square
    # How a face reaches the model as its training crops did (forensics.faces.crop_face): the side the
    # square is cut at before it is resized to input_size (the crop cache's 256 px for models trained
    # here; None: straight to input_size), and whether the region is fitted inside the image first.
    crop_size: int | None = None
    fit_inside: bool = False
    trained: bool = True
    version: str = "0"
    description: str = ""

    def to_dict(self) -> dict:
        data = asdict(self)
        data["mean"], data["std"] = list(self.mean), list(self.std)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "DetectorInfo":
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        info = cls(**known)
        info.mean, info.std = tuple(float(v) for v in info.mean), tuple(float(v) for v in info.std)
        info.threshold, info.input_size = float(info.threshold), int(info.input_size)
        if not 0.0 <= info.threshold <= 1.0:
            raise DetectorError(f"threshold {info.threshold} is outside [0, 1]")
        info.temperature = float(info.temperature)
        if not 0.0 < info.temperature < 1e3:
            raise DetectorError(f"temperature {info.temperature} must be a positive number below 1000")
        if info.logit_bias is not None:
            try:
                info.logit_bias = [float(v) for v in info.logit_bias]
            except (TypeError, ValueError):
                raise DetectorError(f"logit_bias {info.logit_bias!r} must be a list of numbers") from None
            if len(info.logit_bias) != len(info.labels) or not all(abs(v) < 1e3 for v in info.logit_bias):
                raise DetectorError(f"logit_bias must hold one number under 1000 per label ({len(info.labels)})")
        if info.size_temperatures is not None:
            try:
                info.size_temperatures = {str(int(k)): float(v) for k, v in dict(info.size_temperatures).items()}
            except (TypeError, ValueError):
                raise DetectorError(f"size_temperatures {info.size_temperatures!r} must map face sides in pixels "
                                    "to temperatures") from None
            if not all(int(k) > 0 and 1.0 <= v <= 100 for k, v in info.size_temperatures.items()):
                raise DetectorError(f"size_temperatures {info.size_temperatures!r}: sides must be positive and "
                                    "temperatures in [1, 100]")
        if info.face_framing not in FRAMINGS:
            raise DetectorError(f"face_framing {info.face_framing!r} is not one of {', '.join(FRAMINGS)}")
        if info.crop_size is not None:
            if isinstance(info.crop_size, bool) or not isinstance(info.crop_size, (int, float)) \
                    or info.crop_size != int(info.crop_size) or not 16 <= info.crop_size <= 4096:
                raise DetectorError(f"crop_size {info.crop_size!r} must be a whole number of pixels from 16 to 4096")
            info.crop_size = int(info.crop_size)
        if not isinstance(info.fit_inside, bool):
            raise DetectorError(f"fit_inside {info.fit_inside!r} must be true or false")
        return info

    def crop_options(self) -> dict:
        """How this model's faces are cut (``forensics.faces.crop_face``'s keywords after the size)."""
        return {"margin": self.face_margin, "framing": self.face_framing, "cut_size": self.crop_size,
                "fit_inside": self.fit_inside}


class Detector(ABC):
    """A loaded detector. Subclasses set the model and the explanation hooks.

    ``model`` maps a normalised batch ``(B, 3, S, S)`` to logits ``(B, C)``; its parameters are
    frozen (inference never needs their gradients, and explanations then pay only for the
    activation gradients they read).
    """

    # What the detector is built as ("timm-vit", "hybrid", "timm-cnn", "patch", "transformers",
    # "onnx-int8", ...), which says what it can explain; not its family (the registry key that read its folder).
    kind: ClassVar[str] = ""
    # Whether gradients flow through the model (Grad-CAM, class-weighted attention); ONNX builds: no.
    differentiable: ClassVar[bool] = True

    def __init__(self, model: nn.Module, info: DetectorInfo, path: Path | None = None):
        self.model = model.eval()
        self.model.requires_grad_(False)
        self.info = info
        self.path = path
        self.fake_indices = fake_label_indices(info.labels, info.fake_labels)
        # Explanations attach hooks to this shared model: while one runs, another thread's forward
        # pass would feed them its activations. One use of the model at a time (see explain()).
        self.lock = threading.RLock()

    # -- what the analysis needs -------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.info.name

    @property
    def labels(self) -> list[str]:
        return list(self.info.labels)

    @property
    def threshold(self) -> float:
        return self.info.threshold

    @property
    def input_size(self) -> int:
        return self.info.input_size

    def preprocess(self, crops: Sequence[np.ndarray]) -> torch.Tensor:
        """RGB uint8 crops (any size) -> a normalised float batch at the detector's input size."""
        return crops_to_tensor(crops, self.input_size, self.info.mean, self.info.std)

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """Calibrated class probabilities from logits (:func:`calibrated_softmax` at the model's calibration)."""
        return calibrated_softmax(logits, self.info.temperature, self.info.logit_bias)

    @torch.inference_mode()
    def predict(self, batch: torch.Tensor) -> np.ndarray:
        """Class probabilities ``(B, C)`` for a preprocessed batch."""
        with self.lock:
            return self.probabilities(self.model(batch)).numpy()

    def fake_probability(self, probabilities: np.ndarray) -> np.ndarray:
        """``(B,)``: the summed probability of every fake class."""
        return probabilities[:, self.fake_indices].sum(axis=1)

    def predict_crops(self, crops: Sequence[np.ndarray], batch_size: int = 16) -> np.ndarray:
        """Probabilities for RGB crops, in batches (video frames can hold many faces)."""
        if not crops:
            return np.zeros((0, len(self.labels)), dtype=np.float32)
        parts = [self.predict(self.preprocess(crops[i : i + batch_size])) for i in range(0, len(crops), batch_size)]
        return np.concatenate(parts)

    def resolve_target(self, target: int | str | None, probabilities: np.ndarray) -> list[int]:
        """Class index to explain per item: an index, a label name, "predicted", or None = fake.

        "fake" picks, per item, the most probable of the fake classes.
        """
        if target is None or target == "fake":
            fake = np.asarray(self.fake_indices)
            return [int(fake[np.argmax(row[fake])]) for row in probabilities]
        if target == "real":
            real = np.asarray([i for i in range(len(self.labels)) if i not in self.fake_indices])
            return [int(real[np.argmax(row[real])]) for row in probabilities]
        if target == "predicted":
            return [int(np.argmax(row)) for row in probabilities]
        if isinstance(target, str):
            if target not in self.labels:
                raise DetectorError(f"target class {target!r} is not one of {self.labels}")
            target = self.labels.index(target)
        if not 0 <= int(target) < len(self.labels):
            raise DetectorError(f"target class {target} is out of range for {len(self.labels)} labels")
        return [int(target)] * len(probabilities)

    # -- what the explanations need --------------------------------------------------------------
    @property
    def has_attention(self) -> bool:
        return False

    @property
    def patch_score_module(self) -> nn.Module | None:
        """For patch-level detectors: the module whose output ``(B, 1, h, w)`` holds patch logits."""
        return None

    @property
    def num_prefix_tokens(self) -> int:
        """Tokens before the patch grid (CLS, registers); 0 for pure patch grids such as SigLIP."""
        return 0

    @property
    def grid_size(self) -> tuple[int, int] | None:
        """The patch grid ``(rows, cols)`` of a token model, derived from the model, not assumed."""
        return None

    @contextlib.contextmanager
    def capture_attention(self) -> Iterator[list[torch.Tensor]]:
        """Collect each layer's attention probabilities ``(B, heads, N, N)`` during a forward pass.

        Tensors that are part of a graph keep their gradient (``retain_grad``) so that one
        backward pass can weight heads by the target class.
        """
        raise DetectorError(f"{self.name}: this {self.kind} detector has no attention to show")
        yield []  # pragma: no cover

    @property
    @abstractmethod
    def cam_target_layers(self) -> list[nn.Module]:
        """The layer(s) Grad-CAM reads activations and gradients from."""

    @property
    def cam_reshape(self) -> Callable[[torch.Tensor], torch.Tensor] | None:
        """Turn the target layer's output into ``(B, C, H, W)``; tokens are reshaped to the grid."""
        grid = self.grid_size
        if grid is None:
            return None
        return TokensToGrid(grid, self.num_prefix_tokens)

    def describe(self) -> dict:
        """What a list of detectors shows."""
        params = sum(p.numel() for p in self.model.parameters())
        return {
            "name": self.name,
            "kind": self.kind,
            "labels": self.labels,
            "fake_labels": [self.labels[i] for i in self.fake_indices],
            "threshold": self.threshold,
            "input_size": self.input_size,
            "parameters": params,
            "attention": self.has_attention,
            "version": self.info.version,
            "path": str(self.path) if self.path else None,
        }


class TokensToGrid:
    """Reshape transform for Grad-CAM on token models: drop prefix tokens, lay patches on the grid."""

    def __init__(self, grid: tuple[int, int], prefix: int):
        self.grid, self.prefix = grid, prefix

    def __call__(self, tokens: torch.Tensor) -> torch.Tensor:
        if tokens.ndim == 4:  # NHWC feature maps (timm with dynamic sizes)
            return tokens.permute(0, 3, 1, 2)
        rows, cols = self.grid
        patches = tokens[:, self.prefix :, :]
        if patches.shape[1] != rows * cols:
            raise DetectorError(f"{patches.shape[1]} patch tokens do not fit the {rows}x{cols} grid")
        return patches.reshape(tokens.shape[0], rows, cols, tokens.shape[2]).permute(0, 3, 1, 2)


# -- families -----------------------------------------------------------------------------------

FAMILIES: dict[str, type["DetectorFamily"]] = {}


class DetectorFamily(ABC):
    """How one kind of model folder is recognised, loaded and written, and the small random models
    it writes for tests: tests parametrised over the registry cover a new family for free."""

    name: ClassVar[str]  # the registry key
    random_models: ClassVar[tuple[str, ...]] = ()  # small, for tests (forensics.detectors.random_models)
    bench_models: ClassVar[tuple[str, ...]] = ()  # full-size random stand-ins, for benchmarks

    @classmethod
    @abstractmethod
    def accepts(cls, config: dict) -> bool:
        """Whether a folder's parsed ``config.json`` is of this family."""

    @classmethod
    @abstractmethod
    def info(cls, folder: Path, config: dict) -> DetectorInfo:
        """The detector's facts (labels, input, framing, calibration) from its folder."""

    @classmethod
    @abstractmethod
    def load(cls, folder: Path, config: dict) -> Detector:
        """Build the detector from a folder (weights from safetensors, never unpickled)."""

    @classmethod
    @abstractmethod
    def save_random(cls, folder: Path, model: str, info: DetectorInfo) -> Path:
        """Write the randomly initialised ``model`` (one of ``random_models`` or ``bench_models``)."""


# Other builds of a model folder, loaded as ``<name>:<variant>`` by ``loader(folder, variant)``.
VARIANTS: dict[str, Callable[[Path, str], Detector]] = {}


def register_family(cls: type[DetectorFamily]) -> type[DetectorFamily]:
    """Class decorator: make a family available to :func:`load_detector`."""
    FAMILIES[cls.name] = cls
    return cls


def family_for(folder: Path, config: dict) -> type[DetectorFamily]:
    """The registered family that reads this ``config.json``."""
    for family in FAMILIES.values():
        if family.accepts(config):
            return family
    raise DetectorError(f"{folder}: config.json is neither a timm nor a transformers model config")
