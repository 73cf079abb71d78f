"""``python -m forensics``: list detectors, analyse media, benchmark explanations, run background jobs
and push or pull models on the Hugging Face Hub."""

from __future__ import annotations

import argparse
import os
import contextlib
import json
import sys
import time
from pathlib import Path
from typing import Sequence

from forensics.int8 import cli as cli_int8
from forensics.jobs import cli as cli_jobs
from forensics.core import ForensicsError

EXIT_INPUT_FAILED = 2


def _add_analyze(sub) -> None:
    p = sub.add_parser("analyze", help="score the faces in images and videos, with explanation maps")
    p.add_argument("paths", nargs="+", metavar="PATH", help="image or video files")
    p.add_argument("--detector", default=None, help="bundled name, model folder or Hub id (default: the bundled default)")
    p.add_argument("--frames", type=int, default=None, help="frames sampled evenly over each video's duration (default 16)")
    p.add_argument("--fps", type=float, default=None, help="sample videos at this rate instead of --frames")
    p.add_argument("--look-again", type=int, default=2, metavar="N",
                   help="a video whose verdict is a close call, or with no face found, is sampled again at about "
                        "twice the frames, up to N times (default 2: up to 4x --frames; 0 never)")
    p.add_argument("--explain", default="all", help="attention,rollout,gradcam,gradcam++ | all | none (default all)")
    p.add_argument("--target", default="fake", help="class the maps explain: fake, real, predicted, a label or an index")
    p.add_argument("--head-fusion", default="mean", choices=["mean", "max", "min"], help="rollout head fusion")
    p.add_argument("--discard-ratio", type=float, default=0.9, help="rollout: share of weakest attention dropped")
    p.add_argument("--class-agnostic", action="store_true", help="attention maps without the target's gradient weighting")
    p.add_argument("--faithfulness", action="store_true",
                   help="score each map: deletion/insertion AUC against a random map (forward passes only)")
    p.add_argument("--faithfulness-steps", type=int, default=None,
                   help="points per deletion/insertion curve (default: FaithfulnessOptions.steps, 4)")
    p.add_argument("--out", default="forensics_out", help="folder for the map PNGs (default ./forensics_out)")
    p.add_argument("--json", dest="json_out", default=None, metavar="FILE|-", help="write one JSON object per input (JSON Lines)")
    p.add_argument("--alpha", type=float, default=0.5, help="overlay opacity in the PNGs (default 0.5)")
    p.add_argument("--gamma", type=float, default=1.0, help="overlay gamma; < 1 brightens weak areas (default 1)")
    p.add_argument("--colormap", default="jet", choices=["jet", "turbo", "inferno", "magma", "viridis"])
    p.add_argument("--min-face", type=int, default=40, help="smallest face side in pixels (default 40)")
    p.add_argument("--face-confidence", type=float, default=0.9, help="MTCNN confidence threshold (default 0.9)")
    p.add_argument("--whole-image", action="store_true",
                   help="with no face found, score the whole image anyway (outside what detectors are trained "
                        "for: a score, never a verdict)")
    p.add_argument("--no-fallback", action="store_true", help=argparse.SUPPRESS)  # the default now; kept for scripts
    p.add_argument("--allow-untrained", action="store_true", help=argparse.SUPPRESS)


def _add_bench(sub) -> None:
    p = sub.add_parser("bench", help="time forward, forward+backward and the four-map explanation")
    p.add_argument("--model", default="vit-small", help="vit-small (default), or a model folder")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--json", dest="json_out", default=None, metavar="FILE|-")


def _add_explain_bench(sub) -> None:
    # The bench needs the training data's records and self-blending (the training package), which the
    # library never imports: it runs `python -m training explain-bench` as a process, like the jobs do.
    p = sub.add_parser("explain-bench", add_help=False,
                       help="score every explanation method of a detector: faithfulness, sanity, localisation "
                            "(python -m training explain-bench --help for its options)")
    p.add_argument("bench_args", nargs=argparse.REMAINDER)  # listed in --help; main() forwards the words as given


def cmd_explain_bench(bench_args: Sequence[str]) -> int:
    import importlib.util
    import subprocess

    if importlib.util.find_spec("training") is None:
        raise ForensicsError("explain-bench needs the project's training package (run it from the repository)")
    return subprocess.call([sys.executable, "-m", "training", "explain-bench", *bench_args])


class _Parser(argparse.ArgumentParser):
    """argparse's own refusals (an unknown option, a bad choice, a missing path) exit 1 like every other
    usage error, so that 2 keeps meaning "an input failed"; its subcommands' parsers are of this class too."""

    def error(self, message: str):
        self.print_usage(sys.stderr)
        self.exit(1, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m forensics", description="Deepfake Forensics Studio")
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("detectors", help="list the detectors that can be chosen")
    d.add_argument("--json", action="store_true", help="machine-readable output")
    _add_analyze(sub)
    _add_bench(sub)
    _add_explain_bench(sub)
    cli_jobs.add_parsers(sub)
    cli_int8.add_parsers(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    if words[:1] == ["explain-bench"]:  # argparse's REMAINDER drops leading options: forward them as they are
        try:
            return cmd_explain_bench(words[1:])
        except ForensicsError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    parser = build_parser()
    args, unknown = parser.parse_known_args(words)
    if unknown:  # said by the subcommand's parser, with its usage, not the top level's
        commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
        commands.get(args.command, parser).error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        if args.command == "detectors":
            return cmd_detectors(args)
        if args.command == "analyze":
            return cmd_analyze(args)
        if args.command == "bench":
            _check_bench(args)
            from forensics.bench import run_bench

            return run_bench(args)
        if args.command in cli_jobs.COMMANDS:
            return cli_jobs.run(args)
        if args.command in cli_int8.COMMANDS:
            return cli_int8.run(args)
    except (ForensicsError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `... | head` closed the pipe: what was wanted was read; no traceback
        sys.stderr.close()  # nothing more can be said there either (and Python would complain at exit)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return 1


def _check_bench(args) -> None:
    """``bench``'s refusals that need no torch: sizes and counts out of range, a model that resolves to
    nothing (the folder it resolved to is what gets timed)."""
    from forensics.hub_download import check_detector

    for name, value, low, high in (("--batch", args.batch, 1, 1024), ("--size", args.size, 16, 1024),
                                   ("--repeats", args.repeats, 1, 10_000)):
        if not low <= value <= high:
            raise ValueError(f"{name} must be from {low} to {high}, not {value}")
    if args.model == "vit-small":
        if args.size % 16:
            raise ValueError(f"--size {args.size} must be a multiple of 16 (the ViT's patch size)")
    else:
        args.model = check_detector(args.model, allow_untrained=True)


def cmd_detectors(args) -> int:
    from forensics.catalog import ONNX_BUILDS, onnx_builds, split_variant
    from forensics.detector_notes import detector_note
    from forensics.detectors import available_detectors, load_detector
    from forensics.detectors.onnx_family import VARIANT_KINDS

    rows = []
    for name, folder in available_detectors().items():
        try:
            row = load_detector(folder).describe()
            rows.append({**row, "name": name, "model_name": row["name"], "note": detector_note(name).short})
        except ForensicsError as exc:
            rows.append({"name": name, "path": str(folder), "error": str(exc)})
    for name, folder in onnx_builds().items():  # listed from disk: loading each ONNX session would take seconds
        base, variant = split_variant(name)
        path = folder / ONNX_BUILDS[variant]
        rows.append({"name": name, "kind": VARIANT_KINDS[variant], "build_of": base,
                     "bytes": path.stat().st_size, "path": str(folder), "note": detector_note(name).short})
    if args.json:
        print(json.dumps(rows, indent=2))
    elif not rows:
        print("No trained detector is bundled yet: pass --detector with a model folder or a Hub id.")
    else:
        for row in rows:
            if "error" in row:
                print(f"{row['name']:<20} unavailable: {row['error']}")
            elif "build_of" in row:
                print(f"{row['name']:<20} {row['kind']:<10} {'':>12}  {_size(row['bytes']):>8} file  "
                      f"ONNX build of {row['build_of']}  {row['note']}")
            else:
                print(f"{row['name']:<20} {row['kind']:<10} {_count(row['parameters']):>6} params  "
                      f"threshold {row['threshold']:.3f}  {row['note']}")
    return 0


def _count(n: int) -> str:
    """2379394 -> '2.4M', 51521 -> '51.5k', 4633 -> '4.6k'."""
    return f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.1f}k" if n >= 1e3 else str(n)


def _size(n: int) -> str:
    """Bytes as the cards, the README and the audit give them (decimal: 4,377,293 -> '4.4 MB')."""
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.0f} kB"


def default_detector_name() -> str:
    from forensics.catalog import default_detector

    name = default_detector()
    if name is None:
        raise ForensicsError("no trained detector is bundled yet: pass --detector with a model folder or a Hub id")
    return name


def cmd_analyze(args) -> int:
    from forensics import settings
    from forensics.catalog import faithfulness_steps, parse_methods
    from forensics.hub_download import check_detector
    from forensics.results import AnalysisResult

    if args.frames is not None and args.fps is not None:
        raise ValueError("--frames and --fps both choose the frames sampled from a video: give one")
    if args.frames is None:
        args.frames = 16
    if args.frames < 1:
        raise ValueError("--frames must be at least 1")
    if args.look_again < 0:
        raise ValueError("--look-again must be 0 or more")
    if args.fps is not None and not 0 < args.fps < float("inf"):
        raise ValueError(f"--fps must be a positive number, not {args.fps:g}")
    if not 0.0 <= args.discard_ratio < 1.0:
        raise ValueError(f"--discard-ratio must be in [0, 1), not {args.discard_ratio:g}")
    from forensics.overlay import OverlayStyle

    style = OverlayStyle(args.alpha, args.colormap, args.gamma)  # --alpha, --gamma out of range: refused before loading
    methods = parse_methods(args.explain)
    if args.faithfulness and not methods:
        raise ValueError("--faithfulness scores the maps: it needs --explain other than none")
    if args.faithfulness_steps is not None:
        faithfulness_steps(args.faithfulness_steps)
    if methods:
        _check_output_folder(args.out, "--out")
    if args.json_out and args.json_out != "-":
        _check_output_file(args.json_out, "--json")
    chosen = args.detector or default_detector_name()
    allowed = settings.allowed_detector(chosen)
    located = check_detector(allowed, allow_untrained=args.allow_untrained)  # a bad name: refused before torch
    refused = _refused_inputs(args.paths, settings.media_limits())
    if all(path in refused for path in args.paths):  # nothing to analyse: said before torch and the detector load
        with _result_sink(args.json_out) as emit:
            for path in args.paths:
                emit(AnalysisResult(input=str(path), kind=refused[path][0], detector=chosen, error=refused[path][1]))
        return EXIT_INPUT_FAILED

    from tqdm import tqdm

    from forensics.analysis import Analyzer
    from forensics.detectors import load_detector
    from forensics.explain import ExplainOptions
    from forensics.explain.faithfulness import FaithfulnessOptions
    from forensics.faces import FaceDetector
    from forensics.render.maps import write_maps

    target: int | str = int(args.target) if args.target.isdigit() else args.target
    detector = load_detector(located, allow_untrained=args.allow_untrained)
    analyzer = Analyzer(
        detector,
        FaceDetector(min_face_size=args.min_face, confidence=args.face_confidence),
        methods=methods,
        target=target,
        options=ExplainOptions(args.head_fusion, args.discard_ratio, not args.class_agnostic),
        frames=args.frames,
        fps=args.fps,
        look_again=args.look_again,
        fallback_whole_image=args.whole_image and not args.no_fallback,
        limits=settings.media_limits(),  # the same upload limits as the app and its API
        faithfulness=(FaithfulnessOptions() if args.faithfulness_steps is None else
                      FaithfulnessOptions(steps=args.faithfulness_steps)) if args.faithfulness else None,
        detector_name=chosen,  # as given (name, folder, Hub id, ":int8"): what finds its card again
    )
    failed = 0
    told_skipped = methods == parse_methods("all")  # maps asked for by name: say once which cannot be drawn
    with _result_sink(args.json_out) as emit:
        bar = tqdm(args.paths, desc="analysing", unit="input", disable=None, file=sys.stderr)
        for path in bar:
            name = Path(path).name[:30]
            bar.set_postfix_str(name)
            result, frames = analyzer.analyze_with_frames(path, progress=lambda _f, s: bar.set_postfix_str(f"{name}: {s}"))
            if methods and not result.error:  # the maps' PNGs: their own step, timed apart from computing them
                started = time.perf_counter()
                write_maps(result, frames, args.out, style)
                result.timings_ms["render"] = (time.perf_counter() - started) * 1000.0
            failed += result.error is not None
            skipped = result.explanations.skipped if result.explanations else {}
            if skipped and not told_skipped:
                told_skipped = True
                bar.write("note: no " + "; no ".join(f"{m} map: {why}" for m, why in skipped.items()), file=sys.stderr)
            emit(result)
    return EXIT_INPUT_FAILED if failed else 0


def _blocking_file(path: Path) -> Path | None:
    """The first existing part of ``path``'s folders (``path`` itself included) that is not a folder."""
    for part in (path, *path.parents):
        if part.exists():
            return None if part.is_dir() else part
    return None


def _check_output_folder(folder: str, option: str) -> None:
    """Refused before anything is analysed: a folder for the maps that is a file, or lies under one."""
    blocking = _blocking_file(Path(folder))
    if blocking is not None:
        raise ValueError(f"{option} {folder}: {blocking} is a file, not a folder")


def _check_output_file(path: str, option: str) -> None:
    """Refused before anything is analysed: a JSON file that is a folder, or lies under a file."""
    target = Path(path)
    if target.is_dir():
        raise ValueError(f"{option} {path} is a folder: give a file name")
    blocking = _blocking_file(target.parent)
    if blocking is not None:
        raise ValueError(f"{option} {path}: {blocking} is a file, not a folder")


def _refused_inputs(paths: Sequence[str], limits) -> dict[str, tuple[str | None, str]]:
    """The inputs that cannot be analysed, told before the detector is loaded (``forensics.media.check_file``:
    type, presence, size, and an image's header), each with its kind (None: not a supported type) and one-line
    error."""
    from forensics.core import MediaError
    from forensics.media import check_file, media_kind

    refused = {}
    for path in paths:
        try:
            check_file(path, limits, header=True)
        except MediaError as exc:
            try:
                kind = media_kind(path)
            except MediaError:
                kind = None
            refused[path] = (kind, str(exc))
    return refused


@contextlib.contextmanager
def _result_sink(json_out: str | None):
    """``emit(result)`` for each input: its JSON object to ``json_out`` (a file, or "-" for stdout),
    and its summary line on stdout unless the JSON goes there."""
    if json_out and json_out != "-":
        Path(json_out).parent.mkdir(parents=True, exist_ok=True)
    sink = sys.stdout if json_out == "-" else open(json_out, "w", encoding="utf-8") if json_out else None

    def emit(result) -> None:
        if sink is not None:
            sink.write(json.dumps(result.to_dict()) + "\n")
            sink.flush()
        if sink is not sys.stdout:
            print(_summary_line(result))

    try:
        yield emit
    finally:
        if sink is not None and sink is not sys.stdout:
            sink.close()


def _summary_line(result) -> str:
    if result.error:
        return f"ERROR  {result.error}"
    where = f"{result.kind}  {result.input}  ({result.timings_ms.get('total', 0):.0f} ms)"
    if result.label == "no_face":
        score = ("" if result.fake_probability is None else
                 f"  whole-image score {result.fake_probability:.2f} (outside the detector's training, not a verdict)")
        from forensics.analysis import LOOKED_AGAIN, SMALL_FACES_ONLY

        said = "".join(f"\n  {note}" for note in result.notes if note.startswith((SMALL_FACES_ONLY, LOOKED_AGAIN)))
        return f"no face found: no verdict{score}  {where}{said}"
    from forensics.analysis import LOOKED_AGAIN
    from forensics.detector_notes import CAUTION_PREFIXES

    faces = sum(not f.fallback for f in result.faces)
    threshold = "-" if result.threshold is None else f"{result.threshold:.3f}"  # the JSON keeps every digit
    cautions = "".join(f"\n  {note}" for note in result.notes if note.startswith((LOOKED_AGAIN, *CAUTION_PREFIXES)))
    return (f"{result.label or '-':<7} P(fake)={result.fake_probability:.3f}  threshold={threshold}  "
            f"faces={faces}  {where}{cautions}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
