"""The lab's private libvirtd, without guests (`python -m pytest -m lab`): it starts in a
namespace of the test's own, touches nothing outside it, and accepts the program's networks
as the provider would send them."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.host.libvirtd import PrivateLibvirtd
from lab.host.netns import Namespace
from lab.stack.libvirt_objects import network_xml
from lab.stack.plan import NETWORK, Plan
from lab.stack.topology import read_topology


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateLibvirtd]:
    root = tmp_path_factory.mktemp("libvirt")
    with Namespace("lvslab-test-libvirtd") as namespace, PrivateLibvirtd(namespace, root, log=lambda _: None) as started:
        yield started


@pytest.mark.lab
def test_the_daemon_starts_empty(daemon: PrivateLibvirtd) -> None:
    connection = daemon.connect()
    try:
        assert (connection.listAllDomains(0), connection.listAllNetworks(0), connection.listAllStoragePools(0)) == ([], [], [])
    finally:
        connection.close()


@pytest.mark.lab
def test_its_sockets_are_its_own(daemon: PrivateLibvirtd) -> None:
    assert daemon.socket.is_socket()
    assert not Path("/run/libvirt/libvirt-sock").exists() or Path("/run/libvirt/libvirt-sock").stat().st_ino != daemon.socket.stat().st_ino


@pytest.mark.lab
def test_networks_start_with_the_host_address_and_no_dnsmasq(daemon: PrivateLibvirtd, seed_plan: Plan) -> None:
    connection = daemon.connect()
    try:
        for planned in read_topology(seed_plan).networks:
            network = connection.networkDefineXML(network_xml(seed_plan.named(_resource_name(seed_plan, planned.name), NETWORK).inputs))
            try:
                network.create()
                bridge = network.bridgeName()
                shown = daemon.namespace.ip("-4", "-o", "addr", "show", "dev", bridge).stdout.split()
                assert f"{planned.host_ip}/{planned.cidr.prefixlen}" in shown
                root_links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True).stdout
                assert f": {bridge}:" not in root_links
                pids = subprocess.run(["ip", "netns", "pids", daemon.namespace.name], capture_output=True, text=True).stdout.split()
                assert not any(Path(f"/proc/{pid}/comm").read_text().strip() == "dnsmasq" for pid in pids if Path(f"/proc/{pid}").exists())
            finally:
                if network.isActive():
                    network.destroy()
                network.undefine()
    finally:
        connection.close()


def _resource_name(plan: Plan, network_name: str) -> str:
    return next(resource.name for resource in plan.of_type(NETWORK) if resource.inputs["name"] == network_name)
