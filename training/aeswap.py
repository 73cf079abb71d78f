"""The original "deepfakes" face swap, small enough for this CPU: one shared encoder and one decoder
per identity (the layout of Faceswap and DeepFaceLab), trained on aligned faces of real
talking-head identities. A face is swapped by encoding it and decoding it with another identity's
decoder; the decoded face is warped back, colour-matched and blended in through a face mask as the
tools do (``training.swap.paste``). Beside the graphics swaps of ``training.swap`` it gives what
learnt swaps carry: a face re-synthesised by a generator's upsampling layers, at a lower
resolution than its frame, with its textures and blur.

Only faces of the training split are learnt (the run's own split), so nothing validated is seen.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn
from tqdm import tqdm

from forensics.core import write_atomic
from training.data import CachedFace, load_crop
from training.sbi import TEMPLATE
from training.swap import paste

SIZE = 64  # the autoencoder's aligned face, in pixels (the 64-128; 64 fits this CPU)
# The 5-point template in the aligned frame, with room around the face (the template spans ~60%).
ALIGNED = (TEMPLATE - 56.0) * (SIZE / 112.0) * 0.85 + SIZE / 2 + np.array([0.0, SIZE * 0.04], np.float32)


def _conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 5, 2, 2), nn.LeakyReLU(0.1))


def _upscale(cin: int, cout: int) -> nn.Sequential:  # conv then pixel shuffle, as the swap tools upsample
    return nn.Sequential(nn.Conv2d(cin, cout * 4, 3, 1, 1), nn.LeakyReLU(0.1), nn.PixelShuffle(2))


class SwapAutoencoder(nn.Module):
    """Shared encoder (64 -> 4 px, a dense bottleneck) and ``identities`` decoders (8 -> 64 px)."""

    def __init__(self, identities: int, width: int = 32, latent: int = 256):
        super().__init__()
        w, side = width, SIZE // 16
        self.side, self.width = side, w
        self.encoder = nn.Sequential(_conv(3, w), _conv(w, 2 * w), _conv(2 * w, 4 * w), _conv(4 * w, 8 * w),
                                     nn.Flatten(), nn.Linear(8 * w * side * side, latent),
                                     nn.Linear(latent, 4 * w * side * side))
        self.shared_up = _upscale(4 * w, 4 * w)
        self.decoders = nn.ModuleList(
            nn.Sequential(_upscale(4 * w, 2 * w), _upscale(2 * w, w), _upscale(w, w // 2),
                          nn.Conv2d(w // 2, 3, 5, 1, 2), nn.Sigmoid()) for _ in range(identities))

    def forward(self, images: torch.Tensor, identity: int) -> torch.Tensor:
        """Images in [0, 1], (B, 3, SIZE, SIZE), decoded as ``identity``."""
        code = self.encoder(images).view(-1, 4 * self.width, self.side, self.side)
        return self.decoders[identity](self.shared_up(code))


def align(image: np.ndarray, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The face aligned to the autoencoder's frame by its 5 landmarks: (aligned RGB uint8, 2x3 matrix)."""
    matrix, _ = cv2.estimateAffinePartial2D(np.asarray(landmarks, np.float32), ALIGNED, method=cv2.LMEDS)
    if matrix is None:
        raise ValueError("cannot fit these landmarks to the autoencoder's face template")
    return cv2.warpAffine(image, matrix, (SIZE, SIZE), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REFLECT), matrix


def _random_warp(batch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The swap tools' training augmentation: a small random rotation, scale and shift, and flips."""
    out = np.empty_like(batch)
    for i, face in enumerate(batch):
        matrix = cv2.getRotationMatrix2D((SIZE / 2, SIZE / 2), rng.uniform(-8, 8), rng.uniform(0.95, 1.05))
        matrix[:, 2] += rng.uniform(-0.04, 0.04, 2) * SIZE
        face = cv2.warpAffine(face, matrix, (SIZE, SIZE), borderMode=cv2.BORDER_REFLECT)
        out[i] = face[:, ::-1] if rng.random() < 0.5 else face
    return out


def _tensor(batch: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(batch)).permute(0, 3, 1, 2).float() / 255.0


def train_autoencoder(faces_by_identity: dict[str, list[np.ndarray]], steps: int = 2000, batch: int = 8,
                      seed: int = 0, lr: float = 5e-4) -> SwapAutoencoder:
    """Train on aligned faces (SIZE-px RGB uint8) of each identity: each step reconstructs a batch of
    two identities, each through its own decoder (L1 plus a structural term on blurred copies).
    Decoder k is the k-th identity in sorted order."""
    names = sorted(faces_by_identity)
    if len(names) < 2:
        raise ValueError(f"an autoencoder swap needs faces of at least 2 identities, got {len(names)}")
    rng = np.random.default_rng(seed)
    with torch.random.fork_rng():  # seeded here without moving the caller's generator (the detector's init)
        torch.manual_seed(seed)
        model = SwapAutoencoder(len(names))
    optimiser = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.5, 0.999), weight_decay=0.0)
    stacks = [np.stack(faces_by_identity[n]) for n in names]
    for _ in tqdm(range(steps), desc="autoencoder swap", leave=False):
        loss = torch.zeros(())
        for k in rng.choice(len(names), 2, replace=False):
            pick = stacks[k][rng.integers(0, len(stacks[k]), batch)]
            target = _tensor(pick)
            out = model(_tensor(_random_warp(pick, rng)), int(k))
            loss = loss + F.l1_loss(out, target) + F.l1_loss(F.avg_pool2d(out, 4), F.avg_pool2d(target, 4))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    return model.eval()


class AutoencoderSwapper:
    """A trained :class:`SwapAutoencoder` applied to face crops: ``swap`` returns a fake and its mask."""

    def __init__(self, model: SwapAutoencoder, identities: Sequence[str]):
        self.model, self.identities = model.eval(), list(identities)

    @torch.no_grad()
    def swap(self, image: np.ndarray, landmarks: np.ndarray, rng: np.random.Generator,
             group: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``image`` (an RGB uint8 crop, landmarks in its pixels) with its face re-drawn by the
        decoder of another identity than ``group``: (the fake, uint8; the blending mask)."""
        choices = [i for i, name in enumerate(self.identities) if name != group]
        aligned, matrix = align(image, landmarks)
        decoded = self.model(_tensor(aligned[None]), int(rng.choice(choices)))[0]
        face = (decoded.permute(1, 2, 0).numpy() * 255.0).round().clip(0, 255).astype(np.uint8)
        h, w = image.shape[:2]
        back = cv2.warpAffine(face, cv2.invertAffineTransform(matrix), (w, h), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REFLECT)
        return paste(image, back, landmarks, rng)

    def save(self, folder: str | Path) -> None:
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in self.model.state_dict().items()}, str(folder / "aeswap.safetensors"))
        write_atomic(folder / "aeswap.json", {"identities": self.identities, "size": SIZE})

    @classmethod
    def load(cls, folder: str | Path) -> "AutoencoderSwapper":
        folder = Path(folder)
        identities = json.loads((folder / "aeswap.json").read_text())["identities"]
        model = SwapAutoencoder(len(identities))
        model.load_state_dict(load_file(str(folder / "aeswap.safetensors")))
        return cls(model, identities)


def swapper_for(faces: Sequence[CachedFace], cache: str | Path, steps: int = 2000, seed: int = 0,
                min_faces: int = 8) -> AutoencoderSwapper:
    """The autoencoder swapper learnt from these (training) faces: one decoder per group (person)
    with at least ``min_faces`` faces. Kept in ``cache`` under a hash of the faces it learnt, so
    runs on the same split train it once."""
    by_group: dict[str, list] = {}
    for face in faces:
        by_group.setdefault(face.group, []).append(face)
    groups = {g: items for g, items in sorted(by_group.items()) if len(items) >= min_faces}
    key = hashlib.sha256(json.dumps([[f.crop_path for f in items] for items in groups.values()] + [steps, seed])
                         .encode()).hexdigest()[:16]
    folder = Path(cache) / "aeswap" / key
    if (folder / "aeswap.json").is_file():
        return AutoencoderSwapper.load(folder)
    aligned = {g: [align(load_crop(f), np.asarray(f.landmarks, np.float32))[0] for f in items] for g, items in groups.items()}
    model = train_autoencoder(aligned, steps=steps, seed=seed)
    swapper = AutoencoderSwapper(model, sorted(groups))
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    swapper.save(partial)
    partial.replace(folder)  # a stop never leaves a half-saved autoencoder to be loaded
    return swapper
