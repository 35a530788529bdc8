"""The CLI's pure formatting: tables, JSON, durations, sizes, task listings, --pretty."""

from __future__ import annotations

import json

from swarmlet.api import control_pb2 as cpb
from swarmlet.api import objects_pb2 as pb
from swarmlet.cli import output
from swarmlet.cli.service import log_prefix
from swarmlet.cli.swarm import format_info


def test_table_pads_like_docker() -> None:
    text = output.format_table(["ID", "NAME"], [["abc", "web"], ["abcdefghijklmnop", "x"]])
    lines = text.splitlines()
    # widest cell (16) + padding 3 = 19 columns
    assert lines[0] == "ID" + " " * 17 + "NAME"
    assert lines[1] == "abc" + " " * 16 + "web"
    assert lines[2] == "abcdefghijklmnop   x"


def test_table_min_width_and_no_trailing_spaces() -> None:
    text = output.format_table(["A", "B", "C"], [["1", "", "3"]])
    assert text.splitlines() == ["A         B         C", "1                   3"]


def test_table_header_only() -> None:
    assert output.format_table(["ID", "NAME"], []) == "ID        NAME"


def test_human_duration() -> None:
    h = output.human_duration
    assert h(0.2) == "Less than a second"
    assert h(1.5) == "1 second"
    assert h(5) == "5 seconds"
    assert h(59) == "59 seconds"
    assert h(61) == "About a minute"
    assert h(150) == "2 minutes"
    assert h(3600) == "About an hour"
    assert h(3 * 3600) == "3 hours"
    assert h(3 * 86400) == "3 days"
    assert h(20 * 86400) == "2 weeks"
    assert h(90 * 86400) == "3 months"
    assert h(3 * 365 * 86400) == "3 years"
    assert h(-5) == "Less than a second"


def test_time_ago() -> None:
    assert output.time_ago(100.0, 105.0) == "5 seconds ago"
    assert output.time_ago(0.0, 105.0) == ""


def test_format_duration() -> None:
    f = output.format_duration
    assert f(5) == "5s"
    assert f(90) == "1m30s"
    assert f(0.5) == "500ms"
    assert f(7200) == "2h"
    assert f(3723) == "1h2m3s"
    assert f(1.5) == "1.5s"
    assert f(0) == "0s"
    assert f(0.00025) == "250us"


def test_format_bytes_and_cpus() -> None:
    assert output.format_bytes(64 * 1024**2) == "64MiB"
    assert output.format_bytes(3 * 1024**3 // 2) == "1.5GiB"
    assert output.format_bytes(100) == "100B"
    assert output.format_bytes(0) == "0B"
    assert output.format_nano_cpus(500_000_000) == "0.5"
    assert output.format_nano_cpus(2_000_000_000) == "2"
    assert output.format_nano_cpus(0) == "0"


def test_json_keeps_proto_names_defaults_and_numbers() -> None:
    node = pb.Node(id="n1", role=pb.NodeSpec.WORKER, meta=pb.Meta(version=7))
    data = json.loads(output.to_json([node]))
    assert data[0]["id"] == "n1"
    assert data[0]["role"] == "WORKER"  # a default enum value is still shown
    assert data[0]["meta"]["version"] == 7  # uint64 as a number
    svc = pb.Service(id="s", spec=pb.ServiceSpec(name="web", replicated=pb.ReplicatedService(replicas=0)))
    d = output.message_to_dict(svc)
    assert d["spec"]["replicated"]["replicas"] == 0
    assert d["spec_version"] == 0


def _task(
    tid: str,
    slot: int,
    created: float,
    state: int = pb.RUNNING,
    desired: int = pb.RUNNING,
    node: str = "node1id",
    err: str = "",
    ts: float = 100.0,
) -> pb.Task:
    return pb.Task(
        id=tid,
        service_id="svc1",
        service_name="web",
        slot=slot,
        node_id=node,
        desired_state=desired,
        meta=pb.Meta(created_at=created),
        spec=pb.TaskSpec(container=pb.ContainerSpec(image="nginx:alpine")),
        status=pb.TaskStatus(state=state, timestamp=ts, err=err),
    )


def test_order_tasks_groups_slots_newest_first() -> None:
    tasks = [
        _task("old1", 1, 10.0, state=pb.FAILED, desired=pb.SHUTDOWN),
        _task("new2", 2, 30.0),
        _task("new1", 1, 20.0),
        _task("older1", 1, 5.0, state=pb.FAILED, desired=pb.SHUTDOWN),
    ]
    got = [(h, t.id) for h, t in output.order_tasks(tasks)]
    assert got == [(False, "new1"), (True, "old1"), (True, "older1"), (False, "new2")]


def test_task_rows_names_history_node_state_error() -> None:
    tasks = [
        _task("aaaaaaaaaaaaaaaaaaaa", 1, 20.0, ts=95.0),
        _task("bbbbbbbbbbbbbbbbbbbb", 1, 10.0, state=pb.FAILED, desired=pb.SHUTDOWN, err="x" * 40, ts=50.0),
    ]
    rows = output.task_rows(tasks, {"node1id": "host-1"}, now=100.0)
    assert rows[0] == ["aaaaaaaaaaaa", "web.1", "nginx:alpine", "host-1", "Running", "Running 5 seconds ago", ""]
    assert rows[1][1] == " \\_ web.1"
    assert rows[1][4] == "Shutdown"
    assert rows[1][5] == "Failed 50 seconds ago"
    assert rows[1][6].startswith('"xxx') and rows[1][6].endswith('…"') and len(rows[1][6]) == 32
    full = output.task_rows(tasks, {}, now=100.0, no_trunc=True)
    assert full[0][0] == "aaaaaaaaaaaaaaaaaaaa"
    assert full[0][3] == "node1id"  # no hostname known: the id
    assert full[1][6] == '"' + "x" * 40 + '"'


def test_task_rows_global_task_named_by_node() -> None:
    t = _task("t1", 0, 1.0, node="abcdefghijklmnopqrstuvwxy")
    rows = output.task_rows([t], {}, now=100.0)
    assert rows[0][1] == "web.abcdefghijkl"
    assert output.task_name(t) == "web.abcdefghijklmnopqrstuvwxy"


def test_unscheduled_task_has_empty_node() -> None:
    t = _task("t1", 1, 1.0, state=pb.PENDING, node="", err="no suitable node")
    row = output.task_rows([t], {}, now=100.0)[0]
    assert row[3] == ""
    assert row[5].startswith("Pending")
    assert row[6] == '"no suitable node"'


def test_format_task_list_json_and_quiet() -> None:
    tasks = [_task("t2", 2, 2.0), _task("t1", 1, 1.0)]
    data = json.loads(output.format_task_list(tasks, {"node1id": "h", "other": "o"}, 100.0, fmt="json"))
    assert [t["id"] for t in data["tasks"]] == ["t1", "t2"]
    assert data["node_names"] == {"node1id": "h"}
    assert output.format_task_list(tasks, {}, 100.0, quiet=True) == "t1\nt2"
    table = output.format_task_list(tasks, {}, 100.0)
    assert table.splitlines()[0].split() == ["ID", "NAME", "IMAGE", "NODE", "DESIRED", "STATE", "CURRENT", "STATE", "ERROR"]


def test_filter_tasks() -> None:
    tasks = [
        _task("t1", 1, 1.0),
        _task("t2", 2, 1.0, desired=pb.SHUTDOWN, node="n2"),
    ]
    names = {"node1id": "host-1", "n2": "host-2"}
    ids = lambda fs: [t.id for t in output.filter_tasks(tasks, fs, names)]  # noqa: E731
    assert ids({"desired-state": ["running"]}) == ["t1"]
    assert ids({"desired-state": ["running", "shutdown"]}) == ["t1", "t2"]
    assert ids({"node": ["host-2"]}) == ["t2"]
    assert ids({"node": ["node1"]}) == ["t1"]
    assert ids({"name": ["web.2"]}) == ["t2"]
    assert ids({"id": ["t1"], "desired-state": ["shutdown"]}) == []


def _node(nid: str, host: str, role: int = pb.NodeSpec.WORKER, state: int = pb.NodeStatus.READY) -> pb.Node:
    return pb.Node(
        id=nid,
        role=role,
        spec=pb.NodeSpec(availability=pb.NodeSpec.DRAIN if host == "b" else pb.NodeSpec.ACTIVE),
        description=pb.NodeDescription(hostname=host, engine_version="20.10.24"),
        status=pb.NodeStatus(state=state),
    )


def test_node_rows_manager_status_and_marker() -> None:
    nodes = [
        _node("n3", "c", pb.NodeSpec.MANAGER, pb.NodeStatus.DOWN),
        _node("n1", "a", pb.NodeSpec.MANAGER),
        _node("n2", "b"),
    ]
    rows = output.node_rows(nodes, leader_id="n1", self_id="n1")
    assert rows[0] == ["n1 *", "a", "Ready", "Active", "Leader", "20.10.24"]
    assert rows[1] == ["n2", "b", "Ready", "Drain", "", "20.10.24"]
    assert rows[2] == ["n3", "c", "Down", "Active", "Unreachable", "20.10.24"]


def test_service_rows() -> None:
    s1 = pb.Service(
        id="0123456789abcdefghij",
        spec=pb.ServiceSpec(
            name="web",
            replicated=pb.ReplicatedService(replicas=3),
            task=pb.TaskSpec(container=pb.ContainerSpec(image="nginx")),
        ),
    )
    s2 = pb.Service(id="zz", spec=pb.ServiceSpec(name="agent"))
    getattr(s2.spec, "global").SetInParent()
    rows = output.service_rows(
        [cpb.ServiceSummary(service=s1, running=2, desired=3), cpb.ServiceSummary(service=s2, running=1, desired=1)]
    )
    assert rows == [["zz", "agent", "global", "1/1", ""], ["0123456789ab", "web", "replicated", "2/3", "nginx"]]


def test_pretty_lines_alignment() -> None:
    text = output.pretty_lines([(0, "ID", "x"), (0, "Status", None), (1, "State", "Ready")])
    assert text.splitlines() == ["ID:      x", "Status:", " State:  Ready"]


def test_node_pretty_mentions_key_facts() -> None:
    n = _node("n1", "a", pb.NodeSpec.MANAGER)
    n.spec.labels["zone"] = "east"
    n.description.resources.nano_cpus = 4_000_000_000
    n.description.resources.memory_bytes = 8 * 1024**3
    n.manager_status.raft_addr = "10.0.0.1:4243"
    text = output.format_node_pretty(n, leader_id="n1")
    for needle in ("Hostname:", "Leader:", "Yes", "zone:", "east", "8GiB", "CPUs:", "10.0.0.1:4243"):
        assert needle in text


def test_service_pretty_mentions_key_facts() -> None:
    spec = pb.ServiceSpec(name="web", replicated=pb.ReplicatedService(replicas=3))
    spec.task.container.image = "nginx"
    spec.task.container.args.extend(["sh", "-c", "x"])
    spec.task.restart.delay = 5.0
    spec.task.placement.constraints.append("node.role==worker")
    spec.task.resources.reservations.memory_bytes = 64 * 1024**2
    spec.task.container.has_healthcheck = True
    spec.task.container.healthcheck.test.extend(["CMD-SHELL", "curl -f localhost"])
    text = output.format_service_pretty(pb.Service(id="s1", spec=spec))
    for needle in ("Replicated", "Replicas:", "3", "node.role==worker", "64MiB", "5s", "sh -c x", "curl -f localhost"):
        assert needle in text


def test_format_info_manager() -> None:
    info = cpb.InfoResponse(
        state="active",
        node_id="n1",
        role="manager",
        cluster_id="c1",
        addr="10.0.0.1",
        managers=["10.0.0.1:4242"],
        is_leader=True,
        nodes=3,
        managers_count=1,
        services=2,
        tasks=5,
        raft_status=json.dumps({"state": "leader", "has_quorum": True, "partners": {"b": 2}}),
    )
    text = format_info(info)
    for needle in (
        "Swarm: active",
        " NodeID: n1",
        " Is Manager: true",
        " Is Leader: true",
        " Nodes: 3",
        " Services: 2",
        " Tasks: 5",
        "  10.0.0.1:4242",
        " Raft:",
        "  has_quorum: true",
        "   b: 2",
    ):
        assert needle in text.splitlines(), needle


def test_format_info_inactive() -> None:
    assert format_info(cpb.InfoResponse(state="inactive")) == "Swarm: inactive"


def test_log_prefix() -> None:
    line = cpb.ServiceLogLine(task_id="abcdefghijklmnopq", node_id="nodeid", node_name="host-1", slot=2)
    assert log_prefix(line, "web", no_trunc=False) == "web.2.abcdefghijkl@host-1"
    assert log_prefix(line, "web", no_trunc=True) == "web.2.abcdefghijklmnopq@host-1"
    assert log_prefix(line, "web", no_trunc=False, task_ids=False) == "web.2@host-1"
    glob = cpb.ServiceLogLine(task_id="t", node_id="nodeid", slot=0)
    assert log_prefix(glob, "agent", no_trunc=False) == "agent.nodeid.t@nodeid"
