"""One scheduling round: pending tasks -> nodes. Pure: (snapshot, now) ->
store actions.

Ties the parts together: `Load` (what runs where), the `Pipeline` of filters
(which nodes may take a task, and why not), and the `Spread` ranking (which of
them is best). A task is assigned to the best node that passes every filter,
or marked PENDING with the pipeline's explanation.

Cost per round is O(nodes + tasks log nodes) in the common case: loads are
counted once; tasks of one service with equal needs (constraints, avoid list,
reservations) form a group that shares one list of eligible nodes and one
spread heap; the static filters' verdicts are computed once per distinct needs
(pipeline.eligible); a group that finds no node is explained once (not once
per task).
"""

from __future__ import annotations

from collections.abc import Sequence

from swarmlet.api import objects_pb2 as pb
from swarmlet.api import store_pb2 as spb
from swarmlet.core import constraints as cons
from swarmlet.core import generic as gen
from swarmlet.core import state as st
from swarmlet.core import tasks as tk
from swarmlet.core.lookup import node_name
from swarmlet.core.scheduler.filters import Context
from swarmlet.core.scheduler.load import Load
from swarmlet.core.scheduler.pipeline import NO_NODE, Explanation, Needs, Pipeline
from swarmlet.core.scheduler.rank import Preferences, Spread
from swarmlet.core.stage import StagePlan


class _Round:
    def __init__(self, snap: st.Snapshot, now: float) -> None:
        self.snap = snap
        self.now = now
        self.nodes = snap.nodes
        self.load = Load(self.nodes, snap.services)
        self.pipeline = Pipeline(Context(snap, self.load))
        self.actions: list[spb.StoreAction] = []
        # (node, kind) -> the node's named units of a generic resource
        self._named: dict[tuple[str, str], list[str]] = {}
        # placement preferences -> every node's group at each level
        self._paths: dict[tuple[str, ...], dict[str, tuple[str, ...]]] = {}

    def _todo(self) -> list[pb.Task]:
        """Count what is placed where, and collect the tasks to place."""
        todo: list[pb.Task] = []
        services = self.snap.services
        nodes, add = self.nodes, self.load.add
        for t in self.snap.tasks.values():
            if tk.placed(t):
                if t.node_id in nodes:
                    add(t, t.node_id)
            elif tk.awaiting_placement(t) and t.service_id in services:
                # (A task of a deleted service is about to be removed.)
                todo.append(t)
        return todo

    # ---- writes ----

    def _assign(self, t: pb.Task, nid: str) -> None:
        nt = pb.Task()
        nt.CopyFrom(t)
        nt.node_id = nid
        self._give_generic(nt, nid)
        nt.status.Clear()
        nt.status.timestamp = self.now
        nt.status.state = pb.ASSIGNED
        nt.status.message = "assigned"
        self.actions.append(st.put(nt))  # guarded by the version it was read at
        self.load.add(nt, nid)

    def _give_generic(self, t: pb.Task, nid: str) -> None:
        """The generic resource units the task reserves, from its node: named
        units not held by another task there, else a count."""
        if not t.spec.resources.reservations.generic and not t.assigned_generic:
            return
        del t.assigned_generic[:]
        used = self.load.nodes[nid].named_used
        for kind, n in gen.requests(t):
            units = self._named.get((nid, kind))
            if units is None:
                units = self._named[(nid, kind)] = gen.named_units(self.nodes[nid], kind)
            free = [v for v in units if (kind, v) not in used][:n] if units else []
            if free:
                for v in free[:n]:
                    t.assigned_generic.add(kind=kind, named_value=v)
            else:
                t.assigned_generic.add(kind=kind, discrete_value=n)

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

    def run(self) -> StagePlan:
        pipeline = self.pipeline
        preset: list[pb.Task] = []
        free: list[pb.Task] = []
        for t in self._todo():
            why = pipeline.refuse_task(t)
            if why is not None:
                self._pending(t, why)
            elif t.node_id:
                preset.append(t)
            else:
                free.append(t)
        # Node-bound (global) tasks first: they have nowhere else to go, while
        # replicated ones can take the room left elsewhere.
        preset.sort(key=lambda t: (t.service_id, t.node_id, t.id))
        for t in preset:
            self._place_preset(t)
        free.sort(key=lambda t: (t.service_id, t.slot, t.meta.created_at, t.id))
        groups: dict[tuple[str, Needs, tuple[str, ...]], list[pb.Task]] = {}
        # Tasks of one service and spec version carry the same spec (copied
        # from the service at that version): their needs differ only by the
        # avoid list, so they are worked out once per such key.
        known: dict[tuple[str, int, tuple[str, ...]], tuple[Needs, tuple[str, ...]]] = {}
        for t in free:
            key = (t.service_id, t.spec_version, tuple(t.avoid_nodes))
            got = known.get(key) if t.spec_version else None
            if got is None:
                got = (pipeline.needs(t), tuple(p.spread for p in t.spec.placement.preferences))
                if t.spec_version:
                    known[key] = got
            groups.setdefault((t.service_id, *got), []).append(t)  # dicts keep first-seen order: stable
        for (service_id, needs, prefs), tasks in groups.items():
            self._place_group(service_id, needs, tasks, prefs)
        return StagePlan(self.actions)

    def _place_preset(self, t: pb.Task) -> None:
        n = self.nodes.get(t.node_id)
        if n is None:
            return  # the orchestrator removes tasks of removed nodes
        needs = self.pipeline.needs(t)
        whole = self.pipeline.refuse_needs(needs)
        if whole is not None:
            self._pending(t, f"{NO_NODE}: {whole}")
            return
        refusal = self.pipeline.refusal(n, needs)
        if refusal is None:
            self._assign(t, n.id)
        else:
            self._pending(t, f"{NO_NODE} (node {node_name(n)}: {refusal})")

    def _ranking(self, service_id: str, needs: Needs, prefs: tuple[str, ...]) -> Spread | Preferences:
        eligible = self.pipeline.eligible(needs)
        if not prefs:
            return Spread(self.load, service_id, eligible)
        paths = self._paths.get(prefs)
        if paths is None:
            try:
                keys = [cons.parse_spread(p) for p in prefs]
            except cons.ConstraintError:
                keys = []  # refused by validation; spread alone then
            if not keys:
                return Spread(self.load, service_id, eligible)
            paths = self._paths[prefs] = {nid: tuple(k.value(n) for k in keys) for nid, n in self.nodes.items()}
        return Preferences(self.load, service_id, eligible, paths)

    def _place_group(self, service_id: str, needs: Needs, tasks: Sequence[pb.Task], prefs: tuple[str, ...] = ()) -> None:
        pipeline = self.pipeline
        spread = self._ranking(service_id, needs, prefs)

        def usable(nid: str) -> bool:
            return pipeline.fits(nid, needs)

        # Once no node the group does not avoid is left, the nodes that
        # rejected its slots before are tried (pipeline.without_avoid), with
        # their own spread heap, built the first time it is needed.
        relaxed = pipeline.without_avoid(needs)
        last_resort = relaxed if relaxed is not None else needs
        again: Spread | Preferences | None = None

        def usable_again(nid: str) -> bool:
            return pipeline.fits(nid, last_resort)

        why: Explanation | None = None
        for t in tasks:
            nid = spread.best(usable)
            if nid is None and relaxed is not None:
                if again is None:
                    again = self._ranking(service_id, relaxed, prefs)
                nid = again.best(usable_again)
            if nid is not None:
                self._assign(t, nid)
                continue
            # Same needs, same refusals: explain once per group, unless the
            # explanation quotes the task itself. With the avoid list set
            # aside, what is left is why no node at all can take it.
            if why is None or why.per_task:
                why = pipeline.explain(t, last_resort)
            self._pending(t, why.text)


def schedule(snap: st.Snapshot, now: float) -> StagePlan:
    """Assign every wanted NEW/PENDING task that some node can take; mark the
    others PENDING with the reason (written only when it changes).

    Actions: Puts of whole tasks, each guarded by the version it was read at."""
    return _Round(snap, now).run()
