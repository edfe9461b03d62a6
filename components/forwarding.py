"""How the director forwards a client's packets to a real server: one strategy per LVS mode,
over the one model of the service and its real servers (`ServiceSettings`, `WebServerSettings`).
Both owners of the IPVS table (ipvsadm's Commands, keepalived's files) ask it the same
questions: which flag or keyword names the method, and which address of a web node is its real
server.

- `Masquerading` (nat): the director rewrites the destination and the replies come back through
  it (the web nodes' gateway); the real server is the web node's internal address.
- `DirectRouting` (dr): the director hands the frame, unchanged, to the real server's MAC on the
  external network, where the web node holds the VIP on `lo` and answers the client itself; the
  real server is the web node's external address (the same segment as the director's VIP).
- `Tunnelling` (tun): the director wraps the packet (IPIP, GUE or GRE) to the web node's internal
  address, where `tunl0` holds the VIP; the web node answers from its external NIC.
"""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import Protocol

from .config import ServiceSettings, TunnelSettings, WebServerSettings


class Forwarding(Protocol):
    @property
    def description(self) -> str:
        """How a script's comment names the method."""
        ...

    @property
    def ipvsadm_method(self) -> str:
        """ipvsadm's real-server flag(s) for the method."""
        ...

    @property
    def keepalived_method(self) -> str:
        """The virtual_server line that names the method."""
        ...

    def real_ip(self, web: WebServerSettings) -> IPv4Address:
        """The address the director forwards to: the real server in IPVS's table."""
        ...

    @property
    def real_server(self) -> RealServerSide | None:
        """What a web node does itself to answer for the VIP; None where the director answers."""
        ...


@dataclass(frozen=True)
class RealServerSide:
    """A web node that answers for the VIP itself (dr, tun). What never changes is cloud-init's
    (the sysctls, before any VIP is up; the modules; the firewall's openings and the MSS); the
    VIP on `vip_device` is a Command (components/real_server.py), so a VIP change touches no VM."""

    vip_device: str  # lo (dr) or tunl0 (tun)
    devices_up: tuple[str, ...] = ()  # the tunnel devices that must be up to receive (tun)
    # ARP: answer only for addresses of the NIC asked, announce only the best local source, so
    # the VIP on lo or tunl0 is never answered for (the director's is); `all` wins over each
    # interface (the kernel takes the larger value), so it holds for NICs renamed later too.
    sysctls: tuple[tuple[str, str], ...] = (("net.ipv4.conf.all.arp_ignore", "1"), ("net.ipv4.conf.all.arp_announce", "2"))
    modules: tuple[str, ...] = ()
    accept: tuple[str, ...] = ()  # nftables input rules the method needs (the tunnel's packets)
    mss: int | None = None  # the TCP MSS the node advertises to clients, if the path is narrower


@dataclass(frozen=True)
class Masquerading:
    description: str = "masquerading (NAT)"
    ipvsadm_method: str = "-m"
    # The keyword the NAT stacks have always been written with (lvs_method's older name).
    keepalived_method: str = "lb_kind NAT"
    real_server: RealServerSide | None = None

    def real_ip(self, web: WebServerSettings) -> IPv4Address:
        return web.ip


@dataclass(frozen=True)
class DirectRouting:
    description: str = "direct routing (DR)"
    ipvsadm_method: str = "-g"
    keepalived_method: str = "lvs_method DR"
    real_server: RealServerSide | None = RealServerSide(
        vip_device="lo",
        sysctls=(
            *RealServerSide.sysctls,
            # One director has no address on the segment but the VIP, so its ARP requests for a
            # web node come from the VIP, which the node holds on lo: without accept_local it
            # drops them as martians and the director never learns its MAC. accept_local needs
            # a loose (or no) reverse-path check to act; `all` wins over a stricter interface.
            ("net.ipv4.conf.all.accept_local", "1"),
            ("net.ipv4.conf.all.rp_filter", "2"),
        ),
    )

    def real_ip(self, web: WebServerSettings) -> IPv4Address:
        assert web.external_ip is not None, "the config requires externalIp in dr"
        return web.external_ip


@dataclass(frozen=True)
class Tunnelling:
    tunnel: TunnelSettings

    @property
    def description(self) -> str:
        return f"IP tunnelling (TUN, {self.tunnel.type})"

    @property
    def real_server(self) -> RealServerSide:
        kind, port = self.tunnel.type, self.tunnel.port
        return RealServerSide(
            vip_device=TUNNEL_DEVICE,
            devices_up=TUNNEL_DEVICES[kind],
            sysctls=(
                *RealServerSide.sysctls,
                # A decapsulated packet arrives on the tunnel device, its reply leaves by the
                # external NIC: strict reverse-path filtering would drop it.
                ("net.ipv4.conf.all.rp_filter", "0"),
                ("net.ipv4.conf.default.rp_filter", "0"),
                *((f"net.ipv4.conf.{device}.rp_filter", "0") for device in TUNNEL_DEVICES[kind]),
            ),
            modules=TUNNEL_MODULES[kind],
            accept=(f"udp dport {port} accept",) if kind == "gue" else (f"meta l4proto {TUNNEL_PROTOCOLS[kind]} accept",),
            # The client's segments reach the node inside the tunnel, which costs its headers
            # on the director's 1500-byte internal link: advertise what still fits.
            mss=1460 - TUNNEL_OVERHEAD[kind],
        )

    @property
    def ipvsadm_method(self) -> str:
        port = f" --tun-port {self.tunnel.port}" if self.tunnel.port is not None else ""
        return f"-i --tun-type {self.tunnel.type}{port}"

    @property
    def keepalived_method(self) -> str:
        port = f" port {self.tunnel.port}" if self.tunnel.port is not None else ""
        return f"lvs_method TUN type {self.tunnel.type}{port}"

    def real_ip(self, web: WebServerSettings) -> IPv4Address:
        # The tunnel needs only IP reachability: it rides the internal network, as NFS does.
        return web.ip


# `modprobe ipip` creates tunl0, which decapsulates ipip, and gue once fou listens (the
# Command adds the port); ip_gre's fallback device gre0 decapsulates gre, but only once it is up
# (ip_tunnel_lookup skips a fallback that is down). The VIP is on tunl0 in each case.
TUNNEL_DEVICE = "tunl0"
TUNNEL_MODULES = {"ipip": ("ipip",), "gue": ("ipip", "fou"), "gre": ("ipip", "ip_gre")}
TUNNEL_DEVICES = {"ipip": (TUNNEL_DEVICE,), "gue": (TUNNEL_DEVICE,), "gre": (TUNNEL_DEVICE, "gre0")}
TUNNEL_OVERHEAD = {"ipip": 20, "gre": 24, "gue": 32}  # outer IP (+ UDP and GUE, + GRE)
# By number: /etc/protocols calls 94 "ipip" (another protocol); Linux's IP-in-IP is 4 ("ipencap").
TUNNEL_PROTOCOLS = {"ipip": 4, "gre": 47}


def forwarding_for(service: ServiceSettings) -> Forwarding:
    if service.mode == "dr":
        return DirectRouting()
    if service.mode == "tun":
        assert service.tunnel is not None, "the config sets the tunnel in tun"
        return Tunnelling(service.tunnel)
    return Masquerading()
