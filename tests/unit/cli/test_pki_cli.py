"""`cluster inspect`, `cluster update`, `ca` and the certificate lines of
`node inspect` / `info`, end to end against a fake Control service."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from typer.testing import CliRunner

from swarmlet.api import control_pb2 as cpb
from swarmlet.api import control_pb2_grpc
from swarmlet.api import objects_pb2 as pb
from swarmlet.cli.main import app
from swarmlet.cli.swarm import format_info

runner = CliRunner()
OLD_PEM = b"-----BEGIN CERTIFICATE-----\nOLD\n-----END CERTIFICATE-----\n"
NEW_PEM = b"-----BEGIN CERTIFICATE-----\nNEW\n-----END CERTIFICATE-----\n"


class FakeControl(control_pb2_grpc.ControlServicer):  # type: ignore[misc]
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.updates: list[cpb.UpdateClusterRequest] = []
        self.cluster = pb.Cluster(
            id="c1",
            spec=pb.ClusterSpec(heartbeat_period=0.5, node_down_after=3, task_history_limit=5),
            root_ca=pb.RootCA(cert_pem=OLD_PEM, digest="a" * 64, key_id="k1"),
        )
        self.cluster.meta.version = 7
        self.status = cpb.RootCAStatus(cert_pem=OLD_PEM, digest="a" * 64, nodes=3, nodes_renewed=3)
        self.polls = 0

    def GetCluster(self, request: cpb.GetClusterRequest, context: grpc.ServicerContext) -> cpb.ClusterResponse:
        return cpb.ClusterResponse(cluster=self.cluster)

    def UpdateCluster(self, request: cpb.UpdateClusterRequest, context: grpc.ServicerContext) -> cpb.ClusterResponse:
        self.updates.append(request)
        if request.spec.node_cert_expiry and request.spec.node_cert_expiry < 3600:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "--cert-expiry must be between 1h and 3650d, not 30s")
        self.cluster.spec.CopyFrom(request.spec)
        return cpb.ClusterResponse(cluster=self.cluster)

    def GetRootCA(self, request: cpb.GetRootCARequest, context: grpc.ServicerContext) -> cpb.RootCAStatus:
        with self.lock:
            self.polls += 1
            s = self.status
            if s.rotating and self.polls >= 3:
                # every node renewed: the rotation completes
                self.status = cpb.RootCAStatus(cert_pem=NEW_PEM, digest="b" * 64, nodes=3, nodes_renewed=3)
            elif s.rotating and self.polls == 2:
                s.nodes_renewed = 2
                del s.pending[1:]
            return s

    def RotateRootCA(self, request: cpb.RotateRootCARequest, context: grpc.ServicerContext) -> cpb.RootCAStatus:
        with self.lock:
            self.polls = 0
            self.status = cpb.RootCAStatus(
                cert_pem=OLD_PEM,
                digest="a" * 64,
                rotating=True,
                new_cert_pem=NEW_PEM,
                new_digest="b" * 64,
                nodes=3,
                nodes_renewed=1,
                pending=[
                    cpb.RootCANodeProgress(node_id="n2", hostname="h2", state="ready"),
                    cpb.RootCANodeProgress(node_id="n3", hostname="h3", state="down"),
                ],
            )
            return self.status


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[tuple[FakeControl, str]]:
    servicer = FakeControl()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    control_pb2_grpc.add_ControlServicer_to_server(servicer, server)
    host = f"unix://{tmp_path}/swarmlet.sock"
    server.add_insecure_port(host)
    server.start()
    try:
        yield servicer, host
    finally:
        server.stop(None)


def run(host: str, *args: str):  # noqa: ANN201 - typer's Result
    return runner.invoke(app, ["-H", host, *args])


def test_cluster_update_sends_the_whole_spec_read_at_its_version(fake: tuple[FakeControl, str]) -> None:
    servicer, host = fake
    r = run(host, "cluster", "update", "--cert-expiry", "48h", "--dispatcher-heartbeat", "1s", "--task-history-limit", "10")
    assert r.exit_code == 0, r.output
    assert r.output.strip() == "Swarm updated."
    (req,) = servicer.updates
    assert req.version == 7
    assert (req.spec.node_cert_expiry, req.spec.heartbeat_period, req.spec.task_history_limit) == (172800, 1.0, 10)
    assert req.spec.node_down_after == 3  # untouched settings are sent as they were


def test_cluster_update_refuses_bad_flags_before_sending(fake: tuple[FakeControl, str]) -> None:
    servicer, host = fake
    r = run(host, "cluster", "update")
    assert r.exit_code == 2 and "nothing to update" in r.output
    r = run(host, "cluster", "update", "--node-down-after", "soon")
    assert r.exit_code == 2 and "--node-down-after" in r.output
    assert servicer.updates == []
    r = run(host, "cluster", "update", "--cert-expiry", "30s")  # refused by the manager, said as is
    assert r.exit_code == 1 and "--cert-expiry must be between 1h and 3650d, not 30s" in r.output


def test_cluster_inspect_shows_pem_text_and_a_pretty_form(fake: tuple[FakeControl, str]) -> None:
    servicer, host = fake
    servicer.cluster.spec.node_cert_expiry = 172800
    r = run(host, "cluster", "inspect")
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert data["root_ca"]["cert_pem"] == OLD_PEM.decode() and data["spec"]["node_cert_expiry"] == 172800
    r = run(host, "cluster", "inspect", "--pretty")
    assert "Expiry Duration:" in r.output and "48h" in r.output
    assert "Heartbeat Period:" in r.output and "500ms" in r.output
    lines = {line.split(":", 1)[0].strip(): line.split(":", 1)[1].strip() for line in r.output.splitlines() if ":" in line}
    assert lines["Root Rotation In Progress"] == "no" and lines["Expiry Duration"] == "48h"


def test_ca_prints_the_current_root(fake: tuple[FakeControl, str]) -> None:
    _, host = fake
    r = run(host, "ca")
    assert r.exit_code == 0 and r.stdout.strip() == OLD_PEM.decode().strip()
    data = json.loads(run(host, "ca", "--format", "json").stdout)
    assert data["cert_pem"] == OLD_PEM.decode() and data["rotating"] is False


def test_ca_rotate_follows_the_rotation_until_every_node_renewed(fake: tuple[FakeControl, str]) -> None:
    _, host = fake
    started = time.monotonic()
    r = run(host, "ca", "--rotate")
    assert r.exit_code == 0, r.output
    assert r.stdout.strip() == NEW_PEM.decode().strip()  # the new root, once the old one is gone
    progress = r.stderr
    assert "1/3 nodes hold a certificate from the new root; waiting for h2 (ready), h3 (down)" in progress
    assert "2/3 nodes" in progress and "root CA rotated" in progress
    assert time.monotonic() - started < 10


def test_ca_rotate_detach_returns_at_once(fake: tuple[FakeControl, str]) -> None:
    servicer, host = fake
    r = run(host, "ca", "--rotate", "--detach")
    assert r.exit_code == 0 and "rotation started" in r.stderr
    assert servicer.polls == 0
    assert "1/3 nodes" in r.stderr  # `ca` shows how far it is


def test_info_shows_the_certificate_and_its_trouble() -> None:
    out = format_info(
        cpb.InfoResponse(state="active", node_id="n1", role="worker", cert_not_after=1e9, cert_warning="it expired")
    )
    assert " Certificate Expiry: 2001-09-09T01:46:40Z" in out and " Certificate Warning: it expired" in out


def test_node_inspect_pretty_shows_the_certificate_expiry() -> None:
    from swarmlet.cli.output import format_node_pretty

    node = pb.Node(id="n1", description=pb.NodeDescription(hostname="h1"))
    node.certificate.CopyFrom(pb.NodeCertificate(serial="ab12", not_after=1e9 + 86400 * 3, issuer_key_id="k1"))
    out = format_node_pretty(node, now=1e9)
    assert "Certificate Expiry:" in out and "2001-09-12T01:46:40Z (in 3 days)" in out
    assert "Certificate Serial:" in out and "ab12" in out
    expired = format_node_pretty(node, now=1e9 + 86400 * 4)
    assert "(expired 24 hours ago)" in expired
