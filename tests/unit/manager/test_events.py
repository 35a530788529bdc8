"""manager/events.py: the bounded history of events and the streams reading
it, fed by real stores (one, and three managers on loopback)."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from swarmlet import errors
from swarmlet.api import events_pb2 as epb
from swarmlet.api import objects_pb2 as pb
from swarmlet.api import store_pb2 as spb
from swarmlet.core import events as ev
from swarmlet.core import state as st
from swarmlet.manager.events import EventLog, LeaderAnnouncer
from tests.unit.manager import helpers as h
from tests.unit.manager.test_store_ha import Cluster
from tests.waiting import wait_for


def task(tid: str) -> pb.Task:
    return pb.Task(id=tid, service_id="svc", service_name="web", slot=1, desired_state=pb.RUNNING)


class Feeder:
    """Applies batches to a snapshot and feeds the log, as the state machine does."""

    def __init__(self, log: EventLog) -> None:
        self.log = log
        self.snap = st.Snapshot()

    def batch(self, *actions: spb.StoreAction, ts: float = 0.0) -> int:
        b = spb.StoreBatch(actions=list(actions), timestamp=ts or time.time(), request_id=str(self.snap.version))
        new = self.snap.shallow_copy()
        assert st.apply_batch(new, b).ok
        self.log.feed(self.snap, new, b)
        self.snap = new
        return new.version

    def create(self, *ids: str, ts: float = 0.0) -> int:
        return self.batch(*(st.put(task(i), create=True) for i in ids), ts=ts)


class Reader:
    """A stream read on a thread, as a servicer would, until stopped."""

    def __init__(self, log: EventLog, req: epb.EventsRequest, progress_period: float = 0.2) -> None:
        self.active = True
        self.items: queue.Queue[epb.Event | BaseException] = queue.Queue()
        stream = log.subscribe(req, lambda: self.active, progress_period=progress_period)
        self.thread = threading.Thread(target=self._run, args=(stream,), daemon=True)
        self.thread.start()

    def _run(self, stream: Iterator[epb.Event]) -> None:
        try:
            for e in stream:
                self.items.put(e)
        except BaseException as e:  # handed to the test
            self.items.put(e)

    def take(self, n: int, timeout: float = 5.0, progress: bool = False) -> list[epb.Event]:
        out: list[epb.Event] = []
        deadline = time.monotonic() + timeout
        while len(out) < n:
            item = self.items.get(timeout=max(0.01, deadline - time.monotonic()))
            if isinstance(item, BaseException):
                raise item
            if progress or not item.progress:
                out.append(item)
        return out

    def stop(self) -> None:
        self.active = False
        self.thread.join(5)


@pytest.fixture
def log() -> Iterator[EventLog]:
    lg = EventLog(capacity=8)
    yield lg
    lg.close()


def ids(events: list[epb.Event]) -> list[str]:
    return [e.id for e in events]


def test_a_live_stream_starts_with_its_position_then_only_new_events(log: EventLog) -> None:
    f = Feeder(log)
    v = f.create("old")
    assert log.wait_revision(v, 5)
    r = Reader(log, epb.EventsRequest())
    first = r.take(1, progress=True)[0]
    assert first.progress and (first.revision, first.index) == (v, ev.LAST_INDEX)
    f.create("a", "b")
    f.create("c")
    got = r.take(3)
    assert ids(got) == ["a", "b", "c"]
    assert [ev.position(e) for e in got] == [(v + 1, 0), (v + 1, 1), (v + 2, 0)]
    r.stop()


def test_since_replays_the_history_and_resume_continues_exactly(log: EventLog) -> None:
    f = Feeder(log)
    f.create("a", ts=100)
    f.create("b", "c", ts=200)
    v = f.create("d", ts=300)
    assert log.wait_revision(v, 5)
    r = Reader(log, epb.EventsRequest(since=150))
    got = r.take(3)
    assert ids(got) == ["b", "c", "d"]
    r.stop()
    # Resume after "b" (revision 2, index 0): c and d, nothing twice.
    r = Reader(log, epb.EventsRequest(resume=True, after_revision=2, after_index=0))
    assert ids(r.take(2)) == ["c", "d"]
    r.stop()


def test_until_ends_the_stream(log: EventLog) -> None:
    f = Feeder(log)
    f.create("a", ts=100)
    v = f.create("b", ts=200)
    assert log.wait_revision(v, 5)
    out = list(log.subscribe(epb.EventsRequest(since=50, until=150), lambda: True))
    assert ids([e for e in out if not e.progress]) == ["a"]


def test_a_filtered_quiet_stream_sends_progress_so_a_resume_needs_no_old_history(log: EventLog) -> None:
    f = Feeder(log)
    r = Reader(log, epb.EventsRequest(filters=ev.parse_filters(["type=service"])), progress_period=0.05)
    r.take(1, progress=True)
    v = f.create("x", "y")
    marker = r.take(1, progress=True)[0]
    assert marker.progress and marker.revision == v
    r.stop()


def test_trimmed_history_refuses_a_resume_from_before_it(log: EventLog) -> None:
    f = Feeder(log)
    for i in range(12):  # t_i at revision i+1; capacity 8: cut back to 8 once past 10
        v = f.create(f"t{i}")
    assert log.wait_revision(v, 5)
    floor, revision, held = log.bounds()
    # Cut at the 11th event (t0..t2 dropped), then t11 came: 9 held, all after (3, 0).
    assert (revision, held, floor) == (v, 9, (3, 0))
    with pytest.raises(errors.FailedPrecondition, match="no longer held by this manager"):
        list(log.subscribe(epb.EventsRequest(resume=True, after_revision=2, after_index=0), lambda: True))
    r = Reader(log, epb.EventsRequest(resume=True, after_revision=3, after_index=0))
    assert ids(r.take(9)) == [f"t{i}" for i in range(3, 12)]
    r.stop()


def test_a_snapshot_install_breaks_the_history_and_says_so(log: EventLog) -> None:
    f = Feeder(log)
    v = f.create("a")
    r = Reader(log, epb.EventsRequest(resume=True, after_revision=v, after_index=ev.LAST_INDEX))
    r.take(1, progress=True)
    log.reset(v + 10)  # the state jumped: events v+1..v+10 were never derived here
    with pytest.raises(errors.FailedPrecondition, match="no longer held"):
        r.take(1)


def test_a_disabled_history_refuses_streams() -> None:
    lg = EventLog(capacity=0)
    with pytest.raises(errors.FailedPrecondition, match="--event-history 0"):
        lg.subscribe(epb.EventsRequest(), lambda: True)


def test_bad_filters_are_refused_before_streaming(log: EventLog) -> None:
    with pytest.raises(errors.Invalid):
        log.subscribe(epb.EventsRequest(filters=[epb.EventFilter(key="type", values=["container"])]), lambda: True)


def test_events_of_a_real_store_carry_its_versions(tmp_path: Path) -> None:
    store = h.leader_store(tmp_path)
    try:
        r = Reader(store.events, epb.EventsRequest())
        r.take(1, progress=True)
        res = store.propose([st.put(task("t1"), create=True)])
        got = r.take(1)[0]
        assert (got.type, got.action, got.id, got.revision) == ("task", "create", "t1", res.version)
        store.barrier()  # a read barrier is a Raft entry but no change: no event
        res = store.propose([st.set_desired("t1", pb.SHUTDOWN)])
        got = r.take(1)[0]
        assert (got.action, got.revision) == ("update", res.version)
        r.stop()
    finally:
        store.close()


def test_a_leader_announces_itself_once_per_term(tmp_path: Path) -> None:
    store = h.leader_store(tmp_path)
    announcer = LeaderAnnouncer(store)
    try:
        h.seed(store, h.new_cluster(), h.manager_node(store.self_addr, "127.0.0.1:4244"))
        r = Reader(store.events, epb.EventsRequest(since=1.0))
        announcer.start()
        leader = wait_for(
            lambda: next((e for e in r.take(1, timeout=10) if e.attributes.get("leader") == "true"), None),
            15,
            "the leader's announcement",
        )
        assert leader.type == "node" and leader.id == h.MANAGER_ID and leader.name == "manager-1"
        assert leader.attributes["term"] == str(store.status()["raft_term"])
        # The announcer keeps looking; in the same term it announces nothing more.
        store.propose([st.put(task("after"), create=True)])
        nxt = r.take(1)[0]
        assert nxt.id == "after"
        r.stop()
    finally:
        announcer.stop()
        store.close()


def test_every_manager_derives_the_same_events(tmp_path: Path) -> None:
    c = Cluster(tmp_path, 3)
    try:
        leader = c.leader()
        for i in range(5):
            leader.propose([st.put(task(f"t{i}"), create=True), st.put(task(f"u{i}"), create=True)])
        c.follower().propose([st.set_desired("t0", pb.SHUTDOWN)])
        version = leader.version
        for s in c.live():
            assert wait_for(lambda s=s: s.version >= version and s.events.wait_revision(version, 1), 20, "caught up")

        def history(s: object) -> list[bytes]:
            out = list(s.events.subscribe(epb.EventsRequest(since=1.0, until=time.time()), lambda: True))  # type: ignore[attr-defined]
            return [e.SerializeToString(deterministic=True) for e in out if not e.progress]

        seen = [history(s) for s in c.live()]
        assert len(seen[0]) == 11 and seen[0] == seen[1] == seen[2]
    finally:
        for s in c.live():
            s.close()
