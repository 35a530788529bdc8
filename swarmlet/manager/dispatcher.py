"""Agent sessions on the leader: assignments out, task status in, heartbeats.

Heartbeats live in memory (as in swarmkit): only the transitions READY -> DOWN
and back are replicated. Status reports from all agents go through one
StatusWriter, which coalesces them into a single store batch every few
milliseconds (DESIGN.md, "batch, don't chatter"). What a session carries and
when a node is down are decided in swarmlet.core.cluster.

What nodes report about themselves is checked (issue 13, core/trust.py): the
address must be the one in the node's certificate or the one it connects
from, its endpoints on that address; the description is bounded and keeps
the hostname the node joined with. Session opens and description updates are
rate-limited per node, and status texts are cut to a bounded length.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

import grpc

from swarmlet import errors, metrics, ratelimit, rpc, tls
from swarmlet.api import dispatcher_pb2 as dpb
from swarmlet.api import dispatcher_pb2_grpc as dgrpc
from swarmlet.api import objects_pb2 as pb
from swarmlet.api import store_pb2 as spb
from swarmlet.core import cluster as cl
from swarmlet.core import pki, trust
from swarmlet.core import state as st
from swarmlet.core.endpoints import all_assignments
from swarmlet.manager.statuswriter import StatusWriter
from swarmlet.manager.store import Store, StoreError

log = logging.getLogger(__name__)

# How often the leader looks for nodes whose heartbeats stopped.
LIVENESS_CHECK_PERIOD = 0.2
# Per node: session opens (an agent backs off from 0.1 s to 2 s) and
# description changes (an agent sends one at most every 5 s).
SESSION_RATE, SESSION_BURST = 1.0, 10.0
DESCRIPTION_RATE, DESCRIPTION_BURST = 0.5, 5.0
# Per status report: updates and text.
MAX_STATUS_UPDATES = 10_000
MAX_STATUS_TEXT = 4096

# renew_role(node_id, csr_pem) -> (cert, role, raft_secret, raft_peers), from
# the control API (promotion/demotion touches Raft membership).
RenewRole = Callable[[str, bytes], tuple[bytes, str, bytes, list[str]]]


class Certificates(Protocol):
    """What the dispatcher needs of the control API for certificates
    (control/pki.PKIControl)."""

    def renew_certificate(self, node_id: str, role: str, csr_pem: bytes) -> tuple[bytes, bytes]: ...


class AssignmentCache:
    """all_assignments computed once per store version, shared by sessions."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._version = -1
        self._value: dict[str, list[dpb.NetworkAssignment]] = {}

    def for_node(self, snap: st.Snapshot, node_id: str) -> list[dpb.NetworkAssignment]:
        with self._lock:
            if snap.version != self._version:
                self._value = all_assignments(snap)
                self._version = snap.version
            return list(self._value.get(node_id, []))


@dataclass
class _Session:
    session_id: str
    node_id: str
    closed: threading.Event = field(default_factory=threading.Event)


class Dispatcher(dgrpc.DispatcherServicer):  # type: ignore[misc]  # generated, untyped
    def __init__(self, store: Store, renew_role: RenewRole, certificates: Certificates | None = None) -> None:
        self._store = store
        self._renew_role = renew_role
        self._certs = certificates
        self._lock = threading.Lock()
        self._sessions: dict[str, _Session] = {}  # session id -> session
        self._last_seen: dict[str, float] = {}  # node id -> monotonic time of last sign of life
        self._writer = StatusWriter(store)
        self._stop = threading.Event()
        self._net_assignments = AssignmentCache()
        self._session_limit = ratelimit.RateLimiter(SESSION_RATE, SESSION_BURST)
        self._description_limit = ratelimit.RateLimiter(DESCRIPTION_RATE, DESCRIPTION_BURST)
        self._liveness = threading.Thread(target=self._liveness_loop, name="dispatcher-liveness", daemon=True)

    def start(self) -> None:
        self._writer.start()
        self._liveness.start()

    def stop(self) -> None:
        self._stop.set()
        self._writer.stop()
        with self._lock:
            for s in self._sessions.values():
                s.closed.set()

    # ---- identity ----
    def _peer(self, context: grpc.ServicerContext, method: str) -> tls.Peer:
        """The caller's certificate, once the leader's state says it may call
        `method` (core/pki.authorize_on_manager: cluster, membership,
        revocation, role). The daemon's interceptor checks the same before
        every call; checking here keeps the dispatcher safe on any server."""
        peer = tls.peer_certificate(context)
        if peer is None:
            raise errors.Unauthenticated("a node certificate is required")
        if not self._store.is_leader():
            # Sessions live on the leader (heartbeats are in its memory): send
            # the agent there.
            leader = self.leader_api_addr()
            if leader:
                context.set_trailing_metadata(((rpc.LEADER_HINT_KEY, leader),))
            raise errors.Unavailable(f"this manager is not the leader (leader: {leader or 'none yet'})")
        if not self._store.ensure_leader_ready():
            # Just elected: its state may lag what was committed before.
            raise errors.Unavailable("this manager was just elected and is catching up: try again")
        ident = peer.identity
        pki.authorize_on_manager(
            self._store.snapshot(),
            pki.PeerCert(ident.node_id, ident.role, ident.cluster_id, peer.cert.serial),
            pki.DISPATCHER_PREFIX + method,
        )
        return peer

    def _identity(self, context: grpc.ServicerContext, method: str) -> tls.Identity:
        return self._peer(context, method).identity

    def leader_api_addr(self) -> str:
        return cl.manager_api_addr(self._store.snapshot(), self._store.leader_addr())

    def _session(self, session_id: str, ident: tls.Identity) -> _Session:
        with self._lock:
            s = self._sessions.get(session_id)
        if s is None or s.node_id != ident.node_id:
            raise errors.NotFound("unknown session: open a new one")
        return s

    def _seen(self, node_id: str) -> None:
        with self._lock:
            self._last_seen[node_id] = time.monotonic()

    # ---- RPCs ----
    def _accept_report(
        self, request: dpb.SessionRequest, ident: tls.Identity, context: grpc.ServicerContext
    ) -> dpb.SessionRequest:
        """The session request with what the node may claim about itself."""
        wait = self._session_limit.retry_after(ident.node_id)
        if wait:
            raise errors.ResourceExhausted(f"too many sessions opened by node {ident.node_id}: retry in {wait:.1f}s")
        try:
            addr, api_addr, raft_addr = trust.accept_addresses(
                request.addr, request.api_addr, request.raft_addr, tls.peer_host(context), tls.peer_cert_ips(context)
            )
            desc = trust.accept_description(request.description, self._store.snapshot().nodes.get(ident.node_id))
        except errors.SwarmletError as e:
            log.warning("node %s: session refused: %s", ident.node_id, e)
            raise
        return dpb.SessionRequest(description=desc, addr=addr, api_addr=api_addr, raft_addr=raft_addr)

    @rpc.edge
    def Session(self, request: dpb.SessionRequest, context: grpc.ServicerContext) -> Iterator[dpb.SessionMessage]:
        peer = self._peer(context, "Session")
        ident = peer.identity
        request = self._accept_report(request, ident, context)
        snap = self._store.snapshot()
        node = snap.nodes[ident.node_id]  # authorize_on_manager checked membership
        if ident.role != ("manager" if node.role == pb.NodeSpec.MANAGER else "worker"):
            # A certificate of the node's former role (demoted, or promoted
            # and not renewed yet): the session only tells the node its role,
            # so that it fetches the certificate for it (RenewRole).
            yield pki.fill_session(
                dpb.SessionMessage(node_id=node.id, desired_role=node.spec.desired_role, managers=cl.manager_addrs(snap)), snap
            )
            return
        sess = _Session(session_id=uuid.uuid4().hex, node_id=ident.node_id)
        with self._lock:
            # One live session per node: a reconnecting agent replaces its old one.
            for old in [s for s in self._sessions.values() if s.node_id == ident.node_id]:
                old.closed.set()
                del self._sessions[old.session_id]
            self._sessions[sess.session_id] = sess
        self._seen(ident.node_id)
        context.add_callback(sess.closed.set)
        status = pb.NodeStatus(state=pb.NodeStatus.READY, addr=request.addr, timestamp=time.time(), message="session started")
        try:
            # With the certificate the node presents (issue 13): node inspect
            # shows its expiry, root rotation counts the nodes on the new root.
            action = spb.NodeStatusAction(
                node_id=ident.node_id, status=status, description=request.description, certificate=presented(peer)
            )
            self._writer.submit([spb.StoreAction(node_status=action)], wait=5.0)
            self._record_addrs(ident.node_id, request.addr, request.api_addr, request.raft_addr)
        except StoreError as e:
            raise errors.Unavailable(f"cannot register the session: {e}") from None
        self._seen(ident.node_id)  # the writes above may have taken a while: the silence starts now
        log.info("session %s opened for node %s", sess.session_id[:8], ident.node_id)
        metrics.session_opened(ident.node_id)
        try:
            yield from self._assignments(sess, context)
        finally:
            metrics.session_closed()
            with self._lock:
                self._sessions.pop(sess.session_id, None)
            log.info("session %s closed for node %s", sess.session_id[:8], ident.node_id)

    def _assignments(self, sess: _Session, context: grpc.ServicerContext) -> Iterator[dpb.SessionMessage]:
        """A session message whenever what the node should converge to changed,
        until the session is replaced, the node is gone or leadership is lost."""
        last_sent: bytes | None = None
        while not sess.closed.is_set() and not self._stop.is_set() and context.is_active():
            if not self._store.is_leader():
                break
            snap = self._store.snapshot()
            node = snap.nodes.get(sess.node_id)
            if node is None:
                break
            msg = cl.session_message(snap, node, sess.session_id, self._net_assignments.for_node(snap, node.id))
            raw = msg.SerializeToString(deterministic=True)
            if raw != last_sent:
                last_sent = raw
                yield msg
            self._store.wait_for_change(snap.version, timeout=1.0)

    @rpc.edge
    def Heartbeat(self, request: dpb.HeartbeatRequest, context: grpc.ServicerContext) -> dpb.HeartbeatResponse:
        ident = self._identity(context, "Heartbeat")
        self._session(request.session_id, ident)
        self._seen(ident.node_id)
        metrics.heartbeat(ident.node_id)
        snap = self._store.snapshot()
        node = snap.nodes.get(ident.node_id)
        desc = self._reported_description(request, node, ident.node_id)
        if node is not None and (node.status.state != pb.NodeStatus.READY or desc is not None):
            # Back from a partition with its session intact (alive again), or
            # its description changed (an image was loaded, say).
            status = pb.NodeStatus(
                state=pb.NodeStatus.READY,
                addr=node.status.addr,
                timestamp=time.time(),
                message="heartbeat resumed" if node.status.state != pb.NodeStatus.READY else node.status.message,
            )
            a = spb.NodeStatusAction(node_id=ident.node_id, status=status)
            if desc is not None:
                a.description.CopyFrom(desc)
            self._writer.submit([spb.StoreAction(node_status=a)], wait=0)
        period, _ = cl.heartbeat_settings(snap)
        return dpb.HeartbeatResponse(period=period)

    @rpc.edge
    def UpdateTaskStatus(
        self, request: dpb.UpdateTaskStatusRequest, context: grpc.ServicerContext
    ) -> dpb.UpdateTaskStatusResponse:
        ident = self._identity(context, "UpdateTaskStatus")
        self._session(request.session_id, ident)
        self._seen(ident.node_id)
        if len(request.updates) > MAX_STATUS_UPDATES:
            raise errors.Invalid(f"{len(request.updates)} status updates in one report, more than {MAX_STATUS_UPDATES}")
        actions = [
            spb.StoreAction(task_status=spb.TaskStatusAction(task_id=u.task_id, node_id=ident.node_id, status=_bounded(u.status)))
            for u in request.updates
        ]
        try:
            self._writer.submit(actions, wait=5.0)
        except StoreError as e:
            raise errors.Unavailable(f"status not recorded: {e}") from None
        return dpb.UpdateTaskStatusResponse()

    @rpc.edge
    def RenewRole(self, request: dpb.RenewRoleRequest, context: grpc.ServicerContext) -> dpb.RenewRoleResponse:
        ident = self._identity(context, "RenewRole")
        cert, role, secret, peers = self._renew_role(ident.node_id, request.csr_pem)
        return dpb.RenewRoleResponse(cert_pem=cert, role=role, raft_secret=secret, raft_peers=peers)

    @rpc.edge
    def RenewCertificate(
        self, request: dpb.RenewCertificateRequest, context: grpc.ServicerContext
    ) -> dpb.RenewCertificateResponse:
        ident = self._identity(context, "RenewCertificate")
        if self._certs is None:
            raise errors.FailedPrecondition("this manager does not renew certificates")
        cert, trust = self._certs.renew_certificate(ident.node_id, ident.role, request.csr_pem)
        log.info("renewed the %s certificate of node %s", ident.role, ident.node_id)
        return dpb.RenewCertificateResponse(cert_pem=cert, trust_pem=trust)

    @rpc.edge
    def RaftSecret(self, request: dpb.RaftSecretRequest, context: grpc.ServicerContext) -> dpb.RaftSecretResponse:
        """The current Raft secret, for a manager that missed a rotation.
        Any manager answers (no leader needed: a cluster whose majority
        missed it may have none); only to a caller whose certificate says
        manager and whose node record here is a manager."""
        ident = tls.peer_identity(context)
        if ident is None:
            raise errors.Unauthenticated("a node certificate is required")
        snap = self._store.snapshot()
        node = snap.nodes.get(ident.node_id)
        if not ident.is_manager or node is None or node.role != pb.NodeSpec.MANAGER:
            log.warning("node %s asked for the Raft secret and is not a manager: refused", ident.node_id)
            raise errors.PermissionDenied("only managers may fetch the Raft secret")
        cluster = snap.cluster
        if cluster is None:
            raise errors.Unavailable("this manager has no cluster state yet")
        log.info("manager %s fetched the Raft secret (epoch %d)", ident.node_id, cluster.raft_secret_epoch)
        return dpb.RaftSecretResponse(
            epoch=cluster.raft_secret_epoch, current=cluster.raft_secret, previous=cluster.raft_secret_previous
        )

    # ---- helpers ----
    def _reported_description(
        self, request: dpb.HeartbeatRequest, node: pb.Node | None, node_id: str
    ) -> pb.NodeDescription | None:
        """A changed description from a heartbeat, as it may be recorded, or
        None (none sent, refused, or over the node's rate: all logged)."""
        if not request.HasField("description"):
            return None
        if not self._description_limit.allow(node_id):
            log.warning("node %s: description update dropped (more than %g a second)", node_id, DESCRIPTION_RATE)
            return None
        try:
            return trust.accept_description(request.description, node)
        except errors.SwarmletError as e:
            log.warning("node %s: description update refused: %s", node_id, e)
            return None

    def _record_addrs(self, node_id: str, addr: str, api_addr: str, raft_addr: str = "") -> None:
        """Record where the node's API and Raft ports are (they may change
        across restarts)."""
        node = self._store.snapshot().nodes.get(node_id)
        if node is None or (node.api_addr == api_addr and node.status.addr == addr and node.raft_addr == raft_addr):
            return
        new = pb.Node()
        new.CopyFrom(node)
        new.api_addr = api_addr
        if raft_addr:
            new.raft_addr = raft_addr
        try:
            self._store.propose([st.put(new)])
        except StoreError:
            pass  # raced with another write: the next session start records it

    def _liveness_loop(self) -> None:
        """Mark nodes DOWN whose heartbeats stopped."""
        was_leader = False
        while not self._stop.wait(LIVENESS_CHECK_PERIOD):
            if not self._store.ensure_leader_ready():
                was_leader = False
                continue
            now = time.monotonic()
            snap = self._store.snapshot()
            with self._lock:
                if not was_leader:
                    # A new leader has no heartbeat history: give every node a
                    # full grace period from now before judging it.
                    for nid in snap.nodes:
                        self._last_seen[nid] = max(self._last_seen.get(nid, 0.0), now)
                for nid in snap.nodes:
                    self._last_seen.setdefault(nid, now)
                silent = cl.silent_nodes(snap, self._last_seen, now)
                for node, _ in silent:
                    for s in self._sessions.values():
                        if s.node_id == node.id:
                            s.closed.set()
            was_leader = True
            if not silent:
                continue
            actions = []
            for node, silence in silent:
                log.warning("node %s missed heartbeats for %.1fs: marking it down", node.id, silence)
                status = cl.down_status(node, silence, time.time())
                actions.append(spb.StoreAction(node_status=spb.NodeStatusAction(node_id=node.id, status=status)))
            try:
                self._writer.submit(actions, wait=2.0)
            except StoreError as e:
                log.warning("could not mark nodes down: %s", e)


def presented(peer: tls.Peer) -> pb.NodeCertificate:
    """The record of the certificate a node presents."""
    c = peer.cert
    return pb.NodeCertificate(
        serial=c.serial, role=peer.identity.role, not_before=c.not_before, not_after=c.not_after, issuer_key_id=c.issuer_key_id
    )


def _bounded(status: pb.TaskStatus) -> pb.TaskStatus:
    """A reported status with its texts cut to MAX_STATUS_TEXT bytes."""
    if len(status.message) <= MAX_STATUS_TEXT and len(status.err) <= MAX_STATUS_TEXT:
        return status
    out = pb.TaskStatus()
    out.CopyFrom(status)
    out.message = status.message[:MAX_STATUS_TEXT]
    out.err = status.err[:MAX_STATUS_TEXT]
    return out
