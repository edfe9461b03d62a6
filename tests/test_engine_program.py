"""The lab's entry point for the real engine (lab/engine/program.py): what its stack transform
gives a Domain must be what the provider reads back, or every preview after `up` replaces the
domains (seen: `+-10 to replace [diff: ~cmdlines]`), and its stylesheet must change nothing but
what it adds."""

from __future__ import annotations

import subprocess
from pathlib import Path
from xml.etree import ElementTree

import pytest
import yaml

from lab.engine.program import ADDITIONS_FILE, DomainAdditions, cmdlines, stylesheet, write_project
from lab.host import tools

PROJECT_DIR = Path(__file__).resolve().parent.parent


def provider_writes(maps: list[dict[str, str]]) -> str:
    """terraform-provider-libvirt v0.8.1 domain.go setCmdlineArgs: every word, sorted."""
    words = [value if key == "_" else f"{key}={value}" for entry in maps for key, value in entry.items()]
    return " ".join(sorted(words))


def provider_reads(cmdline: str) -> list[dict[str, str]]:
    """terraform-provider-libvirt v0.8.1 utils_domain_def.go splitKernelCmdLine."""
    maps: list[dict[str, str]] = []
    current: dict[str, str] = {}
    keyless = []
    for word in cmdline.split(" "):
        if "=" not in word:
            keyless.append(word)
            continue
        key, value = word.split("=", 1)
        if key in current:
            maps.append(current)
            current = {}
        current[key] = value
    if current:
        maps.append(current)
    if keyless:
        maps.append({"_": " ".join(keyless)})
    return maps


@pytest.mark.parametrize(
    "cmdline",
    [
        "root=/dev/vda rw console=ttyS0,115200",  # the lab image's
        "console=tty0 console=ttyS0,115200 root=/dev/vda ro quiet",  # a repeated key, two keyless words
        "a=1=2 nosplash",  # a value holding '='
    ],
)
def test_cmdlines_are_what_the_provider_reads_back(cmdline: str) -> None:
    given = cmdlines(cmdline)
    assert provider_reads(provider_writes(given)) == given
    assert sorted(provider_writes(given).split()) == sorted(cmdline.split())


def test_the_lab_images_command_line() -> None:
    assert cmdlines("root=/dev/vda rw console=ttyS0,115200") == [{"console": "ttyS0,115200", "root": "/dev/vda"}, {"_": "rw"}]


DOMAIN_XML = """<domain type="qemu">
  <name>seed-web1</name>
  <os><type arch="x86_64" machine="pc">hvm</type></os>
  <features><pae/><acpi/><apic/></features>
  <devices>
    <disk type="volume" device="disk"><source pool="seed-pool" volume="seed-web1.qcow2"/><target dev="vda" bus="virtio"/></disk>
    <console type="pty"><target type="serial" port="0"/></console>
    <console type="pty"><target type="virtio" port="1"/></console>
  </devices>
</domain>"""


def transformed(tmp_path: Path, xslt: str) -> ElementTree.Element:
    tools.require("xsltproc")
    (tmp_path / "d.xml").write_text(DOMAIN_XML)
    (tmp_path / "s.xsl").write_text(xslt)
    # As the provider runs it (utils_xslt.go transformXML).
    result = subprocess.run(
        ["xsltproc", "--nomkdir", "--nonet", "--nowrite", "s.xsl", "d.xml"], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    return ElementTree.fromstring(result.stdout)


def test_the_stylesheet_logs_the_first_serial_console_and_caps_tcg(tmp_path: Path) -> None:
    domain = transformed(tmp_path, stylesheet("/run/lab/consoles/seed-web1.log", 256))
    serial, virtio = domain.findall("devices/console")
    assert [(log.get("file"), log.get("append")) for log in serial.findall("log")] == [("/run/lab/consoles/seed-web1.log", "off")]
    assert virtio.findall("log") == []
    assert [(c.get("unit"), c.text) for c in domain.findall("features/tcg/tb-cache")] == [("MiB", "256")]
    # Everything the provider wrote is still there.
    assert [f.tag for f in domain.find("features")] == ["pae", "acpi", "apic", "tcg"]  # type: ignore[union-attr]
    assert domain.find("devices/disk/source").get("volume") == "seed-web1.qcow2"  # type: ignore[union-attr]
    assert domain.findtext("name") == "seed-web1"


def test_without_software_emulation_no_tcg_element(tmp_path: Path) -> None:
    domain = transformed(tmp_path, stylesheet("/x.log", None))
    assert domain.find("features/tcg") is None
    assert domain.find("devices/console/log") is not None


def test_the_lab_project_runs_the_repositorys_program_with_its_venv(tmp_path: Path) -> None:
    additions = DomainAdditions(kernel="/k", initrd="/i", cmdline="root=/dev/vda rw", consoles="/c", tcg_translation_cache_mib=None)
    project = write_project(tmp_path / "project", PROJECT_DIR / "Pulumi.seed.yaml", additions)
    settings = yaml.safe_load((project / "Pulumi.yaml").read_text())
    written = yaml.safe_load((PROJECT_DIR / "Pulumi.yaml").read_text())
    assert settings["name"] == written["name"]
    assert settings["runtime"]["options"]["virtualenv"] == str(PROJECT_DIR / ".venv")
    assert (project / "Pulumi.seed.yaml").read_text() == (PROJECT_DIR / "Pulumi.seed.yaml").read_text()
    assert (project / ADDITIONS_FILE).is_file()
    entry = (project / "__main__.py").read_text()
    assert str(PROJECT_DIR) in entry and "run(Path(__file__).parent)" in entry
