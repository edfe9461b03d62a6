"""The two networks (`lvs:networks`): ordinary unicast subnets only."""

from __future__ import annotations

from ipaddress import IPv4Network
from typing import Any

import pytest

from components.config import ConfigError
from tests.config_helpers import Change, _cases, _fails, _set, _settings_with

SPECIAL_NETWORKS = [
    ("internal", "127.0.0.0/24", "loopback"),
    ("internal", "127.1.2.0/29", "loopback"),
    ("internal", "126.0.0.0/7", "loopback"),
    ("external", "0.0.0.0/24", "'this network'"),
    ("external", "0.1.0.0/16", "'this network'"),
    ("internal", "169.254.0.0/24", "link-local"),
    ("external", "169.254.10.0/29", "link-local"),
    ("external", "224.0.0.0/24", "multicast"),
    ("internal", "239.1.1.0/24", "multicast"),
    ("external", "240.0.0.0/24", "reserved"),
    ("external", "255.255.255.0/24", "reserved"),
    ("external", "224.0.0.0/3", "multicast"),
]

NETWORKS = [
    (_set(f"networks.{role}.cidr", cidr), f"lvs:networks.{role}.cidr", f"{cidr!r} is {what}") for role, cidr, what in SPECIAL_NETWORKS
]


@_cases(NETWORKS)
def test_networks_that_are_not_ordinary_unicast_subnets_are_refused(config_with: Any, change: Change, key: str, value: str) -> None:
    message = _fails(config_with(change), key, value)
    assert "not an ordinary unicast subnet" in message


@pytest.mark.parametrize(
    "cidr",
    [
        "0.0.0.0/24", "127.0.0.0/24", "169.254.1.0/24", "224.0.0.0/24", "239.255.255.0/24", "240.0.0.0/24", "250.1.0.0/16",
        "255.255.255.0/29", "10.0.0.0/24", "12.0.0.0/24", "100.64.0.0/24", "172.31.5.0/28", "192.0.2.0/24", "198.18.0.0/24",
        "1.0.0.0/24", "223.255.255.0/24",
    ],
)  # fmt: skip
def test_refused_exactly_where_ipaddress_says_special(cidr: str) -> None:
    """The rule is ipaddress's own classification (and 0.0.0.0/8); documentation, CGNAT and
    benchmarking ranges are ordinary subnets for a lab."""
    network = IPv4Network(cidr)
    special = (
        network.is_loopback
        or network.is_multicast
        or network.is_link_local
        or network.is_reserved
        or network.is_unspecified
        or network.overlaps(IPv4Network("0.0.0.0/8"))
    )
    first = network.network_address + 1

    def change(config: dict[str, Any]) -> None:
        config["lvs:networks"]["external"]["cidr"] = cidr
        config["lvs:director"]["externalIp"] = str(first)
        config["lvs:client"]["ip"] = str(first + 1)

    if special:
        with pytest.raises(ConfigError, match="not an ordinary unicast subnet"):
            _settings_with(change)
    else:
        assert _settings_with(change).external.cidr == network
