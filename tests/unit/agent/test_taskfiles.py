"""Secrets and configs on the node without Docker: the files a task gets
(owner, mode, read-only mounts at their targets), when they go, templates in
mounts, and the executor carrying it out against the in-memory engine. The
tmpfs itself needs root: tests/integration/test_storage.py checks it."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from swarmlet.agent import taskfiles as tf
from swarmlet.agent.runtime.fake import FakeRuntime
from swarmlet.agent.runtime.mounts import engine_mounts
from swarmlet.api import objects_pb2 as pb
from swarmlet.core import templates
from tests.unit.agent.test_executor import IMAGE, NODE, Reports, run_executor, task, with_desired
from tests.waiting import wait_for

UID, GID = str(os.getuid()), str(os.getgid())  # owners a test without root may give


def secret(sid: str, name: str, data: bytes) -> pb.Secret:
    return pb.Secret(id=sid, spec=pb.SecretSpec(name=name, data=data))


def with_files(t: pb.Task) -> pb.Task:
    c = t.spec.container
    c.secrets.add(secret_id="s1", secret_name="db", file=pb.FileTarget(name="db", uid=UID, gid=GID, mode=0o400))
    c.secrets.add(secret_id="s1", secret_name="db", file=pb.FileTarget(name="/etc/db.pw", uid=UID, gid=GID, mode=0o444))
    c.configs.add(config_id="c1", config_name="app", file=pb.FileTarget(name="/etc/app.conf", uid=UID, gid=GID, mode=0o644))
    return t


@pytest.fixture()
def files(tmp_path: Path) -> tf.TaskFiles:
    f = tf.TaskFiles(str(tmp_path / "secrets"), require_tmpfs=False)
    f.update([secret("s1", "db", b"pw-1")], [pb.Config(id="c1", spec=pb.ConfigSpec(name="app", data=b"x=1"))])
    return f


def test_a_tasks_files_with_owner_mode_and_read_only_targets(files: tf.TaskFiles) -> None:
    mounts = files.mounts(with_files(task("t1")))
    assert [(m.type, m.target, m.read_only) for m in mounts] == [
        (pb.Mount.BIND, "/run/secrets/db", True),
        (pb.Mount.BIND, "/etc/db.pw", True),
        (pb.Mount.BIND, "/etc/app.conf", True),
    ]
    modes = []
    for m in mounts:
        assert m.source.startswith(os.path.join(files.root, "t1") + "/")
        info = os.stat(m.source)
        modes.append(stat.S_IMODE(info.st_mode))
        assert (str(info.st_uid), str(info.st_gid)) == (UID, GID)
    assert modes == [0o400, 0o444, 0o644]
    assert [Path(m.source).read_bytes() for m in mounts] == [b"pw-1", b"pw-1", b"x=1"]
    assert stat.S_IMODE(os.stat(os.path.join(files.root, "t1")).st_mode) == 0o700
    # Writing again (a restart before the container started) is harmless.
    assert files.mounts(with_files(task("t1"))) == mounts


def test_a_secret_the_node_was_not_given_rejects_the_task(files: tf.TaskFiles) -> None:
    t = task("t1")
    t.spec.container.secrets.add(secret_id="s9", secret_name="other", file=pb.FileTarget(name="o", mode=0o400))
    with pytest.raises(tf.FilesUnavailable, match="secret 'other' \\(s9\\) is not available on this node"):
        files.mounts(t)


def test_files_go_with_their_task_and_data_with_the_assignment(files: tf.TaskFiles) -> None:
    files.mounts(with_files(task("t1")))
    files.mounts(with_files(task("t2")))
    files.release("t1")
    assert files.task_ids() == {"t2"}
    files.sweep({"t3"})
    assert files.task_ids() == set()
    files.update([], [])
    assert files.known() == (set(), set())
    with pytest.raises(tf.FilesUnavailable):
        files.mounts(with_files(task("t1")))
    files.release("../etc")  # never outside the root


def test_the_engine_gets_expanded_mounts_and_the_files(files: tf.TaskFiles) -> None:
    t = with_files(task("t7", slot=3))
    t.spec.container.mounts.add(type=pb.Mount.VOLUME, source="{{.Service.Name}}-{{.Task.Slot}}", target="/data")
    t.spec.container.mounts.add(type=pb.Mount.TMPFS, target="/tmp/{{.Node.Hostname}}", tmpfs_size=1 << 20)
    ctx = templates.task_context(t, NODE, "host-9", "linux", "x86_64")
    out = tf.engine_task(t, ctx, files)
    assert [(m.source, m.target) for m in out.spec.container.mounts[:2]] == [("web-3", "/data"), ("", "/tmp/host-9")]
    assert [m.target for m in out.spec.container.mounts[2:]] == ["/run/secrets/db", "/etc/db.pw", "/etc/app.conf"]
    assert t.spec.container.mounts[0].source == "{{.Service.Name}}-{{.Task.Slot}}"  # the stored task is untouched
    plain = task("t8")
    assert tf.engine_task(plain, ctx, None) is plain  # nothing to prepare: no copy
    with pytest.raises(tf.FilesUnavailable, match="keeps no secrets"):
        tf.engine_task(with_files(task("t9")), ctx, None)


def test_engine_mounts_in_the_engine_api_terms() -> None:
    M = pb.Mount
    got = engine_mounts(
        [
            M(type=M.VOLUME, source="data", target="/data", volume_nocopy=True, volume_labels={"a": "b"}),
            M(type=M.VOLUME, source="nfs", target="/nfs", volume_options={"type": "nfs"}),
            M(type=M.VOLUME, target="/anon"),
            M(type=M.BIND, source="/srv", target="/srv", read_only=True),
            M(type=M.TMPFS, target="/t", tmpfs_size=8 << 20, tmpfs_mode=0o700),
        ]
    )
    assert got == [
        {
            "Type": "volume",
            "Target": "/data",
            "ReadOnly": False,
            "Source": "data",
            "VolumeOptions": {"NoCopy": True, "Labels": {"a": "b"}},
        },
        {
            "Type": "volume",
            "Target": "/nfs",
            "ReadOnly": False,
            "Source": "nfs",
            "VolumeOptions": {"DriverConfig": {"Name": "local", "Options": {"type": "nfs"}}},
        },
        {"Type": "volume", "Target": "/anon", "ReadOnly": False},
        {"Type": "bind", "Target": "/srv", "ReadOnly": True, "Source": "/srv"},
        {"Type": "tmpfs", "Target": "/t", "ReadOnly": False, "TmpfsOptions": {"SizeBytes": 8 << 20, "Mode": 0o700}},
    ]


# ---- the executor with files, against the in-memory engine ----


@pytest.fixture()
def engine() -> FakeRuntime:
    return FakeRuntime(hostname="engine-host", images={IMAGE: ()})


def test_the_executor_mounts_the_files_and_drops_them_when_the_task_ends(
    engine: FakeRuntime, files: tf.TaskFiles, tmp_path: Path
) -> None:
    reports = Reports()
    ex = run_executor(engine, reports, files=files)
    try:
        t = with_files(task("t1"))
        ex.assign([t], [], [secret("s1", "db", b"pw-1")], [pb.Config(id="c1", spec=pb.ConfigSpec(name="app", data=b"x=1"))])
        cid = reports.wait_state("t1", pb.RUNNING).container_id
        assert [m.target for m in engine.mounts[cid]] == ["/run/secrets/db", "/etc/db.pw", "/etc/app.conf"]
        assert Path(engine.mounts[cid][0].source).read_bytes() == b"pw-1"
        assert files.task_ids() == {"t1"}
        ex.assign([with_desired(t, pb.SHUTDOWN)], [], [], [])  # stopping: the node no longer gets the data
        reports.wait_state("t1", pb.SHUTDOWN)
        wait_for(lambda: files.task_ids() == set(), 5, "the task's files removed once it stopped")
        assert files.known() == (set(), set())
    finally:
        ex.stop()


def test_a_missing_secret_or_bind_source_rejects_the_task_with_the_reason(
    engine: FakeRuntime, files: tf.TaskFiles, tmp_path: Path
) -> None:
    reports = Reports()
    ex = run_executor(engine, reports, files=files)
    try:
        t = with_files(task("t1"))
        ex.assign([t], [], [], [])  # the assignment carries no data for it
        st = reports.wait_state("t1", pb.REJECTED)
        assert "secret 'db' (s1) is not available on this node" in st.err
        b = task("t2", slot=2)
        b.spec.container.mounts.add(type=pb.Mount.BIND, source=str(tmp_path / "nope"), target="/x")
        ex.assign([b], [], [], [])
        st = reports.wait_state("t2", pb.REJECTED)
        assert f"bind source path does not exist: {tmp_path / 'nope'}" in st.err
        assert engine.containers() == []
        assert files.task_ids() == set()
    finally:
        ex.stop()
