"""Probe whether a third generator family, made here from real faces by a neural super-resolution
network, would teach a detector generated faces it never saw (StyleGAN2, Stable Diffusion).

The networks are UpscalerJS's MIT-licensed TF.js models from the npm registry (no model hub needed):
``esrgan-slim`` (a small residual dense network) and ``esrgan-thick`` (the GAN-trained RRDN of
ESRGAN). Each real face (the crop cache's 256-px landmark-framed crops) is shrunk by the model's
scale (area) and enlarged by the network: the same face and framing, with every pixel drawn by a
generator's up-sampling. A logistic regression on frozen ImageNet MobileNetV2 features (as in
``probe-synthetic-cues.py``) learns reals (optionally also their bicubic enlargements, so that
softness alone does not separate the classes) against their super-resolved copies, and is scored on
StyleGAN2 and Stable Diffusion faces against unseen FFHQ reals and against UTKFace reals.

    npm pack @upscalerjs/esrgan-slim@1.0.0 && mkdir -p /tmp/sr && tar xzf upscalerjs-esrgan-slim-1.0.0.tgz -C /tmp/sr
    .venv/bin/python scripts/probe-sr-fakes.py /tmp/sr/package/models --scales 4 2
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import random
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("probe_synthetic_cues", HERE / "probe-synthetic-cues.py")
cues = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cues)  # its faces, features, classifier and AUC


class TfjsLayersModel(nn.Module):
    """A TF.js layers model (``model.json`` + float32 weight shards) run by PyTorch: the layer kinds
    UpscalerJS's super-resolution networks use (Conv2D, ReLU, Concatenate, Add, MultiplyBeta,
    nearest UpSampling2D, PixelShuffle), in the graph's order. Inputs and outputs in [0, 255]."""

    def __init__(self, folder: str | Path):
        super().__init__()
        folder = Path(folder)
        spec = json.loads((folder / "model.json").read_text())
        config = spec["modelTopology"]["model_config"]["config"]
        self.layers, self.output = config["layers"], config["output_layers"][0][0]
        blob = b"".join((folder / p).read_bytes() for group in spec["weightsManifest"] for p in group["paths"])
        weights, offset = {}, 0
        for group in spec["weightsManifest"]:
            for w in group["weights"]:
                if w["dtype"] != "float32":
                    raise SystemExit(f"{folder}: weight {w['name']} is {w['dtype']}, not float32")
                count = int(np.prod(w["shape"]))
                weights[w["name"]] = np.frombuffer(blob, np.float32, count, offset).reshape(w["shape"])
                offset += 4 * count
        self.conv = nn.ParameterDict()
        for layer in self.layers:
            if layer["class_name"] == "Conv2D":  # Keras HWIO kernels -> PyTorch OIHW
                name = layer["name"]
                self.conv[name + "_w"] = nn.Parameter(torch.from_numpy(weights[f"{name}/kernel"].transpose(3, 2, 0, 1).copy()),
                                                      requires_grad=False)
                self.conv[name + "_b"] = nn.Parameter(torch.from_numpy(weights[f"{name}/bias"].copy()), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        values: dict[str, torch.Tensor] = {}
        for layer in self.layers:
            kind, name, cfg = layer["class_name"], layer["name"], layer["config"]
            inputs = [values[n[0]] for n in layer["inbound_nodes"][0]] if layer["inbound_nodes"] else [x]
            if kind == "InputLayer":
                y = x
            elif kind == "Conv2D":
                if cfg["strides"] != [1, 1] or cfg["activation"] != "linear" or cfg.get("dilation_rate", [1, 1]) != [1, 1]:
                    raise ValueError(f"{name}: unsupported Conv2D options")
                w = self.conv[name + "_w"]
                y = F.conv2d(inputs[0], w, self.conv[name + "_b"], padding=w.shape[-1] // 2 if cfg["padding"] == "same" else 0)
            elif kind == "Activation" and cfg["activation"] == "relu":
                y = F.relu(inputs[0])
            elif kind == "Concatenate":
                y = torch.cat(inputs, 1)
            elif kind == "Add":
                y = torch.stack(inputs).sum(0)
            elif kind == "MultiplyBeta":  # ESRGAN's residual scaling, 0.2 in UpscalerJS
                y = inputs[0] * 0.2
            elif kind == "UpSampling2D" and cfg["interpolation"] == "nearest":
                y = F.interpolate(inputs[0], scale_factor=cfg["size"][0], mode="nearest")
            elif kind.startswith("PixelShuffle"):  # TF depth_to_space: channel (i * s + j) * C + c
                s = int(kind[len("PixelShuffle"):-1])
                b, ch, h, w = inputs[0].shape
                y = inputs[0].view(b, s, s, ch // (s * s), h, w).permute(0, 3, 4, 1, 5, 2).reshape(b, ch // (s * s), h * s, w * s)
            else:
                raise ValueError(f"{name}: unsupported layer {kind}")
            values[name] = y
        return values[self.output]


@torch.no_grad()
def super_resolve(model: TfjsLayersModel, images: list[np.ndarray], batch: int = 8) -> list[np.ndarray]:
    out = []
    for i in range(0, len(images), batch):
        x = torch.from_numpy(np.stack(images[i:i + batch])).permute(0, 3, 1, 2).float()
        out += list(model(x).clamp(0, 255).round().byte().permute(0, 2, 3, 1).numpy())
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", help="an UpscalerJS package's models/ folder (x2/, x4/ ... with model.json)")
    parser.add_argument("--scales", type=int, nargs="+", default=[4, 2])
    parser.add_argument("--data", default="../shared/data/labels.csv")
    parser.add_argument("--cache", default=".cache/crops256")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    samples = [s for s in cues.read_labels_csv(args.data) if s.source in ("FFHQ", "UTKFace", cues.GAN, cues.SD)]
    cache = cues.FaceCropCache(args.cache, 256, 0.0, framing="landmarks")

    def faces(source: str, count: int) -> list[np.ndarray]:
        chosen = [s for s in samples if s.source == source]
        random.shuffle(chosen)
        return [cues.load_crop(f) for f in cache.build(chosen[:count], progress=False)]

    utk, ffhq, gan, sd = faces("UTKFace", 1400), faces("FFHQ", 500), faces(cues.GAN, 160), faces(cues.SD, 500)
    net = torchvision.models.mobilenet_v2()
    net.load_state_dict(cues.load_mobilenet_v2_state())
    net.eval()
    fit_real = utk[800:1400] + ffhq[:250]  # the test reals (FFHQ[250:], UTKFace[:300]) are never fitted on
    tests = {"ffhq": ffhq[250:], "utk": utk[:300], "gan": gan, "sd": sd}
    x_test = {k: cues.stage_features(net, v) for k, v in tests.items()}
    x_real = cues.stage_features(net, fit_real)
    print(f"fitted on {len(fit_real)} reals (UTKFace, FFHQ) against their super-resolved copies; "
          f"scored on FFHQ {len(tests['ffhq'])}, UTKFace {len(tests['utk'])}, StyleGAN2 {len(gan)}, Stable Diffusion {len(sd)}")
    for scale in args.scales:
        model = TfjsLayersModel(Path(args.models) / f"x{scale}").eval()
        small = [cv2.resize(im, (256 // scale, 256 // scale), interpolation=cv2.INTER_AREA) for im in fit_real]
        x_sr = cues.stage_features(net, super_resolve(model, small))
        x_bicubic = cues.stage_features(net, [cv2.resize(im, (256, 256), interpolation=cv2.INTER_CUBIC) for im in small])
        for reals_name, reals in (("reals", [x_real]), ("reals + their bicubic enlargements", [x_real, x_bicubic])):
            print(f"x{scale}, {reals_name} against super-resolved reals (ROC-AUC, generated vs real):")
            for j in (3, 6, 10, 13, 18):
                xr = np.concatenate([r[j] for r in reals])
                clf = cues.classifier().fit(np.r_[xr, x_sr[j]], np.r_[np.zeros(len(xr)), np.ones(len(x_sr[j]))])
                s = {k: clf.predict_proba(v[j])[:, 1] for k, v in x_test.items()}
                print(f"  stage {j}: StyleGAN2 vs FFHQ {cues.auc(s['ffhq'], s['gan'])}, Stable Diffusion vs FFHQ "
                      f"{cues.auc(s['ffhq'], s['sd'])}; vs UTKFace {cues.auc(s['utk'], s['gan'])}, {cues.auc(s['utk'], s['sd'])}",
                      flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
