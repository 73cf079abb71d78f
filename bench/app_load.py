"""Measure the app as a person meets it: time to first page, one-face image latency with all four
maps, 8 concurrent image requests, and the server's peak memory while it analyses a video.

    .venv/bin/python bench/app_load.py [--detector DIR] [--video PATH] [--json FILE]

An analysis answers once (verdict, boxes, maps); its reports are built when asked for
(``/image_reports``, ``/video_reports``: "reports" times that call). "answer" times are to the
update a client receives (``Client.submit``), "complete" to the end of the call; "engine" is the
same analysis in this process with no server (``forensics.service.analyze`` and the maps), so
answer/engine is the server's overhead as a ratio taken in one run.

Without ``--detector`` a ViT-Small-sized stand-in (timm ``vit_small_patch16_224``, random weights,
224 px) is written to a temporary folder and served: until a trained default is bundled it has the
default's size and cost, not its answers. Peak memory is the server process's ``VmHWM``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from soak import settled_client, start_server  # bench/ is on the path when this file runs as a script

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / ".." / "shared" / "data"


def _stand_in(folder: Path) -> Path:
    sys.path.insert(0, str(ROOT))
    from forensics.detectors.random_models import make_random_detector

    path = make_random_detector(folder / "vit-small-stand-in", "vit-small", size=224)
    config = json.loads((path / "config.json").read_text())
    config["forensics"]["trained"] = True  # served for this measurement only, from a temporary folder
    (path / "config.json").write_text(json.dumps(config))
    return path


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _streamed(client, path: str, api_name: str) -> tuple[float, float, list]:
    """(seconds to the first update, seconds to the last, the last outputs) of one request."""
    from gradio_client import handle_file

    start = time.perf_counter()
    job = client.submit(handle_file(path), api_name=api_name)
    first = None
    while not job.done():
        if first is None and job.status().code.name in ("ITERATING", "FINISHED") and job.outputs():
            first = time.perf_counter() - start
        time.sleep(0.005)
    outputs = job.result()
    complete = time.perf_counter() - start
    client.wait_for_stream_close()  # before the next call (bench/soak.py's settled_client)
    return (first if first is not None else complete), complete, outputs


def _engine(zoo: Path, media: str, repeats: int, frames: int = 16) -> list[float]:
    """The same analysis (all maps, no reports) in this process, no server: the floor."""
    sys.path.insert(0, str(ROOT))
    os.environ["FORENSICS_DETECTORS"] = str(zoo)
    from forensics import catalog, service
    from ui.present import face_panel

    name = next(iter(n for n in catalog.available_detectors() if (zoo / n).is_dir()))
    service.analyze(media, name, frames=frames)  # load once
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        session = service.analyze(media, name, frames=frames)
        face_panel(session.result, 0)
        times.append(time.perf_counter() - t)
    return times


def _timed(call) -> tuple[float, object]:
    start = time.perf_counter()
    out = call()
    return time.perf_counter() - start, out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--detector", default=None, help="a trained model folder (default: a ViT-S stand-in)")
    parser.add_argument("--image", default=str(DATA / "photos/face_recognition/obama.jpg"))
    parser.add_argument("--video", default=str(DATA / "video/dfdc_abofeumbvv.mp4"))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", dest="json_out", default=None)
    args = parser.parse_args()

    from gradio_client import handle_file

    zoo = Path(tempfile.mkdtemp(prefix="app-load-"))
    if args.detector:
        shutil.copytree(args.detector, zoo / Path(args.detector).name)
    else:
        _stand_in(zoo)
    env = dict(os.environ, FORENSICS_DETECTORS=str(zoo), GRADIO_ANALYTICS_ENABLED="False", HF_HUB_OFFLINE="1")
    start = time.perf_counter()
    url, proc = start_server(env, zoo / "app.log", niceness=0, poll_s=0.1)  # the page first served, timed
    report: dict = {"first_page_s": round(time.perf_counter() - start, 2)}
    try:
        peaks = report["peak_rss_mb_after"] = {}
        client = settled_client(url)
        client.predict(handle_file(args.image), api_name="/analyze_image")  # first request: models load
        engine = _engine(zoo, args.image, args.repeats)
        answers, completes, reports = [], [], []
        for _ in range(args.repeats):
            answer, complete, outputs = _streamed(client, args.image, "/analyze_image")
            answers.append(answer)
            completes.append(complete)
            seconds, result = _timed(lambda: client.predict(api_name="/image_reports"))  # this session's photo
            reports.append(seconds)
        peaks["single_images"] = round(_peak_rss_mb(proc.pid), 1)
        report["one_face_image_s"] = {"answer_median": round(statistics.median(answers), 3),
                                      "complete_median": round(statistics.median(completes), 3),
                                      "engine_median": round(statistics.median(engine), 3),
                                      "answer_over_engine": round(statistics.median(answers) / statistics.median(engine), 2),
                                      "reports_on_request_median": round(statistics.median(reports), 3),
                                      "max_answer": round(max(answers), 3), "runs": args.repeats}

        def one(_):
            t = time.perf_counter()
            settled_client(url).predict(handle_file(args.image), api_name="/analyze_image")
            return time.perf_counter() - t

        with ThreadPoolExecutor(8) as pool:
            concurrent = sorted(pool.map(one, range(8)))
        peaks["eight_concurrent"] = round(_peak_rss_mb(proc.pid), 1)
        report["eight_concurrent_s"] = {"median": round(statistics.median(concurrent), 2),
                                        "p95": round(concurrent[-1], 2), "all": [round(x, 2) for x in concurrent]}
        answer, complete, video_out = _streamed(client, args.video, "/analyze_video")
        video_reports, _ = _timed(lambda: client.predict(api_name="/video_reports"))
        peaks["video"] = report["server_peak_rss_mb"] = round(_peak_rss_mb(proc.pid), 1)  # its reports too
        video_engine = _engine(zoo, args.video, 1)[0]
        report["video_s"] = {"answer": round(answer, 2), "complete": round(complete, 2),
                             "engine": round(video_engine, 2), "answer_over_engine": round(answer / video_engine, 2),
                             "reports_on_request": round(video_reports, 2)}
        report["video_faces"] = len(video_out[4]["data"])
        report["detector"] = args.detector or "vit_small_patch16_224 stand-in (random weights, 224 px)"
        report["reports_written"] = [Path(p).name for p in result] if isinstance(result, list) else None
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        shutil.rmtree(zoo, ignore_errors=True)
    text = json.dumps(report, indent=2)
    print(text)
    if args.json_out:
        Path(args.json_out).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
