"""The node's files: atomic, durable writes and clear errors for files that
are there but unusable."""

from __future__ import annotations

import json
import os
import stat

import pytest

from swarmlet import errors, tls
from swarmlet.manager import ca
from swarmlet.node import files
from swarmlet.node.files import NodeFileError, NodeFiles, NodeState


def _node() -> NodeState:
    return NodeState(
        node_id="n1", role="manager", cluster_id="c1", addr="10.0.0.1", managers=["10.0.0.1:4244"], raft_peers=["10.0.0.1:4243"]
    )


def _creds() -> tls.NodeCredentials:
    root = ca.create_root_ca()
    key_pem, cert_pem = ca.issue_local_certificate(root, "n1", "manager", "c1", "10.0.0.1")
    return tls.NodeCredentials.from_pems(key_pem, cert_pem, root.cert_pem)


def test_node_round_trip_is_private_and_leaves_no_temp_file(tmp_path) -> None:
    f = NodeFiles(str(tmp_path / "state"))
    assert f.load_node() is None  # a fresh host
    f.save_node(_node())
    assert f.load_node() == _node()
    assert stat.S_IMODE(os.stat(f.node_path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(f.state_dir).st_mode) == 0o700
    assert os.listdir(f.state_dir) == ["node.json"]


def test_a_failed_write_keeps_the_old_file(tmp_path, monkeypatch) -> None:
    f = NodeFiles(str(tmp_path))
    f.save_node(_node())

    def disk_full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(files.os, "fsync", disk_full)
    changed = _node()
    changed.role = "worker"
    with pytest.raises(OSError):
        f.save_node(changed)
    monkeypatch.undo()
    assert f.load_node() == _node()
    assert os.listdir(tmp_path) == ["node.json"]  # the temporary file is gone


def test_writes_fsync_the_file_and_its_directory(tmp_path, monkeypatch) -> None:
    synced: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        synced.append("dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real_fsync(fd)

    monkeypatch.setattr(files.os, "fsync", recording_fsync)
    f = NodeFiles(str(tmp_path))
    f.save_node(_node())
    assert synced == ["file", "dir"]
    f.ensure_data_key()  # a manager's: its secret files are sealed with it
    synced.clear()
    f.new_raft_dir(b"s" * 32)
    assert synced == ["file", "dir", "file", "dir"]  # the secret, then the mark of a new Raft directory


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "empty"),
        (b"  \n", "empty"),
        (b'{"node_id": "n1", "role": "mana', "corrupt"),
        (b"[1, 2]", "corrupt"),
        (b'{"node_id": "n1"}', "corrupt"),
        (json.dumps({**vars(_node()), "node_id": ""}).encode(), "corrupt"),
        (json.dumps({**vars(_node()), "managers": "10.0.0.1:4244"}).encode(), "corrupt"),
        (b"\xff\xfe\x00", "corrupt"),
    ],
)
def test_unusable_node_json_is_a_clear_error_naming_the_file(tmp_path, content: bytes, reason: str) -> None:
    f = NodeFiles(str(tmp_path))
    with open(f.node_path, "wb") as fh:
        fh.write(content)
    with pytest.raises(NodeFileError) as e:
        f.load_node()
    message = str(e.value)
    assert f.node_path in message and reason in message
    assert "new node" in message  # and the way out
    assert isinstance(e.value, errors.FailedPrecondition)


def test_credentials_round_trip_and_broken_ones_name_the_directory(tmp_path) -> None:
    f = NodeFiles(str(tmp_path))
    assert f.load_credentials() is None
    creds = _creds()
    f.save_credentials(creds)
    loaded = f.load_credentials()
    assert loaded is not None and loaded.identity == creds.identity
    with open(os.path.join(f.certs_dir, tls.CERT_FILE), "wb") as fh:
        fh.write(b"-----BEGIN CERTIFICATE-----\ngarbage\n-----END CERTIFICATE-----\n")
    with pytest.raises(NodeFileError, match=f.certs_dir):
        f.load_credentials()


def test_raft_secret_is_private_and_a_missing_or_empty_one_is_named(tmp_path) -> None:
    f = NodeFiles(str(tmp_path))
    with pytest.raises(NodeFileError, match="Raft secret is missing"):
        f.read_raft_secret()
    f.write_raft_secret(b"k" * 32, epoch=3)
    assert f.read_raft_secret() == (b"k" * 32, 3)
    with open(f.raft_secret_path, "rb") as fh:
        assert b"k" * 32 not in fh.read()  # sealed with the data key
    assert stat.S_IMODE(os.stat(f.raft_secret_path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(f.raft_dir).st_mode) == 0o700
    with open(f.raft_secret_path, "wb"):
        pass
    with pytest.raises(NodeFileError, match=f"{f.raft_secret_path}.*empty"):
        f.read_raft_secret()
    f.reset_raft()
    assert not os.path.exists(f.raft_dir)


def test_forget_removes_every_membership_file_and_nothing_else(tmp_path) -> None:
    f = NodeFiles(str(tmp_path))
    f.save_node(_node())
    f.save_credentials(_creds())
    f.write_raft_secret(b"k" * 32)
    with open(os.path.join(f.raft_dir, "journal"), "wb") as fh:
        fh.write(b"log")
    with open(tmp_path / "unrelated", "w") as fh:
        fh.write("kept")
    f.forget()
    assert sorted(os.listdir(tmp_path)) == ["unrelated"]
    assert f.load_node() is None and f.load_credentials() is None
    f.forget()  # nothing left to remove: still fine
