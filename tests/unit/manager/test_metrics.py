"""Prometheus series: the cluster-wide ones read from a real store, the
node's own, the instruments recorded where things happen, and the HTTP
endpoint the daemon serves them on."""

from __future__ import annotations

import threading
import time
import urllib.request
from types import SimpleNamespace

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import CollectorRegistry

from swarmlet import metrics, tls
from swarmlet.agent.metrics import timed_runtime
from swarmlet.agent.runtime.fake import FakeRuntime
from swarmlet.api import control_pb2 as cpb
from swarmlet.api import objects_pb2 as pb
from swarmlet.api import store_pb2 as spb
from swarmlet.core import state as st
from swarmlet.manager import ca
from swarmlet.manager.metrics import ClusterCollector
from swarmlet.node.metrics import MetricsServer, NodeCollector
from tests.unit.manager import helpers as h
from tests.unit.manager.conftest import WORKER1, WORKER2, OneManager


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for fam in text_string_to_metric_families(generate_latest(registry).decode()):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_cluster_series_come_from_the_replicated_state(one_manager: OneManager) -> None:
    m = one_manager
    svc = m.control.services.create(cpb.CreateServiceRequest(spec=h.service_spec("web", replicas=3))).service
    # Two tasks of it running on worker 1 (as their agent would report).
    tasks = [
        pb.Task(id=f"t{i}", service_id=svc.id, service_name="web", slot=i, node_id=WORKER1, desired_state=pb.RUNNING)
        for i in (1, 2)
    ]
    m.store.propose([st.put(t, create=True) for t in tasks])
    running = pb.TaskStatus(state=pb.RUNNING, timestamp=time.time())
    m.store.propose([st.set_status(t.id, running, WORKER1) for t in tasks])
    down = pb.NodeStatus(state=pb.NodeStatus.DOWN)
    m.store.propose([spb.StoreAction(node_status=spb.NodeStatusAction(node_id=WORKER2, status=down))])

    reg = CollectorRegistry()
    reg.register(ClusterCollector(lambda: m.store))
    got = samples(reg)
    labels = (("mode", "replicated"), ("service_id", svc.id), ("service_name", "web"))
    assert got[("swarmlet_service_replicas_desired", labels)] == 3.0
    assert got[("swarmlet_service_replicas_running", labels)] == 2.0
    assert got[("swarmlet_service_update_state", (("service_id", svc.id), ("service_name", "web"), ("state", "none")))] == 1.0
    assert got[("swarmlet_tasks", (("desired_state", "running"), ("state", "running")))] == 2.0
    assert got[("swarmlet_nodes", (("availability", "active"), ("role", "worker"), ("state", "down")))] == 1.0
    assert got[("swarmlet_nodes", (("availability", "active"), ("role", "manager"), ("state", "ready")))] == 1.0
    assert got[("swarmlet_raft_leader", ())] == 1.0
    assert got[("swarmlet_raft_quorum", ())] == 1.0
    assert got[("swarmlet_raft_members", ())] == 1.0
    assert got[("swarmlet_raft_term", ())] >= 1.0
    assert got[("swarmlet_store_version", ())] == float(m.store.version)
    assert got[("swarmlet_raft_applied_index", ())] >= got[("swarmlet_store_version", ())]
    # A node that is no manager has no store: no cluster series at all.
    empty = CollectorRegistry()
    empty.register(ClusterCollector(lambda: None))
    assert samples(empty) == {}


def test_instruments_recorded_by_the_store_and_the_agent(one_manager: OneManager) -> None:
    def count(name: str, **labels: str) -> float:
        return metrics.REGISTRY.get_sample_value(name, labels) or 0.0

    applied, committed = count("swarmlet_raft_apply_seconds_count"), count("swarmlet_raft_commit_seconds_count")
    one_manager.control.services.create(cpb.CreateServiceRequest(spec=h.service_spec("web")))
    assert count("swarmlet_raft_apply_seconds_count") > applied
    assert count("swarmlet_raft_commit_seconds_count") > committed

    rt = timed_runtime(FakeRuntime(images={"img:1": []}))
    created = count("swarmlet_agent_container_operation_seconds_count", operation="create")
    started = count("swarmlet_agent_container_operation_seconds_count", operation="start")
    failed = count("swarmlet_agent_container_operation_errors_total", operation="start")
    t = pb.Task(id="t1", service_id="s", service_name="web", slot=1, spec=pb.TaskSpec(container=pb.ContainerSpec(image="img:1")))
    cid = rt.create(t, "node1")
    rt.start(cid)
    try:
        rt.start("nope")
    except Exception:
        pass
    assert count("swarmlet_agent_container_operation_seconds_count", operation="create") == created + 1
    assert count("swarmlet_agent_container_operation_seconds_count", operation="start") == started + 2
    assert count("swarmlet_agent_container_operation_errors_total", operation="start") == failed + 1
    assert rt.inspect(cid) is not None  # every other method is the runtime's own


def test_rounds_count_placements() -> None:
    assigned = pb.Task(id="a", status=pb.TaskStatus(state=pb.ASSIGNED))
    pending = pb.Task(id="p", status=pb.TaskStatus(state=pb.PENDING))
    actions = [st.put(assigned, create=True), st.put(pending, create=True), st.set_desired("x", pb.SHUTDOWN)]
    assert metrics.placements(actions) == 1
    before = metrics.REGISTRY.get_sample_value("swarmlet_leader_placements_total") or 0.0
    metrics.observe_round(0.01, actions)
    metrics.observe_round(0.001, [])  # a round that changed nothing places nothing
    assert metrics.REGISTRY.get_sample_value("swarmlet_leader_placements_total") == before + 1


def _node(creds: tls.NodeCredentials | None) -> SimpleNamespace:
    state = SimpleNamespace(node_id="node1", role="worker")
    membership = SimpleNamespace(node=state, creds=creds, hostname="host-1")
    session = SimpleNamespace(connected=threading.Event())
    session.connected.set()
    return SimpleNamespace(membership=membership, store=None, session=session)


def test_node_series_and_the_http_endpoint() -> None:
    root = ca.create_root_ca()
    key, cert = ca.issue_local_certificate(root, "node1", "worker", "cluster1", "127.0.0.1")
    creds = tls.NodeCredentials.from_pems(key, cert, root.cert_pem)
    node = _node(creds)
    reg = CollectorRegistry()
    reg.register(NodeCollector(node))  # type: ignore[arg-type]
    got = samples(reg)
    assert got[("swarmlet_node_info", (("hostname", "host-1"), ("node_id", "node1"), ("role", "worker")))] == 1.0
    assert got[("swarmlet_agent_session_connected", ())] == 1.0
    expiry = got[("swarmlet_node_certificate_expiry_seconds", ())]
    assert 0 < expiry <= 366 * 86400

    server = MetricsServer(f"127.0.0.1:{h.free_port()}", node)  # type: ignore[arg-type]
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=5) as resp:
            text = resp.read().decode()
    finally:
        server.stop()
    # The serving thread waits for connections with no timeout (it never
    # polls): stop() wakes it, and it is gone once stop() returns.
    assert not server._thread.is_alive()
    for name in (
        "swarmlet_node_info{",
        "swarmlet_node_certificate_expiry_seconds ",
        "process_resident_memory_bytes ",
        "process_cpu_seconds_total ",
        "swarmlet_agent_container_operation_seconds_bucket{",
    ):
        assert name in text, name
    assert "swarmlet_raft_leader " not in text  # no store: a worker reports no cluster series
