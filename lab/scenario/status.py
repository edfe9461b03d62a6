"""What a run says while it works, and how a unit says it failed: each step and activity shown
(lab/report/progress.py), timed into the report's timings and timeline."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from ..host import runs
from ..report.progress import Progress
from ..report.report import Report

Log = Callable[[str], None]
Show = Callable[[str, Any], None]


class StepFailedError(RuntimeError):
    """A unit or step that cannot go on; its message is the failed check's detail."""


class Status:
    def __init__(self, report: Report, *, log: Log, show: Show, progress: Progress | None) -> None:
        self.report = report
        self.log = log
        self.show = show
        self.progress = progress
        self.started = time.monotonic()

    def elapsed(self) -> float:
        """Seconds since the run started."""
        return round(time.monotonic() - self.started, 1)

    def since_start(self, moment: float) -> float:
        """A time.monotonic() moment as seconds from the run's start."""
        return round(moment - self.started, 1)

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        """A step of the run: shown, timed into the report, ended early by a stop signal."""
        runs.raise_if_stopped()
        started = time.monotonic()
        self.log(f"── {name}")
        if self.progress is not None:
            self.progress.step(name)
        try:
            yield
            runs.raise_if_stopped()
        finally:
            seconds = round(time.monotonic() - started, 1)
            self.report.timings.setdefault("steps", {})[name] = seconds
            self.report.timeline.append({"kind": "step", "name": name, "start_s": self.since_start(started), "seconds": seconds})
            self.show("step", (name, seconds))

    def activity(self, label: str) -> contextlib.AbstractContextManager[None]:
        """Something that blocks for a while, shown while it runs."""
        return self.progress.activity(label) if self.progress is not None else contextlib.nullcontext()
