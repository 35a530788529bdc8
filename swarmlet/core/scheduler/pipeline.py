"""Runs the filters: which nodes can take a task, and, when none can, why, as
one sentence that counts the nodes each filter refused, e.g. `no suitable node
(3 nodes: 1 drained, 1 constraint node.labels.zone==b not met, 1 insufficient
memory (needs 2.0GiB))`. Refusals are listed in the order of the filter list:
that order is the only ranking of reasons."""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

from swarmlet.api import objects_pb2 as pb
from swarmlet.core.scheduler import filters
from swarmlet.core.scheduler.filters import Context, NodeFilter, TaskFilter
from swarmlet.core.units import plural

NO_NODE = "no suitable node"

# One need per node filter, in the filters' order.
Needs = tuple[Hashable, ...]


@dataclass(frozen=True)
class Explanation:
    text: str
    # The text quotes the task itself (its slot's last error), so it does not
    # stand for other tasks with the same needs.
    per_task: bool = False


class Pipeline:
    def __init__(
        self,
        ctx: Context,
        node_filters: Sequence[type[NodeFilter[Any]]] | None = None,
        task_filters: Sequence[type[TaskFilter]] | None = None,
    ) -> None:
        """Filter instances for one round (they may cache what they compute
        from the snapshot); by default the lists in filters.py."""
        self.nodes = ctx.snap.nodes
        if node_filters is None:
            node_filters = filters.NODE_FILTERS
        if task_filters is None:
            task_filters = filters.TASK_FILTERS
        self.filters: list[NodeFilter[Any]] = [cls(ctx) for cls in node_filters]
        self._task_filters = [cls(ctx) for cls in task_filters]
        self._static = [(i, f) for i, f in enumerate(self.filters) if not f.dynamic]
        # Where the avoid list sits in a task's needs (None: no AvoidNodes filter).
        self._avoid = next((i for i, f in enumerate(self.filters) if isinstance(f, filters.AvoidNodes)), None)
        self._dynamic = [(i, f) for i, f in enumerate(self.filters) if f.dynamic]
        self._order = sorted(self.nodes)  # node ids: determinism
        # (need of static filter 1, ..., need of static filter k) -> ids of the
        # nodes passing those k filters.
        self._passing: dict[Needs, list[str]] = {}
        # needs -> the dynamic filters that can refuse a node for them
        self._active: dict[Needs, list[tuple[int, NodeFilter[Any]]]] = {}

    def refuse_task(self, t: pb.Task) -> str | None:
        """Why `t` is not to be placed this round at all (its pending
        reason); None when the nodes are to be tried."""
        for f in self._task_filters:
            why = f.refuse(t)
            if why is not None:
                return why
        return None

    def needs(self, t: pb.Task) -> Needs:
        """What the node filters read of `t`: tasks with equal needs get equal
        verdicts from every node."""
        return tuple(f.need(t) for f in self.filters)

    def without_avoid(self, needs: Needs) -> Needs | None:
        """`needs` with an empty avoid list; None when nothing is avoided.

        The avoid list is a preference, as in Swarm: a slot rejected by every
        node it may use goes back to those nodes rather than waiting for ever
        (an image pull that failed may work on the next try). The restart
        delay between attempts keeps the retries from spinning."""
        i = self._avoid
        if i is None or not needs[i]:
            return None
        return (*needs[:i], frozenset(), *needs[i + 1 :])

    def rejected_everywhere(self, t: pb.Task, also: str = "") -> bool:
        """Every node the static filters allow for `t` (ignoring its avoid
        list) has rejected its slot: is on its avoid list, or is `also` (the
        node that rejected its last task). False when no node is allowed at
        all: that is another filter's story."""
        needs = self.needs(t)
        relaxed = self.without_avoid(needs)
        if relaxed is None:
            if not also:
                return False
            relaxed = needs
        avoided = set(t.avoid_nodes)
        if also:
            avoided.add(also)
        eligible = self.eligible(relaxed)
        return bool(eligible) and avoided.issuperset(eligible)

    def refuse_needs(self, needs: Needs) -> str | None:
        for f, need in zip(self.filters, needs, strict=True):
            why = f.refuse_need(need)
            if why is not None:
                return why
        return None

    def eligible(self, needs: Needs) -> list[str]:
        """Ids of the nodes passing every static filter, in id order.

        Computed filter by filter and kept for the round: the nodes passing the
        first k filters are worked out once per distinct needs of those k, so
        the node-status and availability filters run once per round, the
        constraints once per constraint list, and so on."""
        ids = self._order
        key: Needs = ()
        for i, f in self._static:
            need = needs[i]
            key = (*key, need)
            passing = self._passing.get(key)
            if passing is None:
                nodes = self.nodes
                passing = [nid for nid in ids if f.check(nodes[nid], need)]
                self._passing[key] = passing
            ids = passing
        return ids

    def fits(self, node_id: str, needs: Needs) -> bool:
        """The dynamic filters' verdict on a node `eligible` returned, with
        what the round has placed so far."""
        active = self._active.get(needs)
        if active is None:
            active = self._active[needs] = [(i, f) for i, f in self._dynamic if not f.passes_all(needs[i])]
        if not active:
            return True
        node = self.nodes[node_id]
        for i, f in active:
            if not f.check(node, needs[i]):
                return False
        return True

    def refusal(self, node: pb.Node, needs: Needs) -> str | None:
        """The first filter's reason `node` cannot take a task with `needs`;
        None if it can."""
        for f, need in zip(self.filters, needs, strict=True):
            if not f.check(node, need):
                return f.explain(node, need)
        return None

    def explain(self, t: pb.Task, needs: Needs) -> Explanation:
        """Why no node takes `t` (with `needs`): each node is counted under
        the first filter that refuses it."""
        whole = self.refuse_needs(needs)
        if whole is not None:
            return Explanation(f"{NO_NODE}: {whole}")
        if not self.nodes:
            return Explanation(f"{NO_NODE} (the cluster has no nodes)")
        counts: list[Counter[str]] = [Counter() for _ in self.filters]
        passed = 0
        for nid in self._order:
            node = self.nodes[nid]
            for i, f in enumerate(self.filters):
                if not f.check(node, needs[i]):
                    counts[i][f.explain(node, needs[i])] += 1
                    break
            else:
                passed += 1
        if not passed:
            last = max((i for i, c in enumerate(counts) if c), default=None)
            if last is not None:
                whole = self.filters[last].explain_all(t, sum(counts[last].values()))
                if whole is not None:
                    return Explanation(f"{NO_NODE}: {whole}", per_task=True)
        parts = [f"{n} {text}" for c in counts for text, n in sorted(c.items())]
        if passed:
            # Not expected: a node passing every filter would have been
            # picked. Counted rather than left out of the total.
            parts.append(f"{passed} busy")
        return Explanation(f"{NO_NODE} ({plural(len(self.nodes), 'node')}: {', '.join(parts)})")
