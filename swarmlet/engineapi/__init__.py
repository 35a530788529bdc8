"""Docker's Engine API for swarm objects (issue 17): `swarmlet daemon
--docker-api-socket PATH`. server.py serves it (aiohttp), convert.py maps
docker's JSON to swarmlet's objects and back, info.py builds the system
endpoints. docs/engine-api.md says what is served and what is refused."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from swarmlet.engineapi.base import EngineNode
    from swarmlet.engineapi.server import EngineAPIServer


def serve(path: str, node: EngineNode) -> EngineAPIServer:
    """Serve the Engine API on the unix socket `path` (0600). aiohttp is
    loaded only by a daemon that serves it."""
    from swarmlet.engineapi.server import serve as start

    return start(path, node)
