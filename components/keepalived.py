"""keepalived's configuration for the director(s): the second way to own the IPVS table,
beside the ipvsadm renderer (`ipvs.py`), from the same model of the service and its real
servers (`ServiceSettings`, `Backend`).

The text is split the way the Commands that write it are, so a change touches one resource:
the main file per director (global_defs, the VRRP sync group of a pair, an include of the
rest), the virtual service, and one file per real server, each checked with `keepalived -t`
before a reload. Rendered with Jinja2 from `templates/`; every value in it was validated by
the config model (addresses, hostnames, numbers, a URL path of a plain alphabet).
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import jinja2

from .config import EXTERNAL_NIC, INTERNAL_NIC, DirectorSettings, HealthCheckSettings, ServiceSettings

CONFIG_DIR = "/etc/keepalived/lvs-cluster"
MAIN_FILE = "/etc/keepalived/keepalived.conf"
PREFERRED_PRIORITY = 150
STANDBY_PRIORITY = 100

_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).with_name("templates")),
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
    autoescape=False,  # not HTML: a keepalived.conf of validated values
)


@dataclass(frozen=True)
class Backend:
    """A real server as both renderers see it."""

    name: str
    ip: IPv4Address
    weight: int


@dataclass(frozen=True)
class _Instance:
    name: str
    nic: str
    router_id: int
    own_ip: IPv4Address
    peer_ip: IPv4Address
    floating: str  # address/prefix


def main_conf(director: DirectorSettings, index: int, *, internal: IPv4Network, external: IPv4Network, config_dir: str = CONFIG_DIR) -> str:
    """/etc/keepalived/keepalived.conf of director `index` (0 for a single director)."""
    if director.pair is None:
        return _ENV.get_template("keepalived-main.conf.j2").render(name=director.name, pair=False, config_dir=config_dir)
    assert director.vrrp is not None
    me, peer = director.pair[index], director.pair[1 - index]
    vrrp = director.vrrp
    instances = [
        _Instance(
            "VI_EXTERNAL",
            EXTERNAL_NIC,
            vrrp.virtual_router_id,
            me.external_ip,
            peer.external_ip,
            f"{director.external_ip}/{external.prefixlen}",
        ),
        _Instance(
            "VI_INTERNAL",
            INTERNAL_NIC,
            vrrp.virtual_router_id + 1,
            me.internal_ip,
            peer.internal_ip,
            f"{director.internal_ip}/{internal.prefixlen}",
        ),
    ]
    # nopreempt works only when both start as BACKUP (keepalived.conf(5)).
    state = "MASTER" if index == 0 and vrrp.preempt else "BACKUP"
    return _ENV.get_template("keepalived-main.conf.j2").render(
        name=me.name,
        pair=True,
        vrrp=vrrp,
        internal_nic=INTERNAL_NIC,
        instances=instances,
        state=state,
        priority=PREFERRED_PRIORITY if index == 0 else STANDBY_PRIORITY,
        config_dir=config_dir,
    )


def virtual_server_conf(
    service: ServiceSettings, vip: IPv4Address, check: HealthCheckSettings | None, *, config_dir: str = CONFIG_DIR
) -> str:
    return _ENV.get_template("keepalived-virtual-server.conf.j2").render(service=service, vip=vip, check=check, config_dir=config_dir)


def real_server_conf(service: ServiceSettings, vip: IPv4Address, backend: Backend, check: HealthCheckSettings | None) -> str:
    return _ENV.get_template("keepalived-real-server.conf.j2").render(service=service, vip=vip, backend=backend, check=check)
