"""Every LVS method the seed teaches (issue 18), as the program plans it: one model of the service
and its real servers, one strategy per method (components/forwarding.py). In dr and tun each
web node gets a NIC on the external network (its reply path), the real-server sysctls and
firewall openings from cloud-init, and the VIP from a Command the director's real server waits
for; the NAT stacks' plans are as they were."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from components.config import ConfigError, TunnelSettings
from components.keepalived import real_server_conf, virtual_server_conf
from lab.stack.plan import Plan, record_plan, stack_config
from tests.config_helpers import _cases, _fails, _set
from tests.conftest import CLOUD_INIT_DISK, COMMAND, PROJECT_DIR, TEST_PRIVATE_KEY, TEST_PUBLIC_KEY, seed_config
from tests.test_cloudinit import assert_cloud_init_accepts, files, network, user_data
from tests.test_config_ha import settings_of


def stack(name: str) -> dict[str, Any]:
    config = stack_config(PROJECT_DIR / "tests" / f"Pulumi.{name}.yaml")
    config["lvs:sshPublicKey"] = TEST_PUBLIC_KEY
    config["lvs:sshPrivateKey"] = TEST_PRIVATE_KEY
    return config


@pytest.fixture(scope="module")
def dr_plan() -> Plan:
    return record_plan(stack("dr"), stack="dr")


@pytest.fixture(scope="module")
def tun_plan() -> Plan:
    return record_plan(stack("tun"), stack="tun")


def command(plan: Plan, name: str) -> dict[str, Any]:
    inputs: dict[str, Any] = plan.named(name, COMMAND).inputs
    return inputs


# --- dr -----------------------------------------------------------------------------------------


def test_dr_real_servers_are_the_web_nodes_external_addresses(dr_plan: Plan) -> None:
    for director in ("director-a", "director-b"):
        text = command(dr_plan, f"keepalived-{director}-real-server-web1")["create"]
        assert "real_server 12.0.0.50 80 {" in text and "real server web1 (12.0.0.50:80, weight 1)" in text
        assert "lvs_method DR" in command(dr_plan, f"keepalived-{director}-virtual-server")["create"]


def test_dr_web_nodes_get_a_nic_on_the_external_network(dr_plan: Plan) -> None:
    ethernets = network(dr_plan, "web1")["ethernets"]
    assert ethernets["ext0"]["addresses"] == ["12.0.0.50/24"] and "routes" not in ethernets["ext0"]
    assert ethernets["int0"]["addresses"] == ["192.168.75.50/24"]
    domain = dr_plan.named("web1", "libvirt:index/domain:Domain")
    assert [nic["mac"] for nic in domain.inputs["networkInterfaces"]] == ["52:54:c0:a8:4b:32", "52:54:0c:00:00:32"]


def test_dr_web_nodes_hold_the_vip_on_lo_as_a_32_after_the_arp_sysctls(dr_plan: Plan) -> None:
    vip = command(dr_plan, "web1-vip")
    create = vip["create"]
    assert "ExecStart=/usr/sbin/ip addr replace 12.0.0.1/32 dev lo" in create
    sysctls = create.index("arp_ignore=1"), create.index("arp_announce=2")
    assert max(sysctls) < create.index("ip addr replace 12.0.0.1/32")
    assert "ip addr del 12.0.0.1/32 dev lo" in vip["delete"]
    assert vip["triggers"][:3] == ["12.0.0.1", "lo", ""] and len(vip["triggers"]) == 4  # and the domain
    written = files(user_data(dr_plan, "web1"))
    assert "net.ipv4.conf.all.arp_ignore = 1" in written["/etc/sysctl.d/90-lvs-real-server.conf"]
    # The director's ARP requests may come from the VIP (one director): accepted, loosely checked.
    assert "net.ipv4.conf.all.accept_local = 1" in written["/etc/sysctl.d/90-lvs-real-server.conf"]
    assert "net.ipv4.conf.all.rp_filter = 2" in written["/etc/sysctl.d/90-lvs-real-server.conf"]
    assert max(sysctls) < create.index("accept_local=1") < create.index("ip addr replace 12.0.0.1/32")


@pytest.fixture(scope="module")
def dr_solo_plan() -> Plan:
    return record_plan(stack("dr-solo"), stack="dr-solo")


def test_dr_with_one_director_is_ipvsadm_rules_to_the_external_addresses(dr_solo_plan: Plan) -> None:
    real = command(dr_solo_plan, "ipvs-real-server-right")["create"]
    assert "ipvsadm -a -t 198.18.40.80:8080 -r 198.18.40.12:8080 -g -w 3" in real
    assert dr_solo_plan.named("ipvs-real-server-right", COMMAND).depends_on(dr_solo_plan.named("right-vip", COMMAND))
    assert "ip addr replace 198.18.40.80/32 dev lo" in command(dr_solo_plan, "right-vip")["create"]


def test_the_director_adds_a_real_server_only_once_it_holds_the_vip(dr_plan: Plan) -> None:
    vip = dr_plan.named("web1-vip", COMMAND)
    assert all(dr_plan.named(f"keepalived-{d}-real-server-web1", COMMAND).depends_on(vip) for d in ("director-a", "director-b"))


# --- tun ----------------------------------------------------------------------------------------


def test_tun_encapsulates_to_the_web_nodes_internal_addresses(tun_plan: Plan) -> None:
    create = command(tun_plan, "ipvs-real-server-alpha")["create"]
    assert "ipvsadm -a -t 172.30.9.10:8080 -r 10.40.0.21:8080 -i --tun-type ipip -w 2" in create
    assert "IP tunnelling (TUN, ipip)" in create
    assert "-i --tun-type ipip -w 0" in command(tun_plan, "ipvs-real-server-alpha")["delete"]  # the drain keeps the method


def test_tun_web_nodes_decapsulate_and_clamp_their_segment_size(tun_plan: Plan) -> None:
    written = files(user_data(tun_plan, "alpha"))
    assert written["/etc/modules-load.d/lvs-real-server.conf"].splitlines()[-1] == "ipip"
    sysctl = written["/etc/sysctl.d/90-lvs-real-server.conf"]
    assert "net.ipv4.conf.all.rp_filter = 0" in sysctl and "net.ipv4.conf.tunl0.rp_filter = 0" in sysctl
    firewall = written["/etc/nftables.conf"]
    # Protocol 4 by number: /etc/protocols' "ipip" is 94.
    assert "ip saddr { 10.40.0.2 } meta l4proto 4 accept" in firewall
    # Only ever lowered: a smaller segment size the node chose stays.
    assert 'oifname "ext0" tcp flags & (syn | ack) == syn | ack tcp option maxseg size > 1440 tcp option maxseg size set 1440' in firewall
    assert "ExecStart=/usr/sbin/ip addr replace 172.30.9.10/32 dev tunl0" in command(tun_plan, "alpha-vip")["create"]


def test_the_tunnel_types_ipvsadm_and_keepalived_take() -> None:
    config = stack("tun")
    config["lvs:service"]["tunnel"] = {"type": "gue", "port": 6080}
    plan = record_plan(config, stack="tun")
    assert "-i --tun-type gue --tun-port 6080 -w 2" in command(plan, "ipvs-real-server-alpha")["create"]
    firewall = files(user_data(plan, "alpha"))["/etc/nftables.conf"]
    assert "udp dport 6080 accept" in firewall and "maxseg size > 1428 tcp option maxseg size set 1428" in firewall
    assert "ip fou add port 6080 gue" in command(plan, "alpha-vip")["create"]
    assert "ip fou del port 6080" in command(plan, "alpha-vip")["delete"]
    config["lvs:service"]["tunnel"] = {"type": "gre"}
    gre = record_plan(config, stack="tun")
    # ip_gre's gre0 decapsulates only once it is up.
    assert "ExecStart=/usr/sbin/ip link set gre0 up" in command(gre, "alpha-vip")["create"]
    assert "net.ipv4.conf.gre0.rp_filter = 0" in files(user_data(gre, "alpha"))["/etc/sysctl.d/90-lvs-real-server.conf"]
    config["lvs:service"]["tunnel"] = {"type": "gre"}
    settings = settings_of(config)
    assert "lvs_method TUN type gre\n" in virtual_server_conf(settings.service, settings.vip, None)
    assert real_server_conf(settings.service, settings.vip, settings.web_servers[0], None).startswith(
        "# lvs-cluster: real server alpha of 172.30.9.10:8080\nreal_server 10.40.0.21 8080 {"
    )


# --- both ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["dr", "tun"])
def test_every_rendered_document_passes_cloud_inits_validator(name: str, dr_plan: Plan, tun_plan: Plan) -> None:
    assert_cloud_init_accepts({"dr": dr_plan, "tun": tun_plan}[name])


def test_nat_web_nodes_keep_one_nic_and_no_vip() -> None:
    plan = record_plan(seed_config(), stack="seed")
    assert list(network(plan, "web1")["ethernets"]) == ["int0"]
    assert not any(resource.name.endswith("-vip") for resource in plan.of_type(COMMAND))
    assert all("real-server.conf" not in yaml.safe_dump(disk.inputs) for disk in plan.of_type(CLOUD_INIT_DISK))


# --- bad input ----------------------------------------------------------------------------------


def _dr(config: dict[str, Any]) -> None:
    config["lvs:service"]["mode"] = "dr"
    for index, web in enumerate(config["lvs:webServers"]):
        web["externalIp"] = f"12.0.0.{50 + 10 * index}"


def _tun(tunnel: Any) -> Any:
    return _then(_dr, _set("service.mode", "tun"), _set("service.tunnel", tunnel))


def _then(*changes: Any) -> Any:
    def change(config: dict[str, Any]) -> None:
        for step in changes:
            step(config)

    return change


BAD_FORWARDING = [
    (_set("service.mode", "dr"), "lvs:webServers[0].externalIp", "missing (required in mode dr"),
    (_then(_dr, _set("healthCheck", {"type": "tcp"})), "lvs:healthCheck", "type tcp in mode dr needs lvs:director.pair"),
    (_set("webServers[0].externalIp", "12.0.0.50"), "lvs:webServers[0].externalIp", "only in modes dr and tun"),
    (_then(_dr, _set("webServers[1].externalIp", "192.168.75.61")), "lvs:webServers[1].externalIp", "192.168.75.61"),
    (_then(_dr, _set("webServers[1].externalIp", "12.0.0.1")), "lvs:webServers[1].externalIp", "12.0.0.1"),
    (_then(_dr, _set("webServers[1].externalIp", "12.0.0.50")), "lvs:webServers[1].externalIp", "12.0.0.50"),
    (_then(_dr, _set("webServers[0].externalIp", "12.0.0.66")), "lvs:client.ip", "12.0.0.66"),
    (_then(_dr, _set("webServers[0].externalIp", "12.0.0.254")), "lvs:webServers[0].externalIp", "12.0.0.254"),
    (_then(_dr, _set("webServers[0].externalIp", "twelve")), "lvs:webServers[0].externalIp", "twelve"),
    (_then(_dr, _set("service.tunnel", {"type": "ipip"})), "lvs:service.tunnel", "only with lvs:service.mode tun"),
    (_set("service.tunnel", {"type": "ipip"}), "lvs:service.tunnel", "the mode is 'nat'"),
    (_tun({"type": "vxlan"}), "lvs:service.tunnel.type", "vxlan"),
    (_tun({"type": "gue"}), "lvs:service.tunnel.port", "missing"),
    (_tun({"type": "ipip", "port": 6080}), "lvs:service.tunnel.port", "only with type gue"),
    (_tun({"type": "gue", "port": 0}), "lvs:service.tunnel.port", "0"),
    (_tun({"type": "gue", "port": 111}), "lvs:service.tunnel.port", "111 is used by the web nodes themselves"),
    (_tun({"type": "gue", "port": 6080, "csum": True}), "lvs:service.tunnel.csum", "unknown key"),
]  # fmt: skip


@_cases(BAD_FORWARDING)
def test_bad_forwarding_input_fails_with_one_line_naming_the_key(change: Any, key: str, value: str) -> None:
    config = seed_config()
    change(config)
    _fails(config, key, value)


def test_a_tunnel_is_ipip_unless_said() -> None:
    config = seed_config()
    _dr(config)
    config["lvs:service"]["mode"] = "tun"
    service = settings_of(config).service
    assert (service.mode, service.tunnel) == ("tun", TunnelSettings("ipip", None))
    with pytest.raises(ConfigError):
        config["lvs:service"]["mode"] = "bridge"
        settings_of(config)
