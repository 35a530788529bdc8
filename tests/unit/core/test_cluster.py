"""Pure cluster rules (swarmlet.core.cluster): heartbeat settings, liveness,
what a session carries, quorum arithmetic, the membership marker, node
records."""

from __future__ import annotations

import pytest

from swarmlet import errors
from swarmlet.api import ca_pb2
from swarmlet.api import dispatcher_pb2 as dpb
from swarmlet.api import objects_pb2 as pb
from swarmlet.core import cluster as cl
from swarmlet.core import state as st


def node(nid: str, role: int = pb.NodeSpec.WORKER, state: int = pb.NodeStatus.READY, raft: str = "", api: str = "") -> pb.Node:
    n = pb.Node(
        id=nid,
        role=role,
        spec=pb.NodeSpec(desired_role=role),
        status=pb.NodeStatus(state=state, addr="10.0.0.1"),
        raft_addr=raft,
        api_addr=api,
    )
    if role == pb.NodeSpec.MANAGER:
        n.manager_status.raft_addr, n.manager_status.api_addr = raft, api
    return n


def snapshot(*nodes: pb.Node, spec: pb.ClusterSpec | None = None, tasks: tuple[pb.Task, ...] = ()) -> st.Snapshot:
    snap = st.Snapshot(nodes={n.id: n for n in nodes}, tasks={t.id: t for t in tasks})
    if spec is not None:
        snap.clusters["c"] = pb.Cluster(id="c", spec=spec)
    return snap


def test_heartbeat_settings_come_from_the_cluster_with_defaults() -> None:
    assert cl.heartbeat_settings(snapshot()) == (cl.DEFAULT_HEARTBEAT_PERIOD, cl.DEFAULT_NODE_DOWN_AFTER)
    assert cl.heartbeat_settings(snapshot(spec=pb.ClusterSpec())) == (0.5, 3.0)
    assert cl.heartbeat_settings(snapshot(spec=pb.ClusterSpec(heartbeat_period=2, node_down_after=9))) == (2, 9)
    spec = cl.initial_spec(["10.9.0.0/16"], 26)
    assert (spec.heartbeat_period, spec.node_down_after, spec.task_history_limit) == (0.5, 3.0, 5)
    assert (list(spec.default_address_pool), spec.default_subnet_size) == (["10.9.0.0/16"], 26)


def test_heartbeats_stretch_with_the_node_count_past_the_leaders_rate() -> None:
    spec = pb.ClusterSpec(heartbeat_period=2, node_down_after=6)
    # 400 nodes every 2 s is the rate itself: no stretch.
    assert cl.MAX_HEARTBEATS_PER_SECOND == 200
    many = [node(f"n{i}") for i in range(400)]
    assert cl.heartbeat_settings(snapshot(*many, spec=spec)) == (2, 6)
    # One more node: the period and the down delay stretch alike, by a
    # quarter step (not by 401/400).
    many.append(node("n400"))
    assert cl.heartbeat_settings(snapshot(*many, spec=spec)) == (2.5, 7.5)
    # 1,000 nodes: Docker Swarm's defaults, 5 s and 15 s.
    thousand = [node(f"n{i}") for i in range(1000)]
    assert cl.heartbeat_settings(snapshot(*thousand, spec=spec)) == (5, 15)
    # The default 0.5 s period stretches from 100 nodes on.
    assert cl.heartbeat_stretch(100, 0.5) == 1.0
    assert cl.heartbeat_stretch(101, 0.5) == 1.25
    assert cl.heartbeat_stretch(1000, 0.5) == 10.0
    # The rate the leader answers never exceeds the cap, and the stretch never
    # shrinks as the cluster grows.
    last = 1.0
    for n in range(1, 3000, 7):
        for period in (0.1, 0.5, 2.0, 5.0):
            s = cl.heartbeat_stretch(n, period)
            assert s >= 1.0 and n / (period * s) <= cl.MAX_HEARTBEATS_PER_SECOND + 1e-9
        s = cl.heartbeat_stretch(n, 2.0)
        assert s >= last
        last = s


def test_a_new_leader_waits_one_more_node_down_delay() -> None:
    spec = pb.ClusterSpec(heartbeat_period=2, node_down_after=6)
    assert cl.new_leader_grace(snapshot(node("w"), spec=spec)) == 6
    # Stretched with the heartbeats on a large cluster.
    assert cl.new_leader_grace(snapshot(*[node(f"n{i}") for i in range(1000)], spec=spec)) == 15


def test_a_stretched_cluster_judges_silence_by_the_stretched_delay() -> None:
    spec = pb.ClusterSpec(heartbeat_period=2, node_down_after=6)
    nodes = [node(f"n{i}") for i in range(1000)]
    snap = snapshot(*nodes, spec=spec)
    seen = {n.id: 100.0 for n in nodes}
    seen["n0"] = 100.0 - 10.0  # silent 10 s: past 6, within the stretched 15
    seen["n1"] = 100.0 - 16.0
    assert [n.id for n, _ in cl.silent_nodes(snap, seen, 100.0)] == ["n1"]


def test_silent_nodes_are_those_quiet_longer_than_the_setting() -> None:
    snap = snapshot(
        node("quiet"),
        node("fresh"),
        node("unseen"),
        node("already-down", state=pb.NodeStatus.DOWN),
        spec=pb.ClusterSpec(node_down_after=2.0),
    )
    seen = {"quiet": 100.0, "fresh": 108.5, "already-down": 0.0}
    silent = cl.silent_nodes(snap, seen, now=110.0)
    assert [(n.id, silence) for n, silence in silent] == [("quiet", 10.0)]
    # Exactly at the limit is not yet down.
    assert cl.silent_nodes(snap, {"quiet": 108.0}, now=110.0) == []
    status = cl.down_status(silent[0][0], 10.0, 1234.0)
    assert (status.state, status.addr, status.timestamp) == (pb.NodeStatus.DOWN, "10.0.0.1", 1234.0)
    assert status.message == "heartbeat failure: none for 10.0s"


def test_a_session_carries_the_nodes_tasks_and_the_managers() -> None:
    me = node("n1")
    me.spec.availability = pb.NodeSpec.DRAIN
    m1 = node("m1", pb.NodeSpec.MANAGER, raft="10.0.0.1:4243", api="10.0.0.1:4244")
    m0 = node("m0", pb.NodeSpec.MANAGER, raft="10.0.0.0:4243", api="10.0.0.0:4244")
    m_new = node("m2", pb.NodeSpec.MANAGER)  # has not reported its API address yet
    tasks = (pb.Task(id="b", node_id="n1"), pb.Task(id="a", node_id="n1"), pb.Task(id="c", node_id="m1"))
    snap = snapshot(me, m1, m0, m_new, spec=pb.ClusterSpec(heartbeat_period=1.5), tasks=tasks)
    net = dpb.NetworkAssignment(network=pb.Network(id="net"))
    msg = cl.session_message(snap, me, "sess", [net])
    assert (msg.session_id, msg.node_id, msg.heartbeat_period) == ("sess", "n1", 1.5)
    assert [t.id for t in msg.tasks] == ["a", "b"]
    assert list(msg.managers) == ["10.0.0.0:4244", "10.0.0.1:4244"]
    assert msg.availability == pb.NodeSpec.DRAIN and msg.desired_role == pb.NodeSpec.WORKER
    assert [n.network.id for n in msg.networks] == ["net"]
    assert cl.manager_api_addr(snap, "10.0.0.1:4243") == "10.0.0.1:4244"
    assert cl.manager_api_addr(snap, "10.0.0.9:4243") == ""
    assert cl.manager_api_addr(snap, None) == ""


def test_removing_a_member_must_leave_a_reachable_majority() -> None:
    members = ["a", "b", "c"]
    assert cl.majority(1) == 1 and cl.majority(2) == 2 and cl.majority(3) == 2 and cl.majority(4) == 3
    assert cl.can_remove_member(members, {"a", "b", "c"}, "c")
    assert cl.can_remove_member(members, {"a", "b"}, "c")  # removing the unreachable one
    assert not cl.can_remove_member(members, {"a", "b"}, "b")  # a and c left, only a reachable
    assert not cl.can_remove_member(["a"], {"a"}, "a")  # nobody left


def test_the_membership_marker_expires() -> None:
    free = pb.Cluster()
    assert not cl.membership_change_in_progress(free, 1000.0)
    held = cl.with_membership_marker(free, "add 10.0.0.5:4243", 1000.0)
    assert free.membership_change == ""  # a copy
    assert cl.membership_change_in_progress(held, 1000.0 + cl.MEMBERSHIP_MARKER_TTL - 1)
    assert not cl.membership_change_in_progress(held, 1000.0 + cl.MEMBERSHIP_MARKER_TTL)
    cleared = cl.with_membership_marker(held, "", 0)
    assert not cl.membership_change_in_progress(cleared, 1000.0)


def test_node_records_of_joining_promotion_and_demotion() -> None:
    req = ca_pb2.IssueNodeCertificateRequest(hostname="h", addr="", api_addr="10.0.0.5:4244", raft_addr="10.0.0.5:4243")
    worker = cl.joined_node("w", False, req, "10.0.0.99", 50.0)
    assert (worker.role, worker.spec.desired_role, worker.spec.availability) == (
        pb.NodeSpec.WORKER,
        pb.NodeSpec.WORKER,
        pb.NodeSpec.ACTIVE,
    )
    assert (worker.status.state, worker.status.addr, worker.status.timestamp) == (pb.NodeStatus.UNKNOWN, "10.0.0.99", 50.0)
    assert not worker.HasField("manager_status")

    manager = cl.joined_node("m", True, req, "10.0.0.99", 50.0)
    assert (manager.role, manager.spec.desired_role) == (pb.NodeSpec.MANAGER, pb.NodeSpec.MANAGER)
    assert (manager.manager_status.raft_addr, manager.manager_status.api_addr) == ("10.0.0.5:4243", "10.0.0.5:4244")

    promoted = cl.as_manager(worker)
    assert promoted.role == pb.NodeSpec.MANAGER and promoted.manager_status.raft_addr == "10.0.0.5:4243"
    assert worker.role == pb.NodeSpec.WORKER  # a copy
    demoted = cl.as_worker(manager)
    assert (demoted.role, demoted.spec.desired_role) == (pb.NodeSpec.WORKER, pb.NodeSpec.WORKER)
    assert not demoted.HasField("manager_status")


def test_the_manager_view_marks_leader_and_reachability() -> None:
    m = node("m", pb.NodeSpec.MANAGER, raft="10.0.0.1:4243")
    leader = cl.with_manager_view(m, "10.0.0.1:4243", {"10.0.0.1:4243"}).manager_status
    assert leader.leader and leader.reachability == pb.ManagerStatus.REACHABLE
    other = cl.with_manager_view(m, "10.0.0.2:4243", set()).manager_status
    assert not other.leader and other.reachability == pb.ManagerStatus.UNREACHABLE
    w = node("w")
    assert cl.with_manager_view(w, "10.0.0.1:4243", set()) is w


def test_recreating_needs_a_cluster_object() -> None:
    with pytest.raises(errors.FailedPrecondition, match="no cluster object"):
        cl.sole_manager_state(snapshot(node("n")), node("me"), b"s", "gone")


def test_an_add_can_commit_without_the_newcomer_from_three_reachable_members() -> None:
    assert not cl.add_can_commit_without_newcomer(["a"], {"a"})  # 2 members: needs both
    assert cl.add_can_commit_without_newcomer(["a", "b"], {"a", "b"})  # 3 members: the 2 old ones are a majority
    assert cl.add_can_commit_without_newcomer(["a", "b", "c"], {"a", "b", "c"})  # 4: 3 without it
    assert not cl.add_can_commit_without_newcomer(["a", "b", "c"], {"a", "b"})


def test_membership_repairs_find_lost_adds_and_unfinished_demotions() -> None:
    def node(nid: str, role: int, desired: int, raft: str) -> pb.Node:
        n = pb.Node(id=nid, role=role, spec=pb.NodeSpec(desired_role=desired))
        n.manager_status.raft_addr = raft
        return n

    m, w = pb.NodeSpec.MANAGER, pb.NodeSpec.WORKER
    snap = st.Snapshot()
    for n in (
        node("ok", m, m, "10.0.0.1:4243"),
        node("lost-add", m, m, "10.0.0.2:4243"),
        node("half-demoted", m, w, "10.0.0.3:4243"),
        node("leaving", m, w, "10.0.0.4:4243"),  # still a member: its demotion is running
        node("worker", w, w, ""),
    ):
        snap.nodes[n.id] = n
    add, finish = cl.membership_repairs(snap, ["10.0.0.1:4243", "10.0.0.4:4243"])
    assert [n.id for n in add] == ["lost-add"] and [n.id for n in finish] == ["half-demoted"]
