"""The rolling updater: replaces the tasks of a service whose task spec
changed, slot by slot, under the service's UpdateConfig. Pure:
(snapshot, now, id generator) -> store actions, run by the leader inside
planner.plan_round, after the orchestrator and before the scheduler.

Nothing is remembered between rounds. The service's UpdateStatus (state,
started_at, canary flags) is replicated, and everything else is read from
the tasks: which slots still run an outdated spec, which new tasks are still
in their monitor period (Task.running_at, stamped by the store), which failed.
So a new leader re-running this on the replicated state continues the update
where the old one was.

Division of labour with the orchestrator: the orchestrator keeps each slot
populated (it only creates a task for a slot with no live task, and leaves
tasks of different spec versions sharing a slot alone); the updater decides
when an outdated task goes and when a new-spec task is created in its slot:

* stop-first: the old task is shut down and, in the same round, the new task
  is created with desired state READY (placed, not started); once the old
  task has stopped, the new one is set to RUNNING. The slot is never empty in
  the store, so the orchestrator does not race to fill it.
* start-first: the new task is created RUNNING beside the old one; the old one
  is shut down once the new one is RUNNING (which the agent reports only once
  its health check passed).

A slot counts as updated when its new task has stayed RUNNING for `monitor`;
it holds one unit of parallelism until then, plus `delay`. A new task that
ends (or never runs) within its monitor period is a failure; failures over
max_failure_ratio of the slots trigger the failure action.

Canaries (beyond Swarm): with `canary` N, the update first runs N new tasks
beside old ones (start-first, old ones kept) and stops there until promoted
(PromoteService, or auto_promote once every canary stayed healthy through
monitor). A failing canary rolls the update back: the canaries are removed
and the old tasks were never touched.
"""

from __future__ import annotations

import copy
from collections import defaultdict
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass

from swarmlet.api import objects_pb2 as pb
from swarmlet.api import store_pb2 as spb
from swarmlet.core import state as st
from swarmlet.core import tasks as tk
from swarmlet.core.stage import StagePlan, earliest

US = pb.UpdateStatus
UC = pb.UpdateConfig

# Swarm's defaults, used when a spec carries no UpdateConfig.
DEFAULT_CONFIG = UC(parallelism=1, delay=0.0, failure_action=UC.PAUSE, monitor=5.0, max_failure_ratio=0.0, order=UC.STOP_FIRST)

ACTIVE = frozenset({US.UPDATING, US.ROLLBACK_STARTED})
PAUSED = frozenset({US.PAUSED, US.ROLLBACK_PAUSED})
ROLLING_BACK = frozenset({US.ROLLBACK_STARTED, US.ROLLBACK_PAUSED, US.ROLLBACK_COMPLETED})

# Ways a new task can end early that are the task's own doing (SHUTDOWN is
# us stopping it; ORPHANED is its node's fault).
_FAILURES = frozenset({pb.FAILED, pb.REJECTED, pb.COMPLETE})


def config_for(svc: pb.Service) -> pb.UpdateConfig:
    """The policy the current update runs under. A rollback uses the rollback
    config of the spec being rolled back (now previous_spec): the policy the
    user set together with the change it undoes."""
    if svc.update_status.state in ROLLING_BACK:
        src = svc.previous_spec
        return src.rollback if src.HasField("rollback") else DEFAULT_CONFIG
    return svc.spec.update if svc.spec.HasField("update") else DEFAULT_CONFIG


def running_since(t: pb.Task) -> float:
    return t.running_at or t.status.timestamp


def _stopped(t: pb.Task, nodes: Mapping[str, pb.Node]) -> bool:
    """Nothing of it can run any more: ended, never reached a node, or its node
    is gone or down (the orchestrator marks those ORPHANED)."""
    if tk.is_terminal(t) or not tk.dispatched(t):
        return True
    node = nodes.get(t.node_id)
    return node is None or node.status.state == pb.NodeStatus.DOWN


@dataclass
class _View:
    """One slot, judged against the service's spec."""

    slot: tk.Slot
    cur: pb.Task | None  # its live task running the current spec (most advanced)
    old_live: list[pb.Task]  # live tasks running an outdated spec
    empty_outdated: bool  # no live task, everything stopped, newest task outdated


def _view(s: tk.Slot, svc: pb.Service, nodes: Mapping[str, pb.Node]) -> _View:
    live = [t for t in s.tasks if tk.wanted(t)]
    cur_live = [t for t in live if tk.runs_current_spec(t, svc)]
    cur = min(cur_live, key=lambda t: (-t.status.state, -t.desired_state, t.meta.created_at, t.id)) if cur_live else None
    old_live = sorted((t for t in live if not tk.runs_current_spec(t, svc)), key=tk.age_key)
    empty_outdated = False
    if not live and s.tasks:
        newest = max(s.tasks, key=tk.age_key)
        empty_outdated = (
            not tk.runs_current_spec(newest, svc)
            and newest.status.state != pb.COMPLETE
            and all(_stopped(t, nodes) for t in s.tasks)
        )
    return _View(s, cur, old_live, empty_outdated)


class _ServiceUpdate:
    def __init__(self, snap: st.Snapshot, svc: pb.Service, tasks: list[pb.Task], now: float, new_id: Callable[[], str]) -> None:
        self.snap = snap
        self.svc = svc
        self.tasks = tasks
        self.now = now
        self.new_id = new_id
        self.cfg = config_for(svc)
        self.status = svc.update_status
        self.actions: list[spb.StoreAction] = []
        self.desired: dict[str, pb.TaskState] = {}

    # ---- helpers ----

    def _set_desired(self, t: pb.Task, state: pb.TaskState) -> None:
        # Desired states only move forward (READY -> RUNNING -> SHUTDOWN).
        if state > self.desired.get(t.id, t.desired_state):
            self.desired[t.id] = state

    def _new_task(self, s: tk.Slot, desired: pb.TaskState) -> None:
        t = tk.new_task(
            self.svc,
            self.new_id(),
            self.now,
            slot=s.slot,
            node_id=s.node_id,
            desired=desired,
            message="created by the rolling update",
        )
        self.actions.append(st.put(t, create=True))

    def _put_status(self, **fields: object) -> None:
        new = copy.deepcopy(self.svc)
        for k, v in fields.items():
            setattr(new.update_status, k, v)
        self.actions.append(st.put(new))

    def _in_canary_phase(self) -> bool:
        return self.status.state == US.UPDATING and self.cfg.canary > 0 and not self.status.promoted

    def failures(self) -> list[pb.Task]:
        """New-spec tasks of this update that ended on their own, or never got
        to run, within their monitor period."""
        out = []
        for t in self.tasks:
            if not tk.runs_current_spec(t, self.svc) or t.meta.created_at < self.status.started_at:
                continue
            if t.status.state not in _FAILURES:
                continue
            if t.running_at and t.status.timestamp >= t.running_at + self.cfg.monitor:
                continue  # it was updated fine and failed later: the restart policy's business
            out.append(t)
        return sorted(out, key=tk.age_key)

    # ---- the round ----

    def run(self) -> list[spb.StoreAction]:
        nodes = self.snap.nodes
        # The places the orchestrator keeps a task: slots 1..N, or the nodes
        # a global service stays on. Surplus slots and nodes it leaves are the
        # orchestrator's to clear.
        views = [_view(s, self.svc, nodes) for s in tk.group_slots(self.svc, self.tasks, nodes) if s.want]
        canary_hold = self._in_canary_phase()
        in_flight = 0
        candidates: list[_View] = []
        canaries: list[pb.Task] = []
        for v in views:
            cur = v.cur
            if cur is not None:
                if cur.desired_state == pb.READY:
                    # stop-first: start the new task once everything else in
                    # its slot has stopped.
                    if all(_stopped(t, nodes) for t in v.slot.tasks if t.id != cur.id):
                        self._set_desired(cur, pb.RUNNING)
                    in_flight += 1
                    continue
                running = cur.status.state == pb.RUNNING
                if v.old_live:
                    if canary_hold:
                        canaries.append(cur)
                        continue
                    if running:
                        # start-first done (or canary promoted, or a rollback
                        # back to tasks that never stopped): retire the rest.
                        for t in v.old_live:
                            self._set_desired(t, pb.SHUTDOWN)
                    in_flight += 1
                    continue
                if not running or self.now < running_since(cur) + self.cfg.monitor + self.cfg.delay:
                    in_flight += 1
                continue
            if v.old_live or v.empty_outdated:
                candidates.append(v)

        if self.status.state in ACTIVE:
            self._decide(views, candidates, canaries, in_flight)
        for tid, state in self.desired.items():
            self.actions.append(st.set_desired(tid, state))
        return self.actions

    def _decide(self, views: list[_View], candidates: list[_View], canaries: list[pb.Task], in_flight: int) -> None:
        cfg = self.cfg
        failed = self.failures()
        rolling_back = self.status.state == US.ROLLBACK_STARTED
        total = max(1, len(views))
        if self._in_canary_phase():
            if failed:
                self._fail(failed, total, rollback=True, why="a canary failed")
                return
            self._canaries(candidates, canaries)
            return
        if failed and len(failed) / total > cfg.max_failure_ratio and cfg.failure_action != UC.CONTINUE:
            self._fail(failed, total, rollback=cfg.failure_action == UC.ROLLBACK and not rolling_back, why="")
            return
        # Retrying a slot whose new task just failed (start-first keeps the
        # old task, so the slot still looks outdated) waits out the restart
        # delay, as the orchestrator would.
        retry_after = self.svc.spec.task.restart.delay
        recent = {(t.slot, t.node_id): t.status.timestamp for t in failed}
        ready = [v for v in candidates if self.now >= recent.get((v.slot.slot, v.slot.node_id), -1e18) + retry_after]
        if not candidates and in_flight == 0:
            done = US.ROLLBACK_COMPLETED if rolling_back else US.COMPLETED
            msg = "rollback completed" if rolling_back else "update completed"
            if rolling_back and self.status.message.startswith(("update rolled back", "manually")):
                msg = f"{self.status.message}; {msg}"  # keep why it was rolled back
            if failed:
                msg += f" ({len(failed)} new task{'s' if len(failed) != 1 else ''} failed on the way)"
            self._put_status(state=done, completed_at=self.now, message=msg)
            return
        budget = len(ready) if cfg.parallelism == 0 else max(0, int(cfg.parallelism) - in_flight)
        for v in ready[:budget]:
            self._start_slot(v, start_first=cfg.order == UC.START_FIRST)

    def _start_slot(self, v: _View, start_first: bool) -> None:
        if start_first or not v.old_live:
            self._new_task(v.slot, pb.RUNNING)
            return
        for t in v.old_live:
            self._set_desired(t, pb.SHUTDOWN)
        waiting = any(not _stopped(t, self.snap.nodes) for t in v.old_live)
        self._new_task(v.slot, pb.READY if waiting else pb.RUNNING)

    def _canaries(self, candidates: list[_View], canaries: list[pb.Task]) -> None:
        want = min(int(self.cfg.canary), len(candidates) + len(canaries))
        for v in candidates[: max(0, want - len(canaries))]:
            if v.old_live:
                self._new_task(v.slot, pb.RUNNING)  # beside the old task, which stays
        if len(canaries) < want or want == 0:
            return
        healthy = all(c.status.state == pb.RUNNING and self.now >= running_since(c) + self.cfg.monitor for c in canaries)
        if not healthy:
            return
        if self.cfg.auto_promote:
            self._put_status(
                promoted=True,
                canaries_ready=True,
                message=f"{len(canaries)} canaries stayed healthy for {self.cfg.monitor:g}s: promoted automatically",
            )
        elif not self.status.canaries_ready:
            self._put_status(
                canaries_ready=True,
                message=f"{len(canaries)} canaries healthy: run `swarmlet service promote {self.svc.spec.name}` to continue the update",
            )

    def _fail(self, failed: list[pb.Task], total: int, rollback: bool, why: str) -> None:
        last = failed[-1]
        detail = (
            f"{len(failed)} of {total} new task{'s' if total != 1 else ''} failed "
            f"(max failure ratio {self.cfg.max_failure_ratio:g}); last: task {last.id} "
            f"{pb.TaskState.Name(last.status.state).lower()}: {tk.task_error(last)}"
        )
        if why:
            detail = f"{why}: {detail}"
        if rollback and self.svc.HasField("previous_spec"):
            self.actions.append(st.put(rollback_service(self.svc, self.now, f"update rolled back: {detail}")))
            return
        if self.status.state == US.ROLLBACK_STARTED:
            self._put_status(state=US.ROLLBACK_PAUSED, message=f"rollback paused: {detail}")
        else:
            self._put_status(state=US.PAUSED, message=f"update paused: {detail}")


def rollback_service(svc: pb.Service, now: float, message: str) -> pb.Service:
    """The service rolled back to its previous spec (the caller checked there
    is one): a new spec version, so the updater replaces what runs the
    abandoned spec under the rollback policy."""
    new = copy.deepcopy(svc)
    new.spec.CopyFrom(svc.previous_spec)
    new.previous_spec.CopyFrom(svc.spec)
    new.spec_version = svc.spec_version + 1
    if tk.is_job(new):
        # A job is not rolled: the previous spec runs again, as a new run.
        new.job_status.iteration = svc.job_status.iteration + 1
        new.job_status.last_execution = now
        return new
    new.update_status.CopyFrom(US(state=US.ROLLBACK_STARTED, started_at=now, message=message))
    return new


def update(
    snap: st.Snapshot,
    now: float,
    new_id: Callable[[], str],
    services: Collection[str] | None = None,
    tasks_of: Callable[[str], list[pb.Task]] | None = None,
) -> StagePlan:
    """Store actions advancing every service's rolling update at time `now`,
    and when a monitor period or delay next ends (wake_at). Services never
    updated (UpdateStatus NONE) are left to the orchestrator. With
    `services` (and `tasks_of`, a service's tasks in `snap`), only those:
    the incremental round's share of the same plan."""
    if services is None or tasks_of is None:
        by_service: dict[str, list[pb.Task]] = defaultdict(list)
        for t in snap.tasks.values():
            by_service[t.service_id].append(t)
        sids = sorted(snap.services)

        def tasks_of(sid: str) -> list[pb.Task]:
            return by_service.get(sid, [])
    else:
        sids = sorted(s for s in services if s in snap.services)

    actions: list[spb.StoreAction] = []
    best: float | None = None
    for sid in sids:
        svc = snap.services[sid]
        if svc.update_status.state == US.NONE or tk.is_job(svc):
            continue
        tasks = tasks_of(sid)
        actions.extend(_ServiceUpdate(snap, svc, tasks, now, new_id).run())
        best = earliest(best, _service_deadline(svc, tasks, now))
    return StagePlan(actions, best)


def with_defaults(spec: pb.ServiceSpec) -> None:
    """Fill unset update/rollback configs with Swarm's defaults, so what
    inspect shows is what runs. Jobs have none: they are never rolled."""
    if tk.spec_mode(spec) in ("replicated-job", "global-job"):
        return
    for name in ("update", "rollback"):
        if not spec.HasField(name):
            getattr(spec, name).CopyFrom(DEFAULT_CONFIG)


def updated_service(svc: pb.Service, spec: pb.ServiceSpec, now: float) -> pb.Service:
    """The service after a user's `service update` to `spec` (validated by the
    caller). A changed task spec starts a rolling update (a new spec version;
    the old spec becomes previous_spec, as in Swarm); an unchanged one resumes
    a paused update; anything else (replicas, labels, policies) just applies."""
    new = copy.deepcopy(svc)
    new.spec.CopyFrom(spec)
    if spec != svc.spec:
        new.previous_spec.CopyFrom(svc.spec)
    if tk.is_job(new):
        # A job is never rolled: every update runs it again (as Swarm does),
        # with the new spec, replacing what still runs of the previous run.
        if spec.task != svc.spec.task:
            new.spec_version = svc.spec_version + 1
        new.job_status.iteration = svc.job_status.iteration + 1
        new.job_status.last_execution = now
        return new
    if spec.task != svc.spec.task:
        new.spec_version = svc.spec_version + 1
        new.update_status.CopyFrom(US(state=US.UPDATING, started_at=now, message="update in progress"))
    elif svc.update_status.state in PAUSED:
        rolling_back = svc.update_status.state == US.ROLLBACK_PAUSED
        new.update_status.CopyFrom(svc.update_status)
        new.update_status.state = US.ROLLBACK_STARTED if rolling_back else US.UPDATING
        new.update_status.started_at = now  # earlier failures no longer count
        new.update_status.message = "rollback resumed" if rolling_back else "update resumed"
    return new


def promoted_service(svc: pb.Service, now: float) -> pb.Service:
    """The service with its canaries promoted. Raises ValueError (for the
    user) when there is nothing to promote."""
    s = svc.update_status
    if s.state not in (US.UPDATING, US.PAUSED) or not svc.spec.update.canary:
        raise ValueError(f"service {svc.spec.name} has no canary update in progress")
    if s.promoted:
        raise ValueError(f"the canaries of service {svc.spec.name} are already promoted")
    new = copy.deepcopy(svc)
    new.update_status.promoted = True
    new.update_status.message = "canaries promoted: rolling update in progress"
    return new


def validate_config(cfg: pb.UpdateConfig, flag: str) -> None:
    """Raise ValueError naming the --update-*/--rollback-* flag at fault."""
    if cfg.delay < 0:
        raise ValueError(f"--{flag}-delay cannot be negative")
    if cfg.monitor < 0:
        raise ValueError(f"--{flag}-monitor cannot be negative")
    if not 0.0 <= cfg.max_failure_ratio <= 1.0:
        raise ValueError(f"--{flag}-max-failure-ratio must be between 0 and 1")
    if cfg.failure_action not in UC.FailureAction.values():
        raise ValueError(f"--{flag}-failure-action: unknown action {cfg.failure_action}")
    if cfg.order not in UC.Order.values():
        raise ValueError(f"--{flag}-order: unknown order {cfg.order}")


def next_deadline(snap: st.Snapshot, now: float) -> float | None:
    """The earliest future instant at which a time-based condition of an
    update changes (a monitor period or delay ends), so the leader can plan
    again right then instead of at its next idle tick."""
    best: float | None = None
    for svc in snap.services.values():
        best = earliest(best, _service_deadline(svc, snap.tasks_of_service(svc.id), now))
    return best


def _service_deadline(svc: pb.Service, tasks: Iterable[pb.Task], now: float) -> float | None:
    """next_deadline for one service, given its tasks."""
    if svc.update_status.state not in ACTIVE:
        return None
    best: float | None = None
    cfg = config_for(svc)
    for t in tasks:
        if t.status.state != pb.RUNNING or not tk.wanted(t) or not tk.runs_current_spec(t, svc):
            continue
        for at in (running_since(t) + cfg.monitor, running_since(t) + cfg.monitor + cfg.delay):
            if at > now and (best is None or at < best):
                best = at
    return best
