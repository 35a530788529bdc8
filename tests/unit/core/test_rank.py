"""The spread ranking: fewest tasks of the service, then fewest tasks
overall, then node id; stale heap entries re-filed, unusable nodes dropped."""

from __future__ import annotations

from swarmlet.api import objects_pb2 as pb
from swarmlet.core.scheduler.load import Load
from swarmlet.core.scheduler.rank import Spread


def task(service: str, cpus: int = 0) -> pb.Task:
    t = pb.Task(id="t", service_id=service)
    t.spec.resources.reservations.nano_cpus = cpus
    return t


def always(nid: str) -> bool:
    return True


def place_all(load: Load, spread: Spread, service: str, n: int) -> list[str]:
    out = []
    for _ in range(n):
        nid = spread.best(always)
        assert nid is not None
        load.add(task(service), nid)
        out.append(nid)
    return out


def test_order_service_tasks_then_all_tasks_then_id() -> None:
    load = Load(["a", "b", "c", "d"])
    load.add(task("s"), "a")  # a: 1 of s
    load.add(task("x"), "b")  # b: 0 of s, 2 overall
    load.add(task("x"), "b")
    load.add(task("x"), "c")  # c: 0 of s, 1 overall
    spread = Spread(load, "s", ["a", "b", "c", "d"])
    # d (0, 0), then c (0, 1), then b (0, 2); then everyone has one of s:
    # fewest overall first (d has 1, c 2, a 1: a before d by id), ...
    assert place_all(load, spread, "s", 7) == ["d", "c", "b", "a", "d", "c", "b"]


def test_assignments_by_other_groups_are_seen() -> None:
    load = Load(["a", "b"])
    spread = Spread(load, "s", ["a", "b"])
    # Another group (same service, other needs) fills a after this heap was built.
    load.add(task("s"), "a")
    load.add(task("s"), "a")
    assert place_all(load, spread, "s", 3) == ["b", "b", "a"]


def test_unusable_nodes_are_dropped_for_the_round() -> None:
    load = Load(["a", "b", "c"])
    spread = Spread(load, "s", ["a", "b", "c"])
    asked: list[str] = []

    def not_b(nid: str) -> bool:
        asked.append(nid)
        return nid != "b"

    picks = []
    for _ in range(4):
        nid = spread.best(not_b)
        assert nid is not None
        load.add(task("s"), nid)
        picks.append(nid)
    assert picks == ["a", "c", "a", "c"]
    assert asked.count("b") == 1  # judged once, then gone
    empty = Spread(load, "s", [])
    assert empty.best(always) is None


def test_only_given_nodes_are_candidates() -> None:
    load = Load(["a", "b", "c"])
    spread = Spread(load, "s", ["c"])
    assert place_all(load, spread, "s", 2) == ["c", "c"]
