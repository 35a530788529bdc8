#!/usr/bin/env python3
"""Root CA rotation benchmark (issue 13): swarmlet side by side with Docker
Swarm on one testbed, in one run.

    .venv/bin/python scripts/bench/pki_bench.py [--repeats 3] [--out docs/bench/pki.json]
    .venv/bin/python scripts/bench/pki_bench.py --report docs/bench/pki.json

A 4-host testbed (prefix "ka", 198.18.31.0/24; engines only). For each
orchestrator in turn (never both at once; rounds alternate): form a
1-manager + 3-worker cluster, then time a root CA rotation through each one's
own API from the request to the manager reporting it complete (every node
holds a certificate from the new root and the old root is no longer trusted):
swarmlet's Control.RotateRootCA then GetRootCA, Swarm's swarm update with
CAConfig.ForceRotate + 1 then swarm inspect (what `docker swarm ca --rotate`
does, without a CLI's start-up: swarmlet's Python CLI alone takes seconds on a
loaded machine, Docker's Go CLI milliseconds). For swarmlet also: after `node
demote` of a second manager, how long until a worker refuses the demoted
manager's old certificate (Swarm has no equivalent to measure).
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

T_ROTATE = 300


POLL = 0.05


def swarmlet_rotate(orch: cb.Swarmlet) -> dict[str, Any]:
    cpb = orch.cpb
    stub = orch.stub(orch.manager)
    before = stub.GetRootCA(cpb.GetRootCARequest(), timeout=10).digest
    t0 = time.monotonic()
    target = stub.RotateRootCA(cpb.RotateRootCARequest(), timeout=60).new_digest

    def done() -> bool:
        s = stub.GetRootCA(cpb.GetRootCARequest(), timeout=10)
        return not s.rotating and s.digest == target

    cb.wait_for(done, T_ROTATE, "swarmlet: the rotation completes", interval=POLL)
    took = time.monotonic() - t0
    if target == before:
        raise cb.BenchError("swarmlet: the root did not change")
    return {"rotate_s": round(took, 2), "revoke_s": swarmlet_revoke(orch)}


def swarmlet_revoke(orch: cb.Swarmlet) -> float:
    """Promote h2, take its manager certificate, demote it; time until h3's
    agent API refuses that certificate."""
    import grpc

    from swarmlet import tls
    from swarmlet.api import agent_pb2, agent_pb2_grpc

    h2, h3 = orch.hosts[1], orch.hosts[2]
    orch.cli(orch.manager, "node", "promote", "h2", timeout=120)

    def manager_creds() -> tls.NodeCredentials | None:
        try:
            c = tls.NodeCredentials.load(Path(h2.state_dir) / "certs")
        except tls.CredentialsError:
            return None
        return c if c is not None and c.role == "manager" else None

    old = cb.wait_for(manager_creds, 120, "h2 holds a manager certificate")
    assert old is not None

    def h2_manages() -> bool:
        try:
            nodes = orch.stub(orch.manager).ListNodes(orch.cpb.ListNodesRequest(), timeout=5).nodes
        except grpc.RpcError:
            return False  # no quorum until h2 runs as a Raft member
        reachable = orch.opb.ManagerStatus.REACHABLE
        return any(n.description.hostname == "h2" and n.manager_status.reachability == reachable for n in nodes)

    cb.wait_for(h2_manages, 120, "h2 a reachable manager")

    def code() -> grpc.StatusCode:
        with grpc.secure_channel(f"{h3.ip}:4244", old.channel_credentials(), options=tls.CHANNEL_OPTIONS) as ch:
            try:
                list(agent_pb2_grpc.AgentStub(ch).TaskLogs(agent_pb2.TaskLogsRequest(tail=-1), timeout=5))
            except grpc.RpcError as e:
                return e.code()
        return grpc.StatusCode.OK

    cb.wait_for(lambda: code() == grpc.StatusCode.OK, 60, "h3 honours h2's manager certificate")
    orch.cli(orch.manager, "node", "demote", "h2", timeout=120)
    t0 = time.monotonic()
    cb.wait_for(
        lambda: code() == grpc.StatusCode.PERMISSION_DENIED, 30, "h3 refuses the demoted manager's certificate", interval=0.02
    )
    return round(time.monotonic() - t0, 3)


def swarm_rotate(orch: cb.Swarm) -> dict[str, Any]:
    api = orch.api()
    info = api.inspect_swarm()
    before = info["TLSInfo"]["TrustRoot"]
    spec = info["Spec"]
    spec.setdefault("CAConfig", {})["ForceRotate"] = int(spec["CAConfig"].get("ForceRotate", 0)) + 1
    t0 = time.monotonic()
    api.update_swarm(version=info["Version"]["Index"], swarm_spec=spec)

    def done() -> bool:
        s = api.inspect_swarm()
        return not s.get("RootRotationInProgress") and s["TLSInfo"]["TrustRoot"] != before

    cb.wait_for(done, T_ROTATE, "swarm: the rotation completes", interval=POLL)
    return {"rotate_s": round(time.monotonic() - t0, 2)}


def report(res: dict) -> str:
    lines = [
        "| | `ca --rotate`, 4 nodes: runs (s) | median (s) | demoted manager's certificate refused by a worker after (s) |",
        "|---|---|---|---|",
    ]
    for name in ("swarmlet", "swarm"):
        r = res.get(name, {})
        runs = r.get("rotate_s", [])
        med = f"{statistics.median(runs):.2f}" if runs else "—"
        rev = r.get("revoke_s", [])
        revoke = ", ".join(f"{x:.3f}" for x in rev) if rev else "— (not measured)"
        lines.append(f"| {name} | {', '.join(f'{x:.2f}' for x in runs) or '—'} | {med} | {revoke} |")
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
        "swarmlet": {"rotate_s": [], "revoke_s": [], "errors": []},
        "swarm": {"rotate_s": [], "errors": []},
    }
    tb = Testbed(prefix="ka", subnet_index=31)
    try:
        hosts = tb.up(cb.N_HOSTS, swarmlet=False)
        engines = cb.Engines(tb, hosts)
        makers = [("swarmlet", lambda: cb.Swarmlet(tb, hosts, engines), swarmlet_rotate)]
        if not args.skip_swarm:
            makers.append(("swarm", lambda: cb.Swarm(tb, hosts, engines, args.docker_cli), swarm_rotate))
        for i in range(args.repeats):
            for name, make, run in makers:
                orch = make()
                try:
                    orch.form()
                    r = run(orch)
                    for k, v in r.items():
                        res[name][k].append(v)
                    cb.log(f"round {i + 1} {name}: {r}")
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
    res["machine"]["loadavg_end"] = Path("/proc/loadavg").read_text().split()[:3]
    text = report(res)
    print(text)
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
