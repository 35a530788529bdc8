"""Which parts of a leader round a set of changes can affect (issue 15).

The round is deterministic in what each stage reads. Between the snapshot a
round planned on (`prev`) and the next (`snap`), only the objects in
`changes` differ; a stage whose inputs did not change plans what it planned
before, and that was nothing: either the previous plan was empty for it, or
its actions were applied, and then the objects they wrote are themselves in
`changes`. So the incremental round plans only:

- the orchestrator and the updater: whole services whose object changed (or
  that are global or global jobs, when a node changed: their slots are the
  nodes; jobs are always planned whole), and single slots of replicated services whose tasks changed, or
  whose tasks sit on a node that changed;
- the allocator: when networks, services or nodes changed, or a task that
  awaits placement or holds addresses changed what the allocator reads;
- the scheduler: when nodes, services or networks changed, or a task that
  awaits placement, counts against a node's resources, or was rejected (its
  error explains pending tasks) changed.

A stage that an earlier one handed actions to always runs (planner.py).
The cluster object (task history limit, address pool) changes everything.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from swarmlet.api import objects_pb2 as pb
from swarmlet.core import state as st
from swarmlet.core import tasks as tk
from swarmlet.core.changes import Changes
from swarmlet.core.index import SlotKey, TaskIndex, slot_key


@dataclass(frozen=True)
class Scope:
    """What an incremental round plans. `services`: whole services;
    `slots`: service id -> slots of a replicated service whose own object did
    not change; `allocate`/`schedule`: whether those stages run even when no
    earlier stage hands them actions."""

    services: frozenset[str] = frozenset()
    slots: Mapping[str, frozenset[SlotKey]] = field(default_factory=dict)
    allocate: bool = False
    schedule: bool = False

    @property
    def empty(self) -> bool:
        return not (self.services or self.slots or self.allocate or self.schedule)


def _alloc_view(t: pb.Task | None) -> object:
    """What the allocator reads of a task that does not await placement: the
    addresses it holds."""
    if t is None or not tk.holds_addresses(t):
        return ()
    return tuple((a.network_id, a.addr) for a in t.networks)


def _sched_view(t: pb.Task | None) -> object:
    """What the scheduler reads of a task that does not await placement: where
    it counts against resources, and a rejection's words (the pending reason
    of the slot's next task quotes them)."""
    if t is None:
        return None
    placed = (t.node_id, t.service_id, t.spec.resources.reservations.nano_cpus, t.spec.resources.reservations.memory_bytes)
    rejected = (t.slot, t.meta.created_at, t.status.err, t.status.message) if t.status.state == pb.REJECTED else None
    return (placed if tk.placed(t) else None, rejected)


def compute(prev: st.Snapshot, snap: st.Snapshot, changes: Changes, index: TaskIndex) -> Scope | None:
    """The scope of an incremental round on `snap`, given that the round on
    `prev` was planned and committed, and `changes` is everything written
    since. `index` files `snap`'s tasks. None: plan everything."""
    if changes.everything or changes.clusters:
        return None
    services: set[str] = set(changes.services)
    slots: dict[str, set[SlotKey]] = {}
    allocate = schedule = bool(changes.services or changes.networks or changes.nodes)

    def touch(t: pb.Task) -> None:
        svc = snap.services.get(t.service_id)
        # Per-node services (slots are nodes) and jobs (a replicated job's
        # max_concurrent spans its slots) are planned whole.
        if svc is None or t.slot == 0 or tk.service_mode(svc) != "replicated":
            services.add(t.service_id)
        else:
            slots.setdefault(t.service_id, set()).add(slot_key(t))

    for tid in changes.tasks:
        old, new = prev.tasks.get(tid), snap.tasks.get(tid)
        if old is not None:
            touch(old)
        if new is not None:
            touch(new)
        awaiting = (old is not None and tk.awaiting_placement(old)) or (new is not None and tk.awaiting_placement(new))
        if awaiting:
            allocate = schedule = True
            continue
        if not allocate and _alloc_view(old) != _alloc_view(new):
            allocate = True
        if not schedule and _sched_view(old) != _sched_view(new):
            schedule = True
    if changes.nodes:
        # Global services keep a slot per node; any service may have a task
        # on a node whose state or availability changed.
        services.update(sid for sid, s in snap.services.items() if tk.per_node(s))
        for nid in changes.nodes:
            for tid in index.on_node(nid):
                touch(snap.tasks[tid])
    for sid in services:
        slots.pop(sid, None)
    return Scope(frozenset(services), {k: frozenset(v) for k, v in slots.items()}, allocate, schedule)
