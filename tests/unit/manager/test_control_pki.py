"""Certificates and the root CA through the control API (control/pki.py and
the revocations in nodes.py / cluster.py), on real stores."""

from __future__ import annotations

import pytest

from swarmlet import errors
from swarmlet.api import control_pb2 as cpb
from swarmlet.api import objects_pb2 as pb
from swarmlet.core import pki
from swarmlet.core import state as st
from tests.unit.manager import helpers as h
from tests.unit.manager.conftest import WORKER1, OneManager
from tests.unit.manager.test_control_cluster import ThreeManagers, change_role


def _with_cert(node: pb.Node, serial: str, role: str, not_after: float = 9e9) -> pb.Node:
    out = pb.Node()
    out.CopyFrom(node)
    out.certificate.CopyFrom(pb.NodeCertificate(serial=serial, role=role, not_after=not_after))
    out.issued.append(pb.NodeCertificate(serial=serial + "-next", role=role, not_after=not_after))
    return out


def test_inspect_shows_the_settings_and_never_the_secrets(one_manager: OneManager) -> None:
    m = one_manager
    out = m.control.pki.get_cluster(cpb.GetClusterRequest()).cluster
    assert out.id == m.cluster.id and out.spec.heartbeat_period == 0.5
    raw = out.SerializeToString()
    for secret in (m.cluster.root_ca.key_pem, m.cluster.worker_token.encode(), m.cluster.manager_token.encode(), h.RAFT_SECRET):
        assert secret not in raw
    assert out.root_ca.cert_pem == m.cluster.root_ca.cert_pem


def test_update_changes_the_settings_fixed_at_init(one_manager: OneManager) -> None:
    m = one_manager
    cur = m.control.pki.get_cluster(cpb.GetClusterRequest()).cluster
    spec = pb.ClusterSpec()
    spec.CopyFrom(cur.spec)
    spec.heartbeat_period, spec.node_down_after, spec.task_history_limit, spec.node_cert_expiry = 1.0, 5.0, 10, 7200.0
    out = m.control.pki.update_cluster(cpb.UpdateClusterRequest(spec=spec, version=cur.meta.version)).cluster
    assert (out.spec.heartbeat_period, out.spec.node_down_after, out.spec.task_history_limit) == (1.0, 5.0, 10)
    stored = m.store.snapshot().cluster
    assert stored is not None and stored.spec.node_cert_expiry == 7200.0
    # The secrets are kept (inspect hides them; update must not drop them).
    assert stored.root_ca.key_pem == m.cluster.root_ca.key_pem and stored.worker_token == m.cluster.worker_token
    # A stale read is refused; a bad value changes nothing.
    with pytest.raises(errors.Conflict):
        m.control.pki.update_cluster(cpb.UpdateClusterRequest(spec=spec, version=cur.meta.version))
    before = m.store.state_digest()
    spec.node_cert_expiry = 60
    with pytest.raises(errors.Invalid, match="--cert-expiry must be between 1h"):
        m.control.pki.update_cluster(cpb.UpdateClusterRequest(spec=spec))
    assert m.store.state_digest() == before


def test_rotating_the_root_reports_progress_node_by_node(one_manager: OneManager) -> None:
    m = one_manager
    status = m.control.pki.rotate_root_ca(cpb.RotateRootCARequest())
    assert status.rotating and status.digest == m.cluster.root_ca.digest and status.new_digest != status.digest
    assert (status.nodes, status.nodes_renewed) == (3, 0)
    assert sorted(p.hostname for p in status.pending) == ["manager-1", "worker-1", "worker-2"]
    cluster = m.store.snapshot().cluster
    assert cluster is not None and cluster.root_ca.rotation.key_pem  # the new key is replicated (managers sign with it)
    # A second --rotate retargets the rotation at a fresh root.
    again = m.control.pki.rotate_root_ca(cpb.RotateRootCARequest())
    assert again.rotating and again.new_digest not in (status.new_digest, status.digest)


def test_removing_a_node_revokes_its_certificates(one_manager: OneManager) -> None:
    m = one_manager
    node = m.store.snapshot().nodes[WORKER1]
    m.store.propose([st.put(_with_cert(node, "aa01", "worker"))])
    m.control.nodes.remove(cpb.RemoveNodeRequest(ref="worker-1", force=True))
    cluster = m.store.snapshot().cluster
    assert cluster is not None and set(cluster.revoked_certs) == {"aa01", "aa01-next"}


def test_demoting_a_manager_revokes_its_manager_certificates(tmp_path) -> None:
    three = ThreeManagers(tmp_path)
    try:
        follower = three.followers()[0]
        node_id = three.ids[follower.self_addr]
        node = three.leader.snapshot().nodes[node_id]
        node = _with_cert(node, "bb01", "manager")
        node.issued.append(pb.NodeCertificate(serial="bb02", role="worker", not_after=9e9))
        three.leader.propose([st.put(node)])
        change_role(three.control, node_id, pb.NodeSpec.WORKER)
        cluster = three.leader.snapshot().cluster
        assert cluster is not None and set(cluster.revoked_certs) == {"bb01", "bb01-next"}
        # Its old certificate may still fetch its worker certificate, nothing else.
        snap = three.leader.snapshot()
        old = pki.PeerCert(node_id, "manager", cluster.id, "bb01")
        pki.authorize_on_manager(snap, old, pki.RENEW_ROLE_METHOD)
        with pytest.raises(errors.PermissionDenied):
            pki.authorize_on_manager(snap, old, pki.AGENT_PREFIX + "TaskLogs")
    finally:
        three.close()
