"""keepalived's configuration, rendered from the one model of the service and its real servers
(issue 7, in progress: the Commands that write it and the lab's fault scenarios come next)."""

from __future__ import annotations

import dataclasses
import os
import random
import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from components.config import MAX_CHECK_PATH, MAX_PERSISTENCE, MAX_VIRTUAL_ROUTER_ID, SCHEDULERS, ClusterSettings
from components.keepalived import main_conf, real_server_conf, virtual_server_conf
from lab.host import tools
from lab.stack.plan import stack_config
from tests.conftest import PROJECT_DIR, TEST_PRIVATE_KEY, TEST_PUBLIC_KEY
from tests.test_config_ha import ha_config, settings_of


def rendered_main(config: dict[str, Any], index: int) -> str:
    settings = settings_of(config)
    return main_conf(settings.director, index, internal=settings.internal.cidr, external=settings.external.cidr)


def block(text: str, header: str) -> str:
    """The body of the first `header { … }` block (nested braces included)."""
    start = text.index(header + " {") + len(header) + 2
    depth, at = 1, start
    while depth:
        depth += {"{": 1, "}": -1}.get(text[at], 0)
        at += 1
    return text[start : at - 1]


def test_never_vrrp_strict() -> None:
    for index in (0, 1):
        assert "vrrp_strict" not in re.sub(r"#.*", "", rendered_main(ha_config(), index))


def test_the_first_director_is_preferred_and_both_float_the_vip_and_the_gateway_together() -> None:
    first, second = rendered_main(ha_config(), 0), rendered_main(ha_config(), 1)
    for text, state, priority in ((first, "MASTER", 150), (second, "BACKUP", 100)):
        assert "VI_EXTERNAL" in block(text, "vrrp_sync_group LVS") and "VI_INTERNAL" in block(text, "vrrp_sync_group LVS")
        for instance in ("VI_EXTERNAL", "VI_INTERNAL"):
            body = block(text, f"vrrp_instance {instance}")
            assert f"state {state}" in body and f"priority {priority}" in body
    assert "12.0.0.1/24 dev ext0" in block(first, "vrrp_instance VI_EXTERNAL")
    assert "192.168.75.30/24 dev int0" in block(first, "vrrp_instance VI_INTERNAL")
    assert "unicast_src_ip 12.0.0.3" in second and "192.168.75.31" in block(second, "vrrp_instance VI_INTERNAL")


def test_connection_state_is_synchronised_on_the_internal_network() -> None:
    assert "lvs_sync_daemon int0 id 51" in block(rendered_main(ha_config(), 1), "global_defs")


def test_without_preemption_both_start_as_backup() -> None:
    config = ha_config()
    config["lvs:director"]["vrrp"] = {"preempt": False}
    for index in (0, 1):
        text = rendered_main(config, index)
        assert "state MASTER" not in text and text.count("nopreempt") == 2


def test_half_second_adverts_speak_vrrp_version_3() -> None:
    config = ha_config()
    assert "vrrp_version" not in rendered_main(config, 0)
    config["lvs:director"]["vrrp"] = {"advertInterval": 0.5}
    text = rendered_main(config, 0)
    assert "vrrp_version 3" in block(text, "global_defs")
    assert "advert_int 0.5" in block(text, "vrrp_instance VI_EXTERNAL") and "advert_int 0.5" in block(text, "vrrp_instance VI_INTERNAL")


def test_the_router_ids_follow_the_knob() -> None:
    config = ha_config()
    config["lvs:director"]["vrrp"] = {"virtualRouterId": 200}
    text = rendered_main(config, 0)
    assert "virtual_router_id 200" in block(text, "vrrp_instance VI_EXTERNAL")
    assert "virtual_router_id 201" in block(text, "vrrp_instance VI_INTERNAL")


def test_a_single_director_with_health_checks_has_no_vrrp() -> None:
    config = ha_config()
    del config["lvs:director"]["pair"]
    text = re.sub(r"#.*", "", rendered_main(config, 0))
    assert "vrrp" not in text and "lvs_sync_daemon" not in text
    assert "router_id director\n" in text


def test_an_http_check_per_real_server() -> None:
    settings = settings_of(ha_config())
    web = settings.web_servers[1]
    text = real_server_conf(settings.service, settings.vip, dataclasses.replace(web, weight=3), settings.health_check)
    body = block(text, "real_server 192.168.75.60 80")
    assert "weight 3" in body
    check = block(body, "HTTP_GET")
    assert "path /" in check and "status_code 200" in check
    assert re.findall(r"(connect_port|connect_timeout|retry|delay_before_retry) (\d+)", check) == [
        ("connect_port", "80"),
        ("connect_timeout", "1"),
        ("retry", "1"),
        ("delay_before_retry", "2"),
    ]


def test_a_tcp_check() -> None:
    config = ha_config()
    config["lvs:service"]["port"] = 8080
    config["lvs:healthCheck"] = {"type": "tcp", "port": 8080, "interval": 5, "timeout": 3, "retries": 2}
    settings = settings_of(config)
    web = settings.web_servers[0]
    text = real_server_conf(settings.service, settings.vip, dataclasses.replace(web, weight=1), settings.health_check)
    assert "HTTP_GET" not in text
    assert "connect_port 8080" in block(text, "TCP_CHECK") and "retry 2" in block(text, "TCP_CHECK")


def test_the_virtual_service_carries_the_scheduler_persistence_and_check_interval() -> None:
    config = ha_config()
    config["lvs:service"].update({"scheduler": "wrr", "persistence": 300})
    settings = settings_of(config)
    body = block(virtual_server_conf(settings.service, settings.vip, settings.health_check), "virtual_server 12.0.0.1 80")
    assert re.findall(r"^\s+(\w+) (\S+)$", body, re.M) == [
        ("delay_loop", "2"),
        ("lb_algo", "wrr"),
        ("lb_kind", "NAT"),
        ("protocol", "TCP"),
        ("persistence_timeout", "300"),
        ("include", "/etc/keepalived/lvs-cluster/real-servers/*.conf"),
    ]


def test_a_pair_without_health_checks_lists_real_servers_without_a_checker() -> None:
    config = ha_config()
    del config["lvs:healthCheck"]
    settings = settings_of(config)
    web = settings.web_servers[0]
    assert settings.health_check is None
    text = real_server_conf(settings.service, settings.vip, dataclasses.replace(web, weight=1), None)
    assert "CHECK" not in text and "HTTP_GET" not in text
    assert "delay_loop" not in virtual_server_conf(settings.service, settings.vip, None)


KEEPALIVED = Path(os.environ.get("LVS_CACHE_DIR", Path.home() / ".cache" / "lvs-cluster")) / "keepalived" / "usr" / "sbin" / "keepalived"


@pytest.fixture(scope="module")
def director_interfaces() -> Iterator[str]:
    """A network namespace of this test's own with a director's interface names (int0, ext0:
    veth ends, no address), where `keepalived -t` finds the interfaces it checks; removed after."""
    tools.require("ip")
    name = f"lvs-kt-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        for nic in ("int0", "ext0"):
            subprocess.run(["ip", "-n", name, "link", "add", nic, "type", "veth", "peer", "name", f"{nic}-peer"], check=True)
            subprocess.run(["ip", "-n", name, "link", "set", nic, "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=True)


def keepalived_test(settings: ClusterSettings, index: int, directory: Path, namespace: str) -> subprocess.CompletedProcess[str]:
    """Writes what director `index` would get and runs Debian's `keepalived -t` on it, where the
    director's interfaces exist: any warning is a failure, as it is for the Command."""
    assert KEEPALIVED.is_file(), f"Debian's keepalived is not at {KEEPALIVED}: run scripts/setup"
    conf_d = directory / "lvs-cluster"
    (conf_d / "real-servers").mkdir(parents=True)
    main = directory / "keepalived.conf"
    main.write_text(
        main_conf(settings.director, index, internal=settings.internal.cidr, external=settings.external.cidr, config_dir=str(conf_d))
    )
    (conf_d / "virtual-server.conf").write_text(
        virtual_server_conf(settings.service, settings.vip, settings.health_check, config_dir=str(conf_d))
    )
    for web in settings.web_servers:
        (conf_d / "real-servers" / f"{web.name}.conf").write_text(
            real_server_conf(settings.service, settings.vip, web, settings.health_check)
        )
    return subprocess.run(
        ["ip", "netns", "exec", namespace, str(KEEPALIVED), "--config-test", "--use-file", str(main), "--log-console"],
        capture_output=True,
        text=True,
        timeout=60,
    )


VARIANTS: dict[str, Callable[[dict[str, Any]], object]] = {
    "pair with http checks": lambda config: None,
    "pair, tcp checks, no preemption": lambda config: config.update(
        {"lvs:healthCheck": {"type": "tcp", "interval": 5}, "lvs:director": {**config["lvs:director"], "vrrp": {"preempt": False}}}
    ),
    "pair without checks": lambda config: config.pop("lvs:healthCheck"),
    "pair, the longest check path, escapes, a 5xx status": lambda config: config["lvs:healthCheck"].update(
        {"path": "/a%20b;c=d/" + "x" * (MAX_CHECK_PATH - 11), "status": 503}
    ),
    "pair, every web node drained but one": lambda config: config["lvs:webServers"][0].update({"weight": 0}),
    "pair with half-second adverts (VRRPv3)": lambda config: config["lvs:director"].update({"vrrp": {"advertInterval": 0.5}}),
    "one director with checks, wrr and persistence": lambda config: (
        config["lvs:director"].pop("pair"),
        config["lvs:service"].update({"scheduler": "wrr", "persistence": 600}),
    ),
    # Issue 18: the forwarding methods (components/forwarding.py), each web node's external address its real server in dr.
    "pair with http checks, direct routing": lambda config: _forwarding(config, {"mode": "dr"}),
    "pair without checks, an ipip tunnel": lambda config: (config.pop("lvs:healthCheck"), _forwarding(config, {"mode": "tun"})),
    "pair with tcp checks, a gue tunnel": lambda config: (
        config.update({"lvs:healthCheck": {"type": "tcp"}}),
        _forwarding(config, {"mode": "tun", "tunnel": {"type": "gue", "port": 6080}}),
    ),
    "one director with checks, a gre tunnel": lambda config: (
        config["lvs:director"].pop("pair"),
        _forwarding(config, {"mode": "tun", "tunnel": {"type": "gre"}}),
    ),
}


def _forwarding(config: dict[str, Any], service: dict[str, Any]) -> object:
    """`service` merged into lvs:service, and in dr or tun each web node's external address."""
    config["lvs:service"].update(service)
    for index, web in enumerate(config["lvs:webServers"]):
        web["externalIp"] = f"12.0.0.{50 + 10 * index}"
    return config


DIRECTORS = [(variant, index) for variant in sorted(VARIANTS) for index in ((0,) if variant.startswith("one director") else (0, 1))]


@pytest.mark.parametrize(("variant", "index"), DIRECTORS)
def test_keepalived_accepts_what_each_director_gets(tmp_path: Path, director_interfaces: str, variant: str, index: int) -> None:
    config = ha_config()
    VARIANTS[variant](config)
    settings = settings_of(config)
    result = keepalived_test(settings, index, tmp_path, director_interfaces)
    assert result.returncode == 0, result.stdout + result.stderr  # 5, warnings only, fails the Command too


def test_keepalived_rejects_what_it_does_not_know(tmp_path: Path, director_interfaces: str) -> None:
    # The check above can fail: an unknown keyword in a real server's file is reported there.
    settings = settings_of(ha_config())
    keepalived_test(settings, 0, tmp_path, director_interfaces)
    web1 = tmp_path / "lvs-cluster" / "real-servers" / "web1.conf"
    web1.write_text(web1.read_text().replace("status_code", "status_codes"))
    result = subprocess.run(
        [str(KEEPALIVED), "-t", "-f", str(tmp_path / "keepalived.conf"), "-l"], capture_output=True, text=True, timeout=60
    )
    assert f"({web1}: Line 7) Unknown keyword 'status_codes'" in result.stdout + result.stderr


def test_the_longest_check_path_is_keepalived_s_own_limit(tmp_path: Path, director_interfaces: str) -> None:
    # The model's bound is tight: one character more, written past the model, fails `keepalived -t`.
    settings = settings_of(ha_config())
    assert settings.health_check is not None
    longer = dataclasses.replace(settings.health_check, path="/" + "x" * MAX_CHECK_PATH)
    result = keepalived_test(dataclasses.replace(settings, health_check=longer), 0, tmp_path, director_interfaces)
    assert result.returncode != 0, result.stdout + result.stderr


def _spread(seed: int) -> dict[str, Any]:
    """A valid HA stack drawn from the model's ranges, edges included (seeded: the same every run)."""
    chance = random.Random(seed)
    config = ha_config()
    config["lvs:service"].update(
        {
            "scheduler": chance.choice(SCHEDULERS),
            "persistence": chance.choice([0, 1, 300, MAX_PERSISTENCE]),
            "port": chance.choice([80, 1, 443, 8080, 65535]),
        }
    )
    for web in config["lvs:webServers"]:
        web["weight"] = chance.choice([1, 3, 65535])
    config["lvs:webServers"][chance.randrange(2)]["weight"] = chance.choice([0, 1])  # a drain, at most one
    if chance.random() < 0.8:
        kind = chance.choice(["http", "tcp"])
        check: dict[str, Any] = {
            "type": kind,
            "interval": chance.choice([1, 2, 10]),
            "timeout": chance.choice([1, 5]),
            "retries": chance.choice([0, 1, 3]),
        }
        if kind == "http":
            check["path"] = chance.choice(["/", "/health;v=1", "/a%20b/", "/" + "p" * (MAX_CHECK_PATH - 1), "/~u/@x:y=z&w+v,q"])
            check["status"] = chance.choice([200, 204, 301, 404, 599])
        config["lvs:healthCheck"] = check
    else:
        config.pop("lvs:healthCheck")
    if chance.random() < 0.3 and "lvs:healthCheck" in config:
        config["lvs:director"].pop("pair")
    else:
        config["lvs:director"]["vrrp"] = {
            "virtualRouterId": chance.choice([1, 51, MAX_VIRTUAL_ROUTER_ID]),
            "advertInterval": chance.choice([1, 3, 0.1, 0.5, 16]),
            "preempt": chance.random() < 0.5,
        }
    return config


@pytest.mark.parametrize("seed", range(24))
def test_keepalived_accepts_every_director_of_a_spread_of_valid_stacks(tmp_path: Path, director_interfaces: str, seed: int) -> None:
    settings = settings_of(_spread(seed))
    for index in range(len(settings.directors)):
        result = keepalived_test(settings, index, tmp_path / str(index), director_interfaces)
        assert result.returncode == 0, (seed, index, result.stdout + result.stderr)


def test_keepalived_accepts_the_repository_s_second_ha_stack(tmp_path: Path, director_interfaces: str) -> None:
    config = stack_config(PROJECT_DIR / "tests" / "Pulumi.ha-tcp.yaml")
    config.update({"lvs:sshPublicKey": TEST_PUBLIC_KEY, "lvs:sshPrivateKey": TEST_PRIVATE_KEY})
    settings = settings_of(config)
    for index in range(len(settings.directors)):
        result = keepalived_test(settings, index, tmp_path / str(index), director_interfaces)
        assert result.returncode == 0, result.stdout + result.stderr
