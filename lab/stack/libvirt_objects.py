"""What the lab still needs to know of terraform-provider-libvirt v0.8.1 beside the real provider
(the provider function each mirrors is cited, at tag v0.8.1 of dmacvicar/terraform-provider-
libvirt), and what it asks libvirt directly:

- the XML of each planned network, after the program's own stylesheet: the host's address on
  each network decides how the lab reaches the guests, and it must be known before `pulumi up`
  creates the network (topology.py);
- the XML of a dir pool, for the pools a stack expects the host to have (`lvs:image.pool`);
- what the daemon still holds of a stack after `pulumi destroy`, through libvirt's API.
"""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Callable, Mapping
from ipaddress import IPv4Network
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import libvirt

from ..host import tools
from .plan import CLOUD_INIT_DISK, DOMAIN, NETWORK, POOL, VOLUME, Plan

Log = Callable[[str], None]
PRIVATE_IMAGES = "/var/lib/libvirt/images"  # inside the lab daemon's mount namespace
LIBVIRT_TYPES = (POOL, VOLUME, CLOUD_INIT_DISK, NETWORK, DOMAIN)
DNSMASQ_NAMESPACE = "http://libvirt.org/schemas/network/dnsmasq/1.0"


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


def pool_xml(inputs: Mapping[str, Any]) -> str:
    """resource_libvirt_pool.go resourceLibvirtPoolCreate: a dir pool with its target path
    (`target.path`, else the deprecated `path`)."""
    if inputs.get("type", "dir") != "dir":
        raise ValueError(f"pool {inputs['name']}: the lab provides dir pools only, not {inputs.get('type')!r}")
    pool = ElementTree.Element("pool", type="dir")
    _sub(pool, "name", inputs["name"])
    path = (inputs.get("target") or {}).get("path") or inputs.get("path")
    _sub(_sub(pool, "target"), "path", path)
    return apply_xslt(_xml(pool), (inputs.get("xml") or {}).get("xslt"))


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


def provide_existing_pools(connection: libvirt.virConnect, plan: Plan, directory: Path, *, log: Log) -> list[str]:
    """A stack that names an existing pool (`lvs:image.pool`) expects the host to have it: the
    lab makes each such pool (a dir pool under `directory`) before `up`. Not the stack's:
    destroy leaves them."""
    created = {resource.inputs["name"] for resource in plan.of_type(POOL)}
    wanted = {resource.inputs["pool"] for resource in plan.resources if resource.type in (VOLUME, CLOUD_INIT_DISK)}
    existing = {pool.name() for pool in connection.listAllStoragePools(0)}
    provided = sorted(wanted - created - existing)
    for name in provided:
        inputs = {"name": name, "type": "dir", "target": {"path": str(directory / name)}}
        pool = connection.storagePoolDefineXML(pool_xml(inputs), 0)
        pool.build(0)
        pool.create(0)
        log(f"libvirt: the lab provides the existing pool {name!r} the stack names")
    return provided


def leftovers(connection: libvirt.virConnect, plan: Plan) -> list[str]:
    """The plan's libvirt objects the daemon still holds, found through its API."""
    names: dict[str, set[str]] = {resource_type: set() for resource_type in LIBVIRT_TYPES}
    for resource in plan.resources:
        if resource.type in LIBVIRT_TYPES:
            names[resource.type].add(resource.inputs["name"])
    found = [f"domain {d.name()}" for d in connection.listAllDomains(0) if d.name() in names.get(DOMAIN, set())]
    found += [f"network {n.name()}" for n in connection.listAllNetworks(0) if n.name() in names.get(NETWORK, set())]
    volume_names = names.get(VOLUME, set()) | names.get(CLOUD_INIT_DISK, set())
    for pool in connection.listAllStoragePools(0):
        if pool.name() in names.get(POOL, set()):
            found.append(f"pool {pool.name()}")
        if pool.isActive():
            pool.refresh(0)
            found += [f"volume {pool.name()}/{v}" for v in pool.listVolumes() if v in volume_names]
    return sorted(found)
