"""`lab verify` and `lab up`: the program run as a user runs it, with the real Pulumi CLI and the
real libvirt and command providers, against the lab's private libvirtd.

The stack is set up the way the README tells a user (`pulumi stack init`, the key pair with
`pulumi config set`, the private key `--secret`), plus the lab's substitutions as stack config;
what config cannot express comes from a stack transform (lab/engine/program.py). Then:

preview (shows the rule scripts) → up → libvirt's objects → preview --expect-no-changes (same
domain UUIDs, no guest rebooted) → boot profile → the units of the stack's sequence
(sequences.py) → destroy → nothing left in the engine's state or in libvirt.

Every count in `engineOperations` is the engine's own (its event log). The run has a work
directory and a namespace of its own, always torn down; a failed run keeps what explains it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ..engine.cli import Operation
from ..guests.cluster import LabCluster
from ..guests.nodes import NodeError
from ..host import runs
from ..report.progress import Progress
from ..report.report import Report
from ..stack.plan import COMMAND, DOMAIN, stack_name
from .commands import CommandRunner
from .context import BOOT_TIMEOUT_SECONDS, RunContext, StackState
from .deployment import Deployment
from .faults import settled_holding, split_holding
from .prepare import Prepared, prepare, set_up_stack
from .sequences import RULES_OFF, units_for
from .status import Log, Show, Status, StepFailedError
from .traffic import Traffic

CREATED = ("create", "create-replacement")
BOOT_PROFILE_SCRIPT = (
    "systemd-analyze time --no-pager; echo '--- blame'; systemd-analyze blame --no-pager | head -n 10; "
    "echo '--- cloud-init'; cloud-init analyze blame 2>/dev/null | head -n 12"
)


def created_resource(step: dict[str, Any]) -> bool:
    """A step that created one of the stack's resources, as the engine's summary counts them:
    the default providers it creates on the way are steps too, but not in its counts."""
    return step["op"] in CREATED and not step["failed"] and not step["type"].startswith("pulumi:providers:")


def floor_timings(timings: dict[str, Any], cores: int) -> dict[str, Any]:
    """The run's CPU floor for booting the cluster: one guest's solo boot on this run (the
    scale-out node, booted while the others idle), times the guests booted at once, over the
    cores they share; and the cluster-ready time as a ratio to it."""
    solo, ready, guests = timings.get("solo_boot_s"), timings.get("clusterReadySeconds"), timings.get("guests_at_once")
    if not (solo and ready and guests):
        return {"floorSeconds": None, "floorRatio": None, "cores": cores}
    # The ratio is of the floor as reported (rounded), so a reader can recompute it: from the
    # unrounded one it came out 1.78 where the figures give 1.77 (CI, stop 31).
    floor = round(solo * max(1.0, guests / cores), 1)
    return {"floorSeconds": floor, "floorRatio": round(ready / floor, 2), "cores": cores}


def keep_consoles(workdir: Path, cache_dir: Path, namespace: str) -> str | None:
    """A failed run's guest consoles, kept out of the work directory that teardown removes."""
    consoles = workdir / "consoles"
    if not consoles.is_dir():
        return None
    kept = cache_dir / "failed-runs" / f"{namespace}-{time.strftime('%Y%m%d-%H%M%S')}"
    shutil.copytree(consoles, kept)
    return str(kept)


class Run:
    """One run of a stack file: prepared, brought up through the engine, its units stepped."""

    def __init__(
        self,
        config_path: Path,
        *,
        requests: int,
        log: Log,
        show: Show,
        cache_dir: Path,
        second_stack: str | None = None,
        progress: Progress | None = None,
    ) -> None:
        self.config_path = config_path
        self.stack = stack_name(config_path)
        self.requests = requests
        self.cache_dir = cache_dir
        self.second_stack = second_stack
        self.report = Report(config=str(config_path), stack=self.stack, requests=requests)
        self.status = Status(self.report, log=log, show=show, progress=progress)

    def verify(self) -> Report:
        """The whole scenario in a work directory and namespace of its own, always torn down;
        a failed run keeps its consoles and the engine's own account."""
        report = self.report
        workdir = Path(tempfile.mkdtemp(prefix=f"lvs-lab-{self.stack}-"))
        namespace = f"lvslab-{os.getpid()}"
        record = runs.register("verify", namespace, workdir)
        try:
            self.body(workdir, namespace)
        except Exception as error:
            runs.raise_if_stopped()  # a stop that surfaced as another error is still a stop
            detail = str(error) if isinstance(error, (StepFailedError, NodeError)) else f"{type(error).__name__}: {error}"
            report.check("scenario", False, detail)
            report.consoles_kept = keep_consoles(workdir, self.cache_dir, namespace)
            if report.consoles_kept and (workdir / "engine").is_dir():
                # The engine's own account of each operation: its event logs and output.
                kept = Path(report.consoles_kept) / "engine"
                shutil.copytree(workdir / "engine", kept, ignore=shutil.ignore_patterns("home", "backend"))
        finally:
            # Whatever the cluster's own teardown missed, the record names.
            runs.clean(record, self.status.log)
            report.timings["total_s"] = self.status.elapsed()
            report.timings.update(floor_timings(report.timings, os.cpu_count() or 1))
        report.ok = bool(report.checks) and all(check["ok"] for check in report.checks)
        return report

    def lab_cluster(self, prepared: Prepared, workdir: Path, namespace: str) -> LabCluster:
        cluster = LabCluster(
            prepared.state.topology,
            image=prepared.image,
            workdir=workdir,
            ssh_key=prepared.key,
            namespace=namespace,
            log=self.status.log,
            accel=prepared.accel,
        )
        if self.status.progress is not None:
            cluster.consoles.subscribe(self.status.progress)  # each boot's stages shown live
        return cluster

    def context(self, cluster: LabCluster, deployment: Deployment, prepared: Prepared) -> RunContext:
        return RunContext(
            cluster=cluster,
            deployment=deployment,
            prepared=prepared,
            commands=CommandRunner(cluster, self.status),
            traffic=Traffic(cluster, self.status),
            status=self.status,
            requests=self.requests,
            second_stack=self.second_stack,
        )

    def body(self, workdir: Path, namespace: str) -> None:
        prepared = prepare(self.config_path, self.stack, workdir, cache_dir=self.cache_dir, status=self.status)
        with self.lab_cluster(prepared, workdir, namespace) as cluster:
            deployment = set_up_stack(cluster, prepared, workdir, self.status)
            try:
                self.exercise(self.context(cluster, deployment, prepared), prepared.state)
            finally:
                # After a failure or a stop the engine destroys nothing: the daemon, with every
                # domain, volume and pool of both stacks, goes with the namespace (LabCluster.close).
                self.report.engine_operations = [operation.as_json() for operation in deployment.stack.operations]

    def bring_up(self, workdir: Path, namespace: str) -> tuple[LabCluster, Deployment, StackState]:
        """`lab up`: the stack set up and `pulumi up` run as `lab verify` does, the guests
        booted; the cluster is left running (the caller closes it on failure only)."""
        prepared = prepare(self.config_path, self.stack, workdir, cache_dir=self.cache_dir, status=self.status)
        cluster = self.lab_cluster(prepared, workdir, namespace)
        try:
            deployment = set_up_stack(cluster, prepared, workdir, self.status)
            with self.status.step("pulumi up"):
                for guest in prepared.state.topology.guests:
                    cluster.watch(guest.name, started_at=time.monotonic())
                deployment.up()
                cluster.wait_booted(BOOT_TIMEOUT_SECONDS)
        except BaseException:
            cluster.close()
            raise
        return cluster, deployment, prepared.state

    def exercise(self, ctx: RunContext, state: StackState) -> None:
        report, status, deployment = self.report, self.status, ctx.deployment
        stack, cluster = deployment.stack, ctx.cluster
        with status.step("pulumi preview"):
            preview = deployment.operate("preview", stack.preview())
            owner = "keepalived" if state.settings.keepalived else "ipvsadm"
            scripts = [step for step in preview.steps if step["type"] == COMMAND and owner in str(step["inputs"].get("create", ""))]
            report.check("preview shows the rule scripts", bool(scripts), f"{len(scripts)} Commands whose create runs {owner}")
            report.check(
                "preview: every resource to create", preview.changes["create"] > 0 and preview.changes["delete"] == 0, str(preview.changes)
            )
        with status.step("pulumi up"):
            up_started = time.monotonic()
            for guest in state.topology.guests:
                cluster.watch(guest.name, started_at=up_started)
            up = deployment.up()
            ctx.facts.first_up = deployment.up_attempts
            created = {s["urn"] for attempt in ctx.facts.first_up for s in attempt.steps if created_resource(s)}
            report.check(
                "up creates what preview showed",
                len(created) == preview.changes["create"],
                f"{[attempt.changes for attempt in ctx.facts.first_up]} after {preview.changes}",
            )
            boots = cluster.wait_booted(ctx.boot_timeout)
            report.timings["cloud_init_done_uptime_s"] = {name: round(seconds, 1) for name, seconds in boots.items()}
            report.timings["clusterReadySeconds"] = up.seconds
            report.timings["guests_at_once"] = len(boots)
            self.record_boots(cluster)  # on the timeline; each guest's clock starts at up's start
            report.timings["engine"] = phases(up, cluster)
            self.check_libvirt_objects(cluster)
        uuids, boot_ids_before = cluster.domain_uuids(), ctx.boot_ids(state)
        with status.step("pulumi preview --expect-no-changes"):
            again = stack.preview(expect_no_changes=True)
            report.check(
                "preview after up: no changes",
                again.ok and again.changes["same"] > 0 and sum(again.changes.values()) == again.changes["same"],
                str(again.changes),
            )
            report.check(
                "preview after up: same domain UUIDs, no guest rebooted",
                (cluster.domain_uuids(), ctx.boot_ids(state)) == (uuids, boot_ids_before),
            )
        with status.step("boot profile"):
            report.boot_profile = self.boot_profile(ctx, state)
        for unit in units_for(ctx, state):
            with status.step(unit.name):
                state = unit.run(ctx, state)
                if state.settings.director.pair is not None and not isinstance(unit, RULES_OFF):
                    self.check_floating(ctx, state, after=unit.name)
        with status.step("pulumi destroy"):
            destroy = deployment.operate("destroy", stack.destroy())
            cluster.guests.clear()
            report.left_after_destroy = cluster.leftovers(state.plan)
            kept = stack.urns()
            report.notes.append(f"destroy: {destroy.changes}")
            report.check("destroy leaves nothing in the engine's state", kept == set(), str(sorted(kept)))
            report.check(
                "destroy leaves none of the stack's libvirt objects", report.left_after_destroy == [], str(report.left_after_destroy)
            )

    def check_floating(self, ctx: RunContext, state: StackState, *, after: str) -> None:
        """A pair's invariant: each floating address (VIP, gateway) on exactly one director, the
        same one, within the bound an election or the VRRP watchdog needs."""
        holders, waited = settled_holding(ctx, state)
        split = split_holding(holders)
        self.report.floating_holders.append({"after": after, "holders": holders, "settledSeconds": waited})
        self.report.check(
            f"pair: one director holds every floating address after {after}",
            split is None,
            f"{holders} (settled in {waited} s)" if split is None else f"{split} after {waited} s",
        )

    def record_boots(self, cluster: LabCluster) -> None:
        """Puts each guest's boot on the timeline (cluster-ready time is the engine's own)."""
        for name, guest in cluster.guests.items():
            if guest.boot_seconds is None:
                continue
            self.report.timeline.append(
                {
                    "kind": "guest",
                    "name": name,
                    "start_s": self.status.since_start(guest.started_at),
                    "seconds": round(guest.boot_seconds, 1),
                    "stages": dict(guest.boot.stages),
                }
            )

    @staticmethod
    def boot_profile(ctx: RunContext, state: StackState) -> dict[str, dict[str, Any]]:
        """Where each guest's boot went, in the guest's own words: systemd's and cloud-init's."""
        profile = {}
        nodes = [ctx.node(state, name) for name in state.plan.outputs["nodes"]]
        # At once: each takes seconds of a guest's CPU (cloud-init's analyzer is Python).
        with ThreadPoolExecutor(max_workers=len(nodes)) as pool:
            answers = {node.name: pool.submit(node.run, BOOT_PROFILE_SCRIPT, timeout=120) for node in nodes}
        for name, answer in answers.items():
            systemd, _, rest = answer.result().stdout.partition("--- blame\n")
            blame, _, cloud_init = rest.partition("--- cloud-init\n")
            profile[name] = {
                "systemd": systemd.strip(),
                "blame": [line.strip() for line in blame.splitlines() if line.strip()],
                "cloudInit": [line.strip() for line in cloud_init.splitlines() if line.strip().endswith(")")],
            }
        return profile

    def check_libvirt_objects(self, cluster: LabCluster) -> None:
        """What libvirt holds, asked through its API: bridges with exactly the host's address,
        NICs with the planned MACs on the planned networks, cloud-init fed from the NoCloud disk."""
        bridges = cluster.bridge_addresses()
        for network in cluster.topology.networks:
            expected = [f"{network.host_ip}/{network.cidr.prefixlen}"]
            self.report.check(
                f"bridge of {network.name} holds exactly {expected[0]}", bridges[network.name] == expected, str(bridges[network.name])
            )
        nics = cluster.domain_nics()
        for guest in cluster.topology.guests:
            planned = [(nic.network.name, nic.mac.lower()) for nic in guest.nics]
            self.report.check(
                f"{guest.name}: NICs carry the planned MACs on the planned networks", nics[guest.name] == planned, str(nics[guest.name])
            )
            datasource = cluster.guests[guest.name].datasource or ""
            self.report.check(f"{guest.name}: cloud-init found its NoCloud disk", datasource.startswith("DataSourceNoCloud"), datasource)


def phases(up: Operation, cluster: LabCluster) -> dict[str, float | None]:
    """Where `up` went, from the engine's own events (whole seconds) and the guests' own
    uptime at cloud-init done: the libvirt objects, the guests' boots, the Commands; and the
    engine's share of the cluster-ready time (all of `up` but the guests booting)."""
    libvirt_steps = [s for s in up.steps if s["type"].startswith("libvirt:") and s["op"] == "create"]
    domains = [s for s in libvirt_steps if s["type"] == DOMAIN]
    guests_ready = [
        float(s["end"] - up.started) + (cluster.guests[s["inputs"]["name"]].guest_uptime or 0.0)
        for s in domains
        if up.started is not None and s["end"] is not None and s["inputs"].get("name") in cluster.guests
    ]
    libvirt_s = up.finished_after_start(libvirt_steps)
    first_domain = min((float(s["end"] - up.started) for s in domains if s["end"] is not None and up.started is not None), default=0.0)
    booting = max(guests_ready, default=first_domain) - first_domain
    return {
        "upSeconds": up.seconds,
        "libvirtSeconds": libvirt_s,
        "guestsReadySeconds": round(max(guests_ready, default=0.0), 1),
        "commandsSeconds": up.finished_after_start([s for s in up.steps if s["type"] == COMMAND]),
        "engineShare": round(1 - booting / up.seconds, 2) if up.seconds else None,
    }
