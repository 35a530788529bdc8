#!/usr/bin/env python3
"""Stack benchmark: a 10-service, 30-task stack deployed three ways, on one
testbed, in one run, as root:

    .venv/bin/python scripts/bench/stack_bench.py [--repeats 3] [--out docs/bench/stack.json]
    .venv/bin/python scripts/bench/stack_bench.py --report docs/bench/stack.json

- swarmlet stack: `swarmlet stack deploy -c stack.yml b` issued -> 30 tasks
  RUNNING (desired RUNNING) in the manager's API;
- swarmlet by hand: the same network and the same 10 services created one by
  one with `network create` and `service create --detach` -> 30 RUNNING;
- Swarm stack: `docker stack deploy --resolve-image never -c stack.yml b` on
  swarm mode of the very same engines -> 30 running tasks in Docker's API.

Rounds alternate swarmlet and Swarm (each forms its own cluster and tears it
down), so a drifting machine load hits both alike. Targets (issue 12): the
stack within 1.2x of the services created one by one, and faster than Docker
Swarm's stack deploy.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

import cluster_bench as cb  # noqa: E402  (the testbed, the orchestrators, the helpers)

SERVICES = 10
REPLICAS = 3
TASKS = SERVICES * REPLICAS
STACK = "b"
T_RUN = 240.0


def compose_text() -> str:
    lines = ['version: "3.8"', "services:"]
    for i in range(SERVICES):
        lines += [
            f"  s{i}:",
            f"    image: {cb.IMAGE}",
            "    command: sleep 3600",
            "    stop_grace_period: 1s",
            f"    deploy: {{replicas: {REPLICAS}}}",
        ]
    return "\n".join(lines) + "\n"


def running_stack(orch: cb.Orchestrator) -> int:
    n = 0
    for i in range(SERVICES):
        n += sum(1 for _, running, desired in orch.tasks(f"{STACK}_s{i}") if running and desired)
    return n


def timed(orch: cb.Orchestrator, issue) -> float:
    t0 = time.monotonic()
    issue()
    cb.wait_for(lambda: running_stack(orch) >= TASKS, T_RUN, f"{orch.name}: {TASKS} tasks running", interval=orch.poll)
    return time.monotonic() - t0


def swarmlet_stack(orch: cb.Swarmlet, path: str) -> float:
    return timed(orch, lambda: orch.cli(orch.manager, "stack", "deploy", "-c", path, STACK, timeout=T_RUN))


def swarmlet_by_hand(orch: cb.Swarmlet) -> float:
    def issue() -> None:
        orch.cli(orch.manager, "network", "create", "--driver", "overlay", f"{STACK}_default")
        for i in range(SERVICES):
            orch.cli(
                orch.manager,
                "service", "create", "--detach", "--name", f"{STACK}_s{i}", "--replicas", str(REPLICAS),
                "--network", f"{STACK}_default", "--stop-grace-period", "1s", cb.IMAGE, "sleep", "3600",
            )  # fmt: skip

    return timed(orch, issue)


def swarmlet_clean(orch: cb.Swarmlet, by_hand: bool) -> None:
    if by_hand:
        for i in range(SERVICES):
            orch.cli(orch.manager, "service", "rm", f"{STACK}_s{i}")
        orch.engines.wait_empty(T_RUN)
        cb.wait_for(
            lambda: orch.cli(orch.manager, "network", "rm", f"{STACK}_default", check=False).returncode == 0,
            60,
            "network removed",
            interval=0.5,
        )
    else:
        orch.cli(orch.manager, "stack", "rm", STACK)
        orch.engines.wait_empty(T_RUN)


def swarm_stack(orch: cb.Swarm, path: str) -> float:
    return timed(orch, lambda: orch.docker(orch.manager, "stack", "deploy", "--resolve-image", "never", "-c", path, STACK))


def swarm_clean(orch: cb.Swarm) -> None:
    orch.docker(orch.manager, "stack", "rm", STACK)
    orch.engines.wait_empty(T_RUN)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=str(cb.REPO / "docs" / "bench" / "stack.json"))
    ap.add_argument("--docker-cli", default="/usr/bin/docker")
    ap.add_argument("--report", metavar="JSON")
    args = ap.parse_args()
    if args.report:
        print(report(json.loads(Path(args.report).read_text())))
        return 0
    import testbed as tblib

    result: dict = {
        "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "services": SERVICES,
        "replicas": REPLICAS,
        "loadavg_start": os.getloadavg(),
        "runs": {"swarmlet_stack": [], "swarmlet_by_hand": [], "swarm_stack": []},
    }
    tb = tblib.Testbed(prefix="bk", subnet_index=7)
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "stack.yml")
        Path(path).write_text(compose_text())
        try:
            hosts = tb.up(4, swarmlet=False)
            engines = cb.Engines(tb, hosts)
            for r in range(args.repeats):
                cb.log(f"round {r + 1}: swarmlet")
                sl = cb.Swarmlet(tb, hosts, engines)
                sl.form()
                try:
                    result["runs"]["swarmlet_stack"].append(round(swarmlet_stack(sl, path), 3))
                    swarmlet_clean(sl, by_hand=False)
                    result["runs"]["swarmlet_by_hand"].append(round(swarmlet_by_hand(sl), 3))
                    swarmlet_clean(sl, by_hand=True)
                finally:
                    sl.teardown()
                    engines.force_clean()
                cb.log(f"round {r + 1}: swarm")
                sw = cb.Swarm(tb, hosts, engines, args.docker_cli)
                sw.form()
                try:
                    result["runs"]["swarm_stack"].append(round(swarm_stack(sw, path), 3))
                    swarm_clean(sw)
                finally:
                    sw.teardown()
                    engines.force_clean()
        finally:
            tb.down()
    result["loadavg_end"] = os.getloadavg()
    for k, v in result["runs"].items():
        result[k] = round(statistics.median(v), 3) if v else None
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(report(result))
    return 0


def report(r: dict) -> str:
    st, hand, sw = r.get("swarmlet_stack"), r.get("swarmlet_by_hand"), r.get("swarm_stack")
    rows = [
        "| measurement (10 services, 30 tasks -> all running) | median (runs) | target | result |",
        "|---|---|---|---|",
        f"| swarmlet `stack deploy` | {st} s ({', '.join(map(str, r['runs']['swarmlet_stack']))}) | ≤ 1.2x by hand | "
        + (f"{st / hand:.2f}x, {'met' if st <= 1.2 * hand else '**missed**'}" if st and hand else "—")
        + " |",
        f"| swarmlet, network + 10 × `service create --detach` | {hand} s ({', '.join(map(str, r['runs']['swarmlet_by_hand']))}) | — | — |",
        f"| Docker Swarm `stack deploy --resolve-image never` | {sw} s ({', '.join(map(str, r['runs']['swarm_stack']))}) | swarmlet faster | "
        + (f"swarmlet {st / sw:.0%} of Swarm, {'met' if st < sw else '**missed**'}" if st and sw else "—")
        + " |",
    ]
    load = f"load average {r.get('loadavg_start')} at the start, {r.get('loadavg_end')} at the end"
    return "\n".join(rows) + f"\n\n- {r.get('started')}: {load}."


if __name__ == "__main__":
    sys.exit(main())
