"""The lab scenario on real guests, through a private libvirtd (slow: `python -m pytest -m lab`).
Each run hands what the program declared for a stack to libvirt, boots it, applies its
Commands, checks balance, update, the lifecycles and delete, destroys it and looks for
leftovers; the figures land in lab-reports/<stack>.json."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

PROJECT_DIR = Path(__file__).resolve().parent.parent
REPORTS = PROJECT_DIR / "lab-reports"
SCENARIOS = {
    # The seed with every lifecycle, and a second stack defined beside it on the same daemon.
    "seed": ["--config", "Pulumi.seed.yaml", "--second-stack", "tests/Pulumi.wrr3.yaml"],
    # Other subnets, names, weights, scheduler and port, an existing pool, no client.
    "wrr3": ["--config", "tests/Pulumi.wrr3.yaml"],
}


@pytest.fixture(scope="module", params=sorted(SCENARIOS))
def report(request: pytest.FixtureRequest) -> dict[str, Any]:
    REPORTS.mkdir(exist_ok=True)
    path = REPORTS / f"{request.param}.json"
    path.unlink(missing_ok=True)
    result = subprocess.run(
        [sys.executable, "-m", "lab", "verify", *SCENARIOS[request.param], "--json", str(path)], cwd=PROJECT_DIR, timeout=3600
    )
    document: dict[str, Any] = json.loads(path.read_text())
    document["exit_status"] = result.returncode
    return document


@pytest.mark.lab
def test_every_check_held(report: dict[str, Any]) -> None:
    assert [check for check in report["checks"] if not check["ok"]] == []
    assert report["exit_status"] == 0


@pytest.mark.lab
def test_it_ran_through_libvirt(report: dict[str, Any]) -> None:
    assert (report["backend"], report["engine"]) == ("libvirt", "translation")
    created = {change["type"] for change in report["libvirt_changes"]["up"]}
    assert created >= {"Volume", "CloudInitDisk", "Network", "Domain"}
    # The stack creates its pool unless it names an existing one, which the lab then provides.
    provided = [s for s in report["substitutions"] if s["what"].startswith("storage pool ")]
    assert ("Pool" in created) == (provided == [])


@pytest.mark.lab
def test_destroy_left_nothing(report: dict[str, Any]) -> None:
    assert report["leftAfterDestroy"] == []
    assert {change["action"] for change in report["libvirt_changes"]["destroy"]} == {"delete"}


@pytest.mark.lab
def test_every_substitution_says_why(report: dict[str, Any]) -> None:
    what = {substitution["what"] for substitution in report["substitutions"]}
    assert {"libvirt:uri", "lvs:domainType", "lvs:image.source"} <= what
    assert all(substitution["reason"] for substitution in report["substitutions"])


@pytest.mark.lab
def test_balance_and_update(report: dict[str, Any]) -> None:
    assert report["distributions"]["after_create"]["failed"] == 0
    assert report["distributions"]["after_update"]["ok"]
