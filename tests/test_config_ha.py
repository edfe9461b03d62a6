"""Health checks and a director pair in the config model (issue 7): `lvs:healthCheck` and
`lvs:director.pair`/`vrrp` parse into the one model with their defaults, and bad values fail
with one line naming the key and the value, before any resource is registered."""

from __future__ import annotations

from decimal import Decimal
from ipaddress import IPv4Address
from typing import Any

import pytest

from components.config import ClusterSettings, DirectorPeer, HealthCheckSettings, VrrpSettings, parse_settings
from lab.plan import stack_config
from tests.conftest import PROJECT_DIR, TEST_PRIVATE_KEY, TEST_PUBLIC_KEY
from tests.test_config import _DELETE, _set
from tests.test_config_round_two import Change, _cases, _fails


def ha_config() -> dict[str, Any]:
    config = stack_config(PROJECT_DIR / "Pulumi.ha.yaml")
    config["lvs:sshPublicKey"] = TEST_PUBLIC_KEY
    config["lvs:sshPrivateKey"] = TEST_PRIVATE_KEY
    return config


def settings_of(config: dict[str, Any]) -> ClusterSettings:
    raw = {key.split(":", 1)[1]: value for key, value in config.items() if key.startswith("lvs:") and key != "lvs:sshPrivateKey"}
    return parse_settings(raw, stack="ha", ssh_private_key=config["lvs:sshPrivateKey"])


def test_the_ha_stack_reads_into_the_model() -> None:
    settings = settings_of(ha_config())
    assert settings.health_check == HealthCheckSettings("http", 80, "/", 200, 2, 1, 1)
    assert settings.director.pair == (
        DirectorPeer("director-a", IPv4Address("192.168.75.31"), IPv4Address("12.0.0.2")),
        DirectorPeer("director-b", IPv4Address("192.168.75.32"), IPv4Address("12.0.0.3")),
    )
    assert settings.director.vrrp == VrrpSettings(virtual_router_id=51, advert_interval=Decimal(1), preempt=True)
    assert settings.keepalived
    assert str(settings.vip) == "12.0.0.1"


def test_the_seed_stack_stays_on_the_ipvsadm_path() -> None:
    config = stack_config(PROJECT_DIR / "Pulumi.seed.yaml")
    config["lvs:sshPublicKey"], config["lvs:sshPrivateKey"] = TEST_PUBLIC_KEY, TEST_PRIVATE_KEY
    settings = settings_of(config)
    assert (settings.health_check, settings.director.pair, settings.director.vrrp, settings.keepalived) == (None, None, None, False)


def test_tcp_checks_default_to_the_service_port() -> None:
    config = ha_config()
    config["lvs:service"]["port"] = 8080
    config["lvs:healthCheck"] = {"type": "tcp"}
    assert settings_of(config).health_check == HealthCheckSettings("tcp", 8080, "/", 200, 2, 1, 1)


def test_health_checks_without_a_pair_use_one_director() -> None:
    config = ha_config()
    del config["lvs:director"]["pair"]
    settings = settings_of(config)
    assert settings.director.pair is None and settings.health_check is not None and settings.keepalived


def test_each_director_of_the_pair_is_a_node() -> None:
    nodes = settings_of(ha_config()).inventory()
    assert {name: node["internalIp"] for name, node in nodes.items() if node["role"] == "director"} == {
        "director-a": "192.168.75.31",
        "director-b": "192.168.75.32",
    }


def test_vrrp_knobs() -> None:
    config = ha_config()
    config["lvs:director"]["vrrp"] = {"virtualRouterId": 7, "advertInterval": 3, "preempt": False}
    vrrp = settings_of(config).director.vrrp
    assert vrrp == VrrpSettings(7, Decimal(3), False) and vrrp.version == 2


@pytest.mark.parametrize(
    ("given", "seconds", "version"), [(1, "1", 2), ("2", "2", 2), (1.0, "1", 2), (0.5, "0.5", 3), ("0.25", "0.25", 3), (40.95, "40.95", 3)]
)
def test_a_fraction_of_a_second_between_adverts_needs_vrrp_version_3(given: Any, seconds: str, version: int) -> None:
    config = ha_config()
    config["lvs:director"]["vrrp"] = {"advertInterval": given}
    vrrp = settings_of(config).director.vrrp
    assert vrrp is not None and (str(vrrp.advert_interval), vrrp.version) == (seconds, version)


@_cases(
    [
        (_set("healthCheck.type", "icmp"), "lvs:healthCheck.type", "'icmp'"),
        (_set("healthCheck.type", None), "lvs:healthCheck.type", "null"),
        (_set("healthCheck.path", "index.html"), "lvs:healthCheck.path", "'index.html'"),
        (_set("healthCheck.path", "/a b"), "lvs:healthCheck.path", "'/a b'"),
        (_set("healthCheck.path", '/"}\nquorum 1'), "lvs:healthCheck.path", "quorum"),
        (_set("healthCheck.path", "/#x"), "lvs:healthCheck.path", "'/#x'"),
        (_set("healthCheck.status", 99), "lvs:healthCheck.status", "99"),
        (_set("healthCheck.status", 600), "lvs:healthCheck.status", "600"),
        (_set("healthCheck.interval", 0), "lvs:healthCheck.interval", "0"),
        (_set("healthCheck.interval", "2s"), "lvs:healthCheck.interval", "'2s'"),
        (_set("healthCheck.timeout", 0), "lvs:healthCheck.timeout", "0"),
        (_set("healthCheck.retries", -1), "lvs:healthCheck.retries", "-1"),
        (_set("healthCheck.port", 70000), "lvs:healthCheck.port", "70000"),
        (_set("healthCheck.delay", 3), "lvs:healthCheck.delay", "unknown key"),
        (_set("healthCheck", "http"), "lvs:healthCheck", "'http'"),
        (_set("healthCheck", {"type": "tcp", "path": "/"}), "lvs:healthCheck.path", "tcp"),
        (_set("healthCheck", {"type": "tcp", "status": 200}), "lvs:healthCheck.status", "tcp"),
    ]
)
def test_bad_health_checks(change: Change, key: str, value: str) -> None:
    config = ha_config()
    change(config)
    _fails(config, key, value, stack="ha")


@_cases(
    [
        (
            _set("director.pair", [{"name": "director-a", "internalIp": "192.168.75.31", "externalIp": "12.0.0.2"}]),
            "lvs:director.pair",
            "1 directors",
        ),
        (
            _set(
                "director.pair", [{"name": f"d{i}", "internalIp": f"192.168.75.3{i}", "externalIp": f"12.0.0.{i + 2}"} for i in range(1, 4)]
            ),
            "lvs:director.pair",
            "3 directors",
        ),
        (_set("director.pair", []), "lvs:director.pair", "0 directors"),
        (_set("director.pair", "director-a,director-b"), "lvs:director.pair", "'director-a,director-b'"),
        (_set("director.pair[1].name", "director-a"), "lvs:director.pair[1].name", "'director-a'"),
        (_set("director.pair[1].name", "Director_B"), "lvs:director.pair[1].name", "'Director_B'"),
        (_set("director.pair[1].name", "web1"), "lvs:webServers[0].name", "'web1'"),
        (_set("director.pair[0].internalIp", "12.0.0.9"), "lvs:director.pair[0].internalIp", "12.0.0.9"),
        (_set("director.pair[0].externalIp", "192.168.75.9"), "lvs:director.pair[0].externalIp", "192.168.75.9"),
        (_set("director.pair[0].internalIp", "192.168.75.30"), "lvs:director.pair[0].internalIp", "192.168.75.30"),
        (_set("director.pair[1].externalIp", "12.0.0.1"), "lvs:director.pair[1].externalIp", "12.0.0.1"),
        (_set("director.pair[1].internalIp", "192.168.75.31"), "lvs:director.pair[1].internalIp", "192.168.75.31"),
        (_set("director.pair[0].internalIp", "192.168.75.50"), "lvs:webServers[0].ip", "192.168.75.50"),
        (_set("director.pair[1].externalIp", "12.0.0.66"), "lvs:client.ip", "12.0.0.66"),
        (_set("director.pair[0].internalIp", "192.168.75.255"), "lvs:director.pair[0].internalIp", "192.168.75.255"),
        (_set("director.pair[0].internalIp", _DELETE), "lvs:director.pair[0].internalIp", "missing"),
        (_set("director.pair[0].weight", 1), "lvs:director.pair[0].weight", "unknown key"),
        (_set("director.name", "lb"), "lvs:director.name", "'lb'"),
        (_set("director.vrrp", {"virtualRouterId": 255}), "lvs:director.vrrp.virtualRouterId", "255"),
        (_set("director.vrrp", {"virtualRouterId": 0}), "lvs:director.vrrp.virtualRouterId", "0"),
        (_set("director.vrrp", {"advertInterval": 0}), "lvs:director.vrrp.advertInterval", "0"),
        (_set("director.vrrp", {"advertInterval": 0.05}), "lvs:director.vrrp.advertInterval", "0.05"),
        (_set("director.vrrp", {"advertInterval": 0.125}), "lvs:director.vrrp.advertInterval", "0.125"),
        (_set("director.vrrp", {"advertInterval": 41.5}), "lvs:director.vrrp.advertInterval", "41.5"),
        (_set("director.vrrp", {"advertInterval": 256}), "lvs:director.vrrp.advertInterval", "256"),
        (_set("director.vrrp", {"advertInterval": "fast"}), "lvs:director.vrrp.advertInterval", "'fast'"),
        (_set("director.vrrp", {"advertInterval": True}), "lvs:director.vrrp.advertInterval", "True"),
        (_set("director.vrrp", {"preempt": "maybe"}), "lvs:director.vrrp.preempt", "'maybe'"),
        (_set("director.vrrp", {"state": "MASTER"}), "lvs:director.vrrp.state", "unknown key"),
    ]
)
def test_bad_pairs(change: Change, key: str, value: str) -> None:
    config = ha_config()
    change(config)
    _fails(config, key, value, stack="ha")


def test_vrrp_settings_need_a_pair() -> None:
    config = ha_config()
    del config["lvs:director"]["pair"]
    config["lvs:director"]["vrrp"] = {"virtualRouterId": 9}
    _fails(config, "lvs:director.vrrp", "pair", stack="ha")


@pytest.mark.parametrize("path", ["/", "/health", "/status/check.html", "/a-b_c~d/%20"])
def test_plain_paths_are_checked_as_given(path: str) -> None:
    config = ha_config()
    config["lvs:healthCheck"]["path"] = path
    health_check = settings_of(config).health_check
    assert health_check is not None and health_check.path == path
