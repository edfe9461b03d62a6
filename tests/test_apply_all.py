"""The lab runs a stack's Command scripts as the Pulumi engine steps them (lab/scenario/commands.py
`CommandRunner.create_all`): each once what it depends on is created; independent ones at once;
the first failure ends the step."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from lab.scenario.commands import CommandRunner
from lab.scenario.status import StepFailedError
from lab.stack.topology import LabCommand


def command(name: str, *depends_on: str, delete: bool = True) -> LabCommand:
    return LabCommand(name, "10.0.0.1", "ops", f"create {name}", None, f"delete {name}" if delete else None, (), depends_on)


class Recorder(CommandRunner):
    """Runs no script: records each create, and holds the independent ones until both have
    started (each waits, bounded, for the other)."""

    def __init__(self, together: set[str] = frozenset(), failing: str = "") -> None:  # type: ignore[assignment]
        self.order: list[str] = []
        self.together = together
        self.failing = failing
        self.lock = threading.Lock()
        self.both_started = threading.Barrier(len(together)) if together else None

    def create(self, command: LabCommand) -> Any:
        phase = "create"
        with self.lock:
            self.order.append(f"{phase} {command.name}")
        if command.name in self.together and self.both_started is not None:
            self.both_started.wait(timeout=10)  # raises BrokenBarrierError if they ran one by one
        if command.name == self.failing:
            raise StepFailedError(f"{command.name} {phase} failed")


STACK = (
    command("service"),
    command("real-web1", "service"),
    command("real-web2", "service"),
    command("table", "real-web1", "real-web2", "service", delete=False),
)


def test_independent_commands_run_at_once_and_after_what_they_depend_on() -> None:
    recorder = Recorder(together={"real-web1", "real-web2"})
    recorder.create_all(STACK)
    assert recorder.order[0] == "create service" and recorder.order[-1] == "create table"
    assert sorted(recorder.order[1:3]) == ["create real-web1", "create real-web2"]


def test_the_first_failure_ends_the_step() -> None:
    recorder = Recorder(failing="service")
    with pytest.raises(StepFailedError, match="service create failed"):
        recorder.create_all(STACK)
    assert recorder.order == ["create service"]


def test_a_command_waiting_on_one_that_never_comes_fails_at_once() -> None:
    stuck = (command("a", "b"), command("b", "a"))
    with pytest.raises(StepFailedError, match="no Command can start"):
        Recorder().create_all(stuck)
