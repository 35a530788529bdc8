"""Jobs (issue 11): replicated jobs complete N tasks at most M at a time, a
global job one task per node; a task that exits 0 is Complete and not
restarted; an update (--force) runs the job again as a new iteration;
progress counts completions."""

from __future__ import annotations

import pytest

from swarmlet.api import objects_pb2 as pb
from swarmlet.core import state as st
from swarmlet.core import updater, validation, views
from tests.core_sim import Sim


def job(
    sim: Sim,
    sid: str,
    total: int = 0,
    concurrent: int = 0,
    *,
    global_: bool = False,
    condition: int = pb.RestartPolicy.ON_FAILURE,
) -> pb.Service:
    s = pb.Service(id=sid, spec_version=1)
    s.spec.name = f"job-{sid}"
    if global_:
        s.spec.global_job.SetInParent()
    else:
        s.spec.replicated_job.total_completions = total
        s.spec.replicated_job.max_concurrent = concurrent
    s.spec.task.container.image = "busybox:latest"
    s.spec.task.restart.condition = condition
    sim.apply([st.put(s, create=True)])
    return sim.snap.services[sid]


def live(sim: Sim, sid: str) -> list[pb.Task]:
    return [t for t in sim.tasks(sid, live=True) if t.status.state < pb.COMPLETE]


def run_and_finish(sim: Sim, sid: str, exit_ok: bool = True) -> int:
    """Agents start what is assigned, then every running task ends."""
    sim.settle()
    ended = 0
    for t in live(sim, sid):
        if t.status.state == pb.RUNNING:
            if exit_ok:
                sim.report(t.id, pb.COMPLETE, message="finished")
            else:
                sim.report(t.id, pb.FAILED, err="task: non-zero exit (3)", exit_code=3)
            ended += 1
    return ended


def progress(sim: Sim, sid: str):  # type: ignore[no-untyped-def]
    return views.service_progress(sim.snap, sid, sim.now)


def test_replicated_job_runs_max_concurrent_at_a_time_until_done() -> None:
    sim = Sim()
    for nid in ("n1", "n2", "n3"):
        sim.add_node(nid)
    job(sim, "j", total=5, concurrent=2)
    finished: list[int] = []
    for _ in range(5):
        sim.settle()
        assert len(live(sim, "j")) <= 2
        finished.append(run_and_finish(sim, "j"))
        if progress(sim, "j").converged:
            break
    assert finished == [2, 2, 1]
    p = progress(sim, "j")
    assert p.converged and p.completed == 5 and p.desired == 5
    sim.settle()
    done = sim.tasks("j")
    assert sorted(t.slot for t in done) == [1, 2, 3, 4, 5]
    # Complete, and desired Complete: nothing is restarted.
    assert all(t.status.state == pb.COMPLETE and t.desired_state == pb.COMPLETE for t in done)
    assert views.job_counts(sim.snap, sim.snap.services["j"]) == (5, 5)


def test_failed_job_task_is_retried_on_failure_and_given_up_with_none() -> None:
    sim = Sim()
    sim.add_node("n1")
    job(sim, "retry", total=1, concurrent=1)
    assert run_and_finish(sim, "retry", exit_ok=False) == 1
    sim.settle()
    (again,) = live(sim, "retry")
    assert again.attempt == 1
    job(sim, "once", total=1, concurrent=1, condition=pb.RestartPolicy.NONE)
    run_and_finish(sim, "once", exit_ok=False)
    sim.settle()
    assert not live(sim, "once")
    p = progress(sim, "once")
    assert not p.converged and p.completed == 0
    assert "restart condition is none" in p.stuck


def test_force_update_runs_the_job_again_and_stops_the_old_run() -> None:
    sim = Sim()
    sim.add_node("n1")
    s = job(sim, "j", total=2, concurrent=2)
    run_and_finish(sim, "j")
    sim.settle()
    assert progress(sim, "j").completed == 2
    spec = pb.ServiceSpec()
    spec.CopyFrom(s.spec)
    spec.task.force_update += 1
    new = updater.updated_service(sim.snap.services["j"], spec, sim.now)
    assert new.job_status.iteration == 1 and new.update_status.state == pb.UpdateStatus.NONE
    sim.apply([st.put(new)])
    sim.settle()
    p = progress(sim, "j")
    assert p.completed == 0 and not p.converged
    current = [t for t in sim.tasks("j") if t.job_iteration == 1]
    assert len(current) == 2 and all(t.status.state == pb.RUNNING for t in current)
    # The first run's tasks stay as history.
    assert len([t for t in sim.tasks("j") if t.job_iteration == 0]) == 2
    # An update while a run is under way stops what still runs of it.
    spec.task.force_update += 1
    sim.apply([st.put(updater.updated_service(sim.snap.services["j"], spec, sim.now))])
    sim.settle()
    assert not [t for t in sim.tasks("j") if t.job_iteration == 1 and t.desired_state <= pb.RUNNING]
    assert len([t for t in live(sim, "j") if t.job_iteration == 2]) == 2


def test_global_job_runs_once_per_node_and_on_nodes_that_join() -> None:
    sim = Sim()
    sim.add_node("n1")
    sim.add_node("n2")
    job(sim, "g", global_=True)
    run_and_finish(sim, "g")
    sim.settle()
    p = progress(sim, "g")
    assert p.converged and p.completed == 2
    sim.add_node("n3")
    sim.settle()
    (new,) = live(sim, "g")
    assert new.node_id == "n3"
    run_and_finish(sim, "g")
    sim.settle()
    assert progress(sim, "g").completed == 3


def test_jobs_refuse_restart_any_and_update_policies() -> None:
    spec = pb.ServiceSpec(name="j")
    spec.replicated_job.total_completions = 1
    spec.task.container.image = "busybox"
    spec.task.restart.condition = pb.RestartPolicy.ANY
    with pytest.raises(validation.InvalidSpec, match="cannot use --restart-condition any"):
        validation.validate_service_spec(spec)
    spec.task.restart.condition = pb.RestartPolicy.ON_FAILURE
    validation.validate_service_spec(spec)
    spec.update.parallelism = 2
    with pytest.raises(validation.InvalidSpec, match="jobs have no update or rollback policy"):
        validation.validate_service_spec(spec)
    # The manager adds no default policies to jobs.
    spec.ClearField("update")
    updater.with_defaults(spec)
    assert not spec.HasField("update") and not spec.HasField("rollback")
