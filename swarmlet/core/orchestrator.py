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
  reaped down to the cluster's task history limit.

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

from swarmlet.api import objects_pb2 as pb
from swarmlet.api import store_pb2 as spb
from swarmlet.core import constraints as cons
from swarmlet.core import state as st
from swarmlet.core.units import fmt_seconds

DEFAULT_TASK_HISTORY_LIMIT = 5
# A restart window needs the restarts it counts to still be in the store: keep
# up to this many finished tasks per slot when max_attempts exceeds the limit.
MAX_RESTART_HISTORY = 100

TERMINAL = st.TERMINAL_STATES
_FAILED = frozenset({pb.FAILED, pb.REJECTED})


def is_live(t: pb.Task) -> bool:
    """Meant to run: the orchestrator counts these per slot."""
    return t.desired_state <= pb.RUNNING


def dispatched(t: pb.Task) -> bool:
    """Handed to a node: only then can an agent ever report on it, so only then
    is it worth keeping a non-live task until it reports a terminal state."""
    return bool(t.node_id) and t.status.state >= pb.ASSIGNED


def age_key(t: pb.Task) -> tuple[float, int, str]:
    """Orders a slot's tasks oldest first. created_at is stamped by the
    orchestrator that created the task; attempt breaks ties within a restart
    chain, the id makes it total."""
    return (t.meta.created_at, t.attempt, t.id)


def history_limit(snap: st.Snapshot) -> int:
    c = snap.cluster
    if c is not None and c.spec.task_history_limit > 0:
        return int(c.spec.task_history_limit)
    return DEFAULT_TASK_HISTORY_LIMIT


def task_error(t: pb.Task) -> str:
    """What to tell a user about why a task ended."""
    s = t.status
    text = s.err or s.message or pb.TaskState.Name(s.state).lower()
    if s.exit_code and "exit code" not in text:
        text += f" (exit code {s.exit_code})"
    return text


@dataclass(frozen=True)
class Verdict:
    """What to do with a slot (or a global service's node) that has no live task.

    kind: "create" a replacement now (with `attempt` and `avoid`); "wait" (until
    `at` when a restart delay runs, else for the previous task to stop); "done"
    (the task completed and the policy does not restart completed tasks);
    "gave_up" (the policy stopped restarting a failing task: `reason`)."""

    kind: str
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
        if dispatched(last) and node is not None and node.status.state != pb.NodeStatus.DOWN:
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


def parse_placement(spec: pb.TaskSpec) -> list[cons.Constraint] | None:
    """The spec's constraints, or None when one is invalid (validation should
    have refused it; then no node is eligible rather than every node)."""
    try:
        return cons.parse_constraints(spec.placement.constraints)
    except cons.ConstraintError:
        return None


def global_node_fit(node: pb.Node, constraints: list[cons.Constraint] | None) -> tuple[bool, bool]:
    """(keep, create) for a global service on `node`: keep its existing task
    there, and may create a new one. A paused node keeps what it runs but gets
    nothing new; a drained, down or non-matching node keeps nothing."""
    if constraints is None:
        return False, False
    if node.status.state == pb.NodeStatus.DOWN or node.spec.availability == pb.NodeSpec.DRAIN:
        return False, False
    if not cons.matches(constraints, node):
        return False, False
    return True, node.spec.availability != pb.NodeSpec.PAUSE


def service_mode(svc: pb.Service) -> str:
    return "global" if svc.spec.WhichOneof("mode") == "global" else "replicated"


@dataclass
class _Group:
    """One slot of a replicated service, or one node of a global service."""

    tasks: list[pb.Task]
    want: bool  # should have a live task
    may_create: bool  # may create one (a paused node keeps but gets nothing new)
    slot: int
    node_id: str  # preset on created tasks (global services)
    global_mode: bool
    unwanted_desired: int  # REMOVE for surplus slots; SHUTDOWN for ineligible nodes


@dataclass
class _Round:
    snap: st.Snapshot
    now: float
    new_id: Callable[[], str]
    actions: list[spb.StoreAction] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.nodes = self.snap.nodes
        self.limit = history_limit(self.snap)

    # ---- per service ----

    def run(self) -> list[spb.StoreAction]:
        by_service: dict[str, list[pb.Task]] = defaultdict(list)
        for t in self.snap.tasks.values():
            by_service[t.service_id].append(t)
        for sid in sorted(set(by_service) | set(self.snap.services)):
            svc = self.snap.services.get(sid)
            tasks = by_service.get(sid, [])
            if svc is None:
                self._service_gone(tasks)
            elif service_mode(svc) == "global":
                self._global(svc, tasks)
            else:
                self._replicated(svc, tasks)
        return self.actions

    def _service_gone(self, tasks: list[pb.Task]) -> None:
        for t in sorted(tasks, key=age_key):
            node = self.nodes.get(t.node_id) if t.node_id else None
            if t.status.state in TERMINAL or not dispatched(t) or node is None:
                self.actions.append(st.delete(spb.KIND_TASK, t.id))
            elif t.desired_state < pb.REMOVE:
                # Still running somewhere: its agent stops it, reports, and the
                # next rounds delete it.
                self.actions.append(st.set_desired(t.id, pb.REMOVE))

    def _replicated(self, svc: pb.Service, tasks: list[pb.Task]) -> None:
        n = int(svc.spec.replicated.replicas)
        by_slot: dict[int, list[pb.Task]] = defaultdict(list)
        for t in tasks:
            by_slot[t.slot].append(t)
        slots = set(range(1, n + 1)) | set(by_slot)
        for slot in sorted(slots):
            want = 1 <= slot <= n
            self._group(svc, _Group(by_slot.get(slot, []), want, want, slot, "", False, pb.REMOVE))

    def _global(self, svc: pb.Service, tasks: list[pb.Task]) -> None:
        constraints = parse_placement(svc.spec.task)
        by_node: dict[str, list[pb.Task]] = defaultdict(list)
        stray: list[pb.Task] = []
        for t in tasks:
            if t.slot == 0 and t.node_id:
                by_node[t.node_id].append(t)
            else:
                stray.append(t)  # not a global task (no node): remove
        for nid in sorted(set(self.nodes) | set(by_node)):
            node = self.nodes.get(nid)
            keep, create = global_node_fit(node, constraints) if node is not None else (False, False)
            self._group(svc, _Group(by_node.get(nid, []), keep, create, 0, nid, True, pb.SHUTDOWN))
        if stray:
            self._group(svc, _Group(stray, False, False, 0, "", True, pb.REMOVE))

    # ---- per slot / node ----

    def _group(self, svc: pb.Service, g: _Group) -> None:
        desired: dict[str, int] = {}
        orphaned: set[str] = set()
        deleted: set[str] = set()

        def eff(t: pb.Task) -> int:
            return desired.get(t.id, t.desired_state)

        def want_desired(t: pb.Task, state: int) -> None:
            if state > eff(t):
                desired[t.id] = state

        healthy: list[pb.Task] = []
        lost: list[pb.Task] = []  # lost to node failure or drain: replaced at once
        for t in sorted(g.tasks, key=age_key):
            if not is_live(t):
                if not g.want and g.unwanted_desired == pb.REMOVE:
                    want_desired(t, pb.REMOVE)  # history of a slot that no longer exists
                continue
            node = self.nodes.get(t.node_id) if t.node_id else None
            if t.status.state in TERMINAL:
                # Ended on its own: stop it for good; slot_verdict below decides
                # on a replacement from the restart policy.
                want_desired(t, pb.SHUTDOWN if g.want else g.unwanted_desired)
                continue
            if t.node_id and node is None:
                want_desired(t, pb.REMOVE)  # node removed: reaped below
                lost.append(t)
                continue
            if node is not None and node.status.state == pb.NodeStatus.DOWN:
                orphaned.add(t.id)
                want_desired(t, pb.REMOVE)
                lost.append(t)
                continue
            if not g.want:
                want_desired(t, g.unwanted_desired)
                continue
            if node is not None and node.spec.availability == pb.NodeSpec.DRAIN and not g.global_mode:
                want_desired(t, pb.SHUTDOWN)
                lost.append(t)
                continue
            healthy.append(t)

        # Duplicates in a slot: keep the most advanced task of each spec
        # version. Tasks of different versions may coexist on purpose (a
        # start-first rolling update): that is the updater's business.
        kept: list[pb.Task] = []
        by_version: dict[int, list[pb.Task]] = defaultdict(list)
        for t in healthy:
            by_version[t.spec_version].append(t)
        for ts in by_version.values():
            best = min(ts, key=lambda t: (-t.status.state, t.meta.created_at, t.id))
            kept.append(best)
            for t in ts:
                if t is not best:
                    want_desired(t, pb.REMOVE)

        # Reaper, part 1: what goes regardless of the slot's verdict. Done
        # before the verdict so the verdict sees what the next round will see.
        for t in g.tasks:
            d = eff(t)
            if d <= pb.RUNNING:
                continue
            node = self.nodes.get(t.node_id) if t.node_id else None
            state = pb.ORPHANED if t.id in orphaned else t.status.state
            if t.node_id and node is None:
                deleted.add(t.id)  # its node is gone: nobody will report on it
            elif not dispatched(t):
                deleted.add(t.id)  # never reached a node: nothing to wait for
            elif d == pb.REMOVE and state in TERMINAL:
                # Keep orphans visible while their node is down (service ps
                # shows what was lost); once it is back or removed they go.
                if not (state == pb.ORPHANED and node is not None and node.status.state == pb.NodeStatus.DOWN):
                    deleted.add(t.id)

        created: list[pb.Task] = []
        if g.want and not kept:
            if lost and not g.global_mode:
                # Node loss and drain are not the task's fault: replace at
                # once, without counting an attempt.
                src = max(lost, key=age_key)
                created.append(self._new_task(svc, g, src.attempt, tuple(src.avoid_nodes)))
            elif g.may_create:
                remaining = [t for t in g.tasks if t.id not in deleted]
                cands = restart_candidates(remaining, eff, lambda t: pb.ORPHANED if t.id in orphaned else t.status.state)
                last = max(cands, key=age_key) if cands else None
                v = slot_verdict(last, remaining, self.nodes, self.now, g.global_mode)
                if v.kind == "create":
                    created.append(self._new_task(svc, g, v.attempt, v.avoid))

        # Reaper, part 2: task history. Keep the newest finished tasks of the
        # slot (the newest is what slot_verdict reads, so it always stays).
        keep_n = self.limit
        rp = svc.spec.task.restart
        if rp.window > 0 and rp.max_attempts:
            keep_n = max(keep_n, min(int(rp.max_attempts), MAX_RESTART_HISTORY))
        history = [
            t
            for t in g.tasks
            if t.id not in deleted and eff(t) > pb.RUNNING and (pb.ORPHANED if t.id in orphaned else t.status.state) in TERMINAL
        ]
        if len(history) > keep_n:
            history.sort(key=age_key, reverse=True)
            for t in history[keep_n:]:
                deleted.add(t.id)

        # Replacements first: the leader may propose a long plan in slices,
        # and a slice that retires a task must not leave its slot looking
        # dead for lack of the replacement in the next slice.
        for t in created:
            self.actions.append(st.put(t, create=True))
        for t in sorted(g.tasks, key=age_key):
            if t.id in deleted:
                self.actions.append(st.delete(spb.KIND_TASK, t.id))
                continue
            if t.id in orphaned:
                status = pb.TaskStatus()
                status.CopyFrom(t.status)
                status.state = pb.ORPHANED
                status.timestamp = self.now
                status.message = "node down"
                # node_id "" = reported by the manager, not by the task's node.
                self.actions.append(st.set_status(t.id, status, node_id=""))
            if t.id in desired:
                self.actions.append(st.set_desired(t.id, desired[t.id]))

    def _new_task(self, svc: pb.Service, g: _Group, attempt: int, avoid: tuple[str, ...]) -> pb.Task:
        t = pb.Task(
            id=self.new_id(),
            service_id=svc.id,
            service_name=svc.spec.name,
            slot=g.slot,
            node_id=g.node_id,
            spec_version=svc.spec_version,
            desired_state=pb.RUNNING,
            attempt=attempt,
        )
        t.spec.CopyFrom(svc.spec.task)
        t.status.timestamp = self.now
        t.status.state = pb.NEW
        t.status.message = "created"
        t.avoid_nodes.extend(avoid)
        # age_key orders restart chains by this; apply_batch keeps it.
        t.meta.created_at = self.now
        return t


def orchestrate(snap: st.Snapshot, now: float, new_id: Callable[[], str]) -> list[spb.StoreAction]:
    """The store actions that move tasks toward the services' specs.

    Reads `snap` only. Actions: Puts creating tasks (expected_version 0),
    desired-state and status merges, and unguarded deletes of tasks no agent
    will report on again (terminal, never dispatched, or on a removed node), so
    that concurrent status reports do not make the round conflict."""
    return _Round(snap, now, new_id).run()
