"""What a stage of the leader round (orchestrator, updater, allocator,
scheduler) hands the planner: its store actions, and when its time-based
decisions next change. The planner merges the stages' plans once, into one
batch (planner.py)."""

from __future__ import annotations

from dataclasses import dataclass, field

from swarmlet.api import store_pb2 as spb


@dataclass(frozen=True)
class StagePlan:
    """One stage's proposal for one round.

    `actions` apply to the snapshot the stage read. `wake_at` is the earliest
    future instant at which the stage would decide differently with no change
    to the state (a restart delay or an update's monitor period ending), so
    the leader can plan again right then; None when nothing is timed."""

    actions: list[spb.StoreAction] = field(default_factory=list)
    wake_at: float | None = None


def earliest(*instants: float | None) -> float | None:
    """The earliest of the given instants, ignoring None."""
    known = [t for t in instants if t is not None]
    return min(known) if known else None
