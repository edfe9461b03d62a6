"""The model: frozen dataclasses every component receives pieces of, and the one error.

Nothing here reads or checks raw configuration; :mod:`.parse` builds these from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from ipaddress import IPv4Address, IPv4Network
from pathlib import PurePosixPath
from typing import Any

import pulumi

NAMESPACE = "lvs"

# Interface names the guests give their NICs (matched by MAC), used by the SNAT rule.
INTERNAL_NIC = "int0"
EXTERNAL_NIC = "ext0"


class ConfigError(pulumi.RunError):
    """Bad stack configuration. Pulumi prints the message alone, without a stack trace."""


@dataclass(frozen=True)
class MachineSize:
    memory_mib: int
    vcpus: int


# Defaults per role: the web tier and the director are light under NAT at lab scale.
DEFAULT_SIZES = {
    "director": MachineSize(memory_mib=512, vcpus=1),
    "nfs": MachineSize(memory_mib=512, vcpus=1),
    "web": MachineSize(memory_mib=512, vcpus=1),
    "client": MachineSize(memory_mib=384, vcpus=1),
}


@dataclass(frozen=True)
class PoolSettings:
    """The libvirt storage pool every volume lives in.

    ``path`` is None when ``name`` is an existing pool (``lvs:image.pool``); otherwise the stack
    creates a ``dir`` pool of that name in that directory (``lvs:image.poolPath``).
    """

    name: str
    path: PurePosixPath | None

    @property
    def created_by_stack(self) -> bool:
        return self.path is not None


@dataclass(frozen=True)
class ImageSettings:
    source: str
    pool: PoolSettings


@dataclass(frozen=True)
class NetworkSettings:
    role: str  # "internal" or "external"
    name: str
    cidr: IPv4Network
    host_ip: IPv4Address  # the libvirt host's own address on this network
    bridge: str | None


@dataclass(frozen=True)
class TunnelSettings:
    """How the director encapsulates in `tun` mode (`lvs:service.tunnel`)."""

    type: str  # ipip, gue or gre
    port: int | None = None  # the UDP port of a gue tunnel (gue only, and always)


@dataclass(frozen=True)
class ServiceSettings:
    port: int
    scheduler: str
    persistence: int  # seconds; 0 = no persistence
    mode: str  # nat, dr or tun (components/forwarding.py)
    protocol: str = "tcp"
    tunnel: TunnelSettings | None = None  # set exactly in tun mode


@dataclass(frozen=True)
class HealthCheckSettings:
    """How keepalived checks each real server (`lvs:healthCheck`)."""

    type: str  # http (HTTP_GET) or tcp (TCP_CHECK)
    port: int  # the real servers' port it connects to
    path: str  # http: the URL path requested
    status: int  # http: the status code that means alive
    interval: int  # seconds between checks (keepalived's delay_loop)
    timeout: int  # seconds a check may take (connect_timeout)
    retries: int  # failed checks before a real server is taken out (retry)


@dataclass(frozen=True)
class DirectorPeer:
    """One director of a pair: its own addresses beside the floating ones."""

    name: str
    internal_ip: IPv4Address
    external_ip: IPv4Address


@dataclass(frozen=True)
class VrrpSettings:
    """VRRP between the pair (`lvs:director.vrrp`): one sync group of two instances, the
    external (the VIP) with `virtual_router_id` and the internal (the web nodes' gateway) with
    the next id."""

    virtual_router_id: int
    advert_interval: Decimal  # seconds: whole for VRRPv2, hundredths below 40.96 for VRRPv3
    preempt: bool  # the first director takes the VIP back when it returns

    @property
    def version(self) -> int:
        """VRRPv2 carries whole seconds only; a fraction of a second needs VRRPv3."""
        return 2 if self.advert_interval == self.advert_interval.to_integral_value() else 3


@dataclass(frozen=True)
class DirectorSettings:
    name: str
    internal_ip: IPv4Address  # with a pair: the floating gateway address
    external_ip: IPv4Address  # with a pair: the floating VIP
    size: MachineSize
    pair: tuple[DirectorPeer, DirectorPeer] | None = None  # the first is preferred
    vrrp: VrrpSettings | None = None  # set exactly when `pair` is


@dataclass(frozen=True)
class NfsSettings:
    name: str
    ip: IPv4Address
    exports: tuple[PurePosixPath, ...]
    size: MachineSize


@dataclass(frozen=True)
class WebServerSettings:
    name: str
    ip: IPv4Address
    export: PurePosixPath
    weight: int
    size: MachineSize
    # dr and tun: the node's address on the external network, where its replies leave
    external_ip: IPv4Address | None = None


@dataclass(frozen=True)
class ClientSettings:
    name: str
    ip: IPv4Address
    size: MachineSize


@dataclass(frozen=True)
class ClusterSettings:
    stack: str
    image: ImageSettings
    ssh_public_key: str
    ssh_private_key: Any  # pulumi.Output[str], a secret
    admin_user: str
    domain_type: str
    internal: NetworkSettings
    external: NetworkSettings
    service: ServiceSettings
    director: DirectorSettings
    nfs: NfsSettings
    web_servers: tuple[WebServerSettings, ...]
    client: ClientSettings | None
    # The passphrase of an encrypted private key (pulumi.Output[str], a secret), or None.
    ssh_private_key_password: Any = None
    # Legal values that are probably a mistake: one line each, naming the key and the value.
    warnings: tuple[str, ...] = ()
    health_check: HealthCheckSettings | None = None

    @property
    def directors(self) -> tuple[DirectorPeer, ...]:
        """Every director VM: the pair, or the one director."""
        return self.director.pair or (DirectorPeer(self.director.name, self.director.internal_ip, self.director.external_ip),)

    @property
    def keepalived(self) -> bool:
        """keepalived owns the IPVS table (health checks, a pair, or both); else ipvsadm does."""
        return self.health_check is not None or self.director.pair is not None

    @property
    def vip(self) -> IPv4Address:
        # In NAT mode the virtual IP is the director's external address.
        return self.director.external_ip

    @property
    def vip_url(self) -> str:
        port = "" if self.service.port == 80 else f":{self.service.port}"
        return f"http://{self.vip}{port}/"

    def inventory(self) -> dict[str, dict[str, str]]:
        """Each node's role, libvirt domain and addresses, as the `nodes` stack output."""
        nodes = {
            **{
                director.name: {"role": "director", "internalIp": str(director.internal_ip), "externalIp": str(director.external_ip)}
                for director in self.directors
            },
            self.nfs.name: {"role": "nfs", "internalIp": str(self.nfs.ip)},
            **{web.name: {"role": "web", "internalIp": str(web.ip)} for web in self.web_servers},
        }
        if self.client:
            nodes[self.client.name] = {"role": "client", "externalIp": str(self.client.ip)}
        return {name: {**node, "domain": self.domain_name(name)} for name, node in nodes.items()}

    def domain_name(self, node_name: str) -> str:
        """libvirt names are unique per host: prefix the stack so environments can share one."""
        return f"{self.stack}-{node_name}"


def mac_address(address: IPv4Address) -> str:
    """A stable, locally administered MAC derived from the NIC's IPv4 address.

    Addresses are unique across the cluster, so MACs are too, and they survive a replace:
    the guest's network-config matches NICs by MAC.
    """
    return "52:54:" + ":".join(f"{octet:02x}" for octet in address.packed)
