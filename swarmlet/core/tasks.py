"""The task vocabulary: what a task's states mean, how a new task is built,
and how a service's tasks group into slots. Every stage of the leader round
(orchestrator, updater, allocator, scheduler, endpoints) and every view
speaks it, so each rule is written here once.

A task has two states: `desired_state`, set by the manager (RUNNING, or READY
for a stop-first update's task that is placed but not started yet; then
SHUTDOWN, REMOVE), and `status.state`, reported by its node (NEW .. RUNNING,
then a terminal state). The predicates below combine the two; each name is one
meaning:

  wanted            desired to run (desired <= RUNNING): the slot's task
  is_terminal       its container ended for good (observed terminal state)
  active            wanted and not ended: what a user counts as live
  awaiting_placement  wanted, and not on a node yet (NEW or PENDING)
  dispatched        handed to a node (ASSIGNED or later): only then can an
                    agent report on it
  placed            dispatched, wanted and not ended: it has a container on
                    its node, or is about to (reserves resources there, and
                    its addresses are wired)
  serving           running and meant to: a backend for DNS and VIPs
  holds_addresses   not ended and not to be removed: its addresses stay taken
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from swarmlet.api import objects_pb2 as pb
from swarmlet.core import constraints as cons

TERMINAL_STATES = frozenset({pb.COMPLETE, pb.SHUTDOWN, pb.FAILED, pb.REJECTED, pb.ORPHANED})
# Observed states of a task no node has yet.
_UNPLACED = frozenset({pb.NEW, pb.PENDING})

ServiceMode = Literal["replicated", "global", "replicated-job", "global-job"]
_MODE_NAMES: dict[str | None, ServiceMode] = {
    "replicated": "replicated",
    "global": "global",
    "replicated_job": "replicated-job",
    "global_job": "global-job",
}


# ---- states ----


def wanted(t: pb.Task) -> bool:
    """Desired to run: the task that holds its slot (or node, for a global
    service). The orchestrator keeps one per slot."""
    return t.desired_state <= pb.RUNNING


def is_terminal(t: pb.Task) -> bool:
    return t.status.state in TERMINAL_STATES


def active(t: pb.Task) -> bool:
    """Wanted and not ended: live, as a user means it."""
    return t.desired_state <= pb.RUNNING and t.status.state not in TERMINAL_STATES


def awaiting_placement(t: pb.Task) -> bool:
    """Wanted and on no node yet: the scheduler's work (and the allocator's,
    which gives it addresses first)."""
    return t.desired_state <= pb.RUNNING and t.status.state in _UNPLACED


def dispatched(t: pb.Task) -> bool:
    """Handed to a node: only then can an agent ever report on it, so only then
    is it worth keeping a task until it reports a terminal state."""
    return bool(t.node_id) and t.status.state >= pb.ASSIGNED


def placed(t: pb.Task) -> bool:
    """On its node and still wanted there (dispatched and active): it has a
    container, or is about to. It counts against the node's resources, and its
    addresses are wired (so it is reachable before it reports RUNNING)."""
    # Written out rather than composed: the scheduler asks this of every task
    # in every round.
    s = t.status.state
    return t.desired_state <= pb.RUNNING and s >= pb.ASSIGNED and s not in TERMINAL_STATES and bool(t.node_id)


def serving(t: pb.Task) -> bool:
    """Running and meant to: a DNS answer and VIP backend. A stopping task
    leaves the backends at once."""
    return t.desired_state == pb.RUNNING and t.status.state == pb.RUNNING and bool(t.node_id)


def holds_addresses(t: pb.Task) -> bool:
    """Its network addresses stay taken: it may run, or still runs (a task
    being shut down keeps them until it has stopped)."""
    return not is_terminal(t) and t.desired_state <= pb.SHUTDOWN


def runs_current_spec(t: pb.Task, svc: pb.Service) -> bool:
    """Runs the service's spec. Content counts, not only the version number:
    scaling bumps spec_version without replacing the tasks, and after a
    rollback the old tasks run the current spec again."""
    return t.spec_version == svc.spec_version or t.spec == svc.spec.task


# ---- ordering and words ----


def age_key(t: pb.Task) -> tuple[float, int, str]:
    """Orders a slot's tasks oldest first. created_at is stamped by the stage
    that created the task; attempt breaks ties within a restart chain, the id
    makes it total."""
    return (t.meta.created_at, t.attempt, t.id)


def task_error(t: pb.Task) -> str:
    """What to tell a user about why a task ended."""
    s = t.status
    text = s.err or s.message or pb.TaskState.Name(s.state).lower()
    if s.exit_code and "exit code" not in text:
        text += f" (exit code {s.exit_code})"
    return text


def spec_mode(spec: pb.ServiceSpec) -> ServiceMode:
    """The mode as docker's --mode names it (no mode set: replicated)."""
    return _MODE_NAMES.get(spec.WhichOneof("mode"), "replicated")


def service_mode(svc: pb.Service) -> ServiceMode:
    return spec_mode(svc.spec)


def per_node(svc: pb.Service) -> bool:
    """One task per eligible node (global services and global jobs) rather
    than numbered slots."""
    return service_mode(svc) in ("global", "global-job")


def is_job(svc: pb.Service) -> bool:
    """Its tasks run to completion (replicated-job, global-job)."""
    return service_mode(svc) in ("replicated-job", "global-job")


def of_current_run(t: pb.Task, svc: pb.Service) -> bool:
    """A task of the service's current run: always, but for a job only the
    tasks of its current iteration (every update of a job runs it again;
    earlier runs' tasks are history)."""
    return not is_job(svc) or t.job_iteration == svc.job_status.iteration


# ---- building ----


def new_task(
    svc: pb.Service,
    task_id: str,
    now: float,
    *,
    slot: int,
    node_id: str = "",
    desired: pb.TaskState = pb.RUNNING,
    attempt: int = 0,
    avoid: Sequence[str] = (),
    message: str = "created",
) -> pb.Task:
    """A NEW task running the service's current spec in `slot` (replicated)
    or on `node_id` (global, slot 0). `attempt` counts restarts in the slot;
    `avoid` lists nodes that rejected the slot's earlier tasks."""
    t = pb.Task(
        id=task_id,
        service_id=svc.id,
        service_name=svc.spec.name,
        slot=slot,
        node_id=node_id,
        spec_version=svc.spec_version,
        desired_state=desired,
        attempt=attempt,
    )
    t.spec.CopyFrom(svc.spec.task)
    # Templates ({{.Service.Labels}}) expand on the node, which sees tasks only.
    t.service_labels.update(svc.spec.labels)
    if is_job(svc):
        t.job_iteration = svc.job_status.iteration
    t.status.timestamp = now
    t.status.state = pb.NEW
    t.status.message = message
    t.avoid_nodes.extend(avoid)
    # age_key orders restart chains by this; apply_batch keeps it.
    t.meta.created_at = now
    return t


# ---- slots ----


def global_node_fit(
    node: pb.Node, constraints: Sequence[cons.Constraint] | None, platforms: Sequence[tuple[str, str]] = ()
) -> tuple[bool, bool]:
    """(keep, create) for a global service on `node`: keep its existing task
    there, and may create a new one. A paused node keeps what it runs but gets
    nothing new; a drained, down or non-matching node (constraints or the
    image's platforms) keeps nothing; with unparsable constraints (None) no
    node does."""
    if constraints is None:
        return False, False
    if node.status.state == pb.NodeStatus.DOWN or node.spec.availability == pb.NodeSpec.DRAIN:
        return False, False
    if not cons.matches(constraints, node) or not cons.platform_matches(platforms, node):
        return False, False
    return True, node.spec.availability != pb.NodeSpec.PAUSE


@dataclass(slots=True)
class Slot:
    """One place a service keeps a task: slot 1..N of a replicated service,
    or one node of a global service (slot 0)."""

    slot: int
    node_id: str  # global services: the node; preset on tasks created here
    tasks: list[pb.Task]
    want: bool  # should hold a task (a replicated slot <= replicas; a node the global service stays on)
    may_create: bool  # may get a new task (a paused node keeps its task but gets no new one)


def group_slots(svc: pb.Service, tasks: Iterable[pb.Task], nodes: Mapping[str, pb.Node]) -> list[Slot]:
    """Every place that holds or should hold a task of `svc`, in a stable
    order, with the service's tasks in it.

    Replicated: slots 1..replicas, then surplus slots that still have tasks
    (want=False); a replicated job has slots 1..total_completions. Global
    (and global jobs): every node of the cluster and every node a task is on
    (a removed node: want=False), then, if any, one group of stray tasks that
    are bound to no node (slot 0, node "", want=False)."""
    if per_node(svc):
        constraints = cons.parse_placement(svc.spec.task)
        platforms = cons.platform_pairs(svc.spec.task.placement)
        by_node: dict[str, list[pb.Task]] = defaultdict(list)
        stray: list[pb.Task] = []
        for t in tasks:
            if t.slot == 0 and t.node_id:
                by_node[t.node_id].append(t)
            else:
                stray.append(t)
        out = []
        for nid in sorted(set(nodes) | set(by_node)):
            node = nodes.get(nid)
            keep, create = global_node_fit(node, constraints, platforms) if node is not None else (False, False)
            out.append(Slot(0, nid, by_node.get(nid, []), keep, create))
        if stray:
            out.append(Slot(0, "", stray, False, False))
        return out
    n = slot_count(svc)
    by_slot: dict[int, list[pb.Task]] = defaultdict(list)
    for t in tasks:
        by_slot[t.slot].append(t)
    result = []
    for s in sorted(set(range(1, n + 1)) | set(by_slot)):
        want = 1 <= s <= n
        result.append(Slot(s, "", by_slot.get(s, []), want, want))
    return result


def slot_count(svc: pb.Service) -> int:
    """Numbered slots of a replicated service (its replicas) or job (its
    completions); 0 for per-node modes."""
    mode = service_mode(svc)
    if mode == "replicated":
        return int(svc.spec.replicated.replicas)
    if mode == "replicated-job":
        return int(svc.spec.replicated_job.total_completions)
    return 0


def expected_slots(svc: pb.Service, tasks: Iterable[pb.Task], nodes: Mapping[str, pb.Node]) -> list[Slot]:
    """The slots a user should see a task in: replicated slots 1..N; for a
    global service the nodes that get a task, and paused nodes that still run
    one (a paused node gets nothing new, so one whose task ended is not
    waited for)."""
    return [s for s in group_slots(svc, tasks, nodes) if s.may_create or (s.want and any(active(t) for t in s.tasks))]
