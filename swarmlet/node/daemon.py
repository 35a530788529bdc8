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
from collections.abc import Iterator
from types import FrameType
from typing import TYPE_CHECKING

import grpc

from swarmlet import engineapi, errors, tls
from swarmlet.agent.api import AgentServicer
from swarmlet.agent.executor import Executor
from swarmlet.agent.images import ImageStore
from swarmlet.agent.metrics import timed_runtime
from swarmlet.agent.net.wiring import NetworkAgent
from swarmlet.agent.runtime.docker import DockerRuntime
from swarmlet.agent.runtime.interface import ContainerRuntime
from swarmlet.agent.session import AgentSession
from swarmlet.agent.taskfiles import TaskFiles
from swarmlet.aioserver import AioServer
from swarmlet.api import agent_pb2_grpc, dispatcher_pb2_grpc
from swarmlet.api import control_pb2 as cpb
from swarmlet.api import dispatcher_pb2 as dpb
from swarmlet.api import events_pb2 as epb
from swarmlet.api import objects_pb2 as pb
from swarmlet.core import pki
from swarmlet.node import events as node_events
from swarmlet.node import localapi
from swarmlet.node import metrics as node_metrics
from swarmlet.node.addresses import Advertised
from swarmlet.node.certs import CertKeeper
from swarmlet.node.config import ConfigError, DaemonConfig, parse_election_timeout
from swarmlet.node.files import NodeFiles, NodeState
from swarmlet.node.membership import LOCKED, NOT_IN_CLUSTER, Membership
from swarmlet.node.roles import RoleChanger

# The manager's parts (pysyncobj and the Raft store, the control API, the
# dispatcher, the leader loop, the CA service) are imported only when this
# node runs as a manager (start_manager, _cluster_server): a worker never
# loads them (issue 15; docs/benchmarks.md has what each import costs).
if TYPE_CHECKING:
    from swarmlet.manager.control.api import ControlAPI
    from swarmlet.manager.dispatcher import Dispatcher
    from swarmlet.manager.events import LeaderAnnouncer
    from swarmlet.manager.keykeeper import FetchedSecret, KeyKeeper
    from swarmlet.manager.leader import LeaderLoop
    from swarmlet.manager.membership_repair import MembershipRepair
    from swarmlet.manager.store import Store

# What the `swarmlet daemon` command uses (the CLI may import this module only).
__all__ = ["ConfigError", "Daemon", "DaemonConfig", "parse_election_timeout", "run_daemon"]

log = logging.getLogger("swarmlet.node.daemon")

MANAGER_ONLY = (
    "This node is not a swarm manager. Worker nodes can't be used to view or modify cluster state. "
    "Please run this command on a manager node."
)
# How long leave waits for the executor to remove the containers.
LEAVE_DRAIN_TIMEOUT = 30.0
# How often the live Raft membership is copied into node.json.
MEMBERS_RECORD_PERIOD = 1.0


class Daemon:
    def __init__(self, cfg: DaemonConfig, runtime: ContainerRuntime | None = None) -> None:
        # `runtime`: an engine other than the host's Docker (tests run whole
        # daemons on loopback with agent/runtime/fake.py; no overlay wiring then).
        self._runtime = runtime
        self.cfg = cfg.validated()
        self.files = NodeFiles(self.cfg.state_dir)
        self.stopped = threading.Event()
        self.store: Store | None = None
        self.control: ControlAPI | None = None
        self.dispatcher: Dispatcher | None = None
        self.leader_loop: LeaderLoop | None = None
        self.key_keeper: KeyKeeper | None = None
        self.membership_repair: MembershipRepair | None = None
        self.server: AioServer | None = None
        self.executor: Executor | None = None
        self.session: AgentSession | None = None
        self.announcer: LeaderAnnouncer | None = None
        self.certs: CertKeeper | None = None
        self.membership = Membership(self.cfg, self.files, self)
        self.roles = RoleChanger(self.membership, self, self.stopped)

    # ---- the parts membership starts and stops (membership.ClusterParts) ----
    def start_manager(self, addrs: Advertised, raft_secret: bytes, peers: list[str], epoch: int = 0) -> Store:
        from swarmlet.manager.control.api import ControlAPI
        from swarmlet.manager.dispatcher import Dispatcher
        from swarmlet.manager.events import LeaderAnnouncer
        from swarmlet.manager.keykeeper import KeyKeeper
        from swarmlet.manager.leader import LeaderLoop
        from swarmlet.manager.membership_repair import MembershipRepair
        from swarmlet.manager.store import Store

        partners = [p for p in peers if p != addrs.raft]
        self.files.check_raft_state()
        store = Store(
            addrs.raft,
            partners,
            self.cfg.state_dir,
            raft_secret,
            timings=self.cfg.raft_timings(),
            event_history=self.cfg.event_history,
            data_key=self.files.ensure_data_key(),
            raft_secret_epoch=epoch,
        )
        self.files.raft_started()
        # The manager's own engine resolves image digests (issue 9); with a
        # test engine (self._runtime) there is none: images are not pinned.
        engine = DockerRuntime(self.cfg.docker_host) if self._runtime is None else None
        control = ControlAPI(store, self.agent_channel, engine, self._node_id, min_cert_expiry=self.cfg.min_cert_expiry)
        dispatcher = Dispatcher(store, renew_role=control.cluster.renew_role, certificates=control.pki)
        leader_loop = LeaderLoop(store)
        keeper = KeyKeeper(store, self.files.write_raft_secret, self.files.wrap_data_key, self._fetch_raft_secret)
        self.store, self.control, self.dispatcher, self.leader_loop = store, control, dispatcher, leader_loop
        self.key_keeper = keeper
        dispatcher.start()
        leader_loop.start()
        self.announcer = LeaderAnnouncer(store)  # leader changes as events (issue 16)
        self.announcer.start()
        keeper.start()
        self.membership_repair = MembershipRepair(store, control.cluster)
        self.membership_repair.start()
        threading.Thread(target=self._record_members, args=(store,), name="raft-members", daemon=True).start()
        return store

    def start_services(self, addrs: Advertised, node: NodeState, creds: tls.NodeCredentials) -> None:
        runtime = timed_runtime(self._runtime or DockerRuntime(self.cfg.docker_host))
        executor = Executor(
            runtime,
            node.node_id,
            self._report,
            hostname=self.cfg.hostname,
            network=NetworkAgent(addrs.ip) if self._runtime is None else None,
            images=ImageStore(runtime, self.agent_channel, hostname=lambda: self.executor.hostname() if self.executor else ""),
            files=TaskFiles(self.files.secrets_dir),
            generic_resources=self.cfg.generic_resources(),
        )
        self.executor = executor
        self.certs = CertKeeper(self.membership, self, self.stopped)
        self.server = self._cluster_server(addrs, node, creds, executor)
        executor.start()
        self._start_session(addrs, node, creds, executor)
        self.certs.start()

    def shutdown(self, remove_containers: bool) -> None:
        if self.certs is not None:
            self.certs.stop()
            self.certs = None
        self.stop_session()
        if self.executor is not None:
            if remove_containers:
                try:
                    self.executor.converge([])
                    if not self.executor.wait_idle(timeout=LEAVE_DRAIN_TIMEOUT):
                        log.warning("leave: containers still being removed after %.0fs", LEAVE_DRAIN_TIMEOUT)
                    if self.executor.files is not None:
                        self.executor.files.close()  # the secrets' tmpfs goes with the node
                except Exception:
                    log.exception("removing containers on leave")
            self.executor.stop()
            self.executor = None
        if self.server is not None:
            self.server.stop(grace=0.5)
            self.server = None
        if self.leader_loop is not None:
            self.leader_loop.stop()
        if self.key_keeper is not None:
            self.key_keeper.stop()
            self.key_keeper = None
        if self.dispatcher is not None:
            self.dispatcher.stop()
        if self.announcer is not None:
            self.announcer.stop()
        if self.membership_repair is not None:
            self.membership_repair.stop()
            self.membership_repair = None
        self.leader_loop = self.dispatcher = self.control = self.announcer = None
        self.close_store()

    def _node_id(self) -> str:
        node = self.membership.node
        return node.node_id if node is not None else ""

    # ---- what role changes need (roles.RoleParts) ----
    def agent_channel(self, addr: str) -> grpc.Channel:
        """An mTLS channel to another node's API port, as this node."""
        creds = self.membership.creds
        if creds is None:
            raise errors.FailedPrecondition(NOT_IN_CLUSTER)
        return grpc.secure_channel(addr, creds.channel_credentials(), options=tls.CHANNEL_OPTIONS)

    def manager_channel(self, addr: str) -> grpc.Channel:
        """An mTLS channel to a manager's API port, as this node: the
        handshake fails unless the server holds a manager's certificate."""
        creds = self.membership.creds
        if creds is None:
            raise errors.FailedPrecondition(NOT_IN_CLUSTER)
        return grpc.secure_channel(addr, creds.channel_credentials(), options=tls.MANAGER_CHANNEL_OPTIONS)

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
        if self.key_keeper is not None:
            # Before the store: a demoted node must not write keys any more.
            self.key_keeper.stop()
            self.key_keeper = None
        if self.store is not None:
            store, self.store = self.store, None
            store.close()

    # ---- the local API's view (localapi.LocalNode) ----
    def info(self) -> cpb.InfoResponse:
        node, addr = self.membership.node, self.membership.addrs.ip
        locked = self.membership.locked
        if locked is not None:
            return cpb.InfoResponse(
                state="locked",
                node_id=locked.node_id,
                role=locked.role,
                cluster_id=locked.cluster_id,
                addr=addr,
                error=LOCKED,
                docker_host=self.cfg.docker_host,
            )
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
        if self.certs is not None:
            r.cert_not_after, r.cert_warning = self.certs.status()
        return r

    def events(self, request: epb.EventsRequest, context: grpc.ServicerContext) -> Iterator[epb.Event]:
        return node_events.serve(self, request, context)

    def manager_control(self) -> ControlAPI:
        if self.membership.locked is not None:
            raise errors.FailedPrecondition(LOCKED)
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
    def _cluster_server(self, addrs: Advertised, node: NodeState, creds: tls.NodeCredentials, executor: Executor) -> AioServer:
        """The node's gRPC server (grpc.aio, swarmlet/aioserver.py): the agent
        API on the mTLS port; on a manager also the dispatcher and the events
        stream there and the CA on the join port."""
        # Every call with a certificate is checked against the cluster's
        # state (issue 13): cluster id, revocation, membership, role. The
        # session stream answers a stale role itself (dispatcher.py).
        interceptor = tls.ClientCertRequired(authorize=self._authorize, stream_once=(pki.SESSION_METHOD,))
        server = AioServer(tls.SERVER_OPTIONS, [interceptor], name="grpc-node")
        try:
            agent = AgentServicer(executor, executor.images)
            server.call(lambda: agent_pb2_grpc.add_AgentServicer_to_server(agent, server.server))
            if node.role == "manager":
                from swarmlet.api import ca_pb2_grpc, events_pb2_grpc
                from swarmlet.manager import ca_servicer
                from swarmlet.manager.events import EventsServicer

                store, control, dispatcher = self.store, self.control, self.dispatcher
                assert store is not None and control is not None and dispatcher is not None, "start_manager comes first"
                ca = ca_servicer.CAServicer(lambda: store.snapshot().cluster, control.cluster.register_node, store.members)
                events = EventsServicer(store.events, store.snapshot)
                server.call(lambda: dispatcher_pb2_grpc.add_DispatcherServicer_to_server(dispatcher, server.server))
                server.call(lambda: events_pb2_grpc.add_ClusterEventsServicer_to_server(events, server.server))
                server.call(lambda: ca_pb2_grpc.add_CAServicer_to_server(ca, server.server))
                # The join port authenticates the manager only: joiners have no certificate yet.
                server.add_port(addrs.join, tls.dynamic_server_credentials(self._current_creds, require_client_auth=False))
            # Renewed certificates and new trust bundles are used from the next handshake on.
            server.add_port(addrs.api, tls.dynamic_server_credentials(self._current_creds, require_client_auth=True))
            server.start()
        except BaseException:
            server.stop(None)
            raise
        return server

    def _current_creds(self) -> tls.NodeCredentials | None:
        return self.membership.creds

    def _authorize(self, method: str, peer: tls.Peer) -> None:
        """Whether a caller's certificate may call `method` now: a manager
        judges it by the replicated state, a worker by what its session told
        it (core/pki.py)."""
        ident = peer.identity
        who = pki.PeerCert(ident.node_id, ident.role, ident.cluster_id, peer.cert.serial)
        store = self.store
        if store is not None:
            pki.authorize_on_manager(store.snapshot(), who, method)
            return
        certs = self.certs
        if certs is None:
            raise errors.Unavailable("this node is not ready")
        pki.authorize_on_worker(certs.view, who, method)

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
            on_message=self.certs.on_session if self.certs is not None else None,
        )
        self.session.start()

    def _fetch_raft_secret(self) -> FetchedSecret | None:
        """The current Raft secret from another manager (the key keeper asks
        when this manager cannot reach any: it missed a rotation)."""
        from swarmlet.manager.keykeeper import FetchedSecret

        node, own = self.membership.node, self.membership.addrs.api
        for addr in [a for a in (node.managers if node else []) if a != own]:
            try:
                channel = self.agent_channel(addr)
            except errors.SwarmletError:
                return None
            try:
                resp = dispatcher_pb2_grpc.DispatcherStub(channel).RaftSecret(dpb.RaftSecretRequest(), timeout=5)
                return FetchedSecret(resp.epoch, resp.current, resp.previous)
            except grpc.RpcError as e:
                log.info("raft secret from %s: %s", addr, e.details())
            finally:
                channel.close()
        return None

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
        metrics_server = node_metrics.serve(cfg.metrics_addr, daemon) if cfg.metrics_addr else None
        # Issue 17: Docker's Engine API, answered by the same control API.
        engine_api = None
        if cfg.docker_api_socket:
            localapi.claim_socket(cfg.docker_api_socket)
            engine_api = engineapi.serve(cfg.docker_api_socket, daemon)
    except (errors.SwarmletError, OSError) as e:
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
    if metrics_server is not None:
        metrics_server.stop()
    if engine_api is not None:
        engine_api.stop()
    daemon.stop()
    return 0
