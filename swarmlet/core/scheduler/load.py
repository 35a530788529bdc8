"""What runs where during a scheduling round: per node, the placed tasks and
the resources they reserve (CPU, memory, generic resources, host-mode
published ports); per service, its placed tasks on each node. The filters
read it (resources, ports, max per node) and the ranking reads it (spread);
the round adds each assignment it makes, so later decisions in the round see
it."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from swarmlet.api import objects_pb2 as pb

# (published port, protocol) of a host-mode published port.
HostPort = tuple[int, int]


def host_ports(svc: pb.Service | None) -> frozenset[HostPort]:
    """The host-mode ports a service publishes: each holds its port on the
    node a task runs on, so one task per node may have it."""
    if svc is None:
        return frozenset()
    return frozenset((p.published_port, p.protocol) for p in svc.spec.endpoint.ports if p.publish_mode == pb.PortConfig.HOST)


@dataclass
class NodeLoad:
    tasks: int = 0
    nano_cpus: int = 0
    memory_bytes: int = 0
    # kind -> units reserved (discrete counts)
    generic: dict[str, int] = field(default_factory=dict)
    # named units handed to tasks (kind, name)
    named_used: set[tuple[str, str]] = field(default_factory=set)
    ports: set[HostPort] = field(default_factory=set)


class Load:
    def __init__(self, node_ids: Iterable[str], services: Mapping[str, pb.Service] | None = None) -> None:
        self.nodes: dict[str, NodeLoad] = {nid: NodeLoad() for nid in node_ids}
        # service id -> node id -> placed tasks of that service on the node
        self.per_service: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self._services = services or {}
        self._ports: dict[str, frozenset[HostPort]] = {}

    def ports_of(self, service_id: str) -> frozenset[HostPort]:
        """The host-mode ports of a service's tasks (cached for the round)."""
        p = self._ports.get(service_id)
        if p is None:
            p = self._ports[service_id] = host_ports(self._services.get(service_id))
        return p

    def add(self, t: pb.Task, node_id: str) -> None:
        """Count `t` on `node_id` (a node of the snapshot)."""
        u = self.nodes[node_id]
        r = t.spec.resources.reservations
        u.tasks += 1
        u.nano_cpus += r.nano_cpus
        u.memory_bytes += r.memory_bytes
        if r.generic:
            for g in r.generic:
                u.generic[g.kind] = u.generic.get(g.kind, 0) + int(g.discrete_value)
            for g in t.assigned_generic:
                if g.named_value:
                    u.named_used.add((g.kind, g.named_value))
        ports = self.ports_of(t.service_id)
        if ports:
            u.ports.update(ports)
        self.per_service[t.service_id][node_id] += 1
