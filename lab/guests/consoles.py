"""Every guest's serial console read by one watcher: each boot's stages as its console shows
them, cloud-init's final line (the guest's own uptime and the datasource it found), and the lines
that mean a boot will never finish. Whoever needs a boot subscribes (the progress display) or
waits (`wait_done`); a guest is armed again on every power-on and reboot, so that boot is
followed from its first console line.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

POLL_SECONDS = 1.0

# "Cloud-init v. 22.4.2 finished at Tue, 25 Nov 2025 06:20:01 +0000.
#  Datasource DataSourceNoCloud [seed=/dev/vdb][dsmode=net].  Up 98.76 seconds"
CLOUD_INIT_FINISHED = re.compile(
    rb"Cloud-init v\. (?P<ver>\S+) finished at (?P<at>[^\r\n]*?)\."
    rb"\s+Datasource (?P<ds>[^\r\n]*?)\.\s+Up (?P<up>[\d.]+) seconds"
)
# Boot stages in the order a guest reaches them, each with what its console shows then. The
# cloud-init stages are its own banners ("Cloud-init v. 22.4.2 running 'init-local' at …"),
# which Debian's units send to the console.
STAGES: list[tuple[str, re.Pattern[bytes]]] = [
    ("kernel", re.compile(rb"Linux version")),
    ("initramfs", re.compile(rb"Run /init as init process")),
    ("systemd", re.compile(rb"Welcome to ")),
    ("cloud-init local", re.compile(rb"running 'init-local'")),
    ("cloud-init network", re.compile(rb"running 'init' ")),
    ("cloud-init config", re.compile(rb"running 'modules:config'")),
    ("cloud-init final", re.compile(rb"running 'modules:final'")),
    # The whole line, not its start: a poll may find it half written.
    ("done", CLOUD_INIT_FINISHED),
]
NOT_STARTED = "firmware"
STAGE_NAMES = [NOT_STARTED, *(name for name, _ in STAGES)]
FATAL = [
    re.compile(rb"Kernel panic - not syncing[^\r\n]*"),
    re.compile(rb"ALERT! [^\r\n]* does not exist\.[^\r\n]*"),  # initramfs: no root
    re.compile(rb"You are in emergency mode[^\r\n]*"),
]


def boot_stage(console: bytes) -> str:
    """The furthest stage the console shows."""
    reached = NOT_STARTED
    for name, pattern in STAGES:
        if pattern.search(console):
            reached = name
    return reached


class GuestError(RuntimeError):
    pass


@dataclass
class Boot:
    """One boot of a guest, from the console bytes after `since`."""

    guest: str
    console_log: Path
    started: float  # the watcher's clock
    since: int = 0  # console bytes before this boot (a rebooted guest's log goes on)
    is_running: Callable[[], bool] = lambda: True
    stage: str = NOT_STARTED
    stages: dict[str, float] = field(default_factory=dict)  # stage -> seconds after start
    done_at: float | None = None
    uptime: float | None = None  # the guest's own "Up N seconds" at cloud-init done
    datasource: str | None = None  # what cloud-init said it found its data in
    failure: str | None = None  # a console line that means this boot will never finish

    @property
    def seconds(self) -> float | None:
        """From the start to cloud-init done."""
        return None if self.done_at is None else self.done_at - self.started

    def console(self) -> bytes:
        try:
            return self.console_log.read_bytes()[self.since :]
        except FileNotFoundError:
            return b""

    def tail(self, lines: int = 30) -> str:
        try:
            text = self.console_log.read_bytes().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


class Subscriber(Protocol):
    def boot_armed(self, boot: Boot) -> None: ...

    def boot_stage(self, boot: Boot, stage: str, now: float) -> None: ...

    def boot_forgotten(self, name: str) -> None: ...


class ConsoleWatcher:
    def __init__(self, *, log: Callable[[str], None] = lambda message: None, clock: Callable[[], float] = time.monotonic) -> None:
        self.log = log
        self.clock = clock
        self.boots: dict[str, Boot] = {}
        self.subscribers: list[Subscriber] = []
        self._lock = threading.RLock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def subscribe(self, subscriber: Subscriber) -> None:
        self.subscribers.append(subscriber)

    def arm(
        self,
        name: str,
        console_log: Path,
        *,
        started: float | None = None,
        since: int | None = None,
        is_running: Callable[[], bool] = lambda: True,
    ) -> Boot:
        """A new boot of `name`, started at `started` (now if not given), read from the console
        offset `since` (the console's size now if not given: a reboot's log goes on)."""
        if since is None:
            try:
                since = console_log.stat().st_size
            except FileNotFoundError:
                since = 0
        boot = Boot(name, console_log, self.clock() if started is None else started, since, is_running)
        with self._lock:
            self.boots[name] = boot
            for subscriber in self.subscribers:
                subscriber.boot_armed(boot)
        return boot

    def forget(self, name: str) -> None:
        with self._lock:
            self.boots.pop(name, None)
            for subscriber in self.subscribers:
                subscriber.boot_forgotten(name)

    def poll(self) -> None:
        """Reads each unfinished boot's console once; tells the subscribers each stage reached."""
        with self._lock:
            now = self.clock()
            for boot in list(self.boots.values()):
                if boot.done_at is not None or boot.failure is not None:
                    continue
                console = boot.console()
                stage = boot_stage(console)
                if stage != boot.stage:
                    # Stages passed between two polls were seen now too.
                    for name in STAGE_NAMES[STAGE_NAMES.index(boot.stage) + 1 : STAGE_NAMES.index(stage) + 1]:
                        boot.stages[name] = round(now - boot.started, 1)
                    boot.stage = stage
                    if stage == "done":
                        self._finished(boot, console, now)
                    for subscriber in self.subscribers:
                        subscriber.boot_stage(boot, stage, now)
                if boot.done_at is None:
                    fatal = next((match for pattern in FATAL if (match := pattern.search(console))), None)
                    if fatal is not None:
                        boot.failure = fatal.group(0).decode(errors="replace")

    def _finished(self, boot: Boot, console: bytes, now: float) -> None:
        finished = CLOUD_INIT_FINISHED.search(console)
        assert finished is not None, "the done stage is this line"
        boot.uptime = float(finished.group("up"))
        boot.datasource = finished.group("ds").decode(errors="replace")
        boot.done_at = now  # last: a waiter that sees it done finds the rest set
        version = finished.group("ver").decode()
        self.log(f"{boot.guest}: cloud-init {version} finished after {now - boot.started:.0f} s (guest uptime {boot.uptime:.0f} s)")

    def wait_done(self, names: Iterable[str], timeout: float) -> dict[str, Boot]:
        """Each named guest's boot once cloud-init has finished (the guests boot at once:
        waiting for them one after the other must not add up). A fatal console line or a domain
        that stopped fails at once."""
        wanted = list(names)
        deadline = time.monotonic() + timeout
        while True:
            self.poll()
            with self._lock:
                boots = {name: self.boots[name] for name in wanted}
            for boot in boots.values():
                if boot.failure is not None:
                    raise GuestError(f"{boot.guest}: {boot.failure}\n--- console tail ---\n{boot.tail()}")
                if boot.done_at is None and not boot.is_running():
                    raise GuestError(f"{boot.guest}: the domain is not running\n--- console tail ({boot.console_log}) ---\n{boot.tail()}")
            waiting = [boot for boot in boots.values() if boot.done_at is None]
            if not waiting:
                return boots
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"cloud-init not done after {timeout:.0f} s on {', '.join(boot.guest for boot in waiting)}\n"
                    + "\n".join(f"--- {boot.guest}: console tail ---\n{boot.tail()}" for boot in waiting)
                )
            time.sleep(POLL_SECONDS)

    # ------------------------------------------------------------------ the polling thread

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="lab-consoles", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(POLL_SECONDS):
            self.poll()
