"""Lint and types are part of the test command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent


def test_ruff() -> None:
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "."], cwd=PROJECT_DIR, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format() -> None:
    result = subprocess.run([sys.executable, "-m", "ruff", "format", "--check", "."], cwd=PROJECT_DIR, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy() -> None:
    result = subprocess.run([sys.executable, "-m", "mypy"], cwd=PROJECT_DIR, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
