"""NFS export paths: where an export may be (never in or under the server's own system), how
it is spelled (a portable alphabet, normalised), and that each directory is exported once."""

from __future__ import annotations

import posixpath
import re
from pathlib import PurePosixPath
from typing import Any

from .model import ConfigError
from .reader import _REQUIRED, _Section, _shown

# Export paths: the POSIX portable filename characters and '/', nothing exportfs, fstab, a
# shell or HTML would interpret. NFS3_MAXPATHLEN and NAME_MAX bound the length.
EXPORT_ALPHABET = "[A-Za-z0-9._/-]"
_EXPORT_CHARACTERS = re.compile(f"^{EXPORT_ALPHABET}*$")
_EXPORT_MAX_LENGTH = 1024
_NAME_MAX = 255
# Trees no export may be in or under: exporting them read-write (mode 2775, group www-data)
# exposes or changes the NFS server's own system, or they are emptied at boot.
_SYSTEM_TREES = {
    "/bin": "system programs",
    "/boot": "the boot loader and kernels",
    "/dev": "device files",
    "/etc": "system configuration",
    "/lib": "system libraries",
    "/lib32": "system libraries",
    "/lib64": "system libraries",
    "/libx32": "system libraries",
    "/proc": "the kernel's process filesystem",
    "/root": "root's home directory",
    "/run": "runtime state, emptied at boot",
    "/sbin": "system programs",
    "/sys": "the kernel's sysfs",
    "/tmp": "temporary files, emptied at boot",
    "/usr": "the installed system",
    "/var/backups": "system state",
    "/var/cache": "system state",
    "/var/lib": "system state",
    "/var/lock": "runtime state, emptied at boot",
    "/var/log": "system logs",
    "/var/mail": "system state",
    "/var/run": "runtime state, emptied at boot",
    "/var/spool": "system state",
    "/var/tmp": "temporary files, aged out by systemd-tmpfiles",
}
# Directories that may hold exports but are not one themselves.
_SYSTEM_PARENTS = ("/home", "/media", "/mnt", "/opt", "/srv", "/var")
# Legal but probably a mistake: warn, and say where exports belong.
_DOUBTFUL_TREES = {
    "/home": "home directories are for users",
    "/media": "mount points for removable media",
    "/mnt": "a mount point for temporary filesystems",
    "/var": "variable data of the system and its packages",
}


def _normal_path(key: str, value: Any) -> PurePosixPath:
    """An absolute path in the portable alphabet, normalised: runs of '/' collapsed (normpath
    keeps a leading `//`), '.' and a trailing '/' removed. `..` is refused, not resolved."""
    if value is None:
        raise ConfigError(f"{key}: null given, but a path is required")
    if not isinstance(value, str) or not value.startswith("/"):
        raise ConfigError(f"{key}: {_shown(value)} is not an absolute path")
    if not _EXPORT_CHARACTERS.fullmatch(value):
        raise ConfigError(f"{key}: {_shown(value)} has characters outside {EXPORT_ALPHABET} (letters, digits, '.', '_', '-' and '/')")
    if ".." in value.split("/"):
        raise ConfigError(f"{key}: {_shown(value)} must not contain '..'")
    normalised = posixpath.normpath(re.sub(r"/+", "/", value))
    if len(normalised) > _EXPORT_MAX_LENGTH or any(len(part) > _NAME_MAX for part in normalised.split("/")):
        raise ConfigError(f"{key}: {_shown(value)} is too long (at most {_EXPORT_MAX_LENGTH} characters, {_NAME_MAX} per directory name)")
    return PurePosixPath(normalised)


def _within(path: PurePosixPath, tree: str) -> bool:
    return path == PurePosixPath(tree) or PurePosixPath(tree) in path.parents


def _export_path(key: str, value: Any, admin_user: str) -> tuple[PurePosixPath, str | None]:
    """One `lvs:nfs.exports` entry, normalised and checked; with a warning if it is doubtful."""
    path = _normal_path(key, value)
    place = "exports belong in a directory of their own, such as /srv/<name> or /opt/<name>"
    if path == PurePosixPath("/"):
        raise ConfigError(f"{key}: {_shown(value)} is the filesystem root; {place}")
    for tree, what in _SYSTEM_TREES.items():
        if _within(path, tree):
            where = "is" if path == PurePosixPath(tree) else "is under"
            raise ConfigError(f"{key}: {_shown(value)} {where} {tree} ({what}); {place}")
    if str(path) in _SYSTEM_PARENTS:
        raise ConfigError(f"{key}: {_shown(value)} is {path} itself; {place}")
    home = PurePosixPath("/home") / admin_user
    if _within(path, str(home)):
        raise ConfigError(
            f"{key}: {_shown(value)} is in {home}, the home of lvs:adminUser {_shown(admin_user)}: made group-writable for the export, "
            f"sshd would refuse the Commands' key; {place}"
        )
    for tree, what in _DOUBTFUL_TREES.items():
        if _within(path, tree):
            return path, f"{key}: {_shown(value)} is under {tree} ({what}); exported read-write to the subnet anyway, but {place}"
    return path, None


def _exports(nfs_section: _Section, admin_user: str) -> tuple[tuple[PurePosixPath, ...], list[str]]:
    """`lvs:nfs.exports`, each entry checked and normalised and each directory listed once; with
    the warnings about doubtful ones."""
    warnings: list[str] = []
    raw_exports = nfs_section._get("exports", _REQUIRED)
    if not isinstance(raw_exports, list) or not raw_exports:
        raise ConfigError(f"lvs:nfs.exports: {_shown(raw_exports)} must be a non-empty list of absolute paths")
    checked = [_export_path(f"lvs:nfs.exports[{i}]", value, admin_user) for i, value in enumerate(raw_exports)]
    exports = tuple(path for path, _ in checked)
    warnings.extend(warning for _, warning in checked if warning)
    first_key: dict[PurePosixPath, int] = {}
    for i, path in enumerate(exports):
        if path in first_key:
            j = first_key[path]
            raise ConfigError(
                f"lvs:nfs.exports[{i}]: {_shown(raw_exports[i])} is the same directory as lvs:nfs.exports[{j}] ({_shown(raw_exports[j])}), "
                f"{path}: list each export once"
            )
        first_key[path] = i
    for i, path in enumerate(exports):
        for j, other in enumerate(exports):
            if other in path.parents:
                warnings.append(
                    f"lvs:nfs.exports[{i}]: {_shown(raw_exports[i])} is inside lvs:nfs.exports[{j}] ({_shown(raw_exports[j])}): "
                    f"the web nodes serving {other} serve it too"
                )
    return exports, warnings
