"""Grad-CAM and Grad-CAM++ through pytorch_grad_cam, sharing one forward and one backward pass.

Calling ``GradCAM(...)(x)`` and then ``GradCAMPlusPlus(...)(x)`` runs the model forward and
backward once per method. Both methods differ only in ``get_cam_weights``; the activations and
gradients they read are the same. So one ``ActivationsAndGradients`` recorder is shared by every
method, the caller runs the pass once, and each method turns the shared record into its map.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch import nn

# The methods by name. pytorch_grad_cam is imported when maps are first drawn: it brings scikit-learn
# and matplotlib with it (seconds of start-up that a run without Grad-CAM maps need not pay).
CAM_METHODS: tuple[str, ...] = ("gradcam", "gradcam++")


def cam_classes() -> dict[str, type]:
    """pytorch_grad_cam's class of each name in :data:`CAM_METHODS`."""
    from pytorch_grad_cam import GradCAM, GradCAMPlusPlus

    return {"gradcam": GradCAM, "gradcam++": GradCAMPlusPlus}


class SharedCams:
    """Several CAM methods over one recorder. Use as a context manager (hooks are removed on exit).

    ``recorder(x)`` runs the forward pass (recording activations); after the caller's single
    backward pass, ``maps(x, targets)`` gives each method's ``(B, H, W)`` map in [0, 1].
    """

    def __init__(
        self,
        model: nn.Module,
        target_layers: list[nn.Module],
        reshape: Callable[[torch.Tensor], torch.Tensor] | None,
        methods: list[str],
    ):
        classes = cam_classes()
        self.cams = {name: classes[name](model, target_layers, reshape) for name in methods}
        first, *others = self.cams.values()
        self.recorder = first.activations_and_grads
        for cam in others:
            cam.activations_and_grads.release()  # drop its own hooks: it reads the shared record
            cam.activations_and_grads = self.recorder

    def __enter__(self) -> "SharedCams":
        return self

    def __exit__(self, *exc) -> None:
        self.recorder.release()

    def maps(self, inputs: torch.Tensor, targets: list[int]) -> dict[str, np.ndarray]:
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        wanted = [ClassifierOutputTarget(t) for t in targets]
        result = {}
        for name, cam in self.cams.items():
            per_layer = cam.compute_cam_per_layer(inputs, wanted, eigen_smooth=False)
            result[name] = cam.aggregate_multi_layers(per_layer).astype(np.float32)
        return result
