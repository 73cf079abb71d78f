"""Refresh the README's screenshot (docs/screenshot.png) from the real app in Debian's chromium:
the Image tab after analysing the project's own self-blended example with the bundled default.

    .venv/bin/python scripts/readme-screenshot.py [--out docs/screenshot.png]

It serves app.py on a free port (as the UI tests do), drives the page with Playwright, and writes
the top 1400x1000 pixels of the page once the verdict and the four maps are shown.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from forensics.core import atomic_path  # noqa: E402
from tests.served_app import CHROMIUM, CHROMIUM_ARGS, serve, wait_served  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "screenshot.png"))
    args = parser.parse_args()
    if not Path(CHROMIUM).exists():
        raise SystemExit(f"no chromium at {CHROMIUM} (make system-deps installs it)")
    from playwright.sync_api import expect, sync_playwright

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    with tempfile.TemporaryDirectory() as logs:
        url, proc, log = serve(Path(logs), env)
        try:
            wait_served(url, proc, log)
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                page.goto(url, timeout=60_000)
                expect(page.get_by_text("Deepfake Forensics Studio").first).to_be_visible(timeout=30_000)
                page.locator("input[type=file]").first.set_input_files(
                    str(ROOT / "assets" / "examples" / "astronaut-self-blended.jpg"))
                page.get_by_role("button", name="Analyse image").click()
                expect(page.get_by_text("calibrated P(fake) ≈").first).to_be_visible(timeout=120_000)
                expect(page.get_by_text("Grad-CAM++ ('fake')").first).to_be_visible(timeout=60_000)
                page.evaluate("window.scrollTo(0, 0)")  # the top of the page: the upload may have scrolled it
                page.wait_for_timeout(1000)
                with atomic_path(args.out) as tmp:
                    page.screenshot(path=str(tmp))
                browser.close()
        finally:
            proc.terminate()
            proc.wait(timeout=30)
            log.close()
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
