"""The incremental leader round (issue 15) plans exactly what a full round
plans, on random histories: services created, scaled, updated and removed,
nodes joining, going down, drained, relabelled and removed, networks, agents
reporting every state, time passing (restart delays, update monitors), and
rounds whose plan is not committed. Also the pieces: change sets, the task
index, byte-capped chunks."""

from __future__ import annotations

import itertools
import random

import pytest

from swarmlet.api import objects_pb2 as pb
from swarmlet.api import store_pb2 as spb
from swarmlet.core import changes as ch
from swarmlet.core import planner, updater
from swarmlet.core import state as st
from swarmlet.core.index import TaskIndex
from tests.core_sim import GiB, Sim

STATES = [pb.ASSIGNED, pb.STARTING, pb.RUNNING, pb.COMPLETE, pb.FAILED, pb.REJECTED, pb.SHUTDOWN]


class History:
    """A Sim whose every write is recorded as the Changes the store records."""

    def __init__(self, rng: random.Random, quiet: bool = False) -> None:
        # quiet: mostly agents' reports and time passing (what the incremental
        # round skips most of), with services that fill the nodes up.
        self.quiet = quiet
        self.rng = rng
        self.sim = Sim()
        self.pending: list[ch.Changes] = []
        self.ids = itertools.count(1)
        self._apply = self.sim.apply
        self.sim.apply = self.apply  # type: ignore[method-assign]
        self.n_services = 0
        self.n_nodes = 0

    def apply(self, actions: list[spb.StoreAction]) -> None:
        actions = list(actions)
        self._apply(actions)
        self.pending.append(ch.of_batch(spb.StoreBatch(actions=actions)))

    def take_changes(self) -> ch.Changes:
        out = ch.union(self.pending) if self.pending else ch.NOTHING
        self.pending = []
        return out

    # ---- random events ----

    def event(self) -> None:
        r, sim, snap = self.rng, self.sim, self.sim.snap
        structural = ["service", "scale", "update", "remove_service", "node", "node_state", "drain", "label", "remove_node"]
        if self.quiet:
            kind = r.choice(["report"] * 30 + ["time"] * 4 + structural)
        else:
            kind = r.choice(structural + ["report"] * 6 + ["time"] * 2 + ["network"])
        services, nodes = sorted(snap.services), sorted(snap.nodes)
        if kind == "service" or not services:
            self.n_services += 1
            sid = f"s{self.n_services}"
            glob = r.random() < 0.25
            sim.add_service(
                sid,
                replicas=None if glob else r.randint(0, 6),
                global_=glob,
                condition=r.choice([pb.RestartPolicy.ANY, pb.RestartPolicy.ON_FAILURE, pb.RestartPolicy.NONE]),
                delay=r.choice([0.0, 0.0, 2.0]),
                max_attempts=r.choice([0, 0, 2]),
                constraints=r.choice([[], [], ["node.labels.zone==a"], ["node.labels.zone!=b"]]),
                cpus=r.choice([0, 0, 0.5, 1.5]),
                mem=r.choice([0, 0, GiB]),
            )
        elif kind == "scale":
            sid = r.choice(services)
            if snap.services[sid].spec.WhichOneof("mode") == "replicated":
                sim.update_service(sid, replicas=r.randint(0, 7))
        elif kind == "update":
            svc = snap.services[r.choice(services)]
            spec = pb.ServiceSpec()
            spec.CopyFrom(svc.spec)
            spec.task.container.image = f"busybox:{next(self.ids)}"
            spec.update.parallelism = r.choice([0, 1, 2])
            spec.update.monitor = r.choice([0.0, 1.0])
            spec.update.order = r.choice([pb.UpdateConfig.STOP_FIRST, pb.UpdateConfig.START_FIRST])
            sim.apply([st.put(updater.updated_service(svc, spec, sim.now))])
        elif kind == "remove_service":
            sim.remove_service(r.choice(services))
        elif kind == "node" or not nodes:
            self.n_nodes += 1
            sim.add_node(
                f"n{self.n_nodes}", cpus=r.choice([0, 2, 4]), mem=r.choice([0, 4 * GiB]), labels={"zone": r.choice("ab")}
            )
        elif kind == "node_state":
            sim.set_node(r.choice(nodes), state=r.choice([pb.NodeStatus.READY, pb.NodeStatus.DOWN, pb.NodeStatus.READY]))
        elif kind == "drain":
            sim.set_node(r.choice(nodes), availability=r.choice([pb.NodeSpec.ACTIVE, pb.NodeSpec.DRAIN, pb.NodeSpec.PAUSE]))
        elif kind == "label":
            sim.set_node(r.choice(nodes), labels={"zone": r.choice("ab")})
        elif kind == "remove_node" and r.random() < 0.3:
            sim.remove_node(r.choice(nodes))
        elif kind == "report":
            placed = [t for t in snap.tasks.values() if t.node_id and t.status.state >= pb.ASSIGNED]
            for t in r.sample(placed, min(len(placed), r.randint(1, 4))):
                state = r.choice(STATES)
                if state >= t.status.state:
                    err = "image missing" if state == pb.REJECTED else ""
                    sim.report(t.id, state, err=err, exit_code=1 if state == pb.FAILED else 0)
        elif kind == "time":
            sim.now += r.choice([0.5, 1.0, 2.5])
        elif kind == "network":
            net = pb.Network(id=f"net{next(self.ids)}", spec=pb.NetworkSpec(name=f"net{next(self.ids)}", driver="overlay"))
            sim.apply([st.put(net, create=True)])
            svc = pb.Service()
            svc.CopyFrom(snap.services[r.choice(services)])
            svc.spec.networks.add(target=net.id)
            sim.apply([st.put(svc)])


def _ids(start: int):
    c = itertools.count(start)
    return lambda: f"task{next(c):07d}"


@pytest.mark.parametrize("quiet", [False, True], ids=["busy", "quiet"])
@pytest.mark.parametrize("seed", range(40))
def test_the_incremental_round_plans_what_a_full_round_plans(seed: int, quiet: bool) -> None:
    rng = random.Random(seed)
    h = History(rng, quiet)
    if quiet:
        for i in range(3):
            h.sim.add_node(f"q{i}", cpus=2, mem=4 * GiB, labels={"zone": "ab"[i % 2]})
        for i in range(3):
            h.sim.add_service(f"q{i}", replicas=5, cpus=0.5, mem=GiB, delay=rng.choice([0.0, 1.0]))
    inc = planner.IncrementalPlanner()
    next_id = 1
    scoped = 0
    for _ in range(60):
        for _ in range(rng.randint(1, 3)):
            h.event()
        snap = h.sim.snap
        changes = h.take_changes() if inc.version >= 0 else ch.EVERYTHING
        got = inc.round(snap, changes, h.sim.now, _ids(next_id))
        want = planner.plan(snap, h.sim.now, _ids(next_id))
        assert got.actions == want.actions, f"seed {seed}: incremental plan differs from the full one"
        assert got.error == want.error
        if inc._index is not None:
            assert inc._index.snapshot_equal(TaskIndex.build(snap)), "the updated index differs from a rebuilt one"
        next_id += 10_000
        if not got.actions:
            continue
        if rng.random() < 0.1:
            inc.failed()  # not committed: the next round must plan everything
            continue
        # Committed as several entries, as the leader proposes a big plan.
        for chunk in planner.chunk_actions(got.actions, 3, 1 << 20):
            h.apply(chunk)
        # Agents react between rounds.
        if rng.random() < 0.7:
            h.sim.run_assigned()
    assert inc.scoped_rounds > 0
    scoped += inc.scoped_rounds


def test_a_status_report_of_a_placed_task_plans_one_slot_and_no_scheduler() -> None:
    h = History(random.Random(1))
    sim = h.sim
    for i in range(4):
        sim.add_node(f"n{i}")
    sim.add_service("big", replicas=40)
    inc = planner.IncrementalPlanner()
    p = inc.round(sim.snap, ch.EVERYTHING, sim.now, _ids(1))
    for chunk in planner.chunk_actions(p.actions, 10, 1 << 20):
        h.apply(chunk)
    h.take_changes()
    assert not inc.round(sim.snap, ch.NOTHING, sim.now, _ids(100)).actions
    t = next(t for t in sim.snap.tasks.values() if t.slot == 7)
    sim.report(t.id, pb.RUNNING)
    changes = h.take_changes()
    from swarmlet.core import scope

    inc._index.update(sim.snap, changes.tasks)  # what round() does first
    s = scope.compute(inc._prev, sim.snap, changes, inc._index)
    assert s is not None
    assert s.services == frozenset() and dict(s.slots) == {"big": frozenset({(7, "")})}
    assert not s.allocate and not s.schedule


def test_changes_of_a_batch_name_every_object_written() -> None:
    n = pb.Node(id="n1")
    batch = spb.StoreBatch(
        actions=[
            st.put(n, create=True),
            st.delete(spb.KIND_SERVICE, "s1"),
            st.set_desired("t1", pb.SHUTDOWN),
            st.set_status("t2", pb.TaskStatus(state=pb.RUNNING)),
            spb.StoreAction(node_status=spb.NodeStatusAction(node_id="n2")),
        ]
    )
    c = ch.of_batch(batch)
    assert c.nodes == {"n1", "n2"} and c.services == {"s1"} and c.tasks == {"t1", "t2"}
    assert (c | ch.EVERYTHING).everything and ch.union([c, ch.NOTHING]) == c
    assert ch.NOTHING.empty and not c.empty


def test_chunks_are_capped_by_count_and_by_bytes() -> None:
    def task(i: int, env: int) -> spb.StoreAction:
        t = pb.Task(id=f"t{i}")
        t.spec.container.env.append("X=" + "x" * env)
        return st.put(t, create=True)

    small = [task(i, 10) for i in range(25)]
    assert [len(c) for c in planner.chunk_actions(small, 10, 1 << 20)] == [10, 10, 5]
    big = [task(i, 60_000) for i in range(10)]
    chunks = planner.chunk_actions(big, 2000, 256 * 1024)
    assert all(sum(a.ByteSize() for a in c) <= 256 * 1024 for c in chunks)
    assert [a for c in chunks for a in c] == big and len(chunks) == 3
    # One action over the cap goes alone rather than nowhere.
    huge = [task(0, 10), task(1, 400_000), task(2, 10)]
    assert [len(c) for c in planner.chunk_actions(huge, 2000, 256 * 1024)] == [1, 1, 1]
