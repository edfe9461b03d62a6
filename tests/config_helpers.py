"""Shared by the config tests: changing one key of a stack's config the way the error messages
address it, the assertion that a config fails with one line naming the key, and the HA stack."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

from components.config import ClusterSettings, ConfigError, parse_settings
from lab.stack.plan import record_plan, stack_config
from tests.conftest import PROJECT_DIR, TEST_PRIVATE_KEY, TEST_PUBLIC_KEY, seed_config

_DELETE = object()


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """Changes one value, addressed like the error messages do: `webServers[1].weight`."""
    steps: list[Any] = [int(index) if index else name for name, index in re.findall(r"([A-Za-z]+)|\[(\d+)\]", path)]
    steps[0] = f"lvs:{steps[0]}"

    def change(config: dict[str, Any]) -> None:
        node: Any = config
        for step in steps[:-1]:
            node = node[step]
        if value is _DELETE:
            del node[steps[-1]]
        else:
            node[steps[-1]] = value

    return change


Change = Callable[[dict[str, Any]], None]


def _fails(config: dict[str, Any], key: str, value: str, *, stack: str = "seed") -> str:
    """The one-line message naming `key` and showing `value`; nothing was registered."""
    with pytest.raises(ConfigError) as failure:
        record_plan(config, stack=stack)
    message = str(failure.value)
    assert message.startswith(f"{key}:"), message
    assert value in message, message
    assert "\n" not in message, message
    assert failure.value.plan.resources == []  # type: ignore[attr-defined]
    return message


def _cases(cases: list[tuple[Change, str, str]]) -> pytest.MarkDecorator:
    return pytest.mark.parametrize(("change", "key", "value"), cases, ids=[f"{key}={value!r}" for _, key, value in cases])


def _raw(config: dict[str, Any]) -> dict[str, Any]:
    return {key.split(":", 1)[1]: value for key, value in config.items() if key.startswith("lvs:") and key != "lvs:sshPrivateKey"}


def _settings_with(change: Change) -> Any:
    config = seed_config()
    change(config)
    return parse_settings(_raw(config), stack="seed", ssh_private_key="key")


def ha_config() -> dict[str, Any]:
    config = stack_config(PROJECT_DIR / "Pulumi.ha.yaml")
    config["lvs:sshPublicKey"] = TEST_PUBLIC_KEY
    config["lvs:sshPrivateKey"] = TEST_PRIVATE_KEY
    return config


def settings_of(config: dict[str, Any]) -> ClusterSettings:
    raw = {key.split(":", 1)[1]: value for key, value in config.items() if key.startswith("lvs:") and key != "lvs:sshPrivateKey"}
    return parse_settings(raw, stack="ha", ssh_private_key=config["lvs:sshPrivateKey"])
