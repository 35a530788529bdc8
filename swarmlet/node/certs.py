"""This node's certificate over time (issue 13, part A).

- Renewal: the node renews through the dispatcher (RenewCertificate, over its
  session) at a random point between 50% and 80% of its certificate's
  lifetime (as swarmkit), at once when the cluster signs with another root
  (a root rotation) or when the cluster's lifetime became shorter than its
  certificate's. The renewed certificate is saved, the servers present it
  from their next handshake (tls.dynamic_server_credentials) and the session
  reconnects with it, so the managers record which certificate it holds.
- Trust: every session message carries the roots to trust; a new bundle
  (a rotation starting or completing) is saved and used at once.
- What a worker knows to judge callers (manager ids, revoked serials) comes
  from the same messages (`view`, for core/pki.authorize_on_worker).
- Expiry: a certificate near its end is reported at start-up and in `info`.
  A manager whose certificate expired (it was off too long) issues itself a
  new one from the replicated root CA, which it holds; a worker cannot, and
  is told how to come back: `swarmlet leave --force`, then join again.

The decisions are pure (core/pki.py); this module holds the clock, the
randomness and the files.
"""

from __future__ import annotations

import datetime
import logging
import random
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

import grpc

from swarmlet import tls
from swarmlet.agent.session import AgentSession
from swarmlet.api import dispatcher_pb2 as dpb
from swarmlet.api import objects_pb2 as pb
from swarmlet.core import pki
from swarmlet.manager import ca

if TYPE_CHECKING:  # membership.py imports this module; a worker loads no Raft store (issue 15)
    from swarmlet.manager.store import Store
    from swarmlet.node.membership import Membership

log = logging.getLogger(__name__)

# Retries of a failed renewal: from 1 s, doubling, at most this (and never
# more than a quarter of the time left).
RETRY_MAX = 30.0
# How often an expired worker's message is logged again.
EXPIRED_REMINDER = 300.0


class CertParts(Protocol):
    """The running parts the keeper uses (daemon.Daemon)."""

    session: AgentSession | None
    store: Store | None


def when(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def expired_message(node_id: str, not_after: float) -> str:
    return (
        f"this node's certificate expired at {when(not_after)} (the node was off, or could not reach a manager, for "
        "longer than the certificate lived): it can no longer talk to the cluster. To bring the host back: run "
        "'swarmlet leave --force', then 'swarmlet join --token <token> <manager>:4242' (a manager prints the token "
        f"with 'swarmlet join-token worker'), and remove the old node with 'swarmlet node rm {node_id}' on a manager"
    )


def check_at_start(creds: tls.NodeCredentials, now: float) -> tuple[int, str]:
    """(log level, message) about this node's certificate at start-up; (0,
    "") when it is fine."""
    info = creds.cert_info
    if now >= info.not_after:
        if creds.role == pki.ROLE_MANAGER:
            return logging.WARNING, (
                f"this manager's certificate expired at {when(info.not_after)}: it issues itself a new one from the "
                "cluster's root CA once its Raft state is loaded"
            )
        return logging.ERROR, expired_message(creds.node_id, info.not_after)
    if pki.near_expiry(info.not_before, info.not_after, now):
        left = info.not_after - now
        return logging.WARNING, (
            f"this node's certificate expires soon, at {when(info.not_after)} (in {left:.0f}s): it is renewed as soon as "
            "the node reaches a manager"
        )
    return 0, ""


class CertKeeper:
    def __init__(
        self,
        membership: Membership,
        parts: CertParts,
        stopped: threading.Event,
        clock: Callable[[], float] = time.time,
        fraction: Callable[[], float] = lambda: random.uniform(*pki.RENEW_WINDOW),
    ) -> None:
        self._m = membership
        self._parts = parts
        self._stopped = stopped
        self._clock = clock
        self._fraction = fraction
        self._stop = threading.Event()
        self._wake = threading.Event()
        creds = membership.creds
        self.view = pki.WorkerView(creds.cluster_id if creds else "")
        self._wanted = pki.Wanted()
        self._for_serial = ""
        self._renew_at = 0.0
        self.problem = ""  # what `info` shows when the certificate is in trouble
        self.renewals = 0
        self._thread = threading.Thread(target=self._loop, name="cert-renewal", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    # ---- what the session tells (the session thread calls this) ----
    def on_session(self, msg: dpb.SessionMessage) -> None:
        creds = self._m.creds
        if creds is None:
            return
        if msg.cluster_id:
            self.view = pki.worker_view(msg.cluster_id, msg.manager_ids, msg.revoked_certs)
        if msg.trust_pem and msg.trust_pem != creds.ca_pem:
            self._adopt_trust(creds, msg.trust_pem)
        wanted = pki.Wanted(msg.signing_key_id, msg.cert_expiry)
        if wanted != self._wanted:
            self._wanted = wanted
            self._wake.set()

    def _adopt_trust(self, creds: tls.NodeCredentials, trust_pem: bytes) -> None:
        try:
            new = creds.with_trust(trust_pem)
        except tls.CredentialsError as e:
            # Our certificate is not from the roots the cluster trusts now
            # (the node missed a whole rotation): renewing needs the old trust.
            self.problem = f"the cluster's root CA changed and this node's certificate is not from it ({e})"
            log.error("%s: keeping the old trust until the certificate is renewed", self.problem)
            self._wake.set()
            return
        roots = trust_pem.count(b"BEGIN CERTIFICATE")
        log.info(
            "trusting %s now (%d root%s)",
            "the cluster's new root CA" if roots == 1 else "both root CAs",
            roots,
            "s" * (roots > 1),
        )
        self._install(new, reconnect=False)

    # ---- the renewal loop ----
    def _loop(self) -> None:
        backoff = 1.0
        while not (self._stop.is_set() or self._stopped.is_set()):
            creds = self._m.creds
            if creds is None:
                self._sleep(1.0)
                continue
            info = creds.cert_info
            if info.serial != self._for_serial:
                self._for_serial = info.serial
                self._renew_at = pki.renewal_time(info.not_before, info.not_after, self._fraction())
                backoff = 1.0
            now = self._clock()
            if now >= info.not_after:
                self._sleep(self._expired(creds))
                continue
            reason = pki.renewal_reason(info.issuer_key_id, info.not_before, info.not_after, self._wanted, now, self._renew_at)
            if not reason:
                self._sleep(self._renew_at - now)
                continue
            if self._renew(creds, reason):
                continue
            self._sleep(min(backoff, max(0.5, (info.not_after - now) / 4)))
            backoff = min(backoff * 2, RETRY_MAX)

    def _sleep(self, seconds: float) -> None:
        self._wake.wait(max(0.05, seconds))
        self._wake.clear()

    def _renew(self, creds: tls.NodeCredentials, reason: str) -> bool:
        session = self._parts.session
        if session is None or not session.connected.is_set():
            return False
        key_pem = tls.new_node_key()
        try:
            resp = session.renew_certificate(tls.make_csr(key_pem))
            new = tls.NodeCredentials.from_pems(key_pem, resp.cert_pem, resp.trust_pem or creds.ca_pem)
        except grpc.RpcError as e:
            log.warning("renewing this node's certificate (%s) failed: %s %s", reason, e.code(), e.details())
            return False
        except (ConnectionError, tls.CredentialsError) as e:
            log.warning("renewing this node's certificate (%s) failed: %s", reason, e)
            return False
        if new.identity != creds.identity:
            log.error("the renewed certificate is for %s, not for this node (%s): ignored", new.identity, creds.identity)
            return False
        log.info("renewed this node's certificate (%s): valid until %s", reason, when(new.cert_info.not_after))
        self._install(new, reconnect=True)
        self.renewals += 1
        return True

    def _expired(self, creds: tls.NodeCredentials) -> float:
        """The certificate has expired: a manager issues itself a new one from
        the replicated root CA; a worker can only say how to come back.
        Returns how long to wait before looking again."""
        store = self._parts.store
        if creds.role == pki.ROLE_MANAGER and store is not None:
            snap = store.snapshot()
            node = snap.nodes.get(creds.node_id)
            if snap.cluster is None or node is None or node.role != pb.NodeSpec.MANAGER:
                return 0.5  # the Raft state is not loaded yet
            key_pem, cert_pem = ca.issue_local_certificate(
                snap.cluster.root_ca,
                creds.node_id,
                pki.ROLE_MANAGER,
                snap.cluster.id,
                ca.san_ip(self._m.addrs.ip),
                pki.cert_expiry(snap.cluster),
            )
            new = tls.NodeCredentials.from_pems(key_pem, cert_pem, pki.trust_pem(snap.cluster.root_ca))
            log.warning(
                "this manager's certificate expired at %s: issued itself a new one from the cluster's root CA (valid until %s)",
                when(creds.cert_info.not_after),
                when(new.cert_info.not_after),
            )
            self._install(new, reconnect=True)
            return 0.0
        message = expired_message(creds.node_id, creds.cert_info.not_after)
        if message != self.problem:
            self.problem = message
            log.error("%s", message)
        return EXPIRED_REMINDER

    def _install(self, creds: tls.NodeCredentials, reconnect: bool) -> None:
        """Save `creds` and use them: the servers from their next handshake,
        the session at once (reconnecting if the certificate changed)."""
        with self._m.lock:
            cur, node = self._m.creds, self._m.node
            if cur is None or node is None or cur.node_id != creds.node_id:
                return  # the node left the cluster meanwhile
            if creds.role != cur.role or creds.role != node.role:
                return  # a role change saved its own certificate meanwhile (roles.py)
            self._m.files.save_credentials(creds)
            self._m.creds = creds
        self.problem = ""
        session = self._parts.session
        if session is not None:
            session.set_credentials(creds, reconnect=reconnect)
        self._wake.set()

    # ---- what `info` shows ----
    def status(self) -> tuple[float, str]:
        """(certificate expiry, warning or "")."""
        creds = self._m.creds
        if creds is None:
            return 0.0, ""
        info = creds.cert_info
        if self.problem:
            return info.not_after, self.problem
        _, message = check_at_start(creds, self._clock())
        return info.not_after, message
