"""From a config to a trained model folder: samples -> face-crop cache -> grouped split ->
datasets (self-blended pairs) -> the training core -> ``out/model`` in Hugging Face layout."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from forensics.core import atomic_path, write_atomic
from forensics.detectors.base import DetectorInfo
from forensics.detectors.card import VIDEO_SOURCE, holdout_sources, write_card
from forensics.detectors.timm_family import save_timm_detector
from forensics.jobs.settings import labels_problem
from training.data import (
    FACE_GROUPS,
    FRAMES_DIR,
    CachedFace,
    FaceCropCache,
    Sample,
    face_counts,
    face_groups,
    grouped_split,
    image_folder,
    is_photo_source,
    photo_samples,
    photo_source,
    read_labels_csv,
    remap_labels,
    video_frame_samples,
)
from training.aeswap import AutoencoderSwapper, swapper_for
from training.calibrate import calibrate_folder, collect_logits
from training.datasets import Collate, LabelledFaces, SelfBlendedPairs
from training.loop import TrainConfig, train
from training.models import PRETRAINED_PREFIXES, build_model

IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
CROP_CACHE_SIZE = 256


class Concat(Dataset):
    """ConcatDataset that passes the epoch on (augmentation and pseudo-fakes change per epoch)."""

    def __init__(self, parts: Sequence[Dataset]):
        self.parts = [p for p in parts if len(p)]
        self.offsets = []
        total = 0
        for part in self.parts:
            self.offsets.append(total)
            total += len(part)
        self.total = total

    @property
    def epoch(self) -> int:
        return getattr(self.parts[0], "epoch", 0) if self.parts else 0

    @epoch.setter
    def epoch(self, value: int) -> None:
        for part in self.parts:
            part.epoch = value

    def __len__(self) -> int:
        return self.total

    def __getitem__(self, i: int):
        for part, offset in zip(reversed(self.parts), reversed(self.offsets)):
            if i >= offset:
                return part[i - offset]
        raise IndexError(i)


def load_samples(data: str | Path, label_map: dict | None = None):
    path = Path(data)
    samples = read_labels_csv(path) if path.suffix.lower() == ".csv" else image_folder(path)
    return remap_labels(samples, label_map or {})


def config_samples(config: dict) -> tuple[list[Sample], list[Sample]]:
    """The samples a config's run draws its faces from (the data's images, frames of its training videos,
    at most ``max_per_source`` of each source, its ``photo_folders``), and the data's images that
    ``max_per_source`` left out: faces no split of the run holds, never trained on nor validated on."""
    samples = load_samples(config["data"], config.get("label_map"))
    if config.get("video_frames") and str(config["data"]).lower().endswith(".csv"):
        samples += remap_labels(video_frame_samples(config["data"], config.get("video_folders") or [],
                                                    int(config["video_frames"]), config["cache"],
                                                    config.get("holdout_videos") or [], VIDEO_SOURCE),
                                config.get("label_map") or {})
    left_out: list[Sample] = []
    if config.get("max_per_source"):
        kept = cap_per_source(samples, int(config["max_per_source"]), int(config.get("seed", 0)))
        drawn = {id(s) for s in kept}
        left_out = [s for s in samples if id(s) not in drawn]
        samples = kept
    if config.get("photo_folders") and str(config["data"]).lower().endswith(".csv"):
        samples += photo_samples(config["data"], config["photo_folders"])
    return samples, left_out


def cached_faces(config: dict, samples: Sequence | None = None,
                 keep: Callable[[Sample], bool] | None = None) -> list[CachedFace]:
    """The config's samples (or ``samples``, e.g. one federated client's) cropped as inference crops:
    the data's images, frames of its training videos, at most ``max_per_source`` of each source;
    ``keep``: crop only the samples it accepts (cropped once, then cached)."""
    if samples is None:
        samples, _ = config_samples(config)
    if keep is not None:
        samples = [s for s in samples if keep(s)]
    # The crop margin is the model's: its folder records it, and inference crops faces the same way.
    faces = FaceCropCache(config["cache"], size=CROP_CACHE_SIZE, margin=float(config.get("face_margin", 0.3)),
                          framing=str(config.get("face_framing", "box"))).build(samples)
    # Crops that are mostly black padding teach "black border = real": leave them out.
    return [f for f in faces if f.padded_fraction <= config["max_padding"]]


def split_faces(faces: Sequence[CachedFace], config: dict) -> tuple[list[CachedFace], list[CachedFace]]:
    """Training and validation faces: a grouped split of the data (``grouped_split``), then the
    training share's sources, caps and repeats. Faces of ``photo_folders`` only ever train: they are
    kept out of the split, so that adding them leaves every other face on the side it was."""
    photos = [f for f in faces if is_photo_source(f.source)]
    faces = [f for f in faces if not is_photo_source(f.source)]
    train_faces, val_faces = grouped_split(faces, config["val_fraction"], config["seed"], holdout_sources(config))
    train_faces += photos
    if config.get("train_sources"):
        train_faces = [f for f in train_faces if f.source in set(config["train_sources"])]
    if config.get("train_caps"):
        train_faces = cap_training_faces(train_faces, config["train_caps"], int(config["seed"]))
    if config.get("train_repeats"):
        train_faces = repeat_training_faces(train_faces, config["train_repeats"])
    if config.get("group_repeats"):
        train_faces = repeat_group_faces(train_faces, config["group_repeats"])
    return train_faces, val_faces


class ConfigError(ValueError):
    """A config asks for something the data cannot give (the CLI says so in one line)."""


def check_named_sources(config: dict) -> None:
    """``train_caps`` and ``train_repeats`` naming a source the data lacks or holds out, and
    ``group_repeats`` naming a group no face can be in, refused before the faces are cropped (minutes on
    the whole data) rather than after; a source whose every face is lost in cropping is refused after
    it (``cap_training_faces``, ``repeat_training_faces``)."""
    unknown_groups = sorted(set(config.get("group_repeats") or {}) - set(FACE_GROUPS))
    if unknown_groups:
        raise ConfigError(f"group_repeats names unknown groups: {', '.join(unknown_groups)} "
                          f"(known: {', '.join(FACE_GROUPS)})")
    named = {key: set(config.get(key) or {}) for key in ("train_caps", "train_repeats")}
    if not any(named.values()):
        return
    trainable = {s.source for s in load_samples(config["data"], config.get("label_map"))}
    if config.get("video_frames"):
        trainable.add(VIDEO_SOURCE)
    trainable |= {photo_source(f) for f in config.get("photo_folders") or []}
    trainable -= set(holdout_sources(config))
    if config.get("train_sources"):
        trainable &= set(config["train_sources"])
    for key, names in named.items():
        unknown = sorted(names - trainable)
        if unknown:
            raise ConfigError(f"{key} names sources with no training faces: {', '.join(unknown)}")


def cap_training_faces(faces: Sequence[CachedFace], caps: dict, seed: int) -> list[CachedFace]:
    """At most ``caps[source]`` training faces of each source named there, drawn at random (the
    rest of a capped source is not trained on, and not validated on either: the validation faces
    are drawn before, so capped and uncapped runs are measured on the same faces). Caps only the
    amount a source teaches; its faces keep their order."""
    unknown = sorted(set(caps) - {f.source for f in faces})
    if unknown:
        raise ConfigError(f"train_caps names sources with no training faces: {', '.join(unknown)}")
    rng = np.random.default_rng(seed)
    keep: set[int] = set()
    for source, most in caps.items():
        if int(most) < 1:
            raise ConfigError(f"train_caps: {source} must keep at least one face (got {most})")
        members = [i for i, f in enumerate(faces) if f.source == source]
        keep.update(members[j] for j in rng.permutation(len(members))[: int(most)])
    return [f for i, f in enumerate(faces) if f.source not in caps or i in keep]


def repeat_training_faces(faces: Sequence[CachedFace], repeats: dict) -> list[CachedFace]:
    """Each training face of a source named in ``repeats`` taken that many times an epoch (each
    time with its own augmentation draw): a small source's dose raised without new faces. The
    validation faces are untouched."""
    unknown = sorted(set(repeats) - {f.source for f in faces})
    if unknown:
        raise ConfigError(f"train_repeats names sources with no training faces: {', '.join(unknown)}")
    out: list[CachedFace] = []
    for face in faces:
        out.extend([face] * int(repeats.get(face.source, 1)))
    return out


def repeat_group_faces(faces: Sequence[CachedFace], repeats: dict) -> list[CachedFace]:
    """Each training face of a group named in ``repeats`` (:data:`training.data.FACE_GROUPS`, e.g.
    "UTKFace Black") taken that many times an epoch, the most its groups ask where it is in several
    (on top of ``train_repeats``: a face already repeated for its source is repeated each time): the
    dose of the real faces a detector flags most raised without new faces. Validation is untouched."""
    unknown = sorted(set(repeats) - set(FACE_GROUPS))
    if unknown:
        raise ConfigError(f"group_repeats names unknown groups: {', '.join(unknown)} (known: {', '.join(FACE_GROUPS)})")
    out: list[CachedFace] = []
    for face in faces:
        times = max([int(repeats.get(g, 1)) for g in face_groups(face)], default=1)
        out.extend([face] * times)
    return out


def cap_per_source(samples: Sequence[Sample], most: int, seed: int) -> list[Sample]:
    """At most ``most`` images of each source, drawn at random (a large source such as UTKFace
    would otherwise fill most of each epoch and teach its own look; it also costs its crops)."""
    rng = np.random.default_rng(seed)
    by_source: dict[str, list[Sample]] = {}
    for sample in samples:
        by_source.setdefault(sample.source, []).append(sample)
    kept = []
    for group in by_source.values():
        kept += [group[i] for i in sorted(rng.permutation(len(group))[:most])]
    return kept


def face_datasets(faces: Sequence[CachedFace], labels: Sequence[str], size: int, sbi: bool, train: bool,
                  seed: int, aug: dict | None = None, sbi_downscale: float = 0.0, swap: float = 0.0,
                  ae: AutoencoderSwapper | None = None, ae_share: float = 0.0, expression: float = 0.0) -> Dataset:
    """Reals paired with self-blended fakes (when ``sbi``), plus every labelled fake as it is;
    ``aug``: the training augmentation's options (:func:`augment_options`); ``sbi_downscale``: the
    share of self-blends whose blended-in copy is shrunk and enlarged; ``swap``: the share of those
    fakes made as cross-identity face swaps instead; ``ae_share``: the share of the rest re-drawn
    by the autoencoder swapper ``ae``; ``expression``: the share of the fakes of talking-head frames
    made as same-person expression swaps (all for training sets only)."""
    check_labels(faces, labels, sbi)
    real = labels.index("real")
    # Self-blends are the "manipulated" class of a three-class model (real / manipulated / synthetic).
    fake = labels.index("manipulated" if "manipulated" in labels else "fake") if sbi else -1
    reals = [f for f in faces if f.label == "real"]
    others = [f for f in faces if f.label != "real"]
    parts: list[Dataset] = []
    if sbi:
        parts.append(SelfBlendedPairs(reals, size, real, fake, train=train, seed=seed, aug=aug, downscale=sbi_downscale,
                                      swap=swap, ae=ae, ae_share=ae_share, expression=expression))
    else:
        others = list(faces)
    if others:
        parts.append(LabelledFaces(others, [labels.index(f.label) for f in others], size, train=train, seed=seed,
                                   aug=aug))
    return Concat(parts)


def check_labels(faces: Sequence[CachedFace], labels: Sequence[str], sbi: bool) -> None:
    """One line, before any training, when the data's labels and the model's label order disagree
    (e.g. an ImageFolder with ``manipulated/`` and ``synthetic/`` trained as ``real fake``); the
    Train tab's jobs ask the same :func:`forensics.jobs.settings.labels_problem` at submission."""
    problem = labels_problem({f.label for f in faces}, labels, sbi)
    if problem:
        raise ConfigError(problem)


def augment_options(config: dict) -> dict:
    """The config's options for :func:`training.augment.draw_params`."""
    return {"jpeg_prob": float(config.get("jpeg_prob", 0.75)), "sharpen_prob": float(config.get("sharpen_prob", 0.0)),
            "noise_prob": float(config.get("noise_prob", 0.0)), "h264_prob": float(config.get("h264_prob", 0.0)),
            "smooth_prob": float(config.get("smooth_prob", 0.0)), "lowres_prob": float(config.get("lowres_prob", 0.0)),
            "grade_prob": float(config.get("grade_prob", 0.0))}


def _loss_for(config: dict):
    """The loss of the loop the config asks for: distillation, adversarial, or plain cross-entropy."""
    if config.get("teacher"):
        from forensics.detectors import load_detector
        from training.distill import DistillationLoss

        teacher = load_detector(config["teacher"]).model
        return DistillationLoss(teacher, config["temperature"], config["alpha"], config["distill_kind"],
                                config["distill_on"])
    if config.get("adversarial"):
        from training.adversarial import AdversarialLoss, PixelSpace

        return AdversarialLoss(PixelSpace(*IMAGENET), config["adv_eps"], config["adversarial"])
    return None


def run_pretraining(config: dict) -> dict:
    """MAE pretraining of ``config['model']`` (a timm ViT) on the real training faces: AdamW
    (betas 0.9, 0.95) with linear warm-up then cosine decay, bf16 autocast where ``precision``
    asks for it, the masks drawn from ``seed``; the encoder and the loss curve are written after
    every epoch."""
    from contextlib import nullcontext

    from safetensors.torch import save_file
    from torch.utils.data import DataLoader
    from tqdm import tqdm

    from training.loop import cosine_with_warmup, resolve_precision
    from training.mae import MaskedAutoencoder

    out = Path(config["out"])
    out.mkdir(parents=True, exist_ok=True)
    faces = [f for f in split_faces(cached_faces(config), config)[0] if f.label == "real"]
    if len(faces) < int(config["batch_size"]):
        raise ValueError(f"{len(faces)} real training faces: fewer than one batch of {config['batch_size']} to pretrain on")
    size = int(config["image_size"])
    data = LabelledFaces(faces, [0] * len(faces), size, train=True, seed=config["seed"])
    loader = DataLoader(data, batch_size=int(config["batch_size"]), shuffle=True, collate_fn=Collate(*IMAGENET),
                        num_workers=int(config["workers"]), drop_last=True,
                        generator=torch.Generator().manual_seed(int(config["seed"])))
    torch.manual_seed(int(config["seed"]))
    encoder, _, _ = build_model(config["model"], 0, pretrained=False, image_size=size)
    mae = MaskedAutoencoder(encoder, mask_ratio=float(config["mask_ratio"]))
    optimizer = torch.optim.AdamW(mae.parameters(), lr=float(config["lr"]), weight_decay=0.05, betas=(0.9, 0.95))
    epochs = int(config["epochs"])
    total = max(1, epochs * len(loader))
    scheduler = cosine_with_warmup(optimizer, int(0.05 * total), total)
    masks = torch.Generator().manual_seed(int(config["seed"]))
    precision, note = resolve_precision(str(config.get("precision", "auto")), cuda=False)  # it runs on the CPU
    if note:
        print(note, flush=True)
    bf16 = precision == "bf16"
    history = []
    for epoch in range(epochs):
        data.epoch = epoch
        losses = []
        bar = tqdm(loader, desc=f"pretrain {epoch + 1}/{epochs}")
        for images, _ in bar:
            with torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else nullcontext():
                loss, _, _ = mae(images, masks)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            losses.append(loss.item())
            bar.set_postfix(loss=f"{losses[-1]:.4f}")
        history.append({"epoch": epoch + 1, "loss": float(sum(losses) / max(1, len(losses)))})
        # Written beside and then moved into place: a stop mid-write leaves the last epoch's files whole.
        with atomic_path(out / "encoder.safetensors") as tmp:
            save_file({k: v.contiguous() for k, v in mae.encoder.state_dict().items()}, str(tmp))
        write_atomic(out / "history.json", history)
    return {"encoder": str(out / "encoder.safetensors"), "faces": len(faces), "history": history}


def run_training(config: dict, command: str | None = None) -> dict:
    """Train as ``config`` says; ``command`` (how it was started) goes into the training record
    and the model card."""
    torch.set_num_threads(max(1, torch.get_num_threads()))
    out = Path(config["out"])
    labels = list(config["labels"])
    check_named_sources(config)
    faces = cached_faces(config)
    train_faces, val_faces = split_faces(faces, config)
    size = int(config["image_size"])
    ae_share = float(config.get("ae_swap", 0.0))
    # The autoencoder swap learns the people of the training split's talking-head frames only.
    ae = swapper_for([f for f in train_faces if f.source == VIDEO_SOURCE and f.label == "real"], config["cache"],
                     int(config.get("ae_steps", 2000)), int(config["seed"])) if ae_share > 0 else None
    # `seed` draws the split and the validation faces' pseudo-fakes; `run_seed` (when set) the training draws.
    run_seed = int(config["seed"] if config.get("run_seed") is None else config["run_seed"])
    train_set = face_datasets(train_faces, labels, size, config["sbi"], True, run_seed, augment_options(config),
                              float(config.get("sbi_downscale", 0.0)), float(config.get("swap", 0.0)), ae, ae_share,
                              float(config.get("expression_swap", 0.0)))
    select_faces = selection_faces(val_faces, config)
    val_set = selection_set(select_faces, config)
    batch = int(config["batch_size"])
    if len(train_set) < batch:  # whole batches only: a smaller split trains no step, and its model is untrained
        raise ConfigError(f"the training split has {len(train_set)} face images, fewer than one batch of {batch}: "
                          "lower the batch size or add faces")
    if not len(val_set):
        raise ConfigError("the validation split has no face: a model could not be chosen or calibrated; add faces")
    torch.manual_seed(run_seed)  # the new layers' initial weights too: a run is repeatable with or without run_seed
    try:
        model, arch, model_args = build_model(config["model"], len(labels), config["pretrained"], size)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if config.get("init_from"):
        init_weights(model, config["init_from"])
    info = detector_info(config)
    record = {
        "config": config,
        **({"command": command} if command else {}),
        "counts": {"train": face_counts(train_faces), "validation": face_counts(val_faces),
                   "model_selection": face_counts(select_faces)},
        "sources_seen": sorted({f.source for f in faces}),  # what a held-out source could be (the card says only those)
        # Source images relative to the data's folder: the record holds on any machine and cache.
        "validation_images": sorted(relative_to_data(f.image_path, config["data"]) for f in val_faces),
    }
    model_dir = out / "model"

    def on_best(best_model, entry) -> None:
        save_timm_detector(best_model, model_dir, arch, info, model_args=model_args)
        write_atomic(model_dir / "training.json", {**record, "best_epoch": entry})

    train_config = TrainConfig(
        out_dir=str(out), epochs=int(config["epochs"]), lr=float(config["lr"]), weight_decay=float(config["weight_decay"]),
        batch_size=int(config["batch_size"]), patience=int(config["patience"]), seed=run_seed,
        resume=bool(config["resume"]), num_workers=int(config["workers"]), max_steps=config.get("max_steps"),
        precision=str(config.get("precision", "auto")), trunk_lr_scale=float(config.get("trunk_lr_scale", 0.3)),
    )
    fake_indices = [i for i, x in enumerate(labels) if x != "real"]
    result = train(model, train_set, val_set, train_config, Collate(*IMAGENET), fake_indices, on_best=on_best,
                   trunk_prefixes=PRETRAINED_PREFIXES.get(config["model"], ()), loss_fn=_loss_for(config))
    record_path = model_dir / "training.json"
    if record_path.is_file():  # the whole run's curves travel with the model folder
        saved = json.loads(record_path.read_text())
        saved["history"] = result["history"]
        saved["precision"] = {"requested": train_config.precision, "used": result.get("precision"),
                              **({"note": result["precision_note"]} if result.get("precision_note") else {})}
        if config.get("calibrate", True):
            saved["calibration"] = calibrate_model(model_dir, val_set, fake_indices)
        write_atomic(record_path, saved)
        write_card(model_dir)  # the card states the record, calibration included
    return {**result, "model_dir": str(model_dir), "record": record}


def selection_set(select_faces: Sequence[CachedFace], config: dict) -> Dataset:
    """The model-selection (and calibration) set of a run: its held-back faces of the training
    sources with their self-blends, drawn alike every time. The best epoch is chosen on these only:
    choosing it on the held-out sources would leak them into the model and make their figures
    optimistic."""
    return face_datasets(select_faces, list(config["labels"]), int(config["image_size"]), config["sbi"], False,
                         config["seed"] + 1)


def calibrate_model(model_dir: Path, val_set: Dataset, fake_indices: Sequence[int],
                    small_faces_only: bool = False) -> dict:
    """Temperature and threshold of the saved (best) model, fitted on the model-selection faces,
    then the extra temperatures of small faces (the same faces shrunk and compressed:
    :func:`training.calibrate.fit_size_temperatures`). ``small_faces_only``: those alone, over the
    calibration config.json holds (the record then has only ``small_faces``)."""
    from forensics.detectors import load_detector
    from training.calibrate import fit_size_temperatures

    detector = load_detector(model_dir, cache=False)
    collate = Collate(detector.info.mean, detector.info.std)
    record = {}
    if not small_faces_only:
        logits, labels = collect_logits(detector.model, val_set, collate)
        record = calibrate_folder(model_dir, logits, labels, fake_indices)
    record["small_faces"] = fit_size_temperatures(detector.model, val_set, collate, model_dir, fake_indices)
    return record


def detector_info(config: dict, how: str = "trained") -> DetectorInfo:
    """The ``forensics`` block of the model folder a training config produces (``how``: how it was
    trained, for its description)."""
    labels = list(config["labels"])
    name = config.get("name") or (f"{config['model']}-sbi" if config["sbi"] else config["model"])
    return DetectorInfo(
        name=name, labels=labels, fake_labels=[x for x in labels if x != "real"],
        input_size=int(config["image_size"]), mean=IMAGENET[0], std=IMAGENET[1], trained=True,
        version=str(config["version"]), face_margin=float(config.get("face_margin", 0.3)),
        face_framing=str(config.get("face_framing", "box")),
        crop_size=CROP_CACHE_SIZE, fit_inside=True,  # the app cuts its faces as the crop cache cut these
        description=f"{config['model']} face-manipulation detector {how} by Deepfake Forensics Studio.",
    )


def selection_faces(val_faces: Sequence[CachedFace], config: dict) -> list[CachedFace]:
    """The validation faces the best epoch is chosen on: those of held-out sources are left out
    unless ``select_on_holdout`` is set (or nothing else is left), and so are those of sources
    that ``train_sources`` leaves out of training (unseen too)."""
    held = set(holdout_sources(config))
    trained = set(config.get("train_sources") or ())
    if config.get("select_on_holdout") or not (held or trained):
        return list(val_faces)
    chosen = [f for f in val_faces if f.source not in held and (not trained or f.source in trained)]
    return chosen or list(val_faces)


def init_weights(model: torch.nn.Module, path: str | Path) -> list[str]:
    """Start from the weights in ``path`` (a safetensors file, or a model folder holding
    model.safetensors): every tensor whose name and shape match is loaded, so a detector can be
    trained further and an MAE encoder gives a classifier its trunk (a head of another size is
    left as initialised). Returns the names left as initialised."""
    from safetensors.torch import load_file

    path = Path(path)
    if path.is_dir():
        path = path / "model.safetensors"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no weights to start from")
    own = model.state_dict()
    state = {}
    for k, v in load_file(str(path)).items():
        if k in own and own[k].shape == v.shape:
            state[k] = v
        elif k == "pos_embed" and (grid := _resampled_pos_embed(model, v)) is not None:  # another image size:
            state[k] = grid                                                             # its grid resampled
        elif _grown_head(k, v, own):  # binary -> real / manipulated / synthetic: the known rows kept,
            state[k] = torch.cat([v, v[-1:].expand(len(own[k]) - len(v), *v.shape[1:])])  # new ones as the last
    if not state:
        raise ValueError(f"{path}: none of its tensors fits this model")
    model.load_state_dict(state, strict=False)
    return sorted(set(own) - set(state))


def _resampled_pos_embed(model: torch.nn.Module, tensor: torch.Tensor) -> torch.Tensor | None:
    """A ViT's absolute position embedding of another square grid (same width, same prefix tokens),
    resampled to this model's grid; None when ``tensor`` is not one."""
    from timm.layers import resample_abs_pos_embed

    own = getattr(model, "pos_embed", None)
    prefix = 0 if getattr(model, "no_embed_class", False) else getattr(model, "num_prefix_tokens", 0)
    if own is None or tensor.ndim != 3 or tensor.shape[2] != own.shape[2] or tensor.shape[1] <= prefix:
        return None
    side = math.isqrt(tensor.shape[1] - prefix)
    if side * side != tensor.shape[1] - prefix:
        return None
    return resample_abs_pos_embed(tensor, list(model.patch_embed.grid_size), [side, side], num_prefix_tokens=prefix)


def _grown_head(name: str, tensor: torch.Tensor, own: dict) -> bool:
    mine = own.get(name)
    return (name.startswith("head.") and mine is not None and mine.shape[1:] == tensor.shape[1:]
            and mine.shape[0] > tensor.shape[0])


def relative_to_data(path: str, data: str) -> str:
    """A face's source image named independently of the machine: relative to the data's folder,
    or, for a frame sampled from a video into the cache, ``frames/<video>@<n>/<index>.png``."""
    root = Path(data).resolve()
    root = root.parent if root.suffix.lower() == ".csv" else root
    resolved = Path(path).resolve()
    try:
        return str(resolved.relative_to(root))
    except ValueError:
        if resolved.parent.parent.name == FRAMES_DIR:
            return f"{FRAMES_DIR}/{resolved.parent.name}/{resolved.name}"
        return str(resolved)
