"""The base cloud image every node's root volume is a copy-on-write layer on."""

from __future__ import annotations

from typing import Optional

import pulumi
import pulumi_libvirt as libvirt

from .config import ImageSettings


class BaseImage(pulumi.ComponentResource):
    volume: libvirt.Volume

    def __init__(self, name: str, settings: ImageSettings, *, stack: str, opts: Optional[pulumi.ResourceOptions] = None) -> None:
        super().__init__("lvs:image:BaseImage", name, None, opts)
        self.pool = settings.pool
        self.volume = libvirt.Volume(
            name,
            name=f"{stack}-base.qcow2",
            pool=settings.pool,
            source=settings.source,
            format="qcow2",
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.register_outputs({"source": settings.source})
