"""A private libvirt daemon for one lab run: Debian's `libvirtd` and `virtlogd`, started by
hand inside the lab's network namespace and a mount namespace of their own.

Bind mounts give the daemons their own `/etc/libvirt`, `/run/libvirt`, `/var/lib/libvirt`,
`/var/log/libvirt` and `/var/cache/libvirt` (directories under the run's work directory), so
they never see or touch a libvirt the machine already runs, and two labs never share a socket.
The lab reaches the daemon through the socket file in its own run directory
(`qemu:///system?socket=…`). The bridges, taps and QEMU processes the daemon makes live in the
lab's network namespace and end with it.

    with PrivateLibvirtd(namespace, workdir / "libvirt", log=log) as daemon:
        connection = daemon.connect()
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

import libvirt

from . import tools
from .netns import Namespace, end_process
from .runs import process_name

Log = Callable[[str], None]
START_TIMEOUT_SECONDS = 60

# Directory under the run's work directory → the path the daemons see it at.
PRIVATE_DIRS = {
    "etc": "/etc/libvirt",
    "run": "/run/libvirt",
    "lib": "/var/lib/libvirt",
    "log": "/var/log/libvirt",
    "cache": "/var/cache/libvirt",
}
# Debian's package creates these under /var/lib/libvirt; the network driver writes its
# per-bridge files into dnsmasq/ even for networks without DHCP.
LIB_SKELETON = ("dnsmasq", "images", "boot", "qemu")

# The mounts are made inside the new mount namespace only (`unshare --mount` makes it private),
# then virtlogd runs in the background and libvirtd replaces the shell, so the process the lab
# started is libvirtd itself.
_START_SCRIPT = """set -eu
root=$1
hide_kvm=$2
for pair in {pairs}; do
  mkdir -p "${{pair#*:}}"
  mount --bind "$root/${{pair%%:*}}" "${{pair#*:}}"
done
# /dev/kvm exists here but hangs. libvirt probes QEMU's capabilities with KVM when the
# device is accessible to libvirt-qemu, and re-probes (44-88 s under emulation) at every
# domain start while KVM "became accessible" since the last probe. Over /dev/kvm the daemon
# sees a file nobody may open: no KVM, one probe; the lab's domains are type qemu.
if [ "$hide_kvm" = yes ] && [ -e /dev/kvm ]; then
  : > "$root/no-kvm"
  chmod 000 "$root/no-kvm"
  mount --bind "$root/no-kvm" /dev/kvm
fi
virtlogd --pid-file "$root/virtlogd.pid" &
exec libvirtd --pid-file "$root/libvirtd.pid"
"""


class LibvirtdError(RuntimeError):
    pass


def _ignore_libvirt_error(context: object, error: object) -> None:
    """Errors reach the lab as exceptions, which it reports itself."""


def quiet_libvirt() -> None:
    """libvirt-python prints every error to stderr by default, expected lookups included."""
    libvirt.registerErrorHandler(_ignore_libvirt_error, None)


quiet_libvirt()


class PrivateLibvirtd:
    def __init__(self, namespace: Namespace, root: Path, *, log: Log, hide_kvm: bool = True) -> None:
        self.namespace = namespace
        self.hide_kvm = hide_kvm
        self.root = root
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None
        self.daemon_log = root / "libvirtd.log"

    @property
    def socket(self) -> Path:
        return self.root / "run" / "libvirt-sock"

    @property
    def uri(self) -> str:
        return self.uri_for(self.root)

    @staticmethod
    def uri_for(root: Path) -> str:
        return f"qemu:///system?socket={root / 'run' / 'libvirt-sock'}"

    def __enter__(self) -> PrivateLibvirtd:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        self.stop()

    def _prepare(self) -> None:
        for name in PRIVATE_DIRS:
            (self.root / name).mkdir(parents=True, exist_ok=True)
        # The package's daemon settings, none of its objects: no default network, no
        # autostarted anything (those live in subdirectories that are not copied).
        for conf in Path("/etc/libvirt").glob("*.conf"):
            shutil.copy2(conf, self.root / "etc" / conf.name)
        if self.hide_kvm:
            # QEMU's own /dev (libvirt's mount namespace per domain) would try to move the
            # mount that hides /dev/kvm, and fail: the domains share the daemon's /dev.
            with (self.root / "etc" / "qemu.conf").open("a") as qemu_conf:
                qemu_conf.write("\n# lvs-cluster lab: /dev/kvm is hidden from this daemon\nnamespaces = []\n")
        for name in LIB_SKELETON:
            (self.root / "lib" / name).mkdir(exist_ok=True)

    def start(self) -> None:
        tools.require("libvirtd", "virtlogd")
        self._prepare()
        pairs = " ".join(f"{name}:{target}" for name, target in PRIVATE_DIRS.items())
        with self.daemon_log.open("wb") as output:
            self.process = self.namespace.popen(
                [
                    "unshare",
                    "--mount",
                    "--propagation",
                    "private",
                    "sh",
                    "-c",
                    _START_SCRIPT.format(pairs=pairs),
                    "libvirtd",
                    str(self.root),
                    "yes" if self.hide_kvm else "no",
                ],
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise LibvirtdError(f"libvirtd exited ({self.process.returncode}):\n{self.log_tail()}")
            if self.socket.exists():
                with contextlib.suppress(libvirt.libvirtError):
                    self.connect().close()
                    self.log(
                        f"libvirtd {libvirt.getVersion() // 1000000}.x running in netns {self.namespace.name} (pid {self.process.pid})"
                    )
                    return
            time.sleep(0.2)
        raise LibvirtdError(f"libvirtd did not answer on {self.socket} within {START_TIMEOUT_SECONDS} s:\n{self.log_tail()}")

    def connect(self) -> libvirt.virConnect:
        return libvirt.open(self.uri)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.daemon_log.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""

    def pids(self) -> dict[str, int]:
        found = {}
        for name in ("libvirtd", "virtlogd"):
            with contextlib.suppress(FileNotFoundError, ValueError):
                found[name] = int((self.root / f"{name}.pid").read_text().strip())
        return found

    def stop(self) -> None:
        """Ends the daemons by PID. Domains they still run are ended first: libvirtd leaves its
        QEMU processes running when it exits."""
        if self.process is None:
            return
        if self.process.poll() is None:
            with contextlib.suppress(libvirt.libvirtError):
                connection = self.connect()
                for domain in connection.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE):
                    with contextlib.suppress(libvirt.libvirtError):
                        domain.destroy()
                connection.close()
        virtlogd = self.pids().get("virtlogd")
        end_process(self.process)
        if virtlogd and process_name(virtlogd) == "virtlogd":
            os.kill(virtlogd, signal.SIGTERM)
        self.namespace.forget(self.process)
        self.process = None
        self.log("libvirtd stopped")
