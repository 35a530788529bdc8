"""The finding of issue 14, on real stores: a follower that cannot load the
state it is sent must not take part in Raft. Before the durable Raft, a
follower whose dump failed to load ran with an EMPTY state as a voter, was
elected after leader kills, and then refused every agent. Now it stops
taking part (raftnode.DurableSyncObj._fail): it never votes, never leads,
and the healthy managers elect among themselves."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from swarmlet.api import objects_pb2 as pb
from swarmlet.core import state as st
from swarmlet.manager.statemachine import StateMachine
from swarmlet.manager.store import RaftTimings
from tests.unit.manager.test_store_ha import Cluster
from tests.waiting import wait_for


def task(tid: str) -> pb.Task:
    return pb.Task(id=tid, service_id="svc", desired_state=pb.RUNNING)


def test_a_follower_that_cannot_load_the_leaders_snapshot_never_votes_or_leads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    c = Cluster(tmp_path, 3, timings=RaftTimings(compaction_min_entries=50, compaction_min_time=3600))
    try:
        leader = c.leader()
        broken_addr = c.follower().self_addr
        c.stop(broken_addr)
        # The others compact past what the stopped follower has: it must be
        # sent a snapshot when it comes back.
        for i in range(120):
            leader.propose([st.put(task(f"t{i}"), create=True)])
        for s in c.live():
            s.force_compaction()
        wait_for(lambda: all(s.log_length() < 50 for s in c.live()), 20, "compacted on both")
        real = StateMachine._deserialize

        def unloadable(self: StateMachine, data: dict) -> None:
            raise ValueError("a snapshot this manager cannot load")

        monkeypatch.setattr(StateMachine, "_deserialize", unloadable)
        broken = c.start(broken_addr)
        wait_for(lambda: broken._obj.failure is not None, 20, "the follower gives up on the snapshot")
        monkeypatch.setattr(StateMachine, "_deserialize", real)
        assert "the snapshot cannot be loaded" in str(broken._obj.failure)
        assert not broken.snapshot().tasks  # it holds nothing...
        # ...and so must never lead: without the leader, the one healthy
        # follower cannot win an election on its own vote.
        c.stop(leader.self_addr)
        deadline = time.monotonic() + 4 * broken.timings.raft_max_timeout + 2
        while time.monotonic() < deadline:
            assert not broken.is_leader()
            assert not any(s.is_leader() for s in c.live())
            time.sleep(0.05)
        c.start(leader.self_addr)
        healthy = wait_for(lambda: next((s for s in c.live() if s.is_leader()), None), 20, "a healthy leader")
        assert healthy is not broken and len(healthy.snapshot().tasks) == 120
    finally:
        c.close()
