"""The repository's stacks read into the model, with the defaults where a stack implies one
and no warning."""

from __future__ import annotations

from pathlib import PurePosixPath

import pulumi
import pytest

from components.config import PoolSettings, mac_address, parse_settings
from lab.stack.plan import record_plan, stack_config
from tests.config_helpers import ha_config, settings_of
from tests.conftest import PROJECT_DIR, TEST_PRIVATE_KEY, TEST_PUBLIC_KEY, second_config, seed_config


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


def test_mac_addresses_are_stable_and_locally_administered() -> None:
    from ipaddress import IPv4Address

    mac = mac_address(IPv4Address("192.168.75.50"))
    assert mac == "52:54:c0:a8:4b:32"
    first_octet = int(mac.split(":")[0], 16)
    assert first_octet & 0b10 and not first_octet & 0b1


def test_the_valid_stacks_warn_about_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    warned: list[str] = []
    monkeypatch.setattr(pulumi.log, "warn", lambda message, *args, **kwargs: warned.append(message))
    record_plan(seed_config(), stack="seed")
    record_plan(second_config(), stack="wrr3")
    assert warned == []


def test_the_repository_s_stacks_warn_about_nothing() -> None:
    ha_tcp = stack_config(PROJECT_DIR / "tests" / "Pulumi.ha-tcp.yaml")
    ha_tcp.update({"lvs:sshPublicKey": TEST_PUBLIC_KEY, "lvs:sshPrivateKey": TEST_PRIVATE_KEY})
    assert settings_of(ha_config()).warnings == settings_of(ha_tcp).warnings == ()
