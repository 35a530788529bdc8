"""How the CLI renders the manager's progress answer and how long it waits
before a stuck service is a failure, without a daemon. The answers come from
the real core/views over snapshots (test_views.py checks the judgement)."""

from __future__ import annotations

import io

from swarmlet.api import control_pb2 as cpb
from swarmlet.api import objects_pb2 as pb
from swarmlet.cli import progress
from swarmlet.cli.progress import Renderer, Verdict, evaluate, evaluate_update, render
from swarmlet.core import views
from tests.unit.core.test_views import NOW, node, service, snap, task

US = pb.UpdateStatus


def answer(svc: pb.Service, tasks: list[pb.Task], nodes: list[pb.Node] | None = None) -> cpb.ServiceProgressResponse:
    return views.service_progress(snap(svc, tasks, nodes), svc.id, NOW)


def run(p: cpb.ServiceProgressResponse, times: list[float], grace: float = 3.0) -> Verdict:
    """Evaluate repeatedly at the given times, feeding `since` back like watch() does."""
    since: dict[str, float] = {}
    v = None
    for now in times:
        v = evaluate(p, now, since, grace)
        since = v.since
    assert v is not None
    return v


def test_converged_with_slot_labels() -> None:
    svc = service(3)
    v = evaluate(answer(svc, [task(svc, s, pb.RUNNING) for s in (1, 2, 3)]), 0.0, {})
    assert v.converged and v.failure is None
    assert (v.running, v.desired) == (3, 3)
    assert [ln.label for ln in v.lines] == ["1/3", "2/3", "3/3"]


def test_waiting_slots_have_no_state() -> None:
    svc = service(3)
    v = evaluate(answer(svc, [task(svc, 1, pb.RUNNING), task(svc, 2, pb.STARTING)]), 0.0, {})
    assert not v.done and v.running == 1
    assert [ln.state for ln in v.lines] == ["running", "starting", ""]


def test_stuck_pending_fails_after_grace() -> None:
    svc = service(1)
    p = answer(svc, [task(svc, 1, pb.PENDING, err="no suitable node (1 node not available)", node="")])
    assert run(p, [0.0, 1.0, 2.9]).failure is None
    v = run(p, [0.0, 1.0, 3.0])
    assert v.failure == "web.1: no suitable node (1 node not available)"
    assert v.lines[0].err.startswith("no suitable node") and not v.converged


def test_the_grace_starts_again_when_the_slot_is_unstuck_or_gets_a_new_task() -> None:
    svc = service(1)
    pending = task(svc, 1, pb.PENDING, err="no suitable node", node="")
    v1 = evaluate(answer(svc, [pending]), 0.0, {})
    placed = pb.Task()
    placed.CopyFrom(pending)
    placed.status.CopyFrom(pb.TaskStatus(state=pb.ASSIGNED))
    v2 = evaluate(answer(svc, [placed]), 2.0, v1.since)
    assert v2.since == {}
    assert evaluate(answer(svc, [pending]), 4.0, v2.since).failure is None  # the 3 s start again from t=4
    # A replacement task that is stuck too is a new condition.
    other = task(svc, 1, pb.PENDING, err="no suitable node", node="")
    assert evaluate(answer(svc, [other]), 4.0, v1.since).failure is None


def test_pending_without_error_never_fails() -> None:
    svc = service(1)
    v = run(answer(svc, [task(svc, 1, pb.PENDING, node="")]), [0.0, 100.0])
    assert v.failure is None and not v.converged


def test_a_delayed_restart_is_not_a_failure() -> None:
    svc = service(1, delay=5.0)
    v = run(answer(svc, [task(svc, 1, pb.FAILED, err="task: non-zero exit (1)")]), [0.0, 600.0])
    assert v.failure is None and not v.converged
    assert (v.lines[0].state, v.lines[0].err) == ("failed", "task: non-zero exit (1)")


def test_a_restart_policy_that_gave_up_fails_after_grace() -> None:
    svc = service(1, max_attempts=1)
    tasks = [
        task(svc, 1, pb.FAILED, desired=pb.SHUTDOWN, err="task: non-zero exit (1)"),
        task(svc, 1, pb.FAILED, desired=pb.SHUTDOWN, err="task: non-zero exit (1)", attempt=1),
    ]
    p = answer(svc, tasks)
    assert run(p, [0.0, 2.9]).failure is None
    v = run(p, [0.0, 3.0])
    assert v.failure is not None
    assert v.failure.startswith("web.1: restart policy gave up after 1 restart")
    assert v.failure.endswith("last error: task: non-zero exit (1)")


def test_restart_condition_none_names_the_tasks_error() -> None:
    svc = service(1, condition=pb.RestartPolicy.NONE)
    v = run(answer(svc, [task(svc, 1, pb.REJECTED, err="image not found")]), [0.0, 3.0])
    assert v.failure is not None and "image not found" in v.failure and "restart condition is none" in v.failure


def test_completed_task_not_restarted_is_settled() -> None:
    svc = service(1, condition=pb.RestartPolicy.ON_FAILURE)
    v = evaluate(answer(svc, [task(svc, 1, pb.COMPLETE)]), 0.0, {})
    assert v.converged and v.running == 0
    assert (v.lines[0].state, v.lines[0].fraction) == ("complete", 1.0)


def test_a_slot_with_no_task_yet_never_fails() -> None:
    svc = service(2)
    v = run(answer(svc, [task(svc, 1, pb.RUNNING)]), [0.0, 60.0])
    assert v.failure is None and not v.converged


def test_global_labels_are_node_names() -> None:
    svc = service(None)
    nodes = [node("n2"), node("n1")]
    nodes[0].description.hostname = "alpha"
    p = answer(svc, [task(svc, 0, pb.RUNNING, node="n1"), task(svc, 0, pb.RUNNING, node="n2")], nodes)
    v = evaluate(p, 0.0, {})
    assert v.converged and (v.running, v.desired) == (2, 2)
    assert [ln.label for ln in v.lines] == ["alpha", "host-n1"]


def test_global_failure_names_the_node() -> None:
    svc = service(None)
    p = answer(svc, [task(svc, 0, pb.PENDING, err="no suitable node", node="n1")], [node("n1")])
    assert run(p, [0.0, 3.0]).failure == "web.host-n1: no suitable node"


def test_global_without_an_eligible_node_fails_after_grace() -> None:
    svc = service(None)
    p = answer(svc, [], nodes=[])
    assert run(p, [0.0, 2.0]).failure is None
    v = run(p, [0.0, 3.0])
    assert v.failure == f"global service web has no tasks: {views.NO_ELIGIBLE_NODE}"
    assert not v.converged


def test_render_lines() -> None:
    svc = service(2)
    p = answer(svc, [task(svc, 1, pb.RUNNING), task(svc, 2, pb.PENDING, err="no suitable node", node="")])
    lines = render(evaluate(p, 0.0, {}))
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


# ---- rolling updates ----


def _updating(state: int, message: str = "", started: float = 10.0, **kw: bool) -> pb.Service:
    svc = service(2, version=2)
    svc.update_status.CopyFrom(US(state=state, started_at=started, message=message, **kw))
    return svc


def _update_answer(svc: pb.Service) -> cpb.ServiceProgressResponse:
    old = task(svc, 2, pb.RUNNING, version=1)
    old.spec.container.image = "nginx:old"
    return answer(svc, [task(svc, 1, pb.RUNNING), old, task(svc, 2, pb.READY, desired=pb.READY)])


def test_update_lines() -> None:
    v = evaluate_update(_update_answer(_updating(US.UPDATING, "update in progress")), 10.0)
    assert not v.done
    assert v.lines == (
        "overall progress: 1 out of 2 tasks",
        "1/2: running",
        "2/2: ready (waiting for the old task to stop)",
        "update status: updating: update in progress",
    )


def test_a_slot_without_a_new_task_waits() -> None:
    svc = _updating(US.UPDATING)
    old = task(svc, 1, pb.RUNNING, version=1)
    old.spec.container.image = "nginx:old"
    v = evaluate_update(answer(svc, [old]), 10.0)
    assert v.lines[1:3] == ("1/2: waiting", "2/2: waiting")


def test_update_verdicts() -> None:
    def verdict(svc: pb.Service, rollback_cmd: bool = False) -> progress.UpdateVerdict:
        return evaluate_update(_update_answer(svc), 10.0, rollback_cmd)

    v = verdict(_updating(US.COMPLETED))
    assert (v.done, v.exit_code, v.final) == (True, 0, "verify: Service converged (update completed)")
    v = verdict(_updating(US.PAUSED, "update paused: 1 of 2 new tasks failed"))
    assert (v.done, v.exit_code, v.final) == (True, 1, "Error: update paused: 1 of 2 new tasks failed")
    assert verdict(_updating(US.ROLLBACK_PAUSED)).final == "Error: rollback_paused"
    v = verdict(_updating(US.ROLLBACK_COMPLETED, "update rolled back: x"))
    assert (v.exit_code, v.final) == (1, "Error: update rolled back: x")
    v = verdict(_updating(US.ROLLBACK_COMPLETED), rollback_cmd=True)
    assert (v.exit_code, v.final) == (0, "rollback: Service converged (rollback completed)")
    v = verdict(_updating(US.UPDATING, "2 canaries healthy", canaries_ready=True))
    assert (v.done, v.exit_code, v.final) == (True, 0, "canaries ready: 2 canaries healthy")
    assert not verdict(_updating(US.UPDATING, canaries_ready=True, promoted=True)).done
    # An older update's status is not ours (a lagging manager): keep waiting.
    assert not verdict(_updating(US.COMPLETED, started=5.0)).done
