"""What the program declares on libvirt: two isolated networks, one CoW volume, one
cloud-init disk and one domain per node, NICs in a fixed order with stable MACs."""

from __future__ import annotations

import subprocess
from pathlib import Path
from xml.etree import ElementTree

from lab.host import tools
from lab.stack.plan import Plan
from tests.conftest import CLOUD_INIT_DISK, DOMAIN, NETWORK, VOLUME


def test_two_isolated_networks_without_dhcp_and_host_off_the_vip(seed_plan: Plan) -> None:
    networks = {net.inputs["name"]: net for net in seed_plan.of_type(NETWORK)}
    assert set(networks) == {"lvs-internal", "lvs-external"}
    for name, cidr, host_ip in (("lvs-internal", "192.168.75.0/24", "192.168.75.254"), ("lvs-external", "12.0.0.0/24", "12.0.0.254")):
        net = networks[name].inputs
        assert net["mode"] == "none"
        assert net["addresses"] == [cidr]
        assert net["dhcp"] == {"enabled": False}
        assert net["dns"] == {"enabled": False}
        # libvirt would give the host `.1` (the seed's VIP); the stylesheet moves it.
        assert f'<xsl:attribute name="address">{host_ip}</xsl:attribute>' in net["xml"]["xslt"]
        assert "/network/ip/@address" in net["xml"]["xslt"]


def test_host_address_stylesheet_rewrites_libvirts_network_xml(seed_plan: Plan, tmp_path: Path) -> None:
    # The provider applies the stylesheet with xsltproc to the XML it generated, which puts
    # the host on the first address.
    xslt = next(n for n in seed_plan.of_type(NETWORK) if n.inputs["name"] == "lvs-external").inputs["xml"]["xslt"]
    (tmp_path / "host.xsl").write_text(xslt)
    (tmp_path / "network.xml").write_text(
        "<network><name>lvs-external</name><bridge stp='on'/><ip address='12.0.0.1' prefix='24' family='ipv4'/></network>"
    )
    tools.require("xsltproc")
    result = subprocess.run(["xsltproc", tmp_path / "host.xsl", tmp_path / "network.xml"], capture_output=True, text=True, check=True)
    ip = ElementTree.fromstring(result.stdout).find("ip")
    assert ip is not None
    assert (ip.get("address"), ip.get("prefix"), ip.get("family")) == ("12.0.0.254", "24", "ipv4")


def test_each_node_has_a_cow_volume_a_seed_disk_and_a_domain(any_plan: Plan) -> None:
    nodes = any_plan.outputs["nodes"]
    domains = {d.inputs["name"]: d for d in any_plan.of_type(DOMAIN)}
    assert set(domains) == {node["domain"] for node in nodes.values()}
    base = [v for v in any_plan.of_type(VOLUME) if "source" in v.inputs]
    assert len(base) == 1 and base[0].inputs["format"] == "qcow2"
    for name, node in nodes.items():
        domain = domains[node["domain"]]
        volume = any_plan.named(f"{name}-root")
        seed = any_plan.named(f"{name}-seed")
        assert volume.inputs["baseVolumeId"] == f"{base[0].name}-id"
        assert volume.depends_on(base[0])
        assert domain.inputs["disks"] == [{"volumeId": f"{name}-root-id"}]
        assert domain.inputs["cloudinit"] == f"{name}-seed-id"
        assert seed.inputs["name"].endswith(".iso")
        # libvirt domain and volume names are unique: replace by deleting first (for the seed,
        # also the only way to mend a failed create, `pulumi up --replace`).
        assert domain.delete_before_replace
        assert seed.delete_before_replace
        assert domain.inputs["autostart"] is True


def test_nic_order_macs_and_networks(seed_plan: Plan) -> None:
    def nics(name: str) -> list[tuple[str, str]]:
        return [(nic["networkId"], nic["mac"]) for nic in seed_plan.named(name, DOMAIN).inputs["networkInterfaces"]]

    assert nics("director") == [("internal-id", "52:54:c0:a8:4b:1e"), ("external-id", "52:54:0c:00:00:01")]
    assert nics("web1") == [("internal-id", "52:54:c0:a8:4b:32")]
    assert nics("web2") == [("internal-id", "52:54:c0:a8:4b:3c")]
    assert nics("nfs") == [("internal-id", "52:54:c0:a8:4b:46")]
    assert nics("client") == [("external-id", "52:54:0c:00:00:42")]
    for domain in seed_plan.of_type("libvirt:index/domain:Domain"):
        for nic in domain.inputs["networkInterfaces"]:
            assert nic["waitForLease"] is False


def test_sizes_and_domain_type_follow_the_config(wrr_plan: Plan, seed_plan: Plan) -> None:
    assert (wrr_plan.named("lb", DOMAIN).inputs["memory"], wrr_plan.named("lb", DOMAIN).inputs["vcpu"]) == (768, 1)
    assert wrr_plan.named("beta", DOMAIN).inputs["vcpu"] == 2
    assert {d.inputs["type"] for d in wrr_plan.of_type(DOMAIN)} == {"qemu"}
    assert all("cpu" not in d.inputs for d in wrr_plan.of_type(DOMAIN))  # host-passthrough needs KVM
    assert {d.inputs["type"] for d in seed_plan.of_type(DOMAIN)} == {"kvm"}
    assert seed_plan.named("director", DOMAIN).inputs["memory"] == 512


def test_volumes_and_disks_go_to_the_configured_pool(wrr_plan: Plan) -> None:
    pools = {r.inputs.get("pool") for r in wrr_plan.of_type(VOLUME) + wrr_plan.of_type(CLOUD_INIT_DISK)}
    assert pools == {"lab"}


def test_no_client_vm_unless_configured(wrr_plan: Plan, seed_plan: Plan) -> None:
    assert "client" not in wrr_plan.outputs["nodes"]
    assert seed_plan.named("client", DOMAIN).inputs["name"] == "seed-client"


def test_components_group_resources(seed_plan: Plan) -> None:
    domain = seed_plan.named("web1", DOMAIN)
    assert [parent.type for parent in seed_plan.ancestors(domain)] == ["lvs:vm:VirtualMachine", "lvs:node:WebNode"]
    types = {r.type for r in seed_plan.resources if not r.custom}
    assert types == {
        "lvs:network:ClusterNetwork",
        "lvs:storage:StoragePool",
        "lvs:image:BaseImage",
        "lvs:vm:VirtualMachine",
        "lvs:node:NfsServer",
        "lvs:node:WebNode",
        "lvs:node:Director",
        "lvs:node:Client",
        "lvs:ipvs:IpvsService",
        "lvs:snat:SnatRule",
    }
