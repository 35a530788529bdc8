#!/usr/bin/env python3
"""Engine API benchmark (issue 17): `docker service create --detach` through
swarmlet's Engine API socket against `swarmlet service create --detach`, for
the same service spec, on one swarmlet cluster.

    .venv/bin/python scripts/bench/engineapi_bench.py [--rounds 7] [--replicas 4] [--out docs/bench/engineapi.json]
    .venv/bin/python scripts/bench/engineapi_bench.py --report docs/bench/engineapi.json

A 4-host testbed (prefix "ea", 198.18.71.0/24; engines only), always torn
down (`python scripts/testbed.py down --prefix ea` after a hard kill). One
swarmlet cluster is formed for the whole run, h1 its manager, its daemon
started with `--docker-api-socket`. Each round times both clients, in
alternating order (the first client of a round changes every round), each
creating a service of `--replicas` tasks of the test image (which every
engine holds) with `--no-resolve-image` on both sides, so no registry is
asked (the testbed has none): Debian's docker CLI with
DOCKER_HOST=unix://<socket>, and swarmlet's own CLI on the daemon's socket.

Timed per create: the command's wall time (issue start -> exit; what the
target is about: `--detach` returns once the manager accepted the service),
and, for reference, the time until the manager's task list shows every
replica RUNNING. After each create the service is removed and the engines
are waited empty, untimed. One warm-up create of each client precedes the
rounds. Target: the Engine API's median command time within 1.1x of the
swarmlet CLI's (the median of the per-round ratios is reported too).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

import cluster_bench as cb  # noqa: E402  (puts scripts/ and the repo on sys.path)

PREFIX, SUBNET = "ea", 71
TARGET_RATIO = 1.10
CLIENTS = ("engine_api", "swarmlet_cli")


class ServingSwarmlet(cb.Swarmlet):
    """cluster_bench's swarmlet cluster, its manager serving the Engine API."""

    def __init__(self, tb: Any, hosts: list[Any], engines: cb.Engines, socket_path: str) -> None:
        super().__init__(tb, hosts, engines)
        self.socket_path = socket_path

    def form(self) -> None:
        if not self.tb.swarmlet_running(self.manager):
            self.tb.start_swarmlet(self.manager, ["--docker-api-socket", self.socket_path])
        super().form()
        if not os.path.exists(self.socket_path):
            raise cb.BenchError(f"the manager's daemon did not create {self.socket_path}")


def create_args(name: str, replicas: int) -> list[str]:
    """The same spec for both clients; no registry lookup on either side."""
    return ["service", "create", "--detach", "--no-resolve-image", "--name", name, "--replicas", str(replicas)]


def issue_command(orch: ServingSwarmlet, client: str, name: str, replicas: int, docker_cli: str) -> list[str]:
    tail = [cb.IMAGE, "sleep", "3600"]
    if client == "engine_api":
        return [docker_cli, *create_args(name, replicas), *tail]
    return [orch.tb.python, "-m", "swarmlet", "-H", f"unix://{orch.manager.swarmlet_sock}", *create_args(name, replicas), *tail]


def client_env(orch: ServingSwarmlet, client: str, docker_config: str) -> dict[str, str]:
    if client == "engine_api":
        # An empty client config: no credentials or context of this host's user.
        env = {**os.environ, "DOCKER_HOST": f"unix://{orch.socket_path}", "DOCKER_CONFIG": docker_config}
        env.pop("DOCKER_CONTEXT", None)
        return env
    return orch.tb._swarmlet_env()


def timed_create(
    orch: ServingSwarmlet, client: str, name: str, replicas: int, docker_cli: str, docker_config: str
) -> dict[str, float]:
    """Seconds of the command, and from its start until `replicas` run."""
    cmd = issue_command(orch, client, name, replicas, docker_cli)
    t0 = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=cb.T_CLI, env=client_env(orch, client, docker_config))
    command_s = time.monotonic() - t0
    if proc.returncode != 0:
        raise cb.BenchError(f"{client}: {' '.join(cmd[-9:])} -> {proc.returncode}: {proc.stderr.strip()}")
    deadline = t0 + cb.T_CREATE
    while time.monotonic() < deadline:
        if sum(orch.running_by_host(name).values()) >= replicas:
            return {"command_s": round(command_s, 4), "running_s": round(time.monotonic() - t0, 3)}
        time.sleep(orch.poll)
    raise cb.BenchError(f"{client}: {replicas} tasks of {name} not running within {cb.T_CREATE}s")


def one_round(
    orch: ServingSwarmlet, engines: cb.Engines, i: int, replicas: int, docker_cli: str, docker_config: str
) -> dict[str, Any]:
    order = CLIENTS if i % 2 == 0 else tuple(reversed(CLIENTS))
    out: dict[str, Any] = {"first": order[0], "loadavg1": round(os.getloadavg()[0], 2)}
    for client in order:
        name = f"ea-{client.replace('_', '-')}-{i}"
        r = timed_create(orch, client, name, replicas, docker_cli, docker_config)
        out[f"{client}_command_s"], out[f"{client}_running_s"] = r["command_s"], r["running_s"]
        orch.remove(name)
        engines.wait_empty(cb.T_REMOVE)
    out["ratio"] = round(out["engine_api_command_s"] / out["swarmlet_cli_command_s"], 3)
    return out


# ---- the report ----


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _fmt(values: list[float]) -> str:
    return ", ".join(f"{x:.3f}" for x in values) or "—"


def _num(x: float | None, digits: int = 3) -> str:
    return "—" if x is None else f"{x:.{digits}f}"


def report(res: dict[str, Any]) -> str:
    """The Markdown table of a result file (or of a run just made)."""
    rounds: list[dict[str, Any]] = res.get("rounds", [])
    lines = [
        f"{res.get('replicas', '?')} replicas, {len(rounds)} rounds, `--detach --no-resolve-image` on both sides",
        "",
        "| client | command (s), each round | median command (s) | median to all running (s) |",
        "|---|---|---|---|",
    ]
    medians: dict[str, float | None] = {}
    labels = {"engine_api": "`docker service create` via the Engine API", "swarmlet_cli": "`swarmlet service create`"}
    for client in CLIENTS:
        cmd = [float(r[f"{client}_command_s"]) for r in rounds if f"{client}_command_s" in r]
        run = [float(r[f"{client}_running_s"]) for r in rounds if f"{client}_running_s" in r]
        medians[client] = _median(cmd)
        lines.append(f"| {labels[client]} | {_fmt(cmd)} | {_num(medians[client])} | {_num(_median(run), 2)} |")
    e, s = medians["engine_api"], medians["swarmlet_cli"]
    ratio = e / s if e is not None and s else None
    round_ratios = [float(r["ratio"]) for r in rounds if "ratio" in r]
    lines.append("")
    lines.append(
        f"Engine API / swarmlet CLI: ratio of medians {_num(ratio, 2)}, median of round ratios "
        f"{_num(_median(round_ratios), 2)} (target ≤ {TARGET_RATIO:.2f}: "
        f"{'met' if ratio is not None and ratio <= TARGET_RATIO else 'NOT met' if ratio is not None else 'no data'})"
    )
    loads = [float(r["loadavg1"]) for r in rounds if "loadavg1" in r]
    if loads:
        lines.append(f"Load average (1 min) at each round: {', '.join(f'{x:.2f}' for x in loads)}")
    for err in res.get("errors", []):
        lines.append(f"\nerror: {err}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=7, help="rounds, each timing both clients once (default 7)")
    ap.add_argument("--replicas", type=int, default=4, help="replicas of each created service (default 4)")
    ap.add_argument("--out", default=None, help="write the raw results here (JSON), e.g. docs/bench/engineapi.json")
    ap.add_argument("--report", default=None, metavar="JSON", help="print the table of a result file and exit")
    ap.add_argument("--docker-cli", default="/usr/bin/docker", help="the docker CLI (default: Debian's docker.io)")
    args = ap.parse_args(argv)
    if args.report:
        try:
            res = json.loads(Path(args.report).read_text())
        except (OSError, ValueError) as e:
            print(f"cannot read {args.report}: {e}", file=sys.stderr)
            return 2
        print(report(res))
        return 0
    if args.rounds < 1 or args.replicas < 1:
        ap.error("--rounds and --replicas must be at least 1")
    if not os.access(args.docker_cli, os.X_OK):
        print(f"{args.docker_cli} is not an executable docker CLI (apt-get install docker.io)", file=sys.stderr)
        return 2
    if os.geteuid() != 0:
        print("run as root (network namespaces, dockerd)", file=sys.stderr)
        return 2
    from testbed import Testbed

    res: dict[str, Any] = {"machine": cb.machine_info(), "replicas": args.replicas, "rounds": [], "errors": []}
    tb = Testbed(prefix=PREFIX, subnet_index=SUBNET)
    docker_config = str(tb.base / "docker-config")
    try:
        hosts = tb.up(cb.N_HOSTS, swarmlet=False)
        os.makedirs(docker_config, exist_ok=True)
        engines = cb.Engines(tb, hosts)
        orch = ServingSwarmlet(tb, hosts, engines, str(tb.base / "docker-api.sock"))
        try:
            orch.form()
            for client in CLIENTS:  # untimed: first uses (imports, caches) of each path
                timed_create(orch, client, f"ea-warm-{client.replace('_', '-')}", args.replicas, args.docker_cli, docker_config)
                orch.remove(f"ea-warm-{client.replace('_', '-')}")
                engines.wait_empty(cb.T_REMOVE)
            for i in range(args.rounds):
                try:
                    r = one_round(orch, engines, i, args.replicas, args.docker_cli, docker_config)
                    res["rounds"].append(r)
                    cb.log(f"round {i + 1}: {r}")
                except Exception as exc:
                    traceback.print_exc()
                    res["errors"].append(f"round {i + 1}: {exc}")
                    engines.force_clean()
        finally:
            orch.teardown()
    except Exception as exc:
        traceback.print_exc()
        res["errors"].append(f"setup: {exc}")
    finally:
        tb.down()
    print(report(res))
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=2) + "\n")
    return 0 if res["rounds"] else 1


if __name__ == "__main__":
    sys.exit(main())
