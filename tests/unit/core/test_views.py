"""core/views: how far a service is from its spec, why it is stuck, where its
update stands -- what Control.ServiceProgress answers and the CLI renders."""

from __future__ import annotations

import itertools

import pytest

from swarmlet.api import control_pb2 as cpb
from swarmlet.api import objects_pb2 as pb
from swarmlet.core import state as st
from swarmlet.core import views

US = pb.UpdateStatus
Phase = cpb.ServiceProgressResponse.UpdatePhase
NOW = 1000.0
_ids = itertools.count(1)


def service(
    replicas: int | None = 3,
    *,
    version: int = 1,
    delay: float = 5.0,
    condition: int = pb.RestartPolicy.ANY,
    max_attempts: int = 0,
) -> pb.Service:
    spec = pb.ServiceSpec(name="web")
    if replicas is None:
        getattr(spec, "global").SetInParent()
    else:
        spec.replicated.replicas = replicas
    spec.task.container.image = "nginx"
    spec.task.restart.delay = delay
    spec.task.restart.condition = condition
    spec.task.restart.max_attempts = max_attempts
    return pb.Service(id="svc", spec=spec, spec_version=version)


def task(
    svc: pb.Service,
    slot: int,
    state: int,
    *,
    desired: int = pb.RUNNING,
    version: int | None = None,
    err: str = "",
    node: str = "n1",
    attempt: int = 0,
    ended: float = NOW - 100,
) -> pb.Task:
    n = next(_ids)
    t = pb.Task(
        id=f"t{n:04d}",
        service_id=svc.id,
        service_name=svc.spec.name,
        slot=slot,
        node_id=node,
        spec=svc.spec.task,
        spec_version=svc.spec_version if version is None else version,
        desired_state=desired,
        attempt=attempt,
        meta=pb.Meta(created_at=float(n)),
        status=pb.TaskStatus(state=state, err=err, timestamp=ended),
    )
    return t


def node(
    nid: str, *, availability: int = pb.NodeSpec.ACTIVE, state: int = pb.NodeStatus.READY, labels: dict[str, str] | None = None
) -> pb.Node:
    n = pb.Node(id=nid, status=pb.NodeStatus(state=state))
    n.spec.availability = availability
    n.spec.labels.update(labels or {})
    n.description.hostname = f"host-{nid}"
    return n


def snap(svc: pb.Service, tasks: list[pb.Task], nodes: list[pb.Node] | None = None) -> st.Snapshot:
    return st.Snapshot(
        services={svc.id: svc},
        tasks={t.id: t for t in tasks},
        nodes={n.id: n for n in (nodes if nodes is not None else [node("n1"), node("n2")])},
    )


def progress(svc: pb.Service, tasks: list[pb.Task], nodes: list[pb.Node] | None = None) -> cpb.ServiceProgressResponse:
    return views.service_progress(snap(svc, tasks, nodes), svc.id, NOW)


# ---- replicated ----


def test_converged_when_every_slot_runs_the_current_spec() -> None:
    svc = service(3)
    p = progress(svc, [task(svc, s, pb.RUNNING) for s in (1, 2, 3)])
    assert p.converged and not p.stuck
    assert (p.running, p.desired) == (3, 3)
    assert [s.slot for s in p.slots] == [1, 2, 3]
    assert all(s.live and s.settled and s.current and s.has_task and not s.stuck for s in p.slots)
    assert p.slots[0].node_name == "host-n1"


def test_not_converged_while_starting_or_missing() -> None:
    svc = service(3)
    p = progress(svc, [task(svc, 1, pb.RUNNING), task(svc, 2, pb.STARTING)])
    assert not p.converged and p.running == 1
    assert [s.state for s in p.slots[:2]] == [pb.RUNNING, pb.STARTING]
    assert not p.slots[2].has_task and not p.slots[2].task_id


def test_a_task_of_an_older_spec_does_not_count() -> None:
    svc = service(1, version=2)
    old = task(svc, 1, pb.RUNNING, version=1)
    old.spec.container.image = "nginx:old"
    p = progress(svc, [old])
    assert not p.converged and p.running == 0
    assert p.slots[0].live and not p.slots[0].current


def test_scaling_keeps_tasks_whose_spec_is_equal() -> None:
    # Scaling bumps spec_version but the running tasks still run the current spec.
    svc = service(2, version=5)
    p = progress(svc, [task(svc, 1, pb.RUNNING, version=4), task(svc, 2, pb.RUNNING, version=5)])
    assert p.converged and p.running == 2


def test_tasks_beyond_the_replicas_are_ignored_when_scaling_down() -> None:
    svc = service(1)
    p = progress(svc, [task(svc, 1, pb.RUNNING), task(svc, 2, pb.RUNNING, desired=pb.SHUTDOWN)])
    assert p.converged and p.desired == 1 and len(p.slots) == 1


def test_zero_replicas_converge_at_once() -> None:
    p = progress(service(0), [])
    assert p.converged and p.desired == 0 and not p.stuck


def test_a_restarted_slot_shows_its_replacement() -> None:
    svc = service(1)
    new = task(svc, 1, pb.RUNNING, attempt=1)
    p = progress(svc, [task(svc, 1, pb.FAILED, desired=pb.SHUTDOWN, err="exit 1"), new])
    assert p.converged and p.slots[0].task_id == new.id and p.slots[0].attempt == 1


def test_the_new_spec_task_stands_for_the_slot_during_an_update() -> None:
    # start-first: the old task still runs while the new one starts.
    svc = service(1, version=2)
    old = task(svc, 1, pb.RUNNING, version=1)
    old.spec.container.image = "nginx:old"
    new = task(svc, 1, pb.STARTING)
    p = progress(svc, [old, new])
    assert p.slots[0].task_id == new.id and p.slots[0].current and not p.converged


def test_a_task_held_at_desired_ready_is_live() -> None:
    svc = service(1)
    p = progress(svc, [task(svc, 1, pb.READY, desired=pb.READY)])
    assert p.slots[0].live and p.slots[0].desired_state == pb.READY and not p.slots[0].settled


# ---- stuck ----


def test_a_pending_task_with_a_scheduling_error_is_stuck() -> None:
    svc = service(2)
    err = "no suitable node (1 node not available)"
    p = progress(svc, [task(svc, 1, pb.RUNNING), task(svc, 2, pb.PENDING, err=err, node="")])
    assert p.slots[1].stuck == err and not p.slots[0].stuck
    assert p.stuck == f"1 task pending: {err}"
    assert not p.converged


def test_pending_without_an_error_is_just_waiting() -> None:
    svc = service(1)
    p = progress(svc, [task(svc, 1, pb.PENDING, node="")])
    assert not p.slots[0].stuck and not p.stuck and not p.converged


def test_a_failed_task_awaiting_its_restart_is_not_stuck() -> None:
    # The restart policy replaces it (after its delay): nothing is stuck, at
    # any time, even though no task is live.
    svc = service(1, delay=5.0)
    failed = task(svc, 1, pb.FAILED, err="task: non-zero exit (1)", ended=NOW - 1)
    for now in (NOW, NOW + 3600):
        p = views.service_progress(snap(svc, [failed]), svc.id, now)
        sp = p.slots[0]
        assert (sp.live, sp.settled, sp.stuck, sp.state) == (False, False, "", pb.FAILED)
        assert sp.err == "task: non-zero exit (1)"
        assert not p.stuck and not p.converged


def test_a_slot_whose_restart_policy_gave_up_is_stuck() -> None:
    svc = service(1, max_attempts=1)
    tasks = [
        task(svc, 1, pb.FAILED, desired=pb.SHUTDOWN, err="task: non-zero exit (1)"),
        task(svc, 1, pb.FAILED, desired=pb.SHUTDOWN, err="task: non-zero exit (1)", attempt=1),
    ]
    p = progress(svc, tasks)
    reason = "restart policy gave up after 1 restart (max attempts 1); last error: task: non-zero exit (1)"
    assert p.slots[0].stuck == reason and p.slots[0].task_id == tasks[1].id
    assert p.stuck == f"slot 1: {reason}"
    assert views.stuck_reason(snap(svc, tasks), svc.id, NOW) == p.stuck


def test_a_failure_under_restart_condition_none_is_stuck() -> None:
    svc = service(1, condition=pb.RestartPolicy.NONE)
    p = progress(svc, [task(svc, 1, pb.REJECTED, err="image not found")])
    assert p.slots[0].stuck == "task failed and the restart condition is none; last error: image not found"


def test_a_completed_task_not_restarted_is_settled() -> None:
    svc = service(1, condition=pb.RestartPolicy.ON_FAILURE)
    p = progress(svc, [task(svc, 1, pb.COMPLETE)])
    assert p.converged and p.running == 0
    assert p.slots[0].settled and not p.slots[0].live and not p.slots[0].stuck


def test_an_unknown_service_is_a_key_error() -> None:
    with pytest.raises(KeyError):
        views.service_progress(st.Snapshot(), "nope")


# ---- global ----


def test_global_converges_per_eligible_node() -> None:
    svc = service(None)
    p = progress(svc, [task(svc, 0, pb.RUNNING, node="n1"), task(svc, 0, pb.RUNNING, node="n2")])
    assert p.converged and (p.running, p.desired) == (2, 2)
    assert [(s.slot, s.node_id, s.node_name) for s in p.slots] == [(0, "n1", "host-n1"), (0, "n2", "host-n2")]


def test_global_waits_for_an_eligible_node_without_its_task() -> None:
    svc = service(None)
    p = progress(svc, [task(svc, 0, pb.RUNNING, node="n1")])
    assert not p.converged and p.desired == 2
    assert p.slots[1].node_id == "n2" and not p.slots[1].has_task


def test_global_ignores_nodes_it_may_not_run_on() -> None:
    svc = service(None)
    nodes = [
        node("n1"),
        node("drained", availability=pb.NodeSpec.DRAIN),
        node("down", state=pb.NodeStatus.DOWN),
        node("paused", availability=pb.NodeSpec.PAUSE),
    ]
    tasks = [task(svc, 0, pb.RUNNING, node="n1"), task(svc, 0, pb.SHUTDOWN, desired=pb.SHUTDOWN, node="drained")]
    p = progress(svc, tasks, nodes)
    assert p.converged and [s.node_id for s in p.slots] == ["n1"]


def test_global_keeps_a_paused_nodes_running_task() -> None:
    svc = service(None)
    nodes = [node("n1"), node("paused", availability=pb.NodeSpec.PAUSE)]
    p = progress(svc, [task(svc, 0, pb.RUNNING, node="n1"), task(svc, 0, pb.RUNNING, node="paused")], nodes)
    assert p.converged and p.desired == 2


def test_global_with_no_eligible_node_is_stuck_not_converged() -> None:
    svc = service(None)
    svc.spec.task.placement.constraints.append("node.labels.disk==ssd")
    p = progress(svc, [], [node("n1")])
    assert (p.desired, p.converged, p.stuck) == (0, False, views.NO_ELIGIBLE_NODE)
    p = progress(svc, [], [node("n1", labels={"disk": "ssd"})])
    assert (p.desired, p.converged, p.stuck) == (1, False, "")


# ---- updates ----


@pytest.mark.parametrize(
    "status,phase",
    [
        (US(), Phase.NO_UPDATE),
        (US(state=US.UPDATING), Phase.IN_PROGRESS),
        (US(state=US.ROLLBACK_STARTED), Phase.IN_PROGRESS),
        (US(state=US.UPDATING, canaries_ready=True), Phase.AWAITING_PROMOTION),
        (US(state=US.UPDATING, canaries_ready=True, promoted=True), Phase.IN_PROGRESS),
        (US(state=US.PAUSED), Phase.PAUSED),
        (US(state=US.ROLLBACK_PAUSED), Phase.PAUSED),
        (US(state=US.COMPLETED), Phase.COMPLETED),
        (US(state=US.ROLLBACK_COMPLETED), Phase.ROLLED_BACK),
    ],
)
def test_update_phase(status: pb.UpdateStatus, phase: int) -> None:
    svc = service(1)
    svc.update_status.CopyFrom(status)
    assert views.update_phase(svc) == phase
    assert progress(svc, []).update_phase == phase


# ---- why tasks wait (service ps, issue 16) ----


def test_waiting_reasons_say_why_each_task_waits() -> None:
    svc = service(4, delay=5.0, max_attempts=1)
    err = "no suitable node (2 nodes: 2 drained)"
    pending = task(svc, 1, pb.PENDING, err=err, node="")
    held = task(svc, 2, pb.ASSIGNED, desired=pb.READY)  # a stop-first update's new task
    delayed = task(svc, 3, pb.FAILED, err="task: non-zero exit (1)", ended=NOW - 1)
    gave_up = [
        task(svc, 4, pb.FAILED, desired=pb.SHUTDOWN, err="task: non-zero exit (2)"),
        task(svc, 4, pb.FAILED, desired=pb.SHUTDOWN, err="task: non-zero exit (2)", attempt=1),
    ]
    running = task(svc, 5, pb.RUNNING)  # beyond the replicas: not a slot
    s = snap(svc, [pending, held, delayed, *gave_up, running])
    why = views.waiting_reasons(s, svc.id, NOW)
    assert why[pending.id] == err
    assert why[held.id] == "waiting for the slot's previous task to stop (stop-first update)"
    assert why[delayed.id] == "restart delay: replaced in 4s"
    assert why[gave_up[1].id].startswith(
        "restart policy gave up after 1 restart (max attempts 1); last error: task: non-zero exit (2)"
    )
    assert set(why) == {pending.id, held.id, delayed.id, gave_up[1].id}
    with pytest.raises(KeyError):
        views.waiting_reasons(s, "nope", NOW)
