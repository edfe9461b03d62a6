"""keepalived's configuration for the director(s): the second way to own the IPVS table,
beside the ipvsadm renderer (`ipvs.py`), from the same model of the service and its real
servers (`ServiceSettings`, `WebServerSettings`).

The text is split the way the Commands that write it are, so a change touches one resource:
the main file per director (global_defs, the VRRP sync group of a pair, an include of the
rest), the virtual service, and one file per real server, each checked with `keepalived -t`
before a reload. Rendered with Jinja2 from `templates/`; every value in it was validated by
the config model (addresses, hostnames, numbers, a URL path of a plain alphabet).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import jinja2
import pulumi
from pulumi_command import remote

from . import remote as remote_access
from .config import (
    EXTERNAL_NIC,
    INTERNAL_NIC,
    ClusterSettings,
    DirectorPeer,
    DirectorSettings,
    HealthCheckSettings,
    ServiceSettings,
    WebServerSettings,
)
from .remote import as_root, script_options
from .snat import SnatRule

CONFIG_DIR = "/etc/keepalived/lvs-cluster"
MAIN_FILE = "/etc/keepalived/keepalived.conf"
PREFERRED_PRIORITY = 150
STANDBY_PRIORITY = 100

_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).with_name("templates")),
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
    autoescape=False,  # not HTML: a keepalived.conf of validated values
)


@dataclass(frozen=True)
class _Instance:
    name: str
    nic: str
    router_id: int
    own_ip: IPv4Address
    peer_ip: IPv4Address
    floating: str  # address/prefix


def main_conf(director: DirectorSettings, index: int, *, internal: IPv4Network, external: IPv4Network, config_dir: str = CONFIG_DIR) -> str:
    """/etc/keepalived/keepalived.conf of director `index` (0 for a single director)."""
    if director.pair is None:
        return _ENV.get_template("keepalived-main.conf.j2").render(name=director.name, pair=False, config_dir=config_dir)
    assert director.vrrp is not None
    me, peer = director.pair[index], director.pair[1 - index]
    vrrp = director.vrrp
    instances = [
        _Instance(
            "VI_EXTERNAL",
            EXTERNAL_NIC,
            vrrp.virtual_router_id,
            me.external_ip,
            peer.external_ip,
            f"{director.external_ip}/{external.prefixlen}",
        ),
        _Instance(
            "VI_INTERNAL",
            INTERNAL_NIC,
            vrrp.virtual_router_id + 1,
            me.internal_ip,
            peer.internal_ip,
            f"{director.internal_ip}/{internal.prefixlen}",
        ),
    ]
    # nopreempt works only when both start as BACKUP (keepalived.conf(5)).
    state = "MASTER" if index == 0 and vrrp.preempt else "BACKUP"
    return _ENV.get_template("keepalived-main.conf.j2").render(
        name=me.name,
        pair=True,
        vrrp=vrrp,
        internal_nic=INTERNAL_NIC,
        instances=instances,
        state=state,
        priority=PREFERRED_PRIORITY if index == 0 else STANDBY_PRIORITY,
        config_dir=config_dir,
    )


def virtual_server_conf(
    service: ServiceSettings, vip: IPv4Address, check: HealthCheckSettings | None, *, config_dir: str = CONFIG_DIR
) -> str:
    return _ENV.get_template("keepalived-virtual-server.conf.j2").render(service=service, vip=vip, check=check, config_dir=config_dir)


def real_server_conf(service: ServiceSettings, vip: IPv4Address, backend: WebServerSettings, check: HealthCheckSettings | None) -> str:
    return _ENV.get_template("keepalived-real-server.conf.j2").render(service=service, vip=vip, backend=backend, check=check)


# ---------------------------------------------------------------- the scripts the Commands run

_FILE_END = "LVS_CLUSTER_FILE"
MARKER = "# lvs-cluster: keepalived on "  # the main file's first line: ours to replace


def _check_and_load(path: str) -> str:
    """After `path` changed (its previous text in `path.previous`, or none): `keepalived -t`
    on the whole configuration; if it fails, the previous text comes back and nothing is
    loaded. Then a reload (or the first start). Any warning fails: on a director the
    interfaces it names exist."""
    return (
        f"if ! keepalived -t -f {MAIN_FILE}; then\n"
        f'  echo "lvs-cluster: keepalived -t rejected {path}; the previous configuration stays" >&2\n'
        f"  if [ -e {path}.previous ]; then mv {path}.previous {path}; else rm -f {path}; fi\n"
        "  exit 1\n"
        "fi\n"
        f"rm -f {path}.previous\n"
        "systemctl is-enabled --quiet keepalived || systemctl enable keepalived\n"
        "if systemctl is-active --quiet keepalived; then systemctl reload keepalived; else systemctl start keepalived; fi\n"
    )


def install_script(path: str, text: str, what: str) -> str:
    if _FILE_END in text.splitlines():
        raise ValueError("text contains the here-document terminator")
    directory = path.rsplit("/", 1)[0]
    # Unchanged text is not reloaded: a reload restarts every check, and one that is failing
    # then may stay out of the table after it recovers (keepalived #1720, open in 2.2.7).
    return as_root(
        f"# lvs-cluster: {what}\n"
        f"mkdir -p {directory}\n"
        f"cat > {path}.new <<'{_FILE_END}'\n{text.rstrip()}\n{_FILE_END}\n"
        f"if [ -e {path} ] && cmp -s {path}.new {path}; then\n"
        f"  rm -f {path}.new\n"
        "  systemctl is-enabled --quiet keepalived || systemctl enable keepalived\n"
        "  systemctl is-active --quiet keepalived || systemctl start keepalived\n"
        "else\n"
        f"  if [ -e {path} ]; then cp -p {path} {path}.previous; fi\n"
        f"  mv {path}.new {path}\n" + _indent(_check_and_load(path)) + "fi\n"
    )


def remove_script(path: str, what: str) -> str:
    return as_root(
        f"# lvs-cluster: remove {what} if present\n"
        f"if [ -e {path} ]; then\n"
        f"  mv {path} {path}.previous\n"
        "fi\n"
        f"if [ -e {path}.previous ] && [ -e {MAIN_FILE} ]; then\n" + _indent(_check_and_load(path)) + "fi\n"
    )


def install_main_script(text: str) -> str:
    """The main file, never over one somebody else wrote; the directories it includes from
    (an include that matches no directory is a warning, and any warning fails the check)."""
    guard = (
        f"if [ -s {MAIN_FILE} ] && ! head -n 1 {MAIN_FILE} | grep -qF '{MARKER}'; then\n"
        f'  echo "lvs-cluster: {MAIN_FILE} was not written by lvs-cluster; left as it is" >&2\n'
        "  exit 1\n"
        "fi\n"
        f"mkdir -p {CONFIG_DIR}/real-servers\n"
    )
    return guard_into(install_script(MAIN_FILE, text, "keepalived's main file"), guard)


def remove_main_script() -> str:
    return as_root(
        "# lvs-cluster: stop keepalived and remove its main file, if it is ours\n"
        f"if [ -e {MAIN_FILE} ] && head -n 1 {MAIN_FILE} | grep -qF '{MARKER}'; then\n"
        "  systemctl disable --now keepalived\n"
        f"  rm -f {MAIN_FILE}\n"
        "fi\n"
    )


def guard_into(script: str, guard: str) -> str:
    """`guard` runs first inside an `as_root` script."""
    head, _, body = script.partition("\n")
    return f"{head}\n{guard}{body}"


def _indent(text: str) -> str:
    return "".join(f"  {line}\n" for line in text.splitlines())


class KeepalivedDirector(pulumi.ComponentResource):
    """keepalived's configuration on one director, as tracked Commands: the main file, the
    virtual service, and one file per real server (a weight change updates that one file)."""

    main: remote.Command
    virtual_server: remote.Command
    real_servers: dict[str, remote.Command]

    def __init__(
        self,
        name: str,
        *,
        main_text: str,
        service: ServiceSettings,
        vip: IPv4Address,
        check: HealthCheckSettings | None,
        backends: Sequence[tuple[WebServerSettings, pulumi.Resource]],
        connection: remote.ConnectionArgs,
        director_ready: pulumi.Resource,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("lvs:keepalived:KeepalivedDirector", name, None, opts)
        self.main = remote.Command(
            f"{name}-main",
            connection=connection,
            create=install_main_script(main_text),
            update=install_main_script(main_text),
            delete=remove_main_script(),
            opts=script_options(self, [director_ready]),
        )
        # The real servers first: keepalived -t warns (and the check fails) on a virtual service
        # with no real server; without the virtual service's file nothing includes theirs yet.
        self.real_servers = {}
        for backend, ready in backends:
            path = f"{CONFIG_DIR}/real-servers/{backend.name}.conf"
            text = real_server_conf(service, vip, backend, check)
            what = f"real server {backend.name} ({backend.ip}:{service.port}, weight {backend.weight})"
            self.real_servers[backend.name] = remote.Command(
                f"{name}-real-server-{backend.name}",
                connection=connection,
                create=install_script(path, text, what),
                update=install_script(path, text, what),
                delete=remove_script(path, f"real server {backend.name}"),
                triggers=[path],
                opts=script_options(self, [self.main, ready]),
            )
        virtual_path = f"{CONFIG_DIR}/virtual-server.conf"
        virtual_text = virtual_server_conf(service, vip, check)
        self.virtual_server = remote.Command(
            f"{name}-virtual-server",
            connection=connection,
            create=install_script(virtual_path, virtual_text, f"virtual service {vip}:{service.port}"),
            update=install_script(virtual_path, virtual_text, f"virtual service {vip}:{service.port}"),
            delete=remove_script(virtual_path, f"virtual service {vip}:{service.port}"),
            opts=script_options(self, [self.main, *self.real_servers.values()]),
        )
        self.register_outputs({"main": self.main.create})


class KeepalivedDirectors(pulumi.ComponentResource):
    """keepalived owns the IPVS table on every director (`lvs:healthCheck`, a pair, or both):
    per director its configuration (`KeepalivedDirector`), the SNAT rule, and the live table
    read back for the `ipvsTable` output."""

    tables: dict[str, remote.Command]

    def __init__(
        self,
        name: str,
        settings: ClusterSettings,
        *,
        directors: Sequence[tuple[DirectorPeer, pulumi.Resource]],
        backends: Sequence[tuple[WebServerSettings, pulumi.Resource]],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("lvs:keepalived:KeepalivedDirectors", name, None, opts)
        self.tables = {}
        for index, (director, ready) in enumerate(directors):
            connection = remote_access.connection(settings, director.internal_ip)
            configured = KeepalivedDirector(
                f"{name}-{director.name}",
                main_text=main_conf(settings.director, index, internal=settings.internal.cidr, external=settings.external.cidr),
                service=settings.service,
                vip=settings.vip,
                check=settings.health_check,
                backends=backends,
                connection=connection,
                director_ready=ready,
                opts=pulumi.ResourceOptions(parent=self),
            )
            SnatRule(
                f"snat-{director.name}",
                source=settings.internal.cidr,
                to_source=settings.vip,
                stack=settings.stack,
                connection=connection,
                director_ready=ready,
                opts=pulumi.ResourceOptions(parent=self),
            )
            rules = [configured.main, configured.virtual_server, *configured.real_servers.values()]
            self.tables[director.name] = remote.Command(
                f"{name}-{director.name}-table",
                connection=connection,
                create="sudo -n ipvsadm -L -n",
                triggers=[rule.create for rule in rules],
                opts=pulumi.ResourceOptions(parent=self, depends_on=rules),
            )
        self.register_outputs({"tables": {name: table.stdout for name, table in self.tables.items()}})
