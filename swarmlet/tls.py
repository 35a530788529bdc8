"""TLS for every swarmlet node: keys and CSRs, node identity from certificates,
gRPC credentials and options, the join-time CA fetch, credentials on disk.

Trust model (see docs/architecture.md):

- Each cluster has one root CA (swarmlet.manager.ca). A node certificate says
  who the node is: CN = node id, OU = role, O = cluster id.
- A daemon runs ONE grpc.server with two ports. The join port is plain server
  TLS (no client certificate is requested; the join token is the credential),
  the API port is mutual TLS against the cluster's root CA. Since both ports
  reach the same services, every service but CA.IssueNodeCertificate must
  refuse callers without a verified certificate: `ClientCertRequired` does
  that for all of them at once.
- Servers are dialled by IP, so clients check the server's certificate for a
  DNS name via `grpc.ssl_target_name_override` instead of the IP: `NODE_SAN`
  (every node certificate carries it) for any node, `MANAGER_SAN` (only
  manager certificates carry it) when the server must be a manager: agents
  and joining nodes use MANAGER_CHANNEL_OPTIONS, so a worker's certificate
  cannot pose as a manager (issue 13).
- A joining node knows only the join token, which pins the root CA by its
  sha256 digest. `fetch_remote_ca` reads the CA from the join port's TLS
  handshake without verification, accepts it only if the digest matches, and
  checks that the server's certificate is a manager's issued by that CA.
- During a root rotation a node certificate is followed by an intermediate:
  the new root's key certified by the old root (same subject name, so the old
  root's path length 0 is not spent on it). `cert_pem` then holds both, and
  `ca_pem` may hold two roots (the trust bundle).

This module is used by workers too, so it must not import swarmlet.manager.
"""

from __future__ import annotations

import contextvars
import functools
import hmac
import os
import re
import shutil
import socket
import ssl
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from swarmlet import errors, rpc
from swarmlet.fsutil import fsync_dir, write_atomic

ROLE_WORKER = "worker"
ROLE_MANAGER = "manager"
ROLES = (ROLE_WORKER, ROLE_MANAGER)

# DNS SANs. Every node certificate has NODE_SAN (so any node can be a TLS
# server that clients verify with the name override below); managers also
# carry MANAGER_SAN so a future check can insist on talking to a manager.
NODE_SAN = "swarmlet-node"
MANAGER_SAN = "swarmlet-manager"

DEFAULT_JOIN_PORT = 4242
DEFAULT_API_PORT = 4244

# The only method answered without a client certificate (on the join port).
CA_ISSUE_METHOD = "/swarmlet.api.CA/IssueNodeCertificate"

TOKEN_PREFIX = "SWLTKN"
TOKEN_VERSION = "1"
_TOKEN_MIN_SECRET = 26
_HEX64 = re.compile(r"[0-9a-f]{64}")
_BASE32_LOWER = re.compile(r"[a-z2-7]+")

# Keepalive: a peer that vanished (host down, partition) must be noticed in a
# few seconds so that agent sessions fail over and the dispatcher marks nodes
# down promptly, not after the kernel's TCP timeouts (minutes).
# grpc.http2.ping_timeout_ms is needed too: in grpcio 1.85 an unanswered
# keepalive ping is timed by the generic ping timeout (default 60 s), and
# keepalive_timeout_ms alone does not shorten it (seen in the chttp2 trace;
# tests/unit/test_tls_grpc.py::test_keepalive_notices_a_dead_peer_within_seconds).
_KEEPALIVE_MS = 2000
_KEEPALIVE_OPTIONS: tuple[tuple[str, Any], ...] = (
    ("grpc.keepalive_time_ms", _KEEPALIVE_MS),
    ("grpc.keepalive_timeout_ms", _KEEPALIVE_MS),
    ("grpc.http2.ping_timeout_ms", _KEEPALIVE_MS),
)
_CLIENT_OPTIONS: tuple[tuple[str, Any], ...] = (
    *_KEEPALIVE_OPTIONS,
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
)
# Any node's API port (agent API).
CHANNEL_OPTIONS: tuple[tuple[str, Any], ...] = (("grpc.ssl_target_name_override", NODE_SAN), *_CLIENT_OPTIONS)
# A manager's ports (dispatcher, CA): the handshake fails unless the server's
# certificate is a manager's.
MANAGER_CHANNEL_OPTIONS: tuple[tuple[str, Any], ...] = (("grpc.ssl_target_name_override", MANAGER_SAN), *_CLIENT_OPTIONS)
# The server must accept pings as frequent as the clients send them (else it
# answers with GOAWAY "too_many_pings" and the channel flaps), and pings
# agents itself so a dead agent's stream ends on the server side too.
SERVER_OPTIONS: tuple[tuple[str, Any], ...] = (
    *_KEEPALIVE_OPTIONS,
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_recv_ping_interval_without_data_ms", _KEEPALIVE_MS // 2),
    ("grpc.http2.max_pings_without_data", 0),
    ("grpc.http2.max_ping_strikes", 0),
)


# ---------------------------------------------------------------- tokens


class TokenError(errors.Invalid):
    """A join token is malformed or is not valid for this cluster."""


def parse_token(token: str) -> tuple[str, str]:
    """Split `SWLTKN-1-<ca digest>-<secret>` into (digest, secret).

    Joining nodes call this before anything else, so every message names the
    part that is wrong: tokens are copy-pasted by humans."""
    token = token.strip()
    parts = token.split("-")
    if len(parts) != 4:
        raise TokenError(
            f"malformed join token: expected {TOKEN_PREFIX}-{TOKEN_VERSION}-<ca digest>-<secret>"
            f" (4 parts separated by '-'), got {len(parts)} part(s)"
        )
    prefix, version, digest, secret = parts
    if prefix != TOKEN_PREFIX:
        raise TokenError(f"malformed join token: it must start with {TOKEN_PREFIX}-, not {prefix[:16]!r}-")
    if version != TOKEN_VERSION:
        raise TokenError(
            f"malformed join token: unsupported version {version[:8]!r} (this swarmlet reads version {TOKEN_VERSION})"
        )
    if not _HEX64.fullmatch(digest):
        raise TokenError("malformed join token: the CA digest must be 64 lowercase hex characters")
    if len(secret) < _TOKEN_MIN_SECRET or not _BASE32_LOWER.fullmatch(secret):
        raise TokenError(f"malformed join token: the secret must be at least {_TOKEN_MIN_SECRET} lowercase base32 characters")
    return digest, secret


# ---------------------------------------------------------------- keys, CSRs, identity


def new_node_key() -> bytes:
    """A fresh EC P-256 private key as unencrypted PKCS#8 PEM. It never leaves
    the node: only its CSR is sent to the CA."""
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def make_csr(key_pem: bytes) -> bytes:
    """A CSR (PEM) for `key_pem`. Its subject is empty: the CA decides the
    node's identity and ignores whatever the CSR would claim."""
    key = serialization.load_pem_private_key(key_pem, password=None)
    csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([])).sign(key, hashes.SHA256())  # type: ignore[arg-type]
    return csr.public_bytes(serialization.Encoding.PEM)


@dataclass(frozen=True)
class Identity:
    """Who a verified peer certificate says the peer is."""

    node_id: str
    role: str
    cluster_id: str

    @property
    def is_manager(self) -> bool:
        return self.role == ROLE_MANAGER


def _name_attr(name: x509.Name, oid: x509.ObjectIdentifier, label: str) -> str:
    attrs = name.get_attributes_for_oid(oid)
    if len(attrs) != 1:
        raise ValueError(f"certificate subject must have exactly one {label}")
    value = attrs[0].value
    return value if isinstance(value, str) else value.decode()


def certificate_identity(cert_pem: bytes) -> Identity:
    """The identity in a node certificate (the first one in `cert_pem`).
    Raises ValueError for a certificate that is not a swarmlet node cert."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    identity = Identity(
        node_id=_name_attr(cert.subject, NameOID.COMMON_NAME, "CN (node id)"),
        role=_name_attr(cert.subject, NameOID.ORGANIZATIONAL_UNIT_NAME, "OU (role)"),
        cluster_id=_name_attr(cert.subject, NameOID.ORGANIZATION_NAME, "O (cluster id)"),
    )
    if identity.role not in ROLES:
        raise ValueError(f"certificate has unknown role {identity.role!r}")
    return identity


@dataclass(frozen=True)
class CertInfo:
    """What revocation, renewal and root rotation need of a certificate."""

    serial: str  # hex
    not_before: float  # unix seconds
    not_after: float
    issuer_key_id: str  # hex authority key identifier: the key of the root that signed it
    key_id: str  # hex subject key identifier ("" when absent)

    @property
    def lifetime(self) -> float:
        return self.not_after - self.not_before


def _key_id(cert: x509.Certificate, ext_cls: Any) -> str:
    try:
        value = cert.extensions.get_extension_for_class(ext_cls).value
    except x509.ExtensionNotFound:
        return ""
    raw = value.key_identifier if isinstance(value, x509.AuthorityKeyIdentifier) else value.digest
    return raw.hex() if raw else ""


def certificate_info(cert_pem: bytes) -> CertInfo:
    """Serial, validity and key identifiers of the first certificate in
    `cert_pem`. Raises ValueError for unreadable PEM."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    return CertInfo(
        serial=format(cert.serial_number, "x"),
        not_before=cert.not_valid_before_utc.timestamp(),
        not_after=cert.not_valid_after_utc.timestamp(),
        issuer_key_id=_key_id(cert, x509.AuthorityKeyIdentifier),
        key_id=_key_id(cert, x509.SubjectKeyIdentifier),
    )


def key_id(cert_pem: bytes) -> str:
    """The subject key identifier (hex) of a root certificate: what the
    certificates it signs name as their issuer."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    return _key_id(cert, x509.SubjectKeyIdentifier) or x509.SubjectKeyIdentifier.from_public_key(cert.public_key()).digest.hex()


@dataclass(frozen=True)
class Peer:
    """A verified peer certificate: who it says the peer is, and which
    certificate it is (for revocation)."""

    identity: Identity
    cert: CertInfo


# Peer certs are parsed on every authenticated call (heartbeats included), and
# a node presents the same certificate for months: cache the parse.
@functools.lru_cache(maxsize=1024)
def _cached_peer(cert_pem: bytes) -> Peer | None:
    try:
        return Peer(certificate_identity(cert_pem), certificate_info(cert_pem))
    except ValueError:
        return None


def _cached_identity(cert_pem: bytes) -> Identity | None:
    p = _cached_peer(cert_pem)
    return p.identity if p is not None else None


def ca_digest(cert_pem: bytes) -> str:
    """sha256 of the certificate's DER, lowercase hex: what join tokens pin."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    return cert.fingerprint(hashes.SHA256()).hex()


# ---------------------------------------------------------------- gRPC credentials


def server_credentials(key_pem: bytes, cert_pem: bytes, ca_pem: bytes, require_client_auth: bool) -> grpc.ServerCredentials:
    """Credentials for one server port.

    The chain sent is node cert + root CA so a joiner can read the root from
    the handshake (fetch_remote_ca). With require_client_auth=False (the join
    port) no root is given to gRPC at all, which makes it not even request a
    client certificate: a certificate it would request but not verify would
    otherwise show up in the auth context as if it were trusted."""
    chain = cert_pem.rstrip(b"\n") + b"\n" + ca_pem
    if require_client_auth:
        return grpc.ssl_server_credentials([(key_pem, chain)], root_certificates=ca_pem, require_client_auth=True)
    return grpc.ssl_server_credentials([(key_pem, chain)], root_certificates=None, require_client_auth=False)


def channel_credentials(ca_pem: bytes, key_pem: bytes | None = None, cert_pem: bytes | None = None) -> grpc.ChannelCredentials:
    """Client credentials trusting only the cluster's root CA; with a key and
    certificate, for the mutual-TLS API port. Use with CHANNEL_OPTIONS."""
    if (key_pem is None) != (cert_pem is None):
        raise ValueError("key_pem and cert_pem must be given together")
    return grpc.ssl_channel_credentials(root_certificates=ca_pem, private_key=key_pem, certificate_chain=cert_pem)


def peer_identity(context: grpc.ServicerContext) -> Identity | None:
    """The identity of the caller from its verified client certificate, or None
    when there is none (the join port never asks for one)."""
    p = peer_certificate(context)
    return p.identity if p is not None else None


def peer_certificate(context: grpc.ServicerContext) -> Peer | None:
    """The caller's verified client certificate (identity and serial), or None."""
    checked = _CALL_PEER.get(None)
    if checked is not None and checked[0] is context:
        return checked[1]  # the interceptor read it for this call already
    certs = context.auth_context().get("x509_pem_cert")
    if not certs:
        return None
    return _cached_peer(certs[0])


# The peer the interceptor (_acheck) found for the call running in this task:
# the servicer asks again, and reading the auth context builds a dict of every
# property of the connection each time (issue 15: twice per heartbeat).
_CALL_PEER: contextvars.ContextVar[tuple[Any, Peer] | None] = contextvars.ContextVar("swarmlet_call_peer", default=None)


def dynamic_server_credentials(
    current: Callable[[], NodeCredentials | None], require_client_auth: bool
) -> grpc.ServerCredentials:
    """Server credentials that follow `current()`: a renewed certificate or a
    new trust bundle is used from the next handshake on, without restarting
    the server (gRPC asks the fetcher before every handshake: it must be cheap,
    so a new configuration is built only when `current()` returns another
    object)."""

    def config(c: NodeCredentials) -> Any:
        chain = c.cert_pem.rstrip(b"\n") + b"\n" + c.ca_pem
        return grpc.ssl_server_certificate_configuration(
            [(c.key_pem, chain)], root_certificates=c.ca_pem if require_client_auth else None
        )

    first = current()
    if first is None:
        raise ValueError("no credentials to serve with")
    served = [first]

    def fetch() -> Any:
        c = current()
        if c is None or c is served[0]:
            return None
        served[0] = c
        return config(c)

    return grpc.dynamic_ssl_server_credentials(config(served[0]), fetch, require_client_authentication=require_client_auth)


def peer_cert_ips(context: grpc.ServicerContext) -> list[str]:
    """The IP SANs of the caller's verified certificate (the address it
    joined with), [] without one."""
    certs = context.auth_context().get("x509_pem_cert")
    return list(_cert_ips(certs[0])) if certs else []


@functools.lru_cache(maxsize=1024)
def _cert_ips(cert_pem: bytes) -> tuple[str, ...]:
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, x509.ExtensionNotFound):
        return ()
    return tuple(str(ip) for ip in sans.get_values_for_type(x509.IPAddress))


def peer_host(context: grpc.ServicerContext) -> str:
    """The caller's IP from context.peer() ("ipv4:1.2.3.4:5", "ipv6:[::1]:5"),
    or "" when the transport has none (unix sockets)."""
    peer = context.peer() or ""
    kind, _, rest = peer.partition(":")
    if kind not in ("ipv4", "ipv6"):
        return ""
    host, _, _ = rest.rpartition(":")
    return host.strip("[]")


# authorize(method, peer) raises a swarmlet.errors error to refuse the call.
Authorize = Callable[[str, Peer], None]


class ClientCertRequired(grpc.aio.ServerInterceptor):  # type: ignore[misc]  # grpc has no type hints
    """Refuses (UNAUTHENTICATED) every call without a verified client
    certificate, except the methods in `anonymous` (by default only
    CA.IssueNodeCertificate), on the node-facing grpc.aio server; then asks
    `authorize` (if given) whether this certificate may call this method now
    (cluster id, revocation, membership and role against the replicated
    state: see core/pki.py). `authorize` runs on the event loop: it must only
    read in-memory state (it does: the latest snapshot).

    The join and API ports belong to the same server, so without this a
    control or dispatcher call on the join port would reach its servicer with
    no identity. Interceptors do not see the auth context, so the check wraps
    the method handler and runs with the call's context. A streamed response
    is authorized again before each message (a certificate revoked while its
    stream is open is cut off at the next message), except for the methods in
    `stream_once`."""

    def __init__(
        self,
        anonymous: Iterable[str] = (CA_ISSUE_METHOD,),
        authorize: Authorize | None = None,
        stream_once: Iterable[str] = (),
    ) -> None:
        self._anonymous = frozenset(anonymous)
        self._authorize = authorize
        self._stream_once = frozenset(stream_once)
        self._guarded: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Any],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or method in self._anonymous:
            return handler
        # The servicers' handlers are fixed: wrap each once, not on every call
        # (issue 15: heartbeats are most of a large cluster's calls).
        cached = self._guarded.get(method)
        if cached is None or cached[0] is not handler:
            cached = (handler, _aguarded(handler, method, self._authorize, method not in self._stream_once))
            self._guarded[method] = cached
        return cached[1]


_NO_CERT = "this call needs a node certificate: use the mutual-TLS API port"


async def _acheck(context: Any, method: str, authorize: Authorize | None) -> None:
    peer = peer_certificate(context)
    if peer is None:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, _NO_CERT)
        raise AssertionError("context.abort returned")  # it always raises
    _CALL_PEER.set((context, peer))
    if authorize is not None:
        try:
            authorize(method, peer)
        except errors.SwarmletError as e:
            await context.abort(rpc.status_code(e), str(e))


def _aguarded(handler: grpc.RpcMethodHandler, method: str, authorize: Authorize | None, recheck: bool) -> grpc.RpcMethodHandler:
    ser, de = handler.response_serializer, handler.request_deserializer

    if handler.unary_unary:
        unary = handler.unary_unary

        async def guarded_unary(request: Any, context: Any) -> Any:
            await _acheck(context, method, authorize)
            return await unary(request, context)

        return grpc.unary_unary_rpc_method_handler(guarded_unary, de, ser)
    if handler.unary_stream:
        stream = handler.unary_stream

        async def guarded_stream(request: Any, context: Any) -> Any:
            await _acheck(context, method, authorize)
            async for item in stream(request, context):
                if recheck:
                    # A certificate revoked while its stream is open is cut
                    # off at the next message.
                    await _acheck(context, method, authorize)
                yield item

        return grpc.unary_stream_rpc_method_handler(guarded_stream, de, ser)
    raise ValueError("the node-facing server serves unary and server-streaming calls only")


# ---------------------------------------------------------------- joining


class JoinError(errors.FailedPrecondition):
    """Joining a cluster failed; the message is meant for the operator."""


class ManagerUnreachableError(JoinError, errors.Unavailable):
    pass


class CAMismatchError(JoinError):
    pass


class NoCAInChainError(JoinError):
    pass


class NotAManagerError(JoinError):
    """The server holds a certificate of the cluster, but not a manager's."""


def split_host_port(addr: str, default_port: int) -> tuple[str, int]:
    """ "host:port", "[v6]:port", "host" or a bare IPv6 address -> (host, port)."""
    if addr.startswith("["):
        host, sep, rest = addr[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ValueError(f"invalid address {addr!r}")
        port = rest[1:]
    elif addr.count(":") == 1:
        host, _, port = addr.partition(":")
    else:  # "host" or a bare IPv6 address
        host, port = addr, ""
    if not host:
        raise ValueError(f"invalid address {addr!r}: no host")
    if not port:
        return host, default_port
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"invalid address {addr!r}: bad port {port!r}")
    return host, int(port)


def _chain_der(sock: ssl.SSLSocket) -> list[bytes]:
    # Python 3.13 made get_unverified_chain public (returning DER bytes); on
    # 3.11/3.12 it is only on the internal _SSLSocket and returns
    # _ssl.Certificate objects. The stdlib offers no other way to see the
    # peer's whole chain without verifying it.
    getter = getattr(sock, "get_unverified_chain", None) or sock._sslobj.get_unverified_chain  # type: ignore[attr-defined]
    out = []
    for cert in getter() or []:
        out.append(cert if isinstance(cert, bytes) else cert.public_bytes(ssl._ssl.ENCODING_DER))  # type: ignore[attr-defined]
    return out


def _is_self_signed(cert: x509.Certificate) -> bool:
    if cert.issuer != cert.subject:
        return False
    try:
        cert.verify_directly_issued_by(cert)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def fetch_remote_ca(addr: str, expected_digest: str, timeout: float = 5.0) -> bytes:
    """Read the root CA certificate (PEM) from a manager's join port and check
    it against the digest from the join token.

    Nothing is verified during the handshake (we do not have the CA yet): the
    trust comes from the digest comparison alone. Afterwards the caller dials
    gRPC with this CA, which verifies the manager's certificate properly."""
    try:
        host, port = split_host_port(addr, DEFAULT_JOIN_PORT)
    except ValueError as e:
        raise ManagerUnreachableError(f"cannot reach manager at {addr}: {e}") from None
    deadline = time.monotonic() + timeout
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_alpn_protocols(["h2"])  # gRPC servers refuse handshakes without h2
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw:
            raw.settimeout(max(deadline - time.monotonic(), 0.001))
            with ctx.wrap_socket(raw, server_hostname=NODE_SAN) as tls:
                chain = _chain_der(tls)
    except TimeoutError:
        raise ManagerUnreachableError(f"cannot reach manager at {addr}: timed out after {timeout:g}s") from None
    except ssl.SSLError as e:
        raise ManagerUnreachableError(f"cannot reach manager at {addr}: TLS handshake failed: {e}") from None
    except OSError as e:
        raise ManagerUnreachableError(f"cannot reach manager at {addr}: {e.strerror or e}") from None

    certs = [x509.load_der_x509_certificate(d) for d in chain]
    roots = [c for c in certs if _is_self_signed(c)]
    if not roots:
        raise NoCAInChainError(f"the manager at {addr} did not send its CA certificate in the TLS handshake")
    got = ""
    for root in roots:
        digest = root.fingerprint(hashes.SHA256()).hex()
        if hmac.compare_digest(digest.encode(), expected_digest.encode()):
            _check_manager_leaf(addr, certs[0], certs[1:], root)
            return root.public_bytes(serialization.Encoding.PEM)
        got = got or digest
    raise CAMismatchError(f"the manager's CA does not match the join token (expected digest {expected_digest}, got {got})")


def _check_manager_leaf(addr: str, leaf: x509.Certificate, rest: list[x509.Certificate], root: x509.Certificate) -> None:
    """The server's certificate must be a manager's, issued by the pinned root
    (directly, or through the cross-signed root of a rotation): any node of
    the cluster holds a certificate from that root, and a worker posing as a
    manager must not get the join token (a manager token yields the Raft
    secret). The gRPC call that sends the token checks the same through the
    MANAGER_SAN name; this check gives the operator a clear reason first."""
    if not _chains_to(leaf, rest, [root]):
        raise NotAManagerError(f"the server at {addr} presented a certificate that its CA did not issue")
    try:
        ident = certificate_identity(leaf.public_bytes(serialization.Encoding.PEM))
    except ValueError:
        raise NotAManagerError(f"the server at {addr} presented a certificate that is not a swarmlet node's") from None
    if not ident.is_manager or MANAGER_SAN not in _dns_names(leaf):
        raise NotAManagerError(
            f"the server at {addr} is not a manager of this cluster (it presented the certificate of a {ident.role} node, "
            f"{ident.node_id}): refusing to send it the join token"
        )


def _dns_names(cert: x509.Certificate) -> list[str]:
    try:
        return list(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        return []


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _chains_to(leaf: x509.Certificate, intermediates: list[x509.Certificate], roots: list[x509.Certificate]) -> bool:
    """Whether `leaf` was signed by one of `roots`, directly or through one of
    `intermediates` (at most one: the cross-signed root of a rotation). A
    sanity check of certificates that belong together; TLS verifies them."""
    if any(_issued_by(leaf, r) for r in roots):
        return True
    return any(_issued_by(leaf, i) and any(_issued_by(i, r) for r in roots) for i in intermediates)


# ---------------------------------------------------------------- credentials on disk

KEY_FILE = "node.key"
CERT_FILE = "node.crt"
CA_FILE = "ca.crt"


class CredentialsError(ValueError):
    """Credentials on disk exist but are unusable (partial, mismatched)."""


@dataclass(frozen=True)
class NodeCredentials:
    """A node's key, certificate and cluster root. The identity fields are
    always those of `cert_pem` (use `from_pems` to build one)."""

    key_pem: bytes
    cert_pem: bytes
    ca_pem: bytes
    node_id: str
    role: str
    cluster_id: str

    @classmethod
    def from_pems(cls, key_pem: bytes, cert_pem: bytes, ca_pem: bytes) -> NodeCredentials:
        """Build from PEMs, checking that they belong together: the key is the
        certificate's and the certificate was signed by the CA. A mismatch
        would otherwise only show as an opaque TLS handshake failure."""
        try:
            key = serialization.load_pem_private_key(key_pem, password=None)
            chain = x509.load_pem_x509_certificates(cert_pem)
            roots = x509.load_pem_x509_certificates(ca_pem)
            identity = certificate_identity(cert_pem)
        except ValueError as e:
            raise CredentialsError(f"unreadable node credentials: {e}") from None
        if key.public_key() != chain[0].public_key():
            raise CredentialsError("the node key does not match the node certificate")
        if not _chains_to(chain[0], chain[1:], roots):
            raise CredentialsError("the node certificate was not issued by the cluster CA")
        return cls(key_pem, cert_pem, ca_pem, identity.node_id, identity.role, identity.cluster_id)

    def with_trust(self, ca_pem: bytes) -> NodeCredentials:
        """The same key and certificate trusting the roots in `ca_pem` (a
        rotation's bundle, or the new root once it completed). Raises
        CredentialsError when the certificate does not chain to them."""
        return NodeCredentials.from_pems(self.key_pem, self.cert_pem, ca_pem)

    @functools.cached_property
    def cert_info(self) -> CertInfo:
        return certificate_info(self.cert_pem)

    @property
    def identity(self) -> Identity:
        return Identity(self.node_id, self.role, self.cluster_id)

    def server_credentials(self, require_client_auth: bool) -> grpc.ServerCredentials:
        return server_credentials(self.key_pem, self.cert_pem, self.ca_pem, require_client_auth)

    def channel_credentials(self) -> grpc.ChannelCredentials:
        """Client credentials for the mutual-TLS API port of any node."""
        return channel_credentials(self.ca_pem, self.key_pem, self.cert_pem)

    def save(self, directory: str | os.PathLike[str], seal_key: Callable[[bytes], bytes] | None = None) -> None:
        """Write node.key (0600), ca.crt and node.crt in a directory readable
        only by its owner, as one set: a crash leaves the old set or the new
        one, never a key of one with the certificate of the other (renewals
        replace them while the node runs).

        The set is first written complete into `next.tmp/`, which is then
        renamed to `next/` (the commit); the files are moved from there into
        place. `load` finishes a committed move a crash interrupted and drops
        an uncommitted one. node.crt's presence means the node has a set.
        `seal_key` encrypts the key file (managers: with their data key,
        issue 13)."""
        d = Path(directory)
        d.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(d, 0o700)  # mkdir's mode is masked by umask, and d may pre-exist
        staging, committed = d / _STAGING_DIR, d / _COMMITTED_DIR
        _finish_save(d)
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(mode=0o700)
        write_atomic(staging / KEY_FILE, seal_key(self.key_pem) if seal_key else self.key_pem, 0o600, sync_dir=False)
        write_atomic(staging / CA_FILE, self.ca_pem, 0o644, sync_dir=False)
        write_atomic(staging / CERT_FILE, self.cert_pem, 0o644, sync_dir=False)
        fsync_dir(str(staging))
        os.replace(staging, committed)
        fsync_dir(str(d))
        _finish_save(d)

    @classmethod
    def load(cls, directory: str | os.PathLike[str], open_key: Callable[[bytes], bytes] | None = None) -> NodeCredentials | None:
        """The credentials saved in `directory`, or None if the node has none
        (never joined). Raises CredentialsError if they exist but are broken,
        rather than silently making the node join again as a new node.
        `open_key` turns the key file's bytes into the PEM (a sealed key)."""
        d = Path(directory)
        if d.is_dir():
            _finish_save(d)
        if not (d / CERT_FILE).exists():
            return None
        try:
            key_pem = (d / KEY_FILE).read_bytes()
            if open_key is not None:
                key_pem = open_key(key_pem)
            ca_pem = (d / CA_FILE).read_bytes()
            cert_pem = (d / CERT_FILE).read_bytes()
        except OSError as e:
            raise CredentialsError(f"incomplete node credentials in {d}: {e}") from None
        return cls.from_pems(key_pem, cert_pem, ca_pem)


_STAGING_DIR = "next.tmp"
_COMMITTED_DIR = "next"


def _finish_save(d: Path) -> None:
    """Complete a save that reached its commit (`next/` exists): move its
    files into place, key first. Drop one that did not (`next.tmp/`)."""
    committed = d / _COMMITTED_DIR
    if committed.is_dir():
        for name in (KEY_FILE, CA_FILE, CERT_FILE):
            if (committed / name).exists():
                os.replace(committed / name, d / name)
        fsync_dir(str(d))
        committed.rmdir()
        fsync_dir(str(d))
    shutil.rmtree(d / _STAGING_DIR, ignore_errors=True)
