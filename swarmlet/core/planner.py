"""One leader round: the stages (orchestrator, rolling updater, allocator,
scheduler) each plan on the state the earlier ones leave, and their plans are
merged once into ONE list of store actions, which the leader proposes as one
replicated batch (in slices if it is long: `split_plan`).

Pure, like the stages it composes: it reports what went wrong in the plan it
returns and leaves logging to the leader."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from swarmlet.api import store_pb2 as spb
from swarmlet.core import allocator, pki, updater
from swarmlet.core import orchestrator as orch
from swarmlet.core import state as st
from swarmlet.core.scheduler import schedule
from swarmlet.core.stage import StagePlan, earliest

Stage = Callable[[st.Snapshot, float, Callable[[], str]], StagePlan]


class PlanError(Exception):
    """A plan that does not apply to the snapshot it was made from: a bug."""


@dataclass(frozen=True)
class RoundPlan:
    """What a round proposes.

    `actions`: one batch for the snapshot the round read. `wake_at`: plan again
    at this instant even if nothing changes (a restart delay or an update's
    monitor period ends); None when nothing is timed. `error`: why a stage's
    plan was left out ("" when none was): a stage whose actions do not apply to
    the state it read is a bug; the others still converge the cluster."""

    actions: list[spb.StoreAction]
    wake_at: float | None = None
    error: str = ""


def _stages() -> list[tuple[str, Stage]]:
    """The stages in the order they run: each sees what the earlier ones
    planned. The updater sees the slots the orchestrator just filled (so the
    two never both create a task for one slot); the allocator gives addresses
    before the scheduler assigns (it leaves a task without them pending)."""
    return [
        # Issue 13: completes a root rotation, forgets expired revocations
        # (only the cluster object: no other stage depends on it).
        ("pki", lambda snap, now, new_id: pki.reconcile(snap, now)),
        ("orchestrator", orch.orchestrate),
        ("updater", updater.update),
        ("allocator", lambda snap, now, new_id: allocator.allocate(snap, new_id)),
        ("scheduler", lambda snap, now, new_id: schedule(snap, now)),
    ]


def _merge(snap: st.Snapshot, stages: Sequence[Sequence[spb.StoreAction]]) -> list[spb.StoreAction]:
    """The actions of successive stages as one batch in which no object is
    written twice (check_batch refuses that).

    Each stage read a copy of the snapshot with the earlier stages applied. A
    Put of an object an earlier stage already put replaces that Put in place
    (its content wins; the guard and meta of the first Put stay), so a task the
    orchestrator creates can be allocated and scheduled in the same round.
    Other Puts are guarded by the version in the original snapshot."""
    out: list[spb.StoreAction] = []
    put_at: dict[tuple[str, str], int] = {}
    for stage in stages:
        for a in stage:
            which = a.put.WhichOneof("object") if a.WhichOneof("action") == "put" else None
            if which is None:
                out.append(a)
                continue
            obj = getattr(a.put, which)
            key = (which, obj.id)
            i = put_at.get(key)
            if i is not None:
                first = out[i]
                merged = spb.StoreAction(put=spb.PutAction(expected_version=first.put.expected_version))
                target = getattr(merged.put, which)
                target.CopyFrom(obj)
                target.meta.CopyFrom(getattr(first.put, which).meta)
                out[i] = merged
                continue
            orig = snap.table(which + "s").get(obj.id)
            if orig is not None:
                a.put.expected_version = orig.meta.version
            put_at[key] = len(out)
            out.append(a)
    return out


def plan(snap: st.Snapshot, now: float, new_id: Callable[[], str]) -> RoundPlan:
    """Every stage's actions for `snap` at time `now`, merged into one batch.
    Does not modify `snap`.

    A stage whose actions do not apply to the state it read is left out (and
    reported); the later stages plan as if it had proposed nothing. If the
    merged batch does not apply, stages are left out from the last one until
    it does."""
    errors: list[str] = []
    work = snap.shallow_copy()  # apply_batch replaces objects, never mutates shared ones
    planned: list[tuple[str, StagePlan]] = []
    stages = _stages()
    for k, (name, run) in enumerate(stages):
        sp = run(work, now, new_id)
        # The last stage's actions feed no later stage: the merged check below
        # covers them.
        if sp.actions and k < len(stages) - 1:
            res = st.apply_batch(work, spb.StoreBatch(actions=sp.actions, timestamp=now))
            if not res.ok:
                errors.append(f"{name} plan does not apply: {res.error}")
                continue
        planned.append((name, sp))
    while True:
        actions = _merge(snap, [sp.actions for _, sp in planned if sp.actions])
        try:
            st.check_batch(snap, spb.StoreBatch(actions=actions, timestamp=now))
            break
        except st.Conflict as e:
            name, _ = planned.pop()  # an empty batch always applies: this ends
            errors.append(f"merged plan does not apply ({name} left out): {e}")
    return RoundPlan(actions, earliest(*(sp.wake_at for _, sp in planned)), "; ".join(errors))


def plan_round(snap: st.Snapshot, now: float, new_id: Callable[[], str], *, strict: bool = False) -> list[spb.StoreAction]:
    """The actions of `plan`. With `strict` (tests), a stage left out raises
    PlanError instead."""
    p = plan(snap, now, new_id)
    if strict and p.error:
        raise PlanError(p.error)
    return p.actions


def split_plan(snap: st.Snapshot, actions: list[spb.StoreAction], limit: int) -> list[spb.StoreAction]:
    """The first `limit` actions of the plan if they apply on their own (a
    batch is one Raft entry, and big entries are slow; the leader plans the
    rest next round), else the whole plan."""
    if len(actions) <= limit:
        return actions
    prefix = actions[:limit]
    try:
        st.check_batch(snap, spb.StoreBatch(actions=prefix))
    except st.Conflict:
        return actions
    return prefix
