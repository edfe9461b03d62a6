"""The lab's entry point around the unchanged program, for the real engine.

The lab's Pulumi project (`write_project`, in the run's directory) is the repository's
`Pulumi.yaml` with the repository's virtualenv, and a `__main__.py` that calls `run`: it registers
one stack transform, then runs the repository's `__main__.py` as it is. The transform gives every
libvirt Domain what stack config cannot express, through inputs the provider itself offers (each
listed in the report's `substitutions`):

- `kernel`, `initrd`, `cmdlines`: the lab image has no boot loader;
- `xml.xslt`: libvirt copies the serial console to a file (the lab watches boots and shows the
  console on failure) and, under software emulation, caps QEMU's translation cache.
"""

from __future__ import annotations

import json
import runpy
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from xml.sax.saxutils import quoteattr

import pulumi
import yaml

REPO = Path(__file__).resolve().parents[2]
DOMAIN = "libvirt:index/domain:Domain"
ADDITIONS_FILE = "lab-domain-additions.json"


@dataclass(frozen=True)
class DomainAdditions:
    kernel: str
    initrd: str
    cmdline: str
    consoles: str  # directory: the console of domain D is copied to D.log there
    tcg_translation_cache_mib: int | None  # under software emulation only


def cmdlines(cmdline: str) -> list[dict[str, str]]:
    """A kernel command line as the provider's `cmdlines`, in the form the provider reads back
    from the domain (terraform-provider-libvirt v0.8.1 splitKernelCmdLine over the words it
    sorted when it wrote them, setCmdlineArgs): the `key=value` words in one map (a repeated
    key starts another), then every word without `=` in one map under `_`. Any other form is a
    diff at the next preview, and `cmdlines` forces a new domain."""
    maps: list[dict[str, str]] = []
    current: dict[str, str] = {}
    keyless = []
    for word in sorted(cmdline.split()):
        key, equals, value = word.partition("=")
        if not equals:
            keyless.append(word)
            continue
        if key in current:
            maps.append(current)
            current = {}
        current[key] = value
    if current:
        maps.append(current)
    if keyless:
        maps.append({"_": " ".join(keyless)})
    return maps


def stylesheet(console_log: str, tcg_translation_cache_mib: int | None) -> str:
    """XSLT over the provider's domain XML: a log file on the first serial console, and a TCG
    translation cache where asked; everything else copied as it is."""
    tcg = ""
    if tcg_translation_cache_mib:
        tcg = f"""
  <xsl:template match="/domain/features">
    <xsl:copy><xsl:apply-templates select="@*|node()"/><tcg><tb-cache unit="MiB">{tcg_translation_cache_mib}</tb-cache></tcg></xsl:copy>
  </xsl:template>"""
    return f"""<?xml version="1.0"?>
<xsl:stylesheet version="1.0" xmlns:xsl="http://www.w3.org/1999/XSL/Transform">
  <xsl:output method="xml" indent="yes"/>
  <xsl:template match="@*|node()">
    <xsl:copy><xsl:apply-templates select="@*|node()"/></xsl:copy>
  </xsl:template>
  <xsl:template match="/domain/devices/console[target/@type='serial' and target/@port='0']">
    <xsl:copy><xsl:apply-templates select="@*|node()"/><log file={quoteattr(console_log)} append="off"/></xsl:copy>
  </xsl:template>{tcg}
</xsl:stylesheet>
"""


def domain_transform(additions: DomainAdditions) -> pulumi.ResourceTransform:
    def add(args: pulumi.ResourceTransformArgs) -> pulumi.ResourceTransformResult | None:
        if args.type_ != DOMAIN:
            return None
        props = dict(args.props)
        console_log = str(Path(additions.consoles) / f"{props['name']}.log")
        props["kernel"] = additions.kernel
        props["initrd"] = additions.initrd
        props["cmdlines"] = cmdlines(additions.cmdline)
        props["xml"] = {"xslt": stylesheet(console_log, additions.tcg_translation_cache_mib)}
        return pulumi.ResourceTransformResult(props=props, opts=args.opts)

    return add


def run(project: Path) -> None:
    """The lab project's program: the transform, then the repository's program, unchanged."""
    additions = DomainAdditions(**json.loads((project / ADDITIONS_FILE).read_text()))
    pulumi.runtime.register_stack_transform(domain_transform(additions))
    runpy.run_path(str(REPO / "__main__.py"), run_name="__main__")


def write_project(directory: Path, stack_file: Path, additions: DomainAdditions) -> Path:
    """The lab's Pulumi project: the repository's Pulumi.yaml (its virtualenv made absolute), the
    entry point, the additions, and the stack file as the user wrote it."""
    directory.mkdir(parents=True, exist_ok=True)
    project = yaml.safe_load((REPO / "Pulumi.yaml").read_text())
    options = project.setdefault("runtime", {}).setdefault("options", {})
    options["virtualenv"] = str(REPO / options.get("virtualenv", ".venv"))
    (directory / "Pulumi.yaml").write_text(yaml.safe_dump(project, sort_keys=False))
    (directory / "__main__.py").write_text(
        "# The lab's entry point (lab/engine/program.py): one stack transform around the unchanged program.\n"
        "import sys\n"
        "from pathlib import Path\n\n"
        f"sys.path.insert(0, {str(REPO)!r})\n"
        "from lab.engine.program import run  # noqa: E402\n\n"
        "run(Path(__file__).parent)\n"
    )
    (directory / ADDITIONS_FILE).write_text(json.dumps(asdict(additions), indent=2))
    shutil.copyfile(stack_file, directory / stack_file.name)
    return directory
