"""Seeing what the cluster does (issue 16), on the multi-host testbed: h1, h2,
h3 managers, h4 a worker, every daemon serving Prometheus metrics.

- `swarmlet events --format json` sees a create, a scale, a node cut off and a
  rolling update in order, and every manager derives the same events at the
  same positions;
- a stream on the worker continues across a leader kill with no gap and no
  duplicate (revisions compared with a replay from a surviving manager);
- a real Prometheus server (Debian's package) scrapes every daemon, and its
  HTTP API shows a service's running replicas go from 0 to N;
- an `image push` (a relay of peer transfers) shows on each node's own
  /metrics: fetches from peers and bytes received, bytes served by the source;
- `service logs --follow` continues across a task replacement; one task's
  logs; --since / --until / --details;
- why a task waits, in `service ps` and `service inspect`.

Tests run in file order and share the cluster; each removes its services.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from swarmlet.api import control_pb2 as cpb
from swarmlet.api import objects_pb2 as pb
from tests.integration.test_cluster import IMAGE, api, containers, ok, running_tasks
from tests.integration.test_images import build
from tests.waiting import wait_for

METRICS_PORT = 9323
PROMETHEUS_PORT = 9090


def metrics_args(host) -> list[str]:
    return ["--metrics-addr", f"{host.ip}:{METRICS_PORT}"]


def info(host) -> cpb.InfoResponse | None:
    try:
        return api(host).Info(cpb.InfoRequest(), timeout=10)
    except grpc.RpcError:
        return None


def leader_of(hosts):
    leaders = [h for h in hosts if (i := info(h)) is not None and i.is_leader]
    return leaders[0] if len(leaders) == 1 else None


def ready_nodes(host) -> set[str]:
    try:
        nodes = api(host).ListNodes(cpb.ListNodesRequest(), timeout=10).nodes
    except grpc.RpcError:
        return set()
    return {n.description.hostname for n in nodes if n.status.state == pb.NodeStatus.READY}


class Tail:
    """A CLI command streaming in the background (`events`, `service logs -f`):
    its stdout lines as they come."""

    def __init__(self, testbed, host, *args: str) -> None:
        cmd = [testbed.python, "-m", "swarmlet", "-H", f"unix://{host.swarmlet_sock}", *args]
        self.proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=testbed._swarmlet_env(),
            cwd=str(Path(__file__).resolve().parents[2]),
        )
        self.lines: list[str] = []
        self.err: list[str] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._read, args=(self.proc.stdout, self.lines), daemon=True).start()
        threading.Thread(target=self._read, args=(self.proc.stderr, self.err), daemon=True).start()

    def _read(self, pipe, into: list[str]) -> None:
        for line in pipe:
            with self._lock:
                into.append(line.rstrip("\n"))

    def snapshot(self) -> list[str]:
        with self._lock:
            return list(self.lines)

    def events(self) -> list[dict]:
        return [json.loads(line) for line in self.snapshot()]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)

    def wait(self, predicate, timeout: float, message: str):
        def check():
            if self.proc.poll() is not None:
                raise AssertionError(f"{message}: the command ended ({self.proc.returncode}): {self.err}")
            return predicate()

        return wait_for(check, timeout, message, interval=0.2)


def find(events: list[dict], **want) -> int:
    """Index of the first event matching every key (attributes as attr_<name>), -1 if none."""
    for i, e in enumerate(events):
        if all(
            (e["attributes"].get(k[5:].replace("__", ".")) if k.startswith("attr_") else e.get(k)) == v for k, v in want.items()
        ):
            return i
    return -1


def positions(events: list[dict]) -> list[tuple[int, int]]:
    return [(e["revision"], e["index"]) for e in events]


def replay(testbed, host, since: float) -> list[dict]:
    """The history a manager holds from `since` until now."""
    out = ok(testbed, host, "events", "--since", f"{since:.6f}", "--until", f"{time.time():.6f}", "--format", "json").stdout
    return [json.loads(line) for line in out.splitlines()]


def same_range(tail: list[dict], history: list[dict]) -> None:
    """The live stream holds exactly the history's events over its range:
    the same positions with the same content, nothing missing, nothing twice."""
    pos = positions(tail)
    assert pos == sorted(set(pos)), "positions repeat or go backwards"
    lo, hi = pos[0], pos[-1]
    expected = [e for e in history if lo <= (e["revision"], e["index"]) <= hi]
    assert tail == expected, f"stream and history differ over {lo}..{hi}"


@pytest.fixture(scope="module")
def cluster(testbed):
    h1, h2, h3, h4 = testbed.hosts[:4]
    for h in (h1, h2, h3, h4):  # the same daemons, with their metrics endpoint
        testbed.kill_swarmlet(h)
        testbed.start_swarmlet(h, metrics_args(h))
    ok(testbed, h1, "init", "--advertise-addr", h1.ip)
    mtoken = ok(testbed, h1, "join-token", "manager", "-q").stdout.strip()
    wtoken = ok(testbed, h1, "join-token", "worker", "-q").stdout.strip()
    for h in (h2, h3):
        ok(testbed, h, "join", "--token", mtoken, f"{h1.ip}:4242")
    ok(testbed, h4, "join", "--token", wtoken, f"{h1.ip}:4242")
    wait_for(lambda: ready_nodes(h1) == {"h1", "h2", "h3", "h4"}, 60, "4 nodes READY", interval=0.5)
    return h1, h2, h3, h4


def test_events_of_a_create_a_scale_a_cut_and_a_rolling_update(testbed, cluster):
    h1, h2, h3, h4 = cluster
    t0 = time.time()
    # From t0 on, whenever the streams open: a follower's own history, and a filtered one.
    since = ["--since", f"{t0:.6f}", "--format", "json"]
    tail = Tail(testbed, h2, "events", *since)
    nodes_only = Tail(testbed, h3, "events", *since, "--filter", "type=node", "--filter", "node=h4")
    try:
        ok(testbed, h1, "service", "create", "--name", "ev", "--replicas", "2", IMAGE, "sleep", "3600")
        ok(testbed, h1, "service", "scale", "ev=3")
        testbed.cut(h4)
        try:
            tail.wait(lambda: find(tail.events(), type="node", name="h4", attr_state__new="down") >= 0, 30, "h4 down")
        finally:
            testbed.heal(h4)
        tail.wait(lambda: find(tail.events(), type="node", name="h4", attr_state__new="ready") >= 0, 60, "h4 ready again")
        r = ok(
            testbed, h1, "service", "update", "--force", "--update-parallelism", "3", "--update-monitor", "1s", "ev", timeout=180
        )
        assert "update completed" in r.stdout
        tail.wait(lambda: find(tail.events(), type="service", attr_updatestate__new="completed") >= 0, 30, "update completed")
        events = tail.events()
        ev_id = events[find(events, type="service", action="create", name="ev")]["id"]
        order = [
            find(events, type="service", action="create", name="ev"),
            find(events, type="task", action="create", attr_service="ev"),
            find(events, type="task", action="state", attr_service="ev", attr_state__new="running"),
            find(events, type="service", id=ev_id, attr_replicas__new="3"),
            find(events, type="node", name="h4", attr_state__new="down"),
            find(events, type="node", name="h4", attr_state__new="ready"),
            find(events, type="service", id=ev_id, attr_updatestate__new="updating"),
            find(events, type="task", action="update", attr_service="ev", attr_desired__new="shutdown"),
            find(events, type="service", id=ev_id, attr_updatestate__new="completed"),
        ]
        assert -1 not in order and order == sorted(order), order
        # Every task the update created ran.
        created = {
            e["id"] for e in events if e["type"] == "task" and e["action"] == "create" and e["attributes"]["service"] == "ev"
        }
        ran = {e["id"] for e in events if e["type"] == "task" and e["attributes"].get("state.new") == "running"}
        assert len(created) >= 6 and created <= ran | {t.id for t in running_tasks(h1, "ev")}
        # Filters were applied by the manager: only h4's node events.
        filtered = nodes_only.events()
        assert filtered and all(e["type"] == "node" and e["name"] == "h4" for e in filtered)
        assert [e["attributes"].get("state.new") for e in filtered if e["action"] == "state"][:2] == ["down", "ready"]
        # Another manager holds the very same events at the same positions.
        same_range(events, replay(testbed, h3, t0))
    finally:
        tail.stop()
        nodes_only.stop()
    ok(testbed, h1, "service", "rm", "ev")


def test_events_continue_across_a_leader_kill_without_gap_or_duplicate(testbed, cluster):
    managers, h4 = cluster[:3], cluster[3]
    leader = wait_for(lambda: leader_of(managers), 30, "a leader")
    t0 = time.time()
    # The worker's daemon streams from the manager its session is with: the leader.
    tail = Tail(testbed, h4, "events", "--since", f"{t0:.6f}", "--format", "json")
    try:
        ok(testbed, leader, "service", "create", "--detach", "--name", "ev2", IMAGE, "sleep", "3600")
        tail.wait(lambda: find(tail.events(), type="service", action="create", name="ev2") >= 0, 30, "ev2 created")
        testbed.kill_swarmlet(leader)
        rest = [m for m in managers if m is not leader]
        new = wait_for(lambda: leader_of(rest), 30, "a new leader")
        ok(testbed, new, "service", "scale", "--detach", "ev2=3")
        tail.wait(lambda: find(tail.events(), type="service", name="ev2", attr_replicas__new="3") >= 0, 60, "the scale")
        tail.wait(lambda: find(tail.events(), type="node", name=new.name, attr_leader="true") >= 0, 30, "the new leader")
        tail.wait(lambda: find(tail.events(), type="node", name=leader.name, attr_state__new="down") >= 0, 30, "old leader down")
        events = tail.events()
        assert find(events, type="node", name=new.name, attr_leader="true") > find(events, type="service", name="ev2")
        same_range(events, replay(testbed, rest[0], t0))
        same_range(events, replay(testbed, rest[1], t0))
        log = Path(h4.log_path).read_text()
        assert f"event stream from manager {leader.ip}:4244 ended" in log  # it did move to another manager
        assert "reconnecting" not in "".join(tail.err)  # ... without the CLI noticing
    finally:
        tail.stop()
    testbed.start_swarmlet(leader, metrics_args(leader))
    wait_for(lambda: leader.name in ready_nodes(rest[0]), 60, f"{leader.name} back", interval=0.5)
    ok(testbed, rest[0], "service", "rm", "ev2")


def prometheus_query(expr: str, host) -> list[dict]:
    url = f"http://{host.ip}:{PROMETHEUS_PORT}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    with urllib.request.urlopen(url, timeout=5) as resp:
        body = json.loads(resp.read())
    assert body["status"] == "success", body
    return body["data"]["result"]


def scalar(expr: str, host) -> float | None:
    try:
        result = prometheus_query(expr, host)
    except OSError:
        return None
    return float(result[0]["value"][1]) if result else None


@pytest.fixture(scope="module")
def prometheus(testbed, cluster):
    """A real Prometheus server in h1's namespace, scraping every daemon each second."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.skip("prometheus is not installed (scripts/install.sh installs it)")
    h1 = cluster[0]
    home = Path(testbed.base) / "prometheus"
    home.mkdir(parents=True, exist_ok=True)
    targets = ", ".join(f"'{h.ip}:{METRICS_PORT}'" for h in cluster)
    config = home / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        f"scrape_configs:\n  - job_name: swarmlet\n    static_configs:\n      - targets: [{targets}]\n"
    )
    log = open(home / "prometheus.log", "w")
    proc = subprocess.Popen(
        [
            "nsenter",
            f"--net=/run/netns/{h1.netns}",
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={home / 'data'}",
            f"--web.listen-address={h1.ip}:{PROMETHEUS_PORT}",
        ],
        stdout=log,
        stderr=log,
        start_new_session=True,
    )
    try:
        wait_for(lambda: scalar("vector(1)", h1) == 1.0, 60, "Prometheus answering", interval=0.5)
        yield h1
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def test_prometheus_scrapes_every_daemon_and_sees_replicas_go_from_0_to_n(testbed, cluster, prometheus):
    h1 = cluster[0]
    q = prometheus
    wait_for(lambda: scalar('count(up{job="swarmlet"} == 1)', q) == 4.0, 60, "all 4 daemons scraped", interval=0.5)
    ok(testbed, h1, "service", "create", "--detach", "--name", "prom", "--replicas", "0", IMAGE, "sleep", "3600")
    running = 'max(swarmlet_service_replicas_running{service_name="prom"})'
    wait_for(lambda: scalar(running, q) == 0.0, 30, "prom's running series at 0", interval=0.5)
    assert scalar('max(swarmlet_service_replicas_desired{service_name="prom"})', q) == 0.0
    ok(testbed, h1, "service", "scale", "prom=3", timeout=120)
    wait_for(lambda: scalar(running, q) == 3.0, 30, "prom's running series at 3", interval=0.5)
    assert scalar('max(swarmlet_service_replicas_desired{service_name="prom"})', q) == 3.0
    # Every manager reports the cluster-wide series; one of them leads.
    assert scalar('count(swarmlet_service_replicas_running{service_name="prom"})', q) == 3.0
    assert scalar("sum(swarmlet_raft_leader)", q) == 1.0
    assert scalar("min(swarmlet_raft_quorum)", q) == 1.0
    assert scalar('max(swarmlet_nodes{state="ready"})', q) is not None
    # Every node reports its own.
    assert scalar("count(swarmlet_node_certificate_expiry_seconds > 86400)", q) == 4.0
    assert scalar("count(process_resident_memory_bytes)", q) == 4.0
    assert scalar("count(swarmlet_agent_session_connected == 1)", q) == 4.0
    wait_for(
        lambda: (scalar('sum(swarmlet_agent_container_operation_seconds_count{operation="start"})', q) or 0) >= 3,
        30,
        "container starts counted",
        interval=0.5,
    )
    assert (scalar("sum(swarmlet_leader_placements_total)", q) or 0) >= 3
    ok(testbed, h1, "service", "rm", "prom")


def scrape(host) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """The daemon's own /metrics, as Prometheus would read it (no server between)."""
    with urllib.request.urlopen(f"http://{host.ip}:{METRICS_PORT}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    return {(s.name, frozenset(s.labels.items())): s.value for fam in text_string_to_metric_families(text) for s in fam.samples}


def test_image_transfers_show_on_each_nodes_metrics(testbed, cluster):
    h1, *others = cluster
    wait_for(lambda: ready_nodes(h1) == {"h1", "h2", "h3", "h4"}, 60, "4 nodes READY", interval=0.5)
    # An image only h1's engine holds (the stamp makes it new on every run),
    # pushed to the others as a relay chain of real peer transfers.
    ref = "obs-relay:1"
    build(testbed, h1, ref, f"RUN echo {time.time_ns()} > /stamp")
    before = {h.name: scrape(h) for h in cluster}
    ok(testbed, h1, "image", "push", ref, timeout=240)

    def grew(host, name: str, **labels: str) -> float:
        key = (name, frozenset(labels.items()))
        return scrape(host).get(key, 0.0) - before[host.name].get(key, 0.0)

    for h in others:
        assert grew(h, "swarmlet_agent_image_fetches_total", source="peer", outcome="ok") >= 1, h.name
        assert grew(h, "swarmlet_agent_image_received_bytes_total", source="peer") > 0, h.name
        assert grew(h, "swarmlet_agent_image_fetch_seconds_count", source="peer") >= 1, h.name
        assert scrape(h)[("swarmlet_agent_image_fetches_in_progress", frozenset({("source", "peer")}))] == 0, h.name
    # h2 fetches from h1 alone (the head of the chain): h1 served it.
    assert grew(h1, "swarmlet_agent_image_served_bytes_total") > 0
    assert grew(h1, "swarmlet_agent_image_fetches_total", source="peer", outcome="ok") == 0
    ok(testbed, h1, "image", "rm", ref)


LOOP = 'i=0; while true; do echo "$(hostname) line $i"; i=$((i+1)); sleep 0.2; done'


def test_logs_follow_across_a_task_replacement(testbed, cluster):
    h1 = cluster[0]
    ok(testbed, h1, "service", "create", "--name", "lg", "--restart-delay", "0s", IMAGE, "sh", "-c", LOOP)
    (first,) = running_tasks(h1, "lg")
    follow = Tail(testbed, h1, "service", "logs", "--follow", "lg")
    try:
        follow.wait(lambda: any(f".{first.id[:12]}@" in line for line in follow.snapshot()), 30, "the first task's lines")
        before_kill = time.time()
        host = next(
            h for h in cluster if h.name == api(h1).ListTasks(cpb.ListTasksRequest(service_ref="lg")).node_names[first.node_id]
        )
        for c in containers(testbed, host, "lg"):
            c.kill()
        second = wait_for(
            lambda: next((t for t in running_tasks(h1, "lg") if t.id != first.id), None), 60, "a replacement task running"
        )
        follow.wait(lambda: any(f".{second.id[:12]}@" in line for line in follow.snapshot()), 30, "the replacement's lines")
        after_start = time.time()
    finally:
        follow.stop()
    # One task's logs, by its id.
    one = ok(testbed, h1, "service", "logs", first.id).stdout.splitlines()
    assert one and all(f".{first.id[:12]}@" in line for line in one)
    # Before the kill only the first task wrote; after the replacement ran only it writes.
    early = ok(testbed, h1, "service", "logs", "--until", f"{before_kill:.6f}", "lg").stdout.splitlines()
    assert early and all(f".{first.id[:12]}@" in line for line in early)
    late = ok(testbed, h1, "service", "logs", "--since", f"{after_start:.6f}", "lg").stdout.splitlines()
    assert late and all(f".{second.id[:12]}@" in line for line in late)
    detailed = ok(testbed, h1, "service", "logs", "--details", "--tail", "1", second.id).stdout
    assert f"swarmlet.task.id={second.id}" in detailed and f"swarmlet.service.id={second.service_id}" in detailed
    ok(testbed, h1, "service", "rm", "lg")


def test_why_a_task_waits(testbed, cluster):
    h1 = cluster[0]
    ok(testbed, h1, "service", "create", "--name", "far", "--constraint", "node.hostname==h4", IMAGE, "sleep", "3600")
    ok(testbed, h1, "node", "update", "--availability", "drain", "h4")
    try:
        reason = "no suitable node (4 nodes: 1 drained, 3 constraint node.hostname==h4 not met)"

        def pending() -> str:
            out = ok(testbed, h1, "service", "ps", "--no-trunc", "far").stdout
            return out if reason in out else ""

        table = wait_for(pending, 30, "the reason in service ps", interval=0.5)
        row = next(line for line in table.splitlines() if reason in line)
        assert "Pending" in row  # CURRENT STATE
        short = ok(testbed, h1, "service", "ps", "far").stdout
        assert '"no suitable node (4 nodes: 1 …"' in short  # truncated like Swarm's ERROR column
        listing = json.loads(ok(testbed, h1, "service", "ps", "--format", "json", "far").stdout)
        assert reason in listing["waiting"].values()
        (svc,) = json.loads(ok(testbed, h1, "service", "inspect", "far").stdout)
        assert svc["stuck"] == f"1 task pending: {reason}"
        assert f"Stuck:               1 task pending: {reason}" in ok(testbed, h1, "service", "inspect", "--pretty", "far").stdout
    finally:
        ok(testbed, h1, "node", "update", "--availability", "active", "h4")
    wait_for(lambda: len(running_tasks(h1, "far")) == 1, 60, "far placed once h4 is active again")
    assert json.loads(ok(testbed, h1, "service", "inspect", "far").stdout)[0]["stuck"] == ""
    ok(testbed, h1, "service", "rm", "far")

    # A restart policy that gave up: the slot's last task says so.
    ok(
        testbed, h1, "service", "create", "--detach", "--name", "crash", "--restart-condition", "on-failure",
        "--restart-max-attempts", "1", "--restart-delay", "0s", IMAGE, "sh", "-c", "exit 3",
    )  # fmt: skip
    gave_up = "restart policy gave up after 1 restart (max attempts 1)"
    wait_for(lambda: gave_up in ok(testbed, h1, "service", "ps", "--no-trunc", "crash").stdout, 60, "gave up in ps", interval=0.5)
    assert gave_up in json.loads(ok(testbed, h1, "service", "inspect", "crash").stdout)[0]["stuck"]
    ok(testbed, h1, "service", "rm", "crash")
