"""Deepfake Forensics Studio: `python app.py` serves the app (the Space's entry point).

The page is built in ``ui/`` (one module per tab); every analysis is an API endpoint
(``analyze_image``, ``analyze_video``, ...) callable with the media alone.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading

import gradio as gr
import numpy as np

import ui
from forensics import access, catalog, held
from forensics import settings as deployment
from forensics.core import ForensicsError
from ui.common import engine
from ui.train import open_store


def _concurrency(text: str) -> int:
    """--concurrency (or FORENSICS_CONCURRENCY): a whole number of at least 1."""
    if not str(text).strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of at least 1 (FORENSICS_CONCURRENCY)")
    return int(text)


def main() -> None:
    parser = argparse.ArgumentParser(description="Serve the Deepfake Forensics Studio app")
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
    parser.add_argument("--share", action="store_true", help="ask Gradio for a public share link")
    parser.add_argument("--concurrency", type=_concurrency, default=os.environ.get("FORENSICS_CONCURRENCY", "2"),
                        help="analyses run at once (memory grows with it; default 2)")
    args = parser.parse_args()
    deployment.serving(args.host, args.share)  # the mode follows where the app listens
    try:
        deployment.check()  # a bad setting stops the server here, in one line, not each request later
    except ForensicsError as exc:
        print(f"app.py: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    held.limit_malloc_arenas()  # before Gradio's threads: memory that levels off (docs/deployment.md)
    print(deployment.describe(), flush=True)
    demo = ui.build_demo()
    demo.queue(default_concurrency_limit=args.concurrency, max_size=64)
    demo.launch(server_name=args.host, server_port=args.port, share=args.share, show_error=True,
                max_file_size=deployment.max_upload_bytes(),  # larger uploads are refused before they are written
                theme=gr.themes.Soft(), css=ui.CSS, prevent_thread_lock=True, auth=access.admin_login())
    open_store()  # jobs interrupted by a restart are marked failed; queued ones start
    threading.Thread(target=warm_up, daemon=True).start()
    demo.block_thread()


def warm_up() -> None:
    """Import the model code and load the default detector and MTCNN while the page is already up."""
    try:
        engine.face_detector().detect(np.zeros((64, 64, 3), "uint8"))
        if catalog.default_detector():
            engine.get_detector(None)
    except Exception as exc:  # a broken bundled model must not stop the server; requests report it
        print(f"warm-up: {exc}")


if __name__ == "__main__":
    main()
