"""The replicated store on real pysyncobj (loopback, one process)."""

from __future__ import annotations

import socket

import pytest

from swarmlet.api import objects_pb2 as pb
from swarmlet.atrest import DataKey
from swarmlet.core import state as st
from swarmlet.manager.store import ConflictError, Store
from tests.waiting import wait_for

DATA_KEY = DataKey(b"d" * 32)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def store(tmp_path):
    addr = f"127.0.0.1:{free_port()}"
    s = Store(addr, [], str(tmp_path), b"x" * 32, data_key=DATA_KEY)
    wait_for(s.is_leader, 10, "single manager becomes leader")
    yield s
    s.close()


def task(tid: str) -> pb.Task:
    return pb.Task(id=tid, service_id="svc", desired_state=pb.RUNNING)


def test_put_and_read_back(store):
    r = store.propose([st.put(task("t1"), create=True), st.put(task("t2"), create=True)])
    assert r.ok and r.version == 1
    snap = store.snapshot()
    assert set(snap.tasks) == {"t1", "t2"}
    assert snap.tasks["t1"].meta.version == 1


def test_conflicting_batch_applies_nothing(store):
    store.propose([st.put(task("t1"), create=True)])
    with pytest.raises(ConflictError, match="already exists"):
        store.propose([st.put(task("t2"), create=True), st.put(task("t1"), create=True)])
    assert set(store.snapshot().tasks) == {"t1"}


def test_stale_version_is_refused(store):
    store.propose([st.put(task("t1"), create=True)])
    stale = store.snapshot().tasks["t1"]
    fresh = pb.Task()
    fresh.CopyFrom(stale)
    fresh.slot = 2
    store.propose([st.put(fresh)])
    stale2 = pb.Task()
    stale2.CopyFrom(stale)
    stale2.slot = 3
    with pytest.raises(ConflictError, match="changed"):
        store.propose([st.put(stale2)])
    assert store.snapshot().tasks["t1"].slot == 2


def test_snapshots_are_immutable_for_readers(store):
    store.propose([st.put(task("t1"), create=True)])
    old = store.snapshot()
    store.propose([st.set_status("t1", pb.TaskStatus(state=pb.RUNNING))])
    assert old.tasks["t1"].status.state == pb.NEW
    assert store.snapshot().tasks["t1"].status.state == pb.RUNNING


def test_retried_request_applies_once(store):
    store.propose([st.put(task("t1"), create=True)], request_id="req-1")
    # The same request again (a client retry after a timeout) is not re-applied.
    r = store.propose([st.put(task("t1"), create=True)], request_id="req-1")
    assert r.ok
    assert store.version == 1


def test_state_survives_restart(tmp_path):
    addr = f"127.0.0.1:{free_port()}"
    s = Store(addr, [], str(tmp_path), b"k" * 32, data_key=DATA_KEY)
    wait_for(s.is_leader, 10, "leader")
    for i in range(50):
        s.propose([st.put(task(f"t{i}"), create=True)])
    s.close()
    s2 = Store(addr, [], str(tmp_path), b"k" * 32, data_key=DATA_KEY)
    try:
        wait_for(lambda: len(s2.snapshot().tasks) == 50, 10, "50 tasks restored from the journal")
        assert s2.version == 50
    finally:
        s2.close()


def test_raft_files_are_private(tmp_path):
    addr = f"127.0.0.1:{free_port()}"
    s = Store(addr, [], str(tmp_path), b"k" * 32, data_key=DATA_KEY)
    try:
        assert (tmp_path / "raft").stat().st_mode & 0o077 == 0
    finally:
        s.close()


def test_the_store_records_what_each_version_changed(store):
    store.propose([st.put(task("t1"), create=True)])
    v1 = store.version
    store.propose([st.put(task("t2"), create=True), st.set_desired("t1", pb.SHUTDOWN)])
    with pytest.raises(ConflictError):
        store.propose([st.put(task("t2"), create=True)])  # refused: records nothing
    store.propose([st.delete(2, "t2")])  # KIND_TASK
    v3 = store.version
    assert v3 == v1 + 2
    assert store.changes_since(v1, v3).tasks == {"t1", "t2"}
    assert store.changes_since(v3, v3).empty
    assert store.changes_since(0, v3).tasks == {"t1", "t2"}
    assert store.changes_since(v3 - 1, v3).tasks == {"t2"}
    # Asked beyond what it holds: unknown, so everything.
    assert store.changes_since(v3, v3 + 5).everything
    assert store.changes_since(v3 + 1, v3).everything


def test_several_batches_are_proposed_together_and_each_reports(store):
    results = store.propose_many(
        [[st.put(task("a"), create=True)], [st.put(task("a"), create=True)], [st.put(task("b"), create=True)]]
    )
    assert results[0] is None and isinstance(results[1], ConflictError) and results[2] is None
    assert set(store.snapshot().tasks) == {"a", "b"}
