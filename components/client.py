"""The optional client: one NIC on the external network, default route via the director."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Optional

import pulumi

from .config import EXTERNAL_NIC, ClientSettings, ClusterSettings
from .image import BaseImage
from .network import ClusterNetwork
from .vm import node_vm, static_nic


class Client(pulumi.ComponentResource):
    def __init__(
        self,
        settings: ClusterSettings,
        client: ClientSettings,
        *,
        base_image: BaseImage,
        networks: Mapping[str, ClusterNetwork],
        opts: Optional[pulumi.ResourceOptions] = None,
    ) -> None:
        super().__init__("lvs:node:Client", client.name, None, opts)
        self.vm = node_vm(
            self,
            settings,
            hostname=client.name,
            size=client.size,
            nics=[static_nic(settings.external, EXTERNAL_NIC, client.ip, gateway=settings.director.external_ip)],
            template="client.yaml",
            context={},
            base_image=base_image,
            networks=networks,
        )
        self.register_outputs({"ip": str(client.ip)})
