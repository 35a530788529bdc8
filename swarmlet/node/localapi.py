"""The local API: the Control service on the daemon's unix socket, the CLI's
only way in. Membership RPCs are answered by the node itself; every cluster
RPC is handed to the manager's control API (manager.control.routes.ROUTES
names the method behind each). Errors are swarmlet.errors, turned into gRPC
statuses by @rpc.edge.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator
from concurrent import futures
from typing import TYPE_CHECKING, Any, Protocol

import grpc

from swarmlet import errors, rpc
from swarmlet.api import control_pb2 as cpb
from swarmlet.api import control_pb2_grpc
from swarmlet.api import events_pb2 as epb
from swarmlet.core.bounds import MAX_LOCAL_MESSAGE
from swarmlet.manager.control.routes import ROUTES
from swarmlet.node.membership import Membership

if TYPE_CHECKING:  # a worker never loads the control API (issue 15: worker memory)
    from swarmlet.manager.control.api import ControlAPI

LOCAL_WORKERS = 16


class LocalNode(Protocol):
    """What the local API needs from the daemon."""

    membership: Membership

    def info(self) -> cpb.InfoResponse: ...

    def manager_control(self) -> ControlAPI: ...

    def events(self, request: epb.EventsRequest, context: grpc.ServicerContext) -> Iterator[epb.Event]: ...


class LocalControl(control_pb2_grpc.ControlServicer):  # type: ignore[misc]  # generated code is not type-checked
    def __init__(self, node: LocalNode) -> None:
        self._node = node

    @rpc.edge
    def Init(self, request: cpb.InitRequest, context: grpc.ServicerContext) -> cpb.InitResponse:
        return self._node.membership.init(request)

    @rpc.edge
    def Join(self, request: cpb.JoinRequest, context: grpc.ServicerContext) -> cpb.JoinResponse:
        return self._node.membership.join(request)

    @rpc.edge
    def Leave(self, request: cpb.LeaveRequest, context: grpc.ServicerContext) -> cpb.LeaveResponse:
        return self._node.membership.leave(request)

    @rpc.edge
    def Restore(self, request: cpb.RestoreRequest, context: grpc.ServicerContext) -> cpb.InitResponse:
        return self._node.membership.restore(request)

    @rpc.edge
    def Unlock(self, request: cpb.UnlockRequest, context: grpc.ServicerContext) -> cpb.UnlockResponse:
        return self._node.membership.unlock(request)

    @rpc.edge
    def Info(self, request: cpb.InfoRequest, context: grpc.ServicerContext) -> cpb.InfoResponse:
        return self._node.info()

    @rpc.edge
    def JoinToken(self, request: cpb.JoinTokenRequest, context: grpc.ServicerContext) -> cpb.JoinTokenResponse:
        return self._node.manager_control().cluster.join_token(request, self._node.membership.addrs.join)

    @rpc.edge
    def ServiceLogs(self, request: cpb.ServiceLogsRequest, context: grpc.ServicerContext) -> Iterator[cpb.ServiceLogLine]:
        yield from self._node.manager_control().logs.service_logs(request, context)

    # ---- issue 9: streamed image transfers ----

    @rpc.edge
    def PushImage(self, request: cpb.PushImageRequest, context: grpc.ServicerContext) -> Iterator[cpb.ImageTransferProgress]:
        yield from self._node.manager_control().images.push(request, context)

    @rpc.edge
    def LoadImage(
        self, request_iterator: Iterator[cpb.LoadImageChunk], context: grpc.ServicerContext
    ) -> Iterator[cpb.ImageTransferProgress]:
        yield from self._node.manager_control().images.load(request_iterator, context)

    @rpc.edge
    def Events(self, request: epb.EventsRequest, context: grpc.ServicerContext) -> Iterator[epb.Event]:
        # Issue 16: any node in a cluster streams them (node/events.py).
        yield from self._node.events(request, context)


def _routed(rpc_name: str) -> Callable[[LocalControl, Any, grpc.ServicerContext], Any]:
    """A Control RPC answered by the manager's control API."""

    @rpc.edge
    def handler(self: LocalControl, request: Any, context: grpc.ServicerContext) -> Any:
        return self._node.manager_control().handler(rpc_name)(request)

    handler.__name__ = rpc_name
    return handler


for _name in ROUTES:
    setattr(LocalControl, _name, _routed(_name))


def _socket_answers(path: str) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        try:
            s.connect(path)
            return True
        except OSError:
            return False


def claim_socket(path: str) -> None:
    """Make `path` free for this daemon: refuse when another daemon answers
    on it, remove it when it is left over from one that died."""
    directory = os.path.dirname(path)
    if directory:
        os.makedirs(directory, exist_ok=True)
    if os.path.exists(path):
        if _socket_answers(path):
            raise errors.FailedPrecondition(f"another swarmlet daemon is already listening on unix://{path}")
        os.unlink(path)


def serve(path: str, servicer: LocalControl) -> grpc.Server:
    """Start the local API on the unix socket `path` (claimed first)."""
    # Messages as large as the CLI's (a backup of a large cluster, issue 13:
    # gRPC's default 4 MiB refused restoring a backup that could be taken).
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=LOCAL_WORKERS, thread_name_prefix="local"),
        options=[
            ("grpc.max_receive_message_length", MAX_LOCAL_MESSAGE),
            ("grpc.max_send_message_length", MAX_LOCAL_MESSAGE),
        ],
    )
    control_pb2_grpc.add_ControlServicer_to_server(servicer, server)
    # The socket is the CLI's only credential: root only. gRPC creates it in
    # add_insecure_port, so the umask must cover that call; the chmod makes
    # the mode exactly 0600 whatever gRPC does (docs/security.md).
    old_umask = os.umask(0o077)
    try:
        server.add_insecure_port(f"unix://{path}")
    finally:
        os.umask(old_umask)
    server.start()
    os.chmod(path, 0o600)
    return server
