"""``python -m training explain-bench`` (also ``python -m forensics explain-bench``): which of a
detector's maps can be trusted, measured on held-out faces whose manipulated region is known.

The faces are self-blended fakes (:mod:`training.sbi`) made from the detector's validation reals (its
training record says which faces it never trained on), so each carries its blend mask. Per face and
method (maps for the fake class, as the app shows them):

- deletion and insertion AUC (:mod:`forensics.explain.faithfulness`) against a random map and a
  centre blob of the same face; ROAD (``pytorch_grad_cam.metrics.road``) on the first ``--road``
  faces, being costlier;
- the model-randomisation check (:mod:`forensics.explain.randomisation`): Spearman correlation of
  each map with the same map from the detector with its last blocks re-initialised;
- localisation (:mod:`forensics.explain.localisation`): pointing game and pixel AUC on the mask;
- the cost of each score per face.

Means come with 95% bootstrap intervals that resample the real faces the fakes were made from (two
fakes of one real are not independent), and the differences to the random map are paired per face.
It lives here, not in ``forensics``, because it needs the training data's records and the
self-blending of :mod:`training.sbi`; ``python -m forensics explain-bench`` runs it as a subprocess.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from tqdm import tqdm

from forensics.analysis import timed
from forensics.detectors import load_detector
from forensics.detectors.base import Detector
from forensics.core import ForensicsError, write_atomic
from forensics.explain import METHODS, explain
from forensics.explain.faithfulness import (FaithfulnessOptions, centre_map, deletion_insertion,
                                            random_map, road_scores, score_face, scoring_detector)
from forensics.explain.localisation import pointing_game, region_auc, region_from_mask
from forensics.explain.randomisation import randomised_detector, rank_correlation
from forensics.overlay import resize_map
from training import checks
from training.data import load_crop
from training.sbi import self_blend

BASELINES = ("random", "centre")
MASK = "blend mask"  # the truth as a map: a check of the removal procedure, not of the maps
BATCH = 4  # faces per explanation pass (as the analysis does)


@dataclass
class BenchFace:
    """A self-blended fake, its blend mask, and the real face (``group``) it was made from."""

    image: np.ndarray
    mask: np.ndarray
    group: int
    source: str
    real: np.ndarray | None = None  # the real face it was made from


def bench_faces(folder: Path, data: str, cache: str, limit: int, seed: int = 0) -> tuple[list[BenchFace], str]:
    """``limit`` self-blended fakes of the model's validation reals (more than one per real, each with
    its own mask, when there are fewer reals than ``limit``), and a line that says which reals."""
    from training.evaluate import _crop_config
    from training.pipeline import cached_faces, load_samples, relative_to_data

    record, config = _crop_config(folder, data, cache)
    held = set(record.get("validation_images", []))
    candidates = [s for s in load_samples(config["data"], config.get("label_map")) if s.label == "real"
                  and (not held or relative_to_data(s.path, data) in held)]
    where = ("its validation reals (never trained on, per its training record)" if held else
             "every real face of the data (no training record: some may have been trained on)")
    # Crop only as many as the bench needs (MTCNN is the slow part), with a few spare for faces it misses.
    picked = np.random.default_rng(seed).permutation(len(candidates))[: limit + limit // 10 + 2]
    chosen = {candidates[i].path for i in picked}
    reals = [f for f in cached_faces(config, keep=lambda s: s.path in chosen) if f.label == "real"]
    if not reals:
        raise ForensicsError(f"no real face to blend in {data} for {folder.name}")
    order = np.random.default_rng(seed).permutation(len(reals))
    faces = []
    for n in range(limit):
        real_index = int(order[n % len(reals)])
        real = reals[real_index]
        crop = load_crop(real)
        fake, mask = self_blend(crop, np.asarray(real.landmarks, np.float32),
                                np.random.default_rng((seed, real_index, n // len(reals))))
        faces.append(BenchFace(fake, mask, real_index, real.source, crop))
    return faces, where


def bootstrap(values: Sequence[float], groups: Sequence[int], resamples: int = 2000,
              seed: int = 0) -> tuple[float, float, float]:
    """Mean and 95% percentile interval, resampling whole groups; NaNs (undefined scores) left out."""
    values, groups = np.asarray(values, np.float64), np.asarray(groups)
    ok = np.isfinite(values)
    values, groups = values[ok], groups[ok]
    if not len(values):
        return float("nan"), float("nan"), float("nan")
    names, index = np.unique(groups, return_inverse=True)
    sums, counts = np.bincount(index, values, len(names)), np.bincount(index, minlength=len(names))
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(names), (resamples, len(names)))
    means = sums[picks].sum(axis=1) / counts[picks].sum(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(values.mean()), float(low), float(high)


def run_bench(detector_name: str, data: str, cache: str, limit: int = 200, steps: int = FaithfulnessOptions.steps,
              road_faces: int = 32,
              sanity_blocks: int = 2, seed: int = 0, progress: bool = True, removal: str = "blur") -> dict:
    """Score every explanation method of a detector (see the module docstring); returns the JSON."""
    det = load_detector(detector_name)
    if det.path is None:
        raise ForensicsError(f"{detector_name}: the bench needs a model folder (for its training record)")
    faces, where = bench_faces(Path(det.path), data, cache, limit, seed)
    methods = [m for m in METHODS if m not in explain(det, det.preprocess([faces[0].image]), METHODS).skipped]
    try:
        shuffled: Detector | None = randomised_detector(det, sanity_blocks, seed)
        sanity_note = f"last {sanity_blocks} blocks and the head re-initialised"
    except ForensicsError as exc:
        shuffled, sanity_note = None, str(exc)
    options = FaithfulnessOptions(steps=steps, removal=removal)
    size = det.input_size
    grid = det.grid_size[0] if det.grid_size else 14
    centre = centre_map(size)
    per_face: list[dict] = []
    costs: dict[str, float] = {"forward": 0.0, "forward_scorer": 0.0, "explain": 0.0, "faithfulness": 0.0,
                               "localisation": 0.0, "sanity": 0.0, "road": 0.0}  # milliseconds, added up by timed
    passes: list[int] = []  # images in each forward pass that scored a face's maps and its random map
    road_done, partial = 0, False
    bar = tqdm(total=len(faces), desc=f"explain-bench {det.name}", unit="face", disable=not progress, file=sys.stderr)
    try:
        for start in range(0, len(faces), BATCH):
            _bench_chunk(det, shuffled, faces, start, methods, options, size, grid, centre, seed, costs, per_face,
                         passes)
            bar.update(len(faces[start : start + BATCH]))
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: summarise what was measured, marked partial
        partial = True
    bar.close()
    if not partial and road_faces:  # last: the costliest score, on the first faces only
        try:
            road_done = _road_pass(det, faces[:road_faces], per_face, methods, size, grid, centre, seed, costs)
        except KeyboardInterrupt:
            partial = True
    report = summarise(det, per_face, methods, costs, road_done, where, sanity_note, options, limit, passes)
    report["partial"] = partial
    return report


def _bench_chunk(det, shuffled, faces, start, methods, options, size, grid, centre, seed, costs, per_face,
                 passes) -> None:
    """Maps, faithfulness, localisation and the sanity check for faces ``start .. start + BATCH``."""
    chunk = faces[start : start + BATCH]
    batch = det.preprocess([f.image for f in chunk])
    with timed(costs, "forward"):
        probabilities = det.predict(batch)
    with timed(costs, "forward_scorer"):  # the same pass by the runtime that scores the maps
        scoring_detector(det).predict(batch)
    p_fake = det.fake_probability(probabilities)
    with timed(costs, "explain"):
        explanation = explain(det, batch, methods, "fake")
    rows = []
    for j, face in enumerate(chunk):
        n = start + j
        maps = {m: explanation.maps[m][j] for m in methods}
        target = explanation.targets[j]
        face_options = dataclasses.replace(options, seed=seed + n)
        original = float(probabilities[j, target])  # the crop's own probability: not run again
        with timed(costs, "faithfulness"), _CountingPasses(scoring_detector(det)) as counted:
            scored = score_face(det, batch[j], maps, target, face_options, original=original)
        passes.append(counted.sizes)
        noise = random_map(size, grid, np.random.default_rng(seed + n + 1))  # the map score_face drew
        region = region_from_mask(face.mask, size)
        checks = deletion_insertion(det, batch[j], {"centre": centre}, target, face_options, original)
        row = {"group": face.group, "p_fake": float(p_fake[j])}
        for name, s in {**scored.methods, "random": scored.random, **checks}.items():
            row[f"{name}/deletion"], row[f"{name}/insertion"] = s.deletion, s.insertion
        row["random/all_removed"] = scored.random.deletion_curve[-1]
        row.update(removal_check(det, face, batch[j], target, noise, face_options, original))
        with timed(costs, "localisation"):
            for name, heatmap in {**maps, "random": noise, "centre": centre}.items():
                row[f"{name}/pointing_game"] = pointing_game(heatmap, region)
                row[f"{name}/region_auc"] = region_auc(heatmap, region)
        rows.append(row)
    if shuffled is not None:
        with timed(costs, "sanity"):
            other = explain(shuffled, batch, methods, "fake")
            for j, row in enumerate(rows):
                for m in methods:
                    row[f"{m}/sanity_spearman"] = rank_correlation(explanation.maps[m][j], other.maps[m][j])
    per_face.extend(rows)


def removal_check(det: Detector, face: BenchFace, crop: torch.Tensor, target: int, noise: np.ndarray,
                  options: FaithfulnessOptions, original: float | None = None, random: bool = False) -> dict:
    """The removal check of one face (see the report's ``removal_check``): the deletion and insertion
    of its blend mask used as a map (and, with ``random``, of the random map ``noise``), and P(fake)
    of the real face it was made from as the random map's blobs are removed from it."""
    truth = resize_map(face.mask.astype(np.float32), (det.input_size, det.input_size))
    scored = deletion_insertion(det, crop, {MASK: truth, **({"random": noise} if random else {})}, target, options,
                                original)
    row = {}
    for name, s in scored.items():
        row[f"{name}/deletion"], row[f"{name}/insertion"] = s.deletion, s.insertion
    if random:
        row["random/all_removed"] = scored["random"].deletion_curve[-1]
    if face.real is not None:  # the removal's own effect: random blobs removed from the real face
        real = det.preprocess([face.real])[0]
        curve = deletion_insertion(det, real, {"random": noise}, target, options)["random"].deletion_curve
        row["real/p_fake"], row["real/removal_rise"] = curve[0], float(np.mean(curve[1:-1]) - curve[0])
        row["real/all_removed"] = curve[-1]
    return row


def _road_pass(det, faces, per_face, methods, size, grid, centre, seed, costs) -> int:
    """ROAD for the first faces (their maps made again: cheaper than keeping them all)."""
    for start in range(0, len(faces), BATCH):
        chunk = faces[start : start + BATCH]
        batch = det.preprocess([f.image for f in chunk])
        explanation = explain(det, batch, methods, "fake")
        stacks = {m: explanation.maps[m] for m in methods}
        stacks["random"] = np.stack([random_map(size, grid, np.random.default_rng(seed + start + j + 1))
                                     for j in range(len(chunk))])
        stacks["centre"] = np.stack([centre] * len(chunk))
        with timed(costs, "road"):
            road = road_scores(det, batch, stacks, explanation.targets)
        for j in range(len(chunk)):
            for name, values in road.items():
                per_face[start + j][f"{name}/road"] = float(values[j])
    return len(faces)


class _CountingPasses:
    """Records the batch size of every ``predict`` call on a detector while active (the cost line says
    how many forward passes scoring a face took, and of how many images)."""

    def __init__(self, det: Detector):
        self.det, self.sizes = det, []

    def __enter__(self):
        predict = self.det.predict

        def counting(batch):
            self.sizes.append(len(batch))
            return predict(batch)

        self.det.predict = counting
        return self

    def __exit__(self, *exc):
        del self.det.predict  # back to the class's method
        return False


def removal_figures(rows: list[dict], stat: Callable[[np.ndarray], object]) -> dict:
    """The removal check over faces (see :func:`removal_check`), each column summarised by ``stat``: the
    blend mask's deletion and insertion minus the random map's, and P(fake) of the real faces (before,
    its rise while random blobs are removed, with every pixel removed) and of the fakes with every pixel removed."""
    def column(key: str) -> np.ndarray:
        return np.array([r.get(key, float("nan")) for r in rows], np.float64)

    return {"mask_deletion_minus_random": stat(column(f"{MASK}/deletion") - column("random/deletion")),
            "mask_insertion_minus_random": stat(column(f"{MASK}/insertion") - column("random/insertion")),
            "real_p_fake": stat(column("real/p_fake")), "real_rise_while_removing": stat(column("real/removal_rise")),
            "real_all_removed_p_fake": stat(column("real/all_removed")),
            "fake_all_removed_p_fake": stat(column("random/all_removed"))}


def summarise(det: Detector, rows: list[dict], methods: list[str], costs: dict[str, float], road_faces: int,
              where: str, sanity_note: str, options: FaithfulnessOptions, limit: int,
              passes: Sequence[Sequence[int]] = ()) -> dict:
    """Per method: means, 95% intervals, and paired differences to the random map and the centre blob."""
    groups = [r["group"] for r in rows]

    def column(key: str) -> list[float]:
        return [r.get(key, float("nan")) for r in rows]

    def stat(values: Sequence[float]) -> dict:
        mean, low, high = bootstrap(values, groups)
        return {"mean": _r(mean), "ci": [_r(low), _r(high)]}

    def diff(first: str, second: str) -> dict:
        return stat(np.asarray(column(first)) - np.asarray(column(second)))

    out_methods: dict[str, dict] = {}
    for name in [*methods, *BASELINES, MASK]:
        entry: dict = {}
        for score in ("deletion", "insertion", "road", "pointing_game", "region_auc", "sanity_spearman"):
            if not np.isfinite(column(f"{name}/{score}")).any():
                continue
            s = stat(column(f"{name}/{score}"))
            entry[score], entry[f"{score}_ci"] = s["mean"], s["ci"]
            if name in methods and score != "sanity_spearman":
                for base in BASELINES:
                    entry[f"{base}_{score}"] = stat(column(f"{base}/{score}"))["mean"]
                    d = diff(f"{name}/{score}", f"{base}/{score}")
                    entry[f"{score}_minus_{base}"], entry[f"{score}_minus_{base}_ci"] = d["mean"], d["ci"]
        if name in methods:
            ci = entry["deletion_minus_random_ci"]
            entry["beats_random_on_deletion"] = bool(ci[1] < 0)  # the whole interval below zero
        out_methods[name] = entry
    faces = len(rows)
    return {
        "detector": det.name,
        "detector_path": str(det.path),
        "kind": det.kind,
        "faces": faces,
        "limit": limit,
        "faces_from": f"{faces} self-blended fakes of {len(set(groups))} real faces: {where}",
        "explained_class": "fake",
        "mean_p_fake": _r(float(np.mean(column("p_fake")))),
        "share_called_fake": _r(float(np.mean(np.asarray(column("p_fake")) >= det.threshold))),
        "settings": {"steps": options.steps, "removal": options.removal, "removed_pixels": options.describe(),
                     "random_map": "uniform noise on the patch grid, bilinear",
                     "centre_map": "Gaussian, sigma = side/4",
                     "road_faces": road_faces, "road_percentiles": [20, 50, 80], "sanity": sanity_note,
                     "region": "blend mask >= half its maximum", "bootstrap": "2000 resamples of the real faces"},
        "methods": {m: out_methods[m] for m in methods},
        "baselines": {b: out_methods[b] for b in BASELINES},
        "removal_check": {
            "what": ("does the removal remove evidence? The blend mask as a map (the truth) against the random map, "
                     "and P(fake) of the real faces the fakes were made from as random blobs are removed"),
            "mask_deletion": out_methods[MASK].get("deletion"), "mask_insertion": out_methods[MASK].get("insertion"),
            **removal_figures(rows, stat),
        },
        "cost_ms_per_face": {k: _r(v / (road_faces if k == "road" else faces), 1) if (
            road_faces if k == "road" else faces) else None for k, v in costs.items()},
        "faithfulness_to_forward_ratio": _r(costs["faithfulness"] / costs["forward"], 1) if costs["forward"] else None,
        "faithfulness_cost": {
            "what": "deletion and insertion of every map and of the random map, one face",
            "ms_per_face": _r(costs["faithfulness"] / faces, 1) if faces else None,
            "forward_ms_per_face": _r(costs["forward"] / faces, 1) if faces else None,
            "x_forward": _r(costs["faithfulness"] / costs["forward"], 1) if costs["forward"] else None,
            "scored_by": scoring_detector(det).name,
            "scorer_forward_ms_per_face": _r(costs["forward_scorer"] / faces, 1) if faces else None,
            "x_scorer_forward": _r(costs["faithfulness"] / costs["forward_scorer"], 1) if costs["forward_scorer"] else None,
            "images_per_face": int(sum(passes[0])) if passes else None,
            "forward_passes_per_face": len(passes[0]) if passes else None,
            "threads": torch.get_num_threads(),
            "load_average_at_end": _r(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        },
    }


def _r(value: float, digits: int = 4) -> float | None:
    return None if value is None or not np.isfinite(value) else round(float(value), digits)


def casia_check(data: str) -> dict:
    """Can a face detector's maps be scored on CASIA's tampered images? Only where MTCNN finds a
    face whose crop overlaps the tampered region: counts them (the bench reports it)."""
    import cv2

    from forensics.faces import FaceDetector
    from forensics.media import load_image

    root = Path(data).parent if Path(data).suffix == ".csv" else Path(data)
    tampered = sorted((root / "tamper").glob("casia*/*"))
    masks = {p for p in tampered if p.stem.endswith(("_mask", "_gt"))}
    finder = FaceDetector()
    images = faces = overlapping = 0
    for path in tampered:
        if path in masks or path.stem.endswith("_authentic"):
            continue
        stem = path.stem.removesuffix("_tampered")
        mask_path = next((p for p in masks if p.stem in (f"{stem}_mask", f"{stem}_gt")), None)
        if mask_path is None:
            continue
        images += 1
        mask = cv2.imread(str(mask_path), cv2.IMREAD_GRAYSCALE) > 127
        for face in finder.detect(load_image(path)):
            faces += 1
            x0, y0, x1, y1 = (max(0, int(v)) for v in face.box)
            overlapping += bool(mask[y0:y1, x0:x1].any())
    return {"tampered_images_with_masks": images, "faces_found": faces, "faces_overlapping_the_tampered_region":
            overlapping}


def markdown_table(report: dict) -> str:
    """The bench as a Markdown table: one row per method, then the two baselines."""
    def cell(entry: dict, key: str, signed: bool = False) -> str:
        if entry.get(key) is None:
            return "-"
        low, high = entry.get(f"{key}_ci", [None, None])
        fmt = "{:+.3f}" if signed else "{:.3f}"
        text = fmt.format(entry[key])
        return f"{text} [{fmt.format(low)}, {fmt.format(high)}]" if low is not None else text

    partial = " **Stopped early: partial.**" if report.get("partial") else ""
    lines = [f"**`{report['detector']}`** ({report['kind']}): {report['faces_from']}{partial}; mean P(fake) "
             f"{report['mean_p_fake']}, {report['share_called_fake'] * 100:.0f}% called fake. "
             f"Maps explain the fake class; 95% bootstrap intervals.",
             "",
             "| map | deletion ↓ | deletion − random | insertion ↑ | insertion − random | ROAD ↑ "
             f"({report['settings']['road_faces']} faces) | sanity ρ ↓ | pointing game ↑ | pixel AUC ↑ |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, entry in [*report["methods"].items(), *[(f"*{k} map*", v) for k, v in report["baselines"].items()]]:
        lines.append(f"| {name} | {cell(entry, 'deletion')} | {cell(entry, 'deletion_minus_random', True)} | "
                     f"{cell(entry, 'insertion')} | {cell(entry, 'insertion_minus_random', True)} | "
                     f"{cell(entry, 'road')} | {cell(entry, 'sanity_spearman')} | {cell(entry, 'pointing_game')} | "
                     f"{cell(entry, 'region_auc')} |")
    cost = report["cost_ms_per_face"]
    check = report.get("removal_check") or {}
    if check.get("real_rise_while_removing", {}).get("mean") is not None:
        d, i = check["mask_deletion_minus_random"], check["mask_insertion_minus_random"]
        rise, real = check["real_rise_while_removing"], check["real_p_fake"]
        lines += ["", f"Removal check: the blend mask as a map (the truth) against the random map: deletion "
                      f"{d['mean']:+.3f} [{d['ci'][0]:+.3f}, {d['ci'][1]:+.3f}], insertion {i['mean']:+.3f} "
                      f"[{i['ci'][0]:+.3f}, {i['ci'][1]:+.3f}] (a removal that takes evidence away makes the first "
                      f"negative). On the real faces the fakes were made from (P(fake) {real['mean']:.3f}), removing "
                      f"random blobs moves P(fake) by {rise['mean']:+.3f} [{rise['ci'][0]:+.3f}, {rise['ci'][1]:+.3f}] "
                      f"on average along the curve (the removal's own evidence); with every pixel removed, P(fake) "
                      f"{check['real_all_removed_p_fake']['mean']:.3f}."]
    scoring = report.get("faithfulness_cost") or {}
    passes = (f" in {scoring['forward_passes_per_face']} forward pass(es) of {scoring['images_per_face']} images"
              if scoring.get("images_per_face") else "")
    scorer = (f", run by {scoring['scored_by']}: {scoring['x_scorer_forward']}x its own forward pass of "
              f"{cost.get('forward_scorer')} ms" if scoring.get("x_scorer_forward") is not None else "")
    load = (f"; {scoring['threads']} threads, load average {scoring['load_average_at_end']} at the end"
            if scoring.get("load_average_at_end") is not None else "")
    lines += ["", f"Removed pixels: {report['settings']['removed_pixels']}; {report['settings']['steps']} steps.",
              "", f"Cost per face (ms): one forward pass {cost['forward']}, maps {cost['explain']}, deletion+insertion "
                  f"of all maps and the random map {cost['faithfulness']} ({report['faithfulness_to_forward_ratio']}x "
                  f"one forward pass{passes}{scorer}), localisation {cost['localisation']}, sanity {cost['sanity']}, "
                  f"ROAD {cost['road']}{load}."]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    import signal

    signal.signal(signal.SIGTERM, signal.default_int_handler)  # a stopped bench still writes what it measured
    try:
        checks.explain_bench_inputs(args.data, args.limit, args.steps, args.road)
    except (FileNotFoundError, ValueError) as exc:
        raise SystemExit(f"explain-bench: {exc}") from None
    try:
        report = run_bench(args.detector, args.data, args.cache, args.limit, args.steps, args.road,
                           args.sanity_blocks, args.seed, removal=args.removal)
        if not args.no_casia:
            report["casia"] = casia_check(args.data)
    except ForensicsError as exc:
        raise SystemExit(f"explain-bench: {exc}") from None
    table = markdown_table(report)
    if "casia" in report:
        c = report["casia"]
        table += (f"\n\nCASIA: {c['tampered_images_with_masks']} tampered images with masks, {c['faces_found']} "
                  f"face(s) found, {c['faces_overlapping_the_tampered_region']} overlapping the tampered region.")
    for path, text in ((args.json_out, json.dumps(report, indent=2)), (args.markdown, table + "\n")):
        if path:
            write_atomic(path, text)
    print(table)
    return 0
