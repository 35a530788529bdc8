"""The cluster's events, derived from applied store batches (issue 16).

Pure: `derive(old, new, batch)` compares the objects the batch touched before
and after it, so every manager, applying the same log, derives the same events
at the same positions (revision = the store version the batch made, index =
the event's place in the batch). The manager keeps a bounded history of them
(manager/events.py); filters are checked here, once, for the manager and the
CLI alike.

What an event says is chosen for operators who automate on `docker events`:
a type (service, task, node, network, cluster; secret and config for their
tables), an action (create, update, remove, state), the object's id and name,
and attributes naming what changed ("state.old" / "state.new",
"replicas.old" / "replicas.new", "updatestate.new", ...). Secrets never appear:
a cluster event says a token was rotated, never the token; a secret or config
event carries its name and labels only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from google.protobuf.message import Message

from swarmlet import errors
from swarmlet.api import events_pb2 as epb
from swarmlet.api import objects_pb2 as pb
from swarmlet.api import store_pb2 as spb
from swarmlet.core import state as st

TYPES = ("service", "task", "node", "network", "cluster", "secret", "config")
ACTIONS = ("create", "update", "remove", "state")
FILTER_KEYS = ("type", "event", "service", "node", "network", "secret", "config", "label")

# The last index of a revision: position (R, LAST_INDEX) is "all of revision R".
LAST_INDEX = 2**32 - 1

Position = tuple[int, int]
Attrs = dict[str, str]


# ---------------------------------------------------------------- names


# Enum value -> lower-case name, computed once (the enum wrapper's Name() is
# slow enough to matter for a batch of thousands of tasks).
_TASK_STATES = {v: k.lower() for k, v in pb.TaskState.items()}
_NODE_STATES = {v: k.lower() for k, v in pb.NodeStatus.State.items()}
_AVAILABILITY = {v: k.lower() for k, v in pb.NodeSpec.Availability.items()}
_ROLES = {v: k.lower() for k, v in pb.NodeSpec.Role.items()}
_UPDATE_STATES = {v: k.lower() for k, v in pb.UpdateStatus.State.items()}


def task_state_name(state: int) -> str:
    return _TASK_STATES.get(state) or str(state)


def node_state_name(state: int) -> str:
    return _NODE_STATES.get(state) or str(state)


def availability_name(a: int) -> str:
    return _AVAILABILITY.get(a) or str(a)


def role_name(r: int) -> str:
    return _ROLES.get(r) or str(r)


def update_state_name(s: int) -> str:
    return _UPDATE_STATES.get(s) or str(s)


def task_name(t: pb.Task) -> str:
    """As `service ps` names it: name.slot, or name.nodeid for a global task."""
    return f"{t.service_name}.{t.slot if t.slot else t.node_id}"


def _hostname(snap: st.Snapshot, node_id: str) -> str:
    n = snap.nodes.get(node_id)
    return n.description.hostname if n is not None else ""


# ---------------------------------------------------------------- per type

# A change of one object: (action, attributes).
Change = tuple[str, Attrs]


def _pair(key: str, a: str, b: str) -> Attrs:
    out: Attrs = {}
    if a != b:
        out[f"{key}.old"], out[f"{key}.new"] = a, b
    return out


def _replicas(s: pb.Service) -> str:
    return "global" if s.spec.WhichOneof("mode") == "global" else str(s.spec.replicated.replicas)


def _service_changes(old: pb.Service | None, new: pb.Service | None) -> list[Change]:
    if new is None:
        return [("remove", {})]
    if old is None:
        return [("create", {"replicas": _replicas(new), "image": new.spec.task.container.image})]
    attrs: Attrs = {}
    if old.spec != new.spec:
        attrs.update(_pair("replicas", _replicas(old), _replicas(new)))
        attrs.update(_pair("image", old.spec.task.container.image, new.spec.task.container.image))
        if new.spec_version != old.spec_version:
            attrs["spec_version"] = str(new.spec_version)
        if not attrs:
            attrs["spec"] = "changed"
    ou, nu = old.update_status, new.update_status
    if ou.state != nu.state or ou.message != nu.message or ou.canaries_ready != nu.canaries_ready:
        attrs.update(_pair("updatestate", update_state_name(ou.state), update_state_name(nu.state)))
        attrs["updatestate"] = update_state_name(nu.state)
        if nu.message:
            attrs["updatestate.message"] = nu.message
        if nu.canaries_ready != ou.canaries_ready:
            attrs["canaries_ready"] = "true" if nu.canaries_ready else "false"
    # Address allocation (virtual IPs) alone is the allocator's bookkeeping: no event.
    return [("update", attrs)] if attrs else []


def _task_base(t: pb.Task, snap: st.Snapshot) -> Attrs:
    attrs = {"service": t.service_name, "service.id": t.service_id, "slot": str(t.slot)}
    if t.node_id:
        attrs["node.id"] = t.node_id
        host = _hostname(snap, t.node_id)
        if host:
            attrs["node.name"] = host
    return attrs


def _task_changes(old: pb.Task | None, new: pb.Task | None, snap: st.Snapshot) -> list[Change]:
    if new is None:
        return [("remove", {})] if old is None else [("remove", _task_base(old, snap))]
    base = _task_base(new, snap)
    if old is None:
        base["state"] = task_state_name(new.status.state)
        base["desired"] = task_state_name(new.desired_state)
        return [("create", base)]
    out: list[Change] = []
    if old.status.state != new.status.state:
        attrs = base | _pair("state", task_state_name(old.status.state), task_state_name(new.status.state))
        for key in ("message", "err"):
            if getattr(new.status, key):
                attrs[key] = getattr(new.status, key)
        if new.status.state >= pb.COMPLETE and new.status.exit_code:
            attrs["exit_code"] = str(new.status.exit_code)
        out.append(("state", attrs))
    elif old.status.err != new.status.err and new.status.err:
        # Still pending, for a new reason: why it waits changed.
        out.append(("state", base | {"state.new": task_state_name(new.status.state), "err": new.status.err}))
    if old.desired_state != new.desired_state:
        out.append(("update", base | _pair("desired", task_state_name(old.desired_state), task_state_name(new.desired_state))))
    return out


def _node_changes(old: pb.Node | None, new: pb.Node | None) -> list[Change]:
    if new is None:
        return [("remove", {})]
    if old is None:
        return [
            (
                "create",
                {
                    "role": role_name(new.role),
                    "availability": availability_name(new.spec.availability),
                    "state": node_state_name(new.status.state),
                },
            )
        ]
    out: list[Change] = []
    if old.status.state != new.status.state:
        attrs = _pair("state", node_state_name(old.status.state), node_state_name(new.status.state))
        if new.status.message:
            attrs["message"] = new.status.message
        out.append(("state", attrs))
    upd: Attrs = {}
    upd.update(_pair("availability", availability_name(old.spec.availability), availability_name(new.spec.availability)))
    upd.update(_pair("role", role_name(old.role), role_name(new.role)))
    upd.update(_pair("desired_role", role_name(old.spec.desired_role), role_name(new.spec.desired_role)))
    if old.spec.labels != new.spec.labels:
        upd["labels"] = "changed"
    if old.description.hostname != new.description.hostname:
        upd.update(_pair("name", old.description.hostname, new.description.hostname))
    if upd:
        out.append(("update", upd))
    return out


def _network_changes(old: pb.Network | None, new: pb.Network | None) -> list[Change]:
    if new is None:
        return [("remove", {})]
    if old is None:
        return [("create", {"driver": new.spec.driver or "overlay", **({"ingress": "true"} if new.spec.ingress else {})})]
    attrs: Attrs = {}
    if new.subnet != old.subnet or new.vni != old.vni:
        attrs.update({"subnet": new.subnet, "vni": str(new.vni)})
    if new.error != old.error:
        attrs["error"] = new.error
    if old.spec != new.spec:
        attrs["spec"] = "changed"
    return [("update", attrs)] if attrs else []


def _cluster_changes(old: pb.Cluster | None, new: pb.Cluster | None) -> list[Change]:
    # Tokens, keys and the Raft secret never go into an event: only that they changed.
    if new is None:
        return [("remove", {})]
    if old is None:
        return [("create", {})]
    attrs: Attrs = {}
    if old.spec != new.spec:
        attrs["spec"] = "changed"
    if old.worker_token != new.worker_token:
        attrs["worker_token"] = "rotated"
    if old.manager_token != new.manager_token:
        attrs["manager_token"] = "rotated"
    if old.root_ca.digest != new.root_ca.digest:
        attrs["root_ca"] = "rotated"
    if old.raft_secret != new.raft_secret:
        attrs["raft_secret"] = "rotated"
    # The membership-change marker is the managers' own lock: no event.
    return [("update", attrs)] if attrs else []


def _spec_of(obj: Message | None) -> Any:
    return getattr(obj, "spec", None) if obj is not None else None


def _generic_changes(old: Message | None, new: Message | None) -> list[Change]:
    """Objects of tables this module knows nothing specific about (secrets,
    configs): create / update (their spec changed) / remove, nothing else:
    their payload may be secret."""
    if new is None:
        return [("remove", {})]
    if old is None:
        return [("create", {})]
    return [("update", {})] if _spec_of(old) != _spec_of(new) else []


# ---------------------------------------------------------------- names and labels


def _name_and_labels(obj: Message, snap: st.Snapshot) -> tuple[str, Mapping[str, str]]:
    if isinstance(obj, pb.Task):
        svc = snap.services.get(obj.service_id)
        return task_name(obj), (svc.spec.labels if svc is not None else {})
    if isinstance(obj, pb.Node):
        return obj.description.hostname, obj.spec.labels
    if isinstance(obj, pb.Cluster):
        return "", {}
    spec = _spec_of(obj)
    name = getattr(spec, "name", "") if spec is not None else ""
    labels = getattr(spec, "labels", {}) if spec is not None else {}
    return str(name), labels


# ---------------------------------------------------------------- derive


def _touched(batch: spb.StoreBatch) -> list[tuple[str, str] | spb.LeaderAction]:
    """What the batch touched, in the order first touched: (table, id) per
    object (once, however many actions touch it), leader announcements."""
    seen: set[tuple[str, str]] = set()
    out: list[tuple[str, str] | spb.LeaderAction] = []

    def add(table: str | None, oid: str) -> None:
        if table is not None and (table, oid) not in seen:
            seen.add((table, oid))
            out.append((table, oid))

    for a in batch.actions:
        which = a.WhichOneof("action")
        if which == "put":
            kind = a.put.WhichOneof("object")
            if kind is not None:
                add(kind + "s", getattr(a.put, kind).id)
        elif which == "delete":
            add(st.table_of_kind(a.delete.kind), a.delete.id)
        elif which in ("task_status", "task_desired"):
            add("tasks", getattr(a, which).task_id)
        elif which == "node_status":
            add("nodes", a.node_status.node_id)
        elif which == "leader":
            out.append(a.leader)
    return out


def _changes(table: str, old: Any, new: Any, snap_new: st.Snapshot, snap_old: st.Snapshot) -> list[Change]:
    if table == "services":
        return _service_changes(old, new)
    if table == "tasks":
        return _task_changes(old, new, snap_new if new is not None else snap_old)
    if table == "nodes":
        return _node_changes(old, new)
    if table == "networks":
        return _network_changes(old, new)
    if table == "clusters":
        return _cluster_changes(old, new)
    return _generic_changes(old, new)


class Record:
    """One derived event, kept light: the history holds thousands and most
    are never streamed, so the protobuf message is built only when a stream
    sends it (once, then shared by every stream)."""

    __slots__ = ("revision", "index", "time", "type", "action", "id", "name", "attributes", "labels", "_proto")

    progress = False  # a Record is a change; progress markers are only ever protobufs

    def __init__(self, type_: str, action: str, id_: str, name: str, attributes: Attrs, labels: Mapping[str, str]) -> None:
        self.revision = 0
        self.index = 0
        self.time = 0.0
        self.type = type_
        self.action = action
        self.id = id_
        self.name = name
        self.attributes = attributes
        self.labels = labels  # the object's own map (snapshots are never mutated): copied in to_proto
        self._proto: epb.Event | None = None

    def to_proto(self) -> epb.Event:
        if self._proto is None:
            self._proto = epb.Event(
                revision=self.revision,
                index=self.index,
                time=self.time,
                type=self.type,
                action=self.action,
                id=self.id,
                name=self.name,
                attributes=self.attributes,
                labels=dict(self.labels),
            )
        return self._proto


def derive(old: st.Snapshot, new: st.Snapshot, batch: spb.StoreBatch) -> list[Record]:
    """The events of one applied batch that took the store from `old` to
    `new` (new.version is their revision). Deterministic: the same on every
    manager."""
    out: list[Record] = []
    for item in _touched(batch):
        if isinstance(item, spb.LeaderAction):
            node = new.nodes.get(item.node_id)
            host = node.description.hostname if node is not None else ""
            node_labels: Mapping[str, str] = node.spec.labels if node is not None else {}
            out.append(Record("node", "update", item.node_id, host, {"leader": "true", "term": str(item.term)}, node_labels))
            continue
        table, oid = item
        before: Message | None = getattr(old, table, {}).get(oid)
        after: Message | None = getattr(new, table, {}).get(oid)
        shown = after if after is not None else before
        if shown is None:
            continue  # created and deleted within the batch, or a merge into nothing
        name, labels = _name_and_labels(shown, new if after is not None else old)
        type_ = table[:-1]
        for action, attrs in _changes(table, before, after, new, old):
            out.append(Record(type_, action, oid, name, attrs, labels))
    revision, ts = new.version, batch.timestamp
    for i, e in enumerate(out):
        e.revision, e.index, e.time = revision, i, ts
    return out


class _Positioned(Protocol):
    revision: int
    index: int


def position(e: _Positioned) -> Position:
    return (e.revision, e.index)


# ---------------------------------------------------------------- filters


@dataclass(frozen=True)
class Matcher:
    """Docker's filter semantics: values of one key are alternatives, keys
    must all match. Progress markers always pass."""

    filters: tuple[tuple[str, frozenset[str]], ...] = ()

    def __call__(self, e: Record | epb.Event) -> bool:
        if e.progress:
            return True
        return all(_match(key, values, e) for key, values in self.filters)


def _match(key: str, values: frozenset[str], e: Record | epb.Event) -> bool:
    a = e.attributes
    if key == "type":
        return e.type in values
    if key == "event":
        return e.action in values
    if key == "label":
        return any(_label_match(v, e.labels) for v in values)
    if key == "service":
        if e.type == "service":
            return e.id in values or e.name in values
        return e.type == "task" and (a.get("service.id", "") in values or a.get("service", "") in values)
    if key == "node":
        if e.type == "node":
            return e.id in values or e.name in values
        return e.type == "task" and (a.get("node.id", "") in values or a.get("node.name", "") in values)
    # network, secret, config: events of that type, by id or name
    return e.type == key and (e.id in values or e.name in values)


def _label_match(v: str, labels: Mapping[str, str]) -> bool:
    k, eq, val = v.partition("=")
    return k in labels and (not eq or labels[k] == val)


def matcher(filters: Iterable[epb.EventFilter]) -> Matcher:
    """The Matcher for a request's filters. Raises errors.Invalid naming the
    bad key or value."""
    merged: dict[str, set[str]] = {}
    for f in filters:
        if f.key not in FILTER_KEYS:
            raise errors.Invalid(f"invalid filter {f.key!r}: use one of {', '.join(FILTER_KEYS)}")
        for v in f.values:
            if not v:
                raise errors.Invalid(f"filter {f.key}= needs a value")
            if f.key == "type" and v not in TYPES:
                raise errors.Invalid(f"invalid type filter {v!r}: use one of {', '.join(TYPES)}")
            if f.key == "event" and v not in ACTIONS:
                raise errors.Invalid(f"invalid event filter {v!r}: use one of {', '.join(ACTIONS)}")
        merged.setdefault(f.key, set()).update(f.values)
    return Matcher(tuple(sorted((k, frozenset(v)) for k, v in merged.items())))


def parse_filters(texts: Sequence[str]) -> list[epb.EventFilter]:
    """`--filter key=value` arguments (repeatable) -> EventFilters, checked.
    Raises errors.Invalid."""
    merged: dict[str, list[str]] = {}
    for text in texts:
        key, eq, value = text.partition("=")
        key = key.strip().lower()
        if not eq or not key:
            raise errors.Invalid(f"bad filter {text!r}: expected key=value")
        merged.setdefault(key, []).append(value)
    out = [epb.EventFilter(key=k, values=v) for k, v in merged.items()]
    matcher(out)  # raises on an unknown key or value
    return out


def resume_request(req: epb.EventsRequest, last: Position) -> epb.EventsRequest:
    """The request that continues `req` strictly after position `last` (the
    last event or progress marker received): no gap, no duplicate."""
    out = epb.EventsRequest()
    out.CopyFrom(req)
    out.resume = True
    out.after_revision, out.after_index = last
    out.since = 0.0
    return out
