"""Which accelerator the lab's guests get: KVM where it works, software emulation (TCG)
otherwise. `/dev/kvm` existing proves nothing (here it exists and a KVM guest hangs before
its first instruction), so the probe boots the lab's own kernel under KVM with no root disk:
a working KVM prints the kernel banner and reaches the kernel's "no root" panic within a
second or two, and QEMU exits there (`-no-reboot`). The probe is bounded and ended by PID.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

PROBE_TIMEOUT_SECONDS = 15.0
KVM_DEVICE = Path("/dev/kvm")
# What a booting kernel prints first on the serial console.
KERNEL_BANNER = b"Linux version"


@dataclass(frozen=True)
class Accel:
    name: str  # "kvm" or "tcg": the report's "accel"
    reason: str
    probe_seconds: float = 0.0

    @property
    def domain_type(self) -> str:
        """The libvirt domain type that runs guests with it."""
        return "kvm" if self.name == "kvm" else "qemu"


def choose_accel(
    kernel: Path, *, timeout: float = PROBE_TIMEOUT_SECONDS, device: Path = KVM_DEVICE, remembered: Path | None = None
) -> Accel:
    """KVM if it works, else TCG, with the reason. A probe's result is remembered in
    `remembered` for the rest of the machine's boot (its kernel boot id): KVM does not start
    or stop working between two runs, and a hanging KVM costs the probe's whole timeout."""
    if os.environ.get("LVS_LAB_ACCEL") == "tcg":
        return Accel("tcg", "LVS_LAB_ACCEL=tcg asks for software emulation")
    if not device.exists():
        return Accel("tcg", f"{device} does not exist: no hardware virtualisation")
    if not os.access(device, os.R_OK | os.W_OK):
        return Accel("tcg", f"{device} is not readable and writable by this user")
    boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    if remembered is not None:
        with contextlib.suppress(FileNotFoundError, ValueError, KeyError, TypeError):
            known = json.loads(remembered.read_text())
            if known["bootId"] == boot_id:
                return Accel(known["name"], f"{known['reason']} (probed earlier in this boot of the machine)")
    accel = probe_kvm(kernel, timeout=timeout)
    if remembered is not None:
        remembered.parent.mkdir(parents=True, exist_ok=True)
        remembered.write_text(json.dumps({"bootId": boot_id, "name": accel.name, "reason": accel.reason}))
    return accel


def probe_kvm(kernel: Path, *, timeout: float) -> Accel:
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="lvs-lab-kvm-probe-") as scratch:
        console = Path(scratch) / "console.log"
        argv = [
            "qemu-system-x86_64",
            "-accel",
            "kvm",
            "-m",
            "256",
            "-nodefaults",
            "-display",
            "none",
            "-no-reboot",
            "-nic",
            "none",
            "-kernel",
            str(kernel),
            "-append",
            "console=ttyS0 panic=-1",
            "-serial",
            f"file:{console}",
        ]
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            _, stderr = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.communicate()
            printed = console.exists() and KERNEL_BANNER in console.read_bytes()
            seen = "printed its banner but did not finish booting" if printed else "printed nothing"
            return Accel("tcg", f"a KVM guest {seen} within {timeout:.0f} s (KVM hangs here)", time.monotonic() - started)
        except BaseException:
            process.kill()
            process.communicate()
            raise
        seconds = time.monotonic() - started
        if console.exists() and KERNEL_BANNER in console.read_bytes():
            return Accel("kvm", f"a KVM guest booted its kernel in {seconds:.1f} s", seconds)
        detail = stderr.decode(errors="replace").strip().splitlines()[-1:] or [f"exit status {process.returncode}"]
        return Accel("tcg", f"KVM failed: {detail[0]}", seconds)
