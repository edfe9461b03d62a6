"""The libvirt storage pool every volume lives in.

terraform-provider-libvirt never creates a pool, and a host without the pool a volume names
fails every volume. Unless ``lvs:image.pool`` names an existing pool, the stack creates its
own ``dir`` pool; volumes take its name from :attr:`StoragePool.name`, so each depends on the
pool and ``pulumi destroy`` removes the volumes before the pool.
"""

from __future__ import annotations

from typing import Optional

import pulumi
import pulumi_libvirt as libvirt

from .config import PoolSettings


class StoragePool(pulumi.ComponentResource):
    """The stack's own ``dir`` pool, or only the name of an existing one (then no child)."""

    name: pulumi.Output[str]
    pool: libvirt.Pool | None

    def __init__(self, name: str, settings: PoolSettings, opts: Optional[pulumi.ResourceOptions] = None) -> None:
        super().__init__("lvs:storage:StoragePool", name, None, opts)
        if settings.path is None:
            self.pool = None
            self.name = pulumi.Output.from_input(settings.name)
        else:
            self.pool = libvirt.Pool(
                name,
                name=settings.name,
                type="dir",
                target=libvirt.PoolTargetArgs(path=str(settings.path)),
                opts=pulumi.ResourceOptions(parent=self),
            )
            self.name = self.pool.name
        self.register_outputs({"name": self.name, "path": None if settings.path is None else str(settings.path)})
