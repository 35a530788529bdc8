"""The tasks resource of the control API on a real one-manager store."""

from __future__ import annotations

import pytest

from swarmlet import errors
from swarmlet.api import control_pb2 as cpb
from swarmlet.api import objects_pb2 as pb
from swarmlet.core import state as st
from tests.unit.manager import helpers as h
from tests.unit.manager.conftest import WORKER1, WORKER2, OneManager


def test_tasks_are_listed_by_service_and_node(one_manager: OneManager) -> None:
    m = one_manager
    web = m.control.services.create(cpb.CreateServiceRequest(spec=h.service_spec("web", replicas=2))).service
    api = m.control.services.create(cpb.CreateServiceRequest(spec=h.service_spec("api"))).service

    def task(tid: str, svc: pb.Service, slot: int, node_id: str) -> pb.Task:
        return pb.Task(id=tid, service_id=svc.id, service_name=svc.spec.name, slot=slot, node_id=node_id)

    m.store.propose(
        [
            st.put(task("t-web-2", web, 2, WORKER2), create=True),
            st.put(task("t-web-1", web, 1, WORKER1), create=True),
            st.put(task("t-api-1", api, 1, WORKER1), create=True),
        ]
    )
    tasks = m.control.tasks

    def ids(req: cpb.ListTasksRequest) -> list[str]:
        return [t.id for t in tasks.list(req).tasks]

    assert ids(cpb.ListTasksRequest()) == ["t-api-1", "t-web-1", "t-web-2"]
    assert ids(cpb.ListTasksRequest(service_ref="web")) == ["t-web-1", "t-web-2"]
    assert ids(cpb.ListTasksRequest(node_ref="worker-1")) == ["t-api-1", "t-web-1"]
    assert ids(cpb.ListTasksRequest(service_ref="web", node_ref="worker-2")) == ["t-web-2"]
    assert tasks.list(cpb.ListTasksRequest()).node_names[WORKER1] == "worker-1"
    with pytest.raises(errors.NotFound, match="service 'db' not found"):
        tasks.list(cpb.ListTasksRequest(service_ref="db"))
