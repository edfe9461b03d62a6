"""One QEMU guest of the lab, booted from the base image inside a Namespace.

    g = Guest("web1", image, workdir, ns, memory_mib=512, vcpus=1,
              nics=[("tap-web1", "52:54:00:75:00:32")],
              user_data=b"#cloud-config\\n...", meta_data=b"instance-id: web1\\n...",
              network_config=b"version: 2\\nethernets: ...",
              ssh_host="192.168.75.50", ssh_user="lab", ssh_key=key_path)
    g.start()
    boot_s = g.wait_cloud_init_done(timeout=900)
    g.ssh("cloud-init status --long")
    g.stop()

The guest gets a qcow2 overlay on the (read-only) base image, a NoCloud seed
(an ISO 9660 disk labelled `cidata` holding the exact user-data, meta-data
and network-config bytes given), virtio-net NICs on the given taps and
nothing else: `-nodefaults` means no default NIC (QEMU's default user-mode
NIC would be a way out of the namespace), no VGA, no monitor.  Its serial
console goes to `workdir/console.log`, QEMU's own output to `workdir/qemu.log`.

Files in workdir: overlay.qcow2, seed.iso, seed/, console.log, qemu.log,
known_hosts.  The caller owns workdir and removes it.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType

from .image import BaseImage
from .netns import Namespace, end_process

Log = Callable[[str], None]

QEMU = "qemu-system-x86_64"
# "Cloud-init v. 22.4.2 finished at Tue, 25 Nov 2025 06:20:01 +0000.
#  Datasource DataSourceNoCloud [seed=/dev/vdb][dsmode=net].  Up 98.76 seconds"
_CI_FINISHED = re.compile(
    rb"Cloud-init v\. (?P<ver>\S+) finished at (?P<at>[^\r\n]*?)\."
    rb"\s+Datasource (?P<ds>[^\r\n]*?)\.\s+Up (?P<up>[\d.]+) seconds"
)
_FATAL = [
    re.compile(rb"Kernel panic - not syncing[^\r\n]*"),
    re.compile(rb"ALERT! [^\r\n]* does not exist\.[^\r\n]*"),  # initramfs: no root
    re.compile(rb"You are in emergency mode[^\r\n]*"),
]
_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")


def _stderr_log(msg: str) -> None:
    print(f"[guest] {msg}", file=sys.stderr, flush=True)


def _as_bytes(data: bytes | str) -> bytes:
    return data.encode("utf-8") if isinstance(data, str) else bytes(data)


class GuestError(RuntimeError):
    pass


class Guest:
    def __init__(
        self,
        name: str,
        image: BaseImage,
        workdir: Path,
        ns: Namespace,
        *,
        memory_mib: int = 512,
        vcpus: int = 1,
        nics: Sequence[tuple[str, str]] = (),
        user_data: bytes | str,
        meta_data: bytes | str,
        network_config: bytes | str | None = None,
        disk_size_gib: int | None = None,
        kernel_args: str = "",
        ssh_host: str | None = None,
        ssh_user: str | None = None,
        ssh_key: Path | None = None,
        log: Log | None = None,
    ) -> None:
        self.name = name
        self.image = image
        self.workdir = Path(workdir).resolve()
        self.ns = ns
        self.memory_mib = int(memory_mib)
        self.vcpus = int(vcpus)
        self.nics = [(tap, mac.lower()) for tap, mac in nics]
        for _, mac in self.nics:
            if not _MAC.match(mac):
                raise ValueError(f"bad MAC {mac!r}")
        # written to the seed exactly as given (str as UTF-8)
        self.user_data = _as_bytes(user_data)
        self.meta_data = _as_bytes(meta_data)
        self.network_config = None if network_config is None else _as_bytes(network_config)
        self.disk_size_gib = disk_size_gib
        self.kernel_args = kernel_args
        self.ssh_host = ssh_host
        self.ssh_user = ssh_user
        self.ssh_key = Path(ssh_key) if ssh_key else None
        self.log = log or _stderr_log

        self.overlay = self.workdir / "overlay.qcow2"
        self.seed_iso = self.workdir / "seed.iso"
        self.console_log = self.workdir / "console.log"
        self.qemu_log = self.workdir / "qemu.log"
        self.known_hosts = self.workdir / "known_hosts"
        self.proc: subprocess.Popen[bytes] | None = None
        self.started_at: float | None = None
        self.boot_seconds: float | None = None  # start -> cloud-init finished
        self.guest_uptime: float | None = None  # the guest's own "Up N seconds"

    # ------------------------------------------------------------ lifecycle

    def __enter__(self) -> Guest:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _prepare_disks(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if self.overlay.exists():
            self.overlay.unlink()
        cmd = ["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(self.image.root_disk), str(self.overlay)]
        if self.disk_size_gib:
            cmd.append(f"{self.disk_size_gib}G")
        subprocess.run(cmd, check=True, timeout=60, stdin=subprocess.DEVNULL)

        seed = self.workdir / "seed"
        seed.mkdir(exist_ok=True)
        files = {"user-data": self.user_data, "meta-data": self.meta_data}
        if self.network_config is not None:
            files["network-config"] = self.network_config
        for fname, data in files.items():
            (seed / fname).write_bytes(data)
        if self.seed_iso.exists():
            self.seed_iso.unlink()
        subprocess.run(
            [
                "genisoimage",
                "-quiet",
                "-output",
                str(self.seed_iso),
                "-volid",
                "cidata",
                "-joliet",
                "-rock",
                *(str(seed / f) for f in files),
            ],
            check=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )

    def qemu_command(self) -> list[str]:
        append = f"root={self.image.root_device} rw console=ttyS0,115200"
        if self.kernel_args:
            append += " " + self.kernel_args
        cmd = [
            QEMU,
            "-name",
            self.name,
            "-nodefaults",
            "-no-user-config",
            "-accel",
            "tcg,tb-size=256",
            "-cpu",
            "max",
            "-m",
            str(self.memory_mib),
            "-smp",
            str(self.vcpus),
            "-nographic",
            "-monitor",
            "none",
            "-chardev",
            f"file,id=ser0,path={self.console_log}",
            "-serial",
            "chardev:ser0",
            "-kernel",
            str(self.image.kernel),
            "-initrd",
            str(self.image.initrd),
            "-append",
            append,
            "-drive",
            f"file={self.overlay},if=virtio,format=qcow2,cache=unsafe,discard=unmap",
            "-drive",
            f"file={self.seed_iso},if=virtio,format=raw,readonly=on",
            "-device",
            "virtio-rng-pci",
        ]
        for i, (tap, mac) in enumerate(self.nics):
            cmd += ["-netdev", f"tap,id=net{i},ifname={tap},script=no,downscript=no", "-device", f"virtio-net-pci,netdev=net{i},mac={mac}"]
        return cmd

    def start(self) -> None:
        if self.proc is not None:
            raise GuestError(f"{self.name}: already started")
        self._prepare_disks()
        for p in (self.console_log, self.known_hosts):
            if p.exists():
                p.unlink()
        self.console_log.touch()
        cmd = self.qemu_command()
        self.log(f"{self.name}: starting QEMU ({self.memory_mib} MiB, {self.vcpus} vCPU, {len(self.nics)} NIC) in netns {self.ns.name}")
        with open(self.qemu_log, "wb") as ql:
            ql.write(("# " + shlex.join(cmd) + "\n").encode())
            ql.flush()
            self.proc = self.ns.popen(cmd, stdout=ql, stderr=subprocess.STDOUT)
        self.started_at = time.monotonic()

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 15) -> int | None:
        """End QEMU (by PID: SIGTERM, then SIGKILL) and wait for it."""
        if self.proc is None:
            return None
        rc = end_process(self.proc, term_timeout=timeout)
        self.ns.forget(self.proc)
        self.log(f"{self.name}: QEMU stopped (exit {rc})")
        return rc

    # ------------------------------------------------------------- console

    def console_text(self) -> str:
        try:
            return self.console_log.read_bytes().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def console_tail(self, n: int = 30) -> str:
        return "\n".join(self.console_text().splitlines()[-n:])

    def console_offset(self) -> int:
        """Current size of the console log: pass as `since` to wait only for
        output written after this point (e.g. before rebooting the guest)."""
        try:
            return self.console_log.stat().st_size
        except FileNotFoundError:
            return 0

    def wait_for_console(self, pattern: bytes | re.Pattern[bytes], timeout: float, poll: float = 1.0, since: int = 0) -> re.Match[bytes]:
        """Wait until `pattern` appears on the serial console (bounded),
        looking only at bytes from offset `since` on."""
        rx = re.compile(pattern) if isinstance(pattern, bytes) else pattern
        deadline = time.monotonic() + timeout
        while True:
            data = self.console_log.read_bytes()[since:] if self.console_log.exists() else b""
            m = rx.search(data)
            if m:
                return m
            for bad in _FATAL:
                f = bad.search(data)
                if f:
                    raise GuestError(f"{self.name}: {f.group(0).decode(errors='replace')}\n--- console tail ---\n{self.console_tail()}")
            if not self.running():
                rc = self.proc.returncode if self.proc else None
                qlog = self.qemu_log.read_text(errors="replace")[-2000:] if self.qemu_log.exists() else ""
                raise GuestError(f"{self.name}: QEMU exited ({rc})\n--- qemu.log ---\n{qlog}\n--- console tail ---\n{self.console_tail()}")
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"{self.name}: {rx.pattern!r} not on console after {timeout:.0f} s\n--- console tail ---\n{self.console_tail()}"
                )
            time.sleep(poll)

    def wait_cloud_init_done(self, timeout: float = 900, since: int = 0) -> float:
        """Wait for cloud-init's final message on the console.

        Returns seconds from start() to that message (also kept in
        `boot_seconds`; the guest's own uptime is in `guest_uptime`).  This
        says cloud-init finished, not that it succeeded: check
        `cloud_init_status()` for that.  After a reboot inside the guest,
        pass `since=` an offset taken with console_offset() before it.
        """
        if self.started_at is None:
            raise GuestError(f"{self.name}: not started")
        m = self.wait_for_console(_CI_FINISHED, timeout, since=since)
        self.boot_seconds = time.monotonic() - self.started_at
        self.guest_uptime = float(m.group("up"))
        self.log(
            f"{self.name}: cloud-init {m.group('ver').decode()} finished after "
            f"{self.boot_seconds:.0f} s (guest uptime {self.guest_uptime:.0f} s)"
        )
        return self.boot_seconds

    # ----------------------------------------------------------------- ssh

    def ssh_command(
        self,
        command: str | Sequence[str],
        *,
        host: str | None = None,
        user: str | None = None,
        key: Path | None = None,
        connect_timeout: int = 5,
    ) -> list[str]:
        host = host or self.ssh_host
        user = user or self.ssh_user
        key = Path(key) if key else self.ssh_key
        if not (host and user and key):
            raise GuestError(f"{self.name}: ssh needs host, user and key")
        remote = command if isinstance(command, str) else shlex.join(command)
        return [
            "ssh",
            "-i",
            str(key),
            "-o",
            "BatchMode=yes",
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            f"UserKnownHostsFile={self.known_hosts}",
            "-o",
            "GlobalKnownHostsFile=/dev/null",
            "-o",
            f"ConnectTimeout={connect_timeout}",
            "-o",
            "ConnectionAttempts=1",
            "-o",
            "ServerAliveInterval=5",
            "-o",
            "ServerAliveCountMax=3",
            "-o",
            "LogLevel=ERROR",
            "-F",
            "/dev/null",
            f"{user}@{host}",
            "--",
            remote,
        ]

    def ssh(
        self,
        command: str | Sequence[str],
        *,
        check: bool = True,
        timeout: float = 120,
        retries: int = 3,
        retry_delay: float = 3,
        input: str | None = None,
        host: str | None = None,
        user: str | None = None,
        key: Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run `command` on the guest over SSH from inside the namespace.

        A string is passed to the remote shell as is; a list is quoted.
        Connection failures (ssh exit 255) are retried up to `retries` times;
        the remote command's own failures are not.  `timeout` bounds each
        attempt.  With check=True a non-zero exit raises CalledProcessError.
        """
        cmd = self.ssh_command(command, host=host, user=user, key=key)
        attempts = max(1, retries + 1)
        for attempt in range(1, attempts + 1):
            try:
                cp = self.ns.run(cmd, check=False, timeout=timeout, input=input)
            except subprocess.TimeoutExpired:
                if attempt == attempts:
                    raise
                continue
            if cp.returncode != 255 or attempt == attempts:
                break
            time.sleep(retry_delay)
        if check and cp.returncode != 0:
            raise subprocess.CalledProcessError(cp.returncode, cmd, cp.stdout, cp.stderr)
        return cp

    def wait_ssh(self, timeout: float = 300, interval: float = 3) -> float:
        """Wait until SSH logins work (bounded); returns seconds waited."""
        t0 = time.monotonic()
        deadline = t0 + timeout
        last = ""
        while time.monotonic() < deadline:
            if not self.running():
                raise GuestError(f"{self.name}: QEMU exited while waiting for ssh")
            try:
                cp = self.ssh("true", check=False, retries=0, timeout=30)
                if cp.returncode == 0:
                    return time.monotonic() - t0
                last = (cp.stderr or "").strip()
            except subprocess.TimeoutExpired:
                last = "ssh timed out"
            time.sleep(interval)
        raise TimeoutError(f"{self.name}: no ssh after {timeout:.0f} s: {last}")

    def cloud_init_status(self) -> tuple[str, str]:
        """(`status` value, full `cloud-init status --long` output)."""
        cp = self.ssh("cloud-init status --long", check=False)
        m = re.search(r"^status:\s*(\S+)", cp.stdout, re.M)
        return (m.group(1) if m else "unknown"), cp.stdout + cp.stderr

    def put_file(self, remote_path: str, data: str, *, mode: str = "0644", sudo: bool = True) -> None:
        """Write a (text) file on the guest over SSH."""
        q = shlex.quote(remote_path)
        pre = "sudo " if sudo else ""
        self.ssh(f"{pre}install -D -m {shlex.quote(mode)} /dev/stdin {q}", input=data)
