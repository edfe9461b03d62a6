"""The external programs the tests and the lab run, and the Debian package that brings each.

A missing program fails with one line naming it and its package, instead of a bare
FileNotFoundError or an `assert False` deep in a test. Every package named here is in
`scripts/debian-packages`, which `scripts/setup` installs (a test keeps the two in step).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Tool:
    program: str
    package: str
    purpose: str


class MissingToolError(RuntimeError):
    pass


TOOLS = {
    tool.program: tool
    for tool in (
        # What the libvirt provider runs on the machine that runs `pulumi up` (and the lab does).
        Tool("xsltproc", "xsltproc", "applies the networks' XSLT stylesheet"),
        Tool("mkisofs", "genisoimage", "builds each node's cloud-init ISO"),
        # What the fast tests run.
        Tool("virt-xml-validate", "libvirt-clients", "validates libvirt XML against libvirt's schemas"),
        Tool("xmllint", "libxml2-utils", "validates XML for virt-xml-validate"),
        Tool("isoinfo", "genisoimage", "reads back a cloud-init ISO"),
        Tool("dash", "dash", "checks the rule scripts' syntax as the guests' /bin/sh"),
        Tool("chromium", "chromium", "renders the lab's HTML report headless"),
        Tool("/usr/bin/python3", "python3-minimal", "runs Debian's cloud-init validator"),
        Tool("patch", "patch", "applies the engine build's fixes to the libvirt provider's client"),
        # What the VM lab runs on this machine.
        Tool("qemu-system-x86_64", "qemu-system-x86", "runs the guests"),
        Tool("qemu-img", "qemu-utils", "converts the lab image"),
        Tool("mmdebstrap", "mmdebstrap", "builds the lab image"),
        Tool("mkfs.ext4", "e2fsprogs", "writes the lab image's file system"),
        Tool("libvirtd", "libvirt-daemon", "the lab's private libvirt daemon"),
        Tool("virtlogd", "libvirt-daemon", "the private daemon's log daemon"),
        Tool("ip", "iproute2", "makes the lab's network namespace"),
        Tool("sysctl", "procps", "sets the namespace's sysctls"),
        Tool("unshare", "util-linux", "gives the daemon and the image build their own mounts"),
        Tool("ssh", "openssh-client", "reaches the guests"),
        Tool("ssh-keygen", "openssh-client", "makes the lab's key pair"),
        Tool("curl", "curl", "sends the lab's requests to the VIP"),
        Tool("tcpdump", "tcpdump", "captures on the guests' NICs who answers the VIP"),
    )
}

# What `lab image` needs, and `lab up` and `lab verify` besides, before they start anything.
IMAGE_PROGRAMS = ("mmdebstrap", "mkfs.ext4", "qemu-img", "unshare")
LAB_PROGRAMS = (
    *IMAGE_PROGRAMS,
    "xsltproc",
    "mkisofs",
    "qemu-system-x86_64",
    "libvirtd",
    "virtlogd",
    "ip",
    "sysctl",
    "ssh",
    "ssh-keygen",
    "curl",
    "tcpdump",
)


def missing_message(program: str) -> str:
    tool = TOOLS[program]
    return f"{program} is missing: install Debian's {tool.package} (bash scripts/setup does); it {tool.purpose}"


def require(*programs: str) -> None:
    """Raises MissingToolError, one line naming every missing program and its package."""
    missing = [program for program in programs if shutil.which(program) is None]
    if missing:
        raise MissingToolError("; ".join(missing_message(program) for program in missing))


def packages(programs: Iterable[str] = TOOLS) -> set[str]:
    return {TOOLS[program].package for program in programs}
