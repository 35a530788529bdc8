"""The CLI end to end against a fake Control service on a unix socket: requests it
sends, what it prints, progress until convergence or failure."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from typer.testing import CliRunner

from swarmlet.api import control_pb2 as cpb
from swarmlet.api import control_pb2_grpc
from swarmlet.api import objects_pb2 as pb
from swarmlet.cli import progress
from swarmlet.cli.main import app
from swarmlet.core import state as st
from swarmlet.core import views

runner = CliRunner()


def _fields(msg: cpb.ServiceLogLine) -> dict[str, object]:
    return {f.name: v for f, v in msg.ListFields()}


class FakeControl(control_pb2_grpc.ControlServicer):
    """Just enough of a manager: services by id or name, scripted task lists,
    and progress judged by the real core/views over them."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: list[object] = []
        self.services: dict[str, pb.Service] = {}
        self.tasks: list[pb.Task] = []
        # called on every ServiceProgress so a test can make tasks progress over time
        self.on_poll: Callable[[FakeControl], None] = lambda fake: None
        self.polls = 0
        self.nodes = [
            pb.Node(
                id="node1",
                role=pb.NodeSpec.MANAGER,
                description=pb.NodeDescription(hostname="host-1", engine_version="20.10"),
                status=pb.NodeStatus(state=pb.NodeStatus.READY),
            ),
            pb.Node(
                id="node2",
                role=pb.NodeSpec.WORKER,
                description=pb.NodeDescription(hostname="host-2", engine_version="20.10"),
                status=pb.NodeStatus(state=pb.NodeStatus.READY),
            ),
        ]

    def _find(self, ref: str, context: grpc.ServicerContext) -> pb.Service:
        for s in self.services.values():
            if ref in (s.id, s.spec.name) or s.id.startswith(ref):
                return s
        context.abort(grpc.StatusCode.NOT_FOUND, f"service {ref} not found")
        raise AssertionError

    def Info(self, request: cpb.InfoRequest, context: grpc.ServicerContext) -> cpb.InfoResponse:
        return cpb.InfoResponse(state="active", node_id="node1", role="manager", is_leader=True, nodes=2, managers_count=1)

    def Init(self, request: cpb.InitRequest, context: grpc.ServicerContext) -> cpb.InitResponse:
        self.requests.append(request)
        return cpb.InitResponse(node_id="node1", worker_token="SWMTKN-w", manager_token="SWMTKN-m", api_addr="10.0.0.1:4242")

    def Join(self, request: cpb.JoinRequest, context: grpc.ServicerContext) -> cpb.JoinResponse:
        self.requests.append(request)
        return cpb.JoinResponse(node_id="node9", role="worker")

    def JoinToken(self, request: cpb.JoinTokenRequest, context: grpc.ServicerContext) -> cpb.JoinTokenResponse:
        self.requests.append(request)
        return cpb.JoinTokenResponse(token=f"SWMTKN-{request.role}", api_addr="10.0.0.1:4242")

    def Leave(self, request: cpb.LeaveRequest, context: grpc.ServicerContext) -> cpb.LeaveResponse:
        if not request.force:
            context.abort(
                grpc.StatusCode.FAILED_PRECONDITION, "this node is a manager: use --force to leave (it may break the quorum)"
            )
        return cpb.LeaveResponse()

    def CreateService(self, request: cpb.CreateServiceRequest, context: grpc.ServicerContext) -> cpb.ServiceResponse:
        self.requests.append(request)
        svc = pb.Service(id="svc0123456789abcdef", spec=request.spec, spec_version=1)
        with self.lock:
            self.services[svc.id] = svc
        return cpb.ServiceResponse(service=svc)

    def GetService(self, request: cpb.GetServiceRequest, context: grpc.ServicerContext) -> cpb.ServiceResponse:
        with self.lock:
            return cpb.ServiceResponse(service=self._find(request.ref, context))

    def ListServices(self, request: cpb.ListServicesRequest, context: grpc.ServicerContext) -> cpb.ListServicesResponse:
        return cpb.ListServicesResponse(
            services=[
                cpb.ServiceSummary(service=s, running=1, desired=s.spec.replicated.replicas) for s in self.services.values()
            ]
        )

    def ScaleService(self, request: cpb.ScaleServiceRequest, context: grpc.ServicerContext) -> cpb.ServiceResponse:
        with self.lock:
            svc = self._find(request.ref, context)
            svc.spec.replicated.replicas = request.replicas
            svc.spec_version += 1
            return cpb.ServiceResponse(service=svc)

    def RemoveService(self, request: cpb.RemoveServiceRequest, context: grpc.ServicerContext) -> cpb.RemoveServiceResponse:
        with self.lock:
            svc = self._find(request.ref, context)
            del self.services[svc.id]
        return cpb.RemoveServiceResponse(id=svc.id)

    def UpdateService(self, request: cpb.UpdateServiceRequest, context: grpc.ServicerContext) -> cpb.ServiceResponse:
        self.requests.append(request)
        with self.lock:
            svc = self._find(request.ref, context)
            if request.version != svc.meta.version:
                context.abort(grpc.StatusCode.ABORTED, "the service changed meanwhile")
            if request.spec.task != svc.spec.task:
                svc.spec_version += 1
                svc.update_status.CopyFrom(pb.UpdateStatus(state=pb.UpdateStatus.UPDATING, started_at=time.time()))
            svc.spec.CopyFrom(request.spec)
            svc.meta.version += 1
            return cpb.ServiceResponse(service=svc)

    def ServiceProgress(self, request: cpb.ServiceProgressRequest, context: grpc.ServicerContext) -> cpb.ServiceProgressResponse:
        with self.lock:
            self.polls += 1
            svc = self._find(request.ref, context)
            self.on_poll(self)
            snap = st.Snapshot(
                services=dict(self.services), tasks={t.id: t for t in self.tasks}, nodes={n.id: n for n in self.nodes}
            )
            return views.service_progress(snap, svc.id, time.time())

    def ListTasks(self, request: cpb.ListTasksRequest, context: grpc.ServicerContext) -> cpb.ListTasksResponse:
        with self.lock:
            if request.service_ref:
                self._find(request.service_ref, context)
            tasks = [t for t in self.tasks if not request.node_ref or t.node_id == request.node_ref]
            return cpb.ListTasksResponse(tasks=tasks, node_names={"node1": "host-1", "node2": "host-2"})

    def ServiceLogs(self, request: cpb.ServiceLogsRequest, context: grpc.ServicerContext) -> Iterator[cpb.ServiceLogLine]:
        self.requests.append(request)
        svc = self._find(request.ref, context)
        details = "swarmlet.node.id=node1,swarmlet.service.id=svc,swarmlet.task.id=task1" if request.details else ""
        line = cpb.ServiceLogLine(
            task_id="task1234567890abc", node_id="node1", node_name="host-1", slot=1, service_name=svc.spec.name, details=details
        )
        yield cpb.ServiceLogLine(stream="stdout", data=b"hello\n", **_fields(line))
        yield cpb.ServiceLogLine(stream="stderr", data=b"oops", **_fields(line))

    def ListNodes(self, request: cpb.ListNodesRequest, context: grpc.ServicerContext) -> cpb.ListNodesResponse:
        return cpb.ListNodesResponse(nodes=self.nodes, leader_id="node1")

    def GetNode(self, request: cpb.GetNodeRequest, context: grpc.ServicerContext) -> cpb.NodeResponse:
        for n in self.nodes:
            if request.ref in (n.id, n.description.hostname):
                return cpb.NodeResponse(node=n)
        context.abort(grpc.StatusCode.NOT_FOUND, f"node {request.ref} not found")
        raise AssertionError

    def UpdateNode(self, request: cpb.UpdateNodeRequest, context: grpc.ServicerContext) -> cpb.NodeResponse:
        self.requests.append(request)
        return cpb.NodeResponse(node=self.nodes[1])

    def ChangeRole(self, request: cpb.ChangeRoleRequest, context: grpc.ServicerContext) -> cpb.NodeResponse:
        self.requests.append(request)
        return cpb.NodeResponse(node=self.nodes[1])


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[tuple[FakeControl, str]]:
    servicer = FakeControl()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    control_pb2_grpc.add_ControlServicer_to_server(servicer, server)
    host = f"unix://{tmp_path}/swarmlet.sock"
    server.add_insecure_port(host)
    server.start()
    try:
        yield servicer, host
    finally:
        server.stop(None)


def run(host: str, *args: str):  # noqa: ANN201 - typer's Result
    return runner.invoke(app, ["-H", host, *args])


def _task(
    svc_id: str,
    slot: int,
    state: int,
    err: str = "",
    node: str = "node1",
    version: int = 1,
    created: float = 1.0,
    tid: str | None = None,
    desired: int = pb.RUNNING,
) -> pb.Task:
    return pb.Task(
        id=tid or f"task{slot}{state}{int(created)}",
        service_id=svc_id,
        service_name="web",
        slot=slot,
        node_id=node,
        spec_version=version,
        desired_state=desired,
        meta=pb.Meta(created_at=created),
        spec=pb.TaskSpec(container=pb.ContainerSpec(image="nginx")),
        status=pb.TaskStatus(state=state, err=err, timestamp=1.0),
    )


def test_create_builds_the_spec(fake: tuple[FakeControl, str]) -> None:
    servicer, host = fake
    result = run(
        host,
        "service",
        "create",
        "-d",
        "--name",
        "web",
        "--replicas",
        "3",
        "-e",
        "A=1",
        "--label",
        "team=x",
        "--container-label",
        "c=1",
        "--constraint",
        "node.role == worker",
        "--reserve-cpu",
        "0.5",
        "--reserve-memory",
        "64M",
        "--limit-memory",
        "1.5G",
        "--restart-condition",
        "on-failure",
        "--restart-max-attempts",
        "3",
        "--restart-window",
        "1m",
        "--stop-grace-period",
        "30s",
        "--entrypoint",
        "/bin/sh -e",
        "--health-cmd",
        "curl -f localhost",
        "--health-interval",
        "2s",
        "--health-retries",
        "5",
        "alpine:3",
        "-c",
        "echo hi --replicas 9",
    )
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "svc0123456789abcdef"
    spec = servicer.requests[-1].spec
    assert spec.name == "web" and spec.replicated.replicas == 3 and spec.labels == {"team": "x"}
    c = spec.task.container
    assert c.image == "alpine:3"
    assert list(c.args) == ["-c", "echo hi --replicas 9"]
    assert list(c.command) == ["/bin/sh", "-e"]
    assert list(c.env) == ["A=1"] and dict(c.labels) == {"c": "1"}
    assert c.stop_grace_period == 30.0
    assert c.has_healthcheck and list(c.healthcheck.test) == ["CMD-SHELL", "curl -f localhost"]
    assert c.healthcheck.interval == 2.0 and c.healthcheck.retries == 5
    assert list(spec.task.placement.constraints) == ["node.role==worker"]
    assert spec.task.resources.reservations.nano_cpus == 500_000_000
    assert spec.task.resources.reservations.memory_bytes == 64 * 1024**2
    assert spec.task.resources.limits.memory_bytes == 3 * 1024**3 // 2
    r = spec.task.restart
    assert (r.condition, r.delay, r.max_attempts, r.window) == (pb.RestartPolicy.ON_FAILURE, 5.0, 3, 60.0)


def test_create_defaults_and_global(fake: tuple[FakeControl, str]) -> None:
    servicer, host = fake
    assert run(host, "service", "create", "-d", "nginx").exit_code == 0
    spec = servicer.requests[-1].spec
    assert spec.replicated.replicas == 1
    assert spec.task.restart.condition == pb.RestartPolicy.ANY and spec.task.restart.delay == 5.0
    assert spec.task.container.stop_grace_period == 10.0
    assert not spec.task.container.has_healthcheck
    assert not spec.task.HasField("resources")
    assert run(host, "service", "create", "-d", "--mode", "global", "--no-healthcheck", "nginx").exit_code == 0
    spec = servicer.requests[-1].spec
    assert spec.WhichOneof("mode") == "global"
    assert list(spec.task.container.healthcheck.test) == ["NONE"]


def test_create_waits_until_converged(fake: tuple[FakeControl, str]) -> None:
    servicer, host = fake

    def advance(f: FakeControl) -> None:
        sid = next(iter(f.services))
        state = pb.PENDING if f.polls < 2 else (pb.STARTING if f.polls < 3 else pb.RUNNING)
        f.tasks = [_task(sid, s, state, tid=f"t{s}") for s in (1, 2)]

    servicer.on_poll = advance
    result = run(host, "service", "create", "--timeout", "20s", "--name", "web", "--replicas", "2", "nginx")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "svc0123456789abcdef"
    assert "overall progress: 0 out of 2 tasks" in lines
    assert "overall progress: 2 out of 2 tasks" in lines
    assert any(ln.startswith("1/2: running") for ln in lines)
    assert lines[-1] == "verify: Service converged"
    assert "\x1b" not in result.stdout  # not a terminal: no redraw codes


def test_create_fails_when_a_task_cannot_be_placed(fake: tuple[FakeControl, str], monkeypatch: pytest.MonkeyPatch) -> None:
    servicer, host = fake
    monkeypatch.setattr(progress, "GRACE", 0.3)

    def stuck(f: FakeControl) -> None:
        sid = next(iter(f.services))
        f.tasks = [_task(sid, 1, pb.PENDING, err="no suitable node (insufficient memory)", node="", tid="p1")]

    servicer.on_poll = stuck
    result = run(host, "service", "create", "--timeout", "20s", "--name", "web", "nginx")
    assert result.exit_code == 1
    assert result.stderr.strip() == "Error: web.1: no suitable node (insufficient memory)"


def test_create_hidden_timeout(fake: tuple[FakeControl, str]) -> None:
    servicer, host = fake
    servicer.on_poll = lambda f: None  # no tasks ever
    result = run(host, "service", "create", "--timeout", "500ms", "--name", "web", "nginx")
    assert result.exit_code == 1
    assert "did not converge within 0.5s" in result.stderr


def test_create_quiet_prints_only_the_id(fake: tuple[FakeControl, str]) -> None:
    servicer, host = fake

    def running(f: FakeControl) -> None:
        f.tasks = [_task(next(iter(f.services)), 1, pb.RUNNING)]

    servicer.on_poll = running
    result = run(host, "service", "create", "--timeout", "20s", "-q", "nginx")
    assert result.exit_code == 0
    assert result.stdout == "svc0123456789abcdef\n"


def test_scale_then_progress(fake: tuple[FakeControl, str]) -> None:
    servicer, host = fake
    assert run(host, "service", "create", "-d", "--name", "web", "nginx").exit_code == 0

    def scaled(f: FakeControl) -> None:
        # tasks created before the scale keep their spec_version; their spec is
        # still the service's, so they count as current
        svc = f.services["svc0123456789abcdef"]
        f.tasks = [_task(svc.id, s, pb.RUNNING, tid=f"t{s}") for s in (1, 2, 3)]
        for t in f.tasks:
            t.spec.CopyFrom(svc.spec.task)

    servicer.on_poll = scaled
    result = run(host, "service", "scale", "--timeout", "20s", "web=3")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == "web scaled to 3"
    assert "verify: Service converged" in result.stdout
    result = run(host, "service", "scale", "-d", "web=1", "nope=2")
    assert result.exit_code == 1
    assert "web scaled to 1" in result.stdout
    assert "Error: service nope not found" in result.stderr


def test_ls_ps_inspect_rm(fake: tuple[FakeControl, str]) -> None:
    servicer, host = fake
    run(host, "service", "create", "-d", "--name", "web", "--replicas", "2", "nginx")
    sid = "svc0123456789abcdef"
    servicer.tasks = [
        _task(sid, 1, pb.RUNNING, created=5.0, tid="new1"),
        _task(sid, 1, pb.FAILED, err="exit 1", created=2.0, tid="old1", desired=pb.SHUTDOWN),
        _task(sid, 2, pb.RUNNING, node="node2", created=3.0, tid="new2"),
    ]
    ls = run(host, "service", "ls")
    assert ls.exit_code == 0
    assert ls.stdout.splitlines()[1].split() == ["svc012345678", "web", "replicated", "1/2", "nginx"]
    assert json.loads(run(host, "service", "ls", "--format", "json").stdout)["services"][0]["desired"] == 2

    ps = run(host, "service", "ps", "web")
    assert ps.exit_code == 0, ps.output
    rows = ps.stdout.splitlines()
    assert rows[1].split()[:4] == ["new1", "web.1", "nginx", "host-1"]
    assert rows[2].split()[:4] == ["old1", "\\_", "web.1", "nginx"]
    assert rows[3].split()[:4] == ["new2", "web.2", "nginx", "host-2"]
    assert '"exit 1"' in rows[2]
    assert run(host, "service", "ps", "-q", "-f", "desired-state=running", "web").stdout.split() == ["new1", "new2"]

    data = json.loads(run(host, "service", "inspect", "web").stdout)
    assert data[0]["spec"]["name"] == "web"
    assert "Service Mode:" in run(host, "service", "inspect", "--pretty", "web").stdout

    missing = run(host, "service", "inspect", "web", "ghost")
    assert missing.exit_code == 1
    assert len(json.loads(missing.stdout)) == 1
    assert missing.stderr.strip() == "Error: service ghost not found"

    rm = run(host, "service", "rm", "web")
    assert rm.exit_code == 0 and rm.stdout.strip() == "web"
    again = run(host, "service", "rm", "web")
    assert again.exit_code == 1 and again.stderr.strip() == "Error: service web not found"


def test_logs_prefix_and_streams(fake: tuple[FakeControl, str]) -> None:
    servicer, host = fake
    run(host, "service", "create", "-d", "--name", "web", "nginx")
    result = run(host, "service", "logs", "--tail", "10", "-t", "web")
    assert result.exit_code == 0, result.output
    assert result.stdout == "web.1.task12345678@host-1    | hello\n"
    assert result.stderr == "web.1.task12345678@host-1    | oops\n"
    req = servicer.requests[-1]
    # The manager resolves the service or task (issue 16: `service logs TASK`) and names it in each line.
    assert (req.ref, req.tail, req.timestamps, req.follow) == ("web", 10, True, False)
    assert (req.since, req.until, req.details) == (0.0, 0.0, False)
    assert run(host, "service", "logs", "web").exit_code == 0
    assert servicer.requests[-1].tail == -1  # all


def test_logs_since_until_details(fake: tuple[FakeControl, str]) -> None:
    servicer, host = fake
    run(host, "service", "create", "-d", "--name", "web", "nginx")
    before = time.time()
    result = run(host, "service", "logs", "--since", "10m", "--until", "1700000000", "--details", "web")
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        "web.1.task12345678@host-1    | swarmlet.node.id=node1,swarmlet.service.id=svc,swarmlet.task.id=task1 hello\n"
    )
    req = servicer.requests[-1]
    assert before - 600 - 1 < req.since <= time.time() - 600
    assert (req.until, req.details) == (1700000000.0, True)
    bad = run(host, "service", "logs", "--since", "yesterday", "web")
    assert bad.exit_code == 2 and "--since" in bad.output and "invalid time" in bad.output
    missing = run(host, "service", "logs", "nope")
    assert missing.exit_code == 1 and "nope" in missing.stderr


def test_node_commands(fake: tuple[FakeControl, str]) -> None:
    servicer, host = fake
    ls = run(host, "node", "ls")
    assert ls.exit_code == 0
    assert ls.stdout.splitlines()[1].split() == ["node1", "*", "host-1", "Ready", "Active", "Leader", "20.10"]
    assert run(host, "node", "ls", "-q").stdout.split() == ["node1", "node2"]
    assert json.loads(run(host, "node", "ls", "--format", "json").stdout)["leader_id"] == "node1"
    assert json.loads(run(host, "node", "inspect", "self").stdout)[0]["id"] == "node1"
    assert "Leader:" in run(host, "node", "inspect", "--pretty", "host-1").stdout

    upd = run(
        host,
        "node",
        "update",
        "--availability",
        "drain",
        "--label-add",
        "zone=a",
        "--label-add",
        "ssd",
        "--label-rm",
        "old",
        "host-2",
    )
    assert upd.exit_code == 0 and upd.stdout.strip() == "host-2"
    req = servicer.requests[-1]
    assert req.set_availability and req.availability == pb.NodeSpec.DRAIN
    assert dict(req.label_add) == {"zone": "a", "ssd": ""} and list(req.label_rm) == ["old"]

    servicer.tasks = [_task("s", 1, pb.RUNNING, node="node1", tid="mine"), _task("s", 2, pb.RUNNING, node="node2", tid="theirs")]
    assert run(host, "node", "ps", "-q").stdout.split() == ["mine"]  # self by default
    assert run(host, "node", "ps", "-q", "node2").stdout.split() == ["theirs"]


def test_node_update_role_goes_through_change_role(fake: tuple[FakeControl, str]) -> None:
    servicer, host = fake
    r = run(host, "node", "update", "--role", "manager", "host-2")
    assert r.exit_code == 0, r.output
    (req,) = servicer.requests
    assert isinstance(req, cpb.ChangeRoleRequest) and (req.ref, req.role) == ("host-2", pb.NodeSpec.MANAGER)
    r = run(host, "node", "update", "--role", "worker", "--label-add", "a=1", "host-2")
    assert [type(x).__name__ for x in servicer.requests[1:]] == ["UpdateNodeRequest", "ChangeRoleRequest"]
    assert run(host, "node", "update", "--role", "boss", "host-2").exit_code == 2


def test_cluster_commands(fake: tuple[FakeControl, str]) -> None:
    servicer, host = fake
    init = run(host, "init", "--advertise-addr", "10.0.0.1", "--listen-port", "4242")
    assert init.exit_code == 0
    assert init.stdout.startswith("Swarm initialized: current node (node1) is now a manager.")
    assert "    swarmlet join --token SWMTKN-w 10.0.0.1:4242" in init.stdout
    assert "swarmlet join-token manager" in init.stdout
    req = servicer.requests[-1]
    assert (req.advertise_addr, req.listen_port) == ("10.0.0.1", "4242")
    assert run(host, "init", "--dispatcher-heartbeat", "2s").exit_code == 0
    assert servicer.requests[-1].dispatcher_heartbeat == 2.0
    bad = run(host, "init", "--dispatcher-heartbeat", "soon")
    assert bad.exit_code != 0 and "--dispatcher-heartbeat" in bad.output

    join = run(host, "join", "--token", "SWMTKN-w", "10.0.0.1")
    assert join.stdout.strip() == "This node joined a swarm as a worker."
    assert servicer.requests[-1].remote_addr == "10.0.0.1:4242"

    assert run(host, "join-token", "-q", "manager").stdout.strip() == "SWMTKN-manager"
    full = run(host, "join-token", "--rotate", "worker").stdout
    assert "Successfully rotated worker join token." in full
    assert "    swarmlet join --token SWMTKN-worker 10.0.0.1:4242" in full
    assert servicer.requests[-1].rotate

    leave = run(host, "leave")
    assert leave.exit_code == 1
    assert leave.stderr.strip().startswith("Error: this node is a manager: use --force")
    assert run(host, "leave", "--force").stdout.strip() == "Node left the swarm."

    info = run(host, "info")
    assert info.exit_code == 0 and "Swarm: active" in info.stdout
    assert json.loads(run(host, "info", "--format", "json").stdout)["node_id"] == "node1"


def _roll_out(final: int, message: str) -> Callable[[FakeControl], None]:
    """A rolling update the fake manager finishes on the third poll."""

    def step(f: FakeControl) -> None:
        svc = next(iter(f.services.values()))
        done = f.polls >= 3
        f.tasks = [
            _task(svc.id, s, pb.RUNNING if done or s == 1 else pb.STARTING, version=svc.spec_version, tid=f"n{s}") for s in (1, 2)
        ]
        for t in f.tasks:
            t.spec.CopyFrom(svc.spec.task)
        if done:
            svc.update_status.state = final
            svc.update_status.message = message

    return step


def test_update_follows_the_rollout(fake: tuple[FakeControl, str]) -> None:
    servicer, host = fake
    assert run(host, "service", "create", "-d", "--name", "web", "--replicas", "2", "nginx").exit_code == 0
    servicer.on_poll = _roll_out(pb.UpdateStatus.COMPLETED, "update completed")
    result = run(host, "service", "update", "--timeout", "20s", "--image", "nginx:2", "--update-parallelism", "0", "web")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "web"
    assert "overall progress: 1 out of 2 tasks" in lines and "2/2: starting" in lines
    assert "overall progress: 2 out of 2 tasks" in lines
    assert lines[-1] == "verify: Service converged (update completed)"
    req = servicer.requests[-1]
    assert req.spec.task.container.image == "nginx:2" and req.spec.update.parallelism == 0


def test_paused_update_fails_with_the_managers_message(fake: tuple[FakeControl, str]) -> None:
    servicer, host = fake
    assert run(host, "service", "create", "-d", "--name", "web", "--replicas", "2", "nginx").exit_code == 0
    servicer.on_poll = _roll_out(pb.UpdateStatus.PAUSED, "update paused: 1 of 2 new tasks failed")
    result = run(host, "service", "update", "--timeout", "20s", "-q", "--env-add", "A=1", "web")
    assert result.exit_code == 1
    assert result.stdout == "web\n"  # -q: no progress
    assert result.stderr.strip() == "Error: update paused: 1 of 2 new tasks failed"


def test_update_without_a_rollout_follows_convergence(fake: tuple[FakeControl, str]) -> None:
    servicer, host = fake
    assert run(host, "service", "create", "-d", "--name", "web", "nginx").exit_code == 0

    def running(f: FakeControl) -> None:
        svc = next(iter(f.services.values()))
        f.tasks = [_task(svc.id, s, pb.RUNNING, tid=f"t{s}") for s in (1, 2)]
        for t in f.tasks:
            t.spec.CopyFrom(svc.spec.task)

    servicer.on_poll = running
    result = run(host, "service", "update", "--timeout", "20s", "--replicas", "2", "web")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1] == "verify: Service converged"


def test_advertise_addr_is_passed_on_as_typed(fake: tuple[FakeControl, str]) -> None:
    # The daemon resolves an interface name in its own network namespace.
    servicer, host = fake
    assert run(host, "init", "--advertise-addr", "eth7").exit_code == 0
    assert servicer.requests[-1].advertise_addr == "eth7"
    assert run(host, "join", "--token", "SWMTKN-w", "--advertise-addr", "10.0.0.9", "10.0.0.1").exit_code == 0
    assert servicer.requests[-1].advertise_addr == "10.0.0.9"
