"""The plan: what the program registers for a stack config, recorded under Pulumi's mock engine.

`record_plan` runs the real `__main__.py` with the real SDK classes; a recording monitor keeps
every resource registration (type, name, parent, dependencies, inputs, options) and the stack
outputs. The tests assert on it; the lab reads from it what the real engine will build (which nodes, how
to reach them, which Commands), and checks the engine ran those Commands.
"""

from __future__ import annotations

import contextvars
import json
import runpy
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import yaml
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import rpc
from pulumi.runtime import settings as pulumi_settings
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

from ..host import runs

PROJECT_DIR = Path(__file__).resolve().parents[2]
# The resource types of the program the lab reads from a plan.
NETWORK = "libvirt:index/network:Network"
DOMAIN = "libvirt:index/domain:Domain"
VOLUME = "libvirt:index/volume:Volume"
POOL = "libvirt:index/pool:Pool"
CLOUD_INIT_DISK = "libvirt:index/cloudInitDisk:CloudInitDisk"
COMMAND = "command:remote:Command"
PROGRAM = PROJECT_DIR / "__main__.py"
PROJECT_NAME = "lvs-cluster"


@dataclass
class PlannedResource:
    urn: str
    type: str
    name: str
    parent: str
    custom: bool
    inputs: dict[str, Any]
    dependencies: list[str]
    delete_before_replace: bool

    def depends_on(self, other: PlannedResource) -> bool:
        return other.urn in self.dependencies


@dataclass
class Plan:
    stack: str
    resources: list[PlannedResource] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)

    def of_type(self, type_: str) -> list[PlannedResource]:
        return [resource for resource in self.resources if resource.type == type_]

    def named(self, name: str, type_: str | None = None) -> PlannedResource:
        matches = [r for r in self.resources if r.name == name and (type_ is None or r.type == type_)]
        if len(matches) != 1:
            raise KeyError(f"{len(matches)} resources named {name!r} of type {type_ or 'any'}")
        return matches[0]

    def by_urn(self, urn: str) -> PlannedResource:
        return next(resource for resource in self.resources if resource.urn == urn)

    def children(self, parent: PlannedResource, type_: str | None = None) -> list[PlannedResource]:
        return [r for r in self.resources if r.parent == parent.urn and (type_ is None or r.type == type_)]

    def ancestors(self, resource: PlannedResource) -> list[PlannedResource]:
        chain = []
        urns = {r.urn: r for r in self.resources}
        while resource.parent in urns:
            resource = urns[resource.parent]
            chain.append(resource)
        return chain


class _Mocks(pulumi.runtime.Mocks):
    """Resources echo their inputs; ids are stable names; Commands print nothing."""

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[Any, Any]]:
        state = dict(args.inputs)
        if args.typ == "command:remote:Command":
            state.setdefault("stdout", "")
            state.setdefault("stderr", "")
        return f"{args.name}-id", state

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[Any, Any], list[tuple[str, str]] | None]:
        return {}, None


class _RecordingMonitor(pulumi_mocks.MockMonitor):
    def __init__(self, plan: Plan) -> None:
        super().__init__(_Mocks())
        self.plan = plan

    def make_urn(self, parent: str, type_: str, name: str) -> str:
        # The SDK's mock reads the stack and project from its settings, which are context
        # variables; SDK 3.259 calls the monitor from a worker thread that does not see them
        # (URNs came out as `stack::project`). The engine's URN names this plan's stack.
        urn = super().make_urn(parent, type_, name)
        return "::".join((f"urn:pulumi:{self.plan.stack}", PROJECT_NAME, urn.split("::", 2)[2]))

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 - gRPC method name
        response = super().RegisterResource(request)  # type: ignore[no-untyped-call]
        if request.type != "pulumi:pulumi:Stack":
            self.plan.resources.append(
                PlannedResource(
                    urn=response.urn,
                    type=request.type,
                    name=request.name,
                    parent=request.parent,
                    custom=bool(request.custom),
                    inputs=_unwrap(rpc.deserialize_properties(request.object, keep_unknowns=True)),
                    dependencies=list(request.dependencies),
                    delete_before_replace=bool(request.deleteBeforeReplace),
                )
            )
        return response


def _unwrap(value: Any) -> Any:
    if isinstance(value, dict):
        if value.get(rpc._special_sig_key) == rpc._special_secret_sig:
            return _unwrap(value["value"])
        return {key: _unwrap(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_unwrap(item) for item in value]
    return value


def stack_config(path: Path | str) -> dict[str, Any]:
    """The `config:` mapping of a `Pulumi.<stack>.yaml` file, as written."""
    with Path(path).open(encoding="utf-8") as handle:
        document = yaml.safe_load(handle) or {}
    return dict(document.get("config") or {})


def stack_name(path: Path | str) -> str:
    name = Path(path).name
    if not (name.startswith("Pulumi.") and name.endswith(".yaml")):
        raise ValueError(f"{path}: expected a file named Pulumi.<stack>.yaml")
    return name[len("Pulumi.") : -len(".yaml")]


def _as_pulumi_config(config: Mapping[str, Any]) -> tuple[dict[str, str], list[str]]:
    """Pulumi hands structured values to programs as JSON text; secrets are flagged."""
    values: dict[str, str] = {}
    secrets: list[str] = []
    for key, value in config.items():
        if isinstance(value, Mapping) and set(value) == {"secure"}:
            continue  # an encrypted value cannot be read here; the caller overrides it
        values[key] = value if isinstance(value, str) else json.dumps(value)
        if key.endswith(":sshPrivateKey"):
            secrets.append(key)
    return values, secrets


def record_plan(config: Mapping[str, Any], *, stack: str = "test") -> Plan:
    """Runs the program once under the mock engine and returns what it registered.

    Raises whatever the program raises (a ConfigError for bad input); the partial plan is
    then on the exception as `plan`.
    """
    with runs.deferred():
        return contextvars.copy_context().run(_record, dict(config), stack)


def _record(config: dict[str, Any], stack: str) -> Plan:
    plan = Plan(stack=stack)
    values, secrets = _as_pulumi_config(config)
    pulumi_settings.ROOT.set(None)
    pulumi.runtime.set_all_config(values, secrets)
    pulumi.runtime.set_mocks(_Mocks(), project=PROJECT_NAME, stack=stack, preview=False, monitor=_RecordingMonitor(plan))
    if str(PROJECT_DIR) not in sys.path:
        sys.path.insert(0, str(PROJECT_DIR))

    def program() -> None:
        runpy.run_path(str(PROGRAM), run_name="__main__")

    try:
        _sync_await(run_pulumi_func(program))
    except BaseException as error:
        error.plan = plan  # type: ignore[attr-defined]
        raise
    root = pulumi_settings.get_root_resource()
    exported = getattr(root, "outputs", {}) or {}
    for key, value in exported.items():
        plan.outputs[key] = _sync_await(pulumi.Output.from_input(value).future())
    return plan
