"""`lab verify --html R.html`: the JSON report as a page to look at. Charts are drawn with
matplotlib into inline SVG (the page is one self-contained file, no script, nothing fetched);
the page itself is a Jinja2 template (`report.html.j2`) with autoescaping, so nothing a stack
or a guest printed can become markup.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display: the lab runs headless

import jinja2
from markupsafe import Markup
from matplotlib import pyplot
from matplotlib.figure import Figure

from ..guests.consoles import STAGE_NAMES

TEMPLATE_DIR = Path(__file__).resolve().parent
# A colour per boot stage (lab/report/progress.py), light to dark as the boot goes on; "done" ends the bar.
_STAGE_PALETTE = ("#d9d9d9", "#9ecae1", "#6baed6", "#4292c6", "#fdae6b", "#fd8d3c", "#e6550d", "#a63603")
STAGE_COLOURS = dict(zip(STAGE_NAMES[:-1], _STAGE_PALETTE, strict=True))


def _svg(figure: Figure) -> Markup:
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight")
    pyplot.close(figure)
    text = buffer.getvalue()
    return Markup(text[text.index("<svg") :])  # inline: drop the XML prologue and doctype


def distribution_chart(distributions: dict[str, Any]) -> Markup | None:
    """Answers per backend against the scheduler's expected share, one panel per check."""
    if not distributions:
        return None
    titles = list(distributions)
    figure, axes = pyplot.subplots(1, len(titles), figsize=(3.2 * len(titles) + 1, 3.4), squeeze=False)
    for axis, title in zip(axes[0], titles, strict=True):
        distribution = distributions[title]
        nodes = list(distribution["counts"])
        positions = range(len(nodes))
        axis.bar([p - 0.2 for p in positions], [distribution["counts"][n] for n in nodes], width=0.4, label="answers", color="#3182bd")
        if distribution.get("expected"):
            expected = [distribution["expected"][n] for n in nodes]
            axis.bar([p + 0.2 for p in positions], expected, width=0.4, label="expected", color="#bdbdbd")
        axis.set_xticks(list(positions), nodes, rotation=30, ha="right")
        failed = distribution.get("failed", 0)
        axis.set_title(f"{title.replace('_', ' ')}\n{distribution['scheduler']}, {failed} failed", fontsize=9)
    axes[0][0].set_ylabel("requests")
    axes[0][0].legend(fontsize=8)
    figure.tight_layout()
    return _svg(figure)


def timeline_chart(timeline: list[dict[str, Any]]) -> Markup | None:
    """Every guest's boot (coloured by stage), every step and every Command on one time axis."""
    if not timeline:
        return None
    guests = [entry for entry in timeline if entry["kind"] == "guest"]
    steps = [entry for entry in timeline if entry["kind"] == "step"]
    commands = [entry for entry in timeline if entry["kind"] == "command"]
    rows = [entry["name"] for entry in guests] + ["Commands", "steps"]
    figure, axis = pyplot.subplots(figsize=(12, 0.45 * len(rows) + 1.6))
    for row, guest in enumerate(guests):
        marks = sorted((seconds, stage) for stage, seconds in guest.get("stages", {}).items())
        edges = [(0.0, "firmware"), *marks]
        for index, (at, stage) in enumerate(edges):
            if stage == "done":
                continue
            until = edges[index + 1][0] if index + 1 < len(edges) else guest["seconds"]
            axis.barh(row, until - at, left=guest["start_s"] + at, color=STAGE_COLOURS.get(stage, "#3182bd"), height=0.6)
        if not marks:
            axis.barh(row, guest["seconds"], left=guest["start_s"], color="#3182bd", height=0.6)
    command_row = len(guests)
    for command in commands:
        colour = "#31a354" if command.get("ok", True) else "#cb181d"
        axis.barh(command_row, max(command["seconds"], 0.3), left=command["start_s"], color=colour, height=0.6)
    for index, step in enumerate(steps):
        axis.barh(command_row + 1, step["seconds"], left=step["start_s"], color=("#756bb1", "#bcbddc")[index % 2], height=0.6)
        if step["seconds"] > 25:
            axis.text(step["start_s"] + 1, command_row + 1, step["name"][:24], va="center", fontsize=7)
    axis.set_yticks(range(len(rows)), rows)
    axis.invert_yaxis()
    axis.set_xlabel("seconds from the start of the run")
    handles = [matplotlib.patches.Patch(color=colour, label=stage) for stage, colour in STAGE_COLOURS.items()]
    axis.legend(
        handles=handles, fontsize=7, ncol=len(handles), loc="upper center", bbox_to_anchor=(0.5, -0.12 - 1.2 / len(rows) / 4), frameon=False
    )
    figure.tight_layout()
    return _svg(figure)


def fault_runs(faults: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Every request loop of the fault units, titled: a real server's fault, the director's
    crash and its return."""
    titles = (("realServerDown", "Apache stopped"), ("realServerKilled", "VM killed"))
    runs = [(title, faults[key]) for key, title in titles if key in faults]
    if "directorDown" in faults:
        down = faults["directorDown"]
        runs.append((f"{down.get('from')} crashed", down))
        if "return" in down:
            runs.append((f"{down.get('from')} back", down["return"]))
    if "partialHolding" in faults:
        runs.append((f"{faults['partialHolding'].get('node')} holds the gateway alone", faults["partialHolding"]))
    if "keepalivedHangs" in faults:
        runs.append((f"keepalived hangs on {faults['keepalivedHangs'].get('from')}", faults["keepalivedHangs"]))
    return [(title, run) for title, run in runs if run.get("series")]


def faults_chart(faults: dict[str, Any]) -> Markup | None:
    """Each fault's request loop over time: a dot per answer on its backend's lane, failures
    red on their own lane, and a line at each moment the unit noted (fault, detection...)."""
    runs = fault_runs(faults)
    if not runs:
        return None
    figure, axes = pyplot.subplots(len(runs), 1, figsize=(12, 1.9 * len(runs) + 0.4), squeeze=False)
    for axis, (title, run) in zip(axes[:, 0], runs, strict=True):
        lanes = [*sorted({backend for _, backend in run["series"] if backend}), "failed"]
        for at, backend in run["series"]:
            lane = lanes.index(backend) if backend else len(lanes) - 1
            axis.plot(at, lane, "|", color="#cb181d" if backend is None else "#3182bd", markersize=9)
        for name, at in run.get("events", {}).items():
            axis.axvline(at, color="#636363", linestyle=":", linewidth=1)
            axis.text(at, len(lanes) - 0.4, f" {name}", fontsize=7, va="bottom")
        axis.set_yticks(range(len(lanes)), lanes)
        axis.set_ylim(-0.6, len(lanes) - 0.1)
        axis.set_title(f"{title}: {run.get('failed', 0)} of {run.get('requests', 0)} failed", fontsize=9, loc="left")
    axes[-1][0].set_xlabel("seconds from the start of the request loop")
    figure.tight_layout()
    return _svg(figure)


def render_html(report: dict[str, Any]) -> str:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE_DIR), autoescape=True, undefined=jinja2.StrictUndefined, keep_trailing_newline=True
    )
    template = environment.get_template("report.html.j2")
    return template.render(
        report=report,
        timings=report.get("timings", {}),
        distribution_svg=distribution_chart(report.get("distributions", {})),
        timeline_svg=timeline_chart(report.get("timeline", [])),
        faults_svg=faults_chart(report.get("faults", {})),
    )


def write_html(report: dict[str, Any], path: Path) -> None:
    path.write_text(render_html(report))
