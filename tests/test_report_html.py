"""The HTML report (`lab verify --html`): what it shows from a report, that nothing a stack or a
guest printed becomes markup, and that a real headless browser (Debian's Chromium) renders
it: the charts are there and the page is not blank."""

from __future__ import annotations

import re
import subprocess
from dataclasses import asdict
from pathlib import Path
from typing import Any

from matplotlib import image as mpimage

from lab.host import tools
from lab.report.html import render_html, write_html
from lab.report.report import Distribution, Report
from lab.scenario.runner import floor_timings

# Flags for headless Chromium as root on a machine with no outside network (see the env notes).
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def a_report() -> dict[str, Any]:
    report = Report(config="Pulumi.seed.yaml", stack="seed", requests=120)
    report.accel, report.accel_reason = "tcg", "a KVM guest printed nothing within 15 s (KVM hangs here)"
    report.distributions["after_create"] = asdict(
        Distribution("rr", {"web1": 1, "web2": 1}, {"web1": 60, "web2": 59}, 1, {"web1": 60.0, "web2": 60.0}, 0, False)
    )
    report.distributions["after_weight_change"] = asdict(
        Distribution("wrr", {"web1": 3, "web2": 1}, {"web1": 90, "web2": 30}, 0, {"web1": 90.0, "web2": 30.0}, 1.2, True)
    )
    report.throughput = {
        "vip": {"requests": 200, "seconds": 4.0, "per_second": 50.0},
        "direct": {"requests": 200, "seconds": 3.2, "per_second": 62.5},
        "vip_over_direct": 0.8,
    }
    report.timings = {"steps": {"boot": 150.2, "create": 27.0}, "clusterReadySeconds": 150.0, "guests_at_once": 5, "solo_boot_s": 55.0}
    report.timings.update(floor_timings(report.timings, cores=2))
    report.timeline = [
        {"kind": "step", "name": "boot", "start_s": 7.0, "seconds": 150.2},
        {"kind": "step", "name": "create", "start_s": 160.0, "seconds": 27.0},
        {
            "kind": "guest",
            "name": "seed-web1",
            "start_s": 7.0,
            "seconds": 120.0,
            "stages": {"kernel": 1.0, "cloud-init local": 60.0, "done": 120.0},
        },
        {"kind": "guest", "name": "seed-nfs", "start_s": 7.5, "seconds": 149.0, "stages": {}},
        {"kind": "command", "name": "create director-ready", "start_s": 160.0, "seconds": 3.9, "ok": True},
        {"kind": "command", "name": "create snat-rule", "start_s": 164.0, "seconds": 1.3, "ok": False},
    ]
    report.check("distribution (rr)", False, "{'web1': 60, 'web2': 59} <script>alert(1)</script>")
    report.check("rules saved for reboot", True)
    report.substitutions = [{"what": "lvs:domainType", "declared": "kvm", "lab": "qemu", "reason": "software emulation (tcg)"}]
    report.boot_profile = {
        "web1": {
            "systemd": "Startup finished in 3.1s (kernel) + 50.2s (userspace) = 53.3s",
            "blame": ["20.1s cloud-init.service"],
            "cloudInit": [],
        }
    }
    return report.as_json()


def test_the_page_shows_the_verdict_the_accelerator_and_the_floor() -> None:
    page = render_html(a_report())
    assert "lab verify seed:" in page and 'class="failed">FAILED' in page
    assert '<td id="accel">tcg</td>' in page
    assert "KVM hangs here" in page
    # floor = 55 s * 5 guests / 2 cores = 137.5 s; 150 / 137.5 = 1.09
    assert "137.5 s (solo boot 55.0 s * 5 guests / 2 cores)" in page
    assert '<td id="floor-ratio">1.09</td>' in page


def test_every_backend_count_and_expected_share_is_in_the_table() -> None:
    page = render_html(a_report())
    rows = re.findall(
        r"<tr><td>([^<]+)</td><td>(\w*)</td><td>(\w+)</td>\s*<td(?: class=\"num\")?>(\d*)</td><td class=\"num\">(\d+)</td>", page
    )
    assert ("after create", "rr", "web2", "1", "59") in rows
    assert ("after weight change", "wrr", "web1", "3", "90") in rows
    assert ("after create", "", "failed", "", "1") in rows
    assert "90.0 ± 1.2" in page


def test_two_charts_are_inline_svg_with_a_bar_per_backend() -> None:
    page = render_html(a_report())
    distribution = page[page.index('<figure id="distribution-chart">') :]
    assert distribution.index("<svg") < distribution.index("</figure>")
    assert page.count("<svg") == 2
    assert "after create" in distribution[: distribution.index("</figure>")]
    assert '<figure id="timeline-chart">' in page


def an_ha_report() -> dict[str, Any]:
    report = a_report()
    series = [[0.1 * i, "web1" if i % 2 else "web2"] for i in range(60)] + [[6.2, None]]
    report["faults"] = {
        "spuriousTransitions": 0,
        "quietPeriod": {"seconds": 150.3, "transitions": {"director-a": [], "director-b": []}},
        "realServerDown": {
            "node": "web1", "detectionSeconds": 3.4, "detectionGoalSeconds": 5, "failedRequestsAfterDetection": 0,
            "readdedSeconds": 2.9, "failed": 7, "requests": 330, "series": series, "events": {"broken": 3.0, "takenOut": 6.4},
        },
        "directorDown": {
            "from": "director-a", "to": "director-b", "takeOverSeconds": 3.1, "outageGoalSeconds": 3.6, "outageSeconds": 3.3,
            "failedRequests": 2, "failed": 2, "requests": 120, "series": series, "events": {"crashed": 3.0, "tookOver": 6.1},
            "return": {
                "holder": "director-a", "takenBackSeconds": 41.0, "failedRequests": 1, "failed": 1, "requests": 500, "series": series,
            },
        },
    }  # fmt: skip
    return report


def test_the_faults_table_gives_each_fault_its_figures_and_a_chart_of_its_requests() -> None:
    page = render_html(an_ha_report())
    assert '<figure id="faults-chart">' in page and page.count("<svg") == 3
    chart = page[page.index('<figure id="faults-chart">') : page.index("</figure>", page.index('<figure id="faults-chart">'))]
    for title in ("Apache stopped: 7 of 330 failed", "director-a crashed: 2 of 120 failed", "director-a back: 1 of 500 failed"):
        assert title in chart
    faults = page[page.index('<table id="faults">') : page.index("</table>", page.index('<table id="faults">'))]
    assert "<td>web1</td>" in faults and "7 of 330 (0 after detection)" in faults
    assert "director-a → director-b" in faults and "2 of 120 (outage 3.3 s)" in faults and "director-a holds after 41.0; 1 failed" in faults
    assert "Quiet period of 150.3 s: 0 VRRP transitions or real server flaps." in page
    # A plain stack has no faults section.
    assert 'id="faults"' not in render_html(a_report())


def test_text_from_a_stack_or_a_guest_never_becomes_markup() -> None:
    page = render_html(a_report())
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_a_failed_run_with_no_figures_still_renders() -> None:
    report = Report(config="Pulumi.seed.yaml", stack="seed", requests=120)
    report.check("scenario", False, "TimeoutError: cloud-init not done")
    report.timings.update(floor_timings(report.timings, cores=2))
    page = render_html(report.as_json())
    assert '<td id="floor-ratio">None</td>' in page and "<svg" not in page


def test_a_headless_browser_renders_the_page(tmp_path: Path) -> None:
    tools.require("chromium")
    page = tmp_path / "report.html"
    write_html(a_report(), page)
    profile = tmp_path / "profile"
    dom = subprocess.run(
        ["chromium", *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert 'id="distribution-chart"' in dom and 'id="timeline-chart"' in dom
    assert dom.count("<svg") == 2
    screenshot = tmp_path / "report.png"
    subprocess.run(
        ["chromium", *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--window-size=1280,2400", f"--screenshot={screenshot}", page.as_uri()],
        capture_output=True,
        timeout=120,
        check=True,
    )
    pixels = mpimage.imread(screenshot)
    assert pixels.shape[:2] == (2400, 1280)
    # Charts and tables drew something: many pixels differ from the white page.
    assert (pixels[:, :, :3].mean(axis=2) < 0.9).mean() > 0.02


def test_the_page_says_who_answered_the_vip_and_how_large_transfers_fared() -> None:
    report = Report(config="tests/Pulumi.dr.yaml", stack="dr", requests=120)
    report.forwarding = {
        "mode": "dr",
        "repliesBypassDirector": True,
        "evidence": {
            "requests": 20,
            "answered": 20,
            "directors": ["director-a", "director-b"],
            "ipvsCounters": {"director-a": {"inPackets": 120, "outPackets": 0}},
            "synAcksAtClient": {"count": 20, "bySender": {"web1": 10, "web2": 10}, "mss": [1460]},
            "arrivedAtWebNodes": {"web1@lvs-dr-external": {"addressedToVip": 60, "rewrittenTo": {}, "tunnelled": {}}},
        },
    }
    report.large_transfers = {
        "bytes": 102400,
        "GET": {"transfers": 10, "whole": 10, "medianSeconds": 0.05},
        "POST": {"transfers": 10, "whole": 9, "medianSeconds": 0.08},
        "getVipOverDirect": 0.9,
    }
    page = render_html(report.as_json())
    table = page[page.index('<table id="forwarding">') :]
    table = table[: table.index("</table>")]
    assert "<th>replies bypass the director</th><td>yes</td>" in table
    assert '<th>director-a: IPVS packets in / out</th><td class="num">120 / 0</td>' in table
    assert "web1 10, web2 10" in table and "(MSS 1460)" in table
    assert "arrived at web1@lvs-dr-external" in table
    assert "GET 10/10\nwhole (median 0.05 s), POST 9/10 whole\n(median 0.08 s)" in page
    assert "over one straight from a web node:\n0.9." in page


def test_the_floor_ratio_is_recomputable_from_the_reported_figures() -> None:
    # The seed's run of stop 31: 5 guests on 2 cores, one solo boot of 73.9 s, ready in 328 s.
    timings = floor_timings({"solo_boot_s": 73.9, "clusterReadySeconds": 328, "guests_at_once": 5}, cores=2)
    assert timings == {"floorSeconds": 184.8, "floorRatio": round(328 / 184.8, 2), "cores": 2}
