"""Every node's share of the state, kept per store version for the
dispatcher's sessions, and which nodes' shares changed (issue 15).

Computed once per version for all sessions, on the dispatcher's feed thread,
from what the store says changed (store.changes_since) instead of scanning
every task for every session: a status batch touching 2,000 tasks re-files
those 2,000 and wakes the sessions of their nodes only. Each version is
published as an immutable `View` that the event loop's sessions read without
locks.

Besides its tasks and networks, a node is sent its extras (core/cluster.
session_extras: images, registry credentials, secrets, configs, certificate
fields); the sessions of the nodes whose extras may have changed are woken
too: all of them when secrets, configs, the cluster or the managers changed,
the nodes running a changed service's tasks, and every node with tasks when
a node's readiness, address or images changed (peers to fetch from).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from swarmlet.api import dispatcher_pb2 as dpb
from swarmlet.api import objects_pb2 as pb
from swarmlet.core import changes as ch
from swarmlet.core import cluster as cl
from swarmlet.core import pki
from swarmlet.core import state as st
from swarmlet.core.endpoints import all_assignments
from swarmlet.manager.store import Store


@dataclass(frozen=True)
class View:
    """One store version as the sessions see it. Never mutated once
    published: a later version is a new View sharing what did not change."""

    version: int = -1
    snap: st.Snapshot = field(default_factory=st.Snapshot)
    # node id -> task id -> task (every task the store places on the node,
    # terminal ones included)
    tasks: dict[str, dict[str, pb.Task]] = field(default_factory=dict)
    networks: dict[str, list[dpb.NetworkAssignment]] = field(default_factory=dict)
    managers: tuple[str, ...] = ()
    heartbeat_period: float = cl.DEFAULT_HEARTBEAT_PERIOD
    manager_ids: tuple[str, ...] = ()  # issue 13: in every node's extras


class AssignmentFeed:
    def __init__(self, store: Store) -> None:
        self._store = store
        self.view = View()

    def advance(self) -> set[str] | None:
        """Catch up with the store. Returns the nodes whose share may have
        changed (empty: none; None: every node)."""
        snap = self._store.snapshot()
        old = self.view
        if snap.version == old.version:
            return set()
        changes = self._store.changes_since(old.version, snap.version) if old.version >= 0 else ch.EVERYTHING
        if changes.everything:
            self.view = self._build(snap)
            return None
        tasks = dict(old.tasks)
        dirty: set[str] = set(changes.nodes)
        copied: set[str] = set()

        def own(nid: str) -> dict[str, pb.Task]:
            # Copy a node's dict once per version before changing it: the
            # previous View's readers keep theirs.
            if nid not in copied:
                tasks[nid] = dict(tasks.get(nid, {}))
                copied.add(nid)
            return tasks[nid]

        net_relevant = bool(changes.networks or changes.services or changes.nodes)
        for tid in changes.tasks:
            before, after = old.snap.tasks.get(tid), snap.tasks.get(tid)
            if before is not None and before.node_id:
                own(before.node_id).pop(tid, None)
                dirty.add(before.node_id)
            if after is not None and after.node_id:
                own(after.node_id)[tid] = after
                dirty.add(after.node_id)
            net_relevant = net_relevant or bool(
                (before is not None and before.networks) or (after is not None and after.networks)
            )
        for nid in copied:
            if not tasks[nid]:
                del tasks[nid]
        networks = old.networks
        if net_relevant:
            networks = all_assignments(snap)
            for nid in set(networks) | set(old.networks):
                if _net_bytes(networks.get(nid, [])) != _net_bytes(old.networks.get(nid, [])):
                    dirty.add(nid)
        if changes.services:
            # Registry credentials ride with the service (issue 9).
            for nid, mine in tasks.items():
                if any(t.service_id in changes.services for t in mine.values()):
                    dirty.add(nid)
        if changes.nodes and _peers_changed(old.snap, snap, changes.nodes):
            dirty.update(tasks)
        managers = tuple(cl.manager_addrs(snap))
        manager_ids = tuple(pki.manager_ids(snap)) if changes.nodes else old.manager_ids
        period, _ = cl.heartbeat_settings(snap)
        self.view = View(snap.version, snap, tasks, networks, managers, period, manager_ids)
        if (
            managers != old.managers
            or manager_ids != old.manager_ids
            # Not a period that moved with the node count alone
            # (core/cluster.heartbeat_stretch): every agent learns it from its
            # next heartbeat's answer, and waking every session at each step
            # of a growing cluster would cost more than the step saves.
            or changes.clusters
            or changes.secrets
            or changes.configs
        ):
            return None
        return dirty

    @staticmethod
    def _build(snap: st.Snapshot) -> View:
        tasks: dict[str, dict[str, pb.Task]] = {}
        for t in snap.tasks.values():
            if t.node_id:
                tasks.setdefault(t.node_id, {})[t.id] = t
        period, _ = cl.heartbeat_settings(snap)
        return View(
            snap.version,
            snap,
            tasks,
            all_assignments(snap),
            tuple(cl.manager_addrs(snap)),
            period,
            tuple(pki.manager_ids(snap)),
        )


def _peers_changed(old: st.Snapshot, new: st.Snapshot, nodes: frozenset[str]) -> bool:
    """Whether any of `nodes` changed in what makes it an image source for
    other nodes: ready or not, its API address, the images it holds."""

    def key(n: pb.Node | None) -> object:
        if n is None:
            return None
        return (n.status.state == pb.NodeStatus.READY, n.api_addr, list(n.description.image_records))

    return any(key(old.nodes.get(nid)) != key(new.nodes.get(nid)) for nid in nodes)


def _net_bytes(networks: list[dpb.NetworkAssignment]) -> bytes:
    return b"".join(n.SerializeToString(deterministic=True) for n in networks)
