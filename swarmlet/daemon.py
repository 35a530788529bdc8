"""The swarmlet daemon: one per host. It always runs the local API (unix socket)
and, once the host is part of a cluster, the agent; on managers also the store,
CA, dispatcher and leader loop.

State on disk (state_dir, root only):
  node.json      node id, role, cluster id, manager addresses
  certs/         node key, node certificate, root CA certificate
  raft/          pysyncobj journal and dump; raft_secret (managers only)
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import signal
import socket
import threading
import time
from concurrent import futures
from dataclasses import asdict, dataclass, field
from typing import Iterator

import grpc

from swarmlet import tls
from swarmlet.api import ca_pb2, ca_pb2_grpc
from swarmlet.api import agent_pb2_grpc
from swarmlet.api import control_pb2 as cpb
from swarmlet.api import control_pb2_grpc
from swarmlet.api import dispatcher_pb2_grpc
from swarmlet.api import objects_pb2 as pb
from swarmlet.manager import allocator
from swarmlet.manager import ca
from swarmlet.manager import state as st

log = logging.getLogger("swarmlet.daemon")

MANAGER_ONLY = (
    "This node is not a swarm manager. Worker nodes can't be used to view or modify cluster state. "
    "Please run this command on a manager node."
)
NOT_IN_CLUSTER = "This node is not part of a swarm: run 'swarmlet init' or 'swarmlet join' first."


@dataclass
class DaemonConfig:
    state_dir: str = "/var/lib/swarmlet"
    socket: str = "/run/swarmlet/swarmlet.sock"
    docker_host: str = "unix:///var/run/docker.sock"
    advertise_addr: str = ""
    join_port: int = 4242
    raft_port: int = 4243
    api_port: int = 4244
    log_level: str = "info"
    hostname: str = ""


@dataclass
class NodeState:
    """What the daemon remembers about its membership (node.json)."""

    node_id: str
    role: str
    cluster_id: str
    addr: str
    managers: list[str] = field(default_factory=list)

    def save(self, state_dir: str) -> None:
        path = os.path.join(state_dir, "node.json")
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(asdict(self), f)
        os.replace(tmp, path)

    @staticmethod
    def load(state_dir: str) -> "NodeState | None":
        try:
            with open(os.path.join(state_dir, "node.json")) as f:
                return NodeState(**json.load(f))
        except FileNotFoundError:
            return None


class ControlError(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


def _abort(context: grpc.ServicerContext, e: Exception) -> None:
    from swarmlet.manager.controlapi import ApiError

    if isinstance(e, (ApiError, ControlError)):
        context.abort(e.code, str(e))
    raise e


class Daemon:
    def __init__(self, cfg: DaemonConfig) -> None:
        self.cfg = cfg
        self.hostname = cfg.hostname or socket.gethostname()
        os.makedirs(cfg.state_dir, mode=0o700, exist_ok=True)
        self._lock = threading.RLock()
        self.node: NodeState | None = None
        self.creds: tls.NodeCredentials | None = None
        self.store = None
        self.dispatcher = None
        self.leader_loop = None
        self.control = None
        self.executor = None
        self.session = None
        self.server: grpc.Server | None = None
        self.stopped = threading.Event()

    # ---- addresses ----
    @property
    def addr(self) -> str:
        return self.cfg.advertise_addr

    def api_addr(self) -> str:
        return f"{self.addr}:{self.cfg.api_port}"

    def join_addr(self) -> str:
        return f"{self.addr}:{self.cfg.join_port}"

    def raft_addr(self) -> str:
        return f"{self.addr}:{self.cfg.raft_port}"

    def _certs_dir(self) -> str:
        return os.path.join(self.cfg.state_dir, "certs")

    # ---- startup ----
    def resume(self) -> None:
        """Rejoin the cluster this host belonged to before a restart."""
        node = NodeState.load(self.cfg.state_dir)
        creds = tls.NodeCredentials.load(self._certs_dir())
        if node is None or creds is None:
            return
        self.node, self.creds = node, creds
        log.info("resuming as %s node %s of cluster %s", node.role, node.node_id, node.cluster_id)
        if node.role == "manager":
            self._start_manager(raft_secret=self._read_raft_secret())
        self._start_cluster_server()
        self._start_agent()

    def _read_raft_secret(self) -> bytes:
        with open(os.path.join(self.cfg.state_dir, "raft", "raft_secret"), "rb") as f:
            return f.read()

    def _write_raft_secret(self, secret: bytes) -> None:
        d = os.path.join(self.cfg.state_dir, "raft")
        os.makedirs(d, mode=0o700, exist_ok=True)
        path = os.path.join(d, "raft_secret")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(secret)

    def _start_manager(self, raft_secret: bytes) -> None:
        from swarmlet.manager.controlapi import ClusterControl
        from swarmlet.manager.dispatcher import Dispatcher
        from swarmlet.manager.leader import LeaderLoop
        from swarmlet.manager.store import Store

        self.store = Store(self.raft_addr(), [], self.cfg.state_dir, raft_secret)
        self.dispatcher = Dispatcher(self.store)
        self.dispatcher.start()
        self.leader_loop = LeaderLoop(self.store)
        self.leader_loop.start()
        self.control = ClusterControl(self.store, self._agent_channel, self.node.node_id)

    def _agent_channel(self, addr: str) -> grpc.Channel:
        c = self.creds
        return grpc.secure_channel(addr, tls.channel_credentials(c.ca_pem, c.key_pem, c.cert_pem), options=tls.CHANNEL_OPTIONS)

    def _start_cluster_server(self) -> None:
        from swarmlet.agent.api import AgentServicer

        c = self.creds
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=64, thread_name_prefix="grpc"), options=tls.SERVER_OPTIONS,
                             interceptors=[tls.ClientCertRequired()])
        if self.executor is None:
            self._make_executor()
        agent_pb2_grpc.add_AgentServicer_to_server(AgentServicer(self.executor), server)
        if self.node.role == "manager":
            dispatcher_pb2_grpc.add_DispatcherServicer_to_server(self.dispatcher, server)
            ca_pb2_grpc.add_CAServicer_to_server(ca.CAServicer(lambda: self.store.snapshot().cluster, self._register_node), server)
            server.add_secure_port(f"{self.addr}:{self.cfg.join_port}", tls.server_credentials(c.key_pem, c.cert_pem, c.ca_pem, False))
        server.add_secure_port(f"{self.addr}:{self.cfg.api_port}", tls.server_credentials(c.key_pem, c.cert_pem, c.ca_pem, True))
        server.start()
        self.server = server

    def _register_node(self, node_id: str, role: str, request, peer_ip: str) -> list[str]:
        return self.control.register_node(node_id, role, request, peer_ip)

    def _make_executor(self) -> None:
        from swarmlet.agent.executor import Executor
        from swarmlet.agent.network import NetworkAgent

        network = NetworkAgent(self.addr)
        self.executor = Executor(self.cfg.docker_host, self.node.node_id, self._report, hostname=self.hostname,
                                 network=network)

    def _report(self, reports) -> None:
        s = self.session
        if s is not None:
            s.report(reports)

    def _start_agent(self) -> None:
        from swarmlet.agent.session import AgentSession

        if self.executor is None:
            self._make_executor()
        self.session = AgentSession(self.creds, self.node.managers, self.executor, self.addr, self.api_addr(),
                                    on_managers=self._managers_changed)
        self.executor.start()
        self.session.start()

    def _managers_changed(self, managers: list[str]) -> None:
        with self._lock:
            if self.node is not None and managers:
                self.node.managers = list(managers)
                self.node.save(self.cfg.state_dir)

    # ---- init / join / leave ----
    def init(self, req: cpb.InitRequest) -> cpb.InitResponse:
        with self._lock:
            if self.node is not None:
                raise ControlError(grpc.StatusCode.FAILED_PRECONDITION,
                                   "This node is already part of a swarm. Use 'swarmlet leave' to leave this swarm and join another one.")
            try:
                allocator.parse_pool(req.default_address_pool, req.default_subnet_size)
            except allocator.AllocationError as e:
                raise ControlError(grpc.StatusCode.INVALID_ARGUMENT, str(e)) from None
            if req.advertise_addr:
                self._set_advertise(req.advertise_addr)
            root = ca.create_root_ca()
            cluster_id = ca.new_node_id()
            node_id = ca.new_node_id()
            raft_secret = secrets.token_bytes(32)
            key_pem, cert_pem = ca.issue_local_certificate(root, node_id, "manager", cluster_id, self.addr)
            creds = tls.NodeCredentials(key_pem=key_pem, cert_pem=cert_pem, ca_pem=root.cert_pem, node_id=node_id,
                                        role="manager", cluster_id=cluster_id)
            self._write_raft_secret(raft_secret)
            self.creds = creds
            self.node = NodeState(node_id=node_id, role="manager", cluster_id=cluster_id, addr=self.addr, managers=[self.api_addr()])
            self._start_manager(raft_secret)
            deadline = time.monotonic() + 10
            while not self.store.is_leader():
                if time.monotonic() > deadline:
                    raise ControlError(grpc.StatusCode.INTERNAL, "the new Raft node did not become leader")
                time.sleep(0.02)
            cluster = pb.Cluster(
                id=cluster_id,
                spec=pb.ClusterSpec(heartbeat_period=0.5, node_down_after=3.0, task_history_limit=5,
                                    default_address_pool=list(req.default_address_pool),
                                    default_subnet_size=req.default_subnet_size),
                root_ca=root,
                worker_token=ca.new_join_token(root.digest),
                manager_token=ca.new_join_token(root.digest),
                raft_secret=raft_secret,
            )
            me = pb.Node(
                id=node_id,
                role=pb.NodeSpec.MANAGER,
                spec=pb.NodeSpec(desired_role=pb.NodeSpec.MANAGER, availability=pb.NodeSpec.ACTIVE),
                description=pb.NodeDescription(hostname=self.hostname),
                status=pb.NodeStatus(state=pb.NodeStatus.UNKNOWN, addr=self.addr, timestamp=time.time()),
                manager_status=pb.ManagerStatus(raft_addr=self.raft_addr(), api_addr=self.api_addr()),
                api_addr=self.api_addr(),
            )
            self.store.propose([st.put(cluster, create=True), st.put(me, create=True)])
            # Only now is the membership durable: write it last so a failed
            # init leaves nothing behind.
            creds.save(self._certs_dir())
            self.node.save(self.cfg.state_dir)
            self._start_cluster_server()
            self._start_agent()
            return cpb.InitResponse(node_id=node_id, cluster_id=cluster_id, worker_token=cluster.worker_token,
                                    manager_token=cluster.manager_token, api_addr=self.join_addr())

    def _set_advertise(self, addr: str) -> None:
        try:
            socket.inet_aton(addr)
        except OSError:
            raise ControlError(grpc.StatusCode.INVALID_ARGUMENT, f"invalid advertise address {addr!r}: expected an IPv4 address") from None
        self.cfg.advertise_addr = addr

    def join(self, req: cpb.JoinRequest) -> cpb.JoinResponse:
        with self._lock:
            if self.node is not None:
                raise ControlError(grpc.StatusCode.FAILED_PRECONDITION,
                                   "This node is already part of a swarm. Use 'swarmlet leave' to leave this swarm and join another one.")
            if req.advertise_addr:
                self._set_advertise(req.advertise_addr)
            try:
                digest, _ = ca.parse_token(req.token)
            except ca.TokenError as e:
                raise ControlError(grpc.StatusCode.INVALID_ARGUMENT, str(e)) from None
            remote = req.remote_addr
            if ":" not in remote:
                remote = f"{remote}:{self.cfg.join_port}"
            try:
                ca_pem = tls.fetch_remote_ca(remote, digest, timeout=5.0)
            except tls.JoinError as e:
                raise ControlError(grpc.StatusCode.FAILED_PRECONDITION, str(e)) from None
            key_pem = ca.new_node_key()
            csr = ca.make_csr(key_pem)
            channel = grpc.secure_channel(remote, tls.channel_credentials(ca_pem), options=tls.CHANNEL_OPTIONS)
            try:
                resp = ca_pb2_grpc.CAStub(channel).IssueNodeCertificate(
                    ca_pb2.IssueNodeCertificateRequest(token=req.token, csr_pem=csr, hostname=self.hostname, addr=self.addr,
                                                       api_addr=self.api_addr()),
                    timeout=10,
                )
            except grpc.RpcError as e:
                code = e.code()
                if code == grpc.StatusCode.UNAVAILABLE:
                    raise ControlError(code, f"cannot reach manager at {remote}: {e.details()}") from None
                raise ControlError(code, e.details()) from None
            finally:
                channel.close()
            ident = tls.certificate_identity(resp.cert_pem)
            creds = tls.NodeCredentials(key_pem=key_pem, cert_pem=resp.cert_pem, ca_pem=resp.ca_cert_pem, node_id=resp.node_id,
                                        role=resp.role, cluster_id=ident.cluster_id)
            managers = list(resp.managers) or [remote]
            self.creds = creds
            self.node = NodeState(node_id=resp.node_id, role=resp.role, cluster_id=ident.cluster_id, addr=self.addr, managers=managers)
            creds.save(self._certs_dir())
            self.node.save(self.cfg.state_dir)
            self._start_cluster_server()
            self._start_agent()
            return cpb.JoinResponse(node_id=resp.node_id, role=resp.role)

    def leave(self, req: cpb.LeaveRequest) -> cpb.LeaveResponse:
        with self._lock:
            if self.node is None:
                raise ControlError(grpc.StatusCode.FAILED_PRECONDITION, NOT_IN_CLUSTER)
            if self.node.role == "manager" and not req.force:
                raise ControlError(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    "You are attempting to leave the swarm on a node that is participating as a manager. "
                    "Removing the last manager erases all current state of the swarm. Use `--force` to ignore this message.",
                )
            self._shutdown_cluster(remove_containers=True)
            for sub in ("node.json", "certs", "raft"):
                path = os.path.join(self.cfg.state_dir, sub)
                if os.path.isdir(path):
                    shutil.rmtree(path, ignore_errors=True)
                elif os.path.exists(path):
                    os.unlink(path)
            self.node = None
            self.creds = None
            return cpb.LeaveResponse()

    def _shutdown_cluster(self, remove_containers: bool) -> None:
        if self.session is not None:
            self.session.stop()
            self.session = None
        if self.executor is not None:
            if remove_containers:
                try:
                    self.executor.converge([])
                    self.executor.wait_idle(timeout=30) if hasattr(self.executor, "wait_idle") else time.sleep(1)
                except Exception:
                    log.exception("removing containers on leave")
            self.executor.stop()
            self.executor = None
        if self.server is not None:
            self.server.stop(grace=0.5)
            self.server = None
        for part in (self.leader_loop, self.dispatcher):
            if part is not None:
                part.stop()
        self.leader_loop = self.dispatcher = self.control = None
        if self.store is not None:
            self.store.close()
            self.store = None

    def info(self) -> cpb.InfoResponse:
        if self.node is None:
            return cpb.InfoResponse(state="inactive", docker_host=self.cfg.docker_host, addr=self.addr)
        r = cpb.InfoResponse(state="active", node_id=self.node.node_id, role=self.node.role, cluster_id=self.node.cluster_id,
                             addr=self.addr, managers=self.node.managers, docker_host=self.cfg.docker_host)
        if self.store is not None:
            snap = self.store.snapshot()
            r.is_leader = self.store.is_leader()
            r.nodes = len(snap.nodes)
            r.managers_count = sum(1 for n in snap.nodes.values() if n.role == pb.NodeSpec.MANAGER)
            r.services = len(snap.services)
            r.tasks = len(snap.tasks)
            r.raft_status = json.dumps(self.store.status(), default=str)
        return r

    def manager_control(self):
        if self.node is None:
            raise ControlError(grpc.StatusCode.FAILED_PRECONDITION, NOT_IN_CLUSTER)
        if self.control is None:
            raise ControlError(grpc.StatusCode.FAILED_PRECONDITION, MANAGER_ONLY)
        return self.control

    def stop(self) -> None:
        """Daemon shutdown: containers keep running (a restart adopts them)."""
        with self._lock:
            self._shutdown_cluster(remove_containers=False)
        self.stopped.set()


class LocalControl(control_pb2_grpc.ControlServicer):
    """The unix-socket API: membership handled by the daemon itself, cluster
    operations handed to the manager components."""

    def __init__(self, daemon: Daemon) -> None:
        self.d = daemon

    def _call(self, context, fn, *args):
        try:
            return fn(*args)
        except Exception as e:
            _abort(context, e)

    def Init(self, request, context):
        return self._call(context, self.d.init, request)

    def Join(self, request, context):
        return self._call(context, self.d.join, request)

    def Leave(self, request, context):
        return self._call(context, self.d.leave, request)

    def Info(self, request, context):
        return self._call(context, self.d.info)

    def JoinToken(self, request, context):
        return self._call(context, lambda: self.d.manager_control().join_token(request, self.d.join_addr()))

    def _manager(self, context, method: str, request):
        return self._call(context, lambda: getattr(self.d.manager_control(), method)(request))

    def CreateService(self, request, context):
        return self._manager(context, "create_service", request)

    def GetService(self, request, context):
        return self._manager(context, "get_service", request)

    def ListServices(self, request, context):
        return self._manager(context, "list_services", request)

    def ScaleService(self, request, context):
        return self._manager(context, "scale_service", request)

    def RemoveService(self, request, context):
        return self._manager(context, "remove_service", request)

    def ListTasks(self, request, context):
        return self._manager(context, "list_tasks", request)

    def ListNodes(self, request, context):
        return self._manager(context, "list_nodes", request)

    def GetNode(self, request, context):
        return self._manager(context, "get_node", request)

    def UpdateNode(self, request, context):
        return self._manager(context, "update_node", request)

    def RemoveNode(self, request, context):
        return self._manager(context, "remove_node", request)

    def CreateNetwork(self, request, context):
        return self._manager(context, "create_network", request)

    def GetNetwork(self, request, context):
        return self._manager(context, "get_network", request)

    def ListNetworks(self, request, context):
        return self._manager(context, "list_networks", request)

    def RemoveNetwork(self, request, context):
        return self._manager(context, "remove_network", request)

    def ServiceLogs(self, request, context) -> Iterator[cpb.ServiceLogLine]:
        try:
            control = self.d.manager_control()
            yield from control.service_logs(request, context)
        except Exception as e:
            _abort(context, e)


def run_daemon(cfg: DaemonConfig) -> int:
    logging.basicConfig(level=getattr(logging, cfg.log_level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("pysyncobj").setLevel(logging.WARNING)
    if not cfg.advertise_addr:
        from swarmlet.netutil import default_advertise_addr

        cfg.advertise_addr = default_advertise_addr()
    daemon = Daemon(cfg)
    daemon.resume()
    sock_dir = os.path.dirname(cfg.socket)
    if sock_dir:
        os.makedirs(sock_dir, exist_ok=True)
    if os.path.exists(cfg.socket):
        os.unlink(cfg.socket)
    local = grpc.server(futures.ThreadPoolExecutor(max_workers=16, thread_name_prefix="local"))
    control_pb2_grpc.add_ControlServicer_to_server(LocalControl(daemon), local)
    local.add_insecure_port(f"unix://{cfg.socket}")
    old_umask = os.umask(0o077)  # the socket is the CLI's only credential: root only
    try:
        local.start()
    finally:
        os.umask(old_umask)
    log.info("swarmlet daemon listening on unix://%s (advertise %s)", cfg.socket, cfg.advertise_addr)

    def on_signal(signum, frame):
        daemon.stopped.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    daemon.stopped.wait()
    local.stop(grace=0.5)
    daemon.stop()
    return 0
