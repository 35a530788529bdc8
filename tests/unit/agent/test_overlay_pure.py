"""Pure parts of the overlay: what the dispatcher sends each node, the
iptables text for VIPs and the routing mesh, the DNS codec, --publish parsing."""

from __future__ import annotations

import socket
import struct

import pytest

from swarmlet.agent.net import dns
from swarmlet.agent.net.wiring import container_rules, ingress_rules
from swarmlet.api import dispatcher_pb2 as dpb
from swarmlet.api import objects_pb2 as pb
from swarmlet.cli.network import parse_publish
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


def test_assignments_peers_remote_endpoints_and_backends():
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


def test_stopping_task_leaves_backends_at_once():
    sim = _cluster_with_web()
    t = next(t for t in sim.snap.tasks.values() if t.status.state == pb.RUNNING)
    sim.apply([st.set_desired(t.id, pb.SHUTDOWN)])
    backends = {b.task_id for a in all_assignments(sim.snap)["n2"] for s in a.services for b in s.backends}
    assert t.id not in backends


def test_container_rules_spread_evenly_and_reject_without_backends():
    s = dpb.ServiceEndpoints(name="web", vip="10.0.0.2", mode=pb.EndpointSpec.VIP)
    for ip in ("10.0.0.5", "10.0.0.3", "10.0.0.4"):
        s.backends.add(addr=ip)
    empty = dpb.ServiceEndpoints(name="idle", vip="10.0.0.9", mode=pb.EndpointSpec.VIP)
    text = container_rules([s, empty])
    lines = [line for line in text.splitlines() if line.startswith("-A OUTPUT -d 10.0.0.2")]
    assert lines == [
        "-A OUTPUT -d 10.0.0.2/32 -m statistic --mode random --probability 0.33333333 -j DNAT --to-destination 10.0.0.3",
        "-A OUTPUT -d 10.0.0.2/32 -m statistic --mode random --probability 0.50000000 -j DNAT --to-destination 10.0.0.4",
        "-A OUTPUT -d 10.0.0.2/32 -j DNAT --to-destination 10.0.0.5",
    ]
    assert "-A OUTPUT -d 10.0.0.9/32 -j REJECT" in text
    assert text.count("COMMIT") == 2


def test_ingress_rules_host_mode_uses_local_tasks_only():
    a = dpb.NetworkAssignment(node_addr="10.0.9.7")
    a.network.vni = 4100
    a.network.spec.ingress = True
    s = a.services.add(name="web")
    s.ports.add(published_port=8080, target_port=80)
    s.ports.add(published_port=9000, target_port=90, protocol=pb.PortConfig.UDP, publish_mode=pb.PortConfig.HOST)
    for ip in ("10.0.9.2", "10.0.9.3"):
        s.backends.add(addr=ip)
    text = ingress_rules(a, local_addrs={"10.0.9.3"})
    assert "--dport 8080 -m statistic --mode random --probability 0.50000000 -j DNAT --to-destination 10.0.9.2:80" in text
    assert "-p udp -m udp --dport 9000 -j DNAT --to-destination 10.0.9.3:90" in text
    assert "10.0.9.2:90" not in text
    assert "-o swb4100 -m conntrack --ctstate DNAT -j SNAT --to-source 10.0.9.7" in text
    assert ingress_rules(None, set()).count("-A ") == 0


def _query(name: str, qtype: int = dns.TYPE_A) -> bytes:
    q = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0" + struct.pack(">HH", qtype, 1)
    return struct.pack(">HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0) + q


def test_dns_codec_round_trip():
    qid, flags, name, qtype, question = dns.parse_query(_query("Tasks.Web"))
    assert (qid, name, qtype) == (0x1234, "tasks.web", dns.TYPE_A)
    reply = dns.build_answer(qid, flags, question, ["10.0.0.5", "10.0.0.6"])
    rid, rflags, qd, an = struct.unpack(">HHHH", reply[:8])
    assert (rid, qd, an) == (0x1234, 1, 2) and rflags & 0x8000 and rflags & 0x0100
    assert reply.endswith(socket.inet_aton("10.0.0.6"))
    nx = dns.build_answer(qid, flags, question, [], rcode=dns.RCODE_SERVFAIL)
    assert struct.unpack(">H", nx[2:4])[0] & 0xF == dns.RCODE_SERVFAIL
    with pytest.raises(ValueError):
        dns.parse_query(b"\0" * 5)


@pytest.mark.parametrize(
    "text,want",
    [
        ("published=8080,target=80", (8080, 80, pb.PortConfig.TCP, pb.PortConfig.INGRESS)),
        ("published=53,target=5353,protocol=udp,mode=host", (53, 5353, pb.PortConfig.UDP, pb.PortConfig.HOST)),
        ("8080:80", (8080, 80, pb.PortConfig.TCP, pb.PortConfig.INGRESS)),
        ("53:53/udp", (53, 53, pb.PortConfig.UDP, pb.PortConfig.INGRESS)),
    ],
)
def test_parse_publish(text, want):
    p = parse_publish(text)
    assert (p.published_port, p.target_port, p.protocol, p.publish_mode) == want


@pytest.mark.parametrize(
    "text,msg",
    [
        ("published=8080", "target=PORT is required"),
        ("target=80", "published=PORT is required"),
        ("published=70000,target=80", "out of range"),
        ("published=80,target=80,protocol=sctp", "use tcp or udp"),
        ("published=80,target=80,mode=global", "use ingress or host"),
        ("8080", "expected PUBLISHED:TARGET"),
        ("published=80,target=80,color=red", "unknown field"),
    ],
)
def test_parse_publish_errors(text, msg):
    with pytest.raises(ValueError, match=msg):
        parse_publish(text)
