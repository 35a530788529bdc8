#!/usr/bin/env python3
"""HA benchmark: leader SIGKILL -> first accepted write on another manager,
swarmlet side by side with Docker Swarm on the same four engines.

Run as root from the repository (see docs/benchmarks.md, "High availability"):

    python scripts/bench/ha_bench.py [--repeats 5] [--out docs/bench/ha.json]
                                     [--election-timeout 0.4:0.8] [--leader-fallback-timeout 1.5]
                                     [--skip-swarm] [--skip-swarmlet]
    python scripts/bench/ha_bench.py --report docs/bench/ha.json      # table only

One 4-host testbed (prefix "hb", 198.18.31.0/24): h1, h2, h3 managers (init on
h1, join h2/h3 with the manager token), h4 a worker. swarmlet first, then
Docker Swarm on the very same engines (never both at once).

One run: a writer issues a cheap write (a node label add: swarmlet
`UpdateNode`, Swarm `POST /nodes/{id}/update`) through a manager that is not
the leader, a new attempt every 50 ms, each in its own thread (so an attempt
stuck on the dead leader never hides a later one that would succeed). A
version conflict with a concurrent write is retried inside the same attempt.
The leader's daemon is SIGKILLed (swarmlet: its `swarmlet daemon`; Swarm: its
dockerd, where Swarm's manager lives); the figure is the time from the kill to
the first acknowledged write among those *issued after* the kill. Also
recorded: when a surviving manager first reports a new leader. The killed
daemon is then restarted and the next run starts once it is a reachable
manager again (and, for swarmlet, every manager's state digest agrees).

Speed targets are checked here, never in tests.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import signal
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

PREFIX, SUBNET = "hb", 31
TARGET_S = 2.0
WRITE_PERIOD = 0.05  # a new write attempt every 50 ms
WRITE_TIMEOUT = 10.0  # per attempt
MAX_OUTSTANDING = 320  # >= WRITE_TIMEOUT / WRITE_PERIOD: a new attempt is never skipped
T_FIRST_WRITE = 90  # deadline for the first write after a kill
T_REJOIN = 120
DOCKER_API = "1.41"  # docker.io 20.10


sys.path.insert(0, str(BENCH_DIR))
import cluster_bench as _cb  # noqa: E402  (same directory: the shared bench helpers)

log = _cb.log
BenchError = _cb.BenchError


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.1) -> Any:
    """cluster_bench's polling wait, at this bench's default interval."""
    return _cb.wait_for(predicate, timeout, what, interval=interval)


def loadavg() -> list[str]:
    return Path("/proc/loadavg").read_text().split()[:3]


class Writer:
    """Launches one write attempt every WRITE_PERIOD in its own thread and
    records (start, end, ok) of each (monotonic clock)."""

    def __init__(self, write: Callable[[int], None]) -> None:
        self._write = write
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self.attempts: list[tuple[float, float, bool, str]] = []
        self.outstanding = 0
        self.skipped = 0
        self._n = 0
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _one(self, i: int) -> None:
        t0 = time.monotonic()
        err = ""
        try:
            self._write(i)
            ok = True
        except Exception as exc:
            ok, err = False, f"{type(exc).__name__}: {str(exc)[:200]}"
        t1 = time.monotonic()
        with self._lock:
            self.attempts.append((t0, t1, ok, err))
            self.outstanding -= 1

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                busy = self.outstanding >= MAX_OUTSTANDING
                if not busy:
                    self.outstanding += 1
            if busy:
                self.skipped += 1
            else:
                self._n += 1
                threading.Thread(target=self._one, args=(self._n,), daemon=True).start()
            self._stop.wait(WRITE_PERIOD)

    def first_ack_after(self, t: float) -> float | None:
        with self._lock:
            ends = [e for s, e, ok, _ in self.attempts if ok and s >= t]
        return min(ends) if ends else None

    def acked(self) -> int:
        with self._lock:
            return sum(1 for a in self.attempts if a[2])

    def stop(self, wait: float = WRITE_TIMEOUT + 5) -> None:
        self._stop.set()
        self._thread.join(5)
        deadline = time.monotonic() + wait
        while self.outstanding > 0 and time.monotonic() < deadline:
            time.sleep(0.05)

    def summary(self, t_kill: float) -> dict:
        with self._lock:
            after = [a for a in self.attempts if a[0] >= t_kill]
            errors: dict[str, int] = {}
            for a in after:
                if not a[2]:
                    key = a[3].split(":", 1)[0] + ": " + a[3].split(":", 1)[-1].strip()[:80]
                    errors[key] = errors.get(key, 0) + 1
            return {
                "attempts_total": len(self.attempts),
                "attempts_after_kill": len(after),
                "acked_after_kill": sum(1 for a in after if a[2]),
                "failed_after_kill": sum(1 for a in after if not a[2]),
                "skipped_at_cap": self.skipped,
                "errors_after_kill": dict(sorted(errors.items(), key=lambda kv: -kv[1])[:5]),
            }


# --------------------------------------------------------------------------
# swarmlet


class SwarmletHA:
    name = "swarmlet"

    def __init__(self, tb, hosts, election_timeout: str, fallback: float) -> None:
        import grpc

        from swarmlet.api import control_pb2 as cpb
        from swarmlet.api import control_pb2_grpc

        self.grpc, self.cpb, self.stub_cls = grpc, cpb, control_pb2_grpc.ControlStub
        self.tb, self.hosts = tb, hosts
        self.managers = hosts[:3]
        self.extra = ["--election-timeout", election_timeout, "--leader-fallback-timeout", str(fallback)]
        self._stubs: dict[str, Any] = {}

    def stub(self, host):
        if host.name not in self._stubs:
            self._stubs[host.name] = self.stub_cls(self.grpc.insecure_channel("unix://" + host.swarmlet_sock))
        return self._stubs[host.name]

    def cli(self, host, *args) -> str:
        p = self.tb.cli(host, *args, timeout=120)
        if p.returncode != 0:
            raise BenchError(f"swarmlet {' '.join(args)} on {host.name}: {p.stderr.strip() or p.stdout.strip()}")
        return p.stdout

    def info(self, host, timeout: float = 5):
        return self.stub(host).Info(self.cpb.InfoRequest(), timeout=timeout)

    def form(self) -> None:
        # Restart the daemons with the election timeouts under test.
        for h in self.hosts:
            self.tb.kill_swarmlet(h)
        for h in self.hosts:
            self.tb.start_swarmlet(h, extra_args=self.extra)
        h1, h2, h3, h4 = self.hosts
        self.cli(h1, "init", "--advertise-addr", h1.ip)
        mtoken = self.cli(h1, "join-token", "manager", "-q").strip().splitlines()[-1].strip()
        wtoken = self.cli(h1, "join-token", "worker", "-q").strip().splitlines()[-1].strip()
        for h in (h2, h3):
            self.cli(h, "join", "--token", mtoken, "--advertise-addr", h.ip, f"{h1.ip}:4242")
        self.cli(h4, "join", "--token", wtoken, "--advertise-addr", h4.ip, f"{h1.ip}:4242")
        self.wait_all_reachable()

    def _reachable_view(self, host) -> dict[str, bool]:
        resp = self.stub(host).ListNodes(self.cpb.ListNodesRequest(), timeout=5)
        return {
            n.description.hostname: (n.manager_status.leader or n.manager_status.reachability == 2)
            for n in resp.nodes
            if n.manager_status.raft_addr
        }

    def wait_all_reachable(self, timeout: float = T_REJOIN) -> None:
        names = {h.name for h in self.managers}

        def ok():
            for m in self.managers:
                if not self.tb.swarmlet_running(m):
                    return False
                view = self._reachable_view(m)
                if set(view) != names or not all(view.values()):
                    return False
            return True

        wait_for(ok, timeout, "3 swarmlet managers, each reachable from every manager", interval=0.25)

    def leader(self):
        found = []
        for m in self.managers:
            try:
                if self.info(m).is_leader:
                    found.append(m)
            except self.grpc.RpcError:
                pass
        return found[0] if len(found) == 1 else None

    def write_fn(self, via) -> Callable[[int], None]:
        stub = self.stub(via)
        names = [h.name for h in self.hosts]
        grpc, cpb = self.grpc, self.cpb

        def write(i: int) -> None:
            deadline = time.monotonic() + WRITE_TIMEOUT
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("write attempt timed out")
                try:
                    stub.UpdateNode(
                        cpb.UpdateNodeRequest(ref=names[i % len(names)], label_add={f"hb{i % 8}": str(i)}), timeout=left
                    )
                    return
                except grpc.RpcError as e:
                    if e.code() != grpc.StatusCode.ABORTED:  # a version race: same write again
                        raise

        return write

    def new_leader_among(self, rest) -> bool:
        for m in rest:
            try:
                if self.info(m, timeout=2).is_leader:
                    return True
            except self.grpc.RpcError:
                pass
        return False

    def kill(self, host) -> None:
        self.tb.kill_swarmlet(host, signal.SIGKILL)

    def restart(self, host) -> None:
        self.tb.start_swarmlet(host, extra_args=self.extra)
        self._stubs.pop(host.name, None)
        self.wait_all_reachable()
        # The killed manager caught up: every manager's applied state agrees.

        def same():
            ds = {self.info(m).state_digest for m in self.managers}
            return len(ds) == 1 and "" not in ds

        wait_for(same, T_REJOIN, "equal state digests on the 3 managers", interval=0.25)

    def teardown(self) -> None:
        for h in self.hosts:
            self.tb.kill_swarmlet(h)

    def settings(self) -> dict:
        return {"daemon_flags": self.extra}


# --------------------------------------------------------------------------
# Docker Swarm


class SwarmHA:
    name = "swarm"

    def __init__(self, tb, hosts, docker_cli: str) -> None:
        import docker

        self.docker_sdk = docker
        self.tb, self.hosts = tb, hosts
        self.managers = hosts[:3]
        self.docker_cli = docker_cli
        self.node_ids: dict[str, str] = {}

    def api(self, host, timeout: float = 10):
        return self.docker_sdk.APIClient(base_url=host.docker_url, version=DOCKER_API, timeout=timeout)

    def docker(self, host, *args, check=True) -> str:
        p = subprocess.run([self.docker_cli, "-H", host.docker_url, *args], capture_output=True, text=True, timeout=120)
        if check and p.returncode != 0:
            raise BenchError(f"docker {' '.join(args)} on {host.name}: {p.stderr.strip()}")
        return p.stdout

    def form(self) -> None:
        h1, h2, h3, h4 = self.hosts
        self.docker(h1, "swarm", "init", "--advertise-addr", h1.ip)
        mtoken = self.docker(h1, "swarm", "join-token", "manager", "-q").strip()
        wtoken = self.docker(h1, "swarm", "join-token", "worker", "-q").strip()
        for h in (h2, h3):
            self.docker(h, "swarm", "join", "--token", mtoken, "--advertise-addr", h.ip, f"{h1.ip}:2377")
        self.docker(h4, "swarm", "join", "--token", wtoken, "--advertise-addr", h4.ip, f"{h1.ip}:2377")
        for h in self.hosts:
            with self.api(h) as c:
                self.node_ids[h.name] = c.info()["Swarm"]["NodeID"]
        self.wait_all_reachable()

    def _managers_view(self, host) -> dict[str, dict]:
        with self.api(host, timeout=5) as c:
            return {n["Description"]["Hostname"]: n.get("ManagerStatus") or {} for n in c.nodes() if n.get("ManagerStatus")}

    def wait_all_reachable(self, timeout: float = T_REJOIN) -> None:
        names = {h.name for h in self.managers}

        def ok():
            for m in self.managers:
                view = self._managers_view(m)
                if set(view) != names or not all(v.get("Reachability") == "reachable" for v in view.values()):
                    return False
            return True

        wait_for(ok, timeout, "3 Swarm managers, each reachable from every manager", interval=0.25)

    def leader(self):
        for m in self.managers:
            try:
                view = self._managers_view(m)
            except Exception:
                continue
            for name, ms in view.items():
                if ms.get("Leader"):
                    return next(h for h in self.managers if h.name == name)
        return None

    def write_fn(self, via) -> Callable[[int], None]:
        ids = [self.node_ids[h.name] for h in self.hosts]
        APIError = self.docker_sdk.errors.APIError

        def write(i: int) -> None:
            deadline = time.monotonic() + WRITE_TIMEOUT
            with self.api(via, timeout=WRITE_TIMEOUT) as c:
                nid = ids[i % len(ids)]
                while True:
                    if time.monotonic() > deadline:
                        raise TimeoutError("write attempt timed out")
                    node = c.inspect_node(nid)
                    spec = node["Spec"]
                    spec.setdefault("Labels", {})[f"hb{i % 8}"] = str(i)
                    try:
                        c.update_node(nid, node["Version"]["Index"], node_spec=spec)
                        return
                    except APIError as e:
                        if "out of sequence" not in str(e):  # a version race: same write again
                            raise

        return write

    def new_leader_among(self, rest) -> bool:
        names = {h.name for h in rest}
        for m in rest:
            try:
                view = self._managers_view(m)
            except Exception:
                continue
            if any(ms.get("Leader") and n in names for n, ms in view.items()):
                return True
        return False

    def _dockerd_pid(self, host) -> int | None:
        try:
            return int(Path(host.host_dir, "dockerd.pid").read_text().strip())
        except (OSError, ValueError):
            return None

    def kill(self, host) -> None:
        pid = self._dockerd_pid(host)
        if pid is None:
            raise BenchError(f"no dockerd pid for {host.name}")
        os.kill(pid, signal.SIGKILL)
        wait_for(
            lambda: not Path(f"/proc/{pid}").exists() or Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] in "ZX",
            30,
            "dockerd gone",
            interval=0.02,
        )
        self.tb._reap_child(pid)
        self.tb._forget(pid)

    def restart(self, host) -> None:
        self.tb._start_dockerd(host)
        self.tb._wait_dockerd(host, time.monotonic() + 120)
        self.tb._clients.pop(host.name, None)
        self.wait_all_reachable()

    def teardown(self) -> None:
        for h in reversed(self.hosts):
            self.docker(h, "swarm", "leave", "--force", check=False)

    def settings(self) -> dict:
        return {"note": "Swarm defaults (raft election tick 10 x 1 s heartbeat tick), docker.io 20.10"}


# --------------------------------------------------------------------------


def one_run(orch, i: int) -> dict:
    leader = wait_for(orch.leader, 60, f"{orch.name}: a leader")
    rest = [m for m in orch.managers if m is not leader]
    via = rest[0]
    w = Writer(orch.write_fn(via))
    w.start()
    wait_for(lambda: w.acked() >= 5, 60, f"{orch.name}: writes acknowledged before the kill")
    load = loadavg()
    t_kill = time.monotonic()
    orch.kill(leader)
    t_gone = time.monotonic()
    t_leader = None
    deadline = t_kill + T_FIRST_WRITE
    first = None
    while time.monotonic() < deadline:
        if t_leader is None and orch.new_leader_among(rest):
            t_leader = time.monotonic()
        first = w.first_ack_after(t_kill)
        if first is not None:
            break
        time.sleep(0.02)
    if t_leader is None:
        wait_for(lambda: orch.new_leader_among(rest), 30, f"{orch.name}: new leader")
        t_leader = time.monotonic()
    w.stop()
    first = w.first_ack_after(t_kill)
    run = {
        "run": i,
        "killed": leader.name,
        "writes_via": via.name,
        "seconds": None if first is None else round(first - t_kill, 3),
        "new_leader_seen_seconds": round(t_leader - t_kill, 3),
        "kill_call_seconds": round(t_gone - t_kill, 3),
        "loadavg": load,
        **w.summary(t_kill),
    }
    log(
        f"{orch.name} run {i}: killed {leader.name}, first write via {via.name} after "
        f"{run['seconds']} s (new leader seen after {run['new_leader_seen_seconds']} s), load {' '.join(load)}"
    )
    t0 = time.monotonic()
    orch.restart(leader)
    run["rejoin_seconds"] = round(time.monotonic() - t0, 1)
    return run


def bench(orch, repeats: int) -> dict:
    res: dict[str, Any] = {"runs": [], "errors": [], "settings": orch.settings()}
    try:
        log(f"{orch.name}: forming 3 managers + 1 worker")
        orch.form()
        for i in range(1, repeats + 1):
            try:
                res["runs"].append(one_run(orch, i))
            except Exception as exc:
                res["errors"].append(f"run {i}: {type(exc).__name__}: {exc}")
                log(f"{orch.name} run {i} failed: {exc}")
                traceback.print_exc()
                break
    except Exception as exc:
        res["errors"].append(f"{type(exc).__name__}: {exc}")
        traceback.print_exc()
    finally:
        try:
            orch.teardown()
        except Exception as exc:
            res["errors"].append(f"teardown: {exc}")
    secs = [r["seconds"] for r in res["runs"] if r["seconds"] is not None]
    res["median"] = statistics.median(secs) if secs else None
    leaders = [r["new_leader_seen_seconds"] for r in res["runs"]]
    res["median_new_leader_seen"] = statistics.median(leaders) if leaders else None
    return res


def markdown(res: dict) -> str:
    sl, sw = res.get("swarmlet") or {}, res.get("swarm") or {}

    def cell(d, key="median", runs_key="seconds"):
        if d.get(key) is None:
            return "not measured" if not d.get("errors") else "failed: " + d["errors"][0][:80]
        runs = ", ".join(f"{r[runs_key]:.2f}" for r in d["runs"] if r.get(runs_key) is not None)
        return f"{d[key]:.2f} s ({runs})"

    m = sl.get("median")
    lines = [
        "| measurement | swarmlet (median; runs) | Docker Swarm (median; runs) | target | result |",
        "|---|---|---|---|---|",
        f"| leader SIGKILL → first write acknowledged by another manager | {cell(sl)} | {cell(sw)} | "
        f"< {TARGET_S:.0f} s | {'—' if m is None else ('met' if m < TARGET_S else '**missed**')} |",
        f"| … a surviving manager reports a new leader | {cell(sl, 'median_new_leader_seen', 'new_leader_seen_seconds')} | "
        f"{cell(sw, 'median_new_leader_seen', 'new_leader_seen_seconds')} | — | — |",
    ]
    mi = res.get("machine") or {}
    lines.append("")
    lines.append(
        f"- {mi.get('cpus')} CPUs, load average {' '.join(mi.get('loadavg_start') or [])} at the start, "
        f"{' '.join(mi.get('loadavg_end') or [])} at the end; swarmlet daemon flags: "
        f"`{' '.join((sl.get('settings') or {}).get('daemon_flags') or [])}`."
    )
    for name, d in (("swarmlet", sl), ("Swarm", sw)):
        for e in d.get("errors") or []:
            lines.append(f"- {name} error: {e[:300]}")
    return "\n".join(lines)


def plot(res: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.2), dpi=100)
    for x, (key, _label, color) in enumerate((("swarmlet", "swarmlet", "tab:blue"), ("swarm", "Docker Swarm", "tab:orange"))):
        runs = [r["seconds"] for r in (res.get(key) or {}).get("runs", []) if r.get("seconds") is not None]
        ax.scatter([x] * len(runs), runs, color=color, alpha=0.7, zorder=3)
        if runs:
            med = statistics.median(runs)
            ax.hlines(med, x - 0.25, x + 0.25, color=color, zorder=2)
            ax.annotate(f"median {med:.2f} s", (x + 0.28, med), va="center", fontsize=9)
    ax.axhline(TARGET_S, color="grey", linestyle="--", linewidth=1)
    ax.annotate(f"target {TARGET_S:.0f} s", (-0.45, TARGET_S + 0.3), fontsize=8, color="grey")
    ax.set_xticks([0, 1], ["swarmlet", "Docker Swarm"])
    ax.set_xlim(-0.5, 1.9)
    ax.set_ylim(0, None)
    ax.set_ylabel("leader SIGKILL → first write acked (s)")
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default=str(REPO / "docs" / "bench" / "ha.json"))
    ap.add_argument("--election-timeout", default="0.4:0.8", help="swarmlet daemon --election-timeout MIN:MAX")
    ap.add_argument("--leader-fallback-timeout", type=float, default=1.5)
    ap.add_argument("--skip-swarm", action="store_true")
    ap.add_argument("--skip-swarmlet", action="store_true")
    ap.add_argument("--docker-cli", default="/usr/bin/docker")
    ap.add_argument("--report", metavar="JSON")
    ap.add_argument("--plot", metavar="PNG", help="with --report: draw the runs (needs matplotlib, bench-only)")
    args = ap.parse_args(argv)
    if args.report:
        res = json.loads(Path(args.report).read_text())
        print(markdown(res))
        if args.plot:
            plot(res, args.plot)
        return 0
    if os.geteuid() != 0:
        print("run as root (network namespaces, dockerd)", file=sys.stderr)
        return 2
    from testbed import Testbed

    git = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    results: dict[str, Any] = {
        "machine": {
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "cpus": os.cpu_count(),
            "kernel": platform.release(),
            "python": platform.python_version(),
            "git": git,
            "loadavg_start": loadavg(),
        },
        "repeats": args.repeats,
        "write_period_s": WRITE_PERIOD,
        "write_timeout_s": WRITE_TIMEOUT,
    }
    tb = Testbed(prefix=PREFIX, subnet_index=SUBNET)
    try:
        log(f"testbed {PREFIX}: up (4 hosts)")
        hosts = tb.up(4, swarmlet=True)
        if not args.skip_swarmlet:
            results["swarmlet"] = bench(SwarmletHA(tb, hosts, args.election_timeout, args.leader_fallback_timeout), args.repeats)
        for h in hosts:
            tb.kill_swarmlet(h)
        if not args.skip_swarm:
            results["swarm"] = bench(SwarmHA(tb, hosts, args.docker_cli), args.repeats)
    except BaseException as exc:
        results["error"] = f"{type(exc).__name__}: {exc}"
        traceback.print_exc()
        if not isinstance(exc, Exception):
            raise
    finally:
        log(f"testbed {PREFIX}: down")
        tb.down()
    results["machine"]["loadavg_end"] = loadavg()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
