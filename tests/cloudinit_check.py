"""Validates rendered cloud-init documents with cloud-init's own code.

Run by Debian's /usr/bin/python3, which has the `cloudinit` package (Debian 12: cloud-init
22.4, the version the guests run). Reads {"user-data": {name: text}, "network-config":
{name: text}} as JSON on stdin and prints {name: error-or-null} as JSON.
user-data: the strict cloud-config schema validation `cloud-init schema` applies.
network-config: parsed as the guest parses it, then rendered for ifupdown (Debian's renderer).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable

import yaml
from cloudinit.config.schema import get_schema, validate_cloudconfig_schema
from cloudinit.net import eni, network_state


def check_user_data(text: str) -> str | None:
    if not text.startswith("#cloud-config\n"):
        return "does not start with #cloud-config"
    validate_cloudconfig_schema(yaml.safe_load(text), get_schema(), strict=True)
    return None


def check_network_config(text: str) -> str | None:
    state = network_state.parse_net_config_data(yaml.safe_load(text), skip_broken=False)
    eni.Renderer()._render_interfaces(state)
    return None


def main() -> None:
    documents = json.load(sys.stdin)
    results: dict[str, str | None] = {}
    checks: tuple[tuple[str, Callable[[str], str | None]], ...] = (
        ("user-data", check_user_data),
        ("network-config", check_network_config),
    )
    for kind, check in checks:
        for name, text in documents.get(kind, {}).items():
            try:
                problem = check(text)
            except Exception as error:
                problem = f"{type(error).__name__}: {error}"
            results[f"{kind}:{name}"] = problem
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
