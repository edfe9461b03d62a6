"""The VM lab: runs the program with the real Pulumi CLI against a private libvirtd, in a network
namespace of its own, and proves the cluster works.

python -m lab verify --config Pulumi.seed.yaml [--requests N] [--json REPORT] [--html PAGE] [-v]
python -m lab up --config Pulumi.seed.yaml     # pulumi up, left running; prints how to reach it
python -m lab down                             # remove what `up` left
python -m lab image                            # build (or reuse) the base image
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from rich.console import Console, RenderableType
from rich.markup import escape
from rich.table import Table

from .guests.cluster import CommandRun
from .host import runs, tools
from .host.image import DEFAULT_CACHE_DIR, ensure_image
from .report.html import write_html
from .report.progress import Progress
from .report.report import Distribution
from .scenario.runner import Run
from .stack.plan import stack_name

console = Console(stderr=True, highlight=False)
# Everything the run prints goes through it: a live display on a terminal, plain lines with a
# status line at least every 30 s otherwise (lab/report/progress.py).
progress = Progress(console)


def log(message: str) -> None:
    progress.print(f"[dim]{escape(message)}[/dim]")


def out(renderable: RenderableType, *, markup: bool = True) -> None:
    progress.print(renderable, markup=markup)


def make_show(verbose: bool) -> Any:
    def show(kind: str, payload: Any) -> None:
        if kind == "step":
            name, seconds = payload
            out(f"[bold]✓ {name}[/bold] {seconds:.1f} s")
        elif kind == "command":
            run: CommandRun = payload
            colour = "green" if run.returncode == 0 else "red"
            out(f"  [{colour}]{run.phase:6} {run.name}[/{colour}] rc={run.returncode} {run.seconds:.1f} s")
            if verbose or run.returncode:
                for line in (run.stdout + run.stderr).strip().splitlines()[-15:]:
                    out(f"      {line}", markup=False)
        elif kind == "distribution":
            title, distribution = payload
            show_distribution(title, distribution, verbose)
        elif kind == "throughput":
            table = Table(title="throughput (200 sequential requests)")
            for column in ("path", "answered", "seconds", "requests/s"):
                table.add_column(column)
            for label in ("vip", "direct"):
                row = payload[label]
                table.add_row(label, str(row["requests"]), f"{row['seconds']:.2f}", f"{row['per_second']:.1f}")
            out(table)
            out(f"  VIP/direct throughput ratio: {payload['vip_over_direct']}")
        elif kind == "forwarding":
            evidence = payload["evidence"]
            out(
                f"  {payload['mode']}: replies bypass the director: {payload['repliesBypassDirector']}; "
                f"IPVS counters {evidence['ipvsCounters']}; SYN-ACKs by sender {evidence['synAcksAtClient']['bySender']}, "
                f"MSS {evidence['synAcksAtClient']['mss']}",
                markup=False,
            )
        elif kind == "large transfers":
            get, post = payload["GET"], payload["POST"]
            out(
                f"  {payload['bytes']} bytes: GET {get['whole']}/{get['transfers']} whole (median {get['medianSeconds']} s), "
                f"POST {post['whole']}/{post['transfers']} whole (median {post['medianSeconds']} s); "
                f"GET via the VIP over direct: {payload['getVipOverDirect']}",
                markup=False,
            )

    return show


def show_distribution(title: str, distribution: Distribution, verbose: bool) -> None:
    if verbose:
        for index, line in enumerate(distribution.lines, 1):
            out(f"    #{index:<4} {line}", markup=False)
    table = Table(title=f"{title}: {distribution.scheduler}, {'OK' if distribution.ok else 'FAILED'}")
    for column in ("node", "weight", "answers", "expected"):
        table.add_column(column)
    for node, weight in distribution.weights.items():
        expected = "-" if distribution.expected is None else f"{distribution.expected[node]:.1f} ± {distribution.tolerance:g}"
        table.add_row(node, str(weight), str(distribution.counts[node]), expected)
    table.add_row("failed", "", str(distribution.failed), "0")
    out(table)


def command_verify(args: argparse.Namespace) -> int:
    for option, path in (("--json", args.json), ("--html", args.html)):
        # Before the run, not after ten minutes of it: the report's directory must be there.
        if path and not writable(Path(path)):
            print(f"lab verify: {option} {path}: cannot write there", file=sys.stderr)
            return 2
    report_leftovers()
    with progress:
        report = Run(
            Path(args.config),
            requests=args.requests,
            log=log,
            show=make_show(args.verbose),
            cache_dir=DEFAULT_CACHE_DIR,
            second_stack=args.second_stack,
            progress=progress,
        ).verify()
    checks = Table(title=f"lab verify {report.config}")
    checks.add_column("check")
    checks.add_column("result")
    checks.add_column("detail", overflow="fold")
    for check in report.checks:
        checks.add_row(check["name"], "[green]ok[/green]" if check["ok"] else "[red]FAILED[/red]", check["detail"][:300])
    out(checks)
    out(json.dumps(report.timings))
    for note in report.notes:
        out(f"note: {note}")
    if report.consoles_kept:
        out(f"the guests' full consoles are kept in {report.consoles_kept}")
    if args.json:
        Path(args.json).write_text(json.dumps(report.as_json(), indent=2))
        out(f"report written to {args.json}")
    if args.html:
        write_html(report.as_json(), Path(args.html))
        out(f"HTML report written to {args.html}")
    out("[bold green]lab verify: all checks held[/bold green]" if report.ok else "[bold red]lab verify: FAILED[/bold red]")
    return 0 if report.ok else 1


def writable(path: Path) -> bool:
    """Makes the file's directory if needed; can a file be created there?"""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(path.parent, os.W_OK) and not path.is_dir()


def command_up(args: argparse.Namespace) -> int:
    """`pulumi up` of the stack, as `lab verify` runs it, against a private libvirtd; the cluster
    is left running with its stack, for a user to look at and to run `pulumi` against."""
    config_path = Path(args.config)
    stack = stack_name(config_path)
    namespace = f"lvslab-up-{stack}"[:15]
    if any(record.namespace == namespace for record in runs.records()):
        console.print("a lab is already up: `python -m lab down` first")
        return 1
    report_leftovers()
    # Outside root's home: libvirt runs QEMU as libvirt-qemu, which must reach the kernel files.
    workdir = Path(tempfile.mkdtemp(prefix=f"lvs-lab-up-{stack}-"))
    record = runs.register("up", namespace, workdir)
    run = Run(config_path, requests=0, log=log, show=make_show(False), cache_dir=DEFAULT_CACHE_DIR, progress=progress)
    try:
        with progress:
            _, deployment, state = run.bring_up(workdir, namespace)
    except BaseException:
        runs.clean(record, log)
        raise
    engine_stack = deployment.stack
    for substitution in run.report.substitutions:
        log(f"substitution: {substitution['what']} = {substitution['lab']} ({substitution['reason']})")
    director = state.topology.ready(next(name for name, node in state.plan.outputs["nodes"].items() if node["role"] == "director"))
    key = workdir / "id_ed25519"
    # On stdout and unwrapped: the lines are meant to be copied.
    print(f"lab is up in namespace {namespace}.")
    print(f"  ip netns exec {namespace} curl -si {state.plan.outputs['vipUrl']}")
    print(
        f"  ip netns exec {namespace} ssh -i {key} -o StrictHostKeyChecking=no {director.user}@{director.host}"
        "   # the director; other nodes by their address"
    )
    print(f"  the stack {engine_stack.stack} (pulumi stack output, preview, up) in {engine_stack.project}, run there as:")
    print(f"  {engine_stack.shell_environment()} ip netns exec {namespace} pulumi stack output")
    print("  python -m lab down   # to remove it")
    return 0


def command_down(args: argparse.Namespace) -> int:
    """Removes what `lab up` left running and what stopped runs (SIGKILL, power cut) left."""
    found = False
    for record in runs.records():
        if record.kind == "verify" and record.alive():
            console.print(f"a lab verify is running (pid {record.pid}, namespace {record.namespace}): left alone")
            continue
        found = True
        console.print(f"removing lab {record.kind} of pid {record.pid} (namespace {record.namespace}, {record.workdir})")
        runs.clean(record, log)
    if not found:
        console.print("no lab to remove")
    return 0


def report_leftovers() -> None:
    for record in runs.leftovers():
        if record.kind != "up":
            console.print(
                f"[yellow]leftovers of a stopped lab {record.kind} (pid {record.pid}, namespace {record.namespace}): "
                "`python -m lab down` removes them[/yellow]"
            )


def command_image(args: argparse.Namespace) -> int:
    with progress:
        progress.step("image")
        image = ensure_image(log=log)
    state = "built" if image.built else "reused"
    console.print(f"{image.root_disk} ({state}, {image.build_seconds:.1f} s) kernel {image.kernel_version}")
    return 0


def command_doctor(args: argparse.Namespace) -> int:
    from .doctor import run as run_doctor

    return run_doctor(Path(args.config), args.uri, out=sys.stdout)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    verify_parser = commands.add_parser("verify", help="boot, apply, balance, update, delete, tear down; exit 0 if every check held")
    verify_parser.add_argument("--config", required=True, help="a Pulumi.<stack>.yaml")
    verify_parser.add_argument("--requests", type=int, default=120, help="requests per distribution check (default 120)")
    verify_parser.add_argument("--json", help="write the report here")
    verify_parser.add_argument("--html", help="write a report to look at here (charts of the distribution and of the run's timeline)")
    verify_parser.add_argument("--second-stack", help="another Pulumi.<stack>.yaml: up beside it on the same daemon, serving, destroyed")
    verify_parser.add_argument("-v", "--verbose", action="store_true", help="a line per request, Command output")
    verify_parser.set_defaults(run=command_verify, tools=tools.LAB_PROGRAMS)
    up_parser = commands.add_parser("up", help="boot the cluster and leave it running")
    up_parser.add_argument("--config", required=True)
    up_parser.set_defaults(run=command_up, tools=tools.LAB_PROGRAMS)
    commands.add_parser("down", help="remove the lab `up` left").set_defaults(run=command_down)
    commands.add_parser("image", help="build or reuse the base image").set_defaults(run=command_image, tools=tools.IMAGE_PROGRAMS)
    doctor_parser = commands.add_parser("doctor", help="preflight for `pulumi up` on your libvirt host; exit 1 on any fail")
    doctor_parser.add_argument("--config", required=True, help="a Pulumi.<stack>.yaml")
    doctor_parser.add_argument("--uri", help="libvirt URI (default: the stack's libvirt:uri, else qemu:///system)")
    doctor_parser.set_defaults(run=command_doctor)
    args = parser.parse_args(argv)
    if getattr(args, "requests", 1) < 1:
        parser.error("--requests must be at least 1")
    try:
        tools.require(*getattr(args, "tools", ()))
    except tools.MissingToolError as missing:
        print(f"lab {args.command}: {missing}", file=sys.stderr)
        return 2
    runs.install_stop_handlers()
    try:
        result: int = args.run(args)
        runs.raise_if_stopped()
    except runs.Stopped as stopped:
        console.print(f"lab: stopped by {stopped}; what this run started has been removed")
        return 128 + stopped.signum
    return result


if __name__ == "__main__":
    sys.exit(main())
