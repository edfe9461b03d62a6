"""`python -m lab verify` refuses a report path it cannot write before anything starts, and
makes a missing report directory (fast: it stops before the image, the daemon or a guest)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lab.__main__ import writable

PROJECT_DIR = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("option", ["--json", "--html"])
def test_an_unwritable_report_path_fails_at_once(tmp_path: Path, option: str) -> None:
    blocked = tmp_path / "a-file"
    blocked.write_text("not a directory")
    result = subprocess.run(
        [sys.executable, "-m", "lab", "verify", "--config", "Pulumi.seed.yaml", option, str(blocked / "report")],
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert f"lab verify: {option} {blocked / 'report'}: cannot write there" in result.stdout + result.stderr
    assert "── image" not in result.stdout + result.stderr


def test_a_missing_report_directory_is_made(tmp_path: Path) -> None:
    target = tmp_path / "lab-reports" / "nested" / "seed.json"
    assert writable(target) and target.parent.is_dir()


def test_a_directory_is_not_a_report_file(tmp_path: Path) -> None:
    assert not writable(tmp_path)
