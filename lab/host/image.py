"""Base disk image for the lvs-cluster VM lab.

`ensure_image()` returns a Debian 12 (bookworm) root disk (compressed qcow2)
plus the kernel and initrd to boot it directly (`qemu -kernel/-initrd`).

The image is built with mmdebstrap from the recipe in `lab/image-recipe/`:

* `packages.txt`            the package list (one per line, `#` comments)
* `debconf-selections.txt`  debconf answers, set before packages install
* `customize.sh`            mmdebstrap customize hook (runs on the host)
* `overlay/`                files copied into the image (cloud-init config...)

It is cached under `cache_dir/<recipe-hash>/`; the hash covers every recipe
file (names, contents, executable bits) and `BUILD_LOGIC_VERSION`, so any
recipe change builds a new image and an unchanged recipe reuses the old one.
A build runs in a temporary directory next to the cache entry and is renamed
into place only when complete, so a killed build never leaves a half image;
its leftovers are removed by the next call.

Guests use the image read-only as the backing file of their own overlay.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from .apt_sources import SUITE, deb822_stanzas, host_debian_sources

RECIPE_DIR = Path(__file__).resolve().parents[1] / "image-recipe"
# Bump when the build steps in this file change in a way that changes images.
BUILD_LOGIC_VERSION = "1"
DEFAULT_CACHE_DIR = Path.home() / ".cache" / "lvs-cluster"

ROOT_DISK_NAME = "root.qcow2"
KERNEL_NAME = "vmlinuz"
INITRD_NAME = "initrd.img"
MANIFEST_NAME = "manifest.json"

# Bounds for the slow steps (seconds).
MMDEBSTRAP_TIMEOUT = 3600
MKFS_TIMEOUT = 900
CONVERT_TIMEOUT = 1800
# The filesystem is at least this big (the raw file is sparse and the qcow2
# only stores used blocks, so free space costs nothing on the host).
MIN_FS_BYTES = 4 << 30

Log = Callable[[str], None]


def _stderr_log(msg: str) -> None:
    print(f"[image] {msg}", file=sys.stderr, flush=True)


@dataclasses.dataclass(frozen=True)
class BaseImage:
    """A built base image; all paths are inside `directory`."""

    directory: Path
    root_disk: Path  # qcow2, ext4 filesystem on the whole disk (/dev/vda)
    kernel: Path
    initrd: Path
    recipe_hash: str
    built: bool  # True if this call built it, False if it was reused
    build_seconds: float  # time of this call's build (0.0 when reused)
    kernel_version: str = ""
    root_device: str = "/dev/vda"

    def default_kernel_args(self) -> str:
        """Kernel command line that boots this image under QEMU."""
        return f"root={self.root_device} rw console=ttyS0,115200"


class ImageBuildError(RuntimeError):
    pass


# ---------------------------------------------------------------- recipe


def recipe_files(recipe_dir: Path = RECIPE_DIR) -> list[Path]:
    return sorted(p for p in recipe_dir.rglob("*") if p.is_file() and "__pycache__" not in p.parts)


def read_packages(recipe_dir: Path = RECIPE_DIR) -> list[str]:
    pkgs: list[str] = []
    for line in (recipe_dir / "packages.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            pkgs.extend(line.split())
    return pkgs


def recipe_hash(recipe_dir: Path = RECIPE_DIR) -> str:
    h = hashlib.sha256()
    h.update(f"lvs-cluster-image\0{BUILD_LOGIC_VERSION}\0{SUITE}\0".encode())
    h.update(("\n".join(read_packages(recipe_dir)) + "\0").encode())
    for p in recipe_files(recipe_dir):
        rel = p.relative_to(recipe_dir).as_posix()
        executable = "x" if os.access(p, os.X_OK) else "-"
        data = p.read_bytes()
        h.update(f"{rel}\0{executable}\0{len(data)}\0".encode())
        h.update(data)
    return h.hexdigest()[:16]


# ----------------------------------------------------------------- helpers


def _die_with_parent() -> None:
    """preexec_fn: SIGTERM this child if the Python process dies."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def _run(cmd: list[str], *, timeout: float, log_file: Path, log: Log, what: str, pid_file: Path | None = None) -> None:
    """Run cmd in its own process group, output appended to log_file.

    On timeout (or if we are interrupted) the whole group is ended; if this
    process is killed outright, the child gets SIGTERM (PR_SET_PDEATHSIG).
    """
    log(f"{what}: {' '.join(shlex.quote(c) for c in cmd[:6])}{' ...' if len(cmd) > 6 else ''}")
    with open(log_file, "ab") as lf:
        lf.write(f"\n### {what}: {shlex.join(cmd)}\n".encode())
        lf.flush()
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=lf,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        if pid_file:
            pid_file.write_text(f"{proc.pid}\n")
        try:
            rc = proc.wait(timeout=timeout)
        except BaseException:
            _kill_group(proc)
            raise
    if rc != 0:
        tail = _tail(log_file, 40)
        raise ImageBuildError(f"{what} failed (exit {rc}); last lines of {log_file}:\n{tail}")


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    # The group was created by start_new_session: its id is proc.pid.
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=15)
            return
        except subprocess.TimeoutExpired:
            continue


def _tail(path: Path, n: int) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


def _mounts_under(path: Path) -> list[str]:
    prefix = str(path.resolve()).rstrip("/") + "/"
    found = []
    with open("/proc/self/mounts") as f:
        for line in f:
            mnt = line.split()[1].replace("\\040", " ")
            if mnt.startswith(prefix):
                found.append(mnt)
    return sorted(found, key=len, reverse=True)


def _remove_tree(path: Path) -> None:
    """rm -rf that never crosses into something mounted inside `path`."""
    if not path.exists():
        return
    for mnt in _mounts_under(path):
        subprocess.run(["umount", "-l", mnt], check=False, timeout=60)
    if _mounts_under(path):
        raise ImageBuildError(f"cannot remove {path}: still has mounts inside")
    subprocess.run(["rm", "-rf", "--one-file-system", str(path)], check=True, timeout=600)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _clean_stale_builds(cache_dir: Path, log: Log) -> None:
    for p in cache_dir.glob(".build-*"):
        try:
            pid = int(p.name.split("-")[1])
        except (IndexError, ValueError):
            continue
        if pid != os.getpid() and _pid_alive(pid):
            continue
        # The dead build's child (mmdebstrap) got SIGTERM when it died and
        # may take a little while to stop writing there: wait (bounded).
        try:
            child = int((p / "child.pid").read_text())
        except (OSError, ValueError):
            child = 0
        deadline = time.monotonic() + 180
        while child and _pid_alive(child) and time.monotonic() < deadline:
            time.sleep(1)
        log(f"removing leftover of an interrupted build: {p}")
        _remove_tree(p)


def _find_boot_file(rootfs: Path, prefix: str) -> Path:
    cands = sorted((rootfs / "boot").glob(prefix + "-*"))
    if len(cands) != 1:
        raise ImageBuildError(f"expected one /boot/{prefix}-*, found {cands}")
    return cands[0]


def _installed_packages(rootfs: Path) -> dict[str, str]:
    status = (rootfs / "var/lib/dpkg/status").read_text(errors="replace")
    pkgs = {}
    for st in deb822_stanzas(status):
        if st.get("Status", "").endswith(" installed"):
            pkgs[st["Package"]] = st.get("Version", "")
    return dict(sorted(pkgs.items()))


def _load(final: Path, h: str, *, built: bool, seconds: float) -> BaseImage | None:
    manifest = final / MANIFEST_NAME
    paths = [final / ROOT_DISK_NAME, final / KERNEL_NAME, final / INITRD_NAME]
    if not manifest.is_file() or not all(p.is_file() for p in paths):
        return None
    try:
        meta = json.loads(manifest.read_text())
    except (OSError, ValueError):
        return None
    if meta.get("recipe_hash") != h:
        return None
    return BaseImage(
        directory=final,
        root_disk=paths[0],
        kernel=paths[1],
        initrd=paths[2],
        recipe_hash=h,
        built=built,
        build_seconds=seconds,
        kernel_version=meta.get("kernel_version", ""),
    )


# ------------------------------------------------------------------- build


def _build(work: Path, out: Path, h: str, log: Log) -> str:
    """Build the image files into `out` (inside `work`); returns kernel version."""
    build_log = out / "build.log"
    rootfs = work / "rootfs"
    sources = work / "debian.sources"
    sources.write_text(host_debian_sources())
    pkgs = read_packages()
    preseed = RECIPE_DIR / "debconf-selections.txt"
    customize = RECIPE_DIR / "customize.sh"

    log(f"mmdebstrap {SUITE} ({len(pkgs)} packages) -> {rootfs}; log: {build_log}")
    # A private mount namespace: whatever mmdebstrap mounts in the chroot
    # (proc, sys, dev) disappears with it, even if it is killed.
    cmd = [
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "--",
        "mmdebstrap",
        "--mode=root",
        "--variant=minbase",
        "--format=directory",
        "--include=" + ",".join(pkgs),
        '--aptopt=Acquire::Languages "none"',
        "--dpkgopt=path-exclude=/usr/share/locale/*",
        "--dpkgopt=path-include=/usr/share/locale/locale.alias",
        '--essential-hook=chroot "$1" debconf-set-selections < ' + shlex.quote(str(preseed)),
        "--customize-hook=" + shlex.quote(str(customize)) + ' "$1"',
        SUITE,
        str(rootfs),
        str(sources),
    ]
    _run(cmd, timeout=MMDEBSTRAP_TIMEOUT, log_file=build_log, log=log, what="mmdebstrap", pid_file=work / "child.pid")
    if _mounts_under(work):
        raise ImageBuildError(f"mounts left under {work}: {_mounts_under(work)}")

    kernel = _find_boot_file(rootfs, "vmlinuz")
    initrd = _find_boot_file(rootfs, "initrd.img")
    kver = kernel.name[len("vmlinuz-") :]
    shutil.copyfile(kernel, out / KERNEL_NAME)
    shutil.copyfile(initrd, out / INITRD_NAME)
    installed = _installed_packages(rootfs)

    used = int(
        subprocess.run(
            ["du", "-sxb", str(rootfs)],
            check=True,
            capture_output=True,
            text=True,
            timeout=300,
        ).stdout.split()[0]
    )
    fs_bytes = max(MIN_FS_BYTES, used * 2)
    fs_bytes = (fs_bytes + (1 << 20) - 1) >> 20 << 20
    raw = work / "root.raw"
    with open(raw, "wb") as f:
        f.truncate(fs_bytes)
    _run(
        ["mkfs.ext4", "-q", "-F", "-L", "lvs-root", "-d", str(rootfs), str(raw)],
        timeout=MKFS_TIMEOUT,
        log_file=build_log,
        log=log,
        what="mkfs.ext4",
    )
    _remove_tree(rootfs)

    _run(
        ["qemu-img", "convert", "-c", "-O", "qcow2", "-o", "compression_type=zstd", str(raw), str(out / ROOT_DISK_NAME)],
        timeout=CONVERT_TIMEOUT,
        log_file=build_log,
        log=log,
        what="qemu-img convert",
    )
    raw.unlink()
    for p in (out / ROOT_DISK_NAME, out / KERNEL_NAME, out / INITRD_NAME):
        p.chmod(0o444)

    manifest = {
        "recipe_hash": h,
        "suite": SUITE,
        "kernel_version": kver,
        "filesystem_bytes": fs_bytes,
        "rootfs_used_bytes": used,
        "recipe_packages": pkgs,
        "installed_packages": installed,
    }
    (out / MANIFEST_NAME).write_text(json.dumps(manifest, indent=1) + "\n")
    return kver


def ensure_image(cache_dir: Path = DEFAULT_CACHE_DIR, log: Log | None = None) -> BaseImage:
    """Return the base image for the current recipe, building it if needed.

    Concurrent callers are serialised by a lock file; only one builds.
    """
    log = log or _stderr_log
    cache_dir = Path(cache_dir).expanduser().resolve()
    cache_dir.mkdir(parents=True, exist_ok=True)
    h = recipe_hash()
    final = cache_dir / h

    img = _load(final, h, built=False, seconds=0.0)
    if img:
        log(f"reusing image {final}")
        return img

    with open(cache_dir / f".{h}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        img = _load(final, h, built=False, seconds=0.0)  # built while we waited
        if img:
            log(f"reusing image {final}")
            return img
        _clean_stale_builds(cache_dir, log)
        if final.exists():  # incomplete or foreign content: never trust it
            log(f"removing invalid cache entry {final}")
            _remove_tree(final)

        t0 = time.monotonic()
        work = Path(tempfile.mkdtemp(prefix=f".build-{os.getpid()}-{h}-", dir=cache_dir))
        try:
            out = work / "out"
            out.mkdir()
            _build(work, out, h, log)
            seconds = time.monotonic() - t0
            meta = json.loads((out / MANIFEST_NAME).read_text())
            meta["build_seconds"] = round(seconds, 1)
            (out / MANIFEST_NAME).write_text(json.dumps(meta, indent=1) + "\n")
            os.rename(out, final)  # atomic: same filesystem
        except BaseException:
            failed_log = work / "out" / "build.log"
            if failed_log.exists():
                shutil.copyfile(failed_log, cache_dir / "last-failed-build.log")
                log(f"build failed; log kept at {cache_dir / 'last-failed-build.log'}")
            raise
        finally:
            _remove_tree(work)
        log(f"built image {final} in {seconds:.0f} s")

    img = _load(final, h, built=True, seconds=seconds)
    if img is None:
        raise ImageBuildError(f"image at {final} is incomplete after build")
    return img


if __name__ == "__main__":
    t = time.monotonic()
    image = ensure_image()
    print(f"recipe hash : {image.recipe_hash}")
    print(f"built       : {image.built} ({image.build_seconds:.1f} s)")
    print(f"root disk   : {image.root_disk} ({image.root_disk.stat().st_size >> 20} MiB)")
    print(f"kernel      : {image.kernel} ({image.kernel_version})")
    print(f"initrd      : {image.initrd}")
    print(f"elapsed     : {time.monotonic() - t:.1f} s")
