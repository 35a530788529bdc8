"""Pure parts of the overlay on one host: names of our links, the iptables
text for service VIPs and the routing mesh, and the FDB and neighbour entries
a network needs. Computed from the dispatcher's NetworkAssignments alone
(MACs are derived from IPs, core.allocator.mac_for), so all of it is
unit-tested without root; wiring.py applies it.
"""

from __future__ import annotations

from collections.abc import Iterable

from swarmlet.api import dispatcher_pb2 as dpb
from swarmlet.api import objects_pb2 as pb
from swarmlet.core.allocator import mac_for

ZERO_MAC = "00:00:00:00:00:00"
# Everything named with these prefixes in the host namespace is ours (stale
# ones are removed): bridge, VXLAN device, the host end of a task's veth.
BRIDGE_PREFIX, VXLAN_PREFIX, VETH_PREFIX = "swb", "swv", "swt"
PEER_PREFIX = "swc"  # the container end, until renamed inside its namespace
INGRESS_CHAIN = "SWARMLET-INGRESS"
INGRESS_POST_CHAIN = "SWARMLET-INGRESS-POST"


def bridge_name(vni: int) -> str:
    return f"{BRIDGE_PREFIX}{vni}"


def vxlan_name(vni: int) -> str:
    return f"{VXLAN_PREFIX}{vni}"


def veth_name(task_id: str, index: int) -> str:
    # IFNAMSIZ is 16 with the NUL: 3 + 10 + 1 + 1 = 15.
    return f"{VETH_PREFIX}{task_id[:10]}-{index}"


def peer_name(task_id: str, index: int) -> str:
    return f"{PEER_PREFIX}{task_id[:10]}-{index}"


def is_ours(link_name: str) -> bool:
    return link_name.startswith((BRIDGE_PREFIX, VXLAN_PREFIX, VETH_PREFIX))


def stays_wired(task: pb.Task) -> bool:
    """A task whose wiring is kept: still meant to run and not ended. Others
    are released (their DNS socket and veth go)."""
    return task.desired_state <= pb.RUNNING and task.status.state < pb.COMPLETE


# ---- forwarding entries ----


def fdb_entries(a: dpb.NetworkAssignment) -> set[tuple[str, str]]:
    """(MAC, underlay address) on the VXLAN device: an all-zeros entry per
    peer host (broadcast and unknown go there), one per remote endpoint."""
    return {(ZERO_MAC, p) for p in a.peers} | {(mac_for(e.addr), e.node_addr) for e in a.remote}


def neighbour_entries(a: dpb.NetworkAssignment) -> set[tuple[str, str]]:
    """(IP, MAC) of the remote endpoints, answered by the VXLAN device's ARP
    proxy so ARP never floods."""
    return {(e.addr, mac_for(e.addr)) for e in a.remote}


# ---- iptables text ----


def _spread(match: str, targets: list[str], chain: str, port: int = 0) -> list[str]:
    """Rules sending `match` to one of `targets` (on `port`, if given) at
    random, evenly: rule i takes 1/(n-i) of what the rules before it left."""
    rules = []
    n = len(targets)
    for i, t in enumerate(targets):
        left = n - i
        prob = f" -m statistic --mode random --probability {1 / left:.8f}" if left > 1 else ""
        dest = f"{t}:{port}" if port else t
        rules.append(f"-A {chain} {match}{prob} -j DNAT --to-destination {dest}")
    return rules


def container_rules(services: Iterable[dpb.ServiceEndpoints]) -> str:
    """The whole nat + filter tables for a container's namespace: each VIP
    spread over its backends; a VIP without backends refused at once."""
    nat = ["*nat", ":PREROUTING ACCEPT [0:0]", ":INPUT ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]", ":POSTROUTING ACCEPT [0:0]"]
    flt = ["*filter", ":INPUT ACCEPT [0:0]", ":FORWARD ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]"]
    for s in sorted(services, key=lambda s: s.vip):
        if not s.vip or s.mode != pb.EndpointSpec.VIP:
            continue
        backends = sorted(b.addr for b in s.backends)
        if backends:
            nat += _spread(f"-d {s.vip}/32", backends, "OUTPUT")
        else:
            flt.append(f"-A OUTPUT -d {s.vip}/32 -j REJECT --reject-with icmp-port-unreachable")
    return "\n".join(nat + ["COMMIT"] + flt + ["COMMIT"]) + "\n"


def ingress_rules(ingress: dpb.NetworkAssignment | None, local_addrs: set[str]) -> str:
    """Our chains in the host's nat table (iptables-restore --noflush input).
    `local_addrs`: addresses of this node's own tasks (host-mode ports)."""
    lines = ["*nat", f":{INGRESS_CHAIN} - [0:0]", f":{INGRESS_POST_CHAIN} - [0:0]"]
    if ingress is not None and ingress.node_addr:
        for s in sorted(ingress.services, key=lambda s: s.name):
            for p in s.ports:
                proto = protocol_name(p.protocol)
                addrs = sorted(b.addr for b in s.backends)
                if p.publish_mode == pb.PortConfig.HOST:
                    addrs = [a for a in addrs if a in local_addrs]
                match = f"-p {proto} -m {proto} --dport {p.published_port}"
                lines += _spread(match, addrs, INGRESS_CHAIN, p.target_port)
        lines.append(
            f"-A {INGRESS_POST_CHAIN} -o {bridge_name(ingress.network.vni)} -m conntrack --ctstate DNAT "
            f"-j SNAT --to-source {ingress.node_addr}"
        )
    lines.append("COMMIT")
    return "\n".join(lines) + "\n"


def protocol_name(protocol: int) -> str:
    """iptables' name for a published port's protocol."""
    if protocol == pb.PortConfig.UDP:
        return "udp"
    if protocol == pb.PortConfig.SCTP:
        return "sctp"
    return "tcp"


def ingress_jumps() -> list[list[str]]:
    """The rules (nat table, iptables arguments after -C/-I) that send
    traffic through our chains: connections to this host's own addresses,
    from outside and from the host itself, and their replies' source."""
    local = ["-m", "addrtype", "--dst-type", "LOCAL"]
    return [
        ["PREROUTING", *local, "-j", INGRESS_CHAIN],
        ["OUTPUT", *local, "-j", INGRESS_CHAIN],
        ["POSTROUTING", "-j", INGRESS_POST_CHAIN],
    ]
