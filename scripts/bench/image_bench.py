#!/usr/bin/env python3
"""Image delivery benchmark (issue 9): a registry far away vs swarmlet's peer relay.

    .venv/bin/python scripts/bench/image_bench.py [--size-mb 200] [--layers 4] [--out docs/bench/image.json]

A 4-host testbed (prefix "ib", 198.18.44.0/24) plus the test registry
(Distribution 2.8, htpasswd) in its own namespace. A generated image of
--size-mb of random content in --layers layers is built in h1's engine and
pushed to the registry. Every link that sends the image is limited with tc
to 1 Gbit/s (the registry's in (a), every node's in (b)).

(a) every receiving node (h2, h3, h4) pulls it from the registry at once:
    what Docker Swarm does (each node pulls on its own);
(1) one node alone pulls it: a single transfer over the same link;
(b) `swarmlet image push` from h1: the nodes relay along a chain.

Targets: (b) <= 1.3 x (1) and (b) <= 0.5 x (a). Also: time from `service
create` to the task RUNNING with the image absent on its node (fetched: from
a peer that holds it, as swarmlet tries peers first, on unshaped links) and
present.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tarfile
import threading
import time
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR.parent))
sys.path.insert(0, str(BENCH_DIR.parent.parent))

from testbed import Testbed  # noqa: E402

USER, PASSWORD = "bench", "bench-password"
RATE = "1gbit"  # the link; --rate for another
AUTH = {"username": USER, "password": PASSWORD}


def log(msg: str) -> None:
    print(f"[image_bench] {msg}", file=sys.stderr, flush=True)


def build_image(tb: Testbed, tag: str, size_mb: int, layers: int) -> str:
    per = max(1, size_mb // layers)
    lines = "\n".join(f"RUN dd if=/dev/urandom of=/blob{i} bs=1M count={per} 2>/dev/null" for i in range(layers))
    dockerfile = f"FROM swarmlet-test:busybox\n{lines}\n".encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo("Dockerfile")
        info.size = len(dockerfile)
        tar.addfile(info, io.BytesIO(dockerfile))
    buf.seek(0)
    image, _ = tb.docker(1).images.build(fileobj=buf, custom_context=True, tag=tag, rm=True, pull=False)
    return str(image.id)


def drop_image(tb: Testbed, hosts: list[int], image_id: str) -> None:
    for h in hosts:
        try:
            tb.docker(h).images.remove(image_id, force=True)
        except Exception:  # not there
            pass


def timed_parallel(fns: list[Any]) -> float:
    errors: list[BaseException] = []

    def run(fn: Any) -> None:
        try:
            fn()
        except BaseException as e:
            errors.append(e)

    t0 = time.monotonic()
    threads = [threading.Thread(target=run, args=(fn,)) for fn in fns]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return time.monotonic() - t0


def pull(tb: Testbed, h: int, repo: str, tag: str) -> None:
    for line in tb.docker(h).api.pull(repo, tag, stream=True, decode=True, auth_config=AUTH):
        if "error" in line:
            raise RuntimeError(line["error"])


def cli(tb: Testbed, *args: str) -> str:
    r = tb.cli(1, *args, timeout=900)
    if r.returncode != 0:
        raise RuntimeError(f"swarmlet {' '.join(args)}: {r.stderr}")
    return r.stdout


def running_within(tb: Testbed, name: str, timeout: float = 600) -> float:
    import grpc

    from swarmlet.api import control_pb2 as cpb
    from swarmlet.api import control_pb2_grpc
    from swarmlet.api import objects_pb2 as pb

    stub = control_pb2_grpc.ControlStub(grpc.insecure_channel(f"unix://{tb.host(1).swarmlet_sock}"))
    t0 = time.monotonic()
    cli(tb, "service", "create", "-d", "--name", name, "--constraint", "node.hostname==h2", "--with-registry-auth", IMAGE_REF[0])
    while time.monotonic() - t0 < timeout:
        ts = stub.ListTasks(cpb.ListTasksRequest(service_ref=name)).tasks
        if any(t.status.state == pb.RUNNING for t in ts):
            return time.monotonic() - t0
        time.sleep(0.05)
    raise RuntimeError(f"{name} not running within {timeout}s")


IMAGE_REF = [""]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size-mb", type=int, default=200)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", default="")
    ap.add_argument(
        "--rate", default=RATE, help="tc rate of every sending link (e.g. 100mbit: a link, not the CPU, the bottleneck)"
    )
    args = ap.parse_args()
    rate = args.rate
    tb = Testbed(prefix="ib", subnet_index=44)
    results: dict[str, Any] = {"size_mb": args.size_mb, "layers": args.layers, "rate": rate, "runs": []}
    try:
        log("testbed up (4 hosts) + registry")
        tb.up(4, swarmlet=True)
        reg = tb.start_registry(USER, PASSWORD)
        ref = f"{reg}/bench:1"
        IMAGE_REF[0] = ref
        repo, tag = ref.rsplit(":", 1)
        log(f"building {args.size_mb} MB in {args.layers} layers")
        image_id = build_image(tb, ref, args.size_mb, args.layers)
        log("pushing to the registry")
        for line in tb.docker(1).api.push(repo, tag, stream=True, decode=True, auth_config=AUTH):
            if "error" in line:
                raise RuntimeError(line["error"])
        size = tb.docker(1).images.get(image_id).attrs["Size"]
        results["image_bytes"] = size
        docker_cfg = Path(tb.base) / "docker-config"
        docker_cfg.mkdir(exist_ok=True)
        import base64

        (docker_cfg / "config.json").write_text(
            json.dumps({"auths": {reg: {"auth": base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()}}})
        )
        # The CLI reads --with-registry-auth's credentials from here (tb.cli
        # passes this process's environment on); without it the service is
        # created with no credentials and the private image is never pulled.
        os.environ["DOCKER_CONFIG"] = str(docker_cfg)
        cli(tb, "init", "--advertise-addr", tb.host(1).ip)
        token = cli(tb, "join-token", "worker", "-q").strip()
        for h in (2, 3, 4):
            r = tb.cli(h, "join", "--token", token, f"{tb.host(1).ip}:4242", timeout=120)
            if r.returncode != 0:
                raise RuntimeError(r.stderr)
        receivers = [2, 3, 4]
        for rep in range(args.repeats):
            run: dict[str, float] = {}
            tb.shape(tb.registry_netns, rate)
            drop_image(tb, receivers, image_id)
            run["single_registry_pull_s"] = timed_parallel([lambda: pull(tb, 2, repo, tag)])
            drop_image(tb, receivers, image_id)
            run["registry_pull_3_nodes_s"] = timed_parallel([lambda h=h: pull(tb, h, repo, tag) for h in receivers])
            tb.unshape(tb.registry_netns)
            drop_image(tb, receivers, image_id)
            time.sleep(6)  # let the nodes report that they no longer hold it
            for h in (1, *receivers):
                tb.shape(tb.host(h).netns, rate)
            t0 = time.monotonic()
            out = cli(tb, "image", "push", "-q", ref)
            run["swarmlet_relay_3_nodes_s"] = time.monotonic() - t0
            for h in (1, *receivers):
                tb.unshape(tb.host(h).netns)
            for h in receivers:
                if not any(i.id == image_id for i in tb.docker(h).images.list()):
                    raise RuntimeError(f"h{h} lacks the image after push: {out}")
            # Time to first RUNNING: absent (fetched, from a peer first) vs present.
            drop_image(tb, [2], image_id)
            time.sleep(6)
            run["first_running_absent_s"] = running_within(tb, f"absent{rep}")
            cli(tb, "service", "rm", f"absent{rep}")
            time.sleep(2)
            run["first_running_present_s"] = running_within(tb, f"present{rep}")
            cli(tb, "service", "rm", f"present{rep}")
            run = {k: round(v, 2) for k, v in run.items()}
            log(f"run {rep + 1}: {run}")
            results["runs"].append(run)
        keys = results["runs"][0].keys()
        med = {k: round(sorted(r[k] for r in results["runs"])[len(results["runs"]) // 2], 2) for k in keys}
        results["median"] = med
        results["relay_vs_single"] = round(med["swarmlet_relay_3_nodes_s"] / med["single_registry_pull_s"], 2)
        results["relay_vs_registry"] = round(med["swarmlet_relay_3_nodes_s"] / med["registry_pull_3_nodes_s"], 2)
    finally:
        log("testbed down")
        tb.down()
    print(json.dumps(results, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
