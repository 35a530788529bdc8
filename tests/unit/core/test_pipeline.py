"""The filter pipeline: eligible nodes (static filters shared between tasks
with equal needs), dynamic checks, explanations counted per reason in the
order of the filter list, and adding a filter in one place."""

from __future__ import annotations

from collections import Counter

import pytest

from swarmlet.api import objects_pb2 as pb
from swarmlet.core import state as st
from swarmlet.core.scheduler import filters as f
from swarmlet.core.scheduler.load import Load
from swarmlet.core.scheduler.pipeline import NO_NODE, Pipeline
from tests.core_sim import GiB, Sim


def pipeline(sim: Sim, **kw) -> Pipeline:
    return Pipeline(f.Context(sim.snap, Load(sim.snap.nodes)), **kw)


def task(constraints: tuple[str, ...] = (), mem: int = 0, avoid: tuple[str, ...] = (), slot: int = 1) -> pb.Task:
    t = pb.Task(id=f"t{slot}", service_id="s", slot=slot, desired_state=pb.RUNNING)
    t.spec.placement.constraints.extend(constraints)
    t.spec.resources.reservations.memory_bytes = mem
    t.avoid_nodes.extend(avoid)
    return t


def mixed_cluster() -> Sim:
    sim = Sim()
    sim.add_node("n1", availability=pb.NodeSpec.DRAIN, labels={"zone": "b"})
    sim.add_node("n2", mem=1 * GiB, labels={"zone": "b"})
    sim.add_node("n3", mem=8 * GiB, labels={"zone": "a"})
    sim.add_node("n4", state=pb.NodeStatus.DOWN, labels={"zone": "b"})
    sim.add_node("n5", mem=8 * GiB, labels={"zone": "b"})
    return sim


def test_eligible_fits_and_refusal() -> None:
    sim = mixed_cluster()
    p = pipeline(sim)
    needs = p.needs(task(("node.labels.zone==b",), mem=2 * GiB))
    # Static filters: ready, active, zone b. Resources are dynamic.
    assert p.eligible(needs) == ["n2", "n5"]
    assert not p.fits("n2", needs) and p.fits("n5", needs)
    nodes = sim.snap.nodes
    assert p.refusal(nodes["n1"], needs) == "drained"
    assert p.refusal(nodes["n2"], needs) == "insufficient memory (needs 2.0GiB)"
    assert p.refusal(nodes["n3"], needs) == "constraint node.labels.zone==b not met"
    assert p.refusal(nodes["n4"], needs) == "down"
    assert p.refusal(nodes["n5"], needs) is None


def test_explanation_counts_nodes_per_reason_in_filter_order() -> None:
    sim = mixed_cluster()
    p = pipeline(sim)
    t = task(("node.labels.zone==b",), mem=16 * GiB)
    why = p.explain(t, p.needs(t))
    assert why.text == (
        f"{NO_NODE} (5 nodes: 1 down, 1 drained, 1 constraint node.labels.zone==b not met, 2 insufficient memory (needs 16.0GiB))"
    )
    assert not why.per_task
    # The order of the list is the order of the explanation: nothing else ranks reasons.
    reversed_order = pipeline(sim, node_filters=tuple(reversed(f.NODE_FILTERS)))
    why = reversed_order.explain(t, reversed_order.needs(t))
    # (n1 and n4 report no memory, so memory does not limit them.)
    assert why.text == f"{NO_NODE} (5 nodes: 3 insufficient memory (needs 16.0GiB), 1 drained, 1 down)"


def test_unparsable_constraints_and_empty_cluster() -> None:
    sim = mixed_cluster()
    p = pipeline(sim)
    t = task(("zone=b",))
    needs = p.needs(t)
    assert p.refuse_needs(needs) is not None
    assert p.eligible(needs) == []
    assert p.explain(t, needs).text.startswith(f"{NO_NODE}: invalid constraint 'zone=b'")
    empty = pipeline(Sim())
    assert empty.explain(task(), empty.needs(task())).text == f"{NO_NODE} (the cluster has no nodes)"


def test_a_filter_may_say_the_whole_reason_when_it_refused_the_last_nodes() -> None:
    sim = mixed_cluster()
    p = pipeline(sim)
    t = task(("node.labels.zone==b",), avoid=("n2", "n5"))
    why = p.explain(t, p.needs(t))
    assert why.text == f"{NO_NODE}: rejected by every eligible node (2 nodes)"
    assert why.per_task  # it quotes the slot's own history
    # If some node got past the avoid filter and was refused later, the count stands.
    t = task(("node.labels.zone==b",), avoid=("n5",), mem=2 * GiB)
    why = p.explain(t, p.needs(t))
    assert why.text == (
        f"{NO_NODE} (5 nodes: 1 down, 1 drained, 1 constraint node.labels.zone==b not met, "
        "1 rejected the task before, 1 insufficient memory (needs 2.0GiB))"
    )


class Counting(f.NodeFilter[str]):
    """Counts its checks: how often the pipeline judges a node with it."""

    calls: Counter[str] = Counter()

    def need(self, t: pb.Task) -> str:
        return t.service_id

    def check(self, node: pb.Node, need: str) -> bool:
        Counting.calls[need] += 1
        return True

    def explain(self, node: pb.Node, need: str) -> str:
        return "never"


def test_static_verdicts_are_computed_once_per_distinct_needs() -> None:
    sim = Sim()
    for i in range(10):
        sim.add_node(f"n{i}", availability=pb.NodeSpec.DRAIN if i < 4 else pb.NodeSpec.ACTIVE)
    Counting.calls.clear()
    p = pipeline(sim, node_filters=(f.NodeReady, f.Availability, Counting))
    for sid in ("a", "a", "b", "a"):
        t = task()
        t.service_id = sid
        assert len(p.eligible(p.needs(t))) == 6
    # Each distinct need checked the 6 nodes left by the earlier filters once.
    assert Counting.calls == {"a": 6, "b": 6}


class NeedsGpu(f.NodeFilter[bool]):
    """A filter added by a test: tasks labelled gpu need a node labelled gpu."""

    def need(self, t: pb.Task) -> bool:
        return t.spec.container.labels.get("gpu") == "yes"

    def check(self, node: pb.Node, need: bool) -> bool:
        return not need or node.spec.labels.get("gpu") == "yes"

    def explain(self, node: pb.Node, need: bool) -> str:
        return "no gpu"


def test_adding_a_filter_is_adding_it_to_the_list(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(f, "NODE_FILTERS", (*f.NODE_FILTERS, NeedsGpu))
    sim = Sim()
    sim.add_node("plain1")
    sim.add_node("plain2")
    sim.add_node("gpu", labels={"gpu": "yes"})
    svc = sim.add_service("ml", replicas=2)
    svc.spec.task.container.labels["gpu"] = "yes"
    sim.apply([st.put(svc)])
    sim.add_service("web", replicas=3)
    sim.round()
    assert sim.per_node("ml") == {"gpu": 2}
    assert sim.per_node("web") == {"plain1": 1, "plain2": 1, "gpu": 1}
    sim.set_node("gpu", availability=pb.NodeSpec.DRAIN)
    sim.settle()
    pending = [t for t in sim.tasks("ml", live=True) if t.status.state == pb.PENDING]
    assert len(pending) == 2
    assert pending[0].status.err == f"{NO_NODE} (3 nodes: 1 drained, 2 no gpu)"
