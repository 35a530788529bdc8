"""Membership on loopback, in one process, with the real parts: a real Raft
store, real certificates and mTLS servers, a real agent whose Docker engine is
absent (the executor and session keep retrying it, as after a host reboot
before dockerd is up). Nothing here needs root or Docker."""

from __future__ import annotations

import json
import logging
import os
import socket
from collections.abc import Callable, Iterator

import pytest

from swarmlet import errors
from swarmlet.api import control_pb2 as cpb
from swarmlet.api import objects_pb2 as pb
from swarmlet.core import state as st
from swarmlet.node import membership
from swarmlet.node.daemon import Daemon, DaemonConfig, run_daemon
from tests.unit.node.loopback import config, free_port
from tests.waiting import wait_for

MakeDaemon = Callable[..., Daemon]


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


def init(d: Daemon, **kw: object) -> cpb.InitResponse:
    return d.membership.init(cpb.InitRequest(**kw))  # type: ignore[arg-type]


def saved_node(d: Daemon) -> dict:
    with open(d.files.node_path) as f:
        return json.load(f)


def cluster_of(d: Daemon) -> pb.Cluster:
    assert d.store is not None
    c = d.store.snapshot().cluster
    assert c is not None
    return c


def test_init_founds_a_cluster_led_by_this_node_and_saves_it(make_daemon: MakeDaemon) -> None:
    d = make_daemon("m1")
    resp = init(d)
    assert resp.worker_token.startswith("SWLTKN-1-") and resp.manager_token != resp.worker_token
    assert resp.api_addr == f"127.0.0.1:{d.cfg.join_port}"
    info = d.info()
    assert (info.state, info.role, info.is_leader, info.nodes, info.managers_count) == ("active", "manager", True, 1, 1)
    c = cluster_of(d)
    assert c.id == resp.cluster_id
    assert (c.spec.heartbeat_period, c.spec.node_down_after, c.spec.task_history_limit) == (0.5, 3.0, 5)
    assert c.raft_secret == d.files.read_raft_secret()[0]
    me = d.store.snapshot().nodes[resp.node_id] if d.store else None
    assert me is not None and me.raft_addr == f"127.0.0.1:{d.cfg.raft_port}"
    saved = saved_node(d)
    assert (saved["node_id"], saved["role"], saved["cluster_id"]) == (resp.node_id, "manager", resp.cluster_id)
    assert saved["managers"] == [f"127.0.0.1:{d.cfg.api_port}"]
    creds = d.files.load_credentials()
    assert creds is not None and creds.node_id == resp.node_id
    with pytest.raises(errors.FailedPrecondition, match="already part of a swarm"):
        init(d)


def test_failed_init_leaves_the_host_as_it_was(make_daemon: MakeDaemon) -> None:
    d = make_daemon("m1")
    with pytest.raises(errors.Invalid, match="expected an IPv4 address"):
        init(d, advertise_addr="::1")
    with pytest.raises(errors.Invalid):
        init(d, default_address_pool=["not-a-cidr"])
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", d.cfg.raft_port))
        holder.listen()
        with pytest.raises(errors.FailedPrecondition, match=f"raft port 127.0.0.1:{d.cfg.raft_port} is not available"):
            init(d)
    assert os.listdir(d.files.state_dir) == []
    assert d.info().state == "inactive" and d.store is None
    init(d)  # and it can still be initialised


def test_a_failed_founding_undoes_the_new_raft(make_daemon: MakeDaemon, monkeypatch: pytest.MonkeyPatch) -> None:
    d = make_daemon("m1")
    monkeypatch.setattr(membership, "LEADERSHIP_TIMEOUT", 0.0)
    with pytest.raises(errors.Internal, match="did not become leader"):
        init(d)
    assert d.store is None and d.membership.node is None
    assert os.listdir(d.files.state_dir) == []


def test_restart_resumes_as_leader_of_the_same_cluster(make_daemon: MakeDaemon) -> None:
    first = make_daemon("m1")
    resp = init(first)
    first.stop()
    again = make_daemon("m1", first.cfg)
    again.membership.resume()
    assert again.store is not None
    assert again.store.wait_leader(10)
    # Leading comes first; the journal is applied once the new term commits.
    wait_for(lambda: again.info().nodes == 1, 10, "the journal replayed")
    info = again.info()
    assert (info.state, info.node_id, info.cluster_id, info.nodes) == ("active", resp.node_id, resp.cluster_id, 1)
    assert cluster_of(again).worker_token == resp.worker_token


def test_worker_joins_then_leaves_and_its_files_go(make_daemon: MakeDaemon) -> None:
    m = make_daemon("m1")
    resp = init(m)
    w = make_daemon("w1")
    joined = w.membership.join(cpb.JoinRequest(token=resp.worker_token, remote_addr=f"127.0.0.1:{m.cfg.join_port}"))
    assert joined.role == "worker"
    info = w.info()
    assert (info.state, info.role, info.cluster_id) == ("active", "worker", resp.cluster_id)
    assert m.store is not None
    node = m.store.snapshot().nodes[joined.node_id]
    assert (node.role, node.description.hostname, node.api_addr) == (pb.NodeSpec.WORKER, "w1", f"127.0.0.1:{w.cfg.api_port}")
    assert saved_node(w)["managers"] == [f"127.0.0.1:{m.cfg.api_port}"]
    assert not os.path.exists(w.files.raft_dir)  # workers hold no Raft state
    with pytest.raises(errors.FailedPrecondition, match="Worker nodes can't be used"):
        w.manager_control()

    w.membership.leave(cpb.LeaveRequest())
    assert os.listdir(w.files.state_dir) == []
    assert w.info().state == "inactive" and w.executor is None and w.server is None
    with pytest.raises(errors.FailedPrecondition, match="not part of a swarm"):
        w.membership.leave(cpb.LeaveRequest())


def test_manager_joins_raft_and_receives_the_state(make_daemon: MakeDaemon) -> None:
    m = make_daemon("m1")
    resp = init(m)
    j = make_daemon("m2")
    joined = j.membership.join(cpb.JoinRequest(token=resp.manager_token, remote_addr=f"127.0.0.1:{m.cfg.join_port}"))
    assert joined.role == "manager"
    assert j.store is not None and m.store is not None
    raft = sorted([f"127.0.0.1:{m.cfg.raft_port}", f"127.0.0.1:{j.cfg.raft_port}"])
    wait_for(lambda: sorted(m.store.members()) == raft, 10, "both managers in Raft")  # type: ignore[union-attr]
    wait_for(lambda: j.info().nodes == 2, 15, "the new manager applied the log")
    assert cluster_of(j).raft_secret == j.files.read_raft_secret()[0] == cluster_of(m).raft_secret
    assert not j.store.is_leader()
    saved = saved_node(j)
    assert saved["role"] == "manager" and f"127.0.0.1:{m.cfg.raft_port}" in saved["raft_peers"]
    # A follower answers the control API too (reads are local).
    assert j.manager_control() is j.control


def test_manager_leaves_only_with_force(make_daemon: MakeDaemon) -> None:
    m = make_daemon("m1")
    init(m)
    with pytest.raises(errors.FailedPrecondition, match="Use `--force`"):
        m.membership.leave(cpb.LeaveRequest())
    assert m.info().is_leader
    m.membership.leave(cpb.LeaveRequest(force=True))
    assert os.listdir(m.files.state_dir) == []
    assert m.store is None and m.info().state == "inactive"


def test_refused_joins_write_nothing(make_daemon: MakeDaemon) -> None:
    m = make_daemon("m1")
    resp = init(m)
    w = make_daemon("w1")
    remote = f"127.0.0.1:{m.cfg.join_port}"
    with pytest.raises(errors.Invalid, match="malformed join token"):
        w.membership.join(cpb.JoinRequest(token="SWLTKN-1-nope", remote_addr=remote))
    forged = resp.worker_token[: resp.worker_token.rindex("-") + 1] + "a" * 40
    with pytest.raises(errors.PermissionDenied, match="invalid join token"):
        w.membership.join(cpb.JoinRequest(token=forged, remote_addr=remote))
    with pytest.raises(errors.FailedPrecondition):
        w.membership.join(cpb.JoinRequest(token=resp.worker_token, remote_addr=f"127.0.0.1:{free_port()}"))
    assert os.listdir(w.files.state_dir) == []
    assert w.info().state == "inactive"


def test_restore_on_a_fresh_node_brings_the_cluster_back(make_daemon: MakeDaemon) -> None:
    old = make_daemon("m1")
    resp = init(old)
    backup = old.manager_control().security.backup(cpb.BackupRequest())
    data, key = backup.data, backup.generated_key
    old_secret = cluster_of(old).raft_secret
    old.membership.leave(cpb.LeaveRequest(force=True))

    fresh = make_daemon("m2")
    with pytest.raises(errors.Invalid):
        fresh.membership.restore(cpb.RestoreRequest(data=b"not a backup"))
    with pytest.raises(errors.Invalid, match="this backup is encrypted"):
        fresh.membership.restore(cpb.RestoreRequest(data=data))
    assert fresh.info().state == "inactive"
    restored = fresh.membership.restore(cpb.RestoreRequest(data=data, key=key))
    assert (restored.cluster_id, restored.worker_token) == (resp.cluster_id, resp.worker_token)
    info = fresh.info()
    assert info.is_leader and info.nodes == 2 and info.managers_count == 1
    assert fresh.store is not None
    was = fresh.store.snapshot().nodes[resp.node_id]
    assert was.role == pb.NodeSpec.WORKER and was.status.message == "restored from a backup"
    assert cluster_of(fresh).raft_secret not in (b"", old_secret)
    assert saved_node(fresh)["raft_peers"] == [f"127.0.0.1:{fresh.cfg.raft_port}"]
    with pytest.raises(errors.FailedPrecondition, match="restore a backup on a fresh host"):
        fresh.membership.restore(cpb.RestoreRequest(data=data, key=key))


def test_force_new_cluster_keeps_the_state_under_a_new_raft_secret(make_daemon: MakeDaemon) -> None:
    m = make_daemon("m1")
    resp = init(m)
    old_secret, _ = m.files.read_raft_secret()
    again = init(m, force_new_cluster=True)
    assert (again.node_id, again.cluster_id, again.manager_token) == (resp.node_id, resp.cluster_id, resp.manager_token)
    assert m.info().is_leader
    new_secret, _ = m.files.read_raft_secret()
    assert new_secret != old_secret and cluster_of(m).raft_secret == new_secret
    assert saved_node(m)["managers"] == [f"127.0.0.1:{m.cfg.api_port}"]

    w = make_daemon("w1")
    with pytest.raises(errors.FailedPrecondition, match="this node is not a manager"):
        init(w, force_new_cluster=True)


def test_force_new_cluster_keeps_objects_that_share_a_name(make_daemon: MakeDaemon) -> None:
    # A state from before names were checked at apply time may hold two
    # secrets (or services) of one name. Re-seeding the new Raft recreates
    # them as they are: refused, the recovery would leave nothing (the old
    # Raft directory is gone by then).
    m = make_daemon("m1")
    init(m)
    assert m.store is not None
    dupes = [pb.Secret(id=f"dup{i}", spec=pb.SecretSpec(name="token", data=b"x")) for i in range(2)]
    m.store.propose([st.put(x, create=True) for x in dupes], recreate=True)  # as such a state holds them
    init(m, force_new_cluster=True)
    assert m.info().is_leader
    assert sorted(m.store.snapshot().secrets) == ["dup0", "dup1"]


def test_unusable_node_file_stops_the_daemon_with_the_reason(tmp_path, caplog: pytest.LogCaptureFixture) -> None:
    cfg = config(tmp_path, "m1")
    os.makedirs(cfg.state_dir)
    with open(os.path.join(cfg.state_dir, "node.json"), "w"):
        pass  # empty: cut short by a power loss
    with caplog.at_level(logging.ERROR, logger="swarmlet.node.daemon"):
        assert run_daemon(cfg) == 1
    assert f"cannot resume from {cfg.state_dir}/node.json: the file is empty" in caplog.text
    assert not os.path.exists(cfg.socket)


def test_daemon_refuses_a_socket_another_daemon_serves(tmp_path, caplog: pytest.LogCaptureFixture) -> None:
    cfg = config(tmp_path, "m1")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as other:
        other.bind(cfg.socket)
        other.listen()
        with caplog.at_level(logging.ERROR, logger="swarmlet.node.daemon"):
            assert run_daemon(cfg) == 1
    assert f"another swarmlet daemon is already listening on unix://{cfg.socket}" in caplog.text


def test_init_takes_the_dispatcher_heartbeat_and_refuses_a_bad_one(make_daemon: MakeDaemon) -> None:
    d = make_daemon("m1")
    for bad in (0.01, 3600.0, float("nan")):
        with pytest.raises(errors.Invalid, match="invalid dispatcher heartbeat"):
            init(d, dispatcher_heartbeat=bad)
    assert os.listdir(d.files.state_dir) == []
    init(d, dispatcher_heartbeat=2.0)
    c = cluster_of(d)
    assert (c.spec.heartbeat_period, c.spec.node_down_after) == (2.0, 6.0)


def test_a_manager_whose_raft_state_is_gone_refuses_to_start(make_daemon: MakeDaemon, caplog: pytest.LogCaptureFixture) -> None:
    """Issue 14: a manager started on a Raft directory that lost its journal
    would vote with an empty log and a forgotten vote. The directory is
    marked new until the first start creates the journal; after that, a
    missing journal stops the daemon with the way back."""
    first = make_daemon("m1")
    init(first)
    raft = first.files.raft_dir
    assert "new" not in os.listdir(raft) and "wal" in os.listdir(raft)
    first.stop()
    for name in os.listdir(raft):
        if name != "raft_secret":
            os.unlink(os.path.join(raft, name))
    with caplog.at_level(logging.ERROR, logger="swarmlet.node.daemon"):
        assert run_daemon(first.cfg) == 1
    assert f"raft state file {raft}/wal: missing: this manager's Raft state is gone" in caplog.text
    assert "swarmlet join" in caplog.text  # the way back
