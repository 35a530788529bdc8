"""Backup files (encode/decode) and re-seeding a fresh Raft from a snapshot."""

from __future__ import annotations

import json

import pytest

from swarmlet import atrest
from swarmlet.api import objects_pb2 as pb
from swarmlet.api import store_pb2 as spb
from swarmlet.core import state as st
from swarmlet.manager import backup
from tests.unit.manager import helpers as h

ME = "restorer00000000000000000"
KEY = atrest.new_backup_key()


def encode(snap: st.Snapshot, now: float | None = None) -> bytes:
    return backup.encode(snap, atrest.KIND_BACKUP, KEY, now=now)


def sample(services: int = 2) -> st.Snapshot:
    """A state as a cluster accumulates it: a cluster object (with a
    membership marker left behind), two managers, a worker, a network,
    services and their tasks, all written through apply_batch."""
    snap = st.Snapshot()
    cluster = h.new_cluster()
    cluster.membership_change, cluster.membership_change_at = "add 10.0.0.3:4243", 1.0
    old_me = h.manager_node("10.0.0.1:4243", "10.0.0.1:4244", node_id=ME, hostname="old-me")
    old_me.spec.labels["zone"] = "a"
    old_me.spec.availability = pb.NodeSpec.DRAIN
    actions = [
        st.put(cluster, create=True),
        st.put(old_me, create=True),
        st.put(h.manager_node("10.0.0.2:4243", "10.0.0.2:4244", node_id="other-manager", hostname="m2"), create=True),
        st.put(h.worker_node("worker", "w1"), create=True),
        st.put(pb.Network(id="net1", spec=pb.NetworkSpec(name="front")), create=True),
        st.put(pb.Secret(id="sec1", spec=pb.SecretSpec(name="db-pass", data=b"hunter2")), create=True),
        st.put(pb.Config(id="cfg1", spec=pb.ConfigSpec(name="nginx.conf", data=b"server {}")), create=True),
    ]
    for i in range(services):
        spec = h.service_spec(f"svc{i}", replicas=2)
        spec.networks.add(target="net1")
        spec.task.container.secrets.add(secret_id="sec1", secret_name="db-pass", file=pb.FileTarget(name="db-pass"))
        spec.task.container.configs.add(config_id="cfg1", config_name="nginx.conf", file=pb.FileTarget(name="/etc/n.conf"))
        actions.append(st.put(pb.Service(id=f"svc{i}", spec=spec, spec_version=1), create=True))
        for slot in (1, 2):
            task = pb.Task(id=f"svc{i}-{slot}", service_id=f"svc{i}", slot=slot, node_id="worker", desired_state=pb.RUNNING)
            actions.append(st.put(task, create=True))
    result = st.apply_batch(snap, spb.StoreBatch(actions=actions, timestamp=100.0))
    assert result.ok, result.error
    return snap


def test_round_trip_keeps_every_object_and_the_version() -> None:
    snap = sample()
    data = encode(snap, now=1234.5)
    header = json.loads(data.partition(b"\n")[0])
    assert header["format"] == "swarmlet-backup" and header["version"] == backup.FORMAT_VERSION
    assert header["created_at"] == 1234.5
    assert header["counts"] == {
        "clusters": 1,
        "nodes": 3,
        "services": 2,
        "tasks": 4,
        "networks": 1,
        "secrets": 1,
        "configs": 1,
    }
    back = backup.decode(data, KEY)
    assert st.state_digest(back) == st.state_digest(snap)
    assert back.secrets["sec1"].spec.data == b"hunter2" and back.configs["cfg1"].spec.name == "nginx.conf"
    assert back.version == snap.version
    # Encrypted: the CA key and the tokens are nowhere in the file.
    cluster = snap.cluster
    assert cluster is not None
    for secret in (cluster.root_ca.key_pem, cluster.worker_token.encode(), cluster.raft_secret):
        assert secret not in data


def corrupt(data: bytes, how: str) -> bytes:
    header, _, body = data.partition(b"\n")
    if how == "flipped":
        return header + b"\n" + body[:-1] + bytes([body[-1] ^ 1])
    if how == "truncated":
        return data[:-10]
    if how == "no header":
        return body.replace(b"\n", b"")
    if how == "not json":
        return b"{nope\n" + body
    meta = json.loads(header)
    if how == "foreign":
        meta["format"] = "something-else"
    elif how == "future":
        meta["version"] = backup.FORMAT_VERSION + 1
    return json.dumps(meta).encode() + b"\n" + body


@pytest.mark.parametrize(
    ("how", "message"),
    [
        ("flipped", "truncated or corrupted"),
        ("truncated", "truncated or corrupted"),
        ("no header", "no header line"),
        ("not json", "the header is not JSON"),
        ("foreign", "wrong format name"),
        ("future", f"backup format version {backup.FORMAT_VERSION + 1} is not supported"),
    ],
)
def test_a_damaged_or_foreign_file_is_refused(how: str, message: str) -> None:
    data = encode(sample())
    with pytest.raises(backup.BackupError, match=message):
        backup.decode(corrupt(data, how), KEY)


def test_a_backup_without_a_cluster_is_refused() -> None:
    snap = st.Snapshot()
    st.apply_batch(snap, spb.StoreBatch(actions=[st.put(h.worker_node("w", "w1"), create=True)]))
    with pytest.raises(backup.BackupError, match="no cluster object with its CA"):
        backup.decode(encode(snap), KEY)


def test_bootstrap_batches_recreate_the_state_with_one_manager() -> None:
    snap = sample(services=150)  # more objects than one seed batch holds
    me = h.manager_node("10.9.9.9:4243", "10.9.9.9:4244", node_id=ME, hostname="new-me")
    batches = list(backup.bootstrap_batches(snap, me, b"n" * 32, "restored from a backup"))
    assert len(batches) > 1 and all(len(b) <= backup.SEED_BATCH for b in batches)

    fresh = st.Snapshot()
    for actions in batches:
        result = st.apply_batch(fresh, spb.StoreBatch(actions=actions))
        assert result.ok, result.error

    assert set(fresh.services) == set(snap.services) and set(fresh.tasks) == set(snap.tasks)
    assert fresh.networks["net1"].spec == snap.networks["net1"].spec
    assert fresh.secrets["sec1"].spec == snap.secrets["sec1"].spec
    assert fresh.configs["cfg1"].spec == snap.configs["cfg1"].spec
    cluster = fresh.cluster
    assert cluster is not None and snap.cluster is not None
    assert cluster.raft_secret == b"n" * 32 and cluster.root_ca == snap.cluster.root_ca
    assert cluster.membership_change == "" and cluster.membership_change_at == 0
    # This node is the only manager, at its new addresses, keeping its labels and availability.
    mine = fresh.nodes[ME]
    assert (mine.role, mine.manager_status.raft_addr, mine.description.hostname) == (
        pb.NodeSpec.MANAGER,
        "10.9.9.9:4243",
        "new-me",
    )
    assert dict(mine.spec.labels) == {"zone": "a"} and mine.spec.availability == pb.NodeSpec.DRAIN
    # The other manager is a worker that must stay one, down until it returns.
    other = fresh.nodes["other-manager"]
    assert (other.role, other.spec.desired_role) == (pb.NodeSpec.WORKER, pb.NodeSpec.WORKER)
    assert not other.HasField("manager_status")
    assert (other.status.state, other.status.message) == (pb.NodeStatus.DOWN, "restored from a backup")
    assert fresh.nodes["worker"].status.state == pb.NodeStatus.READY
    # The source snapshot is untouched.
    assert snap.nodes["other-manager"].role == pb.NodeSpec.MANAGER


def test_bootstrap_batches_keep_raft_entries_small_with_big_secrets() -> None:
    """Secrets of 500 KiB each: a batch never holds much more than
    SEED_BATCH_BYTES (a pysyncobj entry far beyond its batch size is slow)."""
    snap = sample(services=1)
    big = [
        st.put(pb.Secret(id=f"big{i}", spec=pb.SecretSpec(name=f"big{i}", data=bytes([65 + i]) * (500 * 1024))), create=True)
        for i in range(5)
    ]
    assert st.apply_batch(snap, spb.StoreBatch(actions=big)).ok
    me = h.manager_node("10.9.9.9:4243", "10.9.9.9:4244", node_id=ME, hostname="new-me")
    batches = list(backup.bootstrap_batches(snap, me, b"n" * 32, "restored"))
    assert all(spb.StoreBatch(actions=b).ByteSize() < backup.SEED_BATCH_BYTES + 600 * 1024 for b in batches)
    assert sum(1 for b in batches if any(a.put.WhichOneof("object") == "secret" for a in b)) >= 3
    fresh = st.Snapshot()
    for actions in batches:
        assert st.apply_batch(fresh, spb.StoreBatch(actions=actions)).ok
    assert {k: v.spec for k, v in fresh.secrets.items()} == {k: v.spec for k, v in snap.secrets.items()}


# ---------------------------------------------------------------- encryption and checks (issue 13)


def test_a_backup_needs_its_own_key_and_names_which() -> None:
    data = encode(sample())
    with pytest.raises(backup.BackupError, match="give the backup key printed when it was taken"):
        backup.decode(data)
    with pytest.raises(backup.BackupError, match="does not open this backup"):
        backup.decode(data, atrest.new_backup_key())
    with pytest.raises(backup.BackupError, match="not with the key given"):
        backup.decode(data, atrest.new_unlock_key())


def test_unlock_key_and_passphrase_backups_round_trip() -> None:
    snap = sample()
    unlock = atrest.new_unlock_key()
    data = backup.encode(snap, atrest.KIND_UNLOCK, unlock)
    assert st.state_digest(backup.decode(data, unlock)) == st.state_digest(snap)
    with pytest.raises(backup.BackupError, match="the swarm's unlock key"):
        backup.decode(data, atrest.new_unlock_key())
    phrase = "correct horse battery staple"
    data = backup.encode(snap, atrest.KIND_PASSPHRASE, phrase)
    assert st.state_digest(backup.decode(data, phrase)) == st.state_digest(snap)
    with pytest.raises(backup.BackupError, match="the passphrase given when it was taken"):
        backup.decode(data, "wrong horse battery staple")


def test_the_header_cannot_be_altered() -> None:
    data = encode(sample())
    header, _, body = data.partition(b"\n")
    meta = json.loads(header)
    meta["counts"]["services"] = 99
    with pytest.raises(backup.BackupError, match="does not open"):
        backup.decode(json.dumps(meta).encode() + b"\n" + body, KEY)


def _v1(tables: bytes) -> bytes:
    import hashlib

    head = {
        "format": "swarmlet-backup",
        "version": 1,
        "body_bytes": len(tables),
        "body_sha256": hashlib.sha256(tables).hexdigest(),
    }
    return json.dumps(head).encode() + b"\n" + tables


def _tables(snap: st.Snapshot) -> bytes:
    from swarmlet.api import control_pb2 as cpb

    return cpb.BackupTables(
        store_version=snap.version,
        clusters=list(snap.clusters.values()),
        nodes=list(snap.nodes.values()),
        services=list(snap.services.values()),
        tasks=list(snap.tasks.values()),
        networks=list(snap.networks.values()),
        secrets=list(snap.secrets.values()),
        configs=list(snap.configs.values()),
    ).SerializeToString()


def test_a_backup_from_before_encryption_still_restores() -> None:
    snap = sample()
    assert st.state_digest(backup.decode(_v1(_tables(snap)))) == st.state_digest(snap)


def test_a_crafted_backup_with_a_valid_checksum_is_refused() -> None:
    snap = sample()
    snap.services["svc0"].spec.name = "evil/\nname"
    with pytest.raises(backup.BackupError, match="invalid object: service svc0: invalid service name"):
        backup.decode(_v1(_tables(snap)))
    snap = sample()
    snap.services["svc0"].spec.task.container.env.extend(["K=v"] * 10_000)
    with pytest.raises(backup.BackupError, match="environment variables"):
        backup.decode(_v1(_tables(snap)))
    # A body that is not protobuf at all, with a correct checksum.
    with pytest.raises(backup.BackupError, match="does not decode"):
        backup.decode(_v1(b"\xff" * 64))
    # A CA key that does not belong to the certificate.
    from swarmlet.manager import ca

    snap = sample()
    assert snap.cluster is not None
    snap.cluster.root_ca.key_pem = ca.create_root_ca().key_pem
    with pytest.raises(backup.BackupError, match="root CA key does not belong"):
        backup.decode(_v1(_tables(snap)))
