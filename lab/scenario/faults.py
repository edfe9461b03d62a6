"""Faults injected under load (issue 7), each a unit.

A bounded request loop (`RequestLoop`, traffic.py) runs against the VIP from the host side of the
external network, the lab's namespace, so every request is stamped with the same clock as the
fault and as the watchers (`Watch`): small bounded loops on the directors that say, several
times a second, whether a real server is in the IPVS table or a director holds the floating
addresses. The host stamps each of their answers as it arrives.

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

import re
import time
from ipaddress import IPv4Address
from typing import Any

from components.config import ClusterSettings, DirectorPeer

from .checks import add_user_rules
from .context import Node, QuietPeriod, RunContext, StackState, StepFailedError, judge_answers
from .traffic import WAIT_SECONDS, RequestLoop, Watch, outage_seconds, tally, whole_cycles

BEFORE_FAULT_SECONDS = 3  # answers flow before anything breaks
SHARES_WINDOW_SECONDS = 8  # answers after a recovery, judged against the scheduler
QUIET_SECONDS = 150
# How long a pair may take to have one director hold every floating address after a step: an
# election (3 adverts and a skew) and keepalived's watchdog with room to spare.
FLOATING_SETTLE_SECONDS = 30
TRANSITION_PATTERN = "Entering (MASTER|BACKUP|FAULT) STATE|Removing service|Adding service"


def holds_floating_test(settings: ClusterSettings) -> str:
    """Both floating addresses on this director: the VIP and the web nodes' gateway."""
    return " && ".join(Node.holds_test(address) for address in (settings.vip, settings.director.internal_ip))


def floating_addresses(settings: ClusterSettings) -> dict[str, IPv4Address]:
    """What VRRP floats between the directors of a pair, by what it is for."""
    return {"vip": settings.vip, "gateway": settings.director.internal_ip}


def floating_holders(ctx: RunContext, state: StackState) -> dict[str, list[str]]:
    """For each floating address, the directors that have it on an interface now: each one is
    asked on its own (a director can hold the gateway without the VIP: issue 21)."""
    settings = state.settings
    floating = floating_addresses(settings)
    holders: dict[str, list[str]] = {what: [] for what in floating}
    for peer in settings.directors:
        listed = ctx.node(state, peer.name).addresses()
        for what, address in floating.items():
            if f" {address}/" in listed:
                holders[what].append(peer.name)
    return holders


def split_holding(holders: dict[str, list[str]]) -> str | None:
    """What is wrong when the floating addresses are not all held by one and the same director."""
    if all(len(names) == 1 for names in holders.values()) and len({names[0] for names in holders.values()}) == 1:
        return None
    return "; ".join(f"{what} held by {names or 'no director'}" for what, names in holders.items())


def holder(ctx: RunContext, state: StackState) -> DirectorPeer:
    """The director that holds every floating address now (the one director without a pair)."""
    holders = floating_holders(ctx, state)
    split = split_holding(holders)
    if split:
        raise StepFailedError(f"the floating addresses are not held by exactly one director: {split}")
    [name] = holders["vip"]
    return next(peer for peer in state.settings.directors if peer.name == name)


def settled_holding(ctx: RunContext, state: StackState, *, within: float = FLOATING_SETTLE_SECONDS) -> tuple[dict[str, list[str]], float]:
    """The floating addresses' holders once each is held by one and the same director, or as
    they stand after `within` seconds; and how long that took."""
    started = time.monotonic()
    while True:
        holders = floating_holders(ctx, state)
        waited = time.monotonic() - started
        if split_holding(holders) is None or waited >= within:
            return holders, round(waited, 1)
        time.sleep(1.0)


def _seconds(later: float, earlier: float) -> float:
    return round(later - earlier, 1)


def _events(started: float, **moments: float) -> dict[str, float]:
    """When each thing happened, in seconds from the request loop's start (for the chart)."""
    return {name: _seconds(moment, started) for name, moment in moments.items()}


# ---------------------------------------------------------------- steady state


class QuietPeriodStart:
    name = "steady state: a quiet period begins"

    def run(self, ctx: RunContext, state: StackState) -> StackState:
        holder(ctx, state)  # the election is over: one director holds the addresses
        clocks = {peer.name: guest_clock(ctx, state, peer.name) for peer in state.settings.directors}
        ctx.facts.quiet = QuietPeriod(time.monotonic(), clocks)
        return state


class QuietPeriodEnd:
    name = "steady state: nothing moved while nothing was broken"

    def run(self, ctx: RunContext, state: StackState) -> StackState:
        quiet = ctx.facts.quiet
        if quiet is None:
            raise StepFailedError("a quiet period ends only after it began")
        left = QUIET_SECONDS - (time.monotonic() - quiet.started)
        if left > 0:
            with ctx.status.activity(f"quiet period: {left:.0f} s more"):
                time.sleep(left)
        transitions = {name: keepalived_transitions(ctx, state, name, since) for name, since in quiet.clocks.items()}
        count = sum(len(lines) for lines in transitions.values())
        seconds = round(time.monotonic() - quiet.started, 1)
        ctx.report.faults["spuriousTransitions"] = count
        ctx.report.faults["quietPeriod"] = {"seconds": seconds, "transitions": transitions}
        ctx.report.check(f"steady state: no VRRP transition or real server flap in {seconds:.0f} s", count == 0, str(transitions))
        return state


def guest_clock(ctx: RunContext, state: StackState, node: str) -> str:
    """The node's own clock (seconds since the epoch), for `journalctl --since @…`."""
    return ctx.node(state, node).clock()


def keepalived_transitions(ctx: RunContext, state: StackState, node: str, since: str) -> list[str]:
    """keepalived's VRRP state changes and real servers removed or added on `node` since its
    clock read `since`. The fault units count the ones they cause, so a pattern that stopped
    matching keepalived's words would fail there instead of passing every quiet period."""
    journal = ctx.node(state, node).journal("keepalived", since)
    return [line for line in journal if re.search(TRANSITION_PATTERN, line)]


# ---------------------------------------------------------------- real servers


class _RealServerFault:
    key = ""
    name = ""

    def node(self, settings: ClusterSettings) -> Any:
        raise NotImplementedError

    def inject(self, ctx: RunContext, state: StackState, web: Any) -> float:
        """Breaks the node; returns when it broke (time.time())."""
        raise NotImplementedError

    def mend(self, ctx: RunContext, state: StackState, web: Any) -> float:
        """Returns how long the table may take to list the node again."""
        raise NotImplementedError

    def run(self, ctx: RunContext, state: StackState) -> StackState:
        settings = state.settings
        web = self.node(settings)
        director = holder(ctx, state)
        listed = Watch(
            ctx.cluster,
            ctx.node(state, director.name),
            f"ipvsadm -L -n | grep -qF ' {state.real_server(web.name)}:{settings.service.port} '",
            what=f"{web.name} in {director.name}'s table",
        )
        since = guest_clock(ctx, state, director.name)
        loop = RequestLoop(ctx.cluster, state.vip_url, max_seconds=WAIT_SECONDS * 3 + ctx.boot_timeout)
        try:
            listed.wait_for(True)
            time.sleep(BEFORE_FAULT_SECONDS)
            broken_at = self.inject(ctx, state, web)
            out_at = listed.wait_for(False)
            time.sleep(BEFORE_FAULT_SECONDS)
            bound = self.mend(ctx, state, web)
            mended_at = time.time()
            in_at = listed.wait_for(True, timeout=bound)
            time.sleep(SHARES_WINDOW_SECONDS)
        finally:
            answers = loop.stop()
            listed.stop()
        after_readd = whole_cycles(settings, [answer for answer in answers if answer.at >= in_at])
        shares = judge_answers([f"{answer.code} {answer.seconds} {answer.backend}" for answer in after_readd], settings)
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
        result["journal"] = keepalived_transitions(ctx, state, director.name, since)
        ctx.report.faults[self.key] = result
        ctx.report.check(f"fault: {web.name} is taken out of the table", True, f"{result['detectionSeconds']} s")
        ctx.report.check(
            f"fault: {director.name}'s keepalived logged taking {web.name} out and adding it back",
            all(any(word in line for line in result["journal"]) for word in ("Removing service", "Adding service")),
            str(result["journal"]),
        )
        ctx.report.check(
            f"fault: no request fails once {web.name} is out",
            result["failedRequestsAfterDetection"] == 0,
            f"{result['failedRequestsAfterDetection']} of {result['requests']}",
        )
        ctx.report.check(f"fault: {web.name} is put back", True, f"{result['readdedSeconds']} s")
        ctx.report.check(f"fault: the scheduler's shares hold once {web.name} is back", shares.ok, str(shares.counts))
        return state


class RealServerDown(_RealServerFault):
    key = "realServerDown"
    name = "fault: a web node's Apache stops, under load"

    def node(self, settings: ClusterSettings) -> Any:
        return settings.web_servers[0]

    def inject(self, ctx: RunContext, state: StackState, web: Any) -> float:
        ctx.node(state, web.name).run("sudo -n systemctl stop apache2")
        return time.time()  # systemctl returns once Apache has stopped

    def mend(self, ctx: RunContext, state: StackState, web: Any) -> float:
        ctx.node(state, web.name).run("sudo -n systemctl start apache2")
        return WAIT_SECONDS


class RealServerKilled(_RealServerFault):
    key = "realServerKilled"
    name = "fault: a web node's VM is killed, under load"

    def node(self, settings: ClusterSettings) -> Any:
        return settings.web_servers[-1]

    def inject(self, ctx: RunContext, state: StackState, web: Any) -> float:
        return ctx.cluster.crash(state.settings.domain_name(web.name))

    def mend(self, ctx: RunContext, state: StackState, web: Any) -> float:
        domain = state.settings.domain_name(web.name)
        ctx.cluster.power_on(domain)  # a new QEMU: its console log starts over
        return ctx.boot_timeout + WAIT_SECONDS

    def run(self, ctx: RunContext, state: StackState) -> StackState:
        state = super().run(ctx, state)
        domain = state.settings.domain_name(self.node(state.settings).name)
        ctx.cluster.wait_booted(ctx.boot_timeout, names=[domain])  # the node as it was
        seconds = ctx.cluster.guests[domain].boot_seconds or 0.0
        # A stack without scale-out has no first boot alone: the floor's solo boot is this cold
        # boot (cloud-init's per-instance modules skip, so it is shorter: the ratio reads high).
        if ctx.facts.solo_boot_s is None:
            ctx.facts.solo_boot_s = ctx.report.timings["solo_boot_s"] = round(seconds, 1)
            ctx.report.timings["solo_boot_from"] = f"{domain}, started again after its QEMU was killed"
        return state


# ---------------------------------------------------------------- the director pair


class DirectorDown:
    name = "fault: the director holding the VIP crashes, under load"

    def run(self, ctx: RunContext, state: StackState) -> StackState:
        settings = state.settings
        assert settings.director.pair is not None
        first = holder(ctx, state)
        second = next(peer for peer in settings.director.pair if peer != first)
        domain = settings.domain_name(first.name)
        test = holds_floating_test(settings)
        watched = Watch(ctx.cluster, ctx.node(state, second.name), test, what=f"{second.name} holding the VIP and gateway")
        since = guest_clock(ctx, state, second.name)
        try:
            result = self.crash(ctx, state, watched, domain) | {"from": first.name, "to": second.name}
            # What the backup scheduled since it took over, by real server, beside the answers
            # the loop counted (a connection the loop did not make shows here).
            result["backupStats"] = ctx.node(state, second.name).run("sudo -n ipvsadm -L -n --stats").stdout.splitlines()
            result["journal"] = keepalived_transitions(ctx, state, second.name, since)
            ctx.report.check(
                f"pair: {second.name}'s keepalived logged becoming master",
                any("Entering MASTER STATE" in line for line in result["journal"]),
                str(result["journal"]),
            )
            ctx.report.faults["directorDown"] = result
            result["return"] = self.come_back(ctx, state, watched, domain, first, second)
        finally:
            watched.stop()
        if first.name == settings.director.name:
            # The crash lost the runtime rules the lab added there as "the user's".
            add_user_rules(ctx.director(state))
        ctx.check_distribution(state, "after the director fault", key="after_director_fault")
        return state

    @staticmethod
    def crash(ctx: RunContext, state: StackState, watched: Watch, domain: str) -> dict[str, Any]:
        settings = state.settings
        loop = RequestLoop(ctx.cluster, state.vip_url, max_seconds=WAIT_SECONDS * 2)
        try:
            watched.wait_for(False)
            time.sleep(BEFORE_FAULT_SECONDS)
            crashed_at = ctx.cluster.crash(domain)
            took_at = watched.wait_for(True)
            time.sleep(SHARES_WINDOW_SECONDS)
        finally:
            answers = loop.stop()
        on_backup = whole_cycles(settings, [answer for answer in answers if answer.at >= took_at])
        shares = judge_answers([f"{answer.code} {answer.seconds} {answer.backend}" for answer in on_backup], settings)
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
        ctx.report.check("pair: the backup holds the VIP and the gateway after the crash", True, f"{result['takeOverSeconds']} s")
        ctx.report.check("pair: requests balance as before on the backup", shares.ok, str(shares.counts))
        return result

    @staticmethod
    def come_back(
        ctx: RunContext, state: StackState, watched: Watch, domain: str, first: DirectorPeer, second: DirectorPeer
    ) -> dict[str, Any]:
        """The crashed director boots again: with preemption it takes the addresses back (one
        more short outage, reported); without, the backup keeps them and nothing fails."""
        settings = state.settings
        preempt = settings.director.vrrp.preempt if settings.director.vrrp else True
        loop = RequestLoop(ctx.cluster, state.vip_url, max_seconds=ctx.boot_timeout + WAIT_SECONDS * 2)
        try:
            ctx.cluster.power_on(domain)  # a new QEMU: its console log starts over
            powered_at = time.time()
            taken_back_at = watched.wait_for(False, timeout=ctx.boot_timeout + WAIT_SECONDS) if preempt else None
            ctx.cluster.wait_booted(ctx.boot_timeout, names=[domain])
            time.sleep(SHARES_WINDOW_SECONDS)  # several adverts from the returned director
        finally:
            answers = loop.stop()
        now_holding = holder(ctx, state)
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
        ctx.report.check(
            f"pair: {expected.name} holds the addresses once {first.name} is back ({'preempt' if preempt else 'nopreempt'})",
            now_holding == expected,
            now_holding.name,
        )
        if not preempt:
            ctx.report.check(
                "pair: no second outage when not preempting", result["failedRequests"] == 0, f"{result['failedRequests']} of {len(answers)}"
            )
        return result
