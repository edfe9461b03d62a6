"""Where the raw values come from: the program reads them from Pulumi (:func:`load_settings`,
secrets as secrets, warnings logged); `lab doctor` reads a stack file without Pulumi
(:func:`settings_from_stack_file`). Both decode each value the same way, so both see the same
model."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pulumi

from .login import check_private_key
from .model import NAMESPACE, ClusterSettings
from .parse import parse_settings

# Read as secrets, outside the raw model; a plain (non-secret) value is a warning.
_SECRET_KEYS = ("sshPrivateKey", "sshPrivateKeyPassword")
# Stands in for lvs:sshPrivateKey where the stack file is read without Pulumi: a secret the
# file holds encrypted (or not yet at all), which nothing read from the file depends on.
PLACEHOLDER_PRIVATE_KEY = "(not read from the stack file)"


def load_settings(config: pulumi.Config, *, stack: str) -> ClusterSettings:
    """Reads the `lvs:` namespace of the current stack once, checks the private key against the
    public one, and reports the warnings (`pulumi.log.warn`)."""
    raw: dict[str, Any] = {}
    for key in _configured_keys(config.name):
        if key in _SECRET_KEYS:
            continue
        text = config.get(key)
        if text is not None:
            raw[key] = _decode(key, text)
    private_key = config.get("sshPrivateKey")
    password = config.get("sshPrivateKeyPassword")
    plain_secrets = []
    for key in _SECRET_KEYS:
        if config.get(key) is not None and not _is_secret(f"{config.name}:{key}"):
            plain_secrets.append(
                f"{config.name}:{key}: given as plain config, so the stack file holds it in clear text; "
                f"set it with pulumi config set --secret {config.name}:{key}"
            )
    settings = parse_settings(
        raw,
        stack=stack,
        ssh_private_key=config.get_secret("sshPrivateKey"),
        ssh_private_key_password=config.get_secret("sshPrivateKeyPassword"),
        loader_warnings=plain_secrets,
    )
    check_private_key(private_key or "", password, settings.ssh_public_key)
    for note in settings.warnings:
        pulumi.log.warn(note)
    return settings


def settings_from_stack_file(config: Mapping[str, Any], *, stack: str, ssh_private_key: Any = PLACEHOLDER_PRIVATE_KEY) -> ClusterSettings:
    """The program's model of a stack, from its stack file without Pulumi: `config` is the
    file's `config:` mapping as YAML read it (keys such as ``lvs:webServers``).

    Each `lvs:` value is decoded as the program receives it: the CLI hands a string over as
    written and anything else as JSON text, and :func:`load_settings` decodes that text as JSON,
    so a quoted ``"null"`` is null there too. The secret keys are not read (the file holds them
    encrypted); the private key is `ssh_private_key`, unchecked. Nothing is logged: the warnings
    are in the model."""
    raw: dict[str, Any] = {}
    for full_key, value in config.items():
        namespace, _, key = full_key.partition(":")
        if namespace == NAMESPACE and key not in _SECRET_KEYS:
            raw[key] = _decode(key, _as_handed_over(value))
    return parse_settings(raw, stack=stack, ssh_private_key=ssh_private_key)


def _as_handed_over(value: Any) -> str:
    # What the Pulumi CLI passes the program for a stack file's value: a string as written, any
    # other value as JSON text (a value JSON has no type for, such as a YAML date, as its text).
    return value if isinstance(value, str) else json.dumps(value, default=str)


def _is_secret(full_key: str) -> bool:
    """Whether Pulumi handed the program this key as a secret (`pulumi config set --secret`):
    the language host passes the secret keys' names along with the config."""
    from pulumi.runtime import config as runtime_config

    return runtime_config.is_config_secret(full_key) or full_key in runtime_config.get_config_secret_keys_env()


def _configured_keys(namespace: str) -> list[str]:
    # Pulumi hands the program every configured key; reading them all catches typos such as
    # `lvs:webserver`, which a key-by-key read would silently ignore.
    from pulumi.runtime import config as runtime_config

    prefix = f"{namespace}:"
    present = {key[len(prefix) :] for key in runtime_config.CONFIG.get() if key.startswith(prefix)}
    present |= {key[len(prefix) :] for key in runtime_config.get_config_env() if key.startswith(prefix)}
    return sorted(present | {"sshPublicKey"})


def _decode(key: str, text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text  # plain strings such as the public key are stored unquoted
