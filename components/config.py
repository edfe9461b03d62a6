"""The stack configuration, read once into one typed and validated model.

Every component receives pieces of :class:`ClusterSettings`; none reads ``pulumi.Config``.
Validation happens here, before any resource is registered, and each failure is one
:class:`ConfigError` naming the key (``lvs:webServers[1].weight``) and the bad value (a secret
is described, never shown). Values that are legal but almost certainly a mistake do not stop
the run: they are collected in :attr:`ClusterSettings.warnings`, which :func:`load_settings`
hands to ``pulumi.log.warn``.

An explicit ``null`` means "not set" only for keys whose default is "not set"
(``lvs:client``, ``lvs:image.pool``, ``lvs:image.poolPath``, ``lvs:networks.*.bridge``); for
any other key it is an error naming the key, never a silent default.
"""

from __future__ import annotations

import dataclasses
import posixpath
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from ipaddress import IPv4Address, IPv4Network
from pathlib import PurePosixPath
from typing import Any, TypeVar
from urllib.parse import unquote

import pulumi

from . import sshkeys

NAMESPACE = "lvs"

# Every scheduler ipvsadm(8) knows.
SCHEDULERS = ("rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf", "mh")
# LVS forwarding methods; only NAT is built so far.
KNOWN_MODES = ("nat", "dr", "tun")
SUPPORTED_MODES = ("nat",)
DOMAIN_TYPES = ("kvm", "qemu")

# Interface names the guests give their NICs (matched by MAC), used by the SNAT rule.
INTERNAL_NIC = "int0"
EXTERNAL_NIC = "ext0"

_HOSTNAME_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_LIBVIRT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_POOL_PATH_CHARACTERS = re.compile(r"^[A-Za-z0-9._/-]*$")
# Linux interface names (net/core/dev.c dev_valid_name: < IFNAMSIZ 16, not "." or "..", no
# '/', ':' or whitespace), narrowed to a portable alphabet.
_BRIDGE_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")
_POSIX_USER = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
# Users and groups Debian's base system and the packages the nodes install already have:
# cloud-init's useradd fails on them and the node is left without an admin login.
_DEBIAN_SYSTEM_NAMES = (
    "root daemon bin sys sync games man lp mail news uucp proxy www-data backup list irc gnats nobody "
    "adm tty disk kmem dialout fax voice cdrom floppy tape sudo audio dip operator src shadow utmp video "
    "sasl plugdev staff users nogroup input sgx kvm render netdev systemd-journal systemd-network "
    "systemd-resolve systemd-timesync messagebus sshd statd _rpc _apt debian"
)
_DEBIAN_RESERVED_NAMES = frozenset(_DEBIAN_SYSTEM_NAMES.split())

# Export paths: the POSIX portable filename characters and '/', nothing exportfs, fstab, a
# shell or HTML would interpret. NFS3_MAXPATHLEN and NAME_MAX bound the length.
EXPORT_ALPHABET = "[A-Za-z0-9._/-]"
_EXPORT_CHARACTERS = re.compile(f"^{EXPORT_ALPHABET}*$")
_EXPORT_MAX_LENGTH = 1024
_NAME_MAX = 255
# Trees no export may be in or under: exporting them read-write (mode 2775, group www-data)
# exposes or changes the NFS server's own system, or they are emptied at boot.
_SYSTEM_TREES = {
    "/bin": "system programs",
    "/boot": "the boot loader and kernels",
    "/dev": "device files",
    "/etc": "system configuration",
    "/lib": "system libraries",
    "/lib32": "system libraries",
    "/lib64": "system libraries",
    "/libx32": "system libraries",
    "/proc": "the kernel's process filesystem",
    "/root": "root's home directory",
    "/run": "runtime state, emptied at boot",
    "/sbin": "system programs",
    "/sys": "the kernel's sysfs",
    "/tmp": "temporary files, emptied at boot",
    "/usr": "the installed system",
    "/var/backups": "system state",
    "/var/cache": "system state",
    "/var/lib": "system state",
    "/var/lock": "runtime state, emptied at boot",
    "/var/log": "system logs",
    "/var/mail": "system state",
    "/var/run": "runtime state, emptied at boot",
    "/var/spool": "system state",
    "/var/tmp": "temporary files, aged out by systemd-tmpfiles",
}
# Directories that may hold exports but are not one themselves.
_SYSTEM_PARENTS = ("/home", "/media", "/mnt", "/opt", "/srv", "/var")
# Legal but probably a mistake: warn, and say where exports belong.
_DOUBTFUL_TREES = {
    "/home": "home directories are for users",
    "/media": "mount points for removable media",
    "/mnt": "a mount point for temporary filesystems",
    "/var": "variable data of the system and its packages",
}

# Networks that are not ordinary unicast subnets (the ranges behind ipaddress's is_unspecified,
# is_loopback, is_link_local, is_multicast and is_reserved, and 0.0.0.0/8), checked by overlap
# so a supernet such as 126.0.0.0/7 is caught too.
_SPECIAL_NETWORKS = (
    (IPv4Network("0.0.0.0/8"), "'this network' (0.0.0.0/8)"),
    (IPv4Network("127.0.0.0/8"), "loopback (127.0.0.0/8)"),
    (IPv4Network("169.254.0.0/16"), "link-local (169.254.0.0/16)"),
    (IPv4Network("224.0.0.0/4"), "multicast (224.0.0.0/4)"),
    (IPv4Network("240.0.0.0/4"), "reserved (240.0.0.0/4, with the limited broadcast 255.255.255.255)"),
)

# Ports the nodes use themselves: the web nodes would have to serve the service on them.
_PORTS_IN_USE = {
    22: "SSH on every node, where the Commands log in",
    111: "rpcbind on the NFS server and the web nodes",
    2049: "NFS on the internal network",
}
# ipvsadm.c: MAX_TIMEOUT (86400*31), the largest -p it takes.
MAX_PERSISTENCE = 86400 * 31
# QEMU's i440fx "pc" machine, the one terraform-provider-libvirt v0.8.1 uses: max_cpus 255.
MAX_VCPUS = 255

# What terraform-provider-libvirt v0.8.1 fetches a volume's source from (volume.go newImage):
# an http(s) URL, a file:// URL, or a path (relative: to the directory `pulumi` runs in).
_IMAGE_SOURCE = re.compile(r"^(https?://\S+|file:///\S*|(?![A-Za-z][A-Za-z0-9+.-]*:)\S+)$")
HEALTH_CHECK_TYPES = ("http", "tcp")
# A URL path keepalived's HTTP_GET requests as it is: RFC 3986 path characters without the
# ones keepalived.conf or a shell would interpret (quotes, '#', '!', spaces, braces, and '$',
# which keepalived's parser replaces by a definition: $_RANDOM, $_HASH, ...).
_URL_PATH = re.compile(r"^/[A-Za-z0-9._~/%:@&=+,;-]*$")
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})|%00|%2[Ff]")
# keepalived reads its configuration a line at a time into a 1024-byte buffer (parser.c,
# MAXBUF): past 1023 characters the rest is read as a line of its own ("Unknown keyword",
# measured with Debian's 2.2.7). The path's line in a real server's file
# (keepalived-real-server.conf.j2) is indented by 12.
_KEEPALIVED_LINE = 1023
MAX_CHECK_PATH = _KEEPALIVED_LINE - len(" " * 12 + "path ")
# Beyond this, a failure that the cluster mends by itself is still one clients notice: warn.
SLOW_FAILURE_SECONDS = 60
# HTTP statuses that can be the final answer to keepalived's HTTP/1.0 GET (not 1xx).
CHECK_STATUSES = (200, 599)
# keepalived.conf(5): virtual_router_id 0..255 (each pair uses it and the next for its two
# instances); VRRPv2 adverts in whole seconds, 1..255.
MAX_VIRTUAL_ROUTER_ID = 254


class ConfigError(pulumi.RunError):
    """Bad stack configuration. Pulumi prints the message alone, without a stack trace."""


_REQUIRED: Any = object()
T = TypeVar("T")


@dataclass(frozen=True)
class MachineSize:
    memory_mib: int
    vcpus: int


# Defaults per role: the web tier and the director are light under NAT at lab scale.
DEFAULT_SIZES = {
    "director": MachineSize(memory_mib=512, vcpus=1),
    "nfs": MachineSize(memory_mib=512, vcpus=1),
    "web": MachineSize(memory_mib=512, vcpus=1),
    "client": MachineSize(memory_mib=384, vcpus=1),
}


@dataclass(frozen=True)
class PoolSettings:
    """The libvirt storage pool every volume lives in.

    ``path`` is None when ``name`` is an existing pool (``lvs:image.pool``); otherwise the stack
    creates a ``dir`` pool of that name in that directory (``lvs:image.poolPath``).
    """

    name: str
    path: PurePosixPath | None

    @property
    def created_by_stack(self) -> bool:
        return self.path is not None


@dataclass(frozen=True)
class ImageSettings:
    source: str
    pool: PoolSettings


@dataclass(frozen=True)
class NetworkSettings:
    role: str  # "internal" or "external"
    name: str
    cidr: IPv4Network
    host_ip: IPv4Address  # the libvirt host's own address on this network
    bridge: str | None


@dataclass(frozen=True)
class ServiceSettings:
    port: int
    scheduler: str
    persistence: int  # seconds; 0 = no persistence
    mode: str
    protocol: str = "tcp"


@dataclass(frozen=True)
class HealthCheckSettings:
    """How keepalived checks each real server (`lvs:healthCheck`)."""

    type: str  # http (HTTP_GET) or tcp (TCP_CHECK)
    port: int  # the real servers' port it connects to
    path: str  # http: the URL path requested
    status: int  # http: the status code that means alive
    interval: int  # seconds between checks (keepalived's delay_loop)
    timeout: int  # seconds a check may take (connect_timeout)
    retries: int  # failed checks before a real server is taken out (retry)


@dataclass(frozen=True)
class DirectorPeer:
    """One director of a pair: its own addresses beside the floating ones."""

    name: str
    internal_ip: IPv4Address
    external_ip: IPv4Address


@dataclass(frozen=True)
class VrrpSettings:
    """VRRP between the pair (`lvs:director.vrrp`): one sync group of two instances, the
    external (the VIP) with `virtual_router_id` and the internal (the web nodes' gateway) with
    the next id."""

    virtual_router_id: int
    advert_interval: Decimal  # seconds: whole for VRRPv2, hundredths below 40.96 for VRRPv3
    preempt: bool  # the first director takes the VIP back when it returns

    @property
    def version(self) -> int:
        """VRRPv2 carries whole seconds only; a fraction of a second needs VRRPv3."""
        return 2 if self.advert_interval == self.advert_interval.to_integral_value() else 3


@dataclass(frozen=True)
class DirectorSettings:
    name: str
    internal_ip: IPv4Address  # with a pair: the floating gateway address
    external_ip: IPv4Address  # with a pair: the floating VIP
    size: MachineSize
    pair: tuple[DirectorPeer, DirectorPeer] | None = None  # the first is preferred
    vrrp: VrrpSettings | None = None  # set exactly when `pair` is


@dataclass(frozen=True)
class NfsSettings:
    name: str
    ip: IPv4Address
    exports: tuple[PurePosixPath, ...]
    size: MachineSize


@dataclass(frozen=True)
class WebServerSettings:
    name: str
    ip: IPv4Address
    export: PurePosixPath
    weight: int
    size: MachineSize


@dataclass(frozen=True)
class ClientSettings:
    name: str
    ip: IPv4Address
    size: MachineSize


@dataclass(frozen=True)
class ClusterSettings:
    stack: str
    image: ImageSettings
    ssh_public_key: str
    ssh_private_key: Any  # pulumi.Output[str], a secret
    admin_user: str
    domain_type: str
    internal: NetworkSettings
    external: NetworkSettings
    service: ServiceSettings
    director: DirectorSettings
    nfs: NfsSettings
    web_servers: tuple[WebServerSettings, ...]
    client: ClientSettings | None
    # The passphrase of an encrypted private key (pulumi.Output[str], a secret), or None.
    ssh_private_key_password: Any = None
    # Legal values that are probably a mistake: one line each, naming the key and the value.
    warnings: tuple[str, ...] = ()
    health_check: HealthCheckSettings | None = None

    @property
    def directors(self) -> tuple[DirectorPeer, ...]:
        """Every director VM: the pair, or the one director."""
        return self.director.pair or (DirectorPeer(self.director.name, self.director.internal_ip, self.director.external_ip),)

    @property
    def keepalived(self) -> bool:
        """keepalived owns the IPVS table (health checks, a pair, or both); else ipvsadm does."""
        return self.health_check is not None or self.director.pair is not None

    @property
    def vip(self) -> IPv4Address:
        # In NAT mode the virtual IP is the director's external address.
        return self.director.external_ip

    @property
    def vip_url(self) -> str:
        port = "" if self.service.port == 80 else f":{self.service.port}"
        return f"http://{self.vip}{port}/"

    def inventory(self) -> dict[str, dict[str, str]]:
        """Each node's role, libvirt domain and addresses, as the `nodes` stack output."""
        nodes = {
            **{
                director.name: {"role": "director", "internalIp": str(director.internal_ip), "externalIp": str(director.external_ip)}
                for director in self.directors
            },
            self.nfs.name: {"role": "nfs", "internalIp": str(self.nfs.ip)},
            **{web.name: {"role": "web", "internalIp": str(web.ip)} for web in self.web_servers},
        }
        if self.client:
            nodes[self.client.name] = {"role": "client", "externalIp": str(self.client.ip)}
        return {name: {**node, "domain": self.domain_name(name)} for name, node in nodes.items()}

    def domain_name(self, node_name: str) -> str:
        """libvirt names are unique per host: prefix the stack so environments can share one."""
        return f"{self.stack}-{node_name}"


class _Section:
    """Typed reads from one mapping of raw config, with errors that name the full key."""

    def __init__(self, raw: Any, key: str, separator: str = ".") -> None:
        if not isinstance(raw, Mapping):
            raise ConfigError(f"{key}: expected a mapping, got {_shown(raw)}")
        self.raw = raw
        self.key = key
        self.separator = separator
        self._seen: set[str] = set()

    def path(self, name: str) -> str:
        return f"{self.key}{self.separator}{name}"

    def _get(self, name: str, default: Any, shown_default: str | None = None) -> Any:
        """The raw value, or `default` when the key is absent. An explicit null is "absent"
        only where the default is None (not set); elsewhere it is an error, never the default."""
        self._seen.add(name)
        if name not in self.raw:
            if default is _REQUIRED:
                raise ConfigError(f"{self.path(name)}: missing (required)")
            return default
        value = self.raw[name]
        if value is None and default is not None:
            if default is _REQUIRED:
                raise ConfigError(f"{self.path(name)}: null given, but a value is required")
            if shown_default is None:
                shown_default = "the defaults" if isinstance(default, Mapping) else f"the default, {_shown(default)}"
            raise ConfigError(f"{self.path(name)}: null is not a value for this key; remove the key to use {shown_default}")
        return value

    def string(self, name: str, default: Any = _REQUIRED) -> Any:
        value = self._get(name, default)
        if value is not default and not isinstance(value, str):
            raise ConfigError(f"{self.path(name)}: {_shown(value)} is not a string")
        return value

    def integer(self, name: str, default: Any = _REQUIRED, lo: int = 0, hi: int = 2**31) -> int:
        value = self._get(name, default)
        if isinstance(value, bool) or not isinstance(value, int):
            if isinstance(value, str) and re.fullmatch(r"-?\d+", value.strip()):
                value = int(value)
            else:
                raise ConfigError(f"{self.path(name)}: {_shown(value)} is not a whole number")
        if not lo <= value <= hi:
            raise ConfigError(f"{self.path(name)}: {value} is out of range {lo}..{hi}")
        return int(value)

    def boolean(self, name: str, default: bool) -> bool:
        value = self._get(name, default)
        if not isinstance(value, bool):
            if isinstance(value, str) and value.strip().lower() in ("true", "false"):
                return value.strip().lower() == "true"
            raise ConfigError(f"{self.path(name)}: {_shown(value)} is not true or false")
        return value

    def address(self, name: str, default: IPv4Address | None = None) -> IPv4Address:
        value = self._get(name, _REQUIRED if default is None else default, f"the default, {default}")
        if isinstance(value, IPv4Address):
            return value
        if not isinstance(value, str):
            raise ConfigError(f"{self.path(name)}: {_shown(value)} is not a string")
        try:
            return IPv4Address(value.strip())
        except ValueError:
            raise ConfigError(f"{self.path(name)}: {_shown(value)} is not an IPv4 address") from None

    def section(self, name: str, default: Any = _REQUIRED) -> _Section:
        return _Section(self._get(name, default), self.path(name))

    def items(self, name: str) -> Iterator[_Section]:
        value = self._get(name, _REQUIRED)
        if not isinstance(value, list):
            raise ConfigError(f"{self.path(name)}: expected a list, got {_shown(value)}")
        for index, item in enumerate(value):
            yield _Section(item, f"{self.path(name)}[{index}]")

    def reject_unknown(self) -> None:
        unknown = sorted(set(self.raw) - self._seen)
        if unknown:
            raise ConfigError(f"{self.path(unknown[0])}: unknown key (known: {', '.join(sorted(self._seen))})")


def _hostname(section: _Section, name: str = "name", default: Any = _REQUIRED) -> str:
    value = section.string(name, default)
    if not _HOSTNAME_LABEL.fullmatch(value):
        raise ConfigError(
            f"{section.path(name)}: {_shown(value)} is not usable as a hostname "
            "(lowercase letters, digits and '-', at most 63, not starting or ending with '-')"
        )
    return str(value)


def _choice(section: _Section, name: str, default: str, allowed: tuple[str, ...]) -> str:
    value = section.string(name, default)
    if value not in allowed:
        raise ConfigError(f"{section.path(name)}: unknown value {_shown(value)} (one of: {', '.join(allowed)})")
    return str(value)


def _size(section: _Section, role: str) -> MachineSize:
    default = DEFAULT_SIZES[role]
    return MachineSize(
        memory_mib=section.integer("memory", default.memory_mib, lo=128, hi=1 << 20),
        vcpus=section.integer("vcpus", default.vcpus, lo=1, hi=MAX_VCPUS),
    )


def _normal_path(key: str, value: Any) -> PurePosixPath:
    """An absolute path in the portable alphabet, normalised: runs of '/' collapsed (normpath
    keeps a leading `//`), '.' and a trailing '/' removed. `..` is refused, not resolved."""
    if value is None:
        raise ConfigError(f"{key}: null given, but a path is required")
    if not isinstance(value, str) or not value.startswith("/"):
        raise ConfigError(f"{key}: {_shown(value)} is not an absolute path")
    if not _EXPORT_CHARACTERS.fullmatch(value):
        raise ConfigError(f"{key}: {_shown(value)} has characters outside {EXPORT_ALPHABET} (letters, digits, '.', '_', '-' and '/')")
    if ".." in value.split("/"):
        raise ConfigError(f"{key}: {_shown(value)} must not contain '..'")
    normalised = posixpath.normpath(re.sub(r"/+", "/", value))
    if len(normalised) > _EXPORT_MAX_LENGTH or any(len(part) > _NAME_MAX for part in normalised.split("/")):
        raise ConfigError(f"{key}: {_shown(value)} is too long (at most {_EXPORT_MAX_LENGTH} characters, {_NAME_MAX} per directory name)")
    return PurePosixPath(normalised)


def _within(path: PurePosixPath, tree: str) -> bool:
    return path == PurePosixPath(tree) or PurePosixPath(tree) in path.parents


def _export_path(key: str, value: Any, admin_user: str) -> tuple[PurePosixPath, str | None]:
    """One `lvs:nfs.exports` entry, normalised and checked; with a warning if it is doubtful."""
    path = _normal_path(key, value)
    place = "exports belong in a directory of their own, such as /srv/<name> or /opt/<name>"
    if path == PurePosixPath("/"):
        raise ConfigError(f"{key}: {_shown(value)} is the filesystem root; {place}")
    for tree, what in _SYSTEM_TREES.items():
        if _within(path, tree):
            where = "is" if path == PurePosixPath(tree) else "is under"
            raise ConfigError(f"{key}: {_shown(value)} {where} {tree} ({what}); {place}")
    if str(path) in _SYSTEM_PARENTS:
        raise ConfigError(f"{key}: {_shown(value)} is {path} itself; {place}")
    home = PurePosixPath("/home") / admin_user
    if _within(path, str(home)):
        raise ConfigError(
            f"{key}: {_shown(value)} is in {home}, the home of lvs:adminUser {_shown(admin_user)}: made group-writable for the export, "
            f"sshd would refuse the Commands' key; {place}"
        )
    for tree, what in _DOUBTFUL_TREES.items():
        if _within(path, tree):
            return path, f"{key}: {_shown(value)} is under {tree} ({what}); exported read-write to the subnet anyway, but {place}"
    return path, None


def _pool(section: _Section, stack: str) -> PoolSettings:
    """An existing pool named by `pool`, or the `dir` pool the stack creates in `poolPath`."""
    existing = section.string("pool", None)
    raw_path = section.string("poolPath", None)
    if existing is not None:
        if not _LIBVIRT_NAME.fullmatch(existing):
            raise ConfigError(
                f"{section.path('pool')}: {_shown(existing)} is not a usable libvirt pool name "
                "(letters, digits, '.', '_' and '-', at most 64, starting with a letter or digit)"
            )
        if raw_path is not None:
            raise ConfigError(
                f"{section.path('poolPath')}: {_shown(raw_path)} only applies to the pool the stack creates; "
                f"remove it, or remove {section.path('pool')} ({_shown(existing)}) to have the stack create its pool"
            )
        return PoolSettings(name=existing, path=None)
    created = f"{stack}-pool"
    if not _LIBVIRT_NAME.fullmatch(created):
        raise ConfigError(
            f"{section.path('pool')}: unset, and the pool the stack would create, {_shown(created)} (after the stack name), "
            "is not a usable libvirt pool name; name an existing pool, or use a shorter stack name"
        )
    value = f"/var/lib/libvirt/images/lvs-cluster-{stack}" if raw_path is None else raw_path
    if not value.startswith("/"):
        raise ConfigError(f"{section.path('poolPath')}: {_shown(value)} must be an absolute path")
    if not _POOL_PATH_CHARACTERS.fullmatch(value):
        raise ConfigError(f"{section.path('poolPath')}: {_shown(value)} has characters outside [A-Za-z0-9._/-]")
    # normpath keeps a leading `//` (POSIX leaves its meaning open): collapse runs of `/` first.
    normalised = posixpath.normpath(re.sub(r"/+", "/", value))
    if normalised == "/":
        raise ConfigError(f"{section.path('poolPath')}: {_shown(value)} is the root directory; the pool needs a directory of its own")
    if _within(PurePosixPath(normalised), "/root"):
        raise ConfigError(
            f"{section.path('poolPath')}: {_shown(value)} is under /root, which QEMU (running as libvirt-qemu) cannot enter: "
            "the domains would not start; use a directory under /var/lib/libvirt/images"
        )
    return PoolSettings(name=created, path=PurePosixPath(normalised))


def _network(section: _Section, role: str) -> NetworkSettings:
    name = section.string("name")
    if not _LIBVIRT_NAME.fullmatch(name):
        raise ConfigError(f"{section.path('name')}: {_shown(name)} is not a usable libvirt network name")
    raw_cidr = section.string("cidr")
    try:
        cidr = IPv4Network(raw_cidr.strip(), strict=True)
    except ValueError as error:
        raise ConfigError(f"{section.path('cidr')}: {_shown(raw_cidr)} is not an IPv4 network in CIDR form ({error})") from None
    if cidr.prefixlen > 29:
        raise ConfigError(f"{section.path('cidr')}: {_shown(raw_cidr)} is too small for a cluster network (at most /29)")
    for special, what in _SPECIAL_NETWORKS:
        if cidr.overlaps(special):
            raise ConfigError(f"{section.path('cidr')}: {_shown(raw_cidr)} is {what}, not an ordinary unicast subnet")
    # The host side defaults to the last usable address so libvirt's usual `.1` stays free:
    # the seed's VIP is 12.0.0.1.
    host_ip = section.address("hostIp", cidr.broadcast_address - 1)
    _require_usable(section.path("hostIp"), host_ip, cidr)
    bridge = section.string("bridge", None)
    # Linux refuses "." and ".."; "all" and "default" are its sysctl directories (net.ipv4.conf).
    if bridge is not None and (not _BRIDGE_NAME.fullmatch(bridge) or bridge in (".", "..", "lo", "all", "default")):
        raise ConfigError(
            f"{section.path('bridge')}: {_shown(bridge)} is not a usable bridge name "
            "(1 to 15 of letters, digits, '_', '.' and '-'; not '.', '..', 'lo', 'all' or 'default')"
        )
    section.reject_unknown()
    return NetworkSettings(role=role, name=name, cidr=cidr, host_ip=host_ip, bridge=bridge)


def _public_key(text: str) -> sshkeys.PublicKey:
    try:
        return sshkeys.parse_public_key(text)
    except sshkeys.SshKeyError as problem:
        raise ConfigError(f"lvs:{problem.key}: {problem.message}") from None


def _unique_volumes(stack: str, names: list[tuple[str, str]]) -> None:
    """Every volume of the stack in its pool: the base image's, and each node's root volume
    and cloud-init ISO (components/image.py, components/vm.py). No two may share a name."""
    volumes = {f"{stack}-base.qcow2": "the base image's volume (lvs:image)"}
    for key, node in names:
        for volume, what in ((f"{stack}-{node}.qcow2", "root volume"), (f"{stack}-{node}-seed.iso", "cloud-init disk")):
            if volume in volumes:
                raise ConfigError(f"{key}: {_shown(node)} would name its {what} {_shown(volume)}, which is {volumes[volume]}; rename it")
            volumes[volume] = f"the {what} of {key}"


def _require_usable(key: str, address: IPv4Address, network: IPv4Network) -> None:
    if address not in network:
        raise ConfigError(f"{key}: {address} is outside its network {network}")
    if address in (network.network_address, network.broadcast_address):
        raise ConfigError(f"{key}: {address} is the network or broadcast address of {network}")


def keepalived_command_names(director: str, web_servers: list[str]) -> dict[str, str]:
    """The names `KeepalivedDirector` (components/keepalived.py) gives its Commands, each with
    the web server it is for ("" for the director's own): one family for every director,
    registered side by side, so one director's names must not be another's."""
    prefix = f"keepalived-{director}"
    return {
        f"{prefix}-watchdog": "",
        f"{prefix}-main": "",
        **{f"{prefix}-real-server-{web}": web for web in web_servers},
        f"{prefix}-virtual-server": "",
        f"{prefix}-load": "",
    }


def _unique_keepalived_commands(directors: list[tuple[str, str]], web_servers: list[tuple[str, str]]) -> None:
    """Pulumi would refuse the second of two equal names, naming no key: say which names meet."""
    web_keys = {name: key for key, name in web_servers}
    seen: dict[str, str] = {}
    for key, director in directors:
        for command, web in keepalived_command_names(director, [name for _, name in web_servers]).items():
            source = f"{key} ({director!r})" + (f" with {web_keys[web]} ({web!r})" if web else "")
            if command in seen:
                raise ConfigError(
                    f"{key}: {director!r} would register the Command {command!r}, which {seen[command]} registers too; rename one"
                )
            seen[command] = source


def _unique(values: list[tuple[str, T]], what: str, show: Callable[[T], str] = str) -> None:
    seen: dict[T, str] = {}
    for key, value in values:
        if value in seen:
            raise ConfigError(f"{key}: {what} {show(value)} is already used by {seen[value]}")
        seen[value] = key


def parse_settings(raw: Mapping[str, Any], *, stack: str, ssh_private_key: Any, ssh_private_key_password: Any = None) -> ClusterSettings:
    """Builds the validated model from the raw `lvs:` values (already JSON-decoded).

    The private key is passed through as given (an Output secret in the program); its content
    is checked by :func:`check_private_key`, which :func:`load_settings` runs."""
    top = _Section(raw, NAMESPACE, separator=":")

    image_section = top.section("image")
    source = image_section.string("source")
    if not source.strip():
        raise ConfigError(f"{image_section.path('source')}: must not be empty")
    if source != source.strip() or not _IMAGE_SOURCE.match(source):
        raise ConfigError(
            f"{image_section.path('source')}: {_shown(source)} is not something the provider fetches "
            "(an http:// or https:// URL, a file:// URL or a path, without spaces around it)"
        )
    image = ImageSettings(source=source, pool=_pool(image_section, stack))
    image_section.reject_unknown()

    warnings: list[str] = []
    if top.raw.get("sshPublicKey", "") is None:
        raise ConfigError("lvs:sshPublicKey: null given, but a value is required (the public half of the key the Commands use)")
    public_key = top.string("sshPublicKey", "")
    if not public_key.strip():
        raise ConfigError("lvs:sshPublicKey: missing (required: the public half of the key the Commands use)")
    _public_key(public_key)
    # The private key and its passphrase are read by load_settings, as secrets.
    top._seen.update({"sshPrivateKey", "sshPrivateKeyPassword"})
    if ssh_private_key is None:
        raise ConfigError("lvs:sshPrivateKey: missing (required, as a secret: pulumi config set --secret lvs:sshPrivateKey < KEYFILE)")

    admin_user = top.string("adminUser", "lvsadmin")
    if not _POSIX_USER.fullmatch(admin_user):
        raise ConfigError(f"lvs:adminUser: {_shown(admin_user)} is not a usable login name")
    if admin_user in _DEBIAN_RESERVED_NAMES:
        raise ConfigError(f"lvs:adminUser: {_shown(admin_user)} is already a user or group on Debian; choose another login name")
    domain_type = _choice(top, "domainType", "kvm", DOMAIN_TYPES)

    networks = top.section("networks")
    internal = _network(networks.section("internal"), "internal")
    external = _network(networks.section("external"), "external")
    networks.reject_unknown()
    if internal.cidr.overlaps(external.cidr):
        raise ConfigError(f"lvs:networks.external.cidr: {external.cidr} overlaps lvs:networks.internal.cidr {internal.cidr}")
    _unique([("lvs:networks.internal.name", internal.name), ("lvs:networks.external.name", external.name)], "name")
    if internal.bridge is not None and internal.bridge == external.bridge:
        raise ConfigError(
            f"lvs:networks.external.bridge: {_shown(external.bridge)} is already the bridge of lvs:networks.internal "
            "(one bridge per network: the two would be one segment, and the director's NAT bypassed)"
        )

    service_section = top.section("service", {})
    service = ServiceSettings(
        port=service_section.integer("port", 80, lo=1, hi=65535),
        scheduler=_choice(service_section, "scheduler", "rr", SCHEDULERS),
        persistence=service_section.integer("persistence", 0, lo=0, hi=MAX_PERSISTENCE),
        mode=_choice(service_section, "mode", "nat", KNOWN_MODES),
    )
    service_section.reject_unknown()
    if service.port in _PORTS_IN_USE:
        raise ConfigError(
            f"lvs:service.port: {service.port} is used by the nodes themselves ({_PORTS_IN_USE[service.port]}); "
            "the web nodes listen on the service port too: choose another"
        )
    if service.mode not in SUPPORTED_MODES:
        raise ConfigError(f"lvs:service.mode: {_shown(service.mode)} is not yet supported (supported: {', '.join(SUPPORTED_MODES)})")

    director = _director(top.section("director"))
    health_check = _health_check(top, service)
    warnings.extend(_slow_failure_warnings(director, health_check))

    nfs_section = top.section("nfs")
    raw_exports = nfs_section._get("exports", _REQUIRED)
    if not isinstance(raw_exports, list) or not raw_exports:
        raise ConfigError(f"lvs:nfs.exports: {_shown(raw_exports)} must be a non-empty list of absolute paths")
    checked = [_export_path(f"lvs:nfs.exports[{i}]", value, admin_user) for i, value in enumerate(raw_exports)]
    exports = tuple(path for path, _ in checked)
    warnings.extend(warning for _, warning in checked if warning)
    first_key: dict[PurePosixPath, int] = {}
    for i, path in enumerate(exports):
        if path in first_key:
            j = first_key[path]
            raise ConfigError(
                f"lvs:nfs.exports[{i}]: {_shown(raw_exports[i])} is the same directory as lvs:nfs.exports[{j}] ({_shown(raw_exports[j])}), "
                f"{path}: list each export once"
            )
        first_key[path] = i
    for i, path in enumerate(exports):
        for j, other in enumerate(exports):
            if other in path.parents:
                warnings.append(
                    f"lvs:nfs.exports[{i}]: {_shown(raw_exports[i])} is inside lvs:nfs.exports[{j}] ({_shown(raw_exports[j])}): "
                    f"the web nodes serving {other} serve it too"
                )
    nfs = NfsSettings(
        name=_hostname(nfs_section, default="nfs"),
        ip=nfs_section.address("ip"),
        exports=exports,
        size=_size(nfs_section, "nfs"),
    )
    nfs_section.reject_unknown()

    web_servers = []
    for item in top.items("webServers"):
        export = _normal_path(item.path("export"), item.string("export"))
        if export not in exports:
            raise ConfigError(f"{item.path('export')}: {_shown(str(export))} is not exported by the NFS server (lvs:nfs.exports)")
        web_servers.append(
            WebServerSettings(
                name=_hostname(item),
                ip=item.address("ip"),
                export=export,
                weight=item.integer("weight", 1, lo=0, hi=65535),
                size=_size(item, "web"),
            )
        )
        item.reject_unknown()
    if not web_servers:
        raise ConfigError("lvs:webServers: the list is empty (at least one web server is needed)")
    if all(web.weight == 0 for web in web_servers):
        weights = f"lvs:webServers[0].weight: 0, and so is every weight (all 0, {len(web_servers)} web servers)"
        if director.pair is not None or health_check is not None:
            # keepalived -t exits 5 on its quorum warning, and the director's Command with it.
            raise ConfigError(f"{weights}: keepalived refuses a virtual service no real server can serve; give one a weight")
        warnings.append(f"{weights}: the VIP answers no request until one has a weight")

    client = None
    if top.raw.get("client") is not None:
        client_section = top.section("client")
        client = ClientSettings(
            name=_hostname(client_section, default="client"),
            ip=client_section.address("ip"),
            size=_size(client_section, "client"),
        )
        client_section.reject_unknown()
    else:
        top._seen.add("client")
    top.reject_unknown()

    # Where each address must live, and that no two things share a name or an address.
    peers = list(enumerate(director.pair or ()))
    placed = [
        ("lvs:director.internalIp", director.internal_ip, internal),
        ("lvs:director.externalIp", director.external_ip, external),
        *[(f"lvs:director.pair[{i}].internalIp", peer.internal_ip, internal) for i, peer in peers],
        *[(f"lvs:director.pair[{i}].externalIp", peer.external_ip, external) for i, peer in peers],
        ("lvs:nfs.ip", nfs.ip, internal),
        *[(f"lvs:webServers[{i}].ip", web.ip, internal) for i, web in enumerate(web_servers)],
        *([("lvs:client.ip", client.ip, external)] if client else []),
    ]
    for key, address, network in placed:
        _require_usable(key, address, network.cidr)
        if address == network.host_ip:
            raise ConfigError(
                f"{key}: {address} is the host-side address of network {network.name} "
                f"(lvs:networks.{network.role}.hostIp); choose another address or set hostIp"
            )
    _unique([(key, address) for key, address, _ in placed], "address")
    director_names = [(f"lvs:director.pair[{i}].name", peer.name) for i, peer in peers] or [("lvs:director.name", director.name)]
    names = [
        *director_names,
        ("lvs:nfs.name", nfs.name),
        *[(f"lvs:webServers[{i}].name", web.name) for i, web in enumerate(web_servers)],
        *([("lvs:client.name", client.name)] if client else []),
    ]
    _unique(names, "name", repr)
    _unique_volumes(stack, names)
    if director.pair is not None or health_check is not None:
        _unique_keepalived_commands(director_names, [(f"lvs:webServers[{i}].name", web.name) for i, web in enumerate(web_servers)])

    return ClusterSettings(
        stack=stack,
        image=image,
        ssh_public_key=public_key.strip(),
        ssh_private_key=ssh_private_key,
        admin_user=admin_user,
        domain_type=domain_type,
        internal=internal,
        external=external,
        service=service,
        director=director,
        nfs=nfs,
        web_servers=tuple(web_servers),
        client=client,
        ssh_private_key_password=ssh_private_key_password,
        warnings=tuple(warnings),
        health_check=health_check,
    )


def _director(section: _Section) -> DirectorSettings:
    """`lvs:director`: one director, or a pair behind floating addresses (`pair`, `vrrp`)."""
    internal_ip = section.address("internalIp")
    external_ip = section.address("externalIp")
    size = _size(section, "director")
    if "pair" in section.raw and section.raw["pair"] is None:  # never silently one director
        raise ConfigError(f"{section.path('pair')}: null is not a value for this key; remove the key for one director")
    if "pair" not in section.raw:
        section._seen.add("pair")
        if "vrrp" in section.raw:
            raise ConfigError(f"{section.path('vrrp')}: VRRP settings need a director pair (lvs:director.pair)")
        name = _hostname(section, default="director")
        section.reject_unknown()
        return DirectorSettings(name, internal_ip, external_ip, size)
    if "name" in section.raw:
        raise ConfigError(
            f"{section.path('name')}: {_shown(section.raw['name'])} is not used with lvs:director.pair "
            "(each director of the pair has its own name)"
        )
    entries = list(section.items("pair"))
    if len(entries) != 2:
        raise ConfigError(f"{section.path('pair')}: {len(entries)} directors given; a pair is exactly two")
    peers = []
    for entry in entries:
        peers.append(DirectorPeer(_hostname(entry), entry.address("internalIp"), entry.address("externalIp")))
        entry.reject_unknown()
    vrrp_section = section.section("vrrp", {})
    vrrp = VrrpSettings(
        virtual_router_id=vrrp_section.integer("virtualRouterId", 51, lo=1, hi=MAX_VIRTUAL_ROUTER_ID),
        advert_interval=_advert_interval(vrrp_section),
        preempt=vrrp_section.boolean("preempt", True),
    )
    vrrp_section.reject_unknown()
    section.reject_unknown()
    return DirectorSettings(peers[0].name, internal_ip, external_ip, size, pair=(peers[0], peers[1]), vrrp=vrrp)


def _advert_interval(section: _Section) -> Decimal:
    """Whole seconds 1..255 (VRRPv2), or hundredths of a second 0.1..40.95 (VRRPv3: a
    takeover in about 3.6 advert intervals, so 0.5 s takes over in about 2 s)."""
    value = section._get("advertInterval", 1)
    text = str(value).strip()
    if isinstance(value, bool) or not re.fullmatch(r"\d+(\.\d{1,2})?", text):
        raise ConfigError(f"{section.path('advertInterval')}: {_shown(value)} is not seconds (a whole number, or hundredths below 40.96)")
    interval = Decimal(text)
    whole = interval == interval.to_integral_value()
    if not (1 <= interval <= 255 if whole else Decimal("0.1") <= interval <= Decimal("40.95")):
        raise ConfigError(f"{section.path('advertInterval')}: {value} is out of range (whole seconds 1..255, or 0.1..40.95 in hundredths)")
    return Decimal(int(interval)) if whole else interval.normalize()


def _health_check(top: _Section, service: ServiceSettings) -> HealthCheckSettings | None:
    """`lvs:healthCheck`: keepalived checks every real server and takes a dead one out."""
    if "healthCheck" not in top.raw:
        top._seen.add("healthCheck")
        return None
    if top.raw["healthCheck"] is None:  # say, its entries commented out: never silently no checks
        raise ConfigError("lvs:healthCheck: null is not a value for this key; remove the key to run without health checks")
    section = top.section("healthCheck")
    kind = _choice(section, "type", "http", HEALTH_CHECK_TYPES)
    if kind == "tcp":
        for http_only in ("path", "status"):
            if http_only in section.raw:
                raise ConfigError(f"{section.path(http_only)}: {_shown(section.raw[http_only])} applies to type http only, not tcp")
    path = _check_path(section)
    port = section.integer("port", service.port, lo=1, hi=65535)
    if port != service.port:
        raise ConfigError(
            f"{section.path('port')}: {port} is not the service port (lvs:service.port, {service.port}): the web nodes serve "
            "only that port, so every check would fail and keepalived would empty the table; remove the key"
        )
    check = HealthCheckSettings(
        type=kind,
        port=port,
        path=path,
        status=section.integer("status", 200, lo=CHECK_STATUSES[0], hi=CHECK_STATUSES[1]),
        interval=section.integer("interval", 2, lo=1, hi=3600),
        timeout=section.integer("timeout", 1, lo=1, hi=3600),
        retries=section.integer("retries", 1, lo=0, hi=100),
    )
    section.reject_unknown()
    return check


def _slow_failure_warnings(director: DirectorSettings, check: HealthCheckSettings | None) -> list[str]:
    """Legal timings that leave clients failing for longer than SLOW_FAILURE_SECONDS."""
    warnings = []
    if check is not None:
        # keepalived (the templates): a check every `interval` (delay_loop); a failed one is tried
        # `retries` more times, each after `interval` (delay_before_retry), each up to `timeout`.
        dead = check.interval + (check.retries + 1) * check.timeout + check.retries * check.interval
        if dead > SLOW_FAILURE_SECONDS:
            warnings.append(
                f"lvs:healthCheck: a dead real server stays in the table for up to {dead} s (interval {check.interval}, "
                f"timeout {check.timeout}, retries {check.retries}), and its share of requests fails that long"
            )
    if director.vrrp is not None:
        # RFC 5798: the backup takes over after 3 adverts and a skew of up to one more.
        takeover = round(float(director.vrrp.advert_interval) * 3.6, 1)
        if takeover > SLOW_FAILURE_SECONDS:
            warnings.append(
                f"lvs:director.vrrp.advertInterval: {director.vrrp.advert_interval} s: a failover takes about {takeover} s, "
                "with the VIP unanswered that long"
            )
    return warnings


def _check_path(section: _Section) -> str:
    """`lvs:healthCheck.path`: a URI path that reaches Apache as written and that keepalived's
    parser neither rewrites nor cuts."""
    key = section.path("path")
    path = section.string("path", "/")
    if not _URL_PATH.fullmatch(path):
        raise ConfigError(f"{key}: {_shown(path)} is not a plain URL path (starts with '/'; letters, digits and ._~/%:@&=+,;- only)")
    if _BAD_ESCAPE.search(path):
        raise ConfigError(f"{key}: {_shown(path)}: '%' only as a two-hex-digit escape, and never %00 or %2F (Apache refuses them)")
    if any(segment in (".", "..") for segment in unquote(path).split("/")):
        raise ConfigError(f"{key}: {_shown(path)} has a dot segment ('.' or '..'): the request would not reach that path")
    if len(path) > MAX_CHECK_PATH:
        raise ConfigError(
            f"{key}: {len(path)} characters; at most {MAX_CHECK_PATH} fit keepalived's configuration line of {_KEEPALIVED_LINE} characters"
        )
    return str(path)


def _shown(value: Any, limit: int = 80) -> str:
    """A value as a message shows it: `null` for None, a long string cut in the middle."""
    if value is None:
        return "null"
    if isinstance(value, str) and len(value) > limit:
        value = value[: limit - 13] + "…" + value[-12:]
    return repr(value)


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
    settings = parse_settings(
        raw,
        stack=stack,
        ssh_private_key=config.get_secret("sshPrivateKey"),
        ssh_private_key_password=config.get_secret("sshPrivateKeyPassword"),
    )
    check_private_key(private_key or "", password, settings.ssh_public_key)
    notes = [*settings.warnings]
    for key in _SECRET_KEYS:
        if config.get(key) is not None and not _is_secret(f"{config.name}:{key}"):
            notes.append(
                f"{config.name}:{key}: given as plain config, so the stack file holds it in clear text; "
                f"set it with pulumi config set --secret {config.name}:{key}"
            )
    for note in notes:
        pulumi.log.warn(note)
    return dataclasses.replace(settings, warnings=tuple(notes))


# Read as secrets, outside the raw model; a plain (non-secret) value is a warning.
_SECRET_KEYS = ("sshPrivateKey", "sshPrivateKeyPassword")


def _is_secret(full_key: str) -> bool:
    """Whether Pulumi handed the program this key as a secret (`pulumi config set --secret`):
    the language host passes the secret keys' names along with the config."""
    from pulumi.runtime import config as runtime_config

    return runtime_config.is_config_secret(full_key) or full_key in runtime_config.get_config_secret_keys_env()


def check_private_key(private_key: str, password: str | None, public_key: str) -> None:
    """`lvs:sshPrivateKey` (and `lvs:sshPrivateKeyPassword`) as the Commands will use them: one
    readable private key, decrypted by the passphrase if encrypted, the private half of
    `public_key`. The message describes the secret value, never shows it."""
    try:
        sshkeys.check_private_key(private_key, password, sshkeys.parse_public_key(public_key))
    except sshkeys.SshKeyError as problem:
        raise ConfigError(f"{NAMESPACE}:{problem.key}: {problem.message}") from None


def _configured_keys(namespace: str) -> list[str]:
    # Pulumi hands the program every configured key; reading them all catches typos such as
    # `lvs:webserver`, which a key-by-key read would silently ignore.
    from pulumi.runtime import config as runtime_config

    prefix = f"{namespace}:"
    present = {key[len(prefix) :] for key in runtime_config.CONFIG.get() if key.startswith(prefix)}
    present |= {key[len(prefix) :] for key in runtime_config.get_config_env() if key.startswith(prefix)}
    return sorted(present | {"sshPublicKey"})


def _decode(key: str, text: str) -> Any:
    import json

    try:
        return json.loads(text)
    except ValueError:
        return text  # plain strings such as the public key are stored unquoted


def mac_address(address: IPv4Address) -> str:
    """A stable, locally administered MAC derived from the NIC's IPv4 address.

    Addresses are unique across the cluster, so MACs are too, and they survive a replace:
    the guest's network-config matches NICs by MAC.
    """
    return "52:54:" + ":".join(f"{octet:02x}" for octet in address.packed)


__all__ = [
    "ClientSettings",
    "ClusterSettings",
    "ConfigError",
    "DirectorSettings",
    "ImageSettings",
    "MachineSize",
    "NetworkSettings",
    "NfsSettings",
    "PoolSettings",
    "ServiceSettings",
    "WebServerSettings",
    "load_settings",
    "mac_address",
    "parse_settings",
]
