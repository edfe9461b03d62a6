"""What a lab run shows while it works, so that it is never silent: the step under way, each
guest's boot stage read off its serial console, and each Command or request loop while it
runs. On a terminal it is a live table (rich); otherwise (CI, a log file) it is plain lines:
one per guest stage reached, one per Command, and a status line whenever nothing else was
printed for `HEARTBEAT_SECONDS`.

A thread polls the consoles once a second; everything it prints goes through the one rich
Console the run logs to, so lines never interleave mid-line.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

HEARTBEAT_SECONDS = 30.0
POLL_SECONDS = 1.0

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
    ("done", re.compile(rb"Cloud-init v\. \S+ finished at")),
]
NOT_STARTED = "firmware"
STAGE_NAMES = [NOT_STARTED, *(name for name, _ in STAGES)]


def boot_stage(console: bytes) -> str:
    """The furthest stage the console shows."""
    reached = NOT_STARTED
    for name, pattern in STAGES:
        if pattern.search(console):
            reached = name
    return reached


@dataclass
class WatchedGuest:
    name: str
    console_log: Path
    started: float
    since: int = 0  # console bytes before this boot (a rebooted guest's log goes on)
    stage: str = NOT_STARTED
    done_at: float | None = None
    stages: dict[str, float] = field(default_factory=dict)  # stage -> seconds after start

    def read_stage(self) -> str:
        try:
            return boot_stage(self.console_log.read_bytes()[self.since :])
        except FileNotFoundError:
            return NOT_STARTED


@dataclass
class Activity:
    label: str
    started: float


class Progress:
    def __init__(self, console: Console, *, live: bool | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.console = console
        self.live = console.is_terminal if live is None else live
        self.clock = clock
        self.started = clock()
        self.step_name = ""
        self.step_started = self.started
        self.guests: dict[str, WatchedGuest] = {}
        self.activities: list[Activity] = []
        self.last_output = self.started
        self._lock = threading.RLock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._live: Live | None = None

    # ------------------------------------------------------------------ what the run tells it

    def print(self, renderable: RenderableType, *, markup: bool = True) -> None:
        with self._lock:
            self.console.print(renderable, markup=markup, highlight=False)
            self.last_output = self.clock()

    def step(self, name: str) -> None:
        with self._lock:
            self.step_name = name
            self.step_started = self.clock()

    def watch_guest(self, name: str, console_log: Path, started: float | None = None) -> None:
        """Follows a guest that started at `started` (the clock's time; now if not given)."""
        with self._lock:
            now = self.clock() if started is None else started
            try:
                since = console_log.stat().st_size
            except FileNotFoundError:
                since = 0
            self.guests[name] = WatchedGuest(name, console_log, now, since=since)

    def forget_guest(self, name: str) -> None:
        with self._lock:
            self.guests.pop(name, None)

    @contextmanager
    def activity(self, label: str) -> Iterator[None]:
        """Something that blocks for a while (a Command, a request loop), shown while it runs."""
        entry = Activity(label, self.clock())
        with self._lock:
            self.activities.append(entry)
            if not self.live:
                self.print(f"  … {label}", markup=False)
        try:
            yield
        finally:
            with self._lock:
                self.activities.remove(entry)

    # ------------------------------------------------------------------ polling

    def poll(self) -> None:
        """Reads each guest's console; in plain form prints a line per stage reached and a
        status line when nothing was printed for HEARTBEAT_SECONDS."""
        with self._lock:
            now = self.clock()
            for guest in self.guests.values():
                if guest.done_at is not None:
                    continue
                stage = guest.read_stage()
                if stage == guest.stage:
                    continue
                # Stages passed between two polls were seen now too.
                for name in STAGE_NAMES[STAGE_NAMES.index(guest.stage) + 1 : STAGE_NAMES.index(stage) + 1]:
                    guest.stages[name] = round(now - guest.started, 1)
                guest.stage = stage
                if stage == "done":
                    guest.done_at = now
                if not self.live:
                    self.print(f"  {guest.name}: {stage} ({now - guest.started:.0f} s)", markup=False)
            if not self.live and now - self.last_output >= HEARTBEAT_SECONDS:
                self.print(self.status_line(now), markup=False)
            if self._live is not None:
                self._live.update(self.table(now))

    def status_line(self, now: float) -> str:
        parts = [f"[{now - self.started:.0f} s] {self.step_name or 'starting'} {now - self.step_started:.0f} s"]
        booting = [guest for guest in self.guests.values() if guest.done_at is None]
        if booting:
            parts.append("; ".join(f"{guest.name} {guest.stage} {now - guest.started:.0f} s" for guest in booting))
        for entry in self.activities:
            parts.append(f"{entry.label} {now - entry.started:.0f} s")
        return " | ".join(parts)

    def table(self, now: float) -> Group:
        header = Text(f"{self.step_name or 'starting'}  {now - self.step_started:.0f} s   (run {now - self.started:.0f} s)", style="bold")
        rows: list[Table | Text] = [header]
        booting = [guest for guest in self.guests.values() if guest.done_at is None]
        if booting:
            table = Table(box=None, show_header=True, pad_edge=False)
            for column in ("guest", "stage", "elapsed"):
                table.add_column(column)
            for guest in booting:
                table.add_row(guest.name, guest.stage, f"{now - guest.started:.0f} s")
            rows.append(table)
        rows += [Text(f"  running {entry.label}  {now - entry.started:.0f} s") for entry in self.activities]
        return Group(*rows)

    # ------------------------------------------------------------------ the polling thread

    def __enter__(self) -> Progress:
        if self.live:
            self._live = Live(self.table(self.clock()), console=self.console, refresh_per_second=2, transient=True)
            self._live.start()
        self._thread = threading.Thread(target=self._run, name="lab-progress", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._live is not None:
            self._live.stop()
            self._live = None

    def _run(self) -> None:
        while not self._stop.wait(POLL_SECONDS):
            self.poll()
