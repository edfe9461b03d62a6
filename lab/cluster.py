"""A topology realised inside a network namespace the lab creates: one bridge per libvirt
network (carrying the host's address on it), one QEMU guest per domain, NICs on taps in the
plan's order with the plan's MACs, and SSH from the namespace as the Commands' connection says.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from .guest import Guest
from .image import BaseImage
from .netns import Namespace
from .topology import LabCommand, Topology

Log = Callable[[str], None]
STATE_FILE_NAME = "lab-state.json"


@dataclass(frozen=True)
class CommandRun:
    name: str
    phase: str  # create, update, delete
    returncode: int
    seconds: float
    stdout: str
    stderr: str


class LabCluster:
    def __init__(self, topology: Topology, *, image: BaseImage, workdir: Path, ssh_key: Path, namespace: str, log: Log) -> None:
        self.topology = topology
        self.image = image
        self.workdir = workdir
        self.ssh_key = ssh_key
        self.log = log
        self.ns = Namespace(namespace, log=log)
        self.guests: dict[str, Guest] = {}
        self.bridges: dict[str, str] = {}

    def __enter__(self) -> LabCluster:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        self.close()

    def start(self) -> None:
        self.ns.create()
        for index, network in enumerate(self.topology.networks):
            bridge = self.ns.add_bridge(f"lvsbr{index}", f"{network.host_ip}/{network.cidr.prefixlen}")
            self.bridges[network.resource_id] = bridge
        for guest_index, spec in enumerate(self.topology.guests):
            taps = [
                (self.ns.add_tap(f"lvst{guest_index}n{nic_index}", self.bridges[nic.network.resource_id]), nic.mac)
                for nic_index, nic in enumerate(spec.nics)
            ]
            guest_dir = self.workdir / spec.name
            guest_dir.mkdir(parents=True, exist_ok=True)
            guest = Guest(
                spec.name,
                self.image,
                guest_dir,
                self.ns,
                memory_mib=spec.memory_mib,
                vcpus=spec.vcpus,
                nics=taps,
                user_data=spec.user_data,
                meta_data=spec.meta_data,
                network_config=spec.network_config,
                ssh_key=self.ssh_key,
                log=self.log,
            )
            guest.start()
            self.guests[spec.name] = guest

    def wait_booted(self, timeout: float) -> dict[str, float]:
        """Each guest's own uptime when cloud-init reported it finished (the guests boot at
        once; waiting for them one after the other must not add up)."""
        booted = {}
        for name, guest in self.guests.items():
            guest.wait_cloud_init_done(timeout=timeout)
            booted[name] = guest.guest_uptime or 0.0
        return booted

    def _any_guest(self) -> Guest:
        return next(iter(self.guests.values()))

    def ssh(self, host: str, user: str, script: str, *, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """Runs a shell command on a node as a Pulumi Command would: the string goes to the
        login shell of `user` over SSH, from the namespace (the host side of the networks)."""
        result: subprocess.CompletedProcess[str] = self._any_guest().ssh(script, host=host, user=user, check=False, timeout=timeout)
        return result

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
        for guest in self.guests.values():
            guest.stop()
        self.ns.close()

    def detach(self, state_dir: Path, access: dict[str, object]) -> Path:
        """Leaves the lab running (for `lab up`) and records what `lab down` must end."""
        state = {
            "namespace": self.ns.name,
            "workdir": str(self.workdir),
            "guests": {name: guest.pid for name, guest in self.guests.items()},
            "access": access,
        }
        state_dir.mkdir(parents=True, exist_ok=True)
        path = state_dir / STATE_FILE_NAME
        path.write_text(json.dumps(state, indent=2))
        return path


def tear_down(state_dir: Path, log: Log) -> bool:
    """Ends what `lab up` left running: its QEMU processes (by PID, only if they are still
    the guests it started), its namespace and its working files."""
    path = state_dir / STATE_FILE_NAME
    if not path.exists():
        log("no lab is running (no state file)")
        return False
    state = json.loads(path.read_text())
    workdir = state["workdir"]
    for name, pid in state["guests"].items():
        if pid and _is_our_guest(int(pid), workdir):
            os.kill(int(pid), signal.SIGTERM)
            if not _wait_gone(int(pid), 15):
                os.kill(int(pid), signal.SIGKILL)
            log(f"{name}: QEMU {pid} ended")
    if state["namespace"] in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout.split():
        subprocess.run(["ip", "netns", "delete", state["namespace"]], check=True)
        log(f"namespace {state['namespace']} removed")
    shutil.rmtree(workdir, ignore_errors=True)
    path.unlink()
    return True


def _is_our_guest(pid: int, workdir: str) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except FileNotFoundError:
        return False
    return "qemu-system" in cmdline and workdir in cmdline


def _wait_gone(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not Path(f"/proc/{pid}").exists():
            return True
        time.sleep(0.2)
    return False
