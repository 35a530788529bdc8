"""Image transfer metrics (issue 16) recorded where the transfers happen: a
registry pull through the node's ImageStore on the fake engine, and a peer
transfer between two ImageStores over real gRPC and mutual TLS (the serving
side is the node's AgentServicer, so ExportImage counts what it sends).

The instruments are process-wide (swarmlet.metrics.REGISTRY): each test
compares values before and after what it does."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import pytest
from prometheus_client import generate_latest

from swarmlet import metrics, tls
from swarmlet.agent import images
from swarmlet.agent.api import AgentServicer
from swarmlet.agent.images import ImageStore, ImageUnavailable
from swarmlet.agent.runtime.fake import FakeRuntime, image_id_of
from swarmlet.aioserver import AioServer
from swarmlet.api import agent_pb2, agent_pb2_grpc
from swarmlet.api import dispatcher_pb2 as dpb
from swarmlet.api import objects_pb2 as pb
from swarmlet.ids import new_id
from swarmlet.manager import ca

APP = "app:1"
# The fake engine's `docker save` of APP: its header, then 1000 bytes.
APP_ARCHIVE_BYTES = len(f"FAKE-IMAGE\n{APP}\n".encode()) + 1000


def value(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


def fetches(source: str, outcome: str) -> float:
    return value("swarmlet_agent_image_fetches_total", source=source, outcome=outcome)


def task(image: str, service_id: str = "s1") -> pb.Task:
    t = pb.Task(id=new_id(), service_id=service_id, service_name="web", slot=1, desired_state=pb.RUNNING)
    t.spec.container.image = image
    return t


def no_progress(cur: int, total: int, source: str) -> None:
    del cur, total, source


def test_every_series_exists_at_zero_before_any_fetch() -> None:
    # Dashboards and rate() see a node's first fetch, not a series appearing.
    text = generate_latest(metrics.REGISTRY).decode()
    for source in ("peer", "registry"):
        for outcome in ("ok", "failed"):
            assert f'swarmlet_agent_image_fetches_total{{outcome="{outcome}",source="{source}"}}' in text
        assert f'swarmlet_agent_image_received_bytes_total{{source="{source}"}}' in text
        assert f'swarmlet_agent_image_fetches_in_progress{{source="{source}"}}' in text
        assert f'swarmlet_agent_image_fetch_seconds_count{{source="{source}"}}' in text
    assert "swarmlet_agent_image_served_bytes_total " in text


def test_a_registry_pull_is_counted_with_its_bytes_and_time() -> None:
    engine = FakeRuntime()
    engine.add_to_registry(APP)
    store = ImageStore(engine)
    ok, failed = fetches("registry", "ok"), fetches("registry", "failed")
    received = value("swarmlet_agent_image_received_bytes_total", source="registry")
    timed = value("swarmlet_agent_image_fetch_seconds_count", source="registry")
    during: list[float] = []

    def progress(cur: int, total: int, source: str) -> None:
        during.append(value("swarmlet_agent_image_fetches_in_progress", source="registry"))

    image = store.fetch(task(APP), progress)
    assert image.id == image_id_of(APP)
    assert fetches("registry", "ok") == ok + 1
    assert fetches("registry", "failed") == failed
    # The fake engine reports 50 then 100 of 100 bytes: the counter follows
    # the pull's running total, not the sum of its reports.
    assert value("swarmlet_agent_image_received_bytes_total", source="registry") == received + 100
    assert value("swarmlet_agent_image_fetch_seconds_count", source="registry") == timed + 1
    assert during and all(v >= 1 for v in during)
    assert value("swarmlet_agent_image_fetches_in_progress", source="registry") == 0


def test_a_refused_pull_counts_as_failed_and_is_not_timed() -> None:
    engine = FakeRuntime()
    store = ImageStore(engine)
    failed = fetches("registry", "failed")
    timed = value("swarmlet_agent_image_fetch_seconds_count", source="registry")
    with pytest.raises(ImageUnavailable):
        store.fetch(task("absent:1"), no_progress)
    assert fetches("registry", "failed") == failed + 1
    assert value("swarmlet_agent_image_fetch_seconds_count", source="registry") == timed
    assert value("swarmlet_agent_image_fetches_in_progress", source="registry") == 0


def test_no_image_name_or_credential_reaches_the_metrics() -> None:
    # A private image pulled with the service's credentials: the exposition
    # names neither the image nor the registry, and never the password.
    ref, password = "reg.example:5000/private-app:7", "Pw-metrics-7c1d"
    engine = FakeRuntime()
    engine.add_to_registry(ref, credentials=("ki", password))
    store = ImageStore(engine)
    auth = pb.RegistryAuth(username="ki", password=password)
    store.hints([], [dpb.ServiceRegistryAuth(service_id="s9", auth=auth)])
    store.fetch(task(ref, service_id="s9"), no_progress)
    text = generate_latest(metrics.REGISTRY).decode()
    assert password not in text and "private-app" not in text and "reg.example" not in text


@dataclass
class Peers:
    """Two nodes: `source` serves its images on the Agent API, `receiver` fetches from it."""

    source: FakeRuntime
    addr: str
    receiver: FakeRuntime
    store: ImageStore


class _NoLogs:
    def logs(
        self, container_ids: list[str], follow: bool, tail: int, timestamps: bool, since: float = 0.0, until: float = 0.0
    ) -> Iterator[agent_pb2.LogLine]:
        return iter(())


@pytest.fixture
def peers() -> Iterator[Peers]:
    root = ca.create_root_ca()

    def creds() -> tls.NodeCredentials:
        key_pem, cert_pem = ca.issue_local_certificate(root, new_id(), "worker", "cluster1", "127.0.0.1")
        return tls.NodeCredentials.from_pems(key_pem, cert_pem, root.cert_pem)

    source_creds, receiver_creds = creds(), creds()
    source = FakeRuntime(hostname="src", images={APP: ()})
    # The node's own server: grpc.aio, the servicer's calls are coroutines.
    server = AioServer(tls.SERVER_OPTIONS, [tls.ClientCertRequired()])
    servicer = AgentServicer(_NoLogs(), ImageStore(source))
    server.call(lambda: agent_pb2_grpc.add_AgentServicer_to_server(servicer, server.server))
    port = server.add_port("127.0.0.1:0", source_creds.server_credentials(require_client_auth=True))
    server.start()
    channels: list[grpc.Channel] = []

    def channel(addr: str) -> grpc.Channel:
        ch = grpc.secure_channel(addr, receiver_creds.channel_credentials(), options=tls.CHANNEL_OPTIONS)
        channels.append(ch)
        return ch

    receiver = FakeRuntime(hostname="dst")
    try:
        yield Peers(source, f"127.0.0.1:{port}", receiver, ImageStore(receiver, channel))
    finally:
        for ch in channels:
            ch.close()
        server.stop(None)


def test_a_peer_transfer_counts_on_both_sides(peers: Peers) -> None:
    image_id = image_id_of(APP)
    ok, failed = fetches("peer", "ok"), fetches("peer", "failed")
    received = value("swarmlet_agent_image_received_bytes_total", source="peer")
    served = value("swarmlet_agent_image_served_bytes_total")
    timed = value("swarmlet_agent_image_fetch_seconds_count", source="peer")
    during: list[float] = []

    def progress(cur: int, total: int, source: str) -> None:
        during.append(value("swarmlet_agent_image_fetches_in_progress", source="peer"))

    assert peers.store.fetch_from(image_id, [peers.addr], progress) == peers.addr
    assert peers.receiver.image(image_id) is not None
    assert fetches("peer", "ok") == ok + 1
    assert fetches("peer", "failed") == failed
    # Both ends in one process here: what one received, the other served.
    assert value("swarmlet_agent_image_received_bytes_total", source="peer") == received + APP_ARCHIVE_BYTES
    assert value("swarmlet_agent_image_served_bytes_total") == served + APP_ARCHIVE_BYTES
    assert value("swarmlet_agent_image_fetch_seconds_count", source="peer") == timed + 1
    assert during and all(v >= 1 for v in during)
    assert value("swarmlet_agent_image_fetches_in_progress", source="peer") == 0
    # Held already: nothing is fetched, nothing counted.
    assert peers.store.fetch_from(image_id, [peers.addr], no_progress) == ""
    assert fetches("peer", "ok") == ok + 1


def test_a_peer_without_the_image_is_a_failed_fetch(peers: Peers, monkeypatch: pytest.MonkeyPatch) -> None:
    # The peer waits this long for a transfer of it to start there (a relay)
    # before it answers NotFound: shortened, the answer is the same.
    monkeypatch.setattr(images, "RELAY_WAIT", 0.2)
    failed = fetches("peer", "failed")
    received = value("swarmlet_agent_image_received_bytes_total", source="peer")
    with pytest.raises(ImageUnavailable):
        peers.store.fetch_from(image_id_of("other:1"), [peers.addr], no_progress)
    assert fetches("peer", "failed") == failed + 1
    assert value("swarmlet_agent_image_received_bytes_total", source="peer") == received
    assert value("swarmlet_agent_image_fetches_in_progress", source="peer") == 0
