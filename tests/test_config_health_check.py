"""Health checks (`lvs:healthCheck`, issues 7 and 17): a check tests what clients get (the
service port, a final status), its path reaches Apache as written and fits keepalived's line,
and timings that keep a dead server for minutes warn."""

from __future__ import annotations

import pytest

from components.config import MAX_CHECK_PATH, HealthCheckSettings
from tests.config_helpers import Change, _cases, _fails, _set, ha_config, settings_of


def test_tcp_checks_default_to_the_service_port() -> None:
    config = ha_config()
    config["lvs:service"]["port"] = 8080
    config["lvs:healthCheck"] = {"type": "tcp"}
    assert settings_of(config).health_check == HealthCheckSettings("tcp", 8080, "/", 200, 2, 1, 1)


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


@pytest.mark.parametrize("path", ["/", "/health", "/status/check.html", "/a-b_c~d/%20"])
def test_plain_paths_are_checked_as_given(path: str) -> None:
    config = ha_config()
    config["lvs:healthCheck"]["path"] = path
    health_check = settings_of(config).health_check
    assert health_check is not None and health_check.path == path


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
