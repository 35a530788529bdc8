"""Findings of issue 14 that need real daemons: a paused daemon keeps its
heartbeats after it resumes; names (of services, networks, secrets) stay
unique when creates race through different managers; a write whose leader
was paused in the middle is retried by the CLI and applied once. h1, h2, h3
are managers, h4 a worker.

Tests run in file order and share the cluster.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import grpc

from swarmlet.api import control_pb2 as cpb
from swarmlet.api import objects_pb2 as pb
from swarmlet.cli import retry
from tests.integration.test_cluster import IMAGE, api, containers, nodes_by_name, ok, tasks
from tests.integration.test_ha import cluster, digests_agree, leader_of, service_names  # noqa: F401  (cluster: fixture)
from tests.waiting import wait_for

# Longer than the default node_down_after (3 s): the node is marked down
# while it is paused, and its session ends (what killed the heartbeat thread).
PAUSE = 5.0


def _pid(host) -> int:
    return int((Path(host.host_dir) / "swarmlet.pid").read_text())


def pause(host, seconds: float) -> None:
    """Freeze the daemon's process (a VM stall, a long GC) for `seconds`."""
    pid = _pid(host)
    os.kill(pid, signal.SIGSTOP)
    try:
        time.sleep(seconds)  # the fault itself lasts this long: not a wait for a condition
    finally:
        os.kill(pid, signal.SIGCONT)


def test_a_paused_worker_stays_ready_after_it_resumes(testbed, cluster):  # noqa: F811
    (h1, h2, h3), h4 = cluster
    ok(
        testbed,
        h1,
        "service",
        "create",
        "--name",
        "pinned",
        "--replicas",
        "2",
        "--constraint",
        "node.hostname==h4",
        IMAGE,
        "sleep",
        "3600",
    )
    # Three pauses: before the fix the heartbeat thread died after 9 of 10.
    for attempt in range(3):
        pause(h4, PAUSE)
        wait_for(lambda: nodes_by_name(h1)["h4"].status.state == pb.NodeStatus.READY, 30, f"h4 ready again ({attempt})")

        def settled() -> list[str]:
            live = [t for t in tasks(h1, "pinned") if t.desired_state == pb.RUNNING and t.status.state == pb.RUNNING]
            return sorted(t.id for t in live) if len(live) == 2 and len(containers(testbed, h4, "pinned")) == 2 else []

        running = wait_for(settled, 60, f"both pinned tasks running on h4 again ({attempt})")
        # Three times the down detection: the node never goes down again, and
        # the tasks running on it are neither orphaned nor replaced.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            node = nodes_by_name(h1)["h4"]
            assert node.status.state == pb.NodeStatus.READY, (
                f"h4 went {pb.NodeStatus.State.Name(node.status.state)}: {node.status.message}"
            )
            time.sleep(0.5)
        now = {t.id: t for t in tasks(h1, "pinned")}
        for tid in running:
            assert tid in now, f"task {tid} was orphaned and replaced after h4 resumed"
            assert now[tid].desired_state == pb.RUNNING and now[tid].status.state == pb.RUNNING, now[tid]
        assert not any(t.status.state == pb.ORPHANED for t in now.values() if t.id in running)
    log = Path(h4.log_path).read_text(errors="replace")
    assert "Exception in thread agent-heartbeat" not in log
    ok(testbed, h1, "service", "rm", "pinned")


def test_concurrent_creates_of_one_name_through_different_managers_give_one(testbed, cluster):  # noqa: F811
    managers, _ = cluster
    stubs = [api(m) for m in managers]
    for kind in ("service", "network", "secret"):
        for round_no in range(8):
            name = f"race-{kind}-{round_no}"
            start = threading.Barrier(len(stubs))
            answers: list[str] = []

            def create(stub, name=name, kind=kind, start=start) -> None:
                start.wait()
                # As the CLI sends it: with a request id, retried while the
                # cluster has no leader (a loaded machine sees elections).
                try:
                    if kind == "service":
                        spec = pb.ServiceSpec(
                            name=name,
                            task=pb.TaskSpec(container=pb.ContainerSpec(image=IMAGE, command=["sleep", "1"])),
                            replicated=pb.ReplicatedService(replicas=0),
                        )
                        retry.call_write(stub.CreateService, cpb.CreateServiceRequest(spec=spec), timeout=30)
                    elif kind == "network":
                        retry.call_write(stub.CreateNetwork, cpb.CreateNetworkRequest(spec=pb.NetworkSpec(name=name)), timeout=30)
                    else:
                        secret = pb.SecretSpec(name=name, data=f"{name}-{id(stub)}".encode())
                        retry.call_write(stub.CreateSecret, cpb.CreateSecretRequest(spec=secret), timeout=30)
                    answers.append("created")
                except retry.WriteFailed as f:
                    e = f.error
                    assert e.code() == grpc.StatusCode.ALREADY_EXISTS, (e.code(), e.details())
                    assert "already exists" in e.details()
                    answers.append("exists")

            threads = [threading.Thread(target=create, args=(s,)) for s in stubs]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
            assert sorted(answers) == ["created", "exists", "exists"], (name, answers)
    digests_agree(managers)
    for m in managers:
        names = service_names(m)
        nets = [n.spec.name for n in api(m).ListNetworks(cpb.ListNetworksRequest(), timeout=30).networks]
        secrets = [x.spec.name for x in api(m).ListSecrets(cpb.ListSecretsRequest(), timeout=30).secrets]
        for round_no in range(8):
            assert names.count(f"race-service-{round_no}") == 1
            assert nets.count(f"race-network-{round_no}") == 1
            assert secrets.count(f"race-secret-{round_no}") == 1
    for round_no in range(8):
        ok(testbed, managers[0], "service", "rm", f"race-service-{round_no}")
        ok(testbed, managers[0], "network", "rm", f"race-network-{round_no}")
        ok(testbed, managers[0], "secret", "rm", f"race-secret-{round_no}")


def test_a_write_through_a_follower_while_the_leader_is_paused_is_applied_once(testbed, cluster):  # noqa: F811
    managers, _ = cluster
    for attempt in range(3):
        lead = wait_for(lambda: leader_of(managers), 30, "a leader")
        follower = next(m for m in managers if m is not lead)
        name = f"through-pause-{attempt}"
        result: dict[str, object] = {}

        def write(follower=follower, name=name, result=result) -> None:
            result["r"] = testbed.cli(
                follower, "service", "create", "--detach", "--name", name, "--replicas", "0", IMAGE, "sleep", "1", timeout=120
            )

        pid = _pid(lead)
        os.kill(pid, signal.SIGSTOP)
        writer = threading.Thread(target=write)
        try:
            writer.start()
            time.sleep(3.0)  # the fault: the leader stays frozen while the write is in flight
        finally:
            os.kill(pid, signal.SIGCONT)
        writer.join(150)
        r = result["r"]
        assert r.returncode == 0, f"{r.stdout}\n{r.stderr}"  # type: ignore[attr-defined]
        digests_agree(managers)
        for m in managers:
            assert service_names(m).count(name) == 1
        ok(testbed, follower, "service", "rm", name)
