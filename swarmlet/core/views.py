"""Read-only views of the state for users: how far a service is from its
spec, and why it cannot converge on its own. Served by the control API
(ServiceProgress) and rendered by the CLI; pure like the rest of the core."""

from __future__ import annotations

from collections import Counter, defaultdict

from swarmlet.api import control_pb2 as cpb
from swarmlet.api import objects_pb2 as pb
from swarmlet.core import constraints as cons
from swarmlet.core import orchestrator as orch
from swarmlet.core import state as st
from swarmlet.core import tasks as tk


def _best_live(tasks: list[pb.Task]) -> pb.Task | None:
    live = [t for t in tasks if tk.wanted(t)]
    if not live:
        return None
    return min(live, key=lambda t: (-t.spec_version, -t.status.state, t.meta.created_at, t.id))


def _groups(snap: st.Snapshot, svc: pb.Service, tasks: list[pb.Task]) -> list[tuple[int, str, list[pb.Task]]]:
    """(slot, node_id, tasks) for each place the service should run a task:
    slots 1..N, or the nodes a global service runs (or should run) on."""
    if tk.service_mode(svc) == "global":
        constraints = cons.parse_placement(svc.spec.task)
        by_node: dict[str, list[pb.Task]] = defaultdict(list)
        for t in tasks:
            if t.node_id:
                by_node[t.node_id].append(t)
        out = []
        for nid in sorted(snap.nodes):
            keep, create = tk.global_node_fit(snap.nodes[nid], constraints)
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
    last = max(cands, key=tk.age_key) if cands else None
    return orch.slot_verdict(last, ts, snap.nodes, now, tk.service_mode(svc) == "global")


def replica_counts(snap: st.Snapshot, svc: pb.Service) -> tuple[int, int]:
    """(running, desired) as `service ls` shows them: live tasks observed
    RUNNING, and the replica count (global: the live tasks)."""
    tasks = snap.tasks_of_service(svc.id)
    running = sum(1 for t in tasks if tk.wanted(t) and t.status.state == pb.RUNNING)
    if tk.service_mode(svc) == "global":
        desired = sum(1 for t in tasks if tk.wanted(t))
    else:
        desired = int(svc.spec.replicated.replicas)
    return running, desired


def _is_current(t: pb.Task, svc: pb.Service) -> bool:
    # Equal specs count too: scaling bumps spec_version without replacing tasks.
    return t.spec_version == svc.spec_version or t.spec == svc.spec.task


def _settled(t: pb.Task | None, svc: pb.Service) -> bool:
    """The slot needs nothing more: its task runs the current spec as wanted,
    or it completed and the restart policy will not replace a success."""
    if t is None:
        return False
    if t.status.state == pb.COMPLETE and svc.spec.task.restart.condition != pb.RestartPolicy.ANY:
        return True
    return tk.wanted(t) and _is_current(t, svc) and t.desired_state == pb.RUNNING and t.status.state == pb.RUNNING


def service_progress(snap: st.Snapshot, service_id: str, now: float = 0.0) -> cpb.ServiceProgressResponse:
    """How far a service is from its spec. Raises KeyError for an unknown service.

    One SlotProgress per slot (replicated) or per node the service runs or
    should run on (global), describing the slot's live task, else its newest
    task. `converged` when every slot is settled; `stuck` says why the service
    cannot converge on its own ("" when nothing says so)."""
    svc = snap.services[service_id]
    tasks = snap.tasks_of_service(service_id)
    running = sum(1 for t in tasks if tk.wanted(t) and _is_current(t, svc) and t.status.state == pb.RUNNING)
    out = cpb.ServiceProgressResponse(service=svc, running=running, stuck=stuck_reason(snap, service_id, now))
    groups = _groups(snap, svc, tasks)
    for slot, nid, ts in groups:
        cur = _best_live(ts) or (max(ts, key=tk.age_key) if ts else None)
        sp = out.slots.add(slot=slot, node_id=nid)
        if cur is not None:
            sp.node_id = cur.node_id or nid
            sp.task_id = cur.id
            sp.state = cur.status.state
            sp.desired_state = cur.desired_state
            sp.message = cur.status.message
            sp.err = cur.status.err
            sp.spec_version = cur.spec_version
            sp.attempt = cur.attempt
            sp.current = _is_current(cur, svc)
            sp.has_task = True
        sp.settled = _settled(cur, svc)
        node = snap.nodes.get(sp.node_id)
        if node is not None:
            sp.node_name = node.description.hostname or node.id
    out.desired = len(groups)
    out.converged = all(sp.settled for sp in out.slots)
    return out


def stuck_reason(snap: st.Snapshot, service_id: str, now: float = 0.0) -> str:
    """Why the service cannot converge on its own, for humans; "" if nothing
    says it cannot. Two causes: tasks pending with a scheduler error (no node
    fits), and slots whose restart policy gave up (quoting the last task's
    error). Raises KeyError for an unknown service."""
    svc = snap.services[service_id]
    tasks = snap.tasks_of_service(service_id)
    reasons: list[str] = []
    pending = Counter(t.status.err for t in tasks if tk.wanted(t) and t.status.state == pb.PENDING and t.status.err)
    if pending:
        n = sum(pending.values())
        err, _ = pending.most_common(1)[0]
        reasons.append(f"{n} task{'s' if n != 1 else ''} pending: {err}")
    gave_up: list[str] = []
    for slot, nid, ts in _groups(snap, svc, tasks):
        if any(tk.wanted(t) and t.status.state not in tk.TERMINAL_STATES for t in ts):
            continue
        v = _verdict(snap, svc, ts, now)
        if v.kind == "gave_up" and v.last is not None:
            where = f"slot {slot}" if not nid else f"node {snap.nodes[nid].description.hostname or nid}"
            gave_up.append(f"{where}: {v.reason}; last error: {tk.task_error(v.last)}")
    if gave_up:
        more = f" (and {len(gave_up) - 1} more)" if len(gave_up) > 1 else ""
        reasons.append(gave_up[0] + more)
    return "; ".join(reasons)
