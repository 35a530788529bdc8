"""Files that survive a crash or a power cut: written to a temporary file in
the same directory (created exclusively, never following a link, with its
final mode before any byte is written), fsync'd, renamed over the target, and
the directory fsync'd so the rename itself is durable. A reader sees the old
content or the new, never half of either. Every file swarmlet keeps (node
state, keys and certificates, Raft files, backups) is written this way."""

from __future__ import annotations

import contextlib
import os
import tempfile


def fsync_dir(path: str) -> None:
    """Make the directory entries in `path` (creations, renames) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: str | os.PathLike[str], data: bytes, mode: int = 0o600, *, sync_dir: bool = True) -> None:
    """Replace `path` by `data` atomically and durably. With sync_dir=False
    the caller fsyncs the directory itself (after several files)."""
    target = os.fspath(path)
    directory = os.path.dirname(target) or "."
    # mkstemp opens with O_EXCL and a random name: a file or symlink planted
    # at a predictable temporary name can neither be reused nor followed.
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(target)}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    if sync_dir:
        fsync_dir(directory)
