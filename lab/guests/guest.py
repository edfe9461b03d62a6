"""One guest of the lab as the lab knows it: its libvirt domain (whether it runs) and its serial
console (a log file libvirt writes), with the boot the console watcher follows now
(guests/consoles.py). libvirt runs the domain; this class never starts or ends a process. The
lab reaches the nodes over SSH (guests/ssh.py, guests/nodes.py).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .consoles import Boot


class Guest:
    def __init__(self, name: str, *, console_log: Path, is_running: Callable[[], bool], boot: Boot) -> None:
        self.name = name
        self.console_log = console_log
        self.is_running = is_running
        self.boot = boot  # the latest boot: armed again on every power-on and reboot

    @property
    def started_at(self) -> float:
        return self.boot.started

    @property
    def boot_seconds(self) -> float | None:
        """From the domain's start to cloud-init finished, on the watcher's clock."""
        return self.boot.seconds

    @property
    def guest_uptime(self) -> float | None:
        """The guest's own uptime when cloud-init finished."""
        return self.boot.uptime

    @property
    def datasource(self) -> str | None:
        return self.boot.datasource
