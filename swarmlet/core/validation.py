"""Checks on user input before anything is proposed: a bad spec gets a clear
error naming what is wrong and changes nothing."""

from __future__ import annotations

import ipaddress
import re

from swarmlet import errors
from swarmlet.api import objects_pb2 as pb
from swarmlet.core import allocator as al
from swarmlet.core import constraints as cons
from swarmlet.core import lookup
from swarmlet.core import state as st
from swarmlet.core import tasks as tk
from swarmlet.core.scheduler.filters import resource_shortfall
from swarmlet.core.units import fmt_bytes
from swarmlet.core.updater import validate_config as validate_update_config

_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$")
MAX_REPLICAS = 10000


class InvalidSpec(errors.Invalid):
    """The spec itself is wrong."""


class Unschedulable(errors.FailedPrecondition):
    """A well-formed spec that no node of this cluster could ever run."""


def validate_service_spec(spec: pb.ServiceSpec) -> None:
    """Syntax and ranges: no cluster state needed."""
    if not spec.name:
        raise InvalidSpec("a service needs a name (--name)")
    if not _NAME_RE.match(spec.name):
        raise InvalidSpec(
            f"invalid service name {spec.name!r}: use 1-63 letters, digits, '_', '.' or '-', starting with a letter or digit"
        )
    c = spec.task.container
    if not c.image:
        raise InvalidSpec("a service needs an image")
    if spec.WhichOneof("mode") == "replicated" and spec.replicated.replicas > MAX_REPLICAS:
        raise InvalidSpec(f"--replicas {spec.replicated.replicas} is more than the limit of {MAX_REPLICAS}")
    for e in c.env:
        if "=" not in e or e.startswith("="):
            raise InvalidSpec(f"invalid environment variable {e!r}: expected KEY=VALUE")
    for expr in spec.task.placement.constraints:
        try:
            cons.parse_constraint(expr)
        except ValueError as e:
            raise InvalidSpec(str(e)) from None
    r = spec.task.resources
    for what, v in (
        ("--reserve-cpu", r.reservations.nano_cpus),
        ("--limit-cpu", r.limits.nano_cpus),
        ("--reserve-memory", r.reservations.memory_bytes),
        ("--limit-memory", r.limits.memory_bytes),
    ):
        if v < 0:
            raise InvalidSpec(f"{what} cannot be negative")
    if r.limits.memory_bytes and r.limits.memory_bytes < 6 * 1024 * 1024:
        raise InvalidSpec("--limit-memory must be at least 6MiB (Docker's minimum)")
    if r.limits.nano_cpus and r.reservations.nano_cpus > r.limits.nano_cpus:
        raise InvalidSpec("--reserve-cpu is larger than --limit-cpu")
    if r.limits.memory_bytes and r.reservations.memory_bytes > r.limits.memory_bytes:
        raise InvalidSpec("--reserve-memory is larger than --limit-memory")
    rp = spec.task.restart
    if rp.delay < 0 or rp.window < 0:
        raise InvalidSpec("restart delay and window cannot be negative")
    if c.stop_grace_period < 0:
        raise InvalidSpec("--stop-grace-period cannot be negative")
    for flag in ("update", "rollback"):
        try:
            validate_update_config(getattr(spec, flag), flag)
        except ValueError as e:
            raise InvalidSpec(str(e)) from None
    if spec.update.canary and spec.WhichOneof("mode") == "global":
        raise InvalidSpec("--update-canary is for replicated services only")


def check_schedulable(spec: pb.ServiceSpec, snap: st.Snapshot) -> None:
    """Refuse a spec that no node of the cluster could ever run: no node
    matches the constraints, the reservations exceed every matching node's
    total capacity, or no node has the image (images cannot be pulled here).
    Availability and status are ignored: a drained or down node may return."""
    nodes = list(snap.nodes.values())
    if not nodes:
        raise Unschedulable("the cluster has no nodes")
    parsed = [cons.parse_constraint(c) for c in spec.task.placement.constraints]
    matching = [n for n in nodes if cons.matches(parsed, n)]
    if not matching:
        raise Unschedulable(
            f"no node satisfies the constraints {list(spec.task.placement.constraints)} "
            f"(checked {len(nodes)} node{'s' if len(nodes) != 1 else ''})"
        )
    res = spec.task.resources.reservations
    # An empty node: what it could take at best.
    if not any(resource_shortfall(n.description.resources, 0, 0, res.nano_cpus, res.memory_bytes) is None for n in matching):
        biggest_mem = max(n.description.resources.memory_bytes for n in matching)
        biggest_cpu = max(n.description.resources.nano_cpus for n in matching) / 1e9
        raise Unschedulable(
            f"no node can ever satisfy the reservations (cpu {res.nano_cpus / 1e9:g}, memory {fmt_bytes(res.memory_bytes)}); "
            f"the largest node has {biggest_cpu:g} CPUs and {fmt_bytes(biggest_mem)}"
        )
    image = spec.task.container.image
    described = [n for n in matching if n.description.images]
    if described and len(described) == len(matching) and not any(_has_image(n, image) for n in described):
        raise Unschedulable(
            f"image {image!r} is not present on any node that could run the service; "
            "swarmlet does not pull images: load it into each node's engine (docker load)"
        )


def _has_image(node: pb.Node, image: str) -> bool:
    want = image if ":" in image.rsplit("/", 1)[-1] else image + ":latest"
    return any(i == image or i == want for i in node.description.images)


# ---- networks and published ports ----

NAME_RE = _NAME_RE


def _port_key(p: pb.PortConfig) -> tuple[int, int]:
    return (p.published_port, p.protocol)


def _proto_name(p: pb.PortConfig) -> str:
    return pb.PortConfig.Protocol.Name(p.protocol).lower()


def services_using(snap: st.Snapshot, network_id: str) -> list[str]:
    """Names of the services attached to a network (the ingress one included)."""
    return sorted(s.spec.name for s in snap.services.values() if network_id in al.wanted_networks(snap, s))


def prepare_service_networking(spec: pb.ServiceSpec, snap: st.Snapshot, service_id: str = "") -> None:
    """Validate the spec's networks and endpoint and resolve network names to
    ids (in place). Checks: networks exist and are not the ingress network,
    ports in range and not published twice, a published port not taken by
    another service (ports are cluster-wide in both modes: an ingress port is
    open on every node, so a host-mode port of the same number would be
    shadowed on some node), and every network has room for the replicas."""
    seen: set[str] = set()
    for att in spec.networks:
        net = lookup.network(snap, att.target)
        if net.spec.ingress:
            raise InvalidSpec(f"network {net.spec.name!r} is the routing-mesh network: publish ports with --publish instead")
        if net.id in seen:
            raise InvalidSpec(f"network {net.spec.name!r} given twice")
        seen.add(net.id)
        att.target = net.id
    ep = spec.endpoint
    if ep.mode not in (pb.EndpointSpec.VIP, pb.EndpointSpec.DNSRR):
        raise InvalidSpec(f"unknown endpoint mode {ep.mode}")
    if ep.mode == pb.EndpointSpec.DNSRR and any(p.publish_mode == pb.PortConfig.INGRESS for p in ep.ports):
        # As in Swarm: the routing mesh balances over a VIP.
        raise InvalidSpec("--endpoint-mode dnsrr cannot publish ports in ingress mode: use mode=host")
    mine: set[tuple[int, int]] = set()
    for p in ep.ports:
        if not 1 <= p.target_port <= 65535:
            raise InvalidSpec(f"target port {p.target_port} out of range (1-65535)")
        if not p.published_port:
            raise InvalidSpec(f"port {p.target_port}: a published port is required")
        if not 1 <= p.published_port <= 65535:
            raise InvalidSpec(f"published port {p.published_port} out of range (1-65535)")
        if _port_key(p) in mine:
            raise InvalidSpec(f"port {p.published_port}/{_proto_name(p)} is published twice")
        mine.add(_port_key(p))
    for other in snap.services.values():
        if other.id == service_id:
            continue
        for q in other.spec.endpoint.ports:
            if _port_key(q) in mine:
                raise errors.FailedPrecondition(
                    f"port {q.published_port}/{_proto_name(q)} is already published by service {other.spec.name!r}"
                )
    check_capacity(spec, snap, service_id)


def check_capacity(spec: pb.ServiceSpec, snap: st.Snapshot, service_id: str = "") -> None:
    """Refuse replicas that cannot all get an address on some network."""
    if spec.WhichOneof("mode") == "global":
        want = len(snap.nodes)
    else:
        want = int(spec.replicated.replicas)
    for att in spec.networks:
        net = snap.networks.get(att.target)
        if net is None or not net.subnet:
            subnet = net.spec.subnet if net is not None else ""
            if not subnet:
                continue
            room = ipaddress.ip_network(subnet).num_addresses - 3
        else:
            room = al.capacity(net)
        used = sum(
            1
            for t in snap.tasks.values()
            if tk.holds_addresses(t) and t.service_id != service_id and any(a.network_id == att.target for a in t.networks)
        )
        used += sum(1 for s in snap.services.values() if s.id != service_id for v in s.virtual_ips if v.network_id == att.target)
        vip = 1 if spec.endpoint.mode == pb.EndpointSpec.VIP else 0
        if used + want + vip > room:
            name = net.spec.name if net is not None else att.target
            subnet_text = (net.subnet or net.spec.subnet) if net is not None else ""
            raise errors.FailedPrecondition(
                f"network {name!r} ({subnet_text}) is too small: {want} replicas"
                f"{' and a VIP' if vip else ''} need {want + vip} addresses, {max(0, room - used)} are free"
            )


def validate_network_spec(spec: pb.NetworkSpec, snap: st.Snapshot) -> None:
    """A user's `network create`: name, not the ingress network, then the
    allocator's own checks (subnet, gateway, overlaps)."""
    if not spec.name:
        raise InvalidSpec("a network needs a name")
    if not _NAME_RE.match(spec.name):
        raise InvalidSpec(f"invalid network name {spec.name!r}: use 1-63 letters, digits, '_', '.' or '-'")
    if spec.ingress:
        raise InvalidSpec("the ingress network is created by the cluster when a service publishes a port")
    if spec.name == al.INGRESS_NAME:
        # Reserved (issue 14): names are unique when a batch is applied, so a
        # user's "ingress" would keep the cluster from ever creating its own.
        raise errors.AlreadyExists(f"the name {al.INGRESS_NAME!r} is reserved for the cluster's ingress network")
    al.check_network_spec(spec, snap)


def check_network_removable(snap: st.Snapshot, net: pb.Network) -> None:
    users = services_using(snap, net.id)
    if users:
        raise errors.FailedPrecondition(
            f"network {net.spec.name!r} is in use by service{'s' if len(users) > 1 else ''} "
            f"{', '.join(users)}: remove {'them' if len(users) > 1 else 'it'} first"
        )
