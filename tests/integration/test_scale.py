"""200 simulated nodes on real mutual-TLS sessions with one real manager, a
real worker and the CLI (issue 15).

The simulated nodes (scripts/bench/simnodes.py) join through h1's real join
port and run the real agent with the in-memory engine behind it. With a
thread per session, ~63 of them starved the manager's server: heartbeats
failed and nodes flapped DOWN. Here 200 hold their sessions while a real
worker (h2, real dockerd) keeps its containers, the CLI keeps answering, and
400 tasks are placed on the simulated nodes.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import pytest

from swarmlet.api import control_pb2 as cpb
from swarmlet.api import control_pb2_grpc
from swarmlet.api import objects_pb2 as pb
from tests.waiting import wait_for

SIMNODES = Path(__file__).resolve().parents[2] / "scripts" / "bench" / "simnodes.py"
IMAGE = "swarmlet-test:busybox"
SIMULATED = 200
PER_PROCESS = 50


def api(host) -> control_pb2_grpc.ControlStub:
    return control_pb2_grpc.ControlStub(grpc.insecure_channel(f"unix://{host.swarmlet_sock}"))


def ok(testbed, host, *args, timeout: float = 60):
    r = testbed.cli(host, *args, timeout=timeout)
    assert r.returncode == 0, f"swarmlet {' '.join(args)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"
    return r


class Sim:
    """One simnodes.py process and the JSON lines it writes."""

    def __init__(self, manager: str, token: str, count: int, first: int, addr: str) -> None:
        cmd = [sys.executable, str(SIMNODES), "--manager", manager, "--token", token, "--count", str(count)]
        cmd += ["--first", str(first), "--addr", addr, "--image", IMAGE]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.events: list[dict] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.events.append(json.loads(line))

    def stats(self) -> dict:
        n = len([e for e in self.events if e["event"] == "stats"])
        assert self.proc.stdin is not None
        self.proc.stdin.write("stats\n")
        self.proc.stdin.flush()
        wait_for(lambda: len([e for e in self.events if e["event"] == "stats"]) > n, 30, "simulated nodes' stats")
        return [e for e in self.events if e["event"] == "stats"][-1]

    def close(self) -> str:
        try:
            assert self.proc.stdin is not None
            self.proc.stdin.write("quit\n")
            self.proc.stdin.flush()
            self.proc.wait(20)
        except (BrokenPipeError, subprocess.TimeoutExpired, ValueError):
            self.proc.kill()
        assert self.proc.stderr is not None
        return self.proc.stderr.read()


@pytest.fixture(scope="module")
def cluster(testbed):
    h1, h2 = testbed.hosts[0], testbed.hosts[1]
    ok(testbed, h1, "init")
    token = ok(testbed, h1, "join-token", "-q", "worker").stdout.strip()
    ok(testbed, h2, "join", "--token", token, h1.ip)
    sims = [Sim(f"{h1.ip}:4242", token, PER_PROCESS, i * PER_PROCESS, testbed.bridge_ip) for i in range(SIMULATED // PER_PROCESS)]
    try:
        yield h1, h2, sims
    finally:
        for s in sims:
            s.close()


def node_states(testbed, h1) -> dict[str, str]:
    """hostname -> status, as `node ls --format json` shows them."""
    r = ok(testbed, h1, "node", "ls", "--format", "json", timeout=30)
    return {n["description"]["hostname"]: n["status"]["state"] for n in json.loads(r.stdout)["nodes"]}


def test_200_simulated_nodes_hold_sessions_beside_a_real_worker(testbed, cluster) -> None:
    h1, h2, sims = cluster
    # A real service on the real worker first.
    ok(
        testbed,
        h1,
        "service",
        "create",
        "--name",
        "real",
        "--replicas",
        "2",
        "--detach",
        "--constraint",
        "node.hostname==h2",
        IMAGE,
        "sleep",
        "3600",
    )
    engine = testbed.docker(h2)

    def real_containers() -> list[str]:
        return sorted(c.id for c in engine.containers.list(filters={"label": "swarmlet.service.name=real"}))

    before = wait_for(lambda: len(real_containers()) == 2 and real_containers(), 60, "2 real containers on h2")

    # Every simulated node joins and is READY, seen through the CLI.
    def all_ready() -> bool:
        states = node_states(testbed, h1)
        sim = [s for name, s in states.items() if name.startswith("sim-")]
        return len(sim) == SIMULATED and all(s == "READY" for s in sim)

    wait_for(all_ready, 180, f"{SIMULATED} simulated nodes READY", interval=1.0)

    # 400 tasks on the simulated nodes. Their fake engines hold the image by
    # name, not the real engines' image id: not pinned (issue 9).
    ok(
        testbed, h1, "service", "create", "--name", "sim", "--replicas", "400", "--detach", "--no-resolve-image",
        "--constraint", "node.hostname!=h1", "--constraint", "node.hostname!=h2", IMAGE, "sleep", "3600",
    )  # fmt: skip

    def sim_running() -> int:
        return api(h1).ServiceProgress(cpb.ServiceProgressRequest(ref="sim"), timeout=30).running

    wait_for(lambda: sim_running() == 400, 120, "400 tasks RUNNING on the simulated nodes", interval=0.5)
    assert sum(s.stats()["tasks"] for s in sims) == 400, "the fake engines run exactly the 400 tasks"

    # A while of steady state: the CLI answers every time, no node is ever
    # DOWN, every session holds, the real worker's containers stay the same.
    until = time.monotonic() + 15
    while time.monotonic() < until:
        states = node_states(testbed, h1)
        assert len(states) == SIMULATED + 2
        assert all(s == "READY" for s in states.values()), {k: v for k, v in states.items() if v != "READY"}
        time.sleep(1)
    stats = [s.stats() for s in sims]
    # A heartbeat's deadline is twice the 0.5 s period (1 s). On CI's two
    # cores, shared with the other shard's testbed and 200 agents in one
    # process, an odd heartbeat can miss it and is retried on the next
    # period (CI saw 1 of about 7,300). A thread per session failed 56% of
    # them at 100 nodes: at most 0.1% keeps that regression visible, and the
    # READY check above shows no node ever went DOWN.
    sent = sum(s["heartbeats"] + s["heartbeat_failures"] for s in stats)
    failed = sum(s["heartbeat_failures"] for s in stats)
    assert sent > SIMULATED * 10, stats
    assert failed <= sent / 1000, f"{failed} of {sent} heartbeats failed: {stats}"
    assert sum(s["connected"] for s in stats) == SIMULATED
    assert real_containers() == before, "the real worker's containers were replaced"
    nodes = api(h1).ListNodes(cpb.ListNodesRequest(), timeout=30).nodes
    assert all(n.status.state == pb.NodeStatus.READY for n in nodes)

    ok(testbed, h1, "service", "rm", "sim", "real")
    wait_for(lambda: sum(s.stats()["tasks"] for s in sims) == 0, 60, "the simulated tasks removed")
    wait_for(lambda: not real_containers(), 60, "the real containers removed")
