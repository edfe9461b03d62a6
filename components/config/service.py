"""The virtual service: the port, the scheduler, persistence and the forwarding method, within
what ipvsadm takes and the nodes leave free."""

from __future__ import annotations

from .model import ConfigError, ServiceSettings
from .reader import _choice, _Section, _shown

# Every scheduler ipvsadm(8) knows.
SCHEDULERS = ("rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf", "mh")
# LVS forwarding methods; only NAT is built so far.
KNOWN_MODES = ("nat", "dr", "tun")
SUPPORTED_MODES = ("nat",)
# Ports the nodes use themselves: the web nodes would have to serve the service on them.
_PORTS_IN_USE = {
    22: "SSH on every node, where the Commands log in",
    111: "rpcbind on the NFS server and the web nodes",
    2049: "NFS on the internal network",
}
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
    service_section.reject_unknown()
    if service.port in _PORTS_IN_USE:
        raise ConfigError(
            f"lvs:service.port: {service.port} is used by the nodes themselves ({_PORTS_IN_USE[service.port]}); "
            "the web nodes listen on the service port too: choose another"
        )
    if service.mode not in SUPPORTED_MODES:
        raise ConfigError(f"lvs:service.mode: {_shown(service.mode)} is not yet supported (supported: {', '.join(SUPPORTED_MODES)})")
    return service
