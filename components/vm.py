"""One guest: a copy-on-write root volume, a NoCloud cloud-init disk, the domain, and a
Command that waits until cloud-init has finished there."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Interface
from typing import Optional

import pulumi
import pulumi_libvirt as libvirt
from pulumi_command import remote

from . import cloudinit
from . import remote as remote_access
from .config import ClusterSettings, MachineSize, NetworkSettings, mac_address
from .image import BaseImage
from .network import ClusterNetwork

# `cloud-init status --wait` exits non-zero when any module failed; print why, then fail.
WAIT_FOR_CLOUD_INIT = "cloud-init status --wait >/dev/null 2>&1 || { cloud-init status --long; exit 1; }\ncloud-init status --long\n"


@dataclass(frozen=True)
class GuestSpec:
    hostname: str
    domain_name: str
    size: MachineSize
    domain_type: str
    nics: Sequence[cloudinit.NicSpec]
    user_data: str


class VirtualMachine(pulumi.ComponentResource):
    """A libvirt domain booted from the base image with its own cloud-init documents."""

    domain: libvirt.Domain
    ready: remote.Command

    def __init__(
        self,
        name: str,
        spec: GuestSpec,
        *,
        base_image: BaseImage,
        networks: Mapping[str, ClusterNetwork],
        connection: remote.ConnectionArgs,
        opts: Optional[pulumi.ResourceOptions] = None,
    ) -> None:
        super().__init__("lvs:vm:VirtualMachine", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        self.spec = spec
        self.network_config = cloudinit.network_config(spec.nics)
        self.meta_data = cloudinit.meta_data(spec.domain_name, spec.hostname, spec.user_data, self.network_config)

        self.root_volume = libvirt.Volume(
            f"{name}-root",
            name=f"{spec.domain_name}.qcow2",
            pool=base_image.pool,
            base_volume_id=base_image.volume.id,
            format="qcow2",
            opts=child,
        )
        self.seed = libvirt.CloudInitDisk(
            f"{name}-seed",
            name=f"{spec.domain_name}-seed.iso",
            pool=base_image.pool,
            user_data=spec.user_data,
            meta_data=self.meta_data,
            network_config=self.network_config,
            # Its volume name is fixed and the provider cannot update it: a replacement must
            # delete first. That is also how a failed create is mended (the provider reads the
            # ISO back right after uploading it and sometimes finds it incomplete; the engine
            # then keeps it with init errors, which a plain `pulumi up` cannot clear):
            # `pulumi up --replace <its URN>` (README, troubleshooting).
            opts=pulumi.ResourceOptions(parent=self, delete_before_replace=True),
        )
        self.domain = libvirt.Domain(
            name,
            name=spec.domain_name,
            type=spec.domain_type,
            memory=spec.size.memory_mib,
            vcpu=spec.size.vcpus,
            autostart=True,
            cloudinit=self.seed.id,
            cpu=libvirt.DomainCpuArgs(mode="host-passthrough") if spec.domain_type == "kvm" else None,
            disks=[libvirt.DomainDiskArgs(volume_id=self.root_volume.id)],
            network_interfaces=[
                # Static addresses come from cloud-init: waiting for a DHCP lease would hang.
                libvirt.DomainNetworkInterfaceArgs(network_id=networks[nic.network].network_id, mac=nic.mac, wait_for_lease=False)
                for nic in spec.nics
            ],
            consoles=[libvirt.DomainConsoleArgs(type="pty", target_port="0", target_type="serial")],
            # Domain names are unique per host: the old domain must go before its replacement.
            opts=pulumi.ResourceOptions(parent=self, delete_before_replace=True),
        )
        self.ready = remote.Command(
            f"{name}-ready",
            connection=connection,
            create=WAIT_FOR_CLOUD_INIT,
            # A replaced domain is a fresh boot: wait again.
            triggers=[self.domain.id],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.domain]),
        )
        self.register_outputs({"domain": spec.domain_name, "addresses": {nic.name: str(nic.interface.ip) for nic in spec.nics}})


def static_nic(network: NetworkSettings, nic_name: str, address: IPv4Address, gateway: IPv4Address | None = None) -> cloudinit.NicSpec:
    return cloudinit.NicSpec(
        network=network.role,
        name=nic_name,
        mac=mac_address(address),
        interface=IPv4Interface(f"{address}/{network.cidr.prefixlen}"),
        gateway=gateway,
    )


def node_vm(
    parent: pulumi.ComponentResource,
    settings: ClusterSettings,
    *,
    hostname: str,
    size: MachineSize,
    nics: Sequence[cloudinit.NicSpec],
    template: str,
    context: Mapping[str, object],
    base_image: BaseImage,
    networks: Mapping[str, ClusterNetwork],
    overlays: Sequence[str] = (),
) -> VirtualMachine:
    """The VirtualMachine of one cluster node, its user-data rendered from its role template
    (and any overlays on it, in order)."""
    user_data = cloudinit.user_data(
        template,
        {"hostname": hostname, "admin_user": settings.admin_user, "ssh_public_key": settings.ssh_public_key, **context},
        overlays=overlays,
    )
    spec = GuestSpec(
        hostname=hostname,
        domain_name=settings.domain_name(hostname),
        size=size,
        domain_type=settings.domain_type,
        nics=nics,
        user_data=user_data,
    )
    return VirtualMachine(
        hostname,
        spec,
        base_image=base_image,
        networks=networks,
        connection=remote_access.connection(settings, nics[0].interface.ip),
        opts=pulumi.ResourceOptions(parent=parent),
    )
