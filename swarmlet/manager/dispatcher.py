"""Agent sessions on the leader: assignments out, task status in, heartbeats.

Heartbeats live in memory (as in swarmkit): only the transitions READY -> DOWN
and back are replicated. Status reports from all agents are coalesced by one
writer thread into a single store batch every few milliseconds (DESIGN.md,
"batch, don't chatter").
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import grpc

from swarmlet import errors, rpc, tls
from swarmlet.api import dispatcher_pb2 as dpb
from swarmlet.api import dispatcher_pb2_grpc as dgrpc
from swarmlet.api import objects_pb2 as pb
from swarmlet.api import store_pb2 as spb
from swarmlet.core import state as st
from swarmlet.core.endpoints import all_assignments
from swarmlet.manager.store import Store, StoreError

# Trailing metadata key on a follower's refusal: the leader's api address, so
# an agent goes straight there instead of trying every manager in turn.
LEADER_HINT_KEY = "swarmlet-leader"

log = logging.getLogger(__name__)

DEFAULT_HEARTBEAT_PERIOD = 0.5
DEFAULT_NODE_DOWN_AFTER = 3.0


def heartbeat_settings(snap: st.Snapshot) -> tuple[float, float]:
    c = snap.cluster
    period = c.spec.heartbeat_period if c and c.spec.heartbeat_period > 0 else DEFAULT_HEARTBEAT_PERIOD
    down = c.spec.node_down_after if c and c.spec.node_down_after > 0 else DEFAULT_NODE_DOWN_AFTER
    return period, down


def node_assignments(snap: st.Snapshot, node_id: str) -> list[pb.Task]:
    """Every task the store places on this node, terminal ones included (the
    agent keeps their containers for logs until the task is deleted)."""
    return sorted((t for t in snap.tasks.values() if t.node_id == node_id), key=lambda t: t.id)


def manager_addrs(snap: st.Snapshot) -> list[str]:
    return sorted(
        n.manager_status.api_addr for n in snap.nodes.values() if n.role == pb.NodeSpec.MANAGER and n.manager_status.api_addr
    )


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
    last_seen: float = field(default_factory=time.monotonic)
    closed: threading.Event = field(default_factory=threading.Event)


class Dispatcher(dgrpc.DispatcherServicer):
    def __init__(self, store: Store, renew_role=None) -> None:
        self._store = store
        # renew_role(node_id, csr_pem) -> (cert, role, raft_secret, raft_peers),
        # from the control API (promotion/demotion touches Raft membership).
        self._renew_role = renew_role
        self._lock = threading.Lock()
        self._sessions: dict[str, _Session] = {}  # session id -> session
        self._last_seen: dict[str, float] = {}  # node id -> monotonic time of last sign of life
        self._pending: list[tuple[spb.StoreAction, threading.Event, dict]] = []
        self._pending_cond = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._leader_epoch_start: float | None = None
        self._net_assignments = AssignmentCache()
        self._threads = [
            threading.Thread(target=self._writer_loop, name="dispatcher-writer", daemon=True),
            threading.Thread(target=self._liveness_loop, name="dispatcher-liveness", daemon=True),
        ]

    def start(self) -> None:
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        self._stop.set()
        with self._pending_cond:
            self._pending_cond.notify_all()
        with self._lock:
            for s in self._sessions.values():
                s.closed.set()

    # ---- identity ----
    def _identity(self, context: grpc.ServicerContext) -> tls.Identity:
        ident = tls.peer_identity(context)
        if ident is None:
            context.abort(grpc.StatusCode.UNAUTHENTICATED, "a node certificate is required")
        if not self._store.is_leader():
            # Sessions live on the leader (heartbeats are in its memory): send
            # the agent there.
            leader = self.leader_api_addr()
            if leader:
                context.set_trailing_metadata(((LEADER_HINT_KEY, leader),))
            context.abort(grpc.StatusCode.UNAVAILABLE, f"this manager is not the leader (leader: {leader or 'none yet'})")
        node = self._store.snapshot().nodes.get(ident.node_id)
        if node is None:
            context.abort(grpc.StatusCode.PERMISSION_DENIED, f"node {ident.node_id} is not a member of this cluster (removed?)")
        return ident

    def leader_api_addr(self) -> str:
        leader = self._store.leader_addr()
        if not leader:
            return ""
        for n in self._store.snapshot().nodes.values():
            if n.role == pb.NodeSpec.MANAGER and n.manager_status.raft_addr == leader:
                return n.manager_status.api_addr
        return ""

    def _session(self, session_id: str, context: grpc.ServicerContext, ident: tls.Identity) -> _Session:
        with self._lock:
            s = self._sessions.get(session_id)
        if s is None or s.node_id != ident.node_id:
            context.abort(grpc.StatusCode.NOT_FOUND, "unknown session: open a new one")
        return s

    # ---- RPCs ----
    def Session(self, request: dpb.SessionRequest, context: grpc.ServicerContext) -> Iterator[dpb.SessionMessage]:
        ident = self._identity(context)
        sess = _Session(session_id=uuid.uuid4().hex, node_id=ident.node_id)
        with self._lock:
            # One live session per node: a reconnecting agent replaces its old one.
            for old in [s for s in self._sessions.values() if s.node_id == ident.node_id]:
                old.closed.set()
                del self._sessions[old.session_id]
            self._sessions[sess.session_id] = sess
            self._last_seen[ident.node_id] = time.monotonic()
        context.add_callback(sess.closed.set)
        status = pb.NodeStatus(state=pb.NodeStatus.READY, addr=request.addr, timestamp=time.time(), message="session started")
        try:
            self._submit(
                [
                    spb.StoreAction(
                        node_status=spb.NodeStatusAction(node_id=ident.node_id, status=status, description=request.description)
                    )
                ],
                wait=5.0,
            )
            self._record_api_addr(ident.node_id, request.addr, request.api_addr, request.raft_addr)
        except StoreError as e:
            context.abort(grpc.StatusCode.UNAVAILABLE, f"cannot register the session: {e}")
        log.info("session %s opened for node %s", sess.session_id[:8], ident.node_id)
        last_sent: bytes | None = None
        while not sess.closed.is_set() and not self._stop.is_set() and context.is_active():
            if not self._store.is_leader():
                break
            snap = self._store.snapshot()
            period, _ = heartbeat_settings(snap)
            node = snap.nodes.get(ident.node_id)
            if node is None:
                break
            msg = dpb.SessionMessage(
                session_id=sess.session_id,
                heartbeat_period=period,
                tasks=node_assignments(snap, ident.node_id),
                managers=manager_addrs(snap),
                node_id=ident.node_id,
                availability=node.spec.availability,
                networks=self._net_assignments.for_node(snap, ident.node_id),
                desired_role=node.spec.desired_role,
            )
            raw = msg.SerializeToString(deterministic=True)
            if raw != last_sent:
                last_sent = raw
                yield msg
            self._store.wait_for_change(snap.version, timeout=1.0)
        with self._lock:
            self._sessions.pop(sess.session_id, None)
        log.info("session %s closed for node %s", sess.session_id[:8], ident.node_id)

    def Heartbeat(self, request: dpb.HeartbeatRequest, context: grpc.ServicerContext) -> dpb.HeartbeatResponse:
        ident = self._identity(context)
        sess = self._session(request.session_id, context, ident)
        now = time.monotonic()
        with self._lock:
            sess.last_seen = now
            self._last_seen[ident.node_id] = now
        snap = self._store.snapshot()
        node = snap.nodes.get(ident.node_id)
        if node is not None and (node.status.state != pb.NodeStatus.READY or request.HasField("description")):
            # Back from a partition with its session intact (alive again), or
            # its description changed (an image was loaded, say).
            status = pb.NodeStatus(
                state=pb.NodeStatus.READY,
                addr=node.status.addr,
                timestamp=time.time(),
                message="heartbeat resumed" if node.status.state != pb.NodeStatus.READY else node.status.message,
            )
            a = spb.NodeStatusAction(node_id=ident.node_id, status=status)
            if request.HasField("description"):
                a.description.CopyFrom(request.description)
            self._submit([spb.StoreAction(node_status=a)], wait=0)
        period, _ = heartbeat_settings(snap)
        return dpb.HeartbeatResponse(period=period)

    def UpdateTaskStatus(
        self, request: dpb.UpdateTaskStatusRequest, context: grpc.ServicerContext
    ) -> dpb.UpdateTaskStatusResponse:
        ident = self._identity(context)
        sess = self._session(request.session_id, context, ident)
        with self._lock:
            sess.last_seen = self._last_seen[ident.node_id] = time.monotonic()
        actions = [
            spb.StoreAction(task_status=spb.TaskStatusAction(task_id=u.task_id, node_id=ident.node_id, status=u.status))
            for u in request.updates
        ]
        try:
            self._submit(actions, wait=5.0)
        except StoreError as e:
            context.abort(grpc.StatusCode.UNAVAILABLE, f"status not recorded: {e}")
        return dpb.UpdateTaskStatusResponse()

    # ---- helpers ----
    def RenewRole(self, request: dpb.RenewRoleRequest, context: grpc.ServicerContext) -> dpb.RenewRoleResponse:
        ident = self._identity(context)
        if self._renew_role is None:
            context.abort(grpc.StatusCode.UNIMPLEMENTED, "role changes are not served here")
        try:
            cert, role, secret, peers = self._renew_role(ident.node_id, request.csr_pem)
        except errors.SwarmletError as e:
            rpc.abort(context, e)
        return dpb.RenewRoleResponse(cert_pem=cert, role=role, raft_secret=secret, raft_peers=peers)

    def _record_api_addr(self, node_id: str, addr: str, api_addr: str, raft_addr: str = "") -> None:
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

    def _submit(self, actions: list[spb.StoreAction], wait: float) -> None:
        """Queue merge actions for the writer thread; with wait > 0, block until
        they are committed (raising StoreError if they were not)."""
        if not actions:
            return
        done = threading.Event()
        out: dict = {}
        with self._pending_cond:
            for a in actions[:-1]:
                self._pending.append((a, threading.Event(), {}))
            self._pending.append((actions[-1], done, out))
            self._pending_cond.notify()
        if wait > 0:
            if not done.wait(wait):
                raise StoreError("status write timed out")
            if "error" in out:
                raise StoreError(out["error"])

    def _writer_loop(self) -> None:
        while not self._stop.is_set():
            with self._pending_cond:
                while not self._pending and not self._stop.is_set():
                    self._pending_cond.wait(0.5)
                batch, self._pending = self._pending[:2000], self._pending[2000:]
            if not batch:
                continue
            # Merge actions (status, node status) never conflict, so a batch of
            # them from many agents applies whole.
            try:
                self._store.propose([a for a, _, _ in batch])
            except StoreError as e:
                for _, _, out in batch:
                    out["error"] = str(e)
            for _, ev, _ in batch:
                ev.set()

    def _liveness_loop(self) -> None:
        """Mark nodes DOWN whose heartbeats stopped."""
        was_leader = False
        while not self._stop.wait(0.2):
            if not self._store.is_leader():
                was_leader = False
                continue
            now = time.monotonic()
            snap = self._store.snapshot()
            if not was_leader:
                # A new leader has no heartbeat history: give every node a full
                # grace period from now before judging it.
                was_leader = True
                with self._lock:
                    for nid in snap.nodes:
                        self._last_seen[nid] = max(self._last_seen.get(nid, 0.0), now)
            _, down_after = heartbeat_settings(snap)
            actions = []
            for node in snap.nodes.values():
                if node.status.state == pb.NodeStatus.DOWN:
                    continue
                with self._lock:
                    seen = self._last_seen.setdefault(node.id, now)
                if now - seen > down_after:
                    log.warning("node %s missed heartbeats for %.1fs: marking it down", node.id, now - seen)
                    with self._lock:
                        for s in [s for s in self._sessions.values() if s.node_id == node.id]:
                            s.closed.set()
                    actions.append(
                        spb.StoreAction(
                            node_status=spb.NodeStatusAction(
                                node_id=node.id,
                                status=pb.NodeStatus(
                                    state=pb.NodeStatus.DOWN,
                                    addr=node.status.addr,
                                    timestamp=time.time(),
                                    message=f"heartbeat failure: none for {now - seen:.1f}s",
                                ),
                            )
                        )
                    )
            if actions:
                try:
                    self._submit(actions, wait=2.0)
                except StoreError as e:
                    log.warning("could not mark nodes down: %s", e)
