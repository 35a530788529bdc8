"""The agent's dispatcher session (agent/session.py) against real gRPC
Dispatcher servers in this process, over mutual TLS with certificates of a
real cluster CA. The session drives a real executor on the in-memory engine,
so an assignment becomes a container and its status travels back.

The servers are written for the test: they serve assignments, count calls,
and can refuse (a follower's leader hint, failed status reports, a forgotten
session) the way a manager does.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent import futures

import grpc
import pytest

from swarmlet import tls
from swarmlet.agent.executor import Executor
from swarmlet.agent.runtime.fake import FakeRuntime
from swarmlet.agent.session import AgentSession
from swarmlet.api import dispatcher_pb2 as dpb
from swarmlet.api import dispatcher_pb2_grpc as dgrpc
from swarmlet.api import objects_pb2 as pb
from swarmlet.ids import new_id
from swarmlet.manager import ca
from swarmlet.rpc import LEADER_HINT_KEY
from tests.waiting import wait_for

IMAGE = "busybox:test"
CLUSTER = "cluster1"
PERIOD = 0.1  # heartbeat period the managers ask for


class Dispatcher(dgrpc.DispatcherServicer):  # type: ignore[misc]
    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._version = 0
        self.tasks: list[pb.Task] = []
        self.managers: list[str] = []
        self.session_ids: set[str] = set()
        self.sessions: list[tuple[str, dpb.SessionRequest]] = []  # (node id, request)
        self.serials: list[str] = []  # of the certificate each session was opened with
        self.reports: list[dpb.TaskStatusReport] = []
        self.report_calls = 0
        self.fail_reports = 0  # refuse that many status reports
        self.leader_hint = ""  # refuse sessions, pointing there
        self.heartbeats = 0
        self.descriptions: list[pb.NodeDescription] = []  # received in heartbeats
        self.fail_descriptions = 0  # fail that many heartbeats carrying a description
        self.ending: set[str] = set()  # sessions whose stream is to end (a leader stepping down)
        self.answer_period = PERIOD  # the period heartbeats are answered with

    def assign(self, tasks: list[pb.Task], managers: list[str]) -> None:
        with self._lock:
            self.tasks, self.managers = tasks, managers
            self._version += 1
            self._lock.notify_all()

    def forget_sessions(self) -> None:
        """As a new leader would: it knows no session."""
        with self._lock:
            self.session_ids.clear()

    def end_sessions(self) -> None:
        """End every open session's stream, as a manager that stops leading does."""
        with self._lock:
            self.ending |= self.session_ids
            self._lock.notify_all()

    def reported(self, task_id: str, state: int) -> bool:
        with self._lock:
            return any(r.task_id == task_id and r.status.state == state for r in self.reports)

    def count(self, task_id: str) -> int:
        with self._lock:
            return sum(1 for r in self.reports if r.task_id == task_id)

    def Session(self, request: dpb.SessionRequest, context: grpc.ServicerContext) -> Iterator[dpb.SessionMessage]:
        peer = tls.peer_certificate(context)
        assert peer is not None
        ident = peer.identity
        with self._lock:
            self.sessions.append((ident.node_id, request))
            self.serials.append(peer.cert.serial)
            hint = self.leader_hint
        if hint:
            context.set_trailing_metadata(((LEADER_HINT_KEY, hint),))
            context.abort(grpc.StatusCode.UNAVAILABLE, "this manager is not the leader")
        sid = new_id()
        with self._lock:
            self.session_ids.add(sid)
        sent = -1
        while context.is_active():
            with self._lock:
                if sid in self.ending:
                    return
                if sent == self._version:
                    self._lock.wait(0.1)
                    continue
                sent = self._version
                msg = dpb.SessionMessage(
                    session_id=sid, heartbeat_period=PERIOD, tasks=self.tasks, managers=self.managers, node_id=ident.node_id
                )
            yield msg

    def Heartbeat(self, request: dpb.HeartbeatRequest, context: grpc.ServicerContext) -> dpb.HeartbeatResponse:
        with self._lock:
            known = request.session_id in self.session_ids
            self.heartbeats += known
            fail = False
            if known and request.HasField("description"):
                fail = self.fail_descriptions > 0
                if fail:
                    self.fail_descriptions -= 1
                else:
                    self.descriptions.append(request.description)
        if not known:
            context.abort(grpc.StatusCode.NOT_FOUND, "unknown session")
        if fail:
            context.abort(grpc.StatusCode.UNAVAILABLE, "no quorum")
        return dpb.HeartbeatResponse(period=self.answer_period)

    def described(self, image: str) -> bool:
        with self._lock:
            return any(image in d.images for d in self.descriptions)

    def UpdateTaskStatus(
        self, request: dpb.UpdateTaskStatusRequest, context: grpc.ServicerContext
    ) -> dpb.UpdateTaskStatusResponse:
        with self._lock:
            self.report_calls += 1
            refuse = self.fail_reports > 0
            if refuse:
                self.fail_reports -= 1
            else:
                self.reports.extend(request.updates)
        if refuse:
            context.abort(grpc.StatusCode.UNAVAILABLE, "no quorum")
        return dpb.UpdateTaskStatusResponse()


class Manager:
    """A gRPC server with the dispatcher on a mutual-TLS port."""

    def __init__(self, root: pb.RootCA, role: str = "manager") -> None:
        key_pem, cert_pem = ca.issue_local_certificate(root, new_id(), role, CLUSTER, "127.0.0.1")
        creds = tls.NodeCredentials.from_pems(key_pem, cert_pem, root.cert_pem)
        self.dispatcher = Dispatcher()
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=8), options=tls.SERVER_OPTIONS)
        dgrpc.add_DispatcherServicer_to_server(self.dispatcher, self.server)
        port = self.server.add_secure_port("127.0.0.1:0", creds.server_credentials(require_client_auth=True))
        self.addr = f"127.0.0.1:{port}"
        self.server.start()

    def stop(self) -> None:
        self.server.stop(None)


@pytest.fixture(scope="module")
def root() -> pb.RootCA:
    return ca.create_root_ca()


@pytest.fixture()
def managers(root: pb.RootCA) -> Iterator[list[Manager]]:
    ms = [Manager(root), Manager(root)]
    yield ms
    for m in ms:
        m.stop()


class Agent:
    """A session driving an executor on the in-memory engine, as the daemon
    composes them."""

    def __init__(self, root: pb.RootCA, managers: list[str], describe_every: float = 5.0) -> None:
        key_pem, cert_pem = ca.issue_local_certificate(root, new_id(), "worker", CLUSTER, "127.0.0.1")
        self.creds = tls.NodeCredentials.from_pems(key_pem, cert_pem, root.cert_pem)
        self.engine = FakeRuntime(hostname="agent-host", images={IMAGE: ()})
        self.seen_managers: list[list[str]] = []
        self.executor = Executor(self.engine, self.creds.node_id, self._report)
        self.session = AgentSession(
            self.creds,
            managers,
            self.executor,
            "127.0.0.9",
            "127.0.0.9:4244",
            on_managers=self.seen_managers.append,
            describe_every=describe_every,
            raft_addr="127.0.0.9:4243",
        )
        self.executor.start()
        self.session.start()

    def _report(self, reports: list[dpb.TaskStatusReport]) -> None:
        self.session.report(reports)

    def stop(self) -> None:
        self.session.stop()
        self.executor.stop()


@pytest.fixture()
def agents(root: pb.RootCA) -> Iterator[list[Agent]]:
    started: list[Agent] = []
    yield started
    for a in started:
        a.stop()


def task(node_id: str, tid: str = "t1") -> pb.Task:
    t = pb.Task(id=tid, service_id="s1", service_name="web", slot=1, node_id=node_id, desired_state=pb.RUNNING)
    t.status.state = pb.ASSIGNED
    t.spec.container.image = IMAGE
    return t


def start_agent(root: pb.RootCA, agents: list[Agent], managers: list[str], describe_every: float = 5.0) -> Agent:
    a = Agent(root, managers, describe_every)
    agents.append(a)
    return a


def test_assignment_runs_and_status_reaches_the_manager(root: pb.RootCA, managers: list[Manager], agents: list[Agent]) -> None:
    m = managers[0]
    agent = start_agent(root, agents, [m.addr])
    m.dispatcher.assign([task(agent.creds.node_id)], [m.addr])
    wait_for(lambda: m.dispatcher.reported("t1", pb.RUNNING), 5, "RUNNING reported to the manager")
    (c,) = agent.engine.containers()
    assert c.labels["swarmlet.task.id"] == "t1"
    node_id, req = m.dispatcher.sessions[0]
    # The node is known by its certificate; the request says how to reach it.
    assert node_id == agent.creds.node_id
    assert (req.addr, req.api_addr, req.raft_addr) == ("127.0.0.9", "127.0.0.9:4244", "127.0.0.9:4243")
    assert req.description.hostname == "agent-host" and IMAGE in req.description.images
    assert agent.session.connected.is_set()


def test_reports_are_retried_until_acknowledged(root: pb.RootCA, managers: list[Manager], agents: list[Agent]) -> None:
    m = managers[0]
    m.dispatcher.fail_reports = 2
    agent = start_agent(root, agents, [m.addr])
    m.dispatcher.assign([task(agent.creds.node_id)], [m.addr])
    wait_for(lambda: m.dispatcher.reported("t1", pb.RUNNING), 5, "RUNNING reported despite two refusals")
    assert m.dispatcher.report_calls >= 3
    # Acknowledged once: never sent again, though later reports follow.
    m.dispatcher.assign([task(agent.creds.node_id, "t1"), task(agent.creds.node_id, "t2")], [m.addr])
    wait_for(lambda: m.dispatcher.reported("t2", pb.RUNNING), 5, "the second task's report")
    assert m.dispatcher.count("t1") == 1


def test_reconnects_to_another_manager_and_delivers_pending_reports(
    root: pb.RootCA, managers: list[Manager], agents: list[Agent]
) -> None:
    a, b = managers
    agent = start_agent(root, agents, [a.addr])
    for m in managers:
        m.dispatcher.assign([task(agent.creds.node_id)], [a.addr, b.addr])
    wait_for(lambda: a.dispatcher.reported("t1", pb.RUNNING), 5, "RUNNING reported to the first manager")
    assert agent.seen_managers == [[a.addr, b.addr]]  # learnt from the session, for reconnects
    a.stop()
    # The task ends while the session is down or moving: its report must not be lost.
    (c,) = agent.engine.containers()
    agent.engine.exit(c.id, 3)
    wait_for(lambda: b.dispatcher.reported("t1", pb.FAILED), 10, "FAILED reported to the second manager")
    assert [n for n, _ in b.dispatcher.sessions] == [agent.creds.node_id]
    assert len(agent.engine.containers()) == 1  # the same assignment again: nothing restarted


def test_follows_the_leader_hint(root: pb.RootCA, managers: list[Manager], agents: list[Agent]) -> None:
    follower, leader = managers
    follower.dispatcher.leader_hint = leader.addr
    leader.dispatcher.assign([], [follower.addr, leader.addr])
    # Only the follower is known: the leader can be found through the hint alone.
    agent = start_agent(root, agents, [follower.addr])
    wait_for(lambda: agent.session.connected.is_set(), 5, "a session with the leader")
    assert len(follower.dispatcher.sessions) == 1
    assert [n for n, _ in leader.dispatcher.sessions] == [agent.creds.node_id]


def test_forgotten_session_starts_over(root: pb.RootCA, managers: list[Manager], agents: list[Agent]) -> None:
    m = managers[0]
    m.dispatcher.assign([], [m.addr])
    agent = start_agent(root, agents, [m.addr])
    wait_for(lambda: agent.session.connected.is_set(), 5, "a session")
    m.dispatcher.forget_sessions()
    # The next heartbeat is refused (NOT_FOUND): the agent opens a new session.
    wait_for(lambda: len(m.dispatcher.sessions) == 2, 5, "a second session")
    wait_for(lambda: agent.session.connected.is_set(), 5, "connected again")


# ---------------------------------------------------------------- certificates (issue 13)


def test_a_server_with_a_worker_certificate_gets_no_session(
    root: pb.RootCA, agents: list[Agent], caplog: pytest.LogCaptureFixture
) -> None:
    """A compromised worker posing as a manager: the handshake fails on the
    agent's side (no manager name in its certificate), so it never asks it
    for tasks nor sends it a report."""
    fake = Manager(root, role="worker")
    try:
        fake.dispatcher.assign([], [fake.addr])
        agent = start_agent(root, agents, [fake.addr])
        wait_for(lambda: "did not present a manager certificate" in caplog.text, 10, "the refusal logged")
        assert fake.dispatcher.sessions == [] and not agent.session.connected.is_set()
    finally:
        fake.stop()


def test_new_credentials_reconnect_the_session_and_keep_pending_reports(
    root: pb.RootCA, managers: list[Manager], agents: list[Agent]
) -> None:
    m = managers[0]
    agent = start_agent(root, agents, [m.addr])
    m.dispatcher.assign([task(agent.creds.node_id)], [m.addr])
    wait_for(lambda: m.dispatcher.reported("t1", pb.RUNNING), 5, "RUNNING reported")
    m.dispatcher.fail_reports = 1_000_000  # reports are refused from now on: they stay queued
    (c,) = agent.engine.containers()
    agent.engine.exit(c.id, 3)
    wait_for(lambda: m.dispatcher.report_calls >= 2, 5, "the FAILED report tried")
    key_pem, cert_pem = ca.issue_local_certificate(root, agent.creds.node_id, "worker", CLUSTER, "127.0.0.1")
    renewed = tls.NodeCredentials.from_pems(key_pem, cert_pem, root.cert_pem)
    agent.session.set_credentials(renewed)
    wait_for(lambda: len(m.dispatcher.sessions) == 2, 5, "a second session")
    assert m.dispatcher.serials == [agent.creds.cert_info.serial, renewed.cert_info.serial]
    m.dispatcher.fail_reports = 0
    wait_for(lambda: m.dispatcher.reported("t1", pb.FAILED), 5, "the queued report delivered after the reconnect")


class _ClosedChannelStub:
    """What a stub whose channel was closed does: every call raises ValueError."""

    def __getattr__(self, name: str) -> object:
        def call(*args: object, **kwargs: object) -> object:
            raise ValueError("Cannot invoke RPC on closed channel!")

        return call


def _heartbeat_thread_alive() -> bool:
    return any(t.name == "agent-heartbeat" and t.is_alive() for t in threading.enumerate())


def test_heartbeats_survive_a_closed_channel(root: pb.RootCA, managers: list[Manager], agents: list[Agent]) -> None:
    """Issue 14: after a SIGSTOP the session's channel was closed under the
    heartbeat thread; the ValueError killed the thread, and the node was
    marked down again and again. Now the session starts over and heartbeats go on."""
    m = managers[0]
    m.dispatcher.assign([], [m.addr])
    agent = start_agent(root, agents, [m.addr])
    wait_for(lambda: agent.session.connected.is_set(), 5, "a session")
    with agent.session._lock:
        agent.session._stub = _ClosedChannelStub()  # type: ignore[assignment]
    wait_for(lambda: len(m.dispatcher.sessions) == 2, 5, "a new session after the broken channel")
    before = m.dispatcher.heartbeats
    wait_for(lambda: m.dispatcher.heartbeats >= before + 5, 5, "heartbeats on the new session")
    assert _heartbeat_thread_alive()


def test_the_period_a_heartbeat_answers_with_is_followed_without_a_session_message(
    root: pb.RootCA, managers: list[Manager], agents: list[Agent]
) -> None:
    """Issue 15: a growing cluster stretches the period in heartbeat answers
    only (no session message wakes every node for it)."""
    m = managers[0]
    m.dispatcher.assign([], [m.addr])
    agent = start_agent(root, agents, [m.addr])
    wait_for(lambda: agent.session.connected.is_set(), 5, "a session")
    assert agent.session.heartbeat_period == PERIOD
    m.dispatcher.answer_period = 0.25
    wait_for(lambda: agent.session.heartbeat_period == 0.25, 5, "the answered period taken")
    sessions = len(m.dispatcher.sessions)
    before = m.dispatcher.heartbeats
    wait_for(lambda: m.dispatcher.heartbeats >= before + 3, 5, "heartbeats at the new period")
    assert len(m.dispatcher.sessions) == sessions  # no reconnect: the session holds


def test_heartbeats_go_on_across_many_session_ends(root: pb.RootCA, managers: list[Manager], agents: list[Agent]) -> None:
    """Sessions ending while heartbeats are in flight (leader changes, a
    paused process): the thread outlives every one of them."""
    m = managers[0]
    m.dispatcher.assign([], [m.addr])
    agent = start_agent(root, agents, [m.addr])
    for i in range(15):
        wait_for(lambda i=i: len(m.dispatcher.sessions) == i + 1 and agent.session.connected.is_set(), 10, f"session {i + 1}")
        m.dispatcher.end_sessions()
    wait_for(lambda: len(m.dispatcher.sessions) == 16, 10, "the last session")
    before = m.dispatcher.heartbeats
    wait_for(lambda: m.dispatcher.heartbeats >= before + 5, 5, "heartbeats on the last session")
    assert _heartbeat_thread_alive()


def test_a_description_change_lost_with_its_heartbeat_is_sent_again(
    root: pb.RootCA, managers: list[Manager], agents: list[Agent]
) -> None:
    """A changed description went out once: when that heartbeat failed (a
    leader change, a timeout on a busy manager) the change was taken as known
    and never sent again, and the node's image list stayed stale (CI saw a
    node never report a new tag). Now it is sent until a heartbeat carrying it
    succeeds."""
    m = managers[0]
    m.dispatcher.assign([], [m.addr])
    agent = start_agent(root, agents, [m.addr], describe_every=0.2)
    wait_for(lambda: agent.session.connected.is_set() and m.dispatcher.described(IMAGE), 10, "a first description")
    with m.dispatcher._lock:
        m.dispatcher.fail_descriptions = 1
    agent.engine.add_image("new:1")
    wait_for(lambda: m.dispatcher.described("new:1"), 10, "the new image described again after the failed heartbeat")
    assert m.dispatcher.fail_descriptions == 0  # the failure did happen
