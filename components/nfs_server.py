"""The NFS server: shared storage holding the web tier's docroots."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Optional

import pulumi

from .config import INTERNAL_NIC, ClusterSettings
from .image import BaseImage
from .network import ClusterNetwork
from .vm import node_vm, static_nic


class NfsServer(pulumi.ComponentResource):
    def __init__(
        self,
        settings: ClusterSettings,
        *,
        base_image: BaseImage,
        networks: Mapping[str, ClusterNetwork],
        opts: Optional[pulumi.ResourceOptions] = None,
    ) -> None:
        nfs = settings.nfs
        super().__init__("lvs:node:NfsServer", nfs.name, None, opts)
        self.vm = node_vm(
            self,
            settings,
            hostname=nfs.name,
            size=nfs.size,
            nics=[static_nic(settings.internal, INTERNAL_NIC, nfs.ip)],
            template="nfs-server.yaml",
            context={"nfs_ip": nfs.ip, "exports": list(nfs.exports), "internal_cidr": settings.internal.cidr},
            base_image=base_image,
            networks=networks,
        )
        self.register_outputs({"ip": str(nfs.ip), "exports": [str(path) for path in nfs.exports]})
