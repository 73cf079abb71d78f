"""Serving app.py for tests, as `python app.py` runs it: a free port, its log, waiting for the page."""

from __future__ import annotations

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
    """A gradio_client ``Client`` for tests that call the served app several times in a row.

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
