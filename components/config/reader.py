"""Typed reads from the raw values: :class:`_Section` names the full key in every error, and
the small readers built on it (a choice among names, a machine size) share its messages."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from ipaddress import IPv4Address
from typing import Any

from .model import DEFAULT_SIZES, ConfigError, MachineSize

# QEMU's i440fx "pc" machine, the one terraform-provider-libvirt v0.8.1 uses: max_cpus 255.
MAX_VCPUS = 255
_REQUIRED: Any = object()


class _Section:
    """Typed reads from one mapping of raw config, with errors that name the full key."""

    def __init__(self, raw: Any, key: str, separator: str = ".") -> None:
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{key}: expected a mapping, got {_shown(raw)}")
        self.raw = raw
        self.key = key
        self.separator = separator
        self._seen: set[str] = set()

    def path(self, name: str) -> str:
        return f"{self.key}{self.separator}{name}"

    def _get(self, name: str, default: Any, shown_default: str | None = None) -> Any:
        """The raw value, or `default` when the key is absent. An explicit null is "absent"
        only where the default is None (not set); elsewhere it is an error, never the default."""
        self._seen.add(name)
        if name not in self.raw:
            if default is _REQUIRED:
                raise ConfigError(f"{self.path(name)}: missing (required)")
            return default
        value = self.raw[name]
        if value is None and default is not None:
            if default is _REQUIRED:
                raise ConfigError(f"{self.path(name)}: null given, but a value is required")
            if shown_default is None:
                shown_default = "the defaults" if isinstance(default, Mapping) else f"the default, {_shown(default)}"
            raise ConfigError(f"{self.path(name)}: null is not a value for this key; remove the key to use {shown_default}")
        return value

    def string(self, name: str, default: Any = _REQUIRED) -> Any:
        value = self._get(name, default)
        if value is not default and not isinstance(value, str):
            raise ConfigError(f"{self.path(name)}: {_shown(value)} is not a string")
        return value

    def integer(self, name: str, default: Any = _REQUIRED, lo: int = 0, hi: int = 2**31) -> int:
        value = self._get(name, default)
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
                value = int(value)
            else:
                raise ConfigError(f"{self.path(name)}: {_shown(value)} is not a whole number")
        if not lo <= value <= hi:
            raise ConfigError(f"{self.path(name)}: {value} is out of range {lo}..{hi}")
        return int(value)

    def boolean(self, name: str, default: bool) -> bool:
        value = self._get(name, default)
        if not isinstance(value, bool):
            if isinstance(value, str) and value.strip().lower() in ("true", "false"):
                return value.strip().lower() == "true"
            raise ConfigError(f"{self.path(name)}: {_shown(value)} is not true or false")
        return value

    def address(self, name: str, default: IPv4Address | None = None) -> IPv4Address:
        value = self._get(name, _REQUIRED if default is None else default, f"the default, {default}")
        if isinstance(value, IPv4Address):
            return value
        if not isinstance(value, str):
            raise ConfigError(f"{self.path(name)}: {_shown(value)} is not a string")
        try:
            return IPv4Address(value.strip())
        except ValueError:
            raise ConfigError(f"{self.path(name)}: {_shown(value)} is not an IPv4 address") from None

    def section(self, name: str, default: Any = _REQUIRED) -> _Section:
        return _Section(self._get(name, default), self.path(name))

    def items(self, name: str) -> Iterator[_Section]:
        value = self._get(name, _REQUIRED)
        if not isinstance(value, list):
            raise ConfigError(f"{self.path(name)}: expected a list, got {_shown(value)}")
        for index, item in enumerate(value):
            yield _Section(item, f"{self.path(name)}[{index}]")

    def reject_unknown(self) -> None:
        unknown = sorted(set(self.raw) - self._seen)
        if unknown:
            raise ConfigError(f"{self.path(unknown[0])}: unknown key (known: {', '.join(sorted(self._seen))})")


def _choice(section: _Section, name: str, default: str, allowed: tuple[str, ...]) -> str:
    value = section.string(name, default)
    if value not in allowed:
        raise ConfigError(f"{section.path(name)}: unknown value {_shown(value)} (one of: {', '.join(allowed)})")
    return str(value)


def _size(section: _Section, role: str) -> MachineSize:
    default = DEFAULT_SIZES[role]
    return MachineSize(
        memory_mib=section.integer("memory", default.memory_mib, lo=128, hi=1 << 20),
        vcpus=section.integer("vcpus", default.vcpus, lo=1, hi=MAX_VCPUS),
    )


def _shown(value: Any, limit: int = 80) -> str:
    """A value as a message shows it: `null` for None, a long string cut in the middle."""
    if value is None:
        return "null"
    if isinstance(value, str) and len(value) > limit:
        value = value[: limit - 13] + "…" + value[-12:]
    return repr(value)
