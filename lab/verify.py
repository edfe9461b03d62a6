"""`lab verify`: the seed's last step, automated. Boots what the program rendered, applies the
Commands it declared, sends requests to the VIP from the client, checks the distribution
against the scheduler, proves update and delete, and always tears everything down.

Scenario: create → idempotent re-create → balance → throughput → change a weight (update) →
balance again → delete → nothing else touched → destroy.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from components.config import ClusterSettings, parse_settings

from .cluster import CommandRun, LabCluster
from .image import DEFAULT_CACHE_DIR, ensure_image
from .plan import Plan, record_plan, stack_config, stack_name
from .topology import LabCommand, Topology, command_changes, read_topology

Log = Callable[[str], None]
BOOT_TIMEOUT_SECONDS = 1200
THROUGHPUT_REQUESTS = 200
# A service and a NAT rule "the user owns" on the director: no Command may touch them.
USER_IPVS_SERVICE = "-t 127.0.0.1:9"
USER_NAT_RULE = "POSTROUTING -o lo -m comment --comment owned-by-the-user -j RETURN"


@dataclass
class Check:
    name: str
    ok: bool
    detail: str = ""


@dataclass
class Distribution:
    scheduler: str
    weights: dict[str, int]
    counts: dict[str, int]
    failed: int
    expected: dict[str, float] | None
    tolerance: float
    ok: bool
    lines: list[str] = field(default_factory=list)


@dataclass
class Report:
    config: str
    stack: str
    requests: int
    image: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, Any] = field(default_factory=dict)
    commands: list[dict[str, Any]] = field(default_factory=list)
    ipvs_table_after_create: str = ""
    distributions: dict[str, Any] = field(default_factory=dict)
    throughput: dict[str, Any] = field(default_factory=dict)
    director_after_delete: dict[str, str] = field(default_factory=dict)
    checks: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    ok: bool = False

    def check(self, name: str, ok: bool, detail: str = "") -> bool:
        self.checks.append(asdict(Check(name, ok, detail)))
        return ok


class StepFailedError(RuntimeError):
    pass


def lab_config(config_path: Path, public_key: str, private_key: str) -> dict[str, Any]:
    """The stack config as written, with the lab's own key pair."""
    config = stack_config(config_path)
    config["lvs:sshPublicKey"] = public_key
    config["lvs:sshPrivateKey"] = private_key
    return config


def model(config: dict[str, Any], stack: str) -> ClusterSettings:
    raw = {key.split(":", 1)[1]: value for key, value in config.items() if key.startswith("lvs:") and key != "lvs:sshPrivateKey"}
    return parse_settings(raw, stack=stack, ssh_private_key=config["lvs:sshPrivateKey"])


def expected_shares(settings: ClusterSettings, requests: int) -> tuple[dict[str, float] | None, float]:
    """What the scheduler promises for `requests` sequential requests from one client, and
    the tolerance: rr equal shares (exact), wrr shares by weight (±1 per 100), otherwise
    only that every request is answered. Weight 0 quiesces a server under every scheduler."""
    weights = {web.name: web.weight for web in settings.web_servers}
    active = {name: weight for name, weight in weights.items() if weight > 0}
    if settings.service.persistence > 0:
        return None, 0  # one client sticks to one real server
    if settings.service.scheduler == "rr":
        return {name: (requests / len(active) if name in active else 0.0) for name in weights}, 0
    if settings.service.scheduler == "wrr":
        total = sum(active.values())
        return {name: requests * weights[name] / total for name in weights}, max(1.0, requests / 100)
    return None, 0


def judge(settings: ClusterSettings, lines: list[str], requests: int) -> Distribution:
    counts: Counter[str] = Counter()
    failed = 0
    for line in lines:
        code, _, backend = [*line.split(" ", 2), "", ""][:3]
        if code == "200" and backend:
            counts[backend.strip()] += 1
        else:
            failed += 1
    weights = {web.name: web.weight for web in settings.web_servers}
    expected, tolerance = expected_shares(settings, requests)
    answered = sum(counts.values()) == requests and set(counts) <= set(weights)
    if expected is not None:
        ok = answered and all(abs(counts.get(name, 0) - share) <= tolerance for name, share in expected.items())
    elif settings.service.persistence > 0:
        ok = answered and len(counts) == 1
    else:
        ok = answered
    return Distribution(
        scheduler=settings.service.scheduler,
        weights=weights,
        counts={name: counts.get(name, 0) for name in weights},
        failed=failed,
        expected=expected,
        tolerance=tolerance,
        ok=ok and failed == 0,
        lines=lines,
    )


def request_loop(url: str, count: int) -> str:
    """A POSIX shell loop of `count` curl requests, one line each: code, seconds, backend."""
    return (
        f"n=0; while [ $n -lt {count} ]; do n=$((n+1)); "
        f"curl -s -o /dev/null -m 10 -w '%{{http_code}} %{{time_total}} %header{{x-lvs-backend}}\\n' {url} || true; done"
    )


class Scenario:
    def __init__(self, config_path: Path, *, requests: int, log: Log, show: Callable[[str, Any], None], cache_dir: Path) -> None:
        self.config_path = config_path
        self.stack = stack_name(config_path)
        self.requests = requests
        self.log = log
        self.show = show
        self.cache_dir = cache_dir
        self.report = Report(config=str(config_path), stack=self.stack, requests=requests)
        self.started = time.monotonic()

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        started = time.monotonic()
        self.log(f"── {name}")
        try:
            yield
        finally:
            seconds = round(time.monotonic() - started, 1)
            self.report.timings.setdefault("steps", {})[name] = seconds
            self.show("step", (name, seconds))

    def record(self, run: CommandRun) -> CommandRun:
        self.report.commands.append(asdict(run))
        self.show("command", run)
        return run

    def apply(self, cluster: LabCluster, command: LabCommand, phase: str) -> CommandRun:
        run = self.record(cluster.run_command(command, phase))
        if run.returncode != 0:
            raise StepFailedError(f"{command.name} {phase} failed ({run.returncode}): {run.stderr.strip() or run.stdout.strip()}")
        return run

    def director_state(self, cluster: LabCluster, director: LabCommand) -> dict[str, str]:
        result = cluster.ssh(director.host, director.user, "sudo -n ipvsadm -S -n; echo ---; sudo -n iptables -w -t nat -S")
        ipvs, _, nat = result.stdout.partition("---\n")
        return {"ipvs": ipvs, "nat": nat}

    def send_requests(self, cluster: LabCluster, plan: Plan, topology: Topology, url: str, count: int) -> list[str]:
        client = next((name for name, node in plan.outputs["nodes"].items() if node["role"] == "client"), None)
        timeout = min(count * 10, 900) + 60
        if client is not None:
            ready = topology.command(f"{client}-ready")
            result = cluster.ssh(ready.host, ready.user, request_loop(url, count), timeout=timeout)
        else:
            result = cluster.in_namespace(["sh", "-c", request_loop(url, count)], timeout=timeout)
        return [line for line in result.stdout.splitlines() if line.strip()]

    def run(self) -> Report:
        report = self.report
        workdir = Path(tempfile.mkdtemp(prefix=f"lvs-lab-{self.stack}-"))
        try:
            with self.step("image"):
                image = ensure_image(self.cache_dir, log=self.log)
                report.image = {"path": str(image.root_disk), "built": image.built, "seconds": round(image.build_seconds, 1)}
                report.timings["image_s"] = round(image.build_seconds, 1)
            key = workdir / "id_ed25519"
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "lvs-lab", "-f", str(key)], check=True)
            config = lab_config(self.config_path, key.with_suffix(".pub").read_text().strip(), key.read_text())
            settings = model(config, self.stack)
            with self.step("plan"):
                plan = record_plan(config, stack=self.stack)
                topology = read_topology(plan)
            sources = sorted({guest.base_image_source for guest in topology.guests})
            report.notes.append(f"base image {', '.join(sources)} replaced by the lab's image {image.root_disk}")
            report.notes.append("domains of type kvm run under QEMU software emulation (tcg) here")
            namespace = f"lvslab-{os.getpid()}"
            with LabCluster(topology, image=image, workdir=workdir, ssh_key=key, namespace=namespace, log=self.log) as cluster:
                self.exercise(cluster, plan, topology, config, settings)
        except StepFailedError as failure:
            report.check("scenario", False, str(failure))
        except Exception as error:
            report.check("scenario", False, f"{type(error).__name__}: {error}")
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
            report.timings["total_s"] = round(time.monotonic() - self.started, 1)
        report.ok = bool(report.checks) and all(check["ok"] for check in report.checks)
        return report

    def exercise(self, cluster: LabCluster, plan: Plan, topology: Topology, config: dict[str, Any], settings: ClusterSettings) -> None:
        report = self.report
        director = topology.command(f"{settings.director.name}-ready")
        url = plan.outputs["vipUrl"]
        with self.step("boot"):
            cluster.start()
            boots = cluster.wait_booted(BOOT_TIMEOUT_SECONDS)
            report.timings["cloud_init_done_uptime_s"] = {name: round(seconds, 1) for name, seconds in boots.items()}
        with self.step("user-owned rules"):
            owned = f"sudo -n ipvsadm -A {USER_IPVS_SERVICE} -s sh && sudo -n iptables -w -t nat -A {USER_NAT_RULE}"
            added = cluster.ssh(director.host, director.user, owned)
            if added.returncode != 0:
                raise StepFailedError(f"could not add the user-owned rules on the director: {added.stderr.strip()}")
            before = self.director_state(cluster, director)
        with self.step("create"):
            for command in topology.commands:
                self.apply(cluster, command, "create")
            report.timings["rules_applied_s"] = round(time.monotonic() - self.started, 1)
            report.ipvs_table_after_create = self.record(cluster.run_command(topology.command("ipvs-table"), "create")).stdout
            created = self.director_state(cluster, director)
            saved = cluster.ssh(director.host, director.user, "cat /etc/ipvsadm.rules; sudo -n cat /etc/iptables/rules.v4").stdout
            self.current_topology = topology
            report.check("ipvsadm table lists the service", f"{settings.vip}:{settings.service.port}" in report.ipvs_table_after_create)
            report.check("rules saved for reboot", f"{settings.vip}:{settings.service.port}" in saved and "SNAT" in saved)
        with self.step("create again (idempotent)"):
            for command in topology.commands:
                self.apply(cluster, command, "create")
            report.check("second create leaves the same tables", self.director_state(cluster, director) == created)
        with self.step("balance"):
            probe = self.send_requests(cluster, plan, topology, url, 1)
            if probe and probe[0].startswith("200 "):
                report.timings["first_balanced_answer_s"] = round(time.monotonic() - self.started, 1)
            lines = self.send_requests(cluster, plan, topology, url, self.requests)
            distribution = judge(settings, lines, self.requests)
            report.distributions["after_create"] = asdict(distribution)
            self.show("distribution", ("after create", distribution))
            report.check(f"distribution ({distribution.scheduler})", distribution.ok, str(distribution.counts))
        with self.step("throughput"):
            self.measure_throughput(cluster, plan, topology, settings, url)
        with self.step("update a weight"):
            self.update_weight(cluster, plan, topology, config, settings)
        with self.step("fault: reboot the director and a web node"):
            self.reboot(cluster, plan, topology, settings)
        with self.step("delete"):
            current = self.current_topology
            for command in reversed(current.commands):
                if command.delete:
                    self.apply(cluster, command, "delete")
            after = self.director_state(cluster, director)
            report.director_after_delete = after
            report.check("delete restores the director's tables exactly", after == before, f"before={before} after={after}")
            report.check("user-owned rules untouched", "owned-by-the-user" in after["nat"] and "127.0.0.1:9" in after["ipvs"])

    def reboot(self, cluster: LabCluster, plan: Plan, topology: Topology, settings: ClusterSettings) -> None:
        """The rules and the NFS docroot must come back by themselves: the director restores
        its saved IPVS and iptables rules, the web node remounts its export."""
        director = topology.command(f"{settings.director.name}-ready")
        web = settings.web_servers[-1]  # the first one was drained by the weight change
        before = self.director_state(cluster, director)
        nodes = [
            (director, settings.domain_name(settings.director.name)),
            (topology.command(f"{web.name}-ready"), settings.domain_name(web.name)),
        ]
        offsets = {domain: cluster.guests[domain].console_offset() for _, domain in nodes}
        for ready, _ in nodes:
            cluster.ssh(ready.host, ready.user, "sudo -n systemctl reboot", timeout=60)  # the session may drop: no status to read
        for _, domain in nodes:
            cluster.guests[domain].wait_cloud_init_done(timeout=BOOT_TIMEOUT_SECONDS, since=offsets[domain])
        after = self.director_state(cluster, director)
        self.report.check("director reboot restores the IPVS and SNAT rules", after == before, f"after reboot: {after}")
        mounted = cluster.ssh(nodes[1][0].host, nodes[1][0].user, "ls /var/www/html >/dev/null; grep ' /var/www/html nfs' /proc/mounts")
        self.report.check(f"{web.name} remounts its NFS docroot after a reboot", mounted.returncode == 0, mounted.stdout.strip())
        settings_now = self.current_settings
        lines = self.send_requests(cluster, plan, self.current_topology, plan.outputs["vipUrl"], self.requests)
        distribution = judge(settings_now, lines, self.requests)
        self.report.distributions["after_reboot"] = asdict(distribution)
        self.show("distribution", ("after the reboots", distribution))
        self.report.check("distribution after the reboots", distribution.ok, str(distribution.counts))

    def measure_throughput(self, cluster: LabCluster, plan: Plan, topology: Topology, settings: ClusterSettings, url: str) -> None:
        web = settings.web_servers[0]
        direct = f"http://{web.ip}:{settings.service.port}/"
        rates = {}
        for label, target in (("vip", url), ("direct", direct)):
            lines = self.send_requests(cluster, plan, topology, target, THROUGHPUT_REQUESTS)
            seconds = sum(float(line.split()[1]) for line in lines if line.startswith("200 "))
            ok = sum(1 for line in lines if line.startswith("200 "))
            rates[label] = {"requests": ok, "seconds": round(seconds, 3), "per_second": round(ok / seconds, 1) if seconds else 0.0}
        ratio = rates["vip"]["per_second"] / rates["direct"]["per_second"] if rates["direct"]["per_second"] else math.nan
        self.report.throughput = {**rates, "direct_target": direct, "vip_over_direct": round(ratio, 3)}
        self.show("throughput", self.report.throughput)
        self.report.check(
            "throughput: every request answered", rates["vip"]["requests"] == rates["direct"]["requests"] == THROUGHPUT_REQUESTS
        )

    current_topology: Topology
    current_settings: ClusterSettings

    def update_weight(self, cluster: LabCluster, plan: Plan, topology: Topology, config: dict[str, Any], settings: ClusterSettings) -> None:
        """Drains the first web server (weight 0) through the program, applies the changed
        Commands as `pulumi up` would, and checks the new distribution."""
        changed = {**config, "lvs:webServers": [dict(web) for web in config["lvs:webServers"]]}
        changed["lvs:webServers"][0]["weight"] = 0
        new_settings = model(changed, self.stack)
        new_topology = read_topology(record_plan(changed, stack=self.stack))
        changes = command_changes(topology, new_topology)
        drained = settings.web_servers[0].name
        self.report.check("a weight change touches no VM", new_topology.guests == topology.guests)
        self.report.check(
            "a weight change updates one real server in place",
            {(c.name, c.action) for c in changes} == {(f"ipvs-real-server-{drained}", "update"), ("ipvs-table", "replace")},
            str([(c.name, c.action) for c in changes]),
        )
        for change in changes:
            if change.action in ("delete", "replace") and change.old and change.old.delete:
                self.apply(cluster, change.old, "delete")
            if change.action in ("create", "replace") and change.new:
                self.apply(cluster, change.new, "create")
            if change.action == "update" and change.new:
                self.apply(cluster, change.new, "update")
        self.current_topology = new_topology
        self.current_settings = new_settings
        lines = self.send_requests(cluster, plan, new_topology, plan.outputs["vipUrl"], self.requests)
        distribution = judge(new_settings, lines, self.requests)
        self.report.distributions["after_update"] = asdict(distribution)
        self.show("distribution", ("after weight change", distribution))
        self.report.check("distribution after the weight change", distribution.ok, str(distribution.counts))


def verify(config_path: Path, *, requests: int, log: Log, show: Callable[[str, Any], None], cache_dir: Path = DEFAULT_CACHE_DIR) -> Report:
    return Scenario(config_path, requests=requests, log=log, show=show, cache_dir=cache_dir).run()
