"""Lifecycles as a user runs them with the real engine: each unit edits the stack or runs the CLI
(`pulumi up`, `pulumi destroy --target`, `pulumi refresh`), then verifies the cluster and the
engine's own account of what it did (its event log).

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
- `Refresh`: `pulumi refresh`: what the engine reads back of Commands and libvirt objects.
- `DeleteRestores`: `pulumi destroy --target` every rule Command again: the director's tables as
  they were after the first such delete, exactly, the user's rules included.

Scaling is in scale.py, a second stack in second_stack.py.
"""

from __future__ import annotations

import copy

from ..engine.cli import Operation
from ..stack.plan import COMMAND
from .checks import add_user_rules, user_rules_there
from .context import Node, RunContext, StackState, StepFailedError

CHANGING = ("create", "update", "replace", "create-replacement", "delete-replaced", "delete")


def touched(operation: Operation) -> set[tuple[str, str]]:
    """(name, op) of every step that changed something."""
    return {(step["name"], step["op"]) for step in operation.steps if step["op"] in CHANGING}


def rule_sets(tables: dict[str, str]) -> dict[str, set[str]]:
    return {table: set(rules.splitlines()) for table, rules in tables.items()}


class Created:
    name = "create (the first pulumi up)"

    def run(self, ctx: RunContext, state: StackState) -> StackState:
        settings = state.settings
        director = ctx.director(state)
        service = f"{settings.vip}:{settings.service.port}"
        listed = ctx.deployment.tables()
        ctx.report.ipvs_table_after_create = "\n".join(listed)
        ctx.report.check("ipvsadm table lists the service", bool(listed) and all(service in table for table in listed), str(listed))
        if settings.keepalived:
            # keepalived rebuilds its table at boot; only the SNAT rule is saved.
            saved = director.run("systemctl is-enabled keepalived; sudo -n cat /etc/iptables/rules.v4").stdout
            ctx.report.check("keepalived enabled and SNAT saved for reboot", saved.startswith("enabled") and "SNAT" in saved)
        else:
            saved = director.run("cat /etc/ipvsadm.rules; sudo -n cat /etc/iptables/rules.v4").stdout
            ctx.report.check("rules saved for reboot", service in saved and "SNAT" in saved)
        # The lab replays these scripts (CreateAgain) and reaches the nodes by them.
        ran = {
            s["name"]: s["inputs"].get("create")
            for up in ctx.facts.first_up
            for s in up.steps
            if s["type"] == COMMAND and s["op"] == "create"
        }
        planned = {command.name: command.create for command in state.topology.commands}
        differing = sorted(name for name in planned.keys() | ran.keys() if planned.get(name) != ran.get(name))
        ctx.report.check("the engine ran exactly the Command scripts the lab planned", differing == [], str(differing))
        return state


class UserOwnedRules:
    name = "user-owned rules"

    def run(self, ctx: RunContext, state: StackState) -> StackState:
        director = ctx.director(state)
        add_user_rules(director)
        ctx.facts.tables_with_user_rules = director.tables()
        return state


class CommandsDeleted:
    name = "delete the rules (pulumi destroy --target)"

    def run(self, ctx: RunContext, state: StackState) -> StackState:
        names = state.topology.rule_commands()
        destroyed = ctx.deployment.destroy_commands(names)
        ctx.report.check(
            "the engine deletes every rule Command and nothing else",
            sorted(destroyed.named("delete")) == sorted(names),
            str(destroyed.changed()),
        )
        after = ctx.director(state).tables()
        ctx.facts.tables_without_ours = after
        ours = [line for line in after["ipvs"].splitlines() if str(state.settings.vip) in line]
        ours += [line for line in after["nat"].splitlines() if "SNAT" in line or "MASQUERADE" in line]
        ctx.report.check("delete leaves none of the program's rules", ours == [], str(ours))
        ctx.report.check("delete leaves the user's rules", user_rules_there(after), str(after))
        return state


class CommandsCreated:
    name = "create the rules again (pulumi up)"

    def run(self, ctx: RunContext, state: StackState) -> StackState:
        up = ctx.deployment.up(name="up_rules")
        ctx.report.check(
            "the engine creates exactly the rule Commands again",
            {name for name, op in touched(up)} == set(state.topology.rule_commands()) and {op for _, op in touched(up)} == {"create"},
            str(up.changed()),
        )
        again = ctx.director(state).tables()
        before = ctx.facts.tables_with_user_rules or {}
        # The same rules; within a chain, each owner's rule where it was added (the user's came
        # after the first create, before this one).
        ctx.report.check(
            "create beside the user's rules leaves the same rules", rule_sets(again) == rule_sets(before), f"{again} != {before}"
        )
        ctx.facts.tables_with_user_rules = again
        return state


class DrainOne:
    name = "update a weight (pulumi config set; pulumi up)"

    def run(self, ctx: RunContext, state: StackState) -> StackState:
        """Weight 0 for the first web node: each director's real server of it updated in place
        (keepalived: its file updated, each director's load and table re-run), no VM touched;
        the live table and the distribution follow."""
        config = copy.deepcopy(state.config)
        web = config["lvs:webServers"][0]
        web["weight"] = 0
        drained = state.edited(config)
        ctx.deployment.stack.config_set("lvs:webServers[0].weight", "0", path=True)
        up = ctx.deployment.operate("up_weight", ctx.deployment.stack.up())
        settings = drained.settings
        if settings.keepalived:
            expected = {(f"keepalived-{d.name}-real-server-{web['name']}", "update") for d in settings.directors}
            expected |= {(f"keepalived-{d.name}-{part}", "replace") for d in settings.directors for part in ("load", "table")}
        else:
            expected = {(f"ipvs-real-server-{web['name']}", "update"), ("ipvs-table", "replace")}
        found = {(name, op) for name, op in touched(up) if op in ("update", "replace")}
        others = {name for name, op in touched(up)} - {name for name, _ in expected}
        ctx.report.check(
            "a weight change updates one real server in place (on each director), nothing else",
            found == expected and others == set(),
            str(up.changed()),
        )
        line = f"{drained.real_server(web['name'])}:"
        weights = [row.split()[-3] for text in ctx.deployment.tables() for row in text.splitlines() if line in row]
        ctx.report.check(f"the live table gives {web['name']} weight 0", bool(weights) and set(weights) == {"0"}, str(weights))
        ctx.check_distribution(drained, "after weight change", key="after_update", check="distribution after the weight change")
        return drained


class UpdateFailsHalfway:
    name = "an update that fails halfway, then pulumi up again"
    # Where ipvsadm-save writes before the rename: a directory there stops the save, as a full
    # or read-only disk would, after the script's ipvsadm call has changed the live table.
    OBSTACLE = "/etc/ipvsadm.rules.new"

    def run(self, ctx: RunContext, state: StackState) -> StackState:
        """Weight 1 for the drained web node while its director cannot save its rules: `pulumi
        up` fails on that real server's Command halfway (the live table changed, the saved
        rules not) and starts nothing that depends on it. The engine keeps the Command's old
        inputs, so once the obstacle is gone the next `pulumi up` runs the same update again:
        the live table and the saved rules agree, and the distribution follows."""
        config = copy.deepcopy(state.config)
        web = config["lvs:webServers"][0]
        web["weight"] = 1
        restored = state.edited(config)
        director = ctx.director(state)
        command = f"ipvs-real-server-{web['name']}"
        blocked = director.run(f"sudo -n mkdir {self.OBSTACLE}")
        if blocked.returncode != 0:
            raise StepFailedError(f"could not put the obstacle in place: {blocked.stderr.strip()}")
        stack = ctx.deployment.stack
        stack.config_set("lvs:webServers[0].weight", "1", path=True)
        failed = stack.up()
        failed_steps = [(s["name"], s["op"]) for s in failed.steps if s["failed"]]
        ctx.report.check(
            "a failing update: pulumi up fails on exactly that real server's Command",
            not failed.ok and failed_steps == [(command, "update")],
            f"{failed_steps} {failed.changed()}",
        )
        ctx.report.check(
            "a failing update: nothing that depends on it runs", touched(failed) == {(command, "update")}, str(failed.changed())
        )
        real = str(state.real_server(web["name"]))
        live, saved = self.weights(director, real)
        ctx.report.check(
            "a failing update stops halfway: the live table changed, the saved rules did not",
            (live, saved) == ("1", "0"),
            f"live {live}, saved {saved}",
        )
        cleared = director.run(f"sudo -n rmdir {self.OBSTACLE}")
        if cleared.returncode != 0:
            raise StepFailedError(f"could not remove the obstacle: {cleared.stderr.strip()}")
        again = ctx.deployment.operate("up_after_failure", stack.up())
        ctx.report.check(
            "pulumi up again runs the same update (the engine kept the old inputs)",
            (command, "update") in touched(again) and {name for name, _ in touched(again)} <= {command, "ipvs-table"},
            str(again.changed()),
        )
        live_rules, saved_rules = director.tables()["ipvs"], director.saved_ipvs_rules()
        live, saved = weight(live_rules, real), weight(saved_rules, real)
        ctx.report.check(
            "after it, the saved rules are the live table",
            (live, saved) == ("1", "1") and live_rules == saved_rules,
            f"live {live}, saved {saved}",
        )
        ctx.check_distribution(restored, "after the failed update ran again", key="after_retry")
        return restored

    @staticmethod
    def weights(director: Node, ip: str) -> tuple[str, str]:
        """The real server's weight in the live table and in the saved rules."""
        return weight(director.tables()["ipvs"], ip), weight(director.saved_ipvs_rules(), ip)


def weight(rules: str, ip: str) -> str:
    """A real server's weight in saved IPVS rules (`-a … -r IP:PORT … -w N …` lines; in tun
    `--tun-type T` follows the weight)."""
    for line in rules.splitlines():
        words = line.split()
        if f"-r {ip}:" in line and "-w" in words[:-1]:
            return words[words.index("-w") + 1]
    return ""


class UpAgain:
    name = "up again: nothing changes"

    def run(self, ctx: RunContext, state: StackState) -> StackState:
        uuids, boots = ctx.cluster.domain_uuids(), ctx.boot_ids(state)
        up = ctx.deployment.operate("up_again", ctx.deployment.stack.up())
        ctx.report.check("up again: the engine changes nothing", touched(up) == set() and up.changes["same"] > 0, str(up.changes))
        ctx.report.check("up again: same domain UUIDs", ctx.cluster.domain_uuids() == uuids)
        ctx.report.check("up again: no guest rebooted", ctx.boot_ids(state) == boots)
        return state


class Refresh:
    name = "pulumi refresh"

    def run(self, ctx: RunContext, state: StackState) -> StackState:
        refresh = ctx.deployment.operate("refresh", ctx.deployment.stack.refresh())
        # Refresh steps are "refresh"; what the engine found drifted it counts as update or delete.
        # Commands have no read: they are always the same. The libvirt objects are read back.
        ctx.report.notes.append(f"refresh: {refresh.changes}, drifted: {refresh.changed()}")
        drifted = refresh.changes["update"] + refresh.changes["delete"]
        ctx.report.check("refresh: libvirt reads back what the engine holds (no drift)", drifted == 0, str(refresh.changed()))
        return state


class DeleteRestores:
    name = "delete"

    def run(self, ctx: RunContext, state: StackState) -> StackState:
        ctx.deployment.destroy_commands(state.topology.rule_commands())
        after = ctx.director(state).tables()
        ctx.report.director_after_delete = after
        before = ctx.facts.tables_without_ours
        ctx.report.check("delete restores the director's tables exactly", after == before, f"before={before} after={after}")
        ctx.report.check("user-owned rules untouched", user_rules_there(after))
        return state
