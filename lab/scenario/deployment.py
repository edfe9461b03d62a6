"""The stack through the real CLI, as a user drives it after `pulumi stack init`: each operation
timed into the report, a failed one a failed step, and the provider's known race mended the way
the README tells a user to."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from ..engine.cli import EngineStack, Operation
from ..report.report import Report
from ..stack.plan import CLOUD_INIT_DISK, COMMAND, stack_name
from .status import StepFailedError

# terraform-provider-libvirt v0.8.1 reads a CloudInitDisk back right after uploading it; under
# load the read finds the ISO incomplete, or the pool refresh before the upload times out.
PROVIDER_RACES = ("error initializing ISO reader: corrupted-image", "timeout while waiting for state to become 'success'")


class Deployment:
    def __init__(self, stack: EngineStack, report: Report) -> None:
        self.stack = stack
        self.report = report
        self.up_attempts: list[Operation] = []  # the last `up`: one attempt, or two where the provider race was mended

    def operate(self, name: str, operation: Operation) -> Operation:
        self.report.timings[f"{name}_s"] = operation.seconds
        if not operation.ok:
            raise StepFailedError(f"pulumi {operation.operation} failed:\n{operation.output[-3000:]}")
        return operation

    def up(self, *, name: str = "up", stack: EngineStack | None = None) -> Operation:
        """`pulumi up`; where it failed on a cloud-init disk as the provider is known to fail
        at random (terraform-provider-libvirt #973: the ISO read back while libvirt still writes
        it, or the pool refresh before the upload timing out), what the README tells a user:
        `pulumi up --replace` each such disk the engine kept (with init errors; a plain `up`
        answers "doesn't support update"), else `pulumi up` again. Every attempt is in
        engineOperations and the notes."""
        stack = stack or self.stack
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

    def destroy_commands(self, names: list[str]) -> Operation:
        """`pulumi destroy --target` each named Command (their dependents with them), as a user
        takes a cluster's rules away and keeps its machines."""
        urns = sorted(urn for urn in self.stack.urns() if f"${COMMAND}::" in urn and urn.rsplit("::", 1)[-1] in names)
        if len(urns) != len(set(names)):  # without a --target, destroy would take the whole stack
            raise StepFailedError(f"the engine's state holds {len(urns)} of the {len(set(names))} Commands {sorted(names)}")
        targets = [arg for urn in urns for arg in ("--target", urn)]
        return self.operate("destroy_rules", self.stack.destroy(*targets, "--target-dependents"))

    def another_stack(self, config_path: str, config: dict[str, Any]) -> EngineStack:
        """Another stack of the lab's project, set up as the README says, its operations counted
        with the first's."""
        path = Path(config_path)
        shutil.copyfile(path, self.stack.project / path.name)
        second = EngineStack(
            self.stack.engine,
            self.stack.project,
            stack_name(path),
            namespace=self.stack.namespace,
            state=self.stack.state,
            log=self.stack.log,
        )
        second.operations = self.stack.operations
        second.init()
        second.config_set("lvs:sshPrivateKey", config["lvs:sshPrivateKey"], secret=True)
        second.write_config({key: value for key, value in config.items() if key != "lvs:sshPrivateKey"})
        return second

    def tables(self) -> list[str]:
        """`pulumi stack output ipvsTable`: one table, or one per director."""
        table = self.stack.output("ipvsTable")
        return [str(text) for text in (table.values() if isinstance(table, dict) else [table])]
