"""The orchestrator: services -> tasks. Pure: (snapshot, now, id generator) ->
store actions; it never touches a clock, a socket or Docker.

One pass does what swarmkit splits into the replicated and global
orchestrators, the restart supervisor and the task reaper:

* replicated services keep one live task in each slot 1..N; global services
  one per eligible node;
* a live task that ended is shut down and, as its restart policy allows and
  after its restart delay, replaced in the same slot;
* tasks on DOWN nodes are marked ORPHANED and replaced; tasks on drained nodes
  are shut down and replaced;
* tasks of deleted services and surplus slots are removed, finished tasks are
  reaped down to the cluster's task history limit;
* jobs (replicated-job, global-job) use the same slots: a task that completes
  is done (desired COMPLETE, not restarted); a replicated job runs at most
  max_concurrent tasks at once; an update of a job starts a new iteration,
  whose tasks alone count, and stops what still runs of the previous one.

The state is self-describing, so nothing is remembered between rounds: a slot
without a live task is judged from its newest task (`slot_verdict`). That is
what makes the plan idempotent: running `orchestrate` again on the result of
its own plan finds nothing to do (except restarts whose delay has since
elapsed).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from swarmlet.api import objects_pb2 as pb
from swarmlet.api import store_pb2 as spb
from swarmlet.core import state as st
from swarmlet.core import tasks as tk
from swarmlet.core.index import TaskIndex
from swarmlet.core.scope import Scope
from swarmlet.core.stage import StagePlan, earliest
from swarmlet.core.units import fmt_seconds

DEFAULT_TASK_HISTORY_LIMIT = 5
# A restart window needs the restarts it counts to still be in the store: keep
# up to this many finished tasks per slot when max_attempts exceeds the limit.
MAX_RESTART_HISTORY = 100

TERMINAL = tk.TERMINAL_STATES
_FAILED = frozenset({pb.FAILED, pb.REJECTED})

VerdictKind = Literal["create", "wait", "done", "gave_up"]


def history_limit(snap: st.Snapshot) -> int:
    c = snap.cluster
    if c is not None and c.spec.task_history_limit > 0:
        return int(c.spec.task_history_limit)
    return DEFAULT_TASK_HISTORY_LIMIT


@dataclass(frozen=True)
class Verdict:
    """What to do with a slot (or a global service's node) that has no live task.

    kind: "create" a replacement now (with `attempt` and `avoid`); "wait" (until
    `at` when a restart delay runs, else for the previous task to stop); "done"
    (the task completed and the policy does not restart completed tasks);
    "gave_up" (the policy stopped restarting a failing task: `reason`)."""

    kind: VerdictKind
    attempt: int = 0
    avoid: tuple[str, ...] = ()
    at: float = 0.0
    reason: str = ""
    last: pb.Task | None = None


def restarts_counted(last: pb.Task, slot_tasks: Iterable[pb.Task], window: float) -> int:
    """Restarts that count against max_attempts when `last` ended.

    Without a window, `attempt` on the task is the count. With one, count the
    slot's restart-created tasks (attempt >= 1) created within `window` seconds
    before `last` ended. Measured from the end of `last`, not from now, so the
    verdict never flips later as time passes."""
    if window <= 0:
        return int(last.attempt)
    end = last.status.timestamp
    return sum(1 for t in slot_tasks if t.attempt >= 1 and end - window < t.meta.created_at <= end)


def slot_verdict(
    last: pb.Task | None,
    slot_tasks: Sequence[pb.Task],
    nodes: Mapping[str, pb.Node],
    now: float,
    global_mode: bool = False,
) -> Verdict:
    """Judge a slot with no live task from its newest non-removed task `last`.

    An observed SHUTDOWN state means the task was stopped on request (drain,
    constraint change, update): it is replaced without applying the restart
    condition or max_attempts (the delay still applies, so that a misbehaving
    node cannot make us spin). ORPHANED means lost with its node: replaced at
    once. COMPLETE / FAILED / REJECTED mean it ended on its own: the task's
    restart policy decides."""
    if last is None:
        return Verdict("create")
    s = last.status.state
    avoid = tuple(last.avoid_nodes)
    if s not in TERMINAL:
        node = nodes.get(last.node_id) if last.node_id else None
        if tk.dispatched(last) and node is not None and node.status.state != pb.NodeStatus.DOWN:
            # Shut down on request and still stopping: a replacement now could
            # briefly run both (and collide on resources).
            return Verdict("wait", reason="previous task still stopping", last=last)
        return Verdict("create", attempt=last.attempt, avoid=avoid, last=last)
    rp = last.spec.restart
    if s == pb.ORPHANED:
        # Lost with its node: not the task's fault, no delay (normally the
        # replacement is made in the round that marks it; this is the
        # fallback if that replacement is missing).
        return Verdict("create", attempt=last.attempt, avoid=avoid, last=last)
    if s == pb.SHUTDOWN:
        at = last.status.timestamp + rp.delay
        if now < at:
            return Verdict("wait", at=at, reason="restart delay", last=last)
        return Verdict("create", attempt=last.attempt, avoid=avoid, last=last)
    failed = s in _FAILED
    if rp.condition == pb.RestartPolicy.NONE:
        if failed:
            return Verdict("gave_up", reason="task failed and the restart condition is none", last=last)
        return Verdict("done", reason="task completed (restart condition none)", last=last)
    if rp.condition == pb.RestartPolicy.ON_FAILURE and not failed:
        return Verdict("done", reason="task completed (restart condition on-failure)", last=last)
    if rp.max_attempts:
        n = restarts_counted(last, slot_tasks, rp.window)
        if n >= rp.max_attempts:
            within = f" within {fmt_seconds(rp.window)}" if rp.window > 0 else ""
            return Verdict(
                "gave_up",
                reason=f"restart policy gave up after {n} restart{'s' if n != 1 else ''}{within} (max attempts {rp.max_attempts})",
                last=last,
            )
    at = last.status.timestamp + rp.delay
    if now < at:
        return Verdict("wait", at=at, reason="restart delay", last=last)
    if s == pb.REJECTED and not global_mode and last.node_id and last.node_id not in avoid:
        # The node refused the task (e.g. image missing there): the scheduler
        # should try another one.
        avoid = avoid + (last.node_id,)
    return Verdict("create", attempt=last.attempt + 1, avoid=avoid, last=last)


def restart_candidates(
    tasks: Iterable[pb.Task],
    desired: Callable[[pb.Task], int] | None = None,
    state: Callable[[pb.Task], int] | None = None,
) -> list[pb.Task]:
    """The tasks of a slot a verdict can be based on: ended or shut down, and
    not removed -- except orphans, which are removed but whose slot still
    needs a replacement. `desired` and `state` give effective values (the
    orchestrator passes its own pending changes; readers pass None)."""
    d = desired or (lambda t: t.desired_state)
    s = state or (lambda t: t.status.state)
    out = []
    for t in tasks:
        dt = d(t)
        if dt < pb.REMOVE:
            if dt > pb.RUNNING or s(t) in TERMINAL:
                out.append(t)
        elif s(t) == pb.ORPHANED:
            out.append(t)
    return out


@dataclass
class _Budget:
    """How many more tasks a replicated job may start this round
    (max_concurrent minus those it runs)."""

    left: int


class _SlotPlan:
    """The decisions for one slot of a replicated service, or one node of a
    global service: the desired states to raise, which tasks to mark
    ORPHANED, which to delete, and at most one replacement.

    Two steps: `prepare` judges the tasks there are (and says how many stay
    live), `finish` replaces what is missing, within `budget` for a
    replicated job, and emits the actions."""

    def __init__(self, r: _Round, svc: pb.Service, global_mode: bool, g: tk.Slot) -> None:
        self.r = r
        self.svc = svc
        self.g = g
        self.global_mode = global_mode
        self.job = tk.is_job(svc)
        self.budget: _Budget | None = None
        self.kept: list[pb.Task] = []
        self.lost: list[pb.Task] = []
        # Tasks of a slot that should not exist go (REMOVE); a global
        # service's task on a node it no longer belongs on is stopped
        # (SHUTDOWN), so that the node's history stays visible.
        self.unwanted_desired = pb.SHUTDOWN if self.global_mode and g.node_id else pb.REMOVE
        self.desired: dict[str, pb.TaskState] = {}
        self.orphaned: set[str] = set()
        self.deleted: set[str] = set()
        self.created: list[pb.Task] = []

    # ---- effective values, with this round's changes ----

    def eff(self, t: pb.Task) -> int:
        return self.desired.get(t.id, t.desired_state)

    def state(self, t: pb.Task) -> int:
        return pb.ORPHANED if t.id in self.orphaned else t.status.state

    def want_desired(self, t: pb.Task, state: pb.TaskState) -> None:
        # Desired states only move forward.
        if state > self.eff(t):
            self.desired[t.id] = state

    def node_of(self, t: pb.Task) -> pb.Node | None:
        return self.r.nodes.get(t.node_id) if t.node_id else None

    # ---- the steps, in order ----

    def prepare(self) -> int:
        """Judge the slot's tasks; the number that stay live."""
        healthy, self.lost = self._classify()
        self.kept = self._dedupe(healthy)
        self._reap_unreported()
        return len(self.kept)

    def finish(self, budget: _Budget | None) -> None:
        self.budget = budget
        if self.g.want and not self.kept:
            self._replace(self.lost)
        self._reap_history()
        self._emit()

    def _classify(self) -> tuple[list[pb.Task], list[pb.Task]]:
        """Sort the slot's wanted tasks into healthy ones and ones lost to node
        failure or drain (replaced at once); stop the rest."""
        g = self.g
        healthy: list[pb.Task] = []
        lost: list[pb.Task] = []
        for t in sorted(g.tasks, key=tk.age_key):
            if not tk.wanted(t):
                if not g.want and self.unwanted_desired == pb.REMOVE:
                    self.want_desired(t, pb.REMOVE)  # history of a slot that no longer exists
                continue
            if not tk.of_current_run(t, self.svc):
                # A task of an earlier run of the job: that run is over.
                self.want_desired(t, pb.REMOVE)
                continue
            node = self.node_of(t)
            if tk.is_terminal(t):
                # Ended on its own: stop it for good; the slot's verdict
                # decides on a replacement from the restart policy. A job's
                # task that completed is done: its desired state says so.
                if self.job and g.want and t.status.state == pb.COMPLETE:
                    self.want_desired(t, pb.COMPLETE)
                else:
                    self.want_desired(t, pb.SHUTDOWN if g.want else self.unwanted_desired)
                continue
            if t.node_id and node is None:
                self.want_desired(t, pb.REMOVE)  # node removed: reaped below
                lost.append(t)
                continue
            if node is not None and node.status.state == pb.NodeStatus.DOWN:
                self.orphaned.add(t.id)
                self.want_desired(t, pb.REMOVE)
                lost.append(t)
                continue
            if not g.want:
                self.want_desired(t, self.unwanted_desired)
                continue
            if node is not None and node.spec.availability == pb.NodeSpec.DRAIN and not self.global_mode:
                self.want_desired(t, pb.SHUTDOWN)
                lost.append(t)
                continue
            healthy.append(t)
        return healthy, lost

    def _dedupe(self, healthy: list[pb.Task]) -> list[pb.Task]:
        """Duplicates in a slot: keep the most advanced task of each spec
        version. Tasks of different versions may coexist on purpose (a
        start-first rolling update): that is the updater's business."""
        kept: list[pb.Task] = []
        by_version: dict[int, list[pb.Task]] = defaultdict(list)
        for t in healthy:
            by_version[t.spec_version].append(t)
        for ts in by_version.values():
            best = min(ts, key=lambda t: (-t.status.state, t.meta.created_at, t.id))
            kept.append(best)
            for t in ts:
                if t is not best:
                    self.want_desired(t, pb.REMOVE)
        return kept

    def _reap_unreported(self) -> None:
        """Reaper, part 1: what goes regardless of the slot's verdict. Done
        before the verdict so the verdict sees what the next round will see."""
        for t in self.g.tasks:
            d = self.eff(t)
            if d <= pb.RUNNING:
                continue
            node = self.node_of(t)
            state = self.state(t)
            if t.node_id and node is None:
                self.deleted.add(t.id)  # its node is gone: nobody will report on it
            elif not tk.dispatched(t):
                self.deleted.add(t.id)  # never reached a node: nothing to wait for
            elif d == pb.REMOVE and state in TERMINAL:
                # Keep orphans visible while their node is down (service ps
                # shows what was lost); once it is back or removed they go.
                if not (state == pb.ORPHANED and node is not None and node.status.state == pb.NodeStatus.DOWN):
                    self.deleted.add(t.id)

    def _replace(self, lost: list[pb.Task]) -> None:
        g = self.g
        if lost and not self.global_mode:
            # Node loss and drain are not the task's fault: replace at once,
            # without counting an attempt.
            src = max(lost, key=tk.age_key)
            self._create(src.attempt, tuple(src.avoid_nodes))
            return
        if not g.may_create:
            return
        # A job's earlier runs do not count: its slots start afresh.
        remaining = [t for t in g.tasks if t.id not in self.deleted and tk.of_current_run(t, self.svc)]
        cands = restart_candidates(remaining, self.eff, self.state)
        last = max(cands, key=tk.age_key) if cands else None
        v = slot_verdict(last, remaining, self.r.nodes, self.r.now, self.global_mode)
        if v.kind == "create":
            self._create(v.attempt, v.avoid)
        elif v.kind == "wait" and v.at:
            self.r.wake_at = earliest(self.r.wake_at, v.at)

    def _create(self, attempt: int, avoid: tuple[str, ...]) -> None:
        r, g = self.r, self.g
        if self.budget is not None:
            if self.budget.left <= 0:
                return  # max_concurrent reached: a task ending wakes the next round
            self.budget.left -= 1
        self.created.append(
            tk.new_task(self.svc, r.new_id(), r.now, slot=g.slot, node_id=g.node_id, attempt=attempt, avoid=avoid)
        )

    def _reap_history(self) -> None:
        """Reaper, part 2: task history. Keep the newest finished tasks of the
        slot (the newest is what slot_verdict reads, so it always stays)."""
        keep_n = self.r.limit
        rp = self.svc.spec.task.restart
        if rp.window > 0 and rp.max_attempts:
            keep_n = max(keep_n, min(int(rp.max_attempts), MAX_RESTART_HISTORY))
        history = [t for t in self.g.tasks if t.id not in self.deleted and self.eff(t) > pb.RUNNING and self.state(t) in TERMINAL]
        if len(history) > keep_n:
            history.sort(key=tk.age_key, reverse=True)
            for t in history[keep_n:]:
                self.deleted.add(t.id)

    def _emit(self) -> None:
        actions = self.r.actions
        # Replacements first: the leader may propose a long plan in slices,
        # and a slice that retires a task must not leave its slot looking
        # dead for lack of the replacement in the next slice.
        for t in self.created:
            actions.append(st.put(t, create=True))
        for t in sorted(self.g.tasks, key=tk.age_key):
            if t.id in self.deleted:
                actions.append(st.delete(spb.KIND_TASK, t.id))
                continue
            if t.id in self.orphaned:
                status = pb.TaskStatus()
                status.CopyFrom(t.status)
                status.state = pb.ORPHANED
                status.timestamp = self.r.now
                status.message = "node down"
                # node_id "" = reported by the manager, not by the task's node.
                actions.append(st.set_status(t.id, status, node_id=""))
            if t.id in self.desired:
                actions.append(st.set_desired(t.id, self.desired[t.id]))


@dataclass
class _Round:
    snap: st.Snapshot
    now: float
    new_id: Callable[[], str]
    actions: list[spb.StoreAction] = field(default_factory=list)
    wake_at: float | None = None

    def __post_init__(self) -> None:
        self.nodes = self.snap.nodes
        self.limit = history_limit(self.snap)

    def run(self) -> StagePlan:
        by_service: dict[str, list[pb.Task]] = defaultdict(list)
        for t in self.snap.tasks.values():
            by_service[t.service_id].append(t)
        for sid in sorted(set(by_service) | set(self.snap.services)):
            self._service(sid, by_service.get(sid, []))
        return StagePlan(self.actions, self.wake_at)

    def run_scoped(self, scope: Scope, index: TaskIndex) -> StagePlan:
        """Only the services and slots in `scope` (the incremental round:
        the others' plans are empty, see scope.py). Visits them in the order
        `run` does, so the actions come out in the same order too."""
        snap = self.snap
        for sid in sorted(scope.services | scope.slots.keys()):
            svc = snap.services.get(sid)
            if sid in scope.services or svc is None or tk.service_mode(svc) != "replicated":
                self._service(sid, index.tasks_of(snap, sid))
                continue
            n = int(svc.spec.replicated.replicas)
            for key in sorted(scope.slots[sid]):
                tasks = index.slot_tasks(snap, sid, key)
                want = 1 <= key[0] <= n
                if tasks or want:
                    p = _SlotPlan(self, svc, False, tk.Slot(key[0], "", tasks, want, want))
                    p.prepare()
                    p.finish(None)
        return StagePlan(self.actions, self.wake_at)

    def _service(self, sid: str, tasks: list[pb.Task]) -> None:
        svc = self.snap.services.get(sid)
        if svc is None:
            self._service_gone(tasks)
            return
        global_mode = tk.per_node(svc)
        plans = [_SlotPlan(self, svc, global_mode, g) for g in tk.group_slots(svc, tasks, self.nodes)]
        live = sum(p.prepare() for p in plans)
        budget = None
        if tk.service_mode(svc) == "replicated-job":
            budget = _Budget(max(0, int(svc.spec.replicated_job.max_concurrent or 1) - live))
        for p in plans:
            p.finish(budget)

    def _service_gone(self, tasks: list[pb.Task]) -> None:
        for t in sorted(tasks, key=tk.age_key):
            node = self.nodes.get(t.node_id) if t.node_id else None
            if tk.is_terminal(t) or not tk.dispatched(t) or node is None:
                self.actions.append(st.delete(spb.KIND_TASK, t.id))
            elif t.desired_state < pb.REMOVE:
                # Still running somewhere: its agent stops it, reports, and the
                # next rounds delete it.
                self.actions.append(st.set_desired(t.id, pb.REMOVE))


def orchestrate(
    snap: st.Snapshot, now: float, new_id: Callable[[], str], scope: Scope | None = None, index: TaskIndex | None = None
) -> StagePlan:
    """The store actions that move tasks toward the services' specs, and when
    a restart delay next ends (wake_at). With a `scope` (and the `index` of
    `snap`'s tasks), only the services and slots in it: the incremental
    round's share of the same plan.

    Reads `snap` only. Actions: Puts creating tasks (expected_version 0),
    desired-state and status merges, and unguarded deletes of tasks no agent
    will report on again (terminal, never dispatched, or on a removed node), so
    that concurrent status reports do not make the round conflict."""
    r = _Round(snap, now, new_id)
    if scope is None or index is None:
        return r.run()
    return r.run_scoped(scope, index)
