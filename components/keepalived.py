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
from .forwarding import forwarding_for
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


def floating(director: DirectorSettings, *, internal: IPv4Network, external: IPv4Network) -> list[tuple[str, str]]:
    """What VRRP moves between a pair: (address/prefix, interface) of the VIP and of the web
    nodes' gateway; nothing for a single director."""
    if director.pair is None:
        return []
    return [(f"{director.external_ip}/{external.prefixlen}", EXTERNAL_NIC), (f"{director.internal_ip}/{internal.prefixlen}", INTERNAL_NIC)]


def main_conf(director: DirectorSettings, index: int, *, internal: IPv4Network, external: IPv4Network, config_dir: str = CONFIG_DIR) -> str:
    """/etc/keepalived/keepalived.conf of director `index` (0 for a single director)."""
    if director.pair is None:
        return _ENV.get_template("keepalived-main.conf.j2").render(name=director.name, pair=False, config_dir=config_dir)
    assert director.vrrp is not None
    me, peer = director.pair[index], director.pair[1 - index]
    vrrp = director.vrrp
    (vip, _), (gateway, _) = floating(director, internal=internal, external=external)
    instances = [
        _Instance("VI_EXTERNAL", EXTERNAL_NIC, vrrp.virtual_router_id, me.external_ip, peer.external_ip, vip),
        _Instance("VI_INTERNAL", INTERNAL_NIC, vrrp.virtual_router_id + 1, me.internal_ip, peer.internal_ip, gateway),
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
    return _ENV.get_template("keepalived-virtual-server.conf.j2").render(
        service=service, vip=vip, check=check, config_dir=config_dir, forwarding=forwarding_for(service)
    )


def real_server_conf(service: ServiceSettings, vip: IPv4Address, backend: WebServerSettings, check: HealthCheckSettings | None) -> str:
    real_ip = forwarding_for(service).real_ip(backend)
    return _ENV.get_template("keepalived-real-server.conf.j2").render(
        service=service, vip=vip, backend=backend, check=check, real_ip=real_ip
    )


# ---------------------------------------------------------------- the scripts the Commands run

_FILE_END = "LVS_CLUSTER_FILE"
MARKER = "# lvs-cluster: keepalived on "  # the main file's first line: ours to replace


def _check(path: str) -> str:
    """After `path` changed (its previous text in `path.previous`, or none): `keepalived -t`
    on the whole configuration; if it fails, the previous text comes back. Any warning fails:
    on a director the interfaces it names exist."""
    return (
        f"if ! keepalived -t -f {MAIN_FILE}; then\n"
        f'  echo "lvs-cluster: keepalived -t rejected {path}; the previous configuration stays" >&2\n'
        f"  if [ -e {path}.previous ]; then mv {path}.previous {path}; else rm -f {path}; fi\n"
        "  exit 1\n"
        "fi\n"
        f"rm -f {path}.previous\n"
    )


# keepalived starts once its whole configuration is in place and reloads once per change of it
# (`load_script`), not once per file: a burst of reloads while the pair was electing came just
# before a VRRP process hung (issue 21), and a reload restarts every check (#1720).
_RELOAD = "if systemctl is-active --quiet keepalived; then systemctl reload keepalived; fi\n"


def install_script(path: str, text: str, what: str) -> str:
    """Writes `path` if its text changed, checked with the rest; loading it is `load_script`'s."""
    if _FILE_END in text.splitlines():
        raise ValueError("text contains the here-document terminator")
    directory = path.rsplit("/", 1)[0]
    return as_root(
        f"# lvs-cluster: {what}\n"
        f"mkdir -p {directory}\n"
        f"cat > {path}.new <<'{_FILE_END}'\n{text.rstrip()}\n{_FILE_END}\n"
        f"if [ -e {path} ] && cmp -s {path}.new {path}; then\n"
        f"  rm -f {path}.new\n"
        "else\n"
        f"  if [ -e {path} ]; then cp -p {path} {path}.previous; fi\n"
        f"  mv {path}.new {path}\n" + _indent(_check(path)) + "fi\n"
    )


def remove_script(path: str, what: str) -> str:
    """Removes `path` and reloads: `pulumi up` deletes a resource after every create and
    update, so no later load would drop what the file held."""
    return as_root(
        f"# lvs-cluster: remove {what} if present\n"
        f"if [ -e {path} ]; then\n"
        f"  mv {path} {path}.previous\n"
        "fi\n"
        f"if [ -e {path}.previous ] && [ -e {MAIN_FILE} ]; then\n" + _indent(_check(path) + _RELOAD) + "fi\n"
    )


LOADED_STAMP = "/run/lvs-cluster/keepalived.loaded"  # what keepalived last loaded (gone at boot, as keepalived's state)


def load_script(director: str) -> str:
    """The whole configuration checked, then keepalived started (the first time) or reloaded
    when it differs from what it last loaded (a reload restarts every check: #1720)."""
    files = f"{MAIN_FILE} {CONFIG_DIR}/*.conf {CONFIG_DIR}/real-servers/*.conf"
    return as_root(
        f"# lvs-cluster: load keepalived's configuration on {director}\n"
        f"keepalived -t -f {MAIN_FILE}\n"
        "systemctl is-enabled --quiet keepalived || systemctl enable keepalived\n"
        f"loaded=$(cat {files} 2>/dev/null | sha256sum)\n"
        "if ! systemctl is-active --quiet keepalived; then\n"
        "  systemctl start keepalived\n"
        f'elif [ "$loaded" != "$(cat {LOADED_STAMP} 2>/dev/null)" ]; then\n'
        "  systemctl reload keepalived\n"
        "fi\n"
        f"mkdir -p {LOADED_STAMP.rsplit('/', 1)[0]}\n"
        f'echo "$loaded" > {LOADED_STAMP}\n'
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


WATCHDOG_PROGRAM = "/usr/local/sbin/lvs-keepalived-watchdog"
WATCHDOG_UNIT = "/etc/systemd/system/lvs-keepalived-watchdog.service"
WATCHDOG_PERIOD_SECONDS = 2
WATCHDOG_STRIKES = 3
KEEPALIVED_PROCS = "/sys/fs/cgroup/system.slice/keepalived.service/cgroup.procs"  # systemd's cgroup v2 of the unit
# From the first sample that sees a fault to the addresses gone: the strikes, a period before
# the first of them, and the kill with up to 5 s for keepalived's processes to go.
WATCHDOG_BOUND_SECONDS = WATCHDOG_PERIOD_SECONDS * (WATCHDOG_STRIKES + 1) + 5
_WATCHDOG_UNIT_TEXT = """[Unit]
Description=lvs-cluster: keepalived's watchdog (a hung keepalived process, floating addresses held in part)
After=keepalived.service

[Service]
ExecStart={program}
Restart=always
RestartSec=1

[Install]
WantedBy=multi-user.target
"""


def watchdog_program(
    director: str,
    floating: Sequence[tuple[str, str]],
    *,
    period: float = WATCHDOG_PERIOD_SECONDS,
    strikes: int = WATCHDOG_STRIKES,
    procs: str = KEEPALIVED_PROCS,
) -> str:
    """The watchdog's shell program; `floating`: (address/prefix, interface) pairs VRRP moves;
    `procs`: the file that lists keepalived's processes."""
    template = _ENV.get_template("keepalived-watchdog.sh.j2")
    return template.render(name=director, period=period, limit=strikes, floating=floating, procs=procs)


def install_watchdog_script(director: str, floating: Sequence[tuple[str, str]]) -> str:
    program = watchdog_program(director, floating)
    unit = _WATCHDOG_UNIT_TEXT.format(program=WATCHDOG_PROGRAM)
    for text in (program, unit):
        if _FILE_END in text.splitlines():
            raise ValueError("text contains the here-document terminator")
    return as_root(
        f"# lvs-cluster: keepalived's watchdog on {director}\n"
        f"cat > {WATCHDOG_PROGRAM}.new <<'{_FILE_END}'\n{program.rstrip()}\n{_FILE_END}\n"
        f"cat > {WATCHDOG_UNIT}.new <<'{_FILE_END}'\n{unit.rstrip()}\n{_FILE_END}\n"
        "changed=no\n"
        f"for file in {WATCHDOG_PROGRAM} {WATCHDOG_UNIT}; do\n"
        '  if [ -e "$file" ] && cmp -s "$file.new" "$file"; then rm -f "$file.new"; else mv "$file.new" "$file"; changed=yes; fi\n'
        "done\n"
        f"chmod 0755 {WATCHDOG_PROGRAM}\n"
        'if [ "$changed" = yes ]; then\n'
        "  systemctl daemon-reload\n"
        "  systemctl enable lvs-keepalived-watchdog\n"
        "  systemctl restart lvs-keepalived-watchdog\n"
        "else\n"
        "  systemctl is-active --quiet lvs-keepalived-watchdog || systemctl enable --now lvs-keepalived-watchdog\n"
        "fi\n"
    )


def remove_watchdog_script(director: str) -> str:
    return as_root(
        f"# lvs-cluster: remove keepalived's watchdog from {director} if present\n"
        f"if [ -e {WATCHDOG_UNIT} ]; then\n"
        "  systemctl disable --now lvs-keepalived-watchdog\n"
        f"  rm -f {WATCHDOG_UNIT}\n"
        "  systemctl daemon-reload\n"
        "fi\n"
        f"rm -f {WATCHDOG_PROGRAM}\n"
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
    load: remote.Command
    watchdog: remote.Command

    def __init__(
        self,
        name: str,
        *,
        main_text: str,
        service: ServiceSettings,
        vip: IPv4Address,
        check: HealthCheckSettings | None,
        backends: Sequence[tuple[WebServerSettings, pulumi.Resource]],
        floating_addresses: Sequence[tuple[str, str]],
        connection: remote.ConnectionArgs,
        director_ready: pulumi.Resource,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("lvs:keepalived:KeepalivedDirector", name, None, opts)
        self.watchdog = remote.Command(
            f"{name}-watchdog",
            connection=connection,
            create=install_watchdog_script(name, floating_addresses),
            update=install_watchdog_script(name, floating_addresses),
            delete=remove_watchdog_script(name),
            opts=script_options(self, [director_ready]),
        )
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
            what = f"real server {backend.name} ({forwarding_for(service).real_ip(backend)}:{service.port}, weight {backend.weight})"
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
        files = [self.main, self.virtual_server, *self.real_servers.values()]
        # Replaced (so run again) whenever any file's text changes: one load per `pulumi up`.
        self.load = remote.Command(
            f"{name}-load",
            connection=connection,
            create=load_script(name),
            triggers=[command.create for command in files],
            opts=script_options(self, list[pulumi.Resource](files)),
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
                floating_addresses=floating(settings.director, internal=settings.internal.cidr, external=settings.external.cidr),
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
            rules = [configured.main, configured.virtual_server, *configured.real_servers.values(), configured.load]
            self.tables[director.name] = remote.Command(
                f"{name}-{director.name}-table",
                connection=connection,
                create="sudo -n ipvsadm -L -n",
                triggers=[rule.create for rule in rules],
                opts=pulumi.ResourceOptions(parent=self, depends_on=rules),
            )
        self.register_outputs({"tables": {name: table.stdout for name, table in self.tables.items()}})
