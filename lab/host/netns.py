"""A network namespace that holds one lab's networks.

Every non-loopback address of the lab lives inside the namespace: the private libvirtd makes
its bridges and tap devices there, and the processes that use them (QEMU, ssh, curl) all run in
it. Nothing is configured in the root namespace.

    with Namespace("lvslab-1") as ns:
        ns.run(["ip", "-br", "addr"])
        proc = ns.popen(["sleep", "300"])

On exit (also on exceptions) the namespace ends, by PID, every process it started and any other
process still inside it, then deletes the namespace itself (and every link in it).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

Log = Callable[[str], None]

_NSNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


def _quiet(msg: str) -> None:
    pass


class NamespaceError(RuntimeError):
    pass


def _ip(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _check(cp: subprocess.CompletedProcess[str], what: str) -> subprocess.CompletedProcess[str]:
    if cp.returncode != 0:
        raise NamespaceError(f"{what} failed (exit {cp.returncode}): {cp.stderr.strip()}")
    return cp


def existing_namespaces() -> list[str]:
    out = _ip("netns", "list").stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def end_process(proc: subprocess.Popen[bytes] | subprocess.Popen[str], *, term_timeout: float = 10) -> int | None:
    """End a process we started, by PID: SIGTERM, then SIGKILL. Returns exit code."""
    if proc.poll() is not None:
        return proc.returncode
    for sig, wait in ((signal.SIGTERM, term_timeout), (signal.SIGKILL, 10)):
        try:
            os.kill(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            return proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
    return proc.poll()


class Namespace:
    """Context manager for a network namespace created (and removed) by us."""

    def __init__(self, name: str, *, log: Log | None = None) -> None:
        if not _NSNAME.match(name):
            raise ValueError(f"bad namespace name {name!r}")
        self.name = name
        self.log = log or _quiet
        self._created = False
        self._procs: list[subprocess.Popen[bytes]] = []

    # ------------------------------------------------------------ lifecycle

    def __enter__(self) -> Namespace:
        self.create()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def create(self) -> None:
        if self.name in existing_namespaces():
            # Not ours: never adopt (or later delete) somebody else's namespace.
            raise NamespaceError(f"network namespace {self.name!r} already exists")
        # Ours from before the add: a stop signal arriving while `ip netns add` runs (it may
        # have made the namespace already) must still find it to remove.
        self._created = True
        try:
            _check(_ip("netns", "add", self.name), f"ip netns add {self.name}")
            self.ip("link", "set", "lo", "up")
        except BaseException:
            self.close()
            raise
        self.log(f"netns {self.name}: created")

    def close(self) -> None:
        """End processes, delete the namespace (and the links in it). Idempotent."""
        if not self._created:
            return
        errors: list[str] = []
        for proc in reversed(self._procs):
            end_process(proc)
        self._procs.clear()
        # Anything else still inside our namespace was started from it.
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while self.pids() and time.monotonic() < deadline:
            time.sleep(0.2)
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for _ in range(20):
            cp = _ip("netns", "del", self.name)
            if cp.returncode == 0 or self.name not in existing_namespaces():
                break
            time.sleep(0.5)
        else:
            errors.append(f"netns del {self.name}: {cp.stderr.strip()}")
        self._created = False
        self.log(f"netns {self.name}: removed")
        if errors:
            raise NamespaceError("; ".join(errors))

    def pids(self) -> list[int]:
        if not self._created:
            return []
        out = _ip("netns", "pids", self.name).stdout
        return [int(x) for x in out.split() if x.isdigit()]

    # ---------------------------------------------------------------- ip

    def ip(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """`ip -n NS ARGS...`, raising NamespaceError on failure."""
        return _check(_ip("-n", self.name, *args, timeout=timeout), f"ip -n {self.name} {' '.join(args)}")

    # ------------------------------------------------------------ processes

    def _wrap(self, cmd: Sequence[str]) -> list[str]:
        if not self._created:
            raise NamespaceError(f"namespace {self.name} is not open")
        return ["ip", "netns", "exec", self.name, *map(str, cmd)]

    def run(
        self,
        cmd: Sequence[str],
        *,
        check: bool = True,
        timeout: float = 60,
        input: str | None = None,
        capture: bool = True,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run a command inside the namespace and wait for it (bounded); text in and out."""
        kw: dict[str, Any] = dict(timeout=timeout, text=True, env=env, cwd=cwd)
        if input is None:
            kw["stdin"] = subprocess.DEVNULL
        else:
            kw["input"] = input
        if capture:
            kw["capture_output"] = True
        full = self._wrap(cmd)
        # subprocess.run kills the child by PID on timeout and re-raises.
        cp = subprocess.run(full, **kw)
        if check and cp.returncode != 0:
            raise subprocess.CalledProcessError(cp.returncode, list(cmd), cp.stdout, cp.stderr)
        return cp

    def popen(self, cmd: Sequence[str], **kw: Any) -> subprocess.Popen[bytes]:
        """Start a command inside the namespace; it is ended on close().

        `ip netns exec` execs the command, so the Popen's pid is the pid of
        the command itself.
        """
        kw.setdefault("stdin", subprocess.DEVNULL)
        proc = subprocess.Popen(self._wrap(cmd), **kw)
        self._procs.append(proc)
        return proc

    def forget(self, proc: subprocess.Popen[bytes]) -> None:
        """Stop tracking a process that has been ended and waited for."""
        if proc in self._procs and proc.poll() is not None:
            self._procs.remove(proc)
