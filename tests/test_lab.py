"""The lab scenario on real guests (slow: `python -m pytest -m lab`): each run is the program run
as a user runs it, with the real Pulumi CLI and the real libvirt and command providers
(scripts/build-engine), against a private libvirtd: `pulumi up`, balance, update, the
lifecycles, the faults, delete, `pulumi destroy`, leftovers; the figures land in
lab-reports/<stack>.json."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

PROJECT_DIR = Path(__file__).resolve().parent.parent
REPORTS = PROJECT_DIR / "lab-reports"
SCENARIOS = {
    # The seed with every lifecycle, and a second stack (another environment) up beside it on the same daemon.
    "seed": ["--config", "Pulumi.seed.yaml", "--second-stack", "tests/Pulumi.wrr3.yaml"],
    # Other subnets, names, weights, scheduler and port, an existing pool, no client.
    "wrr3": ["--config", "tests/Pulumi.wrr3.yaml"],
    # keepalived: the seed's addresses with HTTP checks and a preempting director pair.
    "ha": ["--config", "Pulumi.ha.yaml"],
    # keepalived: other subnets, names and port, wrr 3:1, TCP checks, a pair that does not preempt.
    "ha-tcp": ["--config", "tests/Pulumi.ha-tcp.yaml"],
    # Direct routing with keepalived's HTTP checks and a pair: the seed's addresses, every fault.
    "dr": ["--config", "tests/Pulumi.dr.yaml"],
    # IP tunnelling (IPIP) with ipvsadm: other subnets, names, port and wrr weights, every lifecycle.
    "tun": ["--config", "tests/Pulumi.tun.yaml"],
    # IP tunnelling with keepalived: GRE, HTTP checks and a pair, other subnets and names.
    "tun-ha": ["--config", "tests/Pulumi.tun-ha.yaml"],
    # Direct routing with ipvsadm and one director (the VIP its only external address): wrr 1:3.
    "dr-solo": ["--config", "tests/Pulumi.dr-solo.yaml"],
    # IP tunnelling over GUE (UDP port 6080) with ipvsadm and one director.
    "tun-gue": ["--config", "tests/Pulumi.tun-gue.yaml"],
}
# The forwarding mode each scenario's stack declares; the report says what was observed.
MODES = {
    **{"seed": "nat", "wrr3": "nat", "ha": "nat", "ha-tcp": "nat"},
    **{"dr": "dr", "dr-solo": "dr", "tun": "tun", "tun-ha": "tun", "tun-gue": "tun"},
}
OPERATION_KEYS = {"create", "update", "replace", "delete", "same"}
HA_SCENARIOS = {"ha": {"preempt": True}, "ha-tcp": {"preempt": False}, "dr": {"preempt": True}, "tun-ha": {"preempt": True}}
# CI runs the seed (the ipvsadm path, every lifecycle) and `ha` (keepalived, every fault), both
# NAT, whose forwarding evidence proves the observation itself (replies through the director);
# the others would take it past 90 minutes on a machine three times slower than this one.
BEYOND_CI = {"wrr3", "ha-tcp", "dr", "dr-solo", "tun", "tun-ha", "tun-gue"}


def scenarios(names: list[str]) -> list[Any]:
    return [pytest.param(name, marks=[pytest.mark.beyond_ci] if name in BEYOND_CI else []) for name in names]


_RUNS: dict[str, dict[str, Any]] = {}


def lab_verify(name: str) -> dict[str, Any]:
    """`lab verify` of a scenario, once per session: its JSON report, exit status and page."""
    if name not in _RUNS:
        REPORTS.mkdir(exist_ok=True)
        path = REPORTS / f"{name}.json"
        page = path.with_suffix(".html")
        path.unlink(missing_ok=True)
        page.unlink(missing_ok=True)
        result = subprocess.run(
            [sys.executable, "-m", "lab", "verify", *SCENARIOS[name], "--json", str(path), "--html", str(page)],
            cwd=PROJECT_DIR,
            timeout=3600,
        )
        document: dict[str, Any] = json.loads(path.read_text())
        document["exit_status"] = result.returncode
        document["html"] = page.read_text()
        _RUNS[name] = document
    return _RUNS[name]


@pytest.fixture(scope="module", params=scenarios(list(SCENARIOS)))
def report(request: pytest.FixtureRequest) -> dict[str, Any]:
    return lab_verify(request.param)


@pytest.fixture(scope="module", params=scenarios(list(HA_SCENARIOS)))
def ha_report(request: pytest.FixtureRequest) -> dict[str, Any]:
    return {**lab_verify(request.param), "expected": HA_SCENARIOS[request.param]}


@pytest.mark.lab
def test_every_check_held(report: dict[str, Any]) -> None:
    assert [check for check in report["checks"] if not check["ok"]] == []
    assert report["exit_status"] == 0


@pytest.mark.lab
def test_the_report_names_the_engine_and_its_plugins(report: dict[str, Any]) -> None:
    assert (report["backend"], report["engine"]) == ("libvirt", "pulumi v3.259.0")
    assert report["plugins"] == {"libvirt": "0.5.4", "command": "1.2.1"}


@pytest.mark.lab
def test_every_operation_is_counted_by_the_engine(report: dict[str, Any]) -> None:
    operations = report["engineOperations"]
    assert operations[0]["operation"] == "preview"
    assert {op["operation"] for op in operations} == {"preview", "up", "refresh", "destroy"}
    for op in operations:
        assert set(op["changes"]) == OPERATION_KEYS and op["seconds"] >= 0, op
    preview, up = operations[0], operations[1]
    assert up["operation"] == "up" and preview["changes"]["create"] > 0
    if not any("provider race" in note for note in report["notes"]):  # else mended by a second up
        assert up["changes"]["create"] == preview["changes"]["create"]
    assert operations[-1]["operation"] == "destroy" and operations[-1]["changes"]["delete"] > 0


@pytest.mark.lab
def test_destroy_left_nothing(report: dict[str, Any]) -> None:
    assert report["leftAfterDestroy"] == []


@pytest.mark.lab
def test_scale_in_drops_no_request(report: dict[str, Any]) -> None:
    if report["stack"] in HA_SCENARIOS:  # the pair's stacks scale through their faults instead
        assert report["scale_in"] == {}
    else:
        assert report["scale_in"]["requests"] > 0 and report["scale_in"]["failed"] == 0, report["scale_in"]


@pytest.mark.lab
def test_what_the_transform_adds_is_listed(report: dict[str, Any]) -> None:
    what = {substitution["what"] for substitution in report["substitutions"]}
    assert {"Domain kernel, initrd, cmdlines", "Domain xml.xslt: <console><log file>"} <= what


@pytest.mark.lab
def test_the_report_says_where_up_went(report: dict[str, Any]) -> None:
    engine = report["timings"]["engine"]
    # The engine stamps its events in whole seconds: one second of slack.
    assert 0 < engine["libvirtSeconds"] <= engine["guestsReadySeconds"] <= engine["commandsSeconds"] + 1 <= engine["upSeconds"] + 2
    assert 0 < engine["engineShare"] < 1


@pytest.mark.lab
def test_every_substitution_says_why(report: dict[str, Any]) -> None:
    what = {substitution["what"] for substitution in report["substitutions"]}
    assert {"libvirt:uri", "lvs:image.source"} <= what
    # The domain type is substituted only for software emulation, and only from kvm to qemu; a
    # stack that declares qemu runs under TCG as it is, and KVM runs the stack's own type.
    domain_type = [substitution for substitution in report["substitutions"] if substitution["what"] == "lvs:domainType"]
    assert all((s["declared"], s["lab"]) == ("kvm", "qemu") for s in domain_type), domain_type
    assert report["accel"] == "tcg" or domain_type == []
    assert all(substitution["reason"] for substitution in report["substitutions"])


@pytest.mark.lab
def test_only_keepalived_stacks_get_faults_injected(report: dict[str, Any]) -> None:
    assert bool(report["faults"]) == (report["stack"] in HA_SCENARIOS)


@pytest.mark.lab
def test_a_dead_real_server_leaves_the_table_and_comes_back(ha_report: dict[str, Any]) -> None:
    for key in ("realServerDown", "realServerKilled"):
        fault = ha_report["faults"][key]
        assert fault["node"] and fault["detectionSeconds"] > 0 and fault["readdedSeconds"] > 0, key
        assert fault["failedRequestsAfterDetection"] == 0, (key, fault["failures"])
        assert fault["answers"].get(fault["node"], 0) > 0, key  # it answered before the fault, or after


@pytest.mark.lab
def test_the_backup_director_takes_over_and_the_first_returns_as_configured(ha_report: dict[str, Any]) -> None:
    down = ha_report["faults"]["directorDown"]
    assert down["from"] != down["to"] and down["outageSeconds"] >= 0 and down["failedRequests"] >= 0
    assert down["answers"], "nothing answered through the backup"
    returned = down["return"]
    preempt = ha_report["expected"]["preempt"]
    assert returned["preempt"] == preempt
    assert returned["holder"] == (down["from"] if preempt else down["to"])
    if not preempt:
        assert returned["failedRequests"] == 0


@pytest.mark.lab
def test_one_director_holds_every_floating_address_after_each_step(ha_report: dict[str, Any]) -> None:
    steps = ha_report["floatingHolders"]
    assert steps, "no step was checked"
    for step in steps:
        holders = step["holders"]
        assert all(len(names) == 1 for names in holders.values()) and holders["vip"] == holders["gateway"], step


@pytest.mark.lab
def test_the_watchdog_mends_a_split_and_elections_with_reloads_do_not_split(ha_report: dict[str, Any]) -> None:
    partial = ha_report["faults"]["partialHolding"]
    assert partial["repairedSeconds"] > 0 and any("restarting keepalived" in line for line in partial["watchdog"]), partial["watchdog"]
    hung = ha_report["faults"]["keepalivedHangs"]
    assert hung["releasedSeconds"] > 0 and any("restarting keepalived" in line for line in hung["watchdog"]), hung["watchdog"]
    assert hung["holdersAfter"]["vip"] == hung["holdersAfter"]["gateway"] and len(hung["holdersAfter"]["vip"]) == 1
    storm = ha_report["faults"]["reloadDuringElection"]
    assert storm["iterations"] > 0 and storm["splits"] == 0, storm["rounds"]


@pytest.mark.lab
def test_nothing_moves_while_nothing_is_broken(ha_report: dict[str, Any]) -> None:
    assert ha_report["faults"]["spuriousTransitions"] == 0, ha_report["faults"]["quietPeriod"]
    assert ha_report["faults"]["quietPeriod"]["seconds"] >= 150


@pytest.mark.lab
def test_who_answers_the_vip_is_observed(report: dict[str, Any]) -> None:
    forwarding = report["forwarding"]
    mode = MODES[report["stack"]]
    assert (forwarding["mode"], forwarding["repliesBypassDirector"]) == (mode, mode != "nat"), forwarding
    evidence = forwarding["evidence"]
    assert evidence["answered"] == evidence["requests"] > 0
    counters = evidence["ipvsCounters"]
    assert sum(c["inPackets"] for c in counters.values()) > 0
    assert (sum(c["outPackets"] for c in counters.values()) == 0) == (mode != "nat"), counters
    senders, directors = set(evidence["synAcksAtClient"]["bySender"]), set(evidence["directors"])
    assert senders and (senders <= directors if mode == "nat" else senders.isdisjoint(directors)), (senders, directors)


@pytest.mark.lab
def test_large_transfers_arrive_whole(report: dict[str, Any]) -> None:
    transfers = report["largeTransfers"]
    for method in ("GET", "POST"):
        assert transfers[method]["whole"] == transfers[method]["transfers"] > 0, transfers[method]


@pytest.mark.lab
def test_balance_and_update(report: dict[str, Any]) -> None:
    assert report["distributions"]["after_create"]["failed"] == 0
    assert report["distributions"]["after_update"]["ok"]


@pytest.mark.lab
def test_the_report_measures_the_run_against_its_floor(report: dict[str, Any]) -> None:
    assert report["accel"] in ("kvm", "tcg") and report["accelReason"]
    timings = report["timings"]
    assert timings["clusterReadySeconds"] > 0 and timings["floorSeconds"] > 0
    assert timings["floorRatio"] == round(timings["clusterReadySeconds"] / timings["floorSeconds"], 2)
    assert timings["floorSeconds"] == round(timings["solo_boot_s"] * max(1.0, timings["guests_at_once"] / timings["cores"]), 1)


@pytest.mark.lab
def test_every_guest_boot_is_on_the_timeline_stage_by_stage(report: dict[str, Any]) -> None:
    booted = [entry for entry in report["timeline"] if entry["kind"] == "guest"]
    assert len(booted) == report["timings"]["guests_at_once"]
    for guest in booted:
        stages = guest["stages"]
        assert list(stages)[-1] == "done" and "cloud-init final" in stages, guest
        assert list(stages.values()) == sorted(stages.values())
    commands = [entry for entry in report["timeline"] if entry["kind"] == "command"]
    assert len(commands) == len(report["commands"])


@pytest.mark.lab
def test_each_guest_says_where_its_boot_went(report: dict[str, Any]) -> None:
    for node, profile in report["bootProfile"].items():
        assert profile["systemd"].startswith("Startup finished in"), node
        assert profile["blame"] and profile["cloudInit"], node


@pytest.mark.lab
def test_the_html_report_carries_the_charts_and_the_figures(report: dict[str, Any]) -> None:
    page = report["html"]
    assert page.count("<svg") == (3 if report["faults"] else 2)
    assert f'<td id="accel">{report["accel"]}</td>' in page
    assert f'<td id="floor-ratio">{report["timings"]["floorRatio"]}</td>' in page
