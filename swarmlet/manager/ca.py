"""The cluster's certificate authority (manager side): the root CA, join
tokens and signing node certificates. The gRPC service joining nodes call on
the join port is in ca_servicer.py.

The root CA's key lives in the replicated Cluster object (pb.RootCA), so any
manager can sign. Node-side pieces (keys, CSRs, token parsing, credentials)
are in swarmlet.tls.

Root rotation (issue 13): `start_rotation` makes a new root with the SAME
subject name and a certificate of its key signed by the old root (the
cross-signed root). While the rotation runs, node certificates are signed by
the new key and handed out followed by the cross-signed root, so a node that
trusts only the old root still accepts them; the trust bundle holds both
roots. Same name matters: the old root has path length 0, and a self-issued
intermediate (issuer name = subject name) does not count against it (RFC 5280
6.1.4), so the chain leaf -> cross-signed -> old root is valid. When every
node holds a certificate of the new root, the leader's round makes it the
only root (core/pki.py).
"""

from __future__ import annotations

import base64
import datetime
import hmac
import ipaddress
import secrets

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from swarmlet import errors, tls
from swarmlet.api import objects_pb2 as pb
from swarmlet.core import pki
from swarmlet.tls import (
    MANAGER_SAN,
    NODE_SAN,
    ROLE_MANAGER,
    ROLE_WORKER,
    ROLES,
    TOKEN_PREFIX,
    TOKEN_VERSION,
    TokenError,
    ca_digest,
    make_csr,
    new_node_key,
    parse_token,
)

ROOT_CA_CN = "swarmlet-root-ca"
ROOT_CA_VALIDITY = datetime.timedelta(days=20 * 365)
NODE_CERT_VALIDITY = datetime.timedelta(days=90)
# Backdating covers nodes whose clocks are a little behind the manager's: a
# certificate "not yet valid" for them would fail every handshake.
_CLOCK_SKEW = datetime.timedelta(seconds=pki.CERT_BACKDATE)

_TOKEN_SECRET_BYTES = 20  # 160 bits -> 32 base32 characters


class CSRError(errors.Invalid):
    """A certificate signing request cannot be signed."""


# ---------------------------------------------------------------- root CA, tokens


_CA_KEY_USAGE = x509.KeyUsage(
    digital_signature=True,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=True,
    crl_sign=True,
    encipher_only=False,
    decipher_only=False,
)


def _ca_certificate(
    public_key: ec.EllipticCurvePublicKey,
    issuer_name: x509.Name,
    signing_key: ec.EllipticCurvePrivateKey,
    not_before: datetime.datetime,
    not_after: datetime.datetime,
) -> x509.Certificate:
    """A CA certificate for `public_key` named ROOT_CA_CN, signed by
    `signing_key` (its own for a root; the old root's for a cross-signed one).
    pathlen 0: it signs node certificates only, never intermediates."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ROOT_CA_CN)])
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_CA_KEY_USAGE, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(signing_key.public_key()), critical=False)
        .sign(signing_key, hashes.SHA256())
    )


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def create_root_ca() -> pb.RootCA:
    """A new self-signed root: EC P-256, CN swarmlet-root-ca, valid 20 years."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ROOT_CA_CN)])
    cert_pem = _pem(_ca_certificate(key.public_key(), name, key, now - _CLOCK_SKEW, now + ROOT_CA_VALIDITY))
    return pb.RootCA(cert_pem=cert_pem, key_pem=_key_pem(key), digest=ca_digest(cert_pem), key_id=tls.key_id(cert_pem))


def start_rotation(root_ca: pb.RootCA, now: float) -> pb.RootCA:
    """A copy of `root_ca` rotating to a new root (replacing the target of a
    rotation already under way: the cross-signature always comes from the
    current root, which every node trusts)."""
    old_cert = x509.load_pem_x509_certificate(root_ca.cert_pem)
    old_key = serialization.load_pem_private_key(root_ca.key_pem, password=None)
    if not isinstance(old_key, ec.EllipticCurvePrivateKey):
        raise errors.FailedPrecondition("the cluster's root CA key is not an EC key: cannot cross-sign a new root")
    new = create_root_ca()
    new_cert = x509.load_pem_x509_certificate(new.cert_pem)
    new_key = serialization.load_pem_private_key(new.key_pem, password=None)
    assert isinstance(new_key, ec.EllipticCurvePrivateKey)
    # Valid while both roots are: never beyond the old root's own expiry.
    cross = _ca_certificate(
        new_key.public_key(),
        old_cert.subject,
        old_key,
        new_cert.not_valid_before_utc,
        min(new_cert.not_valid_after_utc, old_cert.not_valid_after_utc),
    )
    out = pb.RootCA()
    out.CopyFrom(root_ca)
    if not out.key_id:
        out.key_id = tls.key_id(out.cert_pem)
    out.rotation.CopyFrom(
        pb.RootRotation(
            cert_pem=new.cert_pem,
            key_pem=new.key_pem,
            digest=new.digest,
            key_id=new.key_id,
            cross_signed_pem=_pem(cross),
            started_at=now,
        )
    )
    return out


def trust_bundle(root_ca: pb.RootCA) -> bytes:
    """The roots a node must trust: the current root, and the new one while a
    rotation runs."""
    return pki.trust_pem(root_ca)


def with_key_id(root_ca: pb.RootCA) -> pb.RootCA:
    """`root_ca` with its key_id filled in (roots made before it was stored)."""
    if root_ca.key_id:
        return root_ca
    out = pb.RootCA()
    out.CopyFrom(root_ca)
    out.key_id = tls.key_id(root_ca.cert_pem)
    return out


def new_join_token(digest: str) -> str:
    """`SWLTKN-1-<ca digest>-<secret>`. The digest lets a joiner authenticate
    the manager before trusting it; the secret authenticates the joiner.
    Call once per role so worker and manager tokens differ."""
    secret = base64.b32encode(secrets.token_bytes(_TOKEN_SECRET_BYTES)).decode().rstrip("=").lower()
    token = f"{TOKEN_PREFIX}-{TOKEN_VERSION}-{digest}-{secret}"
    parse_token(token)  # a bad digest argument must fail here, not at join time
    return token


def token_role(cluster: pb.Cluster, token: str) -> str:
    """The role ("worker" | "manager") that `token` joins `cluster` as.

    Raises TokenError: malformed token (message names the part), a token for
    another cluster's CA, or a wrong/rotated secret ("invalid join token")."""
    digest, _ = parse_token(token)
    if not hmac.compare_digest(digest.encode(), cluster.root_ca.digest.encode()):
        raise TokenError("join token was issued by a different cluster CA")
    given = token.strip().encode()
    # Both comparisons always run, in constant time: timing must not tell
    # which secret (if any) a guess came close to.
    is_worker = bool(cluster.worker_token) and hmac.compare_digest(given, cluster.worker_token.encode())
    is_manager = bool(cluster.manager_token) and hmac.compare_digest(given, cluster.manager_token.encode())
    if is_manager:
        return ROLE_MANAGER
    if is_worker:
        return ROLE_WORKER
    raise TokenError("invalid join token")


# ---------------------------------------------------------------- node certificates


def _check_public_key(key: object) -> None:
    # Only key types every TLS stack in play (BoringSSL in gRPC, OpenSSL in
    # Python) handles for client and server auth.
    if isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, (ec.SECP256R1, ec.SECP384R1)):
            raise CSRError(f"unsupported EC curve {key.curve.name} (use P-256 or P-384)")
    elif isinstance(key, rsa.RSAPublicKey):
        if key.key_size < 2048:
            raise CSRError(f"RSA key too small ({key.key_size} bits, need 2048+)")
    else:
        raise CSRError(f"unsupported key type {type(key).__name__} (use EC P-256)")


def sign_node_csr(
    root_ca: pb.RootCA,
    csr_pem: bytes,
    node_id: str,
    role: str,
    cluster_id: str,
    ip: str,
    validity: float = NODE_CERT_VALIDITY.total_seconds(),
) -> bytes:
    """A node certificate (PEM) for the CSR's key, valid `validity` seconds
    (never past the signing root's own expiry), signed by the root that signs
    now: during a rotation the new root, and the PEM is then followed by the
    cross-signed root (see the module doc).

    The CSR only contributes its public key (after its self-signature proves
    the requester holds the private key): the subject and extensions are the
    CA's decision: CN = node_id, OU = role, O = cluster_id, DNS SANs
    swarmlet-node (+ swarmlet-manager for managers) and `ip` as an IP SAN
    (omitted if `ip` is empty). Raises CSRError for a bad CSR, ValueError for
    bad arguments."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}")
    if not node_id or not cluster_id:
        raise ValueError("node_id and cluster_id are required")
    ip_addr = ipaddress.ip_address(ip) if ip else None
    try:
        csr = x509.load_pem_x509_csr(csr_pem)
    except ValueError as e:
        raise CSRError(f"cannot parse the certificate signing request: {e}") from None
    try:
        public_key = csr.public_key()
    except (ValueError, UnsupportedAlgorithm) as e:
        raise CSRError(f"unreadable public key in the certificate signing request: {e}") from None
    _check_public_key(public_key)
    if not csr.is_signature_valid:
        raise CSRError("the certificate signing request's signature is invalid")

    rotating = root_ca.HasField("rotation")
    signer = root_ca.rotation if rotating else root_ca
    ca_cert = x509.load_pem_x509_certificate(signer.cert_pem)
    ca_key = serialization.load_pem_private_key(signer.key_pem, password=None)
    now = datetime.datetime.now(datetime.UTC)
    not_after = min(now + datetime.timedelta(seconds=validity), ca_cert.not_valid_after_utc)
    dns = [NODE_SAN] + ([MANAGER_SAN] if role == ROLE_MANAGER else [])
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in dns]
    if ip_addr is not None:
        sans.append(x509.IPAddress(ip_addr))
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, cluster_id),
            x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, role),
            x509.NameAttribute(NameOID.COMMON_NAME, node_id),
        ]
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _CLOCK_SKEW)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                # RSA keys may be used for key transport by old TLS suites.
                key_encipherment=isinstance(public_key, rsa.RSAPublicKey),
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        # Every node is both a TLS server (its API port) and a client.
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()), critical=False)  # type: ignore[arg-type]
        .sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    pem = cert.public_bytes(serialization.Encoding.PEM)
    return pem + root_ca.rotation.cross_signed_pem if rotating else pem


def issue_local_certificate(
    root_ca: pb.RootCA,
    node_id: str,
    role: str,
    cluster_id: str,
    ip: str,
    validity: float = NODE_CERT_VALIDITY.total_seconds(),
) -> tuple[bytes, bytes]:
    """(key_pem, cert_pem) for a node that holds the CA itself: the first
    manager at `init`, a restored one, or a manager whose certificate expired
    while it was off (it signs its own from the replicated root)."""
    key_pem = new_node_key()
    return key_pem, sign_node_csr(root_ca, make_csr(key_pem), node_id, role, cluster_id, ip, validity)


def issued_record(cert_pem: bytes, role: str) -> pb.NodeCertificate:
    """What the managers remember of a certificate they issued or saw."""
    info = tls.certificate_info(cert_pem)
    return pb.NodeCertificate(
        serial=info.serial,
        role=role,
        not_before=info.not_before,
        not_after=info.not_after,
        issuer_key_id=info.issuer_key_id,
    )


def san_ip(addr: str) -> str:
    """The IP to put in a certificate's IP SAN for a node advertised at
    `addr` ("1.2.3.4" or "1.2.3.4:port"), or "" if it is empty or a host
    name (IP SANs are informational: hostname checks use swarmlet-node)."""
    if not addr:
        return ""
    try:
        host, _ = tls.split_host_port(addr, 0)
        return str(ipaddress.ip_address(host))
    except ValueError:
        return ""
