"""Faults injected under load (issue 7), each a scenario unit like those in `scenarios.py`: a
bounded request loop runs against the VIP from the client (10 requests a second, 2 s per
request at most), the unit breaks one thing, waits (bounded) for the cluster to notice, mends
it, and the report gets the answers per backend and every failure with its time.

- `RealServerDown`: Apache stops on a web node; keepalived's health check takes it out of the
  table, and puts it back once Apache answers again.
- `DirectorDown`: the director holding the VIP is powered off (libvirt destroys its domain);
  the other takes the VIP and the gateway, and the first takes them back when it returns.
"""

from __future__ import annotations

import subprocess
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

from .lifecycles import Converged
from .scenarios import add_user_rules

if TYPE_CHECKING:
    from .cluster import LabCluster
    from .verify import Scenario

FAULT_INTERVAL_SECONDS = 0.1
FAULT_REQUEST_TIMEOUT_SECONDS = 2
WAIT_SECONDS = 60  # for a fault to show, or to heal, in the director's table or addresses


def fault_loop(url: str, count: int) -> str:
    """`count` requests, one line each: the client's clock, the status, the backend."""
    return (
        f"n=0; while [ $n -lt {count} ]; do n=$((n+1)); sleep {FAULT_INTERVAL_SECONDS}; "
        f'printf "%s " "$(date +%s.%N)"; '
        f"curl -s -o /dev/null -m {FAULT_REQUEST_TIMEOUT_SECONDS} -w '%{{http_code}} %header{{x-lvs-backend}}\\n' {url} "
        "|| echo; done"
    )


def tally(lines: list[str], started: float) -> dict[str, Any]:
    answers: Counter[str] = Counter()
    failures = []
    for line in lines:
        at, _, rest = line.partition(" ")
        code, _, backend = rest.strip().partition(" ")
        if code == "200" and backend:
            answers[backend.strip()] += 1
        else:
            failures.append({"at_s": round(float(at) - started, 1) if at else None, "answer": rest.strip() or "no answer"})
    return {"requests": len(lines), "answers": dict(answers), "failed": len(failures), "failures": failures}


def wait_until(check: Any, what: str) -> float:
    """Polls `check()` once a second until it holds (bounded); returns the seconds it took."""
    started = time.monotonic()
    while not check():
        if time.monotonic() - started > WAIT_SECONDS:
            raise TimeoutError(f"{what}: not within {WAIT_SECONDS} s")
        time.sleep(1)
    return round(time.monotonic() - started, 1)


class _UnderLoad:
    requests = 300

    def start_loop(self, run: Scenario, cluster: LabCluster, state: Converged) -> tuple[subprocess.Popen[bytes], float]:
        loop = fault_loop(state.plan.outputs["vipUrl"], self.requests)
        client = next((name for name, node in state.plan.outputs["nodes"].items() if node["role"] == "client"), None)
        argv = ["sh", "-c", loop]
        if client is not None:
            ready = state.topology.command(f"{client}-ready")
            argv = cluster.ssh_argv(ready.host, ready.user, loop)
        clock = cluster.in_namespace(["date", "+%s.%N"], timeout=10).stdout.strip()
        return cluster.ns.popen(argv, stdout=subprocess.PIPE), float(clock)


class RealServerDown(_UnderLoad):
    name = "fault: a web node's Apache stops, under load"

    def run(self, run: Scenario, cluster: LabCluster, state: Converged) -> Converged:
        settings = run.settings_of(state.config)
        web = settings.web_servers[0]
        ready = state.topology.command(f"{web.name}-ready")
        master = run.director_of(state)
        real = f"{web.ip}:{settings.service.port}"

        def listed() -> bool:
            return real in cluster.ssh(master.host, master.user, "sudo -n ipvsadm -L -n").stdout

        loop, started = self.start_loop(run, cluster, state)
        try:
            time.sleep(3)  # answers flow before the fault
            cluster.ssh(ready.host, ready.user, "sudo -n systemctl stop apache2")
            taken_out = wait_until(lambda: not listed(), f"{web.name} taken out of the table")
            time.sleep(3)
            cluster.ssh(ready.host, ready.user, "sudo -n systemctl start apache2")
            put_back = wait_until(listed, f"{web.name} put back in the table")
        finally:
            lines = run.collect(loop)
        result = {**tally(lines, started), "node": web.name, "takenOutSeconds": taken_out, "putBackSeconds": put_back}
        run.report.faults["realServerDown"] = result
        check = settings.health_check
        budget = (check.interval * (check.retries + 1) + check.timeout) * 10 + 10 if check else 0  # requests at 10/s
        run.report.check(f"fault: {web.name} down is taken out of the table", taken_out < WAIT_SECONDS, f"{taken_out} s")
        run.report.check(f"fault: {web.name} back is put back", put_back < WAIT_SECONDS, f"{put_back} s")
        run.report.check(
            "fault: failures only while the check notices", result["failed"] <= budget, f"{result['failed']} of {result['requests']}"
        )
        return state


class DirectorDown(_UnderLoad):
    name = "fault: the director holding the VIP is powered off, under load"

    def run(self, run: Scenario, cluster: LabCluster, state: Converged) -> Converged:
        settings = run.settings_of(state.config)
        assert settings.director.pair is not None
        first, second = settings.director.pair
        vip = str(settings.vip)

        def holds_vip(peer: Any) -> bool:
            ready = state.topology.command(f"{peer.name}-ready")
            answer = cluster.ssh(ready.host, ready.user, f"ip -o -4 addr show dev ext0 | grep -qF ' {vip}/' && echo yes")
            return answer.stdout.strip() == "yes"

        run.report.check("pair: the first director holds the VIP", holds_vip(first) and not holds_vip(second))
        domain = settings.domain_name(first.name)
        loop, started = self.start_loop(run, cluster, state)
        try:
            time.sleep(3)
            cluster.power_off(domain)
            took_over = wait_until(lambda: holds_vip(second), f"{second.name} takes the VIP")
        finally:
            lines = run.collect(loop)
        result = {**tally(lines, started), "poweredOff": first.name, "takeOverSeconds": took_over}
        run.report.faults["directorDown"] = result
        run.report.check(f"pair: {second.name} takes the VIP", took_over < WAIT_SECONDS, f"{took_over} s")
        run.report.check(
            "pair: requests fail only during the takeover", result["failed"] <= 10, f"{result['failed']} of {result['requests']}"
        )
        cluster.power_on(domain)  # a new QEMU: its console log starts over (append="off")
        cluster.guests[domain].wait_cloud_init_done(timeout=run.boot_timeout, since=0)
        # The power cycle lost the runtime rules the lab added as "the user's" (the program's
        # are restored: keepalived's by keepalived, SNAT by netfilter-persistent).
        add_user_rules(run, cluster, run.director_of(state))
        if settings.director.vrrp and settings.director.vrrp.preempt:
            back = wait_until(lambda: holds_vip(first), f"{first.name} takes the VIP back")
            run.report.faults["directorDown"]["takenBackSeconds"] = back
            run.report.check(f"pair: {first.name} takes the VIP back when it returns", True, f"{back} s")
        run.check_distribution(cluster, state, "after the director fault", key="after_director_fault")
        return state
