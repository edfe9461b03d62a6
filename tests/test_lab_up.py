"""`python -m lab up` (slow: `python -m pytest -m lab`): `pulumi up` of the seed against a private
libvirtd, left running; the lines it prints work as printed (a request to the VIP, `pulumi stack
output` against its stack), and `lab down` removes it all."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT_DIR = Path(__file__).resolve().parent.parent
UP_TIMEOUT_SECONDS = 1800


def printed(output: str, pattern: str) -> str:
    """The instruction line `lab up` printed that matches `pattern`, without its comment."""
    line = next((line for line in output.splitlines() if re.search(pattern, line)), None)
    assert line is not None, f"no line matching {pattern!r} in:\n{output[-3000:]}"
    return line.split("   #", 1)[0].strip()


@pytest.mark.lab
@pytest.mark.beyond_ci
def test_lab_up_leaves_a_stack_a_user_can_reach_and_run_pulumi_against() -> None:
    up = subprocess.run(
        [sys.executable, "-m", "lab", "up", "--config", "Pulumi.seed.yaml"],
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
        timeout=UP_TIMEOUT_SECONDS,
    )
    try:
        output = up.stdout + up.stderr
        assert up.returncode == 0, output[-3000:]
        # One bounded request, as printed (curl -si URL): answered by a web node.
        curl = printed(output, r"ip netns exec \S+ curl -si ").replace("curl -si", "curl -si -m 10", 1)
        answer = subprocess.run(["sh", "-c", curl], capture_output=True, text=True, timeout=30)
        assert answer.stdout.startswith("HTTP/1.1 200") and re.search(r"(?im)^x-lvs-backend: web\d", answer.stdout), answer
        outputs = subprocess.run(
            ["sh", "-c", printed(output, r"pulumi stack output$") + " --json"], capture_output=True, text=True, timeout=120
        )
        assert outputs.returncode == 0, outputs.stderr
        assert json.loads(outputs.stdout)["vipUrl"] in curl
    finally:
        down = subprocess.run([sys.executable, "-m", "lab", "down"], cwd=PROJECT_DIR, capture_output=True, text=True, timeout=300)
    assert down.returncode == 0 and "removing lab up" in down.stdout + down.stderr, down.stdout + down.stderr
