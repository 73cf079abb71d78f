"""The one crop -> tensor path, shared by inference (:meth:`Detector.preprocess`) and training
(its batches): face crops at the model's input size (:func:`forensics.faces.resize_square`, the
same resize rule the crops were cut with), normalised by the model folder's mean and std."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from forensics.core import DetectorError
from forensics.faces import resize_square


def to_tensor(images: Sequence[np.ndarray], mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """RGB uint8 images of one size -> the normalised float batch ``(B, 3, H, W)``."""
    batch = torch.from_numpy(np.ascontiguousarray(np.stack(images))).permute(0, 3, 1, 2).float()
    m = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1) * 255.0
    s = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1) * 255.0
    return (batch - m) / s


def crops_to_tensor(crops: Sequence[np.ndarray], size: int, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """RGB uint8 face crops (any size) -> the normalised batch at ``size x size``."""
    for crop in crops:
        if crop.ndim != 3 or crop.shape[2] != 3:
            raise DetectorError(f"expected RGB crops of shape HxWx3, got {crop.shape}")
    return to_tensor([resize_square(crop, size) for crop in crops], mean, std)
