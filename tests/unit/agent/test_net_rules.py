"""The overlay's pure rules (agent/net/rules.py): link names, FDB and
neighbour entries, iptables text for VIPs and the routing mesh."""

from __future__ import annotations

from swarmlet.agent.net import rules
from swarmlet.api import dispatcher_pb2 as dpb
from swarmlet.api import objects_pb2 as pb


def test_container_rules_spread_evenly_and_reject_without_backends() -> None:
    s = dpb.ServiceEndpoints(name="web", vip="10.0.0.2", mode=pb.EndpointSpec.VIP)
    for ip in ("10.0.0.5", "10.0.0.3", "10.0.0.4"):
        s.backends.add(addr=ip)
    empty = dpb.ServiceEndpoints(name="idle", vip="10.0.0.9", mode=pb.EndpointSpec.VIP)
    dnsrr = dpb.ServiceEndpoints(name="rr", vip="10.0.0.7", mode=pb.EndpointSpec.DNSRR)
    dnsrr.backends.add(addr="10.0.0.8")
    text = rules.container_rules([s, empty, dnsrr])
    lines = [line for line in text.splitlines() if line.startswith("-A OUTPUT -d 10.0.0.2")]
    assert lines == [
        "-A OUTPUT -d 10.0.0.2/32 -m statistic --mode random --probability 0.33333333 -j DNAT --to-destination 10.0.0.3",
        "-A OUTPUT -d 10.0.0.2/32 -m statistic --mode random --probability 0.50000000 -j DNAT --to-destination 10.0.0.4",
        "-A OUTPUT -d 10.0.0.2/32 -j DNAT --to-destination 10.0.0.5",
    ]
    assert "-A OUTPUT -d 10.0.0.9/32 -j REJECT" in text
    assert "10.0.0.7" not in text  # no VIP in dnsrr mode
    assert text.count("COMMIT") == 2


def test_container_rules_without_services_flush_both_tables() -> None:
    text = rules.container_rules([])
    assert [line for line in text.splitlines() if line.startswith("-A")] == []
    assert text.startswith("*nat\n") and "*filter" in text and text.count("COMMIT") == 2


def test_ingress_rules_host_mode_uses_local_tasks_only() -> None:
    a = dpb.NetworkAssignment(node_addr="10.0.9.7")
    a.network.vni = 4100
    a.network.spec.ingress = True
    s = a.services.add(name="web")
    s.ports.add(published_port=8080, target_port=80)
    s.ports.add(published_port=9000, target_port=90, protocol=pb.PortConfig.UDP, publish_mode=pb.PortConfig.HOST)
    for ip in ("10.0.9.2", "10.0.9.3"):
        s.backends.add(addr=ip)
    text = rules.ingress_rules(a, local_addrs={"10.0.9.3"})
    assert "--dport 8080 -m statistic --mode random --probability 0.50000000 -j DNAT --to-destination 10.0.9.2:80" in text
    assert "--dport 8080 -j DNAT --to-destination 10.0.9.3:80" in text
    assert "-p udp -m udp --dport 9000 -j DNAT --to-destination 10.0.9.3:90" in text
    assert "10.0.9.2:90" not in text
    assert "-o swb4100 -m conntrack --ctstate DNAT -j SNAT --to-source 10.0.9.7" in text
    # No ingress network (or no address on it yet): our chains, emptied.
    for empty in (rules.ingress_rules(None, set()), rules.ingress_rules(dpb.NetworkAssignment(), set())):
        assert empty.count("-A ") == 0 and f":{rules.INGRESS_CHAIN} - [0:0]" in empty


def test_ingress_jumps_lead_into_our_chains() -> None:
    jumps = rules.ingress_jumps()
    assert {j[0] for j in jumps} == {"PREROUTING", "OUTPUT", "POSTROUTING"}
    for j in jumps:
        assert j[-2:] == ["-j", rules.INGRESS_POST_CHAIN if j[0] == "POSTROUTING" else rules.INGRESS_CHAIN]


def test_fdb_and_neighbour_entries_from_the_assignment() -> None:
    a = dpb.NetworkAssignment(peers=["198.18.0.2", "198.18.0.3"])
    a.remote.add(task_id="t1", addr="10.0.1.5", node_addr="198.18.0.2")
    a.remote.add(task_id="t2", addr="10.0.1.6", node_addr="198.18.0.3")
    assert rules.fdb_entries(a) == {
        (rules.ZERO_MAC, "198.18.0.2"),
        (rules.ZERO_MAC, "198.18.0.3"),
        ("02:42:0a:00:01:05", "198.18.0.2"),
        ("02:42:0a:00:01:06", "198.18.0.3"),
    }
    assert rules.neighbour_entries(a) == {("10.0.1.5", "02:42:0a:00:01:05"), ("10.0.1.6", "02:42:0a:00:01:06")}
    assert rules.fdb_entries(dpb.NetworkAssignment()) == set()


def test_link_names_fit_and_are_recognised_as_ours() -> None:
    task_id = "abcdefghijklmnopqrstuvwxyz"
    names = [rules.bridge_name(4097), rules.vxlan_name(16777215), rules.veth_name(task_id, 3), rules.peer_name(task_id, 3)]
    assert names == ["swb4097", "swv16777215", "swtabcdefghij-3", "swcabcdefghij-3"]
    assert all(len(n) <= 15 for n in names)  # IFNAMSIZ with its NUL
    assert all(rules.is_ours(n) for n in names[:3])
    assert not any(rules.is_ours(n) for n in ("eth0", "docker0", "br-1234", rules.peer_name(task_id, 0)))


def test_stays_wired() -> None:
    def task(desired: int, state: int) -> pb.Task:
        t = pb.Task(id="t", desired_state=desired)  # type: ignore[arg-type]
        t.status.state = state  # type: ignore[assignment]
        return t

    assert rules.stays_wired(task(pb.RUNNING, pb.RUNNING))
    assert rules.stays_wired(task(pb.RUNNING, pb.STARTING))
    assert not rules.stays_wired(task(pb.SHUTDOWN, pb.RUNNING))  # leaving: out of DNS and VIPs now
    assert not rules.stays_wired(task(pb.RUNNING, pb.FAILED))
    assert not rules.stays_wired(task(pb.RUNNING, pb.COMPLETE))
