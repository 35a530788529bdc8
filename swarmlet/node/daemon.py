"""The swarmlet daemon, one per host: the composition root.

It builds the parts and wires them together; what they do lives elsewhere:
membership (init/join/leave/restore/resume) in membership.py, role changes
in roles.py, the CLI's unix-socket API in localapi.py, on-disk files in
files.py, configuration in config.py, addresses in addresses.py.

Parts: every node runs the local API and, once in a cluster, its gRPC server
(agent API on the mTLS port) and the agent (executor + session); a manager also
runs the Raft store, the control API, the dispatcher, the leader loop and the
CA (join port).
"""

from __future__ import annotations

import json
import logging
import signal
import threading
from concurrent import futures
from types import FrameType

import grpc

from swarmlet import errors, tls
from swarmlet.agent.api import AgentServicer
from swarmlet.agent.executor import Executor
from swarmlet.agent.net.wiring import NetworkAgent
from swarmlet.agent.runtime.docker import DockerRuntime
from swarmlet.agent.session import AgentSession
from swarmlet.api import agent_pb2_grpc, ca_pb2_grpc, dispatcher_pb2_grpc
from swarmlet.api import control_pb2 as cpb
from swarmlet.api import dispatcher_pb2 as dpb
from swarmlet.api import objects_pb2 as pb
from swarmlet.manager import ca_servicer
from swarmlet.manager.control.api import ControlAPI
from swarmlet.manager.dispatcher import Dispatcher
from swarmlet.manager.leader import LeaderLoop
from swarmlet.manager.membership_repair import MembershipRepair
from swarmlet.manager.store import Store
from swarmlet.node import localapi
from swarmlet.node.addresses import Advertised
from swarmlet.node.config import ConfigError, DaemonConfig, parse_election_timeout
from swarmlet.node.files import NodeFiles, NodeState
from swarmlet.node.membership import NOT_IN_CLUSTER, Membership
from swarmlet.node.roles import RoleChanger

# What the `swarmlet daemon` command uses (the CLI may import this module only).
__all__ = ["ConfigError", "Daemon", "DaemonConfig", "parse_election_timeout", "run_daemon"]

log = logging.getLogger("swarmlet.node.daemon")

MANAGER_ONLY = (
    "This node is not a swarm manager. Worker nodes can't be used to view or modify cluster state. "
    "Please run this command on a manager node."
)
# Threads of the cluster-facing server: agent sessions hold one each.
SERVER_WORKERS = 64
# How long leave waits for the executor to remove the containers.
LEAVE_DRAIN_TIMEOUT = 30.0
# How often the live Raft membership is copied into node.json.
MEMBERS_RECORD_PERIOD = 1.0


class Daemon:
    def __init__(self, cfg: DaemonConfig) -> None:
        self.cfg = cfg.validated()
        self.files = NodeFiles(self.cfg.state_dir)
        self.stopped = threading.Event()
        self.store: Store | None = None
        self.control: ControlAPI | None = None
        self.dispatcher: Dispatcher | None = None
        self.leader_loop: LeaderLoop | None = None
        self.membership_repair: MembershipRepair | None = None
        self.server: grpc.Server | None = None
        self.executor: Executor | None = None
        self.session: AgentSession | None = None
        self.membership = Membership(self.cfg, self.files, self)
        self.roles = RoleChanger(self.membership, self, self.stopped)

    # ---- the parts membership starts and stops (membership.ClusterParts) ----
    def start_manager(self, addrs: Advertised, raft_secret: bytes, peers: list[str]) -> Store:
        partners = [p for p in peers if p != addrs.raft]
        self.files.check_raft_state()
        store = Store(addrs.raft, partners, self.cfg.state_dir, raft_secret, timings=self.cfg.raft_timings())
        self.files.raft_started()
        control = ControlAPI(store, self.agent_channel)
        dispatcher = Dispatcher(store, renew_role=control.cluster.renew_role)
        leader_loop = LeaderLoop(store)
        self.store, self.control, self.dispatcher, self.leader_loop = store, control, dispatcher, leader_loop
        self.membership_repair = MembershipRepair(store, control.cluster)
        dispatcher.start()
        leader_loop.start()
        self.membership_repair.start()
        threading.Thread(target=self._record_members, args=(store,), name="raft-members", daemon=True).start()
        return store

    def start_services(self, addrs: Advertised, node: NodeState, creds: tls.NodeCredentials) -> None:
        executor = Executor(
            DockerRuntime(self.cfg.docker_host),
            node.node_id,
            self._report,
            hostname=self.cfg.hostname,
            network=NetworkAgent(addrs.ip),
        )
        self.executor = executor
        self.server = self._cluster_server(addrs, node, creds, executor)
        executor.start()
        self._start_session(addrs, node, creds, executor)

    def shutdown(self, remove_containers: bool) -> None:
        self.stop_session()
        if self.executor is not None:
            if remove_containers:
                try:
                    self.executor.converge([])
                    if not self.executor.wait_idle(timeout=LEAVE_DRAIN_TIMEOUT):
                        log.warning("leave: containers still being removed after %.0fs", LEAVE_DRAIN_TIMEOUT)
                except Exception:
                    log.exception("removing containers on leave")
            self.executor.stop()
            self.executor = None
        if self.server is not None:
            self.server.stop(grace=0.5)
            self.server = None
        if self.leader_loop is not None:
            self.leader_loop.stop()
        if self.dispatcher is not None:
            self.dispatcher.stop()
        if self.membership_repair is not None:
            self.membership_repair.stop()
            self.membership_repair = None
        self.leader_loop = self.dispatcher = self.control = None
        self.close_store()

    # ---- what role changes need (roles.RoleParts) ----
    def agent_channel(self, addr: str) -> grpc.Channel:
        """An mTLS channel to another node's API port, as this node."""
        creds = self.membership.creds
        if creds is None:
            raise errors.FailedPrecondition(NOT_IN_CLUSTER)
        return grpc.secure_channel(addr, creds.channel_credentials(), options=tls.CHANNEL_OPTIONS)

    def stop_session(self) -> None:
        if self.session is not None:
            self.session.stop()
            self.session = None

    def restart_session(self) -> None:
        with self.membership.lock:
            self.stop_session()
            m = self.membership
            if m.node is not None and m.creds is not None and self.executor is not None:
                self._start_session(m.addrs, m.node, m.creds, self.executor)

    def close_store(self) -> None:
        if self.store is not None:
            store, self.store = self.store, None
            store.close()

    # ---- the local API's view (localapi.LocalNode) ----
    def info(self) -> cpb.InfoResponse:
        node, addr = self.membership.node, self.membership.addrs.ip
        if node is None:
            return cpb.InfoResponse(state="inactive", docker_host=self.cfg.docker_host, addr=addr)
        r = cpb.InfoResponse(
            state="active",
            node_id=node.node_id,
            role=node.role,
            cluster_id=node.cluster_id,
            addr=addr,
            managers=node.managers,
            docker_host=self.cfg.docker_host,
        )
        store = self.store
        if store is not None:
            snap = store.snapshot()
            r.is_leader = store.is_leader()
            r.nodes = len(snap.nodes)
            r.managers_count = sum(1 for n in snap.nodes.values() if n.role == pb.NodeSpec.MANAGER)
            r.services = len(snap.services)
            r.tasks = len(snap.tasks)
            r.raft_status = json.dumps(store.status(), default=str)
            r.state_digest = store.state_digest()
            r.store_version = snap.version
        return r

    def manager_control(self) -> ControlAPI:
        if self.membership.node is None:
            raise errors.FailedPrecondition(NOT_IN_CLUSTER)
        if self.control is None:
            raise errors.FailedPrecondition(MANAGER_ONLY)
        return self.control

    # ---- life ----
    def stop(self) -> None:
        """Daemon shutdown: containers keep running (a restart adopts them)."""
        with self.membership.lock:
            self.shutdown(remove_containers=False)
        self.stopped.set()

    # ---- wiring ----
    def _cluster_server(self, addrs: Advertised, node: NodeState, creds: tls.NodeCredentials, executor: Executor) -> grpc.Server:
        """The node's gRPC server: the agent API on the mTLS port; on a
        manager also the dispatcher there and the CA on the join port."""
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=SERVER_WORKERS, thread_name_prefix="grpc"),
            options=tls.SERVER_OPTIONS,
            interceptors=[tls.ClientCertRequired()],
        )
        agent_pb2_grpc.add_AgentServicer_to_server(AgentServicer(executor), server)
        if node.role == "manager":
            store, control, dispatcher = self.store, self.control, self.dispatcher
            assert store is not None and control is not None and dispatcher is not None, "start_manager comes first"
            dispatcher_pb2_grpc.add_DispatcherServicer_to_server(dispatcher, server)
            ca_pb2_grpc.add_CAServicer_to_server(
                ca_servicer.CAServicer(lambda: store.snapshot().cluster, control.cluster.register_node, store.members), server
            )
            # The join port authenticates the manager only: joiners have no certificate yet.
            server.add_secure_port(addrs.join, creds.server_credentials(require_client_auth=False))
        server.add_secure_port(addrs.api, creds.server_credentials(require_client_auth=True))
        server.start()
        return server

    def _start_session(self, addrs: Advertised, node: NodeState, creds: tls.NodeCredentials, executor: Executor) -> None:
        self.session = AgentSession(
            creds,
            node.managers,
            executor,
            addrs.ip,
            addrs.api,
            on_managers=self.membership.record_managers,
            raft_addr=addrs.raft,
            on_role=self.roles.wanted,
        )
        self.session.start()

    def _report(self, reports: list[dpb.TaskStatusReport]) -> None:
        session = self.session
        if session is not None:
            session.report(reports)

    def _record_members(self, store: Store) -> None:
        """While `store` is this node's store, keep node.json's Raft peers
        equal to the live membership."""
        while self.store is store and not self.stopped.is_set():
            try:
                members = store.members()
                with self.membership.lock:
                    if self.store is store:
                        self.membership.record_raft_members(members)
            except Exception:
                log.exception("recording raft members")
            self.stopped.wait(MEMBERS_RECORD_PERIOD)


def run_daemon(cfg: DaemonConfig) -> int:
    """Run the daemon until SIGTERM or SIGINT; 0 after a clean stop.

    Raises ConfigError (errors.Invalid) for a bad configuration before
    anything starts. Returns 1, with the reason logged, when the daemon
    cannot start: its node files are unusable or another daemon holds the
    socket."""
    cfg = cfg.validated()
    logging.basicConfig(
        level=getattr(logging, cfg.log_level.upper(), logging.INFO), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("pysyncobj").setLevel(logging.WARNING)
    daemon = Daemon(cfg)
    try:
        # The socket first: a second daemon must not start Raft on the ports
        # of the first. Then resume, then serve: the CLI never sees a daemon
        # that has not resumed yet.
        localapi.claim_socket(cfg.socket)
        daemon.membership.resume()
        local = localapi.serve(cfg.socket, localapi.LocalControl(daemon))
    except errors.SwarmletError as e:
        log.error("%s", e)
        daemon.stop()
        return 1
    log.info("swarmlet daemon listening on unix://%s (advertise %s)", cfg.socket, daemon.membership.addrs.ip)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        daemon.stopped.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    daemon.stopped.wait()
    local.stop(grace=0.5)
    daemon.stop()
    return 0
