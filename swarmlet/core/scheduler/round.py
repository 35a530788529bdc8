"""The scheduler: pending tasks -> nodes. Pure: (snapshot, now) -> store actions.

Filters, in the order a refusal is explained: node READY, availability ACTIVE
(PAUSE and DRAIN get nothing new), placement constraints, not among the nodes
that rejected the slot before (task.avoid_nodes), reservations fit. Among the
nodes left, spread: fewest live tasks of the service, then fewest live tasks
overall, then node id (determinism).

Cost per round is O(nodes + tasks log nodes) for the common case: node counts
and reservations are computed once, and tasks that share a placement (same
service, constraints, reservations, avoid list) share one heap of candidate
nodes keyed by the spread order. Assignments only ever raise a node's counts
and reservations within a round, so a heap entry whose key is stale can be
re-pushed lazily, and a node too full for a group's reservation stays too full
for the rest of the round and is dropped from that group's heap.
"""

from __future__ import annotations

import heapq
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from swarmlet.api import objects_pb2 as pb
from swarmlet.api import store_pb2 as spb
from swarmlet.core import allocator
from swarmlet.core import constraints as cons
from swarmlet.core import state as st
from swarmlet.core.units import fmt_bytes, fmt_cpus

NO_NODE = "no suitable node"

# Explanations list node refusals in the order of the filters.
_RANK_STATUS, _RANK_AVAIL, _RANK_CONSTRAINT, _RANK_AVOID, _RANK_CPU, _RANK_MEM, _RANK_OTHER = range(7)
_AVOID_TEXT = "rejected the task before"


def _schedulable(t: pb.Task) -> bool:
    return t.desired_state <= pb.RUNNING and t.status.state in (pb.NEW, pb.PENDING)


@dataclass
class _NodeUse:
    """Live, assigned, non-terminal tasks on a node: what spreads and reserves."""

    total: int = 0
    cpu: int = 0
    mem: int = 0


class _Round:
    def __init__(self, snap: st.Snapshot, now: float) -> None:
        self.snap = snap
        self.now = now
        self.nodes = snap.nodes
        self.use: dict[str, _NodeUse] = {nid: _NodeUse() for nid in self.nodes}
        # service id -> node id -> live tasks of that service on the node
        self.per_service: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self.actions: list[spb.StoreAction] = []
        self._constraints: dict[tuple[str, ...], list[cons.Constraint] | cons.ConstraintError] = {}
        self._matching: dict[tuple[str, ...], list[str]] = {}
        self._rejected: dict[tuple[str, int], pb.Task] | None = None
        # Nodes that can take anything new at all, sorted for determinism.
        self.open_nodes = sorted(
            nid
            for nid, n in self.nodes.items()
            if n.status.state == pb.NodeStatus.READY and n.spec.availability == pb.NodeSpec.ACTIVE
        )

    # ---- bookkeeping ----

    def _account(self) -> list[pb.Task]:
        """Count what runs where, and collect the tasks to schedule."""
        todo: list[pb.Task] = []
        services = self.snap.services
        for t in self.snap.tasks.values():
            if t.desired_state > pb.RUNNING:
                continue
            s = t.status.state
            if s in (pb.NEW, pb.PENDING):
                # A task of a deleted service is about to be removed; one
                # without its network addresses waits for the allocator.
                if t.service_id in services and not allocator.waiting_for_network(self.snap, t):
                    todo.append(t)
                continue
            if s in st.TERMINAL_STATES or not t.node_id:
                continue
            u = self.use.get(t.node_id)
            if u is None:
                continue
            self._add(t, t.node_id)
        return todo

    def _add(self, t: pb.Task, nid: str) -> None:
        u = self.use[nid]
        r = t.spec.resources.reservations
        u.total += 1
        u.cpu += r.nano_cpus
        u.mem += r.memory_bytes
        self.per_service[t.service_id][nid] += 1

    def _fits(self, nid: str, cpu: int, mem: int) -> bool:
        cap = self.nodes[nid].description.resources
        u = self.use[nid]
        # A capacity of 0 means the node did not report it: do not limit.
        if cpu and cap.nano_cpus and u.cpu + cpu > cap.nano_cpus:
            return False
        if mem and cap.memory_bytes and u.mem + mem > cap.memory_bytes:
            return False
        return True

    def _parsed(self, exprs: tuple[str, ...]) -> list[cons.Constraint] | cons.ConstraintError:
        p = self._constraints.get(exprs)
        if p is None:
            try:
                p = cons.parse_constraints(exprs)
            except cons.ConstraintError as e:
                p = e
            self._constraints[exprs] = p
        return p

    def _matching_open(self, exprs: tuple[str, ...]) -> list[str]:
        """Open nodes satisfying the constraints: shared by every group with
        the same constraint list."""
        m = self._matching.get(exprs)
        if m is None:
            p = self._parsed(exprs)
            if isinstance(p, cons.ConstraintError):
                m = []
            else:
                m = [nid for nid in self.open_nodes if cons.matches(p, self.nodes[nid])]
            self._matching[exprs] = m
        return m

    # ---- explanations ----

    def _refusal(self, n: pb.Node, t: pb.Task, parsed: list[cons.Constraint], avoid: frozenset[str]) -> tuple[int, str] | None:
        """Why `n` cannot take `t` now, as (rank, text); None if it can."""
        state = n.status.state
        if state != pb.NodeStatus.READY:
            text = {pb.NodeStatus.DOWN: "down", pb.NodeStatus.DISCONNECTED: "disconnected"}.get(state, "not ready")
            return _RANK_STATUS, text
        if n.spec.availability == pb.NodeSpec.DRAIN:
            return _RANK_AVAIL, "drained"
        if n.spec.availability == pb.NodeSpec.PAUSE:
            return _RANK_AVAIL, "paused"
        c = cons.first_unmet(parsed, n)
        if c is not None:
            return _RANK_CONSTRAINT, f"constraint {c.expr} not met"
        if n.id in avoid:
            return _RANK_AVOID, _AVOID_TEXT
        r = t.spec.resources.reservations
        cap = n.description.resources
        u = self.use[n.id]
        if r.nano_cpus and cap.nano_cpus and u.cpu + r.nano_cpus > cap.nano_cpus:
            return _RANK_CPU, f"insufficient cpu (needs {fmt_cpus(r.nano_cpus)})"
        if r.memory_bytes and cap.memory_bytes and u.mem + r.memory_bytes > cap.memory_bytes:
            return _RANK_MEM, f"insufficient memory (needs {fmt_bytes(r.memory_bytes)})"
        return None

    def explain(self, t: pb.Task) -> str:
        """The pending reason for a task no node takes: a count of nodes per
        refusal, e.g. `no suitable node (3 nodes: 1 drained, 1 insufficient
        memory (needs 2.0GiB), 1 constraint node.labels.zone==b not met)`."""
        parsed = self._parsed(tuple(t.spec.placement.constraints))
        if isinstance(parsed, cons.ConstraintError):
            return f"{NO_NODE}: {parsed}"
        if not self.nodes:
            return f"{NO_NODE} (the cluster has no nodes)"
        avoid = frozenset(t.avoid_nodes)
        counts: Counter[tuple[int, str]] = Counter()
        for nid in sorted(self.nodes):
            counts[self._refusal(self.nodes[nid], t, parsed, avoid) or (_RANK_OTHER, "busy")] += 1
        avoided = sum(c for (rank, _), c in counts.items() if rank == _RANK_AVOID)
        beyond = sum(c for (rank, _), c in counts.items() if rank > _RANK_AVOID)
        if avoided and not beyond:
            # Every node that passes the other filters has rejected this slot
            # already (typically: image missing everywhere it could run).
            last = self._last_rejection(t)
            detail = f"last error: {last}" if last else f"{avoided} node{'s' if avoided != 1 else ''}"
            return f"{NO_NODE}: rejected by every eligible node ({detail})"
        total = len(self.nodes)
        parts = ", ".join(f"{c} {text}" for (rank, text), c in sorted(counts.items()))
        return f"{NO_NODE} ({total} node{'s' if total != 1 else ''}: {parts})"

    def _last_rejection(self, t: pb.Task) -> str:
        """The error of the slot's newest REJECTED task (the predecessor whose
        refusal put the last node on avoid_nodes)."""
        if self._rejected is None:
            idx: dict[tuple[str, int], pb.Task] = {}
            for o in self.snap.tasks.values():
                if o.status.state == pb.REJECTED:
                    k = (o.service_id, o.slot)
                    cur = idx.get(k)
                    if cur is None or (o.meta.created_at, o.id) > (cur.meta.created_at, cur.id):
                        idx[k] = o
            self._rejected = idx
        prev = self._rejected.get((t.service_id, t.slot))
        if prev is None:
            return ""
        return prev.status.err or prev.status.message

    # ---- writes ----

    def _assign(self, t: pb.Task, nid: str) -> None:
        nt = pb.Task()
        nt.CopyFrom(t)
        nt.node_id = nid
        nt.status.Clear()
        nt.status.timestamp = self.now
        nt.status.state = pb.ASSIGNED
        nt.status.message = "assigned"
        self.actions.append(st.put(nt))  # guarded by the version it was read at
        self._add(t, nid)

    def _pending(self, t: pb.Task, err: str) -> None:
        # Rewriting an unchanged reason every round would be a Raft entry per
        # round for nothing.
        if t.status.state == pb.PENDING and t.status.err == err:
            return
        nt = pb.Task()
        nt.CopyFrom(t)
        nt.status.Clear()
        nt.status.timestamp = self.now
        nt.status.state = pb.PENDING
        nt.status.message = "pending"
        nt.status.err = err
        self.actions.append(st.put(nt))

    # ---- the round ----

    def run(self) -> list[spb.StoreAction]:
        todo = self._account()
        preset = sorted((t for t in todo if t.node_id), key=lambda t: (t.service_id, t.node_id, t.id))
        free = sorted((t for t in todo if not t.node_id), key=lambda t: (t.service_id, t.slot, t.meta.created_at, t.id))
        # Node-bound (global) tasks first: they have nowhere else to go, while
        # replicated ones can take the room left elsewhere.
        for t in preset:
            self._place_preset(t)
        groups: dict[tuple, list[pb.Task]] = {}
        for t in free:
            r = t.spec.resources.reservations
            key = (
                t.service_id,
                tuple(t.spec.placement.constraints),
                r.nano_cpus,
                r.memory_bytes,
                tuple(sorted(set(t.avoid_nodes))),
            )
            groups.setdefault(key, []).append(t)  # dicts keep first-seen order: stable
        for key, tasks in groups.items():
            self._place_group(key[0], key[1], key[2], key[3], frozenset(key[4]), tasks)
        return self.actions

    def _place_preset(self, t: pb.Task) -> None:
        n = self.nodes.get(t.node_id)
        if n is None:
            return  # the orchestrator removes tasks of removed nodes
        parsed = self._parsed(tuple(t.spec.placement.constraints))
        if isinstance(parsed, cons.ConstraintError):
            self._pending(t, f"{NO_NODE}: {parsed}")
            return
        refusal = self._refusal(n, t, parsed, frozenset(t.avoid_nodes))
        if refusal is None:
            self._assign(t, n.id)
        else:
            self._pending(t, f"{NO_NODE} (node {n.description.hostname or n.id}: {refusal[1]})")

    def _place_group(
        self, service_id: str, exprs: tuple[str, ...], cpu: int, mem: int, avoid: frozenset[str], tasks: Sequence[pb.Task]
    ) -> None:
        svc_count = self.per_service[service_id]
        use = self.use
        heap = [(svc_count.get(nid, 0), use[nid].total, nid) for nid in self._matching_open(exprs) if nid not in avoid]
        heapq.heapify(heap)
        reason = ""
        for t in tasks:
            placed = False
            while heap:
                sc, tc, nid = heap[0]
                cur_sc, cur_tc = svc_count.get(nid, 0), use[nid].total
                if (sc, tc) != (cur_sc, cur_tc):
                    # Another group placed a task there since: counts only grow,
                    # so re-file the node under its true key.
                    heapq.heapreplace(heap, (cur_sc, cur_tc, nid))
                    continue
                if not self._fits(nid, cpu, mem):
                    heapq.heappop(heap)  # full for this reservation for the rest of the round
                    continue
                self._assign(t, nid)
                heapq.heapreplace(heap, (cur_sc + 1, cur_tc + 1, nid))
                placed = True
                break
            if not placed:
                # Same placement, same refusals: explain once per group (but a
                # rejected-by-all reason quotes each slot's own last error).
                if not reason or avoid:
                    reason = self.explain(t)
                self._pending(t, reason)


def schedule(snap: st.Snapshot, now: float) -> list[spb.StoreAction]:
    """Assign every live NEW/PENDING task that some node can take; mark the
    others PENDING with the reason no node can (written only when it changes).

    Returns Puts of whole tasks, each guarded by the version it was read at."""
    return _Round(snap, now).run()
