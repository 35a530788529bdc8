#!/usr/bin/env python3
"""Rolling-update benchmark: swarmlet side by side with Docker Swarm on one
testbed, in one run.

    .venv/bin/python scripts/bench/update_bench.py [--repeats 3] [--out docs/bench/update.json]
    .venv/bin/python scripts/bench/update_bench.py --report docs/bench/update.json

A 4-host testbed (prefix "ub", 198.18.21.0/24; engines only, the busybox test
image also tagged swarmlet-test:v2 in every engine). For each orchestrator in
turn (never both at once; rounds alternate): form the cluster, create a
30-replica service of the test image and wait until all 30 run, then update
its image to the v2 tag with parallelism 5, delay 0, monitor 1 s (stop-first,
Swarm's default order) and time from issuing the update to the
orchestrator's own UpdateStatus saying "completed", checking that every task
then runs the new spec; the CLI returns at once (--detach) for both.

The floor, measured on the same engines without an orchestrator: 6 batches x
(1 s monitor + stop one container + create-and-start one container).
The cluster benchmark's classes (scripts/bench/cluster_bench.py) drive both
orchestrators; only the update itself is new here.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
import traceback
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

import cluster_bench as cb  # noqa: E402  (puts scripts/ and the repo on sys.path)

REPLICAS = 30
PARALLELISM = 5
MONITOR = 1.0
BATCHES = REPLICAS // PARALLELISM
V2 = "swarmlet-test:v2"
SERVICE = "u30"
T_UPDATE = 180
TARGET_FLOOR_RATIO = 1.20  # within 20% of the floor


def measure_stop(engines: cb.Engines, n: int = 5) -> float:
    """Median `docker stop` of one running test container (STOPSIGNAL SIGKILL)."""
    api = engines.client(engines.hosts[0]).api
    times = []
    for i in range(n):
        cid = cb._start_container(api, f"floor-stop-{i}", "none")
        t0 = time.monotonic()
        api.stop(cid, timeout=10)
        times.append(time.monotonic() - t0)
        api.remove_container(cid, force=True)
    return round(statistics.median(times), 3)


def swarmlet_update(orch: cb.Swarmlet) -> dict[str, Any]:
    opb, cpb = orch.opb, orch.cpb
    orch.cli(
        orch.manager, "service", "create", "--name", SERVICE, "--replicas", str(REPLICAS), "--detach", cb.IMAGE, "sleep", "3600"
    )
    stub = orch.stub(orch.manager)
    cb.wait_for(lambda: sum(1 for _, r, d in orch.tasks(SERVICE) if r and d) == REPLICAS, cb.T_CREATE, "30 running")
    t0 = time.monotonic()
    orch.cli(
        orch.manager,
        "service",
        "update",
        "--detach",
        "--image",
        V2,
        "--update-parallelism",
        str(PARALLELISM),
        "--update-delay",
        "0s",
        "--update-monitor",
        f"{MONITOR:g}s",
        SERVICE,
    )

    def done():
        s = stub.GetService(cpb.GetServiceRequest(ref=SERVICE), timeout=5).service
        return s.update_status.state == opb.UpdateStatus.COMPLETED

    cb.wait_for(done, T_UPDATE, "swarmlet update completed", interval=orch.poll)
    took = time.monotonic() - t0
    ts = stub.ListTasks(cpb.ListTasksRequest(service_ref=SERVICE), timeout=10).tasks
    new = [t for t in ts if t.desired_state == opb.RUNNING and t.status.state == opb.RUNNING and t.spec.container.image == V2]
    if len(new) != REPLICAS:
        raise cb.BenchError(f"swarmlet: {len(new)} tasks run the new spec after the update")
    orch.remove(SERVICE)
    orch.engines.wait_empty(cb.T_REMOVE)
    return {"update_s": round(took, 2)}


def swarm_update(orch: cb.Swarm) -> dict[str, Any]:
    orch.create_cmd(SERVICE, REPLICAS, True)()
    cb.wait_for(lambda: sum(1 for _, r, d in orch.tasks(SERVICE) if r and d) == REPLICAS, cb.T_CREATE, "30 running")
    t0 = time.monotonic()
    orch.docker(
        orch.manager,
        "service",
        "update",
        "--detach",
        "--no-resolve-image",
        "--image",
        V2,
        "--update-parallelism",
        str(PARALLELISM),
        "--update-delay",
        "0s",
        "--update-monitor",
        f"{MONITOR:g}s",
        SERVICE,
    )

    def done():
        s = orch.api().inspect_service(SERVICE)
        return (s.get("UpdateStatus") or {}).get("State") == "completed"

    cb.wait_for(done, T_UPDATE, "swarm update completed", interval=orch.poll)
    took = time.monotonic() - t0
    tasks = orch.api().tasks(filters={"service": SERVICE, "desired-state": "running"})
    new = [t for t in tasks if t["Status"]["State"] == "running" and t["Spec"]["ContainerSpec"]["Image"].startswith(V2)]
    if len(new) != REPLICAS:
        raise cb.BenchError(f"swarm: {len(new)} tasks run the new spec after the update")
    orch.remove(SERVICE)
    orch.engines.wait_empty(cb.T_REMOVE)
    return {"update_s": round(took, 2)}


def report(res: dict) -> str:
    f = res.get("floor", {})
    lines = [
        f"floor: {BATCHES} batches x ({MONITOR:g} s monitor + stop {f.get('stop_s')} s + start {f.get('start_s')} s)"
        f" = **{f.get('floor_s')} s**",
        "",
        "| | runs (s) | median (s) | / floor |",
        "|---|---|---|---|",
    ]
    for name in ("swarmlet", "swarm"):
        r = res.get(name, {})
        runs = r.get("update_s", [])
        med = statistics.median(runs) if runs else None
        ratio = f"{med / f['floor_s']:.2f}" if med and f.get("floor_s") else "—"
        lines.append(f"| {name} | {', '.join(f'{x:.2f}' for x in runs) or '—'} | {f'{med:.2f}' if med else '—'} | {ratio} |")
        for e in r.get("errors", []):
            lines.append(f"\n{name} error: {e}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=None)
    ap.add_argument("--report", default=None)
    ap.add_argument("--skip-swarm", action="store_true")
    ap.add_argument("--docker-cli", default="/usr/bin/docker")
    args = ap.parse_args(argv)
    if args.report:
        print(report(json.loads(Path(args.report).read_text())))
        return 0
    if os.geteuid() != 0:
        print("run as root (network namespaces, dockerd)", file=sys.stderr)
        return 2
    from testbed import Testbed

    res: dict[str, Any] = {
        "machine": cb.machine_info(),
        "replicas": REPLICAS,
        "parallelism": PARALLELISM,
        "monitor_s": MONITOR,
        "swarmlet": {"update_s": [], "errors": []},
        "swarm": {"update_s": [], "errors": []},
    }
    tb = Testbed(prefix="ub", subnet_index=21)
    try:
        hosts = tb.up(cb.N_HOSTS, swarmlet=False)
        engines = cb.Engines(tb, hosts)
        for h in hosts:
            engines.client(h).images.get(cb.IMAGE).tag("swarmlet-test", "v2")
        start = cb.measure_one_start(engines, "none")
        stop = measure_stop(engines)
        res["floor"] = {"start_s": start, "stop_s": stop, "floor_s": round(BATCHES * (MONITOR + stop + start), 2)}
        cb.log(f"floor {res['floor']}")
        makers = [("swarmlet", lambda: cb.Swarmlet(tb, hosts, engines), swarmlet_update)]
        if not args.skip_swarm:
            makers.append(("swarm", lambda: cb.Swarm(tb, hosts, engines, args.docker_cli), swarm_update))
        for i in range(args.repeats):
            for name, make, run in makers:
                orch = make()
                try:
                    orch.form()
                    r = run(orch)
                    res[name]["update_s"].append(r["update_s"])
                    cb.log(f"round {i + 1} {name}: update {r['update_s']} s")
                except Exception as exc:
                    traceback.print_exc()
                    res[name]["errors"].append(f"round {i + 1}: {exc}")
                finally:
                    try:
                        orch.teardown()
                    finally:
                        engines.force_clean()
    finally:
        tb.down()
    text = report(res)
    print(text)
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=2) + "\n")
    sw = res["swarmlet"]["update_s"]
    ok = bool(sw) and statistics.median(sw) <= TARGET_FLOOR_RATIO * res["floor"]["floor_s"]
    print(f"target (within 20% of the floor): {'met' if ok else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
