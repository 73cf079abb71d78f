"""The global model and the run's history after each completed round, written whole or not at all:
a server that stops (crash, restart, a round below the minimum of clients) resumes after the
last round that finished, as ``training.loop`` resumes after the last epoch."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from forensics.core import atomic_path
from training.federated.task import load_state


class RoundCheckpoint:
    def __init__(self, folder: str | Path):
        self.folder = Path(folder)

    def save(self, model: nn.Module, state: dict) -> None:
        with atomic_path(self.folder) as tmp:
            tmp.mkdir()
            save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(tmp / "model.safetensors"))
            (tmp / "state.json").write_text(json.dumps(state, default=str))

    def load_weights(self) -> dict[str, torch.Tensor]:
        return load_file(str(self.folder / "model.safetensors"))

    def load(self, model: nn.Module) -> dict | None:
        """The saved state (``round``, ``history``) with the model set to that round's weights; None
        when there is no checkpoint yet."""
        if not (self.folder / "state.json").is_file():
            return None
        load_state(model, self.load_weights())
        return json.loads((self.folder / "state.json").read_text())
