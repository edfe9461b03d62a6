"""The rules as Pulumi Commands: exact ipvsadm/iptables calls in their inputs, ordering after
the VMs they touch, update-in-place versus replace, and scripts that are idempotent and
delete exactly what they added (run here against stand-ins for ipvsadm and iptables that
keep the kernel tables as files; the VM lab runs them against the real tools)."""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from components.ipvs import DRAIN_SECONDS
from components.remote import LOCK_FILE, LOCK_WAIT_SECONDS
from lab.stack.plan import Plan, PlannedResource, record_plan
from tests.conftest import COMMAND, DOMAIN, second_config

FAKES = Path(__file__).with_name("fakes")


def body(command: str) -> str:
    """The script inside `sudo -n flock -w N LOCK sh -eu <<'END' ... END`."""
    match = re.fullmatch(r"sudo -n flock -w \d+ /run/lock/lvs-cluster\.lock sh -eu <<'(\w+)'\n(.*)\n\1\n", command, re.S)
    assert match, command
    return match[2]


def rule_commands(plan: Plan) -> dict[str, PlannedResource]:
    return {c.name: c for c in plan.of_type(COMMAND) if not c.name.endswith("-ready") and c.name != "ipvs-table"}


def test_the_seed_rules_are_in_the_command_inputs(seed_plan: Plan) -> None:
    service = seed_plan.named("ipvs-virtual-service").inputs
    assert "ipvsadm -A -t 12.0.0.1:80 -s rr\n" in service["create"]
    assert "ipvsadm -E -t 12.0.0.1:80 -s rr\n" in service["create"]
    assert "ipvsadm -D -t 12.0.0.1:80\n" in service["delete"]
    for name, rip in (("web1", "192.168.75.50"), ("web2", "192.168.75.60")):
        real = seed_plan.named(f"ipvs-real-server-{name}").inputs
        assert f"ipvsadm -a -t 12.0.0.1:80 -r {rip}:80 -m -w 1\n" in real["create"]
        assert f"ipvsadm -d -t 12.0.0.1:80 -r {rip}:80\n" in real["delete"]
    snat = seed_plan.named("snat-rule").inputs
    rule = "POSTROUTING -s 192.168.75.0/24 -o ext0 -m comment --comment lvs-cluster:seed -j SNAT --to-source 12.0.0.1"
    assert f"iptables -w -t nat -A {rule}\n" in snat["create"]
    assert f"iptables -w -t nat -D {rule}\n" in snat["delete"]
    assert seed_plan.outputs["snatRule"] == rule


def test_weighted_service_on_another_port(wrr_plan: Plan) -> None:
    assert "ipvsadm -A -t 172.31.5.2:8080 -s wrr\n" in wrr_plan.named("ipvs-virtual-service").inputs["create"]
    for name, rip, weight in (("alpha", "10.20.0.21", 3), ("beta", "10.20.0.22", 2), ("gamma", "10.20.0.23", 1)):
        create = wrr_plan.named(f"ipvs-real-server-{name}").inputs["create"]
        assert f"ipvsadm -a -t 172.31.5.2:8080 -r {rip}:8080 -m -w {weight}\n" in create


def test_commands_connect_to_the_director_as_the_admin_user(any_plan: Plan) -> None:
    director = next(node for node in any_plan.outputs["nodes"].values() if node["role"] == "director")
    for command in rule_commands(any_plan).values():
        connection = command.inputs["connection"]
        assert connection["host"] == director["internalIp"]
        assert connection["user"] == ("lvsadmin" if any_plan.stack == "seed" else "ops")
        assert connection["privateKey"].startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
        assert connection["dialErrorLimit"] >= 60


def test_rules_wait_for_cloud_init_on_the_vms_they_touch(any_plan: Plan) -> None:
    nodes = any_plan.outputs["nodes"]
    director = next(name for name, node in nodes.items() if node["role"] == "director")
    director_ready = any_plan.named(f"{director}-ready")
    assert director_ready.depends_on(any_plan.named(director, DOMAIN))
    assert "cloud-init status --wait" in director_ready.inputs["create"]
    service = any_plan.named("ipvs-virtual-service")
    assert service.depends_on(director_ready)
    assert any_plan.named("snat-rule").depends_on(director_ready)
    for name, node in nodes.items():
        ready = any_plan.named(f"{name}-ready")
        assert ready.inputs["connection"]["host"] == node.get("internalIp", node.get("externalIp"))
        if node["role"] == "web":
            real = any_plan.named(f"ipvs-real-server-{name}")
            assert real.depends_on(service) and real.depends_on(ready)
    table = any_plan.named("ipvs-table")
    assert all(table.depends_on(rule) for rule in rule_commands(any_plan).values() if rule.name.startswith("ipvs-"))


def test_persistence_is_passed_to_ipvsadm(config_with: Any) -> None:
    plan = record_plan(config_with(lambda c: c["lvs:service"].update(persistence=300)), stack="seed")
    assert "ipvsadm -A -t 12.0.0.1:80 -s rr -p 300\n" in plan.named("ipvs-virtual-service").inputs["create"]


def test_update_in_place_versus_replace(seed_plan: Plan) -> None:
    service = seed_plan.named("ipvs-virtual-service")
    assert service.inputs["update"] == service.inputs["create"]
    assert service.inputs["triggers"] == ["-t 12.0.0.1:80"]
    real = seed_plan.named("ipvs-real-server-web1")
    assert real.inputs["update"] == real.inputs["create"]
    assert real.inputs["triggers"] == ["-t 12.0.0.1:80", "192.168.75.50:80"]
    snat = seed_plan.named("snat-rule")
    assert "update" not in snat.inputs
    assert snat.inputs["triggers"] == [seed_plan.outputs["snatRule"]]
    assert all(rule.delete_before_replace for rule in rule_commands(seed_plan).values())


def test_changing_a_weight_changes_one_real_server_and_no_vm(seed_plan: Plan, config_with: Any) -> None:
    def heavier(config: dict[str, Any]) -> None:
        config["lvs:webServers"][1]["weight"] = 3

    changed = record_plan(config_with(heavier), stack="seed")
    before = {(r.type, r.name): r.inputs for r in seed_plan.resources}
    after = {(r.type, r.name): r.inputs for r in changed.resources}
    assert before.keys() == after.keys()
    differing = sorted(name for key, name in before if before[(key, name)] != after[(key, name)])
    assert differing == ["ipvs-real-server-web2", "ipvs-table"]
    new = after[(COMMAND, "ipvs-real-server-web2")]
    assert new["triggers"] == before[(COMMAND, "ipvs-real-server-web2")]["triggers"]  # update, not replace
    assert "-m -w 3\n" in new["update"]


def test_changing_the_scheduler_touches_no_vm(seed_plan: Plan, config_with: Any) -> None:
    changed = record_plan(config_with(lambda c: c["lvs:service"].update(scheduler="wlc")), stack="seed")
    before = {(r.type, r.name): r.inputs for r in seed_plan.resources}
    differing = sorted(r.name for r in changed.resources if before[(r.type, r.name)] != r.inputs)
    assert differing == ["ipvs-table", "ipvs-virtual-service"]


def test_no_script_flushes_anything(any_plan: Plan) -> None:
    for command in any_plan.of_type(COMMAND):
        for script in (command.inputs.get("create", ""), command.inputs.get("delete", "")):
            assert not re.search(r"ipvsadm\s+(-C|--clear)|iptables[^\n]*\s(-F|-X|--flush)\b|flush", script), script


def test_scripts_are_valid_posix_shell(any_plan: Plan) -> None:
    for command in rule_commands(any_plan).values():
        for phase in ("create", "update", "delete"):
            if phase in command.inputs:
                subprocess.run(["sh", "-n", "-c", body(command.inputs[phase])], check=True)


class Director:
    """Runs rule scripts as the director would, with ipvsadm and iptables stood in for."""

    def __init__(self, tmp_path: Path) -> None:
        self.state = tmp_path
        self.env = {**os.environ, "PATH": f"{FAKES}:{os.environ['PATH']}", "FAKE_STATE": str(tmp_path)}

    def run(self, command: str) -> subprocess.CompletedProcess[str]:
        assert command.startswith(("sudo -n sh -eu <<'", f"sudo -n flock -w {LOCK_WAIT_SECONDS} {LOCK_FILE} sh -eu <<'"))
        # The only host paths the scripts use are the saved IPVS table and the lock: keep them in tmp.
        script = command.replace("/etc/ipvsadm.rules", str(self.state / "ipvsadm.rules")).replace(LOCK_FILE, str(self.state / "lock"))
        return subprocess.run(["sh", "-c", script], env=self.env, check=True, capture_output=True, text=True)

    def log(self) -> list[str]:
        """Every ipvsadm, ipvsadm-save and sleep call so far, in order."""
        path = self.state / "commands.log"
        return path.read_text().splitlines() if path.exists() else []

    def connections(self, real: str, active: list[int], inactive: int = 0) -> None:
        """The ActiveConn the next listings show for a real server, one count per listing."""
        (self.state / "connections.json").write_text(json.dumps({real: {"active": active, "inactive": inactive}}))

    def ipvs(self) -> dict[str, Any]:
        path = self.state / "ipvs.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def nat(self) -> dict[str, Any]:
        path = self.state / "iptables.json"
        return json.loads(path.read_text()) if path.exists() else {"rules": {}, "flushed": []}

    def saved_ipvs(self) -> str:
        return (self.state / "ipvsadm.rules").read_text()


@pytest.fixture
def director(tmp_path: Path) -> Director:
    return Director(tmp_path)


def test_ipvs_scripts_are_idempotent_and_delete_only_what_they_added(wrr_plan: Plan, director: Director) -> None:
    # Something the user owns on the director, which no script may touch.
    director.run("sudo -n sh -eu <<'X'\nipvsadm -A -t 172.31.5.2:443 -s sh\nipvsadm -a -t 172.31.5.2:443 -r 10.20.0.99:443 -m -w 5\nX\n")
    users = director.ipvs()
    service = wrr_plan.named("ipvs-virtual-service").inputs
    reals = [wrr_plan.named(f"ipvs-real-server-{name}").inputs for name in ("alpha", "beta", "gamma")]

    for _ in range(2):
        director.run(service["create"])
        for real in reals:
            director.run(real["create"])
        table = director.ipvs()
        assert table["172.31.5.2:8080"] == {
            "scheduler": "wrr",
            "persistence": 0,
            "reals": {
                "10.20.0.21:8080": {"forward": "Masq", "weight": 3},
                "10.20.0.22:8080": {"forward": "Masq", "weight": 2},
                "10.20.0.23:8080": {"forward": "Masq", "weight": 1},
            },
        }
        assert table["172.31.5.2:443"] == users["172.31.5.2:443"]
    assert "-A -t 172.31.5.2:8080 -s wrr\n" in director.saved_ipvs()

    for real in reals:
        director.run(real["delete"])
        director.run(real["delete"])  # deleting twice is harmless
    assert director.ipvs()["172.31.5.2:8080"]["reals"] == {}
    director.run(service["delete"])
    director.run(service["delete"])
    assert director.ipvs() == users
    assert "8080" not in director.saved_ipvs()


def test_ipvs_update_edits_in_place(director: Director, config_with: Any) -> None:
    plan = record_plan(config_with(lambda c: None), stack="seed")
    director.run(plan.named("ipvs-virtual-service").inputs["create"])
    director.run(plan.named("ipvs-real-server-web2").inputs["create"])

    def change(config: dict[str, Any]) -> None:
        config["lvs:service"].update(scheduler="wrr", persistence=60)
        config["lvs:webServers"][1]["weight"] = 4

    changed = record_plan(config_with(change), stack="seed")
    director.run(changed.named("ipvs-virtual-service").inputs["update"])
    director.run(changed.named("ipvs-real-server-web2").inputs["update"])
    service = director.ipvs()["12.0.0.1:80"]
    assert (service["scheduler"], service["persistence"]) == ("wrr", 60)
    assert service["reals"]["192.168.75.60:80"]["weight"] == 4

    director.run(record_plan(config_with(lambda c: None), stack="seed").named("ipvs-virtual-service").inputs["update"])
    assert director.ipvs()["12.0.0.1:80"]["persistence"] == 0  # persistence removed again


WEB1 = "192.168.75.50:80"
LIST = "ipvsadm -L -n -t 12.0.0.1:80"
QUIESCE = f"ipvsadm -e -t 12.0.0.1:80 -r {WEB1} -m -w 0"
REMOVE = f"ipvsadm -d -t 12.0.0.1:80 -r {WEB1}"
SAVE = "ipvsadm-save -n"


@pytest.fixture
def seed_director(seed_plan: Plan, director: Director) -> Director:
    """The seed's service and both real servers applied, next to a service the user owns."""
    director.run("sudo -n sh -eu <<'X'\nipvsadm -A -t 12.0.0.1:443 -s sh\nipvsadm -a -t 12.0.0.1:443 -r 192.168.75.99:443 -m -w 5\nX\n")
    for name in ("ipvs-virtual-service", "ipvs-real-server-web1", "ipvs-real-server-web2"):
        director.run(seed_plan.named(name).inputs["create"])
    return director


def web1_delete(seed_plan: Plan) -> str:
    return str(seed_plan.named("ipvs-real-server-web1").inputs["delete"])


def without_web1(table: dict[str, Any]) -> dict[str, Any]:
    expected: dict[str, Any] = copy.deepcopy(table)
    del expected["12.0.0.1:80"]["reals"][WEB1]
    return expected


def test_real_server_delete_shows_its_drain_bound(any_plan: Plan) -> None:
    for name, node in any_plan.outputs["nodes"].items():
        if node["role"] == "web":
            delete = body(any_plan.named(f"ipvs-real-server-{name}").inputs["delete"])
            assert f'[ "$waited" -lt {DRAIN_SECONDS} ]' in delete and "    sleep 1\n" in delete
            assert delete.index(" -m -w 0\n") < delete.index("sleep 1") < delete.index("ipvsadm -d ")


def test_idle_real_server_is_quiesced_and_deleted_at_once(seed_plan: Plan, seed_director: Director) -> None:
    before, start = seed_director.ipvs(), len(seed_director.log())
    result = seed_director.run(web1_delete(seed_plan))
    assert seed_director.log()[start:] == [LIST, QUIESCE, LIST, REMOVE, SAVE]
    assert seed_director.ipvs() == without_web1(before)  # web2 and the user's service untouched
    assert result.stderr == ""
    assert WEB1 not in seed_director.saved_ipvs() and "192.168.75.60:80" in seed_director.saved_ipvs()


def test_real_server_is_drained_before_it_is_deleted(seed_plan: Plan, seed_director: Director) -> None:
    before = seed_director.ipvs()
    # Listings show 4 (before the weight goes to 0), then 3, 1, 0; the InActConn column is never read.
    seed_director.connections(WEB1, active=[4, 3, 1, 0], inactive=9)
    start = len(seed_director.log())
    result = seed_director.run(web1_delete(seed_plan))
    assert seed_director.log()[start:] == [LIST, QUIESCE, LIST, "sleep 1", LIST, "sleep 1", LIST, REMOVE, SAVE]
    assert seed_director.ipvs() == without_web1(before)
    assert result.stderr == ""


def test_drain_gives_up_after_its_bound_and_deletes_anyway(seed_plan: Plan, seed_director: Director) -> None:
    before = seed_director.ipvs()
    seed_director.connections(WEB1, active=[7])  # never drops
    start = len(seed_director.log())
    result = seed_director.run(web1_delete(seed_plan))
    log = seed_director.log()[start:]
    assert log == [LIST, QUIESCE, LIST, *["sleep 1", LIST] * DRAIN_SECONDS, REMOVE, SAVE]
    assert seed_director.ipvs() == without_web1(before)
    assert f"{WEB1} still has 7 active connections after {DRAIN_SECONDS} s of draining" in result.stderr


def test_deleting_an_absent_real_server_is_harmless(seed_plan: Plan, seed_director: Director) -> None:
    seed_director.run(web1_delete(seed_plan))
    after, start = seed_director.ipvs(), len(seed_director.log())
    seed_director.run(web1_delete(seed_plan))
    assert seed_director.log()[start:] == [LIST, SAVE]
    assert seed_director.ipvs() == after
    seed_director.run(seed_plan.named("ipvs-virtual-service").inputs["delete"])
    seed_director.run(web1_delete(seed_plan))  # nor when its service is gone too
    assert seed_director.ipvs() == {"12.0.0.1:443": after["12.0.0.1:443"]}


def test_snat_script_is_idempotent_and_leaves_other_rules(seed_plan: Plan, director: Director) -> None:
    director.run("sudo -n sh -eu <<'X'\niptables -t nat -A POSTROUTING -o ext0 -j MASQUERADE\nX\n")
    snat = seed_plan.named("snat-rule").inputs
    director.run(snat["create"])
    director.run(snat["create"])
    rules = director.nat()["rules"]["nat/POSTROUTING"]
    assert rules == ["-o ext0 -j MASQUERADE", seed_plan.outputs["snatRule"].removeprefix("POSTROUTING ")]
    assert json.loads((director.state / "rules.v4").read_text())["rules"] == director.nat()["rules"]
    director.run(snat["delete"])
    director.run(snat["delete"])
    assert director.nat()["rules"]["nat/POSTROUTING"] == ["-o ext0 -j MASQUERADE"]
    assert director.nat()["flushed"] == []


def test_second_config_differs_from_the_seed_in_every_way_that_matters() -> None:
    config = second_config()
    assert config["lvs:service"]["scheduler"] == "wrr" and config["lvs:service"]["port"] != 80
    assert len(config["lvs:webServers"]) == 3
    assert len({web["weight"] for web in config["lvs:webServers"]}) == 3
    assert config["lvs:networks"]["internal"]["cidr"] != "192.168.75.0/24"
