"""How a fault's request loop is counted (lab/faults.py): answers per backend, and every
failure with its time on the client's clock from the loop's start."""

from __future__ import annotations

import subprocess

from lab.faults import FAULT_REQUEST_TIMEOUT_SECONDS, fault_loop, tally


def test_answers_per_backend_and_failures_with_their_time() -> None:
    lines = ["100.25 200 web1", "100.40 200 web2", "101.00 000 ", "101.50 ", "102.00 503 web1", "102.10 200 web1"]
    assert tally(lines, started=100.0) == {
        "requests": 6,
        "answers": {"web1": 2, "web2": 1},
        "failed": 3,
        "failures": [{"at_s": 1.0, "answer": "000"}, {"at_s": 1.5, "answer": "no answer"}, {"at_s": 2.0, "answer": "503 web1"}],
    }


def test_the_loop_is_bounded_in_count_and_per_request_time() -> None:
    loop = fault_loop("http://12.0.0.1/", 300)
    assert "[ $n -lt 300 ]" in loop and f"-m {FAULT_REQUEST_TIMEOUT_SECONDS} " in loop
    assert subprocess.run(["dash", "-n", "-c", loop], check=False).returncode == 0
