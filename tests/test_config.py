"""Bad input fails `pulumi preview` with one message naming the key and the value, and
registers no resource. Each case changes one thing in the seed stack."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import PurePosixPath
from typing import Any

import pytest

from components.config import ConfigError, PoolSettings, mac_address, parse_settings
from lab.plan import record_plan
from tests.conftest import seed_config

_DELETE = object()


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """Changes one value, addressed like the error messages do: `webServers[1].weight`."""
    steps: list[Any] = [int(index) if index else name for name, index in re.findall(r"([A-Za-z]+)|\[(\d+)\]", path)]
    steps[0] = f"lvs:{steps[0]}"

    def change(config: dict[str, Any]) -> None:
        node: Any = config
        for step in steps[:-1]:
            node = node[step]
        if value is _DELETE:
            del node[steps[-1]]
        else:
            node[steps[-1]] = value

    return change


BAD_INPUT = [
    # (change, the key the message must name, a fragment of the value it must show)
    (_set("networks.internal.cidr", "192.168.75.0/33"), "lvs:networks.internal.cidr", "192.168.75.0/33"),
    (_set("networks.external.cidr", "12.0.0.7/24"), "lvs:networks.external.cidr", "12.0.0.7/24"),
    (_set("networks.internal.cidr", "banana"), "lvs:networks.internal.cidr", "banana"),
    (_set("webServers[1].ip", "192.168.76.60"), "lvs:webServers[1].ip", "192.168.76.60"),
    (_set("director.externalIp", "192.168.75.31"), "lvs:director.externalIp", "192.168.75.31"),
    (_set("client.ip", "12.0.1.66"), "lvs:client.ip", "12.0.1.66"),
    (_set("nfs.ip", "192.168.75.255"), "lvs:nfs.ip", "192.168.75.255"),
    (_set("webServers[1].ip", "192.168.75.50"), "lvs:webServers[1].ip", "192.168.75.50"),
    (_set("nfs.ip", "192.168.75.30"), "lvs:nfs.ip", "192.168.75.30"),
    (_set("client.ip", "12.0.0.1"), "lvs:client.ip", "12.0.0.1"),
    (_set("webServers[0].ip", "192.168.75.254"), "lvs:webServers[0].ip", "192.168.75.254"),
    (_set("networks.external.hostIp", "12.0.0.1"), "lvs:director.externalIp", "12.0.0.1"),
    (_set("networks.external.cidr", "192.168.75.128/25"), "lvs:networks.external.cidr", "192.168.75.128/25"),
    (_set("service.scheduler", "random"), "lvs:service.scheduler", "random"),
    (_set("service.mode", "bridge"), "lvs:service.mode", "bridge"),
    (_set("service.mode", "dr"), "lvs:service.mode", "dr"),
    (_set("webServers[0].weight", -1), "lvs:webServers[0].weight", "-1"),
    (_set("webServers[1].weight", 65536), "lvs:webServers[1].weight", "65536"),
    (_set("service.persistence", -5), "lvs:service.persistence", "-5"),
    (_set("service.port", 0), "lvs:service.port", "0"),
    (_set("service.port", 70000), "lvs:service.port", "70000"),
    (_set("webServers[1].name", "web1"), "lvs:webServers[1].name", "web1"),
    (_set("webServers[0].name", "director"), "lvs:webServers[0].name", "director"),
    (_set("webServers[0].name", "web_1"), "lvs:webServers[0].name", "web_1"),
    (_set("webServers[0].name", "-web"), "lvs:webServers[0].name", "-web"),
    (_set("director.name", "Director.Example"), "lvs:director.name", "Director.Example"),
    (_set("webServers[1].export", "/opt/other"), "lvs:webServers[1].export", "/opt/other"),
    (_set("webServers", []), "lvs:webServers", "empty"),
    (_set("sshPublicKey", _DELETE), "lvs:sshPublicKey", "missing"),
    (_set("sshPublicKey", "not a key"), "lvs:sshPublicKey", "not a key"),
    (_set("sshPrivateKey", _DELETE), "lvs:sshPrivateKey", "missing"),
    (_set("service.schedular", "wrr"), "lvs:service.schedular", "unknown key"),
    (_set("webServer", []), "lvs:webServer", "unknown key"),
    (_set("nfs.exports", ["opt/kgc", "/opt/benet"]), "lvs:nfs.exports[0]", "opt/kgc"),
    (_set("webServers[0].weight", "heavy"), "lvs:webServers[0].weight", "heavy"),
    (_set("image", {}), "lvs:image.source", "missing"),
    (_set("domainType", "xen"), "lvs:domainType", "xen"),
    # The storage pool: an existing one by name, or the directory of the one the stack creates.
    (_set("image.poolPath", "pools/lvs"), "lvs:image.poolPath", "'pools/lvs' must be an absolute path"),
    (_set("image.poolPath", ""), "lvs:image.poolPath", "'' must be an absolute path"),
    (_set("image.poolPath", "/"), "lvs:image.poolPath", "'/' is the root directory"),
    (_set("image.poolPath", "//"), "lvs:image.poolPath", "'//' is the root directory"),
    (_set("image.poolPath", "/srv/.."), "lvs:image.poolPath", "'/srv/..' is the root directory"),
    (_set("image.poolPath", "/srv/lvs pool"), "lvs:image.poolPath", "'/srv/lvs pool' has characters outside"),
    (_set("image.poolPath", "/srv/lvs;reboot"), "lvs:image.poolPath", "'/srv/lvs;reboot' has characters outside"),
    (_set("image.poolPath", "/srv/pöol"), "lvs:image.poolPath", "'/srv/pöol' has characters outside"),
    (_set("image.poolPath", "/srv/lvs\nx"), "lvs:image.poolPath", "'/srv/lvs\\nx' has characters outside"),
    (_set("image.poolPath", 42), "lvs:image.poolPath", "42 is not a string"),
    (
        lambda config: config["lvs:image"].update(pool="mypool", poolPath="/srv/lvs"),
        "lvs:image.poolPath",
        "'/srv/lvs' only applies to the pool the stack creates",
    ),
    (_set("image.pool", ""), "lvs:image.pool", "'' is not a usable libvirt pool name"),
    (_set("image.pool", "my pool"), "lvs:image.pool", "'my pool' is not a usable libvirt pool name"),
    (_set("image.pool", "-pool"), "lvs:image.pool", "'-pool' is not a usable libvirt pool name"),
    (_set("image.pool", "pool/x"), "lvs:image.pool", "'pool/x' is not a usable libvirt pool name"),
    (_set("image.pool", "p" * 65), "lvs:image.pool", f"{'p' * 65!r} is not a usable libvirt pool name"),
    (_set("image.poolpath", "/srv/lvs"), "lvs:image.poolpath", "unknown key"),
    # Found by the VM lab: Debian has a group `operator`, so cloud-init cannot create the user.
    (_set("adminUser", "operator"), "lvs:adminUser", "operator"),
    (_set("adminUser", "Admin"), "lvs:adminUser", "Admin"),
]


@pytest.mark.parametrize(("change", "key", "value"), BAD_INPUT, ids=[f"{key}={value}" for _, key, value in BAD_INPUT])
def test_bad_input_fails_before_any_resource(config_with: Any, change: Any, key: str, value: str) -> None:
    with pytest.raises(ConfigError) as failure:
        record_plan(config_with(change), stack="seed")
    message = str(failure.value)
    assert message.startswith(f"{key}:"), message
    assert value in message
    assert "\n" not in message
    assert failure.value.plan.resources == []  # type: ignore[attr-defined]


def test_seed_config_reads_into_the_model() -> None:
    raw = {key.split(":", 1)[1]: value for key, value in seed_config().items() if key.startswith("lvs:")}
    private_key = raw.pop("sshPrivateKey")
    settings = parse_settings(raw, stack="seed", ssh_private_key=private_key)
    assert str(settings.internal.cidr) == "192.168.75.0/24"
    assert str(settings.vip) == "12.0.0.1"
    assert settings.vip_url == "http://12.0.0.1/"
    assert [(w.name, str(w.ip), str(w.export), w.weight) for w in settings.web_servers] == [
        ("web1", "192.168.75.50", "/opt/kgc", 1),
        ("web2", "192.168.75.60", "/opt/benet", 1),
    ]
    # The host side defaults to the last usable address, away from the seed's .1 VIP.
    assert (str(settings.internal.host_ip), str(settings.external.host_ip)) == ("192.168.75.254", "12.0.0.254")
    assert (settings.service.scheduler, settings.service.persistence, settings.service.port) == ("rr", 0, 80)
    # No `lvs:image.pool`: the stack creates its own pool, named and placed after the stack.
    assert settings.image.pool == PoolSettings(name="seed-pool", path=PurePosixPath("/var/lib/libvirt/images/lvs-cluster-seed"))
    assert settings.image.pool.created_by_stack


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        ({}, PoolSettings(name="seed-pool", path=PurePosixPath("/var/lib/libvirt/images/lvs-cluster-seed"))),
        ({"poolPath": "/srv/lvs"}, PoolSettings(name="seed-pool", path=PurePosixPath("/srv/lvs"))),
        ({"poolPath": "//srv///lvs/"}, PoolSettings(name="seed-pool", path=PurePosixPath("/srv/lvs"))),
        ({"poolPath": "/srv/./a/../lvs-1.2_x"}, PoolSettings(name="seed-pool", path=PurePosixPath("/srv/lvs-1.2_x"))),
        ({"pool": "default"}, PoolSettings(name="default", path=None)),
        ({"pool": "Pool_1.a-b"}, PoolSettings(name="Pool_1.a-b", path=None)),
        ({"pool": "p" * 64}, PoolSettings(name="p" * 64, path=None)),
        ({"pool": None, "poolPath": None}, PoolSettings(name="seed-pool", path=PurePosixPath("/var/lib/libvirt/images/lvs-cluster-seed"))),
    ],
    ids=["default", "path", "slashes", "dots", "existing-default", "existing-chars", "existing-64", "nulls"],
)
def test_pool_settings(image: dict[str, Any], expected: PoolSettings) -> None:
    raw = {key.split(":", 1)[1]: value for key, value in seed_config().items() if key.startswith("lvs:")}
    raw.pop("sshPrivateKey")
    raw["image"] = {**raw["image"], **image}
    settings = parse_settings(raw, stack="seed", ssh_private_key="key")
    assert settings.image.pool == expected
    assert settings.image.pool.created_by_stack == (expected.path is not None)


def test_defaults_apply_where_the_seed_implies_one() -> None:
    raw = {key.split(":", 1)[1]: value for key, value in seed_config().items() if key.startswith("lvs:")}
    raw.pop("sshPrivateKey")
    del raw["service"]
    for web in raw["webServers"]:
        del web["weight"]
    settings = parse_settings(raw, stack="seed", ssh_private_key="key")
    assert (settings.service.port, settings.service.scheduler, settings.service.persistence, settings.service.mode) == (80, "rr", 0, "nat")
    assert {web.weight for web in settings.web_servers} == {1}
    assert settings.director.size.memory_mib == 512


def test_every_ipvsadm_scheduler_is_accepted(config_with: Any) -> None:
    for scheduler in ("rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf", "mh"):
        plan = record_plan(config_with(_set("service.scheduler", scheduler)), stack="seed")
        assert f"-s {scheduler}" in plan.named("ipvs-virtual-service").inputs["create"]


def test_mac_addresses_are_stable_and_locally_administered() -> None:
    from ipaddress import IPv4Address

    mac = mac_address(IPv4Address("192.168.75.50"))
    assert mac == "52:54:c0:a8:4b:32"
    first_octet = int(mac.split(":")[0], 16)
    assert first_octet & 0b10 and not first_octet & 0b1
