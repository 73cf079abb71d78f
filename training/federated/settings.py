"""A federated run's settings: the training core's keys (``training.cli.DEFAULTS``) plus the
federation's own, read from YAML with the command line on top, as ``python -m training train`` does."""

from __future__ import annotations

from pathlib import Path

from training import checks

FEDERATED_DEFAULTS = {
    "out": "runs/federated",
    "rounds": 3,
    "local_steps": 20,  # optimiser steps per client per round (the budget compared across strategies)
    "mu": 0.01,  # FedProx's proximal weight; 0 is FedAvg
    "fraction_train": 1.0,
    "fraction_evaluate": 0.0,  # > 0: sampled clients also score the global model on their own held-back faces
    "min_train_clients": 2,  # a round whose successful replies fall below this stops the run (resume continues)
    "min_available_clients": 2,
    "round_timeout": 900,  # seconds the server waits for a round's replies; later ones count as dropped
    "clients": [],  # one entry per site: {name, sources | data | videos, ...} (training.federated.partitions)
    "partition": "sources",  # sources | dirichlet | pooled (one client holding everything: the central baseline)
    "dirichlet_alpha": 0.5,
    "max_faces_per_source": None,  # cap each source (by groups, seeded) before cropping
    "frames_per_video": 8,
    "server_val_fraction": 0.15,  # groups of every source held back for the server's evaluation
    "local_val_fraction": 0.15,  # each client's own held-back faces (its local AUC)
    "client_threads": 1,  # torch threads per client process
    "client_cpus": 1,  # CPUs the simulation engine reserves per client (how many train at once)
    "evaluate": True,  # measure the final model as centrally trained ones are (metrics.json, card)
}


def resolve_federated_config(path: str | Path | None, overrides: dict | None = None) -> dict:
    """Defaults <- YAML file <- ``overrides`` (None values ignored); unknown keys are an error."""
    from training.cli import DEFAULTS, read_config_file

    config = {**DEFAULTS, **FEDERATED_DEFAULTS}
    if path:
        loaded = read_config_file(str(path))
        config.update({k.replace("-", "_"): v for k, v in loaded.items()})
    config.update({k.replace("-", "_"): v for k, v in (overrides or {}).items() if v is not None})
    unknown = set(config) - set(DEFAULTS) - set(FEDERATED_DEFAULTS)
    if unknown:
        raise SystemExit(f"unknown config keys: {sorted(unknown)}")
    check_federated_config(config)
    return config


def check_federated_config(config: dict) -> None:
    """One clear line for each setting a run cannot start with."""
    try:
        checks.model_settings(config)
    except ValueError as exc:
        raise SystemExit(str(exc)) from None
    clients = config["clients"]
    if not isinstance(clients, list) or not clients:
        raise SystemExit("clients: give at least one client (name and sources, data or videos)")
    names = [c.get("name") if isinstance(c, dict) else None for c in clients]
    if any(not n for n in names) or len(set(names)) != len(names):
        raise SystemExit("clients: every client needs a unique name")
    for client in clients:
        if not any(client.get(k) for k in ("sources", "data", "videos")) and config["partition"] != "dirichlet":
            raise SystemExit(f"client {client['name']}: give sources, data or videos")
    if config["partition"] not in ("sources", "dirichlet", "pooled"):
        raise SystemExit(f"partition must be sources, dirichlet or pooled, got {config['partition']!r}")
    if int(config["rounds"]) < 1 or int(config["local_steps"]) < 1:
        raise SystemExit("rounds and local_steps must be at least 1")
    if float(config["mu"]) < 0:
        raise SystemExit(f"mu must be >= 0, got {config['mu']}")
    if not 0 < float(config["fraction_train"]) <= 1:
        raise SystemExit(f"fraction_train must be in (0, 1], got {config['fraction_train']}")
    if int(config["min_train_clients"]) < 1:
        raise SystemExit("min_train_clients must be at least 1")
