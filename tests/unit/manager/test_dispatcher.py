"""The dispatcher over real gRPC with mutual TLS (certificates from the
cluster's CA) on a real store: sessions, heartbeats, node-down detection
with short cluster settings, batched status writes, and a follower sending
agents to the leader."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest

from swarmlet import tls
from swarmlet.aioserver import AioServer
from swarmlet.api import dispatcher_pb2 as dpb
from swarmlet.api import dispatcher_pb2_grpc as dgrpc
from swarmlet.api import objects_pb2 as pb
from swarmlet.api import store_pb2 as spb
from swarmlet.core import cluster as cl
from swarmlet.core import state as st
from swarmlet.manager import ca
from swarmlet.manager.control.api import ControlAPI
from swarmlet.manager.dispatcher import Dispatcher
from swarmlet.manager.statuswriter import StatusWriter
from swarmlet.manager.store import Store
from swarmlet.rpc import LEADER_HINT_KEY
from tests.unit.manager import helpers as h
from tests.waiting import wait_for

W1 = "worker1000000000000000000"
W2 = "worker2000000000000000000"
HEARTBEAT = 0.2
DOWN_AFTER = 1.0
RPC_TIMEOUT = 10.0

# What an agent's session stream yields: messages, then its error or None.
Messages = queue.Queue[dpb.SessionMessage | grpc.RpcError | None]


@dataclass
class Served:
    store: Store
    cluster: pb.Cluster
    dispatcher: Dispatcher
    server: AioServer
    addr: str
    agents: list[Agent] = field(default_factory=list)

    def node(self, node_id: str) -> pb.Node:
        return self.store.snapshot().nodes[node_id]

    def agent(self, node_id: str, role: str = "worker", cluster_id: str = "") -> Agent:
        a = Agent(self, node_id, role, cluster_id)
        self.agents.append(a)
        return a

    def stop(self) -> None:
        for a in self.agents:
            a.close()
        self.server.stop(None)
        self.dispatcher.stop()


def serve(store: Store, cluster: pb.Cluster) -> Served:
    """The dispatcher on the API port of a manager: mutual TLS, calls without
    a node certificate refused, as the daemon serves it."""
    control = ControlAPI(store, lambda addr: pytest.fail("no agent here"))
    dispatcher = Dispatcher(store, control.cluster.renew_role, certificates=control.pki)
    key, cert = ca.issue_local_certificate(cluster.root_ca, h.MANAGER_ID, "manager", cluster.id, "127.0.0.1")
    creds = tls.NodeCredentials.from_pems(key, cert, cluster.root_ca.cert_pem)
    server = AioServer(tls.SERVER_OPTIONS, [tls.ClientCertRequired()])
    server.call(lambda: dgrpc.add_DispatcherServicer_to_server(dispatcher, server.server))
    port = server.add_port("127.0.0.1:0", creds.server_credentials(require_client_auth=True))
    server.start()
    dispatcher.start()
    return Served(store, cluster, dispatcher, server, f"127.0.0.1:{port}")


class Agent:
    """The agent side of a session, with the node's own certificate."""

    def __init__(self, served: Served, node_id: str, role: str = "worker", cluster_id: str = "") -> None:
        c = served.cluster
        # The certificate names the address the node joined with (the CA
        # puts it there): the one it reports in its sessions.
        key, cert = ca.issue_local_certificate(c.root_ca, node_id, role, cluster_id or c.id, "10.1.0.7")
        creds = tls.NodeCredentials.from_pems(key, cert, c.root_ca.cert_pem)
        self.creds = creds
        self.node_id = node_id
        self.channel = grpc.secure_channel(served.addr, creds.channel_credentials(), options=tls.CHANNEL_OPTIONS)
        self.stub = dgrpc.DispatcherStub(self.channel)
        # Session messages, then the stream's error or None when it ended.
        self.messages: Messages = queue.Queue()
        self.ended = threading.Event()
        self.session_id = ""
        self._stop = threading.Event()

    def open(self) -> dpb.SessionMessage:
        """Open a session and return its first message."""
        self.ended = threading.Event()
        self.messages = queue.Queue()
        request = dpb.SessionRequest(
            addr="10.1.0.7", api_addr="10.1.0.7:4244", description=pb.NodeDescription(hostname=f"host-{self.node_id[:7]}")
        )
        self.stream = self.stub.Session(request, timeout=60)
        threading.Thread(target=self._read, args=(self.stream, self.messages, self.ended), daemon=True).start()
        first = self.next_message()
        self.session_id = first.session_id
        return first

    @staticmethod
    def _read(stream: Iterator[dpb.SessionMessage], messages: Messages, ended: threading.Event) -> None:
        end: grpc.RpcError | None = None
        try:
            for msg in stream:
                messages.put(msg)
        except grpc.RpcError as e:
            end = e
        messages.put(end)
        ended.set()

    def next_message(self, timeout: float = RPC_TIMEOUT) -> dpb.SessionMessage:
        """The next session message; the stream's error if it failed instead."""
        try:
            item = self.messages.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no session message within {timeout}s") from None
        if isinstance(item, grpc.RpcError):
            raise item
        if item is None:
            raise AssertionError("the session ended")
        return item

    def heartbeat(self) -> dpb.HeartbeatResponse:
        response: dpb.HeartbeatResponse = self.stub.Heartbeat(
            dpb.HeartbeatRequest(session_id=self.session_id), timeout=RPC_TIMEOUT
        )
        return response

    def keep_beating(self) -> None:
        def beat() -> None:
            while not self._stop.wait(HEARTBEAT / 2):
                try:
                    self.heartbeat()
                except (grpc.RpcError, ValueError):  # ValueError: the channel was closed
                    if self._stop.is_set():
                        return
                    raise

        threading.Thread(target=beat, daemon=True).start()

    def close(self) -> None:
        self._stop.set()
        self.channel.close()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    store = h.leader_store(tmp_path)
    spec = cl.initial_spec()
    spec.heartbeat_period, spec.node_down_after = HEARTBEAT, DOWN_AFTER
    cluster = h.new_cluster(spec)
    down = pb.NodeStatus.UNKNOWN
    h.seed(
        store,
        cluster,
        h.manager_node(store.self_addr, "127.0.0.1:4244"),
        h.worker_node(W1, "worker-1", state=down),
        h.worker_node(W2, "worker-2", state=down),
    )
    s = serve(store, cluster)
    try:
        yield s
    finally:
        s.stop()
        store.close()


def rpc_error(call: object) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as e:
        call()  # type: ignore[operator]
    return e.value


# ---------------------------------------------------------------- sessions


def test_a_session_registers_the_node_and_streams_its_assignments(served: Served) -> None:
    a = served.agent(W1)
    first = a.open()
    assert first.node_id == W1 and first.session_id
    assert first.heartbeat_period == HEARTBEAT
    assert list(first.managers) == ["127.0.0.1:4244"]
    assert list(first.tasks) == []
    assert first.desired_role == pb.NodeSpec.WORKER
    node = served.node(W1)
    assert (node.status.state, node.status.message, node.status.addr) == (pb.NodeStatus.READY, "session started", "10.1.0.7")
    # The hostname stays the one the node joined with (issue 13: a worker
    # claiming another's hostname must not receive its tasks).
    assert node.description.hostname == "worker-1" != f"host-{W1[:7]}"
    assert node.api_addr == "10.1.0.7:4244"

    # A task placed on the node reaches it; one placed elsewhere does not.
    mine = pb.Task(id="t1", service_id="s", node_id=W1, desired_state=pb.RUNNING)
    other = pb.Task(id="t2", service_id="s", node_id=W2, desired_state=pb.RUNNING)
    served.store.propose([st.put(mine, create=True), st.put(other, create=True)])
    msg = a.next_message()
    assert [t.id for t in msg.tasks] == ["t1"]
    assert msg.session_id == first.session_id


def test_a_new_session_replaces_the_old_one(served: Served) -> None:
    a = served.agent(W1)
    a.open()
    old = a.session_id
    b = served.agent(W1)  # the same node reconnecting
    b.open()
    assert b.session_id != old
    assert a.ended.wait(RPC_TIMEOUT), "the replaced session's stream ends"
    a.session_id = old
    err = rpc_error(a.heartbeat)
    assert err.code() == grpc.StatusCode.NOT_FOUND and err.details() == "unknown session: open a new one"
    assert b.heartbeat().period == HEARTBEAT


def test_a_node_that_is_not_a_member_is_refused(served: Served) -> None:
    stranger = served.agent("stranger00000000000000000")
    err = rpc_error(stranger.open)
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    assert err.details() == "node stranger00000000000000000 is not a member of this cluster (removed?)"


# ---------------------------------------------------------------- liveness


def test_a_silent_node_is_marked_down_and_a_new_session_revives_it(served: Served) -> None:
    silent, beating = served.agent(W1), served.agent(W2)
    silent.open()
    beating.open()
    beating.keep_beating()

    wait_for(lambda: served.node(W1).status.state == pb.NodeStatus.DOWN, 5, "the silent node marked down")
    assert served.node(W1).status.message.startswith("heartbeat failure: none for ")
    assert served.node(W2).status.state == pb.NodeStatus.READY
    assert silent.ended.wait(RPC_TIMEOUT), "the down node's session ends"
    assert rpc_error(silent.heartbeat).code() == grpc.StatusCode.NOT_FOUND

    silent.open()
    node = served.node(W1)
    assert (node.status.state, node.status.message) == (pb.NodeStatus.READY, "session started")


def test_a_heartbeat_brings_a_node_marked_down_back(served: Served) -> None:
    a = served.agent(W1)
    a.open()
    # A partition healed before the session noticed: the store says DOWN, the
    # session is still there.
    down = cl.down_status(served.node(W1), 5.0, 0.0)
    served.store.propose([spb.StoreAction(node_status=spb.NodeStatusAction(node_id=W1, status=down))])
    a.heartbeat()
    wait_for(lambda: served.node(W1).status.state == pb.NodeStatus.READY, 5, "the node back to READY")
    assert served.node(W1).status.message == "heartbeat resumed"


# ---------------------------------------------------------------- status reports


def test_status_reports_are_written_in_one_batch(served: Served) -> None:
    a = served.agent(W1)
    a.open()
    tasks = [pb.Task(id=f"t{i}", service_id="s", node_id=W1, desired_state=pb.RUNNING) for i in range(3)]
    served.store.propose([st.put(t, create=True) for t in tasks])
    report = dpb.UpdateTaskStatusRequest(
        session_id=a.session_id,
        updates=[dpb.TaskStatusReport(task_id=t.id, status=pb.TaskStatus(state=pb.RUNNING, message="up")) for t in tasks],
    )
    a.stub.UpdateTaskStatus(report, timeout=RPC_TIMEOUT)
    stored = [served.store.snapshot().tasks[t.id] for t in tasks]
    assert all(t.status.state == pb.RUNNING and t.status.message == "up" for t in stored)
    # Every object a batch writes gets the batch's version: one batch.
    assert len({t.meta.version for t in stored}) == 1


def test_a_report_on_another_nodes_task_is_ignored(served: Served) -> None:
    a = served.agent(W1)
    a.open()
    theirs = pb.Task(id="t1", service_id="s", node_id=W2, desired_state=pb.RUNNING)
    served.store.propose([st.put(theirs, create=True)])
    report = dpb.UpdateTaskStatusRequest(
        session_id=a.session_id, updates=[dpb.TaskStatusReport(task_id="t1", status=pb.TaskStatus(state=pb.FAILED))]
    )
    a.stub.UpdateTaskStatus(report, timeout=RPC_TIMEOUT)
    assert served.store.snapshot().tasks["t1"].status.state == pb.NEW


def test_the_status_writer_coalesces_queued_reports(tmp_path: Path) -> None:
    store = h.leader_store(tmp_path)
    writer = StatusWriter(store)
    try:
        tasks = [pb.Task(id=f"t{i}", service_id="s", desired_state=pb.RUNNING) for i in range(10)]
        store.propose([st.put(t, create=True) for t in tasks])
        before = store.version
        # Reports from several callers queue up while the writer is not running yet.
        for i in range(0, 10, 2):
            pair = [st.set_status(f"t{j}", pb.TaskStatus(state=pb.RUNNING)) for j in (i, i + 1)]
            writer.submit(pair, wait=0)
        writer.start()
        wait_for(lambda: all(t.status.state == pb.RUNNING for t in store.snapshot().tasks.values()), 10, "all reports written")
        assert store.version == before + 1
        # A caller that waits hears that its write committed.
        writer.submit([st.set_status("t0", pb.TaskStatus(state=pb.COMPLETE))], wait=5)
        assert store.snapshot().tasks["t0"].status.state == pb.COMPLETE
    finally:
        writer.stop()
        store.close()


def test_the_status_writer_splits_big_backlogs(tmp_path: Path) -> None:
    store = h.leader_store(tmp_path)
    writer = StatusWriter(store, max_batch=4)
    try:
        tasks = [pb.Task(id=f"t{i}", service_id="s", desired_state=pb.RUNNING) for i in range(10)]
        store.propose([st.put(t, create=True) for t in tasks])
        before = store.version
        done = threading.Event()

        def report() -> None:
            writer.submit([st.set_status(t.id, pb.TaskStatus(state=pb.RUNNING)) for t in tasks], wait=10)
            done.set()

        threading.Thread(target=report, daemon=True).start()
        wait_for(lambda: writer._pending, 5, "the report queued")  # noqa: SLF001
        writer.start()
        assert done.wait(10), "the caller returns once all of its actions are committed"
        assert all(t.status.state == pb.RUNNING for t in store.snapshot().tasks.values())
        assert store.version == before + 3  # 4 + 4 + 2
    finally:
        writer.stop()
        store.close()


# ---------------------------------------------------------------- roles


def test_renew_role_answers_with_a_certificate_for_the_wanted_role(served: Served) -> None:
    a = served.agent(W1)
    a.open()
    key = tls.new_node_key()
    resp = a.stub.RenewRole(dpb.RenewRoleRequest(csr_pem=tls.make_csr(key)), timeout=RPC_TIMEOUT)
    assert resp.role == "worker" and not resp.raft_secret
    assert tls.certificate_identity(resp.cert_pem) == tls.Identity(W1, "worker", served.cluster.id)
    err = rpc_error(lambda: a.stub.RenewRole(dpb.RenewRoleRequest(csr_pem=b"garbage"), timeout=RPC_TIMEOUT))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "cannot parse the certificate signing request" in err.details()


# ---------------------------------------------------------------- followers


def test_a_follower_sends_agents_to_the_leader(tmp_path: Path) -> None:
    addrs = [f"127.0.0.1:{h.free_port()}" for _ in range(2)]
    stores = [h.start_store(tmp_path / str(i), a, [p for p in addrs if p != a]) for i, a in enumerate(addrs)]
    follower_served: Served | None = None
    try:
        leader = wait_for(lambda: next((s for s in stores if s.is_leader()), None), 20, "a leader among two managers")
        follower = next(s for s in stores if s is not leader)
        cluster = h.new_cluster()
        apis = {leader.self_addr: "10.0.0.1:4244", follower.self_addr: "10.0.0.2:4244"}
        managers = [h.manager_node(a, apis[a], node_id=f"manager{i}" + "0" * 18, hostname=f"m{i}") for i, a in enumerate(addrs)]
        h.seed(leader, cluster, *managers, h.worker_node(W1, "worker-1"))
        wait_for(lambda: W1 in follower.snapshot().nodes, 10, "the follower applied the seed")
        follower_served = serve(follower, cluster)
        err = rpc_error(follower_served.agent(W1).open)
        assert err.code() == grpc.StatusCode.UNAVAILABLE
        assert err.details() == "this manager is not the leader (leader: 10.0.0.1:4244)"
        assert dict(err.trailing_metadata() or ())[LEADER_HINT_KEY] == "10.0.0.1:4244"
    finally:
        if follower_served is not None:
            follower_served.stop()
        for s in stores:
            s.close()


# ---------------------------------------------------------------- scale (issue 15)


def test_later_messages_carry_only_what_changed_for_the_node(served: Served) -> None:
    a = served.agent(W1)
    a.open()
    t1 = pb.Task(id="t1", service_id="s", node_id=W1, desired_state=pb.RUNNING)
    t2 = pb.Task(id="t2", service_id="s", node_id=W1, desired_state=pb.RUNNING)
    served.store.propose([st.put(t1, create=True), st.put(t2, create=True)])
    msg = a.next_message()
    assert msg.incremental and [t.id for t in msg.tasks] == ["t1", "t2"] and not msg.removed_tasks
    # The agent's own report coming back is not sent again...
    report = dpb.UpdateTaskStatusRequest(
        session_id=a.session_id, updates=[dpb.TaskStatusReport(task_id="t1", status=pb.TaskStatus(state=pb.RUNNING))]
    )
    a.stub.UpdateTaskStatus(report, timeout=RPC_TIMEOUT)
    # ...a desired-state change is, alone; and a task leaving the node goes by id.
    served.store.propose([st.set_desired("t2", pb.SHUTDOWN)])
    msg = a.next_message()
    assert [(t.id, t.desired_state) for t in msg.tasks] == [("t2", pb.SHUTDOWN)]
    served.store.propose([st.delete(spb.KIND_TASK, "t1")])
    msg = a.next_message()
    assert list(msg.removed_tasks) == ["t1"] and not msg.tasks
    assert a.messages.empty()


def test_a_big_update_is_a_run_of_bounded_messages_and_a_huge_task_is_refused(served: Served) -> None:
    from swarmlet.core import sessions

    a = served.agent(W1)
    a.open()
    tasks = []
    for i in range(6):
        t = pb.Task(id=f"t{i}", service_id="s", node_id=W1, desired_state=pb.RUNNING)
        t.spec.container.env.append("X=" + "x" * 400_000)  # 6 x 400 KB: more than one message
        tasks.append(t)
    huge = pb.Task(id="huge", service_id="s", node_id=W1, desired_state=pb.RUNNING)
    huge.spec.container.env.append("X=" + "x" * (sessions.MAX_TASK_BYTES + 1))
    served.store.propose([st.put(t, create=True) for t in tasks])
    served.store.propose([st.put(huge, create=True)])
    got: list[dpb.SessionMessage] = []
    while not got or got[-1].more:
        got.append(a.next_message())
    assert len(got) > 1 and all(m.ByteSize() <= sessions.MESSAGE_BUDGET + 500_000 for m in got)
    assert sorted(t.id for m in got for t in m.tasks) == [f"t{i}" for i in range(6)]
    wait_for(lambda: served.store.snapshot().tasks["huge"].status.state == pb.REJECTED, 5, "the huge task rejected")
    assert "more than a session message can carry" in served.store.snapshot().tasks["huge"].status.err


def test_heartbeats_write_nothing_while_nothing_changes(served: Served) -> None:
    a = served.agent(W1)
    a.open()
    wait_for(lambda: served.node(W1).status.state == pb.NodeStatus.READY, 5, "the node READY")
    version = served.store.version
    for _ in range(20):
        assert a.heartbeat().period == HEARTBEAT
    assert served.store.version == version, "a heartbeat of a READY node wrote to Raft"


def test_hundreds_of_sessions_do_not_starve_heartbeats(tmp_path: Path) -> None:
    """Issue 15: with a thread per session, ~63 agents starved the server's
    64 threads and heartbeats failed. On grpc.aio, 150 open sessions leave
    every heartbeat and a new session answered."""
    store = h.leader_store(tmp_path)
    spec = cl.initial_spec()
    spec.node_down_after = 60.0  # the agents here beat only once all are in
    cluster = h.new_cluster(spec)
    ids = [f"node{i:021d}" for i in range(151)]
    h.seed(store, cluster, h.manager_node(store.self_addr, "127.0.0.1:4244"), *(h.worker_node(n, n) for n in ids))
    s = serve(store, cluster)
    try:
        agents = [s.agent(n) for n in ids[:150]]
        for a in agents:
            a.open()
        for a in agents:
            assert a.heartbeat().period > 0
        late = s.agent(ids[150])
        assert late.open().node_id == ids[150]
        assert late.heartbeat().period > 0
    finally:
        s.stop()
        store.close()


# ---------------------------------------------------------------- certificates (issue 13)


def test_a_session_records_the_certificate_the_node_presents(served: Served) -> None:
    a = served.agent(W1)
    first = a.open()
    info = a.creds.cert_info
    wait_for(lambda: served.node(W1).certificate.serial == info.serial, 5, "the presented certificate recorded")
    rec = served.node(W1).certificate
    assert (rec.role, rec.not_after, rec.issuer_key_id) == ("worker", info.not_after, served.cluster.root_ca.key_id)
    # What the node needs to renew and to judge its callers comes with the session.
    assert first.trust_pem == served.cluster.root_ca.cert_pem and first.signing_key_id == served.cluster.root_ca.key_id
    assert first.cluster_id == served.cluster.id and list(first.manager_ids) == [h.MANAGER_ID]


def test_renew_certificate_issues_one_for_the_nodes_role_and_remembers_it(served: Served) -> None:
    a = served.agent(W1)
    a.open()
    cluster = served.store.snapshot().cluster
    assert cluster is not None
    new = pb.Cluster()
    new.CopyFrom(cluster)
    new.spec.node_cert_expiry = 7200
    served.store.propose([st.put(new)])
    key = tls.new_node_key()
    resp = a.stub.RenewCertificate(dpb.RenewCertificateRequest(csr_pem=tls.make_csr(key)), timeout=RPC_TIMEOUT)
    creds = tls.NodeCredentials.from_pems(key, resp.cert_pem, resp.trust_pem)
    assert creds.identity == tls.Identity(W1, "worker", served.cluster.id)
    info = creds.cert_info
    assert info.not_after - info.not_before == pytest.approx(7200 + 300, abs=2)
    assert info.serial in {c.serial for c in served.node(W1).issued}


def test_a_revoked_certificate_is_refused(served: Served) -> None:
    a = served.agent(W1)
    a.open()
    cluster = served.store.snapshot().cluster
    assert cluster is not None
    new = pb.Cluster()
    new.CopyFrom(cluster)
    new.revoked_certs[a.creds.cert_info.serial] = a.creds.cert_info.not_after
    served.store.propose([st.put(new)])
    err = rpc_error(a.heartbeat)
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    assert err.details() == f"the certificate of node {W1} was revoked (serial {a.creds.cert_info.serial})"
    assert rpc_error(a.open).code() == grpc.StatusCode.PERMISSION_DENIED


def test_a_certificate_of_another_cluster_is_refused(served: Served) -> None:
    err = rpc_error(served.agent(W1, cluster_id="othercluster").open)
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    assert err.details() == f"certificate of another cluster (othercluster), not of this one ({served.cluster.id})"


def test_a_certificate_of_a_former_role_only_learns_the_new_role(served: Served) -> None:
    demoted = served.agent(W1, role="manager")  # the state says W1 is a worker
    msg = demoted.open()
    assert msg.session_id == "" and list(msg.tasks) == [] and msg.desired_role == pb.NodeSpec.WORKER
    assert demoted.ended.wait(RPC_TIMEOUT), "the session ends after telling the role"
    assert served.node(W1).status.state != pb.NodeStatus.READY  # it opened no real session
    demoted.session_id = "x"
    assert rpc_error(demoted.heartbeat).code() == grpc.StatusCode.PERMISSION_DENIED
    key = tls.new_node_key()
    resp = demoted.stub.RenewRole(dpb.RenewRoleRequest(csr_pem=tls.make_csr(key)), timeout=RPC_TIMEOUT)
    assert resp.role == "worker"


# ---------------------------------------------------------------- what nodes may claim (issue 13)


def test_a_node_claiming_an_address_it_is_not_known_by_is_refused(served: Served) -> None:
    a = served.agent(W1)
    a.stream = a.stub.Session(dpb.SessionRequest(addr="10.9.9.9", api_addr="10.9.9.9:4244"), timeout=RPC_TIMEOUT)
    err = rpc_error(lambda: next(iter(a.stream)))
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED and "10.9.9.9" in err.details()
    assert served.node(W1).status.addr != "10.9.9.9" and served.node(W1).api_addr != "10.9.9.9:4244"
    b = served.agent(W2)
    b.stream = b.stub.Session(dpb.SessionRequest(addr="10.1.0.7", api_addr="evil:4244"), timeout=RPC_TIMEOUT)
    err = rpc_error(lambda: next(iter(b.stream)))
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED and "API address" in err.details()


def test_an_oversized_description_update_is_dropped(served: Served) -> None:
    a = served.agent(W1)
    a.open()
    bad = pb.NodeDescription(hostname="worker-1", images=["x:1"] * 20_000)
    a.stub.Heartbeat(dpb.HeartbeatRequest(session_id=a.session_id, description=bad), timeout=RPC_TIMEOUT)
    assert len(served.node(W1).description.images) == 0
    good = pb.NodeDescription(hostname="someone-else", images=["busybox:latest"])
    a.stub.Heartbeat(dpb.HeartbeatRequest(session_id=a.session_id, description=good), timeout=RPC_TIMEOUT)
    wait_for(lambda: list(served.node(W1).description.images) == ["busybox:latest"], 10, "the good description recorded")
    assert served.node(W1).description.hostname == "worker-1"


def test_a_description_sent_again_unchanged_writes_nothing(served: Served) -> None:
    a = served.agent(W1)
    a.open()
    desc = pb.NodeDescription(hostname="worker-1", images=["busybox:latest"])
    a.stub.Heartbeat(dpb.HeartbeatRequest(session_id=a.session_id, description=desc), timeout=RPC_TIMEOUT)
    wait_for(lambda: list(served.node(W1).description.images) == ["busybox:latest"], 10, "the description recorded")
    version = served.node(W1).meta.version
    # Agents repeat their description now and then to repair a lost update:
    # the same description again is no Raft write.
    a.stub.Heartbeat(dpb.HeartbeatRequest(session_id=a.session_id, description=desc), timeout=RPC_TIMEOUT)
    changed = pb.NodeDescription(hostname="worker-1", images=["busybox:latest", "new:1"])
    a.stub.Heartbeat(dpb.HeartbeatRequest(session_id=a.session_id, description=changed), timeout=RPC_TIMEOUT)
    wait_for(lambda: "new:1" in served.node(W1).description.images, 10, "the changed description recorded")
    assert served.node(W1).meta.version == version + 1  # the change alone was written


def test_session_opens_are_rate_limited_per_node(served: Served, monkeypatch) -> None:
    from swarmlet import ratelimit

    served.dispatcher._session_limit = ratelimit.RateLimiter(0.01, 2)
    served.agent(W1).open()
    served.agent(W1).open()
    third = served.agent(W1)
    third.stream = third.stub.Session(dpb.SessionRequest(addr="10.1.0.7"), timeout=RPC_TIMEOUT)
    err = rpc_error(lambda: next(iter(third.stream)))
    assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and "too many sessions" in err.details()
    served.agent(W2).open()  # another node is not affected


def test_only_a_manager_may_fetch_the_raft_secret(served: Served) -> None:
    worker = served.agent(W1)
    err = rpc_error(lambda: worker.stub.RaftSecret(dpb.RaftSecretRequest(), timeout=RPC_TIMEOUT))
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    c = served.cluster
    key, cert = ca.issue_local_certificate(c.root_ca, h.MANAGER_ID, "manager", c.id, "127.0.0.1")
    creds = tls.NodeCredentials.from_pems(key, cert, c.root_ca.cert_pem)
    with grpc.secure_channel(served.addr, creds.channel_credentials(), options=tls.CHANNEL_OPTIONS) as ch:
        resp = dgrpc.DispatcherStub(ch).RaftSecret(dpb.RaftSecretRequest(), timeout=RPC_TIMEOUT)
    assert resp.current == h.RAFT_SECRET and resp.epoch == 0
    # A worker holding a certificate that says manager (stale, or forged by
    # nobody: the CA signs) is still refused: the node record decides too.
    key, cert = ca.issue_local_certificate(c.root_ca, W2, "manager", c.id, "127.0.0.1")
    creds = tls.NodeCredentials.from_pems(key, cert, c.root_ca.cert_pem)
    with grpc.secure_channel(served.addr, creds.channel_credentials(), options=tls.CHANNEL_OPTIONS) as ch:
        err = rpc_error(lambda: dgrpc.DispatcherStub(ch).RaftSecret(dpb.RaftSecretRequest(), timeout=RPC_TIMEOUT))
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED


# ---------------------------------------------------------------- a new leader (issue 14)


def test_the_dispatcher_refuses_agents_until_its_leader_caught_up(served: Served, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(served.store, "leader_ready", lambda: False)
    err = rpc_error(served.agent(W1).open)
    assert err.code() == grpc.StatusCode.UNAVAILABLE
    assert "just elected and is catching up" in err.details()
    monkeypatch.undo()
    # Asked, the store commits the term's barrier on a thread of its own
    # (the dispatcher's event loop never waits for it).
    wait_for(served.store.leader_ready, 5.0, "the leader ready")
    assert served.agent(W1).open().session_id
