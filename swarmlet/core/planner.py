"""One leader round: the stages (orchestrator, rolling updater, allocator,
scheduler) each plan on the state the earlier ones leave, and their plans are
merged once into ONE list of store actions, which the leader proposes as
replicated batches (cut by count and bytes: `chunk_actions`).

Pure, like the stages it composes: it reports what went wrong in the plan it
returns and leaves logging to the leader."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from swarmlet.api import objects_pb2 as pb
from swarmlet.api import store_pb2 as spb
from swarmlet.core import allocator, pki, updater
from swarmlet.core import orchestrator as orch
from swarmlet.core import state as st
from swarmlet.core.changes import Changes
from swarmlet.core.index import TaskIndex
from swarmlet.core.scheduler import schedule
from swarmlet.core.scope import Scope, compute
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


# Issue 13: completes a root rotation, forgets expired revocations (only the
# cluster object: no other stage depends on it). Cheap (the cluster object,
# and the nodes' certificates during a rotation), so it runs in every round,
# incremental ones too: a node's new certificate is a node change, an expiry
# is a wake_at (which makes the next round a full one).
_PKI: tuple[str, Stage, bool] = ("pki", lambda snap, now, new_id: pki.reconcile(snap, now), True)


def _stages(scope: Scope | None = None, index: TaskIndex | None = None) -> list[tuple[str, Stage, bool]]:
    """The stages in the order they run: each sees what the earlier ones
    planned. The updater sees the slots the orchestrator just filled (so the
    two never both create a task for one slot); the allocator gives addresses
    before the scheduler assigns (it leaves a task without them pending).

    With a `scope` (incremental round), the orchestrator and updater plan
    only its services and slots, and the third field says whether a stage
    runs even if no earlier stage hands it actions."""
    if scope is None or index is None:
        return [
            _PKI,
            ("orchestrator", orch.orchestrate, True),
            ("updater", updater.update, True),
            ("allocator", lambda snap, now, new_id: allocator.allocate(snap, new_id), True),
            ("scheduler", lambda snap, now, new_id: schedule(snap, now), True),
        ]
    whole = scope.services | scope.slots.keys()
    ix = index
    # Tasks the orchestrator creates are not in the index (it files the
    # snapshot's): the updater, which plans on the orchestrator's result,
    # gets them from here.
    created: dict[str, set[str]] = {}

    def orchestrate(snap: st.Snapshot, now: float, new_id: Callable[[], str]) -> StagePlan:
        sp = orch.orchestrate(snap, now, new_id, scope, ix)
        for a in sp.actions:
            if a.WhichOneof("action") == "put" and a.put.WhichOneof("object") == "task":
                created.setdefault(a.put.task.service_id, set()).add(a.put.task.id)
        return sp

    def update(snap: st.Snapshot, now: float, new_id: Callable[[], str]) -> StagePlan:
        def tasks_of(sid: str) -> list[pb.Task]:
            ids = {tid for slot in ix.by_service.get(sid, {}).values() for tid in slot} | created.get(sid, set())
            return [snap.tasks[tid] for tid in ids if tid in snap.tasks]

        return updater.update(snap, now, new_id, whole, tasks_of)

    # The updater reads every slot of a service: a changed slot means the
    # whole service to it.
    return [
        _PKI,
        ("orchestrator", orchestrate, True),
        ("updater", update, True),
        ("allocator", lambda snap, now, new_id: allocator.allocate(snap, new_id), scope.allocate),
        ("scheduler", lambda snap, now, new_id: schedule(snap, now), scope.schedule),
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


def plan(
    snap: st.Snapshot, now: float, new_id: Callable[[], str], scope: Scope | None = None, index: TaskIndex | None = None
) -> RoundPlan:
    """Every stage's actions for `snap` at time `now`, merged into one batch.
    Does not modify `snap`. With a `scope` and the `index` of `snap`'s tasks:
    the incremental round (scope.py), the same actions as the full one when
    the scope was computed from what changed since a committed round.

    A stage whose actions do not apply to the state it read is left out (and
    reported); the later stages plan as if it had proposed nothing. If the
    merged batch does not apply, stages are left out from the last one until
    it does."""
    errors: list[str] = []
    work = snap.shallow_copy()  # apply_batch replaces objects, never mutates shared ones
    planned: list[tuple[str, StagePlan]] = []
    stages = _stages(scope, index)
    handed = False  # an earlier stage planned actions: the later ones must look
    for k, (name, run, runs) in enumerate(stages):
        if not runs and not handed:
            continue
        sp = run(work, now, new_id)
        handed = handed or bool(sp.actions)
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


def chunk_actions(actions: Sequence[spb.StoreAction], max_actions: int, max_bytes: int) -> list[list[spb.StoreAction]]:
    """The plan cut, in order, into batches of at most `max_actions` actions
    and `max_bytes` serialized bytes (an action bigger than that goes alone).

    Each batch is one Raft entry; big entries are slow and may not arrive at
    all (LIBRARIES.md), and a count alone does not bound them (2,000 tasks
    with 64 KiB of environment each would make one 128 MiB entry). A merged
    plan writes every object once and guards each Put with the version of the
    snapshot it read, so the batches apply one after the other; the leader
    proposes them together, in one round."""
    out: list[list[spb.StoreAction]] = []
    cur: list[spb.StoreAction] = []
    size = 0
    for a in actions:
        n = a.ByteSize() + 4  # + the field tag and length in the batch
        if cur and (len(cur) >= max_actions or size + n > max_bytes):
            out.append(cur)
            cur, size = [], 0
        cur.append(a)
        size += n
    if cur:
        out.append(cur)
    return out


class IncrementalPlanner:
    """The leader's rounds, each planning only what changed since the last
    committed one (scope.py), with the same actions as a full round.

    It keeps the snapshot the last round planned on and an index of its
    tasks. A full round is planned when nothing is known (first round, a new
    leader, a snapshot installed), when the last round's plan was not
    committed (`failed`) or left a stage out, and when a timed decision may
    have come due (a restart delay or an update's monitor period: `wake_at`
    of earlier rounds)."""

    def __init__(self) -> None:
        self._prev: st.Snapshot | None = None
        self._index: TaskIndex | None = None
        self._wake: float | None = None
        self._full_next = True
        self.full_rounds = 0
        self.scoped_rounds = 0

    @property
    def version(self) -> int:
        """The store version the last round planned on (-1: none yet): the
        caller passes what changed since then."""
        return -1 if self._prev is None else self._prev.version

    def failed(self) -> None:
        """The last round's plan was not (wholly) committed."""
        self._full_next = True

    def round(self, snap: st.Snapshot, changes: Changes, now: float, new_id: Callable[[], str]) -> RoundPlan:
        """Plan on `snap`, given `changes` since `version`."""
        prev, index = self._prev, self._index
        full = (
            self._full_next
            or prev is None
            or index is None
            or changes.everything
            or (self._wake is not None and now >= self._wake)
        )
        scope: Scope | None = None
        if not full and prev is not None and index is not None:
            index.update(snap, changes.tasks)
            scope = compute(prev, snap, changes, index)
        if scope is None:
            index = self._index = TaskIndex.build(snap)
            p = plan(snap, now, new_id)
            self._wake = p.wake_at
            self.full_rounds += 1
        elif scope.empty:
            p = RoundPlan([])
            self.scoped_rounds += 1
        else:
            p = plan(snap, now, new_id, scope, index)
            self._wake = earliest(self._wake, p.wake_at)
            self.scoped_rounds += 1
        self._prev = snap
        self._full_next = bool(p.error)
        return RoundPlan(p.actions, self._wake, p.error)
