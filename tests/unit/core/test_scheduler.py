"""The scheduler: filters, spread, resources, pending reasons, scale."""

from __future__ import annotations

import random
import time
from collections import Counter, defaultdict

from swarmlet.api import objects_pb2 as pb
from swarmlet.api import store_pb2 as spb
from swarmlet.core import planner, tasks
from swarmlet.core import state as st
from swarmlet.core.scheduler import schedule
from tests.core_sim import GiB, Sim, kinds


def three_nodes(**kw) -> Sim:
    sim = Sim(**kw)
    for i in range(1, 4):
        sim.add_node(f"n{i}")
    return sim


def test_spread_12_over_3():
    sim = three_nodes()
    sim.add_service("s", replicas=12)
    sim.round()
    assert sim.per_node("s") == {"n1": 4, "n2": 4, "n3": 4}
    assert all(t.status.state == pb.ASSIGNED and t.status.message == "assigned" for t in sim.tasks("s"))


def test_spread_30_over_3_in_one_round():
    sim = three_nodes()
    sim.add_service("s", replicas=30)
    acts = sim.round()
    # One round, one batch: creates carry the assignment (no second write).
    assert kinds(acts) == {"put": 30}
    assert sim.per_node("s") == {"n1": 10, "n2": 10, "n3": 10}


def test_scale_up_respects_existing_distribution():
    sim = Sim()
    sim.add_node("n1")
    sim.add_node("n2")
    sim.add_service("s", replicas=6)
    sim.settle()
    assert sim.per_node("s") == {"n1": 3, "n2": 3}
    sim.add_node("n3")
    sim.update_service("s", replicas=9)
    sim.settle()
    # No rebalancing of running tasks; the 3 new ones go to the empty node.
    assert sim.per_node("s") == {"n1": 3, "n2": 3, "n3": 3}
    sim.update_service("s", replicas=12)
    sim.round()
    assert sim.per_node("s") == {"n1": 4, "n2": 4, "n3": 4}


def test_ties_broken_by_total_tasks_then_node_id():
    sim = three_nodes()
    sim.add_service("busy", replicas=2, constraints=["node.id!=n3"])
    sim.round()
    assert sim.per_node("busy") == {"n1": 1, "n2": 1}
    sim.add_service("s", replicas=1)
    sim.round()
    assert sim.per_node("s") == {"n3": 1}  # fewest tasks overall
    sim.add_service("t", replicas=2)
    sim.round()
    assert sim.per_node("t") == {"n1": 1, "n2": 1}  # all have 1 task: node id order


def test_drained_paused_and_not_ready_nodes_get_nothing_new():
    sim = Sim()
    sim.add_node("active")
    sim.add_node("paused", availability=pb.NodeSpec.PAUSE)
    sim.add_node("drained", availability=pb.NodeSpec.DRAIN)
    sim.add_node("down", state=pb.NodeStatus.DOWN)
    sim.add_node("unknown", state=pb.NodeStatus.UNKNOWN)
    sim.add_node("disc", state=pb.NodeStatus.DISCONNECTED)
    sim.add_service("s", replicas=5)
    sim.round()
    assert sim.per_node("s") == {"active": 5}


def test_pause_keeps_running_tasks():
    sim = three_nodes()
    sim.add_service("s", replicas=3)
    sim.settle()
    sim.set_node("n2", availability=pb.NodeSpec.PAUSE)
    assert sim.round() == []
    sim.update_service("s", replicas=5)
    sim.round()
    assert sim.per_node("s") == {"n1": 2, "n2": 1, "n3": 2}


def test_constraints_filter_and_explain():
    sim = Sim()
    sim.add_node("a1", labels={"zone": "a"})
    sim.add_node("a2", labels={"zone": "a"})
    sim.add_node("b1", labels={"zone": "b"})
    sim.add_service("s", replicas=4, constraints=["node.labels.zone==a"])
    sim.add_service("t", replicas=2, constraints=["node.labels.zone!=a"])
    sim.add_service("u", replicas=1, constraints=["node.labels.zone==c"])
    sim.round()
    assert sim.per_node("s") == {"a1": 2, "a2": 2}
    assert sim.per_node("t") == {"b1": 2}
    (u,) = sim.tasks("u")
    assert u.status.state == pb.PENDING and not u.node_id
    assert u.status.err == "no suitable node (3 nodes: 3 constraint node.labels.zone==c not met)"


def test_pending_reason_summarises_filters():
    sim = Sim()
    sim.add_node("n1", availability=pb.NodeSpec.DRAIN, labels={"zone": "b"})
    sim.add_node("n2", mem=1 * GiB, labels={"zone": "b"})
    sim.add_node("n3", mem=8 * GiB, labels={"zone": "a"})
    sim.add_service("s", replicas=1, mem=2 * GiB, constraints=["node.labels.zone==b"])
    sim.round()
    (t,) = sim.tasks("s")
    assert t.status.state == pb.PENDING
    assert t.status.err == (
        "no suitable node (3 nodes: 1 drained, 1 constraint node.labels.zone==b not met, 1 insufficient memory (needs 2.0GiB))"
    )
    # Unchanged reason: nothing is rewritten next round.
    assert sim.round() == []
    # A node that fits appears: assigned, error cleared.
    sim.add_node("n4", mem=4 * GiB, labels={"zone": "b"})
    sim.round()
    (t,) = sim.tasks("s")
    assert (t.status.state, t.node_id, t.status.err) == (pb.ASSIGNED, "n4", "")


def test_pending_with_no_nodes():
    sim = Sim()
    sim.add_service("s", replicas=1)
    sim.round()
    (t,) = sim.tasks("s")
    assert t.status.err == "no suitable node (the cluster has no nodes)"


def test_resources_fit_and_explain_cpu():
    sim = Sim()
    sim.add_node("n1", cpus=2, mem=4 * GiB)
    sim.add_service("s", replicas=3, cpus=1, mem=1 * GiB)
    sim.round()
    ts = sim.tasks("s")
    assert Counter(t.status.state for t in ts) == {pb.ASSIGNED: 2, pb.PENDING: 1}
    pending = [t for t in ts if t.status.state == pb.PENDING][0]
    assert pending.status.err == "no suitable node (1 node: 1 insufficient cpu (needs 1 CPU))"
    # A task that ended frees its reservation: with slot 3 scaled away, the
    # failed slot's replacement fits in the room it left.
    sim.run_assigned()
    running = [t for t in sim.tasks("s") if t.status.state == pb.RUNNING]
    sim.report(running[0].id, pb.FAILED, err="boom")
    sim.update_service("s", replicas=2)
    sim.round()
    live = sim.tasks("s", live=True)
    assert len(live) == 2 and all(t.node_id == "n1" for t in live)
    assert {t.status.state for t in live} == {pb.RUNNING, pb.ASSIGNED}


def test_zero_capacity_means_unlimited():
    sim = Sim()
    sim.add_node("n1")  # reports no resources
    sim.add_service("s", replicas=50, cpus=4, mem=64 * GiB)
    sim.round()
    assert sim.per_node("s") == {"n1": 50}


def test_memory_only_capacity_limits_memory_only():
    sim = Sim()
    sim.add_node("n1", mem=2 * GiB)  # cpu unknown
    sim.add_service("s", replicas=3, cpus=8, mem=1 * GiB)
    sim.round()
    assert Counter(t.status.state for t in sim.tasks("s")) == {pb.ASSIGNED: 2, pb.PENDING: 1}


def test_resources_never_exceed_capacity_property():
    for seed in range(25):
        rng = random.Random(seed)
        sim = Sim()
        for i in range(rng.randint(1, 8)):
            sim.add_node(
                f"n{i}", cpus=rng.choice([0, 1, 2, 4]), mem=rng.choice([0, 1, 2, 8]) * GiB, labels={"zone": rng.choice("ab")}
            )
        for j in range(rng.randint(1, 6)):
            sim.add_service(
                f"s{j}",
                replicas=rng.randint(0, 12),
                cpus=rng.choice([0, 0.25, 0.5, 1, 3]),
                mem=rng.choice([0, 256 << 20, 1 * GiB, 3 * GiB]),
                constraints=rng.choice([[], ["node.labels.zone==a"], ["node.labels.zone!=a"]]),
            )
        for _step in range(6):
            sim.round()
            sim.run_assigned()
            # Churn: scale, fail, drain.
            sid = f"s{rng.randrange(len(sim.snap.services))}"
            sim.update_service(sid, replicas=rng.randint(0, 12))
            running = [t for t in sim.tasks(live=True) if t.status.state == pb.RUNNING]
            if running and rng.random() < 0.5:
                sim.report(rng.choice(running).id, pb.FAILED, err="crash")
            _assert_capacity(sim, seed)
        # Whatever is pending could not fit anywhere.
        for t in sim.tasks(live=True):
            if t.status.state == pb.PENDING:
                assert t.status.err.startswith("no suitable node")


def _assert_capacity(sim: Sim, seed: int) -> None:
    cpu: dict[str, int] = defaultdict(int)
    mem: dict[str, int] = defaultdict(int)
    for t in sim.tasks(live=True):
        if t.node_id and t.status.state not in tasks.TERMINAL_STATES and t.status.state >= pb.ASSIGNED:
            cpu[t.node_id] += t.spec.resources.reservations.nano_cpus
            mem[t.node_id] += t.spec.resources.reservations.memory_bytes
    for nid, n in sim.snap.nodes.items():
        cap = n.description.resources
        if cap.nano_cpus:
            assert cpu[nid] <= cap.nano_cpus, (seed, nid)
        if cap.memory_bytes:
            assert mem[nid] <= cap.memory_bytes, (seed, nid)


def test_avoid_nodes_are_skipped():
    sim = three_nodes()
    t = pb.Task(id="x", service_id="s", slot=1, desired_state=pb.RUNNING)
    sim.add_service("s", replicas=0)
    t.avoid_nodes.extend(["n1", "n2"])
    sim.apply([st.put(t, create=True)])
    acts = schedule(sim.snap, sim.now).actions
    assert len(acts) == 1 and acts[0].put.task.node_id == "n3"


def test_when_every_node_is_avoided_the_avoided_ones_are_used_spread_and_within_their_room():
    sim = three_nodes()
    sim.add_service("s", replicas=0)
    ts = []
    for i in range(3):
        t = pb.Task(id=f"x{i}", service_id="s", slot=i + 1, desired_state=pb.RUNNING)
        t.avoid_nodes.extend(["n1", "n2", "n3"])
        ts.append(st.put(t, create=True))
    sim.apply(ts)
    acts = schedule(sim.snap, sim.now).actions
    assert sorted(a.put.task.node_id for a in acts) == ["n1", "n2", "n3"]
    assert all(a.put.task.status.state == pb.ASSIGNED for a in acts)


def test_the_avoid_fallback_explains_by_the_other_filters():
    sim = three_nodes()
    sim.add_service("s", replicas=0)
    t = pb.Task(id="x", service_id="s", slot=1, desired_state=pb.RUNNING)
    t.avoid_nodes.extend(["n1"])
    t.spec.placement.constraints.append("node.hostname==nowhere")
    sim.apply([st.put(t, create=True)])
    acts = schedule(sim.snap, sim.now).actions
    assert len(acts) == 1 and acts[0].put.task.status.state == pb.PENDING
    assert "rejected" not in acts[0].put.task.status.err
    assert "constraint node.hostname==nowhere not met" in acts[0].put.task.status.err


def test_assignment_is_version_guarded():
    sim = Sim()
    sim.add_node("n1")
    sim.add_service("s", replicas=1)
    sim.round()
    sim.add_node("n2", state=pb.NodeStatus.DOWN)
    # A pending task scheduled from a stale read must not overwrite a newer write.
    t = pb.Task(id="p", service_id="s", slot=9, desired_state=pb.RUNNING)
    sim.apply([st.put(t, create=True)])
    acts = schedule(sim.snap, sim.now).actions
    assert len(acts) == 1 and acts[0].put.expected_version == sim.snap.tasks["p"].meta.version
    sim.apply([st.set_desired("p", pb.SHUTDOWN)])
    res = st.apply_batch(sim.snap.shallow_copy(), spb.StoreBatch(actions=acts))
    assert not res.ok and "changed" in res.error


def test_global_tasks_are_bound_to_their_node():
    sim = Sim()
    sim.add_node("big", mem=4 * GiB)
    sim.add_node("small", mem=1 * GiB)
    sim.add_service("g", global_=True, mem=2 * GiB)
    sim.round()
    by_node = {t.node_id: t for t in sim.tasks("g")}
    assert by_node["big"].status.state == pb.ASSIGNED
    assert by_node["small"].status.state == pb.PENDING
    assert by_node["small"].status.err == "no suitable node (node host-small: insufficient memory (needs 2.0GiB))"


def test_global_tasks_get_resources_before_replicated():
    sim = Sim()
    sim.add_node("n1", mem=2 * GiB)
    sim.add_service("a", replicas=2, mem=1 * GiB)
    sim.add_service("z", global_=True, mem=1 * GiB)
    sim.round()
    assert [t.status.state for t in sim.tasks("z")] == [pb.ASSIGNED]
    assert Counter(t.status.state for t in sim.tasks("a")) == {pb.ASSIGNED: 1, pb.PENDING: 1}


def test_10k_tasks_on_1k_nodes_in_one_round():
    sim = Sim()
    for i in range(1000):
        sim.add_node(f"node{i:04d}", cpus=4, mem=8 * GiB, labels={"rack": str(i % 10)})
    sim.add_service("big", replicas=9000, cpus=0.1, mem=64 << 20)
    sim.add_service("pinned", replicas=1000, constraints=["node.labels.rack==3"])
    t0 = time.perf_counter()
    acts = planner.plan_round(sim.snap, sim.now, sim.new_id, strict=True)
    elapsed = time.perf_counter() - t0
    print(f"\nplan_round: 10,000 tasks on 1,000 nodes in {elapsed:.2f}s ({len(acts)} actions)")
    assert kinds(acts) == {"put": 10000}
    sim.apply(acts)
    assert all(t.status.state == pb.ASSIGNED for t in sim.tasks())
    big = sim.per_node("big")
    pinned = sim.per_node("pinned")
    assert set(big.values()) == {9} and len(big) == 1000
    assert set(pinned.values()) == {10} and all(n[-1] == "3" for n in pinned)
    assert elapsed < 10, elapsed
    # The next round has nothing to do, and is quick about it.
    t0 = time.perf_counter()
    assert planner.plan_round(sim.snap, sim.now, sim.new_id, strict=True) == []
    print(f"idle round over the same state: {time.perf_counter() - t0:.2f}s")
