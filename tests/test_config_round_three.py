"""Bad input, round three (issue 17): health checks that test what clients get, check paths that
reach Apache as written, nulls on the pair's keys, and weights keepalived refuses. Each fails
`pulumi preview` with one line naming the key and the value, before any resource is registered;
the legal but doubtful ones warn."""

from __future__ import annotations

from typing import Any

import pulumi
import pytest

from components.config import MAX_CHECK_PATH, keepalived_command_names
from lab.plan import record_plan, stack_config
from tests.conftest import PROJECT_DIR, TEST_PRIVATE_KEY, TEST_PUBLIC_KEY, seed_config
from tests.test_config import _set
from tests.test_config_ha import ha_config, settings_of
from tests.test_config_round_two import Change, _cases, _fails

# --- A health check tests what clients get -----------------------------------------------------


@_cases(
    [
        (_set("healthCheck.port", 8080), "lvs:healthCheck.port", "8080"),
        (_set("healthCheck.port", 22), "lvs:healthCheck.port", "22"),
        (_set("healthCheck.port", "111"), "lvs:healthCheck.port", "111"),
        (_set("healthCheck", {"type": "tcp", "port": 2049}), "lvs:healthCheck.port", "2049"),
        (_set("healthCheck.status", 100), "lvs:healthCheck.status", "100"),
        (_set("healthCheck.status", 101), "lvs:healthCheck.status", "101"),
        (_set("healthCheck.status", "199"), "lvs:healthCheck.status", "199"),
    ]
)
def test_a_check_on_another_port_or_an_interim_status_is_refused(change: Change, key: str, value: str) -> None:
    config = ha_config()
    change(config)
    _fails(config, key, value, stack="ha")


def test_the_check_port_may_be_spelled_as_the_service_port() -> None:
    config = ha_config()
    config["lvs:service"]["port"] = 8080
    config["lvs:healthCheck"] = {"type": "tcp", "port": "8080"}
    check = settings_of(config).health_check
    assert check is not None and check.port == 8080


# --- A check path reaches Apache as written ----------------------------------------------------

BAD_PATHS = {
    "/%zz": "escape",
    "/a%4": "escape",
    "/100%": "escape",
    "/a%00b": "%00",
    "/a%2Fb": "%2F",
    "/a%2fb": "%2F",
    "/./index.html": "dot segment",
    "/a/../b": "dot segment",
    "/a/..": "dot segment",
    "/a/.": "dot segment",
    "/%2e%2e/etc": "dot segment",
    "/$_RANDOM": "'/$_RANDOM'",
    "/${NAME}": "'/${NAME}'",
    "/a$b": "'/a$b'",
    "/a!b": "'/a!b'",
    "/a#b": "'/a#b'",
}


@pytest.mark.parametrize(("path", "fragment"), BAD_PATHS.items(), ids=BAD_PATHS.keys())
def test_a_path_keepalived_or_apache_would_change_is_refused(path: str, fragment: str) -> None:
    config = ha_config()
    config["lvs:healthCheck"]["path"] = path
    message = _fails(config, "lvs:healthCheck.path", fragment, stack="ha")
    assert len(message) < 300, message


@pytest.mark.parametrize("length", [MAX_CHECK_PATH + 1, 1007, 1024, 5000])
def test_a_path_longer_than_keepalived_reads_is_refused(length: int) -> None:
    config = ha_config()
    config["lvs:healthCheck"]["path"] = "/" + "a" * (length - 1)
    message = _fails(config, "lvs:healthCheck.path", f"{length} characters", stack="ha")
    assert len(message) < 300, message  # the value itself is not repeated


@pytest.mark.parametrize("path", ["/", "/index.html", "/a%20b", "/%7Euser/", "/health;v=1", "/a..b/.c", "/" + "a" * (MAX_CHECK_PATH - 1)])
def test_paths_that_reach_apache_as_written_are_taken(path: str) -> None:
    config = ha_config()
    config["lvs:healthCheck"]["path"] = path
    check = settings_of(config).health_check
    assert check is not None and check.path == path


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


# --- Weights -----------------------------------------------------------------------------------


@pytest.mark.parametrize("weights", [[0, 0], ["0", 0], [0, "0"]])
def test_all_weights_zero_under_keepalived_is_refused(weights: list[Any]) -> None:
    config = ha_config()
    for web, weight in zip(config["lvs:webServers"], weights, strict=True):
        web["weight"] = weight
    _fails(config, "lvs:webServers[0].weight", "all 0", stack="ha")


def test_all_weights_zero_under_ipvsadm_warns(monkeypatch: pytest.MonkeyPatch) -> None:
    warned: list[str] = []
    monkeypatch.setattr(pulumi.log, "warn", lambda message, *args, **kwargs: warned.append(message))
    config = seed_config()
    for web in config["lvs:webServers"]:
        web["weight"] = 0
    assert record_plan(config, stack="seed").resources
    assert warned == [
        "lvs:webServers[0].weight: 0, and so is every weight (all 0, 2 web servers): the VIP answers no request until one has a weight"
    ]


def test_one_weight_zero_is_a_drain_and_says_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    warned: list[str] = []
    monkeypatch.setattr(pulumi.log, "warn", lambda message, *args, **kwargs: warned.append(message))
    config = ha_config()
    config["lvs:webServers"][0]["weight"] = 0
    assert record_plan(config, stack="ha").resources and warned == []


# --- What libvirt, the provider and QEMU refuse ------------------------------------------------


@_cases(
    [
        (_set("networks.internal.bridge", "all"), "lvs:networks.internal.bridge", "'all'"),
        (_set("networks.external.bridge", "default"), "lvs:networks.external.bridge", "'default'"),
        (_set("image.source", "ftp://example.org/debian.qcow2"), "lvs:image.source", "ftp://"),
        (_set("image.source", "scp://host/debian.qcow2"), "lvs:image.source", "scp://"),
        (_set("image.source", "/srv/debian 12.qcow2"), "lvs:image.source", "debian 12"),
        (_set("image.source", " https://example.org/debian.qcow2"), "lvs:image.source", "' https://"),
        (_set("image.source", "https://example.org/debian.qcow2\n"), "lvs:image.source", "qcow2\\n'"),
        (_set("image.source", "s3://bucket/debian.qcow2"), "lvs:image.source", "s3://"),
        (_set("image.poolPath", "/root/pools/lvs"), "lvs:image.poolPath", "/root"),
        (_set("image.poolPath", "/root"), "lvs:image.poolPath", "/root"),
        (_set("image.poolPath", "//root//images"), "lvs:image.poolPath", "/root"),
    ]
)
def test_what_the_host_would_refuse_is_refused_first(change: Change, key: str, value: str) -> None:
    config = seed_config()
    change(config)
    _fails(config, key, value)


@pytest.mark.parametrize(
    "source", ["https://cloud.debian.org/x.qcow2", "http://mirror/x.qcow2", "file:///srv/x.qcow2", "/srv/x.qcow2", "images/x.qcow2"]
)
def test_sources_the_provider_fetches_are_taken(source: str) -> None:
    config = seed_config()
    config["lvs:image"]["source"] = source
    assert record_plan(config, stack="seed").resources


def test_a_pool_beside_root_s_home_is_taken() -> None:
    config = seed_config()
    config["lvs:image"]["poolPath"] = "/rootfs/pools/lvs"
    assert record_plan(config, stack="seed").resources


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


# --- Legal, but clients would fail for minutes: warnings -------------------------------------


@pytest.mark.parametrize(
    ("check", "seconds"),
    [({"interval": 30, "retries": 1}, 62), ({"interval": 10, "timeout": 10, "retries": 3}, 80), ({"timeout": 61, "retries": 0}, 63)],
)
def test_check_timings_that_keep_a_dead_server_for_minutes_warn(check: dict[str, int], seconds: int) -> None:
    config = ha_config()
    config["lvs:healthCheck"].update(check)
    (warning,) = settings_of(config).warnings
    assert warning.startswith("lvs:healthCheck: a dead real server stays in the table for up to ") and f" {seconds} s " in warning


@pytest.mark.parametrize(("interval", "seconds"), [(17, "61.2"), (60, "216.0"), (255, "918.0")])
def test_an_advert_interval_that_makes_failover_take_minutes_warns(interval: int, seconds: str) -> None:
    config = ha_config()
    config["lvs:director"]["vrrp"] = {"advertInterval": interval}
    (warning,) = settings_of(config).warnings
    assert warning.startswith(f"lvs:director.vrrp.advertInterval: {interval} s: a failover takes about {seconds} s"), warning


def test_the_repository_s_stacks_warn_about_nothing() -> None:
    ha_tcp = stack_config(PROJECT_DIR / "tests" / "Pulumi.ha-tcp.yaml")
    ha_tcp.update({"lvs:sshPublicKey": TEST_PUBLIC_KEY, "lvs:sshPrivateKey": TEST_PRIVATE_KEY})
    assert settings_of(ha_config()).warnings == settings_of(ha_tcp).warnings == ()


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
