"""Pure rules of the cluster's PKI (issue 13, part A).

How long node certificates live and when a node renews its own; which roots
a node trusts and which root signs; when a root rotation is complete and
what completing it writes; which certificates are revoked; and who may call
what, judged from a verified peer certificate against the replicated state
(managers) or what the node learnt in its session (workers).

The shells apply these: manager/ca.py signs, manager/dispatcher.py issues and
records, node/certs.py renews, the gRPC servers' interceptor (tls.py) asks
`authorize_on_manager` / `authorize_on_worker` before every call.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from swarmlet import errors
from swarmlet.api import dispatcher_pb2 as dpb
from swarmlet.api import objects_pb2 as pb
from swarmlet.core import state as st
from swarmlet.core.stage import StagePlan

DAY = 86400.0
# As swarmkit: 90 days by default, at least an hour (a daemon may lower the
# floor: node/config.py --min-cert-expiry, for tests), at most ten years.
DEFAULT_CERT_EXPIRY = 90 * DAY
MIN_CERT_EXPIRY = 3600.0
MAX_CERT_EXPIRY = 3650 * DAY
# The CA backdates a certificate's not_before by this much (clock skew); a
# certificate's issuance time is not_before + CERT_BACKDATE.
CERT_BACKDATE = 300.0
# A node renews at a random point in this fraction of its certificate's
# lifetime (as swarmkit): not all at once after a rotation or a restart.
RENEW_WINDOW = (0.5, 0.8)
# Past this fraction the renewal is overdue: warn (at start-up, in `info`).
NEAR_EXPIRY = RENEW_WINDOW[1]
# A certificate issued under a lifetime this much longer than the cluster's
# current one is renewed at once (the operator shortened the lifetime).
_LIFETIME_SLACK = 1.1
# Revoked serials are kept this long past their certificate's expiry (clock skew).
REVOKED_GRACE = 600.0

ROLE_WORKER = "worker"
ROLE_MANAGER = "manager"

# gRPC method names the authorization rules single out.
DISPATCHER_PREFIX = "/swarmlet.api.Dispatcher/"
SESSION_METHOD = DISPATCHER_PREFIX + "Session"
RENEW_ROLE_METHOD = DISPATCHER_PREFIX + "RenewRole"
AGENT_PREFIX = "/swarmlet.api.Agent/"
# Agent API calls any node of the cluster may make of another (issue 9: a
# node fetches an image from the peers that hold it); every other agent call
# is for managers only.
PEER_METHODS = frozenset({AGENT_PREFIX + "ExportImage"})


# ---------------------------------------------------------------- settings, roots


def cert_expiry(cluster: pb.Cluster | None) -> float:
    """Seconds a newly issued node certificate is valid."""
    if cluster is not None and cluster.spec.node_cert_expiry > 0:
        return cluster.spec.node_cert_expiry
    return DEFAULT_CERT_EXPIRY


def rotating(root_ca: pb.RootCA) -> bool:
    return root_ca.HasField("rotation")


def trust_pem(root_ca: pb.RootCA) -> bytes:
    """The roots nodes trust: the current one, plus the new one while a
    rotation runs."""
    pem = root_ca.cert_pem
    if rotating(root_ca):
        pem = pem.rstrip(b"\n") + b"\n" + root_ca.rotation.cert_pem
    return pem


def signing_key_id(root_ca: pb.RootCA) -> str:
    """The key id of the root that signs node certificates now."""
    return root_ca.rotation.key_id if rotating(root_ca) else root_ca.key_id


# ---------------------------------------------------------------- renewal (node side)


def issued_at(not_before: float, not_after: float) -> float:
    return min(not_before + CERT_BACKDATE, not_after)


def renewal_time(not_before: float, not_after: float, fraction: float) -> float:
    """When to renew a certificate: `fraction` (drawn by the caller from
    RENEW_WINDOW) of the way from its issuance to its expiry."""
    start = issued_at(not_before, not_after)
    return start + fraction * (not_after - start)


def near_expiry(not_before: float, not_after: float, now: float) -> bool:
    """Past the renewal window: renewal is overdue (or the node was off)."""
    return now >= renewal_time(not_before, not_after, NEAR_EXPIRY)


@dataclass(frozen=True)
class Wanted:
    """What the cluster says about certificates, as a node learns it in its
    session (SessionMessage fields 90-95)."""

    signing_key_id: str = ""
    cert_expiry: float = 0.0


def renewal_reason(issuer_key_id: str, not_before: float, not_after: float, wanted: Wanted, now: float, renew_at: float) -> str:
    """Why a node should renew its certificate now ("" when it need not)."""
    if wanted.signing_key_id and issuer_key_id != wanted.signing_key_id:
        return "the cluster's root CA is being rotated"
    lifetime = not_after - issued_at(not_before, not_after)
    if wanted.cert_expiry > 0 and lifetime > wanted.cert_expiry * _LIFETIME_SLACK + 1.0:
        return "the cluster's certificate lifetime is shorter than this certificate's"
    if now >= renew_at:
        return "it reached its renewal time"
    return ""


# ---------------------------------------------------------------- rotation


@dataclass(frozen=True)
class RotationProgress:
    total: int
    renewed: int
    pending: list[pb.Node] = field(default_factory=list)

    @property
    def done(self) -> bool:
        return not self.pending


def rotation_progress(snap: st.Snapshot) -> RotationProgress:
    """How many nodes hold a certificate from the signing root. A node counts
    once it presented one in a session (the dispatcher records it): nodes that
    are down hold the rotation back until they renew or are removed, as in
    swarmkit."""
    cluster = snap.cluster
    if cluster is None:
        return RotationProgress(0, 0)
    want = signing_key_id(cluster.root_ca)
    nodes = sorted(snap.nodes.values(), key=lambda n: (n.description.hostname, n.id))
    pending = [n for n in nodes if n.certificate.issuer_key_id != want]
    return RotationProgress(len(nodes), len(nodes) - len(pending), pending)


def rotated_token(token: str, digest: str) -> str:
    """A join token pinning the root `digest`, with the same secret: tokens
    name the root they trust, so they change when the root does."""
    parts = token.split("-")
    if len(parts) != 4:
        return token
    return "-".join([parts[0], parts[1], digest, parts[3]])


def completed_rotation(cluster: pb.Cluster) -> pb.Cluster:
    """A copy of `cluster` whose root is the rotation's new root: the old root
    leaves the trust bundle and the join tokens pin the new one."""
    rot = cluster.root_ca.rotation
    out = pb.Cluster()
    out.CopyFrom(cluster)
    out.root_ca.CopyFrom(pb.RootCA(cert_pem=rot.cert_pem, key_pem=rot.key_pem, digest=rot.digest, key_id=rot.key_id))
    out.worker_token = rotated_token(cluster.worker_token, rot.digest)
    out.manager_token = rotated_token(cluster.manager_token, rot.digest)
    return out


def reconcile(snap: st.Snapshot, now: float) -> StagePlan:
    """The leader round's PKI stage: complete a root rotation once every node
    holds a certificate from the new root, and forget revoked serials whose
    certificates have expired."""
    cluster = snap.cluster
    if cluster is None:
        return StagePlan()
    new = cluster
    if rotating(cluster.root_ca) and snap.nodes and rotation_progress(snap).done:
        new = completed_rotation(cluster)
    expired = [s for s, until in cluster.revoked_certs.items() if until + REVOKED_GRACE < now]
    if expired:
        if new is cluster:
            new = pb.Cluster()
            new.CopyFrom(cluster)
        for s in expired:
            del new.revoked_certs[s]
    left = [until + REVOKED_GRACE for s, until in cluster.revoked_certs.items() if s not in expired]
    wake = min(left) if left else None
    if new is cluster:
        return StagePlan(wake_at=wake)
    return StagePlan([st.put(new)], wake_at=wake)


# ---------------------------------------------------------------- revocation, issued certificates


def node_certificates(node: pb.Node, role: str = "") -> list[pb.NodeCertificate]:
    """Every certificate the managers know the node holds or was issued (of
    `role` only, when given)."""
    out = [c for c in [node.certificate, *node.issued] if c.serial and (not role or c.role == role)]
    seen: set[str] = set()
    unique = []
    for c in out:
        if c.serial not in seen:
            seen.add(c.serial)
            unique.append(c)
    return unique


def with_revoked(cluster: pb.Cluster, certs: Iterable[pb.NodeCertificate]) -> pb.Cluster | None:
    """A copy of `cluster` refusing `certs` until they expire; None when
    there is nothing new to refuse."""
    fresh = [c for c in certs if c.serial and c.serial not in cluster.revoked_certs]
    if not fresh:
        return None
    out = pb.Cluster()
    out.CopyFrom(cluster)
    for c in fresh:
        out.revoked_certs[c.serial] = c.not_after
    return out


def with_issued(node: pb.Node, cert: pb.NodeCertificate, now: float) -> pb.Node:
    """A copy of `node` remembering a certificate just issued to it (so that
    removing or demoting it revokes that one too), forgetting expired ones."""
    out = pb.Node()
    out.CopyFrom(node)
    keep = [c for c in node.issued if c.not_after > now and c.serial != cert.serial]
    del out.issued[:]
    out.issued.extend([*keep, cert])
    return out


# ---------------------------------------------------------------- authorization


@dataclass(frozen=True)
class PeerCert:
    """A verified client certificate, as the rules need it."""

    node_id: str
    role: str
    cluster_id: str
    serial: str


@dataclass(frozen=True)
class WorkerView:
    """What a worker knows to judge callers: learnt in its session."""

    cluster_id: str
    manager_ids: frozenset[str] = frozenset()
    revoked: frozenset[str] = frozenset()
    known: bool = False  # a session message arrived since the daemon started


def _check_cluster(peer: PeerCert, cluster_id: str) -> None:
    if peer.cluster_id != cluster_id:
        raise errors.PermissionDenied(f"certificate of another cluster ({peer.cluster_id}), not of this one ({cluster_id})")


def authorize_on_manager(snap: st.Snapshot, peer: PeerCert, method: str) -> None:
    """Whether a manager answers `method` for this certificate. Raises
    PermissionDenied naming why not.

    The certificate must be of this cluster, of a current member, not revoked,
    and of the role the state gives the node. Two calls accept a certificate
    whose role the cluster changed since it was issued (it may be revoked by
    then): RenewRole, through which the node fetches its certificate for the
    new role, and Session, which then only tells the node its new role
    (dispatcher.py); nothing else."""
    cluster = snap.cluster
    if cluster is None:
        raise errors.Unavailable("this manager holds no cluster state yet")
    _check_cluster(peer, cluster.id)
    node = snap.nodes.get(peer.node_id)
    if node is None:
        raise errors.PermissionDenied(f"node {peer.node_id} is not a member of this cluster (removed?)")
    state_role = ROLE_MANAGER if node.role == pb.NodeSpec.MANAGER else ROLE_WORKER
    stale_role = peer.role != state_role
    if stale_role and method in (RENEW_ROLE_METHOD, SESSION_METHOD):
        return
    if peer.serial in cluster.revoked_certs:
        raise errors.PermissionDenied(f"the certificate of node {peer.node_id} was revoked (serial {peer.serial})")
    if stale_role:
        raise errors.PermissionDenied(
            f"node {peer.node_id} is a {state_role} now: its {peer.role} certificate is no longer honoured"
        )
    if method.startswith(AGENT_PREFIX) and peer.role != ROLE_MANAGER and method not in PEER_METHODS:
        raise errors.PermissionDenied("only managers may call the agent API")


def authorize_on_worker(view: WorkerView, peer: PeerCert, method: str) -> None:
    """Whether a worker answers `method` (only the agent API, for managers)
    for this certificate, by what its session told it."""
    _check_cluster(peer, view.cluster_id)
    if not method.startswith(AGENT_PREFIX):
        raise errors.PermissionDenied("a worker serves only the agent API")
    peer_call = method in PEER_METHODS
    if peer.role != ROLE_MANAGER and not peer_call:
        raise errors.PermissionDenied("only managers may call the agent API")
    if not view.known:
        raise errors.Unavailable("this node has not heard from its managers yet: try again")
    if peer.serial in view.revoked:
        raise errors.PermissionDenied(f"the certificate of node {peer.node_id} was revoked (serial {peer.serial})")
    if peer_call:
        # A worker knows the managers, not every member: the cluster id and
        # the revocation list (a removed node's certificates are revoked) are
        # what it can check of a peer.
        return
    if peer.node_id not in view.manager_ids:
        raise errors.PermissionDenied(f"node {peer.node_id} is not a manager of this cluster (demoted or removed?)")


def worker_view(cluster_id: str, manager_ids: Iterable[str], revoked: Iterable[str]) -> WorkerView:
    return WorkerView(cluster_id, frozenset(manager_ids), frozenset(revoked), known=True)


def manager_ids(snap: st.Snapshot) -> list[str]:
    return sorted(n.id for n in snap.nodes.values() if n.role == pb.NodeSpec.MANAGER)


def revoked_serials(cluster: pb.Cluster | None) -> list[str]:
    return sorted(cluster.revoked_certs) if cluster is not None else []


def fill_session(msg: dpb.SessionMessage, snap: st.Snapshot) -> dpb.SessionMessage:
    """Set the SessionMessage fields (90-95) every node gets: what to trust,
    who signs, how long certificates live, who is refused and who manages."""
    cluster = snap.cluster
    if cluster is not None:
        msg.trust_pem = trust_pem(cluster.root_ca)
        msg.signing_key_id = signing_key_id(cluster.root_ca)
        msg.cert_expiry = cert_expiry(cluster)
        msg.revoked_certs.extend(revoked_serials(cluster))
        msg.manager_ids.extend(manager_ids(snap))
        msg.cluster_id = cluster.id
    return msg


# ---------------------------------------------------------------- what inspect shows


def public_cluster(cluster: pb.Cluster) -> pb.Cluster:
    """A copy of `cluster` without its secrets (CA private keys, join tokens,
    the Raft secret): what `cluster inspect` shows."""
    out = pb.Cluster()
    out.CopyFrom(cluster)
    out.root_ca.ClearField("key_pem")
    if rotating(out.root_ca):
        out.root_ca.rotation.ClearField("key_pem")
    out.ClearField("worker_token")
    out.ClearField("manager_token")
    out.ClearField("raft_secret")
    return out
