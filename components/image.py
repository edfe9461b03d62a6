"""The base cloud image every node's root volume is a copy-on-write layer on."""

from __future__ import annotations

from typing import Optional

import pulumi
import pulumi_libvirt as libvirt

from .config import ImageSettings
from .storage import StoragePool


class BaseImage(pulumi.ComponentResource):
    volume: libvirt.Volume
    # The pool's name as an Output: every volume given it depends on the pool resource.
    pool: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        settings: ImageSettings,
        *,
        pool: StoragePool,
        stack: str,
        opts: Optional[pulumi.ResourceOptions] = None,
    ) -> None:
        super().__init__("lvs:image:BaseImage", name, None, opts)
        self.pool = pool.name
        self.volume = libvirt.Volume(
            name,
            name=f"{stack}-base.qcow2",
            pool=self.pool,
            source=settings.source,
            format="qcow2",
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.register_outputs({"source": settings.source})
