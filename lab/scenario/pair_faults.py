"""Faults of a director pair's VRRP (issue 21), each a unit under a bounded request loop:

- `PartialHolding`: the standby holds the web nodes' gateway alone, as it did when its VRRP
  process hung (the state issue 21 found); the watchdog takes it off.
- `KeepalivedHangs`: every keepalived process on the director holding the addresses stops
  (SIGSTOP, the stand-in for a hang); the standby takes over, and the hung director's watchdog
  must give the addresses up, so that they are not held twice.
- `ReloadDuringElection`: the reproduction of the cause: the holder's keepalived restarts
  (the standby becomes master, then backup again as the preferred one returns) while the
  standby is reloaded four times; repeated, each time one director must end up holding the
  addresses, and the watchdog's journal says whether it had to step in.
"""

from __future__ import annotations

import time
from typing import Any

from components.config import INTERNAL_NIC, DirectorPeer
from components.keepalived import WATCHDOG_BOUND_SECONDS

from .context import Node, RunContext, StackState, StepFailedError
from .faults import (
    BEFORE_FAULT_SECONDS,
    SHARES_WINDOW_SECONDS,
    _events,
    _seconds,
    guest_clock,
    holder,
    holds_floating_test,
    settled_holding,
    split_holding,
)
from .traffic import WAIT_SECONDS, RequestLoop, Watch, outage_seconds, tally

ELECTION_ITERATIONS = 6
RELOADS_PER_ELECTION = 4


def watchdog_journal(ctx: RunContext, state: StackState, node: str, since: str) -> list[str]:
    """What the watchdog said on `node` since its clock read `since`."""
    journal = ctx.node(state, node).journal("lvs-keepalived-watchdog", since, output="cat")
    return [line for line in journal if line.strip() and not line.startswith(("Started ", "Stopped "))]


def _peers(ctx: RunContext, state: StackState) -> tuple[DirectorPeer, DirectorPeer]:
    """The director holding the addresses now, and the other one."""
    settings = state.settings
    assert settings.director.pair is not None
    first = holder(ctx, state)
    return first, next(peer for peer in settings.director.pair if peer != first)


def _address_watch(ctx: RunContext, state: StackState, node: str, address: object, *, what: str) -> Watch:
    """Whether `node` has `address` on an interface, five times a second."""
    return Watch(ctx.cluster, ctx.node(state, node), Node.holds_test(address), what=f"{node} holding {what}")


def _first_change(watched: Watch, value: bool, *, after: float, timeout: float) -> float:
    """When `watched` first turned `value` after the host time `after`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for moment, seen in list(watched.changes):
            if moment >= after and seen == value:
                return moment
        time.sleep(0.1)
    raise TimeoutError(f"{watched.what} {'holds' if value else 'ends'}: not within {timeout:.0f} s")


class PartialHolding:
    name = "fault: the standby holds the gateway alone (issue 21), under load"

    def run(self, ctx: RunContext, state: StackState) -> StackState:
        settings = state.settings
        first, second = _peers(ctx, state)
        gateway = settings.director.internal_ip
        watched = _address_watch(ctx, state, second.name, gateway, what="the gateway")
        since = guest_clock(ctx, state, second.name)
        loop = RequestLoop(ctx.cluster, state.vip_url, max_seconds=WAIT_SECONDS * 2)
        try:
            watched.wait_for(False)
            time.sleep(BEFORE_FAULT_SECONDS)
            address = f"{gateway}/{settings.internal.cidr.prefixlen}"
            added = ctx.node(state, second.name).run(f"sudo -n ip addr add {address} dev {INTERNAL_NIC}")
            if added.returncode != 0:
                raise StepFailedError(f"ip addr add on {second.name} failed: {added.stderr.strip()}")
            added_at = time.time()
            removed_at = _first_change(watched, False, after=added_at, timeout=WAIT_SECONDS)
            time.sleep(SHARES_WINDOW_SECONDS)
        finally:
            answers = loop.stop()
            watched.stop()
        journal = watchdog_journal(ctx, state, second.name, since)
        result = {
            "node": second.name,
            "holder": first.name,
            "repairedSeconds": _seconds(removed_at, added_at),
            "boundSeconds": WATCHDOG_BOUND_SECONDS,
            "outageSeconds": outage_seconds(answers, added_at),
            "failedRequests": sum(1 for answer in answers if not answer.ok),
            "watchdog": journal,
            "events": _events(loop.started, added=added_at, removed=removed_at),
            **tally(answers, loop.started),
        }
        ctx.report.faults["partialHolding"] = result
        ctx.report.check(
            f"pair: {second.name}'s watchdog took the gateway off ({result['repairedSeconds']} s; bound {WATCHDOG_BOUND_SECONDS} s)",
            any("restarting keepalived" in line for line in journal),
            "; ".join(journal[-4:]),
        )
        return state


class KeepalivedHangs:
    name = "fault: keepalived hangs on the director holding the addresses, under load"

    def run(self, ctx: RunContext, state: StackState) -> StackState:
        settings = state.settings
        first, second = _peers(ctx, state)
        preempt = settings.director.vrrp.preempt if settings.director.vrrp else True
        test = holds_floating_test(settings)
        taking = Watch(ctx.cluster, ctx.node(state, second.name), test, what=f"{second.name} holding the VIP and gateway")
        giving = _address_watch(ctx, state, first.name, settings.vip, what="the VIP")
        since = guest_clock(ctx, state, first.name)
        loop = RequestLoop(ctx.cluster, state.vip_url, max_seconds=WAIT_SECONDS * 3)
        try:
            taking.wait_for(False)
            giving.wait_for(True)
            time.sleep(BEFORE_FAULT_SECONDS)
            stopped = ctx.node(state, first.name).run("sudo -n systemctl kill --signal=SIGSTOP keepalived")
            if stopped.returncode != 0:
                raise StepFailedError(f"SIGSTOP to keepalived on {first.name} failed: {stopped.stderr.strip()}")
            stopped_at = time.time()
            took_at = _first_change(taking, True, after=stopped_at, timeout=WAIT_SECONDS)
            released_at = _first_change(giving, False, after=stopped_at, timeout=WAIT_SECONDS)
            # Restarted, the preferred director takes the addresses back (a few seconds later).
            taken_back_at = _first_change(giving, True, after=released_at, timeout=WAIT_SECONDS) if preempt else None
            holders, settled = settled_holding(ctx, state)
            time.sleep(SHARES_WINDOW_SECONDS)
        finally:
            answers = loop.stop()
            taking.stop()
            giving.stop()
        journal = watchdog_journal(ctx, state, first.name, since)
        result = {
            "from": first.name,
            "to": second.name,
            "takeOverSeconds": _seconds(took_at, stopped_at),
            "releasedSeconds": _seconds(released_at, stopped_at),
            "heldTwiceSeconds": max(0.0, _seconds(released_at, took_at)),
            "takenBackSeconds": _seconds(taken_back_at, stopped_at) if taken_back_at is not None else None,
            "boundSeconds": WATCHDOG_BOUND_SECONDS,
            "holdersAfter": holders,
            "settledSeconds": settled,
            "outageSeconds": outage_seconds(answers, stopped_at),
            "failedRequests": sum(1 for answer in answers if not answer.ok),
            "watchdog": journal,
            "events": _events(loop.started, stopped=stopped_at, tookOver=took_at, released=released_at),
            **tally(answers, loop.started),
        }
        ctx.report.faults["keepalivedHangs"] = result
        ctx.report.check(
            f"pair: the hung {first.name} gave the VIP up ({result['releasedSeconds']} s after the hang; bound {WATCHDOG_BOUND_SECONDS} s)",
            any("restarting keepalived" in line for line in journal),
            "; ".join(journal[-4:]),
        )
        expected = first if preempt else second
        ctx.report.check(
            f"pair: {expected.name} holds every address after the hung keepalived restarted ({'preempt' if preempt else 'nopreempt'})",
            split_holding(holders) is None and holders["vip"] == [expected.name],
            str(holders),
        )
        ctx.check_distribution(state, "after keepalived hung", key="after_keepalived_hung")
        return state


class ReloadDuringElection:
    name = "fault: reloads on the standby while the pair elects (issue 21's cause), repeated"

    def __init__(self, iterations: int = ELECTION_ITERATIONS) -> None:
        self.iterations = iterations

    def run(self, ctx: RunContext, state: StackState) -> StackState:
        first, second = _peers(ctx, state)
        since = {peer.name: guest_clock(ctx, state, peer.name) for peer in (first, second)}
        reloads = f"for i in $(seq {RELOADS_PER_ELECTION}); do systemctl reload keepalived; sleep 0.5; done"
        rounds: list[dict[str, Any]] = []
        for _ in range(self.iterations):
            holding = holder(ctx, state)
            standby = first if holding == second else second
            # The standby reloads while the holder's restart makes it master and then, when the
            # preferred director is back, backup again: a sync daemon stopped right after it
            # started, under the old configuration.
            background = ctx.cluster.ns.popen(ctx.node(state, standby.name).argv(f"sudo -n sh -c '{reloads}'"))
            restarted = ctx.node(state, holding.name).run("sudo -n systemctl restart keepalived")
            background.wait(timeout=120)
            ctx.cluster.ns.forget(background)
            if restarted.returncode != 0:
                raise StepFailedError(f"restarting keepalived on {holding.name} failed: {restarted.stderr.strip()}")
            holders, settled = settled_holding(ctx, state)
            rounds.append({"restarted": holding.name, "holders": holders, "settledSeconds": settled, "split": split_holding(holders)})
        journals = {name: watchdog_journal(ctx, state, name, clock) for name, clock in since.items()}
        restarts = sum(1 for lines in journals.values() for line in lines if "restarting keepalived" in line)
        splits = [entry for entry in rounds if entry["split"]]
        ctx.report.faults["reloadDuringElection"] = {
            "iterations": self.iterations,
            "reloadsPerElection": RELOADS_PER_ELECTION,
            "splits": len(splits),
            "watchdogRestarts": restarts,
            "settledSeconds": [entry["settledSeconds"] for entry in rounds],
            "rounds": rounds,
            "watchdog": journals,
        }
        ctx.report.check(
            f"pair: one director held every address after each of {self.iterations} elections with reloads (watchdog restarts: {restarts})",
            not splits,
            str(splits or [entry["settledSeconds"] for entry in rounds]),
        )
        return state
