"""What the dispatcher sends each node about its networks (core/endpoints.py):
peers, remote endpoints, services with their VIPs and backends."""

from __future__ import annotations

from swarmlet.api import objects_pb2 as pb
from swarmlet.core import state as st
from swarmlet.core.endpoints import all_assignments
from tests.core_sim import Sim


def _cluster_with_web() -> Sim:
    sim = Sim()
    for i in (1, 2, 3):
        n = sim.add_node(f"n{i}")
        n2 = pb.Node()
        n2.CopyFrom(n)
        n2.status.addr = f"198.18.9.{i}"
        sim.apply([st.put(n2)])
    sim.apply([st.put(pb.Network(id="net", spec=pb.NetworkSpec(name="front", driver="overlay")), create=True)])
    sim.add_service("web", replicas=2, constraints=["node.id!=n1"])
    s = pb.Service()
    s.CopyFrom(sim.snap.services["web"])
    s.spec.networks.add(target="net")
    s.spec.endpoint.ports.add(published_port=8080, target_port=80)
    sim.apply([st.put(s)])
    sim.settle()
    return sim


def test_assignments_peers_remote_endpoints_and_backends() -> None:
    sim = _cluster_with_web()
    out = all_assignments(sim.snap)
    # n1 runs nothing on "front" but is on the ingress network (routing mesh).
    assert [a.network.spec.name for a in out["n1"]] == ["ingress"]
    front_n2 = next(a for a in out["n2"] if a.network.id == "net")
    assert list(front_n2.peers) == ["198.18.9.3"]
    assert [e.node_addr for e in front_n2.remote] == ["198.18.9.3"]
    web = front_n2.services[0]
    assert web.name == "svc-web" and web.vip and len(web.backends) == 2
    ing_n1 = out["n1"][0]
    assert ing_n1.node_addr and sorted(ing_n1.peers) == ["198.18.9.2", "198.18.9.3"]
    # Remote endpoints on the ingress network include the other nodes' own addresses.
    assert len(ing_n1.remote) == 2 + 2


def test_stopping_task_leaves_backends_at_once() -> None:
    sim = _cluster_with_web()
    t = next(t for t in sim.snap.tasks.values() if t.status.state == pb.RUNNING)
    sim.apply([st.set_desired(t.id, pb.SHUTDOWN)])
    backends = {b.task_id for a in all_assignments(sim.snap)["n2"] for s in a.services for b in s.backends}
    assert t.id not in backends
