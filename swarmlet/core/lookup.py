"""Finding objects by what users type: an exact id, an exact name, or a
unique id prefix (as the docker CLI does). One resolver for every kind."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TypeVar

from swarmlet import errors
from swarmlet.api import objects_pb2 as pb
from swarmlet.core.state import Snapshot

T = TypeVar("T")


def resolve(table: Mapping[str, T], ref: str, what: str, name_of: Callable[[T], str]) -> T:
    """The object `ref` names. Raises Invalid (empty ref), NotFound, or
    FailedPrecondition when the name or prefix is ambiguous."""
    if not ref:
        raise errors.Invalid(f"no {what} given")
    if ref in table:
        return table[ref]
    by_name = [o for o in table.values() if name_of(o) == ref]
    if len(by_name) == 1:
        return by_name[0]
    if len(by_name) > 1:
        raise errors.FailedPrecondition(f"{what} name {ref!r} is ambiguous ({len(by_name)} match): use an id")
    by_prefix = [o for oid, o in table.items() if oid.startswith(ref)]
    if len(by_prefix) == 1:
        return by_prefix[0]
    if len(by_prefix) > 1:
        raise errors.FailedPrecondition(f"{what} id prefix {ref!r} is ambiguous")
    raise errors.NotFound(f"{what} {ref!r} not found")


def service(snap: Snapshot, ref: str) -> pb.Service:
    return resolve(snap.services, ref, "service", lambda s: s.spec.name)


def node(snap: Snapshot, ref: str) -> pb.Node:
    return resolve(snap.nodes, ref, "node", lambda n: n.description.hostname)


def network(snap: Snapshot, ref: str) -> pb.Network:
    return resolve(snap.networks, ref, "network", lambda n: n.spec.name)


def task(snap: Snapshot, ref: str) -> pb.Task:
    """A task by id, unique id prefix, or name as `service ps` shows it
    ("web.2"; the newest task of that slot)."""
    named = [t for t in snap.tasks.values() if f"{t.service_name}.{t.slot if t.slot else t.node_id}" == ref]
    if named and ref not in snap.tasks:
        return max(named, key=lambda t: (t.meta.created_at, t.meta.version, t.id))
    return resolve(snap.tasks, ref, "task", lambda t: t.id)


def service_or_task(snap: Snapshot, ref: str) -> tuple[pb.Service, pb.Task | None]:
    """What `service logs SERVICE|TASK` names: a service, else one task (with
    its service). Raises NotFound naming both when it is neither."""
    try:
        return service(snap, ref), None
    except errors.NotFound:
        pass
    try:
        t = task(snap, ref)
    except errors.NotFound:
        raise errors.NotFound(f"no such service or task: {ref}") from None
    svc = snap.services.get(t.service_id)
    if svc is None:
        raise errors.NotFound(f"the service of task {ref} no longer exists")
    return svc, t


def node_name(node: pb.Node) -> str:
    """How messages name a node: its host name, else its id."""
    return node.description.hostname or node.id


def names(objs: Iterable[pb.Service]) -> list[str]:
    return sorted(s.spec.name for s in objs)
