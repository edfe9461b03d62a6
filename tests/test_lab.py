"""The lab scenario on real guests (slow: `python -m pytest -m lab`). Each run boots what the
program rendered for a stack, applies its Commands, and checks balance, update and delete;
the figures land in lab-reports/<stack>.json."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT_DIR = Path(__file__).resolve().parent.parent
REPORTS = PROJECT_DIR / "lab-reports"


@pytest.mark.lab
@pytest.mark.parametrize("config", ["Pulumi.seed.yaml", "tests/Pulumi.wrr3.yaml"])
def test_lab_verify(config: str) -> None:
    REPORTS.mkdir(exist_ok=True)
    report_path = REPORTS / Path(config).name.replace("Pulumi.", "").replace(".yaml", ".json")
    report_path.unlink(missing_ok=True)
    result = subprocess.run(
        [sys.executable, "-m", "lab", "verify", "--config", config, "--json", str(report_path)],
        cwd=PROJECT_DIR,
        timeout=2400,
    )
    report = json.loads(report_path.read_text())
    failed = [check for check in report["checks"] if not check["ok"]]
    assert failed == []
    assert result.returncode == 0
    assert report["distributions"]["after_create"]["failed"] == 0
    assert report["distributions"]["after_update"]["ok"]
