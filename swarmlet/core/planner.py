"""One leader round: orchestrate, then schedule what that produced, as ONE
list of store actions the leader proposes as one replicated batch.

Pure, like the modules it composes."""

from __future__ import annotations

import logging
from collections.abc import Callable

from swarmlet.api import store_pb2 as spb
from swarmlet.core import allocator, updater
from swarmlet.core import orchestrator as orch
from swarmlet.core import state as st
from swarmlet.core.scheduler import schedule

log = logging.getLogger(__name__)


class PlanError(Exception):
    """A plan that does not apply to the snapshot it was made from: a bug."""


def _merge(snap: st.Snapshot, *stages: list[spb.StoreAction]) -> list[spb.StoreAction]:
    """The actions of successive stages (orchestrator, allocator, scheduler) as
    one batch in which no object is written twice (check_batch refuses that).

    Each stage read a copy of the snapshot with the earlier stages applied. A
    Put of an object an earlier stage already put replaces that Put in place
    (its content wins; the guard and meta of the first Put stay), so a task the
    orchestrator creates can be allocated and scheduled in the same round.
    Other Puts are guarded by the version in the original snapshot."""
    out: list[spb.StoreAction] = []
    put_at: dict[tuple[str, str], int] = {}
    for stage in stages:
        for a in stage:
            if a.WhichOneof("action") != "put":
                out.append(a)
                continue
            which = a.put.WhichOneof("object")
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
            orig = snap.table_by_name(which + "s").get(obj.id)
            if orig is not None:
                a.put.expected_version = orig.meta.version
            put_at[key] = len(out)
            out.append(a)
    return out


def plan_round(snap: st.Snapshot, now: float, new_id: Callable[[], str], *, strict: bool = False) -> list[spb.StoreAction]:
    """Orchestrator + rolling updater + scheduler actions for `snap` at time `now`, as one batch.

    Does not modify `snap`. A plan that fails to apply is a bug: with
    `strict` (tests) it raises PlanError; otherwise it is logged and the
    orchestrator's actions alone are returned, so the cluster still converges
    on task lifecycle while the scheduler's part is investigated."""
    orch_actions = orch.orchestrate(snap, now, new_id)
    work = snap.shallow_copy()  # apply_batch replaces objects, never mutates shared ones
    if orch_actions:
        res = st.apply_batch(work, spb.StoreBatch(actions=orch_actions, timestamp=now))
        if not res.ok:
            msg = f"orchestrator plan does not apply: {res.error}"
            if strict:
                raise PlanError(msg)
            log.error(msg)
            return orch_actions
    # The updater sees the slots the orchestrator just filled, so the two never
    # both create a task for one slot.
    upd_actions = updater.update(work, now, new_id)
    if upd_actions:
        res = st.apply_batch(work, spb.StoreBatch(actions=upd_actions, timestamp=now))
        if not res.ok:
            msg = f"updater plan does not apply: {res.error}"
            if strict:
                raise PlanError(msg)
            log.error(msg)
            return orch_actions
        orch_actions = orch_actions + upd_actions
    # Addresses before assignment: the scheduler skips tasks still waiting for them.
    alloc_actions = allocator.allocate(work, new_id)
    if alloc_actions:
        res = st.apply_batch(work, spb.StoreBatch(actions=alloc_actions, timestamp=now))
        if not res.ok:
            msg = f"allocator plan does not apply: {res.error}"
            if strict:
                raise PlanError(msg)
            log.error(msg)
            alloc_actions = []
            work = snap.shallow_copy()
            st.apply_batch(work, spb.StoreBatch(actions=orch_actions, timestamp=now))
    sched_actions = schedule(work, now)
    if not sched_actions and not alloc_actions:
        return orch_actions
    final = _merge(snap, orch_actions, alloc_actions, sched_actions)
    try:
        st.check_batch(snap, spb.StoreBatch(actions=final, timestamp=now))
    except st.Conflict as e:
        msg = f"merged plan does not apply: {e}"
        if strict:
            raise PlanError(msg) from None
        log.error(msg)
        return orch_actions
    return final
