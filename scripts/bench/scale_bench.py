#!/usr/bin/env python3
"""Scale benchmark (issue 15): N simulated nodes on real mutual-TLS sessions
against 3 real managers, and M tasks placed on them.

The managers are real `swarmlet daemon`s on a testbed (prefix `sb`,
198.18.51.0/24: three hosts with their own dockerd, Raft between them). The
nodes are simnodes.py processes in the root namespace: each node joins
through the real join port (token, CSR, certificate from the cluster's CA)
and runs the real agent (session, heartbeats, executor) with the in-memory
engine (agent/runtime/fake.py) instead of Docker: the subject is the control
plane. For each N:

- nodes READY: from starting the simulated nodes to N nodes READY on the
  leader (their joins, then their sessions);
- idle: the leader daemon's CPU (share of one core) and RSS over 10 s,
  the agents' heartbeat round trip (p50/p99) and failures, Raft bytes/s;
- M tasks (services of 1,000 replicas, `node.role==worker`) from the first
  CreateService to all RUNNING on the leader, and Raft bytes/s meanwhile;
- node-down: 5 nodes' agents stopped (silent), until the leader marks them
  DOWN (`--heartbeat`, default 2 s: `init --dispatcher-heartbeat`, down
  after 3 periods; past 200 heartbeats a second both stretch with N, and
  the table gives the period the agents were asked for);
- failover: the leader's daemon SIGKILLed, until another manager accepts a
  write, and until every live node has a session again.

Also the scheduler alone (the pure core's round, in this process): 30,000
tasks on 1,000 nodes.

    .venv/bin/python scripts/bench/scale_bench.py --sizes 100,250,500,1000 --out docs/bench/scale.json
    .venv/bin/python scripts/bench/scale_bench.py --report docs/bench/scale.json --plot docs/bench/scale.png

Needs root (network namespaces, dockerd); always tears its testbed down.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE.parent))

import testbed as tb  # noqa: E402

from swarmlet.api import control_pb2 as cpb  # noqa: E402
from swarmlet.api import control_pb2_grpc  # noqa: E402
from swarmlet.api import objects_pb2 as pb  # noqa: E402

PREFIX, SUBNET = "sb", 51
IMAGE = "swarmlet-test:busybox"
PER_SERVICE = 1000
NODES_PER_PROC = 100
DOWN_NODES = 5


def api(host: tb.Host) -> control_pb2_grpc.ControlStub:
    opts = [("grpc.max_receive_message_length", 64 << 20)]
    return control_pb2_grpc.ControlStub(grpc.insecure_channel(f"unix://{host.swarmlet_sock}", options=opts))


def wait(pred, timeout: float, what: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        try:
            v = pred()
        except grpc.RpcError:
            v = None
        if v:
            return v
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not within {timeout:.0f}s")
        time.sleep(interval)


def proc_cpu(pid: int) -> float:
    """User + system seconds of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def raft_bytes(host: tb.Host) -> int:
    info = api(host).Info(cpb.InfoRequest(), timeout=10)
    return int(json.loads(info.raft_status or "{}").get("applied_bytes", 0))


class Sims:
    """simnodes.py processes, driven over their stdin/stdout."""

    def __init__(self, manager: str, token: str, n: int, addr: str) -> None:
        self.procs: list[subprocess.Popen[str]] = []
        self.events: list[list[dict]] = []
        self.started = time.monotonic()
        for i, first in enumerate(range(0, n, NODES_PER_PROC)):
            count = min(NODES_PER_PROC, n - first)
            cmd = [sys.executable, str(HERE / "simnodes.py"), "--manager", manager, "--token", token]
            cmd += ["--count", str(count), "--first", str(first), "--addr", addr, "--image", IMAGE]
            p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            self.procs.append(p)
            self.events.append([])
            threading.Thread(target=self._read, args=(i,), daemon=True).start()

    def _read(self, i: int) -> None:
        assert self.procs[i].stdout is not None
        for line in self.procs[i].stdout:
            ev = json.loads(line)
            ev["at"] = time.monotonic()
            self.events[i].append(ev)

    def last(self, i: int, kind: str) -> dict | None:
        evs = [e for e in self.events[i] if e["event"] == kind]
        return evs[-1] if evs else None

    def send(self, i: int, cmd: str) -> None:
        assert self.procs[i].stdin is not None
        self.procs[i].stdin.write(cmd + "\n")
        self.procs[i].stdin.flush()

    def ask(self, i: int, cmd: str, kind: str, timeout: float = 30) -> dict:
        n = len([e for e in self.events[i] if e["event"] == kind])
        self.send(i, cmd)
        return wait(lambda: len([e for e in self.events[i] if e["event"] == kind]) > n and self.last(i, kind), timeout, cmd)

    def stats(self) -> dict:
        parts = [self.ask(i, "stats", "stats") for i in range(len(self.procs))]
        return {
            "connected": sum(p["connected"] for p in parts),
            "heartbeat_failures": sum(p["heartbeat_failures"] for p in parts),
            "rtt_p50": max((p["rtt_p50"] or 0) for p in parts),
            "rtt_p99": max((p["rtt_p99"] or 0) for p in parts),
            "tasks": sum(p["tasks"] for p in parts),
            "heartbeat_period": max((p.get("heartbeat_period") or 0) for p in parts),
        }

    def close(self) -> None:
        for i in range(len(self.procs)):
            try:
                self.send(i, "quit")
            except (BrokenPipeError, ValueError):
                pass
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()


def fresh_cluster(bed: tb.Testbed, heartbeat: float, election: str) -> tuple[tb.Host, str]:
    """Three managers from clean state; returns the leader and the worker token."""
    for h in bed.hosts:
        bed.kill_swarmlet(h)
        shutil.rmtree(h.state_dir, ignore_errors=True)
        for c in bed.docker(h).containers.list(all=True, filters={"label": "swarmlet.task.id"}):
            c.remove(force=True)
    for h in bed.hosts:
        bed.start_swarmlet(h, ["--election-timeout", election])
    h1 = bed.hosts[0]
    api(h1).Init(cpb.InitRequest(advertise_addr=h1.ip, dispatcher_heartbeat=heartbeat), timeout=60)
    mtok = api(h1).JoinToken(cpb.JoinTokenRequest(role="manager"), timeout=10).token
    for h in bed.hosts[1:]:
        api(h).Join(cpb.JoinRequest(remote_addr=h1.ip, token=mtok, advertise_addr=h.ip), timeout=120)
    wtok = api(h1).JoinToken(cpb.JoinTokenRequest(role="worker"), timeout=10).token
    wait(lambda: len(ready_nodes(h1)) == 3, 60, "3 managers READY")
    return h1, wtok


def ready_nodes(h: tb.Host) -> set[str]:
    nodes = api(h).ListNodes(cpb.ListNodesRequest(), timeout=30).nodes
    return {n.id for n in nodes if n.status.state == pb.NodeStatus.READY}


def leader_host(bed: tb.Testbed, alive: list[tb.Host]) -> tb.Host | None:
    for h in alive:
        try:
            if api(h).Info(cpb.InfoRequest(), timeout=2).is_leader:
                return h
        except grpc.RpcError:
            pass
    return None


def measure_size(bed: tb.Testbed, out: dict, tasks_per_node: int, heartbeat: float, election: str) -> dict:
    """Fills `out` as it goes (a size that fails half-way keeps what it measured)."""
    n = out["nodes"]
    out.update(tasks=n * tasks_per_node, heartbeat=heartbeat, election_timeout=election)
    leader, token = fresh_cluster(bed, heartbeat, election)
    pid = bed._swarmlet_pid(leader)
    assert pid is not None
    sims = Sims(f"{leader.ip}:4242", token, n, bed.bridge_ip)
    try:
        # ---- nodes READY
        want = n + 3
        wait(lambda: len(ready_nodes(leader)) >= want, 600, f"{n} nodes READY", interval=0.5)
        t_ready = time.monotonic()
        joined = [sims.last(i, "joined") for i in range(len(sims.procs))]
        out["join_seconds"] = max(j["at"] for j in joined if j) - sims.started
        out["ready_seconds"] = t_ready - sims.started
        print(f"  {n} nodes READY after {out['ready_seconds']:.1f}s (joins took {out['join_seconds']:.1f}s)", flush=True)

        # ---- idle
        time.sleep(5)
        c0, b0, t0 = proc_cpu(pid), raft_bytes(leader), time.monotonic()
        time.sleep(10)
        c1, b1, t1 = proc_cpu(pid), raft_bytes(leader), time.monotonic()
        out["idle_cpu"] = (c1 - c0) / (t1 - t0)
        out["idle_rss_mb"] = proc_rss_mb(pid)
        out["idle_raft_bytes_per_s"] = (b1 - b0) / (t1 - t0)
        st = sims.stats()
        out["heartbeat_rtt_p50"], out["heartbeat_rtt_p99"] = st["rtt_p50"], st["rtt_p99"]
        out["heartbeat_failures_idle"] = st["heartbeat_failures"]
        out["heartbeat_period_asked"] = st["heartbeat_period"]
        print(
            f"  idle: leader CPU {100 * out['idle_cpu']:.0f}%, RSS {out['idle_rss_mb']:.0f} MB, heartbeat p99 {st['rtt_p99']:.3f}s",
            flush=True,
        )

        # ---- M tasks
        m = n * tasks_per_node
        services = []
        b0, t0 = raft_bytes(leader), time.monotonic()
        for k in range(0, m, PER_SERVICE):
            spec = pb.ServiceSpec(name=f"load{k // PER_SERVICE}")
            spec.replicated.replicas = min(PER_SERVICE, m - k)
            spec.task.container.image = IMAGE
            spec.task.container.args.extend(["sleep", "3600"])
            spec.task.placement.constraints.append("node.role==worker")
            services.append(create_service(leader, spec))
        created = time.monotonic()

        def running() -> int:
            return sum(api(leader).ServiceProgress(cpb.ServiceProgressRequest(ref=s), timeout=60).running for s in services)

        wait(lambda: running() >= m, 900, f"{m} tasks RUNNING", interval=0.5)
        t1 = time.monotonic()
        out["place_seconds"] = t1 - t0
        out["create_calls_seconds"] = created - t0
        out["tasks_per_second"] = m / (t1 - t0)
        out["place_raft_bytes_per_s"] = (raft_bytes(leader) - b0) / (t1 - t0)
        out["leader_rss_mb_with_tasks"] = proc_rss_mb(pid)
        print(f"  {m} tasks RUNNING after {out['place_seconds']:.1f}s ({out['tasks_per_second']:.0f}/s)", flush=True)
        time.sleep(3)
        c0, t0 = proc_cpu(pid), time.monotonic()
        time.sleep(10)
        out["idle_cpu_with_tasks"] = (proc_cpu(pid) - c0) / (time.monotonic() - t0)
        out["heartbeat_failures_after_tasks"] = sims.stats()["heartbeat_failures"]

        # ---- node-down detection
        stopped = sims.ask(0, f"stop {DOWN_NODES}", "stopped")
        ids = set(stopped["nodes"])

        def all_down() -> bool:
            nodes = api(leader).ListNodes(cpb.ListNodesRequest(), timeout=30).nodes
            return all(x.status.state == pb.NodeStatus.DOWN for x in nodes if x.id in ids)

        wait(all_down, 60, "stopped nodes DOWN", interval=0.05)
        out["down_detect_seconds"] = time.monotonic() - stopped["at"]
        print(f"  node-down detected after {out['down_detect_seconds']:.2f}s", flush=True)

        # ---- failover
        others = [h for h in bed.hosts if h is not leader]
        t0 = time.monotonic()
        bed.kill_swarmlet(leader, sig=signal.SIGKILL)

        # A write attempt every 100 ms, each in its own thread (as ha_bench.py):
        # attempts stuck on the dead leader do not hide a later one that works.
        acked: list[float] = []

        def attempt(h: tb.Host) -> None:
            try:
                api(h).UpdateNode(cpb.UpdateNodeRequest(ref=h.name, label_add={"failover": str(time.time())}), timeout=10)
                acked.append(time.monotonic())
            except grpc.RpcError:
                pass

        k = 0
        while not acked and time.monotonic() - t0 < 60:
            threading.Thread(target=attempt, args=(others[k % len(others)],), daemon=True).start()
            k += 1
            time.sleep(0.1)
        wait(lambda: acked, 15, "a write accepted after the leader died")
        out["failover_write_seconds"] = min(acked) - t0
        live = n - DOWN_NODES
        wait(lambda: sims.stats()["connected"] >= live, 300, "every live node has a session again", interval=0.5)
        out["failover_sessions_seconds"] = time.monotonic() - t0
        print(
            f"  failover: write after {out['failover_write_seconds']:.2f}s, "
            f"all sessions back after {out['failover_sessions_seconds']:.1f}s",
            flush=True,
        )
    finally:
        sims.close()
    return out


def create_service(h: tb.Host, spec: pb.ServiceSpec) -> str:
    """CreateService, retried while the managers are too busy to commit (a
    write that timed out may still have been applied: look for it first)."""
    deadline = time.monotonic() + 120
    while True:
        try:
            # The simulated nodes' fake engines hold the image by name only (not the
            # real engines' image id): no pinning (issue 9).
            return str(api(h).CreateService(cpb.CreateServiceRequest(spec=spec, no_resolve_image=True), timeout=60).service.id)
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.UNAVAILABLE or time.monotonic() > deadline:
                raise
        try:
            return str(api(h).GetService(cpb.GetServiceRequest(ref=spec.name), timeout=30).service.id)
        except grpc.RpcError:
            time.sleep(0.5)


def scheduler_alone(nodes: int, tasks: int) -> dict:
    """The pure round (orchestrator + allocator + scheduler), no Raft."""
    from swarmlet.core import changes as ch
    from swarmlet.core import planner
    from tests.core_sim import Sim

    sim = Sim()
    for i in range(nodes):
        sim.add_node(f"n{i:05d}", cpus=4, mem=8 << 30)
    sim.add_service("big", replicas=tasks)
    ids = iter(range(10**9))
    t0 = time.monotonic()
    acts = planner.plan(sim.snap, sim.now, lambda: f"t{next(ids):09d}").actions
    sec = time.monotonic() - t0
    placed = sum(1 for a in acts if a.WhichOneof("action") == "put" and a.put.task.node_id)
    out = {"nodes": nodes, "tasks": tasks, "placed": placed, "seconds": sec, "placements_per_second": placed / sec}
    # The steady state: the plan applied, then 2,000 tasks report RUNNING.
    # A full round over everything vs the incremental round.
    sim.apply(acts)
    inc = planner.IncrementalPlanner()
    inc.round(sim.snap, ch.EVERYTHING, sim.now, lambda: f"x{next(ids):09d}")
    prev = sim.snap.version
    for t in list(sim.snap.tasks.values())[:2000]:
        sim.report(t.id, pb.RUNNING)
    t0 = time.monotonic()
    full = planner.plan(sim.snap, sim.now, lambda: f"y{next(ids):09d}")
    out["round_full_seconds"] = time.monotonic() - t0
    changed = ch.Changes(tasks=frozenset(t.id for t in sim.snap.tasks.values() if t.meta.version > prev))
    t0 = time.monotonic()
    part = inc.round(sim.snap, changed, sim.now, lambda: f"z{next(ids):09d}")
    out["round_incremental_seconds"] = time.monotonic() - t0
    assert full.actions == part.actions == []
    return out


def report(data: dict) -> str:
    rows = [
        ("nodes READY after start (s)", "ready_seconds", "{:.1f}"),
        ("… of which joins (s)", "join_seconds", "{:.1f}"),
        ("heartbeat period asked (s)", "heartbeat_period_asked", "{:.2f}"),
        ("leader CPU idle (% of a core)", "idle_cpu", "{:.0%}"),
        ("leader RSS idle (MB)", "idle_rss_mb", "{:.0f}"),
        ("heartbeat RTT p50 / p99 (ms)", None, None),
        ("heartbeat failures (idle / after tasks)", None, None),
        ("Raft bytes/s idle", "idle_raft_bytes_per_s", "{:.0f}"),
        ("tasks created → RUNNING (s)", "place_seconds", "{:.1f}"),
        ("tasks/s end to end", "tasks_per_second", "{:.0f}"),
        ("Raft bytes/s while placing", "place_raft_bytes_per_s", "{:.0f}"),
        ("leader RSS with the tasks (MB)", "leader_rss_mb_with_tasks", "{:.0f}"),
        ("leader CPU idle with the tasks", "idle_cpu_with_tasks", "{:.0%}"),
        ("node-down detected (s)", "down_detect_seconds", "{:.2f}"),
        ("failover: first write (s)", "failover_write_seconds", "{:.2f}"),
        ("failover: all sessions back (s)", "failover_sessions_seconds", "{:.1f}"),
    ]
    sizes = data["sizes"]
    lines = ["| N nodes (tasks) | " + " | ".join(f"{s['nodes']} ({s['tasks']})" for s in sizes) + " |"]
    lines.append("|---|" + "---|" * len(sizes))
    for label, key, fmt in rows:
        cells = []
        for s in sizes:
            if label.startswith("heartbeat RTT"):
                if s.get("heartbeat_rtt_p99") is None:
                    cells.append("–")
                else:
                    cells.append(f"{1000 * s['heartbeat_rtt_p50']:.0f} / {1000 * s['heartbeat_rtt_p99']:.0f}")
            elif label.startswith("heartbeat failures"):
                cells.append(f"{s.get('heartbeat_failures_idle', '–')} / {s.get('heartbeat_failures_after_tasks', '–')}")
            else:
                v = s.get(key)
                cells.append("–" if v is None else fmt.format(v))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    sa = data.get("scheduler_alone")
    if sa:
        lines.append("")
        lines.append(
            f"Scheduler alone (pure round, no Raft): {sa['placed']} of {sa['tasks']} tasks placed on {sa['nodes']} nodes "
            f"in {sa['seconds']:.2f} s = {sa['placements_per_second']:.0f} placements/s."
        )
        if "round_full_seconds" in sa:
            lines.append(
                f"After 2,000 of them report RUNNING: a full round takes {1000 * sa['round_full_seconds']:.0f} ms, "
                f"the incremental round {1000 * sa['round_incremental_seconds']:.0f} ms (both plan nothing)."
            )
    return "\n".join(lines)


def plot(data: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = data["sizes"]
    n = [s["nodes"] for s in sizes]

    def v(key: str, scale: float = 1.0) -> list[float | None]:
        """The values of `key` per size; None (a gap) where a size has none."""
        return [None if s.get(key) is None else scale * s[key] for s in sizes]

    fig, ax = plt.subplots(2, 2, figsize=(10, 7))
    ax[0][0].plot(n, v("ready_seconds"), "o-", label="all READY")
    ax[0][0].plot(n, v("join_seconds"), "s--", label="joins done")
    ax[0][0].axhline(60, color="r", ls=":", label="target 60 s")
    ax[0][0].set(title="nodes READY after start (s)", xlabel="nodes")
    ax[0][0].legend()
    ax[0][1].plot(n, v("place_seconds"), "o-", label="30 tasks/node RUNNING")
    ax[0][1].plot(n, [s["tasks"] / 2000 for s in sizes], "r:", label="target 2,000 tasks/s")
    ax[0][1].set(title="tasks created → RUNNING (s)", xlabel="nodes")
    ax[0][1].legend()
    ax[1][0].plot(n, v("idle_cpu", 100), "o-", label="idle")
    ax[1][0].plot(n, v("idle_cpu_with_tasks", 100), "s--", label="idle with tasks")
    ax[1][0].axhline(30, color="r", ls=":", label="target 30%")
    ax[1][0].set(title="leader CPU (% of one core)", xlabel="nodes")
    ax[1][0].legend()
    ax[1][1].plot(n, v("heartbeat_rtt_p99", 1000), "o-", label="heartbeat p99")
    ax[1][1].plot(n, v("failover_write_seconds", 1000), "s-", label="failover: first write")
    ax[1][1].plot(n, v("down_detect_seconds", 1000), "^-", label="node-down detected")
    ax[1][1].set(title="latencies (ms)", xlabel="nodes")
    ax[1][1].legend()
    fig.suptitle("swarmlet, 3 managers + simulated nodes on one shared 2-core machine (gaps: size did not complete)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="100,250,500,1000")
    ap.add_argument("--tasks-per-node", type=int, default=30)
    ap.add_argument("--heartbeat", type=float, default=2.0, help="init --dispatcher-heartbeat, seconds")
    ap.add_argument("--election-timeout", default="1.0:2.0", help="the managers' --election-timeout")
    ap.add_argument("--out", default="docs/bench/scale.json")
    ap.add_argument("--report", help="print the table of a JSON file instead of running")
    ap.add_argument("--plot", help="with --report: write a PNG plot against N")
    ap.add_argument("--scheduler-only", type=int, metavar="RUNS", help="only the in-process scheduler measurement, RUNS times")
    args = ap.parse_args()
    if args.scheduler_only:
        for _ in range(args.scheduler_only):
            print(json.dumps(scheduler_alone(1000, 30000)), flush=True)
        return 0
    if args.report:
        data = json.loads(Path(args.report).read_text())
        print(report(data))
        if args.plot:
            plot(data, args.plot)
        return 0
    data: dict = {"started": time.strftime("%Y-%m-%d %H:%M:%S"), "load_start": os.getloadavg(), "sizes": []}
    data["scheduler_alone"] = scheduler_alone(1000, 30000)
    print(f"scheduler alone: {data['scheduler_alone']['placements_per_second']:.0f} placements/s", flush=True)
    bed = tb.Testbed(prefix=PREFIX, subnet_index=SUBNET)
    try:
        bed.up(3, swarmlet=True)
        for n in [int(x) for x in args.sizes.split(",")]:
            print(f"N = {n}", flush=True)
            out: dict = {"nodes": n}
            data["sizes"].append(out)
            try:
                measure_size(bed, out, args.tasks_per_node, args.heartbeat, args.election_timeout)
            except Exception as e:  # noqa: BLE001  (a size that fails is recorded, the next still runs)
                print(f"  failed: {e}", flush=True)
                out["error"] = str(e).splitlines()[0] if not isinstance(e, grpc.RpcError) else f"{e.code()}: {e.details()}"
            Path(args.out).write_text(json.dumps(data, indent=1) + "\n")
    finally:
        bed.down()
    data["load_end"] = os.getloadavg()
    Path(args.out).write_text(json.dumps(data, indent=1) + "\n")
    print(report(data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
