"""Every program the tests and the lab run: installed by scripts/setup, from the package that
lab/host/tools.py names, and a missing one is one line naming it and that package."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from lab.host import tools
from tests.conftest import PROJECT_DIR


def setup_packages() -> set[str]:
    text = (PROJECT_DIR / "scripts" / "debian-packages").read_text()
    return {word for line in text.splitlines() for word in line.split("#", 1)[0].split()}


def test_setup_installs_every_package_a_tool_comes_from() -> None:
    assert tools.packages() - setup_packages() == set()


@pytest.mark.parametrize("program", sorted(tools.TOOLS))
def test_the_named_package_brings_the_program(program: str) -> None:
    # On this machine after scripts/setup (CI proves it on a fresh Debian 12 too): the program
    # is on PATH, and it is one of the files of the package the registry names.
    tools.require(program)
    package = tools.TOOLS[program].package
    listed = subprocess.run(["dpkg-query", "-L", package], capture_output=True, text=True, check=False)
    assert listed.returncode == 0, f"dpkg-query -L {package}: {listed.stderr.strip()}"
    name = Path(program).name
    assert any(Path(line).name == name and "bin/" in line for line in listed.stdout.splitlines()), f"{package} has no {name}"


def test_a_missing_program_is_one_line_naming_its_package(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(tools.MissingToolError) as raised:
        tools.require("isoinfo", "xmllint")
    assert str(raised.value) == (
        "isoinfo is missing: install Debian's genisoimage (bash scripts/setup does); it reads back a cloud-init ISO; "
        "xmllint is missing: install Debian's libxml2-utils (bash scripts/setup does); it validates XML for virt-xml-validate"
    )


def test_the_lab_says_which_package_is_missing_before_it_starts_anything(tmp_path: Path) -> None:
    # No program on PATH at all: the lab names the first ones and their packages, in one line, exit 2.
    env = {**os.environ, "PATH": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "lab", "verify", "--config", "Pulumi.seed.yaml"],
        cwd=PROJECT_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert (result.returncode, result.stdout) == (2, ""), result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith("lab verify: mmdebstrap is missing: install Debian's mmdebstrap (bash scripts/setup does)")
    assert "curl is missing: install Debian's curl" in line


def test_a_test_whose_program_is_missing_fails_in_one_line(tmp_path: Path) -> None:
    # A real test of the suite, with xsltproc gone from PATH: pytest's summary names the program
    # and its package, with no traceback.
    test = "tests/test_topology.py::test_host_address_stylesheet_rewrites_libvirts_network_xml"
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", test],
        cwd=PROJECT_DIR,
        env={**os.environ, "PATH": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    failure = "xsltproc is missing: install Debian's xsltproc (bash scripts/setup does)"
    assert f"FAILED {test}" in result.stdout
    [report] = [line for line in result.stdout.splitlines() if "xsltproc is missing" in line and not line.startswith("FAILED")]
    assert report == f"{failure}; it applies the networks' XSLT stylesheet"
    assert "Traceback" not in result.stdout and "During handling" not in result.stdout
