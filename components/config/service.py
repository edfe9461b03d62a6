"""The virtual service: the port, the scheduler, persistence and the forwarding method, within
what ipvsadm takes and the nodes leave free."""

from __future__ import annotations

import dataclasses

from .model import ConfigError, ServiceSettings, TunnelSettings
from .reader import _choice, _Section, _shown

# Every scheduler ipvsadm(8) knows.
SCHEDULERS = ("rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf", "mh")
# LVS forwarding methods (components/forwarding.py): masquerading, direct routing, IP tunnelling.
KNOWN_MODES = ("nat", "dr", "tun")
# The encapsulations ipvsadm (--tun-type) and keepalived (lvs_method TUN type) know; ipip is
# both tools' default and the one to prefer (gue lost packets under IPVS before a 2023 fix).
TUNNEL_TYPES = ("ipip", "gue", "gre")
# Ports the nodes use themselves: the web nodes would have to serve the service on them.
_PORTS_IN_USE = {
    22: "SSH on every node, where the Commands log in",
    111: "rpcbind on the NFS server and the web nodes",
    2049: "NFS on the internal network",
}
# UDP ports a gue tunnel's receiving end (on every web node) must leave alone.
_UDP_PORTS_IN_USE = {111: "rpcbind, for the NFS mount", 2049: "NFS"}
# ipvsadm.c: MAX_TIMEOUT (86400*31), the largest -p it takes.
MAX_PERSISTENCE = 86400 * 31


def _service(top: _Section) -> ServiceSettings:
    """`lvs:service`, every key with a default."""
    service_section = top.section("service", {})
    service = ServiceSettings(
        port=service_section.integer("port", 80, lo=1, hi=65535),
        scheduler=_choice(service_section, "scheduler", "rr", SCHEDULERS),
        persistence=service_section.integer("persistence", 0, lo=0, hi=MAX_PERSISTENCE),
        mode=_choice(service_section, "mode", "nat", KNOWN_MODES),
    )
    if "tunnel" in service_section.raw and service.mode != "tun":
        raise ConfigError(
            f"lvs:service.tunnel: only with lvs:service.mode tun (the mode is {_shown(service.mode)}); "
            "remove the key or set the mode to tun"
        )
    if service.mode == "tun":
        service = dataclasses.replace(service, tunnel=_tunnel(service_section))
    service_section.reject_unknown()
    if service.port in _PORTS_IN_USE:
        raise ConfigError(
            f"lvs:service.port: {service.port} is used by the nodes themselves ({_PORTS_IN_USE[service.port]}); "
            "the web nodes listen on the service port too: choose another"
        )
    return service


def _tunnel(service_section: _Section) -> TunnelSettings:
    """`lvs:service.tunnel`: the type, default ipip; a port with gue, and only there."""
    section = service_section.section("tunnel", {})
    kind = _choice(section, "type", "ipip", TUNNEL_TYPES)
    if kind == "gue":
        if "port" not in section.raw:
            raise ConfigError("lvs:service.tunnel.port: missing (a gue tunnel needs its UDP port, 1..65535)")
        port = section.integer("port", lo=1, hi=65535)
        if port in _UDP_PORTS_IN_USE:
            raise ConfigError(
                f"lvs:service.tunnel.port: {port} is used by the web nodes themselves ({_UDP_PORTS_IN_USE[port]}); choose another"
            )
    elif "port" in section.raw:
        raise ConfigError(f"lvs:service.tunnel.port: only with type gue (the type is {_shown(kind)}); remove the key")
    else:
        port = None
    section.reject_unknown()
    return TunnelSettings(kind, port)
