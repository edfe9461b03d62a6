"""Faults injected under load (issue 7), each a scenario unit like those in `scenarios.py`.

A bounded request loop (`RequestLoop`) runs against the VIP from the host side of the external
network, the lab's namespace, so every request is stamped with the same clock as the fault and
as the watchers (`Watch`): small bounded loops on the directors that say, several times a
second, whether a real server is in the IPVS table or a director holds the floating addresses.
The host stamps each of their answers as it arrives.

- `QuietPeriodStart` / `QuietPeriodEnd`: nothing is broken for a few minutes (the steady units
  run in between); keepalived's journal on every director must show no VRRP transition and no
  real server removed or added (`spuriousTransitions`). The fault units read the same journal
  for the changes they cause, so the count is known to see them.
- `RealServerDown`: Apache stops on a web node; keepalived's check takes it out of the table,
  and puts it back once Apache answers again; the scheduler's shares hold again after.
- `RealServerKilled`: the same with the web node's QEMU process killed outright (no shutdown),
  then the VM started again.
- `DirectorDown`: the QEMU process of the director holding the VIP is killed (a crash); the
  other takes the VIP and the gateway and serves as before; the first comes back and takes
  them back, or not, as `lvs:director.vrrp.preempt` says.
"""

from __future__ import annotations

import itertools
import re
import shlex
import subprocess
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .lifecycles import Converged
from .scenarios import add_user_rules

if TYPE_CHECKING:
    from components.config import ClusterSettings, DirectorPeer

    from .cluster import LabCluster
    from .topology import LabCommand
    from .verify import Scenario

FAULT_INTERVAL_SECONDS = 0.1
FAULT_REQUEST_TIMEOUT_SECONDS = 2
WAIT_SECONDS = 60  # for a fault to show, or to heal, in a director's table or addresses
BEFORE_FAULT_SECONDS = 3  # answers flow before anything breaks
SHARES_WINDOW_SECONDS = 8  # answers after a recovery, judged against the scheduler
WATCH_INTERVAL_SECONDS = 0.2
WATCH_MAX_SECONDS = 1800
QUIET_SECONDS = 150
# How long a pair may take to have one director hold every floating address after a step: an
# election (3 adverts and a skew) and keepalived's watchdog with room to spare.
FLOATING_SETTLE_SECONDS = 30
TRANSITION_PATTERN = "Entering (MASTER|BACKUP|FAULT) STATE|Removing service|Adding service"


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

    def __init__(self, cluster: LabCluster, node: LabCommand, test: str, *, what: str) -> None:
        count = int(WATCH_MAX_SECONDS / WATCH_INTERVAL_SECONDS)
        loop = (
            f"n=0; while [ $n -lt {count} ]; do n=$((n+1)); "
            f"if {test}; then echo yes; else echo no; fi; sleep {WATCH_INTERVAL_SECONDS}; done"
        )
        self.what = what
        self.cluster = cluster
        self.changes: list[tuple[float, bool]] = []
        self._changed = threading.Condition()
        argv = cluster.ssh_argv(node.host, node.user, f"sudo -n sh -c {shlex.quote(loop)}")
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


def holds_floating_test(settings: ClusterSettings) -> str:
    """Both floating addresses on this director: the VIP and the web nodes' gateway."""
    return " && ".join(f"ip -o -4 addr show | grep -qF ' {address}/'" for address in (settings.vip, settings.director.internal_ip))


def floating_addresses(settings: ClusterSettings) -> dict[str, IPv4Address]:
    """What VRRP floats between the directors of a pair, by what it is for."""
    return {"vip": settings.vip, "gateway": settings.director.internal_ip}


def floating_holders(run: Scenario, cluster: LabCluster, state: Converged) -> dict[str, list[str]]:
    """For each floating address, the directors that have it on an interface now: each one is
    asked on its own (a director can hold the gateway without the VIP: issue 21)."""
    settings = run.settings_of(state.config)
    floating = floating_addresses(settings)
    holders: dict[str, list[str]] = {what: [] for what in floating}
    for peer in settings.directors:
        listed = cluster.ssh(*_login(state, peer.name), "ip -o -4 addr show")
        if listed.returncode != 0:
            raise run.failure(f"ip addr on {peer.name} failed: {listed.stderr.strip()}")
        for what, address in floating.items():
            if f" {address}/" in listed.stdout:
                holders[what].append(peer.name)
    return holders


def split_holding(holders: dict[str, list[str]]) -> str | None:
    """What is wrong when the floating addresses are not all held by one and the same director."""
    if all(len(names) == 1 for names in holders.values()) and len({names[0] for names in holders.values()}) == 1:
        return None
    return "; ".join(f"{what} held by {names or 'no director'}" for what, names in holders.items())


def holder(run: Scenario, cluster: LabCluster, state: Converged) -> DirectorPeer:
    """The director that holds every floating address now (the one director without a pair)."""
    holders = floating_holders(run, cluster, state)
    split = split_holding(holders)
    if split:
        raise run.failure(f"the floating addresses are not held by exactly one director: {split}")
    [name] = holders["vip"]
    return next(peer for peer in run.settings_of(state.config).directors if peer.name == name)


def settled_holding(
    run: Scenario, cluster: LabCluster, state: Converged, *, within: float = FLOATING_SETTLE_SECONDS
) -> tuple[dict[str, list[str]], float]:
    """The floating addresses' holders once each is held by one and the same director, or as
    they stand after `within` seconds; and how long that took."""
    started = time.monotonic()
    while True:
        holders = floating_holders(run, cluster, state)
        waited = time.monotonic() - started
        if split_holding(holders) is None or waited >= within:
            return holders, round(waited, 1)
        time.sleep(1.0)


def _login(state: Converged, node: str) -> tuple[str, str]:
    ready = state.topology.command(f"{node}-ready")
    return ready.host, ready.user


def _seconds(later: float, earlier: float) -> float:
    return round(later - earlier, 1)


def _events(started: float, **moments: float) -> dict[str, float]:
    """When each thing happened, in seconds from the request loop's start (for the chart)."""
    return {name: _seconds(moment, started) for name, moment in moments.items()}


# ---------------------------------------------------------------- steady state


class QuietPeriodStart:
    name = "steady state: a quiet period begins"

    def __init__(self) -> None:
        self.started = 0.0
        self.since: dict[str, str] = {}

    def run(self, run: Scenario, cluster: LabCluster, state: Converged) -> Converged:
        holder(run, cluster, state)  # the election is over: one director holds the addresses
        self.started = time.monotonic()
        self.since = {peer.name: guest_clock(cluster, state, peer.name) for peer in run.settings_of(state.config).directors}
        return state


class QuietPeriodEnd:
    name = "steady state: nothing moved while nothing was broken"

    def __init__(self, start: QuietPeriodStart) -> None:
        self.start = start

    def run(self, run: Scenario, cluster: LabCluster, state: Converged) -> Converged:
        left = QUIET_SECONDS - (time.monotonic() - self.start.started)
        if left > 0:
            with run.activity(f"quiet period: {left:.0f} s more"):
                time.sleep(left)
        transitions = {name: keepalived_transitions(run, cluster, state, name, since) for name, since in self.start.since.items()}
        count = sum(len(lines) for lines in transitions.values())
        seconds = round(time.monotonic() - self.start.started, 1)
        run.report.faults["spuriousTransitions"] = count
        run.report.faults["quietPeriod"] = {"seconds": seconds, "transitions": transitions}
        run.report.check(f"steady state: no VRRP transition or real server flap in {seconds:.0f} s", count == 0, str(transitions))
        return state


def guest_clock(cluster: LabCluster, state: Converged, node: str) -> str:
    """The node's own clock (seconds since the epoch), for `journalctl --since @…`."""
    return cluster.ssh(*_login(state, node), "date +%s").stdout.strip()


def keepalived_transitions(run: Scenario, cluster: LabCluster, state: Converged, node: str, since: str) -> list[str]:
    """keepalived's VRRP state changes and real servers removed or added on `node` since its
    clock read `since`. The fault units count the ones they cause, so a pattern that stopped
    matching keepalived's words would fail there instead of passing every quiet period."""
    journal = cluster.ssh(*_login(state, node), f"sudo -n journalctl -u keepalived --since @{since} -o short-iso --no-pager")
    if journal.returncode != 0:
        raise run.failure(f"journalctl on {node} failed: {journal.stderr.strip()}")
    return [line for line in journal.stdout.splitlines() if re.search(TRANSITION_PATTERN, line)]


# ---------------------------------------------------------------- real servers


class _RealServerFault:
    key = ""
    name = ""

    def node(self, settings: ClusterSettings) -> Any:
        raise NotImplementedError

    def inject(self, run: Scenario, cluster: LabCluster, state: Converged, web: Any) -> float:
        """Breaks the node; returns when it broke (time.time())."""
        raise NotImplementedError

    def mend(self, run: Scenario, cluster: LabCluster, state: Converged, web: Any) -> float:
        """Returns how long the table may take to list the node again."""
        raise NotImplementedError

    def run(self, run: Scenario, cluster: LabCluster, state: Converged) -> Converged:
        settings = run.settings_of(state.config)
        web = self.node(settings)
        director = holder(run, cluster, state)
        listed = Watch(
            cluster,
            state.topology.command(f"{director.name}-ready"),
            f"ipvsadm -L -n | grep -qF ' {web.ip}:{settings.service.port} '",
            what=f"{web.name} in {director.name}'s table",
        )
        since = guest_clock(cluster, state, director.name)
        loop = RequestLoop(cluster, state.plan.outputs["vipUrl"], max_seconds=WAIT_SECONDS * 3 + run.boot_timeout)
        try:
            listed.wait_for(True)
            time.sleep(BEFORE_FAULT_SECONDS)
            broken_at = self.inject(run, cluster, state, web)
            out_at = listed.wait_for(False)
            time.sleep(BEFORE_FAULT_SECONDS)
            bound = self.mend(run, cluster, state, web)
            mended_at = time.time()
            in_at = listed.wait_for(True, timeout=bound)
            time.sleep(SHARES_WINDOW_SECONDS)
        finally:
            answers = loop.stop()
            listed.stop()
        after_readd = whole_cycles(settings, [answer for answer in answers if answer.at >= in_at])
        shares = run.judge([f"{answer.code} {answer.seconds} {answer.backend}" for answer in after_readd], settings)
        check = settings.health_check
        result = {
            "node": web.name,
            "detectionSeconds": _seconds(out_at, broken_at),
            "failedRequestsAfterDetection": sum(1 for answer in answers if answer.at >= out_at and not answer.ok),
            "readdedSeconds": _seconds(in_at, mended_at),
            "detectionGoalSeconds": check.interval * (check.retries + 1) + check.timeout if check else None,
            "sharesAfterReadd": shares.counts,
            "events": _events(loop.started, broken=broken_at, takenOut=out_at, mended=mended_at, readded=in_at),
            **tally(answers, loop.started),
        }
        result["journal"] = keepalived_transitions(run, cluster, state, director.name, since)
        run.report.faults[self.key] = result
        run.report.check(f"fault: {web.name} is taken out of the table", True, f"{result['detectionSeconds']} s")
        run.report.check(
            f"fault: {director.name}'s keepalived logged taking {web.name} out and adding it back",
            all(any(word in line for line in result["journal"]) for word in ("Removing service", "Adding service")),
            str(result["journal"]),
        )
        run.report.check(
            f"fault: no request fails once {web.name} is out",
            result["failedRequestsAfterDetection"] == 0,
            f"{result['failedRequestsAfterDetection']} of {result['requests']}",
        )
        run.report.check(f"fault: {web.name} is put back", True, f"{result['readdedSeconds']} s")
        run.report.check(f"fault: the scheduler's shares hold once {web.name} is back", shares.ok, str(shares.counts))
        return state


class RealServerDown(_RealServerFault):
    key = "realServerDown"
    name = "fault: a web node's Apache stops, under load"

    def node(self, settings: ClusterSettings) -> Any:
        return settings.web_servers[0]

    def inject(self, run: Scenario, cluster: LabCluster, state: Converged, web: Any) -> float:
        cluster.ssh(*_login(state, web.name), "sudo -n systemctl stop apache2")
        return time.time()  # systemctl returns once Apache has stopped

    def mend(self, run: Scenario, cluster: LabCluster, state: Converged, web: Any) -> float:
        cluster.ssh(*_login(state, web.name), "sudo -n systemctl start apache2")
        return WAIT_SECONDS


class RealServerKilled(_RealServerFault):
    key = "realServerKilled"
    name = "fault: a web node's VM is killed, under load"

    def node(self, settings: ClusterSettings) -> Any:
        return settings.web_servers[-1]

    def inject(self, run: Scenario, cluster: LabCluster, state: Converged, web: Any) -> float:
        return cluster.crash(run.settings_of(state.config).domain_name(web.name))

    def mend(self, run: Scenario, cluster: LabCluster, state: Converged, web: Any) -> float:
        domain = run.settings_of(state.config).domain_name(web.name)
        cluster.power_on(domain)  # a new QEMU: its console log starts over
        return run.boot_timeout + WAIT_SECONDS

    def run(self, run: Scenario, cluster: LabCluster, state: Converged) -> Converged:
        state = super().run(run, cluster, state)
        domain = run.settings_of(state.config).domain_name(self.node(run.settings_of(state.config)).name)
        seconds = cluster.guests[domain].wait_cloud_init_done(timeout=run.boot_timeout, since=0)  # the node as it was
        # A stack without scale-out has no first boot alone: the floor's solo boot is this cold
        # boot (cloud-init's per-instance modules skip, so it is shorter: the ratio reads high).
        if "solo_boot_s" not in run.report.timings:
            run.report.timings["solo_boot_s"] = round(seconds, 1)
            run.report.timings["solo_boot_from"] = f"{domain}, started again after its QEMU was killed"
        return state


# ---------------------------------------------------------------- the director pair


class DirectorDown:
    name = "fault: the director holding the VIP crashes, under load"

    def run(self, run: Scenario, cluster: LabCluster, state: Converged) -> Converged:
        settings = run.settings_of(state.config)
        assert settings.director.pair is not None
        first = holder(run, cluster, state)
        second = next(peer for peer in settings.director.pair if peer != first)
        domain = settings.domain_name(first.name)
        test = holds_floating_test(settings)
        watched = Watch(cluster, state.topology.command(f"{second.name}-ready"), test, what=f"{second.name} holding the VIP and gateway")
        since = guest_clock(cluster, state, second.name)
        try:
            result = self.crash(run, cluster, state, watched, domain) | {"from": first.name, "to": second.name}
            result["journal"] = keepalived_transitions(run, cluster, state, second.name, since)
            run.report.check(
                f"pair: {second.name}'s keepalived logged becoming master",
                any("Entering MASTER STATE" in line for line in result["journal"]),
                str(result["journal"]),
            )
            run.report.faults["directorDown"] = result
            result["return"] = self.come_back(run, cluster, state, watched, domain, first, second)
        finally:
            watched.stop()
        if first.name == settings.director.name:
            # The crash lost the runtime rules the lab added there as "the user's".
            add_user_rules(run, cluster, run.director_of(state))
        run.check_distribution(cluster, state, "after the director fault", key="after_director_fault")
        return state

    @staticmethod
    def crash(run: Scenario, cluster: LabCluster, state: Converged, watched: Watch, domain: str) -> dict[str, Any]:
        settings = run.settings_of(state.config)
        loop = RequestLoop(cluster, state.plan.outputs["vipUrl"], max_seconds=WAIT_SECONDS * 2)
        try:
            watched.wait_for(False)
            time.sleep(BEFORE_FAULT_SECONDS)
            crashed_at = cluster.crash(domain)
            took_at = watched.wait_for(True)
            time.sleep(SHARES_WINDOW_SECONDS)
        finally:
            answers = loop.stop()
        on_backup = whole_cycles(settings, [answer for answer in answers if answer.at >= took_at])
        shares = run.judge([f"{answer.code} {answer.seconds} {answer.backend}" for answer in on_backup], settings)
        vrrp = settings.director.vrrp
        advert = float(vrrp.advert_interval) if vrrp else 1.0
        # keepalived's master-down timer: 3 adverts and a skew, in seconds (VRRPv2) or in
        # advert intervals (VRRPv3); the standby's priority is 100.
        skew = (256 - 100) / 256 * (advert if vrrp and vrrp.version == 3 else 1.0)
        result = {
            "outageSeconds": outage_seconds(answers, crashed_at),
            "failedRequests": sum(1 for answer in answers if not answer.ok),
            "takeOverSeconds": _seconds(took_at, crashed_at),
            "outageGoalSeconds": round(3 * advert + skew, 1),
            "sharesOnBackup": shares.counts,
            "events": _events(loop.started, crashed=crashed_at, tookOver=took_at),
            **tally(answers, loop.started),
        }
        run.report.check("pair: the backup holds the VIP and the gateway after the crash", True, f"{result['takeOverSeconds']} s")
        run.report.check("pair: requests balance as before on the backup", shares.ok, str(shares.counts))
        return result

    @staticmethod
    def come_back(
        run: Scenario, cluster: LabCluster, state: Converged, watched: Watch, domain: str, first: DirectorPeer, second: DirectorPeer
    ) -> dict[str, Any]:
        """The crashed director boots again: with preemption it takes the addresses back (one
        more short outage, reported); without, the backup keeps them and nothing fails."""
        settings = run.settings_of(state.config)
        preempt = settings.director.vrrp.preempt if settings.director.vrrp else True
        loop = RequestLoop(cluster, state.plan.outputs["vipUrl"], max_seconds=run.boot_timeout + WAIT_SECONDS * 2)
        try:
            cluster.power_on(domain)  # a new QEMU: its console log starts over
            powered_at = time.time()
            taken_back_at = watched.wait_for(False, timeout=run.boot_timeout + WAIT_SECONDS) if preempt else None
            cluster.guests[domain].wait_cloud_init_done(timeout=run.boot_timeout, since=0)
            time.sleep(SHARES_WINDOW_SECONDS)  # several adverts from the returned director
        finally:
            answers = loop.stop()
        now_holding = holder(run, cluster, state)
        expected = first if preempt else second
        result = {
            "preempt": preempt,
            "holder": now_holding.name,
            "takenBackSeconds": _seconds(taken_back_at, powered_at) if taken_back_at is not None else None,
            "outageSeconds": outage_seconds(answers, powered_at),
            "failedRequests": sum(1 for answer in answers if not answer.ok),
            "events": _events(loop.started, poweredOn=powered_at, **({"takenBack": taken_back_at} if taken_back_at else {})),
            **tally(answers, loop.started),
        }
        run.report.check(
            f"pair: {expected.name} holds the addresses once {first.name} is back ({'preempt' if preempt else 'nopreempt'})",
            now_holding == expected,
            now_holding.name,
        )
        if not preempt:
            run.report.check(
                "pair: no second outage when not preempting", result["failedRequests"] == 0, f"{result['failedRequests']} of {len(answers)}"
            )
        return result
