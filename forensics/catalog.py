"""What can be chosen, known without loading a model: detector folders on disk, their labels and
model cards, and the explanation methods. Light on purpose (no torch, no timm): the app reads it
to draw its page before any model code is imported."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Iterable

from forensics.core import DetectorError

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
CARD_NAME = "README.md"
ASSETS = Path(__file__).resolve().parents[1] / "assets" / "detectors"
EXAMPLES = Path(__file__).resolve().parents[1] / "assets" / "examples"
# A Hub model id as the detector boxes accept it: ``[hf-hub:]org/name[@revision]``.
HUB_ID = re.compile(r"^(?:hf-hub:)?([A-Za-z0-9][\w.-]*/[\w.-]+)(?:@([\w./-]+))?$")

METHODS = ("attention", "rollout", "gradcam", "gradcam++")
# Maps only some detectors have: the patch-level detector's own patch scores.
EXTRA_METHODS = ("patches",)
METHOD_TITLES = {"attention": "Last-layer attention", "rollout": "Attention rollout", "gradcam": "Grad-CAM",
                 "gradcam++": "Grad-CAM++", "patches": "Patch scores"}
# Map faithfulness (forensics.explain.faithfulness): what a removed pixel becomes, and the points on each
# deletion/insertion curve after the start. Here, torch-free, so that command lines offer and check them
# before loading the explanation stack.
REMOVALS = {
    "blur": "replaced by the crop Gaussian-blurred (sigma = {sigma})",
    "impute": "imputed from the kept pixels (push-pull: their local mean, coarse to fine); all removed: the "
              "crop's mean colour",
    "mean": "replaced by the crop's mean colour",
    "road": "imputed by ROAD's noisy linear imputation (pytorch_grad_cam.metrics.road, one sparse solve per "
            "image: slow); all removed: the crop's mean colour",
}
FAITHFULNESS_STEPS = 4


def faithfulness_steps(steps: int) -> int:
    """Points on each deletion/insertion curve after the start: 2..100 (one rule for every caller)."""
    if not 2 <= int(steps) <= 100:
        raise ValueError(f"faithfulness steps must be in 2..100, not {steps}")
    return int(steps)


def read_config(folder: Path) -> dict:
    """A model folder's ``config.json`` as a dict, or a one-line ``DetectorError``."""
    path = folder / CONFIG_NAME
    if not path.is_file():
        raise DetectorError(f"{folder}: no {CONFIG_NAME} (a model folder needs config.json and model.safetensors)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DetectorError(f"{path}: config.json is not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise DetectorError(f"{path}: config.json must hold a JSON object")
    return data


def forensics_home() -> Path:
    """Where background jobs keep their database, runs, crop caches and the models they made:
    ``$FORENSICS_HOME``, else ``~/.cache/forensics-studio``. Outside the repository on purpose: a
    Space or a container mounts persistent storage there, and nothing a job writes is committed."""
    return Path(os.environ.get("FORENSICS_HOME") or Path.home() / ".cache" / "forensics-studio").expanduser()


def job_models_dir() -> Path:
    """The folder finished training jobs publish their model folders to (a detector root)."""
    return forensics_home() / "models"


def detector_dirs() -> list[Path]:
    """Where named detectors live: the bundled ``assets/detectors``, ``$FORENSICS_DETECTORS`` and
    the models finished jobs published (so a new model is offered as soon as its job ends)."""
    dirs = [ASSETS]
    extra = os.environ.get("FORENSICS_DETECTORS")
    if extra:
        dirs += [Path(p) for p in extra.split(os.pathsep) if p]
    return dirs + [job_models_dir()]


def available_detectors() -> dict[str, Path]:
    """Named, trained detectors a user may choose: name -> folder (untrained ones are never listed)."""
    found: dict[str, Path] = {}
    for root in detector_dirs():
        if not root.is_dir():
            continue
        for folder in sorted(p for p in root.iterdir() if (p / CONFIG_NAME).is_file()):
            try:
                config = read_config(folder)
            except DetectorError:
                continue
            if config.get("forensics", {}).get("trained", True):
                found.setdefault(folder.name, folder)
    return found


# A model folder's ONNX builds (forensics.int8.quantize makes them), chosen as ``<name>:<variant>``.
ONNX_BUILDS = {"onnx": "model.onnx", "int8": "model_quantized.onnx"}


def split_variant(name: str) -> tuple[str, str | None]:
    """``"default:int8"`` -> ``("default", "int8")``; names without a known suffix are left whole."""
    text = str(name)
    base, sep, variant = text.rpartition(":")
    if sep and base and variant in ONNX_BUILDS:
        return base, variant
    return text, None


def onnx_builds() -> dict[str, Path]:
    """The ONNX builds of the named detectors: ``<name>:onnx`` and ``<name>:int8`` -> folder."""
    found: dict[str, Path] = {}
    for name, folder in available_detectors().items():
        for variant, filename in ONNX_BUILDS.items():
            if (folder / filename).is_file():
                found[f"{name}:{variant}"] = folder
    return found


def detector_choices() -> list[str]:
    """What the detector boxes offer: every named detector, then the ONNX builds."""
    return [*available_detectors(), *onnx_builds()]


def default_detector() -> str | None:
    names = list(available_detectors())
    return "default" if "default" in names else (names[0] if names else None)


def config_labels(config: dict) -> list[str]:
    """Class names from a timm (``label_names``) or transformers (``id2label``) config."""
    if "id2label" in config and "model_type" in config:
        return [config["id2label"][k] for k in sorted(config["id2label"], key=int)]
    return list(config.get("label_names") or config.get("pretrained_cfg", {}).get("label_names") or [])


def detector_labels(name: str | None) -> list[str]:
    """Labels of a named or local detector, read from its config; [] when unknown (e.g. a Hub id)."""
    name = split_variant(name)[0] if name else name  # an ONNX build has its model's labels
    folder = available_detectors().get(name or "") or (Path(name) if name and Path(name).is_dir() else None)
    if folder is None:
        return []
    try:
        return config_labels(read_config(folder))
    except DetectorError:
        return []


def target_choices(detector: str | None) -> list[str]:
    """What the maps can explain: the fake class, the real class, the predicted one, or any label."""
    labels = detector_labels(detector)
    return ["fake", "real", "predicted", *[label for label in labels if label not in ("fake", "real")]]


def example_files(kind: str) -> list[str]:
    """Example media shipped in ``assets/examples`` ("image" or "video")."""
    from forensics.media import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS

    wanted = IMAGE_EXTENSIONS if kind == "image" else VIDEO_EXTENSIONS
    return sorted(str(p) for p in EXAMPLES.glob("*") if p.suffix.lower() in wanted) if EXAMPLES.is_dir() else []


def read_card(folder: Path) -> str:
    """A model folder's card (README.md) without the Hub's YAML header; "" when it has none."""
    card = folder / CARD_NAME
    return re.sub(r"\A---.*?---\s*", "", card.read_text(encoding="utf-8"), flags=re.DOTALL) if card.is_file() else ""


def detector_cards(more: dict[str, str | Path] | None = None) -> list[tuple[str, str]]:
    """(name, model card as Markdown) per named detector (and per folder of ``more``, name -> folder):
    the Hub's YAML header and the card's own title (the name again) dropped, its headings demoted
    under the app's."""
    cards = []
    for name, folder in {**available_detectors(), **{k: Path(v) for k, v in (more or {}).items()}}.items():
        text = re.sub(r"\A#\s[^\n]*\n+", "", read_card(folder) or "(no model card)")  # the title repeats the name
        text = re.sub(r"^(#+)\s", lambda m: "#" * min(6, len(m.group(1)) + 2) + " ", text, flags=re.MULTILINE)
        cards.append((name, text))
    return cards


def parse_methods(text: str | Iterable[str] | None) -> list[str]:
    """``"all"``, ``"none"``, or a comma list such as ``"attention,gradcam++"`` -> method names."""
    if text is None:
        return list(METHODS)
    items = [t.strip().lower() for t in (text.split(",") if isinstance(text, str) else text) if t.strip()]
    if items in (["all"], []):
        return list(METHODS + EXTRA_METHODS) if items else []
    if items == ["none"]:
        return []
    aliases = {"gradcampp": "gradcam++", "gradcam_pp": "gradcam++", "grad-cam": "gradcam", "grad-cam++": "gradcam++",
               "attn": "attention"}
    methods = [aliases.get(item, item) for item in items]
    unknown = [m for m in methods if m not in METHODS + EXTRA_METHODS]
    if unknown:
        raise ValueError(f"unknown explanation method(s) {unknown}; choose from "
                         f"{', '.join(METHODS + EXTRA_METHODS)}, all or none")
    return list(dict.fromkeys(methods))


# What a training run can start with (min, max): `python -m training` checks every setting against these
# (training.checks.model_settings) and the Train tab's jobs the ones they set (forensics.jobs.settings).
INTEGER_RANGES = (("epochs", 1, 1000), ("batch_size", 1, 4096), ("image_size", 16, 1024), ("patience", 1, 1000),
                  ("workers", 0, 64), ("max_steps", 1, 10_000_000), ("max_per_source", 1, 10_000_000),
                  ("video_frames", 0, 10_000), ("ae_steps", 1, 10_000_000))
OPTIONAL = {"max_steps", "max_per_source"}  # None: no cap
# (key, low, high, closed): closed, the ends are allowed. Shares (of the training faces or pairs, of the
# learning rate, of the teacher's targets) and margins in [0, 1]; the rest as each needs.
NUMBER_RANGES = (*((key, 0.0, 1.0, True) for key in (
    "jpeg_prob", "sharpen_prob", "noise_prob", "smooth_prob", "sbi_downscale", "swap", "expression_swap", "ae_swap",
    "h264_prob", "lowres_prob", "grade_prob", "trunk_lr_scale", "max_padding", "face_margin", "alpha")),
    ("lr", 0.0, 1.0, False), ("val_fraction", 0.0, 1.0, False), ("mask_ratio", 0.0, 1.0, False),
    ("temperature", 0.0, 100.0, False), ("weight_decay", 0.0, 10.0, True), ("adv_eps", 0.0, 255.0, True))


def setting_range(key: str) -> tuple:
    """``(low, high)`` of an integer setting, ``(low, high, closed)`` of a number's."""
    for row in (*INTEGER_RANGES, *NUMBER_RANGES):
        if row[0] == key:
            return row[1:]
    raise KeyError(key)


def out_of_range(key: str, number: float | None) -> str | None:
    """The range of the number setting ``key`` as text (``[0, 1]``, ``(0, 1)``) when ``number`` is
    outside it or missing, else None: one rule for the training commands and the jobs."""
    low, high, closed = setting_range(key)
    if number is not None and (low <= number <= high if closed else low < number < high):
        return None
    return f"[{low:g}, {high:g}]" if closed else f"({low:g}, {high:g})"
