"""What a lab run shows while it works, so that it is never silent: the step under way, each
guest's boot stage (it subscribes to the console watcher, guests/consoles.py), and each Command
or request loop while it runs. On a terminal it is a live table (rich); otherwise (CI, a log
file) it is plain lines: one per guest stage reached, one per Command, and a status line
whenever nothing else was printed for `HEARTBEAT_SECONDS`.

A thread refreshes the display once a second; everything it prints goes through the one rich
Console the run logs to, so lines never interleave mid-line.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from ..guests.consoles import NOT_STARTED, Boot

HEARTBEAT_SECONDS = 30.0
POLL_SECONDS = 1.0


@dataclass
class WatchedGuest:
    name: str
    started: float
    stage: str = NOT_STARTED
    done_at: float | None = None


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

    # ------------------------------------------------------------------ what the consoles tell it

    def boot_armed(self, boot: Boot) -> None:
        with self._lock:
            self.guests[boot.guest] = WatchedGuest(boot.guest, boot.started)

    def boot_stage(self, boot: Boot, stage: str, now: float) -> None:
        with self._lock:
            guest = self.guests.get(boot.guest)
            if guest is None:
                return
            guest.stage = stage
            if stage == "done":
                guest.done_at = now
            if not self.live:
                self.print(f"  {guest.name}: {stage} ({now - guest.started:.0f} s)", markup=False)

    def boot_forgotten(self, name: str) -> None:
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

    # ------------------------------------------------------------------ the display

    def poll(self) -> None:
        """In plain form prints a status line when nothing was printed for HEARTBEAT_SECONDS;
        on a terminal refreshes the live table."""
        with self._lock:
            now = self.clock()
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

    # ------------------------------------------------------------------ the refreshing thread

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
