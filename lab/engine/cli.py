"""The real Pulumi engine, run as a user runs it.

`find_engine` takes a `pulumi` already on PATH as it is (a user's machine, with its own
plugins), else the engine `scripts/build-engine` built from source (cached by version). An
`EngineStack` runs the CLI on one stack inside the lab's network namespace, where the cluster's
networks are: a file backend and passphrase secrets in the run's directory, `pulumi stack init`,
`pulumi config set`, then `preview`, `up`, `refresh`, `destroy`. Every operation's counts are the
engine's own: read from the event log it writes (`--event-log`), never from the lab's bookkeeping.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, cast

import yaml

from ..host.netns import Namespace

Log = Callable[[str], None]
REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "scripts" / "build-engine"
# The plugins the program's SDK packages ask for (requirements.txt pins them).
PLUGINS = {"libvirt": "0.5.4", "command": "1.2.1"}
# What `changes` counts, from the engine's summary (its OpType names).
CHANGE_KINDS = ("create", "update", "replace", "delete", "same")
UNCHANGED = ("same", "read", "refresh")
OPERATION_TIMEOUT_SECONDS = 1800
EVENT_POLL_SECONDS = 0.2
PASSPHRASE = "lvs-lab"  # the run's own secrets provider; its state is removed with the run


class EngineError(RuntimeError):
    pass


@dataclass(frozen=True)
class Engine:
    """A Pulumi CLI and where its plugins come from."""

    pulumi: Path
    origin: str  # "built" (scripts/build-engine) or "PATH"
    # Built engine: plugin binaries the run installs into its own PULUMI_HOME. A user's own
    # engine: none, its home is used as it is.
    plugin_files: dict[str, Path] = field(default_factory=dict)

    @property
    def bin_dir(self) -> Path:
        return self.pulumi.parent


def find_engine(*, log: Log, build_script: Path = BUILD_SCRIPT) -> Engine:
    """A `pulumi` on PATH that is not this project's own build, else the built engine (built now
    when the cache has none: scripts/build-engine shows its progress)."""
    on_path = shutil.which("pulumi")
    if on_path is not None and "/lvs-cluster/engine/" not in str(Path(on_path).resolve()):
        return Engine(Path(on_path), "PATH")
    result = subprocess.run(["bash", str(build_script)], stdout=subprocess.PIPE, text=True, check=False)
    if result.returncode != 0:
        raise EngineError("no Pulumi engine: scripts/build-engine failed (its message is above)")
    directory = Path(result.stdout.strip().splitlines()[-1])
    log(f"engine: {directory}")
    return Engine(
        directory / "bin" / "pulumi",
        "built",
        {name: directory / "plugins" / f"resource-{name}-v{version}" / f"pulumi-resource-{name}" for name, version in PLUGINS.items()},
    )


@dataclass
class Operation:
    """One CLI operation as the engine accounted for it."""

    operation: str  # preview, up, refresh, destroy
    seconds: float
    changes: dict[str, int]
    # Every resource step the engine announced: urn, type, op (create, update, same, …).
    steps: list[dict[str, Any]]
    ok: bool
    output: str
    started: float | None = None  # the engine's first event (whole seconds since the epoch)

    def as_json(self) -> dict[str, Any]:
        return {"operation": self.operation, "seconds": self.seconds, "changes": self.changes}

    def changed(self) -> list[str]:
        """Each step that is not `same`: "op name [diffs]", for a check's detail."""
        return [f"{s['op']} {s['name']} {s['diffs']}" for s in self.steps if s["op"] not in UNCHANGED]

    def named(self, *ops: str, type_prefix: str = "") -> list[str]:
        """The resource names of the steps with one of `ops`, of types starting with `type_prefix`, sorted."""
        return sorted(s["name"] for s in self.steps if s["op"] in ops and s["type"].startswith(type_prefix))

    def step(self, name: str, op: str) -> dict[str, Any]:
        return next(s for s in self.steps if s["name"] == name and s["op"] == op)

    def finished_after_start(self, steps: list[dict[str, Any]]) -> float:
        """Seconds from the operation's first event to the last of `steps` ending."""
        ends = [s["end"] for s in steps if s["end"] is not None]
        return float(max(ends) - self.started) if ends and self.started is not None else 0.0


@dataclass
class EventLog:
    """What the engine wrote of one operation: its summary counts and duration, and each
    resource step with when it began and ended (the events' sequence numbers order them; their
    timestamps are whole seconds)."""

    counts: dict[str, int]
    steps: list[dict[str, Any]]
    duration: float | None
    started: float | None  # the first event's timestamp


def read_event_log(path: Path, *, partial: bool = False) -> EventLog:
    """An engine event log: one JSON engine event per line (`--event-log`). `partial`: one the
    engine is still writing, whose last line may be unfinished."""
    counts: dict[str, int] = {}
    steps: dict[tuple[str, str], dict[str, Any]] = {}
    duration: float | None = None
    started: float | None = None
    text = path.read_text() if path.exists() else ""
    lines = text.splitlines()
    if partial and not text.endswith("\n"):
        lines = lines[:-1]
    for line in lines:
        if not line.strip():
            continue
        event = json.loads(line)
        if started is None:
            started = event.get("timestamp")
        if "summaryEvent" in event:
            summary = event["summaryEvent"]
            counts = {str(kind): int(number) for kind, number in (summary.get("resourceChanges") or {}).items()}
            duration = summary.get("durationSeconds")
        elif "resourcePreEvent" in event:
            metadata = event["resourcePreEvent"]["metadata"]
            steps[(metadata["urn"], metadata["op"])] = {
                "urn": metadata["urn"],
                "name": metadata["urn"].split("::")[-1],
                "type": metadata["type"],
                "op": metadata["op"],
                "inputs": ((metadata.get("new") or {}).get("inputs")) or {},
                "diffs": metadata.get("diffs") or [],
                "start": event["timestamp"],
                "startSequence": event["sequence"],
                "end": None,
                "endSequence": None,
                "failed": False,
            }
        elif "resOutputsEvent" in event:
            metadata = event["resOutputsEvent"]["metadata"]
            step = steps.get((metadata["urn"], metadata["op"]))
            if step is not None:
                step["end"], step["endSequence"] = event["timestamp"], event["sequence"]
        elif "resOpFailedEvent" in event:
            metadata = event["resOpFailedEvent"]["metadata"]
            step = steps.get((metadata["urn"], metadata["op"]))
            if step is not None:
                step["failed"] = True
    return EventLog({kind: counts.get(kind, 0) for kind in CHANGE_KINDS}, list(steps.values()), duration, started)


class EngineStack:
    """One stack of a Pulumi project, driven through the CLI inside `namespace` (where the
    cluster's networks are; None: here)."""

    def __init__(self, engine: Engine, project: Path, stack: str, *, namespace: Namespace | None, state: Path, log: Log) -> None:
        self.engine = engine
        self.project = project
        self.stack = stack
        self.namespace = namespace
        self.state = state
        self.log = log
        self.operations: list[Operation] = []
        (state / "backend").mkdir(parents=True, exist_ok=True)
        self.home = state / "home" if engine.origin == "built" else None
        self.env = {
            **os.environ,
            "PULUMI_BACKEND_URL": f"file://{state / 'backend'}",
            "PULUMI_CONFIG_PASSPHRASE": PASSPHRASE,
            "PULUMI_SKIP_UPDATE_CHECK": "true",
            "PULUMI_SKIP_CONFIRMATIONS": "true",
            # --event-log (the engine's own account of each step) is offered under this switch, as the Automation API uses it.
            "PULUMI_DEBUG_COMMANDS": "true",
            # The language host beside the CLI; the program's venv (its python) from Pulumi.yaml.
            "PATH": f"{engine.bin_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        }
        if self.home is not None:
            self.env["PULUMI_HOME"] = str(self.home)

    def shell_environment(self) -> str:
        """`cd` to the project and the variables that point a shell's `pulumi` at this stack's
        engine, backend and secrets, for a user to run it by hand (`lab up`)."""
        names = ("PULUMI_BACKEND_URL", "PULUMI_CONFIG_PASSPHRASE", "PULUMI_HOME", "PATH")
        assignments = " ".join(f"{name}={shlex.quote(self.env[name])}" for name in names if name in self.env)
        return f"cd {shlex.quote(str(self.project))} && env {assignments}"

    # ------------------------------------------------------------ set-up, as the README says

    def install_plugins(self) -> None:
        """The built plugins into the run's own PULUMI_HOME, from their files: never a download."""
        for name, binary in self.engine.plugin_files.items():
            self.cli(["plugin", "install", "resource", name, PLUGINS[name], "--file", str(binary)], timeout=120)

    def init(self) -> None:
        self.cli(["stack", "init", self.stack])

    def config_set(self, key: str, value: str, *, secret: bool = False, path: bool = False) -> None:
        """`pulumi config set`, the value on stdin as the README's private key is."""
        flags = [*(["--secret"] if secret else []), *(["--path"] if path else [])]
        self.cli(["config", "set", *flags, key, "--stack", self.stack], input=value)

    def write_config(self, config: dict[str, Any]) -> None:
        """The stack file edited as a user edits it (say, one more web node in `lvs:webServers`):
        every key of `config` written as it is, except the secrets already in the file, which
        stay as `pulumi config set --secret` encrypted them."""
        path = self.project / f"Pulumi.{self.stack}.yaml"
        document = yaml.safe_load(path.read_text())
        written = document.setdefault("config", {})
        for key, value in config.items():
            if not (isinstance(written.get(key), dict) and "secure" in written[key]):
                written[key] = value
        path.write_text(yaml.safe_dump(document, sort_keys=False))

    def urns(self) -> set[str]:
        """The resources the stack's state holds (`pulumi stack export`)."""
        return {resource["urn"] for resource in self._deployment().get("resources") or []}

    def pending_operations(self) -> list[str]:
        """What the state says was in flight when the CLI stopped without finishing it: "op urn"."""
        return [f"{entry['type']} {entry['resource']['urn']}" for entry in self._deployment().get("pending_operations") or []]

    def _deployment(self) -> dict[str, Any]:
        """The stack's state as `pulumi stack export` gives it."""
        deployment: dict[str, Any] = json.loads(self.cli(["stack", "export", "--stack", self.stack]).stdout)["deployment"]
        return deployment

    def output(self, name: str) -> Any:
        result = self.cli(["stack", "output", name, "--json", "--show-secrets", "--stack", self.stack])
        return json.loads(result.stdout)

    def versions(self) -> tuple[str, dict[str, str]]:
        """The CLI's version and the resource plugins it has, in its own words."""
        version = self.cli(["version"]).stdout.strip()
        listed = json.loads(self.cli(["plugin", "ls", "--json"]).stdout or "[]")
        plugins = {entry["name"]: entry["version"] for entry in listed if entry.get("kind") == "resource" and entry["name"] in PLUGINS}
        return f"pulumi {version}", plugins

    # ------------------------------------------------------------ operations

    def preview(self, *, expect_no_changes: bool = False) -> Operation:
        return self.operate("preview", ["preview", *(["--expect-no-changes"] if expect_no_changes else [])])

    def up(self, *extra: str) -> Operation:
        return self.operate("up", ["up", "--yes", "--skip-preview", *extra])

    def refresh(self) -> Operation:
        return self.operate("refresh", ["refresh", "--yes", "--skip-preview"])

    def destroy(self, *extra: str) -> Operation:
        return self.operate("destroy", ["destroy", "--yes", "--skip-preview", *extra])

    def up_interrupted(self, when: Callable[[dict[str, Any]], bool], *, timeout: float = OPERATION_TIMEOUT_SECONDS) -> Operation:
        """`pulumi up` stopped by one Ctrl-C, as a user stops it: SIGINT to the CLI alone (the
        engine tells its plugins) as soon as a step `when` holds for has begun. The engine starts
        nothing more, cancels what is in flight, and exits."""
        events = self._events_path("up")
        started = time.monotonic()
        # Its output to a file: a pipe nobody reads while it runs could fill and stall it.
        with self._output_path(events).open("w+") as output:
            process = self._spawn(["up", "--yes", "--skip-preview", *self._operation_flags(events)], output)
            try:
                while process.poll() is None and not any(when(step) for step in read_event_log(events, partial=True).steps):
                    if time.monotonic() - started > timeout:
                        raise EngineError(f"pulumi up: no step to interrupt it at within {timeout} s")
                    time.sleep(EVENT_POLL_SECONDS)
                if process.poll() is None:
                    process.send_signal(signal.SIGINT)
                process.wait(timeout=max(1.0, timeout - (time.monotonic() - started)))
            except BaseException:
                process.kill()  # by its PID
                process.wait()
                raise
            finally:
                self._forget(process)
            output.seek(0)
            text = output.read()
        return self._account("up", events, process.returncode, text, time.monotonic() - started)

    def operate(self, name: str, args: Sequence[str]) -> Operation:
        events = self._events_path(name)
        started = time.monotonic()
        result = self.cli([*args, *self._operation_flags(events)], check=False)
        output = result.stdout + result.stderr
        self._output_path(events).write_text(output)
        return self._account(name, events, result.returncode, output, time.monotonic() - started)

    def _events_path(self, name: str) -> Path:
        return self.state / f"events-{self.stack}-{len(self.operations) + 1:02d}-{name}.jsonl"

    @staticmethod
    def _output_path(events: Path) -> Path:
        """Where the operation's output is kept, beside its event log."""
        return events.with_suffix(".out")

    def _operation_flags(self, events: Path) -> list[str]:
        return ["--stack", self.stack, "--non-interactive", "--event-log", str(events)]

    def _account(self, name: str, events: Path, returncode: int, output: str, wall: float) -> Operation:
        """The operation as the engine's event log tells it (its output already kept)."""
        log = read_event_log(events)
        seconds = round(log.duration if log.duration is not None else wall, 1)
        operation = Operation(name, seconds, log.counts, log.steps, returncode == 0, output, log.started)
        self.operations.append(operation)
        self.log(f"engine: {name}: {'ok' if operation.ok else 'FAILED'} in {operation.seconds} s, {log.counts}")
        return operation

    def _spawn(self, args: Sequence[str], output: IO[str]) -> subprocess.Popen[str]:
        """The CLI started in the project's directory (inside the namespace), both its output
        streams to `output`."""
        argv = [str(self.engine.pulumi), *args]
        options: dict[str, Any] = dict(env=self.env, cwd=self.project, stdout=output, stderr=subprocess.STDOUT, text=True)
        if self.namespace is None:
            return subprocess.Popen(argv, stdin=subprocess.DEVNULL, **options)
        return cast("subprocess.Popen[str]", self.namespace.popen(argv, **options))

    def _forget(self, process: subprocess.Popen[str]) -> None:
        if self.namespace is not None:
            self.namespace.forget(cast("subprocess.Popen[bytes]", process))

    def cli(
        self, args: Sequence[str], *, input: str | None = None, check: bool = True, timeout: float = OPERATION_TIMEOUT_SECONDS
    ) -> subprocess.CompletedProcess[str]:
        """The CLI in the project's directory, inside the namespace (where the Commands reach the nodes)."""
        argv = [str(self.engine.pulumi), *args]
        if self.namespace is None:  # a program that reaches no node
            result = subprocess.run(argv, env=self.env, cwd=self.project, input=input, timeout=timeout, text=True, capture_output=True)
        else:
            result = self.namespace.run(argv, check=False, env=self.env, cwd=self.project, input=input, timeout=timeout)
        if check and result.returncode != 0:
            raise EngineError(f"pulumi {' '.join(args)} failed ({result.returncode}):\n{(result.stdout + result.stderr)[-3000:]}")
        return result
