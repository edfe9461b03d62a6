"""Names: what a node, a libvirt object or a volume may be called, and that no two things the
stack registers share one (Pulumi and libvirt would refuse the second without naming a key)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar

from .model import ConfigError
from .reader import _REQUIRED, _Section, _shown

_HOSTNAME_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_LIBVIRT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
T = TypeVar("T")


def _hostname(section: _Section, name: str = "name", default: Any = _REQUIRED) -> str:
    value = section.string(name, default)
    if not _HOSTNAME_LABEL.fullmatch(value):
        raise ConfigError(
            f"{section.path(name)}: {_shown(value)} is not usable as a hostname "
            "(lowercase letters, digits and '-', at most 63, not starting or ending with '-')"
        )
    return str(value)


def _unique_volumes(stack: str, names: list[tuple[str, str]]) -> None:
    """Every volume of the stack in its pool: the base image's, and each node's root volume
    and cloud-init ISO (components/image.py, components/vm.py). No two may share a name."""
    volumes = {f"{stack}-base.qcow2": "the base image's volume (lvs:image)"}
    for key, node in names:
        for volume, what in ((f"{stack}-{node}.qcow2", "root volume"), (f"{stack}-{node}-seed.iso", "cloud-init disk")):
            if volume in volumes:
                raise ConfigError(f"{key}: {_shown(node)} would name its {what} {_shown(volume)}, which is {volumes[volume]}; rename it")
            volumes[volume] = f"the {what} of {key}"


def keepalived_command_names(director: str, web_servers: list[str]) -> dict[str, str]:
    """The names `KeepalivedDirector` (components/keepalived.py) gives its Commands, each with
    the web server it is for ("" for the director's own): one family for every director,
    registered side by side, so one director's names must not be another's."""
    prefix = f"keepalived-{director}"
    return {
        f"{prefix}-watchdog": "",
        f"{prefix}-main": "",
        **{f"{prefix}-real-server-{web}": web for web in web_servers},
        f"{prefix}-virtual-server": "",
        f"{prefix}-load": "",
    }


def _unique_keepalived_commands(directors: list[tuple[str, str]], web_servers: list[tuple[str, str]]) -> None:
    """Pulumi would refuse the second of two equal names, naming no key: say which names meet."""
    web_keys = {name: key for key, name in web_servers}
    seen: dict[str, str] = {}
    for key, director in directors:
        for command, web in keepalived_command_names(director, [name for _, name in web_servers]).items():
            source = f"{key} ({director!r})" + (f" with {web_keys[web]} ({web!r})" if web else "")
            if command in seen:
                raise ConfigError(
                    f"{key}: {director!r} would register the Command {command!r}, which {seen[command]} registers too; rename one"
                )
            seen[command] = source


def _unique(values: list[tuple[str, T]], what: str, show: Callable[[T], str] = str) -> None:
    seen: dict[T, str] = {}
    for key, value in values:
        if value in seen:
            raise ConfigError(f"{key}: {what} {show(value)} is already used by {seen[value]}")
        seen[value] = key
