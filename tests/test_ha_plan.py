"""What the program registers for the ha stack (issue 7, in progress): two director VMs, and on
each keepalived's configuration as tracked Commands, instead of the ipvsadm rules."""

from __future__ import annotations

import copy
import subprocess

from lab import tools
from lab.plan import Plan, record_plan
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
        for part in ("main", "virtual-server", "real-server-web1", "real-server-web2", "table"):
            assert f"keepalived-{director}-{part}" in names
        assert f"snat-{director}-rule" in names


def test_each_file_is_checked_by_keepalived_before_it_is_loaded() -> None:
    for name, inputs in commands(ha_plan()).items():
        if name.startswith("keepalived-") and not name.endswith("-table"):
            script = inputs["create"]
            assert script.index("keepalived -t -f /etc/keepalived/keepalived.conf") < script.index("systemctl reload keepalived"), name


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
    assert retriggered == [f"keepalived-{director}-table" for director in DIRECTORS]  # the table output is read again
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
