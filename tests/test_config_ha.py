"""A director pair in the config model (issue 7): `lvs:director.pair`/`vrrp` parse into the
one model with their defaults, and bad values fail with one line naming the key and the value,
before any resource is registered; names that would register one resource twice are refused.
Health checks: tests/test_config_health_check.py."""

from __future__ import annotations

from decimal import Decimal
from ipaddress import IPv4Address
from typing import Any

import pytest

from components.config import DirectorPeer, HealthCheckSettings, VrrpSettings, keepalived_command_names
from lab.stack.plan import record_plan, stack_config

# ha_config and settings_of are imported from here by tests/test_ha_plan.py and tests/test_keepalived.py.
from tests.config_helpers import _DELETE, Change, _cases, _fails, _set
from tests.config_helpers import ha_config as ha_config
from tests.config_helpers import settings_of as settings_of
from tests.conftest import PROJECT_DIR, TEST_PRIVATE_KEY, TEST_PUBLIC_KEY


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


# --- Null on a key of the pair -----------------------------------------------------------------


@_cases(
    [
        (_set("healthCheck", None), "lvs:healthCheck", "null"),
        (_set("director.pair", None), "lvs:director.pair", "null"),
    ]
)
def test_null_on_a_key_of_the_pair_is_refused_not_dropped(change: Change, key: str, value: str) -> None:
    config = ha_config()
    change(config)
    message = _fails(config, key, value, stack="ha")
    assert "None" not in message and "remove the key" in message


@pytest.mark.parametrize(("interval", "seconds"), [(17, "61.2"), (60, "216.0"), (255, "918.0")])
def test_an_advert_interval_that_makes_failover_take_minutes_warns(interval: int, seconds: str) -> None:
    config = ha_config()
    config["lvs:director"]["vrrp"] = {"advertInterval": interval}
    (warning,) = settings_of(config).warnings
    assert warning.startswith(f"lvs:director.vrrp.advertInterval: {interval} s: a failover takes about {seconds} s"), warning


# --- Every accepted config registers unique resource names --------------------------------------


def _names(first: str, second: str, web: str) -> Change:
    """The pair's names, and the second web server's."""

    def change(config: dict[str, Any]) -> None:
        config["lvs:director"]["pair"][0]["name"] = first
        config["lvs:director"]["pair"][1]["name"] = second
        config["lvs:webServers"][1]["name"] = web

    return change


@_cases(
    [
        (_names("a", "a-real-server-web1", "web1-main"), "lvs:director.pair[1].name", "'keepalived-a-real-server-web1-main'"),
        (_names("a-real-server-x", "a", "x-load"), "lvs:director.pair[1].name", "lvs:director.pair[0].name ('a-real-server-x')"),
        (_names("a", "a-real-server-w", "w-watchdog"), "lvs:director.pair[1].name", "lvs:webServers[1].name ('w-watchdog')"),
    ]
)
def test_names_that_would_register_one_resource_twice_are_refused(change: Change, key: str, value: str) -> None:
    config = ha_config()
    change(config)
    _fails(config, key, value, stack="ha")


def test_the_model_knows_the_names_keepalived_s_commands_get() -> None:
    config = ha_config()
    plan = record_plan(config, stack="ha")
    settings = settings_of(config)
    webs = [web.name for web in settings.web_servers]
    for director in settings.directors:
        parent = next(r.urn for r in plan.resources if r.type == "lvs:keepalived:KeepalivedDirector" and r.name.endswith(director.name))
        registered = {r.name for r in plan.resources if r.parent == parent and r.type == "command:remote:Command"}
        assert registered == set(keepalived_command_names(director.name, webs))
