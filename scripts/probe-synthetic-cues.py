"""Probe what could teach a detector the unseen generator (StyleGAN2) without training on it.

1. Where the StyleGAN2-vs-FFHQ difference lives: with supervision (5-fold cross-validation on the
   held-out pair itself, for diagnosis only), a logistic regression on a residual spectrum and on
   frozen ImageNet MobileNetV2 features pooled at each stage.
2. Whether up-sampling traces learnt from real faces transfer (the AutoGAN idea, Zhang et al. 2019):
   a small transposed-convolution autoencoder is trained on real faces; a logistic regression on the
   frozen features learns reals against their reconstructions and is then scored on StyleGAN2
   against FFHQ reals it never saw.
3. Leave-one-generator-out without training a detector: the same features and spectrum, a logistic
   regression fitted on half the FFHQ reals against one generator's faces, scored on the other
   half against the other generator's. With ``--encoder`` (a ViT-Tiny encoder written by
   ``python -m training pretrain``), also the frozen features of that self-supervised encoder.
4. Typicality, with no generated face at all: a Gaussian (PCA, Ledoit-Wolf) fitted on real faces'
   features only (half the FFHQ reals, or those and 700 UTKFace faces), each face scored by its
   Mahalanobis distance (one-sided: far from the reals = generated) and by how far its log distance
   lies from the reals' median, either way (two-sided: too typical counts too).

Faces are the crop cache's margin-0 landmark-framed crops (built if missing).

    .venv/bin/python scripts/probe-synthetic-cues.py [--ae-steps 400] [--sections 1 2 3 4] [--encoder FILE]
"""
from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from training.augment import jpeg  # noqa: E402
from training.data import FaceCropCache, load_crop, read_labels_csv  # noqa: E402
from training.models import load_mobilenet_v2_state  # noqa: E402

STAGES = (1, 3, 6, 10, 13, 16, 18)
GAN = "StyleGAN2 (thispersondoesnotexist)"
SD = "Stable Diffusion 2.1 (SDFD)"
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


class AutoEncoder(nn.Module):
    """Three stride-2 convolutions down, three transposed convolutions up (a GAN's up-sampling)."""

    def __init__(self, width: int = 48):
        super().__init__()
        c = width
        self.enc = nn.Sequential(nn.Conv2d(3, c, 4, 2, 1), nn.LeakyReLU(0.2), nn.Conv2d(c, 2 * c, 4, 2, 1),
                                 nn.LeakyReLU(0.2), nn.Conv2d(2 * c, 2 * c, 4, 2, 1), nn.LeakyReLU(0.2))
        self.dec = nn.Sequential(nn.ConvTranspose2d(2 * c, 2 * c, 4, 2, 1), nn.ReLU(),
                                 nn.ConvTranspose2d(2 * c, c, 4, 2, 1), nn.ReLU(), nn.ConvTranspose2d(c, 3, 4, 2, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dec(self.enc(x)))


def to_tensor(images) -> torch.Tensor:
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 127.5 - 1


@torch.no_grad()
def reconstruct(ae: AutoEncoder, images) -> list[np.ndarray]:
    out = []
    for i in range(0, len(images), 32):
        r = ae(to_tensor(images[i:i + 32]))
        out += list(((r.permute(0, 2, 3, 1) + 1) * 127.5).clamp(0, 255).byte().numpy())
    return out


def network_input(images) -> torch.Tensor:
    """A batch as the frozen networks see it: a JPEG 90 round trip, 224 px, ImageNet-normalised."""
    x = np.stack([cv2.resize(jpeg(im, 90), (224, 224), interpolation=cv2.INTER_AREA) for im in images])
    return (torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255 - MEAN) / STD


@torch.no_grad()
def stage_features(net, images, crop: tuple[int, int] | None = None) -> dict[int, np.ndarray]:
    """Mean and standard deviation of each stage's channels, after a JPEG 90 round trip (so that
    PNG reconstructions and JPEG photos do not differ by compression)."""
    out: dict[int, list] = {j: [] for j in STAGES}
    for i in range(0, len(images), 32):
        x = network_input([im[crop[0]:crop[1], crop[0]:crop[1]] if crop else im for im in images[i:i + 32]])
        for j, layer in enumerate(net.features):
            x = layer(x)
            if j in STAGES:
                out[j].append(torch.cat([x.mean((2, 3)), x.std((2, 3))], 1))
    return {j: torch.cat(v).numpy() for j, v in out.items()}


VIT_BLOCKS = (2, 5, 8, 11)


def load_encoder(path: str) -> nn.Module:
    """A ViT-Tiny encoder from `pretrain` (safetensors, no pickle)."""
    from safetensors.torch import load_file

    from training.models import build_model

    encoder, _, _ = build_model("vit-tiny", 0, pretrained=False)
    missing, unexpected = encoder.load_state_dict(load_file(path), strict=False)
    if missing or unexpected:
        raise SystemExit(f"{path}: not a ViT-Tiny encoder (missing {missing[:3]}, unexpected {unexpected[:3]})")
    return encoder.eval()


@torch.no_grad()
def vit_features(encoder, images) -> dict[int, np.ndarray]:
    """Mean and standard deviation of each chosen block's patch tokens (JPEG 90 round trip, as
    ``stage_features``)."""
    out: dict[int, list] = {j: [] for j in VIT_BLOCKS}
    for i in range(0, len(images), 32):
        blocks = encoder.forward_intermediates(network_input(images[i:i + 32]), indices=list(VIT_BLOCKS),
                                               output_fmt="NLC", intermediates_only=True, stop_early=True)
        for j, tokens in zip(VIT_BLOCKS, blocks):  # patch tokens only (the class token left out)
            out[j].append(torch.cat([tokens.mean(1), tokens.std(1)], 1))
    return {j: torch.cat(v).numpy() for j, v in out.items()}


def texture_swap(real: np.ndarray, recon: np.ndarray, sigma: float = 1.5) -> np.ndarray:
    """The real face's low frequencies with the reconstruction's high frequencies, rescaled to the
    real's high-frequency strength: the autoencoder's texture without its blur."""
    real, recon = real.astype(np.float32), recon.astype(np.float32)
    high_real = real - cv2.GaussianBlur(real, (0, 0), sigma)
    high_recon = recon - cv2.GaussianBlur(recon, (0, 0), sigma)
    gain = high_real.std((0, 1)) / (high_recon.std((0, 1)) + 1e-6)
    return np.clip(real - high_real + high_recon * gain, 0, 255).astype(np.uint8)


def residual_spectrum(images) -> np.ndarray:
    """Radial log-spectrum of the high-pass residual, plus its strength."""
    rows = []
    for im in images:
        g = cv2.cvtColor(im, cv2.COLOR_RGB2GRAY).astype(np.float32)
        r = g - cv2.GaussianBlur(g, (0, 0), 1.0)
        f = np.log(np.abs(np.fft.fftshift(np.fft.fft2(r))) + 1e-3)
        yy, xx = np.indices(f.shape)
        radius = np.hypot(yy - f.shape[0] // 2, xx - f.shape[1] // 2).astype(int)
        profile = np.bincount(radius.ravel(), f.ravel()) / np.bincount(radius.ravel())
        rows.append(np.r_[profile[:f.shape[0] // 2], r.std(), np.abs(r).mean()])
    return np.array(rows)


def classifier():
    return make_pipeline(StandardScaler(), LogisticRegression(C=0.05, max_iter=5000))


def auc(negatives: np.ndarray, positives: np.ndarray) -> float:
    return round(float(roc_auc_score(np.r_[np.zeros(len(negatives)), np.ones(len(positives))],
                                     np.r_[negatives, positives])), 3)


def leave_one_generator_out(net, ffhq: list[np.ndarray], generators: dict[str, list[np.ndarray]],
                            encoder: nn.Module | None = None) -> None:
    """Fit on half the FFHQ reals against one generator, score the other half against the other."""
    print(f"\n3. Leave-one-generator-out without training a detector (FFHQ {len(ffhq)} split in halves; "
          + ", ".join(f"{k} {len(v)}" for k, v in generators.items()) + ")")
    order = np.random.default_rng(0).permutation(len(ffhq))
    fit, test = [ffhq[i] for i in order[: len(ffhq) // 2]], [ffhq[i] for i in order[len(ffhq) // 2:]]
    (a, faces_a), (b, faces_b) = generators.items()
    kinds = {"residual spectrum": lambda ims: {0: residual_spectrum(ims)},
             "MobileNetV2 stages": lambda ims: stage_features(net, ims)}
    if encoder is not None:
        kinds["MAE ViT-Tiny blocks"] = lambda ims: vit_features(encoder, ims)
    for name, extract in kinds.items():
        x = {k: extract(v) for k, v in (("fit", fit), ("test", test), (a, faces_a), (b, faces_b))}
        for seen, unseen in ((a, b), (b, a)):
            row = {}
            for j in x["fit"]:
                clf = classifier().fit(np.r_[x["fit"][j], x[seen][j]],
                                       np.r_[np.zeros(len(fit)), np.ones(len(x[seen][j]))])
                row[j] = auc(clf.predict_proba(x["test"][j])[:, 1], clf.predict_proba(x[unseen][j])[:, 1])
            print(f"   {name}, fitted on {seen}, {unseen} vs unseen FFHQ reals:", row[0] if list(row) == [0] else row)


def typicality(net, ffhq: list[np.ndarray], utk: list[np.ndarray], generators: dict[str, list[np.ndarray]]) -> None:
    """Section 4: is 'unlike real faces' a cue that covers both generators without seeing either?"""
    from sklearn.covariance import LedoitWolf
    from sklearn.decomposition import PCA

    print(f"\n4. Typicality under a Gaussian of real faces' features (no generated face fitted; FFHQ {len(ffhq)} "
          f"in halves, UTKFace {len(utk)}: 700 fitted, the rest scored)")
    order = np.random.default_rng(0).permutation(len(ffhq))
    sets = {"FFHQ fit": [ffhq[i] for i in order[: len(ffhq) // 2]], "FFHQ": [ffhq[i] for i in order[len(ffhq) // 2:]],
            "UTKFace fit": utk[:700], "UTKFace": utk[700:], **generators}
    feats = {k: {"residual spectrum": residual_spectrum(v),
                 **{f"stage {j}": x for j, x in stage_features(net, v).items()}} for k, v in sets.items()}

    def distance(fit: np.ndarray, x: np.ndarray) -> np.ndarray:
        scaler = StandardScaler().fit(fit)
        pca = PCA(min(32, fit.shape[1], len(fit) - 1), random_state=0).fit(scaler.transform(fit))
        gauss = LedoitWolf().fit(pca.transform(scaler.transform(fit)))
        return np.log(gauss.mahalanobis(pca.transform(scaler.transform(x))))

    scored = ("FFHQ", "UTKFace", *generators)
    for fitted in (("FFHQ fit",), ("FFHQ fit", "UTKFace fit")):
        print(f"   fitted on {' + '.join(fitted)} (ROC-AUC, the first named is the positive class):")
        for kind in feats["FFHQ"]:
            fit = np.concatenate([feats[k][kind] for k in fitted])
            folds = np.array_split(np.random.default_rng(0).permutation(len(fit)), 5)
            inside = np.concatenate([distance(np.delete(fit, f, 0), fit[f]) for f in folds])
            d = {k: distance(fit, feats[k][kind]) for k in scored}
            two = {k: np.abs(v - np.median(inside)) for k, v in d.items()}
            row = [f"{g} vs FFHQ {auc(d['FFHQ'], d[g])} / {auc(two['FFHQ'], two[g])}" for g in generators]
            print(f"     {kind}: one-sided / two-sided: " + "; ".join(row)
                  + f"; UTKFace reals vs FFHQ {auc(d['FFHQ'], d['UTKFace'])} / {auc(two['FFHQ'], two['UTKFace'])}")


def supervised_pair(net, ffhq: list[np.ndarray], gan: list[np.ndarray]) -> None:
    """Section 1: StyleGAN2 against FFHQ, cross-validated on the pair itself."""
    print("\n1. StyleGAN2 vs FFHQ reals, supervised on the pair itself (5-fold CV ROC-AUC; diagnosis only)")
    y = np.r_[np.zeros(len(ffhq)), np.ones(len(gan))]
    folds = StratifiedKFold(5, shuffle=True, random_state=0)

    def cv_auc(x: np.ndarray) -> float:
        p = cross_val_predict(classifier(), x, y, cv=folds, method="predict_proba")[:, 1]
        return round(float(roc_auc_score(y, p)), 3)

    print("   residual spectrum:", cv_auc(residual_spectrum(ffhq + gan)))
    for name, crop in (("whole crop", None), ("face interior (centre 128 px)", (64, 192))):
        feats = stage_features(net, ffhq + gan, crop)
        print(f"   MobileNetV2 stages, {name}:", {j: cv_auc(feats[j]) for j in STAGES})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="../shared/data/labels.csv")
    parser.add_argument("--cache", default=".cache/crops256")
    parser.add_argument("--ae-steps", type=int, default=400)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sections", type=int, nargs="+", default=[1, 2, 3], choices=[1, 2, 3, 4])
    parser.add_argument("--encoder", help="section 3 also on this pretrain encoder's features (encoder.safetensors)")
    args = parser.parse_args()
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    samples = [s for s in read_labels_csv(args.data) if s.source in ("FFHQ", "UTKFace", GAN, SD)]
    cache = FaceCropCache(args.cache, 256, 0.0, framing="landmarks")

    def faces(source: str, count: int) -> list[np.ndarray]:
        chosen = [s for s in samples if s.source == source]
        random.shuffle(chosen)
        return [load_crop(f) for f in cache.build(chosen[:count], progress=False)]

    utk, ffhq, gan = faces("UTKFace", 1400), faces("FFHQ", 500), faces(GAN, 160)
    print(f"faces: UTKFace {len(utk)}, FFHQ {len(ffhq)}, StyleGAN2 {len(gan)}")
    net = torchvision.models.mobilenet_v2()
    net.load_state_dict(load_mobilenet_v2_state())
    net.eval()

    if 3 in args.sections:
        leave_one_generator_out(net, ffhq, {"StyleGAN2": gan, "Stable Diffusion": faces(SD, 500)},
                                load_encoder(args.encoder) if args.encoder else None)
    if 4 in args.sections:
        typicality(net, ffhq, utk[:1000], {"StyleGAN2": gan, "Stable Diffusion": faces(SD, 500)})
    if 1 in args.sections:
        supervised_pair(net, ffhq, gan)

    if 2 not in args.sections:
        return 0
    print(f"\n2. Up-sampling traces from real faces (autoencoder, {args.ae_steps} steps)")
    ae = AutoEncoder()
    optimizer = torch.optim.Adam(ae.parameters(), 2e-3)
    ae_train = utk[:800] + ffhq[:200]
    for step in range(args.ae_steps):
        batch = to_tensor(random.sample(ae_train, 16))
        loss = F.l1_loss(ae(batch), batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    print(f"   reconstruction L1 at the end: {loss.item():.4f} (images in [-1, 1])")
    probe_real = utk[800:1400] + ffhq[200:300]  # not the autoencoder's faces
    x_real = stage_features(net, probe_real)
    test_ffhq = ffhq[300:]
    test_real, test_utk, test_gan = (stage_features(net, ims) for ims in (test_ffhq, utk[:300], gan))
    recon_probe, recon_test = reconstruct(ae, probe_real), reconstruct(ae, test_ffhq)  # once, for both kinds
    pseudo_fakes = {
        "reconstruction": (recon_probe, recon_test),
        "texture swap": ([texture_swap(a, b) for a, b in zip(probe_real, recon_probe)],
                         [texture_swap(a, b) for a, b in zip(test_ffhq, recon_test)]),
    }
    for kind, (probe_fake, test_fake_images) in pseudo_fakes.items():
        x_fake, test_fake = stage_features(net, probe_fake), stage_features(net, test_fake_images)
        print(f"   pseudo-fake = {kind}:")
        for j in (3, 6, 10, 13, 18):
            clf = classifier().fit(np.r_[x_real[j], x_fake[j]],
                                   np.r_[np.zeros(len(probe_real)), np.ones(len(probe_real))])
            score = {name: clf.predict_proba(x[j])[:, 1] for name, x in
                     (("real", test_real), ("fake", test_fake), ("utk", test_utk), ("gan", test_gan))}
            print(f"     stage {j}: unseen FFHQ reals vs their {kind}s {auc(score['real'], score['fake'])}; "
                  f"StyleGAN2 vs FFHQ reals {auc(score['real'], score['gan'])}, "
                  f"vs UTKFace reals {auc(score['utk'], score['gan'])}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
