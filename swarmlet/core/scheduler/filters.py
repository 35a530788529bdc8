"""The scheduler's filters: each one decides whether a node can take a task,
and says in words why not.

A node filter reads two things: the node, and its `need`, the part of the task
it looks at (the constraint list, the avoid list, the reservations). Tasks with
equal needs get equal verdicts, which is what lets the pipeline judge a whole
group of tasks at once. A filter is `dynamic` when its verdict can change while
the round assigns tasks (resources fill up); the others are judged once per
group.

A task filter judges the task alone: a task it refuses is not placed this
round, and its refusal is the task's pending reason.

NODE_FILTERS is also the order in which refusals are explained: adding a
filter is adding it there (or to TASK_FILTERS).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

from swarmlet.api import objects_pb2 as pb
from swarmlet.core import allocator as al
from swarmlet.core import constraints as cons
from swarmlet.core import generic as gen
from swarmlet.core import state as st
from swarmlet.core.scheduler.load import HostPort, Load
from swarmlet.core.units import fmt_bytes, fmt_cpus

NeedT = TypeVar("NeedT", bound=Hashable)


@dataclass(frozen=True)
class Context:
    """What filters may read besides the node: the snapshot being scheduled,
    and what the round has placed so far."""

    snap: st.Snapshot
    load: Load


class NodeFilter(ABC, Generic[NeedT]):
    dynamic: ClassVar[bool] = False

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    @abstractmethod
    def need(self, t: pb.Task) -> NeedT:
        """The part of the task this filter reads (hashable)."""

    def refuse_need(self, need: NeedT) -> str | None:
        """Why no node at all can take a task with this need (say, its
        constraints do not parse); None when nodes are to be checked."""
        return None

    def passes_all(self, need: NeedT) -> bool:
        """No node can fail a task with this need (nothing reserved, no
        limit): the pipeline then skips the filter, a dynamic one for every
        candidate of the group."""
        return False

    @abstractmethod
    def check(self, node: pb.Node, need: NeedT) -> bool:
        """Can `node` take a task with `need`? The hot path: no words."""

    @abstractmethod
    def explain(self, node: pb.Node, need: NeedT) -> str:
        """Why `node` cannot (called only when check said no)."""

    def explain_all(self, t: pb.Task, refused: int) -> str | None:
        """The whole reason `t` is pending when every node that passed the
        earlier filters was refused by this one (`refused` of them), if this
        filter has something better to say than a count; else None."""
        return None


class TaskFilter(ABC):
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    @abstractmethod
    def refuse(self, t: pb.Task) -> str | None:
        """Why `t` cannot be placed this round on any node; None if it may."""


# ---- the resource check (validation uses it too: "can never fit") ----


def resource_shortfall(capacity: pb.Resources, used_cpus: int, used_memory: int, nano_cpus: int, memory_bytes: int) -> str | None:
    """Why a node with `capacity`, of which `used_*` is reserved already,
    cannot also reserve `nano_cpus` and `memory_bytes`; None when it can. A
    capacity of 0 means the node did not report it: it does not limit."""
    if nano_cpus and capacity.nano_cpus and used_cpus + nano_cpus > capacity.nano_cpus:
        return f"insufficient cpu (needs {fmt_cpus(nano_cpus)})"
    if memory_bytes and capacity.memory_bytes and used_memory + memory_bytes > capacity.memory_bytes:
        return f"insufficient memory (needs {fmt_bytes(memory_bytes)})"
    return None


# ---- node filters ----


class NodeReady(NodeFilter[None]):
    """Only a READY node (its agent is connected and reporting) gets tasks."""

    _WORDS: ClassVar[dict[int, str]] = {pb.NodeStatus.DOWN: "down", pb.NodeStatus.DISCONNECTED: "disconnected"}

    def need(self, t: pb.Task) -> None:
        return None

    def check(self, node: pb.Node, need: None) -> bool:
        return node.status.state == pb.NodeStatus.READY

    def explain(self, node: pb.Node, need: None) -> str:
        return self._WORDS.get(node.status.state, "not ready")


class Availability(NodeFilter[None]):
    """PAUSE and DRAIN get nothing new (what they run is the orchestrator's)."""

    def need(self, t: pb.Task) -> None:
        return None

    def check(self, node: pb.Node, need: None) -> bool:
        return node.spec.availability == pb.NodeSpec.ACTIVE

    def explain(self, node: pb.Node, need: None) -> str:
        return "drained" if node.spec.availability == pb.NodeSpec.DRAIN else "paused"


class Constraints(NodeFilter[tuple[str, ...]]):
    """The task's placement constraints (parsed once per distinct list)."""

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self._parsed: dict[tuple[str, ...], list[cons.Constraint] | cons.ConstraintError] = {}

    def _parse(self, exprs: tuple[str, ...]) -> list[cons.Constraint] | cons.ConstraintError:
        p = self._parsed.get(exprs)
        if p is None:
            try:
                p = cons.parse_constraints(exprs)
            except cons.ConstraintError as e:
                p = e
            self._parsed[exprs] = p
        return p

    def need(self, t: pb.Task) -> tuple[str, ...]:
        return tuple(t.spec.placement.constraints)

    def refuse_need(self, need: tuple[str, ...]) -> str | None:
        p = self._parse(need)
        return str(p) if isinstance(p, cons.ConstraintError) else None

    def check(self, node: pb.Node, need: tuple[str, ...]) -> bool:
        p = self._parse(need)
        return not isinstance(p, cons.ConstraintError) and cons.matches(p, node)

    def explain(self, node: pb.Node, need: tuple[str, ...]) -> str:
        p = self._parse(need)
        c = None if isinstance(p, cons.ConstraintError) else cons.first_unmet(p, node)
        return f"constraint {c.expr} not met" if c is not None else "constraints not met"


class Platforms(NodeFilter[tuple[tuple[str, str], ...]]):
    """The platforms the service's image is built for (issue 17: docker's CLI
    sets them from the registry): a node must match one."""

    def need(self, t: pb.Task) -> tuple[tuple[str, str], ...]:
        return cons.platform_pairs(t.spec.placement)

    def passes_all(self, need: tuple[tuple[str, str], ...]) -> bool:
        return not need

    def check(self, node: pb.Node, need: tuple[tuple[str, str], ...]) -> bool:
        return cons.platform_matches(need, node)

    def explain(self, node: pb.Node, need: tuple[tuple[str, str], ...]) -> str:
        have = f"{node.description.os or '?'}/{node.description.arch or '?'}"
        return f"platform {have} is not one of the image's ({cons.platforms_text(need)})"


class AvoidNodes(NodeFilter[frozenset[str]]):
    """Nodes that rejected the slot's earlier tasks (task.avoid_nodes, set by
    the orchestrator after a REJECTED task) are tried last: not at all."""

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self._rejected: dict[tuple[str, int], pb.Task] | None = None

    def need(self, t: pb.Task) -> frozenset[str]:
        return frozenset(t.avoid_nodes)

    def check(self, node: pb.Node, need: frozenset[str]) -> bool:
        return node.id not in need

    def explain(self, node: pb.Node, need: frozenset[str]) -> str:
        return "rejected the task before"

    def explain_all(self, t: pb.Task, refused: int) -> str:
        # Every node that passes the other filters has rejected this slot
        # already (typically: its image is missing everywhere it could run).
        last = self._last_rejection(t)
        detail = f"last error: {last}" if last else f"{refused} node{'s' if refused != 1 else ''}"
        return f"rejected by every eligible node ({detail})"

    def _last_rejection(self, t: pb.Task) -> str:
        """The error of the slot's newest REJECTED task (the predecessor whose
        refusal put the last node on avoid_nodes)."""
        if self._rejected is None:
            idx: dict[tuple[str, int], pb.Task] = {}
            for o in self.ctx.snap.tasks.values():
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


class Resources(NodeFilter[tuple[int, int]]):
    """CPU and memory reservations fit in what the node has left."""

    dynamic = True

    def need(self, t: pb.Task) -> tuple[int, int]:
        r = t.spec.resources.reservations
        return (r.nano_cpus, r.memory_bytes)

    def passes_all(self, need: tuple[int, int]) -> bool:
        return not need[0] and not need[1]

    def _shortfall(self, node: pb.Node, need: tuple[int, int]) -> str | None:
        u = self.ctx.load.nodes[node.id]
        return resource_shortfall(node.description.resources, u.nano_cpus, u.memory_bytes, need[0], need[1])

    def check(self, node: pb.Node, need: tuple[int, int]) -> bool:
        return self._shortfall(node, need) is None

    def explain(self, node: pb.Node, need: tuple[int, int]) -> str:
        return self._shortfall(node, need) or "resources"


# ---- service options (issue 11): generic resources, host ports, max per node ----


class GenericResources(NodeFilter[tuple[tuple[str, int], ...]]):
    """The units of each generic resource the task reserves are left on the
    node (what it advertises minus what placed tasks reserve)."""

    dynamic = True

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self._capacity: dict[str, dict[str, int]] = {}  # per node, for the round

    def need(self, t: pb.Task) -> tuple[tuple[str, int], ...]:
        return gen.requests(t)

    def passes_all(self, need: tuple[tuple[str, int], ...]) -> bool:
        return not need

    def _short(self, node: pb.Node, need: tuple[tuple[str, int], ...]) -> tuple[str, int] | None:
        if not need:
            return None
        cap = self._capacity.get(node.id)
        if cap is None:
            cap = self._capacity[node.id] = gen.capacity(node)
        used = self.ctx.load.nodes[node.id].generic
        for kind, n in need:
            if cap.get(kind, 0) - used.get(kind, 0) < n:
                return kind, n
        return None

    def check(self, node: pb.Node, need: tuple[tuple[str, int], ...]) -> bool:
        return self._short(node, need) is None

    def explain(self, node: pb.Node, need: tuple[tuple[str, int], ...]) -> str:
        short = self._short(node, need)
        if short is None:
            return "generic resources"
        kind, n = short
        return f"insufficient {kind} (needs {n})" if gen.capacity(node).get(kind) else f"no {kind} resource"


class HostPorts(NodeFilter[frozenset[HostPort]]):
    """A host-mode published port is held on the node its task runs on: one
    task per node may publish it (any service's)."""

    dynamic = True

    def need(self, t: pb.Task) -> frozenset[HostPort]:
        return self.ctx.load.ports_of(t.service_id)

    def passes_all(self, need: frozenset[HostPort]) -> bool:
        return not need

    def _taken(self, node: pb.Node, need: frozenset[HostPort]) -> HostPort | None:
        if not need:
            return None
        clash = need & self.ctx.load.nodes[node.id].ports
        return min(clash) if clash else None

    def check(self, node: pb.Node, need: frozenset[HostPort]) -> bool:
        return self._taken(node, need) is None

    def explain(self, node: pb.Node, need: frozenset[HostPort]) -> str:
        taken = self._taken(node, need)
        if taken is None:
            return "host port in use"
        port, proto = taken
        return f"host-mode port {port}/{pb.PortConfig.Protocol.Name(proto).lower()} in use"


class MaxReplicas(NodeFilter[tuple[str, int]]):
    """--replicas-max-per-node: at most that many tasks of the service on a node."""

    dynamic = True

    def need(self, t: pb.Task) -> tuple[str, int]:
        return (t.service_id, int(t.spec.placement.max_replicas))

    def passes_all(self, need: tuple[str, int]) -> bool:
        return not need[1]

    def check(self, node: pb.Node, need: tuple[str, int]) -> bool:
        sid, limit = need
        return not limit or self.ctx.load.per_service[sid].get(node.id, 0) < limit

    def explain(self, node: pb.Node, need: tuple[str, int]) -> str:
        return f"max replicas per node ({need[1]}) reached"


# ---- task filters ----


class NetworkReady(TaskFilter):
    """A task is placed only once it has an address on every network of its
    service (the allocator gives them; a full network leaves it waiting)."""

    def __init__(self, ctx: Context) -> None:
        super().__init__(ctx)
        self._wanted: dict[str, tuple[list[str], bool]] = {}

    def _service_networks(self, service_id: str) -> tuple[list[str], bool]:
        """(network ids the service's tasks attach to, whether it waits for
        the ingress network to exist)."""
        w = self._wanted.get(service_id)
        if w is None:
            snap = self.ctx.snap
            svc = snap.services.get(service_id)
            if svc is None:
                w = ([], False)
            else:
                w = (al.wanted_networks(snap, svc), al.publishes(svc) and al.ingress_network(snap) is None)
            self._wanted[service_id] = w
        return w

    def refuse(self, t: pb.Task) -> str | None:
        want, no_ingress = self._service_networks(t.service_id)
        if no_ingress:
            return "waiting for the ingress network"
        if not want:
            return None
        have = {a.network_id for a in t.networks}
        for nid in want:
            if nid in have:
                continue
            net = self.ctx.snap.networks.get(nid)
            if net is None:
                return f"network {nid} not found"
            if not net.vni:
                return f"network {net.spec.name} is not allocated" + (f": {net.error}" if net.error else "")
            return f"no free address on network {net.spec.name}"
        return None


# In the order refusals are explained.
NODE_FILTERS: tuple[type[NodeFilter[Any]], ...] = (
    NodeReady,
    Availability,
    Constraints,
    Platforms,
    AvoidNodes,
    Resources,
    GenericResources,
    HostPorts,
    MaxReplicas,
)
TASK_FILTERS: tuple[type[TaskFilter], ...] = (NetworkReady,)
