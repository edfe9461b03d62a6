"""`lab verify --engine pulumi`: the program run as a user runs it, with the real Pulumi CLI and the
real libvirt and command providers, against the lab's private libvirtd.

The stack is set up the way the README tells a user (`pulumi stack init`, the key pair with
`pulumi config set`, the private key `--secret`), plus the lab's substitutions as stack config;
what config cannot express comes from a stack transform (lab/engine_program.py). Then:

preview (shows the rule scripts) → up → preview --expect-no-changes (same domain UUIDs, no guest
rebooted) → libvirt's objects → balance → a weight change (Commands only, the live table follows)
→ refresh → `stack output ipvsTable` → destroy → nothing of the stack left in libvirt.

Every count in `engineOperations` is the engine's own (its event log).
"""

from __future__ import annotations

import copy
import shutil
import time
from pathlib import Path

from .cluster import TCG_TRANSLATION_CACHE_MIB, LabCluster
from .engine import EngineStack, Operation, find_engine
from .engine_program import DomainAdditions, write_project
from .lifecycles import (
    REQUEST_INTERVAL_SECONDS,
    REQUESTS_DURING_SCALE_IN,
    REQUESTS_FLOWING_SECONDS,
    Converged,
    boot_ids,
    changed,
    next_web_server,
)
from .scenarios import Balance
from .verify import BOOT_TIMEOUT_SECONDS, Scenario, StepFailedError

COMMAND = "command:remote:Command"
DOMAIN = "libvirt:index/domain:Domain"
CLOUD_INIT_DISK = "libvirt:index/cloudInitDisk:CloudInitDisk"
# terraform-provider-libvirt v0.8.1 reads a CloudInitDisk back right after uploading it; under
# load the read finds the ISO incomplete, or the pool refresh before the upload times out.
PROVIDER_RACES = ("error initializing ISO reader: corrupted-image", "timeout while waiting for state to become 'success'")
# The substitutions a stack's config can express: set with `pulumi config set` (`--path` for a key inside an object).
CONFIG_SUBSTITUTIONS = ("libvirt:uri", "lvs:domainType", "lvs:image.source", "lvs:image.poolPath")


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
    """The scenario through the real CLI; the units it shares with the translation's run the
    same checks on the cluster the engine built."""

    def body(self, workdir: Path, namespace: str) -> None:
        report = self.report
        with self.step("engine"):
            engine = find_engine(log=self.log)
        prepared = self.prepare(workdir, engine_substitutions)
        config = prepared.config
        with self.lab_cluster(prepared, workdir, namespace) as cluster:
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
                tcg_translation_cache_mib=TCG_TRANSLATION_CACHE_MIB if config["lvs:domainType"] == "qemu" else None,
            )
            project = write_project(workdir / "project", self.config_path, additions)
            stack = EngineStack(engine, project, self.stack, namespace=cluster.ns, state=workdir / "engine", log=self.log)
            with self.step("stack init (as the README says)"):
                stack.install_plugins()
                report.engine, report.plugins = stack.versions()
                report.notes.append(f"engine: {report.engine} ({engine.origin}: {engine.pulumi})")
                stack.init()
                self.configure(stack, prepared.key)
            try:
                self.exercise_engine(cluster, stack, Converged(config, prepared.plan, prepared.topology))
            finally:
                report.engine_operations = [operation.as_json() for operation in stack.operations]
                if not any(operation.operation == "destroy" and operation.ok for operation in stack.operations):
                    self.log("engine: destroying what is left")
                    stack.destroy()
                cluster.remove_pools(cluster.provided_pools)

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

    def operate(self, stack: EngineStack, name: str, operation: Operation) -> Operation:
        self.report.timings[f"{name}_s"] = operation.seconds
        if not operation.ok:
            raise StepFailedError(f"pulumi {operation.operation} failed:\n{operation.output[-3000:]}")
        return operation

    def exercise_engine(self, cluster: LabCluster, stack: EngineStack, state: Converged) -> None:
        report = self.report
        with self.step("pulumi preview"):
            preview = self.operate(stack, "preview", stack.preview())
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
            up = self.up_as_a_user_would(stack)
            report.check(
                "up creates what preview showed", up.changes["create"] == preview.changes["create"], f"{up.changes} after {preview.changes}"
            )
            boots = cluster.wait_booted(BOOT_TIMEOUT_SECONDS)
            report.timings["cloud_init_done_uptime_s"] = {name: round(seconds, 1) for name, seconds in boots.items()}
            report.timings["clusterReadySeconds"] = up.seconds
            report.timings["engine"] = self.phases(up, cluster)
            self.check_libvirt_objects(cluster)
        uuids, boot_ids_before = cluster.domain_uuids(), boot_ids(cluster, state.topology)
        with self.step("pulumi preview --expect-no-changes"):
            again = stack.preview(expect_no_changes=True)
            report.check(
                "preview after up: no changes",
                again.changes["same"] > 0 and sum(again.changes.values()) == again.changes["same"],
                str(again.changes),
            )
        with self.step(Balance.name):
            state = Balance().run(self, cluster, state)
        with self.step("weight change through the engine"):
            state = self.change_weight(cluster, stack, state)
        report.check(
            "no domain replaced, no guest rebooted",
            (cluster.domain_uuids(), boot_ids(cluster, state.topology)) == (uuids, boot_ids_before),
            "",
        )
        with self.step("scale out through the engine"):
            grown = self.scale_out(cluster, stack, state)
        with self.step("scale in through the engine, under load"):
            state = self.scale_in(cluster, stack, grown, state)
        with self.step("pulumi refresh"):
            refresh = self.operate(stack, "refresh", stack.refresh())
            # Refresh steps are "refresh"; what the engine found drifted it counts as update or delete.
            report.notes.append(f"refresh: {refresh.changes}, drifted: {refresh.changed()}")
        with self.step("pulumi destroy"):
            destroy = self.operate(stack, "destroy", stack.destroy())
            cluster.guests.clear()
            report.left_after_destroy = cluster.leftovers(state.plan)
            report.check(
                "destroy deletes what up created",
                destroy.changes["delete"] == up.changes["create"],
                f"{destroy.changes} after {up.changes}",
            )
            report.check(
                "destroy leaves none of the stack's libvirt objects", report.left_after_destroy == [], str(report.left_after_destroy)
            )

    def up_as_a_user_would(self, stack: EngineStack, *, name: str = "up") -> Operation:
        """`pulumi up`; where it failed on a cloud-init disk as the provider is known to fail
        at random (terraform-provider-libvirt #973: the ISO read back while libvirt still writes
        it, or the pool refresh before the upload timing out), what the README tells a user:
        `pulumi up --replace` each such disk the engine kept (with init errors; a plain `up`
        answers "doesn't support update"), else `pulumi up` again. Every attempt is in
        engineOperations and the notes."""
        up = stack.up()
        failed = [s["urn"] for s in up.steps if s["failed"] and s["type"] == CLOUD_INIT_DISK]
        if not up.ok and failed and any(marker in up.output for marker in PROVIDER_RACES):
            kept = stack.urns()
            replace = [arg for urn in failed if urn in kept for arg in ("--replace", urn)]
            self.report.notes.append(f"{name} failed on a cloud-init disk (provider race): {failed}; up again {replace}")
            up = stack.up(*replace)
        return self.operate(stack, name, up)

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

    def scale_out(self, cluster: LabCluster, stack: EngineStack, state: Converged) -> Converged:
        """One more web node in the stack file, `pulumi up`: the engine creates exactly its
        volume, seed, domain and Commands; nothing else of libvirt changes; balance holds."""
        extra = next_web_server(self, state)
        config = copy.deepcopy(state.config)
        config["lvs:webServers"].append(extra)
        grown = changed(self, config)
        stack.write_config(config)
        domain = next(guest.name for guest in grown.topology.guests if guest.name not in cluster.guests)
        cluster.watch(domain, started_at=time.monotonic())
        up = self.up_as_a_user_would(stack, name="up_scale_out")
        created = up.named("create", type_prefix="libvirt:")
        expected = sorted([f"{extra['name']}-root", f"{extra['name']}-seed", extra["name"]])
        self.report.check("scale out: the engine creates exactly the new node's volume, seed and domain", created == expected, str(created))
        others = [s for s in up.changed() if not s.startswith("create ") and COMMAND not in s]
        libvirt_others = [s for s in up.steps if s["type"].startswith("libvirt:") and s["op"] not in ("create", "same", "read")]
        self.report.check("scale out: no other libvirt object changes", libvirt_others == [], f"{up.changes} {others}")
        cluster.wait_booted(self.boot_timeout)
        self.report.timings["solo_boot_s"] = round(cluster.guests[domain].guest_uptime or 0.0, 1)
        self.check_distribution(cluster, grown, "after scale out")
        return grown

    def scale_in(self, cluster: LabCluster, stack: EngineStack, grown: Converged, before: Converged) -> Converged:
        """The added node out of the stack file again, `pulumi up` under a bounded request loop:
        no request fails; the engine deletes its real server (drained) before its domain."""
        back = changed(self, copy.deepcopy(before.config))
        stack.write_config(back.config)
        loop = self.background_requests(cluster, back, count=REQUESTS_DURING_SCALE_IN, interval=REQUEST_INTERVAL_SECONDS)
        started = time.monotonic()
        time.sleep(REQUESTS_FLOWING_SECONDS)  # the loop is answering before anything is removed
        try:
            up = self.up_as_a_user_would(stack, name="up_scale_in")
        finally:
            lines = self.collect(loop)
        removed = sorted(set(grown.plan.outputs["nodes"]) - set(back.plan.outputs["nodes"]))
        deleted = up.named("delete", type_prefix="libvirt:")
        self.report.check("scale in: the engine deletes the node's volume, seed and domain", len(deleted) == 3, str(deleted))
        domain_deleted = min((s["startSequence"] for s in up.steps if s["type"] == DOMAIN and s["op"] == "delete"), default=0)
        commands_deleted = [s for s in up.steps if s["type"] == COMMAND and s["op"] == "delete"]
        self.report.check(
            "scale in: its Commands (the real server's drain among them) end before its domain is deleted",
            bool(commands_deleted) and all(s["endSequence"] is not None and s["endSequence"] < domain_deleted for s in commands_deleted),
            str([s["name"] for s in commands_deleted]),
        )
        failed = [line for line in lines if not line.startswith("200 ")]
        self.report.scale_in = {
            "node": removed,
            "requests": len(lines),
            "failed": len(failed),
            "seconds": round(time.monotonic() - started, 1),
            "failures": failed[:20],
        }
        self.report.check(
            "scale in: no request fails during the removal", lines != [] and failed == [], f"{len(failed)} of {len(lines)} failed"
        )
        for name in [name for name in cluster.guests if name not in {guest.name for guest in back.topology.guests}]:
            del cluster.guests[name]
        return back

    def change_weight(self, cluster: LabCluster, stack: EngineStack, state: Converged) -> Converged:
        """`pulumi config set --path 'lvs:webServers[0].weight' N; pulumi up`: only Commands
        change, and the director's live table carries the new weight."""
        config = copy.deepcopy(state.config)
        web = config["lvs:webServers"][0]
        web["weight"] = int(web.get("weight", 1)) + 2
        stack.config_set("lvs:webServers[0].weight", str(web["weight"]), path=True)
        up = self.operate(stack, "up_weight", stack.up())
        touched = sorted({step["type"] for step in up.steps if step["op"] not in ("same", "read")})
        self.report.check("a weight change touches only Commands", touched == [COMMAND], f"{up.changes}, types {touched}")
        table = stack.output("ipvsTable")
        tables = table.values() if isinstance(table, dict) else [table]
        line = f"{web['ip']}:"
        weights = [row.split()[-3] for text in tables for row in str(text).splitlines() if line in row]
        self.report.check(
            f"the live table gives {web['name']} weight {web['weight']}",
            bool(weights) and set(weights) == {str(web["weight"])},
            str(weights),
        )
        return changed(self, config)
