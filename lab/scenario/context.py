"""What every unit of a run receives, and the one module units import for it.

A unit is one idea: `run(ctx, state)` takes the stack as last applied (`StackState`), makes one
side effect, verifies it into the report, and returns the stack as it now stands. What one unit
leaves for a later one is a named field of `Facts`, never an attribute of the runner or of
another unit. The runner (runner.py) imports the units; nothing here imports it.
"""

from __future__ import annotations

import subprocess
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Protocol

from ..guests.cluster import LabCluster
from ..guests.nodes import Node, NodeError
from ..report.report import Distribution, Report
from .commands import CommandRunner
from .deployment import Deployment
from .prepare import Prepared
from .state import StackState
from .status import Status, StepFailedError
from .traffic import Traffic, judge, judge_answers

if TYPE_CHECKING:
    from ..engine.cli import Operation

BOOT_TIMEOUT_SECONDS = 1200

__all__ = [
    "BOOT_TIMEOUT_SECONDS",
    "Facts",
    "Node",
    "NodeError",
    "RunContext",
    "StackState",
    "StepFailedError",
    "Unit",
    "judge_answers",
]


@dataclass
class QuietPeriod:
    """When a quiet period began: the host's monotonic clock and each director's own clock."""

    started: float
    clocks: dict[str, str]


@dataclass
class Facts:
    """What a unit may leave for a later one."""

    first_up: list[Operation] = field(default_factory=list)  # the first `up`'s attempts (the runner's)
    tables_with_user_rules: dict[str, str] | None = None  # the director's tables beside the user's rules
    tables_without_ours: dict[str, str] | None = None  # the director's tables once the program's rules were deleted
    scaled_out: str | None = None  # the web node a scale out added, for the scale in
    quiet: QuietPeriod | None = None
    solo_boot_s: float | None = None  # one guest's boot while the others idle (the CPU floor)


@dataclass
class RunContext:
    cluster: LabCluster
    deployment: Deployment
    prepared: Prepared
    commands: CommandRunner
    traffic: Traffic
    status: Status
    requests: int  # per distribution check
    second_stack: str | None = None
    facts: Facts = field(default_factory=Facts)
    boot_timeout: float = BOOT_TIMEOUT_SECONDS

    @property
    def report(self) -> Report:
        return self.status.report

    def node(self, state: StackState, name: str) -> Node:
        """A node of `state`, reached as its Commands reach it."""
        ready = state.topology.ready(name)
        return Node(name, ready.host, ready.user, self.cluster.ssh_client)

    def director(self, state: StackState) -> Node:
        """The director (the preferred one of a pair)."""
        return self.node(state, state.settings.director.name)

    def client(self, state: StackState) -> Node | None:
        return self.node(state, state.client) if state.client is not None else None

    def send_requests(self, state: StackState, url: str, count: int, *, local_ports: str | None = None) -> list[str]:
        """`count` sequential requests to `url` from the stack's client (else from the namespace)."""
        return self.traffic.send(self.client(state), url, count, local_ports=local_ports)

    def background_requests(self, state: StackState, *, count: int, interval: float) -> subprocess.Popen[bytes]:
        """A bounded request loop against the VIP that runs while the caller changes things."""
        return self.traffic.background(self.client(state), state.vip_url, count=count, interval=interval)

    def check_distribution(self, state: StackState, title: str, *, key: str = "", check: str = "") -> Distribution:
        """Requests to the VIP, judged against the scheduler of the stack as it stands."""
        lines = self.send_requests(state, state.vip_url, self.requests)
        distribution = judge(state.settings, lines, self.requests)
        self.report.distributions[key or title.replace(" ", "_")] = asdict(distribution)
        self.status.show("distribution", (title, distribution))
        self.report.check(check or f"distribution {title}", distribution.ok, str(distribution.counts))
        return distribution

    def boot_ids(self, state: StackState) -> dict[str, str]:
        """Each node's boot id: a node that rebooted has a new one."""
        return {name: self.node(state, name).boot_id() for name in state.topology.nodes()}


class Unit(Protocol):
    """One idea of a run: a side effect on the stack or the cluster, verified."""

    name: str

    def run(self, ctx: RunContext, state: StackState) -> StackState: ...
