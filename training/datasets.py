"""Torch datasets over cached face crops: labelled faces, and real faces paired with their
self-blended pseudo-fakes (same augmentation for both, generated on the fly)."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from forensics.detectors.card import VIDEO_SOURCE
from forensics.preprocess import to_tensor
from training import augment
from training.aeswap import AutoencoderSwapper
from training.data import CachedFace, load_crop
from training.sbi import self_blend
from training.swap import expression_partners, expression_swap, face_swap, partners


class LabelledFaces(Dataset):
    """Cached crops with their label index; augmentation optional (off for evaluation)."""

    def __init__(self, faces: Sequence[CachedFace], labels: Sequence[int], size: int, train: bool = False,
                 seed: int = 0, aug: dict | None = None):
        self.faces, self.labels, self.size, self.train, self.seed = list(faces), list(labels), size, train, seed
        self.aug = dict(aug or {})  # keyword options of ``augment.draw_params`` (jpeg_prob, sharpen_prob, ...)
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.faces)

    def __getitem__(self, i: int):
        image = load_crop(self.faces[i])
        rng = np.random.default_rng((self.seed, self.epoch, i))
        params = augment.draw_params(rng, **self.aug) if self.train else _identity()
        return [augment.apply(image, params, self.size)], [self.labels[i]]


class SelfBlendedPairs(Dataset):
    """Each item: a real face and a self-blended fake made from it, both augmented alike.

    ``fake_label``/``real_label`` are indices in the model's label order. Deterministic per
    (seed, epoch, index), so a validation set of pseudo-fakes is the same every time.
    """

    def __init__(self, faces: Sequence[CachedFace], size: int, real_label: int, fake_label: int,
                 train: bool = True, seed: int = 0, aug: dict | None = None, downscale: float = 0.0,
                 swap: float = 0.0, ae: AutoencoderSwapper | None = None, ae_share: float = 0.0,
                 expression: float = 0.0):
        self.faces, self.size, self.train, self.seed = list(faces), size, train, seed
        self.downscale = downscale  # share of blended-in copies shrunk and enlarged (``self_blend``)
        # share of fakes that are cross-identity swaps (training.swap) instead of self-blends
        self.swap = swap
        self.partners = partners([np.asarray(f.landmarks) for f in self.faces], [f.group for f in self.faces]) \
            if swap > 0 else []
        # share of the other fakes re-drawn by an autoencoder swap (training.aeswap) instead of self-blended
        self.ae, self.ae_share = ae, ae_share
        # share of the fakes of clip frames that are expression swaps (training.swap): the same
        # person's face from another frame of the clip blended in, as reenactment does
        self.expression = expression
        self.expression_partners = expression_partners(
            [np.asarray(f.landmarks) for f in self.faces], [f.group for f in self.faces],
            [f.source == VIDEO_SOURCE for f in self.faces]) if expression > 0 else []
        self.real_label, self.fake_label = real_label, fake_label
        self.aug = dict(aug or {})  # keyword options of ``augment.draw_params``
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.faces)

    def __getitem__(self, i: int):
        face = self.faces[i]
        image = load_crop(face)
        rng = np.random.default_rng((self.seed, self.epoch if self.train else 0, i))
        if self.expression > 0 and len(self.expression_partners[i]) and rng.random() < self.expression:
            picked = rng.choice(self.expression_partners[i], size=min(3, len(self.expression_partners[i])), replace=False)
            sources = [(load_crop(self.faces[int(j)]), np.asarray(self.faces[int(j)].landmarks, np.float32)) for j in picked]
            fake, _ = expression_swap(image, np.asarray(face.landmarks, np.float32), sources, rng)
        elif self.swap > 0 and len(self.partners[i]) and rng.random() < self.swap:
            other = self.faces[int(rng.choice(self.partners[i]))]
            fake, _ = face_swap(image, np.asarray(face.landmarks, np.float32), load_crop(other),
                                np.asarray(other.landmarks, np.float32), rng)
        elif self.ae is not None and rng.random() < self.ae_share:
            fake, _ = self.ae.swap(image, np.asarray(face.landmarks, np.float32), rng, face.group)
        else:
            fake, _ = self_blend(image, np.asarray(face.landmarks, np.float32), rng, downscale=self.downscale)
        params = augment.draw_params(rng, **self.aug) if self.train else _identity()
        return ([augment.apply(image, params, self.size), augment.apply(fake, params, self.size)],
                [self.real_label, self.fake_label])


def _identity() -> augment.AugmentParams:
    return augment.AugmentParams(False, (1.0, 0.0, 0.0), 0.0, 1.0, 0, 1.0, None, False)


class Collate:
    """Flatten items (each a list of images and labels) into one normalised batch."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        self.mean, self.std = mean, std

    def __call__(self, items):
        images = [im for item in items for im in item[0]]
        labels = [lab for item in items for lab in item[1]]
        return to_tensor(images, self.mean, self.std), torch.tensor(labels, dtype=torch.long)
