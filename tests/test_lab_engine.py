"""The program run as a user runs it, through the real Pulumi CLI and the real libvirt and command
providers (scripts/build-engine), against the lab's private libvirtd (slow: `pytest -m lab`).
The figures land in lab-reports/engine-<stack>.json."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

PROJECT_DIR = Path(__file__).resolve().parent.parent
REPORTS = PROJECT_DIR / "lab-reports"
OPERATION_KEYS = {"create", "update", "replace", "delete", "same"}


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    REPORTS.mkdir(exist_ok=True)
    path = REPORTS / "engine-seed.json"
    path.unlink(missing_ok=True)
    result = subprocess.run(
        [sys.executable, "-m", "lab", "verify", "--engine", "pulumi", "--config", "Pulumi.seed.yaml", "--json", str(path)],
        cwd=PROJECT_DIR,
        timeout=3600,
    )
    document: dict[str, Any] = json.loads(path.read_text())
    document["exit_status"] = result.returncode
    return document


@pytest.mark.lab
def test_every_check_held_through_the_engine(report: dict[str, Any]) -> None:
    assert [check for check in report["checks"] if not check["ok"]] == []
    assert report["exit_status"] == 0


@pytest.mark.lab
def test_the_report_names_the_engine_and_its_plugins(report: dict[str, Any]) -> None:
    assert report["engine"] == "pulumi v3.259.0"
    assert report["plugins"] == {"libvirt": "0.5.4", "command": "1.2.1"}


@pytest.mark.lab
def test_every_operation_is_counted_by_the_engine(report: dict[str, Any]) -> None:
    operations = report["engineOperations"]
    assert operations[0]["operation"] == "preview"
    assert {op["operation"] for op in operations} >= {"preview", "up", "refresh", "destroy"}
    for op in operations:
        assert set(op["changes"]) == OPERATION_KEYS and op["seconds"] >= 0, op
    preview, up = operations[0], next(op for op in operations if op["operation"] == "up" and op["changes"]["create"])
    assert preview["changes"]["create"] == up["changes"]["create"] > 0
    destroy = operations[-1]
    assert destroy["operation"] == "destroy" and destroy["changes"]["delete"] == up["changes"]["create"]
    assert report["leftAfterDestroy"] == []


@pytest.mark.lab
def test_what_the_transform_adds_is_listed(report: dict[str, Any]) -> None:
    what = {substitution["what"] for substitution in report["substitutions"]}
    assert {"libvirt:uri", "lvs:image.source", "Domain kernel, initrd, cmdlines", "Domain xml.xslt: <console><log file>"} <= what


@pytest.mark.lab
def test_the_report_says_where_up_went(report: dict[str, Any]) -> None:
    engine = report["timings"]["engine"]
    # The engine stamps its events in whole seconds: one second of slack.
    assert 0 < engine["libvirtSeconds"] <= engine["guestsReadySeconds"] <= engine["commandsSeconds"] + 1 <= engine["upSeconds"] + 2
    assert 0 < engine["engineShare"] < 1
    assert report["scale_in"]["requests"] > 0 and report["scale_in"]["failed"] == 0
