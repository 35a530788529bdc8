"""Service logs on a real store, with a fake agent over gRPC: one stream per
task, a followed stream picks up tasks started later, one task by id,
--since/--until/--details passed on."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest

from swarmlet.api import agent_pb2, agent_pb2_grpc
from swarmlet.api import control_pb2 as cpb
from swarmlet.api import objects_pb2 as pb
from swarmlet.core import state as st
from swarmlet.manager.control.api import ControlAPI
from tests.unit.manager import helpers as h
from tests.unit.manager.conftest import WORKER1, OneManager
from tests.waiting import wait_for


class FakeAgent(agent_pb2_grpc.AgentServicer):
    def __init__(self) -> None:
        self.requests: list[agent_pb2.TaskLogsRequest] = []

    def TaskLogs(self, request: agent_pb2.TaskLogsRequest, context: grpc.ServicerContext) -> Iterator[agent_pb2.LogLine]:
        self.requests.append(request)
        for cid in request.container_ids:
            yield agent_pb2.LogLine(container_id=cid, stream="stdout", data=f"hello from {cid}\n".encode())
        if request.follow:
            gone = threading.Event()
            if context.add_callback(gone.set):  # False: the caller left already
                gone.wait()


class Context:
    def __init__(self) -> None:
        self.active = True

    def is_active(self) -> bool:
        return self.active

    def add_callback(self, callback: object) -> bool:
        return True


@pytest.fixture
def agent(one_manager: OneManager) -> Iterator[tuple[OneManager, FakeAgent, ControlAPI]]:
    fake = FakeAgent()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    agent_pb2_grpc.add_AgentServicer_to_server(fake, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    m = one_manager
    node = pb.Node()
    node.CopyFrom(m.store.snapshot().nodes[WORKER1])
    node.api_addr = f"127.0.0.1:{port}"
    m.store.propose([st.put(node)])
    try:
        yield m, fake, ControlAPI(m.store, grpc.insecure_channel)
    finally:
        server.stop(None)


def add_task(m: OneManager, svc: pb.Service, tid: str, slot: int, container: str) -> None:
    t = pb.Task(
        id=tid,
        service_id=svc.id,
        service_name=svc.spec.name,
        slot=slot,
        node_id=WORKER1,
        desired_state=pb.RUNNING,
        status=pb.TaskStatus(state=pb.RUNNING, container_id=container),
    )
    m.store.propose([st.put(t, create=True)])


def test_a_followed_stream_picks_up_tasks_started_later(agent: tuple[OneManager, FakeAgent, ControlAPI]) -> None:
    m, fake, control = agent
    svc = control.services.create(cpb.CreateServiceRequest(spec=h.service_spec("web", replicas=0))).service
    add_task(m, svc, "task1", 1, "c1")
    ctx = Context()
    lines: list[cpb.ServiceLogLine] = []
    req = cpb.ServiceLogsRequest(ref="web", follow=True, tail=5, details=True, since=100.0, until=0.0)
    th = threading.Thread(target=lambda: lines.extend(control.logs.service_logs(req, ctx)), daemon=True)  # type: ignore[arg-type]
    th.start()
    try:
        wait_for(lambda: any(line.data == b"hello from c1\n" for line in lines), 10, "the first task's line")
        add_task(m, svc, "task2", 1, "c2")  # its replacement, after the command began
        wait_for(lambda: any(line.data == b"hello from c2\n" for line in lines), 10, "the replacement's line")
    finally:
        ctx.active = False
        th.join(10)
    first, second = fake.requests[:2]
    assert (list(first.container_ids), first.tail, first.follow, first.since) == (["c1"], 5, True, 100.0)
    assert (list(second.container_ids), second.tail) == (["c2"], -1)  # a new task: all of its output
    line = next(li for li in lines if li.task_id == "task2")
    assert (line.service_name, line.slot, line.node_id) == ("web", 1, WORKER1)
    assert line.details == f"swarmlet.node.id={WORKER1},swarmlet.service.id={svc.id},swarmlet.task.id=task2"


def test_one_task_by_id(agent: tuple[OneManager, FakeAgent, ControlAPI]) -> None:
    m, fake, control = agent
    svc = control.services.create(cpb.CreateServiceRequest(spec=h.service_spec("web", replicas=0))).service
    add_task(m, svc, "task1", 1, "c1")
    add_task(m, svc, "task2", 2, "c2")
    lines = list(control.logs.service_logs(cpb.ServiceLogsRequest(ref="task2", tail=-1), Context()))  # type: ignore[arg-type]
    assert [(li.task_id, li.data) for li in lines] == [("task2", b"hello from c2\n")]
    assert not lines[0].details
    everything = list(control.logs.service_logs(cpb.ServiceLogsRequest(ref="web", tail=-1), Context()))  # type: ignore[arg-type]
    assert sorted(li.task_id for li in everything) == ["task1", "task2"]
