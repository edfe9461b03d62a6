"""Shared fixtures: the seed stack, a second stack that differs in every way that matters,
and the plans the program registers for them under the mock engine."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from lab.plan import Plan, record_plan, stack_config

PROJECT_DIR = Path(__file__).resolve().parent.parent
FAKE_PRIVATE_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nnot-a-real-key\n-----END OPENSSH PRIVATE KEY-----\n"
COMMAND = "command:remote:Command"
DOMAIN = "libvirt:index/domain:Domain"
NETWORK = "libvirt:index/network:Network"
POOL = "libvirt:index/pool:Pool"
VOLUME = "libvirt:index/volume:Volume"
CLOUD_INIT_DISK = "libvirt:index/cloudInitDisk:CloudInitDisk"


def seed_config() -> dict[str, Any]:
    config = stack_config(PROJECT_DIR / "Pulumi.seed.yaml")
    config["lvs:sshPrivateKey"] = FAKE_PRIVATE_KEY
    return config


def second_config() -> dict[str, Any]:
    """Other subnets, three web nodes, wrr with unequal weights, another port, no client."""
    config = stack_config(PROJECT_DIR / "tests" / "Pulumi.wrr3.yaml")
    config["lvs:sshPrivateKey"] = FAKE_PRIVATE_KEY
    return config


@pytest.fixture(scope="session")
def seed_plan() -> Plan:
    return record_plan(seed_config(), stack="seed")


@pytest.fixture(scope="session")
def wrr_plan() -> Plan:
    return record_plan(second_config(), stack="wrr3")


@pytest.fixture(params=["seed", "wrr3"])
def any_plan(request: pytest.FixtureRequest, seed_plan: Plan, wrr_plan: Plan) -> Plan:
    return seed_plan if request.param == "seed" else wrr_plan


@pytest.fixture
def config_with() -> Callable[..., dict[str, Any]]:
    """A copy of the seed config with one key changed by a function."""

    def build(change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
        config = copy.deepcopy(seed_config())
        change(config)
        return config

    return build


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    # Say it out loud when the VM lab did not run, so a green fast run is not mistaken for it.
    deselected = [item for item in terminalreporter.stats.get("deselected", []) if item.get_closest_marker("lab")]
    if deselected:
        terminalreporter.write_line(
            f"{len(deselected)} lab tests (VMs) were deselected; run them with: .venv/bin/python -m pytest -m lab", yellow=True
        )
