"""What every route of the Engine API shares: the daemon handle, the thread
pool the control API's blocking calls run on, request parsing."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, TypeVar

from aiohttp import web

from swarmlet import errors
from swarmlet.api import control_pb2 as cpb
from swarmlet.manager.control.api import ControlAPI

T = TypeVar("T")
# Control API calls wait on Raft (a barrier per read, a commit per write):
# a few at once, never on the event loop.
WORKERS = 8


class EngineNode(Protocol):
    """What the Engine API needs from the daemon (node/daemon.py)."""

    def info(self) -> cpb.InfoResponse: ...

    def manager_control(self) -> ControlAPI: ...


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

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
