"""Stopping a lab run (slow: `python -m pytest -m lab`): SIGINT, SIGTERM and SIGHUP at any phase
tear down what the run started, exactly as a failure does, and a second signal does not
abandon the teardown; after a SIGKILL, `lab down` finds and removes what the run left. Each
test looks for the run's daemons, guests, namespace, work directory and record afterwards."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from lab.host import runs
from lab.host.runs import RUNS_DIR

PROJECT_DIR = Path(__file__).resolve().parent.parent
STACK = "Pulumi.seed.yaml"
# A line the run prints when it enters the phase.
PHASES = {"image": "── image", "plan": "── plan", "up": "── pulumi up", "booting": ": kernel (", "requests": "── balance"}
# "booting": the engine has started the domains (a guest's console shows its kernel), so the
# teardown has QEMUs and a daemon to stop and lasts seconds, not the blink it takes at up's start.
PHASE_TIMEOUT_SECONDS = {"image": 120, "plan": 1200, "up": 300, "booting": 600, "requests": 1800}
EXIT_TIMEOUT_SECONDS = 180


def start(tmp_path: Path) -> tuple[subprocess.Popen[bytes], Path]:
    log = tmp_path / "run.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "lab", "verify", "--config", STACK, "--json", str(tmp_path / "report.json")],
            cwd=PROJECT_DIR,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=runs.with_stop_signals_default,
        )
    return process, log


def wait_for_phase(process: subprocess.Popen[bytes], log: Path, phase: str) -> dict[str, Any]:
    """Waits (bounded) until the run enters `phase`; returns its run record."""
    deadline = time.monotonic() + PHASE_TIMEOUT_SECONDS[phase]
    while PHASES[phase] not in log.read_text(errors="replace"):
        assert process.poll() is None, f"the run ended before {phase}:\n{log.read_text(errors='replace')[-2000:]}"
        assert time.monotonic() < deadline, f"no {phase} phase after {PHASE_TIMEOUT_SECONDS[phase]} s"
        time.sleep(0.2)
    record: dict[str, Any] = json.loads((RUNS_DIR / f"lvslab-{process.pid}.json").read_text())
    return record


def run_until(tmp_path: Path, phase: str) -> tuple[subprocess.Popen[bytes], Path, dict[str, Any]]:
    """A `lab verify` of the seed, once it has entered `phase`: the process, its log, its record."""
    process, log = start(tmp_path)
    return process, log, wait_for_phase(process, log, phase)


def what_is_left(record: dict[str, Any]) -> list[str]:
    left = []
    if record["namespace"] in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout.split():
        left.append(f"namespace {record['namespace']}")
    if Path(record["workdir"]).exists():
        left.append(f"work directory {record['workdir']}")
    if (RUNS_DIR / f"{record['namespace']}.json").exists():
        left.append("run record")
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if record["workdir"] in text or f"guest={Path(record['workdir']).name}" in text:
            left.append(f"process {cmdline.parent.name}: {text[:80]}")
    return left


@pytest.mark.lab
@pytest.mark.parametrize(
    ("signum", "phase"),
    [
        (signal.SIGTERM, "image"),
        (signal.SIGINT, "plan"),  # inside Pulumi's engine: deferred, never lost
        (signal.SIGTERM, "up"),
        (signal.SIGINT, "up"),
        (signal.SIGHUP, "up"),
        (signal.SIGHUP, "requests"),
    ],
    ids=lambda value: value.name if isinstance(value, signal.Signals) else value,
)
def test_a_stop_signal_tears_down_everything(tmp_path: Path, signum: signal.Signals, phase: str) -> None:
    process, _, record = run_until(tmp_path, phase)
    process.send_signal(signum)
    assert process.wait(timeout=EXIT_TIMEOUT_SECONDS) == 128 + signum
    assert what_is_left(record) == []


@pytest.mark.lab
def test_a_second_signal_does_not_abandon_the_teardown(tmp_path: Path) -> None:
    process, log, record = run_until(tmp_path, "booting")
    process.send_signal(signal.SIGTERM)
    time.sleep(0.5)  # the teardown is under way
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=EXIT_TIMEOUT_SECONDS) == 128 + signal.SIGTERM
    assert "finishing the teardown" in log.read_text(errors="replace")
    assert what_is_left(record) == []


@pytest.mark.lab
def test_lab_down_removes_what_a_killed_run_left(tmp_path: Path) -> None:
    process, _, record = run_until(tmp_path, "up")
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=EXIT_TIMEOUT_SECONDS)
    assert what_is_left(record) != []  # SIGKILL cannot be caught: the run left everything
    down = subprocess.run([sys.executable, "-m", "lab", "down"], cwd=PROJECT_DIR, capture_output=True, text=True, timeout=300)
    assert down.returncode == 0, down.stdout + down.stderr
    assert what_is_left(record) == []
