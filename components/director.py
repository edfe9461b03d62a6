"""A director: dual-NIC router holding the VIP (or, one of a pair, its own addresses beside the
floating ones), prepared for IPVS by cloud-init; keepalived installed where it owns the table."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Optional

import pulumi

from .config import EXTERNAL_NIC, INTERNAL_NIC, SCHEDULERS, ClusterSettings, DirectorPeer
from .image import BaseImage
from .network import ClusterNetwork
from .vm import node_vm, static_nic

IPVS_MODULES = ["ip_vs", *(f"ip_vs_{scheduler}" for scheduler in SCHEDULERS)]


class Director(pulumi.ComponentResource):
    def __init__(
        self,
        settings: ClusterSettings,
        *,
        base_image: BaseImage,
        networks: Mapping[str, ClusterNetwork],
        peer: DirectorPeer | None = None,
        opts: Optional[pulumi.ResourceOptions] = None,
    ) -> None:
        director = peer or DirectorPeer(settings.director.name, settings.director.internal_ip, settings.director.external_ip)
        super().__init__("lvs:node:Director", director.name, None, opts)
        self.vm = node_vm(
            self,
            settings,
            hostname=director.name,
            size=settings.director.size,
            # The first NIC is the one the Commands reach it on.
            nics=[
                static_nic(settings.internal, INTERNAL_NIC, director.internal_ip),
                static_nic(settings.external, EXTERNAL_NIC, director.external_ip),
            ],
            template="director.yaml",
            context={"ipvs_modules": IPVS_MODULES, "keepalived": settings.keepalived},
            base_image=base_image,
            networks=networks,
        )
        self.register_outputs({"internalIp": str(director.internal_ip), "externalIp": str(director.external_ip)})
