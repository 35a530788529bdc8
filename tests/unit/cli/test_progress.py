"""The convergence / failure decision behind `service create|scale` progress, and
its rendering, without a daemon."""

from __future__ import annotations

import io

from swarmlet.api import objects_pb2 as pb
from swarmlet.cli import progress
from swarmlet.cli.progress import Renderer, Verdict, evaluate, render


def _service(replicas: int | None = 3, version: int = 1, delay: float = 5.0, condition: int = pb.RestartPolicy.ANY) -> pb.Service:
    spec = pb.ServiceSpec(name="web")
    if replicas is None:
        getattr(spec, "global").SetInParent()
    else:
        spec.replicated.replicas = replicas
    spec.task.container.image = "nginx"
    spec.task.restart.delay = delay
    spec.task.restart.condition = condition
    return pb.Service(id="svc", spec=spec, spec_version=version)


_counter = [0]


def _task(
    svc: pb.Service,
    slot: int,
    state: int,
    *,
    desired: int = pb.RUNNING,
    version: int | None = None,
    err: str = "",
    node: str = "n1",
    created: float | None = None,
    tid: str | None = None,
) -> pb.Task:
    _counter[0] += 1
    return pb.Task(
        id=tid or f"t{_counter[0]}",
        service_id=svc.id,
        service_name=svc.spec.name,
        slot=slot,
        node_id=node,
        spec=svc.spec.task,
        spec_version=svc.spec_version if version is None else version,
        desired_state=desired,
        meta=pb.Meta(created_at=float(_counter[0]) if created is None else created),
        status=pb.TaskStatus(state=state, err=err),
    )


def _run(svc: pb.Service, tasks: list[pb.Task], times: list[float], grace: float = 3.0) -> Verdict:
    """Evaluate repeatedly at the given times, feeding `since` back like watch() does."""
    since: dict[str, float] = {}
    v = None
    for now in times:
        v = evaluate(svc, tasks, now, since, {"n1": "host-1"}, grace)
        since = v.since
    assert v is not None
    return v


def test_converged_when_every_slot_runs_current_spec() -> None:
    svc = _service(3)
    tasks = [_task(svc, s, pb.RUNNING) for s in (1, 2, 3)]
    v = evaluate(svc, tasks, 0.0, {})
    assert v.converged and v.failure is None
    assert (v.running, v.desired) == (3, 3)
    assert [ln.label for ln in v.lines] == ["1/3", "2/3", "3/3"]


def test_not_converged_while_starting_or_missing() -> None:
    svc = _service(3)
    tasks = [_task(svc, 1, pb.RUNNING), _task(svc, 2, pb.STARTING)]
    v = evaluate(svc, tasks, 0.0, {})
    assert not v.done
    assert v.running == 1
    assert [ln.state for ln in v.lines] == ["running", "starting", ""]


def test_old_spec_task_does_not_count() -> None:
    svc = _service(1, version=2)
    old = _task(svc, 1, pb.RUNNING, version=1)
    old.spec.container.image = "nginx:old"
    assert not evaluate(svc, [old], 0.0, {}).converged


def test_scaled_service_counts_tasks_with_equal_spec() -> None:
    # Scaling bumps spec_version but the running tasks are still the current spec.
    svc = _service(2, version=5)
    tasks = [_task(svc, 1, pb.RUNNING, version=4), _task(svc, 2, pb.RUNNING, version=5)]
    assert evaluate(svc, tasks, 0.0, {}).converged


def test_tasks_beyond_replicas_are_ignored_when_scaling_down() -> None:
    svc = _service(1)
    tasks = [_task(svc, 1, pb.RUNNING), _task(svc, 2, pb.RUNNING, desired=pb.SHUTDOWN)]
    v = evaluate(svc, tasks, 0.0, {})
    assert v.converged and v.desired == 1


def test_zero_replicas_converge_immediately() -> None:
    v = evaluate(_service(0), [], 0.0, {})
    assert v.converged and v.desired == 0


def test_restarted_slot_uses_newest_live_task() -> None:
    svc = _service(1)
    tasks = [
        _task(svc, 1, pb.FAILED, desired=pb.SHUTDOWN, err="exit 1"),
        _task(svc, 1, pb.RUNNING),
    ]
    assert evaluate(svc, tasks, 0.0, {}).converged


def test_pending_with_error_fails_after_grace() -> None:
    svc = _service(1)
    tasks = [_task(svc, 1, pb.PENDING, err="no suitable node (1 node not available)", node="")]
    assert _run(svc, tasks, [0.0, 1.0, 2.9]).failure is None
    v = _run(svc, tasks, [0.0, 1.0, 3.0])
    assert v.failure == "web.1: no suitable node (1 node not available)"
    assert v.lines[0].err.startswith("no suitable node")


def test_pending_error_timer_resets_when_condition_clears() -> None:
    svc = _service(1)
    pend = [_task(svc, 1, pb.PENDING, err="no suitable node", node="", tid="p")]
    v1 = evaluate(svc, pend, 0.0, {})
    cleared = [_task(svc, 1, pb.ASSIGNED, tid="p")]
    v2 = evaluate(svc, cleared, 2.0, v1.since)
    assert v2.since == {}
    v3 = evaluate(svc, pend, 4.0, v2.since)
    assert v3.failure is None  # the 3 s start again from t=4


def test_pending_without_error_is_just_waiting() -> None:
    svc = _service(1)
    tasks = [_task(svc, 1, pb.PENDING, node="")]
    v = _run(svc, tasks, [0.0, 100.0])
    assert v.failure is None and not v.converged


def test_slot_without_live_task_fails_after_grace_plus_restart_delay() -> None:
    svc = _service(1, delay=5.0)
    tasks = [_task(svc, 1, pb.FAILED, err="task: non-zero exit (1)")]
    assert _run(svc, tasks, [0.0, 7.9]).failure is None  # a delayed restart may still come
    v = _run(svc, tasks, [0.0, 8.0])
    assert v.failure is not None
    assert v.failure.startswith("web.1: task failed: task: non-zero exit (1)")
    assert "restart policy" in v.failure


def test_slot_without_live_task_restart_none_uses_plain_grace() -> None:
    svc = _service(1, delay=5.0, condition=pb.RestartPolicy.NONE)
    tasks = [_task(svc, 1, pb.REJECTED, err="image not found")]
    v = _run(svc, tasks, [0.0, 3.0])
    assert v.failure is not None and "image not found" in v.failure


def test_completed_task_under_on_failure_is_settled() -> None:
    svc = _service(1, condition=pb.RestartPolicy.ON_FAILURE)
    tasks = [_task(svc, 1, pb.COMPLETE)]
    v = evaluate(svc, tasks, 0.0, {})
    assert v.converged and v.running == 0


def test_slot_with_no_tasks_yet_never_fails() -> None:
    svc = _service(2)
    v = _run(svc, [_task(svc, 1, pb.RUNNING)], [0.0, 60.0])
    assert v.failure is None and not v.converged


def test_global_converges_per_node() -> None:
    svc = _service(None)
    tasks = [_task(svc, 0, pb.RUNNING, node="n1"), _task(svc, 0, pb.RUNNING, node="n2")]
    v = evaluate(svc, tasks, 0.0, {}, {"n1": "host-1"})
    assert v.converged and (v.running, v.desired) == (2, 2)
    assert [ln.label for ln in v.lines] == ["host-1", "n2"]


def test_global_waits_for_a_starting_node() -> None:
    svc = _service(None)
    tasks = [_task(svc, 0, pb.RUNNING, node="n1"), _task(svc, 0, pb.PREPARING, node="n2")]
    assert not evaluate(svc, tasks, 0.0, {}).done


def test_global_ignores_nodes_the_orchestrator_shut_down() -> None:
    svc = _service(None)
    tasks = [
        _task(svc, 0, pb.RUNNING, node="n1"),
        _task(svc, 0, pb.SHUTDOWN, desired=pb.SHUTDOWN, node="drained"),
    ]
    v = _run(svc, tasks, [0.0, 60.0])
    assert v.converged and v.desired == 1


def test_global_without_tasks_reports_no_eligible_node() -> None:
    svc = _service(None)
    assert _run(svc, [], [0.0, 2.0]).failure is None
    v = _run(svc, [], [0.0, 3.0])
    assert v.failure is not None and "no node is eligible" in v.failure
    assert not v.converged


def test_render_lines() -> None:
    svc = _service(2)
    tasks = [_task(svc, 1, pb.RUNNING), _task(svc, 2, pb.PENDING, err="no suitable node", node="")]
    lines = render(evaluate(svc, tasks, 0.0, {}))
    assert lines[0] == "overall progress: 1 out of 2 tasks"
    assert lines[1] == "1/2: running   [" + "=" * 50 + ">]"
    assert lines[2] == "2/2: pending: no suitable node"


def test_bar_grows_with_state() -> None:
    assert progress.bar(0.0) == "[>" + " " * 50 + "]"
    assert progress.bar(1.0) == "[" + "=" * 50 + ">]"
    assert progress._fraction(pb.PREPARING) < progress._fraction(pb.STARTING) < progress._fraction(pb.RUNNING)


def test_renderer_without_tty_prints_changes_once() -> None:
    out = io.StringIO()
    r = Renderer(out, tty=False)
    r.frame(["overall progress: 0 out of 1 tasks", "1/1: pending"])
    r.frame(["overall progress: 0 out of 1 tasks", "1/1: pending"])
    r.frame(["overall progress: 1 out of 1 tasks", "1/1: running"])
    assert out.getvalue().splitlines() == [
        "overall progress: 0 out of 1 tasks",
        "1/1: pending",
        "overall progress: 1 out of 1 tasks",
        "1/1: running",
    ]
    assert "\x1b" not in out.getvalue()


def test_renderer_on_tty_redraws_in_place() -> None:
    out = io.StringIO()
    r = Renderer(out, tty=True)
    r.frame(["a", "b"])
    r.frame(["c", "d"])
    assert out.getvalue() == "\x1b[2Ka\n\x1b[2Kb\n\x1b[2A\x1b[2Kc\n\x1b[2Kd\n"
