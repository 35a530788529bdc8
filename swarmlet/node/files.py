"""Every file a node keeps in its state directory, in one place.

  node.json          what the node remembers of its membership (NodeState)
  certs/             node key, node certificate, cluster root (tls.NodeCredentials)
  raft/raft_secret   the cluster's Raft secret (managers only)
  raft/              the Raft journal, term file and snapshot (manager/raftlog.py);
                     raft/new while none exists yet

Writes are atomic and durable: a temporary file in the same directory,
fsync'd, renamed over the old one, then the directory fsync'd, so that after a
crash or a power cut a reader finds the old file or the new one, never half of
one. A file that is there but unusable (empty, corrupt, incomplete) raises
NodeFileError naming it, rather than a traceback or a silent fresh start that
would make the host a new node.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from typing import Any

from swarmlet import errors, tls
from swarmlet.manager import raftlog, raftmigrate

NODE_FILE = "node.json"
CERTS_DIR = "certs"
RAFT_DIR = "raft"
RAFT_SECRET_FILE = "raft_secret"
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


def write_atomic(path: str, data: bytes, mode: int = 0o600) -> None:
    """Replace `path` by `data` atomically and durably (see the module doc).
    The mode is set before any byte is written."""
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(directory)


def fsync_dir(directory: str) -> None:
    """Make the renames and unlinks in `directory` durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class NodeFiles:
    """The state directory of one node (root only: it holds the node's key,
    the Raft secret and pickled Raft state)."""

    def __init__(self, state_dir: str) -> None:
        self.state_dir = state_dir
        os.makedirs(state_dir, mode=0o700, exist_ok=True)

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

    # ---- certs/ ----
    def load_credentials(self) -> tls.NodeCredentials | None:
        try:
            return tls.NodeCredentials.load(self.certs_dir)
        except tls.CredentialsError as e:
            raise self._unusable(self.certs_dir, str(e)) from None

    def save_credentials(self, creds: tls.NodeCredentials) -> None:
        creds.save(self.certs_dir)

    # ---- raft/ ----
    def read_raft_secret(self) -> bytes:
        path = self.raft_secret_path
        try:
            with open(path, "rb") as f:
                secret = f.read()
        except FileNotFoundError:
            raise self._unusable(path, "the manager's Raft secret is missing") from None
        if not secret:
            raise self._unusable(path, "the file is empty (cut short while being written?)")
        return secret

    def write_raft_secret(self, secret: bytes) -> None:
        """Start a fresh Raft directory (init, join, promotion, restore):
        the secret, and the mark that no Raft state exists here yet."""
        os.makedirs(self.raft_dir, mode=0o700, exist_ok=True)
        write_atomic(self.raft_secret_path, secret)
        write_atomic(os.path.join(self.raft_dir, RAFT_NEW_MARKER), b"")

    def check_raft_state(self) -> None:
        """Refuse to start a manager whose Raft state is gone (issue 14).
        Raft state exists from the manager's first start on (its journal is
        created then, durably); before that, the directory is marked new. A
        directory with neither lost its state: a manager started on it would
        vote with an empty log and a forgotten vote, which can elect a leader
        without acknowledged writes. Raises raftlog.RaftStateError."""
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
        for path in (self.node_path, self.certs_dir, self.raft_dir):
            if os.path.isdir(path):
                shutil.rmtree(path, ignore_errors=True)
            elif os.path.exists(path):
                os.unlink(path)
        fsync_dir(self.state_dir)
