"""Cluster-wide series of a manager (issue 16), read from its applied state
and its Raft status when Prometheus scrapes: nothing is counted between
scrapes.

Every manager reports them from its own copy of the replicated state, so the
managers' series agree once they have caught up; dashboards take one of them
(`max without (instance)`), or the leader's (`swarmlet_raft_leader == 1`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from swarmlet.api import objects_pb2 as pb
from swarmlet.core import events as ev
from swarmlet.core import tasks as tk

if TYPE_CHECKING:  # a worker's daemon never loads the store (pysyncobj)
    from swarmlet.manager.store import Store


class ClusterCollector(Collector):
    """Reads the store (None on a node that is no manager: no series)."""

    def __init__(self, store: Callable[[], Store | None]) -> None:
        self._store = store

    def collect(self) -> Iterator[GaugeMetricFamily]:
        store = self._store()
        if store is None:
            return
        yield from _raft(store)
        yield from _state(store)


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)


def _raft(store: Store) -> Iterator[GaugeMetricFamily]:
    s = store.status()
    reachable, members = store.quorum_view()
    yield _gauge("swarmlet_raft_leader", "1 if this manager is the Raft leader", 1.0 if store.is_leader() else 0.0)
    yield _gauge("swarmlet_raft_term", "Current Raft term", float(s.get("raft_term") or 0))
    yield _gauge("swarmlet_raft_commit_index", "Raft commit index as this manager knows it", float(s.get("commit_idx") or 0))
    yield _gauge("swarmlet_raft_applied_index", "Last Raft entry applied by this manager", float(s.get("last_applied") or 0))
    yield _gauge(
        "swarmlet_raft_log_entries", "Entries in this manager's Raft log (since its last snapshot)", float(s.get("log_len") or 0)
    )
    yield _gauge("swarmlet_raft_members", "Voting managers in the Raft membership", float(members))
    yield _gauge(
        "swarmlet_raft_members_reachable", "Managers this one has a live Raft connection to, itself included", float(reachable)
    )
    yield _gauge(
        "swarmlet_raft_quorum",
        "1 if this manager reaches a majority of the managers (0: the swarm may have lost quorum)",
        1.0 if reachable >= members // 2 + 1 else 0.0,
    )
    floor, revision, held = store.events.bounds()
    yield _gauge("swarmlet_store_version", "Store version of this manager's applied state", float(store.version))
    yield _gauge("swarmlet_events_history", "Events held in this manager's history", float(held))
    yield _gauge(
        "swarmlet_events_history_oldest_revision",
        "The history holds every event after this revision",
        float(floor[0] if floor[1] == ev.LAST_INDEX else max(0, floor[0] - 1)),
    )
    del revision


def _state(store: Store) -> Iterator[GaugeMetricFamily]:
    snap = store.snapshot()
    nodes = GaugeMetricFamily("swarmlet_nodes", "Nodes by state, availability and role", labels=["state", "availability", "role"])
    counts = Counter(
        (ev.node_state_name(n.status.state), ev.availability_name(n.spec.availability), ev.role_name(n.role))
        for n in snap.nodes.values()
    )
    for key, n in sorted(counts.items()):
        nodes.add_metric(list(key), float(n))
    yield nodes

    tasks = GaugeMetricFamily("swarmlet_tasks", "Tasks by observed state and desired state", labels=["state", "desired_state"])
    by_state: Counter[tuple[str, str]] = Counter()
    running: Counter[str] = Counter()
    wanted: Counter[str] = Counter()
    for t in snap.tasks.values():
        by_state[(ev.task_state_name(t.status.state), ev.task_state_name(t.desired_state))] += 1
        if tk.wanted(t):
            wanted[t.service_id] += 1
            if t.status.state == pb.RUNNING:
                running[t.service_id] += 1
    for states, n in sorted(by_state.items()):
        tasks.add_metric(list(states), float(n))
    yield tasks

    label_names = ["service_id", "service_name", "mode"]
    desired = GaugeMetricFamily(
        "swarmlet_service_replicas_desired", "Replicas a service should run (global: its wanted tasks)", labels=label_names
    )
    run = GaugeMetricFamily("swarmlet_service_replicas_running", "A service's wanted tasks observed RUNNING", labels=label_names)
    update = GaugeMetricFamily(
        "swarmlet_service_update_state",
        "1 for the state a service's rolling update (or rollback) is in: none, updating, paused, completed, rollback_started, ...",
        labels=["service_id", "service_name", "state"],
    )
    for svc in sorted(snap.services.values(), key=lambda s: s.spec.name):
        mode = tk.service_mode(svc)
        labels = [svc.id, svc.spec.name, mode]
        n = wanted[svc.id] if mode == "global" else int(svc.spec.replicated.replicas)
        desired.add_metric(labels, float(n))
        run.add_metric(labels, float(running[svc.id]))
        update.add_metric([svc.id, svc.spec.name, ev.update_state_name(svc.update_status.state)], 1.0)
    yield desired
    yield run
    yield update
