"""Tasks: listing, filtered by service and node."""

from __future__ import annotations

import time

from swarmlet.api import control_pb2 as cpb
from swarmlet.core import lookup, views
from swarmlet.manager.control.base import StoreAccess


class TaskControl:
    def __init__(self, access: StoreAccess) -> None:
        self._a = access

    def list(self, req: cpb.ListTasksRequest) -> cpb.ListTasksResponse:
        snap = self._a.snap()
        tasks = list(snap.tasks.values())
        if req.service_ref:
            svc = lookup.service(snap, req.service_ref)
            tasks = [t for t in tasks if t.service_id == svc.id]
        if req.node_ref:
            node = lookup.node(snap, req.node_ref)
            tasks = [t for t in tasks if t.node_id == node.id]
        tasks.sort(key=lambda t: (t.service_name, t.slot, t.node_id, -t.meta.created_at))
        names = {n.id: lookup.node_name(n) for n in snap.nodes.values()}
        # Why tasks wait (issue 16), from the planner's views of their services.
        now, listed = time.time(), {t.id for t in tasks}
        waiting: dict[str, str] = {}
        for sid in sorted({t.service_id for t in tasks if t.service_id in snap.services}):
            waiting.update((k, v) for k, v in views.waiting_reasons(snap, sid, now).items() if k in listed)
        return cpb.ListTasksResponse(tasks=tasks, node_names=names, waiting=waiting)
