"""The API every node serves on its mTLS port: managers fetch task logs here."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

import grpc

from swarmlet import errors, rpc, tls
from swarmlet.api import agent_pb2, agent_pb2_grpc


class LogSource(Protocol):
    def logs(
        self, container_ids: list[str], follow: bool, tail: int, timestamps: bool, since: float = 0.0, until: float = 0.0
    ) -> Iterator[agent_pb2.LogLine]: ...


class AgentServicer(agent_pb2_grpc.AgentServicer):  # type: ignore[misc]  # generated: untyped
    def __init__(self, executor: LogSource) -> None:
        self._executor = executor

    @rpc.edge
    def TaskLogs(self, request: agent_pb2.TaskLogsRequest, context: grpc.ServicerContext) -> Iterator[agent_pb2.LogLine]:
        ident = tls.peer_identity(context)
        if ident is None or ident.role != "manager":
            raise errors.PermissionDenied("only managers may read task logs from a node")
        lines = self._executor.logs(
            list(request.container_ids), request.follow, request.tail, request.timestamps, request.since, request.until
        )
        for line in lines:
            if not context.is_active():
                return
            yield line
