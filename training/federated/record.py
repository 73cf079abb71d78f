"""What a federated run leaves: the model folder in the project's layout (``config.json``,
``model.safetensors``, the card with the federated record), measured as centrally trained models
are (``python -m training evaluate``: calibration, tuned threshold, per-source and robustness
figures), plus ``federated_metrics.json`` and the per-round curves (``rounds.html``)."""

from __future__ import annotations

from pathlib import Path
from torch import nn

from forensics.core import write_atomic
from forensics.detectors.timm_family import save_timm_detector
from training.data import face_counts
from training.federated.partitions import DATA_FILE, Partitions
from training.pipeline import detector_info, relative_to_data

METRICS_FILE = "federated_metrics.json"
CURVES_FILE = "rounds.html"


def federated_summary(config: dict, partitions: Partitions, history: list[dict]) -> dict:
    """The federated part of the training record: strategy, clients and their data, rounds."""
    clients = []
    for spec, faces in zip(partitions.client_specs, partitions.clients):
        clients.append({"name": spec["name"], "spec": spec,
                        **({"train": face_counts(faces.train), "held_back": len(faces.val)} if faces else
                           {"train": "prepared on its own node from its data path"})})
    return {
        "framework": "Flower (flwr)", "strategy": "FedAvg" if float(config["mu"]) == 0 else "FedProx",
        "mu": float(config["mu"]), "rounds": int(config["rounds"]), "local_steps": int(config["local_steps"]),
        "fraction_train": float(config["fraction_train"]), "min_train_clients": int(config["min_train_clients"]),
        "partition": config["partition"], **({"dirichlet_alpha": config["dirichlet_alpha"]}
                                             if config["partition"] == "dirichlet" else {}),
        "clients": clients, "server_evaluation": face_counts(partitions.server_eval), "rounds_history": history,
    }


def write_federated_model(model: nn.Module, arch: str, model_args: dict, config: dict, partitions: Partitions,
                          history: list[dict], command: str | None = None) -> dict:
    """Write ``out/model`` (the final global model), its record and card, the metrics JSON and the
    curves; measure the model when ``config['evaluate']``. Returns the record."""
    out = Path(config["out"])
    model_dir = out / "model"
    data_csv = str(out / DATA_FILE)
    # The record's data is the run's own sample list: `python -m training evaluate` finds the same faces.
    record_config = {**config, "data": data_csv, "source_data": config["data"],
                     "val_fraction": config["server_val_fraction"]}
    save_timm_detector(model, model_dir, arch, detector_info(record_config, "trained federated (Flower)"),
                       model_args=model_args)
    rounds = [h for h in history if h["round"] > 0]
    train_faces = [f for c in partitions.clients if c for f in c.train]
    last = rounds[-1]["server"] if rounds else {}
    record = {
        "config": record_config,
        **({"command": command} if command else {}),
        "counts": {"train": face_counts(train_faces), "validation": face_counts(partitions.server_eval)},
        "validation_images": sorted(relative_to_data(f.image_path, data_csv) for f in partitions.server_eval),
        "validation_note": "the server's held-out faces (groups of every source kept back before the clients' "
                           "parts were drawn, and every held-out source); the final global model is the last round's",
        "federated": federated_summary(config, partitions, history),
        # The central record's shape, a round for an epoch: the card and report read it as they read a central run.
        "history": epoch_history(history),
        "best_epoch": {"epoch": rounds[-1]["round"] if rounds else 0,
                       "val": {"n": last.get("images"), "roc_auc": last.get("auc"), "f1": last.get("f1"),
                               "accuracy": last.get("accuracy")}},
    }
    write_atomic(model_dir / "training.json", record)
    write_atomic(out / METRICS_FILE, {"rounds": history, "federated": {
        k: v for k, v in record["federated"].items() if k != "rounds_history"}})
    from forensics.render.figures import federated_rounds_figure

    write_atomic(out / CURVES_FILE, federated_rounds_figure(history).to_html(include_plotlyjs=True))
    if config.get("evaluate", True):
        from training.evaluate import run_evaluation

        run_evaluation(str(model_dir), data_csv, config["cache"])
    else:
        from forensics.detectors.card import write_card

        write_card(model_dir)
    return {**record, "model_dir": str(model_dir)}


def epoch_history(history: list[dict]) -> list[dict]:
    """Rounds in the training loop's ``history.json`` shape (``epoch``, ``step``, ``train_loss``, ``val``)."""
    return [{"epoch": h["round"], "step": h["round"], "train_loss": _mean_loss(h),
             "val": {k: h["server"].get(key) for k, key in (("roc_auc", "auc"), ("f1", "f1"), ("accuracy", "accuracy"),
                                                             ("n", "images"))}}
            for h in history if h["round"] > 0]


def _mean_loss(entry: dict) -> float | None:
    losses = [c["train-loss"] for c in entry.get("clients") or [] if c.get("train-loss") is not None]
    return sum(losses) / len(losses) if losses else None
