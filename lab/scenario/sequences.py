"""What runs on the cluster `pulumi up` built, in order: one list per kind of stack. Each line is
a unit and when it applies; adding a fault is one unit and one line here."""

from __future__ import annotations

from collections.abc import Callable

from .checks import Balance, CreateAgain, RebootFault, Throughput
from .context import RunContext, StackState, Unit
from .faults import DirectorDown, QuietPeriodEnd, QuietPeriodStart, RealServerDown, RealServerKilled
from .forwarding import Forwarding, LargeTransfers
from .lifecycles import (
    CommandsCreated,
    CommandsDeleted,
    Created,
    DeleteRestores,
    DrainOne,
    Refresh,
    UpAgain,
    UpdateFailsHalfway,
    UserOwnedRules,
)
from .pair_faults import KeepalivedHangs, PartialHolding, ReloadDuringElection
from .scale import ScaleIn, ScaleOut
from .second_stack import SecondStack

Applies = Callable[[RunContext, StackState], bool]


def always(ctx: RunContext, state: StackState) -> bool:
    return True


def health_checked(ctx: RunContext, state: StackState) -> bool:
    return state.settings.health_check is not None


def paired(ctx: RunContext, state: StackState) -> bool:
    return state.settings.director.pair is not None


def second_stack_given(ctx: RunContext, state: StackState) -> bool:
    return ctx.second_stack is not None


Sequence = tuple[tuple[Callable[[], Unit], Applies], ...]

RULES: Sequence = (
    (Created, always),
    (UserOwnedRules, always),
    (CommandsDeleted, always),
    (CommandsCreated, always),
    (CreateAgain, always),
)

IPVSADM: Sequence = (
    *RULES,
    (Balance, always),
    (Forwarding, always),
    (LargeTransfers, always),
    (Throughput, always),
    (DrainOne, always),
    (RebootFault, always),
    (UpdateFailsHalfway, always),
    (UpAgain, always),
    (ScaleOut, always),
    (ScaleIn, always),
    (SecondStack, second_stack_given),
    (Refresh, always),
    (DeleteRestores, always),
)

KEEPALIVED: Sequence = (
    *RULES,
    (QuietPeriodStart, always),
    (Balance, always),
    (Forwarding, always),
    (LargeTransfers, always),
    (Throughput, always),
    (QuietPeriodEnd, always),
    (RealServerDown, health_checked),
    (RealServerKilled, health_checked),
    (DirectorDown, paired),
    (PartialHolding, paired),
    (KeepalivedHangs, paired),
    (ReloadDuringElection, paired),
    (DrainOne, always),
    (Refresh, always),
    (DeleteRestores, always),
)

# With its Commands deleted keepalived holds nothing, by design: a pair's floating addresses
# are checked after every unit but these.
RULES_OFF = (UserOwnedRules, CommandsDeleted, DeleteRestores)


def units_for(ctx: RunContext, state: StackState) -> list[Unit]:
    """The units for the stack, in order."""
    sequence = KEEPALIVED if state.settings.keepalived else IPVSADM
    return [make() for make, applies in sequence if applies(ctx, state)]
