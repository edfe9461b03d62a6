"""`lab verify` and `lab up`: the program run as a user runs it, with the real Pulumi CLI and the
real libvirt and command providers, against the lab's private libvirtd.

The stack is set up the way the README tells a user (`pulumi stack init`, the key pair with
`pulumi config set`, the private key `--secret`), plus the lab's substitutions as stack config;
what config cannot express comes from a stack transform (lab/engine_program.py). Then:

preview (shows the rule scripts) → up → libvirt's objects → preview --expect-no-changes (same
domain UUIDs, no guest rebooted) → boot profile → the units (lifecycles.py
through the engine, scenarios.py, faults.py, vrrp_faults.py on the cluster) → destroy → nothing
left in the engine's state or in libvirt.

Every count in `engineOperations` is the engine's own (its event log).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from .cluster import TCG_TRANSLATION_CACHE_MIB, LabCluster
from .engine import EngineStack, Operation, find_engine
from .engine_program import DomainAdditions, write_project
from .faults import DirectorDown, QuietPeriodEnd, QuietPeriodStart, RealServerDown, RealServerKilled
from .lifecycles import (
    CommandsCreated,
    CommandsDeleted,
    Converged,
    Created,
    DeleteRestores,
    DrainOne,
    Lifecycle,
    Refresh,
    ScaleIn,
    ScaleOut,
    SecondStack,
    UpAgain,
    UpdateFailsHalfway,
    UserOwnedRules,
    boot_ids,
)
from .plan import CLOUD_INIT_DISK, COMMAND, DOMAIN, stack_name
from .scenarios import Balance, CreateAgain, RebootFault, Throughput
from .verify import BOOT_TIMEOUT_SECONDS, Prepared, Scenario, StepFailedError
from .vrrp_faults import KeepalivedHangs, PartialHolding, ReloadDuringElection

CREATED = ("create", "create-replacement")
# terraform-provider-libvirt v0.8.1 reads a CloudInitDisk back right after uploading it; under
# load the read finds the ISO incomplete, or the pool refresh before the upload times out.
PROVIDER_RACES = ("error initializing ISO reader: corrupted-image", "timeout while waiting for state to become 'success'")
# The substitutions a stack's config can express: set with `pulumi config set` (`--path` for a key inside an object).
CONFIG_SUBSTITUTIONS = ("libvirt:uri", "lvs:domainType", "lvs:image.source", "lvs:image.poolPath")


def created_resource(step: dict[str, Any]) -> bool:
    """A step that created one of the stack's resources, as the engine's summary counts them:
    the default providers it creates on the way are steps too, but not in its counts."""
    return step["op"] in CREATED and not step["failed"] and not step["type"].startswith("pulumi:providers:")


def engine_substitutions(domain_type: str) -> list[dict[str, str]]:
    """What the lab entry point's stack transform adds to every Domain, through the provider's own inputs."""
    added = [
        {
            "what": "Domain kernel, initrd, cmdlines",
            "declared": "(boot from the image's disk)",
            "lab": "direct kernel boot (stack transform, lab/engine_program.py)",
            "reason": "the lab image has no boot loader",
        },
        {
            "what": "Domain xml.xslt: <console><log file>",
            "declared": "(pty only)",
            "lab": "console copied to a file",
            "reason": "the lab watches boot progress and shows the console on failure",
        },
    ]
    if domain_type == "qemu":
        added.append(
            {
                "what": "Domain xml.xslt: <features><tcg><tb-cache>",
                "declared": "(none)",
                "lab": f"{TCG_TRANSLATION_CACHE_MIB} MiB",
                "reason": "caps QEMU's memory under software emulation",
            }
        )
    return added


class EngineScenario(Scenario):
    """The scenario through the real CLI."""

    engine_stack: EngineStack
    first_up: list[Operation]  # the first `up`: one attempt, or two where the provider race was mended
    up_attempts: list[Operation]

    def body(self, workdir: Path, namespace: str) -> None:
        prepared = self.prepare(workdir, engine_substitutions)
        with self.lab_cluster(prepared, workdir, namespace) as cluster:
            stack = self.set_up_stack(cluster, prepared, workdir)
            try:
                self.exercise_engine(cluster, Converged(prepared.config, prepared.plan, prepared.topology))
            finally:
                # After a failure or a stop the engine destroys nothing: the daemon, with every
                # domain, volume and pool of both stacks, goes with the namespace (LabCluster.close).
                self.report.engine_operations = [operation.as_json() for operation in stack.operations]

    def bring_up(self, workdir: Path, namespace: str) -> tuple[LabCluster, EngineStack, Converged]:
        """`lab up`: the stack set up and `pulumi up` run as `lab verify` does, the guests
        booted; the cluster is left running (the caller closes it on failure only)."""
        prepared = self.prepare(workdir, engine_substitutions)
        cluster = self.lab_cluster(prepared, workdir, namespace)
        try:
            stack = self.set_up_stack(cluster, prepared, workdir)
            with self.step("pulumi up"):
                for guest in prepared.topology.guests:
                    cluster.watch(guest.name, started_at=time.monotonic())
                self.up_as_a_user_would()
                cluster.wait_booted(BOOT_TIMEOUT_SECONDS)
        except BaseException:
            cluster.close()
            raise
        return cluster, stack, Converged(prepared.config, prepared.plan, prepared.topology)

    def set_up_stack(self, cluster: LabCluster, prepared: Prepared, workdir: Path) -> EngineStack:
        """The private daemon and the pools the stack expects, the lab's project around the
        unchanged program, and the stack set up as the README says."""
        report = self.report
        with self.step("engine"):
            engine = find_engine(log=self.log)
        cluster.open()
        report.substitutions += [
            {
                "what": f"storage pool {name}",
                "declared": "lvs:image.pool: an existing pool",
                "lab": "created by the lab",
                "reason": "the stack expects it on the host",
            }
            for name in cluster.provide_pools(prepared.plan)
        ]
        assert cluster.boot is not None
        additions = DomainAdditions(
            kernel=str(cluster.boot.kernel),
            initrd=str(cluster.boot.initrd),
            cmdline=cluster.boot.cmdline,
            consoles=str(workdir / "consoles"),
            tcg_translation_cache_mib=TCG_TRANSLATION_CACHE_MIB if prepared.config["lvs:domainType"] == "qemu" else None,
        )
        project = write_project(workdir / "project", self.config_path, additions)
        stack = EngineStack(engine, project, self.stack, namespace=cluster.ns, state=workdir / "engine", log=self.log)
        with self.step("stack init (as the README says)"):
            stack.install_plugins()
            report.engine, report.plugins = stack.versions()
            report.notes.append(f"engine: {report.engine} ({engine.origin}: {engine.pulumi})")
            stack.init()
            self.configure(stack, prepared.key)
        self.engine_stack = stack
        return stack

    def keep_on_failure(self, workdir: Path, kept: Path) -> None:
        """The engine's own account of each operation: its event logs and output."""
        if (workdir / "engine").is_dir():
            shutil.copytree(workdir / "engine", kept / "engine", ignore=shutil.ignore_patterns("home", "backend"))

    def configure(self, stack: EngineStack, key: Path) -> None:
        """The README's `pulumi config set` lines (the private key from its file, as a secret),
        then the lab's substitutions as stack config."""
        stack.config_set("lvs:sshPublicKey", key.with_suffix(".pub").read_text().strip())
        stack.config_set("lvs:sshPrivateKey", key.read_text(), secret=True)
        for substitution in self.report.substitutions:
            if substitution["what"] in CONFIG_SUBSTITUTIONS:
                stack.config_set(substitution["what"], substitution["lab"], path="." in substitution["what"])

    def operate(self, name: str, operation: Operation) -> Operation:
        self.report.timings[f"{name}_s"] = operation.seconds
        if not operation.ok:
            raise StepFailedError(f"pulumi {operation.operation} failed:\n{operation.output[-3000:]}")
        return operation

    def exercise_engine(self, cluster: LabCluster, state: Converged) -> None:
        report, stack = self.report, self.engine_stack
        with self.step("pulumi preview"):
            preview = self.operate("preview", stack.preview())
            owner = "keepalived" if self.settings_of(state.config).keepalived else "ipvsadm"
            scripts = [step for step in preview.steps if step["type"] == COMMAND and owner in str(step["inputs"].get("create", ""))]
            report.check("preview shows the rule scripts", bool(scripts), f"{len(scripts)} Commands whose create runs {owner}")
            report.check(
                "preview: every resource to create", preview.changes["create"] > 0 and preview.changes["delete"] == 0, str(preview.changes)
            )
        with self.step("pulumi up"):
            up_started = time.monotonic()
            for guest in state.topology.guests:
                cluster.watch(guest.name, started_at=up_started)
            up = self.up_as_a_user_would()
            self.first_up = self.up_attempts
            created = {s["urn"] for attempt in self.first_up for s in attempt.steps if created_resource(s)}
            report.check(
                "up creates what preview showed",
                len(created) == preview.changes["create"],
                f"{[attempt.changes for attempt in self.first_up]} after {preview.changes}",
            )
            boots = cluster.wait_booted(BOOT_TIMEOUT_SECONDS)
            report.timings["cloud_init_done_uptime_s"] = {name: round(seconds, 1) for name, seconds in boots.items()}
            report.timings["clusterReadySeconds"] = up.seconds
            report.timings["guests_at_once"] = len(boots)
            self.record_boots(cluster)  # on the timeline; each guest's clock starts at up's start
            report.timings["engine"] = self.phases(up, cluster)
            self.check_libvirt_objects(cluster)
        uuids, boot_ids_before = cluster.domain_uuids(), boot_ids(cluster, state.topology)
        with self.step("pulumi preview --expect-no-changes"):
            again = stack.preview(expect_no_changes=True)
            report.check(
                "preview after up: no changes",
                again.ok and again.changes["same"] > 0 and sum(again.changes.values()) == again.changes["same"],
                str(again.changes),
            )
            report.check(
                "preview after up: same domain UUIDs, no guest rebooted",
                (cluster.domain_uuids(), boot_ids(cluster, state.topology)) == (uuids, boot_ids_before),
            )
        with self.step("boot profile"):
            report.boot_profile = self.boot_profile(cluster, state.plan, state.topology)
        pair = self.settings_of(state.config).director.pair is not None
        for unit in self.engine_units():
            with self.step(unit.name):
                state = unit.run(self, cluster, state)
                # With its Commands deleted keepalived holds nothing, by design.
                if pair and not isinstance(unit, (UserOwnedRules, CommandsDeleted, DeleteRestores)):
                    self.check_floating(cluster, state, after=unit.name)
        with self.step("pulumi destroy"):
            destroy = self.operate("destroy", stack.destroy())
            cluster.guests.clear()
            report.left_after_destroy = cluster.leftovers(state.plan)
            kept = stack.urns()
            report.notes.append(f"destroy: {destroy.changes}")
            report.check("destroy leaves nothing in the engine's state", kept == set(), str(sorted(kept)))
            report.check(
                "destroy leaves none of the stack's libvirt objects", report.left_after_destroy == [], str(report.left_after_destroy)
            )

    def engine_units(self) -> list[Lifecycle]:
        """What runs on the cluster `pulumi up` built, in order (lifecycles.py for what goes
        through the engine; scenarios.py, faults.py, vrrp_faults.py for what only looks or breaks)."""
        settings = self.settings_of(self.config)
        rules: list[Lifecycle] = [Created(), UserOwnedRules(), CommandsDeleted(), CommandsCreated(), CreateAgain()]
        if settings.keepalived:
            quiet = QuietPeriodStart()
            checked = [RealServerDown(), RealServerKilled()] if settings.health_check else []
            pair: list[Lifecycle] = (
                [DirectorDown(), PartialHolding(), KeepalivedHangs(), ReloadDuringElection()] if settings.director.pair else []
            )
            return [*rules, quiet, Balance(), Throughput(), QuietPeriodEnd(quiet), *checked, *pair, DrainOne(), Refresh(), DeleteRestores()]
        scale_out = ScaleOut()
        second = [SecondStack(self.second_stack)] if self.second_stack else []
        return [
            *rules,
            Balance(),
            Throughput(),
            DrainOne(),
            RebootFault(),
            UpdateFailsHalfway(),
            UpAgain(),
            scale_out,
            ScaleIn(scale_out),
            *second,
            Refresh(),
            DeleteRestores(),
        ]

    def destroy_commands(self, names: list[str]) -> Operation:
        """`pulumi destroy --target` each named Command (their dependents with them), as a user
        takes a cluster's rules away and keeps its machines."""
        urns = sorted(urn for urn in self.engine_stack.urns() if f"${COMMAND}::" in urn and urn.rsplit("::", 1)[-1] in names)
        if len(urns) != len(set(names)):  # without a --target, destroy would take the whole stack
            raise StepFailedError(f"the engine's state holds {len(urns)} of the {len(set(names))} Commands {sorted(names)}")
        targets = [arg for urn in urns for arg in ("--target", urn)]
        return self.operate("destroy_rules", self.engine_stack.destroy(*targets, "--target-dependents"))

    def second_engine_stack(self, config_path: str, config: dict[str, Any]) -> EngineStack:
        """Another stack of the lab's project, set up as the README says, its operations counted
        with the first's."""
        path = Path(config_path)
        shutil.copyfile(path, self.engine_stack.project / path.name)
        name = stack_name(path)
        second = EngineStack(
            self.engine_stack.engine,
            self.engine_stack.project,
            name,
            namespace=self.engine_stack.namespace,
            state=self.engine_stack.state,
            log=self.log,
        )
        second.operations = self.engine_stack.operations
        second.init()
        second.config_set("lvs:sshPrivateKey", config["lvs:sshPrivateKey"], secret=True)
        second.write_config({key: value for key, value in config.items() if key != "lvs:sshPrivateKey"})
        return second

    def up_as_a_user_would(self, *, name: str = "up", stack: EngineStack | None = None) -> Operation:
        """`pulumi up`; where it failed on a cloud-init disk as the provider is known to fail
        at random (terraform-provider-libvirt #973: the ISO read back while libvirt still writes
        it, or the pool refresh before the upload timing out), what the README tells a user:
        `pulumi up --replace` each such disk the engine kept (with init errors; a plain `up`
        answers "doesn't support update"), else `pulumi up` again. Every attempt is in
        engineOperations and the notes."""
        stack = stack or self.engine_stack
        up = stack.up()
        self.up_attempts = [up]
        failed = [s["urn"] for s in up.steps if s["failed"] and s["type"] == CLOUD_INIT_DISK]
        if not up.ok and failed and any(marker in up.output for marker in PROVIDER_RACES):
            kept = stack.urns()
            replace = [arg for urn in failed if urn in kept for arg in ("--replace", urn)]
            self.report.notes.append(f"{name} failed on a cloud-init disk (provider race): {failed}; up again {replace}")
            up = stack.up(*replace)
            self.up_attempts.append(up)
        return self.operate(name, up)

    def phases(self, up: Operation, cluster: LabCluster) -> dict[str, float | None]:
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
