"""What the program registers for the ha stack (issue 7, in progress): two director VMs, and on
each keepalived's configuration as tracked Commands, instead of the ipvsadm rules."""

from __future__ import annotations

import copy
import subprocess

from lab.host import tools
from lab.stack.plan import Plan, record_plan
from tests.conftest import COMMAND, DOMAIN
from tests.test_config_ha import ha_config

DIRECTORS = ("director-a", "director-b")


def ha_plan(config: dict | None = None) -> Plan:  # type: ignore[type-arg]
    return record_plan(config or ha_config(), stack="ha")


def commands(plan: Plan) -> dict[str, dict]:  # type: ignore[type-arg]
    return {command.name: command.inputs for command in plan.of_type(COMMAND)}


def test_two_directors_and_no_ipvsadm_rules() -> None:
    plan = ha_plan()
    assert sorted(domain.inputs["name"] for domain in plan.of_type(DOMAIN)) == [
        "ha-client",
        "ha-director-a",
        "ha-director-b",
        "ha-nfs",
        "ha-web1",
        "ha-web2",
    ]
    names = commands(plan)
    assert not [name for name in names if name.startswith("ipvs-")]
    for director in DIRECTORS:
        for part in ("main", "virtual-server", "real-server-web1", "real-server-web2", "load", "watchdog", "table"):
            assert f"keepalived-{director}-{part}" in names
        assert f"snat-{director}-rule" in names


FILES = ("main", "virtual-server", "real-server-web1", "real-server-web2")


def test_each_file_is_checked_by_keepalived_and_loaded_once_with_the_rest() -> None:
    plan = ha_plan()
    created = commands(plan)
    for director in DIRECTORS:
        for part in FILES:
            inputs = created[f"keepalived-{director}-{part}"]
            for phase in ("create", "update"):
                assert "keepalived -t -f /etc/keepalived/keepalived.conf" in inputs[phase]
                assert "systemctl reload" not in inputs[phase] and "systemctl start" not in inputs[phase], (director, part, phase)
            # A file's removal comes after every create and update of `pulumi up`: it reloads itself.
            delete = inputs["delete"]
            if part != "main":
                assert delete.index("keepalived -t -f /etc/keepalived/keepalived.conf") < delete.index("systemctl reload keepalived")
        load = plan.named(f"keepalived-{director}-load", COMMAND)
        script = load.inputs["create"]
        assert script.index("keepalived -t -f /etc/keepalived/keepalived.conf") < script.index("systemctl start keepalived")
        # keepalived starts only once its whole configuration exists.
        files = {plan.named(f"keepalived-{director}-{part}", COMMAND).urn for part in FILES}
        assert files <= set(load.dependencies)
        assert load.inputs["triggers"] == [created[f"keepalived-{director}-{part}"]["create"] for part in FILES]


def test_the_sync_daemon_is_not_the_vrrp_processs() -> None:
    # Named without a VRRP instance, keepalived's checker runs both sync daemons for good; the
    # VRRP process stops and starts none on a state change (issue 21).
    for director in DIRECTORS:
        main = commands(ha_plan())[f"keepalived-{director}-main"]["create"]
        assert "    lvs_sync_daemon int0 id 51\n" in main


def test_the_exact_keepalived_text_is_in_the_commands_inputs() -> None:
    created = commands(ha_plan())
    assert "real_server 192.168.75.50 80 {" in created["keepalived-director-b-real-server-web1"]["create"]
    assert "HTTP_GET {" in created["keepalived-director-b-real-server-web1"]["create"]
    assert "state BACKUP" in created["keepalived-director-b-main"]["create"]
    assert "state MASTER" in created["keepalived-director-a-main"]["create"]


def test_a_weight_change_touches_one_file_per_director_and_no_vm() -> None:
    before = ha_plan()
    config = copy.deepcopy(ha_config())
    config["lvs:webServers"][0]["weight"] = 3
    after = ha_plan(config)
    old, new = commands(before), commands(after)
    changed = sorted(name for name in new if new[name]["create"] != old[name]["create"])
    assert changed == [f"keepalived-{director}-real-server-web1" for director in DIRECTORS]
    retriggered = sorted(name for name in new if new[name].get("triggers") != old[name].get("triggers"))
    # One load (a reload) per director, and the table output read again.
    assert retriggered == sorted(f"keepalived-{director}-{part}" for director in DIRECTORS for part in ("load", "table"))
    assert {d.name: d.inputs for d in before.of_type(DOMAIN)} == {d.name: d.inputs for d in after.of_type(DOMAIN)}


def test_the_directors_do_not_restore_an_ipvsadm_table_at_boot() -> None:
    plan = ha_plan()
    for director in DIRECTORS:
        user_data = plan.named(f"{director}-seed").inputs["userData"]
        assert 'AUTO="false"' in user_data and "- keepalived" in user_data
        assert "- ipvsadm\n  - netfilter" not in user_data


def test_every_keepalived_script_is_valid_posix_shell() -> None:
    tools.require("dash")
    for name, inputs in commands(ha_plan()).items():
        for phase in ("create", "update", "delete"):
            script = inputs.get(phase)
            if name.startswith("keepalived-") and script:
                # The Command runs `sudo -n flock … sh -eu <<'…'`: check the outer line and the body with dash.
                checked = subprocess.run(["dash", "-n"], input=script, capture_output=True, text=True, check=False)
                assert checked.returncode == 0, f"{name} {phase}: {checked.stderr}"
                if "<<'LVS_CLUSTER_SCRIPT'" not in script:
                    continue  # one plain command, checked above
                body = script.split("\n", 1)[1].rsplit("LVS_CLUSTER_SCRIPT", 1)[0]
                checked = subprocess.run(["dash", "-n"], input=body, capture_output=True, text=True, check=False)
                assert checked.returncode == 0, f"{name} {phase}: {checked.stderr}"
