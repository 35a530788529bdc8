"""The orchestrator (and the planner round around it): replicas, restarts,
node loss, drain, global services, deletion, reaping, idempotence."""

from __future__ import annotations

import random

import pytest

from swarmlet.api import objects_pb2 as pb
from swarmlet.api import store_pb2 as spb
from swarmlet.core import orchestrator, planner, tasks, views
from swarmlet.core import state as st
from swarmlet.core.stage import StagePlan
from tests.core_sim import Sim, kinds

ANY, ON_FAILURE, NONE = pb.RestartPolicy.ANY, pb.RestartPolicy.ON_FAILURE, pb.RestartPolicy.NONE


def cluster(n: int = 3, **kw) -> Sim:
    sim = Sim(**kw)
    for i in range(1, n + 1):
        sim.add_node(f"n{i}")
    return sim


def only_live(sim: Sim, sid: str, slot: int = 1) -> pb.Task:
    return sim.live_by_slot(sid)[slot]


# ---- replicas ----


def test_creates_one_task_per_slot_with_the_service_spec():
    sim = Sim()
    svc = sim.add_service("s", replicas=3, constraints=["node.role==worker"])
    acts = orchestrator.orchestrate(sim.snap, sim.now, sim.new_id).actions
    assert kinds(acts) == {"put": 3}
    assert all(a.put.expected_version == 0 for a in acts)
    tasks = [a.put.task for a in acts]
    assert [t.slot for t in tasks] == [1, 2, 3]
    for t in tasks:
        assert t.service_id == "s" and t.service_name == "svc-s"
        assert t.spec == svc.spec.task and t.spec_version == 1
        assert t.desired_state == pb.RUNNING and not t.node_id and t.attempt == 0
        assert (t.status.state, t.status.message, t.status.timestamp) == (pb.NEW, "created", sim.now)
    sim.apply(acts)
    assert orchestrator.orchestrate(sim.snap, sim.now, sim.new_id).actions == []


def test_scale_down_removes_highest_slots():
    sim = cluster()
    sim.add_service("s", replicas=5)
    sim.settle()
    sim.update_service("s", replicas=2)
    acts = sim.round()
    assert kinds(acts) == {"task_desired": 3}
    assert sorted(sim.live_by_slot("s")) == [1, 2]
    assert {t.slot for t in sim.tasks("s") if t.desired_state == pb.REMOVE} == {3, 4, 5}
    # Agents stop them; the reaper deletes them.
    sim.settle()
    assert sorted(t.slot for t in sim.tasks("s")) == [1, 2]


def test_scale_down_deletes_unscheduled_tasks_directly():
    sim = Sim()  # no nodes: tasks stay pending
    sim.add_service("s", replicas=4)
    sim.round()
    assert all(t.status.state == pb.PENDING for t in sim.tasks("s"))
    sim.update_service("s", replicas=1)
    acts = sim.round()
    assert kinds(acts) == {"delete": 3}
    assert [t.slot for t in sim.tasks("s")] == [1]


def test_scale_up_after_scale_down_fills_fresh_slots():
    sim = cluster()
    sim.add_service("s", replicas=3)
    sim.settle()
    sim.update_service("s", replicas=1)
    sim.round()  # slots 2, 3: desired REMOVE, still running
    sim.update_service("s", replicas=3)
    sim.round()
    live = sim.live_by_slot("s")
    assert sorted(live) == [1, 2, 3] and live[2].attempt == 0 and live[3].attempt == 0
    sim.settle()
    assert len(sim.tasks("s")) == 3


def test_duplicates_in_a_slot_keep_the_most_advanced():
    sim = cluster()
    sim.add_service("s", replicas=1)
    sim.settle()
    running = only_live(sim, "s")
    dup = pb.Task()
    dup.CopyFrom(running)
    dup.id, dup.node_id = "dup", ""
    dup.status.Clear()
    dup.meta.Clear()
    sim.apply([st.put(dup, create=True)])
    acts = orchestrator.orchestrate(sim.snap, sim.now, sim.new_id).actions
    # The unscheduled duplicate is deleted; the running one stays.
    assert [(a.WhichOneof("action"), a.delete.id) for a in acts] == [("delete", "dup")]


def test_tasks_of_different_spec_versions_may_share_a_slot():
    # A start-first rolling update runs old and new side by side: not ours to undo.
    sim = cluster()
    sim.add_service("s", replicas=1)
    sim.settle()
    new = pb.Task()
    new.CopyFrom(only_live(sim, "s"))
    new.id, new.spec_version = "new", 2
    new.meta.Clear()
    sim.apply([st.put(new, create=True)])
    assert orchestrator.orchestrate(sim.snap, sim.now, sim.new_id).actions == []


# ---- restart policy ----


def fail(sim: Sim, sid: str, slot: int = 1, state: int = pb.FAILED, err: str = "exit status 1") -> pb.Task:
    t = only_live(sim, sid, slot)
    sim.report(t.id, state, err=err, exit_code=1 if state == pb.FAILED else 0)
    return sim.snap.tasks[t.id]


@pytest.mark.parametrize(
    "condition,state,restarts",
    [
        (ANY, pb.COMPLETE, True),
        (ANY, pb.FAILED, True),
        (ANY, pb.REJECTED, True),
        (ON_FAILURE, pb.COMPLETE, False),
        (ON_FAILURE, pb.FAILED, True),
        (ON_FAILURE, pb.REJECTED, True),
        (NONE, pb.COMPLETE, False),
        (NONE, pb.FAILED, False),
    ],
)
def test_restart_conditions(condition, state, restarts):
    sim = cluster()
    sim.add_service("s", replicas=1, condition=condition)
    sim.settle()
    old = fail(sim, "s", state=state)
    sim.round()
    assert sim.snap.tasks[old.id].desired_state == pb.SHUTDOWN
    live = sim.live_by_slot("s")
    if restarts:
        assert live[1].attempt == 1 and live[1].id != old.id
    else:
        assert live == {}
        # And it stays that way.
        sim.now += 3600
        assert sim.round() == []


def test_restart_delay_is_measured_from_the_end_of_the_task():
    sim = cluster()
    sim.add_service("s", replicas=1, delay=5.0)
    sim.settle()
    old = fail(sim, "s")  # ends at now
    end = sim.now
    acts = sim.round()
    assert kinds(acts) == {"task_desired": 1}  # shut down, no replacement yet
    sim.now = end + 4.9
    assert sim.round() == []
    sim.now = end + 5.0
    acts = sim.round()
    assert kinds(acts) == {"put": 1}
    new = only_live(sim, "s")
    assert new.attempt == 1 and new.status.state == pb.ASSIGNED
    assert sim.snap.tasks[old.id].desired_state == pb.SHUTDOWN


def test_max_attempts_then_give_up_with_a_stuck_reason():
    sim = cluster()
    sim.add_service("s", replicas=2, max_attempts=2)
    sim.settle()
    for attempt in range(3):
        assert only_live(sim, "s").attempt == attempt
        fail(sim, "s", err=f"crash {attempt}")
        sim.settle()
    assert 1 not in sim.live_by_slot("s") and 2 in sim.live_by_slot("s")
    reason = views.stuck_reason(sim.snap, "s")
    assert reason == "slot 1: restart policy gave up after 2 restarts (max attempts 2); last error: crash 2 (exit code 1)"
    progress = views.service_progress(sim.snap, "s")
    assert (progress.desired, progress.running, progress.stuck, progress.converged) == (2, 1, reason, False)
    slot1 = progress.slots[0]
    assert (slot1.slot, slot1.state, slot1.desired_state, slot1.err) == (1, pb.FAILED, pb.SHUTDOWN, "crash 2")
    assert not slot1.settled and progress.slots[1].settled
    sim.now += 3600
    assert sim.round() == []


def test_restart_window_counts_only_recent_restarts():
    sim = cluster()
    sim.add_service("s", replicas=1, max_attempts=2, window=60)
    sim.settle()
    # Failures 100 s apart: never two restarts within 60 s.
    for _ in range(5):
        sim.now += 100
        fail(sim, "s")
        sim.settle()
        assert 1 in sim.live_by_slot("s")
    assert only_live(sim, "s").attempt == 5
    # Now three quick failures: restarting after the third would be the third
    # restart within 60 s.
    for gap in (100, 1):
        sim.now += gap
        fail(sim, "s")
        sim.settle()
        assert 1 in sim.live_by_slot("s")
    sim.now += 1
    fail(sim, "s")
    sim.settle()
    assert sim.live_by_slot("s") == {}
    assert "within 60s (max attempts 2)" in views.stuck_reason(sim.snap, "s")
    sim.now += 3600  # the verdict does not flip as the window moves on
    assert sim.round() == []


def test_restart_none_failed_is_stuck_but_completed_is_not():
    sim = cluster()
    sim.add_service("a", replicas=1, condition=NONE)
    sim.add_service("b", replicas=1, condition=NONE)
    sim.settle()
    fail(sim, "a", err="bad config")
    fail(sim, "b", state=pb.COMPLETE)
    sim.settle()
    assert views.stuck_reason(sim.snap, "a") == (
        "slot 1: task failed and the restart condition is none; last error: bad config (exit code 1)"
    )
    assert views.stuck_reason(sim.snap, "b") == ""


# ---- rejection ----


def test_rejected_replacement_avoids_node_then_retries_them_at_the_restart_delay():
    sim = cluster(3)
    sim.add_service("s", replicas=1, condition=ON_FAILURE, delay=5.0)
    sim.round()
    seen = []
    for _i in range(3):
        t = only_live(sim, "s")
        assert t.node_id and t.node_id not in seen
        assert list(t.avoid_nodes) == seen
        seen.append(t.node_id)
        sim.report(t.id, pb.REJECTED, err=f"image busybox:latest not found on {t.node_id}")
        assert "put" not in kinds(sim.round())  # the restart delay: no new task, no tight loop
        if len(seen) < 3:
            assert views.stuck_reason(sim.snap, "s") == ""  # another node may take it
        sim.now += 5.0
        sim.round()
    # Every node rejected the slot: it is still retried (as Swarm does, the
    # avoid list is a preference), on one of them, and users are told.
    t = only_live(sim, "s")
    assert sorted(t.avoid_nodes) == ["n1", "n2", "n3"]
    assert t.node_id in seen and t.status.state == pb.ASSIGNED
    sim.report(t.id, pb.REJECTED, err=f"image busybox:latest not found on {t.node_id}")
    assert "put" not in kinds(sim.round())
    assert views.stuck_reason(sim.snap, "s", sim.now) == (
        f"slot 1: rejected by every eligible node, retried every 5s; last error: image busybox:latest not found on {t.node_id}"
    )
    assert views.waiting_reasons(sim.snap, "s", sim.now)[t.id].endswith("; next try in 5s")
    progress = views.service_progress(sim.snap, "s", sim.now)
    assert progress.slots[0].stuck.startswith("rejected by every eligible node")
    # A new node is preferred to the ones that rejected the slot.
    sim.add_node("n4")
    sim.now += 5.0
    sim.round()
    assert only_live(sim, "s").node_id == "n4"
    assert views.stuck_reason(sim.snap, "s") == ""


def test_a_rejection_while_other_nodes_may_run_the_slot_is_not_stuck():
    sim = cluster(2)
    sim.add_node("n3", availability=pb.NodeSpec.DRAIN)
    sim.add_service("s", replicas=1, condition=ON_FAILURE, delay=5.0)
    sim.round()
    t = only_live(sim, "s")
    sim.report(t.id, pb.REJECTED, err="pull access denied")
    sim.round()
    # n3 is drained: one node that has not rejected the slot is left.
    assert views.stuck_reason(sim.snap, "s") == ""
    sim.now += 5.0
    sim.round()
    u = only_live(sim, "s")
    assert u.node_id not in (t.node_id, "n3")
    sim.report(u.id, pb.REJECTED, err="pull access denied")
    sim.round()
    assert views.stuck_reason(sim.snap, "s").startswith("slot 1: rejected by every eligible node")


# ---- node loss, drain ----


def test_node_down_orphans_and_replaces_in_one_round():
    sim = cluster(3)
    sim.add_service("s", replicas=3)
    sim.settle()
    lost = [t for t in sim.tasks("s") if t.node_id == "n2"]
    assert len(lost) == 1
    sim.set_node("n2", state=pb.NodeStatus.DOWN)
    acts = sim.round()
    assert kinds(acts) == {"task_status": 1, "task_desired": 1, "put": 1}
    old = sim.snap.tasks[lost[0].id]
    assert (old.status.state, old.status.message, old.desired_state) == (pb.ORPHANED, "node down", pb.REMOVE)
    new = only_live(sim, "s", old.slot)
    assert new.node_id in ("n1", "n3") and new.status.state == pb.ASSIGNED
    assert new.attempt == old.attempt
    # The orphan stays visible while its node is down...
    sim.settle()
    assert old.id in sim.snap.tasks
    # ...and goes once the node is back.
    sim.set_node("n2", state=pb.NodeStatus.READY)
    sim.round()
    assert old.id not in sim.snap.tasks


def test_node_loss_ignores_restart_policy():
    sim = cluster(2)
    sim.add_service("s", replicas=1, condition=NONE, delay=60, max_attempts=1)
    sim.settle()
    t = only_live(sim, "s")
    sim.set_node(t.node_id, state=pb.NodeStatus.DOWN)
    sim.round()
    assert only_live(sim, "s").status.state == pb.ASSIGNED


def test_removed_node_tasks_are_deleted_and_replaced():
    sim = cluster(2)
    sim.add_service("s", replicas=2)
    sim.settle()
    gone = [t.id for t in sim.tasks("s") if t.node_id == "n1"]
    sim.remove_node("n1")
    sim.round()
    assert not any(tid in sim.snap.tasks for tid in gone)
    assert sim.per_node("s") == {"n2": 2}


def test_orphan_of_removed_node_is_reaped():
    sim = cluster(2)
    sim.add_service("s", replicas=2)
    sim.settle()
    sim.set_node("n1", state=pb.NodeStatus.DOWN)
    sim.settle()
    assert any(t.status.state == pb.ORPHANED for t in sim.tasks("s"))
    sim.remove_node("n1")
    sim.round()
    assert not any(t.status.state == pb.ORPHANED for t in sim.tasks("s"))


def test_drain_moves_tasks_without_counting_attempts():
    sim = cluster(3)
    sim.add_service("s", replicas=3, max_attempts=1, condition=NONE)
    sim.settle()
    old = [t for t in sim.tasks("s") if t.node_id == "n1"][0]
    sim.set_node("n1", availability=pb.NodeSpec.DRAIN)
    acts = sim.round()
    assert kinds(acts) == {"task_desired": 1, "put": 1}
    assert sim.snap.tasks[old.id].desired_state == pb.SHUTDOWN
    new = only_live(sim, "s", old.slot)
    assert new.node_id != "n1" and new.attempt == old.attempt
    sim.settle()
    assert sim.snap.tasks[old.id].status.state == pb.SHUTDOWN
    assert sim.per_node("s") == {"n2": 2, "n3": 1} or sim.per_node("s") == {"n2": 1, "n3": 2}


# ---- global ----


def test_global_one_task_per_eligible_node():
    sim = Sim()
    sim.add_node("a", labels={"disk": "ssd"})
    sim.add_node("b", labels={"disk": "ssd"}, availability=pb.NodeSpec.DRAIN)
    sim.add_node("c", labels={"disk": "hdd"})
    sim.add_node("d", labels={"disk": "ssd"}, state=pb.NodeStatus.DOWN)
    sim.add_node("e", labels={"disk": "ssd"}, availability=pb.NodeSpec.PAUSE)
    sim.add_service("g", global_=True, constraints=["node.labels.disk==ssd"])
    acts = sim.round()
    assert kinds(acts) == {"put": 1}
    (t,) = sim.tasks("g")
    assert (t.node_id, t.slot, t.status.state) == ("a", 0, pb.ASSIGNED)


def test_global_follows_drain_new_nodes_and_constraints():
    sim = cluster(2)
    sim.add_service("g", global_=True)
    sim.settle()
    assert sim.per_node("g") == {"n1": 1, "n2": 1}
    sim.add_node("n3")
    sim.round()
    assert sim.per_node("g") == {"n1": 1, "n2": 1, "n3": 1}
    # Drain: shut down there, not moved anywhere.
    sim.set_node("n2", availability=pb.NodeSpec.DRAIN)
    sim.round()
    assert sim.per_node("g") == {"n1": 1, "n3": 1}
    sim.settle()
    # Undrain: a new task once the old one has stopped.
    sim.set_node("n2", availability=pb.NodeSpec.ACTIVE)
    sim.round()
    assert sim.per_node("g") == {"n1": 1, "n2": 1, "n3": 1}
    sim.settle()
    # Constraint change: tasks on nodes that no longer match are shut down.
    sim.set_node("n1", labels={"x": "1"})
    sim.update_service("g", constraints=["node.labels.x==1"])
    sim.round()
    assert sim.per_node("g") == {"n1": 1}


def test_global_node_down_is_marked_not_replaced():
    sim = cluster(2)
    sim.add_service("g", global_=True)
    sim.settle()
    sim.set_node("n2", state=pb.NodeStatus.DOWN)
    acts = sim.round()
    assert kinds(acts) == {"task_status": 1, "task_desired": 1}
    assert sim.per_node("g") == {"n1": 1}
    sim.set_node("n2", state=pb.NodeStatus.READY)
    sim.round()
    assert sim.per_node("g") == {"n1": 1, "n2": 1}
    assert not any(t.status.state == pb.ORPHANED for t in sim.tasks("g"))


def test_global_restart_stays_on_its_node():
    sim = cluster(2)
    sim.add_service("g", global_=True, condition=ON_FAILURE)
    sim.settle()
    t = [t for t in sim.tasks("g") if t.node_id == "n1"][0]
    sim.report(t.id, pb.REJECTED, err="no image")
    sim.round()
    new = [x for x in sim.tasks("g", live=True) if x.node_id == "n1"][0]
    assert new.id != t.id and new.attempt == 1 and list(new.avoid_nodes) == []
    assert new.status.state == pb.ASSIGNED


def test_global_progress_counts_eligible_nodes():
    sim = cluster(3)
    sim.set_node("n3", availability=pb.NodeSpec.DRAIN)
    sim.add_service("g", global_=True)
    sim.settle()
    p = views.service_progress(sim.snap, "g")
    assert (p.desired, p.running, p.converged) == (2, 2, True)
    assert [s.node_id for s in p.slots] == ["n1", "n2"]


# ---- deletion, reaping ----


def test_deleted_service_is_cleaned_up():
    sim = cluster(1)
    sim.add_node("down")
    sim.add_service("s", replicas=4, condition=NONE)
    sim.round()
    sim.run_assigned()
    ts = sim.tasks("s")
    sim.report(ts[0].id, pb.FAILED)  # terminal
    sim.set_node("down", state=pb.NodeStatus.DOWN)
    pending = pb.Task(id="pend", service_id="s", slot=9, desired_state=pb.RUNNING)
    sim.apply([st.put(pending, create=True)])
    sim.remove_service("s")
    acts = sim.round()
    assert "pend" not in sim.snap.tasks and ts[0].id not in sim.snap.tasks
    remaining = sim.tasks("s")
    assert remaining and all(t.desired_state == pb.REMOVE for t in remaining)
    assert kinds(acts)["delete"] == 2
    sim.settle()
    # The running ones stopped and were deleted; only the down node's remain.
    assert all(t.node_id == "down" for t in sim.tasks("s"))
    sim.remove_node("down")
    sim.round()
    assert sim.tasks("s") == []


def test_history_limit_keeps_newest_finished_tasks_per_slot():
    sim = cluster(1, history_limit=2)
    sim.add_service("s", replicas=2)
    sim.settle()
    for _ in range(6):
        fail(sim, "s", slot=1)
        sim.settle()
    slot1 = [t for t in sim.tasks("s") if t.slot == 1]
    assert len(slot1) == 3  # live + 2 finished
    finished = sorted((t for t in slot1 if not tasks.wanted(t)), key=lambda t: t.attempt)
    assert [t.attempt for t in finished] == [4, 5]
    assert len([t for t in sim.tasks("s") if t.slot == 2]) == 1


def test_default_history_limit_is_5():
    sim = cluster(1)
    sim.add_service("s", replicas=1)
    sim.settle()
    for _ in range(8):
        fail(sim, "s")
        sim.settle()
    assert len(sim.tasks("s", live=False)) == 5


# ---- idempotence and planner ----


def test_random_churn_stays_idempotent_and_consistent():
    for seed in range(15):
        rng = random.Random(seed)
        sim = Sim(history_limit=rng.choice([0, 1, 3]))
        for i in range(5):
            sim.add_node(f"n{i}", labels={"zone": "ab"[i % 2]})
        for j in range(4):
            if j == 3:
                sim.add_service(f"s{j}", global_=True, constraints=["node.labels.zone==a"])
            else:
                sim.add_service(
                    f"s{j}",
                    replicas=rng.randint(0, 6),
                    condition=rng.choice([ANY, ON_FAILURE, NONE]),
                    delay=rng.choice([0, 5]),
                    max_attempts=rng.choice([0, 2]),
                )
        for step in range(25):
            sim.now += rng.choice([0, 1, 10])
            sim.round()  # asserts the orchestrator is idempotent
            sim.run_assigned()
            r = rng.random()
            tasks = sim.tasks(live=True)
            nid = f"n{rng.randrange(5)}"
            if r < 0.25 and tasks:
                t = rng.choice(tasks)
                if t.node_id and t.status.state >= pb.ASSIGNED:
                    sim.report(t.id, rng.choice([pb.FAILED, pb.COMPLETE, pb.REJECTED]), err="x")
            elif r < 0.4:
                sim.set_node(nid, state=rng.choice([pb.NodeStatus.DOWN, pb.NodeStatus.READY]))
            elif r < 0.55:
                sim.set_node(nid, availability=rng.choice([pb.NodeSpec.ACTIVE, pb.NodeSpec.DRAIN, pb.NodeSpec.PAUSE]))
            elif r < 0.7:
                sid = f"s{rng.randrange(3)}"
                if sid in sim.snap.services:
                    sim.update_service(sid, replicas=rng.randint(0, 6))
            elif r < 0.75 and "s0" in sim.snap.services:
                sim.remove_service("s0")
            sim.round()
            # Invariants: at most one live task per slot/node of the same
            # version, none of a deleted service, none on a down node.
            seen = set()
            for t in sim.tasks(live=True):
                key = (t.service_id, t.slot, t.node_id if t.slot == 0 else "", t.spec_version)
                assert key not in seen, (seed, step, key)
                seen.add(key)
                assert t.service_id in sim.snap.services
                if t.node_id:
                    assert sim.snap.nodes[t.node_id].status.state != pb.NodeStatus.DOWN
            # Replicated slots 1..N are each covered unless their policy says not to.
            for sid, svc in sim.snap.services.items():
                if svc.spec.WhichOneof("mode") == "replicated":
                    live = sim.live_by_slot(sid)
                    assert all(slot <= svc.spec.replicated.replicas for slot in live)


def test_plan_round_is_one_batch_applying_cleanly():
    sim = cluster(3)
    sim.add_service("s", replicas=3)
    sim.settle()
    sim.set_node("n1", state=pb.NodeStatus.DOWN)
    sim.add_service("t", replicas=2)
    snap_before = sim.snap.copy()
    acts = planner.plan_round(sim.snap, sim.now, sim.new_id, strict=True)
    # plan_round does not touch its input.
    assert sim.snap.tasks == snap_before.tasks and sim.snap.version == snap_before.version
    res = st.apply_batch(sim.snap, spb.StoreBatch(actions=acts, timestamp=sim.now))
    assert res.ok, res.error
    # The new service's tasks and the orphan's replacement were created and
    # assigned in that one batch.
    assert [t.status.state for t in sim.tasks("t")] == [pb.ASSIGNED, pb.ASSIGNED]
    assert all(t.status.state >= pb.ASSIGNED for t in sim.tasks(live=True))
    assert sim.per_node("s") in ({"n2": 2, "n3": 1}, {"n2": 1, "n3": 2})


def test_plan_round_existing_pending_task_put_uses_original_version():
    sim = Sim()
    sim.add_service("s", replicas=2)
    sim.round()  # pending: no nodes
    sim.add_node("n1")
    acts = sim.round()
    assert kinds(acts) == {"put": 2}
    assert all(a.put.expected_version > 0 for a in acts)


def test_service_progress_shape():
    sim = cluster(2)
    sim.add_service("s", replicas=3)
    sim.round()
    p = views.service_progress(sim.snap, "s")
    assert (p.service.spec.name, p.desired, p.running, p.stuck, p.converged) == ("svc-s", 3, 0, "", False)
    assert [s.slot for s in p.slots] == [1, 2, 3]
    assert all(s.state == pb.ASSIGNED and s.task_id and s.current and not s.settled for s in p.slots)
    sim.run_assigned()
    p = views.service_progress(sim.snap, "s")
    assert p.running == 3 and p.converged
    with pytest.raises(KeyError):
        views.service_progress(sim.snap, "nope")


def test_plan_survives_being_proposed_in_slices():
    # The leader may propose only a prefix of a long plan and re-plan the rest:
    # every prefix must apply and lead to the same end state.
    base = cluster(3)
    base.add_service("s", replicas=3, max_attempts=1)
    base.settle()
    fail(base, "s", slot=1)
    base.settle()  # slot 1: a failed task in history, attempt-1 task running
    # Service u: its slot's history ends with a task that completed under
    # on-failure ("done"), then an updater-made task runs it again on n1.
    base.add_service("u", replicas=1, condition=ON_FAILURE, constraints=["node.id==n1"])
    base.settle()
    fail(base, "u", state=pb.COMPLETE)
    base.settle()
    redo = pb.Task()
    redo.CopyFrom(base.snap.tasks[base.tasks("u")[0].id])
    redo.id, redo.desired_state, redo.spec_version = "redo", pb.RUNNING, 2
    redo.status.Clear()
    redo.status.state = pb.ASSIGNED
    redo.meta.Clear()
    redo.meta.created_at = base.now + 1
    redo.node_id = "n1"
    del redo.spec.placement.constraints[:]
    base.update_service("u", constraints=[])  # spec_version 2
    base.apply([st.put(redo, create=True)])
    base.settle()
    assert base.snap.tasks["redo"].node_id == "n1"
    victims = {t.slot: t for t in base.tasks("s", live=True) if t.node_id == "n1"}
    base.set_node("n1", state=pb.NodeStatus.DOWN)
    base.set_node("n2", availability=pb.NodeSpec.DRAIN)
    plan = planner.plan_round(base.snap, base.now, base.new_id, strict=True)
    assert len(plan) > 3
    for cut in range(1, len(plan) + 1):
        sim = Sim()
        sim.snap = base.snap.copy()
        sim._ids = base._ids + 100
        sim.apply(plan[:cut])
        sim.settle()
        live = sim.live_by_slot("s")
        assert sorted(live) == [1, 2, 3], cut
        assert all(t.node_id == "n3" and t.status.state == pb.RUNNING for t in live.values()), cut
        for slot, old in victims.items():
            assert live[slot].attempt == old.attempt, cut
        (u,) = sim.live_by_slot("u").values()
        assert u.node_id == "n3" and u.status.state == pb.RUNNING, cut


def test_plan_round_falls_back_to_orchestrator_actions_on_a_bad_merge(monkeypatch):
    sim = cluster(1)
    sim.add_service("s", replicas=1)
    bogus = pb.Task(id="ghost", service_id="s")
    bogus.meta.version = 99
    monkeypatch.setattr(planner, "schedule", lambda snap, now: StagePlan([st.put(bogus)]))
    acts = planner.plan_round(sim.snap, sim.now, sim.new_id)
    assert kinds(acts) == {"put": 1} and acts[0].put.task.service_id == "s"
    with pytest.raises(planner.PlanError):
        planner.plan_round(sim.snap, sim.now, sim.new_id, strict=True)
