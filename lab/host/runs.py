"""How a lab run stops, and what it leaves for `lab down` to find.

Every run (`verify`, `up`) records itself in `~/.cache/lvs-cluster/runs/<namespace>.json`:
its PID, network namespace and work directory. A run that ends normally, fails, or is
stopped by SIGINT, SIGTERM or SIGHUP tears down what it started (daemons, guests, namespace,
work directory) and removes its record; `lab up` keeps its record on purpose. What a SIGKILL
or a power cut leaves is found from the records whose process is gone: `lab down` removes it,
touching only what the record names (daemons by their PID files, checked by process name;
processes inside the run's own namespace; the namespace; the work directory).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType

from .image import DEFAULT_CACHE_DIR

Log = Callable[[str], None]
RUNS_DIR = DEFAULT_CACHE_DIR / "runs"
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
DAEMONS = ("libvirtd", "virtlogd")


class Stopped(BaseException):
    """A stop signal arrived: unwind, tearing down on the way out."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


_shielded = 0
_deferred = 0
_stop_requested: int | None = None


def _on_signal(signum: int, frame: FrameType | None) -> None:
    global _stop_requested
    if _shielded:
        # Teardown is under way: finish it rather than abandon it halfway.
        print(f"lab: {signal.Signals(signum).name} during teardown; finishing the teardown", flush=True)
        return
    _stop_requested = signum
    if _deferred:
        return  # raised when the deferred section ends
    raise Stopped(signum)


def raise_if_stopped() -> None:
    """A checkpoint: a Stopped that a library swallowed or wrapped (an asyncio task keeps it
    as its result, Python 3.11 wraps it in RuntimeError inside `__set_name__`) still stops
    the run here."""
    if _stop_requested is not None:
        raise Stopped(_stop_requested)


def with_stop_signals_default() -> None:
    """For a child the tests start (`preexec_fn`): the stop signals as an interactive shell
    gives them, whatever this process inherited (nohup ignores SIGHUP, a background job SIGINT,
    and install_stop_handlers keeps a signal ignored)."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, signal.SIG_DFL)


def install_stop_handlers() -> None:
    """SIGINT, SIGTERM and SIGHUP stop the run like a failure does. A signal the process was
    started ignoring (a background job's SIGINT, nohup's SIGHUP) stays ignored."""
    for signum in STOP_SIGNALS:
        if signal.getsignal(signum) is not signal.SIG_IGN:
            signal.signal(signum, _on_signal)


@contextlib.contextmanager
def shielded() -> Iterator[None]:
    """Teardown: a stop signal arriving now is noted, not obeyed."""
    global _shielded
    _shielded += 1
    try:
        yield
    finally:
        _shielded -= 1


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """A section a stop must not cut short: Pulumi's engine under mocks waits forever on a
    registration that an exception raised inside it broke. A stop arriving now is raised
    when the section ends."""
    global _deferred
    _deferred += 1
    try:
        yield
    finally:
        _deferred -= 1
    if not _deferred:
        raise_if_stopped()


@dataclass(frozen=True)
class RunRecord:
    kind: str  # verify or up
    pid: int
    namespace: str
    workdir: str
    started: float

    @property
    def path(self) -> Path:
        return RUNS_DIR / f"{self.namespace}.json"

    def alive(self) -> bool:
        """The recording process still runs (and is still a lab run, not a reused PID)."""
        try:
            command = Path(f"/proc/{self.pid}/cmdline").read_bytes().split(b"\0")
        except FileNotFoundError:
            return False
        # `python -m lab …`: a zombie's command line is empty, another program's differs.
        return Path(command[0].decode(errors="replace")).name.startswith("python") and b"lab" in command


def register(kind: str, namespace: str, workdir: Path) -> RunRecord:
    record = RunRecord(kind, os.getpid(), namespace, str(workdir), time.time())
    RUNS_DIR.mkdir(parents=True, exist_ok=True)
    record.path.write_text(json.dumps(asdict(record), indent=2))
    return record


def unregister(record: RunRecord) -> None:
    record.path.unlink(missing_ok=True)


def records() -> list[RunRecord]:
    found = []
    for path in sorted(RUNS_DIR.glob("*.json")) if RUNS_DIR.exists() else []:
        with contextlib.suppress(ValueError, TypeError, KeyError):
            found.append(RunRecord(**json.loads(path.read_text())))
    return found


def leftovers() -> list[RunRecord]:
    """Runs whose process is gone but whose record is not: what `lab down` removes."""
    return [record for record in records() if not record.alive()]


def clean(record: RunRecord, log: Log) -> None:
    """Removes what one run left: only what its record names."""
    with shielded():
        workdir = Path(record.workdir)
        for name in DAEMONS:
            with contextlib.suppress(FileNotFoundError, ValueError):
                pid = int((workdir / "libvirt" / f"{name}.pid").read_text().strip())
                if process_name(pid) == name:
                    _end(pid)
                    log(f"{name} {pid} ended")
        if record.namespace in _namespaces():
            pids = subprocess.run(["ip", "netns", "pids", record.namespace], capture_output=True, text=True, check=False).stdout.split()
            for pid in map(int, pids):
                _end(pid)
                log(f"process {pid} in {record.namespace} ended")
            subprocess.run(["ip", "netns", "delete", record.namespace], check=False)
            log(f"namespace {record.namespace} removed")
        if workdir.exists():
            shutil.rmtree(workdir, ignore_errors=True)
            log(f"{workdir} removed")
        unregister(record)


def _namespaces() -> list[str]:
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False).stdout
    return [line.split()[0] for line in listed.splitlines() if line.strip()]


def process_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except FileNotFoundError:
        return ""


def _end(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        if Path(f"/proc/{pid}").exists():
            os.kill(pid, signal.SIGKILL)
