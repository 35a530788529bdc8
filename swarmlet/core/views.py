"""Read-only views of the state for users: how far a service is from its
spec, why it cannot converge on its own, and where its rolling update stands.
Served by the control API (ServiceProgress) and rendered by the CLI, which
decides nothing but how long to wait; pure like the rest of the core."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from swarmlet.api import control_pb2 as cpb
from swarmlet.api import objects_pb2 as pb
from swarmlet.core import images, units, updater
from swarmlet.core import orchestrator as orch
from swarmlet.core import state as st
from swarmlet.core import tasks as tk
from swarmlet.core.scheduler.filters import Context
from swarmlet.core.scheduler.load import Load
from swarmlet.core.scheduler.pipeline import Pipeline

US = pb.UpdateStatus
Phase = cpb.ServiceProgressResponse.UpdatePhase

# Said of a global service that no node may run: nothing will ever start.
NO_ELIGIBLE_NODE = "no node is eligible (check --constraint, node availability and that nodes are Ready)"


@dataclass(frozen=True)
class _SlotView:
    group: tk.Slot
    task: pb.Task | None  # the task that stands for the slot
    live: bool
    running: bool  # runs the current spec, as wanted
    settled: bool  # needs nothing more
    stuck: str  # why it cannot converge on its own, "" if nothing says so
    waiting: str = ""  # why its task waits, for `service ps` (stuck, or a wait that ends by itself)


class _Rejections:
    """Whether a slot's last rejection came from the last node it could use
    (the scheduler's filters, built once per view and only when asked)."""

    def __init__(self, snap: st.Snapshot) -> None:
        self._snap = snap
        self._pipeline: Pipeline | None = None

    def everywhere(self, last: pb.Task) -> bool:
        if self._pipeline is None:
            self._pipeline = Pipeline(Context(self._snap, Load(self._snap.nodes, self._snap.services)))
        return self._pipeline.rejected_everywhere(last, also=last.node_id)


def _slot_view(snap: st.Snapshot, svc: pb.Service, g: tk.Slot, now: float, rejections: _Rejections) -> _SlotView:
    live = [t for t in g.tasks if tk.active(t)]
    if live:
        # The newest task running the current spec, else the newest live one
        # (an old task still running while its replacement is not there yet).
        fresh = [t for t in live if tk.runs_current_spec(t, svc)]
        cur = max(fresh or live, key=tk.age_key)
        running = tk.runs_current_spec(cur, svc) and cur.desired_state == pb.RUNNING and cur.status.state == pb.RUNNING
        stuck = cur.status.err if cur.status.state <= pb.PENDING else ""
        waiting = stuck
        if not waiting and cur.desired_state == pb.READY:
            waiting = "waiting for the slot's previous task to stop (stop-first update)"
        # A job's slot is settled only once its task completed.
        return _SlotView(g, cur, True, running, running and not tk.is_job(svc), stuck, waiting)
    # Nothing live: the orchestrator's own judgement of an empty slot says
    # whether it is done (completed, not restarted), waits, or gave up.
    cands = orch.restart_candidates(g.tasks)
    last = max(cands, key=tk.age_key) if cands else None
    v = orch.slot_verdict(last, g.tasks, snap.nodes, now, tk.per_node(svc))
    shown = v.last or (max(g.tasks, key=tk.age_key) if g.tasks else None)
    stuck = f"{v.reason}; last error: {tk.task_error(v.last)}" if v.kind == "gave_up" and v.last is not None else ""
    waiting = stuck
    if v.kind == "wait":
        waiting = f"{v.reason}: replaced in {units.fmt_seconds(round(max(0.0, v.at - now), 1))}" if v.at else v.reason
        last = v.last
        if last is not None and last.status.state == pb.REJECTED and not tk.per_node(svc) and rejections.everywhere(last):
            # The slot is retried (the scheduler goes back to the nodes that
            # rejected it), but nothing says the next try will fare better:
            # tell the user now rather than let a create wait for ever.
            delay = units.fmt_seconds(last.spec.restart.delay)
            stuck = f"rejected by every eligible node, retried every {delay}; last error: {tk.task_error(last)}"
            waiting = f"{stuck}; next try in {units.fmt_seconds(round(max(0.0, v.at - now), 1))}" if v.at else stuck
    return _SlotView(g, shown, False, False, v.kind == "done", stuck, waiting)


def _current_tasks(snap: st.Snapshot, svc: pb.Service) -> list[pb.Task]:
    """The service's tasks that count (a job's: its current run only)."""
    return [t for t in snap.tasks_of_service(svc.id) if tk.of_current_run(t, svc)]


def _slot_views(snap: st.Snapshot, svc: pb.Service, now: float) -> list[_SlotView]:
    tasks = _current_tasks(snap, svc)
    rejections = _Rejections(snap)
    return [_slot_view(snap, svc, g, now, rejections) for g in tk.expected_slots(svc, tasks, snap.nodes)]


def _no_eligible_node(svc: pb.Service, views: Sequence[_SlotView]) -> bool:
    return tk.per_node(svc) and not views


def _completed(v: _SlotView) -> bool:
    """A job's slot whose task ran to completion (and is done)."""
    return v.settled and not v.live and v.task is not None and v.task.status.state == pb.COMPLETE


def _node_name(snap: st.Snapshot, node_id: str) -> str:
    node = snap.nodes.get(node_id)
    return (node.description.hostname or node.id) if node is not None else ""


def replica_counts(snap: st.Snapshot, svc: pb.Service) -> tuple[int, int]:
    """(running, desired) as `service ls` shows them: live tasks observed
    RUNNING, and the replica count (global: the live tasks; a replicated
    job: max_concurrent, as Swarm shows it)."""
    tasks = _current_tasks(snap, svc)
    running = sum(1 for t in tasks if tk.wanted(t) and t.status.state == pb.RUNNING)
    mode = tk.service_mode(svc)
    if mode == "replicated-job":
        desired = int(svc.spec.replicated_job.max_concurrent)
    elif tk.per_node(svc):
        desired = sum(1 for t in tasks if tk.wanted(t))
    else:
        desired = int(svc.spec.replicated.replicas)
    return running, desired


def job_counts(snap: st.Snapshot, svc: pb.Service, now: float = 0.0) -> tuple[int, int]:
    """(completed, total) of a job's current run: slots (global: nodes)
    whose task completed, and how many there are to complete."""
    views = _slot_views(snap, svc, now)
    completed = sum(1 for v in views if _completed(v))
    if tk.service_mode(svc) == "replicated-job":
        return completed, int(svc.spec.replicated_job.total_completions)
    return completed, len(views)


def update_phase(svc: pb.Service) -> cpb.ServiceProgressResponse.UpdatePhase:
    """Where the service's latest rolling update (or rollback) stands."""
    s = svc.update_status
    if s.state in updater.PAUSED:
        return Phase.PAUSED
    if s.state == US.COMPLETED:
        return Phase.COMPLETED
    if s.state == US.ROLLBACK_COMPLETED:
        return Phase.ROLLED_BACK
    if s.state == US.UPDATING and s.canaries_ready and not s.promoted:
        return Phase.AWAITING_PROMOTION
    if s.state in updater.ACTIVE:
        return Phase.IN_PROGRESS
    return Phase.NO_UPDATE


def service_progress(snap: st.Snapshot, service_id: str, now: float = 0.0) -> cpb.ServiceProgressResponse:
    """How far a service is from its spec. Raises KeyError for an unknown service.

    One SlotProgress per slot (replicated) or per node the service runs or
    should run on (global), describing the slot's live task (one running the
    current spec first), else its newest task, and whether the slot is stuck.
    `converged` when every slot is settled and there is a place to run (a
    global service with no eligible node has not converged: `stuck` says why)."""
    svc = snap.services[service_id]
    views = _slot_views(snap, svc, now)
    out = cpb.ServiceProgressResponse(
        service=images.redacted(svc),
        desired=len(views),
        running=sum(1 for v in views if v.running),
        stuck=_stuck_reason(snap, svc, views),
        converged=all(v.settled for v in views) and not _no_eligible_node(svc, views),
        update_phase=update_phase(svc),
        completed=sum(1 for v in views if _completed(v)) if tk.is_job(svc) else 0,
    )
    for v in views:
        sp = out.slots.add(slot=v.group.slot, node_id=v.group.node_id, live=v.live, settled=v.settled, stuck=v.stuck)
        t = v.task
        if t is not None:
            sp.node_id = t.node_id or v.group.node_id
            sp.task_id = t.id
            sp.state = t.status.state
            sp.desired_state = t.desired_state
            sp.message = t.status.message
            sp.err = t.status.err
            sp.spec_version = t.spec_version
            sp.attempt = t.attempt
            sp.current = tk.runs_current_spec(t, svc)
            sp.has_task = True
            if t.status.state == pb.PREPARING and t.status.HasField("pull"):
                sp.pull.CopyFrom(t.status.pull)
        sp.node_name = _node_name(snap, sp.node_id)
    return out


def waiting_reasons(snap: st.Snapshot, service_id: str, now: float = 0.0) -> dict[str, str]:
    """Why tasks of the service wait, by task id (issue 16: `service ps`):
    a pending task's scheduling error, a stop-first update's task waiting for
    its slot's old task, a restart delay running, a restart policy that gave
    up (on the slot's last task). Raises KeyError for an unknown service."""
    svc = snap.services[service_id]
    return {v.task.id: v.waiting for v in _slot_views(snap, svc, now) if v.task is not None and v.waiting}


def stuck_reason(snap: st.Snapshot, service_id: str, now: float = 0.0) -> str:
    """Why the service cannot converge on its own, for humans; "" if nothing
    says it cannot. Raises KeyError for an unknown service."""
    svc = snap.services[service_id]
    return _stuck_reason(snap, svc, _slot_views(snap, svc, now))


def _stuck_reason(snap: st.Snapshot, svc: pb.Service, views: Sequence[_SlotView]) -> str:
    """Four causes: tasks pending with a scheduler error (no node fits),
    slots whose restart policy gave up (quoting the last task's error), slots
    rejected by every node they may use (retried, but nothing says the next
    try fares better), and a global service no node may run."""
    if _no_eligible_node(svc, views):
        return NO_ELIGIBLE_NODE
    reasons: list[str] = []
    tasks = _current_tasks(snap, svc)
    pending = Counter(t.status.err for t in tasks if tk.active(t) and t.status.state == pb.PENDING and t.status.err)
    if pending:
        n = sum(pending.values())
        err, _ = pending.most_common(1)[0]
        reasons.append(f"{n} task{'s' if n != 1 else ''} pending: {err}")
    gave_up = [f"{_where(snap, v.group)}: {v.stuck}" for v in views if v.stuck and not v.live and v.task is not None]
    if gave_up:
        more = f" (and {len(gave_up) - 1} more)" if len(gave_up) > 1 else ""
        reasons.append(gave_up[0] + more)
    return "; ".join(reasons)


def _where(snap: st.Snapshot, g: tk.Slot) -> str:
    return f"node {_node_name(snap, g.node_id) or g.node_id}" if g.node_id else f"slot {g.slot}"
