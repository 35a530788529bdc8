"""Root CA, join tokens, node ids, node certificates and credentials on disk
(no network: see test_tls_grpc.py for the TLS/gRPC side)."""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from swarmlet import tls
from swarmlet.api import objects_pb2 as pb
from swarmlet.ids import new_id
from swarmlet.manager import ca


@pytest.fixture(scope="module")
def root() -> pb.RootCA:
    return ca.create_root_ca()


@pytest.fixture(scope="module")
def cluster(root: pb.RootCA) -> pb.Cluster:
    return pb.Cluster(
        id="cluster1",
        root_ca=root,
        worker_token=ca.new_join_token(root.digest),
        manager_token=ca.new_join_token(root.digest),
    )


# ---------------------------------------------------------------- root CA


def test_root_ca_is_self_signed_p256_for_20_years(root: pb.RootCA) -> None:
    cert = x509.load_pem_x509_certificate(root.cert_pem)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "swarmlet-root-ca"
    assert cert.issuer == cert.subject
    cert.verify_directly_issued_by(cert)
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    assert isinstance(cert.public_key().curve, ec.SECP256R1)  # type: ignore[union-attr]
    bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert bc.ca
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert datetime.timedelta(days=365 * 20) <= lifetime < datetime.timedelta(days=365 * 20 + 1)
    key = serialization.load_pem_private_key(root.key_pem, password=None)
    assert key.public_key() == cert.public_key()


def test_root_ca_digest_is_sha256_of_der(root: pb.RootCA) -> None:
    der = x509.load_pem_x509_certificate(root.cert_pem).public_bytes(serialization.Encoding.DER)
    h = hashes.Hash(hashes.SHA256())
    h.update(der)
    assert root.digest == h.finalize().hex()
    assert tls.ca_digest(root.cert_pem) == root.digest


def test_root_cas_are_distinct() -> None:
    assert ca.create_root_ca().digest != ca.create_root_ca().digest


# ---------------------------------------------------------------- tokens


def test_token_round_trip(root: pb.RootCA) -> None:
    token = ca.new_join_token(root.digest)
    assert re.fullmatch(r"SWLTKN-1-[0-9a-f]{64}-[a-z2-7]{26,}", token)
    digest, secret = tls.parse_token(token)
    assert digest == root.digest
    assert token.endswith("-" + secret)
    # copy-pasted tokens often carry a newline
    assert tls.parse_token(token + "\n") == (digest, secret)


def test_tokens_have_distinct_secrets(cluster: pb.Cluster) -> None:
    assert cluster.worker_token != cluster.manager_token
    assert tls.parse_token(cluster.worker_token)[1] != tls.parse_token(cluster.manager_token)[1]


def _good_parts(root: pb.RootCA) -> list[str]:
    return ca.new_join_token(root.digest).split("-")


@pytest.mark.parametrize(
    "mangle, message",
    [
        (lambda p: "-".join(p[:3]), "4 parts"),
        (lambda p: "-".join(p + ["x"]), "4 parts"),
        (lambda p: "-".join(["SWMTKN"] + p[1:]), "must start with SWLTKN-"),
        (lambda p: "-".join([p[0], "2"] + p[2:]), "unsupported version"),
        (lambda p: "-".join(p[:2] + [p[2][:63]] + p[3:]), "CA digest must be 64 lowercase hex"),
        (lambda p: "-".join(p[:2] + [p[2].upper()] + p[3:]), "CA digest must be 64 lowercase hex"),
        (lambda p: "-".join(p[:2] + ["z" * 64] + p[3:]), "CA digest must be 64 lowercase hex"),
        (lambda p: "-".join(p[:3] + [p[3][:25]]), "secret must be at least 26"),
        (lambda p: "-".join(p[:3] + [p[3][:-1] + "!"]), "secret must be at least 26 lowercase base32"),
        (lambda p: "", "4 parts"),
    ],
)
def test_malformed_tokens_name_the_bad_part(root: pb.RootCA, mangle, message: str) -> None:
    token = mangle(_good_parts(root))
    with pytest.raises(tls.TokenError, match=re.escape(message)) as exc:
        tls.parse_token(token)
    assert "malformed join token" in str(exc.value)
    assert isinstance(exc.value, ValueError)


def test_new_join_token_rejects_a_bad_digest() -> None:
    with pytest.raises(tls.TokenError):
        ca.new_join_token("not-a-digest")


def test_token_role(cluster: pb.Cluster) -> None:
    assert ca.token_role(cluster, cluster.worker_token) == "worker"
    assert ca.token_role(cluster, cluster.manager_token) == "manager"
    assert ca.token_role(cluster, " " + cluster.manager_token + "\n") == "manager"


def test_token_role_wrong_secret(cluster: pb.Cluster, root: pb.RootCA) -> None:
    with pytest.raises(tls.TokenError, match="^invalid join token$"):
        ca.token_role(cluster, ca.new_join_token(root.digest))


def test_token_role_other_cluster_ca(cluster: pb.Cluster) -> None:
    other = ca.create_root_ca()
    with pytest.raises(tls.TokenError, match="join token was issued by a different cluster CA"):
        ca.token_role(cluster, ca.new_join_token(other.digest))
    # the secret of this cluster with another digest is still refused
    secret = tls.parse_token(cluster.worker_token)[1]
    with pytest.raises(tls.TokenError, match="different cluster CA"):
        ca.token_role(cluster, f"SWLTKN-1-{other.digest}-{secret}")


def test_token_role_malformed(cluster: pb.Cluster) -> None:
    with pytest.raises(tls.TokenError, match="malformed join token"):
        ca.token_role(cluster, "hello")


def test_token_role_with_empty_cluster_tokens(root: pb.RootCA) -> None:
    bare = pb.Cluster(id="c", root_ca=root)
    with pytest.raises(tls.TokenError, match="^invalid join token$"):
        ca.token_role(bare, ca.new_join_token(root.digest))


# ---------------------------------------------------------------- node ids and certificates


def test_node_ids() -> None:
    ids = {new_id() for _ in range(200)}
    assert len(ids) == 200
    assert all(re.fullmatch(r"[a-z0-9]{25}", i) for i in ids)


def _san(cert: x509.Certificate) -> x509.SubjectAlternativeName:
    return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value


def test_sign_worker_csr(root: pb.RootCA) -> None:
    key_pem = tls.new_node_key()
    # the CSR's own subject and SANs claim to be a manager; the CA ignores them
    key = serialization.load_pem_private_key(key_pem, password=None)
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.COMMON_NAME, "evil"),
                    x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "manager"),
                ]
            )
        )
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("swarmlet-manager")]), critical=False)
        .sign(key, hashes.SHA256())  # type: ignore[arg-type]
    )
    cert_pem = ca.sign_node_csr(
        root, csr.public_bytes(serialization.Encoding.PEM), "nodeaaaaaaaaaaaaaaaaaaaaa", "worker", "cluster1", "10.1.2.3"
    )
    cert = x509.load_pem_x509_certificate(cert_pem)
    subject = cert.subject
    assert subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "nodeaaaaaaaaaaaaaaaaaaaaa"
    assert subject.get_attributes_for_oid(NameOID.ORGANIZATIONAL_UNIT_NAME)[0].value == "worker"
    assert subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "cluster1"
    san = _san(cert)
    assert san.get_values_for_type(x509.DNSName) == ["swarmlet-node"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("10.1.2.3")]
    ca_cert = x509.load_pem_x509_certificate(root.cert_pem)
    cert.verify_directly_issued_by(ca_cert)
    assert cert.public_key() == key.public_key()
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert datetime.timedelta(days=90) <= lifetime <= datetime.timedelta(days=90, minutes=10)
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert tls.certificate_identity(cert_pem) == tls.Identity("nodeaaaaaaaaaaaaaaaaaaaaa", "worker", "cluster1")


def test_sign_manager_csr_has_manager_san(root: pb.RootCA) -> None:
    cert_pem = ca.sign_node_csr(root, tls.make_csr(tls.new_node_key()), "m1", "manager", "cluster1", "fd00::7")
    san = _san(x509.load_pem_x509_certificate(cert_pem))
    assert san.get_values_for_type(x509.DNSName) == ["swarmlet-node", "swarmlet-manager"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("fd00::7")]
    assert tls.certificate_identity(cert_pem).is_manager


def test_sign_rejects_a_forged_csr_signature(root: pb.RootCA) -> None:
    # the last DER byte lies in the signature's s value: flipping it keeps the
    # CSR parseable but breaks the proof of possession of the key
    der = bytearray(x509.load_pem_x509_csr(tls.make_csr(tls.new_node_key())).public_bytes(serialization.Encoding.DER))
    der[-1] ^= 1
    forged = x509.load_der_x509_csr(bytes(der)).public_bytes(serialization.Encoding.PEM)
    with pytest.raises(ca.CSRError, match="signature is invalid"):
        ca.sign_node_csr(root, forged, "n", "worker", "c", "10.0.0.1")


def test_sign_rejects_garbage_csr(root: pb.RootCA) -> None:
    with pytest.raises(ca.CSRError, match="cannot parse"):
        ca.sign_node_csr(root, b"not a csr", "n", "worker", "c", "10.0.0.1")


def test_sign_rejects_weak_keys(root: pb.RootCA) -> None:
    key = ec.generate_private_key(ec.SECP256K1())
    csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name([])).sign(key, hashes.SHA256())
    with pytest.raises(ca.CSRError, match="unsupported EC curve"):
        ca.sign_node_csr(root, csr.public_bytes(serialization.Encoding.PEM), "n", "worker", "c", "10.0.0.1")


def test_sign_rejects_bad_arguments(root: pb.RootCA) -> None:
    csr = tls.make_csr(tls.new_node_key())
    with pytest.raises(ValueError, match="unknown role"):
        ca.sign_node_csr(root, csr, "n", "admin", "c", "10.0.0.1")
    with pytest.raises(ValueError):
        ca.sign_node_csr(root, csr, "n", "worker", "c", "not-an-ip")


def test_issue_local_certificate(root: pb.RootCA) -> None:
    key_pem, cert_pem = ca.issue_local_certificate(root, "first", "manager", "cluster1", "192.168.1.5")
    creds = tls.NodeCredentials.from_pems(key_pem, cert_pem, root.cert_pem)
    assert creds.identity == tls.Identity("first", "manager", "cluster1")


def test_cert_identity_rejects_non_node_certs(root: pb.RootCA) -> None:
    with pytest.raises(ValueError):
        tls.certificate_identity(root.cert_pem)  # no OU / O


# ---------------------------------------------------------------- credentials on disk


def test_credentials_save_and_load(tmp_path: Path, root: pb.RootCA) -> None:
    key_pem, cert_pem = ca.issue_local_certificate(root, "n1", "worker", "cluster1", "10.0.0.9")
    creds = tls.NodeCredentials.from_pems(key_pem, cert_pem, root.cert_pem)
    d = tmp_path / "state" / "certs"
    assert tls.NodeCredentials.load(d) is None
    creds.save(d)
    assert stat.S_IMODE(os.stat(d).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(d / "node.key").st_mode) == 0o600
    assert (d / "node.crt").read_bytes() == cert_pem
    assert (d / "ca.crt").read_bytes() == root.cert_pem
    assert sorted(p.name for p in d.iterdir()) == ["ca.crt", "node.crt", "node.key"]  # no temp files left
    loaded = tls.NodeCredentials.load(d)
    assert loaded == creds
    assert (loaded.node_id, loaded.role, loaded.cluster_id) == ("n1", "worker", "cluster1")
    # saving again (renewal) replaces in place
    key2, cert2 = ca.issue_local_certificate(root, "n1", "manager", "cluster1", "10.0.0.9")
    tls.NodeCredentials.from_pems(key2, cert2, root.cert_pem).save(d)
    assert tls.NodeCredentials.load(d).role == "manager"  # type: ignore[union-attr]


def test_credentials_load_refuses_a_mismatched_set(tmp_path: Path, root: pb.RootCA) -> None:
    key_pem, cert_pem = ca.issue_local_certificate(root, "n1", "worker", "cluster1", "10.0.0.9")
    tls.NodeCredentials.from_pems(key_pem, cert_pem, root.cert_pem).save(tmp_path)
    (tmp_path / "node.key").write_bytes(tls.new_node_key())
    with pytest.raises(tls.CredentialsError, match="does not match"):
        tls.NodeCredentials.load(tmp_path)
    (tmp_path / "node.key").write_bytes(key_pem)
    (tmp_path / "ca.crt").write_bytes(ca.create_root_ca().cert_pem)
    with pytest.raises(tls.CredentialsError, match="not issued by the cluster CA"):
        tls.NodeCredentials.load(tmp_path)
    (tmp_path / "ca.crt").unlink()
    with pytest.raises(tls.CredentialsError, match="incomplete"):
        tls.NodeCredentials.load(tmp_path)
