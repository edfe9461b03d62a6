"""What terraform-provider-libvirt v0.8.1 (the provider pulumi-libvirt 0.5.4 bridges) sends to
libvirt for each planned resource, so the lab can hand it to a real libvirtd.

This is the lab's engine while the real one cannot be built here (the Go module proxy refuses
the provider plugins and the Python language host: see the README). Every element cites the
provider function it mirrors (file:function at tag v0.8.1 of dmacvicar/terraform-provider-
libvirt). The provider's indentation and empty-element style are not mirrored: libvirt parses
the same document either way.
"""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

from . import tools

PROVIDER = "terraform-provider-libvirt v0.8.1"
DNSMASQ_NAMESPACE = "http://libvirt.org/schemas/network/dnsmasq/1.0"


@dataclass(frozen=True)
class DirectBoot:
    """The lab image has no boot loader: its kernel and initrd are given to QEMU directly
    (a lab substitution, listed in the report)."""

    kernel: Path
    initrd: Path
    cmdline: str


@dataclass(frozen=True)
class LabDomainChanges:
    """Everything the lab adds to a domain the program declared; nothing else is altered."""

    boot: DirectBoot | None
    console_log: Path | None  # libvirt copies the serial console here (the lab's progress and failure output)
    tcg_translation_cache_mib: int | None  # caps QEMU's memory under software emulation


def _xml(element: ElementTree.Element) -> str:
    return ElementTree.tostring(element, encoding="unicode")


def _sub(parent: ElementTree.Element, tag: str, text: str | None = None, **attributes: str) -> ElementTree.Element:
    child = ElementTree.SubElement(parent, tag, attributes)
    if text is not None:
        child.text = text
    return child


def apply_xslt(xml: str, stylesheet: str | None) -> str:
    """utils_xslt.go transformXML: `xsltproc --nomkdir --nonet --nowrite` on the machine
    running the provider, before anything reaches libvirt."""
    if not stylesheet:
        return xml
    tools.require("xsltproc")
    with tempfile.TemporaryDirectory(prefix="lvs-lab-xslt-") as work:
        (Path(work) / "resource.xsl").write_text(stylesheet.strip())
        (Path(work) / "resource.xml").write_text(xml)
        result = subprocess.run(
            ["xsltproc", "--nomkdir", "--nonet", "--nowrite", "resource.xsl", "resource.xml"],
            cwd=work,
            capture_output=True,
            text=True,
            timeout=30,
        )
    if result.returncode != 0:
        raise ValueError(f"error applying XSLT stylesheet: exit status {result.returncode}: {result.stderr.strip()}")
    return result.stdout


# ------------------------------------------------------------------------------------ pool


def pool_xml(inputs: Mapping[str, Any]) -> str:
    """resource_libvirt_pool.go resourceLibvirtPoolCreate: a dir pool with its target path
    (`target.path`, else the deprecated `path`)."""
    if inputs.get("type", "dir") != "dir":
        raise ValueError(f"pool {inputs['name']}: the lab translates dir pools only, not {inputs.get('type')!r}")
    pool = ElementTree.Element("pool", type="dir")
    _sub(pool, "name", inputs["name"])
    path = (inputs.get("target") or {}).get("path") or inputs.get("path")
    _sub(_sub(pool, "target"), "path", path)
    return apply_xslt(_xml(pool), (inputs.get("xml") or {}).get("xslt"))


# --------------------------------------------------------------------------------- volumes


def _volume(name: str, capacity: int, unit: str, volume_format: str) -> ElementTree.Element:
    """volume_def.go newDefVolume: format, permissions mode 644, capacity."""
    volume = ElementTree.Element("volume")
    _sub(volume, "name", name)
    _sub(volume, "capacity", str(capacity), unit=unit)
    target = _sub(volume, "target")
    _sub(target, "format", type=volume_format)
    _sub(_sub(target, "permissions"), "mode", "644")
    return volume


def is_qcow2(path: Path) -> bool:
    """volume_image.go localImage.IsQCOW2: the first 8 bytes are qcow2's magic and version 3."""
    with path.open("rb") as handle:
        return handle.read(8) == b"QFI\xfb\x00\x00\x00\x03"


def source_volume_xml(inputs: Mapping[str, Any], source: Path) -> str:
    """resource_libvirt_volume.go resourceLibvirtVolumeCreate with `source` a local file: the
    capacity is the file's size in bytes (localImage.Size), not the image's virtual size; the
    content is uploaded afterwards (utils_volume.go newVolumeUploader)."""
    volume_format = "qcow2" if is_qcow2(source) else inputs.get("format", "qcow2")
    if inputs.get("format") and inputs["format"] != volume_format:
        raise ValueError(f"volume {inputs['name']}: format {inputs['format']!r} but {source} is {volume_format}")
    volume = _volume(inputs["name"], source.stat().st_size, "B", volume_format)
    return apply_xslt(_xml(volume), (inputs.get("xml") or {}).get("xslt"))


def backed_volume_xml(inputs: Mapping[str, Any], *, base_path: str, base_format: str, base_capacity: int) -> str:
    """resource_libvirt_volume.go with `base_volume_id`: a copy-on-write layer as large as its
    base (volume_def.go newDefBackingStoreFromLibvirt gives the backing path and format)."""
    volume = _volume(inputs["name"], int(inputs.get("size") or base_capacity), "bytes", inputs.get("format", "qcow2"))
    backing = _sub(volume, "backingStore")
    _sub(backing, "path", base_path)
    _sub(backing, "format", type=base_format)
    return apply_xslt(_xml(volume), (inputs.get("xml") or {}).get("xslt"))


def cloud_init_iso(inputs: Mapping[str, Any], work: Path) -> Path:
    """cloudinit_def.go createFiles + createISO: all three files, even empty ones, then
    `mkisofs -volid cidata -joliet -rock` on the machine running the provider."""
    files = {"user-data": "userData", "meta-data": "metaData", "network-config": "networkConfig"}
    work.mkdir(parents=True, exist_ok=True)
    for file_name, key in files.items():
        (work / file_name).write_text(inputs.get(key) or "")
        (work / file_name).chmod(0o600)
    iso = work / str(inputs["name"])
    tools.require("mkisofs")
    subprocess.run(
        ["mkisofs", "-quiet", "-output", str(iso), "-volid", "cidata", "-joliet", "-rock", *(str(work / name) for name in files)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return iso


def cloud_init_volume_xml(name: str, iso: Path) -> str:
    """cloudinit_def.go UploadIso: a raw volume the ISO's size, no XSLT."""
    return _xml(_volume(name, iso.stat().st_size, "B", "raw"))


# -------------------------------------------------------------------------------- networks


def network_xml(inputs: Mapping[str, Any]) -> str:
    """resource_libvirt_network.go resourceLibvirtNetworkCreate, then the resource's XSLT."""
    network = ElementTree.Element("network")
    _sub(network, "name", inputs["name"])
    mode = inputs.get("mode", "nat")
    if mode not in ("none", "nat", "route", "open", "bridge"):
        raise ValueError(f"network {inputs['name']}: unknown mode {mode!r}")
    if mode != "none":
        # newNetworkDef starts from <forward mode='nat'>; "none" removes it (isolated).
        _sub(network, "forward", mode=mode)
    # network.go getBridgeFromResource: always STP on; no name lets libvirt pick virbrN.
    bridge = {"name": inputs["bridge"]} if inputs.get("bridge") else {}
    _sub(network, "bridge", **bridge, stp="on")
    if inputs.get("mtu"):
        _sub(network, "mtu", size=str(inputs["mtu"]))
    if (inputs.get("dns") or {}).get("enabled"):
        _sub(network, "dns")  # only when enabled: `enabled = false` sends no <dns> at all
    for cidr in inputs.get("addresses", []):
        # network.go getNetworkIPConfig: the host takes the network address + 1; DHCP only
        # when not explicitly disabled.
        subnet = IPv4Network(cidr, strict=False)
        if subnet.prefixlen > 29:
            raise ValueError(f"network {inputs['name']}: netmask seems to be too strict: only {32 - subnet.prefixlen} bits for hosts")
        ip = _sub(network, "ip", address=str(subnet.network_address + 1), family="ipv4", prefix=str(subnet.prefixlen))
        if (inputs.get("dhcp") or {}).get("enabled", True):
            dhcp = _sub(ip, "dhcp")
            _sub(dhcp, "range", start=str(subnet.network_address + 2), end=str(subnet.broadcast_address - 1))
    # resource_libvirt_network.go: an empty dnsmasq <options> in its own default namespace
    # (ElementTree would prefix it, so it is spliced in as text).
    xml = _xml(network).removesuffix("</network>") + f'<options xmlns="{DNSMASQ_NAMESPACE}" /></network>'
    return apply_xslt(xml, (inputs.get("xml") or {}).get("xslt"))


# --------------------------------------------------------------------------------- domains


@dataclass(frozen=True)
class DiskSource:
    pool: str
    volume: str
    volume_format: str


def domain_xml(
    inputs: Mapping[str, Any],
    *,
    machine: str,
    disks: list[DiskSource],
    cloud_init_path: str | None,
    network_names: list[str],
    lab: LabDomainChanges,
) -> str:
    """resource_libvirt_domain.go resourceLibvirtDomainCreate on domain_def.go newDomainDef
    (spice graphics, a guest-agent channel, a virtio RNG and pae/acpi/apic by default)."""
    domain = ElementTree.Element("domain", type=inputs.get("type", "kvm"))
    _sub(domain, "name", inputs["name"])
    _sub(domain, "memory", str(int(inputs.get("memory", 512))), unit="MiB")
    _sub(domain, "vcpu", str(int(inputs.get("vcpu", 1))))
    os_element = _sub(domain, "os")
    # utils_domain_def.go getMachineTypeForArch: "pc", canonicalised from the capabilities.
    _sub(os_element, "type", "hvm", machine=machine)
    if lab.boot:
        _sub(os_element, "kernel", str(lab.boot.kernel))
        _sub(os_element, "initrd", str(lab.boot.initrd))
        _sub(os_element, "cmdline", lab.boot.cmdline)
    features = _sub(domain, "features")
    for feature in ("pae", "acpi", "apic"):
        _sub(features, feature)
    if lab.tcg_translation_cache_mib:
        _sub(_sub(features, "tcg"), "tb-cache", str(lab.tcg_translation_cache_mib), unit="MiB")
    cpu_mode = (inputs.get("cpu") or {}).get("mode")
    _sub(domain, "cpu", **({"mode": cpu_mode} if cpu_mode else {}))
    devices = _sub(domain, "devices")
    for index, disk in enumerate(disks):
        # disk_def.go newDefDisk + setDisks: vda, vdb … on virtio; a volume_id is a volume disk.
        element = _sub(devices, "disk", type="volume", device="disk")
        _sub(element, "driver", name="qemu", type=disk.volume_format)
        _sub(element, "source", pool=disk.pool, volume=disk.volume)
        _sub(element, "target", dev=f"vd{chr(ord('a') + index)}", bus="virtio")
    if cloud_init_path:
        # domain.go newDiskForCloudInit: a file cdrom on IDE hdd (needs the i440fx "pc" machine).
        element = _sub(devices, "disk", type="file", device="cdrom")
        _sub(element, "driver", name="qemu", type="raw")
        _sub(element, "source", file=cloud_init_path)
        _sub(element, "target", dev="hdd", bus="ide")
        _sub(element, "serial", "cloudinit")
    for nic, network_name in zip(inputs.get("networkInterfaces", []), network_names, strict=True):
        # domain.go setNetworkInterfaces: virtio, the configured MAC upper-cased.
        element = _sub(devices, "interface", type="network")
        if nic.get("mac"):
            _sub(element, "mac", address=nic["mac"].upper())
        _sub(element, "source", network=network_name)
        _sub(element, "model", type="virtio")
    for console in inputs.get("consoles", []):
        # domain.go setConsoles: a pty console without a source path carries no type attribute.
        element = _sub(devices, "console")
        _sub(element, "target", type=console.get("targetType", "serial"), port=str(console.get("targetPort", "0")))
        if lab.console_log and console.get("targetType", "serial") == "serial" and str(console.get("targetPort", "0")) == "0":
            _sub(element, "log", file=str(lab.console_log), append="off")
    channel = _sub(devices, "channel", type="unix")
    _sub(channel, "target", type="virtio", name="org.qemu.guest_agent.0")
    _sub(devices, "graphics", type="spice", autoport="yes")
    rng = _sub(devices, "rng", model="virtio")
    _sub(rng, "backend", "/dev/urandom", model="random")
    return apply_xslt(_xml(domain), (inputs.get("xml") or {}).get("xslt"))
