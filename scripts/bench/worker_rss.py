#!/usr/bin/env python3
"""A joined worker daemon's memory, measured as cluster_bench.py measures it.

Run as root from the repository:

    python scripts/bench/worker_rss.py [--prefix rw] [--subnet-index 5]
                                       [--tasks 30] [--readings 5] [--settle 20]
                                       [--out FILE.json]

Brings up a 2-host testbed (h1 manager, h2 worker, the busybox test image),
forms the cluster through the CLI, and reads VmRSS from /proc/PID/status of
h2's daemon (the same number as cluster_bench.py's `rss`): once started
(not in a cluster yet), right after the join (1 s, as cluster_bench's idle sample), then `--readings` times, 2 s
apart, after `--settle` seconds idle; then with `--tasks` replicas of a
`sleep` service constrained to the worker, 1 s after they all run and again
after `--settle` seconds. Each reading also keeps RssAnon, RssFile and the
thread count. The testbed is always torn down.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(REPO / "scripts"))

import testbed  # noqa: E402

IMAGE = "swarmlet-test:busybox"


def status(pid: int) -> dict[str, int]:
    out: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile", "RssShmem"):
            out[key] = int(value.split()[0])
        elif key == "Threads":
            out[key] = int(value)
    return out


def reading(pid: int) -> dict[str, float]:
    s = status(pid)
    return {
        "rss_mb": round(s["VmRSS"] / 1024, 1),
        "anon_mb": round(s.get("RssAnon", 0) / 1024, 1),
        "file_mb": round(s.get("RssFile", 0) / 1024, 1),
        "threads": s["Threads"],
    }


def readings(pid: int, n: int, interval: float = 2.0) -> list[dict[str, float]]:
    out = []
    for i in range(n):
        if i:
            time.sleep(interval)
        out.append(reading(pid))
    return out


def summary(rs: list[dict[str, float]]) -> str:
    rss = [r["rss_mb"] for r in rs]
    anon = [r["anon_mb"] for r in rs]
    return (
        f"RSS median {statistics.median(rss):.1f} MB (min {min(rss):.1f}, max {max(rss):.1f}); "
        f"anon {statistics.median(anon):.1f} MB, file {statistics.median([r['file_mb'] for r in rs]):.1f} MB, "
        f"threads {rs[-1]['threads']}"
    )


def phase(pid: int, label: str, first: str, settled: str, result: dict[str, object], settle: float, n: int) -> None:
    """One reading 1 s after `label` began (as cluster_bench's sample), then
    `n` readings after `settle` seconds more, into result[first] and
    result[settled]."""
    time.sleep(1.0)
    result[first] = reading(pid)
    print(f"{label} +1 s: {result[first]}", flush=True)
    time.sleep(settle)
    rs = readings(pid, n)
    result[settled] = rs
    print(f"{label} (+{settle:.0f} s): {summary(rs)}", flush=True)


def wait_for(pred, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if pred():
                return
        except Exception:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{what}: not within {timeout:.0f}s")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--prefix", default="rw")
    ap.add_argument("--subnet-index", type=int, default=5)
    ap.add_argument("--tasks", type=int, default=30)
    ap.add_argument("--readings", type=int, default=5)
    ap.add_argument("--settle", type=float, default=20.0)
    ap.add_argument("--keep", action="store_true", help="leave the testbed up (then: testbed.py down --prefix P)")
    ap.add_argument("--out")
    args = ap.parse_args()

    tb = testbed.Testbed(prefix=args.prefix, subnet_index=args.subnet_index)
    result: dict[str, object] = {"tasks": args.tasks, "settle": args.settle}
    try:
        m, w = tb.up(2)
        time.sleep(2.0)
        started = tb.swarmlet_pid(w)
        assert started is not None
        result["started"] = reading(started)
        print(f"started, not in a cluster: {result['started']}", flush=True)
        tb.cli(m, "init", "--advertise-addr", m.ip, check=True)
        token = tb.cli(m, "join-token", "worker", "-q", check=True).stdout.strip().splitlines()[-1].strip()
        tb.cli(w, "join", "--token", token, "--advertise-addr", w.ip, f"{m.ip}:4242", check=True)
        pid = tb.swarmlet_pid(w)
        assert pid is not None
        wait_for(lambda: tb.cli(m, "node", "ls").stdout.count("Ready") >= 2, 60, "both nodes Ready")
        phase(pid, "joined, idle", "joined_1s", "idle", result, args.settle, args.readings)

        tb.cli(
            m,
            "service",
            "create",
            "--detach",
            "--name",
            "s",
            "--replicas",
            str(args.tasks),
            "--constraint",
            "node.role==worker",
            IMAGE,
            "sleep",
            "3600",
            check=True,
        )
        engine = tb.docker(w)
        wait_for(lambda: len(engine.containers.list()) >= args.tasks, 120, f"{args.tasks} containers running on the worker")
        phase(pid, f"{args.tasks} tasks", "tasks_1s", "with_tasks", result, args.settle, args.readings)
    finally:
        if not args.keep:
            tb.down()
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
