"""Every file a node keeps in its state directory, in one place.

  node.json          what the node remembers of its membership (NodeState)
  certs/             node key, node certificate, cluster root (tls.NodeCredentials)
  dek.json           a manager's data encryption key, in the clear or wrapped by
                     the unlock key (autolock); see swarmlet/atrest.py
  raft/raft_secret   the cluster's Raft secret and its epoch (managers only)
  raft/              the Raft journal, term file and snapshot (manager/raftlog.py);
                     raft/new while none exists yet

On a manager everything secret is ciphertext under its data key: the Raft
files, the Raft secret file and the node's TLS key (certs/node.key). With
autolock the data key itself is wrapped: until `swarmlet unlock` gives the
unlock key, the node is locked and none of them can be read (issue 13).

Writes are atomic and durable: a temporary file in the same directory,
fsync'd, renamed over the old one, then the directory fsync'd, so that after a
crash or a power cut a reader finds the old file or the new one, never half of
one. A file that is there but unusable (empty, corrupt, incomplete) raises
NodeFileError naming it, rather than a traceback or a silent fresh start that
would make the host a new node.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from typing import Any

from swarmlet import atrest, errors, tls
from swarmlet.atrest import DataKey
from swarmlet.fsutil import fsync_dir, write_atomic

NODE_FILE = "node.json"
CERTS_DIR = "certs"
RAFT_DIR = "raft"
SECRETS_DIR = "secrets"  # a tmpfs mount point (issue 10)
RAFT_SECRET_FILE = "raft_secret"
DEK_FILE = atrest.DEK_FILE
MIN_RAFT_SECRET = 32  # as manager/rafttransport.py: an empty file would give a public key
_AAD_RAFT_SECRET = b"swarmlet-raft-secret-file"
AAD_NODE_KEY = b"swarmlet-node-key"  # public: tests read a manager's key as the node does
# raft/new: a Raft directory made for a manager that has not started yet.
RAFT_NEW_MARKER = "new"


class NodeFileError(errors.FailedPrecondition):
    """A node file exists but cannot be used: the daemon cannot resume."""


@dataclass
class NodeState:
    """What the daemon remembers about its membership (node.json)."""

    node_id: str
    role: str
    cluster_id: str
    addr: str
    managers: list[str] = field(default_factory=list)
    # Raft addresses of the voting managers as last seen (managers only): the
    # partner list after a restart (pysyncobj's dump, once written, overrides it).
    raft_peers: list[str] = field(default_factory=list)

    @staticmethod
    def from_json(data: Any) -> NodeState:
        """Raises ValueError when `data` is not a NodeState's JSON."""
        if not isinstance(data, dict):
            raise ValueError("expected a JSON object")
        try:
            node = NodeState(**data)
        except TypeError as e:
            raise ValueError(str(e)) from None
        for name in ("node_id", "role", "cluster_id", "addr"):
            value = getattr(node, name)
            if not isinstance(value, str) or not value:
                raise ValueError(f"{name} must be a non-empty string")
        for name in ("managers", "raft_peers"):
            value = getattr(node, name)
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ValueError(f"{name} must be a list of strings")
        return node


class NodeFiles:
    """The state directory of one node (root only: it holds the node's key,
    the Raft secret and pickled Raft state)."""

    def __init__(self, state_dir: str) -> None:
        self.state_dir = state_dir
        os.makedirs(state_dir, mode=0o700, exist_ok=True)
        # The manager's data key once read (or unlocked): every secret file
        # of this node is sealed with it.
        self.data_key: DataKey | None = None

    @property
    def node_path(self) -> str:
        return os.path.join(self.state_dir, NODE_FILE)

    @property
    def certs_dir(self) -> str:
        return os.path.join(self.state_dir, CERTS_DIR)

    @property
    def raft_dir(self) -> str:
        return os.path.join(self.state_dir, RAFT_DIR)

    @property
    def raft_secret_path(self) -> str:
        return os.path.join(self.raft_dir, RAFT_SECRET_FILE)

    @property
    def secrets_dir(self) -> str:
        """Where the agent mounts the tmpfs for its tasks' secrets and
        configs (agent/taskfiles.py): memory, not a file of this directory."""
        return os.path.join(self.state_dir, SECRETS_DIR)

    @property
    def dek_path(self) -> str:
        return os.path.join(self.state_dir, DEK_FILE)

    def _unusable(self, path: str, what: str) -> NodeFileError:
        return NodeFileError(
            f"cannot resume from {path}: {what}. Restore the file, or move {self.state_dir} away "
            "to start this host as a new node (it must then join the swarm again)"
        )

    # ---- node.json ----
    def load_node(self) -> NodeState | None:
        """The saved membership, or None when the node is in no cluster."""
        path = self.node_path
        try:
            with open(path, "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            return None
        if not raw.strip():
            raise self._unusable(path, "the file is empty (cut short while being written?)")
        try:
            return NodeState.from_json(json.loads(raw))
        except ValueError as e:  # json.JSONDecodeError and UnicodeDecodeError are ValueErrors
            raise self._unusable(path, f"the file is corrupt ({e})") from None

    def save_node(self, node: NodeState) -> None:
        write_atomic(self.node_path, json.dumps(asdict(node)).encode())

    # ---- dek.json: the data key (managers) ----
    def has_data_key(self) -> bool:
        return os.path.exists(self.dek_path)

    def _read_dek_file(self) -> bytes:
        with open(self.dek_path, "rb") as f:
            return f.read()

    def locked(self) -> bool:
        """True when this node's data key is wrapped and not unlocked yet."""
        if self.data_key is not None or not self.has_data_key():
            return False
        try:
            return atrest.dek_wrapped(self._read_dek_file())
        except atrest.SealError as e:
            raise self._unusable(self.dek_path, str(e)) from None

    def unlock(self, unlock_key: str | None = None) -> DataKey:
        """Read the data key (unwrapping it with `unlock_key` under
        autolock). Raises atrest.Locked / atrest.InvalidUnlockKey."""
        try:
            self.data_key = atrest.read_dek_file(self._read_dek_file(), unlock_key)
        except atrest.SealError as e:
            raise self._unusable(self.dek_path, str(e)) from None
        return self.data_key

    def ensure_data_key(self) -> DataKey:
        """The data key, made (in the clear) if this node has none yet: a node
        becoming a manager. Raises atrest.Locked if it is wrapped."""
        if self.data_key is not None:
            return self.data_key
        if self.has_data_key():
            return self.unlock(None)
        key = DataKey.generate()
        write_atomic(self.dek_path, atrest.dek_file_bytes(key, None))
        self.data_key = key
        return key

    def wrap_data_key(self, unlock_key: str | None) -> None:
        """Store the data key wrapped by `unlock_key` (autolock on), or in
        the clear (None: autolock off)."""
        if self.data_key is None:
            return
        write_atomic(self.dek_path, atrest.dek_file_bytes(self.data_key, unlock_key))

    def drop_data_key(self) -> None:
        """Forget the data key (a manager demoted to worker): its secret files
        are gone or rewritten in the clear first by the caller."""
        self.data_key = None
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.dek_path)
            fsync_dir(self.state_dir)

    def _seal(self, data: bytes, aad: bytes) -> bytes:
        if self.data_key is None:
            raise errors.Internal("no data key loaded to seal a secret file with")
        return self.data_key.seal(data, aad)

    def _unseal(self, path: str, raw: bytes, aad: bytes) -> bytes:
        if not atrest.is_sealed(raw):
            return raw  # written before encryption at rest
        if self.data_key is None:
            raise atrest.Locked(f"{path} is encrypted: this manager is locked; run 'swarmlet unlock'")
        try:
            return self.data_key.unseal(raw, aad)
        except atrest.SealError as e:
            raise self._unusable(path, str(e)) from None

    # ---- certs/ ----
    def load_credentials(self) -> tls.NodeCredentials | None:
        key_path = os.path.join(self.certs_dir, tls.KEY_FILE)
        try:
            return tls.NodeCredentials.load(self.certs_dir, open_key=lambda raw: self._unseal(key_path, raw, AAD_NODE_KEY))
        except tls.CredentialsError as e:
            raise self._unusable(self.certs_dir, str(e)) from None

    def save_credentials(self, creds: tls.NodeCredentials) -> None:
        # A manager's TLS key is sealed with its data key: under autolock a
        # stolen disk must not let anyone pose as this manager.
        seal = (lambda pem: self._seal(pem, AAD_NODE_KEY)) if self.data_key is not None else None
        creds.save(self.certs_dir, seal_key=seal)

    # ---- raft/ ----
    def read_raft_secret(self) -> tuple[bytes, int]:
        """(the Raft secret, its epoch: how many rotations made it)."""
        path = self.raft_secret_path
        try:
            with open(path, "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            raise self._unusable(path, "the manager's Raft secret is missing") from None
        if not raw:
            raise self._unusable(path, "the file is empty (cut short while being written?)")
        epoch = 0
        if atrest.is_sealed(raw):
            try:
                doc = json.loads(self._unseal(path, raw, _AAD_RAFT_SECRET))
                secret, epoch = base64.b64decode(doc["secret"], validate=True), int(doc["epoch"])
            except (ValueError, KeyError, TypeError, binascii.Error):
                raise self._unusable(path, "the file is damaged") from None
        else:
            secret = raw  # written before encryption at rest
        if len(secret) < MIN_RAFT_SECRET:
            raise self._unusable(path, f"the Raft secret is {len(secret)} bytes long, at least {MIN_RAFT_SECRET} are required")
        return secret, epoch

    def write_raft_secret(self, secret: bytes, epoch: int = 0) -> None:
        """Atomically and durably, sealed with the data key (made if this
        node has none yet: it is becoming a manager)."""
        if len(secret) < MIN_RAFT_SECRET:
            raise errors.Invalid(f"a Raft secret of {len(secret)} bytes: at least {MIN_RAFT_SECRET} are required")
        self.ensure_data_key()
        os.makedirs(self.raft_dir, mode=0o700, exist_ok=True)
        doc = json.dumps({"epoch": epoch, "secret": base64.b64encode(secret).decode()}).encode()
        write_atomic(self.raft_secret_path, self._seal(doc, _AAD_RAFT_SECRET))

    def new_raft_dir(self, secret: bytes, epoch: int = 0) -> None:
        """Start a fresh Raft directory (init, join, promotion, restore):
        the secret, and the mark that no Raft state exists here yet."""
        self.write_raft_secret(secret, epoch)
        write_atomic(os.path.join(self.raft_dir, RAFT_NEW_MARKER), b"")

    def check_raft_state(self) -> None:
        """Refuse to start a manager whose Raft state is gone (issue 14).
        Raft state exists from the manager's first start on (its journal is
        created then, durably); before that, the directory is marked new. A
        directory with neither lost its state: a manager started on it would
        vote with an empty log and a forgotten vote, which can elect a leader
        without acknowledged writes. Raises raftlog.RaftStateError."""
        # Imported here: only a manager calls this, and the Raft modules load
        # pysyncobj, which a worker never needs (issue 15: worker memory).
        from swarmlet.manager import raftlog, raftmigrate

        names = set(os.listdir(self.raft_dir)) if os.path.isdir(self.raft_dir) else set()
        if names & {RAFT_NEW_MARKER, raftlog.JOURNAL_NAME, *raftmigrate.OLD_FILES}:
            return
        raise raftlog.RaftStateError(
            os.path.join(self.raft_dir, raftlog.JOURNAL_NAME),
            "missing: this manager's Raft state is gone (deleted, or lost with its disk), and a manager "
            "that forgot its log and its vote must not take part in Raft",
        )

    def raft_started(self) -> None:
        """The Raft node has created its journal: the directory is no longer new."""
        marker = os.path.join(self.raft_dir, RAFT_NEW_MARKER)
        if os.path.exists(marker):
            os.unlink(marker)
            fsync_dir(self.raft_dir)

    def reset_raft(self) -> None:
        """Drop the Raft log, dump and secret: a node that left Raft (or
        starts a new one) must never replay its old log."""
        shutil.rmtree(self.raft_dir, ignore_errors=True)

    # ---- all of it ----
    def forget(self) -> None:
        """Remove every membership file (leave): the host becomes a fresh node."""
        self.data_key = None
        for path in (self.node_path, self.certs_dir, self.raft_dir, self.dek_path):
            if os.path.isdir(path):
                shutil.rmtree(path, ignore_errors=True)
            elif os.path.exists(path):
                os.unlink(path)
        fsync_dir(self.state_dir)
