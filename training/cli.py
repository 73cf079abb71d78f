"""``python -m training``: train and evaluate detectors.

    python -m training train --config configs/default.yaml [--epochs 8 ...]
    python -m training evaluate --detector assets/detectors/default --data ../shared/data/labels.csv

A YAML config gives the same keys as the command line (dashes or underscores); the command line
wins. Progress goes to stderr (tqdm); metrics to JSON and a Plotly HTML report in the output folder.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

import yaml

from forensics.core.framing import FRAMINGS
from forensics.jobs.settings import MODEL_CHOICES
from training import checks

DEFAULTS = {
    "model": "hybrid",
    "data": "../shared/data/labels.csv",
    "cache": ".cache/crops256",
    "out": "runs/hybrid",
    "epochs": 8,
    "batch_size": 32,
    "lr": 3e-4,
    "weight_decay": 0.05,
    "image_size": 224,
    "sbi": True,
    "labels": ["real", "fake"],
    "label_map": {},
    "train_sources": None,  # None: every source not held out
    "train_caps": None,  # {source: most training faces}: a source's dose (validation faces unchanged)
    "train_repeats": None,  # {source: times}: each training face of a source taken that many times an epoch
    "group_repeats": None,  # {group: times}: each training face of a group ("UTKFace Black") taken that many times
    "holdout_sources": ["StyleGAN2 (thispersondoesnotexist)"],
    "val_fraction": 0.15,
    "max_padding": 0.15,
    "patience": 4,
    "seed": 0,
    "run_seed": None,  # seed of the training draws (init, order, augmentation) when not `seed`: replicates on one split
    "trunk_lr_scale": 0.3,  # the pretrained trunk's learning rate as a share of `lr`
    "resume": False,
    "pretrained": True,
    "workers": 1,
    "precision": "auto",  # auto: bf16 on CUDA with support, else fp32; bf16 also speeds up CPUs that have it
    # natively (AVX-512/AMX) and falls back to fp32 on those that do not (training.loop.resolve_precision)
    "max_steps": None,
    "name": None,
    "version": "1",
    # loops built on the same core
    "adversarial": None,  # fgsm | pgd: adversarial training
    "adv_eps": 2.0,  # pixel units (0..255)
    "teacher": None,  # a model folder: distil it into --model
    "temperature": 4.0,
    "alpha": 0.7,
    "distill_kind": "kl",  # kl | mse
    "distill_on": "logits",  # logits | patches
    "init_from": None,  # weights to start from: a trained model folder, or an MAE encoder from `pretrain`
    "select_on_holdout": False,  # choose the best epoch on held-out sources too (leaks them: off)
    "face_margin": 0.3,  # crop margin (share of the MTCNN box added around it), recorded in the model folder
    "face_framing": "box",  # box | landmarks: what the margin is added around (forensics.faces.FRAMINGS), recorded too
    "jpeg_prob": 0.75,  # share of training pairs re-encoded as JPEG (quality 30..100)
    "sharpen_prob": 0.0,  # share of training pairs sharpened (unsharp mask, amount 0.5..3.5)
    "noise_prob": 0.0,  # share of training pairs given Gaussian noise (sigma 1..6)
    "smooth_prob": 0.0,  # share of training pairs smoothed by a bilateral filter (phone noise reduction / beauty mode)
    "sbi_downscale": 0.0,  # share of training self-blends whose blended-in copy is shrunk 2-4x and enlarged
    "swap": 0.0,  # share of training pseudo-fakes made as cross-identity face swaps (training.swap)
    "expression_swap": 0.0,  # share of the pseudo-fakes of talking-head frames made as same-person expression swaps
    "ae_swap": 0.0,  # share of the other pseudo-fakes made by an autoencoder swap (training.aeswap)
    "ae_steps": 2000,  # that autoencoder's training steps (learnt once per split, kept in the cache)
    "h264_prob": 0.0,  # share of training faces (real and fake alike) re-encoded with H.264 at CRF 23-40
    "lowres_prob": 0.0,  # share of training faces (real and fake alike) shrunk to 64-192 px and compressed at that size
    "grade_prob": 0.0,  # share of training faces (real and fake alike) colour-graded: saturation, tone curve, gamma, cast
    "mask_ratio": 0.75,
    "video_frames": 0,  # frames sampled from each training video (0: videos are not trained on)
    "video_folders": [],  # folders of labelled videos (relative to the CSV) whose frames are training faces
    "photo_folders": [],  # folders of real photographs (relative to the CSV) whose largest faces train as reals, never validated
    "holdout_videos": [],  # video file names kept out of training whole (validation and video-level figures)
    "max_per_source": None,  # at most this many images of each source (train and validation), drawn at random
    "calibrate": True,  # fit a temperature and a threshold on the validation faces after training
}


def _train_parser(sub, name: str = "train", text: str = "fine-tune a detector (self-blended images on by default)"):
    p = sub.add_parser(name, help=text)
    p.add_argument("--config", help="YAML file with any of the options below")
    p.add_argument("--model", choices=MODEL_CHOICES)
    p.add_argument("--data", help="labels.csv (path,label,source[,group]) or an ImageFolder tree")
    p.add_argument("--cache", help="face-crop cache folder")
    p.add_argument("--out", help="run folder (checkpoints, logs, metrics, the model folder in out/model)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--weight-decay", type=float)
    p.add_argument("--image-size", type=int)
    p.add_argument("--sbi", action=argparse.BooleanOptionalAction, help="self-blended pseudo-fakes from reals")
    p.add_argument("--labels", nargs="+", help="label order of the model (id2label), e.g. real fake")
    p.add_argument("--holdout-sources", nargs="*", help="sources kept out of training, for validation")
    p.add_argument("--val-fraction", type=float)
    p.add_argument("--patience", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--resume", action="store_true", help="continue from out/checkpoint")
    p.add_argument("--workers", type=int)
    p.add_argument("--precision", choices=["auto", "no", "bf16", "fp16"])
    p.add_argument("--max-steps", type=int)
    p.add_argument("--name", help="detector name written into the model folder")
    p.add_argument("--adversarial", choices=["fgsm", "pgd"], help="adversarial training with this attack")
    p.add_argument("--adv-eps", type=float, help="attack budget in pixel units (default 2)")
    p.add_argument("--init-from", help="start from these weights: a model folder or .safetensors (a trained "
                   "detector to train further, or an encoder from `pretrain`)")
    p.add_argument("--face-margin", type=float, help="face-crop margin for training and, through the model "
                   "folder, inference (default 0.3; UTKFace's tight crops allow about 0.03)")
    p.add_argument("--face-framing", choices=FRAMINGS, help="frame crops around MTCNN's box "
                   "(default) or a square scaled from its landmarks, which frames faces alike across sources")
    p.add_argument("--jpeg-prob", type=float, help="share of training pairs re-encoded as JPEG (default 0.75)")
    p.add_argument("--sharpen-prob", type=float, help="share of training pairs sharpened alike (default 0)")
    p.add_argument("--noise-prob", type=float, help="share of training pairs given the same noise (default 0)")


EXPLAIN_BENCH_HELP = "score every explanation method of a detector on self-blended fakes"


def build_parser() -> argparse.ArgumentParser:
    """The whole command line, torch-free: every command parses (and ``--help`` lists) its options
    without loading torch or the explanation stack, so that it can refuse a bad setting at once
    instead of after seconds of imports."""
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    _train_parser(sub)
    _train_parser(sub, "distill", "distil a teacher model folder into a smaller student (--model)")
    d = sub.choices["distill"]
    d.add_argument("--teacher", help="the teacher's model folder (here or in --config)")
    d.add_argument("--temperature", type=float)
    d.add_argument("--alpha", type=float, help="weight of the teacher's soft targets (rest: labels)")
    d.add_argument("--distill-kind", choices=["kl", "mse"])
    d.add_argument("--distill-on", choices=["logits", "patches"])
    _train_parser(sub, "pretrain", "masked-image-modelling (MAE) pretraining of a ViT on real faces")
    sub.choices["pretrain"].add_argument("--mask-ratio", type=float)
    f = sub.add_parser("federated", help="federated fine-tuning (FedProx/FedAvg on Flower) in the simulation engine")
    f.add_argument("--config", required=True, help="YAML with the clients, rounds, mu and training settings")
    f.add_argument("--out", help="run folder (partitions, checkpoint, curves, metrics, the model folder in out/model)")
    f.add_argument("--cache", help="face-crop cache folder")
    f.add_argument("--rounds", type=int)
    f.add_argument("--local-steps", type=int)
    f.add_argument("--mu", type=float, help="FedProx's proximal weight (0: FedAvg)")
    f.add_argument("--partition", choices=["sources", "dirichlet", "pooled"],
                   help="how the clients' data is split (pooled: one client, the centralised baseline)")
    f.add_argument("--name", help="detector name written into the model folder")
    f.add_argument("--resume", action="store_true", help="continue after the last completed round in out/")
    e = sub.add_parser("evaluate", help="measure a detector folder on labelled faces")
    e.add_argument("--detector", required=True)
    e.add_argument("--data", default=DEFAULTS["data"])
    e.add_argument("--cache", default=DEFAULTS["cache"])
    e.add_argument("--out", default=None, help="folder for metrics.json and report.html (default: beside the model)")
    e.add_argument("--holdout-sources", nargs="*", default=None,
                   help="the sources the model never saw (default: from its training record)")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--videos-only", action="store_true",
                   help="only the labelled videos' verdicts and the pooling table (videos.json in --out, if given)")
    e.add_argument("--video-frames", type=int, default=32, help="frames sampled from each video (default 32)")
    e.add_argument("--real-photos", default=None, metavar="FOLDER",
                   help="real photographs for the false-alarm probe (default: photos/ beside the labels CSV, when "
                        "there is one; 'none' to skip it)")
    r = sub.add_parser("faces", help="write a model's validation (or training-side calibration) faces to an .npz")
    r.add_argument("--detector", required=True, help="a model folder with its training.json")
    r.add_argument("--data", default=DEFAULTS["data"])
    r.add_argument("--cache", default=DEFAULTS["cache"])
    r.add_argument("--split", choices=["validation", "training"], default="validation")
    r.add_argument("--limit", type=int, default=None, help="at most this many faces (validation: label-stratified)")
    r.add_argument("--out", required=True, help="the .npz to write")
    w = sub.add_parser("soup", help="interpolate the weights of two runs of one model (WiSE-FT) and recalibrate")
    w.add_argument("--first", required=True, help="a model folder (e.g. stage 1)")
    w.add_argument("--second", required=True, help="a model folder trained on from the first (e.g. stage 2)")
    w.add_argument("--weight", type=float, default=0.5, help="the first model's share, 0..1 (default 0.5)")
    w.add_argument("--out", required=True, help="run folder; the souped model goes to out/model")
    w.add_argument("--data", default=None, help="labels.csv (default: the second run's)")
    w.add_argument("--cache", default=None, help="face-crop cache (default: the second run's)")
    c = sub.add_parser("calibrate", help="calibrate a trained model folder again on its run's model-selection faces")
    c.add_argument("--detector", required=True, help="a trained model folder (with its training.json)")
    c.add_argument("--data", default=None, help="labels.csv (default: the run's)")
    c.add_argument("--cache", default=None, help="face-crop cache (default: the run's)")
    c.add_argument("--small-faces-only", action="store_true",
                   help="fit only the small faces' temperatures again; temperature, bias and threshold stay")
    _explain_bench_parser(sub)
    return parser


def _explain_bench_parser(sub) -> None:
    from forensics.catalog import FAITHFULNESS_STEPS, REMOVALS

    p = sub.add_parser("explain-bench", help=EXPLAIN_BENCH_HELP)
    p.add_argument("--detector", default="default", help="bundled name or model folder (default: default)")
    p.add_argument("--data", default="../shared/data/labels.csv")
    p.add_argument("--cache", default=".cache/crops256")
    p.add_argument("--limit", type=int, default=200, help="faces scored (default 200)")
    p.add_argument("--steps", type=int, default=FAITHFULNESS_STEPS,
                   help=f"points per deletion/insertion curve (default {FAITHFULNESS_STEPS})")
    p.add_argument("--removal", choices=sorted(REMOVALS), default="blur",
                   help="what a removed pixel becomes (default blur; impute and mean to compare)")
    p.add_argument("--road", type=int, default=32, help="faces ROAD is computed on (costlier; default 32)")
    p.add_argument("--sanity-blocks", type=int, default=2, help="blocks re-initialised for the sanity check")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-casia", action="store_true", help="skip the CASIA applicability check")
    p.add_argument("--json", dest="json_out", default=None, metavar="FILE")
    p.add_argument("--markdown", default=None, metavar="FILE")


def resolve_config(args: argparse.Namespace) -> dict:
    config = dict(DEFAULTS)
    if getattr(args, "config", None):
        loaded = read_config_file(args.config)
        config.update({k.replace("-", "_"): v for k, v in loaded.items()})
    config.update({k: v for k, v in vars(args).items() if v is not None and k not in ("command", "config")})
    unknown = set(config) - set(DEFAULTS)
    if unknown:
        raise SystemExit(f"unknown config keys: {sorted(unknown)}")
    try:
        checks.model_settings(config)
    except ValueError as exc:
        raise SystemExit(str(exc)) from None
    for key, named, what in (("train_caps", "source", "faces"), ("train_repeats", "source", "times"),
                             ("group_repeats", "group", "times")):
        counts = config.get(key)
        if counts is not None and not (isinstance(counts, dict) and all(
                isinstance(k, str) and isinstance(v, int) and not isinstance(v, bool) and v >= 1 for k, v in counts.items())):
            raise SystemExit(f"{key} must map {named} names to a number of {what} (1 or more), got {counts!r}")
    return config


def read_config_file(path: str) -> dict:
    """A YAML config's mapping, or one line naming what is wrong with the file."""
    try:
        loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise SystemExit(f"config {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SystemExit(f"config {path}: cannot be read ({exc})") from None
    except yaml.YAMLError as exc:
        raise SystemExit(f"config {path}: not valid YAML ({' '.join(str(exc).split())[:160]})") from None
    if not isinstance(loaded, dict):
        raise SystemExit(f"config {path}: expected a mapping of settings, got {type(loaded).__name__}")
    return loaded


def main(argv=None) -> int:
    words = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(words)
    command = shlex.join(["python", "-m", "training", *words])  # for the records
    from forensics.core.errors import ForensicsError

    try:
        return _dispatch(args, command)
    except ForensicsError as exc:  # a detector that cannot be loaded, unreadable media, ...: one line
        raise SystemExit(f"{args.command}: {exc}") from None


def _check_before_torch(args: argparse.Namespace) -> None:
    """What a command can refuse without torch (a setting out of range, a folder or file that is not
    there, a detector name that resolves to nothing), refused first: in under a second, where
    loading torch and the data would take seconds (``training.checks``)."""
    from forensics.hub_download import check_detector

    try:
        if args.command == "soup":
            checks.soup_inputs(args.first, args.second, args.weight)
        elif args.command == "calibrate":
            checks.calibration_record(args.detector, args.small_faces_only)
        elif args.command == "evaluate":
            if args.videos_only:
                checks.video_evaluation_inputs(args.data, args.video_frames)
            checks.real_photos_input(args.real_photos)
            args.detector = check_detector(args.detector)  # the folder it resolved to: a Hub id is fetched once
        elif args.command == "faces":
            checks.calibration_record(args.detector)  # its faces are found through its training record
            if args.limit is not None and args.limit < 1:
                raise ValueError(f"--limit must be at least 1, not {args.limit}")
        elif args.command == "explain-bench":
            checks.explain_bench_inputs(args.data, args.limit, args.steps, args.road)
            args.detector = check_detector(args.detector)
    except (FileNotFoundError, ValueError) as exc:  # a detector's ForensicsError goes to main's one line
        raise SystemExit(f"{args.command}: {exc}") from None


def _dispatch(args: argparse.Namespace, command: str) -> int:
    _check_before_torch(args)
    if args.command in ("pretrain", "train", "distill"):
        config = resolve_config(args)
        try:
            checks.training_data(config["data"])
            checks.photo_folders(config)
        except (FileNotFoundError, ValueError) as exc:
            raise SystemExit(f"{args.command}: {exc}") from None
    if args.command == "pretrain":
        from training.pipeline import run_pretraining

        try:
            print(json.dumps(run_pretraining(config), indent=2))
        except (FileNotFoundError, ValueError) as exc:
            raise SystemExit(f"pretrain: {exc}") from None
        return 0
    if args.command in ("train", "distill"):
        if args.command == "distill" and not config.get("teacher"):
            raise SystemExit("distill needs a teacher: --teacher MODEL_DIR or `teacher:` in --config")
        from training.pipeline import ConfigError, run_training

        try:
            result = run_training(config, command=command)
        except ConfigError as exc:
            raise SystemExit(f"{args.command}: {exc}") from None
        print(json.dumps({k: result[k] for k in ("model_dir", "best_auc")}, indent=2))
        return 0
    if args.command == "federated":
        from training.federated.settings import resolve_federated_config

        overrides = {k: v for k, v in vars(args).items() if k not in ("command", "config")}
        config = resolve_federated_config(args.config, {**overrides, "resume": args.resume or None})
        from training.federated.run import run_federated
        from training.pipeline import ConfigError

        try:
            record = run_federated(config, command=command)
        except ConfigError as exc:
            raise SystemExit(f"federated: {exc}") from None
        print(json.dumps({"model_dir": record["model_dir"], "rounds": [
            {"round": h["round"], "server_auc": h["server"].get("auc")} for h in record["federated"]["rounds_history"]]},
            indent=2))
        return 0
    if args.command == "soup":
        from training.soup import weight_soup

        try:
            result = weight_soup(args.first, args.second, args.weight, args.out, args.data, args.cache, command=command)
        except (FileNotFoundError, ValueError) as exc:
            raise SystemExit(f"soup: {exc}") from None
        print(json.dumps(result, indent=2))
        return 0
    if args.command == "calibrate":
        from training.soup import recalibrate

        try:
            result = recalibrate(args.detector, args.data, args.cache, command=command,
                                 small_faces_only=args.small_faces_only)
        except (FileNotFoundError, ValueError) as exc:
            raise SystemExit(f"calibrate: {exc}") from None
        print(json.dumps(result, indent=2))
        return 0
    if args.command == "evaluate":
        from training.evaluate import run_evaluation, run_video_evaluation

        if args.videos_only:
            try:
                videos = run_video_evaluation(args.detector, args.data, args.out, args.video_frames)
            except (FileNotFoundError, ValueError) as exc:
                raise SystemExit(f"evaluate: {exc}") from None
            print(json.dumps({"roc_auc": videos.get("roc_auc"), "aggregation_auc": videos.get("aggregation_auc"),
                              "videos": {r["video"]: r["fake_probability"] for r in videos.get("videos", [])},
                              "app_sampling": {**(videos.get("app_sampling") or {}),
                                               "videos": {r["video"]: r["app"] for r in videos.get("videos", [])}}},
                             indent=2))
            return 0
        metrics = run_evaluation(args.detector, args.data, args.cache, args.out, args.holdout_sources, args.seed,
                                 photos=args.real_photos)
        print(json.dumps(metrics["summary"], indent=2))
        return 0
    if args.command == "faces":
        from training.evaluate import save_record_faces

        print(save_record_faces(args.detector, args.data, args.cache, args.out, args.split, args.limit))
        return 0
    if args.command == "explain-bench":
        from training import explain_bench

        return explain_bench.run(args)
    return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
