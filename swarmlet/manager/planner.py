"""One leader round: orchestrate, then schedule what that produced, as ONE
list of store actions the leader proposes as one replicated batch. Also the
read-only progress/stuck views the CLI and API show for a service.

Pure, like the modules it composes."""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from typing import Any, Callable

from swarmlet.api import objects_pb2 as pb
from swarmlet.api import store_pb2 as spb
from swarmlet.manager import allocator
from swarmlet.manager import orchestrator as orch
from swarmlet.manager import state as st
from swarmlet.manager import updater
from swarmlet.manager.scheduler import schedule

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


# ---- views for the CLI / API ----

def _best_live(tasks: list[pb.Task]) -> pb.Task | None:
    live = [t for t in tasks if orch.is_live(t)]
    if not live:
        return None
    return min(live, key=lambda t: (-t.spec_version, -t.status.state, t.meta.created_at, t.id))


def _groups(snap: st.Snapshot, svc: pb.Service, tasks: list[pb.Task]) -> list[tuple[int, str, list[pb.Task]]]:
    """(slot, node_id, tasks) for each place the service should run a task:
    slots 1..N, or the nodes a global service runs (or should run) on."""
    if orch.service_mode(svc) == "global":
        constraints = orch.parse_placement(svc.spec.task)
        by_node: dict[str, list[pb.Task]] = defaultdict(list)
        for t in tasks:
            if t.node_id:
                by_node[t.node_id].append(t)
        out = []
        for nid in sorted(snap.nodes):
            keep, create = orch.global_node_fit(snap.nodes[nid], constraints)
            ts = by_node.get(nid, [])
            if create or (keep and _best_live(ts) is not None):
                out.append((0, nid, ts))
        return out
    by_slot: dict[int, list[pb.Task]] = defaultdict(list)
    for t in tasks:
        by_slot[t.slot].append(t)
    return [(s, "", by_slot.get(s, [])) for s in range(1, int(svc.spec.replicated.replicas) + 1)]


def _verdict(snap: st.Snapshot, svc: pb.Service, ts: list[pb.Task], now: float) -> orch.Verdict:
    cands = orch.restart_candidates(ts)
    last = max(cands, key=orch.age_key) if cands else None
    return orch.slot_verdict(last, ts, snap.nodes, now, orch.service_mode(svc) == "global")


def service_progress(snap: st.Snapshot, service_id: str, now: float = 0.0) -> dict[str, Any]:
    """How far a service is from its spec. Raises KeyError for an unknown service.

    Returns {"service_id", "name", "mode", "spec_version", "desired",
    "running" (live tasks of the current spec_version in RUNNING), "slots": [one
    dict per slot (replicated) or node (global): "slot", "node_id", "task_id",
    "state", "desired_state", "message", "err", "spec_version", "attempt" — of the
    slot's live task, else of its newest task, with empty ids and state "" when
    the slot has none], "stuck" (stuck_reason, "" when none)}."""
    svc = snap.services[service_id]
    tasks = snap.tasks_of_service(service_id)
    running = sum(
        1 for t in tasks
        if orch.is_live(t) and t.spec_version == svc.spec_version and t.status.state == pb.RUNNING
    )
    slots = []
    groups = _groups(snap, svc, tasks)
    for slot, nid, ts in groups:
        cur = _best_live(ts) or (max(ts, key=orch.age_key) if ts else None)
        entry: dict[str, Any] = {"slot": slot, "node_id": nid, "task_id": "", "state": "", "desired_state": "",
                                 "message": "", "err": "", "spec_version": 0, "attempt": 0}
        if cur is not None:
            entry.update(
                node_id=cur.node_id, task_id=cur.id,
                state=pb.TaskState.Name(cur.status.state), desired_state=pb.TaskState.Name(cur.desired_state),
                message=cur.status.message, err=cur.status.err,
                spec_version=cur.spec_version, attempt=cur.attempt,
            )
        slots.append(entry)
    return {
        "service_id": svc.id,
        "name": svc.spec.name,
        "mode": orch.service_mode(svc),
        "spec_version": svc.spec_version,
        "desired": len(groups),
        "running": running,
        "slots": slots,
        "stuck": stuck_reason(snap, service_id, now),
    }


def stuck_reason(snap: st.Snapshot, service_id: str, now: float = 0.0) -> str:
    """Why the service cannot converge on its own, for humans; "" if nothing
    says it cannot. Two causes: tasks pending with a scheduler error (no node
    fits), and slots whose restart policy gave up (quoting the last task's
    error). Raises KeyError for an unknown service."""
    svc = snap.services[service_id]
    tasks = snap.tasks_of_service(service_id)
    reasons: list[str] = []
    pending = Counter(
        t.status.err for t in tasks
        if orch.is_live(t) and t.status.state == pb.PENDING and t.status.err
    )
    if pending:
        n = sum(pending.values())
        err, _ = pending.most_common(1)[0]
        reasons.append(f"{n} task{'s' if n != 1 else ''} pending: {err}")
    gave_up: list[str] = []
    for slot, nid, ts in _groups(snap, svc, tasks):
        if any(orch.is_live(t) and t.status.state not in st.TERMINAL_STATES for t in ts):
            continue
        v = _verdict(snap, svc, ts, now)
        if v.kind == "gave_up" and v.last is not None:
            where = f"slot {slot}" if not nid else f"node {snap.nodes[nid].description.hostname or nid}"
            gave_up.append(f"{where}: {v.reason}; last error: {orch.task_error(v.last)}")
    if gave_up:
        more = f" (and {len(gave_up) - 1} more)" if len(gave_up) > 1 else ""
        reasons.append(gave_up[0] + more)
    return "; ".join(reasons)
