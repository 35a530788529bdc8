"""The scheduler parts of issue 11: placement preferences (Swarm's spread
over label values, nested, nodes without the label in their own group),
--replicas-max-per-node, host-mode published ports (one task per node),
generic resources and engine-label constraints. Each refusal is explained."""

from __future__ import annotations

from collections import Counter

from swarmlet.api import objects_pb2 as pb
from swarmlet.core import state as st
from swarmlet.core import views
from tests.core_sim import Sim


def service(sim: Sim, sid: str, replicas: int, **kw: object) -> pb.Service:
    """A replicated service with placement options (prefs, max_replicas,
    host_ports, generic, constraints) set before it is stored."""
    s = pb.Service(id=sid, spec_version=1)
    s.spec.name = f"svc-{sid}"
    s.spec.replicated.replicas = replicas
    t = s.spec.task
    t.container.image = "busybox:latest"
    for d in kw.get("prefs", ()):  # type: ignore[attr-defined]
        t.placement.preferences.add(spread=d)
    t.placement.max_replicas = int(kw.get("max_replicas", 0))  # type: ignore[call-overload]
    t.placement.constraints.extend(kw.get("constraints", ()))  # type: ignore[arg-type]
    for port in kw.get("host_ports", ()):  # type: ignore[attr-defined]
        s.spec.endpoint.ports.add(target_port=80, published_port=port, publish_mode=pb.PortConfig.HOST)
    for kind, n in kw.get("generic", {}).items():  # type: ignore[attr-defined]
        t.resources.reservations.generic.add(kind=kind, discrete_value=n)
    sim.apply([st.put(s, create=True)])
    return sim.snap.services[sid]


def zone_counts(sim: Sim, sid: str, label: str = "zone") -> Counter[str]:
    return Counter(sim.snap.nodes[t.node_id].spec.labels.get(label, "") for t in sim.tasks(sid, live=True) if t.node_id)


def pending_errs(sim: Sim, sid: str) -> list[str]:
    return [t.status.err for t in sim.tasks(sid, live=True) if t.status.state == pb.PENDING]


# ---- placement preferences ----


def test_spread_over_three_zones_with_uneven_node_counts() -> None:
    sim = Sim()
    for nid, zone in (("a1", "a"), ("b1", "b"), ("b2", "b"), ("c1", "c"), ("c2", "c"), ("c3", "c")):
        sim.add_node(nid, labels={"zone": zone})
    service(sim, "s", 9, prefs=["node.labels.zone"])
    sim.settle()
    # Even over the zones, whatever their sizes (plain spread would give
    # 1.5 tasks to each node: 2 for zone a, 3 for b, 4 for c).
    assert zone_counts(sim, "s") == {"a": 3, "b": 3, "c": 3}
    # Within a zone, spread over its nodes.
    assert sim.per_node("s") == {"a1": 3, "b1": 2, "b2": 1, "c1": 1, "c2": 1, "c3": 1}


def test_nodes_without_the_label_form_their_own_group() -> None:
    sim = Sim()
    sim.add_node("a1", labels={"zone": "a"})
    sim.add_node("b1", labels={"zone": "b"})
    for nid in ("x1", "x2", "x3", "x4"):
        sim.add_node(nid)
    service(sim, "s", 6, prefs=["node.labels.zone"])
    sim.settle()
    assert zone_counts(sim, "s") == {"a": 2, "b": 2, "": 2}


def test_nested_preferences_split_each_group_again() -> None:
    sim = Sim()
    for nid, zone, rack in (("n1", "a", "r1"), ("n2", "a", "r2"), ("n3", "a", "r2"), ("n4", "b", "r1")):
        sim.add_node(nid, labels={"zone": zone, "rack": rack})
    service(sim, "s", 8, prefs=["node.labels.zone", "node.labels.rack"])
    sim.settle()
    assert zone_counts(sim, "s") == {"a": 4, "b": 4}
    # Zone a's 4 tasks: 2 per rack, rack r2's 2 over its two nodes.
    assert sim.per_node("s") == {"n1": 2, "n2": 1, "n3": 1, "n4": 4}


def test_preferences_count_tasks_already_running() -> None:
    sim = Sim()
    sim.add_node("a1", labels={"zone": "a"})
    s = service(sim, "s", 2, prefs=["node.labels.zone"])
    sim.settle()
    sim.add_node("b1", labels={"zone": "b"})
    new = pb.Service()
    new.CopyFrom(s)
    new.spec.replicated.replicas = 4
    sim.apply([st.put(new)])
    sim.settle()
    # Zone a holds two already: both new tasks go to zone b.
    assert zone_counts(sim, "s") == {"a": 2, "b": 2}


def test_a_full_group_is_skipped_rather_than_left_pending() -> None:
    sim = Sim()
    sim.add_node("a1", labels={"zone": "a"}, cpus=1)
    sim.add_node("b1", labels={"zone": "b"}, cpus=4)
    s = service(sim, "s", 4, prefs=["node.labels.zone"])
    new = pb.Service()
    new.CopyFrom(s)
    new.spec.task.resources.reservations.nano_cpus = 10**9
    sim.apply([st.put(new)])
    sim.settle()
    # Zone a has room for one: the rest goes to zone b.
    assert sim.per_node("s") == {"a1": 1, "b1": 3}


def test_engine_labels_spread_and_constrain() -> None:
    sim = Sim()
    for nid, disk in (("n1", "ssd"), ("n2", "ssd"), ("n3", "hdd")):
        sim.add_node(nid)
        n = pb.Node()
        n.CopyFrom(sim.snap.nodes[nid])
        n.description.engine_labels["disk"] = disk
        sim.apply([st.put(n)])
    service(sim, "fast", 4, constraints=["engine.labels.disk==ssd"])
    service(sim, "spread", 4, prefs=["engine.labels.disk"])
    sim.settle()
    assert set(sim.per_node("fast")) == {"n1", "n2"}
    assert sim.per_node("spread")["n3"] == 2


# ---- max replicas per node ----


def test_max_replicas_per_node_leaves_the_rest_pending_and_says_why() -> None:
    sim = Sim()
    sim.add_node("n1")
    sim.add_node("n2")
    service(sim, "s", 5, max_replicas=2)
    sim.settle()
    assert sim.per_node("s") == {"n1": 2, "n2": 2}
    assert pending_errs(sim, "s") == ["no suitable node (2 nodes: 2 max replicas per node (2) reached)"]
    assert "max replicas per node (2) reached" in views.stuck_reason(sim.snap, "s")
    # A third node takes the fifth task.
    sim.add_node("n3")
    sim.settle()
    assert sim.per_node("s") == {"n1": 2, "n2": 2, "n3": 1}


# ---- host-mode ports ----


def test_host_ports_one_task_per_node() -> None:
    sim = Sim()
    for nid in ("n1", "n2", "n3"):
        sim.add_node(nid)
    service(sim, "web", 4, host_ports=[8080])
    sim.settle()
    assert sorted(sim.per_node("web").values()) == [1, 1, 1]
    assert pending_errs(sim, "web") == ["no suitable node (3 nodes: 3 host-mode port 8080/tcp in use)"]


def test_host_ports_are_per_node_across_services() -> None:
    sim = Sim()
    for nid in ("n1", "n2", "n3"):
        sim.add_node(nid)
    service(sim, "a", 2, host_ports=[8080])
    sim.settle()
    # Another service may publish the same host port: it gets the node left.
    service(sim, "b", 2, host_ports=[8080])
    service(sim, "c", 3, host_ports=[9090])
    sim.settle()
    on = {t.node_id for t in sim.tasks("a", live=True)}
    b_nodes = {t.node_id for t in sim.tasks("b", live=True) if t.node_id}
    assert len(b_nodes) == 1 and not b_nodes & on
    assert len(pending_errs(sim, "b")) == 1
    assert sorted(sim.per_node("c").values()) == [1, 1, 1]  # another port: no clash


def test_a_global_service_with_a_host_port_is_refused_where_it_is_taken() -> None:
    sim = Sim()
    sim.add_node("n1")
    sim.add_node("n2")
    service(sim, "rep", 1, host_ports=[53])
    sim.settle()
    taken = next(t.node_id for t in sim.tasks("rep", live=True))
    g = pb.Service(id="g", spec_version=1)
    g.spec.name = "svc-g"
    getattr(g.spec, "global").SetInParent()
    g.spec.task.container.image = "busybox:latest"
    g.spec.endpoint.ports.add(target_port=53, published_port=53, publish_mode=pb.PortConfig.HOST)
    sim.apply([st.put(g, create=True)])
    sim.settle()
    placed = {t.node_id for t in sim.tasks("g", live=True) if t.status.state == pb.RUNNING}
    assert placed == {"n1", "n2"} - {taken}
    errs = pending_errs(sim, "g")
    assert errs == [f"no suitable node (node host-{taken}: host-mode port 53/tcp in use)"]


# ---- generic resources ----


def _with_generic(sim: Sim, nid: str, *resources: pb.GenericResource) -> None:
    n = pb.Node()
    n.CopyFrom(sim.snap.nodes[nid])
    n.description.resources.generic.extend(resources)
    sim.apply([st.put(n)])


def test_generic_resources_named_units_are_handed_out_once() -> None:
    sim = Sim()
    sim.add_node("n1")
    sim.add_node("n2")
    _with_generic(
        sim, "n1", pb.GenericResource(kind="gpu", named_value="GPU-A"), pb.GenericResource(kind="gpu", named_value="GPU-B")
    )
    _with_generic(sim, "n2", pb.GenericResource(kind="gpu", discrete_value=1))
    service(sim, "s", 4, generic={"gpu": 1})
    sim.settle()
    placed = [t for t in sim.tasks("s", live=True) if t.node_id]
    assert Counter(t.node_id for t in placed) == {"n1": 2, "n2": 1}
    named = sorted(g.named_value for t in placed if t.node_id == "n1" for g in t.assigned_generic)
    assert named == ["GPU-A", "GPU-B"]
    (discrete,) = [g for t in placed if t.node_id == "n2" for g in t.assigned_generic]
    assert (discrete.kind, discrete.discrete_value) == ("gpu", 1)
    assert pending_errs(sim, "s") == ["no suitable node (2 nodes: 2 insufficient gpu (needs 1))"]


def test_generic_resources_a_node_without_the_kind_says_so() -> None:
    sim = Sim()
    sim.add_node("n1")
    service(sim, "s", 1, generic={"fpga": 2})
    sim.settle()
    assert pending_errs(sim, "s") == ["no suitable node (1 node: 1 no fpga resource)"]
