"""The stack as last applied: its config as the lab sets it, the settings parsed from it once,
the program's plan of it, and what the lab reads of that plan (the topology)."""

from __future__ import annotations

from dataclasses import dataclass
from ipaddress import IPv4Address
from typing import Any

from components.config import ClusterSettings, settings_from_stack_file
from components.forwarding import forwarding_for

from ..stack.plan import Plan, record_plan
from ..stack.topology import Topology, read_topology


def stack_settings(config: dict[str, Any], stack: str) -> ClusterSettings:
    """The program's model of a stack file's config (with the lab's key pair), read as the
    program reads it."""
    return settings_from_stack_file(config, stack=stack, ssh_private_key=config["lvs:sshPrivateKey"])


@dataclass(frozen=True)
class StackState:
    stack: str
    config: dict[str, Any]
    settings: ClusterSettings
    plan: Plan
    topology: Topology

    @classmethod
    def planned(cls, config: dict[str, Any], *, stack: str) -> StackState:
        """The stack file `config` of `stack`, planned as `pulumi up` would plan it."""
        plan = record_plan(config, stack=stack)
        return cls(stack, config, stack_settings(config, stack), plan, read_topology(plan))

    def edited(self, config: dict[str, Any]) -> StackState:
        """The same stack with the stack file `config`."""
        return StackState.planned(config, stack=self.stack)

    @property
    def vip_url(self) -> str:
        return str(self.plan.outputs["vipUrl"])

    @property
    def client(self) -> str | None:
        """The stack's client node, if it has one."""
        return next((name for name, node in self.plan.outputs["nodes"].items() if node["role"] == "client"), None)

    def real_server(self, web: str) -> IPv4Address:
        """The web node's address in the IPVS table, as the stack's forwarding method gives it
        (its internal address, or in dr its external one)."""
        settings = self.settings
        return forwarding_for(settings.service).real_ip(next(node for node in settings.web_servers if node.name == web))
