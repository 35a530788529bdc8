"""Ranking: among the nodes that pass the filters, spread. Best first: the
fewest tasks of the service, then the fewest tasks overall, then the node id
(determinism)."""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable

from swarmlet.core.scheduler.load import Load


class Spread:
    """The candidate nodes of one placement group, in spread order.

    A heap keyed by the spread order. Assignments only ever raise a node's
    counts within a round, so an entry whose key went stale (a task was placed
    there since it was filed, by this group or another) is re-filed lazily when
    it reaches the top. A node the group cannot use (`usable` says no: full for
    its reservations) is dropped, since it stays unusable for the rest of the
    round: counts and reservations only grow."""

    def __init__(self, load: Load, service_id: str, node_ids: Iterable[str]) -> None:
        self._of_service = load.per_service[service_id]
        self._nodes = load.nodes
        svc, nodes = self._of_service, self._nodes
        self._heap = [(svc.get(nid, 0), nodes[nid].tasks, nid) for nid in node_ids]
        heapq.heapify(self._heap)

    def best(self, usable: Callable[[str], bool]) -> str | None:
        """The best node `usable` accepts, or None when none is left. The node
        stays filed: once the caller placed a task there, its key is stale and
        the next call re-files it."""
        heap, svc, nodes = self._heap, self._of_service, self._nodes
        while heap:
            sc, tc, nid = heap[0]
            key = (svc.get(nid, 0), nodes[nid].tasks)
            if (sc, tc) != key:
                heapq.heapreplace(heap, (*key, nid))
                continue
            if not usable(nid):
                heapq.heappop(heap)
                continue
            return nid
        return None
