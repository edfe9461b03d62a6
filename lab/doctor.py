"""`lab doctor`: a preflight for `pulumi up` on your own libvirt host.

    python -m lab doctor --config Pulumi.<stack>.yaml [--uri URI]

Each finding is one line: status (ok / warn / fail), what was found and, when something is
to be done, the fix. The exit status is 1 if any finding is `fail`, else 0. Nothing is changed:
the doctor only reads (libvirt's capabilities, pools and networks, the PATH, the image file).
"""

from __future__ import annotations

import os
import shutil
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import astuple, dataclass
from ipaddress import IPv4Network
from pathlib import Path, PurePosixPath
from typing import Any, TextIO
from urllib.parse import urlparse

import yaml

from components.config import ClusterSettings, ConfigError, NetworkSettings, settings_from_stack_file

from .host.tools import TOOLS
from .stack.plan import stack_config, stack_name

DEFAULT_URI = "qemu:///system"
STATUSES = ("ok", "warn", "fail")
# Programs terraform-provider-libvirt v0.8.1 runs on the machine running Pulumi.
# What the libvirt provider runs on the machine that runs `pulumi up`.
PROVIDER_TOOLS = (TOOLS["xsltproc"], TOOLS["mkisofs"])
SECURITY_ISSUES = "terraform-provider-libvirt issues #126, #546, #978"

Which = Callable[[str], str | None]


@dataclass(frozen=True)
class Finding:
    status: str  # ok, warn or fail
    check: str  # short name of what was checked
    what: str  # what was found
    fix: str = ""  # the command to run or the config key to set; empty when nothing is to do

    def line(self) -> str:
        text = f"{self.status:<4}  {self.check:<9}  {self.what}"
        return f"{text} -- fix: {self.fix}" if self.fix else text


def exit_status(findings: list[Finding]) -> int:
    return 1 if any(finding.status == "fail" for finding in findings) else 0


def run(config_path: Path, uri: str | None = None, *, out: TextIO, which: Which = shutil.which) -> int:
    """Prints one line per finding and a summary; returns the exit status."""
    findings = diagnose(config_path, uri, which=which)
    for finding in findings:
        print(finding.line(), file=out)
    counts = {status: sum(1 for finding in findings if finding.status == status) for status in STATUSES}
    print(f"doctor: {counts['fail']} fail, {counts['warn']} warn, {counts['ok']} ok", file=out)
    return exit_status(findings)


def diagnose(config_path: Path, uri: str | None = None, *, which: Which = shutil.which) -> list[Finding]:
    """Every finding for the stack file `config_path`, against libvirt at `uri` (default: the
    stack's `libvirt:uri`, else qemu:///system)."""
    config_path = Path(config_path)
    try:
        stack = stack_name(config_path)
        config = stack_config(config_path)
    except (OSError, ValueError, yaml.YAMLError) as error:
        return [Finding("fail", "config", f"cannot read {config_path}: {error}", "pass --config Pulumi.<stack>.yaml of this project")]
    uri = uri or str(config.get("libvirt:uri") or DEFAULT_URI)

    findings: list[Finding] = []
    settings: ClusterSettings | None = None
    try:
        settings = stack_settings(config, stack)
    except ConfigError as error:
        findings.append(Finding("fail", "config", f"{config_path.name}: {error}", "correct that key (pulumi preview stops on it too)"))
    if "lvs:sshPrivateKey" not in config:
        findings.append(
            Finding(
                "warn",
                "config",
                "lvs:sshPrivateKey is not set in the stack file",
                "pulumi config set --secret lvs:sshPrivateKey < ~/.ssh/id_ed25519",
            )
        )
    findings.extend(check_tools(which))
    if settings is not None:
        findings.append(check_image_source(settings.image.source, base=config_path.resolve().parent))

    with connection(uri) as (conn, connect_finding):
        findings.append(connect_finding)
        if conn is not None:
            capabilities = ET.fromstring(conn.getCapabilities())
            if settings is not None:
                findings.append(check_domain_type(conn, capabilities, settings.domain_type))
                findings.extend(check_pool(conn, settings))
            findings.append(check_security(capabilities))
            if settings is not None:
                findings.extend(check_networks(conn, settings))
    return findings


def stack_settings(config: dict[str, Any], stack: str) -> ClusterSettings:
    """The program's model of the stack, as `pulumi preview` builds it: each `lvs:` value as
    the program receives it, the private key a placeholder (nothing the doctor checks depends
    on it)."""
    return settings_from_stack_file(config, stack=stack)


@contextmanager
def connection(uri: str) -> Iterator[tuple[Any, Finding]]:
    """A read-write connection (what the provider opens) or None, with the finding about it."""
    import libvirt

    from .host.libvirtd import quiet_libvirt

    quiet_libvirt()
    try:
        conn = libvirt.open(uri)
    except libvirt.libvirtError as error:
        yield None, Finding("fail", "libvirt", f"cannot connect to {uri}: {error}", _connect_fix(uri, str(error)))
        return
    try:
        version = conn.getLibVersion()
        found = f"reachable at {uri} (driver {conn.getType()}, libvirt {version // 1000000}.{version // 1000 % 1000}.{version % 1000})"
        yield conn, Finding("ok", "libvirt", found)
    finally:
        conn.close()


def _connect_fix(uri: str, message: str) -> str:
    if "Permission denied" in message or "authentication" in message.lower():
        return "join the libvirt group (sudo usermod -aG libvirt $USER, then log in again) or run with sudo"
    if "No such file" in message or "Connection refused" in message:
        return f"is libvirtd running? sudo systemctl enable --now libvirtd; check the URI ({uri}: --uri or libvirt:uri)"
    return f"check the URI ({uri}: --uri or pulumi config set libvirt:uri URI), that libvirtd runs there, and your access to it"


def check_tools(which: Which) -> list[Finding]:
    findings = []
    for program, package, purpose in (astuple(tool) for tool in PROVIDER_TOOLS):
        path = which(program)
        if path:
            findings.append(Finding("ok", "tools", f"{program} at {path} ({purpose})"))
        else:
            findings.append(
                Finding(
                    "fail",
                    "tools",
                    f"{program} not on PATH: the provider runs it on this machine ({purpose})",
                    f"apt-get install {package}",
                )
            )
    return findings


def check_image_source(source: str, *, base: Path) -> Finding:
    """What terraform-provider-libvirt v0.8.1 does with `lvs:image.source`: http(s) URLs are
    downloaded by the provider, anything else with no scheme (or file://) is a local file."""
    parsed = urlparse(source)
    if parsed.scheme in ("http", "https"):
        return Finding(
            "ok",
            "image",
            "lvs:image.source is a URL: the provider downloads it on `pulumi up` (the server must send Content-Length and support Range)",
        )
    if parsed.scheme not in ("", "file"):
        return Finding(
            "fail",
            "image",
            f"lvs:image.source {source!r}: the provider reads only http(s) URLs and local paths",
            "pulumi config set lvs:image.source with an https URL or a local qcow2 path",
        )
    path = Path(parsed.path if parsed.scheme == "file" else source)
    if not path.is_absolute():
        path = base / path
    if not path.is_file():
        return Finding(
            "fail",
            "image",
            f"lvs:image.source {path} does not exist or is not a file",
            "download the Debian 12 genericcloud qcow2 there, or set lvs:image.source to its path or URL",
        )
    if not os.access(path, os.R_OK):
        return Finding(
            "fail", "image", f"lvs:image.source {path} is not readable by this user", f"chmod a+r {path} (or run pulumi as its owner)"
        )
    return Finding("ok", "image", f"lvs:image.source {path} is readable ({path.stat().st_size} bytes)")


def check_domain_type(conn: Any, capabilities: ET.Element, domain_type: str) -> Finding:
    """Whether the host can run `lvs:domainType` guests of its own architecture (what the
    provider defaults a domain's arch to)."""
    arch = capabilities.findtext("host/cpu/arch") or "x86_64"
    available, evidence = _virt_type_available(conn, capabilities, arch, domain_type)
    offered = sorted({d.get("type", "") for d in capabilities.iterfind(f"guest/arch[@name='{arch}']/domain")})
    offered_text = ", ".join(offered) or "none"
    if available:
        if domain_type == "qemu" and _virt_type_available(conn, capabilities, arch, "kvm")[0]:
            return Finding(
                "ok",
                "domain",
                f"lvs:domainType qemu is available for {arch} (software emulation; kvm is available too, and much faster)",
            )
        return Finding("ok", "domain", f"lvs:domainType {domain_type} is available for {arch} ({evidence})")
    if domain_type == "kvm":
        return Finding(
            "fail",
            "domain",
            f"lvs:domainType kvm is not available for {arch} here ({evidence}; domain types offered: {offered_text})",
            "pulumi config set lvs:domainType qemu (software emulation, slow), or enable VT-x/AMD-V and load kvm_intel/kvm_amd",
        )
    return Finding(
        "fail",
        "domain",
        f"lvs:domainType {domain_type} is not available for {arch} here ({evidence}; domain types offered: {offered_text})",
        "apt-get install qemu-system-x86 on the libvirt host",
    )


def _virt_type_available(conn: Any, capabilities: ET.Element, arch: str, virt_type: str) -> tuple[bool, str]:
    import libvirt

    try:
        conn.getDomainCapabilities(None, arch, None, virt_type)
        return True, "domain capabilities"
    except libvirt.libvirtError as error:
        if error.get_error_code() != libvirt.VIR_ERR_NO_SUPPORT:
            return False, f"domain capabilities: {error}"
    # Drivers without domain capabilities (such as the test driver): the host capabilities.
    found = capabilities.find(f"guest/arch[@name='{arch}']/domain[@type='{virt_type}']") is not None
    return found, "host capabilities"


def check_pool(conn: Any, settings: ClusterSettings) -> list[Finding]:
    import libvirt

    pool = settings.image.pool
    if not pool.created_by_stack:
        try:
            existing = conn.storagePoolLookupByName(pool.name)
        except libvirt.libvirtError:
            return [
                Finding(
                    "fail",
                    "pool",
                    f"lvs:image.pool {pool.name!r} does not exist",
                    f"virsh pool-define-as {pool.name} dir --target DIR && virsh pool-start {pool.name} && "
                    f"virsh pool-autostart {pool.name}; or remove lvs:image.pool to let the stack create {settings.stack}-pool",
                )
            ]
        if not existing.isActive():
            return [
                Finding(
                    "fail",
                    "pool",
                    f"lvs:image.pool {pool.name!r} exists but is not active",
                    f"virsh pool-start {pool.name} && virsh pool-autostart {pool.name}",
                )
            ]
        return [Finding("ok", "pool", f"lvs:image.pool {pool.name!r} exists and is active ({_pool_path(existing) or 'no path'})")]

    findings = []
    try:
        conn.storagePoolLookupByName(pool.name)
        findings.append(
            Finding(
                "fail",
                "pool",
                f"storage pool {pool.name!r} already exists: the provider refuses to create it again",
                f"if this stack did not create it: virsh pool-destroy {pool.name} && virsh pool-undefine {pool.name}, "
                f"or use it as is: set lvs:image.pool to {pool.name} (and remove lvs:image.poolPath)",
            )
        )
    except libvirt.libvirtError:
        pass
    sharing = [other.name() for other in conn.listAllStoragePools() if other.name() != pool.name and _pool_path(other) == pool.path]
    if sharing:
        findings.append(
            Finding(
                "warn",
                "pool",
                f"pool(s) {', '.join(sharing)} already use {pool.path}, where the stack creates {pool.name!r}: two pools, one directory",
                f"set lvs:image.poolPath to a directory of its own, or set lvs:image.pool to {sharing[0]} to use that pool",
            )
        )
    if not findings:
        findings.append(Finding("ok", "pool", f"the stack creates pool {pool.name!r} at {pool.path}: no pool of that name or path yet"))
    return findings


def _pool_path(pool: Any) -> PurePosixPath | None:
    path = ET.fromstring(pool.XMLDesc(0)).findtext("target/path")
    return PurePosixPath(path) if path else None


def check_security(capabilities: ET.Element) -> Finding:
    models = [model.text or "" for model in capabilities.iterfind("host/secmodel/model")]
    confining = [model for model in models if model in ("apparmor", "selinux")]
    if confining:
        return Finding(
            "warn",
            "security",
            f"security driver {confining[0]} confines QEMU: volumes may fail with 'Permission denied' ({SECURITY_ISSUES})",
            "if they do: label the pool's directory for it, or set security_driver in /etc/libvirt/qemu.conf as your "
            "distribution documents (README, Troubleshooting); never disable the security module",
        )
    return Finding("ok", "security", f"security driver: {', '.join(models) or 'none'} (no AppArmor/SELinux confinement of QEMU)")


def check_networks(conn: Any, settings: ClusterSettings) -> list[Finding]:
    existing = [(network.name(), _network_subnets(network)) for network in conn.listAllNetworks()]
    findings = []
    for wanted in (settings.internal, settings.external):
        findings.extend(_network_findings(wanted, existing))
    return findings


def _network_findings(wanted: NetworkSettings, existing: list[tuple[str, list[IPv4Network]]]) -> list[Finding]:
    key = f"lvs:networks.{wanted.role}"
    findings = []
    if any(name == wanted.name for name, _ in existing):
        findings.append(
            Finding(
                "fail",
                "network",
                f"a libvirt network named {wanted.name!r} already exists: the provider fails defining {key}",
                f"set {key}.name to another name, or remove that one: virsh net-destroy {wanted.name} && virsh net-undefine {wanted.name}",
            )
        )
    for name, subnets in existing:
        if name == wanted.name:
            continue
        for subnet in subnets:
            if subnet.overlaps(wanted.cidr):
                findings.append(
                    Finding(
                        "fail",
                        "network",
                        f"libvirt network {name!r} ({subnet}) overlaps {key}.cidr {wanted.cidr}",
                        f"set {key}.cidr to a free subnet (and the addresses in it), or remove network {name!r}",
                    )
                )
    if not findings:
        findings.append(Finding("ok", "network", f"{key} {wanted.name!r} {wanted.cidr}: name free, no libvirt network overlaps"))
    return findings


def _network_subnets(network: Any) -> list[IPv4Network]:
    subnets = []
    for ip in ET.fromstring(network.XMLDesc(0)).iterfind("ip"):
        if ip.get("family", "ipv4") != "ipv4" or not ip.get("address"):
            continue
        mask = ip.get("prefix") or ip.get("netmask")
        if not mask:
            continue
        try:
            subnets.append(IPv4Network(f"{ip.get('address')}/{mask}", strict=False))
        except ValueError:
            continue
    return subnets
