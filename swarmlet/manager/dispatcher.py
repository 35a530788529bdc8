"""Agent sessions on the leader: assignments out, task status in, heartbeats.

Served on grpc.aio (swarmlet/aioserver.py): a session is a coroutine waiting
for its node's share to change, not a thread (issue 15: with a thread per
session, ~63 agents starved the server). What each node is sent is worked out
once per store version for all sessions (assignments.py) and sent as what
changed for that node only (core/sessions.py), one message at a time per
session: a slow agent gets the changes coalesced, never a queue.

Heartbeats live in memory (as in swarmkit): a heartbeat of a READY node whose
description is unchanged writes nothing to Raft; only the transitions READY
-> DOWN and back are replicated. Status reports from all agents go through
one StatusWriter, which coalesces them into a single store batch every few
milliseconds (DESIGN.md, "batch, don't chatter"). What a session carries and
when a node is down are decided in swarmlet.core (cluster, sessions).

What nodes report about themselves is checked (issue 13, core/trust.py): the
address must be the one in the node's certificate or the one it connects
from, its endpoints on that address; the description is bounded and keeps
the hostname the node joined with. Session opens and description updates are
rate-limited per node, and status texts are cut to a bounded length. Every
call is authorized against the replicated state (core/pki.authorize_on_manager)
here as well as in the server's interceptor.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from swarmlet import errors, metrics, ratelimit, rpc, tls
from swarmlet.api import dispatcher_pb2 as dpb
from swarmlet.api import dispatcher_pb2_grpc as dgrpc
from swarmlet.api import objects_pb2 as pb
from swarmlet.api import store_pb2 as spb
from swarmlet.core import cluster as cl
from swarmlet.core import pki, trust
from swarmlet.core import sessions as ss
from swarmlet.core import state as st
from swarmlet.core.units import fmt_bytes
from swarmlet.manager.assignments import AssignmentFeed
from swarmlet.manager.statuswriter import StatusWriter
from swarmlet.manager.store import Store, StoreError

log = logging.getLogger(__name__)

# How often the leader looks for nodes whose heartbeats stopped.
LIVENESS_CHECK_PERIOD = 0.2
# A session looks at leadership and its node at least this often even when
# nothing changes (a safety net: the feed wakes the sessions whose share
# changed, and every session when leadership is lost).
SESSION_RECHECK = 2.0
# How long a session start or a status report waits for its Raft write.
WRITE_WAIT = 5.0
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


@dataclass
class _Session:
    session_id: str
    node_id: str
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    closed: bool = False


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
        self._feed = AssignmentFeed(store)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._refused: set[str] = set()  # tasks refused as too big to send
        # The certificate fields of every session message, per store version.
        self._certificates: tuple[int, dpb.SessionMessage] = (-1, dpb.SessionMessage())
        self._session_limit = ratelimit.RateLimiter(SESSION_RATE, SESSION_BURST)
        self._description_limit = ratelimit.RateLimiter(DESCRIPTION_RATE, DESCRIPTION_BURST)
        self._threads = [
            threading.Thread(target=self._liveness_loop, name="dispatcher-liveness", daemon=True),
            threading.Thread(target=self._feed_loop, name="dispatcher-feed", daemon=True),
        ]

    def start(self) -> None:
        self._writer.start()
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        self._stop.set()
        self._writer.stop()
        self._wake(None, close=True)

    # ---- waking sessions (from any thread) ----
    def _wake(self, nodes: set[str] | None, close: bool = False) -> None:
        """Wake the sessions of `nodes` (None: all); with `close`, end them."""
        loop = self._loop
        with self._lock:
            targets = [s for s in self._sessions.values() if nodes is None or s.node_id in nodes]
        if not targets or loop is None:
            return

        def wake() -> None:
            for s in targets:
                s.closed = s.closed or close
                s.wake.set()

        try:
            loop.call_soon_threadsafe(wake)
        except RuntimeError:
            pass  # the loop is closed: the server stopped

    def _feed_loop(self) -> None:
        """Keep the per-node shares at the store's version and wake the
        sessions whose share changed."""
        was_leader = False
        while not self._stop.is_set():
            self._store.wait_for_change(self._feed.view.version, timeout=0.5)
            leader = self._store.is_leader()
            if leader:
                try:
                    dirty = self._feed.advance()
                except Exception:
                    log.exception("computing session assignments")
                    self._stop.wait(0.5)
                    continue
                if dirty is None or dirty:
                    self._wake(dirty)
            elif was_leader:
                self._wake(None)  # sessions end: they belong on the leader
            was_leader = leader

    # ---- identity ----
    def _peer(self, context: Any, method: str) -> tls.Peer:
        """The caller's certificate, once the leader's state says it may call
        `method` (core/pki.authorize_on_manager: cluster, membership,
        revocation, role). The daemon's interceptor checks the same before
        every call; checking here keeps the dispatcher safe on any server.
        Reads memory only: fine on the event loop."""
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
        if not self._store.leader_ready():
            # Just elected: its state may lag what was committed before (the
            # leader loop's thread commits the term's barrier; waiting for it
            # here would stall the event loop).
            raise errors.Unavailable("this manager was just elected and is catching up: try again")
        ident = peer.identity
        pki.authorize_on_manager(
            self._store.snapshot(),
            pki.PeerCert(ident.node_id, ident.role, ident.cluster_id, peer.cert.serial),
            pki.DISPATCHER_PREFIX + method,
        )
        return peer

    def _identity(self, context: Any, method: str) -> tls.Identity:
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

    async def _write(self, actions: list[spb.StoreAction], what: str) -> None:
        try:
            await asyncio.wait_for(asyncio.wrap_future(self._writer.submit_future(actions)), WRITE_WAIT)
        except (StoreError, TimeoutError) as e:
            raise errors.Unavailable(f"{what}: {e or 'timed out'}") from None

    # ---- RPCs ----
    def _accept_report(self, request: dpb.SessionRequest, ident: tls.Identity, context: Any) -> dpb.SessionRequest:
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
    async def Session(self, request: dpb.SessionRequest, context: Any) -> AsyncIterator[dpb.SessionMessage]:
        peer = self._peer(context, "Session")
        ident = peer.identity
        request = self._accept_report(request, ident, context)
        self._loop = asyncio.get_running_loop()
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
            old = [s for s in self._sessions.values() if s.node_id == ident.node_id]
            for s in old:
                del self._sessions[s.session_id]
            self._sessions[sess.session_id] = sess
        for s in old:
            s.closed = True
            s.wake.set()
        self._seen(ident.node_id)
        opened = False
        try:
            status = pb.NodeStatus(state=pb.NodeStatus.READY, addr=request.addr, timestamp=time.time(), message="session started")
            # With the certificate the node presents (issue 13): node inspect
            # shows its expiry, root rotation counts the nodes on the new root.
            action = spb.NodeStatusAction(
                node_id=ident.node_id, status=status, description=request.description, certificate=presented(peer)
            )
            await self._write([spb.StoreAction(node_status=action)], "cannot register the session")
            await asyncio.to_thread(self._record_addrs, ident.node_id, request.addr, request.api_addr, request.raft_addr)
            self._seen(ident.node_id)  # the writes above may have taken a while: the silence starts now
            log.info("session %s opened for node %s", sess.session_id[:8], ident.node_id)
            metrics.session_opened(ident.node_id)
            opened = True
            async for msg in self._pushes(sess):
                yield msg
        finally:
            if opened:
                metrics.session_closed()
            with self._lock:
                self._sessions.pop(sess.session_id, None)
            log.info("session %s closed for node %s", sess.session_id[:8], ident.node_id)

    async def _pushes(self, sess: _Session) -> AsyncIterator[dpb.SessionMessage]:
        """What the node should converge to, as it changes, until the session
        is replaced, the node is gone or leadership is lost. One message at a
        time: while the agent reads slowly, changes pile up in the store and
        go out as one update."""
        sent: ss.Sent | None = None
        while not sess.closed and not self._stop.is_set() and self._store.is_leader():
            sess.wake.clear()
            view = self._feed.view
            if view.version < 0:
                view = await asyncio.to_thread(self._catch_up)
            node = view.snap.nodes.get(sess.node_id)
            if node is None:
                return
            header = ss.Header(view.heartbeat_period, view.managers, node.id, node.spec.availability, node.spec.desired_role)
            mine = view.tasks.get(node.id, {})
            extras = cl.session_extras(view.snap, node.id, [mine[k] for k in sorted(mine)], self._certificate_fields(view))
            msgs, sent, too_big = ss.update(sent, header, mine, view.networks.get(node.id, []), sess.session_id, extras=extras)
            if too_big:
                self._refuse(too_big)
            for m in msgs:
                yield m
            try:
                await asyncio.wait_for(sess.wake.wait(), SESSION_RECHECK)
            except TimeoutError:
                pass

    def _certificate_fields(self, view: Any) -> dpb.SessionMessage:
        """The certificate fields (90-95) of `view`'s version, computed once
        for all sessions (they are the same for every node)."""
        version, msg = self._certificates
        if version != view.version:
            msg = pki.fill_session(dpb.SessionMessage(), view.snap)
            self._certificates = (view.version, msg)
        return msg

    def _catch_up(self) -> Any:
        self._feed.advance()
        return self._feed.view

    def _refuse(self, tasks: list[pb.Task]) -> None:
        """Tasks too big to send to their node end REJECTED, with why."""
        actions = []
        for t in tasks:
            if t.id in self._refused or t.status.state >= pb.REJECTED:
                continue
            self._refused.add(t.id)
            size, limit = fmt_bytes(t.ByteSize()), fmt_bytes(ss.MAX_TASK_BYTES)
            status = pb.TaskStatus(
                state=pb.REJECTED,
                timestamp=time.time(),
                message="rejected",
                err=f"the task is {size}, more than a session message can carry to its node ({limit})",
            )
            actions.append(st.set_status(t.id, status, node_id=""))
            log.warning("task %s is %s: too big to send to node %s", t.id, size, t.node_id)
        if len(self._refused) > 10_000:
            self._refused.clear()
        self._writer.submit(actions, wait=0)

    @rpc.edge
    async def Heartbeat(self, request: dpb.HeartbeatRequest, context: Any) -> dpb.HeartbeatResponse:
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
    async def UpdateTaskStatus(self, request: dpb.UpdateTaskStatusRequest, context: Any) -> dpb.UpdateTaskStatusResponse:
        ident = self._identity(context, "UpdateTaskStatus")
        self._session(request.session_id, ident)
        self._seen(ident.node_id)
        if len(request.updates) > MAX_STATUS_UPDATES:
            raise errors.Invalid(f"{len(request.updates)} status updates in one report, more than {MAX_STATUS_UPDATES}")
        actions = [
            spb.StoreAction(task_status=spb.TaskStatusAction(task_id=u.task_id, node_id=ident.node_id, status=_bounded(u.status)))
            for u in request.updates
        ]
        await self._write(actions, "status not recorded")
        return dpb.UpdateTaskStatusResponse()

    @rpc.edge
    async def RenewRole(self, request: dpb.RenewRoleRequest, context: Any) -> dpb.RenewRoleResponse:
        ident = self._identity(context, "RenewRole")
        cert, role, secret, peers = await asyncio.to_thread(self._renew_role, ident.node_id, request.csr_pem)
        return dpb.RenewRoleResponse(cert_pem=cert, role=role, raft_secret=secret, raft_peers=peers)

    @rpc.edge
    async def RenewCertificate(self, request: dpb.RenewCertificateRequest, context: Any) -> dpb.RenewCertificateResponse:
        ident = self._identity(context, "RenewCertificate")
        certs = self._certs
        if certs is None:
            raise errors.FailedPrecondition("this manager does not renew certificates")
        # Signing and recording the certificate (a Raft write) block: off the loop.
        cert, trust = await asyncio.to_thread(certs.renew_certificate, ident.node_id, ident.role, request.csr_pem)
        log.info("renewed the %s certificate of node %s", ident.role, ident.node_id)
        return dpb.RenewCertificateResponse(cert_pem=cert, trust_pem=trust)

    @rpc.edge
    async def RaftSecret(self, request: dpb.RaftSecretRequest, context: Any) -> dpb.RaftSecretResponse:
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
        None (none sent, the one recorded already, refused, or over the
        node's rate: the last two logged)."""
        if not request.HasField("description"):
            return None
        if not self._description_limit.allow(node_id):
            log.warning("node %s: description update dropped (more than %g a second)", node_id, DESCRIPTION_RATE)
            return None
        try:
            desc = trust.accept_description(request.description, node)
        except errors.SwarmletError as e:
            log.warning("node %s: description update refused: %s", node_id, e)
            return None
        # Agents send their description again now and then even unchanged
        # (agent/session.py REDESCRIBE_EVERY), to repair a lost update: what
        # the state holds already is not written again.
        if node is not None and desc == node.description:
            return None
        return desc

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
                    # A new leader has no heartbeat history: every node gets
                    # a longer grace from now, its agent has to find this
                    # leader first (core/cluster.new_leader_grace).
                    seen = now + cl.new_leader_grace(snap)
                    for nid in snap.nodes:
                        self._last_seen[nid] = max(self._last_seen.get(nid, 0.0), seen)
                for nid in snap.nodes:
                    self._last_seen.setdefault(nid, now)
                silent = cl.silent_nodes(snap, self._last_seen, now)
            was_leader = True
            if not silent:
                continue
            self._wake({node.id for node, _ in silent}, close=True)
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
