"""The networks and pools as terraform-provider-libvirt v0.8.1 sends them to libvirt, as the lab
reads them (lab/stack/libvirt_objects.py): each document valid against libvirt's own schema
(virt-xml-validate), and carrying what the program declared."""

from __future__ import annotations

import subprocess
from pathlib import Path
from xml.etree import ElementTree

import pytest

from lab.host import tools
from lab.stack import libvirt_objects
from lab.stack.plan import NETWORK, POOL, Plan


def assert_valid(xml: str, schema: str, tmp_path: Path) -> None:
    tools.require("virt-xml-validate", "xmllint")
    document = tmp_path / f"{schema}.xml"
    document.write_text(xml)
    result = subprocess.run(["virt-xml-validate", str(document), schema], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"virt-xml-validate {schema}: {result.stdout}{result.stderr}"


@pytest.mark.parametrize("network", ["internal", "external"])
def test_network_xml_is_valid_for_libvirt(any_plan: Plan, network: str, tmp_path: Path) -> None:
    assert_valid(libvirt_objects.network_xml(any_plan.named(network, NETWORK).inputs), "network", tmp_path)


@pytest.mark.parametrize("network", ["internal", "external"])
def test_network_is_isolated_without_dhcp_or_dns(seed_plan: Plan, network: str) -> None:
    document = ElementTree.fromstring(libvirt_objects.network_xml(seed_plan.named(network, NETWORK).inputs))
    assert document.find("forward") is None
    assert document.find("ip/dhcp") is None
    assert [dns.attrib for dns in document.findall("dns")] == [{"enable": "no"}]
    assert document.find("bridge").attrib == {"stp": "on"}  # type: ignore[union-attr]


def test_network_stylesheet_moves_the_host_off_the_vip(seed_plan: Plan) -> None:
    addresses = {
        network.inputs["name"]: ElementTree.fromstring(libvirt_objects.network_xml(network.inputs)).find("ip").attrib["address"]  # type: ignore[union-attr]
        for network in seed_plan.of_type(NETWORK)
    }
    assert addresses == {"lvs-internal": "192.168.75.254", "lvs-external": "12.0.0.254"}


def test_without_the_stylesheet_the_provider_takes_the_first_address(seed_plan: Plan) -> None:
    inputs = {**seed_plan.named("external", NETWORK).inputs, "xml": None}
    document = ElementTree.fromstring(libvirt_objects.network_xml(inputs))
    assert document.find("ip").attrib["address"] == "12.0.0.1"  # type: ignore[union-attr]
    assert document.find("dns") is None


def test_pool_xml(seed_plan: Plan, tmp_path: Path) -> None:
    xml = libvirt_objects.pool_xml(seed_plan.named("pool", POOL).inputs)
    assert_valid(xml, "storagepool", tmp_path)
    document = ElementTree.fromstring(xml)
    assert (document.get("type"), document.findtext("name"), document.findtext("target/path")) == (
        "dir",
        "seed-pool",
        "/var/lib/libvirt/images/lvs-cluster-seed",
    )
