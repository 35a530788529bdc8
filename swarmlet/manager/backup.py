"""Backup files and re-seeding a fresh Raft from a state snapshot (restore and
`init --force-new-cluster`).

A backup file is one JSON header line, then the body: a serialized
`control.BackupTables` protobuf. The header says what the body is and carries
its sha256, so a truncated or foreign file is refused before anything changes.
The format is documented in docs/operations.md; `FORMAT_VERSION` is bumped on
any incompatible change and `decode` refuses versions it does not know.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator

from swarmlet import errors
from swarmlet.api import control_pb2 as cpb
from swarmlet.api import objects_pb2 as pb
from swarmlet.api import store_pb2 as spb
from swarmlet.core import cluster as cl
from swarmlet.core import state as st

FORMAT = "swarmlet-backup"
FORMAT_VERSION = 1
# Objects per replicated batch when re-seeding: keeps Raft entries small
# (pysyncobj is slow with entries far beyond its batch size).
SEED_BATCH = 200
SEED_BATCH_BYTES = 768 * 1024


class BackupError(errors.Invalid):
    """The data is not a backup this version can restore."""


def encode(snap: st.Snapshot, now: float | None = None) -> bytes:
    body = cpb.BackupTables(
        store_version=snap.version,
        clusters=[snap.clusters[k] for k in sorted(snap.clusters)],
        nodes=[snap.nodes[k] for k in sorted(snap.nodes)],
        services=[snap.services[k] for k in sorted(snap.services)],
        tasks=[snap.tasks[k] for k in sorted(snap.tasks)],
        networks=[snap.networks[k] for k in sorted(snap.networks)],
        secrets=[snap.secrets[k] for k in sorted(snap.secrets)],
        configs=[snap.configs[k] for k in sorted(snap.configs)],
    ).SerializeToString(deterministic=True)
    cluster = snap.cluster
    header = {
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
        "body_bytes": len(body),
        "body_sha256": hashlib.sha256(body).hexdigest(),
    }
    return json.dumps(header, sort_keys=True).encode() + b"\n" + body


def decode(data: bytes) -> st.Snapshot:
    """The snapshot in a backup file; BackupError if the file is not one."""
    line, sep, body = data.partition(b"\n")
    if not sep:
        raise BackupError("not a swarmlet backup (no header line)")
    try:
        header = json.loads(line)
    except ValueError:
        raise BackupError("not a swarmlet backup (the header is not JSON)") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise BackupError("not a swarmlet backup (wrong format name)")
    if header.get("version") != FORMAT_VERSION:
        raise BackupError(
            f"backup format version {header.get('version')} is not supported (this swarmlet reads version {FORMAT_VERSION})"
        )
    if len(body) != header.get("body_bytes") or hashlib.sha256(body).hexdigest() != header.get("body_sha256"):
        raise BackupError("the backup is truncated or corrupted (size or checksum mismatch)")
    tables = cpb.BackupTables.FromString(body)
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
    return snap


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
