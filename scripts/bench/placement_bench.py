#!/usr/bin/env python3
"""Cost of issue 11's placement options in one scheduling round: 10,000
pending tasks on 1,000 nodes, placed by the pure scheduler (no Raft, no
agents), with plain spread and with each new option.

    .venv/bin/python scripts/bench/placement_bench.py [--nodes 1000] [--tasks 10000] [--runs 5] [--out FILE]

Workloads (each a fresh snapshot; the round's actions are built, not applied):
  spread        one service, plain spread (the baseline)
  pref          --placement-pref spread=node.labels.zone (10 zones of uneven
                size: zone i holds i+1 shares of the nodes)
  pref-nested   zone, then rack (10 racks per zone)
  max-per-node  --replicas-max-per-node 5 (half the tasks stay pending, explained)
  host-port     a host-mode published port: one task per node (the rest pending)
  generic       each task reserves gpu=1 of 16 named GPUs per node

Reported per workload: the median and best CPU seconds of the round
(time.process_time: this machine is shared, CPU time is steadier than wall
time), tasks assigned, and how even the zones came out (pref workloads).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from swarmlet.api import objects_pb2 as pb  # noqa: E402
from swarmlet.core import state as st  # noqa: E402
from swarmlet.core.scheduler import schedule  # noqa: E402

WORKLOADS = ("spread", "pref", "pref-nested", "max-per-node", "host-port", "generic")


def build(workload: str, nodes: int, tasks: int) -> st.Snapshot:
    snap = st.Snapshot()
    weights = [i + 1 for i in range(10)]  # uneven zones
    bounds = []
    acc = 0
    for w in weights:
        acc += w
        bounds.append(acc * nodes // sum(weights))
    for i in range(nodes):
        zone = next(z for z, b in enumerate(bounds) if i < b)
        n = pb.Node(id=f"node{i:05d}")
        n.spec.labels["zone"] = f"z{zone}"
        n.spec.labels["rack"] = f"z{zone}-r{i % 10}"
        n.description.hostname = n.id
        n.description.resources.nano_cpus = 64 * 10**9
        n.description.resources.memory_bytes = 256 << 30
        if workload == "generic":
            for g in range(16):
                n.description.resources.generic.add(kind="gpu", named_value=f"GPU-{g}")
        n.status.state = pb.NodeStatus.READY
        snap.nodes[n.id] = n
    svc = pb.Service(id="svc", spec_version=1)
    svc.spec.name = "big"
    svc.spec.replicated.replicas = tasks
    t = svc.spec.task
    t.container.image = "busybox"
    if workload == "pref":
        t.placement.preferences.add(spread="node.labels.zone")
    elif workload == "pref-nested":
        t.placement.preferences.add(spread="node.labels.zone")
        t.placement.preferences.add(spread="node.labels.rack")
    elif workload == "max-per-node":
        t.placement.max_replicas = max(1, tasks // nodes // 2)
    elif workload == "host-port":
        svc.spec.endpoint.ports.add(target_port=80, published_port=8080, publish_mode=pb.PortConfig.HOST)
        # A publishing service's tasks wait for the ingress network and an address on it.
        ing = pb.Network(id="ingress", spec=pb.NetworkSpec(name="ingress", ingress=True), subnet="10.255.0.0/16", vni=4096)
        snap.networks[ing.id] = ing
    elif workload == "generic":
        t.resources.reservations.generic.add(kind="gpu", discrete_value=1)
    snap.services[svc.id] = svc
    for i in range(tasks):
        task = pb.Task(id=f"task{i:06d}", service_id=svc.id, service_name="big", slot=i + 1, spec_version=1)
        task.spec.CopyFrom(t)
        task.desired_state = pb.RUNNING
        task.status.state = pb.NEW
        if workload == "host-port":
            task.networks.add(network_id="ingress", addr=f"10.255.{i // 250}.{i % 250 + 2}")
        snap.tasks[task.id] = task
    return snap


def run_once(workload: str, nodes: int, tasks: int) -> tuple[float, int, dict[str, int]]:
    snap = build(workload, nodes, tasks)
    t0 = time.process_time()
    plan = schedule(snap, 1000.0)
    cpu = time.process_time() - t0
    assigned = [a.put.task for a in plan.actions if a.WhichOneof("action") == "put" and a.put.task.node_id]
    zones = Counter(snap.nodes[t.node_id].spec.labels["zone"] for t in assigned)
    return cpu, len(assigned), dict(sorted(zones.items()))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--tasks", type=int, default=10000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--out", default=None)
    args = ap.parse_args(argv)
    results = {}
    for w in WORKLOADS:
        cpus, assigned, zones = [], 0, {}
        for _ in range(args.runs):
            cpu, assigned, zones = run_once(w, args.nodes, args.tasks)
            cpus.append(cpu)
        results[w] = {
            "median_cpu_s": round(statistics.median(cpus), 3),
            "best_cpu_s": round(min(cpus), 3),
            "assigned": assigned,
            "zones": zones if w.startswith("pref") or w == "spread" else {},
        }
        print(
            f"{w:13s} median {results[w]['median_cpu_s']:.3f}s best {results[w]['best_cpu_s']:.3f}s assigned {assigned}",
            flush=True,
        )
    out = {"nodes": args.nodes, "tasks": args.tasks, "runs": args.runs, "results": results}
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
