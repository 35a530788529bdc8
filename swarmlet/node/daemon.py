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
from collections.abc import Iterator
from concurrent import futures
from dataclasses import asdict, dataclass, field

import grpc

from swarmlet import errors, rpc, tls
from swarmlet.api import agent_pb2_grpc, ca_pb2, ca_pb2_grpc, control_pb2_grpc, dispatcher_pb2_grpc
from swarmlet.api import control_pb2 as cpb
from swarmlet.api import objects_pb2 as pb
from swarmlet.core import allocator
from swarmlet.core import state as st
from swarmlet.ids import new_id
from swarmlet.manager import ca
from swarmlet.manager.control.routes import ROUTES

log = logging.getLogger("swarmlet.node.daemon")

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
    # Raft election timeout window and leader step-down (seconds); see
    # docs/operations.md ("Raft timing").
    election_timeout_min: float = 0.4
    election_timeout_max: float = 0.8
    leader_fallback_timeout: float = 1.5

    def raft_timings(self):
        from swarmlet.manager.store import RaftTimings

        t = RaftTimings(
            raft_min_timeout=self.election_timeout_min,
            raft_max_timeout=self.election_timeout_max,
            leader_fallback_timeout=self.leader_fallback_timeout,
        )
        t.validate()
        return t


@dataclass
class NodeState:
    """What the daemon remembers about its membership (node.json)."""

    node_id: str
    role: str
    cluster_id: str
    addr: str
    managers: list[str] = field(default_factory=list)
    # Raft addresses of the voting managers as last seen (managers only): the
    # partner list after a restart (pysyncobj's dump, once written, overrides it).
    raft_peers: list[str] = field(default_factory=list)

    def save(self, state_dir: str) -> None:
        path = os.path.join(state_dir, "node.json")
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(asdict(self), f)
        os.replace(tmp, path)

    @staticmethod
    def load(state_dir: str) -> NodeState | None:
        try:
            with open(os.path.join(state_dir, "node.json")) as f:
                return NodeState(**json.load(f))
        except FileNotFoundError:
            return None


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
            self._start_manager(raft_secret=self._read_raft_secret(), peers=node.raft_peers)
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

    def _start_manager(self, raft_secret: bytes, peers: list[str] | None = None) -> None:
        from swarmlet.manager.control.api import ControlAPI
        from swarmlet.manager.dispatcher import Dispatcher
        from swarmlet.manager.leader import LeaderLoop
        from swarmlet.manager.store import Store

        partners = [p for p in (peers or []) if p != self.raft_addr()]
        self.store = Store(self.raft_addr(), partners, self.cfg.state_dir, raft_secret, timings=self.cfg.raft_timings())
        self.control = ControlAPI(self.store, self._agent_channel)
        self.dispatcher = Dispatcher(self.store, renew_role=self.control.cluster.renew_role)
        self.dispatcher.start()
        self.leader_loop = LeaderLoop(self.store)
        self.leader_loop.start()
        threading.Thread(target=self._watch_members, args=(self.store,), name="raft-members", daemon=True).start()

    def _watch_members(self, store) -> None:
        """Keep node.json's raft_peers equal to the live membership, so that a
        restart before the first Raft snapshot still knows its partners."""
        while self.store is store and not self.stopped.is_set():
            try:
                members = store.members()
                with self._lock:
                    if self.node is not None and self.store is store and members != self.node.raft_peers:
                        self.node.raft_peers = members
                        self.node.save(self.cfg.state_dir)
            except Exception:
                log.exception("recording raft members")
            self.stopped.wait(1.0)

    def _agent_channel(self, addr: str) -> grpc.Channel:
        c = self.creds
        return grpc.secure_channel(addr, tls.channel_credentials(c.ca_pem, c.key_pem, c.cert_pem), options=tls.CHANNEL_OPTIONS)

    def _start_cluster_server(self) -> None:
        from swarmlet.agent.api import AgentServicer

        c = self.creds
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=64, thread_name_prefix="grpc"),
            options=tls.SERVER_OPTIONS,
            interceptors=[tls.ClientCertRequired()],
        )
        if self.executor is None:
            self._make_executor()
        agent_pb2_grpc.add_AgentServicer_to_server(AgentServicer(self.executor), server)
        if self.node.role == "manager":
            dispatcher_pb2_grpc.add_DispatcherServicer_to_server(self.dispatcher, server)
            ca_pb2_grpc.add_CAServicer_to_server(
                ca.CAServicer(lambda: self.store.snapshot().cluster, self._register_node, lambda: self.store.members()), server
            )
            server.add_secure_port(
                f"{self.addr}:{self.cfg.join_port}", tls.server_credentials(c.key_pem, c.cert_pem, c.ca_pem, False)
            )
        server.add_secure_port(f"{self.addr}:{self.cfg.api_port}", tls.server_credentials(c.key_pem, c.cert_pem, c.ca_pem, True))
        server.start()
        self.server = server

    def _register_node(self, node_id: str, role: str, request, peer_ip: str) -> list[str]:
        return self.control.cluster.register_node(node_id, role, request, peer_ip)

    def _make_executor(self) -> None:
        from swarmlet.agent.executor import Executor
        from swarmlet.agent.net.wiring import NetworkAgent

        network = NetworkAgent(self.addr)
        self.executor = Executor(self.cfg.docker_host, self.node.node_id, self._report, hostname=self.hostname, network=network)

    def _report(self, reports) -> None:
        s = self.session
        if s is not None:
            s.report(reports)

    def _start_agent(self) -> None:
        from swarmlet.agent.session import AgentSession

        if self.executor is None:
            self._make_executor()
        self.session = AgentSession(
            self.creds,
            self.node.managers,
            self.executor,
            self.addr,
            self.api_addr(),
            on_managers=self._managers_changed,
            raft_addr=self.raft_addr(),
            on_role=self._role_wanted,
        )
        self.executor.start()
        self.session.start()

    # ---- promotion / demotion ----
    def _role_wanted(self, desired_role: int) -> None:
        """Called by the session when the cluster wants another role for this
        node. Renewal runs on its own thread: it restarts the session."""
        threading.Thread(target=self._change_role, args=(desired_role,), name="role-change", daemon=True).start()

    def _change_role(self, desired_role: int) -> None:
        want = "manager" if desired_role == pb.NodeSpec.MANAGER else "worker"
        from swarmlet.api import dispatcher_pb2 as dpb

        deadline = time.monotonic() + 120
        key_pem = ca.new_node_key()
        csr = ca.make_csr(key_pem)
        resp = None
        while resp is None and time.monotonic() < deadline and not self.stopped.is_set():
            for addr in list(self.node.managers if self.node else []):
                channel = self._agent_channel(addr)
                try:
                    resp = dispatcher_pb2_grpc.DispatcherStub(channel).RenewRole(dpb.RenewRoleRequest(csr_pem=csr), timeout=30)
                    break
                except grpc.RpcError as e:
                    log.info("role renewal via %s: %s", addr, e.details())
                finally:
                    channel.close()
            if resp is None:
                self.stopped.wait(0.5)
        if resp is None:
            log.error("could not change role to %s: no manager answered", want)
            self._restart_session()
            return
        log.info("role changing to %s: saving the new identity and restarting the daemon process", resp.role)
        with self._lock:
            ident = tls.certificate_identity(resp.cert_pem)
            creds = tls.NodeCredentials(
                key_pem=key_pem,
                cert_pem=resp.cert_pem,
                ca_pem=self.creds.ca_pem,
                node_id=self.node.node_id,
                role=resp.role,
                cluster_id=ident.cluster_id,
            )
            if self.session is not None:
                self.session.stop()
                self.session = None
            if resp.role == "worker" and self.store is not None:
                store, self.store = self.store, None
                store.close()
                # Removed from Raft: its old log must never be replayed.
                shutil.rmtree(os.path.join(self.cfg.state_dir, "raft"), ignore_errors=True)
                self.node.raft_peers = []
            elif resp.role == "manager":
                shutil.rmtree(os.path.join(self.cfg.state_dir, "raft"), ignore_errors=True)
                self._write_raft_secret(resp.raft_secret)
                self.node.raft_peers = list(resp.raft_peers)
            self.node.role = resp.role
            creds.save(self._certs_dir())
            self.node.save(self.cfg.state_dir)
            # The state on disk now describes the new role; a process restart
            # resumes from it exactly as after a crash (the tested path), and the
            # executor adopts the running containers. Rebuilding the gRPC server,
            # Raft node and loops in place proved fragile (a Raft node re-created
            # on the same port in the same process never caught up).
            _reexec()

    def _restart_session(self) -> None:
        with self._lock:
            if self.session is not None:
                self.session.stop()
            self.session = None
            if self.node is not None:
                self._start_agent_session_only()

    def _start_agent_session_only(self) -> None:
        from swarmlet.agent.session import AgentSession

        self.session = AgentSession(
            self.creds,
            self.node.managers,
            self.executor,
            self.addr,
            self.api_addr(),
            on_managers=self._managers_changed,
            raft_addr=self.raft_addr(),
            on_role=self._role_wanted,
        )
        self.session.start()

    def _managers_changed(self, managers: list[str]) -> None:
        with self._lock:
            if self.node is not None and managers:
                self.node.managers = list(managers)
                self.node.save(self.cfg.state_dir)

    # ---- init / join / leave ----
    def init(self, req: cpb.InitRequest) -> cpb.InitResponse:
        if req.force_new_cluster:
            return self.force_new_cluster(req)
        with self._lock:
            if self.node is not None:
                raise errors.FailedPrecondition(
                    "This node is already part of a swarm. Use 'swarmlet leave' to leave this swarm and join another one."
                )
            try:
                allocator.parse_pool(req.default_address_pool, req.default_subnet_size)
            except allocator.AllocationError as e:
                raise errors.Invalid(str(e)) from None
            if req.advertise_addr:
                self._set_advertise(req.advertise_addr)
            self._check_ports_free([("join", self.cfg.join_port), ("raft", self.cfg.raft_port), ("api", self.cfg.api_port)])
            root = ca.create_root_ca()
            cluster_id = new_id()
            node_id = new_id()
            raft_secret = secrets.token_bytes(32)
            key_pem, cert_pem = ca.issue_local_certificate(root, node_id, "manager", cluster_id, self.addr)
            creds = tls.NodeCredentials(
                key_pem=key_pem, cert_pem=cert_pem, ca_pem=root.cert_pem, node_id=node_id, role="manager", cluster_id=cluster_id
            )
            self._write_raft_secret(raft_secret)
            self.creds = creds
            self.node = NodeState(
                node_id=node_id, role="manager", cluster_id=cluster_id, addr=self.addr, managers=[self.api_addr()]
            )
            self._start_manager(raft_secret)
            deadline = time.monotonic() + 10
            while not self.store.is_leader():
                if time.monotonic() > deadline:
                    raise errors.Internal("the new Raft node did not become leader")
                time.sleep(0.02)
            cluster = pb.Cluster(
                id=cluster_id,
                spec=pb.ClusterSpec(
                    heartbeat_period=0.5,
                    node_down_after=3.0,
                    task_history_limit=5,
                    default_address_pool=list(req.default_address_pool),
                    default_subnet_size=req.default_subnet_size,
                ),
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
            return cpb.InitResponse(
                node_id=node_id,
                cluster_id=cluster_id,
                worker_token=cluster.worker_token,
                manager_token=cluster.manager_token,
                api_addr=self.join_addr(),
            )

    def _check_ports_free(self, ports: list[tuple[str, int]]) -> None:
        """Refuse init/join up front when a port we need is taken, instead of
        failing half-way with state already written."""
        for what, port in ports:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    s.bind((self.addr, port))
                except OSError as e:
                    raise errors.FailedPrecondition(f"{what} port {self.addr}:{port} is not available: {e.strerror}") from None

    def _set_advertise(self, addr: str) -> None:
        try:
            socket.inet_aton(addr)
        except OSError:
            raise errors.Invalid(f"invalid advertise address {addr!r}: expected an IPv4 address") from None
        self.cfg.advertise_addr = addr

    def join(self, req: cpb.JoinRequest) -> cpb.JoinResponse:
        with self._lock:
            if self.node is not None:
                raise errors.FailedPrecondition(
                    "This node is already part of a swarm. Use 'swarmlet leave' to leave this swarm and join another one."
                )
            if req.advertise_addr:
                self._set_advertise(req.advertise_addr)
            self._check_ports_free([("api", self.cfg.api_port)])
            try:
                digest, _ = ca.parse_token(req.token)
            except ca.TokenError as e:
                raise errors.Invalid(str(e)) from None
            remote = req.remote_addr
            if ":" not in remote:
                remote = f"{remote}:{self.cfg.join_port}"
            try:
                ca_pem = tls.fetch_remote_ca(remote, digest, timeout=5.0)
            except tls.JoinError as e:
                raise errors.FailedPrecondition(str(e)) from None
            key_pem = ca.new_node_key()
            csr = ca.make_csr(key_pem)
            channel = grpc.secure_channel(remote, tls.channel_credentials(ca_pem), options=tls.CHANNEL_OPTIONS)
            try:
                resp = ca_pb2_grpc.CAStub(channel).IssueNodeCertificate(
                    ca_pb2.IssueNodeCertificateRequest(
                        token=req.token,
                        csr_pem=csr,
                        hostname=self.hostname,
                        addr=self.addr,
                        api_addr=self.api_addr(),
                        raft_addr=self.raft_addr(),
                    ),
                    timeout=30,
                )
            except grpc.RpcError as e:
                prefix = f"cannot reach manager at {remote}: " if e.code() == grpc.StatusCode.UNAVAILABLE else ""
                raise rpc.from_rpc_error(e, prefix) from None
            finally:
                channel.close()
            ident = tls.certificate_identity(resp.cert_pem)
            creds = tls.NodeCredentials(
                key_pem=key_pem,
                cert_pem=resp.cert_pem,
                ca_pem=resp.ca_cert_pem,
                node_id=resp.node_id,
                role=resp.role,
                cluster_id=ident.cluster_id,
            )
            managers = list(resp.managers) or [remote]
            self.creds = creds
            self.node = NodeState(
                node_id=resp.node_id,
                role=resp.role,
                cluster_id=ident.cluster_id,
                addr=self.addr,
                managers=managers,
                raft_peers=list(resp.raft_peers),
            )
            if resp.role == "manager":
                # Already a Raft member (the CA added it): start the store with
                # the current members as partners; the leader sends it the log
                # or a snapshot.
                self._write_raft_secret(resp.raft_secret)
                self._start_manager(resp.raft_secret, list(resp.raft_peers))
            creds.save(self._certs_dir())
            self.node.save(self.cfg.state_dir)
            self._start_cluster_server()
            self._start_agent()
            return cpb.JoinResponse(node_id=resp.node_id, role=resp.role)

    def leave(self, req: cpb.LeaveRequest) -> cpb.LeaveResponse:
        with self._lock:
            if self.node is None:
                raise errors.FailedPrecondition(NOT_IN_CLUSTER)
            if self.node.role == "manager" and not req.force:
                raise errors.FailedPrecondition(
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
                    if not self.executor.wait_idle(timeout=30):
                        log.warning("leave: containers still being removed after 30s")
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

    # ---- disaster recovery ----
    def restore(self, req: cpb.RestoreRequest) -> cpb.InitResponse:
        """Bring up a one-manager cluster on this (fresh) host from a backup."""
        from swarmlet.manager import backup as bk

        with self._lock:
            if self.node is not None:
                raise errors.FailedPrecondition(
                    "This node is already part of a swarm: restore a backup on a fresh host (or 'swarmlet leave --force' first)."
                )
            try:
                snap = bk.decode(req.data)
            except bk.BackupError as e:
                raise errors.Invalid(str(e)) from None
            if req.advertise_addr:
                self._set_advertise(req.advertise_addr)
            cluster = snap.cluster
            node_id = new_id()
            key_pem, cert_pem = ca.issue_local_certificate(cluster.root_ca, node_id, "manager", cluster.id, self.addr)
            self.creds = tls.NodeCredentials(
                key_pem=key_pem,
                cert_pem=cert_pem,
                ca_pem=cluster.root_ca.cert_pem,
                node_id=node_id,
                role="manager",
                cluster_id=cluster.id,
            )
            self.node = NodeState(
                node_id=node_id, role="manager", cluster_id=cluster.id, addr=self.addr, managers=[self.api_addr()]
            )
            try:
                self._bootstrap(snap, reason="restored from a backup")
            except Exception:
                self._shutdown_cluster(remove_containers=False)
                shutil.rmtree(os.path.join(self.cfg.state_dir, "raft"), ignore_errors=True)
                self.node = self.creds = None
                raise
            self.creds.save(self._certs_dir())
            self.node.save(self.cfg.state_dir)
            self._start_cluster_server()
            self._start_agent()
            return cpb.InitResponse(
                node_id=node_id,
                cluster_id=cluster.id,
                worker_token=cluster.worker_token,
                manager_token=cluster.manager_token,
                api_addr=self.join_addr(),
            )

    def force_new_cluster(self, req: cpb.InitRequest) -> cpb.InitResponse:
        """Recover a manager whose majority is gone for good: keep its state
        (services, tasks, nodes), drop every other manager from Raft and become
        a one-manager cluster that can be grown again."""
        with self._lock:
            if self.node is None or self.store is None:
                raise errors.FailedPrecondition(
                    "--force-new-cluster recovers a manager of an existing swarm: this node is not a manager"
                )
            snap = self.store.snapshot()
            if snap.cluster is None:
                raise errors.FailedPrecondition("this manager holds no cluster state to recover from")
            log.warning("forcing a new cluster from local state at version %d", snap.version)
            self._shutdown_cluster(remove_containers=False)
            shutil.rmtree(os.path.join(self.cfg.state_dir, "raft"), ignore_errors=True)
            self._bootstrap(snap, reason="removed by force-new-cluster")
            self.node.managers = [self.api_addr()]
            self.node.save(self.cfg.state_dir)
            self._start_cluster_server()
            self._start_agent()
            c = self.store.snapshot().cluster
            return cpb.InitResponse(
                node_id=self.node.node_id,
                cluster_id=c.id,
                worker_token=c.worker_token,
                manager_token=c.manager_token,
                api_addr=self.join_addr(),
            )

    def _bootstrap(self, snap: st.Snapshot, reason: str) -> None:
        """Start a fresh one-member Raft with a new secret (old managers can no
        longer talk to it) and write `snap` into it as ordinary replicated
        puts, with this node as the only manager."""
        from swarmlet.manager import backup as bk

        secret = secrets.token_bytes(32)
        self._write_raft_secret(secret)
        self.node.raft_peers = [self.raft_addr()]
        self._start_manager(secret, [])
        deadline = time.monotonic() + 10
        while not self.store.is_leader():
            if time.monotonic() > deadline:
                raise errors.Internal("the new Raft node did not become leader")
            time.sleep(0.02)
        me = pb.Node(
            id=self.node.node_id,
            role=pb.NodeSpec.MANAGER,
            spec=pb.NodeSpec(desired_role=pb.NodeSpec.MANAGER, availability=pb.NodeSpec.ACTIVE),
            description=pb.NodeDescription(hostname=self.hostname),
            status=pb.NodeStatus(state=pb.NodeStatus.UNKNOWN, addr=self.addr, timestamp=time.time()),
            manager_status=pb.ManagerStatus(raft_addr=self.raft_addr(), api_addr=self.api_addr()),
            api_addr=self.api_addr(),
            raft_addr=self.raft_addr(),
        )
        for chunk in bk.bootstrap_batches(snap, me, secret, reason):
            self.store.propose(chunk, timeout=30)

    def info(self) -> cpb.InfoResponse:
        if self.node is None:
            return cpb.InfoResponse(state="inactive", docker_host=self.cfg.docker_host, addr=self.addr)
        r = cpb.InfoResponse(
            state="active",
            node_id=self.node.node_id,
            role=self.node.role,
            cluster_id=self.node.cluster_id,
            addr=self.addr,
            managers=self.node.managers,
            docker_host=self.cfg.docker_host,
        )
        if self.store is not None:
            snap = self.store.snapshot()
            r.is_leader = self.store.is_leader()
            r.nodes = len(snap.nodes)
            r.managers_count = sum(1 for n in snap.nodes.values() if n.role == pb.NodeSpec.MANAGER)
            r.services = len(snap.services)
            r.tasks = len(snap.tasks)
            r.raft_status = json.dumps(self.store.status(), default=str)
            r.state_digest = self.store.state_digest()
            r.store_version = snap.version
        return r

    def manager_control(self):
        if self.node is None:
            raise errors.FailedPrecondition(NOT_IN_CLUSTER)
        if self.control is None:
            raise errors.FailedPrecondition(MANAGER_ONLY)
        return self.control

    def stop(self) -> None:
        """Daemon shutdown: containers keep running (a restart adopts them)."""
        with self._lock:
            self._shutdown_cluster(remove_containers=False)
        self.stopped.set()


def _reexec() -> None:
    """Replace this process with a fresh daemon with the same arguments (same
    pid: supervisors and the testbed keep tracking it)."""
    import sys

    for h in logging.getLogger().handlers:
        h.flush()
    argv = sys.argv
    if argv and argv[0].endswith("__main__.py"):
        args = [sys.executable, "-m", "swarmlet", *argv[1:]]
    else:
        args = [sys.executable, *argv]
    os.execv(sys.executable, args)


class LocalControl(control_pb2_grpc.ControlServicer):
    """The unix-socket API: membership handled by the daemon itself, cluster
    operations handed to the manager's control API (manager.control.ROUTES
    names the method behind each RPC)."""

    def __init__(self, daemon: Daemon) -> None:
        self.d = daemon

    @rpc.edge
    def Init(self, request, context):
        return self.d.init(request)

    @rpc.edge
    def Join(self, request, context):
        return self.d.join(request)

    @rpc.edge
    def Leave(self, request, context):
        return self.d.leave(request)

    @rpc.edge
    def Info(self, request, context):
        return self.d.info()

    @rpc.edge
    def JoinToken(self, request, context):
        return self.d.manager_control().cluster.join_token(request, self.d.join_addr())

    @rpc.edge
    def Restore(self, request, context):
        return self.d.restore(request)

    @rpc.edge
    def ServiceLogs(self, request, context) -> Iterator[cpb.ServiceLogLine]:
        yield from self.d.manager_control().logs.service_logs(request, context)


def _routed(rpc_name: str):
    """A Control RPC answered by the manager's control API."""

    @rpc.edge
    def handler(self: LocalControl, request, context):
        return self.d.manager_control().handler(rpc_name)(request)

    handler.__name__ = rpc_name
    return handler


for _name in ROUTES:
    setattr(LocalControl, _name, _routed(_name))


def _socket_answers(path: str) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        try:
            s.connect(path)
            return True
        except OSError:
            return False


def run_daemon(cfg: DaemonConfig) -> int:
    logging.basicConfig(
        level=getattr(logging, cfg.log_level.upper(), logging.INFO), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("pysyncobj").setLevel(logging.WARNING)
    if not cfg.advertise_addr:
        from swarmlet.node.addresses import default_advertise_addr

        cfg.advertise_addr = default_advertise_addr()
    daemon = Daemon(cfg)
    try:
        daemon.resume()
    except errors.FailedPrecondition as e:
        # e.g. damaged Raft files (manager/raftlog.py): the message says what
        # and how to recover; a traceback would only hide it.
        log.critical("%s", e)
        return 1
    sock_dir = os.path.dirname(cfg.socket)
    if sock_dir:
        os.makedirs(sock_dir, exist_ok=True)
    if os.path.exists(cfg.socket):
        if _socket_answers(cfg.socket):
            log.error("another swarmlet daemon is already listening on unix://%s", cfg.socket)
            return 1
        os.unlink(cfg.socket)  # left over from a daemon that died
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
