"""The training command line's refusals that need no torch: a setting out of range, or a file or
model folder that is not there. Each command runs them before it imports torch, so a mistake is
told in under a second instead of after the imports; the functions behind the commands
(``training.soup``, ``training.evaluate``) call the same checks, so a library caller gets the same
one-line messages."""

from __future__ import annotations

import json
import math
from pathlib import Path

from forensics.catalog import INTEGER_RANGES, NUMBER_RANGES, OPTIONAL, faithfulness_steps, out_of_range
from forensics.core.framing import FRAMINGS
from forensics.core.labelled import images_under
from forensics.jobs.settings import label_order_problem


def soup_weight(weight: float) -> float:
    """The first model's share in a weight soup: a number in [0, 1]."""
    if not 0.0 <= float(weight) <= 1.0:
        raise ValueError(f"the first model's weight must be in [0, 1], not {weight}")
    return float(weight)


def soup_inputs(first: str | Path, second: str | Path, weight: float) -> None:
    """``python -m training soup``: two trained model folders and a weight in [0, 1]."""
    soup_weight(weight)
    for folder in (Path(first), Path(second)):
        if not (folder / "model.safetensors").is_file():
            raise FileNotFoundError(f"{folder}: not a trained model folder (no model.safetensors)")


def calibration_record(folder: str | Path, small_faces_only: bool = False) -> dict:
    """The training record of a model folder that ``python -m training calibrate`` can calibrate
    again: weights and training.json present, and for ``small_faces_only`` a calibration to keep."""
    folder = Path(folder)
    path = folder / "training.json"
    if not (folder / "model.safetensors").is_file() or not path.is_file():
        raise FileNotFoundError(f"{folder}: not a trained model folder (model.safetensors and training.json)")
    record = json.loads(path.read_text(encoding="utf-8"))
    if small_faces_only and "temperature" not in record.get("calibration", {}):
        raise ValueError(f"{folder}: never calibrated, so there is nothing to fit small faces on: "
                         "calibrate it whole (without --small-faces-only)")
    return record


def video_evaluation_inputs(data: str | Path, frames: int) -> None:
    """``python -m training evaluate --videos-only``: a labels CSV and at least one frame a video."""
    if Path(data).suffix.lower() != ".csv" or not Path(data).is_file():
        raise FileNotFoundError(f"no labels CSV at {data} (the labelled videos are read from one)")
    if frames < 1:
        raise ValueError(f"--video-frames must be at least 1, not {frames}")


def real_photos_input(folder: str | None) -> None:
    """``python -m training evaluate --real-photos``: a folder that holds an image, or "none"."""
    if folder is None or folder == "none":
        return
    if not Path(folder).is_dir():
        raise FileNotFoundError(f"--real-photos {folder}: no such folder")
    if not images_under(folder):
        raise ValueError(f"--real-photos {folder}: no image below it")


def explain_bench_inputs(data: str | Path, limit: int, steps: int, road: int) -> None:
    """``python -m training explain-bench``: labelled data that is there, at least one face to score,
    2..100 points a curve and a ROAD share that is not negative."""
    if limit < 1 or road < 0:
        raise ValueError("--limit must be at least 1 and --road at least 0")
    faithfulness_steps(steps)
    training_data(data)  # the rule the training commands use: a labels CSV or a folder


def model_settings(config: dict) -> None:
    """Settings every training command shares (``train``, ``distill``, ``pretrain``, ``federated``): a
    known face framing, and a label order the architecture can score (the Train tab's jobs ask the
    same :func:`forensics.jobs.settings.label_order_problem`)."""
    if config["face_framing"] not in FRAMINGS:
        raise ValueError(f"face_framing must be one of {', '.join(FRAMINGS)}, got {config['face_framing']!r}")
    problem = label_order_problem(config["model"], list(config["labels"] or ()))
    if problem:
        raise ValueError(problem)
    for key, low, high in INTEGER_RANGES:
        value = config.get(key)
        if value is None and key in OPTIONAL:
            continue
        number = _number(value)
        if number is None or number != int(number) or not low <= number <= high:
            raise ValueError(f"{key} must be a whole number from {low} to {high}, got {value!r}")
    for key, *_ in NUMBER_RANGES:
        value = config.get(key)
        span = out_of_range(key, _number(value))
        if span:
            raise ValueError(f"{key} must be a number in {span}, got {value!r}")


def _number(value) -> float | None:
    """``value`` as the pipeline reads it (``float()``/``int()``: YAML's ``3e-4`` is a string), or None."""
    if isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def training_data(data: str | Path) -> None:
    """The data a training command reads: a labels CSV or an ImageFolder tree that is there."""
    path = Path(data)
    if not (path.is_file() and path.suffix.lower() == ".csv") and not path.is_dir():
        raise FileNotFoundError(f"data {data}: no such labels CSV or ImageFolder folder")


def photo_folders(config: dict) -> None:
    """``photo_folders``: a list of folders, relative to the labels CSV, each holding an image."""
    folders = config.get("photo_folders") or []
    if not isinstance(folders, list) or not all(isinstance(f, str) and f for f in folders):
        raise ValueError(f"photo_folders must be a list of folders (relative to the labels CSV), got {folders!r}")
    if folders and not str(config["data"]).lower().endswith(".csv"):
        raise ValueError("photo_folders needs a labels CSV as data (its folders are relative to the CSV)")
    for folder in folders:
        root = Path(config["data"]).parent / folder
        if not images_under(root):
            raise FileNotFoundError(f"photo_folders: {root} holds no image")
