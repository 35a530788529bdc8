"""A snapshot the leader sends a follower (pysyncobj's snapshot transmission,
real stores on loopback): each manager's snapshot file is encrypted with its
own data key, so the follower must receive it decrypted (inside the
encrypted Raft transport) and store it under ITS key, never in the clear."""

from __future__ import annotations

import os
import socket

from swarmlet.api import objects_pb2 as pb
from swarmlet.atrest import DataKey
from swarmlet.core import state as st
from swarmlet.manager import raftlog
from swarmlet.manager.store import RaftTimings, Store
from tests.waiting import wait_for

SECRET = b"t" * 32
# A value that must never rest on a disk in the clear (stands for a secret).
MARKER = "plaintext-marker-5f0c2e"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_follower_with_its_own_key_installs_the_leaders_snapshot_encrypted(tmp_path) -> None:
    timings = RaftTimings(compaction_min_entries=50, compaction_min_time=3600)
    addrs = [f"127.0.0.1:{free_port()}" for _ in range(3)]
    keys = {a: DataKey.generate() for a in addrs}
    dirs = {a: tmp_path / a.replace(":", "_") for a in addrs}

    def start(a: str) -> Store:
        return Store(a, [p for p in addrs if p != a], str(dirs[a]), SECRET, timings=timings, data_key=keys[a])

    stores = {a: start(a) for a in addrs}
    try:
        leader = wait_for(lambda: next((s for s in stores.values() if s.is_leader()), None), 20, "a leader")
        lagging = next(a for a in addrs if stores[a] is not leader)
        stores.pop(lagging).close()
        for i in range(120):
            leader.propose([st.put(pb.Task(id=f"{MARKER}-{i}", service_id="svc", desired_state=pb.RUNNING), create=True)])
        # The live members compact: the entries the lagging one missed are
        # gone from their journals, only a snapshot can bring it up to date.
        wait_for(lambda: all(s.log_length() < 60 for s in stores.values()), 20, "journals compacted")
        leader_addr = leader.self_addr
        leader_snapshot = dirs[leader_addr] / "raft" / raftlog.SNAPSHOT_NAME
        assert f"{MARKER}-0" in str(raftlog.read_snapshot_file(str(leader_snapshot), keys[leader_addr]))

        back = stores[lagging] = start(lagging)
        wait_for(lambda: len(back.snapshot().tasks) == 120, 30, "the lagging member has every task (from the snapshot)")
        assert back.log_length() < 60, "caught up by entries, not by the snapshot: the test did not test the transfer"

        raft_dir = dirs[lagging] / "raft"
        mine = raftlog.read_snapshot_file(str(raft_dir / raftlog.SNAPSHOT_NAME), keys[lagging])
        assert mine["last"][1] >= 50, mine["last"][1]
        assert f"{MARKER}-0" in str(mine["consumers"])
        # Not the leader's file copied over: it does not open with the leader's key.
        try:
            raftlog.read_snapshot_file(str(raft_dir / raftlog.SNAPSHOT_NAME), keys[leader_addr])
        except raftlog.RaftStateError:
            pass
        else:
            raise AssertionError("the follower's snapshot opens with the leader's data key")
        # No file in the follower's raft dir (snapshot, journal, leftovers)
        # holds the value in the clear.
        names = sorted(os.listdir(raft_dir))
        assert raftlog.SNAPSHOT_NAME in names
        for name in names:
            data = (raft_dir / name).read_bytes()
            assert MARKER.encode() not in data, f"{name} holds a task id in the clear"
        # And it restarts on that file with its own key.
        stores.pop(lagging).close()
        again = stores[lagging] = start(lagging)
        wait_for(lambda: len(again.snapshot().tasks) == 120, 30, "the restarted member has every task")
    finally:
        for s in stores.values():
            s.close()
