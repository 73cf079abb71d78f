"""``python -m forensics quantize`` and ``python -m forensics audit``: ONNX float/int8 builds of a
detector and the float-vs-int8 audit (:mod:`forensics.int8.quantize`, :mod:`forensics.int8.audit`)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from forensics.core import ForensicsError, write_atomic

COMMANDS = ("quantize", "audit")
DEFAULT_DATA = "../shared/data/labels.csv"
DEFAULT_CACHE = ".cache/crops256"
EXIT_AUDIT_FAILED = 3


def add_parsers(sub) -> None:
    q = sub.add_parser("quantize", help="export a detector to ONNX and build its int8 model beside it")
    q.add_argument("--detector", required=True, help="bundled name or model folder")
    q.add_argument("--mode", default="auto", choices=["auto", "dynamic", "static"],
                   help="auto: dynamic for transformer-style models, static (calibrated) for CNNs")
    q.add_argument("--calibration", default=None,
                   help="folder (class subfolders) or labels.csv of face images for calibration and the int8 "
                        "threshold (default: the model's own training faces, from its training record)")
    q.add_argument("--data", default=DEFAULT_DATA, help="the training data, for the default calibration faces")
    q.add_argument("--cache", default=DEFAULT_CACHE, help="face-crop cache of the training data")
    q.add_argument("--limit", type=int, default=256, help="calibration faces (default 256)")
    q.add_argument("--no-attention", action="store_true", help="export without attention outputs (no attention maps)")
    q.add_argument("--max-delta", type=float, default=0.015,
                   help="static int8: keep the fewest nodes float that hold P(fake) within this on every calibration "
                        "face (default 0.015, a margin under the audit's 0.02)")
    q.add_argument("--reduce-range", action="store_true",
                   help="7-bit weights: int8 products cannot saturate on x86 CPUs without VNNI (AVX2 only), "
                        "at a little precision (docs/int8.md)")
    q.add_argument("--allow-untrained", action="store_true", help=argparse.SUPPRESS)

    a = sub.add_parser("audit", help="float vs int8: agreement, AUC, size, load time and latency, side by side")
    a.add_argument("--detector", required=True, help="bundled name or model folder with an int8 build")
    a.add_argument("--data", default=None,
                   help="folder (class subfolders such as real/ and fake/) or labels.csv of labelled images "
                        "(default: the model's validation faces, from its training record and ../shared/data)")
    a.add_argument("--cache", default=DEFAULT_CACHE, help="face-crop cache (for the default validation faces)")
    a.add_argument("--limit", type=int, default=None, help="audit at most this many faces (label-stratified)")
    a.add_argument("--out", default=None, help="folder for audit.json, audit.html and the disagreement images "
                                               "(default runs/audit/<detector>)")
    a.add_argument("--min-agreement", type=float, default=0.99, help="tolerance: decision agreement (default 0.99)")
    a.add_argument("--max-auc-delta", type=float, default=0.01, help="tolerance: |delta ROC-AUC| (default 0.01)")
    a.add_argument("--max-abs-delta", type=float, default=None, help="tolerance: max |delta P(fake)| (default: none)")
    a.add_argument("--repeats", type=int, default=30, help="timed calls per model at batch 1 (default 30)")
    a.add_argument("--no-maps", action="store_true", help="skip the maps of the faces where the models disagree")
    a.add_argument("--bundle", action="store_true", help="also keep audit.json in the detector's folder (the app shows it)")
    a.add_argument("--json", action="store_true", help="print the audit as JSON")


def _bar():
    from tqdm import tqdm

    bar = tqdm(total=100, disable=None, file=sys.stderr, bar_format="{l_bar}{bar}| {postfix}")

    def update(fraction: float, text: str) -> None:
        bar.n = int(100 * fraction)
        bar.set_postfix_str(text)
        bar.refresh()

    return bar, update


def _record_available(folder: Path, data: str) -> bool:
    return (folder / "training.json").is_file() and Path(data).exists()


def run(args) -> int:
    if args.command == "quantize":
        return cmd_quantize(args)
    return cmd_audit(args)


def cmd_quantize(args) -> int:
    from forensics.hub_download import check_detector
    from forensics.int8.audit import faces_from_files, faces_from_record, labelled_files

    # Refused before torch is loaded: a bound out of range, a detector or calibration set that is not there.
    if not 0 < args.max_delta < 1:
        raise SystemExit(f"--max-delta must be between 0 and 1, got {args.max_delta:g}")
    name = check_detector(args.detector, allow_untrained=args.allow_untrained)
    if args.calibration:
        labelled_files(args.calibration)
    from forensics.detectors import load_detector
    from forensics.int8.quantize import build_onnx, choose_mode

    detector = load_detector(name, allow_untrained=args.allow_untrained, cache=False)
    folder = Path(detector.path)
    crops = []
    if args.calibration:
        crops = faces_from_files(args.calibration, detector.input_size, limit=args.limit,
                                 **detector.info.crop_options()).crops
    elif _record_available(folder, args.data):
        crops = faces_from_record(folder, args.data, args.cache, args.limit, split="training").crops
    mode = choose_mode(detector) if args.mode == "auto" else args.mode
    if mode == "static" and not crops:
        raise ForensicsError("static int8 needs calibration faces: pass --calibration (a folder or labels.csv)")
    bar, update = _bar()
    try:
        record = build_onnx(detector, crops, mode, attention=not args.no_attention, progress=update,
                            max_delta=args.max_delta, reduce_range=args.reduce_range)
    finally:
        bar.close()
    f, q = record["float"], record["int8"]
    print(f"{folder}/model.onnx: {f['bytes'] / 1e6:.2f} MB ({f['exporter']}, opset {f['opset']}, outputs "
          f"{', '.join(f['outputs'])}; max |logit error| vs PyTorch {f['max_abs_error_vs_pytorch']['logits']:.1e})")
    line = f"{folder}/model_quantized.onnx: {q['bytes'] / 1e6:.2f} MB ({q['mode']} int8 on {', '.join(q['int8_ops'])}"
    if "float_units" in q:
        line += f"; {q['float_units']} quantizable nodes kept float (the most sensitive, by measurement)"
    if "threshold" in q:
        line += (f"; on {len(crops)} calibration faces: max |delta P| {q['calibration_max_abs_delta']:.4f}, "
                 f"int8 threshold {q['threshold']:.4f}")
    print(line + ")")
    return 0


def cmd_audit(args) -> int:
    import shutil

    from forensics.catalog import split_variant
    from forensics.hub_download import resolve_model_folder
    from forensics.int8.audit import (Tolerance, faces_from_files, faces_from_record, labelled_files, run_audit,
                                      verdict_line)

    base, _ = split_variant(args.detector)
    folder = resolve_model_folder(base)
    if args.data:
        from forensics.catalog import config_labels, read_config
        from forensics.core import DetectorError

        labelled_files(args.data)  # a missing folder is refused before torch is loaded
        from forensics.detectors.base import DetectorInfo

        config = read_config(folder)  # the faces are cut as the detector's loader reads its config: checked first
        try:
            info = DetectorInfo.from_dict({"name": folder.name, **config.get("forensics", {}),
                                           "labels": config_labels(config)})
        except (DetectorError, TypeError, ValueError) as exc:
            raise DetectorError(f"{folder.name}: config.json: {exc}") from None
        faces = faces_from_files(args.data, info.input_size, limit=args.limit, **info.crop_options())
    elif _record_available(folder, DEFAULT_DATA):
        faces = faces_from_record(folder, DEFAULT_DATA, args.cache, args.limit)
    else:
        raise ForensicsError(f"{folder.name}: pass --data (labelled images): there is no training record "
                             f"and {DEFAULT_DATA} to rebuild its validation faces from")
    out = Path(args.out or Path("runs") / "audit" / folder.name)
    bar, update = _bar()
    try:
        audit = run_audit(base, faces, Tolerance(args.min_agreement, args.max_auc_delta, args.max_abs_delta), out,
                          repeats=args.repeats, maps=not args.no_maps, progress=update)
    finally:
        bar.close()
    if args.bundle:  # the JSON and the disagreement images; the app draws the rest from them
        kept = folder / "audit"
        kept.mkdir(exist_ok=True)
        images = {entry["image"] for entry in audit["disagreements"] if "image" in entry}
        for stale in kept.glob("disagreement-*.png"):  # an earlier audit's strips go with it
            if stale.name not in images:
                stale.unlink()
        for name in sorted(images):
            shutil.copy(out / name, kept / name)
        write_atomic(kept / "audit.json", audit)
    if args.json:
        print(json.dumps({k: v for k, v in audit.items() if k != "scores"}, indent=2))
    else:
        from forensics.int8.audit import measured_on, summary_rows

        for row in summary_rows(audit):
            print(f"{row[0]:<38}" + "".join(f"{c:>28}" for c in row[1:]))
        print(f"measured on: {measured_on(audit) or '?'}, {audit['threads']} thread(s)")
        print(f"report: {out / 'audit.html'}")
    line = verdict_line(audit)
    print(line, file=sys.stderr if not audit["tolerance"]["passed"] else sys.stdout)
    return 0 if audit["tolerance"]["passed"] else EXIT_AUDIT_FAILED
