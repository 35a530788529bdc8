"""The node's Agent API (agent/api.py) over real gRPC and mutual TLS: task
logs for managers only; the refusal is an errors.PermissionDenied mapped to
its status code at the edge (rpc.edge)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import pytest

from swarmlet import tls
from swarmlet.agent.api import AgentServicer
from swarmlet.agent.executor import Executor
from swarmlet.agent.runtime.fake import FakeRuntime
from swarmlet.aioserver import AioServer
from swarmlet.api import agent_pb2, agent_pb2_grpc
from swarmlet.api import objects_pb2 as pb
from swarmlet.ids import new_id
from swarmlet.manager import ca
from tests.waiting import wait_for

IMAGE = "busybox:test"


def _creds(root: pb.RootCA, role: str) -> tls.NodeCredentials:
    key_pem, cert_pem = ca.issue_local_certificate(root, new_id(), role, "cluster1", "127.0.0.1")
    return tls.NodeCredentials.from_pems(key_pem, cert_pem, root.cert_pem)


@dataclass
class Node:
    root: pb.RootCA
    addr: str
    engine: FakeRuntime
    container_id: str


@pytest.fixture(scope="module")
def node() -> Iterator[Node]:
    root = ca.create_root_ca()
    me = _creds(root, "worker")
    engine = FakeRuntime(images={IMAGE: ()})
    ex = Executor(engine, me.node_id, lambda reports: None)
    ex.start()
    t = pb.Task(id="t1", service_name="web", slot=1, node_id=me.node_id, desired_state=pb.RUNNING)
    t.spec.container.image = IMAGE
    ex.converge([t])
    (c,) = wait_for(lambda: [c for c in engine.containers() if c.pid], 5, "the task's container running")
    engine.write_log(c.id, "stdout", b"hello\n")
    server = AioServer(tls.SERVER_OPTIONS, [tls.ClientCertRequired()])
    server.call(lambda: agent_pb2_grpc.add_AgentServicer_to_server(AgentServicer(ex), server.server))
    port = server.add_port("127.0.0.1:0", me.server_credentials(require_client_auth=True))
    server.start()
    try:
        yield Node(root, f"127.0.0.1:{port}", engine, c.id)
    finally:
        server.stop(None)
        ex.stop()


def _logs(node: Node, role: str) -> list[agent_pb2.LogLine]:
    creds = _creds(node.root, role)
    with grpc.secure_channel(node.addr, creds.channel_credentials(), options=tls.CHANNEL_OPTIONS) as ch:
        stub = agent_pb2_grpc.AgentStub(ch)
        req = agent_pb2.TaskLogsRequest(container_ids=[node.container_id], tail=-1)
        return list(stub.TaskLogs(req, timeout=5))


def test_managers_read_task_logs(node: Node) -> None:
    (line,) = _logs(node, "manager")
    assert (line.task_id, line.stream, line.data) == ("t1", "stdout", b"hello\n")


def test_workers_may_not(node: Node) -> None:
    with pytest.raises(grpc.RpcError) as exc:
        _logs(node, "worker")
    assert exc.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "only managers" in (exc.value.details() or "")
