"""The event stream on a manager (issue 16): a bounded history of the events
derived from every applied batch, and the streams that read it.

Every manager applies the same Raft log, so it derives the same events at the
same positions: (revision, index), revision being the store version the
batch made. A client that loses its manager resumes on another strictly after
the last position it received, with nothing missing and nothing repeated.

Costs on the Raft tick thread: `feed` only queues the batch with the two
snapshots (copy-on-write, so holding them is free); a thread of its own
derives the events (core/events.py) and appends them to the history.

The history: the last `capacity` events (`swarmlet daemon --event-history`,
10,000 by default), starting when the manager started or installed a Raft
snapshot (events are not persisted: after a restart a manager holds the
events of the entries it re-applied from its journal, and of what came
after). A resume from a position older than that is refused with
FAILED_PRECONDITION, so the client can try a manager that still has it.
"""

from __future__ import annotations

import bisect
import logging
import threading
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, Protocol

from swarmlet import errors, metrics, rpc, tls
from swarmlet.aioserver import pumped
from swarmlet.api import events_pb2 as epb
from swarmlet.api import events_pb2_grpc as egrpc
from swarmlet.api import objects_pb2 as pb
from swarmlet.api import store_pb2 as spb
from swarmlet.core import events as ev
from swarmlet.core import state as st

log = logging.getLogger(__name__)

DEFAULT_HISTORY = 10_000
# How often a quiet stream sends a progress marker (when it got further).
PROGRESS_PERIOD = 1.0
# Events handed to a stream per lock hold.
_CHUNK = 256

_Item = tuple[st.Snapshot, st.Snapshot, spb.StoreBatch] | int  # a batch, or a reset to a version


class EventLog:
    """The bounded history of one manager, fed by its state machine."""

    def __init__(self, capacity: int = DEFAULT_HISTORY) -> None:
        self.capacity = capacity
        # One lock, two conditions: `_cond` wakes the streams (and
        # wait_revision) when the history grew; `_queued` wakes only the
        # deriving thread when a batch arrives. A batch queued by the tick
        # thread then wakes one thread, not every open stream for nothing
        # (nothing is derived yet): the streams wake once per derived batch.
        lock = threading.Lock()
        self._cond = threading.Condition(lock)
        self._queued = threading.Condition(lock)
        self._events: list[ev.Record] = []
        self._keys: list[ev.Position] = []
        # Every event after `_floor` is held (up to `_revision`); before it,
        # history was trimmed or skipped (a Raft snapshot was installed).
        self._floor: ev.Position = (0, ev.LAST_INDEX)
        self._revision = 0
        self._queue: deque[_Item] = deque()
        self._stop = False
        self._thread: threading.Thread | None = None
        if capacity > 0:
            self._thread = threading.Thread(target=self._run, name="event-log", daemon=True)
            self._thread.start()

    @property
    def enabled(self) -> bool:
        return self.capacity > 0

    # ---- fed by the state machine (the Raft tick thread): queue only ----
    def feed(self, old: st.Snapshot, new: st.Snapshot, batch: spb.StoreBatch) -> None:
        if self.capacity > 0:
            with self._queued:
                self._queue.append((old, new, batch))
                self._queued.notify()

    def reset(self, version: int) -> None:
        """The state jumped to `version` without batches (a snapshot was
        loaded or installed): the history cannot cover what came before."""
        if self.capacity > 0:
            with self._queued:
                self._queue.append(version)
                self._queued.notify()

    def close(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
            self._queued.notify_all()

    # ---- the deriving thread ----
    def _run(self) -> None:
        while True:
            with self._queued:
                while not self._queue and not self._stop:
                    self._queued.wait()
                if self._stop:
                    return
                item = self._queue.popleft()
            if isinstance(item, int):
                self._reset(item)
                continue
            old, new, batch = item
            # CPU time of this thread: what deriving costs, not the GIL waits
            # of a busy daemon.
            start = time.thread_time()
            try:
                found = ev.derive(old, new, batch)
            except Exception:  # a bug must not stop the stream silently: say where the gap is
                log.exception("deriving the events of revision %d failed", new.version)
                self._reset(new.version)
                continue
            metrics.EVENTS_DERIVE.observe(time.thread_time() - start)
            self._append(new.version, found)
            self._count(found)

    @staticmethod
    def _count(found: list[ev.Record]) -> None:
        by_type = Counter(e.type for e in found)
        for type_, n in by_type.items():
            metrics.EVENTS.labels(type_).inc(n)
        if by_type.get("node") and any(e.type == "node" and e.attributes.get("leader") == "true" for e in found):
            metrics.LEADER_CHANGES.inc()

    def _append(self, revision: int, found: list[ev.Record]) -> None:
        with self._cond:
            if self._revision and revision != self._revision + 1 and revision > self._revision:
                # Versions skipped without batches (cannot happen with one log; be honest if it does).
                self._floor = (revision - 1, ev.LAST_INDEX)
            self._events.extend(found)
            self._keys.extend(ev.position(e) for e in found)
            self._revision = max(self._revision, revision)
            # Trim in chunks: deleting the head of a list is O(n).
            if len(self._events) > self.capacity + max(1, self.capacity // 4):
                cut = len(self._events) - self.capacity
                self._floor = self._keys[cut - 1]
                del self._events[:cut]
                del self._keys[:cut]
            self._cond.notify_all()

    def _reset(self, version: int) -> None:
        with self._cond:
            self._events.clear()
            self._keys.clear()
            self._floor = (version, ev.LAST_INDEX)
            self._revision = version
            self._cond.notify_all()

    # ---- reading ----
    def bounds(self) -> tuple[ev.Position, int, int]:
        """(floor, revision, events held): what the history covers."""
        with self._cond:
            return self._floor, self._revision, len(self._events)

    def wait_revision(self, revision: int, timeout: float) -> bool:
        """Block until the events of `revision` are derived (tests, benchmarks)."""
        with self._cond:
            return self._cond.wait_for(lambda: self._revision >= revision, timeout)

    def subscribe(
        self,
        req: epb.EventsRequest,
        active: Callable[[], bool],
        progress_period: float = PROGRESS_PERIOD,
        clock: Callable[[], float] = time.time,
    ) -> Iterator[epb.Event]:
        """The events `req` asks for, in order, until `active()` turns false
        or `req.until` passes. Raises errors.Invalid (bad filter),
        errors.FailedPrecondition (the history does not reach back to a
        resume position, or is disabled)."""
        if self.capacity <= 0:
            raise errors.FailedPrecondition("this manager keeps no event history (started with --event-history 0)")
        match = ev.matcher(req.filters)
        with self._cond:
            if req.resume:
                pos: ev.Position = (req.after_revision, req.after_index)
            elif req.since > 0:
                pos = self._floor
            else:
                pos = (self._revision, ev.LAST_INDEX)
        return self._stream(pos, req, match, active, progress_period, clock)

    def _stream(
        self,
        pos: ev.Position,
        req: epb.EventsRequest,
        match: ev.Matcher,
        active: Callable[[], bool],
        progress_period: float,
        clock: Callable[[], float],
    ) -> Iterator[epb.Event]:
        # The starting position first: a client that fails over before the
        # first event still knows where to resume.
        yield epb.Event(revision=pos[0], index=pos[1], progress=True)
        sent = pos  # the last position the client knows of
        quiet_since = time.monotonic()
        while active():
            with self._cond:
                if pos < self._floor:
                    raise errors.FailedPrecondition(
                        f"events after revision {pos[0]} are no longer held by this manager "
                        f"(its history starts after revision {self._floor[0]})"
                    )
                i = bisect.bisect_right(self._keys, pos)
                chunk = self._events[i : i + _CHUNK]
                head = self._revision
                underived = bool(self._queue)
                if not chunk:
                    wait = progress_period
                    if req.until:
                        wait = min(wait, max(0.0, req.until - clock()))
                    self._cond.wait(max(0.01, wait))
            if not chunk:
                if req.until and clock() >= req.until and head <= pos[0] and not underived:
                    return  # nothing more can come before `until`
                if head > pos[0]:
                    # Filtered out or nothing new: the client may resume from here.
                    pos = (head, ev.LAST_INDEX)
                if pos > sent and time.monotonic() - quiet_since >= progress_period:
                    sent = pos
                    quiet_since = time.monotonic()
                    yield epb.Event(revision=pos[0], index=pos[1], progress=True)
                continue
            for e in chunk:
                if req.until and e.time > req.until:
                    return
                pos = ev.position(e)
                if req.since and e.time < req.since:
                    continue
                if match(e):
                    sent = pos
                    quiet_since = time.monotonic()
                    yield e.to_proto()


class Active(Protocol):
    """What `watch` asks of its call."""

    def is_active(self) -> bool: ...


def watch(log_: EventLog, req: epb.EventsRequest, context: Active) -> Iterator[epb.Event]:
    """A gRPC stream of `req`'s events, counted while open."""
    stream = log_.subscribe(req, context.is_active)
    metrics.EVENT_WATCHERS.inc()
    try:
        yield from stream
    finally:
        metrics.EVENT_WATCHERS.dec()


class EventsServicer(egrpc.ClusterEventsServicer):  # type: ignore[misc]  # generated, untyped
    """ClusterEvents on a manager's mutual-TLS port: for the daemons of other
    nodes (workers) streaming events for their CLI."""

    def __init__(self, log_: EventLog, snapshot: Callable[[], st.Snapshot]) -> None:
        self._log = log_
        self._snapshot = snapshot

    @rpc.edge
    async def Watch(self, request: epb.EventsRequest, context: Any) -> AsyncIterator[epb.Event]:
        # Served on the node-facing grpc.aio server (issue 15): the log's
        # blocking subscription is read on a thread of its own.
        ident = tls.peer_identity(context)
        if ident is None:
            raise errors.Unauthenticated("a node certificate is required")
        if ident.node_id not in self._snapshot().nodes:
            raise errors.PermissionDenied(f"node {ident.node_id} is not a member of this cluster (removed?)")
        gone = threading.Event()
        async for e in pumped(watch(self._log, request, _Liveness(gone)), gone):
            yield e


class _Liveness:
    """What `watch` asks of its call (is_active), for a call served on
    grpc.aio: active until the caller went away."""

    def __init__(self, gone: threading.Event) -> None:
        self._gone = gone

    def is_active(self) -> bool:
        return not self._gone.is_set()


# ---- leader announcements ----


class _LeaderStore(Protocol):
    """What the announcer needs of the store (manager/store.py)."""

    self_addr: str

    def wait_leader(self, timeout: float) -> bool: ...
    def status(self) -> dict[str, Any]: ...
    def snapshot(self) -> st.Snapshot: ...
    def propose(self, actions: list[spb.StoreAction], timeout: float = 5.0, request_id: str = "") -> spb.StoreResult: ...


def self_node_id(snap: st.Snapshot, raft_addr: str) -> str:
    """The id of the manager whose Raft address is `raft_addr`, "" if none."""
    for n in snap.nodes.values():
        if n.role == pb.NodeSpec.MANAGER and n.manager_status.raft_addr == raft_addr:
            return n.id
    return ""


class LeaderAnnouncer:
    """Once per term in which this manager leads, commits a LeaderAction: a
    leader change is then an event at one revision on every manager (Raft
    itself keeps no record of who led when)."""

    def __init__(self, store: _LeaderStore) -> None:
        self._store = store
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="leader-announcer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        announced: int | None = None
        while not self._stop.is_set():
            if not self._store.wait_leader(0.5):
                continue
            term = int(self._store.status().get("raft_term") or 0)
            node_id = self_node_id(self._store.snapshot(), self._store.self_addr)
            if term == announced or not node_id:
                # Announced already, or this manager's node is not recorded yet (init).
                self._stop.wait(0.5 if term == announced else 0.1)
                continue
            try:
                # The request id makes a retried announcement apply once.
                action = spb.StoreAction(leader=spb.LeaderAction(node_id=node_id, term=term))
                self._store.propose([action], request_id=f"leader-{node_id}-{term}")
                announced = term
            except errors.SwarmletError as e:
                log.debug("leader announcement for term %d not committed: %s", term, e)
                self._stop.wait(0.5)
