"""Nodes: list, inspect, update (availability, labels), remove."""

from __future__ import annotations

from swarmlet import errors
from swarmlet.api import control_pb2 as cpb
from swarmlet.api import objects_pb2 as pb
from swarmlet.api import store_pb2 as spb
from swarmlet.core import cluster as cl
from swarmlet.core import lookup, pki, validation
from swarmlet.core import state as st
from swarmlet.manager.control.base import StoreAccess


class NodeControl:
    def __init__(self, access: StoreAccess) -> None:
        self._a = access

    def with_manager_view(self, node: pb.Node) -> pb.Node:
        """A copy of a manager's node with Leader / Reachable / Unreachable
        filled in from this manager's Raft view (not stored)."""
        if node.role != pb.NodeSpec.MANAGER:
            return node
        store = self._a.store
        return cl.with_manager_view(node, store.leader_addr(), store.reachable())

    def list(self, req: cpb.ListNodesRequest) -> cpb.ListNodesResponse:
        snap = self._a.snap()
        nodes = [self.with_manager_view(n) for n in sorted(snap.nodes.values(), key=lambda n: (n.description.hostname, n.id))]
        leader_id = next((n.id for n in nodes if n.manager_status.leader), "")
        return cpb.ListNodesResponse(nodes=nodes, leader_id=leader_id)

    def get(self, req: cpb.GetNodeRequest) -> cpb.NodeResponse:
        return cpb.NodeResponse(node=self.with_manager_view(lookup.node(self._a.snap(), req.ref)))

    def update(self, req: cpb.UpdateNodeRequest) -> cpb.NodeResponse:
        snap = self._a.snap()
        node = lookup.node(snap, req.ref)
        if self._a.replayed(req.request_id):
            return cpb.NodeResponse(node=node)
        new = pb.Node()
        new.CopyFrom(node)
        if req.set_availability:
            if req.availability not in (pb.NodeSpec.ACTIVE, pb.NodeSpec.PAUSE, pb.NodeSpec.DRAIN):
                raise errors.Invalid(f"unknown availability {req.availability}")
            new.spec.availability = req.availability
        for k, v in req.label_add.items():
            if not k:
                raise errors.Invalid("a label needs a key")
            new.spec.labels[k] = v
        for k in req.label_rm:
            if k not in new.spec.labels:
                raise errors.NotFound(f"node {lookup.node_name(node)} has no label {k!r}")
            del new.spec.labels[k]
        validation.validate_node_labels(dict(new.spec.labels))
        self._a.propose([st.put(new)], request_id=req.request_id)
        return cpb.NodeResponse(node=self._a.snap().nodes.get(node.id, new))

    def remove(self, req: cpb.RemoveNodeRequest) -> cpb.RemoveNodeResponse:
        snap = self._a.snap()
        if self._a.replayed(req.request_id):
            return cpb.RemoveNodeResponse(id=req.ref)  # gone already
        node = lookup.node(snap, req.ref)
        name = lookup.node_name(node)
        if node.role == pb.NodeSpec.MANAGER:
            raise errors.FailedPrecondition(
                f"node {name} is a manager: demote it first (swarmlet node demote) before removing it"
            )
        if node.status.state != pb.NodeStatus.DOWN and not req.force:
            raise errors.FailedPrecondition(f"node {name} is not down and can't be removed: stop its daemon or use --force")
        actions = [st.delete(spb.KIND_NODE, node.id)]
        # Its certificates are refused on every API of every node from now on
        # (issue 13), not only by managers (which no longer know the node).
        cluster = self._a.local().cluster
        revoked = pki.with_revoked(cluster, pki.node_certificates(node)) if cluster is not None else None
        if revoked is not None:
            actions.append(st.put(revoked))
        self._a.propose(actions, request_id=req.request_id)
        return cpb.RemoveNodeResponse(id=node.id)
