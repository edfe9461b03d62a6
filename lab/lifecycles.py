"""Lifecycles as a user runs them with the real engine: each unit edits the stack or runs the CLI
(`pulumi up`, `pulumi destroy --target`, `pulumi refresh`), then verifies the cluster and the
engine's own account of what it did (its event log). The units that only look at or break the
running cluster are in scenarios.py, faults.py and vrrp_faults.py.

- `Created`: after the first `pulumi up`: the table lists the service, the rules are saved for a
  reboot, and the Command scripts the engine ran are the ones the lab planned.
- `UserOwnedRules`: an IPVS service and a NAT rule the user adds by hand on the director.
- `CommandsDeleted`: `pulumi destroy --target` every rule Command: the program's rules go, the
  user's stay.
- `CommandsCreated`: `pulumi up` creates them again on a director holding the user's rules: the
  same tables as before.
- `DrainOne`: `pulumi config set --path 'lvs:webServers[0].weight' 0; pulumi up`: one update per
  director, no VM, the live table and the distribution follow.
- `UpdateFailsHalfway`: the drained node's weight back while its director cannot save its rules:
  `pulumi up` fails halfway through that Command's script; with the obstacle gone, `pulumi up`
  runs it again and the saved rules are the live table.
- `UpAgain`: `pulumi up` of the unchanged stack: no step, same domain UUIDs, no guest rebooted.
- `ScaleOut` / `ScaleIn`: one more web node in the stack file, then out again under a bounded
  request loop: no request fails, its Commands (the drain) end before its domain goes.
- `SecondStack`: another stack of the same project on the same daemon, its first `pulumi up`
  stopped by a Ctrl-C and run again, serving, destroyed; the first intact.
- `Refresh`: `pulumi refresh`: what the engine reads back of Commands and libvirt objects.
- `DeleteRestores`: `pulumi destroy --target` every rule Command again: the director's tables as
  they were after the first such delete, exactly, the user's rules included.
"""

from __future__ import annotations

import copy
import ipaddress
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from .plan import COMMAND, DOMAIN, Plan, record_plan, stack_config
from .scenarios import USER_IPVS_SERVICE, add_user_rules
from .topology import LabCommand, Topology, read_topology

if TYPE_CHECKING:
    from .cluster import LabCluster
    from .engine import Operation
    from .engine_verify import EngineScenario
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
    """A unit of the run; the ones that take any Scenario (scenarios.py, faults.py) are ones too."""

    name: str

    def run(self, run: EngineScenario, cluster: LabCluster, state: Converged) -> Converged: ...


def changed(run: Scenario, config: dict[str, Any], *, stack: str | None = None) -> Converged:
    """The stack file `config` (of the run's stack, or `stack`), planned as `pulumi up` would plan it."""
    plan = record_plan(config, stack=stack or run.stack)
    return Converged(config, plan, read_topology(plan))


def boot_ids(cluster: LabCluster, topology: Topology) -> dict[str, str]:
    ids = {}
    for command in topology.commands:
        if command.name.endswith("-ready"):
            answer = cluster.ssh(command.host, command.user, "cat /proc/sys/kernel/random/boot_id")
            if answer.returncode != 0 or not answer.stdout.strip():
                raise RuntimeError(f"no boot id from {command.host}: {answer.stderr.strip()}")
            ids[command.name] = answer.stdout.strip()
    return ids


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


CHANGING = ("create", "update", "replace", "create-replacement", "delete-replaced", "delete")


def rule_commands(state: Converged) -> list[str]:
    """The Commands that own rules on the directors: every Command but the nodes' ready waits."""
    return [command.name for command in state.topology.commands if not command.name.endswith("-ready")]


def tables(run: EngineScenario) -> list[str]:
    """`pulumi stack output ipvsTable`: one table, or one per director."""
    table = run.engine_stack.output("ipvsTable")
    return [str(text) for text in (table.values() if isinstance(table, dict) else [table])]


def touched(operation: Operation) -> set[tuple[str, str]]:
    """(name, op) of every step that changed something."""
    return {(step["name"], step["op"]) for step in operation.steps if step["op"] in CHANGING}


class Created:
    name = "create (the first pulumi up)"

    def run(self, run: EngineScenario, cluster: LabCluster, state: Converged) -> Converged:
        settings = run.settings_of(state.config)
        director = run.director_of(state)
        service = f"{settings.vip}:{settings.service.port}"
        listed = tables(run)
        run.report.ipvs_table_after_create = "\n".join(listed)
        run.report.check("ipvsadm table lists the service", bool(listed) and all(service in table for table in listed), str(listed))
        if settings.keepalived:
            # keepalived rebuilds its table at boot; only the SNAT rule is saved.
            saved = cluster.ssh(director.host, director.user, "systemctl is-enabled keepalived; sudo -n cat /etc/iptables/rules.v4").stdout
            run.report.check("keepalived enabled and SNAT saved for reboot", saved.startswith("enabled") and "SNAT" in saved)
        else:
            saved = cluster.ssh(director.host, director.user, "cat /etc/ipvsadm.rules; sudo -n cat /etc/iptables/rules.v4").stdout
            run.report.check("rules saved for reboot", service in saved and "SNAT" in saved)
        # The lab replays these scripts (CreateAgain) and reaches the nodes by them.
        ran = {
            s["name"]: s["inputs"].get("create") for up in run.first_up for s in up.steps if s["type"] == COMMAND and s["op"] == "create"
        }
        planned = {command.name: command.create for command in state.topology.commands}
        differing = sorted(name for name in planned.keys() | ran.keys() if planned.get(name) != ran.get(name))
        run.report.check("the engine ran exactly the Command scripts the lab planned", differing == [], str(differing))
        return state


class UserOwnedRules:
    name = "user-owned rules"

    def run(self, run: EngineScenario, cluster: LabCluster, state: Converged) -> Converged:
        director = run.director_of(state)
        add_user_rules(run, cluster, director)
        run.director_created = run.director_state(cluster, director)
        return state


class CommandsDeleted:
    name = "delete the rules (pulumi destroy --target)"

    def run(self, run: EngineScenario, cluster: LabCluster, state: Converged) -> Converged:
        names = rule_commands(state)
        destroyed = run.destroy_commands(names)
        run.report.check(
            "the engine deletes every rule Command and nothing else",
            sorted(destroyed.named("delete")) == sorted(names),
            str(destroyed.changed()),
        )
        after = run.director_state(cluster, run.director_of(state))
        run.director_before = after
        settings = run.settings_of(state.config)
        ours = [line for line in after["ipvs"].splitlines() if str(settings.vip) in line]
        ours += [line for line in after["nat"].splitlines() if "SNAT" in line or "MASQUERADE" in line]
        run.report.check("delete leaves none of the program's rules", ours == [], str(ours))
        run.report.check("delete leaves the user's rules", user_rules_there(after), str(after))
        return state


class CommandsCreated:
    name = "create the rules again (pulumi up)"

    def run(self, run: EngineScenario, cluster: LabCluster, state: Converged) -> Converged:
        up = run.up_as_a_user_would(name="up_rules")
        run.report.check(
            "the engine creates exactly the rule Commands again",
            {name for name, op in touched(up)} == set(rule_commands(state)) and {op for _, op in touched(up)} == {"create"},
            str(up.changed()),
        )
        again = run.director_state(cluster, run.director_of(state))
        # The same rules; within a chain, each owner's rule where it was added (the user's came
        # after the first create, before this one).
        run.report.check(
            "create beside the user's rules leaves the same rules",
            rule_sets(again) == rule_sets(run.director_created),
            f"{again} != {run.director_created}",
        )
        run.director_created = again
        return state


class DrainOne:
    name = "update a weight (pulumi config set; pulumi up)"

    def run(self, run: EngineScenario, cluster: LabCluster, state: Converged) -> Converged:
        """Weight 0 for the first web node: each director's real server of it updated in place
        (keepalived: its file updated, each director's load and table re-run), no VM touched;
        the live table and the distribution follow."""
        config = copy.deepcopy(state.config)
        web = config["lvs:webServers"][0]
        web["weight"] = 0
        drained = changed(run, config)
        run.engine_stack.config_set("lvs:webServers[0].weight", "0", path=True)
        up = run.operate("up_weight", run.engine_stack.up())
        settings = run.settings_of(config)
        if settings.keepalived:
            expected = {(f"keepalived-{d.name}-real-server-{web['name']}", "update") for d in settings.directors}
            expected |= {(f"keepalived-{d.name}-{part}", "replace") for d in settings.directors for part in ("load", "table")}
        else:
            expected = {(f"ipvs-real-server-{web['name']}", "update"), ("ipvs-table", "replace")}
        found = {(name, op) for name, op in touched(up) if op in ("update", "replace")}
        others = {name for name, op in touched(up)} - {name for name, _ in expected}
        run.report.check(
            "a weight change updates one real server in place (on each director), nothing else",
            found == expected and others == set(),
            str(up.changed()),
        )
        line = f"{web['ip']}:"
        weights = [row.split()[-3] for text in tables(run) for row in text.splitlines() if line in row]
        run.report.check(f"the live table gives {web['name']} weight 0", bool(weights) and set(weights) == {"0"}, str(weights))
        run.check_distribution(cluster, drained, "after weight change", key="after_update", check="distribution after the weight change")
        return drained


class UpdateFailsHalfway:
    name = "an update that fails halfway, then pulumi up again"
    # Where ipvsadm-save writes before the rename: a directory there stops the save, as a full
    # or read-only disk would, after the script's ipvsadm call has changed the live table.
    OBSTACLE = "/etc/ipvsadm.rules.new"

    def run(self, run: EngineScenario, cluster: LabCluster, state: Converged) -> Converged:
        """Weight 1 for the drained web node while its director cannot save its rules: `pulumi
        up` fails on that real server's Command halfway (the live table changed, the saved
        rules not) and starts nothing that depends on it. The engine keeps the Command's old
        inputs, so once the obstacle is gone the next `pulumi up` runs the same update again:
        the live table and the saved rules agree, and the distribution follows."""
        config = copy.deepcopy(state.config)
        web = config["lvs:webServers"][0]
        web["weight"] = 1
        restored = changed(run, config)
        director = run.director_of(state)
        command = f"ipvs-real-server-{web['name']}"
        blocked = cluster.ssh(director.host, director.user, f"sudo -n mkdir {self.OBSTACLE}")
        if blocked.returncode != 0:
            raise run.failure(f"could not put the obstacle in place: {blocked.stderr.strip()}")
        run.engine_stack.config_set("lvs:webServers[0].weight", "1", path=True)
        failed = run.engine_stack.up()
        failed_steps = [(s["name"], s["op"]) for s in failed.steps if s["failed"]]
        run.report.check(
            "a failing update: pulumi up fails on exactly that real server's Command",
            not failed.ok and failed_steps == [(command, "update")],
            f"{failed_steps} {failed.changed()}",
        )
        run.report.check(
            "a failing update: nothing that depends on it runs", touched(failed) == {(command, "update")}, str(failed.changed())
        )
        live, saved = self.weights(cluster, director, web["ip"])
        run.report.check(
            "a failing update stops halfway: the live table changed, the saved rules did not",
            (live, saved) == ("1", "0"),
            f"live {live}, saved {saved}",
        )
        cleared = cluster.ssh(director.host, director.user, f"sudo -n rmdir {self.OBSTACLE}")
        if cleared.returncode != 0:
            raise run.failure(f"could not remove the obstacle: {cleared.stderr.strip()}")
        again = run.operate("up_after_failure", run.engine_stack.up())
        run.report.check(
            "pulumi up again runs the same update (the engine kept the old inputs)",
            (command, "update") in touched(again) and {name for name, _ in touched(again)} <= {command, "ipvs-table"},
            str(again.changed()),
        )
        live, saved = self.weights(cluster, director, web["ip"])
        rules = cluster.ssh(director.host, director.user, "sudo -n ipvsadm -S -n | cmp -s - /etc/ipvsadm.rules && echo same")
        run.report.check(
            "after it, the saved rules are the live table",
            (live, saved) == ("1", "1") and rules.stdout.strip() == "same",
            f"live {live}, saved {saved}",
        )
        run.check_distribution(cluster, restored, "after the failed update ran again", key="after_retry")
        return restored

    @staticmethod
    def weights(cluster: LabCluster, director: LabCommand, ip: str) -> tuple[str, str]:
        """The real server's weight in the live table and in the saved rules (`-a … -w N` lines)."""
        script = "sudo -n ipvsadm -S -n; echo ---; cat /etc/ipvsadm.rules"
        live, _, saved = cluster.ssh(director.host, director.user, script).stdout.partition("---\n")

        def weight(rules: str) -> str:
            return next((line.split("-w")[-1].strip() for line in rules.splitlines() if f"-r {ip}:" in line), "")

        return weight(live), weight(saved)


class UpAgain:
    name = "up again: nothing changes"

    def run(self, run: EngineScenario, cluster: LabCluster, state: Converged) -> Converged:
        uuids, boots = cluster.domain_uuids(), boot_ids(cluster, state.topology)
        up = run.operate("up_again", run.engine_stack.up())
        run.report.check("up again: the engine changes nothing", touched(up) == set() and up.changes["same"] > 0, str(up.changes))
        run.report.check("up again: same domain UUIDs", cluster.domain_uuids() == uuids)
        run.report.check("up again: no guest rebooted", boot_ids(cluster, state.topology) == boots)
        return state


class ScaleOut:
    name = "scale out: one more web node"
    added = ""

    def run(self, run: EngineScenario, cluster: LabCluster, state: Converged) -> Converged:
        """One more web node in the stack file, `pulumi up`: the engine creates exactly its
        volume, seed, domain and Commands; nothing else of libvirt changes; balance holds."""
        extra = next_web_server(run, state)
        self.added = extra["name"]
        config = copy.deepcopy(state.config)
        config["lvs:webServers"].append(extra)
        grown = changed(run, config)
        run.engine_stack.write_config(config)
        domain = next(guest.name for guest in grown.topology.guests if guest.name not in cluster.guests)
        cluster.watch(domain, started_at=time.monotonic())
        up = run.up_as_a_user_would(name="up_scale_out")
        created = up.named("create", type_prefix="libvirt:")
        expected = sorted([f"{extra['name']}-root", f"{extra['name']}-seed", extra["name"]])
        run.report.check("scale out: the engine creates exactly the new node's volume, seed and domain", created == expected, str(created))
        libvirt_others = [s["name"] for s in up.steps if s["type"].startswith("libvirt:") and s["op"] in CHANGING and s["op"] != "create"]
        run.report.check("scale out: no other libvirt object changes", libvirt_others == [], f"{up.changes} {libvirt_others}")
        cluster.wait_booted(run.boot_timeout)
        # The floor's solo boot (verify.floor_timings): this node boots alone, the others idle.
        run.report.timings["solo_boot_s"] = round(cluster.guests[domain].guest_uptime or 0.0, 1)
        run.check_distribution(cluster, grown, "after scale out")
        return grown


class ScaleIn:
    name = "scale in: remove the added node under load"

    def __init__(self, scale_out: ScaleOut) -> None:
        self.scale_out = scale_out  # the node it added is the one removed

    def run(self, run: EngineScenario, cluster: LabCluster, state: Converged) -> Converged:
        """The added node out of the stack file again, `pulumi up` under a bounded request loop:
        no request fails; the engine deletes its real server (drained) before its domain."""
        config = copy.deepcopy(state.config)
        config["lvs:webServers"] = [web for web in config["lvs:webServers"] if web["name"] != self.scale_out.added]
        back = changed(run, config)
        run.engine_stack.write_config(config)
        loop = run.background_requests(cluster, back, count=REQUESTS_DURING_SCALE_IN, interval=REQUEST_INTERVAL_SECONDS)
        started = time.monotonic()
        time.sleep(REQUESTS_FLOWING_SECONDS)  # the loop is answering before anything is removed
        try:
            up = run.up_as_a_user_would(name="up_scale_in")
        except BaseException:
            loop.kill()  # the loop may outlive a broken VIP by its 300 requests' timeouts
            run.collect(loop)
            raise
        lines = run.collect(loop)
        deleted = up.named("delete", type_prefix="libvirt:")
        run.report.check("scale in: the engine deletes the node's volume, seed and domain", len(deleted) == 3, str(deleted))
        domain_deleted = min((s["startSequence"] for s in up.steps if s["type"] == DOMAIN and s["op"] == "delete"), default=0)
        commands_deleted = [s for s in up.steps if s["type"] == COMMAND and s["op"] == "delete"]
        run.report.check(
            "scale in: its Commands (the real server's drain among them) end before its domain is deleted",
            bool(commands_deleted) and all(s["endSequence"] is not None and s["endSequence"] < domain_deleted for s in commands_deleted),
            str([s["name"] for s in commands_deleted]),
        )
        failed = [line for line in lines if not line.startswith("200 ")]
        run.report.scale_in = {
            "node": self.scale_out.added,
            "requests": len(lines),
            "failed": len(failed),
            "seconds": round(time.monotonic() - started, 1),
            "failures": failed[:20],
        }
        run.report.check(
            "scale in: no request fails during the removal", lines != [] and failed == [], f"{len(failed)} of {len(lines)} failed"
        )
        for name in [name for name in cluster.guests if name not in {guest.name for guest in back.topology.guests}]:
            cluster.forget(name)
        return back


class SecondStack:
    name = "a second stack on the same daemon"

    def __init__(self, config_path: str) -> None:
        self.config_path = config_path

    def run(self, run: EngineScenario, cluster: LabCluster, state: Converged) -> Converged:
        """Another environment of the same project (`pulumi stack init`, its own stack file) on
        the same daemon: up beside the first, its VIP serving, destroyed; the first intact."""
        config = run.lab_stack_config(stack_config(self.config_path))
        second = run.second_engine_stack(self.config_path, config)
        stack = second.stack
        other = changed(run, config, stack=stack)
        first = cluster.libvirt_inventory()
        provided = cluster.provide_pools(other.plan)
        for guest in other.topology.guests:
            cluster.watch(guest.name, started_at=time.monotonic())
        try:
            # A user's Ctrl-C once its ready Commands wait for the guests: the engine cancels,
            # the command provider kills the scripts it runs, and `pulumi up` again does the rest.
            interrupted = second.up_interrupted(lambda step: step["type"] == COMMAND and step["op"] == "create")
            run.report.check(
                f"second stack {stack}: one Ctrl-C cancels pulumi up",
                not interrupted.ok and "^C received; cancelling" in interrupted.output,
                interrupted.output[-1500:],
            )
            pending = second.pending_operations()
            run.report.check(f"second stack {stack}: after the Ctrl-C nothing is left pending", pending == [], str(pending))
            up = run.up_as_a_user_would(name=f"up_{stack}", stack=second)
            twice = sorted(set(interrupted.named("create", type_prefix="libvirt:")) & set(up.named("create", type_prefix="libvirt:")))
            run.report.check(
                f"second stack {stack}: pulumi up after the Ctrl-C creates the rest, no libvirt object twice",
                up.changes["create"] > 0 and twice == [],
                f"{interrupted.changes} then {up.changes}; twice: {twice}",
            )
            bridges = cluster.bridge_names()
            run.report.check("second stack: no bridge shared", len(set(bridges.values())) == len(bridges), str(bridges))
            cluster.wait_booted(run.boot_timeout)
            run.check_distribution(cluster, other, f"of the second stack {stack}", key=f"second_stack_{stack}")
        finally:
            # Not raised here: an earlier failure is the one to report; this one is a check.
            destroyed = second.destroy()
            for guest in other.topology.guests:
                cluster.forget(guest.name)
        run.report.check(f"second stack {stack}: pulumi destroy succeeds", destroyed.ok, destroyed.output[-2000:])
        left = cluster.leftovers(other.plan)
        run.report.check(f"second stack {stack}: destroy leaves none of its objects", left == [], str(left))
        kept = second.urns()
        run.report.check(f"second stack {stack}: nothing left in the engine's state", kept == set(), str(sorted(kept)))
        if left == []:  # a pool still holding volumes cannot go; the daemon takes it at the end
            cluster.remove_pools(provided)
            cluster.provided_pools = [name for name in cluster.provided_pools if name not in provided]
        now = cluster.libvirt_inventory()
        differences = {kind: sorted(set(now[kind]) ^ set(first[kind])) for kind in first if now[kind] != first[kind]}
        run.report.check("second stack: the first stack is intact", differences == {}, str(differences))
        return state


class Refresh:
    name = "pulumi refresh"

    def run(self, run: EngineScenario, cluster: LabCluster, state: Converged) -> Converged:
        refresh = run.operate("refresh", run.engine_stack.refresh())
        # Refresh steps are "refresh"; what the engine found drifted it counts as update or delete.
        # Commands have no read: they are always the same. The libvirt objects are read back.
        run.report.notes.append(f"refresh: {refresh.changes}, drifted: {refresh.changed()}")
        drifted = refresh.changes["update"] + refresh.changes["delete"]
        run.report.check("refresh: libvirt reads back what the engine holds (no drift)", drifted == 0, str(refresh.changed()))
        return state


class DeleteRestores:
    name = "delete"

    def run(self, run: EngineScenario, cluster: LabCluster, state: Converged) -> Converged:
        run.destroy_commands(rule_commands(state))
        after = run.director_state(cluster, run.director_of(state))
        run.report.director_after_delete = after
        before = run.director_before
        run.report.check("delete restores the director's tables exactly", after == before, f"before={before} after={after}")
        run.report.check("user-owned rules untouched", user_rules_there(after))
        return state


def rule_sets(director: dict[str, str]) -> dict[str, set[str]]:
    return {table: set(rules.splitlines()) for table, rules in director.items()}


def user_rules_there(director: dict[str, Any]) -> bool:
    return "owned-by-the-user" in director["nat"] and USER_IPVS_SERVICE.split()[-1] in director["ipvs"]
