"""The ServerApp: FedProx over the sites (``mu = 0`` is FedAvg), a number of rounds, the fraction
and minimum of clients per round, the global model scored on the server's held-out faces after
every round, a checkpoint after every completed round (a restarted run resumes after the last one),
and at the end the model folder (``training.federated.record``).

In the simulation engine the run's settings come from ``python -m training federated``; under the
deployment engine from the run config (``config``: the YAML file on the server's machine, ``out``,
``resume``; see ``training/federated/flower-app/pyproject.toml``).
"""

from __future__ import annotations

import json
from logging import WARNING
from pathlib import Path
from typing import Iterable

import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedProx
from flwr.supercore import log
from tqdm import tqdm

from forensics.core import write_atomic
from training.federated.checkpoint import RoundCheckpoint
from training.federated.partitions import PARTITIONS_FILE, Partitions, prepare_partitions
from training.federated.record import epoch_history, write_federated_model
from training.federated.settings import resolve_federated_config
from training.federated.task import build_detector, load_state, score_faces

PATH_KEYS = ("out", "cache", "data", "init_from")


class RoundFedProx(FedProx):
    """FedProx that numbers rounds on from a resumed checkpoint, keeps what each round's clients
    reported (failures included), and refuses a round with fewer successful clients than
    ``min_train_nodes``: a site that fails or drops out costs its update, not the run."""

    def __init__(self, *, round_offset: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.round_offset = round_offset
        self.rounds: dict[int, dict] = {}

    def configure_train(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid):
        messages = list(super().configure_train(server_round + self.round_offset, arrays, config, grid))
        self.rounds[server_round + self.round_offset] = {"clients_sampled": len(messages)}
        return messages

    def configure_evaluate(self, server_round: int, arrays: ArrayRecord, config: ConfigRecord, grid: Grid):
        return super().configure_evaluate(server_round + self.round_offset, arrays, config, grid)

    def aggregate_train(self, server_round: int, replies: Iterable[Message]):
        replies = list(replies)
        ok = [m for m in replies if not m.has_error()]
        failed = [f"node {m.metadata.src_node_id}: {m.error.reason}" for m in replies if m.has_error()]
        number = server_round + self.round_offset
        entry = self.rounds.setdefault(number, {})
        # A client that raised replies with an error; one that dropped out does not reply in time.
        missing = max(0, entry.get("clients_sampled", len(replies)) - len(replies))
        failed += ["no reply within the round's timeout"] * missing
        entry.update({"clients_ok": len(ok), "clients_failed": len(failed), "failures": failed,
                      "clients": [{"client": _client_name(m), **dict(m.content["metrics"])} for m in ok]})
        if len(ok) < self.min_train_nodes:
            raise RuntimeError(f"round {number}: {len(ok)} client(s) answered, fewer than min_train_clients "
                               f"{self.min_train_nodes} ({'; '.join(failed) or 'no client sampled'}); "
                               "restart with --resume to continue from the last completed round")
        if failed:
            log(WARNING, "round %s: %s client(s) failed or dropped out, aggregating the other %s",
                number, len(failed), len(ok))
        return super().aggregate_train(server_round, ok)

    def aggregate_evaluate(self, server_round: int, replies: Iterable[Message]):
        replies = list(replies)
        metrics = super().aggregate_evaluate(server_round, replies)
        if metrics is not None:
            self.rounds.setdefault(server_round + self.round_offset, {})["client_evaluation"] = dict(metrics)
        return metrics


def _client_name(msg: Message) -> str:
    record = msg.content.config_records.get("client")
    return str(record["name"]) if record and "name" in record else f"node {msg.metadata.src_node_id}"


def absolute_paths(config: dict) -> dict:
    """Paths resolved here, so that clients in other processes (or working folders) read the same files."""
    out = dict(config)
    for key in PATH_KEYS:
        if out.get(key):
            out[key] = str(Path(out[key]).resolve())
    out["clients"] = [{**c, **{k: str(Path(c[k]).resolve()) for k in ("data", "videos") if c.get(k)}}
                      for c in config["clients"]]
    return out


def run_server(grid: Grid, config: dict, command: str | None = None) -> dict:
    """The whole federated run on the server side; returns the run's record."""
    config = absolute_paths(config)
    out = Path(config["out"])
    partitions_path = out / PARTITIONS_FILE
    partitions = Partitions.load(partitions_path) if partitions_path.is_file() else prepare_partitions(config, out)
    torch.manual_seed(int(config["seed"]))  # the same starting model for every strategy compared
    model, arch, model_args = build_detector(config)
    checkpoint = RoundCheckpoint(out / "checkpoint")
    state = checkpoint.load(model) if config.get("resume") else None
    done = state["round"] if state else 0
    history: list[dict] = state["history"] if state else []
    rounds = int(config["rounds"])
    strategy = RoundFedProx(
        round_offset=done, proximal_mu=float(config["mu"]), fraction_train=float(config["fraction_train"]),
        fraction_evaluate=float(config["fraction_evaluate"]), min_train_nodes=int(config["min_train_clients"]),
        min_evaluate_nodes=int(config["min_train_clients"]) if float(config["fraction_evaluate"]) else 0,
        min_available_nodes=int(config["min_available_clients"]))
    holdout = config.get("holdout_sources") or ()
    bar = tqdm(total=rounds, initial=done, desc="federated rounds", unit="round")

    def evaluate(server_round: int, arrays: ArrayRecord) -> MetricRecord | None:
        number = server_round + done
        if server_round == 0 and done:  # the resumed model was scored when its round ended
            return None
        load_state(model, arrays.to_torch_state_dict())
        scores = score_faces(model, partitions.server_eval, config, holdout)
        entry = {"round": number, "server": scores, **strategy.rounds.get(number, {})}
        history.append(entry)
        if number:
            checkpoint.save(model, {"round": number, "history": history})
            write_atomic(out / "history.json", epoch_history(history))  # what a job's curves read, a round an epoch
            bar.update(1)
            bar.set_postfix(auc=f"{scores['auc']:.3f}" if scores["auc"] is not None else "n/a")
        return MetricRecord({k: float(v) for k, v in scores.items() if isinstance(v, (int, float))})

    if done < rounds:
        train_config = ConfigRecord({"local-steps": int(config["local_steps"]),
                                     "settings": json.dumps(config, default=str)})
        strategy.start(grid, ArrayRecord(model.state_dict()), num_rounds=rounds - done,
                       timeout=float(config["round_timeout"]), train_config=train_config,
                       evaluate_config=ConfigRecord({"settings": json.dumps(config, default=str)}),
                       evaluate_fn=evaluate)
    bar.close()
    if done >= rounds:
        load_state(model, checkpoint.load_weights())
    return write_federated_model(model, arch, model_args, config, partitions, history, command=command)


def server_app(config: dict | None = None, command: str | None = None) -> ServerApp:
    """A ServerApp for ``config``; without one, for the run config's ``config`` file (deployment)."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        settings = config
        if settings is None:
            run_config = dict(context.run_config)
            if not run_config.get("config"):
                raise ValueError("the run config names no federated YAML: flwr run ... --run-config "
                                 "\"config='/path/on/the/server/federated.yaml'\"")
            overrides = {k: run_config[k] for k in ("out", "resume") if k in run_config and run_config[k] != ""}
            settings = resolve_federated_config(str(run_config["config"]), overrides)
        run_server(grid, settings, command)

    return app


app = server_app()
