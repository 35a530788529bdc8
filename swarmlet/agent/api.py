"""The API every node serves on its mTLS port: managers fetch task logs here.

Served on the node's grpc.aio server (swarmlet/aioserver.py): the engine's
log stream is blocking, so it is read on a thread of its own and handed to
the call through a bounded queue (a slow reader holds back the engine read,
not the server)."""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any, Protocol

from swarmlet import errors, rpc, tls
from swarmlet.api import agent_pb2, agent_pb2_grpc

# Log lines read ahead of a slow reader.
_READ_AHEAD = 256
_END = object()


class LogSource(Protocol):
    def logs(self, container_ids: list[str], follow: bool, tail: int, timestamps: bool) -> Iterator[agent_pb2.LogLine]: ...


class AgentServicer(agent_pb2_grpc.AgentServicer):  # type: ignore[misc]  # generated: untyped
    def __init__(self, executor: LogSource) -> None:
        self._executor = executor

    @rpc.edge
    async def TaskLogs(self, request: agent_pb2.TaskLogsRequest, context: Any) -> AsyncIterator[agent_pb2.LogLine]:
        ident = tls.peer_identity(context)
        if ident is None or ident.role != "manager":
            raise errors.PermissionDenied("only managers may read task logs from a node")
        lines = self._executor.logs(list(request.container_ids), request.follow, request.tail, request.timestamps)
        async for line in _pumped(lines):
            yield line


async def _pumped(lines: Iterator[agent_pb2.LogLine]) -> AsyncIterator[agent_pb2.LogLine]:
    """The items of a blocking iterator, read on a thread of their own."""
    loop = asyncio.get_running_loop()
    q: queue.Queue[Any] = queue.Queue(_READ_AHEAD)
    ready = asyncio.Event()
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.5)
            except queue.Full:
                continue
            loop.call_soon_threadsafe(ready.set)
            return True
        return False

    def pump() -> None:
        end: Any = _END
        try:
            for line in lines:
                if not put(line):
                    return
        except BaseException as e:  # noqa: BLE001  (handed to the call)
            end = e
        finally:
            close = getattr(lines, "close", None)
            if close is not None:
                close()
        put(end)

    threading.Thread(target=pump, name="agent-logs", daemon=True).start()
    try:
        while True:
            try:
                item = q.get_nowait()
            except queue.Empty:
                ready.clear()
                if q.empty():
                    await ready.wait()
                continue
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
