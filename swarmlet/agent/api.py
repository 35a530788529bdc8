"""The API every node serves on its mTLS port: managers fetch task logs here;
peers fetch images here, and managers order image fetches and removals
(issue 9).

Served on the node's grpc.aio server (swarmlet/aioserver.py): the engine's
log stream, an image export and an image fetch are blocking, so they are
read on a thread of their own and handed to the call through a bounded queue
(a slow reader holds back the engine read, not the server)."""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any, Protocol

from swarmlet import errors, metrics, rpc, tls
from swarmlet.agent.images import ImageStore
from swarmlet.aioserver import pumped
from swarmlet.api import agent_pb2, agent_pb2_grpc


class LogSource(Protocol):
    def logs(
        self, container_ids: list[str], follow: bool, tail: int, timestamps: bool, since: float = 0.0, until: float = 0.0
    ) -> Iterator[agent_pb2.LogLine]: ...


def _manager_only(context: Any, what: str) -> None:
    ident = tls.peer_identity(context)
    if ident is None or ident.role != "manager":
        raise errors.PermissionDenied(f"only managers may {what} on a node")


class AgentServicer(agent_pb2_grpc.AgentServicer):  # type: ignore[misc]  # generated: untyped
    def __init__(self, executor: LogSource, images: ImageStore | None = None) -> None:
        self._executor = executor
        self._images = images

    @rpc.edge
    async def TaskLogs(self, request: agent_pb2.TaskLogsRequest, context: Any) -> AsyncIterator[agent_pb2.LogLine]:
        _manager_only(context, "read task logs")
        lines = self._executor.logs(
            list(request.container_ids), request.follow, request.tail, request.timestamps, request.since, request.until
        )
        async for line in pumped(lines):
            yield line

    # ---- images (issue 9) ----

    def _store(self) -> ImageStore:
        if self._images is None:
            raise errors.FailedPrecondition("this node serves no images")
        return self._images

    @rpc.edge
    async def ExportImage(self, request: agent_pb2.ExportImageRequest, context: Any) -> AsyncIterator[agent_pb2.ImageChunk]:
        # Any node of the cluster (the mTLS port admits only those) may ask.
        if tls.peer_identity(context) is None:
            raise errors.Unauthenticated("a node certificate is required")
        async for chunk in pumped(self._store().export(request.image_id)):
            yield chunk
            # Counted once gRPC took it (it asks for the next only then):
            # what a peer that hung up never got is not counted.
            metrics.image_served(len(chunk.data))

    @rpc.edge
    async def FetchImage(self, request: agent_pb2.FetchImageRequest, context: Any) -> AsyncIterator[agent_pb2.FetchImageProgress]:
        _manager_only(context, "order an image fetch")
        store = self._store()
        async for item in pumped(_fetch_progress(store, request)):
            yield item

    @rpc.edge
    async def RemoveImage(self, request: agent_pb2.NodeRemoveImageRequest, context: Any) -> agent_pb2.NodeRemoveImageResponse:
        _manager_only(context, "remove images")
        store = self._store()
        removed = await asyncio.to_thread(store.remove, request.image_id)
        return agent_pb2.NodeRemoveImageResponse(removed=removed)


def _fetch_progress(store: ImageStore, request: agent_pb2.FetchImageRequest) -> Iterator[agent_pb2.FetchImageProgress]:
    """A fetch's progress, as a blocking iterator: the fetch runs on a thread
    of its own (it goes on even if the manager stops listening)."""
    updates: queue.Queue[agent_pb2.FetchImageProgress | None] = queue.Queue()

    def run() -> None:
        try:
            source = store.fetch_from(
                request.image_id,
                list(request.sources),
                lambda cur, total, src: updates.put(
                    agent_pb2.FetchImageProgress(state="receiving", current=cur, total=total, source=src)
                ),
            )
            updates.put(agent_pb2.FetchImageProgress(state="loaded" if source else "present", source=source))
        except errors.SwarmletError as e:
            updates.put(agent_pb2.FetchImageProgress(state="failed", error=str(e)))
        except Exception as e:  # reported to the manager, not lost in a thread
            updates.put(agent_pb2.FetchImageProgress(state="failed", error=f"{type(e).__name__}: {e}"))
        finally:
            updates.put(None)

    threading.Thread(target=run, name="image-fetch", daemon=True).start()
    while True:
        item = updates.get()
        if item is None:
            return
        yield item
