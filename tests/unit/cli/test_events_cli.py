"""`swarmlet events` against a fake daemon on a unix socket: output, filters,
times, and resuming without gap or duplicate when the daemon's stream breaks."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from typer.testing import CliRunner

from swarmlet.api import control_pb2_grpc
from swarmlet.api import events_pb2 as epb
from swarmlet.cli import events as cli_events
from swarmlet.cli.main import app
from swarmlet.cli.parse import parse_time

runner = CliRunner()


def event(rev: int, idx: int = 0, **kw: object) -> epb.Event:
    base: dict[str, object] = {"type": "service", "action": "create", "id": f"s{rev}", "name": f"web{rev}", "time": 1700000000.5}
    return epb.Event(revision=rev, index=idx, **(base | kw))  # type: ignore[arg-type]


class FakeEvents(control_pb2_grpc.ControlServicer):
    """The first stream breaks after two events; the next must resume after them."""

    def __init__(self) -> None:
        self.requests: list[epb.EventsRequest] = []
        self.lock = threading.Lock()

    def Events(self, request: epb.EventsRequest, context: grpc.ServicerContext) -> Iterator[epb.Event]:
        with self.lock:
            self.requests.append(request)
            n = len(self.requests)
        if n == 1:
            yield epb.Event(revision=4, index=2**32 - 1, progress=True)
            yield event(5, attributes={"replicas": "2"}, labels={"tier": "front"})
            yield event(5, 1, type="task", id="t1", name="web5.1")
            context.abort(grpc.StatusCode.UNAVAILABLE, "the daemon is restarting")
        yield event(6, action="remove")


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[tuple[FakeEvents, str]]:
    servicer = FakeEvents()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    control_pb2_grpc.add_ControlServicer_to_server(servicer, server)
    sock = tmp_path / "swarmlet.sock"
    server.add_insecure_port(f"unix://{sock}")
    server.start()
    try:
        yield servicer, f"unix://{sock}"
    finally:
        server.stop(None)


def test_json_lines_and_a_resume_without_gap_or_duplicate(fake: tuple[FakeEvents, str], monkeypatch: pytest.MonkeyPatch) -> None:
    servicer, host = fake
    monkeypatch.setattr(cli_events.time, "sleep", lambda s: None)
    r = runner.invoke(app, ["-H", host, "events", "--format", "json", "--filter", "type=service", "--filter", "type=task"])
    assert r.exit_code == 0, r.output
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    assert [(d["revision"], d["index"], d["action"]) for d in lines] == [(5, 0, "create"), (5, 1, "create"), (6, 0, "remove")]
    assert list(lines[0]) == ["revision", "index", "time", "type", "action", "id", "name", "attributes", "labels"]
    assert lines[0]["attributes"] == {"replicas": "2"} and lines[0]["labels"] == {"tier": "front"}
    assert "reconnecting" in r.stderr
    first, second = servicer.requests
    assert [(f.key, list(f.values)) for f in first.filters] == [("type", ["service", "task"])]
    assert not first.resume
    assert (second.resume, second.after_revision, second.after_index) == (True, 5, 1)


def test_text_lines_read_like_docker_events(fake: tuple[FakeEvents, str], monkeypatch: pytest.MonkeyPatch) -> None:
    _, host = fake
    monkeypatch.setattr(cli_events.time, "sleep", lambda s: None)
    r = runner.invoke(app, ["-H", host, "events"])
    first = r.stdout.splitlines()[0]
    assert first.endswith(" service create s5 (name=web5, replicas=2)")
    assert first.startswith("2023-11-1")  # 1700000000.5, in the local zone


def test_since_and_until_are_sent_as_unix_times(fake: tuple[FakeEvents, str]) -> None:
    servicer, host = fake
    servicer.requests.append(epb.EventsRequest())  # the next stream does not break
    before = time.time()
    r = runner.invoke(app, ["-H", host, "events", "--since", "1h", "--until", "2030-01-01T00:00:00Z"])
    assert r.exit_code == 0, r.output
    req = servicer.requests[-1]
    assert before - 3600 - 1 < req.since <= time.time() - 3600
    assert req.until == 1893456000.0


@pytest.mark.parametrize(
    "args, message",
    [
        (["--filter", "colour=red"], "invalid filter 'colour'"),
        (["--filter", "event=die"], "invalid event filter 'die'"),
        (["--since", "soon"], "invalid time 'soon'"),
        (["--since", "1700000100", "--until", "1700000000"], "--until is before --since"),
        (["--format", "yaml"], "unsupported format"),
    ],
)
def test_bad_flags_are_usage_errors(fake: tuple[FakeEvents, str], args: list[str], message: str) -> None:
    servicer, host = fake
    r = runner.invoke(app, ["-H", host, "events", *args])
    assert r.exit_code == 2 and message in r.output
    assert servicer.requests == []


def test_parse_time_forms() -> None:
    now = 1_700_000_000.0
    assert parse_time("1700000000", now) == 1700000000.0
    assert parse_time("1700000000.25", now) == 1700000000.25
    assert parse_time("10m", now) == now - 600
    assert parse_time("2023-11-14T22:13:20Z", now) == 1700000000.0
    assert parse_time("2023-11-14T23:13:20+01:00", now) == 1700000000.0
    with pytest.raises(ValueError, match="invalid time"):
        parse_time("next week", now)
