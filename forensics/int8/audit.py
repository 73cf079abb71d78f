"""Float vs int8: what a detector's int8 build costs, on labelled faces, side by side.

For one detector folder with ONNX builds (:mod:`forensics.int8.quantize`): the PyTorch float model, the
ONNX float build and the ONNX int8 build score the same face crops. The audit reports agreement of
decisions (float at its threshold vs int8 at the same threshold, and at the int8 threshold tuned
to keep the float operating point), max and mean |delta P(fake)|, ROC-AUC of each, file size,
load time, latency p50/p95 at batch 1 and 8 (interleaved rounds in one process, so shared-machine
noise hits every model alike), the faces where float and int8 disagree with both models' maps,
and a tolerance check that passes or fails loudly.

Labelled faces come from a folder (ImageFolder: a ``real``-like and a ``fake``-like subfolder) or
a ``labels.csv`` (``path,label[,source]``), cropped with MTCNN as analysis crops them; or, for a
model trained here, from its own validation faces (its training record).
"""

from __future__ import annotations

import base64
import csv
import importlib.util
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import cv2
import jinja2
import numpy as np

from forensics.core import DetectorError, ForensicsError, read_json, write_atomic

AUDIT_NAME = "audit.json"
MAX_DISAGREEMENTS = 8
FLOAT_MAPS = ("attention", "rollout", "gradcam", "gradcam++", "patches")
INT8_MAPS = ("attention", "rollout", "patches")

# CPU flags that give onnxruntime int8 dot products without 16-bit saturation (docs/int8.md).
VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")


def cpu_info(cpuinfo: str | Path = "/proc/cpuinfo") -> dict:
    """The CPU an audit's speeds and deltas were measured on, and whether it has VNNI: without it
    (AVX2 only) onnxruntime's uint8 x int8 products can saturate, so an int8 build's |delta P| may
    differ from one CPU to another."""
    import platform

    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path(cpuinfo).read_text(encoding="utf-8", errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and value.strip():
                model = value.strip()
            elif key.strip() in ("flags", "Features") and not flags:
                flags = set(value.split())
    except OSError:
        return {"model": model, "int8": "unknown (no /proc/cpuinfo)"}
    vnni = sorted(flags.intersection(VNNI_FLAGS))
    if vnni:
        int8 = f"VNNI ({', '.join(vnni)})"
    elif "avx2" in flags:
        int8 = "AVX2 without VNNI: uint8 x int8 products can saturate"
    else:
        int8 = "no x86 int8 dot-product flags"
    return {"model": model, "int8": int8}


def measured_on(audit: dict) -> str | None:
    """The CPU an audit ran on as "model (its int8 kernels)", or None for an audit that predates the record."""
    cpu = audit.get("cpu")
    return f"{cpu['model']} ({cpu['int8']})" if cpu else None


_TEMPLATES = jinja2.Environment(loader=jinja2.PackageLoader("forensics.int8"), autoescape=True)


@dataclass
class Tolerance:
    """What the int8 build must keep; ``None`` leaves a check out."""

    min_agreement: float = 0.99
    max_auc_delta: float = 0.01
    max_abs_delta: float | None = None

    def check(self, comparison: dict) -> list[str]:
        failures = []
        if comparison["agreement"] < self.min_agreement:
            failures.append(f"agreement {comparison['agreement']:.2%} < {self.min_agreement:.2%}")
        delta = comparison.get("auc_delta")
        if delta is not None and self.max_auc_delta is not None and abs(delta) > self.max_auc_delta:
            failures.append(f"|delta AUC| {abs(delta):.4f} > {self.max_auc_delta:g}")
        if self.max_abs_delta is not None and comparison["max_abs_delta"] > self.max_abs_delta:
            failures.append(f"max |delta P(fake)| {comparison['max_abs_delta']:.3f} > {self.max_abs_delta:g}")
        return failures


@dataclass
class LabelledFaces:
    """Face crops (RGB uint8, any size) with 0 = real / 1 = fake, a source and a name each."""

    crops: list[np.ndarray]
    labels: np.ndarray
    sources: list[str]
    names: list[str]
    skipped: dict[str, int] = field(default_factory=dict)
    origin: str = ""

    def __len__(self) -> int:
        return len(self.crops)


# -- labelled faces ---------------------------------------------------------------------------

def _is_fake_label(text: str) -> bool:
    from forensics.detectors.base import _FAKE_WORDS, _looks_real

    if _looks_real(text):
        return False
    if _FAKE_WORDS.search(text) or text.strip() in ("1",):
        return True
    if text.strip() in ("0",):
        return False
    raise ForensicsError(f"label {text!r} reads as neither real nor fake")


def labelled_files(data: str | Path) -> list[tuple[Path, int, str]]:
    """(image path, 0/1, source) from an ImageFolder tree or a labels.csv."""
    from forensics.media import IMAGE_EXTENSIONS

    data = Path(data)
    rows: list[tuple[Path, int, str]] = []
    if data.is_file() and data.suffix.lower() == ".csv":
        with data.open(newline="", encoding="utf-8") as handle:
            for row in csv.DictReader(handle):
                if not row.get("path") or not row.get("label"):
                    raise ForensicsError(f"{data}: every row needs a path and a label")
                path = (data.parent / row["path"]).resolve()
                if path.suffix.lower() in IMAGE_EXTENSIONS:
                    rows.append((path, int(_is_fake_label(row["label"])), row.get("source") or row["label"]))
    elif data.is_dir():
        for sub in sorted(p for p in data.iterdir() if p.is_dir()):
            try:
                label = int(_is_fake_label(sub.name))
            except ForensicsError:
                continue  # e.g. a masks folder
            for path in sorted(sub.rglob("*")):
                if path.suffix.lower() in IMAGE_EXTENSIONS and "mask" not in path.stem.lower():
                    rows.append((path, label, sub.name))
    else:
        raise ForensicsError(f"{data}: not a folder of class subfolders or a labels .csv")
    if not rows or len({label for _, label, _ in rows}) < 2:
        raise ForensicsError(f"{data}: needs real and fake images (class subfolders such as real/ and fake/)")
    return rows


def faces_from_files(data: str | Path, size: int, margin: float = 0.3, limit: int | None = None, seed: int = 0,
                     face_detector=None, progress: Callable | None = None, framing: str = "box",
                     cut_size: int | None = None, fit_inside: bool = False) -> LabelledFaces:
    """The largest MTCNN face of each labelled image, cropped as analysis crops it (the detector's
    margin, framing, ``cut_size`` and ``fit_inside``). Images without a face or that do not decode
    are skipped and counted."""
    rows = labelled_files(data)  # a path that holds no labelled images is refused before MTCNN (and torch) loads
    from forensics.faces import FaceDetector, crop_face
    from forensics.media import load_image

    if limit and len(rows) > limit:  # a label-stratified, reproducible sample
        rng = np.random.default_rng(seed)
        picked = []
        for label in (0, 1):
            part = [r for r in rows if r[1] == label]
            share = max(1, round(limit * len(part) / len(rows)))
            picked += [part[i] for i in sorted(rng.permutation(len(part))[:share])]
        rows = picked
    detector = face_detector or FaceDetector()
    faces = LabelledFaces([], np.zeros(0, int), [], [], {"no face": 0, "unreadable": 0}, str(data))
    labels = []
    for i, (path, label, source) in enumerate(rows):
        if progress:
            progress(0.3 * i / len(rows), f"finding faces ({i + 1}/{len(rows)})")
        try:
            image = load_image(path)
        except ForensicsError:
            faces.skipped["unreadable"] += 1
            continue
        found = detector.detect(image)
        if not found:
            faces.skipped["no face"] += 1
            continue
        face = max(found, key=lambda f: f.size)
        faces.crops.append(crop_face(image, face, size, margin, framing, cut_size, fit_inside).image)
        labels.append(label)
        faces.sources.append(source)
        faces.names.append(str(path.name))
    faces.labels = np.asarray(labels, int)
    if len(faces) == 0 or len(set(labels)) < 2:
        raise ForensicsError(f"{data}: fewer than one face of each class was found")
    return faces


def faces_from_record(folder: str | Path, data: str | Path, cache: str | Path, limit: int | None = None,
                      split: str = "validation") -> LabelledFaces:
    """A model trained here: its own validation faces (held-out reals, their self-blended fakes
    and held-out fake sources), exactly as ``python -m training evaluate`` scores them, or with
    ``split="training"`` calibration faces from its training side. The training package rebuilds
    them in a process of its own (``python -m training faces``): the library never imports it."""
    import subprocess
    import sys
    import tempfile

    if importlib.util.find_spec("training") is None:
        raise ForensicsError(f"the training package is needed to rebuild a model's {split} faces")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "faces.npz"
        command = [sys.executable, "-m", "training", "faces", "--detector", str(folder), "--data", str(data),
                   "--cache", str(cache), "--split", split, "--out", str(out)]
        done = subprocess.run(command + (["--limit", str(limit)] if limit else []), capture_output=True, text=True)
        if done.returncode != 0:
            lines = done.stderr.strip().splitlines() or [f"exit status {done.returncode}"]
            raise ForensicsError(f"{Path(folder).name}: its {split} faces could not be rebuilt: {lines[-1]}")
        with np.load(out, allow_pickle=False) as saved:
            y, sources = saved["labels"], [str(s) for s in saved["sources"]]
            crops = [saved[f"image_{i}"] for i in range(len(y))]
    return LabelledFaces(crops, y, sources, [f"{s} #{i}" for i, s in enumerate(sources)], {},
                         f"{split} faces of {folder}")


# -- the audit --------------------------------------------------------------------------------

def _scores(detector, crops: Sequence[np.ndarray], batch_size: int = 32) -> np.ndarray:
    return detector.fake_probability(detector.predict_crops(list(crops), batch_size=batch_size))


def _auc(y: np.ndarray, p: np.ndarray) -> float | None:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, p)) if len(np.unique(y)) == 2 else None


def _latency(models: dict, crops: Sequence[np.ndarray], repeats: int) -> dict:
    """p50/p95 ms per call at batch 1 and 8, every model timed in the same interleaved rounds."""
    out: dict[str, dict] = {name: {} for name in models}
    for batch in (1, 8):
        inputs = [models[next(iter(models))].preprocess(list(crops[i : i + batch]))
                  for i in range(0, max(1, len(crops) - batch + 1), batch)][: max(1, repeats if batch == 1 else repeats // 2)]
        times: dict[str, list[float]] = {name: [] for name in models}
        for name, det in models.items():  # warm-up
            det.predict(inputs[0])
        for x in inputs:
            if len(x) != batch:
                continue
            for name, det in models.items():
                start = time.perf_counter()
                det.predict(x)
                times[name].append((time.perf_counter() - start) * 1000)
        for name, values in times.items():
            if values:
                out[name][f"batch_{batch}"] = {"p50_ms": float(np.percentile(values, 50)),
                                               "p95_ms": float(np.percentile(values, 95)), "calls": len(values),
                                               "per_face_ms": float(np.percentile(values, 50)) / batch}
    return out


def _load_time(name: str, rounds: int = 3) -> float:
    from forensics.detectors import load_detector

    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        load_detector(name, cache=False)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def _file_bytes(folder: Path, name: str) -> int:
    path = folder / name
    return path.stat().st_size if path.is_file() else 0


def run_audit(detector: str, faces: LabelledFaces, tolerance: Tolerance | None = None, out: str | Path | None = None,
              repeats: int = 30, maps: bool = True, progress: Callable | None = None) -> dict:
    """Audit ``detector``'s int8 build against its float model on ``faces``; writes audit.json
    (and audit.html, disagreement images) to ``out`` when given. Returns the audit."""
    from forensics.detectors import load_detector, resolve_model_folder
    from forensics.catalog import split_variant
    from forensics.int8.quantize import INT8_NAME, ONNX_NAME, operating_point_threshold

    step = progress or (lambda fraction, text: None)
    tolerance = tolerance or Tolerance()
    base, _ = split_variant(detector)
    folder = resolve_model_folder(base)
    if not (folder / INT8_NAME).is_file():
        raise DetectorError(f"{folder.name}: no int8 build; make it with `python -m forensics quantize --detector {base}`")
    step(0.3, "loading the models")
    models = {"float": load_detector(str(folder), cache=False)}
    if (folder / ONNX_NAME).is_file():
        models["onnx"] = load_detector(f"{folder}:onnx", cache=False)
    models["int8"] = load_detector(f"{folder}:int8", cache=False)
    y = np.asarray(faces.labels, int)
    scores = {}
    for i, (name, det) in enumerate(models.items()):
        step(0.35 + 0.15 * i, f"scoring {len(faces)} faces with the {name} model")
        scores[name] = _scores(det, faces.crops)
    t_float = models["float"].threshold
    t_int8 = models["int8"].threshold  # as deployed: tuned on the calibration faces by `quantize`
    p_float, p_int8 = scores["float"], scores["int8"]
    tuned = operating_point_threshold(p_float, p_int8, t_float)
    float_decisions = p_float >= t_float
    delta = p_int8 - p_float
    comparison = {
        # The int8 build as it is used: its own threshold against the float model at its own.
        "agreement": float(np.mean((p_int8 >= t_int8) == float_decisions)),
        "agreement_at_float_threshold": float(np.mean((p_int8 >= t_float) == float_decisions)),
        "agreement_at_tuned_threshold": float(np.mean((p_int8 >= tuned) == float_decisions)),
        "max_abs_delta": float(np.abs(delta).max()),
        "mean_abs_delta": float(np.abs(delta).mean()),
        "auc_float": _auc(y, p_float),
        "auc_int8": _auc(y, p_int8),
        "float_threshold": float(t_float),
        "int8_threshold_stored": float(models["int8"].threshold),
        "int8_threshold_tuned": float(tuned),
    }
    comparison["auc_delta"] = (None if comparison["auc_float"] is None
                               else comparison["auc_int8"] - comparison["auc_float"])
    step(0.8, "timing the models")
    latency = _latency(models, faces.crops, repeats)
    files = {"float": _file_bytes(folder, "model.safetensors"), "onnx": _file_bytes(folder, ONNX_NAME),
             "int8": _file_bytes(folder, INT8_NAME)}
    loads = {"float": _load_time(str(folder)), "int8": _load_time(f"{folder}:int8")}
    if "onnx" in models:
        loads["onnx"] = _load_time(f"{folder}:onnx")
    table = {}
    for name in models:
        decisions = scores[name] >= t_float
        table[name] = {"roc_auc": _auc(y, scores[name]), "accuracy": float(np.mean(decisions == y)),
                       "file_bytes": files[name], "load_s": loads[name], "latency": latency[name],
                       "runtime": models[name].describe().get("runtime", "PyTorch (float32)")}
    b1 = {name: latency[name].get("batch_1", {}).get("p50_ms") for name in models}
    speed = {f"{name}_vs_float_batch_1": (b1["float"] / b1[name]) if b1.get(name) else None for name in models
             if name != "float"}
    if b1.get("onnx") and b1.get("int8"):  # the rule for shipping an int8 build: 1.5x its ONNX float build
        speed["int8_vs_onnx_batch_1"] = b1["onnx"] / b1["int8"]
    failures = tolerance.check(comparison)
    disagree = np.flatnonzero((p_int8 >= t_int8) != float_decisions)
    order = disagree[np.argsort(-np.abs(delta[disagree]))] if len(disagree) else disagree
    result = {
        "detector": models["float"].describe(),
        "folder": str(folder),
        "faces": {"count": len(faces), "fake": int(y.sum()), "real": int(len(y) - y.sum()), "origin": faces.origin,
                  "skipped": faces.skipped, "sources": sorted(set(faces.sources))},
        "comparison": comparison,
        "models": table,
        "speedup": speed,
        "threads": int(__import__("torch").get_num_threads()),
        "cpu": cpu_info(),
        "tolerance": {**asdict(tolerance), "passed": not failures, "failures": failures},
        "disagreements": [{"index": int(i), "name": faces.names[i], "source": faces.sources[i], "label": int(y[i]),
                           "p_float": float(p_float[i]), "p_int8": float(p_int8[i])} for i in order],
        "scores": {"label": y.tolist(), "float": p_float.round(5).tolist(), "int8": p_int8.round(5).tolist(),
                   "source": faces.sources},
    }
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        if maps and len(order):
            step(0.9, "explaining the faces where they disagree")
            strips = disagreement_strips(models["float"], models["int8"], [faces.crops[i] for i in order[:MAX_DISAGREEMENTS]])
            for entry, strip in zip(result["disagreements"], strips):
                name = f"disagreement-{entry['index']:05d}.png"
                cv2.imwrite(str(out / name), cv2.cvtColor(strip, cv2.COLOR_RGB2BGR))
                entry["image"] = name
        write_audit(result, out)
    step(1.0, "done")
    return result


def disagreement_strips(float_detector, int8_detector, crops: Sequence[np.ndarray], alpha: float = 0.5,
                        size: int = 160) -> list[np.ndarray]:
    """Per face, one image: the crop, then the float model's maps, then the int8 model's (each
    model's own class-"fake" maps; the int8 build has no gradients, so no Grad-CAM)."""
    from forensics.explain import explain
    from forensics.overlay import overlay

    strips = []
    float_exp = explain(float_detector, float_detector.preprocess(list(crops)),
                        [m for m in FLOAT_MAPS], target="fake")
    int8_exp = explain(int8_detector, int8_detector.preprocess(list(crops)), list(INT8_MAPS), target="fake")
    for i, crop in enumerate(crops):
        base = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)
        tiles = [_caption(base, "face")]
        for tag, exp in (("float", float_exp), ("int8", int8_exp)):
            for method, heat in exp.maps.items():
                heat = cv2.resize(heat[i], (size, size), interpolation=cv2.INTER_LINEAR)
                tiles.append(_caption(overlay(base, heat, alpha=alpha), f"{tag} {method}"))
        strips.append(np.concatenate(tiles, axis=1))
    return strips


def _caption(tile: np.ndarray, text: str) -> np.ndarray:
    out = np.ascontiguousarray(tile).copy()
    cv2.rectangle(out, (0, 0), (out.shape[1], 18), (0, 0, 0), -1)
    cv2.putText(out, text, (4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (255, 255, 255), 1, cv2.LINE_AA)
    return out


# -- reports ----------------------------------------------------------------------------------

def summary_rows(audit: dict) -> list[list[str]]:
    """The side-by-side table: one row per measure, one column per model."""
    names = list(audit["models"])
    rows = [["", *[audit["models"][n]["runtime"] for n in names]]]

    def fmt(value, pattern):
        return "n/a" if value is None else pattern.format(value)

    rows.append(["ROC-AUC", *[fmt(audit["models"][n]["roc_auc"], "{:.4f}") for n in names]])
    rows.append(["accuracy at the float threshold", *[fmt(audit["models"][n]["accuracy"], "{:.2%}") for n in names]])
    rows.append(["file size", *[f"{audit['models'][n]['file_bytes'] / 1e6:.2f} MB" for n in names]])
    rows.append(["load time", *[f"{audit['models'][n]['load_s']:.2f} s" for n in names]])
    for batch in (1, 8):
        key = f"batch_{batch}"
        rows.append([f"latency p50 / p95, batch {batch}",
                     *[(f"{audit['models'][n]['latency'][key]['p50_ms']:.1f} / "
                        f"{audit['models'][n]['latency'][key]['p95_ms']:.1f} ms")
                       if key in audit["models"][n]["latency"] else "n/a" for n in names]])
    vs_float = {n: 1.0 if n == "float" else audit["speedup"].get(f"{n}_vs_float_batch_1") for n in names}
    rows.append(["speed-up vs PyTorch float, batch 1",
                 *[fmt(vs_float[n], "{:.2f}x") for n in names]])
    if "onnx" in names:  # the rule for shipping an int8 build is measured against its ONNX float build
        rows.append(["speed-up vs ONNX float, batch 1",
                     *[fmt(vs_float[n] / onnx if (onnx := vs_float["onnx"]) and vs_float[n] else None, "{:.2f}x")
                       for n in names]])
    return rows


def verdict_line(audit: dict) -> str:
    c, t = audit["comparison"], audit["tolerance"]
    auc = "n/a" if c["auc_delta"] is None else f"{c['auc_delta']:+.4f}"
    head = "PASSED" if t["passed"] else "FAILED: " + "; ".join(t["failures"])
    return (f"int8 audit {head} (agreement {c['agreement']:.2%}, delta AUC {auc}, max |delta P| "
            f"{c['max_abs_delta']:.3f}, {audit['faces']['count']} faces)")


def figures(audit: dict) -> dict:
    """Plotly figures: float vs int8 scores, the |delta| histogram, latency."""
    import plotly.graph_objects as go

    s = audit["scores"]
    y, pf, pq = np.array(s["label"]), np.array(s["float"]), np.array(s["int8"])
    scatter = go.Figure()
    for label, colour, name in ((0, "#2b8a3e", "real"), (1, "#c92a2a", "fake")):
        m = y == label
        scatter.add_trace(go.Scattergl(x=pf[m], y=pq[m], mode="markers", name=name,
                                       marker=dict(size=5, color=colour, opacity=0.6)))
    t = audit["comparison"]["float_threshold"]
    scatter.add_shape(type="line", x0=0, y0=0, x1=1, y1=1, line=dict(color="grey", dash="dot"))
    scatter.add_vline(x=t, line=dict(color="black", dash="dash"))
    scatter.add_hline(y=t, line=dict(color="black", dash="dash"))
    scatter.update_layout(title="P(fake): float (x) vs int8 (y)", xaxis_title="float", yaxis_title="int8",
                          height=420, margin=dict(l=40, r=10, t=50, b=40))
    hist = go.Figure(go.Histogram(x=pq - pf, nbinsx=60, marker_color="#5c7cfa"))
    hist.update_layout(title="int8 - float, P(fake)", height=320, margin=dict(l=40, r=10, t=50, b=40))
    names = list(audit["models"])
    latency = go.Figure()
    for batch in (1, 8):
        key = f"batch_{batch}"
        latency.add_trace(go.Bar(name=f"batch {batch} (p50 per face)", x=names,
                                 y=[audit["models"][n]["latency"].get(key, {}).get("per_face_ms") for n in names]))
    latency.update_layout(title="Latency per face (ms)", barmode="group", height=320,
                          margin=dict(l=40, r=10, t=50, b=40))
    return {"scatter": scatter, "delta": hist, "latency": latency}


def write_audit(audit: dict, out: str | Path) -> tuple[Path, Path]:
    """audit.json and a self-contained audit.html in ``out`` (written through temporary files)."""
    out = Path(out)
    json_path, html_path = out / AUDIT_NAME, out / "audit.html"
    write_atomic(json_path, audit)
    images = [{"data": base64.b64encode((out / e["image"]).read_bytes()).decode(), "name": e["name"],
               "label": e["label"], "p_float": e["p_float"], "p_int8": e["p_int8"]}
              for e in audit["disagreements"] if "image" in e and (out / e["image"]).is_file()]
    parts = [fig.to_html(full_html=False, include_plotlyjs="inline" if i == 0 else False)
             for i, fig in enumerate(figures(audit).values())]
    html = _TEMPLATES.get_template("audit.html").render(audit=audit, verdict=verdict_line(audit),
                                                        rows=summary_rows(audit), figures=parts, images=images,
                                                        measured_on=measured_on(audit))
    write_atomic(html_path, html)
    return json_path, html_path


def read_audit(folder: str | Path) -> dict | None:
    """The audit kept with a detector (``<folder>/audit/audit.json``, from ``audit --bundle``)."""
    return read_json(Path(folder) / "audit" / AUDIT_NAME)
