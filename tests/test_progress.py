"""The lab's progress output when it is not on a terminal (CI, a log file): a line per boot
stage each guest reaches, read off its console by the one console watcher, a line per Command as
it starts, and a status line whenever nothing else was printed for 30 s. The clock is the
test's own."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from lab.guests.consoles import ConsoleWatcher, GuestError, boot_stage
from lab.report.progress import HEARTBEAT_SECONDS, Progress

# Lines as a Debian 12 guest of the lab prints them on its serial console.
KERNEL = b"[    0.000000] Linux version 6.1.0-56-cloud-amd64 (debian-kernel@lists.debian.org)\n"
INIT = b"[    4.942446] Run /init as init process\n"
SYSTEMD = b"Welcome to \x1b[1mDebian GNU/Linux 12 (bookworm)\x1b[0m!\n"
LOCAL = b"[   30.1] cloud-init[250]: Cloud-init v. 22.4.2 running 'init-local' at Thu, 26 Nov 2026 10:20:01 +0000. Up 30.10 seconds.\n"
NETWORK = b"[   41.2] cloud-init[310]: Cloud-init v. 22.4.2 running 'init' at Thu, 26 Nov 2026 10:20:12 +0000. Up 41.20 seconds.\n"
CONFIG = b"[   70.3] cloud-init[400]: Cloud-init v. 22.4.2 running 'modules:config' at Thu, 26 Nov 2026 10:20:41 +0000. Up 70.30 seconds.\n"
FINAL = b"[   80.4] cloud-init[420]: Cloud-init v. 22.4.2 running 'modules:final' at Thu, 26 Nov 2026 10:20:51 +0000. Up 80.40 seconds.\n"
DONE = (
    b"[   95.0] cloud-init[420]: Cloud-init v. 22.4.2 finished at Thu, 26 Nov 2026 10:21:05 +0000. "
    b"Datasource DataSourceNoCloud [seed=/dev/sr0][dsmode=net].  Up 95.00 seconds\n"
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Watched:
    """The progress display subscribed to a console watcher, both on the test's clock."""

    def __init__(self) -> None:
        self.output = io.StringIO()
        self.clock = Clock()
        self.progress = Progress(Console(file=self.output, force_terminal=False, width=200), clock=self.clock)
        self.consoles = ConsoleWatcher(clock=self.clock)
        self.consoles.subscribe(self.progress)

    def poll(self) -> None:
        """What each second's threads do: read the consoles, then refresh the display."""
        self.consoles.poll()
        self.progress.poll()


def plain_progress() -> tuple[Progress, io.StringIO, Clock]:
    watched = Watched()
    return watched.progress, watched.output, watched.clock


def test_the_plain_form_is_chosen_off_a_terminal() -> None:
    progress, _, _ = plain_progress()
    assert progress.live is False


def test_boot_stages_in_order() -> None:
    console = b""
    seen = [boot_stage(console)]
    for chunk in (KERNEL, INIT, SYSTEMD, LOCAL, NETWORK, CONFIG, FINAL, DONE):
        console += chunk
        seen.append(boot_stage(console))
    assert seen == [
        "firmware",
        "kernel",
        "initramfs",
        "systemd",
        "cloud-init local",
        "cloud-init network",
        "cloud-init config",
        "cloud-init final",
        "done",
    ]


def test_a_line_per_stage_reached_with_the_elapsed_time(tmp_path: Path) -> None:
    watched = Watched()
    output, clock = watched.output, watched.clock
    console = tmp_path / "seed-web1.log"
    watched.consoles.arm("seed-web1", console)
    console.write_bytes(KERNEL)
    clock.now += 2
    watched.poll()
    with console.open("ab") as growing:
        growing.write(INIT + SYSTEMD + LOCAL)
    clock.now += 28
    watched.poll()
    watched.poll()  # nothing new: nothing printed
    assert output.getvalue().splitlines() == ["  seed-web1: kernel (2 s)", "  seed-web1: cloud-init local (30 s)"]


def test_a_rebooted_guest_is_read_from_where_its_console_stood(tmp_path: Path) -> None:
    watched = Watched()
    output, clock = watched.output, watched.clock
    console = tmp_path / "seed-director.log"
    console.write_bytes(KERNEL + INIT + SYSTEMD + LOCAL + NETWORK + CONFIG + FINAL + DONE)
    watched.consoles.arm("seed-director", console)  # armed again for the reboot
    clock.now += 1
    watched.poll()
    assert output.getvalue() == ""
    with console.open("ab") as growing:
        growing.write(KERNEL)
    clock.now += 1
    watched.poll()
    assert output.getvalue().splitlines() == ["  seed-director: kernel (2 s)"]


def test_a_status_line_when_nothing_was_printed_for_the_heartbeat(tmp_path: Path) -> None:
    watched = Watched()
    progress, output, clock = watched.progress, watched.output, watched.clock
    progress.step("boot")
    watched.consoles.arm("seed-nfs", tmp_path / "seed-nfs.log")
    (tmp_path / "seed-nfs.log").write_bytes(KERNEL)
    clock.now += 1
    watched.poll()
    clock.now += HEARTBEAT_SECONDS - 2
    progress.poll()
    assert len(output.getvalue().splitlines()) == 1  # the stage line only: not yet silent for long
    clock.now += 2
    progress.poll()
    lines = output.getvalue().splitlines()
    assert (
        lines[-1] == f"[{HEARTBEAT_SECONDS + 1:.0f} s] boot {HEARTBEAT_SECONDS + 1:.0f} s | seed-nfs kernel {HEARTBEAT_SECONDS + 1:.0f} s"
    )
    clock.now += HEARTBEAT_SECONDS
    progress.poll()
    assert len(output.getvalue().splitlines()) == 3  # silent again for as long: another status line


def test_a_running_command_is_announced_and_named_in_the_status_line() -> None:
    progress, output, clock = plain_progress()
    progress.step("create")
    with progress.activity("create director-ready"):
        clock.now += HEARTBEAT_SECONDS
        progress.poll()
    progress.poll()
    clock.now += HEARTBEAT_SECONDS
    progress.poll()
    lines = output.getvalue().splitlines()
    assert lines[0] == "  … create director-ready"
    assert lines[1].endswith(f"| create director-ready {HEARTBEAT_SECONDS:.0f} s")
    assert "director-ready" not in lines[2]  # finished: no longer named


def test_a_guest_that_is_done_leaves_the_status_line(tmp_path: Path) -> None:
    watched = Watched()
    watched.progress.step("boot")
    for name in ("seed-web1", "seed-web2"):
        watched.consoles.arm(name, tmp_path / f"{name}.log")
    (tmp_path / "seed-web1.log").write_bytes(KERNEL + DONE)
    (tmp_path / "seed-web2.log").write_bytes(KERNEL + INIT)
    watched.clock.now += HEARTBEAT_SECONDS
    watched.poll()
    watched.clock.now += HEARTBEAT_SECONDS
    watched.poll()
    status = watched.output.getvalue().splitlines()[-1]
    assert "seed-web2 initramfs" in status and "seed-web1" not in status
    assert watched.consoles.boots["seed-web1"].stages["done"] == HEARTBEAT_SECONDS


def test_a_finished_boot_says_the_guests_uptime_and_where_cloud_init_found_its_data(tmp_path: Path) -> None:
    watched = Watched()
    console = tmp_path / "seed-web1.log"
    console.write_bytes(KERNEL + INIT + SYSTEMD + LOCAL + NETWORK + CONFIG + FINAL + DONE)
    watched.consoles.arm("seed-web1", console, since=0)
    boot = watched.consoles.wait_done(["seed-web1"], timeout=5)["seed-web1"]
    assert (boot.uptime, boot.datasource) == (95.0, "DataSourceNoCloud [seed=/dev/sr0][dsmode=net]")


def test_a_boot_that_can_never_finish_fails_the_wait_at_once(tmp_path: Path) -> None:
    watched = Watched()
    console = tmp_path / "seed-web1.log"
    console.write_bytes(KERNEL + b"[    5.1] Kernel panic - not syncing: VFS: Unable to mount root fs\n")
    watched.consoles.arm("seed-web1", console, since=0)
    with pytest.raises(GuestError, match="seed-web1: Kernel panic - not syncing: VFS"):
        watched.consoles.wait_done(["seed-web1"], timeout=60)


def test_a_domain_that_stopped_fails_the_wait_at_once(tmp_path: Path) -> None:
    watched = Watched()
    console = tmp_path / "seed-web1.log"
    console.write_bytes(KERNEL)
    watched.consoles.arm("seed-web1", console, since=0, is_running=lambda: False)
    with pytest.raises(GuestError, match="seed-web1: the domain is not running"):
        watched.consoles.wait_done(["seed-web1"], timeout=60)


def test_a_half_written_last_line_is_not_yet_done(tmp_path: Path) -> None:
    watched = Watched()
    console = tmp_path / "seed-web1.log"
    console.write_bytes(KERNEL + FINAL + DONE[:60])
    watched.consoles.arm("seed-web1", console, since=0)
    watched.poll()
    assert watched.consoles.boots["seed-web1"].stage == "cloud-init final"
    with console.open("ab") as growing:
        growing.write(DONE[60:])
    boot = watched.consoles.wait_done(["seed-web1"], timeout=5)["seed-web1"]
    assert (boot.stage, boot.uptime) == ("done", 95.0)
