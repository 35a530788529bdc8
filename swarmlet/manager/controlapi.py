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
from swarmlet.manager import updater
from swarmlet.manager import validate
from swarmlet.manager.networkapi import NetworkControl, NetworkInputError, check_capacity, prepare_service_networking
from swarmlet.manager.leader import new_task_id
from swarmlet.manager.store import ConflictError, NotLeader, QuorumLost, Store, StoreError, majority

# A membership-change marker older than this was left by a manager that died
# mid-change: the next change may proceed (changes are idempotent).
MEMBERSHIP_MARKER_TTL = 30.0


def store_error(e: StoreError) -> "ApiError":
    """The user-facing error for a write or read the store could not do."""
    if isinstance(e, ConflictError):
        return ApiError(grpc.StatusCode.ABORTED, f"concurrent change, try again: {e}")
    if isinstance(e, QuorumLost):
        return ApiError(grpc.StatusCode.UNAVAILABLE, str(e))
    if isinstance(e, NotLeader):
        return ApiError(grpc.StatusCode.UNAVAILABLE, f"the swarm has no leader right now: {e}")
    return ApiError(grpc.StatusCode.UNAVAILABLE, str(e))


def can_remove_member(members: list[str], reachable: set[str], target: str) -> bool:
    """Whether the managers left after removing `target` still have a
    reachable majority (pure; as swarm's raft member removal check)."""
    remaining = [m for m in members if m != target]
    if not remaining:
        return False
    return sum(1 for m in remaining if m in reachable) >= majority(len(remaining))

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
        # On a follower the store forwards the batch to the leader (pysyncobj's
        # apply_command over the encrypted Raft transport) and returns once it
        # is committed AND applied here, so the reply reads its own write.
        try:
            self._store.propose(actions)
        except StoreError as e:
            raise store_error(e) from None

    def _snap(self) -> st.Snapshot:
        """A snapshot holding every write acknowledged before this call, on
        any manager: a no-op is committed through the leader first (a read on
        a manager that cannot reach a majority fails, as in swarm)."""
        try:
            self._store.barrier()
        except StoreError as e:
            raise store_error(e) from None
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
        updater.with_defaults(spec)
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

    def update_service(self, req: cpb.UpdateServiceRequest) -> cpb.ServiceResponse:
        """Replace the spec (the client sends the whole new one). A changed
        task spec starts a rolling update, run by the leader's updater."""
        snap = self._snap()
        svc = self._service(snap, req.ref)
        if req.version and req.version != svc.meta.version:
            raise ApiError(grpc.StatusCode.ABORTED,
                           f"service {svc.spec.name} changed since it was read (version {req.version}, now "
                           f"{svc.meta.version}): run the update again")
        spec = pb.ServiceSpec()
        spec.CopyFrom(req.spec)
        if spec.name != svc.spec.name:
            raise ApiError(grpc.StatusCode.INVALID_ARGUMENT, "renaming a service is not supported")
        if spec.WhichOneof("mode") != svc.spec.WhichOneof("mode"):
            raise ApiError(grpc.StatusCode.INVALID_ARGUMENT,
                           f"service {svc.spec.name} is {svc.spec.WhichOneof('mode')}: the mode cannot be changed")
        try:
            validate.validate_service_spec(spec)
        except validate.InvalidSpec as e:
            raise ApiError(grpc.StatusCode.INVALID_ARGUMENT, str(e)) from None
        if spec.task != svc.spec.task:
            try:
                validate.check_schedulable(spec, snap)
            except validate.InvalidSpec as e:
                raise ApiError(grpc.StatusCode.FAILED_PRECONDITION, str(e)) from None
        updater.with_defaults(spec)
        try:
            prepare_service_networking(spec, snap, service_id=svc.id)
        except NetworkInputError as e:
            raise ApiError(e.code, str(e)) from None
        new = updater.updated_service(svc, spec, time.time())
        self._propose([st.put(new)])
        return cpb.ServiceResponse(service=self._snap().services.get(svc.id, new))

    def rollback_service(self, req: cpb.RollbackServiceRequest) -> cpb.ServiceResponse:
        snap = self._snap()
        svc = self._service(snap, req.ref)
        if not svc.HasField("previous_spec"):
            raise ApiError(grpc.StatusCode.FAILED_PRECONDITION,
                           f"service {svc.spec.name} has no previous spec to roll back to (it was never updated)")
        new = updater.rollback_service(svc, time.time(), "manually requested rollback")
        self._propose([st.put(new)])
        return cpb.ServiceResponse(service=self._snap().services.get(svc.id, new))

    def promote_service(self, req: cpb.PromoteServiceRequest) -> cpb.ServiceResponse:
        snap = self._snap()
        svc = self._service(snap, req.ref)
        try:
            new = updater.promoted_service(svc, time.time())
        except ValueError as e:
            raise ApiError(grpc.StatusCode.FAILED_PRECONDITION, str(e)) from None
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
                    agent_pb2.TaskLogsRequest(container_ids=list(info), follow=req.follow, tail=req.tail, timestamps=req.timestamps),
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
        nodes = [self._with_manager_view(n) for n in sorted(snap.nodes.values(), key=lambda n: (n.description.hostname, n.id))]
        leader_id = next((n.id for n in nodes if n.manager_status.leader), "")
        return cpb.ListNodesResponse(nodes=nodes, leader_id=leader_id)

    def _with_manager_view(self, node: pb.Node) -> pb.Node:
        """A copy of a manager's node with Leader / Reachable / Unreachable
        filled in from this manager's Raft view (not stored)."""
        if node.role != pb.NodeSpec.MANAGER:
            return node
        out = pb.Node()
        out.CopyFrom(node)
        ms = out.manager_status
        ms.leader = bool(ms.raft_addr) and ms.raft_addr == self._store.leader_addr()
        reachable = self._store.reachable()
        ms.reachability = (pb.ManagerStatus.REACHABLE if ms.raft_addr in reachable
                           else pb.ManagerStatus.UNREACHABLE)
        return out

    def get_node(self, req: cpb.GetNodeRequest) -> cpb.NodeResponse:
        return cpb.NodeResponse(node=self._with_manager_view(self._node(self._snap(), req.ref)))

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
        is_manager = role == "manager"
        if is_manager and not request.raft_addr:
            raise ApiError(grpc.StatusCode.INVALID_ARGUMENT, "a joining manager must give its Raft address")
        r = pb.NodeSpec.MANAGER if is_manager else pb.NodeSpec.WORKER
        node = pb.Node(
            id=node_id,
            role=r,
            spec=pb.NodeSpec(desired_role=r, availability=pb.NodeSpec.ACTIVE),
            description=pb.NodeDescription(hostname=request.hostname),
            status=pb.NodeStatus(state=pb.NodeStatus.UNKNOWN, addr=request.addr or peer_ip, timestamp=time.time(), message="joined"),
            api_addr=request.api_addr,
            raft_addr=request.raft_addr,
        )
        if is_manager:
            node.manager_status.raft_addr = request.raft_addr
            node.manager_status.api_addr = request.api_addr
            self.add_manager(node, create=True)
        else:
            self._propose([st.put(node, create=True)])
        # No read barrier here: after adding a second manager nothing commits
        # until that manager runs, and it starts only once this returns.
        snap = self._store.snapshot()
        return sorted(n.manager_status.api_addr for n in snap.nodes.values() if n.role == pb.NodeSpec.MANAGER)

    # ---- Raft membership (one change at a time, across managers) ----
    def _mark_membership(self, change: str) -> None:
        """Claim the cluster-wide membership-change marker (a versioned write
        on the Cluster object: two managers racing cannot both win)."""
        snap = self._snap()
        cluster = snap.cluster
        if cluster is None:
            raise ApiError(grpc.StatusCode.FAILED_PRECONDITION, "the cluster is not initialised")
        if cluster.membership_change and time.time() - cluster.membership_change_at < MEMBERSHIP_MARKER_TTL:
            raise ApiError(grpc.StatusCode.FAILED_PRECONDITION,
                           f"another manager membership change is in progress ({cluster.membership_change}); try again shortly")
        new = pb.Cluster()
        new.CopyFrom(cluster)
        new.membership_change = change
        new.membership_change_at = time.time()
        self._propose([st.put(new)])

    def _clear_membership(self, extra: list[spb.StoreAction] | None = None, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            cluster = self._store.snapshot().cluster
            new = pb.Cluster()
            new.CopyFrom(cluster)
            new.membership_change = ""
            new.membership_change_at = 0
            try:
                self._store.propose([st.put(new)] + list(extra or []), timeout=10)
                return
            except StoreError as e:
                if time.monotonic() > deadline:
                    raise store_error(e) from None
                time.sleep(0.2)

    def add_manager(self, node: pb.Node, create: bool) -> None:
        """Record `node` as a manager and add it to the Raft membership. The
        Raft change may only commit once the new manager runs (a cluster of one
        or two needs it for a majority), so the marker is cleared by a thread
        that waits for that commit."""
        addr = node.manager_status.raft_addr
        self._mark_membership(f"add {addr}")
        try:
            self._propose([st.put(node, create=create)])
            committed = self._store.change_membership("add", addr, wait_commit=False)
        except (ApiError, StoreError) as e:
            self._clear_membership()
            raise e if isinstance(e, ApiError) else store_error(e) from None
        if committed:
            self._clear_membership()
        else:
            threading.Thread(target=self._clear_membership, kwargs={"timeout": 120.0}, daemon=True,
                             name="membership-clear").start()

    def raft_peers(self) -> list[str]:
        return self._store.members()

    # ---- roles ----
    def change_role(self, req: cpb.ChangeRoleRequest) -> cpb.NodeResponse:
        if req.role not in (pb.NodeSpec.MANAGER, pb.NodeSpec.WORKER):
            raise ApiError(grpc.StatusCode.INVALID_ARGUMENT, f"unknown role {req.role}")
        snap = self._snap()
        node = self._node(snap, req.ref)
        name = node.description.hostname or node.id
        if req.role == pb.NodeSpec.MANAGER:
            if node.role == pb.NodeSpec.MANAGER:
                raise ApiError(grpc.StatusCode.FAILED_PRECONDITION, f"node {name} is already a manager")
            if node.status.state != pb.NodeStatus.READY:
                raise ApiError(grpc.StatusCode.FAILED_PRECONDITION, f"node {name} is not ready: a node must be up to be promoted")
            if not node.raft_addr:
                raise ApiError(grpc.StatusCode.FAILED_PRECONDITION, f"node {name} has not reported a Raft address yet; try again")
            # The node's agent sees desired_role in its session and asks for a
            # manager certificate (Dispatcher.RenewRole), which adds it to Raft.
            new = pb.Node()
            new.CopyFrom(node)
            new.spec.desired_role = pb.NodeSpec.MANAGER
            self._propose([st.put(new)])
            return cpb.NodeResponse(node=self._store.snapshot().nodes.get(node.id, new))
        # demotion
        if node.role != pb.NodeSpec.MANAGER:
            raise ApiError(grpc.StatusCode.FAILED_PRECONDITION, f"node {name} is already a worker")
        managers = [n for n in snap.nodes.values() if n.role == pb.NodeSpec.MANAGER]
        if len(managers) <= 1:
            raise ApiError(grpc.StatusCode.FAILED_PRECONDITION,
                           f"attempting to demote the last manager of the swarm ({name}): the swarm would have no manager left")
        addr = node.manager_status.raft_addr
        members = self._store.members()
        if not req.force and not can_remove_member(members, self._store.reachable(), addr):
            raise ApiError(grpc.StatusCode.FAILED_PRECONDITION,
                           f"can't demote {name}: removing it from the managers would leave the swarm without quorum "
                           f"({len(members)} managers, {len(self._store.reachable())} reachable). "
                           "Bring unreachable managers back first, or use --force")
        self.remove_manager(node)
        return cpb.NodeResponse(node=self._store.snapshot().nodes.get(node.id, node))

    def remove_manager(self, node: pb.Node) -> None:
        """Take `node` out of the Raft membership and record it as a worker."""
        addr = node.manager_status.raft_addr
        self._mark_membership(f"remove {addr}")
        try:
            if addr == self._store.self_addr and self._store.is_leader():
                # pysyncobj refuses to remove the leader: hand leadership over;
                # the removal below is then forwarded to the new leader.
                self._store.transfer_leadership()
            self._store.change_membership("remove", addr)
        except StoreError as e:
            self._clear_membership()
            raise store_error(e) from None
        cur = self._store.snapshot().nodes.get(node.id)
        extra: list[spb.StoreAction] = []
        if cur is not None:
            new = pb.Node()
            new.CopyFrom(cur)
            new.role = pb.NodeSpec.WORKER
            new.spec.desired_role = pb.NodeSpec.WORKER
            new.ClearField("manager_status")
            extra.append(st.put(new))
        self._clear_membership(extra)

    def renew_role(self, node_id: str, csr_pem: bytes) -> tuple[bytes, str, bytes, list[str]]:
        """Dispatcher.RenewRole: a certificate for the role the cluster wants
        the node to have; for a promotion also adds it to Raft.
        Returns (cert, role, raft secret, raft peers)."""
        snap = self._snap()
        node = snap.nodes.get(node_id)
        cluster = snap.cluster
        if node is None or cluster is None:
            raise ApiError(grpc.StatusCode.NOT_FOUND, f"node {node_id} is not a member of this cluster")
        want = node.spec.desired_role
        role = "manager" if want == pb.NodeSpec.MANAGER else "worker"
        try:
            cert = ca.sign_node_csr(cluster.root_ca, csr_pem, node_id, role, cluster.id, node.status.addr)
        except ca.CSRError as e:
            raise ApiError(grpc.StatusCode.INVALID_ARGUMENT, str(e)) from None
        if want == pb.NodeSpec.MANAGER:
            if node.role != pb.NodeSpec.MANAGER:
                new = pb.Node()
                new.CopyFrom(node)
                new.role = pb.NodeSpec.MANAGER
                new.manager_status.raft_addr = node.raft_addr
                new.manager_status.api_addr = node.api_addr
                self.add_manager(new, create=False)
            return cert, role, cluster.raft_secret, self._store.members()
        if node.role == pb.NodeSpec.MANAGER:
            raise ApiError(grpc.StatusCode.FAILED_PRECONDITION, "the node is still a Raft member; demote it first")
        return cert, role, b"", []
