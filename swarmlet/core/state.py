"""The cluster state as plain tables of protobuf objects, and the one function
that changes it: apply a StoreBatch.

This module is pure (no clocks, no I/O): the Raft state machine calls
`apply_batch` on every replica, and the leader's planners call it on a copy to
see the effect of a plan before proposing it. A batch either applies whole or
not at all, and applying never raises: a Raft command that raises wedges
pysyncobj (see docs/architecture.md).
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from swarmlet import errors
from swarmlet.api import objects_pb2 as pb
from swarmlet.api import store_pb2 as spb
from swarmlet.core.tasks import TERMINAL_STATES

StoreObject = pb.Node | pb.Service | pb.Task | pb.Cluster | pb.Network | pb.Secret | pb.Config

_KIND_TABLE: dict[spb.ObjectKind, str] = {
    spb.KIND_NODE: "nodes",
    spb.KIND_SERVICE: "services",
    spb.KIND_TASK: "tasks",
    spb.KIND_CLUSTER: "clusters",
    spb.KIND_NETWORK: "networks",
    spb.KIND_SECRET: "secrets",
    spb.KIND_CONFIG: "configs",
}


def table_of_kind(kind: spb.ObjectKind) -> str | None:
    """The table a DeleteAction's kind names ("tasks"), None if unknown."""
    return _KIND_TABLE.get(kind)


@dataclass
class Snapshot:
    """Every object of the cluster, keyed by id. The planners read it; only
    `apply_batch` writes it."""

    nodes: dict[str, pb.Node] = field(default_factory=dict)
    services: dict[str, pb.Service] = field(default_factory=dict)
    tasks: dict[str, pb.Task] = field(default_factory=dict)
    clusters: dict[str, pb.Cluster] = field(default_factory=dict)
    networks: dict[str, pb.Network] = field(default_factory=dict)
    secrets: dict[str, pb.Secret] = field(default_factory=dict)
    configs: dict[str, pb.Config] = field(default_factory=dict)
    version: int = 0

    def copy(self) -> Snapshot:
        return copy.deepcopy(self)

    def shallow_copy(self) -> Snapshot:
        """New tables holding the same objects. apply_batch replaces objects
        instead of mutating them, so a reader holding the old snapshot keeps a
        consistent view without locks (the store relies on this)."""
        return Snapshot(
            nodes=dict(self.nodes),
            services=dict(self.services),
            tasks=dict(self.tasks),
            clusters=dict(self.clusters),
            networks=dict(self.networks),
            secrets=dict(self.secrets),
            configs=dict(self.configs),
            version=self.version,
        )

    @property
    def cluster(self) -> pb.Cluster | None:
        for c in self.clusters.values():
            return c
        return None

    def table(self, name: str) -> Mapping[str, StoreObject]:
        """A table by name: a PutAction oneof name plus "s" ("tasks", "networks")."""
        t: Mapping[str, StoreObject] = getattr(self, name)
        return t

    def tasks_of_service(self, service_id: str) -> list[pb.Task]:
        return [t for t in self.tasks.values() if t.service_id == service_id]


# Table name -> object type: how tables are (de)serialized by the Raft store,
# backups and the digest.
TABLE_TYPES = {
    "nodes": pb.Node,
    "services": pb.Service,
    "tasks": pb.Task,
    "clusters": pb.Cluster,
    "networks": pb.Network,
    "secrets": pb.Secret,
    "configs": pb.Config,
}


class Conflict(errors.Conflict):
    """A precondition of the batch failed; nothing was applied."""


def kind_word(kind: spb.ObjectKind) -> str:
    """What users call an object of a store kind ("secret"), for messages."""
    table = _KIND_TABLE.get(kind)
    return table[:-1] if table else "object"


class NameTaken(Conflict):
    """The batch would give one name to two objects of a table whose names
    are unique (UNIQUE_NAME_TABLES)."""

    def __init__(self, table: str, name: str) -> None:
        super().__init__(f"a {table[:-1]} named {name!r} already exists")
        self.table = table
        self.name = name


# Tables whose objects' names (spec.name) are unique, checked when a batch is
# applied (issue 14: a check against a snapshot alone let concurrent creates
# through different managers both win). Not nodes: a node is known by its
# hostname, which Swarm does not make unique either (two hosts may share one;
# a lookup by it then refuses to guess), nor tasks (named by service and
# slot), nor the one cluster object. A stack is no object: its services,
# networks, secrets and configs carry its label and are checked here.
UNIQUE_NAME_TABLES = ("services", "networks", "secrets", "configs")
_TABLE_KIND: dict[str, spb.ObjectKind] = {table: kind for kind, table in _KIND_TABLE.items()}
NamedObject = pb.Service | pb.Network | pb.Secret | pb.Config


def _put_target(put: spb.PutAction) -> tuple[str, StoreObject]:
    which = put.WhichOneof("object")
    if which is None:
        raise Conflict("put without an object")
    return which + "s", getattr(put, which)


def check_batch(snap: Snapshot, batch: spb.StoreBatch) -> None:
    """Raise Conflict if any precondition of the batch fails against `snap`.

    Puts and deletes check versions; merge actions (status, desired state) check
    only that their target exists, since they never conflict."""
    # Objects the batch itself creates or deletes, so that a batch may create a
    # task and then merge into it.
    created: set[tuple[str, str]] = set()
    deleted: set[tuple[str, str]] = set()
    # Puts that give an object a name it did not have (creates, renames).
    naming: list[tuple[str, str, str]] = []
    for action in batch.actions:
        which = action.WhichOneof("action")
        if which == "put":
            table, obj = _put_target(action.put)
            if not obj.id:
                raise Conflict(f"put into {table} without an id")
            cur = getattr(snap, table).get(obj.id)
            exp = action.put.expected_version
            if (table, obj.id) in created or (table, obj.id) in deleted:
                raise Conflict(f"{table} {obj.id} written twice in one batch")
            if exp == 0 and cur is not None:
                raise Conflict(f"{table[:-1]} {obj.id} already exists")
            if exp != 0 and (cur is None or cur.meta.version != exp):
                have = "missing" if cur is None else f"version {cur.meta.version}"
                raise Conflict(f"{table[:-1]} {obj.id} changed (expected version {exp}, {have})")
            created.add((table, obj.id))
            if table in UNIQUE_NAME_TABLES and (cur is None or _name(cur) != _name(obj)):
                naming.append((table, obj.id, _name(obj)))
        elif which == "delete":
            d = action.delete
            name = _KIND_TABLE.get(d.kind)
            if name is None:
                raise Conflict(f"unknown kind {d.kind}")
            cur = getattr(snap, name).get(d.id)
            if d.expected_version and (cur is None or cur.meta.version != d.expected_version):
                raise Conflict(f"{name[:-1]} {d.id} changed before delete")
            deleted.add((name, d.id))
        elif which in ("task_status", "task_desired", "node_status"):
            pass  # merges: a missing target is skipped at apply time
        elif which == "leader":
            pass  # changes no object: it is there for the event stream (core/events.py)
        else:
            raise Conflict("empty action")
    # A re-seeding batch recreates objects whose names were checked when
    # they were given (or before the check existed): refusing them now would
    # leave a restore or force-new-cluster with no state at all.
    if naming and not batch.recreate:
        _check_names(snap, batch, naming, deleted)


def _name(obj: StoreObject) -> str:
    """The user-given name of an object of a UNIQUE_NAME_TABLES table."""
    assert isinstance(obj, NamedObject)
    return obj.spec.name


def _check_names(
    snap: Snapshot, batch: spb.StoreBatch, naming: list[tuple[str, str, str]], deleted: set[tuple[str, str]]
) -> None:
    """Raise NameTaken if, after the batch, an object named by it shares its
    name with another object of its table. Only names the batch gives are
    checked, so objects that share a name from before this check existed can
    still be updated (and removed)."""
    for table in {t for t, _, _ in naming}:
        final = {oid: _name(obj) for oid, obj in snap.table(table).items() if (table, oid) not in deleted}
        for action in batch.actions:
            if action.WhichOneof("action") == "put":
                t, obj = _put_target(action.put)
                if t == table:
                    final[obj.id] = _name(obj)
        wanted = {name for t, _, name in naming if t == table}
        holders: dict[str, list[str]] = {}
        for oid, name in final.items():
            if name in wanted:
                holders.setdefault(name, []).append(oid)
        for t, _, name in naming:
            if t == table and len(holders.get(name, [])) > 1:
                raise NameTaken(table, name)


def apply_batch(snap: Snapshot, batch: spb.StoreBatch) -> spb.StoreResult:
    """Apply the batch to `snap` in place if all its preconditions hold.

    Never raises. The new store version is the old one plus one: every object
    written by the batch gets it as meta.version."""
    try:
        check_batch(snap, batch)
    except NameTaken as e:
        return spb.StoreResult(ok=False, error=str(e), version=snap.version, taken_kind=_TABLE_KIND[e.table], taken_name=e.name)
    except Conflict as e:
        return spb.StoreResult(ok=False, error=str(e), version=snap.version)
    version = snap.version + 1
    now = batch.timestamp
    for action in batch.actions:
        which = action.WhichOneof("action")
        if which == "put":
            table, obj = _put_target(action.put)
            new = copy.deepcopy(obj)
            cur = getattr(snap, table).get(new.id)
            new.meta.version = version
            new.meta.created_at = cur.meta.created_at if cur is not None else (new.meta.created_at or now)
            new.meta.updated_at = now
            getattr(snap, table)[new.id] = new
        elif which == "delete":
            getattr(snap, _KIND_TABLE[action.delete.kind]).pop(action.delete.id, None)
        elif which == "task_status":
            _merge_task_status(snap, action.task_status, version)
        elif which == "task_desired":
            t = snap.tasks.get(action.task_desired.task_id)
            # Desired state only moves forward (RUNNING -> SHUTDOWN -> REMOVE).
            if t is not None and action.task_desired.desired_state > t.desired_state:
                t = snap.tasks[t.id] = copy.deepcopy(t)
                t.desired_state = action.task_desired.desired_state
                t.meta.version = version
                t.meta.updated_at = now
        elif which == "node_status":
            ns = action.node_status
            n = snap.nodes.get(ns.node_id)
            if n is not None:
                n = snap.nodes[n.id] = copy.deepcopy(n)
                n.status.CopyFrom(ns.status)
                if ns.HasField("description"):
                    n.description.CopyFrom(ns.description)
                if ns.HasField("certificate"):  # issue 13: what node inspect shows, what root rotation counts
                    n.certificate.CopyFrom(ns.certificate)
                n.meta.version = version
                n.meta.updated_at = now
    snap.version = version
    return spb.StoreResult(ok=True, version=version)


def _merge_task_status(snap: Snapshot, a: spb.TaskStatusAction, version: int) -> None:
    t = snap.tasks.get(a.task_id)
    if t is None:
        return
    # Only the node the task is assigned to may report on it (a node that was
    # declared down and replaced must not resurrect its old task's state).
    if a.node_id and t.node_id != a.node_id:
        return
    cur = t.status.state
    new = a.status.state
    # States only increase; an equal state may refresh message/ids.
    if new < cur or (cur in TERMINAL_STATES and new != cur):
        return
    t = snap.tasks[t.id] = copy.deepcopy(t)
    t.status.CopyFrom(a.status)
    if new == pb.RUNNING and not t.running_at:
        # The status is overwritten by the next report; the rolling updater
        # needs how long a task ran (healthy) even after it ended.
        t.running_at = a.status.timestamp
    t.meta.version = version
    t.meta.updated_at = a.status.timestamp or t.meta.updated_at


def iter_objects(snap: Snapshot) -> Iterable[tuple[str, str, object]]:
    for table in ("clusters", "nodes", "networks", "secrets", "configs", "services", "tasks"):
        for oid, obj in getattr(snap, table).items():
            yield table, oid, obj


# ---- helpers for planners: build actions ----


def put(obj: StoreObject, create: bool = False) -> spb.StoreAction:
    """A Put of `obj`, guarded by the version it was read at (or must-not-exist)."""
    p = spb.PutAction(expected_version=0 if create else obj.meta.version)
    getattr(p, type(obj).__name__.lower()).CopyFrom(obj)
    return spb.StoreAction(put=p)


def delete(kind: spb.ObjectKind, oid: str, expected_version: int = 0) -> spb.StoreAction:
    return spb.StoreAction(delete=spb.DeleteAction(kind=kind, id=oid, expected_version=expected_version))


def set_desired(task_id: str, state: pb.TaskState) -> spb.StoreAction:
    return spb.StoreAction(task_desired=spb.TaskDesiredAction(task_id=task_id, desired_state=state))


def set_status(task_id: str, status: pb.TaskStatus, node_id: str = "") -> spb.StoreAction:
    return spb.StoreAction(task_status=spb.TaskStatusAction(task_id=task_id, node_id=node_id, status=status))


def state_digest(snap: Snapshot) -> str:
    """sha256 of the applied state: every object's deterministic bytes and the
    version. Two managers that applied the same log agree on it."""
    h = hashlib.sha256(f"v{snap.version}".encode())
    for table in TABLE_TYPES:
        objs = getattr(snap, table)
        for oid in sorted(objs):
            raw = objs[oid].SerializeToString(deterministic=True)
            h.update(f"|{table}/{oid}/{len(raw)}|".encode())
            h.update(raw)
    return h.hexdigest()
