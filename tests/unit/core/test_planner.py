"""The planner: stages merged once into one batch, a stage whose plan does
not apply left out and reported (not logged), when to plan again, slicing."""

from __future__ import annotations

import pytest

from swarmlet.api import objects_pb2 as pb
from swarmlet.api import store_pb2 as spb
from swarmlet.core import planner, updater
from swarmlet.core import state as st
from swarmlet.core.stage import StagePlan
from tests.core_sim import Sim, kinds


def cluster(n: int = 2) -> Sim:
    sim = Sim()
    for i in range(1, n + 1):
        sim.add_node(f"n{i}")
    return sim


def test_one_put_per_new_task_carrying_every_stage_s_work() -> None:
    sim = cluster()
    net = pb.Network(id="net", spec=pb.NetworkSpec(name="net", driver="overlay"))
    sim.apply([st.put(net, create=True)])
    svc = pb.Service()
    svc.CopyFrom(sim.add_service("s", replicas=3))
    svc.spec.networks.add(target="net")
    sim.apply([st.put(svc)])
    before = sim.snap.copy()
    p = planner.plan(sim.snap, sim.now, sim.new_id)
    assert p.error == "" and p.wake_at is None
    assert st.state_digest(sim.snap) == st.state_digest(before)  # the snapshot is not modified
    task_puts = [a.put for a in p.actions if a.WhichOneof("action") == "put" and a.put.WhichOneof("object") == "task"]
    # Created (orchestrator), given an address (allocator) and assigned
    # (scheduler): one Put per task, a create.
    assert len(task_puts) == 3 and len({put.task.id for put in task_puts}) == 3
    for put in task_puts:
        assert put.expected_version == 0
        assert put.task.node_id and put.task.status.state == pb.ASSIGNED
        assert [a.network_id for a in put.task.networks] == ["net"]
    # The network's allocation and the service's VIP are in the same batch.
    assert kinds(p.actions) == {"put": 5}
    sim.apply(p.actions)


def test_a_stage_whose_plan_does_not_apply_is_left_out_and_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    sim = cluster()
    sim.add_service("s", replicas=2)
    ghost = pb.Task(id="ghost", service_id="s")
    ghost.meta.version = 99  # a stale write: does not apply

    def broken_update(snap: st.Snapshot, now: float, new_id: object) -> StagePlan:
        return StagePlan([st.put(ghost)])

    monkeypatch.setattr(updater, "update", broken_update)
    p = planner.plan(sim.snap, sim.now, sim.new_id)
    assert p.error.startswith("updater plan does not apply: task ghost changed")
    # The other stages still did their work: created and assigned.
    assert kinds(p.actions) == {"put": 2}
    assert all(a.put.task.status.state == pb.ASSIGNED for a in p.actions)
    sim.apply(p.actions)
    with pytest.raises(planner.PlanError, match="updater plan does not apply"):
        planner.plan_round(sim.snap, sim.now, sim.new_id, strict=True)


def test_a_merged_plan_that_does_not_apply_drops_stages_from_the_end(monkeypatch: pytest.MonkeyPatch) -> None:
    sim = cluster(1)
    sim.add_service("s", replicas=1)
    bogus = pb.Task(id="ghost", service_id="s")
    bogus.meta.version = 99
    # The last stage's actions are only checked in the merged batch.
    monkeypatch.setattr(planner, "schedule", lambda snap, now: StagePlan([st.put(bogus)]))
    p = planner.plan(sim.snap, sim.now, sim.new_id)
    assert "merged plan does not apply (scheduler left out)" in p.error
    assert kinds(p.actions) == {"put": 1} and p.actions[0].put.task.service_id == "s"


def test_wake_at_is_the_next_restart_delay_end() -> None:
    sim = cluster(1)
    sim.add_service("s", replicas=1, delay=5.0)
    sim.settle()
    (t,) = sim.tasks("s", live=True)
    sim.report(t.id, pb.FAILED, err="boom")
    p = planner.plan(sim.snap, sim.now, sim.new_id)  # shuts the failed task down
    sim.apply(p.actions)
    p = planner.plan(sim.snap, sim.now, sim.new_id)
    assert p.actions == [] and p.wake_at == sim.now + 5.0
    sim.now += 5.0
    p = planner.plan(sim.snap, sim.now, sim.new_id)
    assert kinds(p.actions) == {"put": 1}  # the restart, at once
    assert p.wake_at is None


def test_wake_at_is_the_end_of_an_update_monitor_period() -> None:
    sim = cluster(1)
    svc = sim.add_service("s", replicas=1)
    sim.settle()
    spec = pb.ServiceSpec()
    spec.CopyFrom(svc.spec)
    spec.task.container.image = "busybox:2"
    spec.update.CopyFrom(updater.DEFAULT_CONFIG)
    spec.update.monitor = 3.0
    sim.apply([st.put(updater.updated_service(svc, spec, sim.now))])
    sim.settle()
    assert planner.plan(sim.snap, sim.now, sim.new_id).wake_at == sim.now + 3.0


def _task_put(tid: str, version: int = 0) -> spb.StoreAction:
    t = pb.Task(id=tid, service_id="s")
    t.meta.version = version
    return st.put(t, create=version == 0)
