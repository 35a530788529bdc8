"""A new leader acts only once it has applied everything committed before
its term (Store.ensure_leader_ready, issue 14): its log holds every committed
entry, but it applies them only as it learns they are committed, and until
then its snapshot lags. The leader loop and the dispatcher wait for it (the dispatcher's side:
test_dispatcher.py)."""

from __future__ import annotations

from pathlib import Path

from swarmlet.api import objects_pb2 as pb
from swarmlet.core import state as st
from swarmlet.manager.store import Store
from tests.unit.manager.test_store_ha import Cluster


def task(tid: str) -> pb.Task:
    return pb.Task(id=tid, service_id="svc", desired_state=pb.RUNNING)


def test_a_new_leader_is_ready_only_with_every_acknowledged_write_applied(tmp_path: Path) -> None:
    c = Cluster(tmp_path, 3)
    try:
        n = 0
        for _ in range(3):
            leader = c.leader()
            for _ in range(20):
                n += 1
                leader.propose([st.put(task(f"t{n}"), create=True)])
            acked = leader.version
            c.stop(leader.self_addr)
            new = c.leader()
            # Polled as the leader loop does, from the moment it leads.
            while not new.ensure_leader_ready(timeout=5.0):
                pass
            assert new.version >= acked and len(new.snapshot().tasks) == n
            assert new.ensure_leader_ready()  # once per term: answers at once now
            c.start(leader.self_addr)
        c.digests_agree()
    finally:
        c.close()


def test_a_follower_is_never_ready(tmp_path: Path) -> None:
    c = Cluster(tmp_path, 3)
    try:
        c.leader()
        follower: Store = c.follower()
        ready = follower.ensure_leader_ready(timeout=1.0)
        # On a loaded machine an election can make it the leader meanwhile
        # (a helper's run saw it): then, and only then, being ready is right.
        assert not ready or follower.is_leader()
    finally:
        c.close()
