"""Certificates and the root CA (issue 13, part A): renewing a node's
certificate, recording the certificates nodes present, revoking a removed or
demoted node's certificates, showing and rotating the root CA, and the
cluster settings (`cluster inspect` / `cluster update`).

The rules (lifetimes, rotation progress, who may call what) are pure, in
core/pki.py; signing is manager/ca.py.
"""

from __future__ import annotations

import time

from swarmlet import errors
from swarmlet.api import control_pb2 as cpb
from swarmlet.api import objects_pb2 as pb
from swarmlet.core import pki, validation
from swarmlet.core import state as st
from swarmlet.manager import ca
from swarmlet.manager.control.base import StoreAccess
from swarmlet.manager.store import ConflictError, StoreError

# A record that races with another write of the node is tried this often.
_RECORD_ATTEMPTS = 3


class PKIControl:
    def __init__(self, access: StoreAccess, min_cert_expiry: float = pki.MIN_CERT_EXPIRY) -> None:
        self._a = access
        self._min_cert_expiry = min_cert_expiry

    # ---- the cluster object and its settings ----
    def _cluster(self, snap: st.Snapshot) -> pb.Cluster:
        if snap.cluster is None:
            raise errors.FailedPrecondition("the cluster is not initialised")
        return snap.cluster

    def get_cluster(self, req: cpb.GetClusterRequest) -> cpb.ClusterResponse:
        cluster = self._cluster(self._a.snap())
        return cpb.ClusterResponse(cluster=pki.public_cluster(cluster))

    def update_cluster(self, req: cpb.UpdateClusterRequest) -> cpb.ClusterResponse:
        """Replace the cluster's settings (the whole spec, as the client read
        it and changed it). Settings fixed at init stay as they are."""
        cluster = self._cluster(self._a.snap())
        if self._a.replayed(req.request_id):
            # A retry of an update that applied: its version check would now
            # fail against the version that update wrote. The local state
            # holds that write (it was applied here before its id was recorded).
            return cpb.ClusterResponse(cluster=pki.public_cluster(self._cluster(self._a.local())))
        if req.version and req.version != cluster.meta.version:
            raise errors.Conflict("the cluster settings changed since they were read: try again")
        validation.check_cluster_spec(req.spec, cluster.spec, self._min_cert_expiry)
        new = pb.Cluster()
        new.CopyFrom(cluster)
        new.spec.CopyFrom(req.spec)
        self._a.propose([st.put(new)], request_id=req.request_id)
        return cpb.ClusterResponse(cluster=pki.public_cluster(self._cluster(self._a.snap())))

    # ---- the root CA ----
    def get_root_ca(self, req: cpb.GetRootCARequest) -> cpb.RootCAStatus:
        return root_ca_status(self._a.snap())

    def rotate_root_ca(self, req: cpb.RotateRootCARequest) -> cpb.RootCAStatus:
        """Start replacing the root CA (a rotation under way is retargeted at
        a fresh root). The leader's round completes it (core/pki.reconcile)."""
        cluster = self._cluster(self._a.snap())
        new = pb.Cluster()
        new.CopyFrom(cluster)
        new.root_ca.CopyFrom(ca.start_rotation(cluster.root_ca, time.time()))
        self._a.propose([st.put(new)])
        return root_ca_status(self._a.snap())

    # ---- certificates of nodes (the dispatcher calls these) ----
    def renew_certificate(self, node_id: str, role: str, csr_pem: bytes) -> tuple[bytes, bytes]:
        """Dispatcher.RenewCertificate: a new certificate for the role the node
        holds (a role change goes through RenewRole), signed by the root that
        signs now, with the cluster's lifetime. Returns (certificate chain,
        trust bundle)."""
        snap = self._a.local()
        cluster = self._cluster(snap)
        node = snap.nodes.get(node_id)
        if node is None:
            raise errors.PermissionDenied(f"node {node_id} is not a member of this cluster (removed?)")
        state_role = pki.ROLE_MANAGER if node.role == pb.NodeSpec.MANAGER else pki.ROLE_WORKER
        if role != state_role:
            raise errors.FailedPrecondition(f"node {node_id} is a {state_role} now: renew through its role change")
        cert = ca.sign_node_csr(
            cluster.root_ca, csr_pem, node_id, state_role, cluster.id, ca.san_ip(node.status.addr), pki.cert_expiry(cluster)
        )
        record_issued(self._a, node_id, ca.issued_record(cert, state_role))
        return cert, pki.trust_pem(cluster.root_ca)


def record_issued(access: StoreAccess, node_id: str, record: pb.NodeCertificate) -> None:
    """Remember a certificate issued to a node, so that removing or demoting
    it revokes that one too. Best effort, and never waiting on a commit that
    cannot come (right after a promotion grows the Raft membership): the node
    presents the certificate at its next session, which records it as well."""
    for _ in range(_RECORD_ATTEMPTS):
        node = access.local().nodes.get(node_id)
        if node is None:
            return
        try:
            access.store.propose([st.put(pki.with_issued(node, record, time.time()))], timeout=2.0)
            return
        except ConflictError:
            continue  # another write of the node record: read it again
        except StoreError:
            return


def root_ca_status(snap: st.Snapshot) -> cpb.RootCAStatus:
    """The root CA as `swarmlet ca` shows it: the current root and, while a
    rotation runs, the new one and which nodes still hold old certificates."""
    cluster = snap.cluster
    if cluster is None:
        raise errors.FailedPrecondition("the cluster is not initialised")
    root = cluster.root_ca
    out = cpb.RootCAStatus(cert_pem=root.cert_pem, digest=root.digest)
    progress = pki.rotation_progress(snap)
    out.nodes = progress.total
    out.nodes_renewed = progress.renewed
    if pki.rotating(root):
        out.rotating = True
        out.new_cert_pem = root.rotation.cert_pem
        out.new_digest = root.rotation.digest
        out.started_at = root.rotation.started_at
        for n in progress.pending:
            out.pending.append(
                cpb.RootCANodeProgress(
                    node_id=n.id,
                    hostname=n.description.hostname,
                    state=pb.NodeStatus.State.Name(n.status.state).lower(),
                    issuer_key_id=n.certificate.issuer_key_id,
                )
            )
    return out
