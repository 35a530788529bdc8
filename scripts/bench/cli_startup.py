#!/usr/bin/env python3
"""CLI start-up: wall time and peak memory of whole `swarmlet` processes
(issue 15: scripts call the CLI in loops; targets 0.1 s for `--help`, 0.15 s
for `node ls` against a local daemon).

    .venv/bin/python scripts/bench/cli_startup.py [--runs 20] [--host unix:///run/swarmlet/swarmlet.sock]
        [--compare 'docker --help'] [--module]

--module runs `python -P -m swarmlet` with this interpreter instead of the
`swarmlet` console script beside it, so that a checkout on PYTHONPATH (e.g. a
git worktree) is measured rather than the installed one (-P: not the
current directory's); runpy adds ~1 ms.

Each command runs `--runs` times after one warm-up, alternating with the
others so that a drifting machine hits all alike; medians (and min/max) are
printed. Peak memory is the child's own ru_maxrss (os.wait4).
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

SWARMLET = str(Path(sys.executable).with_name("swarmlet"))


def run_once(cmd: list[str], env: dict[str, str]) -> tuple[float, float, int]:
    """(wall seconds, peak RSS MB, exit code) of one run."""
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.monotonic() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    return wall, usage.ru_maxrss / 1024, p.returncode


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--host", default="", help="a daemon's socket URL: also time `node ls` against it")
    ap.add_argument("--compare", action="append", default=[], help="another command line to time alongside")
    ap.add_argument(
        "--module", action="store_true", help="run `python -P -m swarmlet` (PYTHONPATH first) instead of the console script"
    )
    args = ap.parse_args()
    env = dict(os.environ)
    swarmlet = [sys.executable, "-P", "-m", "swarmlet"] if args.module else [SWARMLET]
    cmds = {"swarmlet --help": [*swarmlet, "--help"], "swarmlet node --help": [*swarmlet, "node", "--help"]}
    if args.host:
        cmds["swarmlet node ls"] = [*swarmlet, "-H", args.host, "node", "ls"]
    for c in args.compare:
        cmds[c] = shlex.split(c)
    results: dict[str, list[tuple[float, float, int]]] = {k: [] for k in cmds}
    for cmd in cmds.values():
        run_once(cmd, env)  # warm-up: page cache, .pyc files
    for _ in range(args.runs):
        for k, cmd in cmds.items():
            results[k].append(run_once(cmd, env))
    print(f"{'command':28s} {'wall median (min-max) s':>28s} {'peak RSS MB':>12s} exit")
    for k, rs in results.items():
        walls = [r[0] for r in rs]
        rss = statistics.median(r[1] for r in rs)
        codes = sorted({r[2] for r in rs})
        print(f"{k:28s} {statistics.median(walls):10.3f} ({min(walls):.3f}-{max(walls):.3f}) {rss:12.1f} {codes}")
    print(f"load average: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
