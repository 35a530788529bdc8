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
- Servers are dialled by IP, so clients check the server's certificate for the
  DNS name `NODE_SAN` (every node certificate carries it) via
  `grpc.ssl_target_name_override` instead of the IP.
- A joining node knows only the join token, which pins the root CA by its
  sha256 digest. `fetch_remote_ca` reads the CA from the join port's TLS
  handshake without verification and accepts it only if the digest matches.

This module is used by workers too, so it must not import swarmlet.manager.
"""

from __future__ import annotations

import functools
import hmac
import os
import re
import socket
import ssl
import tempfile
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
CHANNEL_OPTIONS: tuple[tuple[str, Any], ...] = (
    ("grpc.ssl_target_name_override", NODE_SAN),
    *_KEEPALIVE_OPTIONS,
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
)
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


# Peer certs are parsed on every authenticated call (heartbeats included), and
# a node presents the same certificate for months: cache the parse.
@functools.lru_cache(maxsize=1024)
def _cached_identity(cert_pem: bytes) -> Identity | None:
    try:
        return certificate_identity(cert_pem)
    except ValueError:
        return None


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
    certs = context.auth_context().get("x509_pem_cert")
    if not certs:
        return None
    return _cached_identity(certs[0])


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


class ClientCertRequired(grpc.ServerInterceptor):  # type: ignore[misc]  # grpc has no type hints
    """Refuses (UNAUTHENTICATED) every call without a verified client
    certificate, except the methods in `anonymous` (by default only
    CA.IssueNodeCertificate).

    The join and API ports belong to the same grpc.server, so without this a
    control or dispatcher call on the join port would reach its servicer with
    no identity. Interceptors do not see the auth context, so the check wraps
    the method handler and runs with the call's context."""

    def __init__(self, anonymous: Iterable[str] = (CA_ISSUE_METHOD,)) -> None:
        self._anonymous = frozenset(anonymous)

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        if handler is None or handler_call_details.method in self._anonymous:
            return handler
        return _guarded(handler)


def _require_cert(behavior: Callable[[Any, grpc.ServicerContext], Any]) -> Callable[[Any, grpc.ServicerContext], Any]:
    def guarded(request: Any, context: grpc.ServicerContext) -> Any:
        if peer_identity(context) is None:
            rpc.abort(context, errors.Unauthenticated("this call needs a node certificate: use the mutual-TLS API port"))
        return behavior(request, context)

    return guarded


def _guarded(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    ser, de = handler.response_serializer, handler.request_deserializer
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(_require_cert(handler.unary_unary), de, ser)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(_require_cert(handler.unary_stream), de, ser)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(_require_cert(handler.stream_unary), de, ser)
    return grpc.stream_stream_rpc_method_handler(_require_cert(handler.stream_stream), de, ser)


# ---------------------------------------------------------------- joining


class JoinError(errors.FailedPrecondition):
    """Joining a cluster failed; the message is meant for the operator."""


class ManagerUnreachableError(JoinError, errors.Unavailable):
    pass


class CAMismatchError(JoinError):
    pass


class NoCAInChainError(JoinError):
    pass


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

    roots = [c for c in (x509.load_der_x509_certificate(d) for d in chain) if _is_self_signed(c)]
    if not roots:
        raise NoCAInChainError(f"the manager at {addr} did not send its CA certificate in the TLS handshake")
    got = ""
    for root in roots:
        digest = root.fingerprint(hashes.SHA256()).hex()
        if hmac.compare_digest(digest.encode(), expected_digest.encode()):
            return root.public_bytes(serialization.Encoding.PEM)
        got = got or digest
    raise CAMismatchError(f"the manager's CA does not match the join token (expected digest {expected_digest}, got {got})")


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
            cert = x509.load_pem_x509_certificate(cert_pem)
            ca = x509.load_pem_x509_certificate(ca_pem)
            identity = certificate_identity(cert_pem)
        except ValueError as e:
            raise CredentialsError(f"unreadable node credentials: {e}") from None
        if key.public_key() != cert.public_key():
            raise CredentialsError("the node key does not match the node certificate")
        try:
            cert.verify_directly_issued_by(ca)
        except (ValueError, TypeError, InvalidSignature):
            raise CredentialsError("the node certificate was not issued by the cluster CA") from None
        return cls(key_pem, cert_pem, ca_pem, identity.node_id, identity.role, identity.cluster_id)

    @property
    def identity(self) -> Identity:
        return Identity(self.node_id, self.role, self.cluster_id)

    def server_credentials(self, require_client_auth: bool) -> grpc.ServerCredentials:
        return server_credentials(self.key_pem, self.cert_pem, self.ca_pem, require_client_auth)

    def channel_credentials(self) -> grpc.ChannelCredentials:
        """Client credentials for the mutual-TLS API port of any node."""
        return channel_credentials(self.ca_pem, self.key_pem, self.cert_pem)

    def save(self, directory: str | os.PathLike[str], seal_key: Callable[[bytes], bytes] | None = None) -> None:
        """Write node.key (0600), ca.crt and node.crt, each atomically, in a
        directory readable only by its owner. node.crt goes last: `load` takes
        its presence to mean the set is complete. `seal_key` encrypts the key
        file (managers: with their data key, issue 13)."""
        d = Path(directory)
        d.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(d, 0o700)  # mkdir's mode is masked by umask, and d may pre-exist
        _write_atomic(d / KEY_FILE, seal_key(self.key_pem) if seal_key else self.key_pem, 0o600)
        _write_atomic(d / CA_FILE, self.ca_pem, 0o644)
        _write_atomic(d / CERT_FILE, self.cert_pem, 0o644)
        _fsync_dir(d)

    @classmethod
    def load(cls, directory: str | os.PathLike[str], open_key: Callable[[bytes], bytes] | None = None) -> NodeCredentials | None:
        """The credentials saved in `directory`, or None if the node has none
        (never joined). Raises CredentialsError if they exist but are broken,
        rather than silently making the node join again as a new node.
        `open_key` turns the key file's bytes into the PEM (a sealed key)."""
        d = Path(directory)
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


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    # Temp file in the same directory + rename: readers see the old or the new
    # file, never half of one. The mode is set before any byte is written so
    # the key is never readable by others, even briefly.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _fsync_dir(d: Path) -> None:
    # Makes the renames durable across a power loss.
    fd = os.open(d, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
