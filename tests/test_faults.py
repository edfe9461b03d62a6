"""How a fault's request loop is read and judged (lab/scenario/faults.py): answers per backend, every
failure with its time, the outage from the last answer before to the first answer after, and
the windows of whole scheduler cycles the shares are judged on."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from lab.host import tools
from lab.scenario.faults import TRANSITION_PATTERN, split_holding
from lab.scenario.state import stack_settings
from lab.scenario.traffic import (
    FAULT_REQUEST_TIMEOUT_SECONDS,
    Answer,
    judge,
    outage_seconds,
    parse_answers,
    request_loop_script,
    tally,
    whole_cycles,
)
from lab.stack.plan import stack_config
from tests.conftest import PROJECT_DIR, TEST_PRIVATE_KEY, TEST_PUBLIC_KEY


def settings_of(stack_file: str) -> Any:
    config = stack_config(PROJECT_DIR / stack_file)
    return stack_settings({**config, "lvs:sshPublicKey": TEST_PUBLIC_KEY, "lvs:sshPrivateKey": TEST_PRIVATE_KEY}, "test")


def test_each_line_becomes_an_answer_and_a_silent_request_a_failure() -> None:
    lines = ["100.25 200 0.012 web1", "100.40 200 0.010 web2", "101.00 000 2.001", "101.50", "102.00 503 0.004 web1"]
    assert parse_answers(lines) == [
        Answer(100.25, 0.012, "200", "web1"),
        Answer(100.40, 0.010, "200", "web2"),
        Answer(101.00, 2.001, "000", ""),
        Answer(101.50, 0.0, "", ""),
        Answer(102.00, 0.004, "503", "web1"),
    ]


def test_answers_per_backend_and_failures_with_their_time() -> None:
    answers = parse_answers(["100.25 200 0.01 web1", "100.40 200 0.01 web2", "101.00 000 2.0", "101.50", "102.00 503 0.01 web1"])
    assert tally(answers, started=100.0) == {
        "requests": 5,
        "series": [[0.25, "web1"], [0.4, "web2"], [1.0, None], [1.5, None], [2.0, None]],
        "answers": {"web1": 1, "web2": 1},
        "failed": 3,
        "failures": [{"at_s": 1.0, "answer": "000"}, {"at_s": 1.5, "answer": "no answer"}, {"at_s": 2.0, "answer": "503 web1"}],
    }


def test_the_outage_runs_from_the_last_answer_before_to_the_first_answer_after() -> None:
    answers = [Answer(10.0, 0.1, "200", "a"), Answer(10.2, 2.0, "000", ""), Answer(12.3, 0.1, "200", "b"), Answer(12.5, 0.1, "200", "a")]
    assert outage_seconds(answers, since=10.15) == 2.3  # 10.1 → 12.4
    # Nothing failed: the loop's own cadence.
    assert outage_seconds(answers[2:], since=12.0) == 0.2
    # A gap that ended before the fault is not the fault's.
    assert outage_seconds(answers, since=12.45) == 0.2


@pytest.mark.parametrize(
    ("stack_file", "cycle"),
    [("Pulumi.ha.yaml", 2), ("tests/Pulumi.ha-tcp.yaml", 4)],  # rr over two; wrr 3:1
)
def test_shares_are_judged_on_whole_scheduler_cycles(stack_file: str, cycle: int) -> None:
    settings = settings_of(stack_file)
    names = [web.name for web in settings.web_servers]
    pattern = [names[0], names[1]] if cycle == 2 else [names[0], names[0], names[1], names[0]]
    answers = [Answer(float(i), 0.01, "200", pattern[i % cycle]) for i in range(cycle * 5 + cycle - 1)]
    window = whole_cycles(settings, answers)
    assert len(window) == cycle * 5
    assert judge(settings, [f"{a.code} {a.seconds} {a.backend}" for a in window], len(window)).ok
    skewed = [Answer(a.at, a.seconds, a.code, names[0]) for a in window]
    assert not judge(settings, [f"{a.code} {a.seconds} {a.backend}" for a in skewed], len(skewed)).ok


def test_the_loop_is_bounded_in_count_and_per_request_time_and_ends_on_its_stop_file(tmp_path: Path) -> None:
    loop = request_loop_script("http://12.0.0.1/", 300, str(tmp_path / "stop"))
    tools.require("dash")
    assert "[ $n -lt 300 ]" in loop and f"-m {FAULT_REQUEST_TIMEOUT_SECONDS} " in loop
    assert subprocess.run(["dash", "-n", "-c", loop], check=False).returncode == 0
    # With the stop file present it sends nothing (the URL would not answer anyway).
    (tmp_path / "stop").touch()
    done = subprocess.run(["dash", "-c", loop], capture_output=True, text=True, timeout=10, check=False)
    assert (done.returncode, done.stdout) == (0, "")


@pytest.mark.parametrize(
    ("line", "counted"),
    [
        ("2026-11-26T12:00:01+0000 ha-director-b Keepalived_vrrp[612]: (VI_EXTERNAL) Entering MASTER STATE", True),
        ("2026-11-26T12:00:01+0000 ha-director-a Keepalived_vrrp[612]: (VI_INTERNAL) Entering BACKUP STATE", True),
        ("x Keepalived_healthcheckers[7]: Removing service [192.168.75.50]:tcp:80 from VS [12.0.0.1]:tcp:80", True),
        ("x Keepalived_healthcheckers[7]: Adding service [192.168.75.50]:tcp:80 to VS [12.0.0.1]:tcp:80", True),
        ("2026-11-26T12:00:01+0000 x Keepalived_vrrp[612]: (VI_EXTERNAL) received lower priority advert", False),
        ("2026-11-26T12:00:01+0000 x Keepalived_healthcheckers[7]: HTTP status code success to [192.168.75.50]:tcp:80", False),
    ],
)
def test_a_quiet_period_counts_state_changes_and_flaps_only(line: str, counted: bool) -> None:
    import re

    assert (re.search(TRANSITION_PATTERN, line) is not None) == counted


@pytest.mark.parametrize(
    ("holders", "split"),
    [
        ({"vip": ["director1"], "gateway": ["director1"]}, None),
        # Issue 21: the backup kept the gateway while the master held both.
        (
            {"vip": ["director1"], "gateway": ["director1", "director2"]},
            "vip held by ['director1']; gateway held by ['director1', 'director2']",
        ),
        ({"vip": ["director1"], "gateway": ["director2"]}, "vip held by ['director1']; gateway held by ['director2']"),
        ({"vip": [], "gateway": []}, "vip held by no director; gateway held by no director"),
    ],
)
def test_each_floating_address_is_held_by_one_and_the_same_director(holders: dict[str, list[str]], split: str | None) -> None:
    assert split_holding(holders) == split
