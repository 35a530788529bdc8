"""The pure PKI rules (core/pki.py): lifetimes and renewal decisions, root
rotation progress and completion, revocation, who may call what, and the
checks of `cluster update`."""

from __future__ import annotations

import pytest

from swarmlet import errors
from swarmlet.api import dispatcher_pb2 as dpb
from swarmlet.api import objects_pb2 as pb
from swarmlet.api import store_pb2 as spb
from swarmlet.core import pki
from swarmlet.core import state as st
from swarmlet.core.validation import InvalidSpec, check_cluster_spec

OLD, NEW = "aaaa", "bbbb"
WORKER_TOKEN = "SWLTKN-1-" + "1" * 64 + "-workersecretworkersecretworkersec"
MANAGER_TOKEN = "SWLTKN-1-" + "1" * 64 + "-managersecretmanagersecretmanager"


def cluster(rotating: bool = False, expiry: float = 0.0) -> pb.Cluster:
    c = pb.Cluster(
        id="c1",
        spec=pb.ClusterSpec(heartbeat_period=0.5, node_down_after=3, task_history_limit=5, node_cert_expiry=expiry),
        root_ca=pb.RootCA(cert_pem=b"OLD ROOT\n", key_pem=b"old key", digest="1" * 64, key_id=OLD),
        worker_token=WORKER_TOKEN,
        manager_token=MANAGER_TOKEN,
        raft_secret=b"r" * 32,
    )
    if rotating:
        c.root_ca.rotation.CopyFrom(
            pb.RootRotation(cert_pem=b"NEW ROOT\n", key_pem=b"new key", digest="2" * 64, key_id=NEW, cross_signed_pem=b"X\n")
        )
    return c


def node(node_id: str, issuer: str, role: int = pb.NodeSpec.WORKER, serial: str = "") -> pb.Node:
    n = pb.Node(id=node_id, role=role, description=pb.NodeDescription(hostname=node_id))
    n.certificate.CopyFrom(
        pb.NodeCertificate(
            serial=serial or f"s-{node_id}", role="manager" if role else "worker", not_after=1000.0, issuer_key_id=issuer
        )
    )
    return n


def snapshot(c: pb.Cluster, *nodes: pb.Node) -> st.Snapshot:
    snap = st.Snapshot()
    res = st.apply_batch(snap, pb_batch([st.put(c, create=True)] + [st.put(n, create=True) for n in nodes]))
    assert res.ok, res.error
    return snap


def pb_batch(actions: list[spb.StoreAction]) -> spb.StoreBatch:
    return spb.StoreBatch(actions=actions, timestamp=1.0)


# ---------------------------------------------------------------- lifetimes, renewal


def test_cert_expiry_defaults_to_90_days() -> None:
    assert pki.cert_expiry(None) == pki.cert_expiry(cluster()) == 90 * 86400
    assert pki.cert_expiry(cluster(expiry=30)) == 30


def test_the_trust_bundle_holds_both_roots_while_rotating_and_the_new_root_signs() -> None:
    assert pki.trust_pem(cluster().root_ca) == b"OLD ROOT\n"
    assert pki.signing_key_id(cluster().root_ca) == OLD
    rot = cluster(rotating=True).root_ca
    assert pki.trust_pem(rot) == b"OLD ROOT\nNEW ROOT\n"
    assert pki.signing_key_id(rot) == NEW


def test_renewal_falls_between_50_and_80_percent_of_the_lifetime_from_issuance() -> None:
    # The CA backdates not_before by CERT_BACKDATE: the lifetime counts from issuance.
    nb, na = 1000.0 - pki.CERT_BACKDATE, 1100.0
    assert pki.renewal_time(nb, na, 0.5) == 1050.0
    assert pki.renewal_time(nb, na, 0.8) == 1080.0
    assert not pki.near_expiry(nb, na, 1079.0) and pki.near_expiry(nb, na, 1080.0)


def test_renewal_reasons() -> None:
    nb, na = 1000.0 - pki.CERT_BACKDATE, 1100.0
    wanted = pki.Wanted(signing_key_id=OLD, cert_expiry=100.0)
    assert pki.renewal_reason(OLD, nb, na, wanted, now=1010.0, renew_at=1060.0) == ""
    assert pki.renewal_reason(OLD, nb, na, wanted, now=1060.0, renew_at=1060.0) == "it reached its renewal time"
    rotating = pki.Wanted(signing_key_id=NEW, cert_expiry=100.0)
    assert "rotated" in pki.renewal_reason(OLD, nb, na, rotating, now=1010.0, renew_at=1060.0)
    # The operator shortened the lifetime: renew at once, but a certificate
    # issued under the new lifetime does not renew again (clock-independent).
    shorter = pki.Wanted(signing_key_id=OLD, cert_expiry=30.0)
    assert "shorter" in pki.renewal_reason(OLD, nb, na, shorter, now=1010.0, renew_at=1060.0)
    assert pki.renewal_reason(OLD, 5000.0 - pki.CERT_BACKDATE, 5030.0, shorter, now=1010.0, renew_at=9999.0) == ""


# ---------------------------------------------------------------- rotation


def test_a_rotation_completes_once_every_node_holds_a_certificate_of_the_new_root() -> None:
    snap = snapshot(cluster(rotating=True), node("n1", NEW), node("n2", OLD))
    progress = pki.rotation_progress(snap)
    assert (progress.total, progress.renewed, [n.id for n in progress.pending]) == (2, 1, ["n2"])
    assert pki.reconcile(snap, now=10.0).actions == []

    snap = snapshot(cluster(rotating=True), node("n1", NEW), node("n2", NEW))
    (action,) = pki.reconcile(snap, now=10.0).actions
    done = action.put.cluster
    assert not done.root_ca.HasField("rotation")
    assert (done.root_ca.cert_pem, done.root_ca.key_pem, done.root_ca.key_id) == (b"NEW ROOT\n", b"new key", NEW)
    # Tokens pin the new root; their secrets stay.
    assert done.worker_token == "SWLTKN-1-" + "2" * 64 + "-workersecretworkersecretworkersec"
    assert done.manager_token.endswith("-managersecretmanagersecretmanager") and "2" * 64 in done.manager_token


def test_no_rotation_no_write() -> None:
    assert pki.reconcile(snapshot(cluster(), node("n1", OLD)), now=10.0).actions == []


def test_expired_revocations_are_forgotten_and_the_next_one_wakes_the_leader() -> None:
    c = cluster()
    c.revoked_certs["gone"] = 100.0
    c.revoked_certs["kept"] = 5000.0
    plan = pki.reconcile(snapshot(c), now=100.0 + pki.REVOKED_GRACE + 1)
    (action,) = plan.actions
    assert dict(action.put.cluster.revoked_certs) == {"kept": 5000.0}
    assert plan.wake_at == 5000.0 + pki.REVOKED_GRACE


# ---------------------------------------------------------------- revocation, issued certificates


def test_revoking_a_node_refuses_every_certificate_known_for_it() -> None:
    n = node("n1", OLD, role=pb.NodeSpec.MANAGER, serial="current")
    n.issued.append(pb.NodeCertificate(serial="issued-mgr", role="manager", not_after=900.0))
    n.issued.append(pb.NodeCertificate(serial="issued-wkr", role="worker", not_after=800.0))
    n.issued.append(pb.NodeCertificate(serial="current", role="manager", not_after=1000.0))
    assert [c.serial for c in pki.node_certificates(n)] == ["current", "issued-mgr", "issued-wkr"]
    assert [c.serial for c in pki.node_certificates(n, "manager")] == ["current", "issued-mgr"]
    revoked = pki.with_revoked(cluster(), pki.node_certificates(n, "manager"))
    assert revoked is not None and dict(revoked.revoked_certs) == {"current": 1000.0, "issued-mgr": 900.0}
    assert pki.with_revoked(revoked, pki.node_certificates(n, "manager")) is None  # nothing new


def test_issued_certificates_are_remembered_until_they_expire() -> None:
    n = node("n1", OLD)
    n.issued.append(pb.NodeCertificate(serial="old", not_after=50.0))
    n.issued.append(pb.NodeCertificate(serial="live", not_after=500.0))
    out = pki.with_issued(n, pb.NodeCertificate(serial="new", not_after=900.0), now=100.0)
    assert [c.serial for c in out.issued] == ["live", "new"]
    assert [c.serial for c in n.issued] == ["old", "live"]  # the input is not changed


# ---------------------------------------------------------------- authorization


def peer(node_id: str = "n1", role: str = "worker", cluster_id: str = "c1", serial: str = "s-n1") -> pki.PeerCert:
    return pki.PeerCert(node_id, role, cluster_id, serial)


HEARTBEAT = pki.DISPATCHER_PREFIX + "Heartbeat"
LOGS = pki.AGENT_PREFIX + "TaskLogs"


def test_a_manager_honours_a_current_members_certificate_of_its_role() -> None:
    snap = snapshot(cluster(), node("n1", OLD), node("m1", OLD, role=pb.NodeSpec.MANAGER))
    pki.authorize_on_manager(snap, peer(), HEARTBEAT)
    pki.authorize_on_manager(snap, peer("m1", "manager", serial="s-m1"), LOGS)


@pytest.mark.parametrize(
    ("who", "method", "message"),
    [
        (peer(cluster_id="other"), HEARTBEAT, "certificate of another cluster (other), not of this one (c1)"),
        (peer("gone"), HEARTBEAT, "node gone is not a member of this cluster (removed?)"),
        (peer(serial="bad"), HEARTBEAT, "the certificate of node n1 was revoked (serial bad)"),
        (peer(role="manager"), HEARTBEAT, "node n1 is a worker now: its manager certificate is no longer honoured"),
        (peer(), LOGS, "only managers may call the agent API"),
    ],
)
def test_a_manager_refuses(who: pki.PeerCert, method: str, message: str) -> None:
    c = cluster()
    c.revoked_certs["bad"] = 1000.0
    snap = snapshot(c, node("n1", OLD))
    with pytest.raises(errors.PermissionDenied) as e:
        pki.authorize_on_manager(snap, who, method)
    assert str(e.value) == message


def test_a_demoted_nodes_old_certificate_may_only_fetch_its_new_role() -> None:
    c = cluster()
    c.revoked_certs["old-mgr"] = 1000.0
    snap = snapshot(c, node("n1", OLD))  # a worker now
    demoted = peer(role="manager", serial="old-mgr")
    pki.authorize_on_manager(snap, demoted, pki.RENEW_ROLE_METHOD)
    pki.authorize_on_manager(snap, demoted, pki.SESSION_METHOD)  # the session only tells it its role
    for method in (HEARTBEAT, pki.DISPATCHER_PREFIX + "RenewCertificate", LOGS):
        with pytest.raises(errors.PermissionDenied):
            pki.authorize_on_manager(snap, demoted, method)
    # Once it is the node's role again (promoted back), a revoked certificate stays refused.
    with pytest.raises(errors.PermissionDenied, match="revoked"):
        pki.authorize_on_manager(snapshot(c, node("n1", OLD, role=pb.NodeSpec.MANAGER)), demoted, LOGS)


def test_a_worker_serves_its_managers_only() -> None:
    view = pki.worker_view("c1", ["m1"], ["bad"])
    pki.authorize_on_worker(view, peer("m1", "manager", serial="ok"), LOGS)
    refusals = [
        (peer("m1", "manager", cluster_id="x"), "another cluster"),
        (peer("w2", "worker"), "only managers"),
        (peer("m1", "manager", serial="bad"), "revoked"),
        (peer("m9", "manager"), r"node m9 is not a manager of this cluster \(demoted or removed\?\)"),
    ]
    for who, message in refusals:
        with pytest.raises(errors.PermissionDenied, match=message):
            pki.authorize_on_worker(view, who, LOGS)
    with pytest.raises(errors.PermissionDenied, match="only the agent API"):
        pki.authorize_on_worker(view, peer("m1", "manager"), HEARTBEAT)
    with pytest.raises(errors.Unavailable, match="not heard from its managers"):
        pki.authorize_on_worker(pki.WorkerView("c1"), peer("m1", "manager"), LOGS)


def test_sessions_carry_what_nodes_need_to_renew_and_to_judge_callers() -> None:
    c = cluster(rotating=True, expiry=60)
    c.revoked_certs["bad"] = 1.0
    msg = pki.fill_session(dpb.SessionMessage(), snapshot(c, node("n1", OLD), node("m1", NEW, role=pb.NodeSpec.MANAGER)))
    assert msg.trust_pem == b"OLD ROOT\nNEW ROOT\n" and msg.signing_key_id == NEW and msg.cert_expiry == 60
    assert list(msg.revoked_certs) == ["bad"] and list(msg.manager_ids) == ["m1"] and msg.cluster_id == "c1"


def test_inspect_never_shows_the_secrets() -> None:
    c = cluster(rotating=True)
    out = pki.public_cluster(c)
    raw = out.SerializeToString()
    for secret in (b"old key", b"new key", WORKER_TOKEN.encode(), MANAGER_TOKEN.encode(), b"r" * 32):
        assert secret not in raw
    assert out.root_ca.cert_pem == b"OLD ROOT\n" and out.root_ca.rotation.cert_pem == b"NEW ROOT\n"
    assert c.root_ca.key_pem == b"old key"  # the input is not changed


# ---------------------------------------------------------------- cluster update


def spec(**kw: float) -> pb.ClusterSpec:
    s = pb.ClusterSpec(heartbeat_period=0.5, node_down_after=3, task_history_limit=5)
    for k, v in kw.items():
        setattr(s, k, v)
    return s


def test_cluster_settings_in_range_are_accepted() -> None:
    check_cluster_spec(spec(heartbeat_period=2, node_down_after=10, task_history_limit=20, node_cert_expiry=7200), spec(), 3600)
    check_cluster_spec(spec(node_cert_expiry=30), spec(), 30)  # a lowered floor


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (spec(heartbeat_period=0.01), "--dispatcher-heartbeat must be between 0.1s and 1h, not 0.01s"),
        (spec(heartbeat_period=float("nan")), "--dispatcher-heartbeat must be between"),
        (spec(node_down_after=0.6), "--node-down-after (0.6s) must be at least twice the dispatcher heartbeat (0.5s)"),
        (spec(node_down_after=float("inf")), "--node-down-after must be between 1s and 1d, not inf"),
        (spec(task_history_limit=0), "--task-history-limit must be between 1 and 1000, not 0"),
        (spec(node_cert_expiry=1800), "--cert-expiry must be between 1h and 3650d, not 30m"),
        (spec(node_cert_expiry=-1), "--cert-expiry must be between"),
    ],
)
def test_cluster_settings_out_of_range_are_refused(bad: pb.ClusterSpec, message: str) -> None:
    with pytest.raises(InvalidSpec) as e:
        check_cluster_spec(bad, spec(), 3600)
    assert message in str(e.value)


def test_the_address_pool_cannot_change_after_init() -> None:
    new = spec()
    new.default_address_pool.append("10.20.0.0/16")
    with pytest.raises(InvalidSpec, match="default address pool is set at init"):
        check_cluster_spec(new, spec(), 3600)


EXPORT = pki.AGENT_PREFIX + "ExportImage"


def test_any_current_member_may_fetch_an_image_from_a_peer() -> None:
    # Issue 9's peer transfers: a worker asks another node (worker or
    # manager) for an image; the agent API is otherwise for managers only.
    c = cluster()
    c.revoked_certs["bad"] = 1000.0
    snap = snapshot(c, node("n1", OLD))
    pki.authorize_on_manager(snap, peer(), EXPORT)
    view = pki.worker_view("c1", ["m1"], ["bad"])
    pki.authorize_on_worker(view, peer("w2", "worker"), EXPORT)
    for who, message in ((peer("w2", serial="bad"), "revoked"), (peer("w2", cluster_id="x"), "another cluster")):
        with pytest.raises(errors.PermissionDenied, match=message):
            pki.authorize_on_worker(view, who, EXPORT)
    with pytest.raises(errors.PermissionDenied, match="not a member"):
        pki.authorize_on_manager(snap, peer("gone"), EXPORT)
    with pytest.raises(errors.PermissionDenied, match="only managers"):
        pki.authorize_on_worker(view, peer("w2", "worker"), LOGS)
