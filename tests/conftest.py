"""Shared fixtures: the seed stack, a second stack that differs in every way that matters,
and the plans the program registers for them under the mock engine."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from lab.host import tools
from lab.stack.plan import Plan, record_plan, stack_config

PROJECT_DIR = Path(__file__).resolve().parent.parent
# A real ed25519 pair made for this test session (the program checks that the private key
# matches the public one); the stack files' own public keys are replaced by its public half.
_TEST_KEY = Ed25519PrivateKey.generate()
TEST_PUBLIC_KEY = (
    _TEST_KEY.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode() + " lvs-cluster-tests"
)
TEST_PRIVATE_KEY = _TEST_KEY.private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
).decode()
COMMAND = "command:remote:Command"
DOMAIN = "libvirt:index/domain:Domain"
NETWORK = "libvirt:index/network:Network"
POOL = "libvirt:index/pool:Pool"
VOLUME = "libvirt:index/volume:Volume"
CLOUD_INIT_DISK = "libvirt:index/cloudInitDisk:CloudInitDisk"


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Any:
    # A program the test (or the lab code it calls) runs is missing: one line naming it and the
    # Debian package that brings it (scripts/setup installs them all), not a traceback.
    try:
        return (yield)
    except tools.MissingToolError as missing:
        message = str(missing)
    pytest.fail(message, pytrace=False)


def seed_config() -> dict[str, Any]:
    config = stack_config(PROJECT_DIR / "Pulumi.seed.yaml")
    config["lvs:sshPublicKey"] = TEST_PUBLIC_KEY
    config["lvs:sshPrivateKey"] = TEST_PRIVATE_KEY
    return config


def second_config() -> dict[str, Any]:
    """Other subnets, three web nodes, wrr with unequal weights, another port, no client."""
    config = stack_config(PROJECT_DIR / "tests" / "Pulumi.wrr3.yaml")
    config["lvs:sshPublicKey"] = TEST_PUBLIC_KEY
    config["lvs:sshPrivateKey"] = TEST_PRIVATE_KEY
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
