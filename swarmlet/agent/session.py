"""The agent's link to the managers: one dispatcher session at a time.

A session's first message carries the node's full set of tasks and
networks, later ones what changed (core/sessions.py folds them back into the
full set); each complete set goes to the executor (level triggered). Status
reports are coalesced per task (the newest state wins, and
states only increase) and retried until a manager acknowledges them, so a
report is never lost to a reconnect.
"""

from __future__ import annotations

import itertools
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import grpc

from swarmlet import metrics, rpc, tls
from swarmlet.api import dispatcher_pb2 as dpb
from swarmlet.api import dispatcher_pb2_grpc as dgrpc
from swarmlet.api import objects_pb2 as pb
from swarmlet.core.sessions import Assembler

log = logging.getLogger(__name__)

# An assignment carries the data of the secrets and configs the node's tasks
# use (up to 500 KiB each): more than gRPC's default 4 MiB may arrive at once.
SESSION_MAX_MESSAGE = 64 * 1024 * 1024
SESSION_OPTIONS: tuple[tuple[str, int], ...] = (("grpc.max_receive_message_length", SESSION_MAX_MESSAGE),)


class Worker(Protocol):
    """What the session needs of the executor."""

    def describe(self) -> pb.NodeDescription: ...
    def assign(
        self,
        tasks: list[pb.Task],
        networks: list[dpb.NetworkAssignment],
        secrets: Sequence[pb.Secret] = (),
        configs: Sequence[pb.Config] = (),
    ) -> None: ...
    def image_hints(self, sources: list[dpb.ImageSource], auths: list[dpb.ServiceRegistryAuth]) -> None: ...


@dataclass
class _HeartbeatState:
    failures: int = 0
    last_desc: bytes | None = None  # the description the manager acknowledged last
    last_desc_check: float = 0.0
    last_desc_sent: float = 0.0


# A description is sent again this often even when it did not change: a
# change the manager acknowledged but did not record (its write was lost in a
# leader change, or it was over the node's rate) is repaired within this
# time. The manager writes nothing when it equals what it holds.
REDESCRIBE_EVERY = 30.0
# Heartbeats go out at a random point of the last tenth of each period.
HEARTBEAT_JITTER = 0.1


class AgentSession:
    def __init__(
        self,
        creds: tls.NodeCredentials,
        managers: list[str],
        executor: Worker,
        addr: str,
        api_addr: str,
        on_managers: Callable[[list[str]], None] | None = None,
        describe_every: float = 5.0,
        raft_addr: str = "",
        on_role: Callable[[int], None] | None = None,
        on_message: Callable[[dpb.SessionMessage], None] | None = None,
    ) -> None:
        # on_role(desired_role) is called (from the session thread) when the
        # cluster wants this node in another role than its certificate says.
        # on_message(msg) sees every session message first (certificates:
        # trust, signing root, revocations; node/certs.py).
        self._raft_addr = raft_addr
        self._on_role = on_role
        self._on_message = on_message
        self._role = pb.NodeSpec.MANAGER if creds.role == "manager" else pb.NodeSpec.WORKER
        self._leader_hint: str | None = None
        self._creds = creds
        self._managers = list(managers)
        self._executor = executor
        self._addr = addr
        self._api_addr = api_addr
        self._on_managers = on_managers
        self._describe_every = describe_every
        self._stop = threading.Event()
        self._lock = threading.Condition()
        self._pending: dict[str, dpb.TaskStatusReport] = {}
        self._session_id: str | None = None
        self._stub: dgrpc.DispatcherStub | None = None
        self._stream: Any = None  # the Session call: an iterator that can be cancelled
        self._period = 0.5
        self._connected_to: str | None = None
        self._reconnecting = False  # set_credentials cancelled the stream on purpose
        self.connected = threading.Event()
        # Heartbeat round trips (seconds, the latest ones) and failures: what
        # the scale benchmark reports as the agent sees it.
        self.heartbeat_rtts: deque[float] = deque(maxlen=256)
        self.heartbeat_failures = 0
        self._threads = [
            threading.Thread(target=self._session_loop, name="agent-session", daemon=True),
            threading.Thread(target=self._heartbeat_loop, name="agent-heartbeat", daemon=True),
            threading.Thread(target=self._report_loop, name="agent-reporter", daemon=True),
        ]

    # ---- lifecycle ----
    def start(self) -> None:
        for t in self._threads:
            t.start()

    def stop(self) -> None:
        self._stop.set()
        stream = self._stream
        if stream is not None:
            stream.cancel()
        with self._lock:
            self._lock.notify_all()

    @property
    def managers(self) -> list[str]:
        return list(self._managers)

    @property
    def heartbeat_period(self) -> float:
        """The heartbeat period the manager asked for last (seconds)."""
        return self._period

    @property
    def connected_to(self) -> str | None:
        """The manager (API address) the session is open with, if it is."""
        return self._connected_to if self.connected.is_set() else None

    def set_credentials(self, creds: tls.NodeCredentials, reconnect: bool = True) -> None:
        """Use a renewed certificate (or a new trust bundle) from the next
        connection on; with `reconnect`, reconnect now, keeping the reports not
        acknowledged yet (the managers then see the new certificate)."""
        self._creds = creds
        stream = self._stream
        if reconnect and stream is not None:
            self._reconnecting = True
            stream.cancel()

    def renew_certificate(self, csr_pem: bytes, timeout: float = 30.0) -> dpb.RenewCertificateResponse:
        """Dispatcher.RenewCertificate through the current session's manager
        (the leader). Raises grpc.RpcError, or ConnectionError without a session."""
        with self._lock:
            stub = self._stub
        if stub is None:
            raise ConnectionError("no session with a manager")
        resp: dpb.RenewCertificateResponse = stub.RenewCertificate(dpb.RenewCertificateRequest(csr_pem=csr_pem), timeout=timeout)
        return resp

    # ---- reports (called by the executor) ----
    def report(self, reports: list[dpb.TaskStatusReport]) -> None:
        with self._lock:
            for r in reports:
                cur = self._pending.get(r.task_id)
                if cur is None or r.status.state >= cur.status.state:
                    self._pending[r.task_id] = r
            self._lock.notify_all()

    # ---- loops ----
    def _channel(self, addr: str) -> grpc.Channel:
        creds = tls.channel_credentials(self._creds.ca_pem, self._creds.key_pem, self._creds.cert_pem)
        # The server must hold a manager's certificate (issue 13): a worker's
        # cannot serve an agent its tasks.
        return grpc.secure_channel(addr, creds, options=tls.MANAGER_CHANNEL_OPTIONS + SESSION_OPTIONS)

    def _session_loop(self) -> None:
        backoff = 0.1
        for idx in itertools.count():
            if self._stop.is_set():
                return
            managers = self._managers or []
            if not managers:
                self._stop.wait(1.0)
                continue
            addr = managers[idx % len(managers)]
            if self._leader_hint:
                # A follower told us where the leader is: go there first.
                addr, self._leader_hint = self._leader_hint, None
            channel = self._channel(addr)
            try:
                stub = dgrpc.DispatcherStub(channel)
                req = dpb.SessionRequest(
                    description=self._executor.describe(), addr=self._addr, api_addr=self._api_addr, raft_addr=self._raft_addr
                )
                self._stream = stub.Session(req)
                assembled = Assembler()
                for msg in self._stream:
                    backoff = 0.1
                    if not msg.session_id:
                        # Only the role the cluster wants: this certificate is
                        # of the node's former role, and serves nothing else.
                        self._notify(msg)
                        if self._on_role is not None and msg.desired_role != self._role:
                            self._on_role(msg.desired_role)
                            return
                        continue
                    with self._lock:
                        fresh = self._session_id != msg.session_id
                        self._session_id = msg.session_id
                        self._stub = stub
                        self._period = msg.heartbeat_period or self._period
                        if fresh:
                            self._lock.notify_all()
                    if fresh:
                        log.info("session %s with manager %s", msg.session_id[:8], addr)
                        self._connected_to = addr
                        self.connected.set()
                    if msg.managers and list(msg.managers) != self._managers:
                        self._managers = list(msg.managers)
                        if self._on_managers:
                            self._on_managers(self._managers)
                    if not assembled.add(msg):
                        continue  # more of the same update follows
                    # The whole state, as main's full messages carried it:
                    # tasks, networks, and the images, secrets, configs and
                    # certificate fields last sent (issue 15 sends them only
                    # when they change).
                    full = assembled.message(msg)
                    self._notify(full)
                    self._executor.image_hints(list(full.images), list(full.registry_auths))  # issue 9: before the tasks
                    self._executor.assign(list(full.tasks), list(full.networks), list(full.secrets), list(full.configs))
                    if self._on_role is not None and msg.desired_role != self._role:
                        # Promotion or demotion: the daemon renews the
                        # certificate and restarts the session with it.
                        self._on_role(msg.desired_role)
                        return
            except grpc.RpcError as e:
                if self._reconnecting and e.code() == grpc.StatusCode.CANCELLED:
                    log.info("reconnecting to %s with the renewed certificate", addr)
                    self._leader_hint = addr  # the same manager: it leads
                    backoff = 0.02
                elif not self._stop.is_set():
                    log.warning("session with %s ended: %s %s%s", addr, e.code(), e.details(), _hint(e))
                    if e.code() == grpc.StatusCode.UNAVAILABLE:
                        hint = dict(e.trailing_metadata() or ()).get(rpc.LEADER_HINT_KEY)
                        if hint and hint != addr:
                            self._leader_hint = hint
                            backoff = 0.05
            except Exception:
                log.exception("session with %s failed", addr)
            finally:
                self._reconnecting = False
                self.connected.clear()
                with self._lock:
                    self._session_id = None
                    self._stub = None
                self._stream = None
                channel.close()
            # Jittered (issue 15): after a leader dies every agent's session
            # ends at once, and in lockstep they would retry, and open their
            # TLS handshakes, in bursts on managers busy electing a leader.
            # Around the same mean: no more attempts than without it.
            self._stop.wait(backoff * random.uniform(0.75, 1.25))
            backoff = min(backoff * 2, 2.0)

    def _notify(self, msg: dpb.SessionMessage) -> None:
        if self._on_message is not None:
            try:
                self._on_message(msg)
            except Exception:
                log.exception("handling the session message failed")

    def _heartbeat_loop(self) -> None:
        # Nothing may end this thread but stop(): a node whose heartbeats stop
        # is marked down (and its tasks replaced) every few seconds while its
        # session keeps reconnecting (issue 14: after a 5 s SIGSTOP, the old
        # stub's channel was closed under this thread and the ValueError it
        # raised killed it).
        state = _HeartbeatState()
        while not self._stop.is_set():
            try:
                wait = self._heartbeat_once(state)
            except Exception:
                log.exception("heartbeat loop: unexpected error, going on")
                wait = 0.5
            self._stop.wait(wait)

    def _heartbeat_once(self, state: _HeartbeatState) -> float:
        """One heartbeat on the current session, if there is one; returns how
        long to wait before the next."""
        with self._lock:
            sid, stub, period = self._session_id, self._stub, self._period
        if sid is None or stub is None:
            state.failures = 0
            return 0.05
        req = dpb.HeartbeatRequest(session_id=sid)
        now = time.monotonic()
        sending: bytes | None = None
        if now - state.last_desc_check > self._describe_every:
            state.last_desc_check = now
            try:
                desc = self._executor.describe()
                raw = desc.SerializeToString(deterministic=True)
                # The first look sends it too: it may have changed since the
                # session's opening carried it.
                if state.last_desc is None or raw != state.last_desc or now - state.last_desc_sent > REDESCRIBE_EVERY:
                    req.description.CopyFrom(desc)
                    sending = raw
            except Exception as e:
                log.debug("describe failed: %s", e)
        try:
            sent = time.monotonic()
            with metrics.AGENT_HEARTBEAT.time():
                resp = stub.Heartbeat(req, timeout=max(1.0, 2 * period))
            self.heartbeat_rtts.append(time.monotonic() - sent)
            state.failures = 0
            if sending is not None:
                # Only now: a change sent in a heartbeat that failed is sent
                # again at the next look, not taken as known (it was lost
                # for good before: a node's image list stayed stale).
                state.last_desc, state.last_desc_sent = sending, time.monotonic()
            if resp.period and resp.period != period:
                # The period moves with the cluster's size (core/cluster.py
                # heartbeat_stretch) without a session message.
                with self._lock:
                    self._period = resp.period
            # A little early, by a random part: agents that (re)connected
            # together (a failover, a cluster started at once) drift apart
            # instead of reaching the leader in one burst every period.
            return float(resp.period or period) * random.uniform(1 - HEARTBEAT_JITTER, 1.0)
        except grpc.RpcError as e:
            self.heartbeat_failures += 1
            state.failures += 1
            if e.code() == grpc.StatusCode.NOT_FOUND or state.failures >= 3:
                # The manager forgot us or is unreachable: start over.
                log.warning("heartbeat failed (%s): reconnecting", e.details())
                self._restart_session(stub)
                state.failures = 0
        except Exception as e:
            # Not an answer from the manager: the stub's channel was closed
            # (the session ended between reading the stub and calling it) or
            # is otherwise unusable. If the session still holds this stub it
            # is broken: start over; else the next round uses the new one.
            log.info("heartbeat could not be sent (%s: %s)", type(e).__name__, e)
            self._restart_session(stub)
            state.failures = 0
        return period

    def _restart_session(self, stub: dgrpc.DispatcherStub) -> None:
        """End the current session's stream if it is still the one `stub`
        belongs to (the session loop then opens a new one)."""
        with self._lock:
            current = self._stub is stub
        stream = self._stream
        if current and stream is not None:
            stream.cancel()

    def _report_loop(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                while not self._stop.is_set() and (not self._pending or self._session_id is None):
                    self._lock.wait(0.5)
                if self._stop.is_set():
                    return
                batch = list(self._pending.values())
                sid, stub = self._session_id, self._stub
            if stub is None:  # set with the session id: cannot happen
                continue
            try:
                stub.UpdateTaskStatus(dpb.UpdateTaskStatusRequest(session_id=sid, updates=batch), timeout=10)
                with self._lock:
                    for r in batch:
                        cur = self._pending.get(r.task_id)
                        # Drop only what was sent; a newer report stays queued.
                        if cur is not None and cur.status.state == r.status.state and cur.status.timestamp == r.status.timestamp:
                            del self._pending[r.task_id]
            except grpc.RpcError as e:
                log.warning("status report failed (%s): will retry", e.details())
                self._stop.wait(0.3)
            except Exception:
                log.exception("status report failed")
                self._stop.wait(0.3)


def _hint(e: grpc.RpcError) -> str:
    """What a failed handshake means, in words (gRPC only says the name did
    not match)."""
    details = e.details() or ""
    if "Hostname Verification" in details or "No match found for server name" in details:
        return " (the server did not present a manager certificate of this cluster: refusing to talk to it)"
    if "CERTIFICATE_VERIFY_FAILED" in details or "certificate verify failed" in details:
        return " (certificate verification failed: expired or not issued by this cluster's CA?)"
    return ""
