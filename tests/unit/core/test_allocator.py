"""The network allocator: subnets, VNIs, gateways, task addresses, VIPs, the
ingress network; and that the scheduler waits for addresses."""

from __future__ import annotations

import ipaddress

import pytest

from swarmlet.api import objects_pb2 as pb
from swarmlet.core import allocator as al
from swarmlet.core import state as st
from swarmlet.core import tasks as tk
from tests.core_sim import Sim


def add_network(sim: Sim, nid: str, name: str = "", subnet: str = "", gateway: str = "") -> None:
    n = pb.Network(id=nid, spec=pb.NetworkSpec(name=name or nid, driver="overlay", subnet=subnet, gateway=gateway))
    al.check_network_spec(n.spec, sim.snap)
    sim.apply([st.put(n, create=True)])


def attach(sim: Sim, sid: str, *nets: str, mode: int = pb.EndpointSpec.VIP, ports: list[pb.PortConfig] | None = None) -> None:
    s = pb.Service()
    s.CopyFrom(sim.snap.services[sid])
    for n in nets:
        s.spec.networks.add(target=n)
    s.spec.endpoint.mode = mode
    s.spec.endpoint.ports.extend(ports or [])
    sim.apply([st.put(s)])


def sim_with_nodes(n: int = 3, **kw) -> Sim:
    sim = Sim(**kw)
    for i in range(1, n + 1):
        sim.add_node(f"n{i}")
    return sim


def test_networks_get_distinct_subnets_vnis_and_gateways():
    sim = sim_with_nodes()
    add_network(sim, "a")
    add_network(sim, "b")
    add_network(sim, "c", subnet="192.168.50.0/24", gateway="192.168.50.254")
    sim.round()
    a, b, c = (sim.snap.networks[x] for x in "abc")
    assert (a.subnet, a.gateway, a.vni) == ("10.0.0.0/24", "10.0.0.1", 4097)
    assert (b.subnet, b.gateway, b.vni) == ("10.0.1.0/24", "10.0.1.1", 4098)
    assert (c.subnet, c.gateway, c.vni) == ("192.168.50.0/24", "192.168.50.254", 4096)
    # Idempotent: nothing more to do.
    assert sim.round() == []


def test_pool_skips_user_subnets_and_is_configurable():
    sim = sim_with_nodes()
    c = pb.Cluster()
    c.CopyFrom(sim.snap.cluster)
    c.spec.default_address_pool.append("172.20.0.0/16")
    c.spec.default_subnet_size = 26
    sim.apply([st.put(c)])
    add_network(sim, "user", subnet="172.20.0.0/26")
    add_network(sim, "auto")
    sim.round()
    assert sim.snap.networks["auto"].subnet == "172.20.0.64/26"


@pytest.mark.parametrize(
    "subnet,gateway,msg",
    [
        ("10.0.0.0/30x", "", "invalid subnet"),
        ("10.0.0.1/24", "", "invalid subnet"),
        ("10.0.0.0/31", "", "too small"),
        ("10.0.0.0/24", "10.0.1.1", "not a host address"),
        ("", "10.0.0.1", "--gateway needs --subnet"),
        ("10.0.0.0/16", "", "overlaps subnet 10.0.5.0/24"),
    ],
)
def test_bad_network_specs_refused(subnet, gateway, msg):
    sim = sim_with_nodes()
    add_network(sim, "x", subnet="10.0.5.0/24")
    with pytest.raises(al.AllocationError, match=msg):
        al.check_network_spec(pb.NetworkSpec(name="y", subnet=subnet, gateway=gateway), sim.snap)


def test_bad_pools_refused():
    with pytest.raises(al.AllocationError, match="invalid address pool"):
        al.parse_pool(["10.0.0.0/33"], 24)
    with pytest.raises(al.AllocationError, match="overlap"):
        al.parse_pool(["10.0.0.0/8", "10.1.0.0/16"], 24)
    with pytest.raises(al.AllocationError, match="smaller than the subnet size"):
        al.parse_pool(["10.0.0.0/26"], 24)


def test_tasks_get_addresses_and_services_vips_before_assignment():
    sim = sim_with_nodes()
    add_network(sim, "net")
    sim.add_service("web", replicas=3)
    attach(sim, "web", "net")
    sim.round()
    svc = sim.snap.services["web"]
    assert [(v.network_id, v.addr) for v in svc.virtual_ips] == [("net", "10.0.0.2")]
    tasks = sim.tasks("web")
    addrs = sorted(t.networks[0].addr for t in tasks)
    assert addrs == ["10.0.0.3", "10.0.0.4", "10.0.0.5"]
    # Allocated and scheduled in the same round.
    assert all(t.status.state == pb.ASSIGNED for t in tasks)


def test_dnsrr_has_no_vip_and_mode_switch_releases_it():
    sim = sim_with_nodes()
    add_network(sim, "net")
    sim.add_service("w", replicas=1)
    attach(sim, "w", "net", mode=pb.EndpointSpec.DNSRR)
    sim.round()
    assert not sim.snap.services["w"].virtual_ips


def test_full_subnet_leaves_task_pending_and_freed_addresses_are_reused():
    sim = sim_with_nodes(1)
    add_network(sim, "net", subnet="10.9.0.0/29")  # 8 addresses: network, broadcast, gateway, VIP leave 4
    sim.add_service("w", replicas=5)
    attach(sim, "w", "net")
    sim.round()
    with_addr = [t for t in sim.tasks("w") if t.networks]
    without = [t for t in sim.tasks("w") if not t.networks]
    assert len({t.networks[0].addr for t in with_addr}) == 4
    assert len(without) == 1
    assert without[0].status.state == pb.PENDING and "no free address on network net" in without[0].status.err
    assert not without[0].node_id, "a task without its address must not be scheduled"
    sim.run_assigned()
    # Scale down to 3: the freed addresses go to nobody new (3 < 4)...
    sim.update_service("w", replicas=3)
    sim.settle()
    live = [t for t in sim.tasks("w") if tk.holds_addresses(t)]
    assert len(live) == 3 and all(t.networks and t.node_id for t in live)
    # ...and back to 4: a finished task's address is free again.
    sim.update_service("w", replicas=4)
    sim.settle()
    live = [t for t in sim.tasks("w") if tk.holds_addresses(t)]
    assert len(live) == 4 and all(t.networks and t.node_id for t in live)
    assert len({t.networks[0].addr for t in live}) == 4


def test_addresses_unique_across_rounds():
    sim = sim_with_nodes()
    add_network(sim, "net")
    sim.add_service("a", replicas=10)
    attach(sim, "a", "net")
    sim.round()
    sim.add_service("b", replicas=10)
    attach(sim, "b", "net")
    sim.round()
    addrs = [a.addr for t in sim.snap.tasks.values() for a in t.networks]
    vips = [v.addr for s in sim.snap.services.values() for v in s.virtual_ips]
    assert len(set(addrs + vips)) == 22
    net = ipaddress.ip_network(sim.snap.networks["net"].subnet)
    assert all(ipaddress.ip_address(a) in net for a in addrs + vips)


def test_publishing_creates_ingress_with_node_addresses():
    sim = sim_with_nodes()
    sim.add_service("web", replicas=2)
    attach(sim, "web", ports=[pb.PortConfig(target_port=80, published_port=8080)])
    sim.round()
    ing = al.ingress_network(sim.snap)
    assert ing is not None and ing.vni and ing.spec.name == "ingress"
    assert set(ing.node_addrs) == {"n1", "n2", "n3"}
    tasks = sim.tasks("web")
    assert all(t.networks[0].network_id == ing.id for t in tasks)
    sim.remove_node("n3")
    sim.round()
    assert set(sim.snap.networks[ing.id].node_addrs) == {"n1", "n2"}


def test_mac_from_ip():
    assert al.mac_for("10.0.1.5") == "02:42:0a:00:01:05"
