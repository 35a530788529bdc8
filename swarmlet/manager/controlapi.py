"""The cluster half of the Control API, served by managers: services, tasks,
nodes, join tokens, logs. Every write is validated first, then proposed as one
store batch (nothing is half-done)."""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Callable, Iterator

import grpc

from swarmlet.api import agent_pb2
from swarmlet.api import agent_pb2_grpc
from swarmlet.api import control_pb2 as cpb
from swarmlet.api import objects_pb2 as pb
from swarmlet.api import store_pb2 as spb
from swarmlet.manager import ca
from swarmlet.manager import state as st
from swarmlet.manager import validate
from swarmlet.manager.networkapi import NetworkControl, NetworkInputError, check_capacity, prepare_service_networking
from swarmlet.manager.leader import new_task_id
from swarmlet.manager.store import ConflictError, NotLeader, Store, StoreError

log = logging.getLogger(__name__)


class ApiError(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


def _live(t: pb.Task) -> bool:
    return t.desired_state <= pb.RUNNING


def resolve(table: dict, ref: str, what: str, name_of: Callable) -> object:
    """Find an object by exact id, exact name, or unique id prefix."""
    if not ref:
        raise ApiError(grpc.StatusCode.INVALID_ARGUMENT, f"no {what} given")
    if ref in table:
        return table[ref]
    by_name = [o for o in table.values() if name_of(o) == ref]
    if len(by_name) == 1:
        return by_name[0]
    if len(by_name) > 1:
        raise ApiError(grpc.StatusCode.FAILED_PRECONDITION, f"{what} name {ref!r} is ambiguous ({len(by_name)} match): use an id")
    by_prefix = [o for oid, o in table.items() if oid.startswith(ref)]
    if len(by_prefix) == 1:
        return by_prefix[0]
    if len(by_prefix) > 1:
        raise ApiError(grpc.StatusCode.FAILED_PRECONDITION, f"{what} id prefix {ref!r} is ambiguous")
    raise ApiError(grpc.StatusCode.NOT_FOUND, f"{what} {ref!r} not found")


class ClusterControl(NetworkControl):
    """Implements the cluster RPCs of control.proto against the store.
    `agent_channel(addr)` returns an mTLS channel to another node's API port
    (for logs)."""

    def __init__(self, store: Store, agent_channel: Callable[[str], grpc.Channel], self_node_id: str) -> None:
        self._store = store
        self._agent_channel = agent_channel
        self._self_node_id = self_node_id

    # ---- plumbing ----
    def _propose(self, actions: list[spb.StoreAction]) -> None:
        if not self._store.is_leader():
            raise ApiError(grpc.StatusCode.UNAVAILABLE, "this manager is not the leader; the cluster has no leader right now")
        try:
            self._store.propose(actions)
        except ConflictError as e:
            raise ApiError(grpc.StatusCode.ABORTED, f"concurrent change, try again: {e}") from None
        except NotLeader as e:
            raise ApiError(grpc.StatusCode.UNAVAILABLE, f"leadership changed during the write: {e}") from None
        except StoreError as e:
            raise ApiError(grpc.StatusCode.UNAVAILABLE, str(e)) from None

    def _snap(self) -> st.Snapshot:
        return self._store.snapshot()

    def _service(self, snap: st.Snapshot, ref: str) -> pb.Service:
        return resolve(snap.services, ref, "service", lambda s: s.spec.name)

    def _node(self, snap: st.Snapshot, ref: str) -> pb.Node:
        return resolve(snap.nodes, ref, "node", lambda n: n.description.hostname)

    # ---- services ----
    def create_service(self, req: cpb.CreateServiceRequest) -> cpb.ServiceResponse:
        spec = pb.ServiceSpec()
        spec.CopyFrom(req.spec)
        if spec.WhichOneof("mode") is None:
            spec.replicated.replicas = 1
        try:
            validate.validate_service_spec(spec)
        except validate.InvalidSpec as e:
            raise ApiError(grpc.StatusCode.INVALID_ARGUMENT, str(e)) from None
        snap = self._snap()
        if any(s.spec.name == spec.name for s in snap.services.values()):
            raise ApiError(grpc.StatusCode.ALREADY_EXISTS, f"a service named {spec.name!r} already exists")
        try:
            validate.check_schedulable(spec, snap)
        except validate.InvalidSpec as e:
            raise ApiError(grpc.StatusCode.FAILED_PRECONDITION, str(e)) from None
        try:
            prepare_service_networking(spec, snap)
        except NetworkInputError as e:
            raise ApiError(e.code, str(e)) from None
        svc = pb.Service(id=new_task_id(), spec=spec, spec_version=1)
        self._propose([st.put(svc, create=True)])
        return cpb.ServiceResponse(service=self._snap().services.get(svc.id, svc))

    def get_service(self, req: cpb.GetServiceRequest) -> cpb.ServiceResponse:
        return cpb.ServiceResponse(service=self._service(self._snap(), req.ref))

    def list_services(self, req: cpb.ListServicesRequest) -> cpb.ListServicesResponse:
        snap = self._snap()
        out = cpb.ListServicesResponse()
        running: dict[str, int] = {}
        for t in snap.tasks.values():
            if _live(t) and t.status.state == pb.RUNNING:
                running[t.service_id] = running.get(t.service_id, 0) + 1
        for svc in sorted(snap.services.values(), key=lambda s: s.spec.name):
            if svc.spec.WhichOneof("mode") == "global":
                desired = sum(1 for t in snap.tasks.values() if t.service_id == svc.id and _live(t))
            else:
                desired = svc.spec.replicated.replicas
            out.services.add(service=svc, running=running.get(svc.id, 0), desired=desired)
        return out

    def scale_service(self, req: cpb.ScaleServiceRequest) -> cpb.ServiceResponse:
        snap = self._snap()
        svc = self._service(snap, req.ref)
        if svc.spec.WhichOneof("mode") != "replicated":
            raise ApiError(grpc.StatusCode.FAILED_PRECONDITION, f"service {svc.spec.name} is global: it cannot be scaled")
        if req.replicas > validate.MAX_REPLICAS:
            raise ApiError(grpc.StatusCode.INVALID_ARGUMENT, f"{req.replicas} replicas is more than the limit of {validate.MAX_REPLICAS}")
        new = pb.Service()
        new.CopyFrom(svc)
        new.spec.replicated.replicas = req.replicas
        try:
            check_capacity(new.spec, snap, svc.id)
        except NetworkInputError as e:
            raise ApiError(e.code, str(e)) from None
        self._propose([st.put(new)])
        return cpb.ServiceResponse(service=self._snap().services.get(svc.id, new))

    def remove_service(self, req: cpb.RemoveServiceRequest) -> cpb.RemoveServiceResponse:
        snap = self._snap()
        svc = self._service(snap, req.ref)
        # The orchestrator sees the service gone and removes its tasks.
        self._propose([st.delete(spb.KIND_SERVICE, svc.id)])
        return cpb.RemoveServiceResponse(id=svc.id)

    def list_tasks(self, req: cpb.ListTasksRequest) -> cpb.ListTasksResponse:
        snap = self._snap()
        tasks = list(snap.tasks.values())
        if req.service_ref:
            svc = self._service(snap, req.service_ref)
            tasks = [t for t in tasks if t.service_id == svc.id]
        if req.node_ref:
            node = self._node(snap, req.node_ref)
            tasks = [t for t in tasks if t.node_id == node.id]
        tasks.sort(key=lambda t: (t.service_name, t.slot, t.node_id, -t.meta.created_at))
        names = {n.id: n.description.hostname or n.id for n in snap.nodes.values()}
        return cpb.ListTasksResponse(tasks=tasks, node_names=names)

    def service_logs(self, req: cpb.ServiceLogsRequest, context: grpc.ServicerContext) -> Iterator[cpb.ServiceLogLine]:
        snap = self._snap()
        svc = self._service(snap, req.ref)
        by_node: dict[str, list[pb.Task]] = {}
        for t in snap.tasks.values():
            if t.service_id == svc.id and t.node_id and t.status.container_id:
                by_node.setdefault(t.node_id, []).append(t)
        out: queue.Queue = queue.Queue(maxsize=1000)
        done = object()

        def pump(node: pb.Node, tasks: list[pb.Task]) -> None:
            info = {t.status.container_id: t for t in tasks}
            try:
                if not node.api_addr:
                    raise RuntimeError("node has no API address yet")
                stub = agent_pb2_grpc.AgentStub(self._agent_channel(node.api_addr))
                stream = stub.TaskLogs(
                    agent_pb2.TaskLogsRequest(container_ids=list(info), follow=req.follow, tail=req.tail or -1, timestamps=req.timestamps),
                    timeout=None if req.follow else 30,
                )
                context.add_callback(stream.cancel)
                for line in stream:
                    t = info.get(line.container_id)
                    out.put(cpb.ServiceLogLine(task_id=line.task_id or (t.id if t else ""), node_id=node.id,
                                               node_name=node.description.hostname, slot=t.slot if t else 0,
                                               stream=line.stream, data=line.data))
            except Exception as e:
                if context.is_active():
                    msg = f"error from node {node.description.hostname or node.id}: {getattr(e, 'details', lambda: e)()}\n"
                    out.put(cpb.ServiceLogLine(node_id=node.id, node_name=node.description.hostname, stream="stderr", data=msg.encode()))
            finally:
                out.put(done)

        threads = []
        for nid, tasks in by_node.items():
            node = snap.nodes.get(nid)
            if node is None:
                continue
            th = threading.Thread(target=pump, args=(node, tasks), daemon=True)
            th.start()
            threads.append(th)
        remaining = len(threads)
        while remaining and context.is_active():
            try:
                item = out.get(timeout=0.5)
            except queue.Empty:
                continue
            if item is done:
                remaining -= 1
            else:
                yield item

    # ---- nodes ----
    def list_nodes(self, req: cpb.ListNodesRequest) -> cpb.ListNodesResponse:
        snap = self._snap()
        nodes = sorted(snap.nodes.values(), key=lambda n: (n.description.hostname, n.id))
        leader_id = ""
        leader = self._store.leader_addr()
        for n in nodes:
            if n.role == pb.NodeSpec.MANAGER and n.manager_status.raft_addr == leader:
                leader_id = n.id
        return cpb.ListNodesResponse(nodes=nodes, leader_id=leader_id)

    def get_node(self, req: cpb.GetNodeRequest) -> cpb.NodeResponse:
        return cpb.NodeResponse(node=self._node(self._snap(), req.ref))

    def update_node(self, req: cpb.UpdateNodeRequest) -> cpb.NodeResponse:
        snap = self._snap()
        node = self._node(snap, req.ref)
        new = pb.Node()
        new.CopyFrom(node)
        if req.set_availability:
            if req.availability not in (pb.NodeSpec.ACTIVE, pb.NodeSpec.PAUSE, pb.NodeSpec.DRAIN):
                raise ApiError(grpc.StatusCode.INVALID_ARGUMENT, f"unknown availability {req.availability}")
            new.spec.availability = req.availability
        for k, v in req.label_add.items():
            if not k:
                raise ApiError(grpc.StatusCode.INVALID_ARGUMENT, "a label needs a key")
            new.spec.labels[k] = v
        for k in req.label_rm:
            if k not in new.spec.labels:
                raise ApiError(grpc.StatusCode.NOT_FOUND, f"node {node.description.hostname or node.id} has no label {k!r}")
            del new.spec.labels[k]
        self._propose([st.put(new)])
        return cpb.NodeResponse(node=self._snap().nodes.get(node.id, new))

    def remove_node(self, req: cpb.RemoveNodeRequest) -> cpb.RemoveNodeResponse:
        snap = self._snap()
        node = self._node(snap, req.ref)
        name = node.description.hostname or node.id
        if node.role == pb.NodeSpec.MANAGER:
            raise ApiError(grpc.StatusCode.FAILED_PRECONDITION,
                           f"node {name} is a manager: demote it first (swarmlet node demote) before removing it")
        if node.status.state != pb.NodeStatus.DOWN and not req.force:
            raise ApiError(grpc.StatusCode.FAILED_PRECONDITION,
                           f"node {name} is not down and can't be removed: stop its daemon or use --force")
        self._propose([st.delete(spb.KIND_NODE, node.id)])
        return cpb.RemoveNodeResponse(id=node.id)

    # ---- tokens ----
    def join_token(self, req: cpb.JoinTokenRequest, api_addr: str) -> cpb.JoinTokenResponse:
        if req.role not in ("worker", "manager"):
            raise ApiError(grpc.StatusCode.INVALID_ARGUMENT, f"unknown role {req.role!r}: use worker or manager")
        snap = self._snap()
        cluster = snap.cluster
        if cluster is None:
            raise ApiError(grpc.StatusCode.FAILED_PRECONDITION, "the cluster is not initialised")
        if req.rotate:
            new = pb.Cluster()
            new.CopyFrom(cluster)
            tok = ca.new_join_token(cluster.root_ca.digest)
            if req.role == "worker":
                new.worker_token = tok
            else:
                new.manager_token = tok
            self._propose([st.put(new)])
            cluster = self._snap().cluster
        token = cluster.worker_token if req.role == "worker" else cluster.manager_token
        return cpb.JoinTokenResponse(token=token, api_addr=api_addr)

    # ---- node registration (called by the CA on join) ----
    def register_node(self, node_id: str, role: str, request, peer_ip: str) -> list[str]:
        if role == "manager":
            raise ApiError(grpc.StatusCode.UNIMPLEMENTED, "joining as a manager is not supported yet: join as a worker")
        node = pb.Node(
            id=node_id,
            role=pb.NodeSpec.WORKER,
            spec=pb.NodeSpec(desired_role=pb.NodeSpec.WORKER, availability=pb.NodeSpec.ACTIVE),
            description=pb.NodeDescription(hostname=request.hostname),
            status=pb.NodeStatus(state=pb.NodeStatus.UNKNOWN, addr=request.addr or peer_ip, timestamp=time.time(), message="joined"),
            api_addr=request.api_addr,
        )
        self._propose([st.put(node, create=True)])
        snap = self._snap()
        return sorted(n.manager_status.api_addr for n in snap.nodes.values() if n.role == pb.NodeSpec.MANAGER)
