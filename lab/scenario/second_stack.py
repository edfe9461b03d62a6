"""`SecondStack`: another stack of the same project on the same daemon, its first `pulumi up`
stopped by a Ctrl-C and run again, serving, destroyed; the first intact."""

from __future__ import annotations

import time

from ..stack.plan import COMMAND, stack_config
from .context import RunContext, StackState, StepFailedError


class SecondStack:
    name = "a second stack on the same daemon"

    def run(self, ctx: RunContext, state: StackState) -> StackState:
        """Another environment of the same project (`pulumi stack init`, its own stack file) on
        the same daemon: up beside the first, its VIP serving, destroyed; the first intact."""
        if ctx.second_stack is None:
            raise StepFailedError("a second stack needs --second-stack")
        cluster, report = ctx.cluster, ctx.report
        config = ctx.prepared.lab_stack_config(stack_config(ctx.second_stack))
        second = ctx.deployment.another_stack(ctx.second_stack, config)
        stack = second.stack
        other = StackState.planned(config, stack=stack)
        first = cluster.libvirt_inventory()
        provided = cluster.provide_pools(other.plan)
        for guest in other.topology.guests:
            cluster.watch(guest.name, started_at=time.monotonic())
        try:
            # A user's Ctrl-C once its ready Commands wait for the guests: the engine cancels,
            # the command provider kills the scripts it runs, and `pulumi up` again does the rest.
            interrupted = second.up_interrupted(lambda step: step["type"] == COMMAND and step["op"] == "create")
            report.check(
                f"second stack {stack}: one Ctrl-C cancels pulumi up",
                not interrupted.ok and "^C received; cancelling" in interrupted.output,
                interrupted.output[-1500:],
            )
            pending = second.pending_operations()
            report.check(f"second stack {stack}: after the Ctrl-C nothing is left pending", pending == [], str(pending))
            up = ctx.deployment.up(name=f"up_{stack}", stack=second)
            twice = sorted(set(interrupted.named("create", type_prefix="libvirt:")) & set(up.named("create", type_prefix="libvirt:")))
            report.check(
                f"second stack {stack}: pulumi up after the Ctrl-C creates the rest, no libvirt object twice",
                up.changes["create"] > 0 and twice == [],
                f"{interrupted.changes} then {up.changes}; twice: {twice}",
            )
            bridges = cluster.bridge_names()
            report.check("second stack: no bridge shared", len(set(bridges.values())) == len(bridges), str(bridges))
            cluster.wait_booted(ctx.boot_timeout)
            ctx.check_distribution(other, f"of the second stack {stack}", key=f"second_stack_{stack}")
        finally:
            # Not raised here: an earlier failure is the one to report; this one is a check.
            destroyed = second.destroy()
            for guest in other.topology.guests:
                cluster.forget(guest.name)
        report.check(f"second stack {stack}: pulumi destroy succeeds", destroyed.ok, destroyed.output[-2000:])
        left = cluster.leftovers(other.plan)
        report.check(f"second stack {stack}: destroy leaves none of its objects", left == [], str(left))
        kept = second.urns()
        report.check(f"second stack {stack}: nothing left in the engine's state", kept == set(), str(sorted(kept)))
        if left == []:  # a pool still holding volumes cannot go; the daemon takes it at the end
            cluster.remove_pools(provided)
            cluster.provided_pools = [name for name in cluster.provided_pools if name not in provided]
        now = cluster.libvirt_inventory()
        differences = {kind: sorted(set(now[kind]) ^ set(first[kind])) for kind in first if now[kind] != first[kind]}
        report.check("second stack: the first stack is intact", differences == {}, str(differences))
        return state
