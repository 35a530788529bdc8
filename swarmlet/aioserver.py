"""The node-facing gRPC server (dispatcher, CA, agent API) on grpc.aio, on an
event loop of its own thread (issue 15).

Why: grpc's thread-pool server runs each call on a thread of its pool, and an
agent's Session stream holds its thread for the stream's whole life; past
~63 agents on 64 threads, heartbeats, status reports and joins starved and
nodes flapped DOWN. On grpc.aio a stream waiting for the next assignment
costs a coroutine, not a thread: thousands of sessions share one thread.

Servicers on this server are async. Work that blocks (a Raft write waiting
for its commit, issuing a certificate, reading a container's log) runs on the
loop's executor (`asyncio.to_thread`), a bounded pool, never on the loop.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import grpc

T = TypeVar("T")

# Threads for blocking work started from the loop (asyncio.to_thread): Raft
# writes waiting for their commit, certificate issuance. Many joins or
# status reports at once queue here; the loop itself never waits.
BLOCKING_THREADS = 32
# Items of a blocking stream read ahead of a slow reader (pumped).
_READ_AHEAD = 256
_END = object()


class AioServer:
    """A grpc.aio server and the event loop thread it runs on."""

    def __init__(self, options: Sequence[tuple[str, Any]], interceptors: Sequence[Any] = (), name: str = "grpc-aio") -> None:
        self.loop = asyncio.new_event_loop()
        self.loop.set_default_executor(ThreadPoolExecutor(BLOCKING_THREADS, thread_name_prefix=f"{name}-blocking"))
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()
        self.server: grpc.aio.Server = self.call(lambda: grpc.aio.server(options=list(options), interceptors=list(interceptors)))

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run a coroutine on the server's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, fn: Callable[[], T]) -> T:
        """Call `fn` on the loop's thread (adding servicers and ports, which
        grpc.aio wants done there) and return its result."""

        async def wrapper() -> T:
            return fn()

        return self.run(wrapper())

    def add_port(self, addr: str, creds: grpc.ServerCredentials) -> int:
        port: int = self.call(lambda: self.server.add_secure_port(addr, creds))
        return port

    def start(self) -> None:
        self.run(self.server.start())

    def stop(self, grace: float | None) -> None:
        """Stop serving (calls in flight get `grace` seconds), then the loop."""
        if not self._thread.is_alive():
            return
        try:
            self.run(self.server.stop(grace), timeout=(grace or 0) + 5)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=5)


async def pumped(items: Iterator[T], stop: threading.Event | None = None) -> AsyncIterator[T]:
    """The items of a blocking iterator, read on a thread of their own and
    handed over through a bounded queue (a slow reader holds back the
    iterator, not the loop). `stop` is set when the caller goes away (a
    blocking iterator that waits may poll it to end early)."""
    loop = asyncio.get_running_loop()
    q: queue.Queue[Any] = queue.Queue(_READ_AHEAD)
    ready = asyncio.Event()
    halt: threading.Event = stop if stop is not None else threading.Event()

    def put(item: Any) -> bool:
        while not halt.is_set():
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
            for item in items:
                if not put(item):
                    return
        except BaseException as e:  # noqa: BLE001  (handed to the call)
            end = e
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()
        put(end)

    threading.Thread(target=pump, name="agent-pump", daemon=True).start()
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
        halt.set()
