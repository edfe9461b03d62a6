"""Applies the plan's libvirt resources to a real libvirtd as `pulumi up` with pulumi-libvirt
0.5.4 would, and removes them as `pulumi destroy` would: the XML of `translation.py`, the calls
and their order as terraform-provider-libvirt v0.8.1 makes them, in the plan's dependency order.

State is kept per resource URN like Pulumi's: a second `up` of the same plan changes nothing; a
resource whose inputs changed is replaced (v0.8.1 marks these inputs ForceNew), and so is what
depends on it, because its id would change; a resource gone from the plan is deleted first.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from graphlib import TopologicalSorter
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import libvirt

from . import translation
from .plan import Plan, PlannedResource
from .topology import CLOUD_INIT_DISK, DOMAIN, NETWORK, POOL, VOLUME, dependencies_among, resource_id

Log = Callable[[str], None]
PRIVATE_IMAGES = "/var/lib/libvirt/images"  # inside the lab daemon's mount namespace
LIBVIRT_TYPES = (POOL, VOLUME, CLOUD_INIT_DISK, NETWORK, DOMAIN)
UPLOAD_CHUNK = 4 << 20  # utils_volume.go newVolumeUploader reads 4 MiB at a time


class DeploymentError(RuntimeError):
    pass


@dataclass
class Applied:
    urn: str
    type: str
    name: str  # the Pulumi resource name
    inputs: dict[str, Any]
    libvirt_name: str
    key: str = ""  # volumes: the volume key (its path in a dir pool); domains, networks, pools: UUID
    dependencies: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Change:
    name: str
    type: str
    action: str  # create, delete
    seconds: float
    done_at: float = 0.0  # time.monotonic() when libvirt answered: a domain's start


class Deployment:
    def __init__(
        self,
        connection: libvirt.virConnect,
        *,
        work: Path,
        lab_changes: Callable[[str, str], translation.LabDomainChanges],
        log: Log,
        start_domains: bool = True,
    ) -> None:
        self.connection = connection
        self.start_domains = start_domains  # False: define only (the lab's budget), never the provider's way
        self.work = work
        self.lab_changes = lab_changes
        self.log = log
        self.state: dict[str, Applied] = {}  # in creation order

    # ---------------------------------------------------------------------------- up/destroy

    def up(self, plan: Plan) -> list[Change]:
        wanted = {resource.urn: resource for resource in plan.resources if resource.type in LIBVIRT_TYPES}
        graph = {urn: dependencies_among(plan, resource, wanted) for urn, resource in wanted.items()}
        changed = {urn for urn, applied in self.state.items() if urn in wanted and wanted[urn].inputs != applied.inputs}
        changed |= _dependents(graph, changed)
        gone = [urn for urn in self.state if urn not in wanted or urn in changed]
        changes = self._delete(gone)
        ids = {resource_id(resource): urn for urn, resource in wanted.items()}
        for urn in TopologicalSorter(graph).static_order():
            if urn not in self.state:
                changes.append(self._timed(wanted[urn], "create", partial(self._create, wanted[urn], ids)))
        return changes

    def destroy(self) -> list[Change]:
        return self._delete(list(self.state))

    def _delete(self, urns: Iterable[str]) -> list[Change]:
        doomed = set(urns)
        changes = []
        # Dependents first: the reverse of the order they were created in.
        for urn in reversed(list(self.state)):
            if urn in doomed:
                applied = self.state[urn]
                changes.append(self._timed(applied, "delete", partial(self._remove, applied)))
                del self.state[urn]
        return changes

    def _timed(self, resource: PlannedResource | Applied, action: str, work: Callable[[], None]) -> Change:
        started = time.monotonic()
        try:
            work()
        except libvirt.libvirtError as error:
            raise DeploymentError(f"{action} {resource.type.split(':')[-1]} {resource.name}: libvirt said: {error}") from error
        done_at = time.monotonic()
        change = Change(resource.name, resource.type.split(":")[-1], action, round(done_at - started, 2), done_at)
        self.log(f"libvirt: {action} {change.type} {resource.name} ({change.seconds:.1f} s)")
        return change

    # -------------------------------------------------------------------------------- create

    def _create(self, resource: PlannedResource, ids: dict[str, str]) -> None:
        inputs = resource.inputs
        create = {
            POOL: self._create_pool,
            VOLUME: self._create_volume,
            CLOUD_INIT_DISK: self._create_cloud_init_disk,
            NETWORK: self._create_network,
            DOMAIN: self._create_domain,
        }[resource.type]
        applied = Applied(resource.urn, resource.type, resource.name, inputs, inputs["name"], dependencies=list(resource.dependencies))
        applied.key = create(inputs, ids)
        self.state[resource.urn] = applied

    def _referenced(self, ids: dict[str, str], mock_id: str) -> Applied:
        return self.state[ids[mock_id]]

    def _pool(self, name: str) -> libvirt.virStoragePool:
        try:
            pool = self.connection.storagePoolLookupByName(name)
        except libvirt.libvirtError as error:
            # resource_libvirt_volume.go: the provider never creates a pool.
            raise DeploymentError(f"can't find storage pool '{name}'") from error
        pool.refresh(0)
        return pool

    def _create_pool(self, inputs: dict[str, Any], ids: dict[str, str]) -> str:
        # resource_libvirt_pool.go resourceLibvirtPoolCreate: define, build, autostart, start, refresh.
        try:
            self.connection.storagePoolLookupByName(inputs["name"])
        except libvirt.libvirtError:
            pass
        else:
            raise DeploymentError(f"storage pool '{inputs['name']}' already exists")
        pool = self.connection.storagePoolDefineXML(translation.pool_xml(inputs), 0)
        pool.build(0)
        pool.setAutostart(1)
        pool.create(0)
        pool.refresh(0)
        return str(pool.UUIDString())

    def _upload(self, volume: libvirt.virStorageVol, path: Path) -> None:
        stream = self.connection.newStream(0)
        volume.upload(stream, 0, path.stat().st_size, 0)
        with path.open("rb") as handle:
            stream.sendAll(lambda _stream, size, source: source.read(min(size, UPLOAD_CHUNK)), handle)
        stream.finish()

    def _create_volume(self, inputs: dict[str, Any], ids: dict[str, str]) -> str:
        pool = self._pool(inputs["pool"])
        if inputs.get("source"):
            source = Path(inputs["source"].removeprefix("file://"))
            if not source.is_file():
                raise DeploymentError(f"volume {inputs['name']}: source {inputs['source']} is not a local file")
            volume = pool.createXML(translation.source_volume_xml(inputs, source), 0)
            self._upload(volume, source)
        else:
            base = self.connection.storageVolLookupByKey(self._referenced(ids, inputs["baseVolumeId"]).key)
            base_format = ElementTree.fromstring(base.XMLDesc(0)).find("target/format")
            volume = pool.createXML(
                translation.backed_volume_xml(
                    inputs,
                    base_path=base.path(),
                    base_format=base_format.get("type", "qcow2") if base_format is not None else "qcow2",
                    base_capacity=int(base.info()[1]),
                ),
                0,
            )
        return str(volume.key())

    def _create_cloud_init_disk(self, inputs: dict[str, Any], ids: dict[str, str]) -> str:
        iso = translation.cloud_init_iso(inputs, self.work / "cloud-init" / inputs["name"])
        pool = self._pool(inputs["pool"])
        volume = pool.createXML(translation.cloud_init_volume_xml(inputs["name"], iso), 0)
        self._upload(volume, iso)
        return str(volume.key())

    def _create_network(self, inputs: dict[str, Any], ids: dict[str, str]) -> str:
        # resource_libvirt_network.go: define, start (undone on failure), autostart.
        network = self.connection.networkDefineXML(translation.network_xml(inputs))
        try:
            network.create()
        except libvirt.libvirtError:
            network.undefine()
            raise
        if inputs.get("autostart"):
            network.setAutostart(1)
        return str(network.UUIDString())

    def _create_domain(self, inputs: dict[str, Any], ids: dict[str, str]) -> str:
        disks = []
        for disk in inputs.get("disks", []):
            volume = self.connection.storageVolLookupByKey(self._referenced(ids, disk["volumeId"]).key)
            volume_format = ElementTree.fromstring(volume.XMLDesc(0)).find("target/format")
            disks.append(
                translation.DiskSource(
                    pool=volume.storagePoolLookupByVolume().name(),
                    volume=volume.name(),
                    volume_format=volume_format.get("type", "raw") if volume_format is not None else "raw",
                )
            )
        cloud_init = None
        if inputs.get("cloudinit"):
            cloud_init = self.connection.storageVolLookupByKey(self._referenced(ids, inputs["cloudinit"]).key).path()
        networks = [self._referenced(ids, nic["networkId"]).libvirt_name for nic in inputs.get("networkInterfaces", [])]
        xml = translation.domain_xml(
            inputs,
            machine=self.canonical_machine(inputs.get("type", "kvm")),
            disks=disks,
            cloud_init_path=cloud_init,
            network_names=networks,
            lab=self.lab_changes(inputs["name"], inputs.get("type", "kvm")),
        )
        domain = self.connection.defineXML(xml)
        if inputs.get("autostart"):
            domain.setAutostart(1)
        if self.start_domains:
            domain.create()
        return str(domain.UUIDString())

    def canonical_machine(self, domain_type: str) -> str:
        """utils_domain_def.go getMachineTypeForArch + getCanonicalMachineName: "pc" on x86_64."""
        capabilities = ElementTree.fromstring(self.connection.getCapabilities())
        for guest in capabilities.findall("guest"):
            arch = guest.find("arch")
            if guest.findtext("os_type") != "hvm" or arch is None or arch.get("name") != "x86_64":
                continue
            if not any(domain.get("type") == domain_type for domain in arch.findall("domain")):
                raise DeploymentError(f"could not find capabilities for domaintype={domain_type}")
            for machine in arch.findall("machine"):
                if machine.text == "pc":
                    return machine.get("canonical") or "pc"
        raise DeploymentError("Could not find any guests for architecture type hvm/x86_64")

    # -------------------------------------------------------------------------------- delete

    def _remove(self, applied: Applied) -> None:
        if applied.type == DOMAIN:
            # resource_libvirt_domain.go resourceLibvirtDomainDelete: hard off, then undefine.
            domain = self.connection.lookupByUUIDString(applied.key)
            if domain.isActive():
                domain.destroy()
            domain.undefineFlags(
                libvirt.VIR_DOMAIN_UNDEFINE_NVRAM
                | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA
                | libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
                | libvirt.VIR_DOMAIN_UNDEFINE_CHECKPOINTS_METADATA
            )
        elif applied.type == NETWORK:
            network = self.connection.networkLookupByUUIDString(applied.key)
            if network.isActive():
                network.destroy()
            network.undefine()
        elif applied.type in (VOLUME, CLOUD_INIT_DISK):
            # volume.go volumeDelete: refresh the pool, delete; a missing volume is fine.
            try:
                volume = self.connection.storageVolLookupByKey(applied.key)
            except libvirt.libvirtError:
                return
            volume.storagePoolLookupByVolume().refresh(0)
            volume.delete(0)
        elif applied.type == POOL:
            # resource_libvirt_pool.go resourceLibvirtPoolDelete: stop, delete the directory, undefine.
            try:
                pool = self.connection.storagePoolLookupByUUIDString(applied.key)
            except libvirt.libvirtError:
                return
            if pool.isActive():
                pool.destroy()
            pool.delete(0)
            pool.undefine()


def _dependents(graph: dict[str, set[str]], roots: set[str]) -> set[str]:
    found: set[str] = set()
    pending = list(roots)
    while pending:
        urn = pending.pop()
        for other, dependencies in graph.items():
            if urn in dependencies and other not in found:
                found.add(other)
                pending.append(other)
    return found


def provide_existing_pools(connection: libvirt.virConnect, plan: Plan, directory: Path, *, log: Log) -> list[str]:
    """A stack that names an existing pool (`lvs:image.pool`) expects the host to have it: the
    lab makes each such pool (a dir pool under `directory`) before `up`. Not the stack's:
    destroy leaves them."""
    created = {resource.inputs["name"] for resource in plan.of_type(POOL)}
    wanted = {resource.inputs["pool"] for resource in plan.resources if resource.type in (VOLUME, CLOUD_INIT_DISK)}
    existing = {pool.name() for pool in connection.listAllStoragePools(0)}
    provided = sorted(wanted - created - existing)
    for name in provided:
        inputs = {"name": name, "type": "dir", "target": {"path": str(directory / name)}}
        pool = connection.storagePoolDefineXML(translation.pool_xml(inputs), 0)
        pool.build(0)
        pool.create(0)
        log(f"libvirt: the lab provides the existing pool {name!r} the stack names")
    return provided


def leftovers(connection: libvirt.virConnect, plan: Plan) -> list[str]:
    """The plan's libvirt objects the daemon still holds, found through its API."""
    names: dict[str, set[str]] = {resource_type: set() for resource_type in LIBVIRT_TYPES}
    for resource in plan.resources:
        if resource.type in LIBVIRT_TYPES:
            names[resource.type].add(resource.inputs["name"])
    found = [f"domain {d.name()}" for d in connection.listAllDomains(0) if d.name() in names.get(DOMAIN, set())]
    found += [f"network {n.name()}" for n in connection.listAllNetworks(0) if n.name() in names.get(NETWORK, set())]
    volume_names = names.get(VOLUME, set()) | names.get(CLOUD_INIT_DISK, set())
    for pool in connection.listAllStoragePools(0):
        if pool.name() in names.get(POOL, set()):
            found.append(f"pool {pool.name()}")
        if pool.isActive():
            pool.refresh(0)
            found += [f"volume {pool.name()}/{v}" for v in pool.listVolumes() if v in volume_names]
    return sorted(found)
