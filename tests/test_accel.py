"""How the lab picks KVM or software emulation, and what it says about it (fast: the KVM
probe itself runs in the lab tests, where every run reports `accel` and why)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lab.host.accel import Accel, choose_accel
from lab.scenario.prepare import effective_accel, engine_substitutions, substitute

BOOT_ID = Path("/proc/sys/kernel/random/boot_id").read_text().strip()


def test_no_kvm_device_means_software_emulation(tmp_path: Path) -> None:
    accel = choose_accel(tmp_path / "vmlinuz", device=tmp_path / "kvm")
    assert (accel.name, accel.domain_type) == ("tcg", "qemu")
    assert str(tmp_path / "kvm") in accel.reason and "does not exist" in accel.reason


def test_software_emulation_on_request(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LVS_LAB_ACCEL", "tcg")
    device = tmp_path / "kvm"
    device.touch()
    assert choose_accel(tmp_path / "vmlinuz", device=device).reason == "LVS_LAB_ACCEL=tcg asks for software emulation"


@pytest.mark.parametrize("name", ["kvm", "tcg"])
def test_a_probe_of_this_boot_is_remembered(tmp_path: Path, name: str) -> None:
    device = tmp_path / "kvm"
    device.touch()
    remembered = tmp_path / "accel.json"
    remembered.write_text(json.dumps({"bootId": BOOT_ID, "name": name, "reason": "what the probe saw"}))
    accel = choose_accel(tmp_path / "no-such-kernel", device=device, remembered=remembered)
    assert accel.name == name
    assert accel.reason == "what the probe saw (probed earlier in this boot of the machine)"


def test_a_stack_that_declares_qemu_runs_under_tcg_even_with_kvm() -> None:
    kvm = Accel("kvm", "a KVM guest booted its kernel in 0.4 s")
    assert effective_accel({"lvs:domainType": "qemu"}, kvm).name == "tcg"
    assert effective_accel({"lvs:domainType": "kvm"}, kvm) == kvm


def test_kvm_keeps_the_stacks_domain_type_and_tcg_substitutes_it() -> None:
    written = {"lvs:domainType": "kvm", "lvs:image": {"source": "https://example.org/debian.qcow2"}}
    with_kvm, changes_kvm = substitute(written, "pub", "priv", image=Path("/i.qcow2"), libvirt_uri="qemu:///x", accel=Accel("kvm", "works"))
    with_tcg, changes_tcg = substitute(written, "pub", "priv", image=Path("/i.qcow2"), libvirt_uri="qemu:///x", accel=Accel("tcg", "hangs"))
    assert with_kvm["lvs:domainType"] == "kvm" and "lvs:domainType" not in {c["what"] for c in changes_kvm}
    assert with_tcg["lvs:domainType"] == "qemu"
    assert next(c for c in changes_tcg if c["what"] == "lvs:domainType")["reason"] == "software emulation (tcg): hangs"


def test_the_translation_cache_is_a_substitution_only_under_tcg() -> None:
    assert any("tb-cache" in change["what"] for change in engine_substitutions("qemu"))
    assert not any("tb-cache" in change["what"] for change in engine_substitutions("kvm"))
