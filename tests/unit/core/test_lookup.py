"""Finding objects by what users type: exact id, exact name, unique id
prefix; ambiguity and absence are errors that say so."""

from __future__ import annotations

import pytest

from swarmlet import errors
from swarmlet.api import objects_pb2 as pb
from swarmlet.core import lookup
from swarmlet.core import state as st
from tests.core_sim import Sim


def cluster() -> Sim:
    sim = Sim()
    sim.add_node("abc123", hostname="web1")
    sim.add_node("abd456", hostname="web2")
    sim.add_node("xyz789", hostname="abc123x")
    return sim


def test_by_id_name_and_prefix() -> None:
    snap = cluster().snap
    assert lookup.node(snap, "abc123").id == "abc123"
    assert lookup.node(snap, "web2").id == "abd456"
    assert lookup.node(snap, "xy").id == "xyz789"


def test_an_exact_id_wins_over_a_name_and_a_name_over_a_prefix() -> None:
    sim = cluster()
    sim.add_node("web1zz", hostname="other")
    # "web1" is the host name of abc123 and a prefix of web1zz's id.
    assert lookup.node(sim.snap, "web1").id == "abc123"
    sim.add_node("web2", hostname="third")
    # "web2" is the id of one node and the host name of another.
    assert lookup.node(sim.snap, "web2").id == "web2"


def test_ambiguous_and_missing() -> None:
    snap = cluster().snap
    with pytest.raises(errors.FailedPrecondition, match="node id prefix 'ab' is ambiguous"):
        lookup.node(snap, "ab")
    with pytest.raises(errors.NotFound, match="node 'nope' not found"):
        lookup.node(snap, "nope")
    with pytest.raises(errors.Invalid, match="no node given"):
        lookup.node(snap, "")


def test_ambiguous_name() -> None:
    # Names are unique when a batch is applied (issue 14); a state from
    # before that may still hold two services of one name.
    sim = Sim()
    for sid in ("s1", "s2"):
        s = pb.Service(id=sid)
        s.spec.name = "web"
        sim.snap.services[sid] = s
    with pytest.raises(errors.FailedPrecondition, match=r"service name 'web' is ambiguous \(2 match\): use an id"):
        lookup.service(sim.snap, "web")
    assert lookup.service(sim.snap, "s2").id == "s2"


def test_networks_and_names() -> None:
    sim = cluster()
    sim.apply([st.put(pb.Network(id="n-1", spec=pb.NetworkSpec(name="backend")), create=True)])
    assert lookup.network(sim.snap, "backend").id == "n-1"
    assert lookup.node_name(sim.snap.nodes["abc123"]) == "web1"
    assert lookup.node_name(pb.Node(id="bare")) == "bare"
    assert lookup.names([pb.Service(spec=pb.ServiceSpec(name=n)) for n in ("b", "a")]) == ["a", "b"]


def test_a_task_by_id_prefix_or_name_and_service_or_task() -> None:
    svc = pb.Service(id="svc1", spec=pb.ServiceSpec(name="web"))
    old = pb.Task(id="task0aaa", service_id="svc1", service_name="web", slot=2, meta=pb.Meta(created_at=1.0))
    new = pb.Task(id="task0bbb", service_id="svc1", service_name="web", slot=2, meta=pb.Meta(created_at=2.0))
    s = st.Snapshot(services={"svc1": svc}, tasks={old.id: old, new.id: new})
    assert lookup.task(s, "task0aaa") is old
    assert lookup.task(s, "task0b") is new
    assert lookup.task(s, "web.2") is new  # the newest of the slot, as `service ps` lists it first
    with pytest.raises(errors.FailedPrecondition, match="ambiguous"):
        lookup.task(s, "task0")
    assert lookup.service_or_task(s, "web") == (svc, None)
    assert lookup.service_or_task(s, "task0aaa") == (svc, old)
    with pytest.raises(errors.NotFound, match="no such service or task: nothing"):
        lookup.service_or_task(s, "nothing")
