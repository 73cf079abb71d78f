"""Soak the served app: many analyses from concurrent clients, and the server's memory over time.

    nice -n 10 .venv/bin/python bench/soak.py [--requests 200] [--clients 8] [--idle 45] [--out docs/soak]

Starts ``app.py`` on a free loopback port in public mode (as a Space runs it; or pass ``--url`` and
``--pid`` of a running server), then sends ``--requests`` analyses through ``gradio_client`` from
``--clients`` threads: images and videos from ``../shared/data`` (the bundled examples without it)
and bad files among them (text named .jpg, a truncated JPEG, an empty PNG, random bytes named .mp4).
Each client starts a new session (a new visitor) every ``--session-every`` requests. The server's
resident memory (RSS) is sampled every half second, and for ``--idle`` seconds after the last
answer, so that what the server keeps with nothing to do (after its idle trim) is measured apart
from what it holds while busy. A bad file must get a one-line error; any other
error, a multi-line message or a good file refused counts as unexpected.

Writes ``soak.json`` (every request, every sample, the summary) and ``soak.html`` (a Plotly chart
of RSS and completed requests over time) under ``--out``. The figures in docs/deployment.md come
from it.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / ".." / "shared" / "data"
EXAMPLES = ROOT / "assets" / "examples"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(env: dict, log_path: Path, niceness: int = 10, poll_s: float = 0.5) -> tuple[str, subprocess.Popen]:
    """``app.py`` on a free loopback port (niced); returns its URL and process once the page serves
    (asked every ``poll_s``: bench/app_load.py times the first page with it)."""
    port = free_port()
    log = open(log_path, "w")
    proc = subprocess.Popen(["nice", "-n", str(niceness), sys.executable, str(ROOT / "app.py"), "--port", str(port)],
                            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 180
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return url, proc
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"app.py exited early; see {log_path}")
            time.sleep(poll_s)
    proc.kill()
    raise RuntimeError(f"app.py did not serve within 180 s; see {log_path}")


def settled_client(url: str):
    """A gradio_client ``Client`` for callers that call the served app several times in a row.

    gradio_client 2.x races itself on a second call made right after a first: the server ends the
    event stream (``close_stream``) once the first call completes, and if the next call is registered
    before the client's reader thread has read that message, it joins the closing stream and is
    answered with ``concurrent.futures.CancelledError`` instead of its result. This client waits,
    after each call, until its reader has closed (the server sends ``close_stream`` straight after
    the result), so the next call opens a stream of its own.
    """
    from gradio_client import Client

    class SettledClient(Client):
        def predict(self, *args, **kwargs):
            try:
                return super().predict(*args, **kwargs)
            finally:
                self.wait_for_stream_close()

        def wait_for_stream_close(self, timeout: float = 10) -> None:
            deadline = time.time() + timeout
            while time.time() < deadline:
                with self.pending_lock:  # the reader clears stream_open under this lock as it reads close_stream
                    if not self.stream_open:
                        return
                time.sleep(0.01)

    return SettledClient(url, verbose=False)


def make_bad_files(folder: Path) -> list[Path]:
    """Files a careless or hostile visitor sends: each must be refused in one line."""
    folder.mkdir(parents=True, exist_ok=True)
    jpeg = (EXAMPLES / "astronaut.jpg").read_bytes()
    files = {"notes.jpg": b"this is not a picture\n", "truncated.jpg": jpeg[:2048], "empty.png": b"",
             "noise.mp4": random.Random(0).randbytes(64 * 1024)}
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return [folder / name for name in files]


def media_files() -> tuple[list[Path], list[Path]]:
    """(images, videos): real photos and clips from ../shared/data, else the bundled examples."""
    images = sorted(p for sub in ("photos/face_recognition", "photos/deepface", "photos/crowds")
                    for p in (DATA / sub).glob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    videos = sorted(p for p in (DATA / "video").glob("*.mp4") if p.stat().st_size < 4 * 2**20)
    images = images or [EXAMPLES / "astronaut.jpg", EXAMPLES / "chelsea-no-face.jpg"]
    return images, videos or [EXAMPLES / "astronaut-pan.mp4"]


def schedule(n: int, images: list[Path], videos: list[Path], bad: list[Path], seed: int = 0,
             video_share: float = 0.15, bad_share: float = 0.15) -> list[tuple[str, Path]]:
    """``n`` requests in a fixed random order: ("image" | "video" | "bad", file)."""
    rng = random.Random(seed)
    jobs = []
    for i in range(n):
        roll = rng.random()
        if roll < bad_share:
            jobs.append(("bad", bad[i % len(bad)]))
        elif roll < bad_share + video_share:
            jobs.append(("video", rng.choice(videos)))
        else:
            jobs.append(("image", rng.choice(images)))
    return jobs


class RssSampler(threading.Thread):
    """The server's resident memory every ``interval`` seconds, with how many requests were done."""

    def __init__(self, pid: int, done: list, interval: float = 0.5):
        super().__init__(daemon=True)
        import psutil

        self.process, self.done, self.interval = psutil.Process(pid), done, interval
        self.samples: list[tuple[float, float, int]] = []  # (seconds, RSS MB, requests done)
        self.start_time = time.time()
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            self.sample()
            self._halt.wait(self.interval)

    def sample(self) -> None:
        try:
            rss = self.process.memory_info().rss / 2**20
        except Exception:  # the server is gone: the summary will say so
            return
        self.samples.append((round(time.time() - self.start_time, 2), round(rss, 1), len(self.done)))

    def stop(self) -> None:
        self._halt.set()
        self.join()
        self.sample()


def _one(client, kind: str, path: Path, frames: int, methods: list[str] | None) -> tuple[bool, str]:
    from gradio_client import handle_file

    extra = {} if methods is None else {"methods": methods}
    try:
        if kind == "video" or (kind == "bad" and path.suffix == ".mp4"):
            out = client.predict(video=handle_file(str(path)), frames=frames, api_name="/analyze_video", **extra)
        else:
            out = client.predict(image=handle_file(str(path)), api_name="/analyze_image", **extra)
        return True, str(out[0].get("label"))
    except Exception as exc:  # the server's one-line refusal arrives as an exception
        return False, f"{type(exc).__name__}: {exc}"


def run_soak(url: str, pid: int, jobs: list[tuple[str, Path]], clients: int = 8, frames: int = 8,
             session_every: int = 5, methods: list[str] | None = None, log=print, idle_s: float = 0.0) -> dict:
    """Send ``jobs`` from ``clients`` threads (a new session every ``session_every`` requests each)
    and sample the server's RSS throughout; returns the requests, the samples and a summary."""
    records: list[dict] = []
    sampler = RssSampler(pid, records)
    sampler.start()
    lock = threading.Lock()

    def worker(slot: int) -> None:
        mine = jobs[slot::clients]
        client = None
        for i, (kind, path) in enumerate(mine):
            if client is None or i % session_every == 0:
                client = settled_client(url)
            start = time.time()
            ok, message = _one(client, kind, path, frames, methods)
            record = {"client": slot, "kind": kind, "file": path.name, "ok": ok, "message": message[:300],
                      "seconds": round(time.time() - start, 2), "at": round(time.time() - sampler.start_time, 2)}
            good_refusal = kind == "bad" and not ok and "\n" not in message.strip() and "internal error" not in message
            record["expected"] = (ok and kind != "bad") or good_refusal
            with lock:
                records.append(record)
                if len(records) % 10 == 0:
                    log(f"{len(records)}/{len(jobs)} done, RSS {sampler.samples[-1][1] if sampler.samples else 0:.0f} MB")

    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(worker, range(clients)))
    busy = len(sampler.samples)
    if idle_s > 0:  # no request: the server's idle trim (forensics.held.IdleTrim, after 30 s) hands memory back
        log(f"idle for {idle_s:.0f} s")
        time.sleep(idle_s)
    sampler.stop()
    summary = summarise(records, sampler.samples[:busy] or sampler.samples)
    if idle_s > 0 and sampler.samples:
        summary["idle_s"] = idle_s
        summary["rss_after_idle_mb"] = sampler.samples[-1][1]  # what the server keeps with nothing to do
    return {"requests": records, "samples": sampler.samples, "summary": summary}


def summarise(records: list[dict], samples: list[tuple[float, float, int]]) -> dict:
    rss = [s[1] for s in samples]
    half = [s[1] for s in samples if s[2] >= len(records) / 2]
    unexpected = [r for r in records if not r["expected"]]
    return {
        "requests": len(records),
        "images": sum(r["kind"] == "image" for r in records),
        "videos": sum(r["kind"] == "video" for r in records),
        "bad_files": sum(r["kind"] == "bad" for r in records),
        "bad_files_refused_in_one_line": sum(r["kind"] == "bad" and r["expected"] for r in records),
        "unexpected_errors": len(unexpected),
        "unexpected": [f"{r['file']}: {r['message']}" for r in unexpected][:20],
        "peak_rss_mb": max(rss) if rss else None,
        "final_rss_mb": rss[-1] if rss else None,
        "rss_at_half_mb": half[0] if half else None,
        "peak_rss_second_half_mb": max(half) if half else None,
        "seconds": samples[-1][0] if samples else None,
        "median_seconds": {kind: _median([r["seconds"] for r in records if r["kind"] == kind and r["ok"]])
                           for kind in ("image", "video")},
    }


def _median(values: list[float]) -> float | None:
    values = sorted(values)
    return values[len(values) // 2] if values else None


def write_outputs(report: dict, out: Path) -> tuple[Path, Path]:
    """``soak.json`` and a Plotly chart ``soak.html`` (RSS and requests done over time)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    out.mkdir(parents=True, exist_ok=True)
    json_path = out / "soak.json"
    json_path.write_text(json.dumps(report, indent=1), encoding="utf-8")
    t, rss, done = zip(*report["samples"]) if report["samples"] else ((), (), ())
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    fig.add_trace(go.Scatter(x=t, y=rss, name="server RSS (MB)", line={"color": "#c0392b"}), secondary_y=False)
    fig.add_trace(go.Scatter(x=t, y=done, name="requests done", line={"color": "#2c3e50", "dash": "dot"}),
                  secondary_y=True)
    s = report["summary"]
    fig.update_layout(title=f"Soak: {s['requests']} requests ({s['images']} images, {s['videos']} videos, "
                            f"{s['bad_files']} bad files), {s['unexpected_errors']} unexpected errors; "
                            f"peak RSS {s['peak_rss_mb']:.0f} MB, final {s['final_rss_mb']:.0f} MB",
                      xaxis_title="seconds", template="plotly_white", height=480)
    fig.update_yaxes(title_text="RSS (MB)", rangemode="tozero", secondary_y=False)
    fig.update_yaxes(title_text="requests done", rangemode="tozero", secondary_y=True)
    html_path = out / "soak.html"
    fig.write_html(html_path, include_plotlyjs="cdn")
    return json_path, html_path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--frames", type=int, default=8, help="frames sampled per video")
    parser.add_argument("--session-every", type=int, default=5, help="requests per session (then a new visitor)")
    parser.add_argument("--url", default=None, help="a running server (default: start app.py in public mode)")
    parser.add_argument("--pid", type=int, default=None, help="the running server's process id (with --url)")
    parser.add_argument("--out", default=str(ROOT / "docs" / "soak"))
    parser.add_argument("--idle", type=float, default=45.0,
                        help="seconds of sampling with no request after the last answer (past the 30 s idle trim)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="soak-"))
    proc = None
    try:
        if args.url:
            if not args.pid:
                parser.error("--url needs --pid (the server's process, whose memory is sampled)")
            url, pid = args.url, args.pid
        else:
            env = dict(os.environ, FORENSICS_MODE="public", GRADIO_ANALYTICS_ENABLED="False", HF_HUB_OFFLINE="1",
                       FORENSICS_HOME=str(work / "home"), GRADIO_TEMP_DIR=str(work / "gradio"))
            url, proc = start_server(env, work / "app.log")
            pid = proc.pid  # `nice` execs the interpreter: same process
        images, videos = media_files()
        jobs = schedule(args.requests, images, videos, make_bad_files(work / "bad"))
        print(f"soak: {len(jobs)} requests from {args.clients} clients to {url} (server pid {pid})", flush=True)
        report = run_soak(url, pid, jobs, args.clients, args.frames, args.session_every,
                          log=lambda text: print(text, flush=True), idle_s=args.idle)
        report["settings"] = {"clients": args.clients, "frames": args.frames, "session_every": args.session_every,
                              "server": "started by soak.py, public mode" if proc else url, "cpus": os.cpu_count()}
        if proc is not None:
            report["summary"]["server_alive_at_end"] = proc.poll() is None
            report["summary"]["gradio_temp_mb"] = round(_tree_mb(work / "gradio"), 1)
        json_path, html_path = write_outputs(report, Path(args.out))
        print(json.dumps(report["summary"], indent=1))
        print(f"wrote {json_path} and {html_path}")
        return 0 if report["summary"]["unexpected_errors"] == 0 else 1
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(work, ignore_errors=True)


def _tree_mb(folder: Path) -> float:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20 if folder.is_dir() else 0.0


if __name__ == "__main__":
    sys.exit(main())
