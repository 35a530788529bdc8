"""What the cluster keeps for itself (issue 13): ports a published port may
not take, and address ranges an overlay subnet may not cover.

- Ports: swarmlet's own (join 4242, Raft 4243, API 4244 over TCP, VXLAN
  4789 over UDP) and whatever other join/Raft/API ports the nodes advertise.
  A routing-mesh port is DNATed on every node: publishing 4243 would take the
  Raft port of every manager, 4789/udp the overlay itself.
- Subnets: 0.0.0.0/8, loopback, link-local, multicast and the reserved
  240.0.0.0/4 block; anything larger than /8 (0.0.0.0/0 made every later
  network fail); a subnet holding a node's own address (the underlay: routing
  it into an overlay cuts the node off); and the subnets of the engines' own
  networks (docker0 and friends, as the nodes report them).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from swarmlet.api import objects_pb2 as pb
from swarmlet.core import state as st

TCP, UDP = pb.PortConfig.TCP, pb.PortConfig.UDP
OWN_PORTS: dict[tuple[int, int], str] = {
    (4242, TCP): "the join port",
    (4243, TCP): "the Raft port",
    (4244, TCP): "the node API port",
    (4789, UDP): "the VXLAN (overlay) port",
}

SPECIAL_RANGES: tuple[tuple[str, str], ...] = (
    ("0.0.0.0/8", "'this network' addresses (0.0.0.0/8)"),
    ("127.0.0.0/8", "loopback (127.0.0.0/8)"),
    ("169.254.0.0/16", "link-local addresses (169.254.0.0/16)"),
    ("224.0.0.0/4", "multicast (224.0.0.0/4)"),
    ("240.0.0.0/4", "reserved addresses (240.0.0.0/4)"),
)
MIN_PREFIX = 8

Net = ipaddress.IPv4Network


def _port_of(addr: str) -> int | None:
    _, sep, port = addr.rpartition(":")
    return int(port) if sep and port.isdigit() else None


def reserved_ports(snap: st.Snapshot) -> dict[tuple[int, int], str]:
    """(port, protocol) -> what holds it, for every port swarmlet listens on
    somewhere in the cluster."""
    out = dict(OWN_PORTS)
    for n in snap.nodes.values():
        name = n.description.hostname or n.id
        for addr, what in (
            (n.api_addr, "the node API port"),
            (n.raft_addr, "the Raft port"),
            (n.manager_status.api_addr, "the node API port"),
            (n.manager_status.raft_addr, "the Raft port"),
        ):
            port = _port_of(addr)
            if port is not None and (port, TCP) not in out:
                out[(port, TCP)] = f"{what} of node {name}"
    return out


def port_refusal(port: int, protocol: int, snap: st.Snapshot) -> str | None:
    """Why a service may not publish this port, or None."""
    what = reserved_ports(snap).get((port, protocol))
    if what is None:
        return None
    proto = "udp" if protocol == UDP else "tcp"
    return f"port {port}/{proto} is reserved by swarmlet ({what}): publish another port"


def static_subnet_refusal(subnet: Net) -> str | None:
    """Why `subnet` can never be an overlay subnet, whatever the cluster."""
    if subnet.prefixlen < MIN_PREFIX:
        return f"subnet {subnet} is too large: an overlay subnet is /{MIN_PREFIX} or smaller"
    for cidr, what in SPECIAL_RANGES:
        if subnet.overlaps(ipaddress.ip_network(cidr)):
            return f"subnet {subnet} overlaps {what}"
    return None


def node_subnets(snap: st.Snapshot) -> Iterable[tuple[Net, str]]:
    """Addresses and subnets the nodes use themselves, with what they are:
    each node's address (as a /32) and its engine's networks."""
    for n in sorted(snap.nodes.values(), key=lambda n: n.id):
        name = n.description.hostname or n.id
        try:
            addr = ipaddress.ip_address(n.status.addr) if n.status.addr else None
        except ValueError:
            addr = None
        if isinstance(addr, ipaddress.IPv4Address):
            yield Net(f"{addr}/32"), f"the address {addr} of node {name} (the underlay network)"
        for cidr in n.description.engine_subnets:
            try:
                net = ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                continue
            if isinstance(net, Net):
                yield net, f"the Docker engine network {net} of node {name}"


def subnet_refusal(subnet: Net, snap: st.Snapshot) -> str | None:
    """Why `subnet` may not be an overlay subnet in this cluster, or None."""
    why = static_subnet_refusal(subnet)
    if why is not None:
        return why
    for net, what in node_subnets(snap):
        if subnet.overlaps(net):
            verb = "contains" if net.prefixlen == 32 else "overlaps"
            return f"subnet {subnet} {verb} {what}"
    return None


def occupied(snap: st.Snapshot) -> list[Net]:
    """What the allocator must never hand out from the pool."""
    return [net for net, _ in node_subnets(snap)]
