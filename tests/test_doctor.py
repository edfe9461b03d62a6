"""`lab doctor` against libvirt's built-in test driver (`test:///default`: a real libvirt API,
no daemon; it has the pool "default-pool" at /default-pool, the network "default" on
192.168.122.0/24, domain type "test" only and the security model "testSecurity")."""

from __future__ import annotations

import io
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from lab.doctor import Finding, check_security, diagnose, exit_status, run
from lab.stack.plan import stack_config

PROJECT_DIR = Path(__file__).resolve().parent.parent
TEST_URI = "test:///default"
UNREACHABLE_URI = "qemu:///system?socket=/nonexistent/sock"


def write_stack(tmp_path: Path, change: Callable[[dict[str, Any]], None] = lambda config: None, *, stack: str = "doc") -> Path:
    """The seed stack file with one change, as Pulumi.<stack>.yaml in tmp_path."""
    config = stack_config(PROJECT_DIR / "Pulumi.seed.yaml")
    change(config)
    path = tmp_path / f"Pulumi.{stack}.yaml"
    path.write_text(yaml.safe_dump({"config": config}))
    return path


def findings_of(check: str, path: Path, uri: str | None = TEST_URI) -> list[Finding]:
    return [finding for finding in diagnose(path, uri, which=lambda program: f"/usr/bin/{program}") if finding.check == check]


def only(check: str, path: Path, uri: str | None = TEST_URI) -> Finding:
    found = findings_of(check, path, uri)
    assert len(found) == 1, found
    return found[0]


def set_pool(name: str) -> Callable[[dict[str, Any]], None]:
    def change(config: dict[str, Any]) -> None:
        config["lvs:image"]["pool"] = name

    return change


def test_reachable_uri_is_ok(tmp_path: Path) -> None:
    finding = only("libvirt", write_stack(tmp_path))
    assert finding.status == "ok"
    assert finding.what.startswith("reachable at test:///default")


def test_unreachable_uri_fails_with_the_daemon_fix(tmp_path: Path) -> None:
    finding = only("libvirt", write_stack(tmp_path), UNREACHABLE_URI)
    assert finding.status == "fail"
    assert "/nonexistent/sock" in finding.what
    assert "libvirtd" in finding.fix


def test_unreachable_uri_skips_the_host_checks(tmp_path: Path) -> None:
    checks = {finding.check for finding in diagnose(write_stack(tmp_path), UNREACHABLE_URI)}
    assert checks.isdisjoint({"domain", "pool", "security", "network"})


def test_uri_defaults_to_the_stacks_libvirt_uri(tmp_path: Path) -> None:
    def point_at_test_driver(config: dict[str, Any]) -> None:
        config["libvirt:uri"] = TEST_URI

    finding = only("libvirt", write_stack(tmp_path, point_at_test_driver), uri=None)
    assert finding.status == "ok"


def test_kvm_without_kvm_in_the_caps_fails_with_the_domain_type_fix(tmp_path: Path) -> None:
    finding = only("domain", write_stack(tmp_path))
    assert finding.status == "fail"
    assert "kvm is not available" in finding.what
    assert "offered: test" in finding.what
    assert "pulumi config set lvs:domainType qemu" in finding.fix


def test_qemu_without_qemu_in_the_caps_fails_with_the_install_fix(tmp_path: Path) -> None:
    def ask_qemu(config: dict[str, Any]) -> None:
        config["lvs:domainType"] = "qemu"

    finding = only("domain", write_stack(tmp_path, ask_qemu))
    assert (finding.status, finding.fix) == ("fail", "apt-get install qemu-system-x86 on the libvirt host")


def test_an_existing_active_pool_named_by_the_stack_is_ok(tmp_path: Path) -> None:
    finding = only("pool", write_stack(tmp_path, set_pool("default-pool")))
    assert finding.status == "ok"
    assert "'default-pool' exists and is active" in finding.what


def test_a_missing_pool_named_by_the_stack_fails_with_the_pool_fix(tmp_path: Path) -> None:
    finding = only("pool", write_stack(tmp_path, set_pool("nosuch")))
    assert finding.status == "fail"
    assert "'nosuch' does not exist" in finding.what
    assert "virsh pool-define-as nosuch" in finding.fix
    assert "remove lvs:image.pool" in finding.fix


def test_the_pool_the_stack_creates_must_not_exist_yet(tmp_path: Path) -> None:
    # Stack "default" creates "default-pool", which the test driver already has.
    finding = only("pool", write_stack(tmp_path, stack="default"))
    assert finding.status == "fail"
    assert "storage pool 'default-pool' already exists" in finding.what


def test_another_pool_on_the_stacks_pool_path_is_a_warning(tmp_path: Path) -> None:
    def share_path(config: dict[str, Any]) -> None:
        config["lvs:image"]["poolPath"] = "/default-pool"

    finding = only("pool", write_stack(tmp_path, share_path))
    assert finding.status == "warn"
    assert "default-pool" in finding.what
    assert "lvs:image.poolPath" in finding.fix


def test_a_network_name_taken_on_the_host_fails_naming_it(tmp_path: Path) -> None:
    def take_default(config: dict[str, Any]) -> None:
        config["lvs:networks"]["internal"]["name"] = "default"

    failed = [finding for finding in findings_of("network", write_stack(tmp_path, take_default)) if finding.status == "fail"]
    assert len(failed) == 1
    assert "named 'default' already exists" in failed[0].what
    assert "lvs:networks.internal.name" in failed[0].fix


def test_a_subnet_overlapping_a_host_network_fails_naming_it(tmp_path: Path) -> None:
    def overlap_default(config: dict[str, Any]) -> None:
        config["lvs:networks"]["external"]["cidr"] = "192.168.122.0/24"
        config["lvs:director"]["externalIp"] = "192.168.122.10"
        config["lvs:client"]["ip"] = "192.168.122.66"

    failed = [finding for finding in findings_of("network", write_stack(tmp_path, overlap_default)) if finding.status == "fail"]
    assert len(failed) == 1
    assert "'default' (192.168.122.0/24) overlaps lvs:networks.external.cidr 192.168.122.0/24" in failed[0].what


def test_free_network_names_and_subnets_are_ok(tmp_path: Path) -> None:
    assert {finding.status for finding in findings_of("network", write_stack(tmp_path))} == {"ok"}


def test_a_missing_private_key_does_not_stop_the_host_checks(tmp_path: Path) -> None:
    checks = {finding.check for finding in diagnose(write_stack(tmp_path), TEST_URI)}
    assert {"domain", "pool", "network"} <= checks


def test_the_config_is_read_as_the_program_reads_it(tmp_path: Path) -> None:
    """Each value as the program receives it (JSON-decoded): a mapping written as JSON text is that
    mapping, and a quoted "null" is null, as in preview."""

    def json_text(config: dict[str, Any]) -> None:
        config["lvs:service"] = '{"port": 8080}'

    def quoted_null(config: dict[str, Any]) -> None:
        config["lvs:adminUser"] = "null"

    def failed(path: Path) -> list[str]:
        return [finding.what for finding in findings_of("config", path) if finding.status == "fail"]

    assert failed(write_stack(tmp_path, json_text, stack="json")) == []
    assert failed(write_stack(tmp_path, quoted_null)) == [
        "Pulumi.doc.yaml: lvs:adminUser: null is not a value for this key; remove the key to use the default, 'lvsadmin'"
    ]


def test_a_missing_tool_fails_with_the_package_to_install(tmp_path: Path) -> None:
    findings = diagnose(write_stack(tmp_path), TEST_URI, which=lambda program: None if program == "mkisofs" else "/usr/bin/xsltproc")
    failed = [finding for finding in findings if finding.check == "tools" and finding.status == "fail"]
    assert [(finding.what.split()[0], finding.fix) for finding in failed] == [("mkisofs", "apt-get install genisoimage")]


def test_a_local_image_that_does_not_exist_fails(tmp_path: Path) -> None:
    def local_image(config: dict[str, Any]) -> None:
        config["lvs:image"]["source"] = str(tmp_path / "missing.qcow2")

    assert only("image", write_stack(tmp_path, local_image)).status == "fail"


def test_a_readable_local_image_is_ok(tmp_path: Path) -> None:
    (tmp_path / "base.qcow2").write_bytes(b"QFI\xfb")

    def local_image(config: dict[str, Any]) -> None:
        config["lvs:image"]["source"] = "base.qcow2"  # relative to the stack file

    assert only("image", write_stack(tmp_path, local_image)).status == "ok"


def test_an_https_image_is_ok_with_the_download_note(tmp_path: Path) -> None:
    finding = only("image", write_stack(tmp_path))
    assert finding.status == "ok"
    assert "downloads it on `pulumi up`" in finding.what


def test_apparmor_is_a_warning_naming_the_permission_denied_issues() -> None:
    capabilities = ET.fromstring("<capabilities><host><secmodel><model>apparmor</model></secmodel></host></capabilities>")
    finding = check_security(capabilities)
    assert finding.status == "warn"
    assert "Permission denied" in finding.what and "#546" in finding.what
    assert "security_driver" in finding.fix and "never disable" in finding.fix


def test_no_confining_security_driver_is_ok(tmp_path: Path) -> None:
    assert only("security", write_stack(tmp_path)).status == "ok"


def test_warnings_alone_exit_zero() -> None:
    assert exit_status([Finding("ok", "libvirt", "reachable"), Finding("warn", "security", "apparmor")]) == 0


def test_any_fail_exits_one(tmp_path: Path) -> None:
    out = io.StringIO()
    assert run(write_stack(tmp_path), TEST_URI, out=out) == 1  # kvm is not in the test driver's caps
    assert out.getvalue().splitlines()[-1].startswith("doctor: 1 fail")


def test_the_cli_prints_one_line_per_finding_and_exits_one_on_fail() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "lab", "doctor", "--config", "Pulumi.seed.yaml", "--uri", TEST_URI],
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1, result.stderr
    statuses = [line.split()[0] for line in result.stdout.splitlines()[:-1]]
    assert set(statuses) <= {"ok", "warn", "fail"} and "fail" in statuses
