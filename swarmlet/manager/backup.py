"""Backup files and re-seeding a fresh Raft from a state snapshot (restore and
`init --force-new-cluster`).

A backup file is one JSON header line, then the body: a serialized
`control.BackupTables` protobuf, encrypted (version 2, issue 13): it holds the
root CA key, the join tokens and every secret of the cluster. The header says
what the body is, which key opens it (the swarm's unlock key, a backup key
printed once, or a passphrase) and carries the body's sha256, so a truncated
or foreign file is refused before anything changes; the header is the
ciphertext's associated data, so it cannot be altered either. Version 1 files
(a body in the clear, from before encryption) still restore: they never had a
key to ask for. Every object is validated before a restore uses it, as on
create. The format is documented in docs/operations.md; `FORMAT_VERSION` is
bumped on any incompatible change and `decode` refuses versions it does not
know.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import time
from collections.abc import Iterator
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from google.protobuf.message import DecodeError

from swarmlet import atrest, errors, tls
from swarmlet.api import control_pb2 as cpb
from swarmlet.api import objects_pb2 as pb
from swarmlet.api import store_pb2 as spb
from swarmlet.core import cluster as cl
from swarmlet.core import state as st
from swarmlet.core import validation

FORMAT = "swarmlet-backup"
FORMAT_VERSION = 2
CIPHER = "AES-256-GCM"
# Objects per replicated batch when re-seeding: keeps Raft entries small
# (pysyncobj is slow with entries far beyond its batch size).
SEED_BATCH = 200
SEED_BATCH_BYTES = 768 * 1024

KEY_WORDS = {
    atrest.KIND_UNLOCK: "the swarm's unlock key (SWLKEY-1-..., shown by 'swarmlet unlock-key' when it was taken)",
    atrest.KIND_BACKUP: "the backup key printed when it was taken (SWLBKP-1-...)",
    atrest.KIND_PASSPHRASE: "the passphrase given when it was taken",
}


class BackupError(errors.Invalid):
    """The data is not a backup this version can restore."""


def _aad(meta: dict[str, Any]) -> bytes:
    return json.dumps(meta, sort_keys=True).encode()


def encode(snap: st.Snapshot, kind: str, secret: str, now: float | None = None) -> bytes:
    """The backup file of `snap`, encrypted with the key derived from
    `secret` (an unlock key, a backup key or a passphrase, as `kind` says)."""
    tables = cpb.BackupTables(
        store_version=snap.version,
        clusters=[snap.clusters[k] for k in sorted(snap.clusters)],
        nodes=[snap.nodes[k] for k in sorted(snap.nodes)],
        services=[snap.services[k] for k in sorted(snap.services)],
        tasks=[snap.tasks[k] for k in sorted(snap.tasks)],
        networks=[snap.networks[k] for k in sorted(snap.networks)],
        secrets=[snap.secrets[k] for k in sorted(snap.secrets)],
        configs=[snap.configs[k] for k in sorted(snap.configs)],
    ).SerializeToString(deterministic=True)
    salt = os.urandom(16)
    cipher = atrest.backup_cipher(kind, secret, salt)
    cluster = snap.cluster
    meta: dict[str, Any] = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "created_at": time.time() if now is None else now,
        "cluster_id": cluster.id if cluster else "",
        "store_version": snap.version,
        "counts": {
            "clusters": len(snap.clusters),
            "nodes": len(snap.nodes),
            "services": len(snap.services),
            "tasks": len(snap.tasks),
            "networks": len(snap.networks),
            "secrets": len(snap.secrets),
            "configs": len(snap.configs),
        },
        "body": "swarmlet.api.BackupTables",
        "encryption": {"cipher": CIPHER, "key": kind, "salt": base64.b64encode(salt).decode()},
    }
    body = cipher.encrypt(tables, _aad(meta))
    header = dict(meta, body_bytes=len(body), body_sha256=hashlib.sha256(body).hexdigest())
    return json.dumps(header, sort_keys=True).encode() + b"\n" + body


def read_header(data: bytes) -> tuple[dict[str, Any], bytes]:
    """The header and the body; BackupError if the file is not a backup."""
    line, sep, body = data.partition(b"\n")
    if not sep:
        raise BackupError("not a swarmlet backup (no header line)")
    try:
        header = json.loads(line)
    except ValueError:
        raise BackupError("not a swarmlet backup (the header is not JSON)") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise BackupError("not a swarmlet backup (wrong format name)")
    if header.get("version") not in (1, FORMAT_VERSION):
        raise BackupError(
            f"backup format version {header.get('version')} is not supported (this swarmlet reads versions 1 and {FORMAT_VERSION})"
        )
    if len(body) != header.get("body_bytes") or hashlib.sha256(body).hexdigest() != header.get("body_sha256"):
        raise BackupError("the backup is truncated or corrupted (size or checksum mismatch)")
    return header, body


def _decrypt(header: dict[str, Any], body: bytes, secret: str) -> bytes:
    enc = header.get("encryption")
    if not isinstance(enc, dict) or enc.get("cipher") != CIPHER or enc.get("key") not in KEY_WORDS:
        raise BackupError("the backup's header does not say how it is encrypted")
    kind = str(enc["key"])
    if not secret.strip():
        raise BackupError(f"this backup is encrypted: give {KEY_WORDS[kind]}")
    given = atrest.key_kind(secret)
    if kind != atrest.KIND_PASSPHRASE and given != kind:
        raise BackupError(f"this backup is encrypted with {KEY_WORDS[kind]}, not with the key given")
    try:
        salt = base64.b64decode(str(enc.get("salt", "")), validate=True)
        cipher = atrest.backup_cipher(kind, secret.strip() if kind != atrest.KIND_PASSPHRASE else secret, salt)
    except (binascii.Error, ValueError):
        raise BackupError("the backup's header is damaged (salt)") from None
    meta = {k: v for k, v in header.items() if k not in ("body_bytes", "body_sha256")}
    try:
        return cipher.decrypt(body, _aad(meta))
    except atrest.SealError:
        raise BackupError(f"the key given does not open this backup: it needs {KEY_WORDS[kind]}") from None


def decode(data: bytes, secret: str = "") -> st.Snapshot:
    """The snapshot in a backup file, every object checked; BackupError if
    the file is not one, the key does not open it, or an object is invalid."""
    header, body = read_header(data)
    if header["version"] >= 2:
        body = _decrypt(header, body, secret)
    try:
        tables = cpb.BackupTables.FromString(body)
    except (DecodeError, ValueError):
        raise BackupError("the backup's body does not decode") from None
    snap = st.Snapshot(
        clusters={c.id: c for c in tables.clusters},
        nodes={n.id: n for n in tables.nodes},
        services={s.id: s for s in tables.services},
        tasks={t.id: t for t in tables.tasks},
        networks={n.id: n for n in tables.networks},
        secrets={x.id: x for x in tables.secrets},
        configs={x.id: x for x in tables.configs},
        version=tables.store_version,
    )
    if snap.cluster is None or not snap.cluster.root_ca.key_pem:
        raise BackupError("the backup holds no cluster object with its CA")
    try:
        validation.validate_restored(snap)
        _check_cluster_secrets(snap.cluster)
    except errors.Invalid as e:
        raise BackupError(f"the backup holds an invalid object: {e}") from None
    return snap


def _check_cluster_secrets(cluster: pb.Cluster) -> None:
    """The CA key belongs to the CA certificate, the tokens pin that CA, the
    Raft secret is long enough: what restore relies on."""
    try:
        cert = x509.load_pem_x509_certificate(cluster.root_ca.cert_pem)
        key = serialization.load_pem_private_key(cluster.root_ca.key_pem, password=None)
    except (ValueError, TypeError):
        raise errors.Invalid("the cluster's root CA certificate or key does not load") from None
    if key.public_key() != cert.public_key():
        raise errors.Invalid("the cluster's root CA key does not belong to its certificate")
    digest = tls.ca_digest(cluster.root_ca.cert_pem)
    if not hmac.compare_digest(digest, cluster.root_ca.digest):
        raise errors.Invalid("the cluster's root CA digest does not match its certificate")
    for what, token in (("worker", cluster.worker_token), ("manager", cluster.manager_token)):
        got, _ = tls.parse_token(token)
        if got != digest:
            raise errors.Invalid(f"the {what} join token does not pin the cluster's CA")
    if cluster.spec.autolock:
        atrest.parse_key(cluster.unlock_key, atrest.UNLOCK_KEY_PREFIX, "unlock key")


def bootstrap_batches(snap: st.Snapshot, me: pb.Node, raft_secret: bytes, reason: str) -> Iterator[list[spb.StoreAction]]:
    """Store batches that recreate `snap` in an empty store with `me` as the
    only manager (what the objects become: core.cluster.sole_manager_state),
    at most SEED_BATCH creates and about SEED_BATCH_BYTES per batch so every
    Raft entry stays small (a secret or config alone may hold 500 KiB)."""
    if snap.cluster is None:
        raise BackupError("the state holds no cluster object to recreate")
    actions: list[spb.StoreAction] = []
    size = 0
    for obj in cl.sole_manager_state(snap, me, raft_secret, reason):
        obj.meta.version = 0  # created anew (the objects are copies)
        nbytes = obj.ByteSize()
        if actions and (len(actions) >= SEED_BATCH or size + nbytes > SEED_BATCH_BYTES):
            yield actions
            actions, size = [], 0
        actions.append(st.put(obj, create=True))
        size += nbytes
    if actions:
        yield actions
