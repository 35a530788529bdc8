"""Ranking: among the nodes that pass the filters, spread. Best first: the
fewest tasks of the service, then the fewest tasks overall, then the node id
(determinism). With placement preferences, the nodes are first grouped by
label values and the emptiest group is chosen at each level (Preferences)."""

from __future__ import annotations

import heapq
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping

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


class Preferences:
    """Placement preferences (`--placement-pref spread=node.labels.zone`,
    Swarm's semantics): the nodes form a tree, one level per preference,
    grouped by the value of its label (nodes without the label form their
    own group). Each task goes down the tree to the group with the fewest
    tasks of the service at every level (counting every node of the group,
    eligible or not, as Swarm does), and to the best node of the last group
    by the spread order. A group none of whose nodes can take the task is
    left out for the rest of the round (nodes only fill up). Placing tasks
    one at a time into the emptiest group evens the groups out the way
    Swarm's split of a batch over the branches does.

    Same interface as Spread: `best(usable)`."""

    def __init__(
        self,
        load: Load,
        service_id: str,
        node_ids: Iterable[str],
        paths: Mapping[str, tuple[str, ...]],
    ) -> None:
        """`paths`: every node of the cluster -> its group value at each level."""
        self._of_service = load.per_service[service_id]
        self._paths = paths
        self._depth = len(next(iter(paths.values()), ()))
        # group (a prefix of paths) -> tasks of the service in it
        self._count: dict[tuple[str, ...], int] = defaultdict(int)
        for nid, path in paths.items():
            n = self._of_service.get(nid, 0)
            if n:
                for i in range(1, self._depth + 1):
                    self._count[path[:i]] += n
        # group -> its child values that hold an eligible node; leaves -> nodes
        self._children: dict[tuple[str, ...], set[str]] = defaultdict(set)
        leaves: dict[tuple[str, ...], list[str]] = defaultdict(list)
        for nid in node_ids:
            path = paths[nid]
            for i in range(self._depth):
                self._children[path[:i]].add(path[i])
            leaves[path].append(nid)
        self._leaves = {path: Spread(load, service_id, ids) for path, ids in leaves.items()}
        self._full: set[tuple[str, ...]] = set()
        self._last: tuple[str, int] | None = None  # the node returned last, and its count then

    def _catch_up(self) -> None:
        """Count the task the caller placed on the node returned last into
        its groups. (The round places a group's tasks one after the other,
        with no other group in between: nothing else changes the counts.)"""
        if self._last is None:
            return
        nid, was = self._last
        now = self._of_service.get(nid, 0)
        if now != was:
            path = self._paths[nid]
            for i in range(1, self._depth + 1):
                self._count[path[:i]] += now - was
        self._last = None

    def _pick(self, group: tuple[str, ...], usable: Callable[[str], bool]) -> str | None:
        if len(group) == self._depth:
            nid = self._leaves[group].best(usable)
            if nid is None:
                self._full.add(group)
            return nid
        for v in sorted(self._children[group], key=lambda v: (self._count[(*group, v)], v)):
            sub = (*group, v)
            if sub in self._full:
                continue
            nid = self._pick(sub, usable)
            if nid is not None:
                return nid
        self._full.add(group)
        return None

    def best(self, usable: Callable[[str], bool]) -> str | None:
        self._catch_up()
        nid = self._pick((), usable)
        if nid is not None:
            self._last = (nid, self._of_service.get(nid, 0))
        return nid
