#!/usr/bin/env python3
"""Secrets and configs benchmark (issue 10): what two secrets and a config per
task cost a 30-replica service's convergence, swarmlet side by side with
Docker Swarm on one testbed, in one run.

    .venv/bin/python scripts/bench/secrets_bench.py [--repeats 5] [--out docs/bench/secrets.json]
    .venv/bin/python scripts/bench/secrets_bench.py --report docs/bench/secrets.json

A 4-host testbed (prefix "sk", 198.18.61.0/24; engines only). For each
orchestrator in turn (rounds alternate; never both at once): form the cluster,
create two secrets (4 KiB each) and a config (1 KiB), warm up (one small
service with the files, created and removed untimed), then, alternating which
goes first, create a 30-replica service of the test image with --detach and
time from issuing the command until the orchestrator's own task list shows 30
RUNNING: once plain, once with `--secret` x2 and `--config`. After each
secrets run one container per host is checked to hold both files with the
right content (the measurement is of the real thing), then the service is
removed and the engines are waited empty. The target: swarmlet's median with
secrets within 1.1x its median without, in the same run (the median of the
per-round ratios is reported too: rounds pair two runs minutes apart at most,
which matters on a shared machine).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))

import cluster_bench as cb  # noqa: E402  (puts scripts/ and the repo on sys.path)

REPLICAS = 30
SECRET_A = b"a" * 4096
SECRET_B = b"b" * 4096
CONFIG = b"c" * 1024
TARGET_RATIO = 1.10


def _stdin_cmd(cmd: list[str], data: bytes, env: dict[str, str] | None = None) -> None:
    import subprocess

    proc = subprocess.run(cmd, input=data, capture_output=True, timeout=cb.T_CLI, env=env)
    if proc.returncode != 0:
        raise cb.BenchError(f"{' '.join(cmd)} -> {proc.returncode}: {proc.stderr.decode().strip()}")


def make_objects(orch: cb.Orchestrator) -> None:
    """Two secrets and a config, the same on both orchestrators."""
    for kind, name, data in (("secret", "bench-a", SECRET_A), ("secret", "bench-b", SECRET_B), ("config", "bench-c", CONFIG)):
        if isinstance(orch, cb.Swarmlet):
            cmd = [orch.tb.python, "-m", "swarmlet", "-H", f"unix://{orch.manager.swarmlet_sock}", kind, "create", name, "-"]
            _stdin_cmd(cmd, data, orch.tb._swarmlet_env())
        else:
            assert isinstance(orch, cb.Swarm)
            _stdin_cmd([orch.docker_cli, "-H", orch.manager.docker_url, kind, "create", name, "-"], data)


FILE_ARGS = ["--secret", "bench-a", "--secret", "bench-b", "--config", "source=bench-c,target=/etc/bench-c"]


def create_args(name: str, with_files: bool, replicas: int) -> list[str]:
    return ["service", "create", "--detach", "--name", name, "--replicas", str(replicas), *(FILE_ARGS if with_files else [])]


def timed(orch: cb.Orchestrator, name: str, with_files: bool, replicas: int = REPLICAS) -> float:
    """Seconds from issuing the create to `replicas` tasks RUNNING (the orchestrator's view)."""
    if isinstance(orch, cb.Swarmlet):
        args = create_args(name, with_files, replicas) + [cb.IMAGE, "sleep", "3600"]

        def issue() -> Any:
            return orch.tb.cli(orch.manager, *args, timeout=cb.T_CLI)
    else:
        assert isinstance(orch, cb.Swarm)
        base = create_args(name, with_files, replicas)
        args = base[:2] + ["--no-resolve-image"] + base[2:]
        args += [cb.IMAGE, "sleep", "3600"]

        def issue() -> Any:
            return orch.docker(orch.manager, *args, check=False)

    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["proc"] = issue()
        except Exception as exc:  # reported below
            result["error"] = exc

    t0 = time.monotonic()
    th = threading.Thread(target=run, daemon=True)
    th.start()
    deadline = t0 + cb.T_CREATE
    while time.monotonic() < deadline:
        try:
            running = sum(orch.running_by_host(name).values())
        except Exception:
            running = 0
        if running >= replicas:
            took = time.monotonic() - t0
            th.join(30)
            return took
        proc = result.get("proc")
        if "error" in result or (proc is not None and proc.returncode != 0):
            raise cb.BenchError(f"{orch.name}: create failed: {result.get('error') or proc.stderr}")
        time.sleep(orch.poll)
    raise cb.BenchError(f"{orch.name}: {replicas} not running within {cb.T_CREATE}s")


def _rfc3339(text: str) -> float:
    # Docker's timestamps carry nanoseconds: keep microseconds for fromisoformat.
    head, _, frac = text.rstrip("Z").partition(".")
    return datetime.datetime.fromisoformat(f"{head}.{(frac + '000000')[:6]}+00:00").timestamp()


def task_latency(orch: cb.Orchestrator, name: str) -> float:
    """Median over the service's tasks of created -> RUNNING, as the
    orchestrator recorded them: where a per-task cost of the files would show,
    without the time to the last task."""
    if isinstance(orch, cb.Swarmlet):
        ts = orch.stub(orch.manager).ListTasks(orch.cpb.ListTasksRequest(service_ref=name), timeout=10).tasks
        return statistics.median(t.running_at - t.meta.created_at for t in ts if t.running_at)
    assert isinstance(orch, cb.Swarm)
    tasks = [t for t in orch.api().tasks(filters={"service": name}) if t["Status"]["State"] == "running"]
    return statistics.median(_rfc3339(t["Status"]["Timestamp"]) - _rfc3339(t["CreatedAt"]) for t in tasks)


def check_files(engines: cb.Engines, name: str) -> None:
    """One container per host holds both secrets and the config."""
    for h in engines.hosts:
        api = engines.client(h).api
        found = [c for c in api.containers() if any(name in n for n in c.get("Names", []))]
        if not found:
            continue
        cid = found[0]["Id"]
        for path, want in (("/run/secrets/bench-a", SECRET_A), ("/run/secrets/bench-b", SECRET_B), ("/etc/bench-c", CONFIG)):
            ex = api.exec_create(cid, ["cat", path])
            got = api.exec_start(ex["Id"])
            if got != want:
                raise cb.BenchError(f"{h.name}: {path} in {cid[:12]} holds {len(got)} bytes, not the expected {len(want)}")


def warm_up(orch: cb.Orchestrator, engines: cb.Engines) -> None:
    """One small service with the files, created and removed before anything
    is timed: the first service of a new cluster pays for first uses (the
    secrets tmpfs on each node, the engines' caches) whichever kind it is."""
    timed(orch, "sk-warm", True, replicas=len(engines.hosts))
    orch.remove("sk-warm")
    engines.wait_empty(cb.T_REMOVE)


def one_round(orch: cb.Orchestrator, engines: cb.Engines, files_first: bool) -> dict[str, float]:
    warm_up(orch, engines)
    out: dict[str, float] = {"loadavg1": round(os.getloadavg()[0], 2)}
    for with_files in (files_first, not files_first):
        name = "sk-files" if with_files else "sk-plain"
        took = timed(orch, name, with_files)
        if with_files:
            check_files(engines, name)
        key = "with_files" if with_files else "plain"
        out[f"{key}_s"] = round(took, 3)
        out[f"{key}_task_s"] = round(task_latency(orch, name), 3)
        orch.remove(name)
        engines.wait_empty(cb.T_REMOVE)
    out["ratio"] = round(out["with_files_s"] / out["plain_s"], 3)
    return out


def _fmt(values: list[float]) -> str:
    return ", ".join(f"{x:.2f}" for x in values) or "—"


def report(res: dict) -> str:
    lines = [
        "| | plain (s) | 2 secrets + 1 config (s) | median plain | median with | ratio of medians | median of round ratios |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in ("swarmlet", "swarm"):
        r = res.get(name, {})
        plain, files, ratios = r.get("plain_s", []), r.get("with_files_s", []), r.get("ratio", [])
        mp = statistics.median(plain) if plain else None
        mf = statistics.median(files) if files else None
        ratio = f"{mf / mp:.2f}" if mp and mf else "—"
        mr = f"{statistics.median(ratios):.2f}" if ratios else "—"
        lines.append(
            f"| {name} | {_fmt(plain)} | {_fmt(files)} | {f'{mp:.2f}' if mp else '—'} | {f'{mf:.2f}' if mf else '—'} "
            f"| {ratio} | {mr} |"
        )
        pt, ft = r.get("plain_task_s", []), r.get("with_files_task_s", [])
        if pt and ft:
            lines.append(
                f"| {name}: per task, created → running (median of the tasks) | {_fmt(pt)} | {_fmt(ft)} "
                f"| {statistics.median(pt):.2f} | {statistics.median(ft):.2f} | {statistics.median(ft) / statistics.median(pt):.2f} | |"
            )
        if r.get("loadavg1"):
            lines.append(f"| {name} load avg (1 min) at each round | {_fmt(r['loadavg1'])} | | | | | |")
        for e in r.get("errors", []):
            lines.append(f"\n{name} error: {e}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5)
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
        name: {
            "plain_s": [],
            "with_files_s": [],
            "plain_task_s": [],
            "with_files_task_s": [],
            "ratio": [],
            "loadavg1": [],
            "errors": [],
        }
        for name in ("swarmlet", "swarm")
    }
    res.update(machine=cb.machine_info(), replicas=REPLICAS)
    tb = Testbed(prefix="sk", subnet_index=61)
    try:
        hosts = tb.up(cb.N_HOSTS, swarmlet=False)
        engines = cb.Engines(tb, hosts)
        makers = [("swarmlet", lambda: cb.Swarmlet(tb, hosts, engines))]
        if not args.skip_swarm:
            makers.append(("swarm", lambda: cb.Swarm(tb, hosts, engines, args.docker_cli)))
        for i in range(args.repeats):
            for name, make in makers:
                orch = make()
                try:
                    orch.form()
                    make_objects(orch)
                    r = one_round(orch, engines, files_first=i % 2 == 1)
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
    text = report(res)
    print(text)
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=2) + "\n")
    sw = res["swarmlet"]
    met = bool(sw["plain_s"]) and statistics.median(sw["with_files_s"]) <= TARGET_RATIO * statistics.median(sw["plain_s"])
    print(f"target (with secrets within {TARGET_RATIO}x of without): {'met' if met else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
