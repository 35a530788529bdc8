"""The networking half of the Control API (a mixin of ClusterControl):
networks, and the checks on a service's networks and published ports.
Validation happens before anything is proposed, so bad input changes nothing."""

from __future__ import annotations

import ipaddress
import re

import grpc

from swarmlet.api import control_pb2 as cpb
from swarmlet.api import objects_pb2 as pb
from swarmlet.api import store_pb2 as spb
from swarmlet.manager import allocator as al
from swarmlet.manager import state as st

_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$")


class NetworkInputError(ValueError):
    """Bad networking input; `code` is the gRPC status to answer with."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


def _invalid(msg: str) -> NetworkInputError:
    return NetworkInputError(grpc.StatusCode.INVALID_ARGUMENT, msg)


def resolve_network(snap: st.Snapshot, ref: str) -> pb.Network:
    if ref in snap.networks:
        return snap.networks[ref]
    by_name = [n for n in snap.networks.values() if n.spec.name == ref]
    if len(by_name) == 1:
        return by_name[0]
    by_prefix = [n for nid, n in snap.networks.items() if nid.startswith(ref)]
    if len(by_prefix) == 1:
        return by_prefix[0]
    if len(by_prefix) > 1:
        raise NetworkInputError(grpc.StatusCode.FAILED_PRECONDITION, f"network id prefix {ref!r} is ambiguous")
    raise NetworkInputError(grpc.StatusCode.NOT_FOUND, f"network {ref!r} not found")


def services_using(snap: st.Snapshot, network_id: str) -> list[str]:
    return sorted(s.spec.name for s in snap.services.values() if network_id in al.wanted_networks(snap, s))


def _port_key(p: pb.PortConfig) -> tuple[int, int]:
    return (p.published_port, p.protocol)


def _proto_name(p: pb.PortConfig) -> str:
    return pb.PortConfig.Protocol.Name(p.protocol).lower()


def prepare_service_networking(spec: pb.ServiceSpec, snap: st.Snapshot, service_id: str = "") -> None:
    """Validate the spec's networks and endpoint and resolve network names to
    ids (in place). Checks: networks exist and are not the ingress network,
    ports in range and not published twice, a published port not taken by
    another service (ports are cluster-wide in both modes: an ingress port is
    open on every node, so a host-mode port of the same number would be
    shadowed on some node), and every network has room for the replicas."""
    seen: set[str] = set()
    for att in spec.networks:
        net = resolve_network(snap, att.target)
        if net.spec.ingress:
            raise _invalid(f"network {net.spec.name!r} is the routing-mesh network: publish ports with --publish instead")
        if net.id in seen:
            raise _invalid(f"network {net.spec.name!r} given twice")
        seen.add(net.id)
        att.target = net.id
    ep = spec.endpoint
    if ep.mode not in (pb.EndpointSpec.VIP, pb.EndpointSpec.DNSRR):
        raise _invalid(f"unknown endpoint mode {ep.mode}")
    if ep.mode == pb.EndpointSpec.DNSRR and any(p.publish_mode == pb.PortConfig.INGRESS for p in ep.ports):
        # As in Swarm: the routing mesh balances over a VIP.
        raise _invalid("--endpoint-mode dnsrr cannot publish ports in ingress mode: use mode=host")
    mine: set[tuple[int, int]] = set()
    for p in ep.ports:
        if not 1 <= p.target_port <= 65535:
            raise _invalid(f"target port {p.target_port} out of range (1-65535)")
        if not p.published_port:
            raise _invalid(f"port {p.target_port}: a published port is required")
        if not 1 <= p.published_port <= 65535:
            raise _invalid(f"published port {p.published_port} out of range (1-65535)")
        if _port_key(p) in mine:
            raise _invalid(f"port {p.published_port}/{_proto_name(p)} is published twice")
        mine.add(_port_key(p))
    for other in snap.services.values():
        if other.id == service_id:
            continue
        for q in other.spec.endpoint.ports:
            if _port_key(q) in mine:
                raise NetworkInputError(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"port {q.published_port}/{_proto_name(q)} is already published by service {other.spec.name!r}",
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
        used = sum(1 for t in snap.tasks.values()
                   if al.is_live(t) and t.service_id != service_id and any(a.network_id == att.target for a in t.networks))
        used += sum(1 for s in snap.services.values() if s.id != service_id for v in s.virtual_ips if v.network_id == att.target)
        vip = 1 if spec.endpoint.mode == pb.EndpointSpec.VIP else 0
        if used + want + vip > room:
            name = net.spec.name if net is not None else att.target
            raise NetworkInputError(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"network {name!r} ({net.subnet or net.spec.subnet}) is too small: {want} replicas"
                f"{' and a VIP' if vip else ''} need {want + vip} addresses, {max(0, room - used)} are free",
            )


class NetworkControl:
    """Network RPCs; mixed into ClusterControl (uses its _snap, _propose, and
    raises its ApiError through `_err`)."""

    def _net_call(self, fn, *args):
        from swarmlet.manager.controlapi import ApiError

        try:
            return fn(*args)
        except NetworkInputError as e:
            raise ApiError(e.code, str(e)) from None
        except al.AllocationError as e:
            raise ApiError(grpc.StatusCode.INVALID_ARGUMENT, str(e)) from None

    def create_network(self, req: cpb.CreateNetworkRequest) -> cpb.NetworkResponse:
        return self._net_call(self._create_network, req)

    def _create_network(self, req: cpb.CreateNetworkRequest) -> cpb.NetworkResponse:
        from swarmlet.manager.leader import new_task_id

        spec = pb.NetworkSpec()
        spec.CopyFrom(req.spec)
        if not spec.name:
            raise _invalid("a network needs a name")
        if not _NAME_RE.match(spec.name):
            raise _invalid(f"invalid network name {spec.name!r}: use 1-63 letters, digits, '_', '.' or '-'")
        if spec.ingress:
            raise _invalid("the ingress network is created by the cluster when a service publishes a port")
        spec.driver = spec.driver or "overlay"
        snap = self._snap()
        al.check_network_spec(spec, snap)
        net = pb.Network(id=new_task_id(), spec=spec)
        self._propose([st.put(net, create=True)])
        return cpb.NetworkResponse(network=self._snap().networks.get(net.id, net))

    def list_networks(self, req: cpb.ListNetworksRequest) -> cpb.ListNetworksResponse:
        snap = self._snap()
        return cpb.ListNetworksResponse(networks=sorted(snap.networks.values(), key=lambda n: n.spec.name))

    def get_network(self, req: cpb.GetNetworkRequest) -> cpb.InspectNetworkResponse:
        return self._net_call(self._get_network, req)

    def _get_network(self, req: cpb.GetNetworkRequest) -> cpb.InspectNetworkResponse:
        snap = self._snap()
        net = resolve_network(snap, req.ref)
        out = cpb.InspectNetworkResponse(network=net)
        peers: set[str] = set(net.node_addrs) if net.spec.ingress else set()
        for t in sorted(snap.tasks.values(), key=lambda t: (t.service_name, t.slot, t.id)):
            if not al.is_live(t) or not t.node_id:
                continue
            for a in t.networks:
                if a.network_id == net.id:
                    node = snap.nodes.get(t.node_id)
                    out.endpoints.add(task_id=t.id, service_name=t.service_name, addr=a.addr, node_id=t.node_id,
                                      node_name=node.description.hostname if node else "")
                    peers.add(t.node_id)
        for nid in sorted(peers):
            node = snap.nodes.get(nid)
            if node is not None:
                out.peers.add(node_id=nid, node_name=node.description.hostname, addr=node.status.addr)
        for s in snap.services.values():
            for v in s.virtual_ips:
                if v.network_id == net.id:
                    out.service_vips[s.spec.name] = v.addr
        return out

    def remove_network(self, req: cpb.RemoveNetworkRequest) -> cpb.RemoveNetworkResponse:
        return self._net_call(self._remove_network, req)

    def _remove_network(self, req: cpb.RemoveNetworkRequest) -> cpb.RemoveNetworkResponse:
        snap = self._snap()
        net = resolve_network(snap, req.ref)
        users = services_using(snap, net.id)
        if users:
            raise NetworkInputError(grpc.StatusCode.FAILED_PRECONDITION,
                                    f"network {net.spec.name!r} is in use by service{'s' if len(users) > 1 else ''} "
                                    f"{', '.join(users)}: remove {'them' if len(users) > 1 else 'it'} first")
        # Tasks of removed services may still be stopping on it: agents tear
        # the wiring down when the network leaves their assignment.
        self._propose([st.delete(spb.KIND_NETWORK, net.id, net.meta.version)])
        return cpb.RemoveNetworkResponse(id=net.id)
