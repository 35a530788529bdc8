"""The network allocator. Pure: (snapshot, new_id) -> store actions.

It gives overlay networks a subnet, a gateway and a VNI; services a virtual IP
on each of their networks (vip mode); tasks an address on each network of their
service, before the scheduler may assign them; and every node an address on the
ingress network (the routing mesh reaches tasks from any node through it).

Addresses are never stored as "free": what is in use is recomputed from the
snapshot every round (gateways, VIPs, node addresses, and the addresses of tasks
that may still run), so a removed service or a finished task frees its
addresses without any bookkeeping that could drift. A finished task keeps its
attachments in its history for `ps`/inspect; only tasks that may still run
hold addresses (tasks.holds_addresses).

Runs inside the planner's round on the leader, between the orchestrator (which
creates tasks) and the scheduler (which leaves a task pending, and says why,
while it lacks an address: scheduler/filters.NetworkReady).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TypeVar

from swarmlet import errors
from swarmlet.api import objects_pb2 as pb
from swarmlet.api import store_pb2 as spb
from swarmlet.core import reserved
from swarmlet.core import state as st
from swarmlet.core import tasks as tk
from swarmlet.core.stage import StagePlan

DEFAULT_POOL = ("10.0.0.0/8",)
DEFAULT_SUBNET_SIZE = 24
# VNIs below 4096 are left to Docker (it starts at 256) and VLAN-minded tooling.
FIRST_VNI = 4096
MAX_VNI = (1 << 24) - 1
INGRESS_NAME = "ingress"
# Smallest subnet we accept: network, broadcast, gateway and at least one task.
MIN_PREFIX_HOSTS = 4

Net = ipaddress.IPv4Network


class AllocationError(errors.Invalid):
    """Bad networking input (subnet, gateway, pool): nothing was allocated."""


# ---- pure helpers shared with validation ----


def parse_pool(pool: Iterable[str], subnet_size: int) -> list[Net]:
    """The default address pool as networks; raises AllocationError with the
    offending value on bad input."""
    nets = []
    for cidr in pool or DEFAULT_POOL:
        try:
            n = ipaddress.ip_network(cidr, strict=True)
        except ValueError as e:
            raise AllocationError(f"invalid address pool {cidr!r}: {e}") from None
        if n.version != 4:
            raise AllocationError(f"address pool {cidr!r}: only IPv4 is supported")
        nets.append(n)
    size = subnet_size or DEFAULT_SUBNET_SIZE
    if not 8 <= size <= 30:
        raise AllocationError(f"subnet size /{size} out of range: use /8 to /30")
    for n in nets:
        if n.prefixlen > size:
            raise AllocationError(f"address pool {n} is smaller than the subnet size /{size}")
        why = reserved.static_subnet_refusal(n)
        if why is not None:
            raise AllocationError(f"address pool {n}: {why.replace(f'subnet {n} ', '', 1)}")
    for i, a in enumerate(nets):
        for b in nets[i + 1 :]:
            if a.overlaps(b):
                raise AllocationError(f"address pools {a} and {b} overlap")
    return nets


def cluster_pool(snap: st.Snapshot) -> tuple[list[Net], int]:
    c = snap.cluster
    pool = list(c.spec.default_address_pool) if c else []
    size = c.spec.default_subnet_size if c and c.spec.default_subnet_size else DEFAULT_SUBNET_SIZE
    try:
        return parse_pool(pool, size), size
    except AllocationError:
        # Validated at init; a bad stored value must not stop allocation.
        return parse_pool((), DEFAULT_SUBNET_SIZE), DEFAULT_SUBNET_SIZE


def check_network_spec(spec: pb.NetworkSpec, snap: st.Snapshot) -> None:
    """Refuse a network spec that could not be allocated: bad subnet or
    gateway, a subnet overlapping another network's, a duplicate name."""
    if spec.driver not in ("", "overlay"):
        raise AllocationError(f"unknown network driver {spec.driver!r}: only 'overlay' is supported")
    for n in snap.networks.values():
        if n.spec.name == spec.name:
            raise errors.AlreadyExists(f"a network named {spec.name!r} already exists")
    if spec.gateway and not spec.subnet:
        raise AllocationError("--gateway needs --subnet")
    if not spec.subnet:
        return
    try:
        subnet = ipaddress.ip_network(spec.subnet, strict=True)
    except ValueError as e:
        raise AllocationError(f"invalid subnet {spec.subnet!r}: {e}") from None
    if subnet.version != 4:
        raise AllocationError(f"subnet {spec.subnet}: only IPv4 is supported")
    if subnet.num_addresses < MIN_PREFIX_HOSTS:
        raise AllocationError(f"subnet {spec.subnet} is too small: it must hold a gateway and at least one task (/30 or larger)")
    for n in snap.networks.values():
        other = n.subnet or n.spec.subnet
        if other and subnet.overlaps(ipaddress.ip_network(other)):
            raise AllocationError(f"subnet {spec.subnet} overlaps subnet {other} of network {n.spec.name!r}")
    if spec.gateway:
        try:
            gw = ipaddress.ip_address(spec.gateway)
        except ValueError as e:
            raise AllocationError(f"invalid gateway {spec.gateway!r}: {e}") from None
        if gw not in subnet or gw in (subnet.network_address, subnet.broadcast_address):
            raise AllocationError(f"gateway {spec.gateway} is not a host address of subnet {spec.subnet}")


def capacity(net: pb.Network) -> int:
    """Addresses a network has for tasks, VIPs and nodes (without network,
    broadcast and gateway)."""
    return ipaddress.ip_network(net.subnet).num_addresses - 3


def mac_for(ip: str) -> str:
    """The MAC of an endpoint, derived from its IP (02:42 + the 4 bytes, the
    convention Docker uses too): every host can write neighbour entries for
    remote endpoints from the state alone, no ARP gossip needed."""
    b = ipaddress.ip_address(ip).packed
    return "02:42:" + ":".join(f"{x:02x}" for x in b)


def ingress_network(snap: st.Snapshot) -> pb.Network | None:
    for n in snap.networks.values():
        if n.spec.ingress:
            return n
    return None


def publishes(svc: pb.Service) -> bool:
    return bool(svc.spec.endpoint.ports)


def wanted_networks(snap: st.Snapshot, svc: pb.Service) -> list[str]:
    """Network ids a service's tasks attach to, in order: its own, then the
    ingress network when it publishes ports (host mode too: the node reaches
    its local tasks' ports through it)."""
    ids = [a.target for a in svc.spec.networks]
    if publishes(svc):
        ing = ingress_network(snap)
        if ing is not None and ing.id not in ids:
            ids.append(ing.id)
    return ids


# ---- the allocation round ----


def _v4(cidr: str) -> Net:
    """A stored subnet (validated IPv4 when it was written)."""
    n = ipaddress.ip_network(cidr)
    if not isinstance(n, Net):
        raise AllocationError(f"subnet {cidr}: only IPv4 is supported")
    return n


@dataclass
class _Pools:
    """Per network: the addresses in use."""

    used: dict[str, set[int]] = field(default_factory=dict)
    subnets: dict[str, Net] = field(default_factory=dict)

    def add_network(self, n: pb.Network) -> None:
        subnet = _v4(n.subnet)
        self.subnets[n.id] = subnet
        used = self.used.setdefault(n.id, set())
        used.add(int(subnet.network_address))
        used.add(int(subnet.broadcast_address))
        used.add(int(ipaddress.ip_address(n.gateway)))

    def mark(self, network_id: str, addr: str) -> None:
        if network_id in self.used and addr:
            self.used[network_id].add(int(ipaddress.ip_address(addr)))

    def take(self, network_id: str) -> str | None:
        subnet = self.subnets[network_id]
        used = self.used[network_id]
        first, last = int(subnet.network_address) + 1, int(subnet.broadcast_address) - 1
        for a in range(first, last + 1):
            if a not in used:
                used.add(a)
                return str(ipaddress.ip_address(a))
        return None


M = TypeVar("M", pb.Network, pb.Service, pb.Task)


def _copy(obj: M) -> M:
    new = type(obj)()
    new.CopyFrom(obj)
    return new


def _free_subnet(taken: list[Net], pool: list[Net], size: int) -> Net | None:
    for p in pool:
        for cand in p.subnets(new_prefix=size):
            if not any(cand.overlaps(t) for t in taken):
                return cand
    return None


def _allocate_network(n: pb.Network, taken: list[Net], vnis: set[int], pool: list[Net], size: int) -> pb.Network:
    """The network with subnet, gateway and VNI set, or with `error` set."""
    new = _copy(n)
    new.error = ""
    if n.spec.subnet:
        subnet = _v4(n.spec.subnet)
        clash = next((t for t in taken if t.overlaps(subnet)), None)
        if clash is not None:
            new.error = f"subnet {subnet} overlaps {clash}, already in use"
            return new
    else:
        free = _free_subnet(taken, pool, size)
        if free is None:
            new.error = f"the address pool ({', '.join(map(str, pool))}) has no free /{size} left"
            return new
        subnet = free
    vni = FIRST_VNI
    while vni in vnis:
        vni += 1
    if vni > MAX_VNI:
        new.error = "no VNI left"
        return new
    new.subnet = str(subnet)
    new.gateway = n.spec.gateway or str(subnet.network_address + 1)
    new.vni = vni
    return new


class _Allocation:
    """One allocation round over a snapshot, in the order things depend on
    each other: networks, what is in use, ingress node addresses, service
    VIPs, task addresses."""

    def __init__(self, snap: st.Snapshot, new_id: Callable[[], str]) -> None:
        self.snap = snap
        self.new_id = new_id
        self.actions: list[spb.StoreAction] = []
        self.networks: dict[str, pb.Network] = dict(snap.networks)
        self.changed_nets: dict[str, pb.Network] = {}
        self.pools = _Pools()
        # service id -> allocated networks its tasks attach to
        self.service_nets: dict[str, list[str]] = {}

    def run(self) -> StagePlan:
        self._networks()
        self._in_use()
        self._ingress_nodes()
        for nid in sorted(self.changed_nets):
            self.actions.append(st.put(self.changed_nets[nid], create=nid not in self.snap.networks))
        self._vips()
        self._task_addresses()
        return StagePlan(self.actions)

    def _networks(self) -> None:
        """Subnet, gateway and VNI for every network that has none; the
        ingress network as soon as some service publishes a port."""
        snap, networks = self.snap, self.networks
        created_ingress = ""
        if ingress_network(snap) is None and any(publishes(s) for s in snap.services.values()):
            ing = pb.Network(id=self.new_id(), spec=pb.NetworkSpec(name=INGRESS_NAME, driver="overlay", ingress=True))
            networks[ing.id] = ing
            created_ingress = ing.id
        pool, size = cluster_pool(snap)
        # The nodes' own addresses and engine networks are never handed out.
        taken = [_v4(n.subnet) for n in networks.values() if n.vni] + reserved.occupied(snap)
        vnis = {n.vni for n in networks.values() if n.vni}
        # Subnets the user chose first: the pool must not hand them out.
        for nid in sorted(networks, key=lambda i: (not networks[i].spec.subnet, i)):
            n = networks[nid]
            if n.vni:
                continue
            new = _allocate_network(n, taken, vnis, pool, size)
            if new.vni:
                taken.append(_v4(new.subnet))
                vnis.add(new.vni)
            if new.SerializeToString(deterministic=True) != n.SerializeToString(deterministic=True) or nid == created_ingress:
                networks[nid] = new
                self.changed_nets[nid] = new

    def _in_use(self) -> None:
        """Node addresses, VIPs and the addresses of tasks that hold them."""
        pools = self.pools
        for n in self.networks.values():
            if n.vni:
                pools.add_network(n)
        for n in self.networks.values():
            for addr in n.node_addrs.values():
                pools.mark(n.id, addr)
        for s in self.snap.services.values():
            for v in s.virtual_ips:
                pools.mark(v.network_id, v.addr)
        for t in self.snap.tasks.values():
            if tk.holds_addresses(t):
                for a in t.networks:
                    pools.mark(a.network_id, a.addr)

    def _ingress_nodes(self) -> None:
        """Ingress: an address for every node, none for removed nodes."""
        ing = next((n for n in self.networks.values() if n.spec.ingress), None)
        if ing is None or not ing.vni:
            return
        nodes = self.snap.nodes
        stale = [nid for nid in ing.node_addrs if nid not in nodes]
        missing = [nid for nid in sorted(nodes) if nid not in ing.node_addrs]
        if not stale and not missing:
            return
        new = _copy(self.changed_nets.get(ing.id, ing))
        for nid in stale:
            del new.node_addrs[nid]
        for nid in missing:
            addr = self.pools.take(ing.id)
            if addr is None:
                new.error = "ingress network full: a node has no address on it"
                break
            new.node_addrs[nid] = addr
        self.networks[ing.id] = self.changed_nets[ing.id] = new

    def _vips(self) -> None:
        """Services: one VIP per network in vip mode, none in dnsrr mode."""
        snap, networks = self.snap, self.networks
        view = st.Snapshot(services=snap.services, networks=networks)
        for sid in sorted(snap.services):
            s = snap.services[sid]
            want = [w for w in wanted_networks(view, s) if w in networks and networks[w].vni]
            self.service_nets[sid] = want
            vip_mode = s.spec.endpoint.mode == pb.EndpointSpec.VIP
            have = {v.network_id: v.addr for v in s.virtual_ips}
            target: list[tuple[str, str]] = []
            for w in want if vip_mode else []:
                addr = have.get(w) or self.pools.take(w)
                if addr is None:
                    continue  # the network is full; retried every round
                target.append((w, addr))
            if target != [(v.network_id, v.addr) for v in s.virtual_ips]:
                new = _copy(s)
                del new.virtual_ips[:]
                for w, addr in target:
                    new.virtual_ips.add(network_id=w, addr=addr)
                self.actions.append(st.put(new))

    def _task_addresses(self) -> None:
        """Tasks awaiting placement: an address on each network of their
        service. One that cannot get them all keeps what it got (held for it);
        the scheduler leaves it pending and says why."""
        for tid in sorted(self.snap.tasks):
            t = self.snap.tasks[tid]
            if not tk.awaiting_placement(t):
                continue
            want = self.service_nets.get(t.service_id)
            if not want:
                continue
            have = {a.network_id for a in t.networks}
            missing = [w for w in want if w not in have]
            if not missing:
                continue
            new = _copy(t)
            for w in missing:
                addr = self.pools.take(w)
                if addr is None:
                    break
                new.networks.add(network_id=w, addr=addr)
            if len(new.networks) != len(t.networks):
                self.actions.append(st.put(new))


def allocate(snap: st.Snapshot, new_id: Callable[[], str]) -> StagePlan:
    """Store actions that allocate what is missing. Reads `snap` only."""
    return _Allocation(snap, new_id).run()
