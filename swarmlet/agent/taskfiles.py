"""The secrets and configs of this node's tasks, and what the engine is asked
to mount for a task.

The data arrives with the dispatcher's assignment: only what the node's live
tasks use (core/secrets.for_node). It is kept in memory, and written as files
only into one tmpfs (memory, never a disk), at `<state dir>/secrets`: one
directory per task (0700, root), one file per reference with the owner and
mode the service asked for. Each file is bind-mounted read-only at its
target (/run/secrets/NAME for a secret), as Docker does; the engine copies
nothing into its data root. A task's files go when it ends or leaves the
node's set; the data goes from memory when no live task of the node uses it.

Should the tmpfs be impossible (not root, no mount), tasks that need files are
rejected with the reason: secret data is never written to a disk instead.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import shutil
import threading
from collections.abc import Iterable, Sequence

from swarmlet import errors
from swarmlet.api import objects_pb2 as pb
from swarmlet.core import mounts as mt
from swarmlet.core import secrets as sc
from swarmlet.core import templates

log = logging.getLogger(__name__)

_MS_NOSUID, _MS_NODEV, _MS_NOEXEC = 2, 4, 8
_MNT_DETACH = 2


class FilesUnavailable(errors.FailedPrecondition):
    """A task's secret or config cannot be provided on this node: the task is
    rejected with this reason."""


def _mount_points() -> dict[str, str]:
    """Mount point -> filesystem type, from this process's mount table."""
    out: dict[str, str] = {}
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            point = left.split()[4].encode().decode("unicode_escape")
            out[point] = right.split()[0]
    return out


class TaskFiles:
    """Secrets and configs in memory, and their files in a tmpfs at `root`.
    `require_tmpfs=False` (unit tests only) uses a plain directory."""

    def __init__(self, root: str, require_tmpfs: bool = True) -> None:
        self.root = os.path.abspath(root)
        self._require_tmpfs = require_tmpfs
        self._lock = threading.Lock()
        self._secrets: dict[str, pb.Secret] = {}
        self._configs: dict[str, pb.Config] = {}
        self._ready = False

    # ---- the data (from the assignment) ----

    def update(self, secrets: Iterable[pb.Secret], configs: Iterable[pb.Config]) -> None:
        """What the node's live tasks use, as the latest assignment says: all
        else is forgotten."""
        with self._lock:
            self._secrets = {s.id: s for s in secrets}
            self._configs = {c.id: c for c in configs}

    def known(self) -> tuple[set[str], set[str]]:
        """Ids of the secrets and configs held in memory (tests)."""
        with self._lock:
            return set(self._secrets), set(self._configs)

    # ---- the tmpfs ----

    def _ensure_root(self) -> None:
        if self._ready:
            return
        os.makedirs(self.root, mode=0o700, exist_ok=True)
        os.chmod(self.root, 0o700)
        if self._require_tmpfs:
            fstype = _mount_points().get(self.root)
            if fstype is None:
                libc = ctypes.CDLL(None, use_errno=True)
                flags = _MS_NOSUID | _MS_NODEV | _MS_NOEXEC
                if libc.mount(b"tmpfs", self.root.encode(), b"tmpfs", flags, b"mode=0700") != 0:
                    err = ctypes.get_errno()
                    raise FilesUnavailable(
                        f"cannot keep secrets and configs in memory: mounting a tmpfs at {self.root} failed "
                        f"({os.strerror(err)}); the daemon must run as root"
                    )
                log.info("mounted a tmpfs for secrets and configs at %s", self.root)
            elif fstype != "tmpfs":
                raise FilesUnavailable(f"{self.root} is a {fstype} mount, not a tmpfs: secrets are never written to disk")
        self._ready = True

    # ---- a task's files ----

    def _refs(self, task: pb.Task) -> list[tuple[sc.Kind, sc.Ref]]:
        c = task.spec.container
        return [(sc.SECRET, r) for r in c.secrets] + [(sc.CONFIG, r) for r in c.configs]

    def _data(self, kind: sc.Kind, ref: sc.Ref) -> bytes | None:
        with self._lock:
            held: dict[str, pb.Secret] | dict[str, pb.Config] = self._secrets if kind.secret else self._configs
            obj = held.get(kind.ref_id(ref))
        return None if obj is None else obj.spec.data

    def mounts(self, task: pb.Task) -> list[pb.Mount]:
        """Write the task's secret and config files (again, if they exist:
        idempotent) and return the read-only bind mounts that show them in
        its container. Raises FilesUnavailable."""
        refs = self._refs(task)
        if not refs:
            return []
        self._ensure_root()
        task_dir = os.path.join(self.root, task.id)
        os.makedirs(task_dir, mode=0o700, exist_ok=True)
        out = []
        for i, (kind, ref) in enumerate(refs):
            data = self._data(kind, ref)
            if data is None:
                raise FilesUnavailable(f"{kind.word} {kind.ref_name(ref)!r} ({kind.ref_id(ref)}) is not available on this node")
            path = os.path.join(task_dir, f"{kind.word}-{i}")
            _write(path, data, int(ref.file.uid or 0), int(ref.file.gid or 0), ref.file.mode or sc.DEFAULT_MODE)
            out.append(pb.Mount(type=pb.Mount.BIND, source=path, target=kind.container_path(ref), read_only=True))
        return out

    def release(self, task_id: str) -> None:
        """The task's files are of no further use (it ended, or was removed)."""
        if not task_id or "/" in task_id or task_id in (".", ".."):
            return
        shutil.rmtree(os.path.join(self.root, task_id), ignore_errors=True)

    def sweep(self, keep: set[str]) -> None:
        """Remove the files of every task not in `keep`: tasks that left the
        node's set, or ended, while the agent was not looking (a restart)."""
        try:
            names = os.listdir(self.root)
        except FileNotFoundError:
            return
        for name in names:
            if name not in keep:
                self.release(name)

    def task_ids(self) -> set[str]:
        """Tasks that have files now (tests)."""
        try:
            return set(os.listdir(self.root))
        except FileNotFoundError:
            return set()

    def close(self) -> None:
        """The node left the cluster: every file and the tmpfs go."""
        self.update((), ())
        self.sweep(set())
        if self._require_tmpfs and _mount_points().get(self.root) == "tmpfs":
            libc = ctypes.CDLL(None, use_errno=True)
            if libc.umount2(self.root.encode(), 0) != 0 and ctypes.get_errno() == errno.EBUSY:
                libc.umount2(self.root.encode(), _MNT_DETACH)
        self._ready = False


def _write(path: str, data: bytes, uid: int, gid: int, mode: int) -> None:
    """Replace `path` by a file holding `data`, owned uid:gid with `mode`.
    Written under a temporary name first, so a container never sees half a
    file; no fsync: this is memory."""
    tmp = f"{path}.tmp"
    try:
        os.unlink(tmp)
    except FileNotFoundError:
        pass
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fchown(fd, uid, gid)
        os.fchmod(fd, mode)
    finally:
        os.close(fd)
    os.replace(tmp, path)


# ---- what the engine is asked to create ----


def needs_preparing(task: pb.Task) -> bool:
    c = task.spec.container
    return bool(c.mounts or c.secrets or c.configs)


def engine_task(task: pb.Task, ctx: templates.Context, files: TaskFiles | None) -> pb.Task:
    """The task as the engine is asked to create it: its mounts' templates
    expanded, and its secrets and configs as read-only bind mounts of their
    files (written now). The stored task is not changed. Raises
    FilesUnavailable (or a TemplateError, which validation rules out)."""
    if not needs_preparing(task):
        return task
    out = pb.Task()
    out.CopyFrom(task)
    c = out.spec.container
    expanded: Sequence[pb.Mount] = [mt.expand(m, ctx) for m in task.spec.container.mounts]
    del c.mounts[:]
    c.mounts.extend(expanded)
    if c.secrets or c.configs:
        if files is None:
            raise FilesUnavailable("this node keeps no secrets or configs")
        c.mounts.extend(files.mounts(task))
    return out
