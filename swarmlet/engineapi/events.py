"""GET /events: the cluster's events (issue 16) as docker's JSON lines,
scope "swarm". Streamed until `until` or until the client leaves; a thread
per stream (it lasts as long as the client)."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

from aiohttp import web

from swarmlet import errors
from swarmlet.api import events_pb2 as epb
from swarmlet.engineapi import convert as cv
from swarmlet.engineapi.base import Base, StreamContext

log = logging.getLogger("swarmlet.engineapi")

# docker's event filters -> swarmlet's (node/events.py applies them).
_FILTERS = ("type", "event", "service", "node", "network", "secret", "config", "label")


def events_request(query: dict[str, str]) -> tuple[epb.EventsRequest, bool]:
    """The request for docker's /events query, and whether the client's
    scope filter leaves anything (swarmlet has swarm-scope events only)."""
    f = cv.parse_filters(query.get("filters"))
    cv.check_filter_keys(f, (*_FILTERS, "scope"))
    req = epb.EventsRequest()
    for key in _FILTERS:
        if f.get(key):
            req.filters.add(key=key, values=f[key])
    for key in ("since", "until"):
        value = query.get(key, "")
        if value:
            try:
                setattr(req, key, float(value))
            except ValueError:
                raise errors.Invalid(f"{key}: expected unix seconds, got {value!r}") from None
    return req, not f.get("scope") or "swarm" in f["scope"]


class EventRoutes(Base):
    async def events(self, request: web.Request) -> web.StreamResponse:
        req, any_left = events_request(dict(request.query))
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        await resp.prepare(request)

        def chunks(context: StreamContext) -> Iterator[bytes]:
            if any_left:
                for e in self._node.events(req, context):
                    if e.progress:  # swarmlet's resume marker: docker has none
                        continue
                    yield json.dumps(cv.event_to_docker(e)).encode() + b"\n"
            elif not req.until:
                context.wait()

        return await self._stream(resp, chunks, "engineapi-events", "event stream")
