"""The layout's rules, checked on every run: the import-linter contracts in pyproject.toml
(forensics imports neither training, ui nor gradio, layers import downwards only, no cycles) and Ruff."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

BIN = Path(sys.executable).parent


@pytest.mark.parametrize("command", [["lint-imports"], ["ruff", "check", "."]], ids=["import-linter", "ruff"])
def test_the_code_keeps_the_layout_rules(command):
    tool = shutil.which(command[0], path=str(BIN)) or shutil.which(command[0])
    assert tool, f"{command[0]} is not installed: pip install -r requirements-dev.txt"
    proc = subprocess.run([tool, *command[1:]], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
