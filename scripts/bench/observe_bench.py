#!/usr/bin/env python3
"""What the event stream and the metrics cost the leader (issue 16).

Run as root from the repository:

    .venv/bin/python scripts/bench/observe_bench.py [--rounds 3] [--out docs/bench/observe.json]
                                                   [--base-tree DIR]

One 4-host testbed (prefix "oe", 198.18.39.0/24, or --prefix/--subnet; h1 the only manager and so
the leader, h2-h4 workers) is brought up once. Each round forms a fresh
cluster three times, in turn:

  off    this tree, `--event-history 0` and no `--metrics-addr`: no event
         history is fed, no endpoint (the instruments are still recorded:
         they cost microseconds and cannot be switched off);
  on     this tree with the defaults (10,000 events) and `--metrics-addr` on
         every daemon, one `swarmlet events` stream open on the leader and
         every daemon scraped every --scrape-every s (1 by default;
         Prometheus' default is 15-60 s);
  base   (with --base-tree DIR: a checkout of the tree before issue 16, e.g.
         `git archive ede247e | tar -x -C DIR`) the same daemons without any
         of it, for reference.

and measures the 30-replica create: `service create --replicas 30 --detach`
issued -> 30 tasks RUNNING in the manager's API (asked every 0.1 s).
Measured: the leader daemon's CPU time over that interval (utime + stime
from /proc), the wall time, the leader's CPU over a fixed 20 s window from
the create on (window_cpu_s: the create's duration swings with the machine's
load, and every per-second cost with it), the window's CPU by thread
(threads_ms, from /proc/PID/task/*/schedstat; with `--py-spy PATH` the
threads carry their Python names and the thread serving the event stream is
marked), and (on) the leader's own histograms of deriving events per applied
batch and applying batches and the events derived, read from its /metrics
before and after. `--profile DIR` (with --py-spy) also samples the leader's
Python stacks over each create (perturbs the CPU figures).
Within-round ratios on/off and their median are reported besides the ratio of
the medians: the load of other work on the machine drifts between rounds.

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
import re
import shutil
import signal
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
# The leader's CPU is also measured over a fixed window from the create on
# (the create done within it, then idle): the create's own duration varies
# with the machine's load, and with it every per-second cost (Raft ticks,
# heartbeats), which swamped the difference under test. A fixed window
# charges both variants the same idle time.
WINDOW = 20.0
# How often the benchmark asks the leader whether the 30 tasks run: every
# 20 ms (before) made the benchmark's own ListTasks calls ~15% of the
# leader's CPU over the create, in proportion to its duration.
POLL = 0.1
TARGET_CPU_RATIO = 1.05
TARGET_PER_BATCH_S = 0.001
CLK_TCK = os.sysconf("SC_CLK_TCK")
PY_SPY: str | None = None  # --py-spy: name the leader's threads (and --profile: sample them)
PROFILE_DIR: Path | None = None


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


def thread_cpu(pid: int) -> dict[int, tuple[str, int]]:
    """Each thread's CPU time in ns (schedstat: exact, not 10 ms ticks) and its comm."""
    out: dict[int, tuple[str, int]] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            ns = int((task / "schedstat").read_text().split()[0])
            comm = (task / "comm").read_text().strip()
        except (OSError, ValueError, IndexError):
            continue  # the thread ended meanwhile
        out[int(task.name)] = (comm, ns)
    return out


def thread_names(pid: int) -> dict[int, str]:
    """Python thread names by native id, from `py-spy dump` (if --py-spy);
    a thread of a pool serving the event stream is named so by its stack."""
    if not PY_SPY:
        return {}
    r = subprocess.run([PY_SPY, "dump", "--pid", str(pid)], capture_output=True, text=True, timeout=30)
    out = {}
    for block in re.split(r"\n(?=Thread )", r.stdout):
        m = re.match(r'Thread (\d+) \([^)]*\): "(.*)"', block)
        if m:
            name = m.group(2)
            if re.search(r"_stream \([^)]*events\.py", block):
                name += " [events stream]"
            out[int(m.group(1))] = name
    return out


def by_thread(pid: int, t0: dict[int, tuple[str, int]], t1: dict[int, tuple[str, int]]) -> dict[str, float]:
    """CPU ms per thread name over the interval (threads that ended in it are lost;
    Python threads of one name summed, e.g. gRPC's workers)."""
    names = thread_names(pid)
    agg: dict[str, float] = {}
    for tid, (comm, ns) in t1.items():
        before = t0.get(tid, (comm, 0))[1]
        name = names.get(tid) or f"[{comm}]"
        name = re.sub(r"([-_])\d+\b", r"\1N", name)  # ThreadPoolExecutor-0_3, Thread-12 (run): one name per pool
        agg[name] = agg.get(name, 0.0) + (ns - before) / 1e6
    return {k: round(v, 2) for k, v in sorted(agg.items(), key=lambda kv: -kv[1]) if v >= 0.05}


def profile_start(pid: int, out: Path) -> subprocess.Popen | None:
    """py-spy sampling the leader's threads while they run (--profile)."""
    if not (PY_SPY and PROFILE_DIR):
        return None
    cmd = [PY_SPY, "record", "--pid", str(pid), "--rate", "500", "--threads", "--nonblocking", "--format", "raw", "-o", str(out)]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def profile_stop(proc: subprocess.Popen | None) -> None:
    if proc is not None:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)


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
        self.tag = "0"

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
        prof = profile_start(pid, PROFILE_DIR / f"{self.variant}-{self.tag}.txt") if PROFILE_DIR else None
        threads0 = thread_cpu(pid)
        cpu0, t0 = cpu_seconds(pid), time.monotonic()
        self.cli(
            self.leader, "service", "create", "--detach", "--name", "b30", "--replicas", str(REPLICAS), IMAGE, "sleep", "3600"
        )
        wait_for(lambda: self.running("b30") == REPLICAS, 120, "30 tasks running", interval=POLL)
        wall, cpu = time.monotonic() - t0, cpu_seconds(pid) - cpu0
        time.sleep(max(0.0, t0 + WINDOW - time.monotonic()))
        window_cpu = cpu_seconds(pid) - cpu0
        threads1 = thread_cpu(pid)
        profile_stop(prof)
        out = {
            "wall_s": round(wall, 3),
            "leader_cpu_s": round(cpu, 3),
            "leader_busy": round(cpu / wall, 4),  # share of one core while creating
            "idle_busy": round(idle_rate, 4),  # share of one core while idle
            "create_work_cpu_s": round(cpu - idle_rate * wall, 3),  # CPU the create itself cost
            "window_s": WINDOW,
            "window_cpu_s": round(window_cpu, 3),  # the leader's CPU over WINDOW s from the create on
            # The same from schedstat (ns), threads alive at the end only, and by thread (threads_ms).
            "window_cpu_threads_s": round(sum(ns - threads0.get(tid, ("", 0))[1] for tid, (_, ns) in threads1.items()) / 1e9, 4),
            "threads_ms": by_thread(pid, threads0, threads1),
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
            out["events"] = sum(
                after[k] - before.get(k, 0.0) for k in after if k.startswith("swarmlet_events_total{")
            )  # derived over the window
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
    ap.add_argument("--prefix", default=PREFIX, help="testbed prefix (another run may hold the default)")
    ap.add_argument("--subnet", type=int, default=SUBNET, help="testbed subnet index (198.18.N.0/24)")
    ap.add_argument("--py-spy", default=None, help="py-spy binary: name the leader's threads in threads_ms")
    ap.add_argument(
        "--profile",
        type=Path,
        default=None,
        help="directory: py-spy samples of the leader per create (needs --py-spy; perturbs the CPU figures)",
    )
    ap.add_argument("--skip-in-process", action="store_true")
    ap.add_argument("--base-tree", type=Path, default=None, help="a checkout of the tree before issue 16 (reference)")
    args = ap.parse_args(argv)
    global PY_SPY, PROFILE_DIR
    PY_SPY, PROFILE_DIR = args.py_spy, args.profile
    if PROFILE_DIR:
        PROFILE_DIR.mkdir(parents=True, exist_ok=True)

    result: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "scrape_every_s": args.scrape_every,
        "in_process": {} if args.skip_in_process else in_process(),
        "loadavg_start": os.getloadavg(),
    }
    log(f"in process: {result['in_process']}")
    variants = ["off", "on"] + (["base"] if args.base_tree else [])
    runs: dict[str, list[dict]] = {v: [] for v in variants}
    tb = testbed_lib.Testbed(prefix=args.prefix, subnet_index=args.subnet)
    try:
        tb.up(4, swarmlet=False)
        for r in range(args.rounds):
            for v in variants:
                c = Cluster(tb, v, args.base_tree, args.scrape_every)
                c.tag = str(r + 1)
                try:
                    c.form()
                    load0 = os.getloadavg()[0]
                    m = c.create30()
                    m["loadavg"] = os.getloadavg()[0]
                    m["loadavg_before"] = load0
                    runs[v].append(m)
                    log(f"round {r + 1} {v}: {m}")
                finally:
                    c.teardown()
    finally:
        tb.down()
    result["runs"] = runs
    keys = (
        "wall_s",
        "leader_cpu_s",
        "window_cpu_s",
        "window_cpu_threads_s",
        "leader_busy",
        "idle_busy",
        "create_work_cpu_s",
        "loadavg",
    )
    med = {
        v: {k: statistics.median(x[k] for x in rs if k in x) for k in keys if any(k in x for x in rs)}
        for v, rs in runs.items()
        if rs
    }
    result["median"] = med
    if "on" in med and "off" in med:
        for k in ("leader_cpu_s", "window_cpu_s", "leader_busy", "create_work_cpu_s"):
            if k in med["on"] and k in med["off"] and med["off"][k]:
                result[f"ratio_on_off_{k}"] = round(med["on"][k] / med["off"][k], 3)
    # Rounds are interleaved: the ratio within each round (same load, minutes
    # apart) and its median are less exposed to the load drifting than the
    # ratio of the medians.
    pairs = list(zip(runs.get("off", []), runs.get("on", []), strict=False))
    for k in ("leader_cpu_s", "window_cpu_s"):
        ratios = [round(b[k] / a[k], 3) for a, b in pairs if a.get(k)]
        if ratios:
            result[f"paired_ratios_{k}"] = ratios
            result[f"paired_ratio_median_{k}"] = statistics.median(ratios)
    # Median CPU ms per thread name, per variant: where the difference goes.
    result["threads_ms_median"] = {
        v: {
            name: round(statistics.median(x["threads_ms"].get(name, 0.0) for x in rs), 2)
            for name in sorted({n for x in rs for n in x["threads_ms"]})
        }
        for v, rs in runs.items()
        if rs
    }
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
