"""Weight-space ensembling of two runs of one model (WiSE-FT, Wortsman et al., CVPR 2022).

The default detector is trained in two stages: self-blended reals only, then every kind of fake.
Stage 2 learns the generated faces but forgets some of what stage 1 knew about blending on unseen
videos. Interpolating the two runs' weights, ``weight * first + (1 - weight) * second``, keeps much
of both without any training: the two runs share their initialisation (stage 2 starts from
stage 1), which is what makes their weights interpolate. The souped model is recalibrated on the
second run's model-selection faces, so its temperature and threshold are its own.

    python -m training soup --first runs/default-stage1/model --second runs/default-s2/model \\
        --weight 0.5 --out runs/default
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import torch

from forensics.core.io import atomic_path
from forensics.detectors.card import write_card
from training.checks import calibration_record, soup_inputs, soup_weight



def soup_state(first: dict[str, torch.Tensor], second: dict[str, torch.Tensor],
               weight: float) -> dict[str, torch.Tensor]:
    """``weight * first + (1 - weight) * second`` for every floating-point tensor (weights and
    BatchNorm statistics); integer tensors (BatchNorm's batch counts) come from ``second``."""
    weight = soup_weight(weight)
    if first.keys() != second.keys():
        missing = sorted(set(first) ^ set(second))[:3]
        raise ValueError(f"the two models differ in their tensors ({', '.join(missing)} ...): not one architecture")
    out = {}
    for name, b in second.items():
        a = first[name]
        if a.shape != b.shape:
            raise ValueError(f"the two models differ in {name}: {tuple(a.shape)} vs {tuple(b.shape)}")
        out[name] = (weight * a.float() + (1.0 - weight) * b.float()).to(b.dtype) if b.is_floating_point() else b
    return out


def weight_soup(first: str | Path, second: str | Path, weight: float, out: str | Path,
                data: str | None = None, cache: str | None = None, command: str | None = None) -> dict:
    """Write ``out/model``: the soup of two trained model folders, recalibrated on the second run's
    model-selection faces (``data``/``cache`` override its recorded ones), with its card."""
    from safetensors.torch import load_file, save_file

    soup_inputs(first, second, weight)
    first, second = Path(first), Path(second)
    record = json.loads((second / "training.json").read_text(encoding="utf-8"))
    state = soup_state(load_file(str(first / "model.safetensors")), load_file(str(second / "model.safetensors")),
                       float(weight))
    model_dir = Path(out) / "model"
    with atomic_path(model_dir) as staging:
        staging.mkdir(parents=True)
        shutil.copy2(second / "config.json", staging / "config.json")  # its training record is rewritten below
        save_file({k: v.contiguous() for k, v in state.items()}, str(staging / "model.safetensors"))
        calibration = _calibrate_on_selection_faces(staging, record["config"], data, cache)
        record.update({"soup": {"first": first.as_posix(), "second": second.as_posix(), "weight_of_first": weight},
                       "calibration": calibration, **({"command": command} if command else {})})
        record["config"] = {**record["config"], "out": Path(out).as_posix()}
        (staging / "training.json").write_text(json.dumps(record, indent=2, default=str), encoding="utf-8")
        write_card(staging)
    return {"model_dir": str(model_dir), "calibration": {k: calibration[k] for k in ("temperature", "threshold")}}


def _calibrate_on_selection_faces(folder: Path, config: dict, data: str | None, cache: str | None,
                                  small_faces_only: bool = False) -> dict:
    """Calibrate the model folder on the model-selection faces of the run ``config`` describes
    (``data``/``cache`` override the recorded ones): its config.json takes the fit, the record is
    returned (:func:`training.pipeline.calibrate_model`)."""
    from training.pipeline import calibrate_model, cached_faces, selection_faces, selection_set, split_faces

    config = {**config, **{k: v for k, v in (("data", data), ("cache", cache)) if v}}
    faces = selection_faces(split_faces(cached_faces(config), config)[1], config)
    return calibrate_model(folder, selection_set(faces, config),
                           [i for i, x in enumerate(config["labels"]) if x != "real"], small_faces_only)


def recalibrate(folder: str | Path, data: str | None = None, cache: str | None = None,
                command: str | None = None, small_faces_only: bool = False) -> dict:
    """Calibrate a trained model folder again, on its own run's model-selection faces, as training
    does now (for a model trained before the calibration changed): config.json, the training record's
    calibration and the card are rewritten; the weights are not touched. ``small_faces_only``: only
    the small faces' temperatures are fitted again (on the folder's own temperature, bias and
    threshold, which stay as they are, and so does an int8 build's threshold tuned on them)."""
    from forensics.core import write_atomic

    record = calibration_record(folder, small_faces_only)
    folder = Path(folder)
    path = folder / "training.json"
    fitted = _calibrate_on_selection_faces(folder, record["config"], data, cache, small_faces_only)
    calibration = {**record["calibration"], **fitted} if small_faces_only else fitted
    record["calibration"] = calibration
    if command:  # the latest command, and every one in order (a record from before the list starts it)
        history = record.get("recalibrations") or ([{"command": record["recalibrated"]}]
                                                    if record.get("recalibrated") else [])
        record["recalibrations"] = [*history, {"command": command, "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                                               "small_faces_only": small_faces_only}]
        record["recalibrated"] = command
    write_atomic(path, record)
    write_card(folder)
    result = {"model_dir": str(folder), "calibration": {k: calibration[k] for k in
                                                         ("method", "temperature", "logit_bias", "threshold")
                                                         if k in calibration}}
    if small_faces_only:
        result["calibration"]["size_temperatures"] = {k: v["temperature"]
                                                      for k, v in calibration["small_faces"]["sides"].items()}
    elif (folder / "onnx.json").is_file():  # the ONNX builds read the new config.json; not their int8 threshold
        result["note"] = "the int8 threshold in onnx.json was tuned at the old calibration: run `python -m forensics quantize` again"
    if (folder / "metrics.json").is_file():  # measured at the old calibration: the card leaves its figures out
        stale = ("the card leaves out metrics.json, measured at the old calibration: run `python -m training "
                 "evaluate` again")
        result["note"] = f"{result['note']}; {stale}" if "note" in result else stale
    return result
