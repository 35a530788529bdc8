#!/usr/bin/env python3
"""What the event stream and the metrics cost the leader (issue 16).

Run as root from the repository:

    .venv/bin/python scripts/bench/observe_bench.py [--rounds 3] [--out docs/bench/observe.json]
                                                   [--base-tree DIR]

One 4-host testbed (prefix "ob", 198.18.39.0/24; h1 the only manager and so
the leader, h2-h4 workers) is brought up once. Each round forms a fresh
cluster three times, in turn:

  off    this tree, `--event-history 0` and no `--metrics-addr`: no event
         history is fed, no endpoint (the instruments are still recorded:
         they cost microseconds and cannot be switched off);
  on     this tree with the defaults (10,000 events) and `--metrics-addr` on
         every daemon, one `swarmlet events` stream open on the leader and
         every daemon scraped once a second (Prometheus' default is 15-60 s);
  base   (with --base-tree DIR: a checkout of the tree before issue 16, e.g.
         `git archive ede247e | tar -x -C DIR`) the same daemons without any
         of it, for reference.

and measures the 30-replica create: `service create --replicas 30 --detach`
issued -> 30 tasks RUNNING in the manager's API. Measured: the leader
daemon's CPU time over that interval (utime + stime from /proc), the wall
time, and (on) the leader's own histograms of deriving events per applied
batch and applying batches, read from its /metrics before and after.

Separately, in this process and with no Raft: the cost of the state
machine's hook on the tick thread (EventLog.feed) and of deriving the events
of recorded batches of a 30-replica create, and of a 1,000-task batch.

Targets (issue 16): the leader's CPU on the create < 5% more with the event
stream and metrics than without; < 1 ms per applied batch.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent.parent
sys.path.insert(0, str(REPO / "scripts"))
sys.path.insert(0, str(REPO))

import testbed as testbed_lib  # noqa: E402

IMAGE = "swarmlet-test:busybox"
PREFIX, SUBNET = "oe", 39  # "ob" is the overlay benchmark's
REPLICAS = 30
METRICS_PORT = 9323
IDLE_WINDOW = 5.0
TARGET_CPU_RATIO = 1.05
TARGET_PER_BATCH_S = 0.001
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except Exception as e:  # a daemon busy or restarting: keep polling
            last = e
        if time.monotonic() >= deadline:
            raise RuntimeError(f"{what}: not within {timeout:.0f}s" + (f" (last error: {last})" if last else ""))
        time.sleep(interval)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime


def scrape(host) -> dict[str, float]:
    with urllib.request.urlopen(f"http://{host.ip}:{METRICS_PORT}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            try:
                out[name] = float(value)
            except ValueError:
                pass
    return out


class Cluster:
    def __init__(self, tb, variant: str, base_tree: Path | None, scrape_every: float = 1.0) -> None:
        import grpc

        from swarmlet.api import control_pb2 as cpb
        from swarmlet.api import control_pb2_grpc
        from swarmlet.api import objects_pb2 as pb

        self.tb, self.variant = tb, variant
        self.grpc, self.cpb, self.pb = grpc, cpb, pb
        self.hosts = tb.hosts
        self.leader = tb.hosts[0]
        self.tree = base_tree if variant == "base" else REPO
        self._stub = control_pb2_grpc.ControlStub(grpc.insecure_channel("unix://" + self.leader.swarmlet_sock))
        self.stream: subprocess.Popen | None = None
        self.scraper: threading.Thread | None = None
        self._stop = threading.Event()
        self.scrape_every = scrape_every

    def _args(self, host) -> list[str]:
        if self.variant == "off":
            return ["--event-history", "0"]
        if self.variant == "on":
            return ["--metrics-addr", f"{host.ip}:{METRICS_PORT}"]
        return []

    def cli(self, host, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        cmd = [self.tb.python, "-m", "swarmlet", "-H", f"unix://{host.swarmlet_sock}", *args]
        env = dict(self.tb._swarmlet_env(), PYTHONPATH=str(self.tree))
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=str(self.tree))
        if r.returncode != 0:
            raise RuntimeError(f"swarmlet {' '.join(args)} on {host.name}: {r.stderr.strip() or r.stdout.strip()}")
        return r

    def form(self) -> None:
        # Daemons of the variant's tree: the testbed spawns them from REPO_ROOT.
        testbed_lib.REPO_ROOT = self.tree
        try:
            for h in self.hosts:
                self.tb.start_swarmlet(h, self._args(h))
        finally:
            testbed_lib.REPO_ROOT = REPO
        m = self.leader
        self.cli(m, "init", "--advertise-addr", m.ip)
        token = self.cli(m, "join-token", "worker", "-q").stdout.strip()
        for h in self.hosts[1:]:
            self.cli(h, "join", "--token", token, f"{m.ip}:4242")
        ready = self.pb.NodeStatus.READY
        wait_for(
            lambda: (
                sum(1 for n in self._stub.ListNodes(self.cpb.ListNodesRequest(), timeout=5).nodes if n.status.state == ready)
                == len(self.hosts)
            ),
            60,
            "all nodes READY",
        )
        if self.variant == "on":
            cmd = [self.tb.python, "-m", "swarmlet", "-H", f"unix://{m.swarmlet_sock}", "events", "--format", "json"]
            self.stream = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=str(REPO))
            self.scraper = threading.Thread(target=self._scrape_loop, daemon=True)
            self.scraper.start()
        time.sleep(2.0)  # settle: joins, first rounds, the stream and the first scrapes

    def _scrape_loop(self) -> None:
        while not self._stop.wait(self.scrape_every):
            for h in self.hosts:
                try:
                    scrape(h)
                except OSError:
                    pass

    def running(self, name: str) -> int:
        tasks = self._stub.ListTasks(self.cpb.ListTasksRequest(), timeout=5).tasks
        r = self.pb.RUNNING
        return sum(1 for t in tasks if t.service_name == name and t.status.state == r and t.desired_state == r)

    def create30(self) -> dict[str, float]:
        pid = self.tb._swarmlet_pid(self.leader)
        # The leader's CPU while idle (Raft ticks, heartbeats; in `on` also the
        # scrapes and the open stream), over the same load as the create.
        i0, it0 = cpu_seconds(pid), time.monotonic()
        time.sleep(IDLE_WINDOW)
        idle_rate = (cpu_seconds(pid) - i0) / (time.monotonic() - it0)
        before = scrape(self.leader) if self.variant == "on" else {}
        cpu0, t0 = cpu_seconds(pid), time.monotonic()
        self.cli(
            self.leader, "service", "create", "--detach", "--name", "b30", "--replicas", str(REPLICAS), IMAGE, "sleep", "3600"
        )
        wait_for(lambda: self.running("b30") == REPLICAS, 120, "30 tasks running")
        wall, cpu = time.monotonic() - t0, cpu_seconds(pid) - cpu0
        out = {
            "wall_s": round(wall, 3),
            "leader_cpu_s": round(cpu, 3),
            "leader_busy": round(cpu / wall, 4),  # share of one core while creating
            "idle_busy": round(idle_rate, 4),  # share of one core while idle
            "create_work_cpu_s": round(cpu - idle_rate * wall, 3),  # CPU the create itself cost
        }
        if self.variant == "on":
            after = scrape(self.leader)

            def delta(name: str) -> float:
                return after.get(name, 0.0) - before.get(name, 0.0)

            n = delta("swarmlet_events_derive_seconds_count")
            out["batches"] = n
            out["derive_mean_ms"] = round(1000 * delta("swarmlet_events_derive_seconds_sum") / n, 4) if n else None
            a = delta("swarmlet_raft_apply_seconds_count")
            out["apply_mean_ms"] = round(1000 * delta("swarmlet_raft_apply_seconds_sum") / a, 4) if a else None
            slow = delta("swarmlet_events_derive_seconds_count") - delta('swarmlet_events_derive_seconds_bucket{le="0.001"}')
            out["batches_over_1ms"] = slow
        return out

    def teardown(self) -> None:
        self._stop.set()
        if self.stream is not None:
            self.stream.terminate()
            self.stream.wait(10)
        try:
            self.cli(self.leader, "service", "rm", "b30")
        except Exception:
            pass
        for h in self.hosts:
            self.tb.kill_swarmlet(h)
            shutil.rmtree(h.state_dir, ignore_errors=True)
        for h in self.hosts:
            api = self.tb.docker(h).api
            for c in api.containers(all=True, filters={"label": "swarmlet.task.id"}):
                try:
                    api.remove_container(c["Id"], force=True)
                except Exception:  # already gone (the daemon was removing it)
                    pass


def in_process() -> dict[str, Any]:
    """The hook's cost on the tick thread, and deriving events, without Raft."""
    from swarmlet.api import objects_pb2 as pb
    from swarmlet.api import store_pb2 as spb
    from swarmlet.core import events as ev
    from swarmlet.core import planner
    from swarmlet.core import state as st
    from swarmlet.ids import new_id
    from swarmlet.manager.events import EventLog

    snap = st.Snapshot()
    nodes = [
        pb.Node(
            id=f"n{i}",
            role=pb.NodeSpec.WORKER,
            description=pb.NodeDescription(hostname=f"h{i}", resources=pb.Resources(nano_cpus=2 * 10**9, memory_bytes=1 << 33)),
            status=pb.NodeStatus(state=pb.NodeStatus.READY),
        )
        for i in range(1, 5)
    ]
    batches: list[spb.StoreBatch] = []

    def apply(actions: list[spb.StoreAction]) -> None:
        nonlocal snap
        b = spb.StoreBatch(actions=actions, timestamp=time.time(), request_id=new_id())
        new = snap.shallow_copy()
        assert st.apply_batch(new, b).ok
        batches.append(b)
        snap = new

    apply([st.put(n, create=True) for n in nodes])

    def create(name: str, replicas: int) -> None:
        spec = pb.ServiceSpec(name=name, task=pb.TaskSpec(container=pb.ContainerSpec(image=IMAGE)))
        spec.replicated.replicas = replicas
        apply([st.put(pb.Service(id=new_id(), spec=spec, spec_version=1), create=True)])
        plan = planner.plan(snap, time.time(), new_id)
        apply(plan.actions)  # the leader's round: tasks created and assigned
        mine = [t for t in snap.tasks.values() if t.service_name == name]
        for state in (pb.STARTING, pb.RUNNING):  # agents' reports, coalesced in batches of 10
            for i in range(0, len(mine), 10):
                apply(
                    [st.set_status(t.id, pb.TaskStatus(state=state, timestamp=time.time()), t.node_id) for t in mine[i : i + 10]]
                )

    start = len(batches)
    create("b30", REPLICAS)
    recorded = batches[start:]
    snap30 = snap
    start = len(batches)
    create("b1000", 1000)
    big = max(batches[start:], key=lambda b: len(b.actions))

    # Replay: (old, new, batch) triples as the state machine sees them.
    def triples(bs: list[spb.StoreBatch]) -> list[tuple[st.Snapshot, st.Snapshot, spb.StoreBatch]]:
        s = st.Snapshot()
        out = []
        for b in batches:
            new = s.shallow_copy()
            st.apply_batch(new, b)
            if b in bs:
                out.append((s, new, b))
            s = new
        return out

    small = triples(recorded)
    (big_triple,) = triples([big])
    reps = 200
    # CPU time of this thread: the machine may be shared.
    t0 = time.thread_time()
    for _ in range(reps):
        for old, new, b in small:
            ev.derive(old, new, b)
    derive_per_batch = (time.thread_time() - t0) / (reps * len(small))
    per_batch_max = 0.0
    for old, new, b in small:
        t = time.thread_time()
        for _ in range(50):
            ev.derive(old, new, b)
        per_batch_max = max(per_batch_max, (time.thread_time() - t) / 50)
    t0 = time.thread_time()
    for _ in range(5):
        found = ev.derive(*big_triple)
    big_s = (time.thread_time() - t0) / 5
    lg = EventLog(capacity=10_000)
    t0 = time.thread_time()
    n = 0
    for _ in range(reps):
        for old, new, b in small:
            lg.feed(old, new, b)
            n += 1
    feed_s = (time.thread_time() - t0) / n
    lg.close()

    # One scrape of a leader holding this state: every series rendered.
    from prometheus_client import generate_latest
    from prometheus_client.registry import CollectorRegistry

    from swarmlet import metrics
    from swarmlet.manager.metrics import ClusterCollector

    class _Store:  # what the collector reads of a store
        def __init__(self, state: st.Snapshot) -> None:
            self.state = state
            self.version = state.version
            self.events = EventLog(capacity=0)

        def snapshot(self) -> Any:
            return self.state

        def status(self) -> dict:
            return {"raft_term": 3, "commit_idx": 100, "last_applied": 100, "log_len": 100}

        def quorum_view(self) -> tuple[int, int]:
            return 1, 1

        def is_leader(self) -> bool:
            return True

    def scrape_cost(state: st.Snapshot) -> dict[str, float]:
        reg = CollectorRegistry()
        reg.register(metrics.REGISTRY)
        reg.register(ClusterCollector(lambda: _Store(state)))  # type: ignore[arg-type,return-value]
        t0 = time.thread_time()
        for _ in range(20):
            size = len(generate_latest(reg))
        return {"tasks": len(state.tasks), "cpu_ms": round(1000 * (time.thread_time() - t0) / 20, 2), "bytes": size}

    return {
        "scrape": [scrape_cost(snap30), scrape_cost(snap)],
        "create30_batches": len(small),
        "derive_mean_ms_per_batch": round(1000 * derive_per_batch, 4),
        "derive_max_ms_per_batch": round(1000 * per_batch_max, 4),
        "feed_us_on_tick_thread": round(1e6 * feed_s, 2),
        "batch_1000_tasks": {"actions": len(big.actions), "events": len(found), "derive_ms": round(1000 * big_s, 2)},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", default=None)
    ap.add_argument(
        "--scrape-every",
        type=float,
        default=1.0,
        help="seconds between scrapes of every daemon in `on` (Prometheus: 15 by default)",
    )
    ap.add_argument("--base-tree", type=Path, default=None, help="a checkout of the tree before issue 16 (reference)")
    args = ap.parse_args(argv)

    result: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "scrape_every_s": args.scrape_every,
        "in_process": in_process(),
    }
    log(f"in process: {result['in_process']}")
    variants = ["off", "on"] + (["base"] if args.base_tree else [])
    runs: dict[str, list[dict]] = {v: [] for v in variants}
    tb = testbed_lib.Testbed(prefix=PREFIX, subnet_index=SUBNET)
    try:
        tb.up(4, swarmlet=False)
        for r in range(args.rounds):
            for v in variants:
                c = Cluster(tb, v, args.base_tree, args.scrape_every)
                try:
                    c.form()
                    m = c.create30()
                    m["loadavg"] = os.getloadavg()[0]
                    runs[v].append(m)
                    log(f"round {r + 1} {v}: {m}")
                finally:
                    c.teardown()
    finally:
        tb.down()
    result["runs"] = runs
    keys = ("wall_s", "leader_cpu_s", "leader_busy", "idle_busy", "create_work_cpu_s")
    med = {
        v: {k: statistics.median(x[k] for x in rs if k in x) for k in keys if any(k in x for x in rs)}
        for v, rs in runs.items()
        if rs
    }
    result["median"] = med
    if "on" in med and "off" in med:
        for k in ("leader_cpu_s", "leader_busy", "create_work_cpu_s"):
            if k in med["on"] and k in med["off"] and med["off"][k]:
                result[f"ratio_on_off_{k}"] = round(med["on"][k] / med["off"][k], 3)
    on = runs.get("on", [])
    if on:
        result["derive_mean_ms_live"] = statistics.median(x["derive_mean_ms"] for x in on if x.get("derive_mean_ms") is not None)
        result["batches_over_1ms_live"] = sum(x.get("batches_over_1ms", 0) for x in on)
    print(json.dumps(result, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
