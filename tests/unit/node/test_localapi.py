"""The local API over its real unix socket: membership answered by the node,
cluster RPCs routed to the control API, errors as gRPC status codes."""

from __future__ import annotations

import os
import socket
import stat
from collections.abc import Iterator

import grpc
import pytest

from swarmlet import errors
from swarmlet.api import control_pb2 as cpb
from swarmlet.api import control_pb2_grpc
from swarmlet.manager.control.routes import ROUTES
from swarmlet.node import localapi
from swarmlet.node.daemon import Daemon
from tests.unit.node.loopback import config


@pytest.fixture
def served(tmp_path) -> Iterator[tuple[Daemon, control_pb2_grpc.ControlStub]]:
    d = Daemon(config(tmp_path, "m1"))
    localapi.claim_socket(d.cfg.socket)
    server = localapi.serve(d.cfg.socket, localapi.LocalControl(d))
    channel = grpc.insecure_channel(f"unix://{d.cfg.socket}")
    yield d, control_pb2_grpc.ControlStub(channel)
    channel.close()
    server.stop(grace=0)
    d.stop()


def code_of(call: object) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as e:
        call()  # type: ignore[operator]
    return e.value.code(), e.value.details()


def test_socket_is_root_only(served: tuple[Daemon, control_pb2_grpc.ControlStub]) -> None:
    d, _ = served
    assert stat.S_IMODE(os.stat(d.cfg.socket).st_mode) == 0o600  # exactly, as the docs say


def test_a_restore_larger_than_grpcs_default_4mib_reaches_the_daemon(served: tuple[Daemon, control_pb2_grpc.ControlStub]) -> None:
    """A backup over 4 MiB could be taken but not restored (RESOURCE_EXHAUSTED):
    the local API now takes messages as large as the CLI sends."""
    _, stub = served
    big = b"x" * (6 << 20)
    code, details = code_of(lambda: stub.Restore(cpb.RestoreRequest(data=big), timeout=30))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "not a swarmlet backup" in details


def test_every_route_is_served() -> None:
    for name in ROUTES:
        assert callable(getattr(localapi.LocalControl, name))


def test_membership_and_routing_through_the_socket(served: tuple[Daemon, control_pb2_grpc.ControlStub]) -> None:
    d, stub = served
    assert stub.Info(cpb.InfoRequest()).state == "inactive"
    code, details = code_of(lambda: stub.ListServices(cpb.ListServicesRequest()))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "not part of a swarm" in details
    code, details = code_of(lambda: stub.JoinToken(cpb.JoinTokenRequest(role="worker")))
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    code, details = code_of(lambda: stub.Join(cpb.JoinRequest(token="bad", remote_addr="127.0.0.1:1")))
    assert code == grpc.StatusCode.INVALID_ARGUMENT and "malformed join token" in details

    resp = stub.Init(cpb.InitRequest(), timeout=60)
    assert stub.Info(cpb.InfoRequest()).is_leader
    token = stub.JoinToken(cpb.JoinTokenRequest(role="worker"))
    assert token.token == resp.worker_token and token.api_addr == f"127.0.0.1:{d.cfg.join_port}"
    assert list(stub.ListServices(cpb.ListServicesRequest()).services) == []
    code, details = code_of(lambda: stub.GetService(cpb.GetServiceRequest(ref="nope")))
    assert code == grpc.StatusCode.NOT_FOUND
    code, details = code_of(lambda: stub.Leave(cpb.LeaveRequest()))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "Use `--force`" in details


def test_a_second_daemon_cannot_claim_a_served_socket(served: tuple[Daemon, control_pb2_grpc.ControlStub]) -> None:
    d, _ = served
    with pytest.raises(errors.FailedPrecondition, match="already listening"):
        localapi.claim_socket(d.cfg.socket)


def test_a_stale_socket_is_reclaimed(tmp_path) -> None:
    path = str(tmp_path / "run" / "s.sock")
    os.makedirs(os.path.dirname(path))
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as dead:
        dead.bind(path)  # bound, never listening: a daemon that died
    localapi.claim_socket(path)
    assert not os.path.exists(path)
