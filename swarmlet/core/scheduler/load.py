"""What runs where during a scheduling round: per node, the placed tasks and
the resources they reserve; per service, its placed tasks on each node. The
filters read it (resources) and the ranking reads it (spread); the round adds
each assignment it makes, so later decisions in the round see it."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from swarmlet.api import objects_pb2 as pb


@dataclass
class NodeLoad:
    tasks: int = 0
    nano_cpus: int = 0
    memory_bytes: int = 0


class Load:
    def __init__(self, node_ids: Iterable[str]) -> None:
        self.nodes: dict[str, NodeLoad] = {nid: NodeLoad() for nid in node_ids}
        # service id -> node id -> placed tasks of that service on the node
        self.per_service: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))

    def add(self, t: pb.Task, node_id: str) -> None:
        """Count `t` on `node_id` (a node of the snapshot)."""
        u = self.nodes[node_id]
        r = t.spec.resources.reservations
        u.tasks += 1
        u.nano_cpus += r.nano_cpus
        u.memory_bytes += r.memory_bytes
        self.per_service[t.service_id][node_id] += 1
