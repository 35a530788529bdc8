"""`swarmlet events`: the cluster's changes, streamed live (issue 16).

The daemon relays them from a manager (node/events.py) and moves to another
manager, resuming, when its source fails. This command does the same one
level up: when the local daemon's stream breaks (the daemon restarted, or it
was the manager that died), it reconnects and resumes strictly after the last
position it received, so the output has no gap and no duplicate.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import time
from collections.abc import Callable, Iterator
from typing import Annotated

import grpc
import typer

from swarmlet.api import events_pb2 as epb
from swarmlet.cli.client import DaemonClient, connect, handle_errors, translate_rpc_error
from swarmlet.cli.options import FormatOpt, check_format, parsed
from swarmlet.cli.parse import parse_time
from swarmlet.core import events as ev

# How long the command keeps trying to reconnect to its daemon.
RECONNECT_FOR = 60.0
_RETRYABLE = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED, grpc.StatusCode.DEADLINE_EXCEEDED}


def event_json(e: epb.Event) -> str:
    """One line of `--format json`: the event's fields in a fixed order."""
    d = {
        "revision": e.revision,
        "index": e.index,
        "time": e.time,
        "type": e.type,
        "action": e.action,
        "id": e.id,
        "name": e.name,
        "attributes": dict(sorted(e.attributes.items())),
        "labels": dict(sorted(e.labels.items())),
    }
    return json.dumps(d, ensure_ascii=False)


def event_text(e: epb.Event) -> str:
    """Docker's line: time type action id (name=..., k=v, ...)."""
    when = dt.datetime.fromtimestamp(e.time).astimezone().isoformat(timespec="microseconds")
    attrs = [f"name={e.name}"] if e.name else []
    attrs += [f"{k}={v}" for k, v in sorted(e.attributes.items())]
    tail = f" ({', '.join(attrs)})" if attrs else ""
    return f"{when} {e.type} {e.action} {e.id}{tail}"


def follow(
    open_stream: Callable[[epb.EventsRequest], Iterator[epb.Event]],
    req: epb.EventsRequest,
    warn: Callable[[str], None],
    reconnect_for: float = RECONNECT_FOR,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[epb.Event]:
    """The events of `req` (progress markers left out), reconnecting and
    resuming after the last position received when the stream breaks."""
    last: ev.Position | None = None
    broken_since: float | None = None
    while True:
        r = req if last is None else ev.resume_request(req, last)
        try:
            for e in open_stream(r):
                last = ev.position(e)
                broken_since = None
                if not e.progress:
                    yield e
            return
        except grpc.RpcError as e:
            code = e.code() if isinstance(e, grpc.Call) else None
            if code not in _RETRYABLE:
                raise
            now = time.monotonic()
            if broken_since is None:
                broken_since = now
                warn("event stream interrupted: reconnecting")
            elif now - broken_since > reconnect_for:
                raise
            sleep(0.5)


@handle_errors
def events(
    ctx: typer.Context,
    since: Annotated[
        str | None,
        typer.Option("--since", metavar="TIME", help="Show events since TIME (timestamp, RFC 3339, or a duration ago like 10m)."),
    ] = None,
    until: Annotated[
        str | None, typer.Option("--until", metavar="TIME", help="Stream until TIME, then exit (same forms as --since).")
    ] = None,
    filters: Annotated[
        list[str] | None,
        typer.Option(
            "--filter",
            "-f",
            metavar="KEY=VALUE",
            help="type=service|task|node|network|secret|config|cluster, event=create|update|remove|state, "
            "service=, node=, network=, secret=, config=, label=KEY[=VALUE]; repeatable.",
        ),
    ] = None,
    fmt: FormatOpt = None,
) -> None:
    """Stream the cluster's events (from the replicated state, on any node)."""
    check_format(fmt)
    now = time.time()
    req = epb.EventsRequest(
        since=parsed(lambda t: parse_time(t, now), since, "--since") if since else 0.0,
        until=parsed(lambda t: parse_time(t, now), until, "--until") if until else 0.0,
        filters=parsed(ev.parse_filters, filters or [], "--filter"),
    )
    if req.since and req.until and req.until < req.since:
        raise typer.BadParameter("--until is before --since", param_hint="--until")
    render = event_json if fmt == "json" else event_text
    with connect(ctx) as d:
        try:
            for e in follow(_opener(d), req, lambda msg: typer.echo(msg, err=True)):
                sys.stdout.write(render(e) + "\n")
                sys.stdout.flush()
        except grpc.RpcError as e:
            raise translate_rpc_error(e, d.host, None) from None
        except KeyboardInterrupt:
            return


def _opener(d: DaemonClient) -> Callable[[epb.EventsRequest], Iterator[epb.Event]]:
    def open_stream(r: epb.EventsRequest) -> Iterator[epb.Event]:
        call = d.stub.Events(r)
        try:
            yield from call
        finally:
            call.cancel()

    return open_stream


def register(app: typer.Typer) -> None:
    app.command("events")(events)
