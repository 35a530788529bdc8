#!/usr/bin/env python3
"""Cluster benchmark: swarmlet side by side with Docker Swarm, on one testbed, in one run.

Run as root from the repository (see scripts/bench/README.md):

    python scripts/bench/cluster_bench.py [--repeats 3] [--out docs/bench/cluster.json]
                                          [--skip-swarm] [--skip-swarmlet]
    python scripts/bench/cluster_bench.py --report docs/bench/cluster.json   # table only

One 4-host testbed (prefix "bn": 1 manager, 3 workers, the busybox test image) is
brought up once. First, with no orchestrator at all, the "floor": 30 containers
started straight through the four engines' APIs, in each orchestrator's container
shape. Then rounds that alternate swarmlet (its daemons started, measured, killed
with their state; every container they left removed) and Docker Swarm (swarm mode
on the very same engines, then `swarm leave --force`), so the two never run at
once and a drifting machine load hits both alike. The floor is measured again at
the end. The testbed is always torn down.

Measured for each orchestrator:
  create30  `service create --replicas 30 --detach` issued -> 30 tasks RUNNING
            (desired RUNNING) in the manager's API, confirmed with the engines
            (30 running containers); then `service rm` -> every container gone.
            Once more without --detach: the CLI's wall time.
  failover  12 replicas (3 per host); h4 (a worker) is cut off the underlay
            (link down, a silent crash) -> 12 tasks RUNNING on h1..h3 only;
            then healed -> h4 READY again and its containers stopped.
  rss       VmRSS of each swarmlet daemon (and, for reference, each dockerd /
            containerd: they include the engine itself, so they do not compare
            like for like) with the cluster idle and with 30 tasks running.

Speed targets (from the issue) are checked here and only here, never in tests.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent.parent
sys.path.insert(0, str(REPO / "scripts"))
sys.path.insert(0, str(REPO))

IMAGE = "swarmlet-test:busybox"
N_HOSTS = 4
CREATE_REPLICAS = 30
FAILOVER_REPLICAS = 12
SERVICE = "b30"
FAILOVER_SERVICE = "b12"

# The issue's targets and reference figures.
TARGET_CREATE_RATIO = 0.40  # swarmlet create30 <= 40% of Swarm's, same run
TARGET_FAILOVER_S = 5.0  # swarmlet failover < 5 s
TARGET_WORKER_RSS_MB = 60.0  # swarmlet worker daemon RSS < 60 MB

# Deadlines (seconds): every wait is bounded, so a broken orchestrator costs
# minutes, not hours.
T_CLUSTER = 60
T_CREATE = 90
T_REMOVE = 60
T_FAILOVER = 90
T_HEAL = 120
T_CLI = 120

SWARMLET_POLL = 0.02
SWARM_POLL = 0.05


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class BenchError(RuntimeError):
    pass


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except Exception as exc:  # a daemon busy or restarting: keep polling
            last_exc = exc
        if time.monotonic() >= deadline:
            extra = f" (last error: {last_exc})" if last_exc else ""
            raise BenchError(f"{what}: not within {timeout:.0f}s{extra}")
        time.sleep(interval)


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


# --------------------------------------------------------------------------
# processes and memory


def cpu_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields) - idle, sum(fields)


def cpu_busy_since(start: tuple[int, int]) -> float:
    """Fraction of the machine's CPUs busy since start (1.0 = every core, all the time)."""
    busy, total = cpu_jiffies()
    return round((busy - start[0]) / max(1, total - start[1]), 2)


def read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def proc_argv(pid: int) -> list[str]:
    try:
        return [p.decode(errors="replace") for p in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if p]
    except OSError:
        return []


def vm_rss_kb(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def children_of(pid: int) -> list[int]:
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            text = Path(f"/proc/{name}/stat").read_text()
        except OSError:
            continue
        if int(text[text.rindex(")") + 2 :].split()[1]) == pid:
            out.append(int(name))
    return out


def find_pid(pidfile: Path, must_contain: str) -> int | None:
    """The pid in pidfile if it is alive and its argv names must_contain, else a scan."""
    pid = read_pid(pidfile)
    if pid is not None and must_contain in proc_argv(pid):
        return pid
    for name in os.listdir("/proc"):
        if name.isdigit() and must_contain in proc_argv(int(name)):
            return int(name)
    return None


def swarmlet_pid(host) -> int | None:
    pid = find_pid(Path(host.host_dir) / "swarmlet.pid", host.swarmlet_sock)
    if pid is not None and "daemon" in proc_argv(pid):
        return pid
    return None


def engine_rss(host) -> dict[str, float | None]:
    """dockerd and its containerd child, MB (reference only: they are the engine)."""
    pid = find_pid(Path(host.host_dir) / "dockerd.spawn.pid", host.docker_url)
    out: dict[str, float | None] = {"dockerd_mb": None, "containerd_mb": None}
    if pid is None:
        return out
    rss = vm_rss_kb(pid)
    out["dockerd_mb"] = round(rss / 1024, 1) if rss else None
    for child in children_of(pid):
        argv = proc_argv(child)
        if argv and os.path.basename(argv[0]) == "containerd":
            rss = vm_rss_kb(child)
            out["containerd_mb"] = round(rss / 1024, 1) if rss else None
    return out


# --------------------------------------------------------------------------
# the engines


class Engines:
    """Direct access to the four engines (docker SDK), the same for both halves."""

    def __init__(self, tb, hosts) -> None:
        self.tb = tb
        self.hosts = hosts

    def client(self, host):
        return self.tb.docker(host)

    def running(self) -> dict[str, int]:
        return {h.name: len(self.client(h).api.containers(all=False)) for h in self.hosts}

    def all_containers(self) -> dict[str, int]:
        return {h.name: len(self.client(h).api.containers(all=True)) for h in self.hosts}

    def wait_empty(self, timeout: float, hosts=None) -> float:
        t0 = time.monotonic()
        hosts = hosts or self.hosts
        wait_for(
            lambda: all(not self.client(h).api.containers(all=True) for h in hosts),
            timeout,
            "all containers removed",
            interval=0.1,
        )
        return time.monotonic() - t0

    def wait_none_running(self, host, timeout: float) -> float:
        t0 = time.monotonic()
        wait_for(
            lambda: not self.client(host).api.containers(all=False), timeout, f"no container running on {host.name}", interval=0.1
        )
        return time.monotonic() - t0

    def force_clean(self) -> int:
        removed = 0
        for h in self.hosts:
            api = self.client(h).api
            for c in api.containers(all=True):
                try:
                    api.remove_container(c["Id"], force=True)
                    removed += 1
                except Exception as exc:
                    log(f"  could not remove {c['Id'][:12]} on {h.name}: {exc}")
            try:
                api.prune_networks()
            except Exception:
                pass
        return removed


# Container shapes: Swarm attaches a service's containers without networks to
# the engine's default bridge (a veth each); swarmlet creates them with
# network_mode "none". Each orchestrator is held against the floor of its shape.
FLOOR_SHAPES = {"bridge": "default", "none": "none"}


def _start_container(api, name: str, network_mode: str) -> str:
    host_config = api.create_host_config(network_mode=network_mode)
    c = api.create_container(IMAGE, command=["sleep", "3600"], name=name, host_config=host_config)
    api.start(c["Id"])
    return c["Id"]


def measure_one_start(engines: Engines, network_mode: str, n: int = 5) -> float:
    """Median create+start of one container on an otherwise idle engine."""
    api = engines.client(engines.hosts[0]).api
    times = []
    for i in range(n):
        t0 = time.monotonic()
        cid = _start_container(api, f"floor-one-{i}", network_mode)
        times.append(time.monotonic() - t0)
        api.remove_container(cid, force=True)
    return round(statistics.median(times), 3)


def measure_floor(engines: Engines, network_mode: str, n: int = CREATE_REPLICAS, per_engine_parallel: int = 4) -> dict:
    """n containers straight through the engines' APIs, all engines at once (a
    few at a time on each): no orchestrator, the least time any could take here."""
    from concurrent.futures import ThreadPoolExecutor

    hosts = engines.hosts
    share = {h.name: 0 for h in hosts}
    for i in range(n):
        share[hosts[i % len(hosts)].name] += 1
    errors: list[str] = []

    def run_host(h):
        api = engines.client(h).api
        try:
            with ThreadPoolExecutor(per_engine_parallel) as pool:
                list(pool.map(lambda i: _start_container(api, f"floor-{h.name}-{i}", network_mode), range(share[h.name])))
        except Exception as exc:
            errors.append(f"{h.name}: {exc}")

    cpu0 = cpu_jiffies()
    t0 = time.monotonic()
    threads = [threading.Thread(target=run_host, args=(h,)) for h in hosts]
    for t in threads:
        t.start()
    for t in threads:
        t.join(T_CREATE)
    elapsed = time.monotonic() - t0
    cpu_busy = cpu_busy_since(cpu0)
    running = sum(engines.running().values())
    engines.force_clean()
    engines.wait_empty(T_REMOVE)
    if errors or running != n:
        raise BenchError(f"floor: {running}/{n} running; {errors}")
    return {"seconds": round(elapsed, 3), "cpu_busy": cpu_busy}


def measure_floors(engines: Engines, results: dict, key: str) -> None:
    """results[key] = {shape: {seconds, cpu_busy, one_container_seconds, loadavg1}}."""
    out = results.setdefault(key, {})
    for shape, mode in FLOOR_SHAPES.items():
        try:
            log(f"{key}: {CREATE_REPLICAS} containers (network {mode}) straight through the engines")
            r = measure_floor(engines, mode)
            r["one_container_seconds"] = measure_one_start(engines, mode)
            r["loadavg1"] = round(os.getloadavg()[0], 2)
            out[shape] = r
            log(f"  {r['seconds']}s (CPU {r['cpu_busy']:.0%} busy); one container alone {r['one_container_seconds']}s")
        except Exception as exc:
            out[shape] = {"error": str(exc)}
            log(f"  FAILED: {exc}")
            engines.force_clean()


def best_floors(results: dict) -> dict:
    """Per shape, the lower of the floors measured at the start and at the end."""
    best = {}
    for shape in FLOOR_SHAPES:
        cands = [dict((results.get(k) or {}).get(shape) or {}, when=k) for k in ("floor_start", "floor_end")]
        cands = [c for c in cands if c.get("seconds")]
        if cands:
            best[shape] = min(cands, key=lambda c: c["seconds"])
    return best


# --------------------------------------------------------------------------
# the two orchestrators behind one interface


class Orchestrator:
    """What the measurements need from an orchestrator."""

    name = "?"
    poll = 0.05

    def __init__(self, tb, hosts, engines: Engines) -> None:
        self.tb = tb
        self.hosts = hosts
        self.engines = engines
        self.node_host: dict[str, str] = {}  # node id -> host name

    # cluster
    def form(self) -> None: ...
    def ready_nodes(self) -> set[str]: ...  # node ids READY
    def down_nodes(self) -> set[str]: ...  # node ids the manager calls down
    def teardown(self) -> None: ...
    def rss(self) -> dict: ...
    # services
    def create_cmd(self, name: str, replicas: int, detach: bool) -> Callable[[], subprocess.CompletedProcess]: ...
    def remove(self, name: str) -> None: ...
    def tasks(self, name: str) -> list[tuple[str, bool, bool]]: ...  # (host, running, desired running)

    def node_of(self, host) -> str:
        for node_id, name in self.node_host.items():
            if name == host.name:
                return node_id
        raise BenchError(f"{self.name}: no node id known for {host.name}")

    def wait_cluster(self, timeout: float = T_CLUSTER) -> None:
        want = set(self.node_host)
        wait_for(lambda: want <= self.ready_nodes(), timeout, f"{self.name}: {len(want)} nodes READY", interval=0.1)

    def running_by_host(self, name: str, exclude: str | None = None) -> dict[str, int]:
        counts: dict[str, int] = {}
        for host, running, desired in self.tasks(name):
            if running and desired and host != exclude:
                counts[host] = counts.get(host, 0) + 1
        return counts


def run_cli(cmd: list[str], timeout: float = T_CLI, env: dict | None = None, check: bool = True):
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if check and proc.returncode != 0:
        raise BenchError(f"{' '.join(cmd)} -> {proc.returncode}: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc


class Swarm(Orchestrator):
    name = "swarm"
    poll = SWARM_POLL

    def __init__(self, tb, hosts, engines, docker_cli: str) -> None:
        super().__init__(tb, hosts, engines)
        self.docker_cli = docker_cli

    def docker(self, host, *args, check=True, timeout=T_CLI):
        return run_cli([self.docker_cli, "-H", host.docker_url, *args], timeout=timeout, check=check)

    @property
    def manager(self):
        return self.hosts[0]

    def api(self):
        return self.engines.client(self.manager).api

    def form(self) -> None:
        m = self.manager
        self.docker(m, "swarm", "init", "--advertise-addr", m.ip)
        token = self.docker(m, "swarm", "join-token", "worker", "-q").stdout.strip()
        for h in self.hosts[1:]:
            self.docker(h, "swarm", "join", "--token", token, "--advertise-addr", h.ip, f"{m.ip}:2377")
        for h in self.hosts:
            node_id = self.engines.client(h).info()["Swarm"]["NodeID"]
            if not node_id:
                raise BenchError(f"swarm: {h.name} has no node id after join")
            self.node_host[node_id] = h.name
        self.wait_cluster()

    def _nodes(self) -> list[dict]:
        return self.api().nodes()

    def ready_nodes(self) -> set[str]:
        return {n["ID"] for n in self._nodes() if n["Status"]["State"] == "ready"}

    def down_nodes(self) -> set[str]:
        return {n["ID"] for n in self._nodes() if n["Status"]["State"] == "down"}

    def create_cmd(self, name, replicas, detach):
        args = [
            "service",
            "create",
            "--name",
            name,
            "--replicas",
            str(replicas),
            "--no-resolve-image",
            f"--detach={'true' if detach else 'false'}",
            IMAGE,
            "sleep",
            "3600",
        ]
        return lambda: self.docker(self.manager, *args, check=False)

    def remove(self, name):
        self.docker(self.manager, "service", "rm", name)

    def tasks(self, name):
        out = []
        for t in self.api().tasks(filters={"service": name}):
            host = self.node_host.get(t.get("NodeID", ""), "?")
            out.append((host, t["Status"]["State"] == "running", t.get("DesiredState") == "running"))
        return out

    def rss(self) -> dict:
        return {h.name: engine_rss(h) for h in self.hosts}

    def teardown(self) -> None:
        for h in reversed(self.hosts):
            self.docker(h, "swarm", "leave", "--force", check=False, timeout=60)


class Swarmlet(Orchestrator):
    name = "swarmlet"
    poll = SWARMLET_POLL

    def __init__(self, tb, hosts, engines) -> None:
        super().__init__(tb, hosts, engines)
        import grpc

        from swarmlet.api import control_pb2 as cpb
        from swarmlet.api import control_pb2_grpc
        from swarmlet.api import objects_pb2 as opb

        self.grpc, self.cpb, self.opb = grpc, cpb, opb
        self._stub_cls = control_pb2_grpc.ControlStub
        self._stubs: dict[str, Any] = {}
        self._channels: list = []

    def stub(self, host):
        if host.name not in self._stubs:
            ch = self.grpc.insecure_channel("unix://" + host.swarmlet_sock)
            self._channels.append(ch)
            self._stubs[host.name] = self._stub_cls(ch)
        return self._stubs[host.name]

    @property
    def manager(self):
        return self.hosts[0]

    def cli(self, host, *args, check=True, timeout=T_CLI):
        proc = self.tb.cli(host, *args, timeout=timeout)
        if check and proc.returncode != 0:
            raise BenchError(
                f"swarmlet {' '.join(args)} on {host.name} -> {proc.returncode}: {proc.stderr.strip() or proc.stdout.strip()}"
            )
        return proc

    def form(self) -> None:
        for h in self.hosts:
            if not self.tb.swarmlet_running(h):
                self.tb.start_swarmlet(h)
        m = self.manager
        self.cli(m, "init", "--advertise-addr", m.ip)
        token = self.cli(m, "join-token", "worker", "-q").stdout.strip().splitlines()[-1].strip()
        for h in self.hosts[1:]:
            self.cli(h, "join", "--token", token, "--advertise-addr", h.ip, f"{m.ip}:4242")
        for h in self.hosts:
            info = self.stub(h).Info(self.cpb.InfoRequest(), timeout=10)
            if not info.node_id:
                raise BenchError(f"swarmlet: {h.name} has no node id after join ({info.state} {info.error})")
            self.node_host[info.node_id] = h.name
        self.wait_cluster()

    def _nodes(self):
        return self.stub(self.manager).ListNodes(self.cpb.ListNodesRequest(), timeout=5).nodes

    def ready_nodes(self) -> set[str]:
        ready = self.opb.NodeStatus.READY
        return {n.id for n in self._nodes() if n.status.state == ready}

    def down_nodes(self) -> set[str]:
        down = (self.opb.NodeStatus.DOWN, self.opb.NodeStatus.DISCONNECTED)
        return {n.id for n in self._nodes() if n.status.state in down}

    def create_cmd(self, name, replicas, detach):
        args = ["service", "create", "--name", name, "--replicas", str(replicas)]
        if detach:
            args.append("--detach")
        args += [IMAGE, "sleep", "3600"]
        return lambda: self.tb.cli(self.manager, *args, timeout=T_CLI)

    def remove(self, name):
        self.cli(self.manager, "service", "rm", name)

    def tasks(self, name):
        resp = self.stub(self.manager).ListTasks(self.cpb.ListTasksRequest(), timeout=5)
        running = self.opb.RUNNING
        out = []
        for t in resp.tasks:
            if t.service_name != name:
                continue
            out.append((self.node_host.get(t.node_id, "?"), t.status.state == running, t.desired_state == running))
        return out

    def rss(self) -> dict:
        out = {}
        for h in self.hosts:
            pid = swarmlet_pid(h)
            rss = vm_rss_kb(pid) if pid else None
            out[h.name] = {"swarmlet_mb": round(rss / 1024, 1) if rss else None, **engine_rss(h)}
        return out

    def teardown(self) -> None:
        for ch in self._channels:
            ch.close()
        self._stubs.clear()
        for h in self.hosts:
            self.tb.kill_swarmlet(h)
        # The next round starts a new cluster: a daemon must not resume this one.
        for h in self.hosts:
            shutil.rmtree(h.state_dir, ignore_errors=True)
            os.makedirs(h.state_dir, exist_ok=True)


# --------------------------------------------------------------------------
# the measurements


def timed_create(orch: Orchestrator, name: str, replicas: int, detach: bool, timeout: float) -> dict:
    """Issue the CLI in a thread; poll the manager's API until `replicas` run."""
    cli_result: dict[str, Any] = {}
    command = orch.create_cmd(name, replicas, detach)

    def issue():
        try:
            cli_result["proc"] = command()
        except Exception as exc:
            cli_result["error"] = exc
        cli_result["t"] = time.monotonic()

    load1 = round(os.getloadavg()[0], 2)  # the machine is shared: keep its load with the run
    cpu0 = cpu_jiffies()
    t0 = time.monotonic()
    thread = threading.Thread(target=issue, daemon=True)
    thread.start()
    deadline = t0 + timeout
    polls = 0
    t_running = None
    while time.monotonic() < deadline:
        polls += 1
        try:
            counts = orch.running_by_host(name)
        except Exception:
            counts = {}
        if sum(counts.values()) >= replicas:
            t_running = time.monotonic()
            cpu_busy = cpu_busy_since(cpu0)
            break
        if "t" in cli_result:
            proc = cli_result.get("proc")
            if "error" in cli_result or (proc is not None and proc.returncode != 0):
                err = cli_result.get("error") or (proc.stderr.strip() or proc.stdout.strip())
                raise BenchError(f"{orch.name}: service create failed: {err}")
        time.sleep(orch.poll)
    thread.join(max(1.0, deadline - time.monotonic()) if t_running else 5)
    if t_running is None:
        raise BenchError(f"{orch.name}: {replicas} tasks not RUNNING within {timeout:.0f}s (last: {orch.running_by_host(name)})")
    out = {"seconds": round(t_running - t0, 3), "polls": polls, "spread": counts, "loadavg1": load1, "cpu_busy": cpu_busy}
    if "t" in cli_result:
        out["cli_seconds"] = round(cli_result["t"] - t0, 3)
        proc = cli_result.get("proc")
        if proc is not None and proc.returncode != 0:
            out["cli_error"] = (proc.stderr.strip() or proc.stdout.strip())[-500:]
    return out


def remove_and_wait(orch: Orchestrator, name: str) -> float:
    t0 = time.monotonic()
    orch.remove(name)
    orch.engines.wait_empty(T_REMOVE)
    return round(time.monotonic() - t0, 3)


def bench_create(orch: Orchestrator, repeats: int, result: dict, attached_run: bool) -> None:
    runs = result.setdefault("create30", {"runs": [], "errors": []})
    for _i in range(repeats):
        log(f"{orch.name}: create30 run {len(runs['runs']) + 1}")
        try:
            run = timed_create(orch, SERVICE, CREATE_REPLICAS, detach=True, timeout=T_CREATE)
            engine_running = orch.engines.running()
            run["engine_running"] = engine_running
            if sum(engine_running.values()) != CREATE_REPLICAS:
                run["warning"] = f"engines run {sum(engine_running.values())} containers, not {CREATE_REPLICAS}"
            run["rm_seconds"] = remove_and_wait(orch, SERVICE)
            runs["runs"].append(run)
            log(
                f"  {run['seconds']:.2f}s to {CREATE_REPLICAS} running (cli {run.get('cli_seconds')}s, "
                f"spread {run['spread']}); rm {run['rm_seconds']:.2f}s"
            )
        except Exception as exc:
            runs["errors"].append(f"run {len(runs['runs']) + 1}: {exc}")
            log(f"  FAILED: {exc}")
            cleanup_service(orch, SERVICE)
            break
    if not attached_run:
        return

    # Once more without --detach: the CLI waits for convergence itself. The
    # 30 tasks are left running for the memory sample, then removed.
    log(f"{orch.name}: create30 without --detach (CLI wall time), then RSS with 30 tasks")
    attached = result.setdefault("create30_attached", {"errors": []})
    try:
        run = timed_create(orch, SERVICE, CREATE_REPLICAS, detach=False, timeout=T_CREATE)
        # wait for the CLI itself (it returns once it sees convergence)
        deadline = time.monotonic() + 30
        while "cli_seconds" not in run and time.monotonic() < deadline:
            time.sleep(0.1)
        attached.update(run)
        time.sleep(1.0)  # let the daemons settle before sampling memory
        result["rss_30_tasks"] = orch.rss()
        attached["rm_seconds"] = remove_and_wait(orch, SERVICE)
        log(f"  attached CLI {run.get('cli_seconds')}s; tasks running after {run['seconds']:.2f}s")
    except Exception as exc:
        attached["errors"].append(str(exc))
        log(f"  FAILED: {exc}")
        if "rss_30_tasks" not in result:
            try:
                result["rss_30_tasks"] = orch.rss()
                result["rss_30_tasks_note"] = "sampled after a failed create: fewer than 30 tasks may run"
            except Exception:
                pass
        cleanup_service(orch, SERVICE)


def cleanup_service(orch: Orchestrator, name: str) -> None:
    try:
        orch.remove(name)
    except Exception as exc:
        log(f"  cleanup: rm {name}: {exc}")
    try:
        orch.engines.wait_empty(T_REMOVE)
    except Exception as exc:
        log(f"  cleanup: {exc}; forcing")
        orch.engines.force_clean()


def bench_failover(orch: Orchestrator, repeats: int, result: dict) -> None:
    runs = result.setdefault("failover", {"runs": [], "errors": []})
    victim = orch.hosts[-1]
    for _i in range(repeats):
        log(f"{orch.name}: failover run {len(runs['runs']) + 1} (cut {victim.name})")
        cut = False
        try:
            victim_id = orch.node_of(victim)
            orch.wait_cluster()
            start = timed_create(orch, FAILOVER_SERVICE, FAILOVER_REPLICAS, detach=True, timeout=T_CREATE)
            spread = start["spread"]
            on_victim = spread.get(victim.name, 0)
            if on_victim == 0:
                raise BenchError(f"no task on {victim.name} to fail over (spread {spread})")
            time.sleep(0.5)  # steady state before the cut

            load1 = round(os.getloadavg()[0], 2)
            t0 = time.monotonic()
            orch.tb.cut(victim)
            cut = True
            t_down = None
            deadline = t0 + T_FAILOVER
            t_done = None
            while time.monotonic() < deadline:
                now = time.monotonic()
                try:
                    if t_down is None and victim_id in orch.down_nodes():
                        t_down = time.monotonic()
                    counts = orch.running_by_host(FAILOVER_SERVICE, exclude=victim.name)
                except Exception:
                    counts = {}
                if sum(counts.values()) >= FAILOVER_REPLICAS:
                    t_done = time.monotonic()
                    break
                time.sleep(max(0.0, orch.poll - (time.monotonic() - now)))
            if t_done is None:
                raise BenchError(
                    f"12 tasks not RUNNING on the other hosts within {T_FAILOVER}s "
                    f"(last {orch.running_by_host(FAILOVER_SERVICE, exclude=victim.name)})"
                )
            run = {
                "seconds": round(t_done - t0, 3),
                "node_down_seconds": round(t_down - t0, 3) if t_down else None,
                "moved": on_victim,
                "spread_before": spread,
                "loadavg1": load1,
                "spread_after": orch.running_by_host(FAILOVER_SERVICE, exclude=victim.name),
            }
            # confirm with the engines (outside the timing): 12 containers on the others
            others = {h.name: len(orch.engines.client(h).api.containers()) for h in orch.hosts if h is not victim}
            run["engine_running_others"] = others
            # Does the cut-off host keep running its stale copies meanwhile (as Swarm's do)?
            run["victim_running_after_failover"] = len(orch.engines.client(victim).api.containers())
            if sum(others.values()) < FAILOVER_REPLICAS:
                run["warning"] = f"the other engines run {sum(others.values())} containers, not {FAILOVER_REPLICAS}"

            # heal: h4 back READY and its stale containers stopped
            t_heal = time.monotonic()
            orch.tb.heal(victim)
            cut = False
            wait_for(lambda: victim_id in orch.ready_nodes(), T_HEAL, f"{victim.name} READY again after heal", interval=0.1)
            run["heal_ready_seconds"] = round(time.monotonic() - t_heal, 3)
            orch.engines.wait_none_running(victim, max(5.0, T_HEAL - (time.monotonic() - t_heal)))
            run["heal_clean_seconds"] = round(time.monotonic() - t_heal, 3)
            run["rm_seconds"] = remove_and_wait(orch, FAILOVER_SERVICE)
            runs["runs"].append(run)
            log(
                f"  {run['seconds']:.2f}s to {FAILOVER_REPLICAS} running elsewhere "
                f"(node down after {run['node_down_seconds']}s, {on_victim} moved); "
                f"heal: READY {run['heal_ready_seconds']}s, clean {run['heal_clean_seconds']}s"
            )
        except Exception as exc:
            runs["errors"].append(f"run {len(runs['runs']) + 1}: {exc}")
            log(f"  FAILED: {exc}")
            if cut:
                orch.tb.heal(victim)
                try:
                    wait_for(lambda: orch.node_of(victim) in orch.ready_nodes(), T_HEAL / 2, f"{victim.name} READY", interval=0.2)
                except Exception as exc2:
                    log(f"  {exc2}")
            cleanup_service(orch, FAILOVER_SERVICE)
            break


def bench_round(orch: Orchestrator, repeats: int, result: dict, first: bool) -> bool:
    """One round: form the cluster, run create30 and failover `repeats` times each,
    tear the cluster down. Results accumulate in result; False if the cluster
    could not be formed (later rounds are then skipped)."""
    result.setdefault("errors", [])
    t0 = time.monotonic()
    formed = False
    try:
        log(f"{orch.name}: forming the cluster")
        orch.form()
        formed = True
        result.setdefault("form_seconds", []).append(round(time.monotonic() - t0, 2))
        if first:
            time.sleep(1.0)
            result["rss_idle"] = orch.rss()
        bench_create(orch, repeats, result, attached_run=first)
        bench_failover(orch, repeats, result)
    except Exception as exc:
        result["errors"].append(f"{type(exc).__name__}: {exc}")
        log(f"{orch.name}: FAILED: {exc}")
        traceback.print_exc()
    finally:
        log(f"{orch.name}: tearing down")
        try:
            orch.teardown()
        except Exception as exc:
            result["errors"].append(f"teardown: {exc}")
        removed = orch.engines.force_clean()
        if removed:
            log(f"{orch.name}: removed {removed} leftover containers")
    result["total_seconds"] = round(result.get("total_seconds", 0) + time.monotonic() - t0, 1)
    return formed


def finalize(result: dict) -> None:
    for key in ("create30", "failover"):
        r = result.get(key)
        if r is not None:
            r["median"] = median([x["seconds"] for x in r["runs"]])


# --------------------------------------------------------------------------
# report


def _fmt(v: float | None, unit: str = " s") -> str:
    return "—" if v is None else f"{v:.2f}{unit}"


def _runs(r: dict | None) -> str:
    if not r or not r.get("runs"):
        return ""
    return " (" + ", ".join(f"{x['seconds']:.2f}" for x in r["runs"]) + ")"


def _rss_split(rss: dict | None, key: str) -> tuple[float | None, float | None]:
    """(manager, max over workers) of one RSS field."""
    if not rss:
        return None, None
    names = sorted(rss)
    mgr = rss[names[0]].get(key)
    workers = [rss[n].get(key) for n in names[1:] if rss[n].get(key) is not None]
    return mgr, (max(workers) if workers else None)


def markdown_table(res: dict) -> str:
    sl = res.get("swarmlet") or {}
    sw = res.get("swarm") or {}
    nm = "not yet measured"

    def cell(d: dict, key: str) -> str:
        r = d.get(key) or {}
        if r.get("median") is None:
            return nm if not d or not r.get("errors") else "failed: " + r["errors"][0][:80]
        return f"{r['median']:.2f} s{_runs(r)}"

    c_sl = (sl.get("create30") or {}).get("median")
    c_sw = (sw.get("create30") or {}).get("median")
    f_sl = (sl.get("failover") or {}).get("median")
    (sw.get("failover") or {}).get("median")
    floors = res.get("floor") or {}
    fl_none = (floors.get("none") or {}).get("seconds")  # swarmlet's container shape
    fl_bridge = (floors.get("bridge") or {}).get("seconds")  # Swarm's container shape

    def verdict(ok: bool | None) -> str:
        return "—" if ok is None else ("met" if ok else "**missed**")

    lines = [
        "| measurement | swarmlet (median; runs) | Docker Swarm (median; runs) | target | result |",
        "|---|---|---|---|---|",
    ]
    ratio = (c_sl / c_sw) if (c_sl is not None and c_sw) else None
    lines.append(
        f"| create 30 replicas → 30 running | {cell(sl, 'create30')} | {cell(sw, 'create30')} | "
        f"≤ 40% of Swarm{f' (≤ {TARGET_CREATE_RATIO * c_sw:.2f} s)' if c_sw else ''} | "
        f"{(f'{ratio:.0%} of Swarm, ' if ratio is not None else '') + verdict(None if ratio is None else ratio <= TARGET_CREATE_RATIO)} |"
    )
    a_sl = (sl.get("create30_attached") or {}).get("cli_seconds")
    a_sw = (sw.get("create30_attached") or {}).get("cli_seconds")
    lines.append(
        f"| same, CLI without --detach (wall, 1 run) | {_fmt(a_sl) if a_sl else nm} | {_fmt(a_sw) if a_sw else nm} | — | — |"
    )
    lines.append(
        f"| floor: 30 containers started via the engines' APIs, no orchestrator "
        f"(swarmlet's shape: no network; Swarm's: default bridge) | {_fmt(fl_none)} | {_fmt(fl_bridge)} | — | — |"
    )
    o_sl = None if (c_sl is None or fl_none is None) else c_sl - fl_none
    o_sw = None if (c_sw is None or fl_bridge is None) else c_sw - fl_bridge
    if o_sl is not None or o_sw is not None:
        oratio = f"{o_sl / o_sw:.0%} of Swarm's" if (o_sl is not None and o_sw and o_sw > 0) else "—"
        lines.append(f"| create 30: time above its floor (median − floor) | {_fmt(o_sl)} | {_fmt(o_sw)} | — | {oratio} |")
    lines.append(
        f"| worker cut off → its tasks running elsewhere | {cell(sl, 'failover')} | {cell(sw, 'failover')} | "
        f"< {TARGET_FAILOVER_S:.0f} s | {verdict(None if f_sl is None else f_sl < TARGET_FAILOVER_S)} |"
    )

    def sub(d: dict, key: str) -> str:
        runs = (d.get("failover") or {}).get("runs") or []
        vals = [r[key] for r in runs if r.get(key) is not None]
        return _fmt(median(vals)) if vals else nm

    lines.append(
        f"| … of which: manager marks the node down | {sub(sl, 'node_down_seconds')} | {sub(sw, 'node_down_seconds')} | — | — |"
    )
    lines.append(
        f"| after heal: node READY again / its containers stopped | "
        f"{sub(sl, 'heal_ready_seconds')} / {sub(sl, 'heal_clean_seconds')} | "
        f"{sub(sw, 'heal_ready_seconds')} / {sub(sw, 'heal_clean_seconds')} | — | — |"
    )

    sl_m, sl_w = _rss_split(sl.get("rss_30_tasks"), "swarmlet_mb")
    sl_mi, sl_wi = _rss_split(sl.get("rss_idle"), "swarmlet_mb")
    lines.append(
        f"| swarmlet daemon RSS, manager (idle / 30 tasks) | {_fmt(sl_mi, ' MB')} / {_fmt(sl_m, ' MB')} | "
        f"n/a (in dockerd) | report | — |"
    )
    lines.append(
        f"| swarmlet daemon RSS, worker max (idle / 30 tasks) | {_fmt(sl_wi, ' MB')} / {_fmt(sl_w, ' MB')} | "
        f"n/a (in dockerd) | < {TARGET_WORKER_RSS_MB:.0f} MB | "
        f"{verdict(None if sl_w is None else max(sl_w, sl_wi or 0) < TARGET_WORKER_RSS_MB)} |"
    )
    for label, key in (("dockerd", "dockerd_mb"), ("containerd", "containerd_mb")):
        e_sl = _rss_split(sl.get("rss_30_tasks"), key)
        e_sw = _rss_split(sw.get("rss_30_tasks"), key)
        lines.append(
            f"| {label} RSS with 30 tasks, manager / worker max (reference) | "
            f"{_fmt(e_sl[0], ' MB')} / {_fmt(e_sl[1], ' MB')} | "
            f"{_fmt(e_sw[0], ' MB')} / {_fmt(e_sw[1], ' MB')} | — | — |"
        )
    notes = []
    m = res.get("machine") or {}
    if m:
        notes.append(
            f"{m.get('cpus')} CPUs, load average {' '.join(m.get('loadavg_start') or [])} at the start, "
            f"{' '.join(m.get('loadavg_end') or [])} at the end; {res.get('repeats')} runs each"
            + (
                f", in {len(res['rounds'])} rounds alternating swarmlet and Swarm (each round forms its own cluster)."
                if len(res.get("rounds") or []) > 1
                else ", swarmlet's first, then Swarm's."
            )
        )
    for shape, fl in floors.items():
        if fl.get("cpu_busy") is not None:
            notes.append(
                f"floor ({shape}, measured at the {fl['when'].split('_')[-1]}, the lower of two): the CPUs were "
                f"{fl['cpu_busy']:.0%} busy while the engines started the 30 containers; one such "
                f"container alone starts in {fl.get('one_container_seconds')} s."
            )
    for system, label in (("swarmlet", "swarmlet"), ("swarm", "Swarm")):
        d = res.get(system) or {}
        errs = list(d.get("errors") or [])
        for key in ("create30", "create30_attached", "failover"):
            errs += [f"{key}: {e}" for e in ((d.get(key) or {}).get("errors") or [])]
        for e in errs:
            notes.append(f"{label} error: {e.splitlines()[0][:300]}")
    if notes:
        lines.append("")
        lines += [f"- {n}" for n in notes]
    return "\n".join(lines)


def machine_info() -> dict:
    info: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
    }
    try:
        info["mem_total_mb"] = int(Path("/proc/meminfo").read_text().split()[1]) // 1024
        info["loadavg_start"] = Path("/proc/loadavg").read_text().split()[:3]
    except OSError:
        pass
    try:
        info["git"] = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
        info["git_dirty"] = bool(dirty)
    except Exception:
        pass
    # Other engines on the machine share its 2 cores: note how many.
    others = 0
    for name in os.listdir("/proc"):
        if name.isdigit():
            argv = proc_argv(int(name))
            if argv and os.path.basename(argv[0]) == "dockerd" and not any("/run/bn-docker" in a for a in argv):
                others += 1
    info["other_dockerds_running"] = others
    return info


# --------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3, help="runs of each measurement per orchestrator")
    ap.add_argument(
        "--rounds",
        type=int,
        default=None,
        help="split the runs into this many rounds that alternate swarmlet and Swarm "
        "(each round forms and tears down its cluster); default: one round per run, "
        "so a drifting machine load hits both alike. 1 = all swarmlet runs, then all Swarm runs",
    )
    ap.add_argument("--out", default=str(REPO / "docs" / "bench" / "cluster.json"))
    ap.add_argument("--skip-swarm", action="store_true")
    ap.add_argument("--skip-swarmlet", action="store_true")
    ap.add_argument("--skip-floor", action="store_true")
    ap.add_argument(
        "--docker-cli",
        default="/usr/bin/docker" if os.path.exists("/usr/bin/docker") else shutil.which("docker"),
        help="docker CLI for Swarm (default: docker.io's, matching the 20.10 engines)",
    )
    ap.add_argument("--report", metavar="JSON", help="print the table of an earlier run and exit")
    args = ap.parse_args(argv)

    if args.report:
        print(markdown_table(json.loads(Path(args.report).read_text())))
        return 0
    if os.geteuid() != 0:
        print("run as root (network namespaces, dockerd)", file=sys.stderr)
        return 2

    from testbed import Testbed  # noqa: E402  (scripts/ is on sys.path)

    results: dict[str, Any] = {"machine": machine_info(), "repeats": args.repeats, "hosts": N_HOSTS, "image": IMAGE}
    tb = Testbed(prefix="bn", subnet_index=4)
    started = time.monotonic()
    try:
        log("testbed bn: up (4 hosts, engines only; swarmlet daemons start in its half)")
        hosts = tb.up(N_HOSTS, swarmlet=False)
        results["testbed_up_seconds"] = round(tb.timings.get("total", 0.0), 1)
        engines = Engines(tb, hosts)

        if not args.skip_floor:
            measure_floors(engines, results, "floor_start")

        makers: list[tuple[str, Callable[[], Orchestrator]]] = []
        if not args.skip_swarmlet:
            makers.append(("swarmlet", lambda: Swarmlet(tb, hosts, engines)))
        if not args.skip_swarm:
            if args.docker_cli:
                makers.append(("swarm", lambda: Swarm(tb, hosts, engines, args.docker_cli)))
            else:
                results["swarm"] = {"errors": ["no docker CLI found"]}
        rounds = max(1, min(args.rounds or args.repeats, args.repeats))
        per_round = [args.repeats // rounds + (1 if i < args.repeats % rounds else 0) for i in range(rounds)]
        results["rounds"] = per_round
        broken: set[str] = set()
        for r, n in enumerate(per_round):
            for name, make in makers:
                if name in broken:
                    continue
                log(f"=== round {r + 1}/{rounds}: {name}, {n} run(s) of each measurement")
                res = results.setdefault(name, {"errors": []})
                try:
                    orch = make()
                except Exception as exc:
                    res["errors"].append(f"cannot load {name}: {exc}")
                    broken.add(name)
                    continue
                if not bench_round(orch, n, res, first=(r == 0)):
                    broken.add(name)
                if name == "swarmlet":  # nothing of swarmlet may compete with Swarm
                    for h in hosts:
                        tb.kill_swarmlet(h)
                engines.force_clean()
        for name, _ in makers:
            finalize(results.get(name) or {})

        if not args.skip_floor:  # once more: the machine is shared and its load drifts
            engines.force_clean()
            measure_floors(engines, results, "floor_end")
        results["floor"] = best_floors(results)
    except BaseException as exc:
        results["error"] = f"{type(exc).__name__}: {exc}"
        log(f"run aborted: {results['error']}")
        traceback.print_exc()
        if not isinstance(exc, Exception):  # Ctrl-C: tear down (finally) and stop
            raise
    finally:
        log("testbed bn: down")
        try:
            tb.down()
        except Exception as exc:
            log(f"testbed down failed: {exc} (run: python scripts/testbed.py down --prefix bn)")
    results["total_seconds"] = round(time.monotonic() - started, 1)
    results["machine"]["loadavg_end"] = Path("/proc/loadavg").read_text().split()[:3]

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1, sort_keys=False) + "\n")
    log(f"wrote {out} ({results['total_seconds']}s in all)")
    print(markdown_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
