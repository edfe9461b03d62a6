"""The two libvirt networks: ordinary unicast subnets that do not overlap, each with its own
name and bridge, and the addresses that may be used in them."""

from __future__ import annotations

import re
from ipaddress import IPv4Address, IPv4Network

from .model import ConfigError, NetworkSettings
from .names import _LIBVIRT_NAME, _unique
from .reader import _Section, _shown

# Linux interface names (net/core/dev.c dev_valid_name: < IFNAMSIZ 16, not "." or "..", no
# '/', ':' or whitespace), narrowed to a portable alphabet.
_BRIDGE_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")
# Networks that are not ordinary unicast subnets (the ranges behind ipaddress's is_unspecified,
# is_loopback, is_link_local, is_multicast and is_reserved, and 0.0.0.0/8), checked by overlap
# so a supernet such as 126.0.0.0/7 is caught too.
_SPECIAL_NETWORKS = (
    (IPv4Network("0.0.0.0/8"), "'this network' (0.0.0.0/8)"),
    (IPv4Network("127.0.0.0/8"), "loopback (127.0.0.0/8)"),
    (IPv4Network("169.254.0.0/16"), "link-local (169.254.0.0/16)"),
    (IPv4Network("224.0.0.0/4"), "multicast (224.0.0.0/4)"),
    (IPv4Network("240.0.0.0/4"), "reserved (240.0.0.0/4, with the limited broadcast 255.255.255.255)"),
)


def _networks(top: _Section) -> tuple[NetworkSettings, NetworkSettings]:
    """`lvs:networks`: the internal network and the external one, apart."""
    networks = top.section("networks")
    internal = _network(networks.section("internal"), "internal")
    external = _network(networks.section("external"), "external")
    networks.reject_unknown()
    if internal.cidr.overlaps(external.cidr):
        raise ConfigError(f"lvs:networks.external.cidr: {external.cidr} overlaps lvs:networks.internal.cidr {internal.cidr}")
    _unique([("lvs:networks.internal.name", internal.name), ("lvs:networks.external.name", external.name)], "name")
    if internal.bridge is not None and internal.bridge == external.bridge:
        raise ConfigError(
            f"lvs:networks.external.bridge: {_shown(external.bridge)} is already the bridge of lvs:networks.internal "
            "(one bridge per network: the two would be one segment, and the director's NAT bypassed)"
        )
    return internal, external


def _network(section: _Section, role: str) -> NetworkSettings:
    name = section.string("name")
    if not _LIBVIRT_NAME.fullmatch(name):
        raise ConfigError(f"{section.path('name')}: {_shown(name)} is not a usable libvirt network name")
    raw_cidr = section.string("cidr")
    try:
        cidr = IPv4Network(raw_cidr.strip(), strict=True)
    except ValueError as error:
        raise ConfigError(f"{section.path('cidr')}: {_shown(raw_cidr)} is not an IPv4 network in CIDR form ({error})") from None
    if cidr.prefixlen > 29:
        raise ConfigError(f"{section.path('cidr')}: {_shown(raw_cidr)} is too small for a cluster network (at most /29)")
    for special, what in _SPECIAL_NETWORKS:
        if cidr.overlaps(special):
            raise ConfigError(f"{section.path('cidr')}: {_shown(raw_cidr)} is {what}, not an ordinary unicast subnet")
    # The host side defaults to the last usable address so libvirt's usual `.1` stays free:
    # the seed's VIP is 12.0.0.1.
    host_ip = section.address("hostIp", cidr.broadcast_address - 1)
    _require_usable(section.path("hostIp"), host_ip, cidr)
    bridge = section.string("bridge", None)
    # Linux refuses "." and ".."; "all" and "default" are its sysctl directories (net.ipv4.conf).
    if bridge is not None and (not _BRIDGE_NAME.fullmatch(bridge) or bridge in (".", "..", "lo", "all", "default")):
        raise ConfigError(
            f"{section.path('bridge')}: {_shown(bridge)} is not a usable bridge name "
            "(1 to 15 of letters, digits, '_', '.' and '-'; not '.', '..', 'lo', 'all' or 'default')"
        )
    section.reject_unknown()
    return NetworkSettings(role=role, name=name, cidr=cidr, host_ip=host_ip, bridge=bridge)


def _require_usable(key: str, address: IPv4Address, network: IPv4Network) -> None:
    if address not in network:
        raise ConfigError(f"{key}: {address} is outside its network {network}")
    if address in (network.network_address, network.broadcast_address):
        raise ConfigError(f"{key}: {address} is the network or broadcast address of {network}")
