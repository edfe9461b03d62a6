"""A web node: Apache serving an NFS export, default route via the director. Where it answers
clients itself (dr, tun: components/forwarding.py) it also has a NIC on the external network,
the real-server sysctls and firewall openings from cloud-init, and the VIP from a Command."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Optional

import pulumi
from pulumi_command import remote

from . import remote as remote_access
from .config import EXTERNAL_NIC, INTERNAL_NIC, ClusterSettings, WebServerSettings
from .forwarding import forwarding_for
from .image import BaseImage
from .network import ClusterNetwork
from .real_server import vip_create_script, vip_delete_script
from .remote import script_options
from .vm import node_vm, static_nic

# How long a booting web node keeps retrying its NFS mount before cloud-init reports error.
NFS_WAIT_SECONDS = 900


class WebNode(pulumi.ComponentResource):
    # What the director's real server of this node waits for: the node booted, and where it
    # answers for the VIP itself, the VIP on it.
    serving: pulumi.Resource

    def __init__(
        self,
        settings: ClusterSettings,
        web: WebServerSettings,
        *,
        base_image: BaseImage,
        networks: Mapping[str, ClusterNetwork],
        opts: Optional[pulumi.ResourceOptions] = None,
    ) -> None:
        super().__init__("lvs:node:WebNode", web.name, None, opts)
        self.settings = web
        forwarding = forwarding_for(settings.service)
        side = forwarding.real_server
        # NAT: replies must return through the director to be translated back; the gateway stays
        # the director in dr and tun too, for what is not a reply to a client.
        nics = [static_nic(settings.internal, INTERNAL_NIC, web.ip, gateway=settings.director.internal_ip)]
        context: dict[str, object] = {
            "nfs_ip": settings.nfs.ip,
            "export": web.export,
            "port": settings.service.port,
            "internal_cidr": settings.internal.cidr,
            "nfs_wait_seconds": str(NFS_WAIT_SECONDS),
        }
        overlays: list[str] = []
        directors = {str(peer.internal_ip) for peer in settings.directors} | {str(settings.director.internal_ip)}
        if side is not None:
            assert web.external_ip is not None, "the config requires externalIp in dr and tun"
            # The reply path that bypasses the director: the client's network, on-link.
            nics.append(static_nic(settings.external, EXTERNAL_NIC, web.external_ip))
            overlays.append("real-server.yaml")
            context |= {
                "sysctls": [f"{key} = {value}" for key, value in side.sysctls],
                "modules": list(side.modules),
                # Each director's own address and, with a pair, the floating one: the tunnel's
                # packets leave from whichever the director's routing picks.
                "accept_from_directors": [f"ip saddr {{ {', '.join(sorted(directors))} }} {rule}" for rule in side.accept],
                "mss": side.mss,
                "external_nic": EXTERNAL_NIC,
            }
        self.vm = node_vm(
            self,
            settings,
            hostname=web.name,
            size=web.size,
            nics=nics,
            template="web-node.yaml",
            overlays=overlays,
            context=context,
            base_image=base_image,
            networks=networks,
        )
        self.serving = self.vm.ready
        if side is not None:
            self.vip = remote.Command(
                f"{web.name}-vip",
                connection=remote_access.connection(settings, web.ip),
                create=vip_create_script(settings.vip, side, settings.service.tunnel),
                delete=vip_delete_script(settings.vip, side, settings.service.tunnel),
                # Another VIP, device or tunnel port is another address: the old one goes first;
                # a new domain (a rebuilt disk) has no VIP until this runs again.
                triggers=[str(settings.vip), side.vip_device, _tunnel_key(settings), self.vm.domain.id],
                opts=script_options(self, [self.vm.ready]),
            )
            self.serving = self.vip
        self.register_outputs({"ip": str(web.ip), "export": str(web.export), "weight": web.weight})


def _tunnel_key(settings: ClusterSettings) -> str:
    tunnel = settings.service.tunnel
    if tunnel is None:
        return ""
    return tunnel.type if tunnel.port is None else f"{tunnel.type}:{tunnel.port}"
