"""The durable Raft node (swarmlet/manager/raftnode.py) on real pysyncobj,
loopback, one process: nothing is acknowledged before it is on disk, fsyncs
are shared by many entries, snapshots and journal truncation are ordered,
start-up refuses what it cannot trust, and a failing disk stops the node
cleanly."""

from __future__ import annotations

import logging
import os
import resource
import shutil
import signal
import socket
import threading
from pathlib import Path

import pysyncobj.serializer
import pytest
from pysyncobj import FAIL_REASON, SyncObj, SyncObjConf, SyncObjConsumer, replicated

from swarmlet.api import objects_pb2 as pb
from swarmlet.core import state as st
from swarmlet.manager import raftlog, raftnode
from swarmlet.manager.raftlog import DurableJournal, RaftStateError
from swarmlet.manager.raftnode import DurableSyncObj
from swarmlet.manager.rafttransport import RaftKeyring
from swarmlet.manager.store import RaftTimings, Store, StoreError
from tests.unit.manager.helpers import DATA_KEY, data_key_for
from tests.waiting import wait_for

SECRET = b"r" * 32


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def task(tid: str) -> pb.Task:
    return pb.Task(id=tid, service_id="svc", desired_state=pb.RUNNING)


class Counter(SyncObjConsumer):
    """A tiny state machine that notes, on the leader, whether the entry being
    applied (that is: committed, about to be acknowledged) was on disk."""

    def __init__(self) -> None:
        self.node: DurableSyncObj | None = None  # set before super().__init__: not replicated state
        self.dirty_on_leader: list[bool] = []
        super().__init__()
        self.value = 0

    @replicated
    def bump(self) -> int:
        node = self.node
        if node is not None and node._isLeader():
            self.dirty_on_leader.append(node.journal.dirty)
        self.value += 1
        return self.value


def conf() -> SyncObjConf:
    return SyncObjConf(
        autoTickPeriod=0.005,
        appendEntriesPeriod=0.02,
        raftMinTimeout=0.3,
        raftMaxTimeout=0.6,
        connectionTimeout=1.0,
        connectionRetryTime=0.3,
        dynamicMembershipChange=True,
        commandsWaitLeader=False,
    )


class Nodes:
    """n DurableSyncObj nodes with a Counter each, raft dirs under tmp."""

    def __init__(self, tmp: Path, n: int) -> None:
        self.addrs = [f"127.0.0.1:{free_port()}" for _ in range(n)]
        self.nodes: list[DurableSyncObj] = []
        self.counters: list[Counter] = []
        for a in self.addrs:
            d = tmp / a.replace(":", "_")
            d.mkdir()
            c = Counter()
            node = DurableSyncObj(a, [p for p in self.addrs if p != a], conf(), [c], str(d), data_key_for(a), RaftKeyring(SECRET))
            c.node = node
            self.nodes.append(node)
            self.counters.append(c)

    def leader(self) -> tuple[DurableSyncObj, Counter]:
        def find():
            i = [k for k, n in enumerate(self.nodes) if n._isLeader()]
            return i[0] + 1 if len(i) == 1 else None

        k = wait_for(find, 20, "one leader") - 1
        return self.nodes[k], self.counters[k]

    def close(self) -> None:
        for n in self.nodes:
            n.destroy_synchronous()


@pytest.fixture
def three(tmp_path):
    ns = Nodes(tmp_path, 3)
    yield ns
    ns.close()


def bump_many(counter: Counter, n: int, timeout: float = 30) -> None:
    """n writes pipelined (not one at a time), waiting for every acknowledgement."""
    done = threading.Semaphore(0)
    errors: list[int] = []

    def cb(result, err):
        if err != FAIL_REASON.SUCCESS:
            errors.append(err)
        done.release()

    for _ in range(n):
        counter.bump(callback=cb)
    for _ in range(n):
        assert done.acquire(timeout=timeout), "a write was never answered"
    assert not errors, errors


def test_pysyncobj_internals_this_relies_on_are_there(tmp_path):
    # A pysyncobj upgrade that renames these would silently bypass durability.
    assert callable(getattr(SyncObj, "_SyncObj__sendNextNodeIdx", None))
    assert callable(getattr(SyncObj, "_onTick", None))
    ns = Nodes(tmp_path, 1)
    try:
        node = ns.nodes[0]
        assert node._SyncObj__raftLog is node.journal
        # ...or would send followers a snapshot they cannot decrypt.
        assert isinstance(node._SyncObj__serializer, raftnode.SealedSerializer)
        assert node._SyncObj__serializer._Serializer__pid == 0
        ns.leader()
        bump_many(ns.counters[0], 3)
        assert DurableJournal(str(tmp_path / ns.addrs[0].replace(":", "_")), data_key_for(ns.addrs[0]))[-1][1] >= 4
    finally:
        ns.close()


def test_followers_acknowledge_only_what_is_on_their_disk(three, monkeypatch):
    sent_while_dirty: list[bool] = []
    real = raftnode._send_next_node_idx

    def spy(node, peer, *args, **kwargs):
        sent_while_dirty.append(node.journal.dirty)
        return real(node, peer, *args, **kwargs)

    monkeypatch.setattr(raftnode, "_send_next_node_idx", spy)
    leader, counter = three.leader()
    for _ in range(10):
        bump_many(counter, 30)
    assert len(sent_while_dirty) >= 20
    assert not any(sent_while_dirty), f"{sum(sent_while_dirty)} acknowledgements sent with entries not on disk"


def test_the_leader_applies_only_entries_on_its_own_disk(three, tmp_path):
    leader, counter = three.leader()
    bump_many(counter, 200)
    assert len(counter.dirty_on_leader) == 200
    assert not any(counter.dirty_on_leader)
    # A lone manager too: it commits by itself, in the tick it became leader.
    (tmp_path / "solo").mkdir()
    solo = Nodes(tmp_path / "solo", 1)
    try:
        node, c = solo.leader()
        bump_many(c, 50)
        assert c.dirty_on_leader == [False] * 50
    finally:
        solo.close()


def test_group_commit_shares_fsyncs_between_entries(three):
    leader, counter = three.leader()

    def fsyncs_for(write) -> list[int]:
        before = [n.journal.fsyncs for n in three.nodes]
        write()
        wait_for(lambda: len({c.value for c in three.counters}) == 1, 10, "every node applied every write")
        return [n.journal.fsyncs - b for n, b in zip(three.nodes, before, strict=True)]

    # Pipelined writes (one client, many in flight): a handful of fsyncs.
    used = fsyncs_for(lambda: bump_many(counter, 1000))
    assert all(u <= 10 for u in used), used

    # 8 clients, each waiting for its write before the next: what commits
    # together is written together (one fsync per entry would be 200).
    def clients() -> None:
        threads = [threading.Thread(target=lambda: [bump_many(counter, 1) for _ in range(25)]) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)

    used = fsyncs_for(clients)
    assert all(0 < u <= 100 for u in used), used


# ---- the store on top: crash copies, snapshots, refusals


def store(path: Path, addr: str, timings: RaftTimings | None = None) -> Store:
    s = Store(addr, [], str(path), SECRET, timings=timings, data_key=DATA_KEY)
    wait_for(s.is_leader, 10, "single manager leads")
    return s


def test_acknowledged_writes_survive_a_crash_copy(tmp_path):
    addr = f"127.0.0.1:{free_port()}"
    s = store(tmp_path / "a", addr)
    try:
        for i in range(30):
            s.propose([st.put(task(f"t{i}"), create=True)])
        shutil.copytree(tmp_path / "a", tmp_path / "b")  # while it runs: what it wrote
    finally:
        s.close()
    back = store(tmp_path / "b", addr)
    try:
        assert len(back.snapshot().tasks) == 30
    finally:
        back.close()


def test_snapshot_is_durable_before_the_journal_drops_what_it_covers(tmp_path, monkeypatch):
    events: list[str] = []

    def spy(name, real, before=False):
        def call(*args, **kwargs):
            event = f"{name}:{os.path.basename(str(args[0]))}"
            if before:
                events.append(event)
            out = real(*args, **kwargs)
            if not before:
                events.append(event)
            return out

        return call

    monkeypatch.setattr(raftlog, "write_snapshot_file", spy("snapshot-fsynced", raftlog.write_snapshot_file))
    monkeypatch.setattr(pysyncobj.serializer, "atomicReplace", spy("renamed", pysyncobj.serializer.atomicReplace))
    monkeypatch.setattr(raftlog, "fsync_dir", spy("dir-fsynced", raftlog.fsync_dir))
    monkeypatch.setattr(raftlog, "write_durably", spy("replacing", raftlog.write_durably, before=True))
    addr = f"127.0.0.1:{free_port()}"
    s = store(tmp_path, addr)
    try:
        for i in range(20):
            s.propose([st.put(task(f"t{i}"), create=True)])
        events.clear()
        s.force_compaction()
        wait_for(lambda: f"replacing:{raftlog.JOURNAL_NAME}" in events, 10, "the journal rewritten after the snapshot")
    finally:
        s.close()
    snap = events.index("snapshot-fsynced:snapshot.tmp")
    rename = events.index("renamed:snapshot.tmp")
    wal = events.index(f"replacing:{raftlog.JOURNAL_NAME}")
    assert snap < rename < wal - 1, events
    # The rename is made durable, and only then is the journal replaced.
    assert events[wal - 1] == "dir-fsynced:raft", events


def test_a_compaction_cut_short_by_a_crash_is_finished_at_start(tmp_path):
    """The snapshot was renamed into place, the journal not yet rewritten: the
    journal still holds everything, and the entries after the snapshot too."""
    addr = f"127.0.0.1:{free_port()}"
    raft = tmp_path / "raft"
    s = store(tmp_path, addr)
    try:
        for i in range(20):
            s.propose([st.put(task(f"t{i}"), create=True)])
        before = raftlog.scan_journal("wal", (raft / raftlog.JOURNAL_NAME).read_bytes(), DATA_KEY).entries
        s.force_compaction()
        wait_for(lambda: s.log_length() <= 3, 10, "compacted")
        for i in range(20, 25):
            s.propose([st.put(task(f"t{i}"), create=True)])
    finally:
        s.close()
    after = raftlog.scan_journal("wal", (raft / raftlog.JOURNAL_NAME).read_bytes(), DATA_KEY).entries
    # The journal as it would be had the rewrite not happened: all entries.
    first_after = after[0][1]
    crafted = tmp_path / "crafted"
    crafted.mkdir()
    j = DurableJournal(str(crafted), DATA_KEY)
    for e in before + [e for e in after if e[1] > before[-1][1]]:
        j.add(*e)
    j.sync()
    j._destroy()
    assert first_after > before[0][1]
    shutil.copy(crafted / raftlog.JOURNAL_NAME, raft / raftlog.JOURNAL_NAME)
    back = store(tmp_path, addr)
    try:
        assert len(back.snapshot().tasks) == 25
        assert back.log_length() < 15, "the entries the snapshot covers were dropped"
    finally:
        back.close()


def test_a_journal_newer_than_its_snapshot_is_refused(tmp_path):
    addr = f"127.0.0.1:{free_port()}"
    raft = tmp_path / "raft"
    s = store(tmp_path, addr)
    try:
        s.propose([st.put(task("t0"), create=True)])
        s.force_compaction()
        wait_for(lambda: (raft / raftlog.SNAPSHOT_NAME).exists() and s.log_length() <= 3, 10, "first snapshot")
        old_snapshot = (raft / raftlog.SNAPSHOT_NAME).read_bytes()
        for i in range(1, 10):
            s.propose([st.put(task(f"t{i}"), create=True)])
        s.force_compaction()
        wait_for(lambda: (raft / raftlog.SNAPSHOT_NAME).read_bytes() != old_snapshot and s.log_length() <= 3, 10, "second")
    finally:
        s.close()
    (raft / raftlog.SNAPSHOT_NAME).write_bytes(old_snapshot)
    with pytest.raises(RaftStateError, match="a newer snapshot is missing"):
        Store(addr, [], str(tmp_path), SECRET, data_key=DATA_KEY)


def test_a_damaged_snapshot_refuses_to_start_with_a_clear_message(tmp_path):
    addr = f"127.0.0.1:{free_port()}"
    raft = tmp_path / "raft"
    s = store(tmp_path, addr)
    try:
        s.propose([st.put(task("t0"), create=True)])
        s.force_compaction()
        wait_for(lambda: (raft / raftlog.SNAPSHOT_NAME).exists(), 10, "a snapshot")
    finally:
        s.close()
    snap = raft / raftlog.SNAPSHOT_NAME
    data = bytearray(snap.read_bytes())
    data[len(data) // 2] ^= 0xFF
    snap.write_bytes(bytes(data))
    with pytest.raises(RaftStateError) as err:
        Store(addr, [], str(tmp_path), SECRET, data_key=DATA_KEY)
    assert str(snap) in str(err.value) and "checksum" in str(err.value)


def test_a_failing_disk_stops_the_manager_with_one_clear_line(tmp_path, caplog):
    addr = f"127.0.0.1:{free_port()}"
    s = store(tmp_path, addr)
    wal = tmp_path / "raft" / raftlog.JOURNAL_NAME
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    old = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    try:
        s.propose([st.put(task("t0"), create=True)])
        # As a full disk would: writes past this size fail (EFBIG here, ENOSPC there).
        resource.setrlimit(resource.RLIMIT_FSIZE, (wal.stat().st_size + 50, hard))
        with caplog.at_level(logging.CRITICAL, logger="swarmlet.manager.raftnode"), pytest.raises(StoreError):
            s.propose([st.put(task("t1"), create=True)], timeout=2)
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        assert not s.is_leader()
        assert "disk_error" in s.status()
        lines = [r.getMessage() for r in caplog.records if r.levelno == logging.CRITICAL]
        assert len(lines) == 1 and str(wal) in lines[0] and "stopped taking part in Raft" in lines[0], lines
        assert "t1" not in s.snapshot().tasks
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, old)
        s.close()
    # After the disk is fixed, it starts again from what it had made durable.
    # (Applied once it leads again: under load that is not at once.)
    back = store(tmp_path, addr)
    try:
        wait_for(lambda: set(back.snapshot().tasks) == {"t0"}, 10, "t0 replayed, t1 not")
        assert set(back.snapshot().tasks) == {"t0"}
    finally:
        back.close()


def test_pysyncobj_files_of_an_older_swarmlet_are_converted_once(tmp_path):
    """A manager upgraded from a swarmlet that let pysyncobj keep its own
    files (journal, journal.meta, dump) keeps its state."""
    from swarmlet.api import store_pb2 as spb
    from swarmlet.manager.statemachine import StateMachine as _StateMachine

    raft = tmp_path / "raft"
    raft.mkdir(mode=0o700)
    addr = f"127.0.0.1:{free_port()}"
    sm = _StateMachine(lambda snap: None)
    old_conf = conf()
    old_conf.password = "old-style-password"
    old_conf.journalFile = str(raft / "journal")
    old_conf.fullDumpFile = str(raft / "dump")
    old_conf.useFork = False
    old = SyncObj(addr, [], conf=old_conf, consumers=[sm])
    try:
        wait_for(old._isLeader, 10, "the old-style node leads")

        def put(i: int) -> None:
            batch = spb.StoreBatch(actions=[st.put(task(f"t{i}"), create=True)], request_id=f"r{i}")
            assert spb.StoreResult.FromString(sm.apply(batch.SerializeToString(), sync=True, timeout=5)).ok

        for i in range(10):
            put(i)
        old.forceLogCompaction()
        wait_for(lambda: (raft / "dump").exists() and old.getStatus()["log_len"] <= 3, 10, "pysyncobj wrote its dump")
        for i in range(10, 15):
            put(i)
    finally:
        old.destroy_synchronous()
    s = store(tmp_path, addr)
    try:
        # pysyncobj's journal.meta may hold a commit index older than its
        # journal's tail: the node, leading again, commits and applies the
        # tail in its own time after is_leader (CI once saw 10 of 15 here).
        wait_for(lambda: len(s.snapshot().tasks) == 15, 10, "the 15 converted tasks applied")
        s.propose([st.put(task("t15"), create=True)])
    finally:
        s.close()
    # Converted, encrypted, and the old files (secrets in the clear) deleted.
    assert not (raft / "journal").exists() and not (raft / "dump").exists()
    assert not (raft / raftnode.raftmigrate.MOVED_TO).exists()
    again = store(tmp_path, addr)  # converted once: the second start reads our files
    try:
        wait_for(lambda: len(again.snapshot().tasks) == 16, 10, "the 16 tasks applied from our own files")
    finally:
        again.close()
