"""GET /services/{id}/logs and /tasks/{id}/logs: the control API's log
stream (issue 16) in docker's wire form.

Docker's clients read the stream in two ways. A service without a TTY gets
stdcopy frames: an 8-byte header (the stream, 1 or 2, then the length)
before each line. Each line starts with its details,
`com.docker.swarm.node.id=...,com.docker.swarm.service.id=...,com.docker.swarm.task.id=...`,
and a timestamp comes before those when asked for. `docker service logs`
parses exactly that to print `web.1.xyz@node | line`.

A log stream, and a follow above all, lasts as long as the client stays.
So each stream gets a thread of its own rather than one from the shared pool.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Iterator
from urllib.parse import quote

from aiohttp import web

from swarmlet import errors
from swarmlet.api import control_pb2 as cpb
from swarmlet.api import objects_pb2 as pb
from swarmlet.engineapi import convert as cv
from swarmlet.engineapi.base import Base, StreamContext

log = logging.getLogger("swarmlet.engineapi")
_STREAMS = {"stdout": 1, "stderr": 2}


def log_request(ref: str, query: dict[str, str]) -> tuple[cpb.ServiceLogsRequest, set[str]]:
    """The control API request for docker's log query, and the streams
    (stdout, stderr) the client wants."""
    streams = {s for s in _STREAMS if query.get(s, "").lower() in ("1", "true")}
    if not streams:
        raise errors.Invalid("Bad parameters: you must choose at least one stream")
    tail = query.get("tail", "all")
    if tail not in ("all", "") and not tail.isdigit():
        raise errors.Invalid(f"tail: expected a number of lines or 'all', got {tail!r}")
    req = cpb.ServiceLogsRequest(
        ref=ref,
        follow=query.get("follow", "").lower() in ("1", "true"),
        tail=-1 if tail in ("all", "") else int(tail),
        timestamps=query.get("timestamps", "").lower() in ("1", "true"),
        details=True,
    )
    for key, field in (("since", "since"), ("until", "until")):
        value = query.get(key, "")
        if value and value != "0":
            try:
                setattr(req, field, float(value))
            except ValueError:
                raise errors.Invalid(f"{key}: expected unix seconds, got {value!r}") from None
    return req, streams


def frame(line: cpb.ServiceLogLine, service_id: str, timestamps: bool, tty: bool) -> bytes:
    """One line as docker's log stream carries it."""
    attrs = {
        "com.docker.swarm.node.id": line.node_id,
        "com.docker.swarm.service.id": service_id,
        "com.docker.swarm.task.id": line.task_id,
    }
    details = ",".join(f"{quote(k)}={quote(v)}" for k, v in attrs.items())
    data, stamp = line.data, b""
    if timestamps:
        # The control API puts the timestamp first in the data when asked.
        stamp_text, sep, rest = data.partition(b" ")
        if sep:
            stamp, data = stamp_text + b" ", rest
    payload = stamp + details.encode() + b" " + data
    if not payload.endswith(b"\n"):
        payload += b"\n"
    if tty:
        return payload
    return struct.pack(">BxxxL", _STREAMS.get(line.stream, 1), len(payload)) + payload


class LogRoutes(Base):
    async def service_logs(self, request: web.Request) -> web.StreamResponse:
        return await self._logs(request, request.match_info["id"], task=False)

    async def task_logs(self, request: web.Request) -> web.StreamResponse:
        return await self._logs(request, request.match_info["id"], task=True)

    async def _logs(self, request: web.Request, ref: str, task: bool) -> web.StreamResponse:
        req, streams = log_request(ref, dict(request.query))

        def target() -> tuple[str, bool]:
            control = self._control()
            if task:
                tasks = {t.id: t for t in control.tasks.list(cpb.ListTasksRequest()).tasks}
                found: pb.Task = cv.resolve_one(tasks, ref, "task")
                req.ref = found.id
                return found.service_id, found.spec.container.tty
            svc = control.services.get(cpb.GetServiceRequest(ref=ref)).service
            return svc.id, svc.spec.task.container.tty

        service_id, tty = await self._run(target)
        control = self._control()
        resp = web.StreamResponse(
            headers={"Content-Type": "application/vnd.docker.raw-stream" if tty else "application/vnd.docker.multiplexed-stream"}
        )
        await resp.prepare(request)

        def chunks(context: StreamContext) -> Iterator[bytes]:
            for line in control.logs.service_logs(req, context):  # a duck-typed gRPC context
                if line.stream and line.stream not in streams:
                    continue
                yield frame(line, service_id, req.timestamps, tty)

        return await self._stream(resp, chunks, "engineapi-logs", f"log stream of {ref}")
