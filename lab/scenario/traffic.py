"""Requests to the VIP and how they are judged: sequential checks of the scheduler's shares,
bounded loops that run while something changes or breaks, and watchers on the nodes. Every loop
is bounded in count and time, and runs inside the lab's namespace (or on the stack's client).
"""

from __future__ import annotations

import itertools
import shlex
import subprocess
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from components.config import ClusterSettings

from ..guests.cluster import LabCluster
from ..guests.nodes import Node
from ..report.report import Distribution
from .status import Status

REQUEST_TIMEOUT_SECONDS = 10  # curl -m: one request to the VIP
# A distribution check ends after this many requests without an answer: it has failed, and the
# rest could each wait out the timeout (120 of them took 15 minutes once).
GIVE_UP_AFTER_FAILURES = 10
FAULT_INTERVAL_SECONDS = 0.1
FAULT_REQUEST_TIMEOUT_SECONDS = 2
WATCH_INTERVAL_SECONDS = 0.2
WATCH_MAX_SECONDS = 1800
WAIT_SECONDS = 60  # for a fault to show, or to heal, in a director's table or addresses


def expected_shares(settings: ClusterSettings, requests: int) -> tuple[dict[str, float] | None, float]:
    """What the scheduler promises for `requests` sequential requests from one client, and
    the tolerance: rr equal shares (exact), wrr shares by weight (±1 per 100), otherwise
    only that every request is answered. Weight 0 quiesces a server under every scheduler."""
    weights = {web.name: web.weight for web in settings.web_servers}
    active = {name: weight for name, weight in weights.items() if weight > 0}
    if settings.service.persistence > 0:
        return None, 0  # one client sticks to one real server
    if settings.service.scheduler == "rr":
        return {name: (requests / len(active) if name in active else 0.0) for name in weights}, 0
    if settings.service.scheduler == "wrr":
        total = sum(active.values())
        return {name: requests * weights[name] / total for name in weights}, max(1.0, requests / 100)
    return None, 0


def judge(settings: ClusterSettings, lines: list[str], requests: int) -> Distribution:
    counts: Counter[str] = Counter()
    failed = 0
    for line in lines:
        code, _, backend = [*line.split(" ", 2), "", ""][:3]
        if code == "200" and backend:
            counts[backend.strip()] += 1
        else:
            failed += 1
    weights = {web.name: web.weight for web in settings.web_servers}
    expected, tolerance = expected_shares(settings, requests)
    answered = sum(counts.values()) == requests and set(counts) <= set(weights)
    if expected is not None:
        ok = answered and all(abs(counts.get(name, 0) - share) <= tolerance for name, share in expected.items())
    elif settings.service.persistence > 0:
        ok = answered and len(counts) == 1
    else:
        ok = answered
    return Distribution(
        scheduler=settings.service.scheduler,
        weights=weights,
        counts={name: counts.get(name, 0) for name in weights},
        failed=failed,
        expected=expected,
        tolerance=tolerance,
        ok=ok and failed == 0,
        lines=lines,
    )


def request_loop(url: str, count: int, *, interval: float = 0.0, local_ports: str | None = None, give_up_after: int | None = None) -> str:
    """A POSIX shell loop of `count` curl requests, one line each: code, seconds, backend;
    `interval` seconds apart, and from `local_ports` (a range), when given. With
    `give_up_after`, it ends after that many requests without a 200: a check that has failed
    already learns nothing from the rest, each of which may wait out its 10 s."""
    pause = f"sleep {interval}; " if interval else ""
    ports = f"--local-port {local_ports} " if local_ports else ""
    curl = f"curl -s -o /dev/null -m {REQUEST_TIMEOUT_SECONDS} {ports}-w '%{{http_code}} %{{time_total}} %header{{x-lvs-backend}}\\n' {url}"
    if give_up_after is None:
        return f"n=0; while [ $n -lt {count} ]; do n=$((n+1)); {pause}{curl} || true; done"
    return (
        f"n=0; failed=0; while [ $n -lt {count} ] && [ $failed -lt {give_up_after} ]; do n=$((n+1)); {pause}"
        f'answer=$({curl}) || true; echo "$answer"; case $answer in "200 "*) ;; *) failed=$((failed+1));; esac; done'
    )


class Traffic:
    """Requests from the stack's client (else from the lab's namespace)."""

    def __init__(self, cluster: LabCluster, status: Status) -> None:
        self.cluster = cluster
        self.status = status

    def send(self, client: Node | None, url: str, count: int, *, local_ports: str | None = None) -> list[str]:
        """`count` sequential requests to `url`, one line each."""
        timeout = min(count * REQUEST_TIMEOUT_SECONDS, 900) + 60
        loop = request_loop(url, count, local_ports=local_ports, give_up_after=GIVE_UP_AFTER_FAILURES)
        with self.status.activity(f"{count} requests to {url}"):
            result = self.on_client(client, loop, timeout=timeout)
        return [line for line in result.stdout.splitlines() if line.strip()]

    def on_client(self, client: Node | None, script: str, *, timeout: float) -> subprocess.CompletedProcess[str]:
        """A shell script run where the requests come from: the stack's client, else the namespace."""
        if client is not None:
            return client.run(script, timeout=timeout)
        return self.cluster.in_namespace(["sh", "-c", script], timeout=timeout)

    def background(self, client: Node | None, url: str, *, count: int, interval: float) -> subprocess.Popen[bytes]:
        """A bounded request loop against `url` that runs while the caller changes things."""
        loop = request_loop(url, count, interval=interval)
        argv = client.argv(loop) if client is not None else ["sh", "-c", loop]
        return self.cluster.ns.popen(argv, stdout=subprocess.PIPE)

    @staticmethod
    def collect(process: subprocess.Popen[bytes]) -> list[str]:
        output, _ = process.communicate(timeout=900)
        return [line for line in output.decode(errors="replace").splitlines() if line.strip()]


@dataclass(frozen=True)
class Answer:
    """One request of a loop: when it started (host clock), how long it took, what came back."""

    at: float
    seconds: float
    code: str
    backend: str

    @property
    def ok(self) -> bool:
        return self.code == "200" and bool(self.backend)

    @property
    def answered_at(self) -> float:
        return self.at + self.seconds


def request_loop_script(url: str, count: int, stop_file: str) -> str:
    """At most `count` requests, one line each: the start time, the status, the seconds it took
    and the backend; the loop also ends when `stop_file` exists."""
    return (
        f"n=0; while [ $n -lt {count} ] && [ ! -e {shlex.quote(stop_file)} ]; do n=$((n+1)); "
        'printf "%s " "$(date +%s.%N)"; '
        f"curl -s -o /dev/null -m {FAULT_REQUEST_TIMEOUT_SECONDS} "
        f"-w '%{{http_code}} %{{time_total}} %header{{x-lvs-backend}}\\n' {shlex.quote(url)} || echo; "
        f"sleep {FAULT_INTERVAL_SECONDS}; done"
    )


def parse_answers(lines: list[str]) -> list[Answer]:
    answers = []
    for line in lines:
        fields = line.split()
        if not fields:
            continue
        code = fields[1] if len(fields) > 1 else ""
        seconds = float(fields[2]) if len(fields) > 2 else 0.0
        answers.append(Answer(float(fields[0]), seconds, code, fields[3] if len(fields) > 3 else ""))
    return answers


def tally(answers: list[Answer], started: float) -> dict[str, Any]:
    """Counts, every failure with its time, and the whole series for the report's chart
    (seconds from the loop's start, the backend or null for a failure)."""
    return {
        "requests": len(answers),
        "series": [[round(answer.at - started, 2), answer.backend if answer.ok else None] for answer in answers],
        "answers": dict(Counter(answer.backend for answer in answers if answer.ok)),
        "failed": sum(1 for answer in answers if not answer.ok),
        "failures": [
            {"at_s": round(answer.at - started, 1), "answer": f"{answer.code} {answer.backend}".strip() or "no answer"}
            for answer in answers
            if not answer.ok
        ],
    }


def outage_seconds(answers: list[Answer], since: float) -> float:
    """The longest time without an answer after `since`: from the last answer before to the
    first answer after (the loop's own cadence when nothing failed)."""
    answered = sorted(answer.answered_at for answer in answers if answer.ok)
    gaps = [later - earlier for earlier, later in itertools.pairwise(answered) if later > since]
    return round(max(gaps, default=0.0), 1)


def whole_cycles(settings: ClusterSettings, answers: list[Answer]) -> list[Answer]:
    """The first answers that make whole scheduler cycles (rr: one per active server; wrr: the
    sum of the weights), so a window's shares can be judged exactly."""
    active = [web.weight for web in settings.web_servers if web.weight > 0]
    cycle = sum(active) if settings.service.scheduler == "wrr" else len(active)
    return answers[: len(answers) - len(answers) % max(cycle, 1)]


class RequestLoop:
    """A bounded request loop against the VIP from the lab's namespace, ended early by `stop`."""

    def __init__(self, cluster: LabCluster, url: str, *, max_seconds: float) -> None:
        self.cluster = cluster
        self.workdir = Path(tempfile.mkdtemp(prefix="lvs-fault-loop-"))
        self.stop_file = self.workdir / "stop"
        count = int(max_seconds / FAULT_INTERVAL_SECONDS)
        self.process = cluster.ns.popen(["sh", "-c", request_loop_script(url, count, str(self.stop_file))], stdout=subprocess.PIPE)
        self.started = time.time()

    def stop(self) -> list[Answer]:
        self.stop_file.touch()
        output, _ = self.process.communicate(timeout=FAULT_REQUEST_TIMEOUT_SECONDS + 30)
        self.cluster.ns.forget(self.process)
        self.stop_file.unlink()
        self.workdir.rmdir()
        return parse_answers(output.decode(errors="replace").splitlines())


class Watch:
    """A bounded loop on a guest that says whether `test` holds, every WATCH_INTERVAL_SECONDS;
    the host stamps each answer as it arrives and keeps the times it changed. It ends with the
    SSH session (its next line meets a closed pipe) or after WATCH_MAX_SECONDS."""

    def __init__(self, cluster: LabCluster, node: Node, test: str, *, what: str) -> None:
        count = int(WATCH_MAX_SECONDS / WATCH_INTERVAL_SECONDS)
        loop = (
            f"n=0; while [ $n -lt {count} ]; do n=$((n+1)); "
            f"if {test}; then echo yes; else echo no; fi; sleep {WATCH_INTERVAL_SECONDS}; done"
        )
        self.what = what
        self.cluster = cluster
        self.changes: list[tuple[float, bool]] = []
        self._changed = threading.Condition()
        argv = node.argv(f"sudo -n sh -c {shlex.quote(loop)}")
        self.process = cluster.ns.popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            value = raw.strip() == b"yes"
            with self._changed:
                if not self.changes or self.changes[-1][1] != value:
                    self.changes.append((time.time(), value))
                    self._changed.notify_all()

    def wait_for(self, value: bool, *, timeout: float = WAIT_SECONDS) -> float:
        """The host time `test` last turned `value` (at once when it already is)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not self.changes or self.changes[-1][1] != value:
                left = deadline - time.monotonic()
                if left <= 0 or (self.process.poll() is not None and not self._reader.is_alive()):
                    raise TimeoutError(f"{self.what} {'holds' if value else 'ends'}: not within {timeout:.0f} s")
                self._changed.wait(min(left, 1.0))
            return self.changes[-1][0]

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)
        self._reader.join(timeout=10)
        self.cluster.ns.forget(self.process)


def judge_answers(lines: list[str], settings: ClusterSettings) -> Distribution:
    """Answers ("status seconds backend" lines) against the scheduler's shares; none is not enough."""
    distribution = judge(settings, lines, len(lines))
    return distribution if lines else replace(distribution, ok=False)
