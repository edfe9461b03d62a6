"""Lifecycles as `pulumi up` runs them, through the lab's libvirtd: each one a unit that
converges the cluster to a changed stack file, makes one change, and verifies it.

- `UpAgain`: the same stack file again changes nothing: no libvirt object, no Command, same
  domain UUIDs, no guest rebooted.
- `ScaleOut`: one more web node in the stack file creates exactly its volume, seed, domain,
  ready-Command and real server (the table is re-read); balance holds over all nodes.
- `ScaleIn`: removing it again drains its real server, then removes it, before its VM goes;
  a request loop runs against the VIP throughout and no request fails.
- `SecondStack`: another stack defined on the same daemon collides with nothing, and
  destroying it leaves the first intact.
"""

from __future__ import annotations

import copy
import ipaddress
import time
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Protocol

from .plan import Plan, record_plan, stack_config
from .topology import Topology, command_changes, read_topology

if TYPE_CHECKING:
    from .cluster import LabCluster
    from .verify import Scenario

REQUEST_INTERVAL_SECONDS = 0.1  # the background loop's pace: at most 10 requests a second
REQUESTS_FLOWING_SECONDS = 3
REQUESTS_DURING_SCALE_IN = 300  # outlasts the removal (a drain of up to 30 s, then the VM's delete)


@dataclass
class Converged:
    """The stack as last applied: what the next lifecycle changes."""

    config: dict[str, Any]
    plan: Plan
    topology: Topology


class Lifecycle(Protocol):
    name: str

    def run(self, run: Scenario, cluster: LabCluster, state: Converged) -> Converged: ...


def changed(run: Scenario, config: dict[str, Any], *, stack: str | None = None) -> Converged:
    """The stack file `config` (of the run's stack, or `stack`), planned as `pulumi up` would plan it."""
    plan = record_plan(config, stack=stack or run.stack)
    return Converged(config, plan, read_topology(plan))


def boot_ids(cluster: LabCluster, topology: Topology) -> dict[str, str]:
    ids = {}
    for command in topology.commands:
        if command.name.endswith("-ready"):
            ids[command.name] = cluster.ssh(command.host, command.user, "cat /proc/sys/kernel/random/boot_id").stdout.strip()
    return ids


class UpAgain:
    name = "up again: nothing changes"

    def run(self, run: Scenario, cluster: LabCluster, state: Converged) -> Converged:
        uuids, boots = cluster.domain_uuids(), boot_ids(cluster, state.topology)
        again = changed(run, copy.deepcopy(state.config))
        changes = cluster.up(again.plan, again.topology)
        run.report.libvirt_changes["up again"] = [asdict(change) for change in changes]
        run.report.check("up again: no libvirt object changes", changes == [], str(changes))
        commands = command_changes(state.topology, again.topology)
        run.report.check("up again: no Command runs", commands == [], str([(c.name, c.action) for c in commands]))
        run.report.check("up again: same domain UUIDs", cluster.domain_uuids() == uuids)
        run.report.check("up again: no guest rebooted", boot_ids(cluster, again.topology) == boots)
        return again


def _extra_web_server(config: dict[str, Any], settings_ips: set[ipaddress.IPv4Address]) -> dict[str, Any]:
    """A web node the stack file does not have: a new name, the first free internal address."""
    webs = config["lvs:webServers"]
    names = {web["name"] for web in webs}
    name = next(f"web{n}" for n in range(len(webs) + 1, 1000) if f"web{n}" not in names)
    cidr = ipaddress.IPv4Network(config["lvs:networks"]["internal"]["cidr"])
    address = next(host for host in cidr.hosts() if host not in settings_ips)
    return {"name": name, "ip": str(address), "export": webs[0]["export"], "weight": 1}


def next_web_server(run: Scenario, state: Converged) -> dict[str, Any]:
    """The web node a scale out adds to `state`: an address no node, bridge or VIP holds."""
    nodes = state.plan.outputs["nodes"].values()
    used = {ipaddress.IPv4Address(node[key]) for node in nodes for key in ("internalIp", "externalIp") if key in node}
    used |= {network.host_ip for network in state.topology.networks}
    return _extra_web_server(state.config, used | {run.settings_of(state.config).vip})


class ScaleOut:
    name = "scale out: one more web node"
    added = ""  # the web node's name, once it ran

    def run(self, run: Scenario, cluster: LabCluster, state: Converged) -> Converged:
        extra = next_web_server(run, state)
        self.added = extra["name"]
        config = copy.deepcopy(state.config)
        config["lvs:webServers"].append(extra)
        out = changed(run, config)
        running = set(cluster.guests)
        changes = cluster.up(out.plan, out.topology)
        run.report.libvirt_changes["scale out"] = [asdict(change) for change in changes]
        created = sorted((change.type, change.name) for change in changes)
        expected = sorted([("Volume", f"{extra['name']}-root"), ("CloudInitDisk", f"{extra['name']}-seed"), ("Domain", extra["name"])])
        run.report.check("scale out: exactly the new node's volume, seed and domain are created", created == expected, str(created))
        commands = command_changes(state.topology, out.topology)
        actions = sorted((change.name, change.action) for change in commands)
        expected_actions = sorted(
            [(f"{extra['name']}-ready", "create"), (f"ipvs-real-server-{extra['name']}", "create"), ("ipvs-table", "replace")]
        )
        run.report.check(
            "scale out: only its ready-Command and real server, and the table re-read", actions == expected_actions, str(actions)
        )
        cluster.wait_booted(run.boot_timeout)
        # The floor's solo boot (verify.floor_timings): this node boots alone, the others idle.
        added = next(guest for name, guest in cluster.guests.items() if name not in running)
        run.report.timings["solo_boot_s"] = round(added.boot_seconds or 0.0, 1)
        run.apply_changes(cluster, commands, out.topology)
        run.check_distribution(cluster, out, "after scale out")
        return out


class ScaleIn:
    name = "scale in: remove the added node under load"

    def __init__(self, scale_out: ScaleOut) -> None:
        self.scale_out = scale_out  # the node it added is the one removed

    def run(self, run: Scenario, cluster: LabCluster, state: Converged) -> Converged:
        config = copy.deepcopy(state.config)
        config["lvs:webServers"] = [web for web in config["lvs:webServers"] if web["name"] != self.scale_out.added]
        back = changed(run, config)
        commands = command_changes(state.topology, back.topology)
        removed = {change.name for change in commands if change.action == "delete"}
        loop = run.background_requests(cluster, back, count=REQUESTS_DURING_SCALE_IN, interval=REQUEST_INTERVAL_SECONDS)
        started = time.monotonic()
        time.sleep(REQUESTS_FLOWING_SECONDS)  # the loop is answering before anything is removed
        try:
            # Pulumi deletes dependents first: the real server (drained by its delete), the
            # node's ready-Command, then the VM and its volumes.
            run.apply_changes(cluster, commands, back.topology)
            changes = cluster.up(back.plan, back.topology)
        finally:
            lines = run.collect(loop)
        run.report.libvirt_changes["scale in"] = [asdict(change) for change in changes]
        failed = [line for line in lines if not line.startswith("200 ")]
        run.report.scale_in = {
            "requests": len(lines),
            "failed": len(failed),
            "seconds": round(time.monotonic() - started, 1),
            "failures": failed[:20],
        }
        run.report.check(
            "scale in: its real server and ready-Command are deleted",
            any(n.startswith("ipvs-real-server-") for n in removed),
            str(sorted(removed)),
        )
        deleted = sorted((change.type, change.name) for change in changes if change.action == "delete")
        run.report.check(
            "scale in: its domain and volumes go after the rules",
            len(deleted) == 3 and changes == [c for c in changes if c.action == "delete"],
            str(deleted),
        )
        run.report.check(
            "scale in: no request fails during the removal", lines != [] and failed == [], f"{len(failed)} of {len(lines)} failed"
        )
        return back


class SecondStack:
    name = "a second stack on the same daemon"

    def __init__(self, config_path: str) -> None:
        self.config_path = config_path

    def run(self, run: Scenario, cluster: LabCluster, state: Converged) -> Converged:
        # Defined, not booted: the time budget of one 2-core machine.
        config = run.lab_stack_config(stack_config(self.config_path))
        stack = self.config_path.rsplit("/", 1)[-1].removeprefix("Pulumi.").removesuffix(".yaml")
        plan = record_plan(config, stack=stack)
        first = cluster.libvirt_inventory()
        second, provided = cluster.second_deployment(plan)
        try:
            changes = second.up(plan)
            run.report.check(f"second stack {stack}: every object defined beside the first", len(changes) > 0, f"{len(changes)} objects")
            bridges = cluster.bridge_names()
            run.report.check("second stack: no bridge shared", len(set(bridges.values())) == len(bridges), str(bridges))
        finally:
            second.destroy()
            left = cluster.leftovers(plan)
            cluster.remove_pools(provided)
        run.report.check(f"second stack {stack}: destroy leaves none of its objects", left == [], str(left))
        now = cluster.libvirt_inventory()
        differences = {kind: sorted(set(now[kind]) ^ set(first[kind])) for kind in first if now[kind] != first[kind]}
        run.report.check("second stack: the first stack is intact", differences == {}, str(differences))
        return state
