"""Root CA rotation and certificate lifetimes (manager/ca.py), checked with
real TLS: during a rotation nodes holding old and new certificates, trusting
the old root, the new root or both, all keep talking."""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from swarmlet import tls
from swarmlet.api import dispatcher_pb2 as dpb
from swarmlet.api import dispatcher_pb2_grpc as dgrpc
from swarmlet.api import objects_pb2 as pb
from swarmlet.core import pki
from swarmlet.manager import ca

CLUSTER = "cluster1"


@pytest.fixture(scope="module")
def rotating() -> pb.RootCA:
    return ca.start_rotation(ca.create_root_ca(), now=1.0)


def test_a_rotation_cross_signs_a_new_root_under_the_same_name(rotating: pb.RootCA) -> None:
    old = x509.load_pem_x509_certificate(rotating.cert_pem)
    new = x509.load_pem_x509_certificate(rotating.rotation.cert_pem)
    cross = x509.load_pem_x509_certificate(rotating.rotation.cross_signed_pem)
    assert new.subject == old.subject == cross.subject == cross.issuer
    assert new.public_key() == cross.public_key() != old.public_key()
    cross.verify_directly_issued_by(old)  # the old root vouches for the new key
    assert rotating.rotation.digest == tls.ca_digest(rotating.rotation.cert_pem) != rotating.digest
    assert rotating.rotation.key_id == tls.key_id(rotating.rotation.cert_pem)
    assert rotating.key_id == tls.key_id(rotating.cert_pem)
    assert rotating.rotation.started_at == 1.0
    assert cross.not_valid_after_utc <= old.not_valid_after_utc


def test_certificates_issued_while_rotating_come_from_the_new_root_with_the_cross_signed_one(rotating: pb.RootCA) -> None:
    key, chain = ca.issue_local_certificate(rotating, "node1", "worker", CLUSTER, "127.0.0.1")
    certs = x509.load_pem_x509_certificates(chain)
    assert len(certs) == 2 and certs[1].public_bytes(serialization.Encoding.PEM) == rotating.rotation.cross_signed_pem
    info = tls.certificate_info(chain)
    assert info.issuer_key_id == rotating.rotation.key_id
    # Usable with the old root only, the new root only, or both.
    for trust in (rotating.cert_pem, rotating.rotation.cert_pem, pki.trust_pem(rotating)):
        tls.NodeCredentials.from_pems(key, chain, trust)
    with pytest.raises(tls.CredentialsError, match="not issued by the cluster CA"):
        tls.NodeCredentials.from_pems(key, chain, ca.create_root_ca().cert_pem)


def test_the_lifetime_is_the_clusters() -> None:
    root = ca.create_root_ca()
    _, cert = ca.issue_local_certificate(root, "node1", "worker", CLUSTER, "", validity=30)
    info = tls.certificate_info(cert)
    assert info.not_after - (info.not_before + pki.CERT_BACKDATE) == pytest.approx(30, abs=1)
    record = ca.issued_record(cert, "worker")
    assert (record.serial, record.role, record.not_after, record.issuer_key_id) == (
        info.serial,
        "worker",
        info.not_after,
        root.key_id,
    )


class _Echo(dgrpc.DispatcherServicer):  # type: ignore[misc]
    def Heartbeat(self, request: dpb.HeartbeatRequest, context: grpc.ServicerContext) -> dpb.HeartbeatResponse:
        ident = tls.peer_identity(context)
        assert ident is not None
        return dpb.HeartbeatResponse(period=float(len(ident.node_id)))


@pytest.fixture
def serve() -> Iterator[list[grpc.Server]]:
    servers: list[grpc.Server] = []
    yield servers
    for s in servers:
        s.stop(None)


def _server(servers: list[grpc.Server], creds: tls.NodeCredentials) -> str:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    dgrpc.add_DispatcherServicer_to_server(_Echo(), server)
    port = server.add_secure_port("127.0.0.1:0", creds.server_credentials(require_client_auth=True))
    server.start()
    servers.append(server)
    return f"127.0.0.1:{port}"


def _call(addr: str, creds: tls.NodeCredentials) -> float:
    with grpc.secure_channel(addr, creds.channel_credentials(), options=tls.MANAGER_CHANNEL_OPTIONS) as ch:
        return float(dgrpc.DispatcherStub(ch).Heartbeat(dpb.HeartbeatRequest(), timeout=5).period)


@pytest.mark.parametrize(
    ("server_cert", "server_trust", "client_cert", "client_trust"),
    [
        ("new", "old", "old", "old"),  # a renewed manager, clients that know nothing yet
        ("new", "both", "old", "old"),
        ("old", "both", "new", "old"),  # a renewed node, a manager not renewed
        ("new", "new", "new", "old"),  # rotation completed, a node that missed it
        ("new", "both", "new", "both"),
    ],
)
def test_nodes_keep_talking_during_a_rotation(
    serve: list[grpc.Server], rotating: pb.RootCA, server_cert: str, server_trust: str, client_cert: str, client_trust: str
) -> None:
    before = pb.RootCA()
    before.CopyFrom(rotating)
    before.ClearField("rotation")
    issuers = {"old": before, "new": rotating}
    trusts = {"old": rotating.cert_pem, "new": rotating.rotation.cert_pem, "both": pki.trust_pem(rotating)}

    def creds(cert: str, trust: str, node_id: str, role: str) -> tls.NodeCredentials:
        key, chain = ca.issue_local_certificate(issuers[cert], node_id, role, CLUSTER, "127.0.0.1")
        return tls.NodeCredentials.from_pems(key, chain, trusts[trust])

    addr = _server(serve, creds(server_cert, server_trust, "manager1", "manager"))
    assert _call(addr, creds(client_cert, client_trust, "node22", "worker")) == 6.0


def test_a_node_only_on_the_new_root_is_refused_by_a_peer_trusting_only_the_old_one_without_the_cross_signature(
    serve: list[grpc.Server], rotating: pb.RootCA
) -> None:
    """Why the cross-signed root travels with every certificate of the rotation."""
    after = pb.RootCA(cert_pem=rotating.rotation.cert_pem, key_pem=rotating.rotation.key_pem, digest=rotating.rotation.digest)
    key, cert = ca.issue_local_certificate(after, "manager1", "manager", CLUSTER, "127.0.0.1")  # no cross-signature
    addr = _server(serve, tls.NodeCredentials.from_pems(key, cert, after.cert_pem))
    ckey, ccert = ca.issue_local_certificate(rotating, "node22", "worker", CLUSTER, "127.0.0.1")
    with pytest.raises(grpc.RpcError) as e:
        _call(addr, tls.NodeCredentials.from_pems(ckey, ccert, rotating.cert_pem))
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE


def test_root_validity_is_unchanged_by_a_short_node_lifetime() -> None:
    root = ca.create_root_ca()
    cert = x509.load_pem_x509_certificate(root.cert_pem)
    assert cert.not_valid_after_utc - cert.not_valid_before_utc > datetime.timedelta(days=19 * 365)
