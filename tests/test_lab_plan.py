"""The lab reads the plan, not a description of its own: networks with the host address the
provider would give, guests with the rendered bytes, Commands in dependency order, and the
update-or-replace decision `pulumi up` would make for a changed config."""

from __future__ import annotations

from typing import Any

from lab.stack.plan import Plan, record_plan
from lab.stack.topology import command_changes, read_topology


def test_networks_and_host_addresses(seed_plan: Plan, wrr_plan: Plan) -> None:
    seed = {net.name: (str(net.cidr), str(net.host_ip)) for net in read_topology(seed_plan).networks}
    assert seed == {"lvs-internal": ("192.168.75.0/24", "192.168.75.254"), "lvs-external": ("12.0.0.0/24", "12.0.0.254")}
    wrr = {net.name: str(net.host_ip) for net in read_topology(wrr_plan).networks}
    assert wrr == {"wrr-inside": "10.20.0.1", "wrr-outside": "172.31.5.14"}


def test_guests_carry_the_rendered_documents(seed_plan: Plan) -> None:
    topology = read_topology(seed_plan)
    guests = {guest.name: guest for guest in topology.guests}
    assert set(guests) == {"seed-director", "seed-nfs", "seed-web1", "seed-web2", "seed-client"}
    director = guests["seed-director"]
    assert [(nic.network.name, nic.mac) for nic in director.nics] == [
        ("lvs-internal", "52:54:c0:a8:4b:1e"),
        ("lvs-external", "52:54:0c:00:00:01"),
    ]
    assert director.user_data == seed_plan.named("director-seed").inputs["userData"]
    assert director.network_config == seed_plan.named("director-seed").inputs["networkConfig"]
    assert (director.memory_mib, director.vcpus) == (512, 1)
    assert director.base_image_source.endswith("debian-12-genericcloud-amd64.qcow2")


def test_commands_come_in_dependency_order(any_plan: Plan) -> None:
    commands = read_topology(any_plan).commands
    position = {command.name: index for index, command in enumerate(commands)}
    for command in commands:
        for dependency in command.depends_on:
            assert position[dependency] < position[command.name]
    service = next(c for c in commands if c.name == "ipvs-virtual-service")
    director = next(name for name, node in any_plan.outputs["nodes"].items() if node["role"] == "director")
    assert f"{director}-ready" in service.depends_on
    assert all(position["ipvs-table"] > position[c.name] for c in commands if c.name.startswith("ipvs-real-server-"))


def test_a_weight_change_is_an_update_and_rereads_the_table(seed_plan: Plan, config_with: Any) -> None:
    changed = record_plan(config_with(lambda c: c["lvs:webServers"][0].update(weight=5)), stack="seed")
    changes = {(change.name, change.action) for change in command_changes(read_topology(seed_plan), read_topology(changed))}
    assert changes == {("ipvs-real-server-web1", "update"), ("ipvs-table", "replace")}


def test_a_port_change_replaces_the_rules(seed_plan: Plan, config_with: Any) -> None:
    changed = record_plan(config_with(lambda c: c["lvs:service"].update(port=8080)), stack="seed")
    changes = {(change.name, change.action) for change in command_changes(read_topology(seed_plan), read_topology(changed))}
    replaced = {name for name, action in changes if action == "replace"}
    assert replaced >= {"ipvs-virtual-service", "ipvs-real-server-web1", "ipvs-real-server-web2"}
