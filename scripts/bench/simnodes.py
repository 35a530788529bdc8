#!/usr/bin/env python3
"""Simulated swarmlet nodes for the scale benchmark (scale_bench.py) and the
scale integration test: the control plane is real, only the engine is not.

Each simulated node joins through a manager's real join port (the token's CA
digest checked against the TLS handshake, a fresh key and CSR, a certificate
issued by the cluster's CA) and then runs the real agent: AgentSession (its
dispatcher session, heartbeats at the period the manager asks for, status
reports) and the Executor, with the in-memory engine of
swarmlet/agent/runtime/fake.py behind the runtime interface instead of Docker.
Tasks "run" at once in that engine.

Run as one process per `--count` nodes; it speaks JSON lines:
  stdout: {"event": "joined", "nodes": [[id, hostname], ...], "seconds": s}
          {"event": "started"}
          {"event": "stats", ...}            (answer to "stats")
          {"event": "stopped", "nodes": [...]}  (answer to "stop K")
  stdin:  "stats" | "stop K" (stop K nodes' agents: silent, as if cut off) | "quit"
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from swarmlet import tls  # noqa: E402
from swarmlet.agent import tasks as agent_tasks  # noqa: E402
from swarmlet.agent.executor import Executor  # noqa: E402
from swarmlet.agent.runtime.fake import FakeRuntime  # noqa: E402
from swarmlet.agent.session import AgentSession  # noqa: E402
from swarmlet.api import ca_pb2, ca_pb2_grpc  # noqa: E402

JOIN_TIMEOUT = 60.0

# The fake engine answers at once: one start and one stop worker per node are
# plenty, and hundreds of nodes share this process (a real agent has 8 + 16).
agent_tasks.START_WORKERS = 1
agent_tasks.STOP_WORKERS = 1


def join(manager: str, token: str, hostname: str, addr: str) -> tuple[tls.NodeCredentials, list[str]]:
    """The join flow of `swarmlet join`, over the network: returns the node's
    credentials and the managers' API addresses."""
    digest, _ = tls.parse_token(token)
    ca_pem = tls.fetch_remote_ca(manager, digest, timeout=JOIN_TIMEOUT)
    key_pem = tls.new_node_key()
    channel = grpc.secure_channel(manager, tls.channel_credentials(ca_pem), options=tls.CHANNEL_OPTIONS)
    try:
        req = ca_pb2.IssueNodeCertificateRequest(
            token=token, csr_pem=tls.make_csr(key_pem), hostname=hostname, addr=addr, api_addr=f"{addr}:4244"
        )
        resp = ca_pb2_grpc.CAStub(channel).IssueNodeCertificate(req, timeout=JOIN_TIMEOUT)
    finally:
        channel.close()
    creds = tls.NodeCredentials.from_pems(key_pem, resp.cert_pem, resp.ca_cert_pem)
    return creds, list(resp.managers) or [manager]


class SimNode:
    def __init__(self, hostname: str, addr: str, image: str, creds: tls.NodeCredentials, managers: list[str]) -> None:
        self.hostname = hostname
        self.creds = creds
        self.engine = FakeRuntime(hostname=hostname, images={image: ()})
        self.executor = Executor(self.engine, creds.node_id, self._report, hostname=hostname)
        self.session = AgentSession(creds, managers, self.executor, addr, f"{addr}:4244")

    def _report(self, reports: list) -> None:
        self.session.report(reports)

    def start(self) -> None:
        self.executor.start()
        self.session.start()

    def stop(self) -> None:
        self.session.stop()
        self.executor.stop()


def _emit(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def _stats(nodes: list[SimNode]) -> dict:
    rtts = sorted(r for n in nodes for r in list(n.session.heartbeat_rtts))

    def pct(p: float) -> float | None:
        return rtts[min(len(rtts) - 1, int(p * len(rtts)))] if rtts else None

    return {
        "event": "stats",
        "nodes": len(nodes),
        "connected": sum(1 for n in nodes if n.session.connected.is_set()),
        "heartbeats": len(rtts),
        "heartbeat_failures": sum(n.session.heartbeat_failures for n in nodes),
        "rtt_p50": pct(0.50),
        "rtt_p99": pct(0.99),
        "rtt_max": rtts[-1] if rtts else None,
        # What the managers ask for at this size (core/cluster.py heartbeat_stretch).
        "heartbeat_period": max((n.session.heartbeat_period for n in nodes), default=None),
        "tasks": sum(len(n.engine.containers()) for n in nodes),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--manager", required=True, help="a manager's join address, host:port")
    ap.add_argument("--token", required=True, help="the worker join token")
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--first", type=int, default=0, help="index of the first node (hostnames sim-<i>)")
    ap.add_argument("--addr", default="127.0.0.1", help="the address the nodes advertise")
    ap.add_argument("--image", default="swarmlet-test:busybox", help="the image the fake engines have")
    ap.add_argument("--join-threads", type=int, default=8)
    args = ap.parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, os.environ.get("SIMNODES_LOG", "ERROR")), format="%(asctime)s %(name)s %(message)s"
    )

    start = time.monotonic()
    names = [f"sim-{args.first + i:04d}" for i in range(args.count)]

    def one(name: str) -> SimNode:
        for attempt in range(5):
            try:
                creds, managers = join(args.manager, args.token, name, args.addr)
                return SimNode(name, args.addr, args.image, creds, managers)
            except Exception as e:  # noqa: BLE001  (retried, then reported)
                if attempt == 4:
                    raise
                sys.stderr.write(f"{name}: join failed ({e}); retrying\n")
                time.sleep(0.5 * (attempt + 1))
        raise AssertionError("unreachable")

    with ThreadPoolExecutor(args.join_threads) as pool:
        nodes = list(pool.map(one, names))
    _emit({"event": "joined", "nodes": [[n.creds.node_id, n.hostname] for n in nodes], "seconds": time.monotonic() - start})
    for n in nodes:
        n.start()
    _emit({"event": "started"})

    live = list(nodes)
    for line in sys.stdin:
        cmd = line.split()
        if not cmd:
            continue
        if cmd[0] == "stats":
            _emit(_stats(live))
        elif cmd[0] == "stop":
            k = int(cmd[1])
            gone, live = live[:k], live[k:]
            threading.Thread(target=lambda g=gone: [n.stop() for n in g], daemon=True).start()
            _emit({"event": "stopped", "nodes": [n.creds.node_id for n in gone], "t": time.time()})
        elif cmd[0] == "quit":
            break
    for n in live:
        n.session.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
