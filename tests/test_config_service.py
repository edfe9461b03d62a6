"""The virtual service (`lvs:service`) and the real servers' weights: every ipvsadm scheduler,
the ports and numbers the tools take, and weights keepalived would refuse."""

from __future__ import annotations

from typing import Any

import pulumi
import pytest

from components.config import MAX_PERSISTENCE
from lab.stack.plan import record_plan
from tests.config_helpers import Change, _cases, _fails, _set, ha_config
from tests.conftest import seed_config


def test_every_ipvsadm_scheduler_is_accepted(config_with: Any) -> None:
    for scheduler in ("rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf", "mh"):
        plan = record_plan(config_with(_set("service.scheduler", scheduler)), stack="seed")
        assert f"-s {scheduler}" in plan.named("ipvs-virtual-service").inputs["create"]


# --- Ports and limits the real tools enforce ---------------------------------------------------


LIMITS = [
    *[(_set("service.port", port), "lvs:service.port", f"{int(port)} is used by the nodes") for port in (22, "22", 111, 2049)],
    *[
        (_set("service.persistence", value), "lvs:service.persistence", f"{value} is out of range 0..{MAX_PERSISTENCE}")
        for value in (MAX_PERSISTENCE + 1, 31 * 86400 + 60, 10**9, 2**31 - 1)
    ],
    (_set("director.vcpus", 256), "lvs:director.vcpus", "256 is out of range 1..255"),
    (_set("webServers[0].vcpus", 1000), "lvs:webServers[0].vcpus", "1000 is out of range 1..255"),
    (_set("nfs.vcpus", 0), "lvs:nfs.vcpus", "0 is out of range 1..255"),
    (_set("client.memory", 64), "lvs:client.memory", "64 is out of range 128.."),
]


@_cases(LIMITS)
def test_numbers_the_tools_would_refuse_are_refused(config_with: Any, change: Change, key: str, value: str) -> None:
    _fails(config_with(change), key, value)


def test_the_longest_persistence_ipvsadm_takes_is_accepted(config_with: Any) -> None:
    plan = record_plan(config_with(_set("service.persistence", MAX_PERSISTENCE)), stack="seed")
    assert f"-p {MAX_PERSISTENCE}" in plan.named("ipvs-virtual-service").inputs["create"]


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
