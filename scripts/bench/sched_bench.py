#!/usr/bin/env python3
"""Scheduler throughput with 3 managers replicating: 10,000 tasks placed on
1,000 simulated nodes.

    .venv/bin/python scripts/bench/sched_bench.py [--nodes 1000] [--tasks 10000] [--out FILE]

No root, no testbed: three real `Store`s (real pysyncobj, encrypted transport,
journal and dump files) on loopback ports in this process, the real
`LeaderLoop` (orchestrator + scheduler, proposing in slices) and the real
`Dispatcher`'s status writer on the leader. The 1,000 nodes are registered READY
(4 CPUs, 8 GiB) through store batches. Simulated agents (16 threads, each owning
a share of the nodes) do what an agent does over its session, without gRPC/TLS:
they watch the leader's store for tasks assigned to their nodes, report them
RUNNING through the dispatcher's own queue (`Dispatcher`'s StatusWriter, the path of
the `UpdateTaskStatus` RPC: one call per node, coalesced by the dispatcher's
writer into batches of up to 2,000 merges) and keep their nodes alive (the
dispatcher's heartbeat bookkeeping; otherwise its liveness loop would mark them
DOWN after 3 s).

The workload is that of tests/unit/core/test_scheduler.py's 10k test: service "big",
9,000 replicas reserving 0.1 CPU / 64 MiB each, and "pinned", 1,000 replicas
constrained to node.labels.rack==3 (100 nodes). Both are created in one batch;
the clock starts when that batch is proposed.

Reported: seconds until all tasks are ASSIGNED on the leader, until all are
RUNNING on the leader, and until both followers have applied the same state
(equal digests); tasks per second for each; and the Raft payload: bytes of
every serialized StoreBatch proposed during the run (leader loop, dispatcher,
barriers excluded) per task. pysyncobj adds its own framing, pickling and
encryption on top of that payload, and sends each entry to both followers.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from swarmlet.api import objects_pb2 as pb  # noqa: E402
from swarmlet.api import store_pb2 as spb  # noqa: E402
from swarmlet.atrest import DataKey  # noqa: E402
from swarmlet.core import state as st  # noqa: E402
from swarmlet.manager import store as store_mod  # noqa: E402
from swarmlet.manager.dispatcher import Dispatcher  # noqa: E402
from swarmlet.manager.leader import LeaderLoop  # noqa: E402
from swarmlet.manager.store import Store  # noqa: E402

GiB = 1 << 30
CPU = 1_000_000_000
SECRET = b"b" * 32
AGENT_THREADS = 16


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(pred, timeout: float, what: str, interval: float = 0.02):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not within {timeout:.0f}s")
        time.sleep(interval)


class ProposalCounter:
    """Wraps Store._submit: counts every batch proposed (barriers apart)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.batches = 0
        self.bytes = 0
        self.actions = 0
        self.enabled = False
        self.by_source: dict[str, list[int]] = {}
        orig = Store._submit
        counter = self

        def _submit(store_self, batch, timeout):
            if counter.enabled and (batch.actions or batch.request_id):
                size = len(batch.SerializeToString())
                src = threading.current_thread().name.split("-")[0] + "-" + (threading.current_thread().name.split("-") + [""])[1]
                with counter.lock:
                    counter.batches += 1
                    counter.bytes += size
                    counter.actions += len(batch.actions)
                    s = counter.by_source.setdefault(src, [0, 0, 0])
                    s[0] += 1
                    s[1] += size
                    s[2] += len(batch.actions)
            return orig(store_self, batch, timeout)

        Store._submit = _submit


def make_node(i: int) -> pb.Node:
    n = pb.Node(id=f"node{i:04d}", role=pb.NodeSpec.WORKER)
    n.spec.availability = pb.NodeSpec.ACTIVE
    n.spec.labels["rack"] = str(i % 10)
    n.description.hostname = f"sim{i:04d}"
    n.description.os = "linux"
    n.description.arch = "x86_64"
    n.description.resources.nano_cpus = 4 * CPU
    n.description.resources.memory_bytes = 8 * GiB
    n.status.state = pb.NodeStatus.READY
    n.status.addr = f"10.{i // 250}.{i % 250}.1"
    return n


def make_service(sid: str, replicas: int, cpus: float = 0, mem: int = 0, constraints=()) -> pb.Service:
    s = pb.Service(id=sid, spec_version=1)
    s.spec.name = sid
    s.spec.replicated.replicas = replicas
    t = s.spec.task
    t.container.image = "swarmlet-test:busybox"
    t.container.command.extend(["sleep", "3600"])
    t.restart.condition = pb.RestartPolicy.ANY
    t.placement.constraints.extend(constraints)
    t.resources.reservations.nano_cpus = int(cpus * CPU)
    t.resources.reservations.memory_bytes = mem
    return s


def _no_role_changes(node_id: str, csr_pem: bytes) -> tuple[bytes, str, bytes, list[str]]:
    raise RuntimeError("the benchmark changes no roles")


class Agents:
    """Simulated agents: report assigned tasks RUNNING, keep nodes alive."""

    def __init__(self, store: Store, disp: Dispatcher, node_ids: list[str]) -> None:
        self.store, self.disp = store, disp
        self.node_ids = node_ids
        self.stop = threading.Event()
        self.reported = 0
        self.calls = 0
        self._lock = threading.Lock()
        self.threads = [
            threading.Thread(target=self._run, args=(node_ids[k::AGENT_THREADS],), name=f"agent-{k}", daemon=True)
            for k in range(AGENT_THREADS)
        ]

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def _run(self, mine: list[str]) -> None:
        mine_set = set(mine)
        reported: set[str] = set()
        version = -1
        while not self.stop.is_set():
            now = time.monotonic()
            with self.disp._lock:  # what Heartbeat does for each node
                for nid in mine:
                    self.disp._last_seen[nid] = now
            snap = self.store.snapshot()
            if snap.version != version:
                version = snap.version
                per_node: dict[str, list[spb.StoreAction]] = {}
                for t in snap.tasks.values():
                    if (
                        t.node_id in mine_set
                        and t.id not in reported
                        and t.desired_state == pb.RUNNING
                        and pb.ASSIGNED <= t.status.state < pb.RUNNING
                    ):
                        status = pb.TaskStatus(
                            timestamp=time.time(), state=pb.RUNNING, message="started", container_id=f"c{t.id}"
                        )
                        per_node.setdefault(t.node_id, []).append(
                            spb.StoreAction(task_status=spb.TaskStatusAction(task_id=t.id, node_id=t.node_id, status=status))
                        )
                # One UpdateTaskStatus per node; they queue concurrently and the
                # dispatcher's writer coalesces them.
                waiters = []
                for actions in per_node.values():
                    self.disp._writer.submit(actions, wait=0)
                    waiters.extend(a.task_status.task_id for a in actions)
                reported.update(waiters)
                with self._lock:
                    self.reported += len(waiters)
                    self.calls += len(per_node)
            self.store.wait_for_change(version, timeout=0.5)


def digest_equal(stores: list[Store]) -> bool:
    vs = {s.version for s in stores}
    if len(vs) != 1:
        return False
    return len({s.state_digest() for s in stores}) == 1


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--tasks", type=int, default=10000, help="total replicas (10%% of them pinned to 1 rack in 10)")
    ap.add_argument("--out", default=None, help="write the JSON result here (else stdout only)")
    ap.add_argument("--timeout", type=float, default=600)
    args = ap.parse_args(argv)

    counter = ProposalCounter()
    tmp = tempfile.mkdtemp(prefix="sched-bench-")
    addrs = [f"127.0.0.1:{free_port()}" for _ in range(3)]
    stores = [
        Store(a, [p for p in addrs if p != a], os.path.join(tmp, a.replace(":", "_")), SECRET, data_key=DataKey.generate())
        for a in addrs
    ]
    result: dict = {
        "machine": {
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "loadavg_start": Path("/proc/loadavg").read_text().split()[:3],
        },
        "nodes": args.nodes,
        "tasks": args.tasks,
        "managers": 3,
        "raft_timings": store_mod.RaftTimings().__dict__,
    }
    loops, disps = [], []
    agents = None
    try:
        leader = wait_for(lambda: next((s for s in stores if s.is_leader()), None), 30, "a leader")
        # Every manager runs a leader loop and a dispatcher (idle unless leader).
        for s in stores:
            loop = LeaderLoop(s)
            loop._thread.name = "leaderloop-" + s.self_addr.rsplit(":", 1)[1]
            loops.append(loop)
            d = Dispatcher(s, renew_role=_no_role_changes)
            disps.append(d)
        leader.propose([st.put(pb.Cluster(id="cluster"), create=True)])
        t0 = time.monotonic()
        node_list = [make_node(i) for i in range(args.nodes)]
        for k in range(0, len(node_list), 250):
            leader.propose([st.put(n, create=True) for n in node_list[k : k + 250]], timeout=30)
        result["register_nodes_seconds"] = round(time.monotonic() - t0, 2)
        log(f"{args.nodes} nodes registered READY in {result['register_nodes_seconds']} s")
        li = stores.index(leader)
        for loop in loops:
            loop.start()
        for d in disps:
            d.start()
        agents = Agents(leader, disps[li], [n.id for n in node_list])
        agents.start()

        pinned = args.tasks // 10
        big = args.tasks - pinned
        services = [
            make_service("big", big, cpus=0.1, mem=64 << 20),
            make_service("pinned", pinned, constraints=["node.labels.rack==3"]),
        ]
        counter.enabled = True
        start_cpu = os.times()
        load_before = Path("/proc/loadavg").read_text().split()[:3]
        t0 = time.monotonic()
        leader.propose([st.put(s, create=True) for s in services], timeout=30)
        t_created = time.monotonic()

        def count(pred):
            return sum(1 for t in leader.snapshot().tasks.values() if pred(t))

        def all_assigned():
            n = count(lambda t: t.node_id and t.status.state >= pb.ASSIGNED)
            return n >= args.tasks

        def all_running():
            return count(lambda t: t.status.state == pb.RUNNING) >= args.tasks

        marks = {}
        last_log = time.monotonic()
        deadline = t0 + args.timeout
        while time.monotonic() < deadline and ("assigned" not in marks or "running" not in marks):
            if "assigned" not in marks and all_assigned():
                marks["assigned"] = time.monotonic()
            if "running" not in marks and all_running():
                marks["running"] = time.monotonic()
            if time.monotonic() - last_log > 5:
                last_log = time.monotonic()
                log(
                    f"  {time.monotonic() - t0:.1f}s: assigned {count(lambda t: t.node_id and t.status.state >= pb.ASSIGNED)}, "
                    f"running {count(lambda t: t.status.state == pb.RUNNING)}, leader loop rounds {loops[li].rounds}"
                )
            time.sleep(0.02)
        if "running" not in marks:
            raise RuntimeError("not every task RUNNING within the timeout")
        wait_for(lambda: digest_equal(stores), 120, "3 managers with equal state")
        marks["replicated"] = time.monotonic()
        counter.enabled = False
        cpu = os.times()
        ta, tr, tp = (marks[k] - t0 for k in ("assigned", "running", "replicated"))
        # Correctness of the placement itself.
        snap = leader.snapshot()
        per_node: dict[str, int] = {}
        for t in snap.tasks.values():
            if t.service_id == "big":
                per_node[t.node_id] = per_node.get(t.node_id, 0) + 1
        result.update(
            {
                "seconds_to_all_assigned": round(ta, 2),
                "seconds_to_all_running": round(tr, 2),
                "seconds_to_all_replicated": round(tp, 2),
                "service_create_commit_seconds": round(t_created - t0, 3),
                "tasks_assigned_per_second": round(args.tasks / ta, 1),
                "tasks_running_per_second": round(args.tasks / tr, 1),
                "leader_loop_rounds": loops[li].rounds,
                "raft_batches": counter.batches,
                "raft_payload_bytes": counter.bytes,
                "raft_payload_bytes_per_task": round(counter.bytes / args.tasks, 1),
                "raft_actions": counter.actions,
                "proposals_by_thread": {
                    k: {"batches": v[0], "bytes": v[1], "actions": v[2]} for k, v in counter.by_source.items()
                },
                "agent_status_calls": agents.calls,
                "process_cpu_seconds": round((cpu.user - start_cpu.user) + (cpu.system - start_cpu.system), 1),
                "big_tasks_per_node_min_max": [min(per_node.values()), max(per_node.values())] if per_node else None,
                "loadavg_before": load_before,
                "loadavg_end": Path("/proc/loadavg").read_text().split()[:3],
                "log_len_leader": leader.log_length(),
                "state_digest_equal": True,
            }
        )
        log(
            f"all {args.tasks} ASSIGNED after {ta:.2f} s ({args.tasks / ta:.0f} tasks/s), RUNNING after {tr:.2f} s "
            f"({args.tasks / tr:.0f} tasks/s), on every manager after {tp:.2f} s; "
            f"raft payload {counter.bytes / args.tasks:.0f} B/task in {counter.batches} batches"
        )
    finally:
        if agents is not None:
            agents.stop.set()
        for loop in loops:
            loop.stop()
        for d in disps:
            d.stop()
        for s in stores:
            s.close()
    out = json.dumps(result, indent=1)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(out + "\n")
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
