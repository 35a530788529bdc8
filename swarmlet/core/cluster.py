"""Pure rules of cluster membership and agent sessions.

Heartbeat settings and when a silent node counts as down, what an agent's
session carries, which managers agents and joiners are told about, quorum
arithmetic for removing a manager, the cluster-wide membership-change marker,
and the node records of joining, promotion and demotion. The dispatcher and
the control API (swarmlet.manager) apply these with clocks and the store.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Mapping

from swarmlet import errors
from swarmlet.api import ca_pb2
from swarmlet.api import dispatcher_pb2 as dpb
from swarmlet.api import objects_pb2 as pb
from swarmlet.core import images as im
from swarmlet.core import pki
from swarmlet.core import secrets as sc
from swarmlet.core import state as st
from swarmlet.core.orchestrator import DEFAULT_TASK_HISTORY_LIMIT

# Every kind of object the store holds.
StoredObject = st.StoreObject

# Cluster settings a new cluster starts with; a cluster whose spec leaves one
# at zero gets the same value (clusters made before the setting existed).
DEFAULT_HEARTBEAT_PERIOD = 0.5
DEFAULT_NODE_DOWN_AFTER = 3.0

# A membership-change marker older than this was left by a manager that died
# mid-change: the next change may proceed (changes are idempotent).
MEMBERSHIP_MARKER_TTL = 30.0


# ---------------------------------------------------------------- settings


# Bounds of `init --dispatcher-heartbeat` (issue 15: a large cluster beats
# less often; Docker Swarm's default is 5 s).
MIN_HEARTBEAT_PERIOD = 0.1
MAX_HEARTBEAT_PERIOD = 60.0
# A node is down after this many missed heartbeat periods (at least
# DEFAULT_NODE_DOWN_AFTER).
DOWN_AFTER_PERIODS = 3


def down_after_for(period: float) -> float:
    """The node-down delay that goes with a heartbeat period."""
    return max(DEFAULT_NODE_DOWN_AFTER, DOWN_AFTER_PERIODS * period)


# A new leader has heard no heartbeat: it judges a node only after this many
# node-down delays from the moment it leads (issue 15). Every agent of the
# cluster reconnects at once then, through managers busy electing and catching
# up: with one delay, on a loaded 250-node cluster, the slowest agents were
# marked down while reconnecting, their tasks were placed again, and that churn
# slowed the rest (sessions took over two minutes to come back).
NEW_LEADER_GRACE_DELAYS = 2


def new_leader_grace(snap: st.Snapshot) -> float:
    """How long past the usual node-down delay a new leader waits before
    judging a node it has not heard from yet (seconds)."""
    _, down = heartbeat_settings(snap)
    return (NEW_LEADER_GRACE_DELAYS - 1) * down


def check_heartbeat_period(period: float) -> None:
    """Refuse a heartbeat period (seconds) out of bounds; 0 means the default."""
    if period == 0:
        return
    if not (MIN_HEARTBEAT_PERIOD <= period <= MAX_HEARTBEAT_PERIOD):  # also refuses NaN
        raise errors.Invalid(
            f"invalid dispatcher heartbeat {period!r}s: it must be between {MIN_HEARTBEAT_PERIOD:g}s and {MAX_HEARTBEAT_PERIOD:g}s"
        )


def initial_spec(address_pool: Iterable[str] = (), subnet_size: int = 0, heartbeat: float = 0.0) -> pb.ClusterSpec:
    """The spec of a cluster created by `init` (`heartbeat`: its period in
    seconds, 0 for the default; the node-down delay follows it)."""
    period = heartbeat or DEFAULT_HEARTBEAT_PERIOD
    return pb.ClusterSpec(
        heartbeat_period=period,
        node_down_after=down_after_for(period) if heartbeat else DEFAULT_NODE_DOWN_AFTER,
        task_history_limit=DEFAULT_TASK_HISTORY_LIMIT,
        default_address_pool=list(address_pool),
        default_subnet_size=subnet_size,
    )


def heartbeat_settings(snap: st.Snapshot) -> tuple[float, float]:
    """(heartbeat period, silence after which a node is down), in seconds:
    the cluster's settings, stretched alike once the node count would make
    the leader answer more than MAX_HEARTBEATS_PER_SECOND."""
    c = snap.cluster
    period = c.spec.heartbeat_period if c and c.spec.heartbeat_period > 0 else DEFAULT_HEARTBEAT_PERIOD
    down = c.spec.node_down_after if c and c.spec.node_down_after > 0 else DEFAULT_NODE_DOWN_AFTER
    stretch = heartbeat_stretch(len(snap.nodes), period)
    return period * stretch, down * stretch


# The leader answers every node's heartbeats: at a fixed period its idle work
# grows with the cluster (issue 15: 0.5 s on 1,000 nodes would be 2,000 calls a
# second). Past this rate the period the managers ask for, and the node-down
# delay with it, stretch with the node count, as Nomad's servers do
# (max_heartbeats_per_second). At 1,000 nodes a cluster set to 2 s beats every
# 5 s and marks a node down after 15 s: Docker Swarm's defaults at any size.
MAX_HEARTBEATS_PER_SECOND = 200.0
# The stretch moves in quarter steps: a join does not change every node's
# period (and wake every session) each time.
_STRETCH_STEP = 0.25


def heartbeat_stretch(nodes: int, period: float) -> float:
    """The factor (1 or more) applied to the heartbeat period and node-down
    delay of a cluster of `nodes` nodes whose configured period is `period`."""
    need = nodes / (period * MAX_HEARTBEATS_PER_SECOND)
    if need <= 1.0:
        return 1.0
    return math.ceil(need / _STRETCH_STEP) * _STRETCH_STEP


# ---------------------------------------------------------------- sessions


def node_assignments(snap: st.Snapshot, node_id: str) -> list[pb.Task]:
    """Every task the store places on this node, terminal ones included (the
    agent keeps their containers for logs until the task is deleted)."""
    return sorted((t for t in snap.tasks.values() if t.node_id == node_id), key=lambda t: t.id)


def manager_addrs(snap: st.Snapshot) -> list[str]:
    """The managers' mTLS API addresses: where agents and joiners (re)connect."""
    return sorted(
        n.manager_status.api_addr for n in snap.nodes.values() if n.role == pb.NodeSpec.MANAGER and n.manager_status.api_addr
    )


def manager_api_addr(snap: st.Snapshot, raft_addr: str | None) -> str:
    """The API address of the manager whose Raft address is `raft_addr` (the
    leader, for a follower's redirect), or "" when no manager has it."""
    if not raft_addr:
        return ""
    for n in snap.nodes.values():
        if n.role == pb.NodeSpec.MANAGER and n.manager_status.raft_addr == raft_addr:
            return n.manager_status.api_addr
    return ""


def session_message(
    snap: st.Snapshot, node: pb.Node, session_id: str, networks: Iterable[dpb.NetworkAssignment]
) -> dpb.SessionMessage:
    """Everything an agent converges to: its tasks, its networks, the
    secrets and configs its live tasks use, where the managers are, and what
    the cluster wants of the node."""
    period, _ = heartbeat_settings(snap)
    tasks = node_assignments(snap, node.id)
    msg = dpb.SessionMessage(
        session_id=session_id,
        heartbeat_period=period,
        tasks=tasks,
        managers=manager_addrs(snap),
        node_id=node.id,
        availability=node.spec.availability,
        networks=list(networks),
        desired_role=node.spec.desired_role,
    )
    msg.MergeFrom(session_extras(snap, node.id, tasks))
    return msg


def session_extras(
    snap: st.Snapshot, node_id: str, tasks: Iterable[pb.Task], certificates: dpb.SessionMessage | None = None
) -> dpb.SessionMessage:
    """The session fields besides tasks and networks (core/sessions.py
    EXTRA_FIELDS): the secrets and configs `tasks` (the node's) may still
    use, where their images are and the credentials of only the services
    this node runs (issue 9), and the certificate fields (issue 13; the same
    for every node: `certificates` when the caller computed them already)."""
    tasks = list(tasks)
    secrets, configs = sc.for_node(snap, tasks)
    msg = dpb.SessionMessage(secrets=secrets, configs=configs)
    for ref, image_id, peers in im.image_sources(snap, node_id, tasks):
        msg.images.add(ref=ref, image_id=image_id, peers=peers)
    for service_id, auth in sorted(im.service_auths(snap, tasks).items()):
        msg.registry_auths.add(service_id=service_id, auth=auth)
    if certificates is not None:
        msg.MergeFrom(certificates)
        return msg
    return pki.fill_session(msg, snap)


# ---------------------------------------------------------------- liveness


def silent_nodes(snap: st.Snapshot, last_seen: Mapping[str, float], now: float) -> list[tuple[pb.Node, float]]:
    """Nodes not yet DOWN that gave no sign of life for longer than the
    cluster's down-after setting, with how long they have been silent.
    `last_seen` and `now` are on one monotonic clock; a node missing from
    `last_seen` is taken as seen at `now` (a full grace period)."""
    _, down_after = heartbeat_settings(snap)
    out = []
    for node in snap.nodes.values():
        if node.status.state == pb.NodeStatus.DOWN:
            continue
        silence = now - last_seen.get(node.id, now)
        if silence > down_after:
            out.append((node, silence))
    return out


def down_status(node: pb.Node, silence: float, timestamp: float) -> pb.NodeStatus:
    """The status of a node whose heartbeats stopped `silence` seconds ago."""
    return pb.NodeStatus(
        state=pb.NodeStatus.DOWN,
        addr=node.status.addr,
        timestamp=timestamp,
        message=f"heartbeat failure: none for {silence:.1f}s",
    )


# ---------------------------------------------------------------- Raft membership


def majority(members: int) -> int:
    return members // 2 + 1


def can_remove_member(members: list[str], reachable: set[str], target: str) -> bool:
    """Whether the managers left after removing `target` still have a
    reachable majority (as swarm's raft member removal check)."""
    remaining = [m for m in members if m != target]
    if not remaining:
        return False
    return sum(1 for m in remaining if m in reachable) >= majority(len(remaining))


def membership_change_in_progress(cluster: pb.Cluster, now: float) -> bool:
    """Whether another manager holds the membership-change marker (wall clock
    `now`, as the marker's time was written)."""
    return bool(cluster.membership_change) and now - cluster.membership_change_at < MEMBERSHIP_MARKER_TTL


def add_can_commit_without_newcomer(members: list[str], reachable: set[str]) -> bool:
    """Whether adding a member can commit before the new member runs: the
    reachable members already form a majority of the grown membership."""
    return sum(1 for m in members if m in reachable) >= majority(len(members) + 1)


def membership_repairs(snap: st.Snapshot, members: Iterable[str]) -> tuple[list[pb.Node], list[pb.Node]]:
    """Where the store's managers and the Raft membership disagree, as an
    interrupted change leaves them (issue 14): (managers to add to Raft
    again: recorded and wanted as managers, but their Raft add was lost with
    a leader that died before committing it), (demotions to finish: the
    Raft removal committed but the record was not rewritten)."""
    have = set(members)
    add, finish = [], []
    for n in sorted(snap.nodes.values(), key=lambda n: n.id):
        addr = n.manager_status.raft_addr
        if n.role != pb.NodeSpec.MANAGER or not addr or addr in have:
            continue
        if n.spec.desired_role == pb.NodeSpec.MANAGER:
            add.append(n)
        else:
            finish.append(n)
    return add, finish


def with_membership_marker(cluster: pb.Cluster, change: str, now: float) -> pb.Cluster:
    """A copy of `cluster` carrying the marker ("" and 0 clear it)."""
    out = pb.Cluster()
    out.CopyFrom(cluster)
    out.membership_change = change
    out.membership_change_at = now
    return out


# ---------------------------------------------------------------- node records


def joined_node(node_id: str, manager: bool, request: ca_pb2.IssueNodeCertificateRequest, peer_ip: str, now: float) -> pb.Node:
    """The record of a node that has just been issued its certificate: state
    UNKNOWN until its agent opens a session."""
    role = pb.NodeSpec.MANAGER if manager else pb.NodeSpec.WORKER
    node = pb.Node(
        id=node_id,
        role=role,
        spec=pb.NodeSpec(desired_role=role, availability=pb.NodeSpec.ACTIVE),
        description=pb.NodeDescription(hostname=request.hostname),
        status=pb.NodeStatus(state=pb.NodeStatus.UNKNOWN, addr=request.addr or peer_ip, timestamp=now, message="joined"),
        api_addr=request.api_addr,
        raft_addr=request.raft_addr,
    )
    return as_manager(node) if manager else node


def as_manager(node: pb.Node) -> pb.Node:
    """A copy of `node` recorded as a manager, reachable at the Raft and API
    addresses it reported."""
    out = pb.Node()
    out.CopyFrom(node)
    out.role = pb.NodeSpec.MANAGER
    out.manager_status.raft_addr = node.raft_addr
    out.manager_status.api_addr = node.api_addr
    return out


def as_worker(node: pb.Node) -> pb.Node:
    """A copy of `node` recorded as a worker that is meant to stay one (its
    agent demotes itself if its certificate still says manager)."""
    out = pb.Node()
    out.CopyFrom(node)
    out.role = pb.NodeSpec.WORKER
    out.spec.desired_role = pb.NodeSpec.WORKER
    out.ClearField("manager_status")
    return out


def with_manager_view(node: pb.Node, leader_raft_addr: str | None, reachable: set[str]) -> pb.Node:
    """A manager's node with Leader / Reachable / Unreachable filled in from
    one manager's Raft view (not stored); other nodes unchanged."""
    if node.role != pb.NodeSpec.MANAGER:
        return node
    out = pb.Node()
    out.CopyFrom(node)
    ms = out.manager_status
    ms.leader = bool(ms.raft_addr) and ms.raft_addr == leader_raft_addr
    ms.reachability = pb.ManagerStatus.REACHABLE if ms.raft_addr in reachable else pb.ManagerStatus.UNREACHABLE
    return out


# ---------------------------------------------------------------- recovery


def sole_manager_state(snap: st.Snapshot, me: pb.Node, raft_secret: bytes, reason: str) -> list[StoredObject]:
    """Copies of every object of `snap` as a cluster with `me` as its only
    manager has them (restore, force-new-cluster): the cluster object with
    the new Raft secret and no membership marker; `me` keeping the labels and
    availability its old record had; every other manager a worker that must
    stay one, DOWN with `reason` (its agent demotes itself if it ever comes
    back: its old Raft can no longer reach the new one, whose secret changed).
    In creation order: networks, secrets and configs before the services
    that name them."""
    if snap.cluster is None:
        raise errors.FailedPrecondition("the state holds no cluster object to recreate the cluster from")
    cluster = with_membership_marker(snap.cluster, "", 0)
    cluster.raft_secret = raft_secret
    # A new secret (issue 13): a new epoch, and nothing older accepted.
    cluster.raft_secret_epoch += 1
    cluster.raft_secret_previous = b""
    out: list[StoredObject] = [cluster]
    for n in sorted(snap.nodes.values(), key=lambda n: n.id):
        if n.id == me.id:
            continue
        if n.role == pb.NodeSpec.MANAGER:
            n = as_worker(n)
            n.status.state = pb.NodeStatus.DOWN
            n.status.message = reason
        else:
            n = copy.deepcopy(n)
        out.append(n)
    mine = copy.deepcopy(me)
    old = snap.nodes.get(me.id)
    if old is not None:
        mine.spec.labels.update(old.spec.labels)
        mine.spec.availability = old.spec.availability
    out.append(mine)
    out.extend(copy.deepcopy(snap.networks[k]) for k in sorted(snap.networks))
    out.extend(copy.deepcopy(snap.secrets[k]) for k in sorted(snap.secrets))
    out.extend(copy.deepcopy(snap.configs[k]) for k in sorted(snap.configs))
    out.extend(copy.deepcopy(snap.services[k]) for k in sorted(snap.services))
    out.extend(copy.deepcopy(snap.tasks[k]) for k in sorted(snap.tasks))
    return out
