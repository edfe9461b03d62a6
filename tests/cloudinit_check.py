"""Validates rendered cloud-init documents with cloud-init's own code.

Run by Debian's /usr/bin/python3, which has the `cloudinit` package (Debian 12: cloud-init
22.4, the version the guests run). Reads {"user-data": {name: text}, "network-config":
{name: text}} as JSON on stdin and prints {name: error-or-null} as JSON.
user-data: the strict cloud-config schema validation `cloud-init schema` applies.
network-config: parsed as the guest parses it, then rendered for ifupdown (Debian's renderer).
"""

import json
import sys

import yaml
from cloudinit.config.schema import get_schema, validate_cloudconfig_schema
from cloudinit.net import eni, network_state


def check_user_data(text):
    if not text.startswith("#cloud-config\n"):
        return "does not start with #cloud-config"
    validate_cloudconfig_schema(yaml.safe_load(text), get_schema(), strict=True)


def check_network_config(text):
    state = network_state.parse_net_config_data(yaml.safe_load(text), skip_broken=False)
    eni.Renderer()._render_interfaces(state)


def main():
    documents = json.load(sys.stdin)
    results = {}
    for kind, check in (("user-data", check_user_data), ("network-config", check_network_config)):
        for name, text in documents.get(kind, {}).items():
            try:
                problem = check(text)
            except Exception as error:  # noqa: BLE001 - every failure is a finding
                problem = f"{type(error).__name__}: {error}"
            results[f"{kind}:{name}"] = problem
    json.dump(results, sys.stdout)


if __name__ == "__main__":
    main()
