"""Each scheduler filter on its own: its verdict on a node, and its words."""

from __future__ import annotations

from swarmlet.api import objects_pb2 as pb
from swarmlet.core import state as st
from swarmlet.core.scheduler import filters as f
from swarmlet.core.scheduler.load import Load
from tests.core_sim import CPU, GiB, Sim


def ctx(sim: Sim) -> f.Context:
    return f.Context(sim.snap, Load(sim.snap.nodes))


def task(service: str = "s", slot: int = 1, **kw) -> pb.Task:
    return pb.Task(id=kw.pop("tid", "t"), service_id=service, slot=slot, desired_state=pb.RUNNING, **kw)


def test_node_ready() -> None:
    sim = Sim()
    nodes = {
        s: sim.add_node(s, state=state)
        for s, state in [
            ("ready", pb.NodeStatus.READY),
            ("down", pb.NodeStatus.DOWN),
            ("disc", pb.NodeStatus.DISCONNECTED),
            ("unknown", pb.NodeStatus.UNKNOWN),
        ]
    }
    nf = f.NodeReady(ctx(sim))
    assert nf.check(nodes["ready"], None)
    words = {nid: nf.explain(n, None) for nid, n in nodes.items() if not nf.check(n, None)}
    assert words == {"down": "down", "disc": "disconnected", "unknown": "not ready"}


def test_availability() -> None:
    sim = Sim()
    active = sim.add_node("a")
    paused = sim.add_node("p", availability=pb.NodeSpec.PAUSE)
    drained = sim.add_node("d", availability=pb.NodeSpec.DRAIN)
    af = f.Availability(ctx(sim))
    assert af.check(active, None)
    assert not af.check(paused, None) and af.explain(paused, None) == "paused"
    assert not af.check(drained, None) and af.explain(drained, None) == "drained"


def test_constraints_check_explain_and_unparsable() -> None:
    sim = Sim()
    a = sim.add_node("a", labels={"zone": "a"}, role=pb.NodeSpec.MANAGER)
    b = sim.add_node("b", labels={"zone": "b"})
    cf = f.Constraints(ctx(sim))
    t = task()
    t.spec.placement.constraints.extend(["node.role==manager", "node.labels.zone==a"])
    need = cf.need(t)
    assert need == ("node.role==manager", "node.labels.zone==a")
    assert cf.refuse_need(need) is None
    assert cf.check(a, need)
    assert not cf.check(b, need)
    assert cf.explain(b, need) == "constraint node.role==manager not met"  # the first one it fails
    assert cf.check(b, ())  # no constraints: every node
    bad = ("zone=a",)
    assert "invalid constraint 'zone=a'" in (cf.refuse_need(bad) or "")
    assert not cf.check(a, bad)


def test_avoid_nodes_and_the_whole_reason_quotes_the_last_rejection() -> None:
    sim = Sim()
    n1 = sim.add_node("n1")
    n2 = sim.add_node("n2")
    sim.add_service("s", replicas=0)
    for tid, node, at, err in [("r1", "n1", 1.0, "image x not found on n1"), ("r2", "n2", 2.0, "image x not found on n2")]:
        r = task(tid=tid, node_id=node)
        r.meta.created_at = at
        sim.apply([st.put(r, create=True)])
        sim.report(tid, pb.REJECTED, err=err)
    af = f.AvoidNodes(ctx(sim))
    t = task(tid="t3")
    t.avoid_nodes.extend(["n1", "n2"])
    need = af.need(t)
    assert need == frozenset({"n1", "n2"})
    assert not af.check(n1, need) and af.explain(n1, need) == "rejected the task before"
    assert af.check(n2, frozenset({"n1"}))
    assert af.explain_all(t, 2) == "rejected by every eligible node (last error: image x not found on n2)"
    other_slot = task(tid="t4", slot=2)
    assert af.explain_all(other_slot, 2) == "rejected by every eligible node (2 nodes)"


def test_resource_shortfall() -> None:
    cap = pb.Resources(nano_cpus=2 * CPU, memory_bytes=4 * GiB)
    assert f.resource_shortfall(cap, 0, 0, 2 * CPU, 4 * GiB) is None  # exactly full fits
    assert f.resource_shortfall(cap, CPU, 0, 2 * CPU, 0) == "insufficient cpu (needs 2 CPUs)"
    assert f.resource_shortfall(cap, 0, 3 * GiB, 0, 2 * GiB) == "insufficient memory (needs 2.0GiB)"
    # cpu is reported first when both are short
    assert f.resource_shortfall(cap, 2 * CPU, 4 * GiB, CPU, GiB) == "insufficient cpu (needs 1 CPU)"
    # A capacity the node did not report does not limit.
    assert f.resource_shortfall(pb.Resources(), 100 * CPU, 100 * GiB, 8 * CPU, 64 * GiB) is None
    assert f.resource_shortfall(pb.Resources(memory_bytes=GiB), 0, 0, 64 * CPU, GiB) is None


def test_resources_read_the_rounds_load() -> None:
    sim = Sim()
    n = sim.add_node("n1", cpus=2, mem=2 * GiB)
    c = ctx(sim)
    rf = f.Resources(c)
    assert rf.dynamic
    t = task()
    t.spec.resources.reservations.nano_cpus = CPU
    need = rf.need(t)
    assert need == (CPU, 0)
    assert rf.check(n, need)
    c.load.add(t, "n1")
    assert rf.check(n, need)
    c.load.add(t, "n1")
    assert not rf.check(n, need) and rf.explain(n, need) == "insufficient cpu (needs 1 CPU)"


def add_network(sim: Sim, nid: str, **kw: object) -> pb.Network:
    n = pb.Network(id=nid, spec=pb.NetworkSpec(name=f"net-{nid}", driver="overlay"), **kw)
    sim.apply([st.put(n, create=True)])
    return n


def test_network_ready() -> None:
    sim = Sim()
    add_network(sim, "ok", subnet="10.0.0.0/24", gateway="10.0.0.1", vni=4096)
    add_network(sim, "bad", error="the address pool has no free /24 left")
    svc = pb.Service()
    svc.CopyFrom(sim.add_service("s"))
    svc.spec.networks.add(target="ok")
    sim.apply([st.put(svc)])
    nr = f.NetworkReady(ctx(sim))
    t = task()
    assert nr.refuse(t) == "no free address on network net-ok"
    t.networks.add(network_id="ok", addr="10.0.0.5")
    assert nr.refuse(t) is None
    # A service without networks never waits.
    assert f.NetworkReady(ctx(sim)).refuse(task(service="other")) is None

    svc.CopyFrom(sim.snap.services["s"])
    svc.spec.networks.add(target="bad")
    sim.apply([st.put(svc)])
    assert f.NetworkReady(ctx(sim)).refuse(t) == "network net-bad is not allocated: the address pool has no free /24 left"

    pub = pb.Service()
    pub.CopyFrom(sim.add_service("p"))
    pub.spec.endpoint.ports.add(target_port=80, published_port=8080)
    sim.apply([st.put(pub)])
    assert f.NetworkReady(ctx(sim)).refuse(task(service="p")) == "waiting for the ingress network"


def test_platforms_of_the_image() -> None:
    """Issue 17: docker's CLI copies the image's platforms into the spec; a
    node must match one of them (uname names match Go's)."""
    sim = Sim()
    amd = sim.add_node("amd", arch="x86_64")
    arm = sim.add_node("arm", arch="aarch64")
    win = sim.add_node("win", os="windows", arch="x86_64")
    pf = f.Platforms(ctx(sim))
    assert pf.passes_all(pf.need(task()))  # no platforms: every node
    t = task()
    t.spec.placement.platforms.add(os="linux", architecture="amd64")
    t.spec.placement.platforms.add(os="Linux", architecture="arm64")
    need = pf.need(t)
    assert not pf.passes_all(need)
    assert pf.check(amd, need) and pf.check(arm, need) and not pf.check(win, need)
    assert pf.explain(win, need) == "platform windows/x86_64 is not one of the image's (linux/amd64, Linux/arm64)"
    any_arch = task()
    any_arch.spec.placement.platforms.add(os="linux")
    assert pf.check(arm, pf.need(any_arch)) and not pf.check(win, pf.need(any_arch))
