"""The IPVS virtual service on the director and one real server per web node.

Each rule is a Command whose create/update/delete scripts are the exact ipvsadm calls, so
`pulumi preview` shows them. Create is idempotent (add, or edit when present); a weight,
scheduler or persistence change runs the update in place; changing the service's or a real
server's address replaces that rule (the old one is deleted first). Every change is saved to
/etc/ipvsadm.rules, which Debian's ipvsadm service restores at boot.

Removing a real server drains it first, as kube-proxy does: weight 0 (no new connections, the
established ones go on), then a bounded wait for its active connections to end, then `-d`.
"""

from __future__ import annotations

from collections.abc import Sequence
from ipaddress import IPv4Address
from typing import Optional

import pulumi
from pulumi_command import remote

from .config import ServiceSettings, WebServerSettings
from .forwarding import forwarding_for
from .remote import as_root, script_options

_SAVE = "ipvsadm-save -n > /etc/ipvsadm.rules.new\nmv /etc/ipvsadm.rules.new /etc/ipvsadm.rules\n"
_PROTOCOL_FLAGS = {"tcp": "-t", "udp": "-u"}
# A real server's delete waits at most this long (one poll a second) for its active
# connections to end after its weight went to 0; then it is removed anyway.
DRAIN_SECONDS = 30


def service_key(service: ServiceSettings, vip: IPv4Address) -> str:
    return f"{_PROTOCOL_FLAGS[service.protocol]} {vip}:{service.port}"


def apply_service_script(service: ServiceSettings, vip: IPv4Address) -> str:
    key = service_key(service, vip)
    options = f"-s {service.scheduler}" + (f" -p {service.persistence}" if service.persistence else "")
    return as_root(
        f"# lvs-cluster: virtual service {key} {options} (add, or edit in place)\n"
        f"if ipvsadm -L -n {key} >/dev/null 2>&1; then\n"
        f"  ipvsadm -E {key} {options}\n"
        "else\n"
        f"  ipvsadm -A {key} {options}\n"
        "fi\n" + _SAVE
    )


def delete_service_script(service: ServiceSettings, vip: IPv4Address) -> str:
    key = service_key(service, vip)
    return as_root(
        f"# lvs-cluster: remove virtual service {key} if present\n"
        f"if ipvsadm -L -n {key} >/dev/null 2>&1; then\n"
        f"  ipvsadm -D {key}\n"
        "fi\n" + _SAVE
    )


def apply_real_server_script(service: ServiceSettings, vip: IPv4Address, real_ip: IPv4Address, weight: int) -> str:
    key = service_key(service, vip)
    real = f"{real_ip}:{service.port}"
    forwarding = forwarding_for(service)
    method = forwarding.ipvsadm_method
    return as_root(
        f"# lvs-cluster: real server {real} of {key}, {forwarding.description}, weight {weight}\n"
        f"if ipvsadm -L -n {key} | grep -qF -- '-> {real} '; then\n"
        f"  ipvsadm -e {key} -r {real} {method} -w {weight}\n"
        "else\n"
        f"  ipvsadm -a {key} -r {real} {method} -w {weight}\n"
        "fi\n" + _SAVE
    )


def delete_real_server_script(service: ServiceSettings, vip: IPv4Address, real_ip: IPv4Address) -> str:
    key = service_key(service, vip)
    real = f"{real_ip}:{service.port}"
    # `ipvsadm -L -n` prints a real server as `  -> RIP:PORT Forward Weight ActiveConn InActConn`:
    # the function prints its ActiveConn, or nothing when it is not in the service.
    return as_root(
        f"# lvs-cluster: remove real server {real} from {key} if present, drained first:\n"
        f"# weight 0 (no new connections), then up to {DRAIN_SECONDS} s for its active connections to end\n"
        "active_connections() {\n"
        f"  ipvsadm -L -n {key} 2>/dev/null | awk -v real={real} '$1 == \"->\" && $2 == real {{ print $5 + 0 }}'\n"
        "}\n"
        'if [ -n "$(active_connections)" ]; then\n'
        f"  ipvsadm -e {key} -r {real} {forwarding_for(service).ipvsadm_method} -w 0\n"
        "  waited=0\n"
        '  active="$(active_connections)"\n'
        f'  while [ "${{active:-0}}" -gt 0 ] && [ "$waited" -lt {DRAIN_SECONDS} ]; do\n'
        "    sleep 1\n"
        "    waited=$((waited + 1))\n"
        '    active="$(active_connections)"\n'
        "  done\n"
        '  if [ "${active:-0}" -gt 0 ]; then\n'
        f'    echo "lvs-cluster: {real} still has $active active connections after {DRAIN_SECONDS} s of draining;'
        ' removing it anyway" >&2\n'
        "  fi\n"
        '  if [ -n "$active" ]; then\n'
        f"    ipvsadm -d {key} -r {real}\n"
        "  fi\n"
        "fi\n" + _SAVE
    )


class IpvsService(pulumi.ComponentResource):
    virtual_service: remote.Command
    real_servers: dict[str, remote.Command]
    table: remote.Command

    def __init__(
        self,
        name: str,
        service: ServiceSettings,
        *,
        vip: IPv4Address,
        backends: Sequence[tuple[WebServerSettings, pulumi.Resource]],
        connection: remote.ConnectionArgs,
        director_ready: pulumi.Resource,
        opts: Optional[pulumi.ResourceOptions] = None,
    ) -> None:
        super().__init__("lvs:ipvs:IpvsService", name, None, opts)
        key = service_key(service, vip)
        apply_service = apply_service_script(service, vip)
        self.virtual_service = remote.Command(
            f"{name}-virtual-service",
            connection=connection,
            create=apply_service,
            update=apply_service,
            delete=delete_service_script(service, vip),
            triggers=[key],
            opts=script_options(self, [director_ready]),
        )
        self.real_servers = {}
        forwarding = forwarding_for(service)
        for web, ready in backends:
            real_ip = forwarding.real_ip(web)
            apply_real = apply_real_server_script(service, vip, real_ip, web.weight)
            self.real_servers[web.name] = remote.Command(
                f"{name}-real-server-{web.name}",
                connection=connection,
                create=apply_real,
                update=apply_real,
                delete=delete_real_server_script(service, vip, real_ip),
                triggers=[key, f"{real_ip}:{service.port}"],
                opts=script_options(self, [self.virtual_service, ready]),
            )
        rules = [self.virtual_service, *self.real_servers.values()]
        # Read the live table back after every change, for the stack output.
        self.table = remote.Command(
            f"{name}-table",
            connection=connection,
            create="sudo -n ipvsadm -L -n",
            triggers=[rule.create for rule in rules],
            opts=pulumi.ResourceOptions(parent=self, depends_on=rules),
        )
        self.register_outputs({"service": key, "table": self.table.stdout})
