"""One guest of the lab as the lab watches it: its serial console (a log file libvirt writes)
and SSH from inside the lab's namespace. libvirt runs the domain; this class never starts or
ends a process.

    guest = Guest("seed-web1", workdir, ns, console_log=path, is_running=domain.isActive, ssh_key=key)
    guest.mark_started()
    guest.wait_cloud_init_done(timeout=900)
    guest.ssh("cloud-init status --long", host="192.168.75.50", user="lvsadmin")
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from .netns import Namespace

Log = Callable[[str], None]

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


def _stderr_log(msg: str) -> None:
    print(f"[guest] {msg}", file=sys.stderr, flush=True)


class GuestError(RuntimeError):
    pass


class Guest:
    def __init__(
        self,
        name: str,
        workdir: Path,
        ns: Namespace,
        *,
        console_log: Path,
        is_running: Callable[[], bool],
        ssh_host: str | None = None,
        ssh_user: str | None = None,
        ssh_key: Path | None = None,
        log: Log | None = None,
    ) -> None:
        self.name = name
        self.workdir = Path(workdir).resolve()
        self.ns = ns
        self.console_log = console_log
        self.is_running = is_running
        self.ssh_host = ssh_host
        self.ssh_user = ssh_user
        self.ssh_key = Path(ssh_key) if ssh_key else None
        self.log = log or _stderr_log
        self.known_hosts = self.workdir / "known_hosts"
        self.started_at: float | None = None
        self.boot_seconds: float | None = None  # start -> cloud-init finished
        self.guest_uptime: float | None = None  # the guest's own "Up N seconds"
        self.datasource: str | None = None  # what cloud-init said it found its data in

    def mark_started(self, at: float | None = None) -> None:
        """The domain started at `at` (time.monotonic(); now if not given)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.started_at = time.monotonic() if at is None else at

    def running(self) -> bool:
        return self.is_running()

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
                tail = self.console_tail()
                raise GuestError(f"{self.name}: the domain is not running\n--- console tail ({self.console_log}) ---\n{tail}")
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"{self.name}: {rx.pattern!r} not on console after {timeout:.0f} s\n--- console tail ---\n{self.console_tail()}"
                )
            time.sleep(poll)

    def cloud_init_done(self) -> bool:
        """Has cloud-init's final message reached the console? (Non-blocking: a fatal console
        line or a stopped domain raises, as in `wait_for_console`.)"""
        if self.guest_uptime is not None:
            return True
        try:
            self.wait_cloud_init_done(timeout=0)
        except TimeoutError:
            return False
        return True

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
        self.datasource = m.group("ds").decode(errors="replace")
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

    def cloud_init_status(self) -> tuple[str, str]:
        """(`status` value, full `cloud-init status --long` output)."""
        cp = self.ssh("cloud-init status --long", check=False)
        m = re.search(r"^status:\s*(\S+)", cp.stdout, re.M)
        return (m.group(1) if m else "unknown"), cp.stdout + cp.stderr
