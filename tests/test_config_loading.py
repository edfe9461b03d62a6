"""How the values reach the model: the program reads them from Pulumi (`load_settings`), the lab
and `lab doctor` from a stack file (`settings_from_stack_file`). Both decode a value as the
program receives it (a string as written, anything else as JSON text, then JSON-decoded), so
both see the same model."""

from __future__ import annotations

import contextvars
import dataclasses
import datetime
import json
from pathlib import Path
from typing import Any

import pulumi
import pytest

from components.config import PLACEHOLDER_PRIVATE_KEY, ClusterSettings, ConfigError, load_settings, settings_from_stack_file
from lab.stack.plan import record_plan, stack_config
from tests.conftest import PROJECT_DIR, TEST_PRIVATE_KEY, TEST_PUBLIC_KEY, seed_config

STACK_FILES = [PROJECT_DIR / "Pulumi.seed.yaml", PROJECT_DIR / "Pulumi.ha.yaml", *sorted((PROJECT_DIR / "tests").glob("Pulumi.*.yaml"))]


def _with_test_keys(path: Path) -> dict[str, Any]:
    config = stack_config(path)
    config["lvs:sshPublicKey"] = TEST_PUBLIC_KEY
    config["lvs:sshPrivateKey"] = TEST_PRIVATE_KEY
    return config


def _loaded(config: dict[str, Any], *, stack: str) -> ClusterSettings:
    """What the program's `load_settings` makes of `config`, handed over as the Pulumi CLI
    does: a string as written, any other value as JSON text, lvs:sshPrivateKey a secret."""
    values = {key: value if isinstance(value, str) else json.dumps(value) for key, value in config.items()}

    def load() -> ClusterSettings:
        pulumi.runtime.set_all_config(values, ["lvs:sshPrivateKey"])
        return load_settings(pulumi.Config("lvs"), stack=stack)

    return contextvars.copy_context().run(load)


def _without_secrets(settings: ClusterSettings) -> ClusterSettings:
    return dataclasses.replace(settings, ssh_private_key=None, ssh_private_key_password=None)


@pytest.mark.parametrize("path", STACK_FILES, ids=[path.name for path in STACK_FILES])
def test_the_stack_file_and_the_program_read_the_same_model(path: Path) -> None:
    stack = path.name.removeprefix("Pulumi.").removesuffix(".yaml")
    config = _with_test_keys(path)
    from_file = settings_from_stack_file(config, stack=stack)
    assert from_file.ssh_private_key == PLACEHOLDER_PRIVATE_KEY
    assert _without_secrets(from_file) == _without_secrets(_loaded(config, stack=stack))


def test_the_private_key_is_the_one_given_and_never_read_from_the_file() -> None:
    config = seed_config()
    config["lvs:sshPrivateKey"] = {"secure": "v1:encrypted"}
    config["lvs:sshPrivateKeyPassword"] = {"secure": "v1:encrypted"}
    assert settings_from_stack_file(config, stack="seed", ssh_private_key="key").ssh_private_key == "key"


@pytest.mark.parametrize(
    ("service", "port"),
    [({"port": "8080"}, 8080), ('{"port": 8080, "scheduler": "wrr"}', 8080)],
    ids=["quoted-port", "json-text"],
)
def test_a_value_decodes_as_the_program_sees_it(service: Any, port: int) -> None:
    """A quoted port in a mapping is the same number; a mapping written as JSON text is that
    mapping (the program decodes every value it is handed)."""
    config = seed_config()
    config["lvs:service"] = service
    settings = settings_from_stack_file(config, stack="seed")
    assert settings.service.port == port
    assert _without_secrets(settings) == _without_secrets(_loaded(config, stack="seed"))


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("lvs:adminUser", "null", "lvs:adminUser: null is not a value for this key; remove the key to use the default, 'lvsadmin'"),
        ("lvs:domainType", "1", "lvs:domainType: 1 is not a string"),
        ("lvs:adminUser", datetime.date(2024, 1, 2), "lvs:adminUser: '2024-01-02' is not a usable login name"),
    ],
    ids=["quoted-null", "quoted-number", "yaml-date"],
)
def test_a_quoted_scalar_is_json_to_the_program_too(key: str, value: Any, message: str) -> None:
    """A stack file's quoted "null" is null where the program reads it, not the name 'null'."""
    config = seed_config()
    config[key] = value
    with pytest.raises(ConfigError) as from_file:
        settings_from_stack_file(config, stack="seed")
    assert str(from_file.value) == message
    if isinstance(value, str):
        with pytest.raises(ConfigError) as in_the_program:
            record_plan(config, stack="seed")
        assert str(in_the_program.value) == message
