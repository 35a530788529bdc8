"""The leader loop on a real one-manager store: it turns a service into
placed tasks, and a round that lost a race with another writer is planned
again on the fresh state."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from swarmlet.api import control_pb2 as cpb
from swarmlet.api import objects_pb2 as pb
from swarmlet.api import store_pb2 as spb
from swarmlet.core import state as st
from swarmlet.manager.control.api import ControlAPI
from swarmlet.manager.leader import LeaderLoop
from swarmlet.manager.store import ConflictError, Store
from tests.unit.manager import helpers as h
from tests.unit.manager.conftest import WORKER1, WORKER2, OneManager
from tests.waiting import wait_for


def tasks_of(store: Store, name: str) -> list[pb.Task]:
    return [t for t in store.snapshot().tasks.values() if t.service_name == name]


@pytest.fixture
def loop(one_manager: OneManager) -> Iterator[LeaderLoop]:
    lp = LeaderLoop(one_manager.store, idle_period=0.05)
    lp.start()
    yield lp
    lp.stop()
    assert lp.join(15), "the leader loop ended"


def test_the_loop_places_a_service_on_every_node(one_manager: OneManager, loop: LeaderLoop) -> None:
    m = one_manager
    m.control.services.create(cpb.CreateServiceRequest(spec=h.service_spec("web", replicas=3)))

    def placed() -> list[pb.Task] | None:
        ts = tasks_of(m.store, "web")
        done = len(ts) == 3 and all(t.node_id and t.status.state == pb.ASSIGNED for t in ts)
        return ts if done else None

    ts = wait_for(placed, 10, "three tasks of web assigned")
    # Spread: one task per node.
    assert {t.node_id for t in ts} == {h.MANAGER_ID, WORKER1, WORKER2}
    assert sorted(t.slot for t in ts) == [1, 2, 3]

    # Scaling down is a change the loop follows too.
    m.control.services.scale(cpb.ScaleServiceRequest(ref="web", replicas=1))
    wait_for(
        lambda: sum(1 for t in tasks_of(m.store, "web") if t.desired_state == pb.RUNNING) == 1,
        10,
        "web scaled down to one running task",
    )


class RacingStore(Store):
    """A real store where, once armed, another writer touches the task the
    leader loop is about to assign, between the loop's read and its write."""

    armed = False
    conflicts = 0

    def propose(self, actions: list[spb.StoreAction], timeout: float = 5.0, request_id: str | None = None) -> spb.StoreResult:
        assignments = [
            a.put.task
            for a in actions
            if a.WhichOneof("action") == "put" and a.put.WhichOneof("object") == "task" and a.put.task.node_id
        ]
        if not (self.armed and assignments and threading.current_thread().name == "leader-loop"):
            return super().propose(actions, timeout, request_id)
        self.armed = False
        current = self.snapshot().tasks[assignments[0].id]
        super().propose([st.put(current)])  # the other writer: a new version of the same task
        try:
            return super().propose(actions, timeout, request_id)
        except ConflictError:
            self.conflicts += 1
            raise


def test_a_round_that_conflicts_is_planned_again(tmp_path: Path) -> None:
    store = RacingStore(f"127.0.0.1:{h.free_port()}", [], str(tmp_path), h.RAFT_SECRET, data_key=h.DATA_KEY)
    loop = LeaderLoop(store, idle_period=0.05)
    try:
        wait_for(store.is_leader, 10, "the store leads")
        worker = h.worker_node(WORKER1, "worker-1")
        worker.spec.availability = pb.NodeSpec.DRAIN  # tasks wait, unassigned
        h.seed(store, h.new_cluster(), worker)
        control = ControlAPI(store, lambda addr: pytest.fail("no agent here"))
        control.services.create(cpb.CreateServiceRequest(spec=h.service_spec("web", replicas=2)))
        loop.start()
        wait_for(lambda: len(tasks_of(store, "web")) == 2, 10, "two pending tasks of web")
        assert all(not t.node_id for t in tasks_of(store, "web"))

        store.armed = True
        control.nodes.update(cpb.UpdateNodeRequest(ref="worker-1", set_availability=True, availability=pb.NodeSpec.ACTIVE))
        wait_for(lambda: all(t.node_id == WORKER1 for t in tasks_of(store, "web")), 10, "both tasks assigned after the conflict")
        assert store.conflicts == 1
        assert not store.armed
    finally:
        loop.stop()
        loop.join(15)
        store.close()
