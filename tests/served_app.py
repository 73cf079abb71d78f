"""Serving app.py for tests, as `python app.py` runs it: a free port, its log, waiting for the page."""

from __future__ import annotations

import functools
import importlib.util
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import ROOT

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(log_dir: Path, env: dict):
    """Start app.py on a free port with ``env``; returns (url, process, log file)."""
    port = free_port()
    log = open(Path(log_dir) / "app.log", "w+")
    proc = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--port", str(port)], cwd=ROOT, env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    return f"http://127.0.0.1:{port}/", proc, log


def wait_served(url: str, proc, log, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            if proc.poll() is not None:
                log.seek(0)
                pytest.fail(f"app.py exited early:\n{log.read()}")
            time.sleep(0.3)
    proc.kill()
    pytest.fail(f"app.py did not serve its page within {timeout:.0f} s")


def stop(proc, log) -> str:
    """Stop the server; returns its log."""
    proc.terminate()
    proc.wait(timeout=20)
    log.seek(0)
    text = log.read()
    log.close()
    return text


def assert_clean_log(text: str) -> None:
    """A served app may log one-line gr.Error refusals, never a crash."""
    assert "Traceback" not in text or "gradio.exceptions.Error" in text, text[-3000:]


def base_env(**changes) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FORENSICS_ADMIN")}
    env.update(GRADIO_ANALYTICS_ENABLED="False", HF_HUB_OFFLINE="1", **changes)
    return env


def api_client(url: str):
    """A gradio_client ``Client`` that waits for its event stream to close after each call
    (bench/soak.py's ``settled_client``: gradio_client 2.x races itself on back-to-back calls)."""
    return _bench_soak().settled_client(url)


@functools.cache
def _bench_soak():
    spec = importlib.util.spec_from_file_location("soak", ROOT / "bench" / "soak.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
