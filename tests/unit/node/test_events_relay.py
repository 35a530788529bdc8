"""node/events.py: relaying the event stream, moving to the next manager
(and resuming after the last position) when one fails."""

from __future__ import annotations

from collections.abc import Iterator

import grpc
import pytest

from swarmlet import errors
from swarmlet.api import events_pb2 as epb
from swarmlet.node import events as ne


def ev(rev: int, idx: int = 0, progress: bool = False) -> epb.Event:
    return epb.Event(revision=rev, index=idx, type="task", action="state", id=f"t{rev}.{idx}", progress=progress)


class Unreachable(grpc.RpcError):
    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.UNAVAILABLE

    def details(self) -> str:
        return "Socket closed"


def scripted(name: str, script: list[epb.Event | BaseException], asked: list[tuple[str, epb.EventsRequest]]) -> ne.Source:
    def open_(req: epb.EventsRequest) -> Iterator[epb.Event]:
        asked.append((name, req))
        for item in script:
            if isinstance(item, BaseException):
                raise item
            yield item

    return (name, open_)


def positions(events: list[epb.Event]) -> list[tuple[int, int]]:
    return [(e.revision, e.index) for e in events]


def test_a_failed_manager_is_replaced_and_the_stream_resumes_after_the_last_position() -> None:
    asked: list[tuple[str, epb.EventsRequest]] = []
    a = scripted("a", [ev(5, progress=True), ev(6, 0), ev(6, 1), Unreachable()], asked)
    b = scripted("b", [ev(6, 1, progress=True), ev(6, 2), ev(7, 0)], asked)
    req = epb.EventsRequest(filters=[epb.EventFilter(key="type", values=["task"])])
    out = list(ne.relay(req, lambda: [a, b], lambda: True, sleep=lambda s: None))
    assert positions(out) == [(5, 0), (6, 0), (6, 1), (6, 1), (6, 2), (7, 0)]
    real = [e for e in out if not e.progress]
    assert positions(real) == [(6, 0), (6, 1), (6, 2), (7, 0)]  # no gap, no duplicate
    (_, first), (name, second) = asked
    assert not first.resume
    assert name == "b" and (second.resume, second.after_revision, second.after_index) == (True, 6, 1)
    assert list(second.filters) == list(req.filters)


def test_a_manager_without_the_history_is_skipped_for_one_that_has_it() -> None:
    asked: list[tuple[str, epb.EventsRequest]] = []
    a = scripted("a", [ev(3, progress=True), Unreachable()], asked)
    b = scripted("b", [errors.FailedPrecondition("events after revision 3 are no longer held")], asked)
    c = scripted("c", [ev(4)], asked)
    out = list(ne.relay(epb.EventsRequest(), lambda: [a, b, c], lambda: True, sleep=lambda s: None))
    assert positions(out) == [(3, 0), (4, 0)]
    assert [n for n, _ in asked] == ["a", "b", "c"]


def test_a_bad_request_ends_the_stream_at_once() -> None:
    asked: list[tuple[str, epb.EventsRequest]] = []
    a = scripted("a", [errors.Invalid("invalid filter 'colour'")], asked)
    b = scripted("b", [ev(1)], asked)
    with pytest.raises(errors.Invalid, match="colour"):
        list(ne.relay(epb.EventsRequest(), lambda: [a, b], lambda: True))
    assert [n for n, _ in asked] == ["a"]


def test_it_gives_up_when_no_manager_answers_for_long_enough() -> None:
    asked: list[tuple[str, epb.EventsRequest]] = []

    def sources() -> list[ne.Source]:
        return [
            scripted("a", [Unreachable()], asked),
            scripted("b", [Unreachable()], asked),
        ]

    with pytest.raises(errors.Unavailable, match="no manager could continue the event stream .*Socket closed"):
        list(ne.relay(epb.EventsRequest(), sources, lambda: True, give_up_after=0.0, sleep=lambda s: None))
    with pytest.raises(errors.Unavailable, match="no manager is known"):
        list(ne.relay(epb.EventsRequest(), lambda: [], lambda: True))


def test_managers_are_asked_session_first_and_never_this_node_itself() -> None:
    assert ne.ordered_managers(["m1:4244", "m2:4244", "m3:4244"], "m3:4244", "m1:4244") == ["m3:4244", "m2:4244"]
    assert ne.ordered_managers(["m1:4244", "m2:4244"], None, "w:4244") == ["m1:4244", "m2:4244"]
