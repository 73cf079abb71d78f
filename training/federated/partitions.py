"""Which site holds which faces. Sites differ the way newsrooms and platforms do: one holds in-the-wild
photo crops, one aligned portraits (and the only generated faces), one frames of talking-head
footage. Each makes its pseudo-fakes by self-blending its own reals (``training.datasets``), so no
site ever needs another's media.

A client entry in the config (``clients:``) gives its ``name`` and one or more of:

- ``sources``: sources of the shared labels CSV (``data``) it holds (a source named by two clients
  is split between them, by groups);
- ``videos``: a folder of real clips whose sampled frames it holds (grouped by clip: frames of one
  clip never straddle a split);
- ``data``: its own labels CSV or ImageFolder tree, read and cropped on its own node (a site's data
  path; in deployment a node sets it with ``--node-config data=...``).

``partition: pooled`` gives all of the clients' shared faces to one client: centralised training on
the same data and the same server evaluation, the baseline federated runs are compared with.
``partition: dirichlet`` instead spreads every source's groups over the clients with proportions
drawn from Dirichlet(``dirichlet_alpha``): small alpha, each client mostly one source.

Before any of that, ``server_val_fraction`` of every source's groups (and all of
``holdout_sources``) is kept back for the server's evaluation after each round.
"""

from __future__ import annotations

import csv
import json
import random
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
from tqdm import tqdm

from forensics.core import atomic_path, write_atomic
from training.data import CachedFace, Sample, grouped_split
from training.pipeline import cached_faces, load_samples

VIDEO_EXTENSIONS = {".mp4", ".webm", ".avi", ".mov", ".mkv"}
PARTITIONS_FILE = "partitions.json"
DATA_FILE = "data.csv"


@dataclass
class ClientFaces:
    """One client's faces: what it trains on and what it keeps back to score the global model."""

    name: str
    train: list[CachedFace]
    val: list[CachedFace] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"name": self.name, "train": [asdict(f) for f in self.train], "val": [asdict(f) for f in self.val]}

    @classmethod
    def from_dict(cls, data: dict) -> "ClientFaces":
        return cls(data["name"], [CachedFace(**f) for f in data["train"]], [CachedFace(**f) for f in data["val"]])


@dataclass
class Partitions:
    """Every prepared client (``None`` for a client that prepares its own data on its node) and the
    server's evaluation faces."""

    clients: list[ClientFaces | None]
    client_specs: list[dict]
    server_eval: list[CachedFace]

    def save(self, path: Path) -> None:
        write_atomic(path, json.dumps({
            "client_specs": self.client_specs,
            "clients": [c.to_dict() if c is not None else None for c in self.clients],
            "server_eval": [asdict(f) for f in self.server_eval],
        }))

    @classmethod
    def load(cls, path: str | Path) -> "Partitions":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no partitions file (prepare the run first)")
        data = json.loads(path.read_text())
        return cls([ClientFaces.from_dict(c) if c else None for c in data["clients"]], data["client_specs"],
                   [CachedFace(**f) for f in data["server_eval"]])


def video_frame_samples(folder: str | Path, frames_per_video: int, frames_dir: str | Path,
                        source: str = "talking-head clips") -> list[Sample]:
    """Frames sampled evenly from every clip in ``folder``, written once as PNGs under ``frames_dir``;
    each clip is one group (its frames are near duplicates: they never straddle a split)."""
    from forensics.media import load_video

    folder, frames_dir = Path(folder), Path(frames_dir)
    clips = sorted(p for p in folder.iterdir() if p.suffix.lower() in VIDEO_EXTENSIONS) if folder.is_dir() else []
    if not clips:
        raise FileNotFoundError(f"{folder}: no video clips")
    frames_dir.mkdir(parents=True, exist_ok=True)
    samples = []
    for clip in tqdm(clips, desc="clip frames", unit="clip"):
        done = sorted(frames_dir.glob(f"{clip.stem}__f*_of{frames_per_video}.png"))
        if not done:
            video = load_video(clip, frames=frames_per_video)
            for index, frame in zip(video.indices, video.frames):
                path = frames_dir / f"{clip.stem}__f{index:05d}_of{frames_per_video}.png"
                cv2.imwrite(str(path), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
            done = sorted(frames_dir.glob(f"{clip.stem}__f*_of{frames_per_video}.png"))
        samples += [Sample(str(p.resolve()), "real", source, clip.name) for p in done]
    return samples


def cap_by_groups(samples: Sequence[Sample], most: int | None, seed: int) -> list[Sample]:
    """At most ``most`` samples per source, whole groups drawn at random (seeded)."""
    if not most:
        return list(samples)
    by_source: dict[str, dict[str, list[Sample]]] = defaultdict(lambda: defaultdict(list))
    for s in samples:
        by_source[s.source][s.group].append(s)
    out = []
    for source in sorted(by_source):
        groups = sorted(by_source[source])
        random.Random(f"{seed}|{source}").shuffle(groups)
        taken = []
        for g in groups:
            if len(taken) >= most:
                break
            taken += by_source[source][g]
        out += taken
    return out


def _spread_groups(faces: Sequence[CachedFace], shares: np.ndarray, rng: np.random.Generator) -> list[list[CachedFace]]:
    """Split faces group by group into len(shares) parts of about those shares."""
    groups: dict[str, list[CachedFace]] = defaultdict(list)
    for f in faces:
        groups[f.group].append(f)
    keys = sorted(groups)
    rng.shuffle(keys)
    bounds = np.cumsum(shares / shares.sum()) * len(keys)
    parts: list[list[CachedFace]] = [[] for _ in shares]
    for i, key in enumerate(keys):
        parts[int(np.searchsorted(bounds, i, side="right"))].extend(groups[key])
    return parts


def assign_by_source(pool: Sequence[CachedFace], specs: Sequence[dict], video_source: str) -> list[list[CachedFace]]:
    """Each client the pool's faces of its sources (a shared source split evenly by groups)."""
    holders: dict[str, list[int]] = defaultdict(list)
    for i, spec in enumerate(specs):
        for source in list(spec.get("sources") or []) + ([video_source] if spec.get("videos") else []):
            holders[source].append(i)
    out: list[list[CachedFace]] = [[] for _ in specs]
    rng = np.random.default_rng(0)
    for source, owners in holders.items():
        faces = [f for f in pool if f.source == source]
        for owner, part in zip(owners, _spread_groups(faces, np.ones(len(owners)), rng)):
            out[owner].extend(part)
    return out


def assign_dirichlet(pool: Sequence[CachedFace], clients: int, alpha: float, seed: int) -> list[list[CachedFace]]:
    """Every source's groups spread over the clients in Dirichlet(alpha) proportions."""
    rng = np.random.default_rng(seed)
    out: list[list[CachedFace]] = [[] for _ in range(clients)]
    for source in sorted({f.source for f in pool}):
        shares = rng.dirichlet(np.full(clients, float(alpha)))
        for owner, part in enumerate(_spread_groups([f for f in pool if f.source == source], shares, rng)):
            out[owner].extend(part)
    return out


def split_client(name: str, faces: Sequence[CachedFace], config: dict, index: int) -> ClientFaces:
    """A client's own grouped split: training faces and held-back faces for its local AUC."""
    train, val = grouped_split(faces, float(config["local_val_fraction"]), int(config["seed"]) + 1 + index)
    if not train:  # too few groups to hold any back
        train, val = list(val), []
    return ClientFaces(name, train, val)


def site_faces(name: str, data: str | Path, config: dict, index: int = 0) -> ClientFaces:
    """A site's own data (labels CSV or ImageFolder tree), cropped on its node with the shared crop cache."""
    if not Path(data).exists():
        raise FileNotFoundError(f"client {name}: data {data} does not exist on this node")
    samples = cap_by_groups(load_samples(data, config.get("label_map")), config.get("max_faces_per_source"),
                            int(config["seed"]))
    faces = cached_faces(config, samples)
    if not faces:
        raise ValueError(f"client {name}: no face found in {data}")
    return split_client(name, faces, config, index)


def prepare_partitions(config: dict, out: Path) -> Partitions:
    """Crop the shared data once, keep the server's evaluation faces back, give each client its
    part, and write ``partitions.json`` and ``data.csv`` (every sample used: the record's data, so that
    ``python -m training evaluate`` finds the same faces) under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    specs = [dict(c) for c in config["clients"]]
    video_source = "talking-head clips"
    dirichlet = config["partition"] == "dirichlet"
    wanted = {s for spec in specs for s in spec.get("sources") or []} | set(config.get("holdout_sources") or [])
    shared = [s for s in load_samples(config["data"], config.get("label_map")) if dirichlet or s.source in wanted]
    samples = cap_by_groups(shared, config.get("max_faces_per_source"), int(config["seed"]))
    for spec in specs:
        if spec.get("videos"):
            frames = video_frame_samples(spec["videos"], int(spec.get("frames_per_video", config["frames_per_video"])),
                                         Path(config["cache"]) / "frames", video_source)
            samples += [s for s in frames if s.path not in {x.path for x in samples}]
    _write_data_csv(out / DATA_FILE, samples)
    faces = cached_faces(config, samples)
    pool, server_eval = grouped_split(faces, float(config["server_val_fraction"]), int(config["seed"]),
                                      config.get("holdout_sources") or ())
    shared_specs = [i for i, spec in enumerate(specs) if not spec.get("data")]
    if config["partition"] == "pooled":
        if len(shared_specs) != len(specs):
            raise SystemExit("partition pooled: clients with their own data path cannot be pooled")
        parts = assign_by_source(pool, specs, video_source)
        specs = [{"name": "pooled", "pooled": [spec["name"] for spec in specs]}]
        shared_specs, parts = [0], [[f for part in parts for f in part]]
    elif dirichlet:
        parts = assign_dirichlet(pool, len(shared_specs), float(config["dirichlet_alpha"]), int(config["seed"]))
    else:
        parts = assign_by_source(pool, [specs[i] for i in shared_specs], video_source)
    clients: list[ClientFaces | None] = [None] * len(specs)
    for i, part in zip(shared_specs, parts):
        if not part:
            raise SystemExit(f"client {specs[i]['name']}: no faces (check its sources against {config['data']})")
        clients[i] = split_client(specs[i]["name"], part, config, i)
    partitions = Partitions(clients, specs, server_eval)
    partitions.save(out / PARTITIONS_FILE)
    return partitions


def _write_data_csv(path: Path, samples: Sequence[Sample]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "label", "source", "group"])
        for s in samples:
            writer.writerow([str(Path(s.path).resolve()), s.label, s.source, s.group])
