"""The web node the lab's scale out adds: new in every address the stack gives out, with an
external address exactly in the modes that give web nodes one."""

from __future__ import annotations

import ipaddress

import pytest

from lab.scenario.scale import next_web_server, taken_addresses
from lab.scenario.state import StackState
from lab.stack.plan import stack_config
from tests.conftest import PROJECT_DIR, TEST_PRIVATE_KEY, TEST_PUBLIC_KEY


def planned(path: str) -> StackState:
    config = stack_config(PROJECT_DIR / path)
    config["lvs:sshPublicKey"], config["lvs:sshPrivateKey"] = TEST_PUBLIC_KEY, TEST_PRIVATE_KEY
    return StackState.planned(config, stack=path.rsplit(".", 2)[-2])


@pytest.mark.parametrize(
    ("path", "external"), [("Pulumi.seed.yaml", False), ("tests/Pulumi.dr.yaml", True), ("tests/Pulumi.tun.yaml", True)]
)
def test_the_added_web_node_is_new_and_plans(path: str, external: bool) -> None:
    state = planned(path)
    extra = next_web_server(state)
    assert extra["name"] not in {web.name for web in state.settings.web_servers}
    assert ipaddress.IPv4Address(extra["ip"]) in state.settings.internal.cidr
    assert ("externalIp" in extra) == external
    added = {ipaddress.IPv4Address(extra[key]) for key in ("ip", "externalIp") if key in extra}
    assert added.isdisjoint(taken_addresses(state))
    if external:
        assert ipaddress.IPv4Address(extra["externalIp"]) in state.settings.external.cidr
    grown = state.edited({**state.config, "lvs:webServers": [*state.config["lvs:webServers"], extra]})
    assert len(grown.settings.web_servers) == len(state.settings.web_servers) + 1


def test_every_address_a_stack_gives_out_is_taken() -> None:
    state = planned("tests/Pulumi.dr.yaml")
    taken = {str(address) for address in taken_addresses(state)}
    assert {"12.0.0.1", "12.0.0.2", "12.0.0.3", "192.168.75.30", "12.0.0.50", "12.0.0.60", "12.0.0.66", "192.168.75.70"} <= taken
