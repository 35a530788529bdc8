"""The CA gRPC service (CA.IssueNodeCertificate), served on the join port:
a joining node sends its join token and a CSR and gets its node certificate,
the cluster's root and where the managers are. The join token is the only
credential; the certificate authority itself is ca.py.

Guessing tokens (issue 13): every refusal is logged with the caller's
address (never the token), and each source address may fail `JOIN_BURST`
times at once, then `JOIN_RATE` times a second; beyond that it is answered
RESOURCE_EXHAUSTED without looking at the token. Joins that succeed cost
nothing (many nodes may join from one address). Log lines about refusals
are themselves limited to one a second per source, with a count."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from swarmlet import errors, ratelimit, rpc, tls
from swarmlet.api import ca_pb2, ca_pb2_grpc
from swarmlet.api import objects_pb2 as pb
from swarmlet.core import pki
from swarmlet.ids import new_id
from swarmlet.manager import ca

log = logging.getLogger(__name__)

# register_node(node_id, role, request, peer_ip, issued) -> managers' mTLS api
# addresses; `issued` records the certificate just signed (revoked with the
# node). It refuses a join by raising a swarmlet.errors error (Unavailable
# when this manager cannot commit right now, FailedPrecondition for a policy
# refusal).
RegisterNode = Callable[[str, str, ca_pb2.IssueNodeCertificateRequest, str, pb.NodeCertificate], list[str]]

# Join attempts per source address: a burst for a batch of nodes behind one
# NAT joining at once, then a few a second.
JOIN_RATE, JOIN_BURST = 2.0, 20.0


class _RefusalLog:
    """At most one log line a second per source, with how many were folded."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last: dict[str, tuple[float, int]] = {}

    def note(self, source: str, why: str) -> None:
        now = time.monotonic()
        with self._lock:
            last, folded = self._last.get(source, (0.0, 0))
            if now - last < 1.0:
                self._last[source] = (last, folded + 1)
                return
            if len(self._last) > 4096:
                self._last.clear()
            self._last[source] = (now, 0)
        more = f" ({folded} more refused since the last line)" if folded else ""
        log.warning("join refused from %s: %s%s", source or "?", why, more)


class CAServicer(ca_pb2_grpc.CAServicer):  # type: ignore[misc]  # generated, untyped
    """Kept free of the store: it reads the cluster and records nodes through
    the callables it is given."""

    def __init__(
        self,
        get_cluster: Callable[[], pb.Cluster | None],
        register_node: RegisterNode,
        raft_peers: Callable[[], list[str]] | None = None,
    ) -> None:
        self._get_cluster = get_cluster
        self._register_node = register_node
        self._limit = ratelimit.RateLimiter(JOIN_RATE, JOIN_BURST)
        self._refusals = _RefusalLog()
        # The Raft members a joining manager starts with (it is one already).
        self._raft_peers = raft_peers or (lambda: [])

    @rpc.edge
    async def IssueNodeCertificate(
        self, request: ca_pb2.IssueNodeCertificateRequest, context: Any
    ) -> ca_pb2.IssueNodeCertificateResponse:
        peer_ip = tls.peer_host(context)
        # Refused before the token is even looked at (cheap: on the loop).
        wait = self._limit.retry_after(peer_ip, take=False)
        if wait:
            self._refusals.note(peer_ip, "too many join attempts")
            raise errors.ResourceExhausted(f"too many join attempts from {peer_ip}: retry in {wait:.1f}s")
        # Signing and registering (a Raft write) block: off the server's loop.
        return await asyncio.to_thread(self.issue, request, peer_ip)

    def issue(self, request: ca_pb2.IssueNodeCertificateRequest, peer_ip: str) -> ca_pb2.IssueNodeCertificateResponse:
        """Check the token, sign the CSR and register the node; raises a
        swarmlet.errors error when refused."""
        cluster = self._get_cluster()
        if cluster is None or not cluster.root_ca.cert_pem:
            raise errors.Unavailable("this manager has no cluster state yet; try again")
        try:
            role = ca.token_role(cluster, request.token)
        except tls.TokenError as e:
            # Whatever is wrong with the token, the joiner is not let in.
            self._limit.retry_after(peer_ip)  # a failure costs a token
            self._refusals.note(peer_ip, str(e))
            raise errors.PermissionDenied(str(e)) from None

        # The advertise address is where other nodes will reach this one, so
        # it is the right IP SAN; behind NAT the peer address would be wrong.
        cert_ip = ca.san_ip(request.addr) or peer_ip
        node_id = new_id()
        # A bad CSR is a CSRError (Invalid): the edge answers INVALID_ARGUMENT.
        cert_pem = ca.sign_node_csr(
            cluster.root_ca, request.csr_pem, node_id, role, cluster.id, cert_ip, pki.cert_expiry(cluster)
        )

        # Sign first, register second: a bad CSR must not leave a node record.
        try:
            managers = self._register_node(node_id, role, request, peer_ip, ca.issued_record(cert_pem, role))
        except errors.SwarmletError as e:
            # Same kind (the status the joiner sees), with the step named.
            kind = next(k for k in type(e).__mro__ if k.__module__ == errors.__name__)
            raise kind(f"cannot register the node: {e}") from None
        except Exception as e:  # noqa: BLE001  (the joiner needs a message, not "Unknown")
            log.exception("registering joining node %s failed", node_id)
            raise errors.Internal(f"cannot register the node: {e}") from None
        log.info("issued a %s certificate to new node %s (%s)", role, node_id, request.hostname or peer_ip)
        resp = ca_pb2.IssueNodeCertificateResponse(
            node_id=node_id,
            cert_pem=cert_pem,
            # The roots to trust (two during a root rotation). The joiner checks
            # that they include the root its token pins.
            ca_cert_pem=pki.trust_pem(cluster.root_ca),
            role=role,
            managers=list(managers),
        )
        if role == tls.ROLE_MANAGER:
            # Only a manager token holder gets the Raft secret; the channel is
            # TLS that the joiner verified against the token's CA digest.
            resp.raft_secret = cluster.raft_secret
            resp.raft_peers.extend(self._raft_peers())
        return resp
