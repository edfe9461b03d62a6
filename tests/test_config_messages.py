"""Bad input fails `pulumi preview` with one message naming the key and the value, and
registers no resource; null is never read as "missing" nor as the default, and a message
shows a value readably. Each case changes one thing in a stack."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from components.config import ConfigError
from lab.stack.plan import record_plan
from tests.config_helpers import _DELETE, Change, _cases, _fails, _set, _settings_with
from tests.conftest import seed_config

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


# --- Misleading messages: null -----------------------------------------------------------------


NULLS = [
    # keys with a default: an explicit null is not silently that default
    *[
        (_set(path, null), f"lvs:{path}", "null is not a value for this key; remove the key to use the default")
        for path in (
            "adminUser", "domainType", "service.scheduler", "service.port", "service.persistence", "service.mode", "director.name",
            "nfs.name", "client.name", "webServers[0].weight", "webServers[1].memory", "director.vcpus", "networks.internal.hostIp",
        )
        for null in (None, "null") if "." not in path or null is None
    ],
    (_set("networks.external.hostIp", None), "lvs:networks.external.hostIp", "remove the key to use the default, 12.0.0.254"),
    (_set("service", None), "lvs:service", "null is not a value for this key; remove the key to use the defaults"),
    # required keys given as null
    *[
        (_set(path, None), f"lvs:{path}", "null given, but a value is required")
        for path in (
            "image", "image.source", "networks", "networks.internal", "networks.internal.name", "networks.external.cidr",
            "director", "director.internalIp", "nfs", "nfs.ip", "nfs.exports", "webServers", "webServers[0].name",
            "webServers[1].ip", "webServers[0].export", "client.ip",
        )
    ],
    (_set("sshPublicKey", "null"), "lvs:sshPublicKey", "null given, but a value is required"),
    (_set("nfs.exports", [None, "/opt/kgc", "/opt/benet"]), "lvs:nfs.exports[0]", "null given, but a path is required"),
    (_set("webServers", [None]), "lvs:webServers[0]", "expected a mapping, got null"),
]  # fmt: skip


@_cases(NULLS)
def test_null_never_says_missing_nor_becomes_the_default(config_with: Any, change: Change, key: str, value: str) -> None:
    message = _fails(config_with(change), key, value)
    assert "missing" not in message


@pytest.mark.parametrize(
    ("change", "check"),
    [
        (_set("client", None), lambda settings: settings.client is None),
        (_set("image.pool", None), lambda settings: settings.image.pool.name == "seed-pool"),
        (_set("image.poolPath", None), lambda settings: settings.image.pool.created_by_stack),
        (_set("networks.internal.bridge", None), lambda settings: settings.internal.bridge is None),
    ],
    ids=["client", "image.pool", "image.poolPath", "bridge"],
)
def test_null_means_not_set_where_not_set_is_the_default(change: Change, check: Callable[[Any], bool]) -> None:
    assert check(_settings_with(change))


# --- Messages ----------------------------------------------------------------------------------


def test_a_long_value_is_cut_in_its_message() -> None:
    config = seed_config()
    config["lvs:networks"]["internal"]["name"] = "n" * 5000
    message = _fails(config, "lvs:networks.internal.name", "nnn…nnn")
    assert len(message) < 300, message


@_cases(
    [
        (_set("service.scheduler", None), "lvs:service.scheduler", "null"),
        (_set("webServers", None), "lvs:webServers", "null"),
        (_set("networks.internal", None), "lvs:networks.internal", "null"),
    ]
)
def test_null_is_shown_as_null(change: Change, key: str, value: str) -> None:
    config = seed_config()
    change(config)
    assert "None" not in _fails(config, key, value)
