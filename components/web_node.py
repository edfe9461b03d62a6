"""A web node: Apache serving an NFS export, default route via the director (LVS-NAT)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Optional

import pulumi

from .config import INTERNAL_NIC, ClusterSettings, WebServerSettings
from .image import BaseImage
from .network import ClusterNetwork
from .vm import node_vm, static_nic

# How long a booting web node keeps retrying its NFS mount before cloud-init reports error.
NFS_WAIT_SECONDS = 900


class WebNode(pulumi.ComponentResource):
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
        self.vm = node_vm(
            self,
            settings,
            hostname=web.name,
            size=web.size,
            # NAT mode: replies must return through the director to be translated back.
            nics=[static_nic(settings.internal, INTERNAL_NIC, web.ip, gateway=settings.director.internal_ip)],
            template="web-node.yaml",
            context={
                "nfs_ip": settings.nfs.ip,
                "export": web.export,
                "port": settings.service.port,
                "internal_cidr": settings.internal.cidr,
                "nfs_wait_seconds": str(NFS_WAIT_SECONDS),
            },
            base_image=base_image,
            networks=networks,
        )
        self.register_outputs({"ip": str(web.ip), "export": str(web.export), "weight": web.weight})
