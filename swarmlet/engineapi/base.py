"""What every route of the Engine API shares: the daemon handle, the thread
pool the control API's blocking calls run on, request parsing."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, TypeVar

from aiohttp import web

from swarmlet import errors
from swarmlet.api import control_pb2 as cpb
from swarmlet.api import events_pb2 as epb
from swarmlet.manager.control.api import ControlAPI

log = logging.getLogger("swarmlet.engineapi")

T = TypeVar("T")
# Control API calls wait on Raft (a barrier per read, a commit per write):
# a few at once, never on the event loop.
WORKERS = 8


class EngineNode(Protocol):
    """What the Engine API needs from the daemon (node/daemon.py)."""

    def info(self) -> cpb.InfoResponse: ...

    def manager_control(self) -> ControlAPI: ...

    # Issue 16's cluster events, as the local API streams them (any node).
    def events(self, request: epb.EventsRequest, context: Any) -> Iterator[epb.Event]: ...


class StreamContext:
    """What the control API's log stream asks of a gRPC context: whether the
    client is still there, and what to call once it is gone."""

    def __init__(self) -> None:
        self._gone = threading.Event()
        self._callbacks: list[Callable[[], None]] = []
        self._lock = threading.Lock()

    def is_active(self) -> bool:
        return not self._gone.is_set()

    def wait(self) -> None:
        """Until the client is gone."""
        self._gone.wait()

    def add_callback(self, fn: Callable[[], None]) -> bool:
        with self._lock:
            if self._gone.is_set():
                return False
            self._callbacks.append(fn)
            return True

    def cancel(self) -> None:
        with self._lock:
            self._gone.set()
            callbacks, self._callbacks = self._callbacks, []
        for fn in callbacks:
            fn()


class Base:
    def __init__(self, node: EngineNode) -> None:
        self._node = node
        self._pool = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="engineapi")

    async def _run(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn)

    def _control(self) -> ControlAPI:
        """This manager's control API; the same errors as the local API on a
        worker, a locked manager or a node outside a cluster."""
        return self._node.manager_control()

    @staticmethod
    async def _body(request: web.Request) -> Any:
        text = await request.text()
        try:
            return json.loads(text) if text.strip() else {}
        except ValueError:
            raise errors.Invalid("the request body is not JSON") from None

    @staticmethod
    def _version_param(request: web.Request) -> int:
        v = request.query.get("version", "")
        if not v.isdigit():
            raise errors.Invalid("version: expected the object's Version.Index (an integer)")
        return int(v)

    @staticmethod
    async def _stream(
        resp: web.StreamResponse, chunks: Callable[[StreamContext], Iterable[bytes]], name: str, what: str
    ) -> web.StreamResponse:
        """Write what `chunks` yields to the prepared `resp`, then end it.
        The chunks come from a blocking stream of the control API (logs,
        events), so they are read on a thread of their own; the event loop
        only writes. A client that leaves cancels the context, which ends the
        stream; a stream that fails ends the response either way."""
        loop = asyncio.get_running_loop()
        context = StreamContext()
        done: asyncio.Future[None] = loop.create_future()

        def pump() -> None:
            try:
                for data in chunks(context):
                    asyncio.run_coroutine_threadsafe(resp.write(data), loop).result(timeout=30)
            except Exception as e:  # the client left, or the stream failed: end the response either way
                log.debug("engine API %s ended: %s", what, e)
            finally:
                loop.call_soon_threadsafe(_finish, done)

        threading.Thread(target=pump, name=name, daemon=True).start()
        try:
            await done
        finally:
            context.cancel()
        await resp.write_eof()
        return resp

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def _finish(done: asyncio.Future[None]) -> None:
    """End a streamed response's wait (on the event loop; once)."""
    if not done.done():
        done.set_result(None)
