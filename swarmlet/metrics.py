"""The Prometheus instruments the daemon's parts record into (issue 16).

Every site that measures something calls one thing here in one line, so the
dispatcher, the leader loop, the store and the agent carry no metrics code of
their own. What is a count of objects (nodes, services, tasks, Raft indexes)
is not recorded at all: it is read from the replicated state when Prometheus
scrapes (manager/metrics.py, node/metrics.py), so it costs nothing between
scrapes. The daemon's HTTP endpoint (`swarmlet daemon --metrics-addr`) serves
these together with those scrape-time collectors and the process's own CPU
and memory; docs/operations.md lists every series.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector

from swarmlet.api import objects_pb2 as pb
from swarmlet.api import store_pb2 as spb

# The instruments of this process. Shared by every daemon object in it (unit
# tests build several); each daemon's endpoint serves this registry and its
# own collectors.
REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)  # process_cpu_seconds_total, process_resident_memory_bytes, ...

# Sub-millisecond to seconds: applying, deriving and heartbeats are fast,
# container operations and commits are not.
_FAST = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
_SLOW = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

# ---- the store (managers) ----
RAFT_APPLY = Histogram(
    "swarmlet_raft_apply_seconds",
    "Time to apply one committed store batch to the state (every manager)",
    buckets=_FAST,
    registry=REGISTRY,
)
RAFT_COMMIT = Histogram(
    "swarmlet_raft_commit_seconds",
    "Time from proposing a store batch on this manager until it is committed and applied here",
    buckets=_SLOW,
    registry=REGISTRY,
)
LEADER_CHANGES = Counter(
    "swarmlet_raft_leader_changes", "Leader changes this manager applied (a new leader announced itself)", registry=REGISTRY
)

# ---- the leader's round ----
ROUND = Histogram(
    "swarmlet_leader_round_seconds", "Duration of one planning round of the leader", buckets=_SLOW, registry=REGISTRY
)
ROUND_PLACEMENTS = Histogram(
    "swarmlet_leader_round_placements",
    "Tasks assigned to a node per planning round that changed something",
    buckets=(0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000),
    registry=REGISTRY,
)
PLACEMENTS = Counter("swarmlet_leader_placements", "Tasks assigned to a node by the leader", registry=REGISTRY)

# ---- the event stream ----
EVENTS_DERIVE = Histogram(
    "swarmlet_events_derive_seconds",
    "CPU time spent deriving the events of one applied store batch",
    buckets=_FAST,
    registry=REGISTRY,
)
EVENTS = Counter("swarmlet_events", "Cluster events derived from applied batches", ["type"], registry=REGISTRY)
EVENT_WATCHERS = Gauge("swarmlet_events_watchers", "Event streams open on this daemon", registry=REGISTRY)

# ---- the dispatcher (the leader) ----
SESSIONS = Gauge("swarmlet_dispatcher_sessions", "Agent sessions open on this manager", registry=REGISTRY)
HEARTBEAT_INTERVAL = Histogram(
    "swarmlet_dispatcher_heartbeat_interval_seconds",
    "Time between two heartbeats of one node as the dispatcher receives them (the period plus the latency's jitter)",
    buckets=(0.1, 0.25, 0.4, 0.5, 0.6, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0),
    registry=REGISTRY,
)

# ---- the agent (every node) ----
AGENT_HEARTBEAT = Histogram(
    "swarmlet_agent_heartbeat_seconds",
    "Round trip of a heartbeat from this node's agent to its manager",
    buckets=_FAST,
    registry=REGISTRY,
)
CONTAINER_OPERATION = Histogram(
    "swarmlet_agent_container_operation_seconds",
    "Latency of the engine calls that create, start, stop and remove task containers",
    ["operation"],
    buckets=_SLOW,
    registry=REGISTRY,
)
CONTAINER_OPERATION_ERRORS = Counter(
    "swarmlet_agent_container_operation_errors", "Engine calls that failed, by operation", ["operation"], registry=REGISTRY
)


# ---- image transfers (every node, issue 9) ----
# One fetch is one attempt to bring an image into this node's engine from one
# source: a peer's export over the nodes' API ("peer", whether ordered for a
# task or by `image push`) or the engine's registry pull ("registry"). A task
# whose peers fail tries each of them, then the registry: each attempt counts.
# No image or registry label: references are unbounded (and a registry's
# address is close to its credentials); the node's log names the image.
IMAGE_SOURCES = ("peer", "registry")
IMAGE_FETCHES = Counter(
    "swarmlet_agent_image_fetches",
    "Image fetches into this node's engine, by source (peer, registry) and outcome (ok, failed)",
    ["source", "outcome"],
    registry=REGISTRY,
)
IMAGE_RECEIVED_BYTES = Counter(
    "swarmlet_agent_image_received_bytes",
    "Image bytes received by this node, by source: a peer's archive as it arrives, a registry's layers as the engine "
    "reports its download (layers already present count nothing)",
    ["source"],
    registry=REGISTRY,
)
IMAGE_SERVED_BYTES = Counter(
    "swarmlet_agent_image_served_bytes",
    "Image bytes this node sent to peers (ExportImage: from its engine or relayed from a transfer under way)",
    registry=REGISTRY,
)
IMAGE_FETCH_DURATION = Histogram(
    "swarmlet_agent_image_fetch_seconds",
    "Duration of the image fetches that succeeded, by source (a failed one is counted in swarmlet_agent_image_fetches)",
    ["source"],
    buckets=(0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0),
    registry=REGISTRY,
)
IMAGE_FETCHES_IN_PROGRESS = Gauge(
    "swarmlet_agent_image_fetches_in_progress", "Image fetches under way on this node, by source", ["source"], registry=REGISTRY
)
# Every series exists from the start at 0, so rate() and alerts see the first
# fetch of a node rather than a series appearing.
for _source in IMAGE_SOURCES:
    IMAGE_RECEIVED_BYTES.labels(_source)
    IMAGE_FETCH_DURATION.labels(_source)
    IMAGE_FETCHES_IN_PROGRESS.labels(_source)
    for _outcome in ("ok", "failed"):
        IMAGE_FETCHES.labels(_source, _outcome)


class ImageFetch:
    """One fetch under way: what it has received so far."""

    def __init__(self, source: str) -> None:
        self._bytes = IMAGE_RECEIVED_BYTES.labels(source)
        self.received = 0

    def add(self, n: int) -> None:
        """`n` more bytes arrived (counted at once: a long transfer shows its rate while it runs)."""
        if n > 0:
            self.received += n
            self._bytes.inc(n)

    def reached(self, total: int) -> None:
        """The source's running total is `total` bytes (a pull's progress): counts what it adds."""
        self.add(total - self.received)


@contextmanager
def image_fetch(source: str) -> Iterator[ImageFetch]:
    """Measure one fetch from `source` ("peer" or "registry"): in progress
    while the block runs, then ok (timed) if it returns, failed if it raises."""
    in_progress = IMAGE_FETCHES_IN_PROGRESS.labels(source)
    in_progress.inc()
    start = time.perf_counter()
    outcome = "failed"
    try:
        yield ImageFetch(source)
        outcome = "ok"
    finally:
        in_progress.dec()
        IMAGE_FETCHES.labels(source, outcome).inc()
        if outcome == "ok":
            IMAGE_FETCH_DURATION.labels(source).observe(time.perf_counter() - start)


def image_served(n: int) -> None:
    """This node sent `n` bytes of an image to a peer."""
    IMAGE_SERVED_BYTES.inc(n)


def placements(actions: Iterable[spb.StoreAction]) -> int:
    """How many of a round's actions assign a task to a node."""
    n = 0
    for a in actions:
        if a.WhichOneof("action") == "put" and a.put.WhichOneof("object") == "task" and a.put.task.status.state == pb.ASSIGNED:
            n += 1
    return n


def observe_round(seconds: float, actions: list[spb.StoreAction]) -> None:
    """One planning round: its duration, and what it placed if it changed anything."""
    ROUND.observe(seconds)
    if actions:
        n = placements(actions)
        ROUND_PLACEMENTS.observe(n)
        PLACEMENTS.inc(n)


class _Heartbeats:
    """When each node's previous heartbeat arrived (monotonic clock)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}

    def seen(self, node_id: str) -> None:
        now = time.monotonic()
        with self._lock:
            prev = self._last.get(node_id)
            self._last[node_id] = now
        if prev is not None:
            HEARTBEAT_INTERVAL.observe(now - prev)

    def forget(self, node_id: str) -> None:
        with self._lock:
            self._last.pop(node_id, None)


_heartbeats = _Heartbeats()


def heartbeat(node_id: str) -> None:
    """The dispatcher received a heartbeat from `node_id`."""
    _heartbeats.seen(node_id)


def session_opened(node_id: str) -> None:
    SESSIONS.inc()
    _heartbeats.forget(node_id)  # the first interval of a session is no heartbeat gap


def session_closed() -> None:
    SESSIONS.dec()
