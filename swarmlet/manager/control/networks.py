"""Overlay networks: create, inspect, list, remove. The checks on a service's
networks and ports live in core/validation.py (services use them too)."""

from __future__ import annotations

from swarmlet.api import control_pb2 as cpb
from swarmlet.api import objects_pb2 as pb
from swarmlet.api import store_pb2 as spb
from swarmlet.core import lookup, validation
from swarmlet.core import state as st
from swarmlet.core import tasks as tk
from swarmlet.ids import new_id
from swarmlet.manager.control.base import StoreAccess


class NetworkControl:
    def __init__(self, access: StoreAccess) -> None:
        self._a = access

    def create(self, req: cpb.CreateNetworkRequest) -> cpb.NetworkResponse:
        spec = pb.NetworkSpec()
        spec.CopyFrom(req.spec)
        spec.driver = spec.driver or "overlay"
        snap = self._a.snap()
        if not self._a.replayed(req.request_id):
            validation.validate_network_spec(spec, snap)
            net = pb.Network(id=new_id(), spec=spec)
            self._a.propose([st.put(net, create=True)], request_id=req.request_id)
        # By name (unique): an earlier attempt of this call may have applied.
        return cpb.NetworkResponse(network=lookup.network(self._a.snap(), spec.name))

    def list(self, req: cpb.ListNetworksRequest) -> cpb.ListNetworksResponse:
        networks = sorted(self._a.snap().networks.values(), key=lambda n: n.spec.name)
        return cpb.ListNetworksResponse(networks=networks)

    def get(self, req: cpb.GetNetworkRequest) -> cpb.InspectNetworkResponse:
        snap = self._a.snap()
        net = lookup.network(snap, req.ref)
        out = cpb.InspectNetworkResponse(network=net)
        peers: set[str] = set(net.node_addrs) if net.spec.ingress else set()
        for t in sorted(snap.tasks.values(), key=lambda t: (t.service_name, t.slot, t.id)):
            if not tk.holds_addresses(t) or not t.node_id:
                continue
            for a in t.networks:
                if a.network_id == net.id:
                    node = snap.nodes.get(t.node_id)
                    out.endpoints.add(
                        task_id=t.id,
                        service_name=t.service_name,
                        addr=a.addr,
                        node_id=t.node_id,
                        node_name=node.description.hostname if node else "",
                    )
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

    def remove(self, req: cpb.RemoveNetworkRequest) -> cpb.RemoveNetworkResponse:
        snap = self._a.snap()
        if self._a.replayed(req.request_id):
            return cpb.RemoveNetworkResponse(id=req.ref)  # gone already
        net = lookup.network(snap, req.ref)
        validation.check_network_removable(snap, net)
        # Tasks of removed services may still be stopping on it: agents tear
        # the wiring down when the network leaves their assignment.
        self._a.propose([st.delete(spb.KIND_NETWORK, net.id, net.meta.version)], request_id=req.request_id)
        return cpb.RemoveNetworkResponse(id=net.id)
