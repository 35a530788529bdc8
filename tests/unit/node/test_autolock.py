"""Autolock and secrets at rest on a node (issue 13), with the real parts on
loopback: a manager's secret files are ciphertext under its data key; an
autolocked manager that restarts runs nothing and refuses work until given
the unlock key; a wrong key changes nothing."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from swarmlet import atrest, errors, tls
from swarmlet.api import control_pb2 as cpb
from swarmlet.node import membership
from swarmlet.node.daemon import Daemon, DaemonConfig
from tests.unit.node.loopback import config
from tests.unit.node.test_membership import MakeDaemon, cluster_of, init
from tests.waiting import wait_for


@pytest.fixture
def make_daemon(tmp_path) -> Iterator[MakeDaemon]:
    started: list[Daemon] = []

    def make(name: str, cfg: DaemonConfig | None = None) -> Daemon:
        d = Daemon(cfg or config(tmp_path, name))
        started.append(d)
        return d

    yield make
    for d in started:
        d.stop()


def every_file(root: str) -> dict[str, bytes]:
    out = {}
    for d, _, names in os.walk(root):
        for n in names:
            p = os.path.join(d, n)
            with open(p, "rb") as f:
                out[p] = f.read()
    return out


def test_a_managers_secrets_are_ciphertext_on_disk(make_daemon: MakeDaemon) -> None:
    d = make_daemon("m1")
    resp = init(d)
    c = cluster_of(d)
    assert d.store is not None
    d.store.force_compaction()
    wait_for(lambda: os.path.exists(os.path.join(d.files.raft_dir, "snapshot")), 10, "a snapshot on disk")
    creds = d.files.load_credentials()
    assert creds is not None
    secrets = {
        "CA key": c.root_ca.key_pem,
        "CA key body": c.root_ca.key_pem.split(b"\n")[1],
        "worker token": resp.worker_token.encode(),
        "manager token": resp.manager_token.encode(),
        "raft secret": c.raft_secret,
        "node key body": creds.key_pem.split(b"\n")[1],
    }
    files = every_file(d.files.state_dir)
    assert any(p.endswith("/raft/wal") for p in files) and any(p.endswith("/raft/snapshot") for p in files)
    for path, data in files.items():
        for what, secret in secrets.items():
            assert secret not in data, f"{what} in clear in {path}"


def test_an_autolocked_manager_is_locked_after_a_restart_until_unlocked(make_daemon: MakeDaemon) -> None:
    first = make_daemon("m1")
    resp = init(first, autolock=True)
    assert resp.unlock_key.startswith("SWLKEY-1-")
    assert first.manager_control().security.unlock_key(cpb.UnlockKeyRequest()).unlock_key == resp.unlock_key
    first.stop()

    again = make_daemon("m1", first.cfg)
    again.membership.resume()
    info = again.info()
    assert info.state == "locked" and info.node_id == resp.node_id and "swarmlet unlock" in info.error
    assert again.store is None and again.server is None and again.executor is None  # nothing runs
    for call in (again.manager_control, lambda: init(again), lambda: again.membership.leave(cpb.LeaveRequest())):
        with pytest.raises(errors.FailedPrecondition, match="This manager is locked"):
            call()
    with pytest.raises(errors.Invalid, match="invalid unlock key"):
        again.membership.unlock(cpb.UnlockRequest(unlock_key=atrest.new_unlock_key()))
    with pytest.raises(errors.Invalid, match="invalid unlock key: it must start with"):
        again.membership.unlock(cpb.UnlockRequest(unlock_key="nope"))
    assert again.info().state == "locked"

    again.membership.unlock(cpb.UnlockRequest(unlock_key=resp.unlock_key))
    assert again.store is not None and again.store.wait_leader(10)
    wait_for(lambda: again.info().nodes == 1, 10, "the state is back")
    assert again.manager_control() is again.control
    with pytest.raises(errors.FailedPrecondition, match=membership.NOT_LOCKED):
        again.membership.unlock(cpb.UnlockRequest(unlock_key=resp.unlock_key))


def test_turning_autolock_off_lets_the_manager_restart_unlocked(make_daemon: MakeDaemon) -> None:
    first = make_daemon("m1")
    init(first, autolock=True)
    first.manager_control().security.set_autolock(cpb.SetAutolockRequest(autolock=False))
    wait_for(lambda: not atrest.dek_wrapped(open(first.files.dek_path, "rb").read()), 10, "the data key unwrapped")
    first.stop()
    again = make_daemon("m1", first.cfg)
    again.membership.resume()
    assert again.info().state == "active"


def test_a_locked_manager_may_leave_with_force(make_daemon: MakeDaemon) -> None:
    first = make_daemon("m1")
    init(first, autolock=True)
    first.stop()
    again = make_daemon("m1", first.cfg)
    again.membership.resume()
    again.membership.leave(cpb.LeaveRequest(force=True))
    assert again.info().state == "inactive" and os.listdir(again.files.state_dir) == []


def test_a_worker_keeps_no_data_key_and_its_key_stays_pem(make_daemon: MakeDaemon) -> None:
    m = make_daemon("m1")
    resp = init(m, autolock=True)
    w = make_daemon("w1")
    w.membership.join(cpb.JoinRequest(token=resp.worker_token, remote_addr=f"127.0.0.1:{m.cfg.join_port}"))
    assert not w.files.has_data_key()
    with open(os.path.join(w.files.certs_dir, tls.KEY_FILE), "rb") as f:
        assert f.read().startswith(b"-----BEGIN")
    with open(os.path.join(m.files.certs_dir, tls.KEY_FILE), "rb") as f:
        assert atrest.is_sealed(f.read())
