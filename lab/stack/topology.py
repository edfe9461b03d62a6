"""What the lab boots, read from the plan the program registered, never re-described.

Networks come from the libvirt Network resources (the host's address is found by applying the
network's own stylesheet with xsltproc to the XML the provider generates, as the provider
does); guests from the Domains, with their NIC order and MACs, memory and vCPUs, and the exact
bytes of their CloudInitDisk; remote Commands from the Command resources, in dependency order.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from graphlib import TopologicalSorter
from typing import Any
from xml.etree import ElementTree

from .libvirt_objects import network_xml
from .plan import CLOUD_INIT_DISK, COMMAND, DOMAIN, NETWORK, VOLUME, Plan, PlannedResource

READY_SUFFIX = "-ready"


@dataclass(frozen=True)
class LabNetwork:
    resource_id: str  # what domains' NICs refer to
    name: str
    cidr: ipaddress.IPv4Network
    host_ip: ipaddress.IPv4Address


@dataclass(frozen=True)
class LabNic:
    network: LabNetwork
    mac: str


@dataclass(frozen=True)
class LabGuest:
    name: str  # the libvirt domain name
    memory_mib: int
    vcpus: int
    domain_type: str
    nics: tuple[LabNic, ...]
    user_data: str
    meta_data: str
    network_config: str
    base_image_source: str  # what the program asked for; the lab substitutes its own image


@dataclass(frozen=True)
class LabCommand:
    name: str
    host: str
    user: str
    create: str
    update: str | None
    delete: str | None
    triggers: tuple[Any, ...]
    depends_on: tuple[str, ...] = field(default=())  # names of Commands this one waits for


@dataclass(frozen=True)
class Topology:
    networks: tuple[LabNetwork, ...]
    guests: tuple[LabGuest, ...]
    commands: tuple[LabCommand, ...]  # in an order that respects every dependency

    def command(self, name: str) -> LabCommand:
        return next(command for command in self.commands if command.name == name)

    # Each node has a Command that waits for its boot (`<node>-ready`, components/remote.py):
    # its connection is how the lab reaches the node, as every Command on it does.
    def ready(self, node: str) -> LabCommand:
        """The Command that waits for `node`'s boot."""
        return self.command(f"{node}{READY_SUFFIX}")

    def nodes(self) -> list[str]:
        """Every node with a ready wait: all of the stack's nodes."""
        return [command.name.removesuffix(READY_SUFFIX) for command in self.commands if command.name.endswith(READY_SUFFIX)]

    def rule_commands(self) -> list[str]:
        """The Commands that own rules on the directors: every Command but the nodes' ready waits."""
        return [command.name for command in self.commands if not command.name.endswith(READY_SUFFIX)]


def host_address(network: PlannedResource) -> ipaddress.IPv4Address:
    """The host's address on a network: what the provider's XML says once the network's own
    stylesheet has been applied (libvirt_objects.network_xml)."""
    ip = ElementTree.fromstring(network_xml(network.inputs)).find("ip")
    if ip is None:
        raise ValueError(f"network {network.inputs['name']} gives the host no address: the lab cannot reach its guests")
    return ipaddress.IPv4Address(ip.get("address"))


def resource_id(resource: PlannedResource) -> str:
    # The mock engine's ids are "<name>-id"; inputs refer to other resources by them.
    return f"{resource.name}-id"


def read_topology(plan: Plan) -> Topology:
    networks = {}
    for resource in plan.of_type(NETWORK):
        (cidr,) = resource.inputs["addresses"]
        networks[resource_id(resource)] = LabNetwork(
            resource_id=resource_id(resource),
            name=resource.inputs["name"],
            cidr=ipaddress.IPv4Network(cidr),
            host_ip=host_address(resource),
        )
    disks = {resource_id(r): r for r in plan.of_type(CLOUD_INIT_DISK)}
    volumes = {resource_id(r): r for r in plan.of_type(VOLUME)}
    guests = []
    for domain in plan.of_type(DOMAIN):
        inputs = domain.inputs
        seed = disks[inputs["cloudinit"]].inputs
        (disk,) = inputs["disks"]
        root = volumes[disk["volumeId"]].inputs
        base = volumes[root["baseVolumeId"]].inputs
        guests.append(
            LabGuest(
                name=inputs["name"],
                memory_mib=int(inputs["memory"]),
                vcpus=int(inputs["vcpu"]),
                domain_type=inputs.get("type", "kvm"),
                nics=tuple(LabNic(network=networks[nic["networkId"]], mac=nic["mac"]) for nic in inputs["networkInterfaces"]),
                user_data=seed["userData"],
                meta_data=seed["metaData"],
                network_config=seed["networkConfig"],
                base_image_source=base["source"],
            )
        )
    # The mock engine registers resources in whatever order their inputs resolve: sort, so
    # two plans of the same config compare equal.
    return Topology(
        networks=tuple(sorted(networks.values(), key=lambda network: network.name)),
        guests=tuple(sorted(guests, key=lambda guest: guest.name)),
        commands=_commands_in_order(plan),
    )


def _commands_in_order(plan: Plan) -> tuple[LabCommand, ...]:
    commands = {resource.urn: resource for resource in plan.of_type(COMMAND)}
    # A Command waits for everything its resource (and the components above it) depends on:
    # follow dependencies through components down to the Commands they contain.
    by_name = sorted(commands.values(), key=lambda resource: resource.name)
    graph = {resource.urn: dependencies_among(plan, resource, commands) for resource in by_name}
    ordered = []
    for urn in TopologicalSorter(graph).static_order():
        resource = commands[urn]
        connection = resource.inputs["connection"]
        ordered.append(
            LabCommand(
                name=resource.name,
                host=connection["host"],
                user=connection["user"],
                create=resource.inputs["create"],
                update=resource.inputs.get("update"),
                delete=resource.inputs.get("delete"),
                triggers=tuple(resource.inputs.get("triggers", ())),
                depends_on=tuple(sorted(commands[dep].name for dep in graph[urn])),
            )
        )
    return tuple(ordered)


def dependencies_among(plan: Plan, resource: PlannedResource, among: Mapping[str, PlannedResource]) -> set[str]:
    """The resources of `among` that `resource` waits for, followed through components (a
    dependency on a component is one on everything inside it)."""
    found: set[str] = set()
    pending = list(resource.dependencies)
    seen: set[str] = set()
    while pending:
        urn = pending.pop()
        if urn in seen:
            continue
        seen.add(urn)
        if urn in among:
            found.add(urn)
        else:
            dependency = plan.by_urn(urn)
            pending.extend(dependency.dependencies)
            pending.extend(child.urn for child in plan.children(dependency))
    return found


@dataclass(frozen=True)
class CommandChange:
    """How `pulumi up` would apply a second plan's Command: update in place or replace."""

    name: str
    action: str  # "update", "replace", "create" or "delete"
    old: LabCommand | None
    new: LabCommand | None


def command_changes(before: Topology, after: Topology) -> list[CommandChange]:
    old = {command.name: command for command in before.commands}
    new = {command.name: command for command in after.commands}
    changes = []
    for name in old.keys() - new.keys():
        changes.append(CommandChange(name, "delete", old[name], None))
    for command in after.commands:
        previous = old.get(command.name)
        if previous is None:
            changes.append(CommandChange(command.name, "create", None, command))
        elif previous.triggers != command.triggers or previous.host != command.host or previous.user != command.user:
            changes.append(CommandChange(command.name, "replace", previous, command))
        elif (previous.create, previous.update, previous.delete) != (command.create, command.update, command.delete):
            changes.append(CommandChange(command.name, "update", previous, command))
    return changes
