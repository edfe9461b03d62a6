"""`lab verify`: the seed's last step, automated. What every run shares: the report and its
checks, the stack's config with the lab's substitutions, the run's preparation (image,
accelerator, key pair, the program's own plan), requests and how they are judged, and a work
directory and namespace always torn down. The run itself, through the real engine, is
`engine_verify.EngineScenario`; its units are in `lifecycles.py`, `scenarios.py`, `faults.py`
and `vrrp_faults.py`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from components.config import ClusterSettings, parse_settings

from . import runs
from .accel import Accel, choose_accel
from .cluster import CommandRun, LabCluster
from .faults import settled_holding, split_holding
from .image import BaseImage, ensure_image
from .libvirt_objects import PRIVATE_IMAGES
from .libvirtd import PrivateLibvirtd
from .lifecycles import Converged
from .plan import Plan, record_plan, stack_config, stack_name
from .progress import Progress
from .topology import LabCommand, Topology, read_topology

Log = Callable[[str], None]
BOOT_TIMEOUT_SECONDS = 1200
APPLY_PARALLELISM = 10  # independent Commands at once, as `pulumi up` steps them; more than any stack here has ready together
REQUEST_TIMEOUT_SECONDS = 10  # curl -m: one request to the VIP
# A distribution check ends after this many requests without an answer: it has failed, and the
# rest could each wait out the timeout (120 of them took 15 minutes once).
GIVE_UP_AFTER_FAILURES = 10
BOOT_PROFILE_SCRIPT = (
    "systemd-analyze time --no-pager; echo '--- blame'; systemd-analyze blame --no-pager | head -n 10; "
    "echo '--- cloud-init'; cloud-init analyze blame 2>/dev/null | head -n 12"
)


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
    backend: str = "libvirt"
    # The CLI's version ("pulumi v3.259.0"; empty before it ran), its resource plugins and each
    # operation as the engine counted it.
    engine: str = ""
    plugins: dict[str, str] = field(default_factory=dict)
    engine_operations: list[dict[str, Any]] = field(default_factory=list)
    substitutions: list[dict[str, str]] = field(default_factory=list)
    left_after_destroy: list[str] | None = None
    scale_in: dict[str, Any] = field(default_factory=dict)
    accel: str = "tcg"  # what the guests ran under: "kvm" or "tcg" (contract)
    accel_reason: str = ""
    # Every step, guest boot and Command of the run: kind, name, start_s (from the run's
    # start), seconds; guests also carry the seconds at which each boot stage was seen.
    timeline: list[dict[str, Any]] = field(default_factory=list)
    boot_profile: dict[str, dict[str, Any]] = field(default_factory=dict)
    consoles_kept: str | None = None
    # Faults injected under load (faults.py): answers per backend, failures with their times.
    faults: dict[str, Any] = field(default_factory=dict)
    # A pair's floating addresses after every unit: who holds each, and how long until one
    # and the same director held them all.
    floating_holders: list[dict[str, Any]] = field(default_factory=list)
    ok: bool = False

    def check(self, name: str, ok: bool, detail: str = "") -> bool:
        self.checks.append(asdict(Check(name, ok, detail)))
        return ok

    def as_json(self) -> dict[str, Any]:
        document = asdict(self)
        document["leftAfterDestroy"] = document.pop("left_after_destroy")
        document["accelReason"] = document.pop("accel_reason")
        document["bootProfile"] = document.pop("boot_profile")
        document["consolesKept"] = document.pop("consoles_kept")
        document["floatingHolders"] = document.pop("floating_holders")
        document["engineOperations"] = document.pop("engine_operations")
        return document


class StepFailedError(RuntimeError):
    pass


@dataclass(frozen=True)
class Prepared:
    """A run's inputs: the image, its key pair, the stack's config as the lab sets it, the plan."""

    image: BaseImage
    key: Path
    config: dict[str, Any]
    plan: Plan
    topology: Topology


def lab_config(
    config_path: Path, public_key: str, private_key: str, *, image: Path, libvirt_uri: str, accel: Accel
) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """The stack config as written, with the lab's own key pair, and the substitutions the
    lab must make set as stack config (listed with their reasons)."""
    return substitute(stack_config(config_path), public_key, private_key, image=image, libvirt_uri=libvirt_uri, accel=accel)


def substitute(
    written: dict[str, Any], public_key: str, private_key: str, *, image: Path, libvirt_uri: str, accel: Accel
) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """A stack's config with the lab's key pair and substitutions, and the list of them."""
    config = dict(written)
    config["lvs:sshPublicKey"] = public_key
    config["lvs:sshPrivateKey"] = private_key
    image_settings = dict(config.get("lvs:image") or {})
    substitutions = [
        {
            "what": "libvirt:uri",
            "declared": str(config.get("libvirt:uri")),
            "lab": libvirt_uri,
            "reason": "the lab's private libvirtd, in its own network and mount namespaces",
        },
        {
            "what": "lvs:image.source",
            "declared": str(image_settings.get("source")),
            "lab": str(image),
            "reason": "guests reach no internet: the lab's own Debian 12 image (lab/image-recipe), uploaded as the provider does",
        },
    ]
    config["libvirt:uri"] = libvirt_uri
    declared_type = str(config.get("lvs:domainType", "kvm"))
    if declared_type == "kvm" and accel.name != "kvm":
        config["lvs:domainType"] = accel.domain_type
        substitutions.insert(
            1,
            {
                "what": "lvs:domainType",
                "declared": declared_type,
                "lab": accel.domain_type,
                "reason": f"software emulation (tcg): {accel.reason}",
            },
        )
    config["lvs:image"] = {**image_settings, "source": str(image)}
    pool_path = image_settings.get("poolPath")
    if pool_path and not str(pool_path).startswith(PRIVATE_IMAGES + "/"):
        # The daemon's /var/lib/libvirt is the lab's own; any other path is the machine's.
        config["lvs:image"]["poolPath"] = f"{PRIVATE_IMAGES}/{Path(str(pool_path)).name}"
        substitutions.append(
            {
                "what": "lvs:image.poolPath",
                "declared": str(pool_path),
                "lab": config["lvs:image"]["poolPath"],
                "reason": "a pool directory outside the lab daemon's private /var/lib/libvirt would be made on this machine",
            }
        )
    return config, substitutions


def effective_accel(config: dict[str, Any], probed: Accel) -> Accel:
    """What the guests really run under: a stack that declares `qemu` gets software emulation
    even where KVM works."""
    if config["lvs:domainType"] == "kvm":
        return probed
    if probed.name == "kvm":
        return Accel("tcg", "the stack declares lvs:domainType qemu", probed.probe_seconds)
    return probed


def floor_timings(timings: dict[str, Any], cores: int) -> dict[str, Any]:
    """The run's CPU floor for booting the cluster: one guest's solo boot on this run (the
    scale-out node, booted while the others idle), times the guests booted at once, over the
    cores they share; and the cluster-ready time as a ratio to it."""
    solo, ready, guests = timings.get("solo_boot_s"), timings.get("clusterReadySeconds"), timings.get("guests_at_once")
    if not (solo and ready and guests):
        return {"floorSeconds": None, "floorRatio": None, "cores": cores}
    floor = solo * max(1.0, guests / cores)
    return {"floorSeconds": round(floor, 1), "floorRatio": round(ready / floor, 2), "cores": cores}


def keep_consoles(workdir: Path, cache_dir: Path, namespace: str) -> str | None:
    """A failed run's guest consoles, kept out of the work directory that teardown removes."""
    consoles = workdir / "consoles"
    if not consoles.is_dir():
        return None
    kept = cache_dir / "failed-runs" / f"{namespace}-{time.strftime('%Y%m%d-%H%M%S')}"
    shutil.copytree(consoles, kept)
    return str(kept)


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


def request_loop(url: str, count: int, *, interval: float = 0.0, local_ports: str | None = None, give_up_after: int | None = None) -> str:
    """A POSIX shell loop of `count` curl requests, one line each: code, seconds, backend;
    `interval` seconds apart, and from `local_ports` (a range), when given. With
    `give_up_after`, it ends after that many requests without a 200: a check that has failed
    already learns nothing from the rest, each of which may wait out its 10 s."""
    pause = f"sleep {interval}; " if interval else ""
    ports = f"--local-port {local_ports} " if local_ports else ""
    curl = f"curl -s -o /dev/null -m {REQUEST_TIMEOUT_SECONDS} {ports}-w '%{{http_code}} %{{time_total}} %header{{x-lvs-backend}}\\n' {url}"
    if give_up_after is None:
        return f"n=0; while [ $n -lt {count} ]; do n=$((n+1)); {pause}{curl} || true; done"
    return (
        f"n=0; failed=0; while [ $n -lt {count} ] && [ $failed -lt {give_up_after} ]; do n=$((n+1)); {pause}"
        f'answer=$({curl}) || true; echo "$answer"; case $answer in "200 "*) ;; *) failed=$((failed+1));; esac; done'
    )


class Scenario:
    def __init__(
        self,
        config_path: Path,
        *,
        requests: int,
        log: Log,
        show: Callable[[str, Any], None],
        cache_dir: Path,
        second_stack: str | None = None,
        progress: Progress | None = None,
    ) -> None:
        self.config_path = config_path
        self.progress = progress
        self.second_stack = second_stack
        self.stack = stack_name(config_path)
        self.requests = requests
        self.log = log
        self.show = show
        self.cache_dir = cache_dir
        self.report = Report(config=str(config_path), stack=self.stack, requests=requests)
        self.started = time.monotonic()

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        runs.raise_if_stopped()
        started = time.monotonic()
        self.log(f"── {name}")
        if self.progress is not None:
            self.progress.step(name)
        try:
            yield
            runs.raise_if_stopped()
        finally:
            seconds = round(time.monotonic() - started, 1)
            self.report.timings.setdefault("steps", {})[name] = seconds
            self.report.timeline.append({"kind": "step", "name": name, "start_s": round(started - self.started, 1), "seconds": seconds})
            self.show("step", (name, seconds))

    def record(self, run: CommandRun) -> CommandRun:
        self.report.commands.append(asdict(run))
        start = time.monotonic() - self.started - run.seconds
        self.report.timeline.append(
            {
                "kind": "command",
                "name": f"{run.phase} {run.name}",
                "start_s": round(start, 1),
                "seconds": round(run.seconds, 1),
                "ok": run.returncode == 0,
            }
        )
        self.show("command", run)
        return run

    def apply(self, cluster: LabCluster, command: LabCommand, phase: str) -> CommandRun:
        with self.activity(f"{phase} {command.name}"):
            run = self.record(cluster.run_command(command, phase))
        if run.returncode != 0:
            raise StepFailedError(f"{command.name} {phase} failed ({run.returncode}): {run.stderr.strip() or run.stdout.strip()}")
        return run

    def apply_all(self, cluster: LabCluster, commands: tuple[LabCommand, ...], phase: str) -> None:
        """Every Command's `phase` as the Pulumi engine steps them: each as soon as what it
        depends on is created (or, to delete, what depends on it is deleted), independent
        ones at once (the scripts take a lock per node, components/remote.py)."""
        if phase == "delete":
            waits = {c.name: {d.name for d in commands if c.name in d.depends_on} for c in commands}
        else:
            names = {c.name for c in commands}
            waits = {c.name: set(c.depends_on) & names for c in commands}
        done = {c.name for c in commands if phase == "delete" and not c.delete}
        running: dict[str, Future[CommandRun]] = {}
        with ThreadPoolExecutor(max_workers=APPLY_PARALLELISM) as pool:
            while len(done) < len(commands):
                for command in commands:
                    if command.name not in done and command.name not in running and waits[command.name] <= done:
                        running[command.name] = pool.submit(self.apply, cluster, command, phase)
                if not running:
                    raise StepFailedError(f"{phase}: no Command can start; waiting: {sorted(set(waits) - done)}")
                finished, _ = wait(running.values(), return_when=FIRST_COMPLETED)
                for name, future in list(running.items()):
                    if future in finished:
                        del running[name]
                        future.result()  # the first failure ends the step, as it ends `pulumi up`
                        done.add(name)

    def director_state(self, cluster: LabCluster, director: LabCommand) -> dict[str, str]:
        result = cluster.ssh(director.host, director.user, "sudo -n ipvsadm -S -n; echo ---; sudo -n iptables -w -t nat -S")
        ipvs, _, nat = result.stdout.partition("---\n")
        return {"ipvs": ipvs, "nat": nat}

    def send_requests(self, cluster: LabCluster, state: Converged, url: str, count: int, *, local_ports: str | None = None) -> list[str]:
        """`count` sequential requests to `url` from the stack's client (else from the namespace)."""
        client = next((name for name, node in state.plan.outputs["nodes"].items() if node["role"] == "client"), None)
        timeout = min(count * REQUEST_TIMEOUT_SECONDS, 900) + 60
        loop = request_loop(url, count, local_ports=local_ports, give_up_after=GIVE_UP_AFTER_FAILURES)
        with self.activity(f"{count} requests to {url}"):
            if client is not None:
                ready = state.topology.command(f"{client}-ready")
                result = cluster.ssh(ready.host, ready.user, loop, timeout=timeout)
            else:
                result = cluster.in_namespace(["sh", "-c", loop], timeout=timeout)
        return [line for line in result.stdout.splitlines() if line.strip()]

    def run(self) -> Report:
        """The scenario in a work directory and namespace of its own, always torn down; a failed
        run keeps what explains it (`keep_on_failure`)."""
        report = self.report
        workdir = Path(tempfile.mkdtemp(prefix=f"lvs-lab-{self.stack}-"))
        namespace = f"lvslab-{os.getpid()}"
        record = runs.register("verify", namespace, workdir)
        try:
            self.body(workdir, namespace)
        except Exception as error:
            runs.raise_if_stopped()  # a stop that surfaced as another error is still a stop
            detail = str(error) if isinstance(error, StepFailedError) else f"{type(error).__name__}: {error}"
            report.check("scenario", False, detail)
            report.consoles_kept = keep_consoles(workdir, self.cache_dir, namespace)
            if report.consoles_kept:
                self.keep_on_failure(workdir, Path(report.consoles_kept))
        finally:
            # Whatever the cluster's own teardown missed, the record names.
            runs.clean(record, self.log)
            report.timings["total_s"] = round(time.monotonic() - self.started, 1)
            report.timings.update(floor_timings(report.timings, os.cpu_count() or 1))
        report.ok = bool(report.checks) and all(check["ok"] for check in report.checks)
        return report

    def keep_on_failure(self, workdir: Path, kept: Path) -> None:
        """What else a failed run keeps beside the consoles."""

    def body(self, workdir: Path, namespace: str) -> None:
        """The run itself (engine_verify.EngineScenario)."""
        raise NotImplementedError

    def prepare(self, workdir: Path, domain_additions: Callable[[str], list[dict[str, str]]]) -> Prepared:
        """The image, the accelerator, the run's key pair, the stack's config with the lab's
        substitutions (and `domain_additions`, what the lab adds to each domain), and the plan."""
        report = self.report
        with self.step("image"):
            image = ensure_image(self.cache_dir, log=self.log)
            report.image = {"path": str(image.root_disk), "built": image.built, "seconds": round(image.build_seconds, 1)}
            report.timings["image_s"] = round(image.build_seconds, 1)
        with self.step("accelerator"):
            accel = choose_accel(image.kernel, remembered=self.cache_dir / "accel.json")
            report.timings["accel_probe_s"] = round(accel.probe_seconds, 1)
        key = workdir / "id_ed25519"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "lvs-lab", "-f", str(key)], check=True)
        config, report.substitutions = lab_config(
            self.config_path,
            key.with_suffix(".pub").read_text().strip(),
            key.read_text(),
            image=image.root_disk,
            libvirt_uri=PrivateLibvirtd.uri_for(workdir / "libvirt"),
            accel=accel,
        )
        self.accel = accel = effective_accel(config, accel)
        report.accel, report.accel_reason = accel.name, accel.reason
        self.log(f"accelerator: {accel.name} ({accel.reason})")
        report.substitutions += domain_additions(config["lvs:domainType"])
        self.config = config
        with self.step("plan"):
            # The program's own plan (mock engine): which nodes exist and how the lab reaches them.
            plan = record_plan(config, stack=self.stack)
            topology = read_topology(plan)
        return Prepared(image, key, config, plan, topology)

    def lab_cluster(self, prepared: Prepared, workdir: Path, namespace: str) -> LabCluster:
        return LabCluster(
            prepared.topology,
            image=prepared.image,
            workdir=workdir,
            ssh_key=prepared.key,
            namespace=namespace,
            log=self.log,
            accel=self.accel,
            progress=self.progress,
        )

    # ------------------------------------------------------------ for the units

    director_before: dict[str, str]
    director_created: dict[str, str]

    def director_of(self, state: Converged) -> LabCommand:
        return state.topology.command(f"{self.settings_of(state.config).director.name}-ready")

    def elapsed(self) -> float:
        return round(time.monotonic() - self.started, 1)

    @staticmethod
    def failure(message: str) -> StepFailedError:
        return StepFailedError(message)

    def activity(self, label: str) -> contextlib.AbstractContextManager[None]:
        return self.progress.activity(label) if self.progress is not None else contextlib.nullcontext()

    def record_boots(self, cluster: LabCluster) -> None:
        """Puts each guest's boot on the timeline (cluster-ready time is the engine's own)."""
        if self.progress is not None:
            # Its thread polls once a second: the last guest's "done" may not be seen yet.
            self.progress.poll()
        for name, guest in cluster.guests.items():
            if guest.started_at is None or guest.boot_seconds is None:
                continue
            start = guest.started_at - self.started
            watched = self.progress.guests.get(name) if self.progress is not None else None
            self.report.timeline.append(
                {
                    "kind": "guest",
                    "name": name,
                    "start_s": round(start, 1),
                    "seconds": round(guest.boot_seconds, 1),
                    "stages": dict(watched.stages) if watched is not None else {},
                }
            )

    def boot_profile(self, cluster: LabCluster, plan: Plan, topology: Topology) -> dict[str, dict[str, Any]]:
        """Where each guest's boot went, in the guest's own words: systemd's and cloud-init's."""
        profile = {}
        readies = {node: topology.command(f"{node}-ready") for node in plan.outputs["nodes"]}
        # At once: each takes seconds of a guest's CPU (cloud-init's analyzer is Python).
        with ThreadPoolExecutor(max_workers=len(readies)) as pool:
            answers = {
                node: pool.submit(cluster.ssh, ready.host, ready.user, BOOT_PROFILE_SCRIPT, timeout=120) for node, ready in readies.items()
            }
        for node, answer in answers.items():
            systemd, _, rest = answer.result().stdout.partition("--- blame\n")
            blame, _, cloud_init = rest.partition("--- cloud-init\n")
            profile[node] = {
                "systemd": systemd.strip(),
                "blame": [line.strip() for line in blame.splitlines() if line.strip()],
                "cloudInit": [line.strip() for line in cloud_init.splitlines() if line.strip().endswith(")")],
            }
        return profile

    # ------------------------------------------------------------ for the lifecycles

    boot_timeout = BOOT_TIMEOUT_SECONDS

    def settings_of(self, config: dict[str, Any]) -> ClusterSettings:
        return model(config, self.stack)

    def lab_stack_config(self, config: dict[str, Any]) -> dict[str, Any]:
        """Another stack file with this run's key pair and substitutions."""
        changed, _ = substitute(
            config,
            self.config["lvs:sshPublicKey"],
            self.config["lvs:sshPrivateKey"],
            image=Path(self.config["lvs:image"]["source"]),
            libvirt_uri=self.config["libvirt:uri"],
            accel=self.accel,
        )
        return changed

    @staticmethod
    def judge(lines: list[str], settings: ClusterSettings) -> Distribution:
        """Answers ("status seconds backend" lines) against the scheduler's shares; none is not enough."""
        distribution = judge(settings, lines, len(lines))
        return distribution if lines else replace(distribution, ok=False)

    def check_floating(self, cluster: LabCluster, state: Converged, *, after: str) -> None:
        """A pair's invariant: each floating address (VIP, gateway) on exactly one director, the
        same one, within the bound an election or the VRRP watchdog needs."""
        holders, waited = settled_holding(self, cluster, state)
        split = split_holding(holders)
        self.report.floating_holders.append({"after": after, "holders": holders, "settledSeconds": waited})
        self.report.check(
            f"pair: one director holds every floating address after {after}",
            split is None,
            f"{holders} (settled in {waited} s)" if split is None else f"{split} after {waited} s",
        )

    def check_distribution(self, cluster: LabCluster, state: Converged, title: str, *, key: str = "", check: str = "") -> None:
        """Requests to the VIP, judged against the scheduler of the stack as it stands."""
        settings = self.settings_of(state.config)
        lines = self.send_requests(cluster, state, state.plan.outputs["vipUrl"], self.requests)
        distribution = judge(settings, lines, self.requests)
        self.report.distributions[key or title.replace(" ", "_")] = asdict(distribution)
        self.show("distribution", (title, distribution))
        self.report.check(check or f"distribution {title}", distribution.ok, str(distribution.counts))

    def background_requests(self, cluster: LabCluster, state: Converged, *, count: int, interval: float) -> subprocess.Popen[bytes]:
        """A bounded request loop against the VIP that runs while the caller changes things."""
        loop = request_loop(state.plan.outputs["vipUrl"], count, interval=interval)
        client = next((name for name, node in state.plan.outputs["nodes"].items() if node["role"] == "client"), None)
        if client is None:
            return cluster.ns.popen(["sh", "-c", loop], stdout=subprocess.PIPE)
        ready = state.topology.command(f"{client}-ready")
        return cluster.ns.popen(cluster.ssh_argv(ready.host, ready.user, loop), stdout=subprocess.PIPE)

    @staticmethod
    def collect(process: subprocess.Popen[bytes]) -> list[str]:
        output, _ = process.communicate(timeout=900)
        return [line for line in output.decode(errors="replace").splitlines() if line.strip()]

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
