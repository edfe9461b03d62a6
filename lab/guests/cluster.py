"""The cluster the plan declares, on a private libvirtd inside a network namespace the lab
creates, where `pulumi up` builds it (scenario/runner.py); the lab watches each guest's console,
asks libvirt what it holds, and reaches the nodes over SSH from the namespace, as the Commands'
connections say.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import TracebackType
from xml.etree import ElementTree

import libvirt

from ..host.accel import Accel
from ..host.image import BaseImage
from ..host.libvirtd import PrivateLibvirtd
from ..host.netns import Namespace
from ..host.runs import shielded
from ..stack.libvirt_objects import PRIVATE_IMAGES, leftovers, provide_existing_pools
from ..stack.plan import Plan
from ..stack.topology import LabCommand, Topology
from .capture import Capture
from .consoles import ConsoleWatcher
from .guest import Guest
from .ssh import SshClient

Log = Callable[[str], None]
# Caps QEMU's translation cache under software emulation: without it a guest's QEMU grows
# by up to a GiB (measured here, see ../shared/docs/known-pitfalls.md).
TCG_TRANSLATION_CACHE_MIB = 256


@dataclass(frozen=True)
class DirectBoot:
    """The lab image has no boot loader: its kernel and initrd are given to QEMU directly
    (a lab substitution through the Domain's own inputs, listed in the report)."""

    kernel: Path
    initrd: Path
    cmdline: str


@dataclass(frozen=True)
class CommandRun:
    name: str
    phase: str  # create, update, delete
    returncode: int
    seconds: float
    stdout: str
    stderr: str


class LabCluster:
    def __init__(
        self,
        topology: Topology,
        *,
        image: BaseImage,
        workdir: Path,
        ssh_key: Path,
        namespace: str,
        log: Log,
        accel: Accel,
    ) -> None:
        self.topology = topology
        self.image = image
        self.workdir = workdir
        self.ssh_key = ssh_key
        self.log = log
        self.ns = Namespace(namespace, log=log)
        self.consoles = ConsoleWatcher(log=log)
        # Under software emulation the daemon must not see a /dev/kvm that hangs (libvirtd.py).
        self.daemon = PrivateLibvirtd(self.ns, workdir / "libvirt", log=log, hide_kvm=accel.name != "kvm")
        self.guests: dict[str, Guest] = {}
        self.ssh_client = SshClient(self.ns, ssh_key, workdir / "known_hosts")
        self.connection: libvirt.virConnect | None = None
        self.boot: DirectBoot | None = None
        self.provided_pools: list[str] = []

    def __enter__(self) -> LabCluster:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        self.close()

    def open(self) -> None:
        """The namespace and the private daemon, with the kernel and initrd the domains boot
        (copied where the daemon's QEMU may read them) and the directory of console logs."""
        # libvirt runs QEMU as libvirt-qemu: it must reach the lab's kernel and console files.
        self.workdir.chmod(0o755)
        boot = self.workdir / "boot"
        boot.mkdir(exist_ok=True)
        for source in (self.image.kernel, self.image.initrd):
            shutil.copyfile(source, boot / source.name)
            (boot / source.name).chmod(0o644)
        self.boot = DirectBoot(boot / self.image.kernel.name, boot / self.image.initrd.name, self.image.default_kernel_args())
        (self.workdir / "consoles").mkdir(exist_ok=True)
        self.ns.create()
        self.daemon.start()
        self.connection = self.daemon.connect()
        self.consoles.start()

    def provide_pools(self, plan: Plan) -> list[str]:
        """The pools a stack expects the host to have (`lvs:image.pool`), made by the lab."""
        assert self.connection is not None
        provided = provide_existing_pools(self.connection, plan, Path(PRIVATE_IMAGES), log=self.log)
        self.provided_pools += provided
        return provided

    def watch(self, domain_name: str, started_at: float) -> Guest:
        """A guest whose console the lab watches from its first line, started at `started_at`."""
        console_log = self.workdir / "consoles" / f"{domain_name}.log"
        is_running = partial(self._is_active, domain_name)
        boot = self.consoles.arm(domain_name, console_log, started=started_at, since=0, is_running=is_running)
        guest = Guest(domain_name, console_log=console_log, is_running=is_running, boot=boot)
        self.guests[domain_name] = guest
        return guest

    def rebooting(self, domain_name: str) -> None:
        """The guest is about to reboot inside the same QEMU: its next boot is read from where
        its console stands now."""
        guest = self.guests[domain_name]
        guest.boot = self.consoles.arm(domain_name, guest.console_log, is_running=guest.is_running)

    def forget(self, domain_name: str) -> None:
        """A guest the stack no longer has: neither watched nor shown."""
        self.guests.pop(domain_name, None)
        self.consoles.forget(domain_name)

    def leftovers(self, plan: Plan) -> list[str]:
        """The plan's libvirt objects the daemon still holds, found through its API."""
        assert self.connection is not None
        return leftovers(self.connection, plan)

    def _is_active(self, domain_name: str) -> bool:
        assert self.connection is not None
        try:
            return bool(self.connection.lookupByName(domain_name).isActive())
        except libvirt.libvirtError:
            return False

    def wait_booted(self, timeout: float, names: list[str] | None = None) -> dict[str, float]:
        """Each guest's (or each named guest's) own uptime when cloud-init reported its boot
        finished; the guests boot at once, so the waits do not add up."""
        boots = self.consoles.wait_done(self.guests if names is None else names, timeout)
        return {name: boot.uptime or 0.0 for name, boot in boots.items()}

    # ------------------------------------------------------------ what libvirt says

    def bridge_addresses(self) -> dict[str, list[str]]:
        """Each planned network's bridge (named by libvirt) and the addresses it holds in the namespace."""
        assert self.connection is not None
        found = {}
        for network in self.topology.networks:
            xml = ElementTree.fromstring(self.connection.networkLookupByName(network.name).XMLDesc(0))
            bridge = xml.find("bridge")
            name = bridge.get("name", "") if bridge is not None else ""
            shown = json.loads(self.ns.ip("-j", "addr", "show", "dev", name).stdout)
            found[network.name] = [f"{a['local']}/{a['prefixlen']}" for link in shown for a in link["addr_info"] if a["family"] == "inet"]
        return found

    def domain_nics(self) -> dict[str, list[tuple[str, str]]]:
        """Each planned domain's NICs as libvirt runs them: (network, MAC), in order."""
        assert self.connection is not None
        found = {}
        for guest in self.topology.guests:
            xml = ElementTree.fromstring(self.connection.lookupByName(guest.name).XMLDesc(0))
            found[guest.name] = [
                (nic.find("source").get("network", ""), nic.find("mac").get("address", "").lower())  # type: ignore[union-attr]
                for nic in xml.findall("devices/interface")
            ]
        return found

    def tap_devices(self) -> dict[tuple[str, str], str]:
        """The host side of each running domain's NICs, its tap device in the namespace, by
        (domain, network)."""
        assert self.connection is not None
        found = {}
        for guest in self.topology.guests:
            xml = ElementTree.fromstring(self.connection.lookupByName(guest.name).XMLDesc(0))
            for nic in xml.findall("devices/interface"):
                source, target = nic.find("source"), nic.find("target")
                if source is not None and target is not None:
                    found[(guest.name, source.get("network", ""))] = target.get("dev", "")
        return found

    def capture(self, device: str, bpf: str) -> Capture:
        """A packet capture on one of the namespace's devices (a guest's tap, a bridge)."""
        return Capture(self.ns, device, bpf)

    def bridge_names(self) -> dict[str, str]:
        """Every network on the daemon and the bridge libvirt gave it."""
        assert self.connection is not None
        names = {}
        for network in self.connection.listAllNetworks(0):
            bridge = ElementTree.fromstring(network.XMLDesc(0)).find("bridge")
            names[network.name()] = bridge.get("name", "") if bridge is not None else ""
        return names

    def libvirt_inventory(self) -> dict[str, list[str]]:
        """Everything the daemon holds, by name (and domain UUID and state)."""
        assert self.connection is not None
        volumes = []
        for pool in self.connection.listAllStoragePools(0):
            pool.refresh(0)
            volumes += [f"{pool.name()}/{volume}" for volume in pool.listVolumes()]
        return {
            "domains": sorted(f"{d.name()} {d.UUIDString()} active={d.isActive()}" for d in self.connection.listAllDomains(0)),
            "networks": sorted(f"{n.name()} active={n.isActive()}" for n in self.connection.listAllNetworks(0)),
            "pools": sorted(p.name() for p in self.connection.listAllStoragePools(0)),
            "volumes": sorted(volumes),
        }

    def remove_pools(self, names: list[str]) -> None:
        """Removes pools the lab itself provided (never one of a stack's)."""
        assert self.connection is not None
        for name in names:
            pool = self.connection.storagePoolLookupByName(name)
            if pool.isActive():
                pool.destroy()
            pool.delete(0)
            pool.undefine()

    def crash(self, domain_name: str) -> float:
        """A crash, not a shutdown: SIGKILL to the domain's QEMU process (which this run's
        daemon started; its pid file is in the daemon's private /run/libvirt), then waits,
        bounded, until libvirt has seen the domain die. Returns when it was killed (time.time())."""
        assert self.connection is not None
        pid = int((self.daemon.root / "run" / "qemu" / f"{domain_name}.pid").read_text().strip())
        if f"guest={domain_name},".encode() not in Path(f"/proc/{pid}/cmdline").read_bytes():
            raise RuntimeError(f"pid {pid} is not the QEMU of {domain_name}")
        os.kill(pid, signal.SIGKILL)
        killed_at = time.time()
        domain = self.connection.lookupByName(domain_name)
        deadline = time.monotonic() + 30
        while domain.isActive():
            if time.monotonic() > deadline:
                raise TimeoutError(f"libvirt still lists {domain_name} as running 30 s after its QEMU was killed")
            time.sleep(0.2)
        return killed_at

    def power_on(self, domain_name: str) -> None:
        """Starts a domain that is off: a new QEMU, whose console log starts over."""
        assert self.connection is not None
        self.connection.lookupByName(domain_name).create()
        guest = self.guests[domain_name]
        # A new QEMU: its console log starts over.
        guest.boot = self.consoles.arm(domain_name, guest.console_log, since=0, is_running=guest.is_running)

    def domain_uuids(self) -> dict[str, str]:
        assert self.connection is not None
        return {guest.name: self.connection.lookupByName(guest.name).UUIDString() for guest in self.topology.guests}

    def ssh(self, host: str, user: str, script: str, *, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """Runs a shell command on a node as a Pulumi Command would: the string goes to the
        login shell of `user` over SSH, from the namespace (the host side of the networks)."""
        return self.ssh_client.run(host, user, script, timeout=timeout)

    def run_command(self, command: LabCommand, phase: str) -> CommandRun:
        script = {"create": command.create, "update": command.update or command.create, "delete": command.delete}[phase]
        if script is None:
            raise ValueError(f"{command.name} has no {phase} script")
        started = time.monotonic()
        result = self.ssh(command.host, command.user, script)
        return CommandRun(command.name, phase, result.returncode, time.monotonic() - started, result.stdout, result.stderr)

    def in_namespace(self, argv: list[str], *, timeout: float) -> subprocess.CompletedProcess[str]:
        result: subprocess.CompletedProcess[str] = self.ns.run(argv, check=False, timeout=timeout)
        return result

    def close(self) -> None:
        """Connection, daemons, namespace: each is removed even when an earlier one fails
        (ending the namespace's processes is the last resort for what a daemon left)."""
        with shielded():
            self.consoles.stop()
            try:
                if self.connection is not None:
                    with contextlib.suppress(libvirt.libvirtError):
                        self.connection.close()
                    self.connection = None
                self.daemon.stop()
            finally:
                self.ns.close()
