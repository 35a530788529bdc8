"""What a run of store batches touched: the ids of the objects, per table.

The store records one `Changes` per applied batch (its version); the leader's
incremental round and the dispatcher read the union since the version they
last looked at, with the snapshot of that version, to work only on what
changed (issue 15). Pure: computed from the batch alone.
"""

from __future__ import annotations

from dataclasses import dataclass

from swarmlet.api import store_pb2 as spb

_KIND_FIELD = {
    spb.KIND_NODE: "nodes",
    spb.KIND_SERVICE: "services",
    spb.KIND_TASK: "tasks",
    spb.KIND_CLUSTER: "clusters",
    spb.KIND_NETWORK: "networks",
    spb.KIND_SECRET: "secrets",  # issue 10
    spb.KIND_CONFIG: "configs",
}
_TABLES = ("nodes", "services", "tasks", "clusters", "networks", "secrets", "configs")


@dataclass(frozen=True)
class Changes:
    """Ids written (created, replaced, merged into or deleted) per table.
    `everything`: not known (a snapshot was installed, or the record of
    changes no longer reaches back far enough): treat every object as changed."""

    nodes: frozenset[str] = frozenset()
    services: frozenset[str] = frozenset()
    tasks: frozenset[str] = frozenset()
    clusters: frozenset[str] = frozenset()
    networks: frozenset[str] = frozenset()
    everything: bool = False
    # Issue 10 (kept after `everything`, so that positional construction stays valid).
    secrets: frozenset[str] = frozenset()
    configs: frozenset[str] = frozenset()

    def __or__(self, other: Changes) -> Changes:
        if self.everything or other.everything:
            return EVERYTHING
        return Changes(
            self.nodes | other.nodes,
            self.services | other.services,
            self.tasks | other.tasks,
            self.clusters | other.clusters,
            self.networks | other.networks,
            secrets=self.secrets | other.secrets,
            configs=self.configs | other.configs,
        )

    @property
    def empty(self) -> bool:
        return not (
            self.everything
            or self.nodes
            or self.services
            or self.tasks
            or self.clusters
            or self.networks
            or self.secrets
            or self.configs
        )


NOTHING = Changes()
EVERYTHING = Changes(everything=True)


def union(parts: list[Changes]) -> Changes:
    """All of `parts` as one (in one pass: a frozenset union per part would
    copy the growing sets again and again)."""
    if any(p.everything for p in parts):
        return EVERYTHING
    if len(parts) == 1:
        return parts[0]
    acc: dict[str, set[str]] = {t: set() for t in _TABLES}
    for p in parts:
        for t in _TABLES:
            acc[t] |= getattr(p, t)
    return _of(acc)


def of_batch(batch: spb.StoreBatch) -> Changes:
    """The objects an applied batch wrote."""
    acc: dict[str, set[str]] = {t: set() for t in _TABLES}
    for a in batch.actions:
        which = a.WhichOneof("action")
        if which == "put":
            obj = a.put.WhichOneof("object")
            if obj is not None and obj + "s" in acc:
                acc[obj + "s"].add(getattr(a.put, obj).id)
        elif which == "delete":
            table = _KIND_FIELD.get(a.delete.kind)
            if table is not None:
                acc[table].add(a.delete.id)
        elif which == "task_status":
            acc["tasks"].add(a.task_status.task_id)
        elif which == "task_desired":
            acc["tasks"].add(a.task_desired.task_id)
        elif which == "node_status":
            acc["nodes"].add(a.node_status.node_id)
    return _of(acc)


def _of(acc: dict[str, set[str]]) -> Changes:
    f = frozenset
    return Changes(
        f(acc["nodes"]),
        f(acc["services"]),
        f(acc["tasks"]),
        f(acc["clusters"]),
        f(acc["networks"]),
        secrets=f(acc["secrets"]),
        configs=f(acc["configs"]),
    )
