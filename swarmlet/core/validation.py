"""Checks on user input before anything is proposed: a bad spec gets a clear
error naming what is wrong and changes nothing."""

from __future__ import annotations

import ipaddress
import re

from swarmlet import errors
from swarmlet.api import objects_pb2 as pb
from swarmlet.core import allocator as al
from swarmlet.core import bounds, images, lookup, mounts, ports, reserved
from swarmlet.core import constraints as cons
from swarmlet.core import generic as gen
from swarmlet.core import secrets as sc
from swarmlet.core import service_options as opts
from swarmlet.core import state as st
from swarmlet.core import tasks as tk
from swarmlet.core.pki import MAX_CERT_EXPIRY
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
    try:
        bounds.check_service_spec(spec)  # sizes, counts, finite durations (issue 13)
    except errors.Invalid as err:
        raise InvalidSpec(str(err)) from None
    c = spec.task.container
    if not c.image:
        raise InvalidSpec("a service needs an image")
    validate_image(c)
    if spec.WhichOneof("mode") == "replicated" and spec.replicated.replicas > MAX_REPLICAS:
        raise InvalidSpec(f"--replicas {spec.replicated.replicas} is more than the limit of {MAX_REPLICAS}")
    if spec.replicated_job.total_completions > MAX_REPLICAS or spec.replicated_job.max_concurrent > MAX_REPLICAS:
        raise InvalidSpec(f"a replicated job's --replicas and --max-concurrent are limited to {MAX_REPLICAS}")
    for e in c.env:
        if "=" not in e or e.startswith("="):
            raise InvalidSpec(f"invalid environment variable {e!r}: expected KEY=VALUE")
    mounts.validate(c.mounts)
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
    validate_service_options(spec)


def validate_service_options(spec: pb.ServiceSpec) -> None:
    """Container options, jobs, placement options (issue 11)."""
    try:
        opts.check_task(spec.task, tk.spec_mode(spec))
        opts.check_job(spec)
    except opts.OptionError as e:
        raise InvalidSpec(str(e)) from None


def check_schedulable(spec: pb.ServiceSpec, snap: st.Snapshot) -> None:
    """Refuse a spec that no node of the cluster could ever run: no node
    matches the constraints, the reservations exceed every matching node's
    total capacity, or no node has enough of a generic resource.
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
    check_generic_resources(spec, matching)
    # Images are pulled (issue 9): whether one exists is the manager's
    # resolution's business (manager/control/images.py), not a refusal here.


# ---- images (issue 9) ----


def validate_image(c: pb.ContainerSpec) -> None:
    """The image reference, the pinned id and the pull policy."""
    try:
        images.parse(c.image)
    except images.InvalidReference as e:
        raise InvalidSpec(str(e)) from None
    if c.image_id and not images.is_image_id(c.image_id):
        raise InvalidSpec(f"invalid image id {c.image_id!r}")
    if c.pull not in pb.ImagePullPolicy.values():
        raise InvalidSpec(f"unknown pull policy {c.pull}")


def check_generic_resources(spec: pb.ServiceSpec, matching: list[pb.Node]) -> None:
    """Refuse generic resources no node the service may run on advertises
    enough of (nodes advertise them when their daemon starts)."""
    for g in spec.task.resources.reservations.generic:
        best = max((gen.capacity(n).get(g.kind, 0) for n in matching), default=0)
        if best < g.discrete_value:
            have = (
                f"the most any node has is {best}" if best else "no node advertises it (swarmlet daemon --node-generic-resource)"
            )
            raise Unschedulable(f"no node can ever satisfy --generic-resource {g.kind}={g.discrete_value}: {have}")


# ---- networks and published ports ----

NAME_RE = _NAME_RE


def _port_key(p: pb.PortConfig) -> tuple[int, int]:
    return (p.published_port, p.protocol)


_proto_name = ports.proto_name


def services_using(snap: st.Snapshot, network_id: str) -> list[str]:
    """Names of the services attached to a network (the ingress one included)."""
    return sorted(s.spec.name for s in snap.services.values() if network_id in al.wanted_networks(snap, s))


def prepare_service_networking(spec: pb.ServiceSpec, snap: st.Snapshot, service_id: str = "") -> None:
    """Validate the spec's networks and endpoint and resolve network names to
    ids (in place). Checks: networks exist and are not the ingress network,
    ports in range and not published twice, a published port not taken by
    another service (core/ports.py: an ingress port is the cluster's; a
    host-mode port only the node's, so services may share one), and every
    network has room for the replicas. A port with no published port gets
    one from 30000-32767 (in place): on an update, the one the service holds
    for that target (core/ports.py)."""
    seen: set[str] = set()
    for att in spec.networks:
        net = lookup.network(snap, att.target)
        if net.spec.ingress:
            raise InvalidSpec(f"network {net.spec.name!r} is the routing-mesh network: publish ports with --publish instead")
        if net.id in seen:
            raise InvalidSpec(f"network {net.spec.name!r} given twice")
        seen.add(net.id)
        att.target = net.id
        check_network_aliases(att, net.spec.name)
    ep = spec.endpoint
    if ep.mode not in (pb.EndpointSpec.VIP, pb.EndpointSpec.DNSRR):
        raise InvalidSpec(f"unknown endpoint mode {ep.mode}")
    if ep.mode == pb.EndpointSpec.DNSRR and any(p.publish_mode == pb.PortConfig.INGRESS for p in ep.ports):
        # As in Swarm: the routing mesh balances over a VIP.
        raise InvalidSpec("--endpoint-mode dnsrr cannot publish ports in ingress mode: use mode=host")
    mine: set[tuple[int, int]] = set()
    for p in ep.ports:
        if p.protocol not in pb.PortConfig.Protocol.values():
            raise InvalidSpec(f"port {p.target_port}: unknown protocol {p.protocol} (tcp, udp or sctp)")
        if p.publish_mode not in pb.PortConfig.PublishMode.values():
            raise InvalidSpec(f"port {p.target_port}: unknown publish mode {p.publish_mode} (ingress or host)")
        if not 1 <= p.target_port <= 65535:
            raise InvalidSpec(f"target port {p.target_port} out of range (1-65535)")
        if not p.published_port:
            continue  # assigned below
        if not 1 <= p.published_port <= 65535:
            raise InvalidSpec(f"published port {p.published_port} out of range (1-65535)")
        if _port_key(p) in mine:
            raise InvalidSpec(f"port {p.published_port}/{_proto_name(p)} is published twice")
        mine.add(_port_key(p))
        why = reserved.port_refusal(p.published_port, p.protocol, snap)
        if why is not None:
            raise InvalidSpec(why)
    others = [s for s in snap.services.values() if s.id != service_id]
    ports.check_conflicts(ep.ports, others)
    current = snap.services[service_id].spec.endpoint.ports if service_id in snap.services else ()
    ports.assign(ep.ports, others, current)
    check_capacity(spec, snap, service_id)


def check_capacity(spec: pb.ServiceSpec, snap: st.Snapshot, service_id: str = "") -> None:
    """Refuse replicas that cannot all get an address on some network."""
    mode = tk.spec_mode(spec)
    if mode in ("global", "global-job"):
        want = len(snap.nodes)
    elif mode == "replicated-job":
        # Only running tasks hold addresses: at most max_concurrent at once.
        want = int(min(spec.replicated_job.max_concurrent or 1, spec.replicated_job.total_completions))
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
    try:
        bounds.check_network_spec(spec)
    except errors.Invalid as e:
        raise InvalidSpec(str(e)) from None
    al.check_network_spec(spec, snap)
    if spec.subnet:
        why = reserved.subnet_refusal(ipaddress.IPv4Network(spec.subnet), snap)
        if why is not None:
            raise InvalidSpec(why)


def validate_node_labels(labels: dict[str, str]) -> None:
    """A node's labels after `node update --label-add`."""
    try:
        bounds.check_labels(labels, "node labels")
    except errors.Invalid as e:
        raise InvalidSpec(str(e)) from None


def check_network_removable(snap: st.Snapshot, net: pb.Network) -> None:
    users = services_using(snap, net.id)
    if users:
        raise errors.FailedPrecondition(
            f"network {net.spec.name!r} is in use by service{'s' if len(users) > 1 else ''} "
            f"{', '.join(users)}: remove {'them' if len(users) > 1 else 'it'} first"
        )


# ---- volumes, secrets and configs (issue 10) ----


def prepare_service_storage(spec: pb.ServiceSpec, snap: st.Snapshot) -> None:
    """Resolve the spec's --secret/--config references in place (names to
    ids, Swarm's file defaults) and refuse unknown ones and clashing targets
    (core/secrets.py; the mounts themselves are checked by
    validate_service_spec, core/mounts.py)."""
    sc.resolve_references(spec, snap, mounts.validate(spec.task.container.mounts))


# ---- cluster settings (issue 13, part A: `cluster update`) ----

MIN_HEARTBEAT_PERIOD = 0.1
MAX_HEARTBEAT_PERIOD = 3600.0
MAX_NODE_DOWN_AFTER = 86400.0
MAX_TASK_HISTORY_LIMIT = 1000


def _check_seconds(value: float, flag: str, low: float, high: float) -> None:
    # `not low <= value` is also true for NaN.
    if not low <= value <= high:
        raise InvalidSpec(f"{flag} must be between {_fmt_duration(low)} and {_fmt_duration(high)}, not {_fmt_duration(value)}")


def _fmt_duration(v: float) -> str:
    if v != v or v in (float("inf"), float("-inf")):
        return str(v)
    for unit, size in (("d", 86400.0), ("h", 3600.0), ("m", 60.0)):
        if v >= size and v % size == 0:
            return f"{v / size:g}{unit}"
    return f"{v:g}s"


def check_cluster_spec(spec: pb.ClusterSpec, current: pb.ClusterSpec, min_cert_expiry: float) -> None:
    """A new cluster spec for `cluster update`: every setting in range, the
    ones fixed at init unchanged. `min_cert_expiry` is the manager's floor
    (an hour, as in Swarm, unless the daemon lowered it)."""
    _check_seconds(spec.heartbeat_period, "--dispatcher-heartbeat", MIN_HEARTBEAT_PERIOD, MAX_HEARTBEAT_PERIOD)
    if spec.node_down_after < 2 * spec.heartbeat_period:
        raise InvalidSpec(
            f"--node-down-after ({_fmt_duration(spec.node_down_after)}) must be at least twice the dispatcher heartbeat "
            f"({_fmt_duration(spec.heartbeat_period)}): one late heartbeat would mark nodes down"
        )
    _check_seconds(spec.node_down_after, "--node-down-after", 2 * spec.heartbeat_period, MAX_NODE_DOWN_AFTER)
    if not 1 <= spec.task_history_limit <= MAX_TASK_HISTORY_LIMIT:
        raise InvalidSpec(f"--task-history-limit must be between 1 and {MAX_TASK_HISTORY_LIMIT}, not {spec.task_history_limit}")
    if spec.node_cert_expiry != 0:  # 0: the default lifetime
        _check_seconds(spec.node_cert_expiry, "--cert-expiry", min_cert_expiry, MAX_CERT_EXPIRY)
    if list(spec.default_address_pool) != list(current.default_address_pool) or (
        spec.default_subnet_size != current.default_subnet_size
    ):
        raise InvalidSpec("the default address pool is set at init and cannot be changed")


# ---- restore: every object of a backup, as on create (issue 13) ----

_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_MAX_STATUS_TEXT = 64 * 1024


def _check_id(kind: str, oid: str) -> None:
    if not _ID_RE.match(oid):
        raise InvalidSpec(f"{kind} id {oid[:40]!r} is not a valid id")


def _check_addr(what: str, value: str, with_port: bool) -> None:
    if not value:
        return
    host = value
    if with_port:
        host, sep, port = value.rpartition(":")
        if not sep or not port.isdigit() or not 0 < int(port) < 65536:
            raise InvalidSpec(f"{what} {value[:64]!r} is not HOST:PORT")
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        raise InvalidSpec(f"{what} {value[:64]!r} is not an IP address") from None


def validate_restored(snap: st.Snapshot) -> None:
    """Every object of a state to restore, checked as the control API checks
    what users create: a crafted backup (names with '/' or newlines, NaN
    durations, 10,000 env variables) is refused, naming the object."""
    if len(snap.clusters) != 1:
        raise InvalidSpec(f"a backup holds exactly one cluster object, this one {len(snap.clusters)}")
    for kind, table in (("cluster", snap.clusters), ("node", snap.nodes), ("service", snap.services)):
        for oid in table:
            _check_id(kind, oid)
    for kind, table2 in (("task", snap.tasks), ("network", snap.networks)):
        for oid in table2:
            _check_id(kind, oid)
    for c in snap.clusters.values():
        try:
            bounds.check_cluster_spec(c.spec)
            al.parse_pool(c.spec.default_address_pool, c.spec.default_subnet_size)
        except errors.Invalid as e:
            raise InvalidSpec(f"cluster {c.id}: {e}") from None
    for n in snap.nodes.values():
        try:
            bounds.check_hostname(n.description.hostname, "hostname")
            bounds.check_labels(n.spec.labels, "node labels")
            _check_addr("address", n.status.addr, with_port=False)
            for what, addr in (("API address", n.api_addr), ("Raft address", n.raft_addr)):
                _check_addr(what, addr, with_port=True)
            if n.role not in pb.NodeSpec.Role.values() or n.spec.availability not in pb.NodeSpec.Availability.values():
                raise InvalidSpec("unknown role or availability")
        except errors.Invalid as e:
            raise InvalidSpec(f"node {n.id}: {e}") from None
    names: set[str] = set()
    for s in snap.services.values():
        try:
            validate_service_spec(s.spec)
            if s.HasField("previous_spec") and s.previous_spec.name:
                validate_service_spec(s.previous_spec)
        except errors.Invalid as e:
            raise InvalidSpec(f"service {s.id}: {e}") from None
        if s.spec.name in names:
            raise InvalidSpec(f"service name {s.spec.name!r} is used twice")
        names.add(s.spec.name)
    for t in snap.tasks.values():
        try:
            bounds.check_task_spec(t.spec)
            if t.service_name and not _NAME_RE.match(t.service_name):
                raise InvalidSpec(f"invalid service name {t.service_name[:40]!r}")
            if len(t.status.message) + len(t.status.err) > _MAX_STATUS_TEXT:
                raise InvalidSpec("the status message is too long")
        except errors.Invalid as e:
            raise InvalidSpec(f"task {t.id}: {e}") from None
    net_names: set[str] = set()
    for net in snap.networks.values():
        try:
            if not _NAME_RE.match(net.spec.name):
                raise InvalidSpec(f"invalid network name {net.spec.name[:40]!r}")
            bounds.check_network_spec(net.spec)
            for cidr in (net.spec.subnet, net.subnet):
                if cidr:
                    ipaddress.IPv4Network(cidr)
        except (errors.Invalid, ValueError) as e:
            raise InvalidSpec(f"network {net.id}: {e}") from None
        if net.spec.name in net_names:
            raise InvalidSpec(f"network name {net.spec.name!r} is used twice")
        net_names.add(net.spec.name)


# ---- issue 17: network aliases (docker stack deploy names each service by
# its short name on the stack's networks) ----
MAX_ALIASES = 16


def check_network_aliases(att: pb.NetworkAttachmentConfig, network_name: str) -> None:
    """A service's extra DNS names on one network: names as service names
    are, a bounded few."""
    if len(att.aliases) > MAX_ALIASES:
        raise InvalidSpec(f"network {network_name!r}: at most {MAX_ALIASES} aliases")
    for alias in att.aliases:
        if not _NAME_RE.match(alias):
            raise InvalidSpec(f"network {network_name!r}: alias {alias!r} is not a valid name")
