"""The ClientApp: one site. It receives the global model and the run's settings from the server,
fine-tunes on its own faces with FedProx's proximal term (``proximal-mu``, sent by
``flwr.serverapp.strategy.FedProx``), and sends back only weights and metrics: never a face.

Which faces are its own comes from its node: ``data=PATH`` (the site's labels CSV or image tree,
cropped here; ``work=PATH`` where its crops and logs go), or ``partition-id=N`` (the N-th client of a prepared run: the simulation engine sets
it, a SuperNode sets it with ``--node-config``), read from ``partitions=PATH`` or the run's folder.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch
from flwr.app import ArrayRecord, ConfigRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from training.federated.partitions import PARTITIONS_FILE, ClientFaces, Partitions, site_faces
from training.federated.task import build_detector, fit_local, load_state, score_faces

app = ClientApp()
_FACES: dict[tuple, ClientFaces] = {}  # a node's faces, read once per process (simulation reuses its actors)


def settings_of(msg: Message) -> dict:
    """The run's settings, as the server sent them (one source of truth for every node)."""
    return json.loads(str(msg.content["config"]["settings"]))


def site_folder(context: Context, config: dict) -> Path:
    """Where this node keeps its crops and training logs: ``work=`` of its node config; a site with its
    own data path (another machine) uses its temporary folder, a prepared partition the run folder."""
    node = dict(context.node_config)
    if node.get("work"):
        return Path(str(node["work"]))
    return Path(tempfile.gettempdir()) / "forensics-federated" if node.get("data") else Path(config["out"])


def node_faces(context: Context, config: dict) -> ClientFaces:
    """This node's faces: its own data path, or its prepared partition."""
    node = dict(context.node_config)
    if node.get("data"):
        key = ("data", str(node["data"]))
        if key not in _FACES:
            name = str(node.get("name") or Path(str(node["data"])).stem)
            local = {**config, "cache": str(site_folder(context, config) / "crops")}
            _FACES[key] = site_faces(name, str(node["data"]), local, int(node.get("partition-id", 0)))
        return _FACES[key]
    index = int(node["partition-id"])
    path = Path(str(node.get("partitions") or Path(config["out"]) / PARTITIONS_FILE))
    key = ("partition", str(path.resolve()), index)
    if key not in _FACES:
        partitions = Partitions.load(path)
        if index >= len(partitions.clients):
            raise ValueError(f"partition-id {index}: the run has {len(partitions.clients)} clients")
        faces = partitions.clients[index]
        if faces is None:  # a client with its own data path, prepared here on its node
            spec = partitions.client_specs[index]
            faces = site_faces(spec["name"], spec["data"], config, index)
        _FACES[key] = faces
    return _FACES[key]


def _model(msg: Message, config: dict) -> torch.nn.Module:
    torch.set_num_threads(max(1, int(config.get("client_threads", 1))))
    model, _, _ = build_detector({**config, "pretrained": False, "init_from": None})  # weights come next
    return load_state(model, msg.content["arrays"].to_torch_state_dict())


@app.train()
def train(msg: Message, context: Context) -> Message:
    """Local fine-tuning for the round's budget of steps; replies with the new weights."""
    config = settings_of(msg)
    faces = node_faces(context, config)
    model = _model(msg, config)
    server_round = int(msg.content["config"]["server-round"])
    work = site_folder(context, config) / "clients" / f"{faces.name}-{os.getpid()}"
    metrics = fit_local(model, faces.train, faces.val, config, server_round,
                        float(msg.content["config"]["proximal-mu"]), int(msg.content["config"]["local-steps"]), work)
    metrics["num-examples"] = len(faces.train)
    content = RecordDict({"arrays": ArrayRecord(model.state_dict()), "metrics": MetricRecord(metrics),
                          "client": ConfigRecord({"name": faces.name})})
    return Message(content=content, reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    """The global model scored on this site's held-back faces (its own view of how it does)."""
    config = settings_of(msg)
    faces = node_faces(context, config)
    held = faces.val or faces.train
    scores = score_faces(_model(msg, config), held, config)
    metrics = {"local-auc": float(scores["auc"] or 0.0), "local-loss": scores["loss"], "num-examples": len(held)}
    return Message(content=RecordDict({"metrics": MetricRecord(metrics)}), reply_to=msg)
