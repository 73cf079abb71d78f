"""What a background job runs: its settings, their checks (one-line errors naming the setting),
and the ``python -m training ...`` command they become."""

from __future__ import annotations

import csv
import re
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from forensics import catalog
from forensics.core import JobError
from forensics.core.labelled import image_folder, read_labels_csv

KINDS = ("train", "finetune", "distill", "evaluate", "federated")
TRAINING_KINDS = ("train", "finetune", "distill", "federated")
# The architectures `python -m training train --model` builds: name -> (timm architecture, model_args).
ARCHITECTURES = {
    "hybrid": ("forensics_hybrid_mnv2_vit", dict(img_size=224, embed_dim=192, depth=4, num_heads=3)),
    "hybrid-lite0": ("forensics_hybrid_effl0_vit", dict(img_size=224, embed_dim=192, depth=4, num_heads=3)),
    "mobilenetv2": ("mobilenetv2_100", {}),
    "patch": ("forensics_patch_cnn", {}),
    "patch-mnv2": ("forensics_patch_mnv2", {}),
    "patch-tiny": ("forensics_patch_cnn_tiny", {}),
    "vit-tiny": ("vit_tiny_patch16_224", dict(img_size=224)),
}
MODEL_CHOICES = tuple(ARCHITECTURES)
# Binary either way round, or three classes as SIDA-style detectors label them (P(fake) = 1 - P(real)).
LABEL_ORDERS = (("real", "fake"), ("fake", "real"), ("real", "manipulated", "synthetic"))


def label_order_problem(model: str, labels) -> str | None:
    """Why architecture ``model`` cannot learn the label order ``labels`` (None: it can): the
    patch-level detectors score real vs fake only. One rule for jobs, `train` and `federated`."""
    if len(labels) > 2 and str(model).startswith("patch"):
        return f"the patch-level architecture {model} scores real vs fake only: choose a binary label order"
    return None


def labels_problem(found, labels, sbi: bool) -> str | None:
    """Why data whose labels are ``found`` cannot train a model with the label order ``labels``
    (None: it can). One rule for jobs (at submission) and `train` (after cropping its faces)."""
    order = " ".join(labels)
    unknown = sorted(set(found) - set(labels))
    if unknown:
        return (f"the data has labels {', '.join(repr(u) for u in unknown)} that the label order "
                f"'{order}' lacks: choose a label order with every label of the data (or map them with label_map)")
    if "real" not in labels:
        return f"the label order '{order}' has no 'real' label"
    if sbi and not {"fake", "manipulated"} & set(labels):
        return f"self-blended fakes need a 'fake' or 'manipulated' label; the label order is '{order}'"
    return None


# The most images whose headers are read at submission (evenly spaced over the listing): enough to catch a zip
# of non-images or a broken export in well under a second per thousand, without reading a large set whole.
MAX_IMAGES_CHECKED = 5000


def listing_problem(data: str | Path) -> tuple[str | None, list]:
    """(why the images of ``data``, a labels CSV or an ImageFolder tree, cannot be used at all, its
    samples): not a labels CSV, no image listed, rows naming files that are not there, or files that
    are not readable images (their headers read, at most MAX_IMAGES_CHECKED of them)."""
    path = Path(data)
    try:
        samples = read_labels_csv(path) if path.is_file() else image_folder(path)
    except (KeyError, AttributeError, UnicodeDecodeError, csv.Error):
        return f"data {path.name}: not a labels CSV (a header with path and label, and both on every row)", []
    if not samples:
        where = ("no row names an image" if path.is_file() else
                 "no image in a folder named for its label (real/, fake/, ...) below it")
        return f"data {path.name}: {where}", []
    root = path.parent if path.is_file() else path

    def shown(sample) -> str:
        try:
            return str(Path(sample.path).relative_to(root))
        except ValueError:
            return sample.path

    missing = [s for s in samples if not Path(s.path).is_file()]
    if missing:
        return (f"data {path.name}: {len(missing)} of {len(samples)} rows name files that are not there "
                f"(the first: {shown(missing[0])})"), samples
    step = max(1, len(samples) // MAX_IMAGES_CHECKED)
    checked = samples[::step][:MAX_IMAGES_CHECKED]
    unreadable = [s for s in checked if not _readable_image(s.path)]
    if unreadable:
        return (f"data {path.name}: {len(unreadable)} of {len(checked)} images checked are not readable images "
                f"(the first: {shown(unreadable[0])})"), samples
    return None, samples


def _readable_image(path: str) -> bool:
    """Whether the file's header is an image's (PIL reads the header only; no pixels are decoded)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return image.size[0] > 0 and image.size[1] > 0
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError):
        return False


def data_problem(data: str | Path, labels, sbi: bool) -> str | None:
    """Why the images of ``data`` (a labels CSV or an ImageFolder tree) cannot train a job with the
    label order ``labels`` (None: they can), read from the listing alone, before any face is cropped:
    what :func:`listing_problem` finds, a label the order lacks, or a single label with no
    self-blended fakes to add."""
    problem, samples = listing_problem(data)
    if problem:
        return problem
    found = {s.label for s in samples}
    problem = labels_problem(found, labels, sbi)
    if problem:
        return problem
    if not sbi and len(found) < 2:
        return (f"the data has only {next(iter(found))!r} faces: without self-blended fakes (sbi) a detector "
                "needs faces of at least two labels")
    return None


@dataclass
class JobSettings:
    """What a job runs. ``base`` is the detector a fine-tune starts from, the teacher of a
    distillation, or the detector an evaluation measures; ``model`` the architecture trained."""

    kind: str = "train"
    data: str = ""
    model: str = "hybrid"
    base: str | None = None
    epochs: int = 4
    lr: float = 3e-4
    batch_size: int = 16
    image_size: int = 224
    sbi: bool = True
    labels: list[str] = field(default_factory=lambda: ["real", "fake"])
    max_steps: int | None = None  # a federated job: local steps per client and round
    name: str | None = None
    mu: float = 0.01  # a federated job: FedProx's proximal weight (0: FedAvg); its rounds are ``epochs``
    extra: list[str] = field(default_factory=list)  # further `python -m training` options (CLI only)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "JobSettings":
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


def validate(settings: JobSettings) -> JobSettings:
    """Check a job's settings, with one-line errors naming the setting."""
    s = JobSettings.from_dict(settings.to_dict())
    if s.kind not in KINDS:
        raise JobError(f"unknown job kind {s.kind!r}; choose from {', '.join(KINDS)}")
    if not s.data or not str(s.data).strip():
        raise JobError("no data: give a dataset folder (ImageFolder tree), a labels.csv or a zip")
    data = Path(str(s.data).strip()).expanduser()
    if s.kind == "federated":
        if not (data.is_file() and data.suffix.lower() in (".yaml", ".yml")):
            raise JobError(f"a federated job needs its YAML config (clients, sources) on the server, not {s.data!r}")
        s.mu = _number("mu", s.mu)
        if not 0.0 <= s.mu <= 100.0:
            raise JobError(f"mu {s.mu} must be from 0 (FedAvg) to 100")
    elif not (data.is_dir() or (data.is_file() and data.suffix.lower() == ".csv")):
        raise JobError(f"data {s.data!r} is neither a folder nor a labels.csv on the server")
    s.data = str(data.resolve())
    if s.kind in ("finetune", "distill", "evaluate") and not (s.base or "").strip():
        what = {"finetune": "the detector to fine-tune", "distill": "the teacher detector",
                "evaluate": "the detector to evaluate"}[s.kind]
        raise JobError(f"a {s.kind} job needs {what}")
    if s.kind in ("train", "distill") and s.model not in MODEL_CHOICES:
        raise JobError(f"unknown architecture {s.model!r}; choose from {', '.join(MODEL_CHOICES)}")
    s.epochs, s.batch_size, s.image_size = (_int(what, value, *catalog.setting_range(key)) for what, value, key in (
        ("epochs", s.epochs, "epochs"), ("batch size", s.batch_size, "batch_size"),
        ("image size", s.image_size, "image_size")))
    patched = "img_size" in ARCHITECTURES.get(s.model, ("", {}))[1]  # a ViT or hybrid: 16-pixel patches
    if patched and s.kind != "evaluate" and s.image_size % 16:
        raise JobError(f"image size {s.image_size} must be a multiple of 16 for {s.model}")
    s.lr = _number("learning rate", s.lr)
    span = catalog.out_of_range("lr", s.lr)  # the range `python -m training` checks
    if span:
        raise JobError(f"learning rate {s.lr} must be in {span}")
    s.sbi = bool(s.sbi)
    labels = tuple(s.labels.split() if isinstance(s.labels, str) else s.labels or ())
    if labels not in LABEL_ORDERS:
        raise JobError(f"label order {' '.join(labels)!r} must be one of "
                       + ", ".join(repr(" ".join(order)) for order in LABEL_ORDERS))
    problem = label_order_problem(s.model, labels) if s.kind in ("train", "distill") else None
    if problem:
        raise JobError(problem)
    s.labels = list(labels)
    if s.max_steps in ("", 0):
        s.max_steps = None
    if s.max_steps is not None:
        s.max_steps = _int("max steps", s.max_steps, 1, 10_000_000)
    s.name = (s.name or "").strip() or None
    if s.name and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", s.name):
        raise JobError(f"name {s.name!r}: use up to 64 letters, digits, '.', '_' or '-'")
    if any(not isinstance(a, str) for a in s.extra):
        raise JobError("extra options must be strings")
    # The data's labels against the order, now rather than minutes into the job (after its faces are
    # cropped); a config given in the extra options may map labels, so it decides for itself.
    if s.kind in ("train", "finetune", "distill") and "--config" not in s.extra:
        problem = data_problem(s.data, s.labels, s.sbi)
        if problem:
            raise JobError(problem)
    elif s.kind == "evaluate":  # the images themselves (the labels are the evaluation's to read)
        problem, _ = listing_problem(s.data)
        if problem:
            raise JobError(problem)
    return s


def build_command(settings: JobSettings, run_dir: Path, cache: str, name: str, models_dir: Path,
                  base: Path | None = None, model: str | None = None) -> list[str]:
    """The ``python -m training ...`` argv of a job; ``base`` is the resolved folder of
    ``settings.base`` and ``model`` the architecture to build (a fine-tune's follows its base)."""
    s = settings
    command = [sys.executable, "-m", "training"]
    if s.kind == "evaluate":
        command += ["evaluate", "--detector", str(base), "--data", s.data, "--cache", cache]
        # A model a job made keeps its measured card beside it; any other detector (bundled, Hub,
        # someone's folder) is never written into: its metrics and report go to the job's folder.
        if not inside_folder(base, models_dir):
            command += ["--out", str(run_dir)]
        return command + list(s.extra)
    if s.kind == "federated":  # the YAML holds the clients and the model; the form sets the budget
        command += ["federated", "--config", s.data, "--out", str(run_dir), "--cache", cache, "--rounds", str(s.epochs),
                    "--mu", repr(float(s.mu)), "--name", name]
        return command + (["--local-steps", str(s.max_steps)] if s.max_steps else []) + list(s.extra)
    command.append("distill" if s.kind == "distill" else "train")
    if s.kind == "finetune":
        command += ["--init-from", str(base)]
    elif s.kind == "distill":
        command += ["--teacher", str(base)]
    command += ["--model", model or s.model, "--data", s.data, "--cache", cache, "--out", str(run_dir),
                "--epochs", str(s.epochs), "--batch-size", str(s.batch_size), "--lr", repr(float(s.lr)),
                "--image-size", str(s.image_size), "--sbi" if s.sbi else "--no-sbi", "--labels", *s.labels,
                "--workers", "0", "--name", name]
    if s.max_steps:
        command += ["--max-steps", str(s.max_steps)]
    return command + list(s.extra)


def resolve_detector_folder(name: str | None) -> Path:
    """A detector name, folder or Hub id -> its local folder (Hub ids are downloaded here, at
    submission, so a job never waits on the network and an offline id fails at once)."""
    text = (name or "").strip()
    named = catalog.available_detectors()
    if text in named:
        return named[text].resolve()
    if Path(text).expanduser().is_dir():
        return Path(text).expanduser().resolve()
    from forensics.detectors import resolve_model_folder

    return resolve_model_folder(text)


def model_choice_for(folder: Path) -> str:
    """Which ``--model`` rebuilds a detector's architecture, so fine-tuning starts from all its
    weights (the training CLI loads every tensor whose name and shape match)."""
    config = catalog.read_config(folder)
    arch = config.get("architecture")
    for choice, (known, args) in ARCHITECTURES.items():
        if known == arch:
            given = {k: v for k, v in (config.get("model_args") or {}).items() if k != "img_size"}
            wanted = {k: v for k, v in args.items() if k != "img_size"}
            if given != wanted:
                raise JobError(f"{folder.name}: its {arch} was built with {given}, not the {wanted} training builds; "
                               "it cannot be fine-tuned here")
            return choice
    trainable = ", ".join(sorted(a for a, _ in ARCHITECTURES.values()))
    raise JobError(f"{folder.name}: architecture {arch or config.get('model_type')!r} cannot be fine-tuned here "
                   f"(trainable: {trainable})")


def check_finetune_size(base: Path, model: str, image_size: int) -> None:
    """A token model's position embeddings are sized for its input: a fine-tune at another size
    would silently drop them, so it must keep the base's size."""
    if "img_size" not in ARCHITECTURES.get(model, ("", {}))[1]:  # no position embeddings to keep
        return
    config = catalog.read_config(base)
    size = int((config.get("pretrained_cfg") or {}).get("input_size", [3, 224, 224])[-1])
    if size != image_size:
        raise JobError(f"image size {image_size}: fine-tuning {base.name} ({model}) must keep its input size {size}")


def _number(what: str, value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise JobError(f"{what} {value!r} is not a number") from None


def _int(what: str, value, low: int, high: int) -> int:
    number = _number(what, value)
    if number != int(number) or not low <= number <= high:
        raise JobError(f"{what} {value} must be a whole number from {low} to {high}")
    return int(number)


def inside_folder(path: Path, root: Path) -> bool:
    try:
        return Path(path).resolve().is_relative_to(Path(root).resolve())
    except OSError:
        return False
