"""A node's certificate over time (node/certs.py) with whole daemons on
loopback in one process: real Raft, real mTLS servers and sessions, the
in-memory engine. Lifetimes of a few seconds (the daemons' floor lowered as
`--min-cert-expiry` does) so several renewals fit in a unit test."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from swarmlet import errors, tls
from swarmlet.agent.runtime.fake import FakeRuntime
from swarmlet.api import control_pb2 as cpb
from swarmlet.api import objects_pb2 as pb
from swarmlet.manager import ca
from swarmlet.node import certs
from swarmlet.node.daemon import Daemon
from tests.unit.node.loopback import config
from tests.unit.test_tls import _join_port_server
from tests.waiting import wait_for

LIFETIME = 3.0

MakeDaemon = Callable[[str], Daemon]


@pytest.fixture
def make_daemon(tmp_path: Path) -> Iterator[MakeDaemon]:
    started: list[Daemon] = []

    def make(name: str) -> Daemon:
        cfg = dataclasses.replace(config(tmp_path, name), min_cert_expiry=1.0)
        d = Daemon(cfg, runtime=FakeRuntime(name))
        started.append(d)
        return d

    yield make
    for d in started:
        d.stop()


def init_and_join(make: MakeDaemon) -> tuple[Daemon, Daemon, cpb.InitResponse]:
    m, w = make("m1"), make("w1")
    resp = m.membership.init(cpb.InitRequest())
    w.membership.join(cpb.JoinRequest(token=resp.worker_token, remote_addr=resp.api_addr))
    wait_for(lambda: sessions_up(m, 2), 20, "both nodes in session")
    return m, w, resp


def sessions_up(m: Daemon, n: int) -> bool:
    assert m.store is not None
    nodes = m.store.snapshot().nodes.values()
    return len(nodes) == n and all(x.status.state == pb.NodeStatus.READY and x.certificate.serial for x in nodes)


def set_lifetime(m: Daemon, seconds: float) -> None:
    assert m.control is not None
    cur = m.control.pki.get_cluster(cpb.GetClusterRequest()).cluster
    spec = pb.ClusterSpec()
    spec.CopyFrom(cur.spec)
    spec.node_cert_expiry = seconds
    m.control.pki.update_cluster(cpb.UpdateClusterRequest(spec=spec, version=cur.meta.version))


def saved(d: Daemon) -> tls.NodeCredentials:
    """The credentials on disk. A renewal may be moving them into place right
    now (the set is committed first, tls.NodeCredentials.save): read again."""
    with d.membership.lock:  # the keeper saves under this lock
        creds = d.files.load_credentials()
    assert creds is not None
    return creds


def test_nodes_renew_their_certificates_before_they_expire(make_daemon: MakeDaemon) -> None:
    m, w, _ = init_and_join(make_daemon)
    set_lifetime(m, LIFETIME)
    seen: dict[str, set[str]] = {"m": set(), "w": set()}

    def renewed_three_times() -> bool:
        for key, d in (("m", m), ("w", w)):
            seen[key].add(saved(d).cert_info.serial)
        return all(len(s) >= 4 for s in seen.values())  # the first one, then three renewals

    wait_for(renewed_three_times, 30, "three renewals on each node")
    for d in (m, w):
        creds = saved(d)
        info = creds.cert_info
        assert info.not_after - (info.not_before + 300) == pytest.approx(LIFETIME, abs=1)
        assert info.not_after > time.time()
        assert d.membership.creds is not None and d.membership.creds.cert_info.not_after >= info.not_after - 0.01
    # The managers know which certificate each node holds (node inspect shows it).
    assert m.store is not None
    wait_for(
        lambda: (
            {n.certificate.serial for n in m.store.snapshot().nodes.values()}  # type: ignore[union-attr]
            == {saved(m).cert_info.serial, saved(w).cert_info.serial}
        ),
        10,
        "the presented certificates recorded",
    )
    assert sessions_up(m, 2)
    not_after, warning = m.info().cert_not_after, m.info().cert_warning
    assert not_after > time.time() and warning == ""


def test_a_root_rotation_completes_and_the_old_root_leaves_every_trust(make_daemon: MakeDaemon) -> None:
    m, w, resp = init_and_join(make_daemon)
    assert m.control is not None
    old_root = saved(m).ca_pem
    status = m.control.pki.rotate_root_ca(cpb.RotateRootCARequest())

    def done() -> bool:
        s = m.control.pki.get_root_ca(cpb.GetRootCARequest())  # type: ignore[union-attr]
        return not s.rotating and s.digest == status.new_digest

    wait_for(done, 30, "the rotation completes")
    new_root = m.control.pki.get_root_ca(cpb.GetRootCARequest()).cert_pem
    for d in (m, w):
        wait_for(lambda d=d: saved(d).ca_pem == new_root, 10, f"{d.cfg.hostname} trusts only the new root")  # type: ignore[misc]
        assert tls.certificate_info(saved(d).cert_pem).issuer_key_id == tls.key_id(new_root)
    assert old_root not in saved(w).ca_pem
    # Join tokens pin the new root now: the old one names a root nobody serves.
    tokens = m.control.cluster.join_token(cpb.JoinTokenRequest(role="worker"), "")
    assert tokens.token != resp.worker_token and tls.parse_token(tokens.token)[0] == status.new_digest
    wait_for(lambda: sessions_up(m, 2), 10, "both nodes still in session")


def test_a_manager_whose_certificate_expired_while_off_issues_itself_a_new_one(
    make_daemon: MakeDaemon, caplog: pytest.LogCaptureFixture
) -> None:
    m = make_daemon("m1")
    m.membership.init(cpb.InitRequest())
    set_lifetime(m, 2.0)
    wait_for(lambda: saved(m).cert_info.lifetime < 400, 10, "a short certificate")
    m.stop()
    expired = saved(m).cert_info.not_after
    wait_for(lambda: time.time() > expired + 0.5, 10, "the certificate expired")
    with caplog.at_level(logging.WARNING):
        again = Daemon(m.cfg, runtime=FakeRuntime("m1"))
        try:
            again.membership.resume()
            wait_for(lambda: saved(again).cert_info.not_after > time.time(), 20, "a new certificate")
            assert "this manager's certificate expired" in caplog.text
            wait_for(lambda: again.info().nodes == 1 and sessions_up(again, 1), 20, "its agent back in session")
        finally:
            again.stop()


def test_a_worker_whose_certificate_expired_is_told_how_to_come_back(
    make_daemon: MakeDaemon, caplog: pytest.LogCaptureFixture
) -> None:
    m, w, _ = init_and_join(make_daemon)
    set_lifetime(m, 2.0)
    wait_for(lambda: saved(w).cert_info.lifetime < 400, 10, "a short certificate")
    w.stop()
    expired = saved(w).cert_info.not_after
    wait_for(lambda: time.time() > expired + 0.5, 10, "the certificate expired")
    with caplog.at_level(logging.ERROR):
        back = Daemon(w.cfg, runtime=FakeRuntime("w1"))
        try:
            back.membership.resume()
            info = back.info()
            assert "this node's certificate expired" in info.cert_warning
            assert "swarmlet leave --force" in info.cert_warning and "swarmlet join --token" in info.cert_warning
            assert "this node's certificate expired" in caplog.text
        finally:
            back.stop()


def test_the_start_up_check_warns_when_near_and_says_what_to_do_when_past() -> None:
    root = ca.create_root_ca()
    key, cert = ca.issue_local_certificate(root, "n1", "worker", "c1", "", validity=100)
    creds = tls.NodeCredentials.from_pems(key, cert, root.cert_pem)
    info = creds.cert_info
    start = info.not_before + 300
    assert certs.check_at_start(creds, start + 10) == (0, "")
    level, message = certs.check_at_start(creds, start + 85)
    assert level == logging.WARNING and "expires soon" in message
    level, message = certs.check_at_start(creds, info.not_after + 1)
    assert level == logging.ERROR and "swarmlet node rm n1" in message


def test_join_refuses_a_manager_token_holder_posing_with_a_worker_certificate(make_daemon: MakeDaemon) -> None:
    """A worker's certificate serving the join port: the joiner refuses it
    before sending the token."""
    m, w, resp = init_and_join(make_daemon)
    assert w.membership.creds is not None
    calls: list[str] = []
    server, addr = _join_port_server(w.membership.creds, calls)
    try:
        j = make_daemon("j1")
        with pytest.raises(errors.FailedPrecondition, match="is not a manager of this cluster"):
            j.membership.join(cpb.JoinRequest(token=resp.manager_token, remote_addr=addr))
        assert calls == [] and j.info().state == "inactive"
    finally:
        server.stop(None)
