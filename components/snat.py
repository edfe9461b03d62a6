"""The director's SNAT rule: the internal subnet leaves through the external NIC with the
director's external address (the seed's `iptables -t nat -A POSTROUTING ... -j SNAT`).

One rule, checked with `-C` before it is appended and deleted only if present, tagged with a
comment naming the stack. No table or chain is ever flushed. The live rules are saved with
Debian's netfilter-persistent so a reboot restores them.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network
from typing import Optional

import pulumi
from pulumi_command import remote

from .config import EXTERNAL_NIC
from .remote import as_root, script_options


def snat_rule(source: IPv4Network, to_source: IPv4Address, stack: str) -> str:
    return f"POSTROUTING -s {source} -o {EXTERNAL_NIC} -m comment --comment lvs-cluster:{stack} -j SNAT --to-source {to_source}"


def add_rule_script(rule: str) -> str:
    return as_root(
        "# lvs-cluster: SNAT rule (appended once)\n"
        f"if ! iptables -w -t nat -C {rule} 2>/dev/null; then\n"
        f"  iptables -w -t nat -A {rule}\n"
        "fi\n"
        "netfilter-persistent save\n"
    )


def delete_rule_script(rule: str) -> str:
    return as_root(
        "# lvs-cluster: remove exactly the SNAT rule it added\n"
        f"if iptables -w -t nat -C {rule} 2>/dev/null; then\n"
        f"  iptables -w -t nat -D {rule}\n"
        "fi\n"
        "netfilter-persistent save\n"
    )


class SnatRule(pulumi.ComponentResource):
    command: remote.Command

    def __init__(
        self,
        name: str,
        *,
        source: IPv4Network,
        to_source: IPv4Address,
        stack: str,
        connection: remote.ConnectionArgs,
        director_ready: pulumi.Resource,
        opts: Optional[pulumi.ResourceOptions] = None,
    ) -> None:
        super().__init__("lvs:snat:SnatRule", name, None, opts)
        self.rule = rule = snat_rule(source, to_source, stack)
        self.command = remote.Command(
            f"{name}-rule",
            connection=connection,
            create=add_rule_script(rule),
            delete=delete_rule_script(rule),
            # Any change is a different rule: replace (delete the old one, add the new one).
            triggers=[rule],
            opts=script_options(self, [director_ready]),
        )
        self.register_outputs({"rule": rule})
