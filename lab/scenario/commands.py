"""The stack's Command scripts run by the lab itself, as the Pulumi engine steps them: each once
what it depends on is created, independent ones at once (the scripts take a lock per node,
components/remote.py), the first failure ending the step."""

from __future__ import annotations

import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict

from ..guests.cluster import CommandRun, LabCluster
from ..stack.topology import LabCommand
from .status import Status, StepFailedError

APPLY_PARALLELISM = 10  # independent Commands at once, as `pulumi up` steps them; more than any stack here has ready together


class CommandRunner:
    def __init__(self, cluster: LabCluster, status: Status) -> None:
        self.cluster = cluster
        self.status = status

    def record(self, run: CommandRun) -> CommandRun:
        """Into the report's commands and timeline, and shown."""
        report = self.status.report
        report.commands.append(asdict(run))
        report.timeline.append(
            {
                "kind": "command",
                "name": f"{run.phase} {run.name}",
                "start_s": self.status.since_start(time.monotonic() - run.seconds),
                "seconds": round(run.seconds, 1),
                "ok": run.returncode == 0,
            }
        )
        self.status.show("command", run)
        return run

    def create(self, command: LabCommand) -> CommandRun:
        with self.status.activity(f"create {command.name}"):
            run = self.record(self.cluster.run_command(command, "create"))
        if run.returncode != 0:
            raise StepFailedError(f"{command.name} create failed ({run.returncode}): {run.stderr.strip() or run.stdout.strip()}")
        return run

    def create_all(self, commands: tuple[LabCommand, ...]) -> None:
        """Every Command's create script, each as soon as the ones it depends on are done."""
        names = {c.name for c in commands}
        waits = {c.name: set(c.depends_on) & names for c in commands}
        done: set[str] = set()
        running: dict[str, Future[CommandRun]] = {}
        with ThreadPoolExecutor(max_workers=APPLY_PARALLELISM) as pool:
            while len(done) < len(commands):
                for command in commands:
                    if command.name not in done and command.name not in running and waits[command.name] <= done:
                        running[command.name] = pool.submit(self.create, command)
                if not running:
                    raise StepFailedError(f"create: no Command can start; waiting: {sorted(set(waits) - done)}")
                finished, _ = wait(running.values(), return_when=FIRST_COMPLETED)
                for name, future in list(running.items()):
                    if future in finished:
                        del running[name]
                        future.result()  # the first failure ends the step, as it ends `pulumi up`
                        done.add(name)
