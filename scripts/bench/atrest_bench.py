"""What encryption at rest costs the Raft store (issue 13): three real stores
on loopback, writes through the leader, each batch one task carrying SIZE
bytes of environment.

- sequential: one client, `--seq` writes one after the other; median latency;
- pipelined: 8 clients, `--writes` writes in all; writes per second.

Run it in each tree to compare (it adapts to the Store signature of a tree
from before encryption at rest):

    .venv/bin/python scripts/bench/atrest_bench.py --runs 3 --out /tmp/after.json
    (cd ../main && .venv/bin/python ../wt-13b/scripts/bench/atrest_bench.py --runs 3 --out /tmp/before.json)

It also times the cipher alone (AES-256-GCM of one record) for scale.
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import json
import os
import socket
import statistics
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.getcwd())

from swarmlet.api import objects_pb2 as pb  # noqa: E402
from swarmlet.core import state as st  # noqa: E402
from swarmlet.manager.store import Store  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_store(addr: str, partners: list[str], state_dir: str) -> Store:
    kwargs = {}
    if "data_key" in inspect.signature(Store.__init__).parameters:
        from swarmlet.atrest import DataKey

        # Each manager its own data key, as in a real cluster.
        kwargs["data_key"] = DataKey(hashlib.sha256(state_dir.encode()).digest())
    return Store(addr, partners, state_dir, b"s" * 32, **kwargs)


def task(i: int, size: int) -> pb.Task:
    t = pb.Task(id=f"t{i}", service_id="s", desired_state=pb.RUNNING)
    t.spec.container.env.append("K=" + "v" * size)
    return t


def one_run(writes: int, seq: int, size: int) -> dict[str, float]:
    tmp = tempfile.mkdtemp(prefix="atrest-bench-")
    addrs = [f"127.0.0.1:{free_port()}" for _ in range(3)]
    stores = [make_store(a, [p for p in addrs if p != a], os.path.join(tmp, a.replace(":", "_"))) for a in addrs]
    try:
        deadline = time.monotonic() + 30
        leader = None
        while leader is None and time.monotonic() < deadline:
            leader = next((s for s in stores if s.is_leader()), None)
            time.sleep(0.05)
        assert leader is not None, "no leader"
        lat = []
        for i in range(seq):
            t0 = time.perf_counter()
            leader.propose([st.put(task(i, size), create=True)], timeout=10)
            lat.append(time.perf_counter() - t0)
        counter = iter(range(seq, seq + writes))
        lock = threading.Lock()

        def client() -> None:
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                leader.propose([st.put(task(i, size), create=True)], timeout=30)

        t0 = time.perf_counter()
        threads = [threading.Thread(target=client) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - t0
        return {"seq_median_ms": statistics.median(lat) * 1000, "pipelined_per_s": writes / elapsed}
    finally:
        for s in stores:
            s.close()


def cipher_cost(size: int, n: int = 20000) -> float | None:
    try:
        from swarmlet.atrest import DataKey
    except ImportError:
        return None
    k = DataKey(b"c" * 32)
    data = b"x" * size
    t0 = time.perf_counter()
    for _ in range(n):
        k.encrypt(data, b"aad")
    return (time.perf_counter() - t0) / n * 1e6


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--writes", type=int, default=2000)
    ap.add_argument("--seq", type=int, default=100)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    runs = [one_run(args.writes, args.seq, args.size) for _ in range(args.runs)]
    result = {
        "tree": os.getcwd(),
        "size": args.size,
        "runs": runs,
        "seq_median_ms": statistics.median(r["seq_median_ms"] for r in runs),
        "pipelined_per_s": statistics.median(r["pipelined_per_s"] for r in runs),
        "encrypt_us_per_record": cipher_cost(args.size),
        "loadavg": open("/proc/loadavg").read().split()[:3],
    }
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
