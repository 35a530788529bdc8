"""`cluster backup FILE` writes the backup (it holds the CA key) so that
nothing in FILE's directory can read or redirect it (issue 13): a
pre-existing FILE.tmp, world-writable and owned by someone else, or a
symlink in its place, changes nothing."""

from __future__ import annotations

import os
import stat

from swarmlet.cli.cluster import write_private


def test_a_preexisting_world_writable_tmp_file_is_not_used(tmp_path) -> None:
    path = tmp_path / "backup"
    trap = tmp_path / "backup.tmp"
    trap.write_bytes(b"someone else's")
    os.chmod(trap, 0o666)
    write_private(str(path), b"secret backup")
    assert path.read_bytes() == b"secret backup"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert trap.read_bytes() == b"someone else's"  # untouched, and not renamed into place
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".backup")] == []


def test_symlinks_are_never_followed(tmp_path) -> None:
    target = tmp_path / "elsewhere"
    target.write_bytes(b"do not overwrite")
    os.symlink(target, tmp_path / "backup.tmp")
    os.symlink(target, tmp_path / "backup")
    write_private(str(tmp_path / "backup"), b"secret backup")
    assert target.read_bytes() == b"do not overwrite"
    assert not os.path.islink(tmp_path / "backup") and (tmp_path / "backup").read_bytes() == b"secret backup"
    assert stat.S_IMODE(os.stat(tmp_path / "backup").st_mode) == 0o600
