"""The Engine API server over one real manager store (pysyncobj on
loopback), driven by docker-py as a client: routes, filters, docker's error
shape and status codes, the one write path (what docker-py creates is what
the control API holds). No dockerd: nothing here runs a container."""

from __future__ import annotations

import base64
import http.client
import json
import os
import socket
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import docker.errors
import grpc
import pytest
import requests

from swarmlet import errors
from swarmlet.agent.runtime.fake import FAKE_MANIFEST_SIZE, FAKE_MANIFEST_TYPE, FakeRuntime
from swarmlet.agent.runtime.interface import EngineRefused
from swarmlet.api import control_pb2 as cpb
from swarmlet.api import events_pb2 as epb
from swarmlet.api import objects_pb2 as pb
from swarmlet.engineapi import serve
from swarmlet.engineapi.server import EngineAPIServer, registry_auth
from swarmlet.manager.control.api import ControlAPI
from tests.unit.manager import helpers as h

WORKER = "worker1000000000000000000"


class FakeNode:
    """The daemon as the Engine API sees it: this manager's info and control."""

    def __init__(self, control: ControlAPI | None, cluster_id: str) -> None:
        self.control = control
        self.cluster_id = cluster_id

    def info(self) -> cpb.InfoResponse:
        return cpb.InfoResponse(
            state="active", node_id=h.MANAGER_ID, role="manager", cluster_id=self.cluster_id, addr="127.0.0.1"
        )

    def events(self, request: epb.EventsRequest, context: object) -> Iterator[epb.Event]:
        """Two canned events, filtered by type as node/events.py would."""
        self.asked = request
        types = [v for f in request.filters if f.key == "type" for v in f.values]
        for e in (
            epb.Event(type="service", action="create", id="s1", name="web", time=1_700_000_000.25),
            epb.Event(
                type="node", action="update", id="n1", name="h1", time=1_700_000_001.0, attributes={"availability.new": "drain"}
            ),
        ):
            if not types or e.type in types:
                yield e

    def manager_control(self) -> ControlAPI:
        if self.control is None:
            raise errors.FailedPrecondition("This node is not a swarm manager.")
        return self.control


def _no_agents(addr: str) -> grpc.Channel:
    raise AssertionError(f"no agent here ({addr})")


@pytest.fixture
def api(tmp_path: Path) -> Iterator[tuple[docker.DockerClient, ControlAPI, str]]:
    yield from _served(tmp_path, None)


@pytest.fixture
def registry_api(tmp_path: Path) -> Iterator[tuple[docker.DockerClient, ControlAPI, str, FakeRuntime]]:
    """The manager's engine is a fake one with a fake registry behind it:
    the seam pinning (issue 9) asks through."""
    engine = FakeRuntime()
    for client, control, sock in _served(tmp_path, engine):
        yield client, control, sock, engine


def _served(tmp_path: Path, engine: FakeRuntime | None) -> Iterator[tuple[docker.DockerClient, ControlAPI, str]]:
    store = h.leader_store(tmp_path / "raft")
    cluster = h.new_cluster()
    h.seed(store, cluster, h.manager_node(store.self_addr, "127.0.0.1:4244"), h.worker_node(WORKER, "worker-1"))
    control = ControlAPI(store, _no_agents, engine)
    sock = str(tmp_path / "docker.sock")
    server: EngineAPIServer = serve(sock, FakeNode(control, cluster.id))
    client = docker.DockerClient(base_url=f"unix://{sock}", version="1.41", timeout=10)
    try:
        yield client, control, sock
    finally:
        client.close()
        server.stop()
        store.close()


def test_socket_is_root_only_and_ping_speaks_141(api):
    client, _, sock = api
    assert stat.S_IMODE(os.stat(sock).st_mode) == 0o600
    assert client.ping() is True
    assert client.version()["ApiVersion"] == "1.41"
    info = client.info()
    assert info["Swarm"]["LocalNodeState"] == "active" and info["Swarm"]["ControlAvailable"] is True
    assert info["Swarm"]["NodeID"] == h.MANAGER_ID and info["Swarm"]["Cluster"]["ID"]


def test_head_ping_answers_like_get_without_a_body(api):
    """docker's Go client pings with HEAD first (it falls back to GET on any
    status but 200 and 500, so a 501 would pass unnoticed in the docker CLI's
    tests): HEAD must answer 200 with docker's headers and no body, on the
    plain and on the versioned path."""
    _, _, sock = api
    for path in ("/_ping", "/v1.41/_ping"):
        r = _raw(sock, "HEAD", path)
        assert r["status"] == 200, (path, r)
        hdrs = r["headers"]
        assert hdrs["API-Version"] == "1.41" and hdrs["OSType"] == "linux", hdrs
        assert hdrs["Docker-Experimental"] == "false" and hdrs["Swarm"] == "active/manager", hdrs
        assert hdrs["Cache-Control"] == "no-cache, no-store, must-revalidate" and hdrs["Pragma"] == "no-cache", hdrs
        assert r["body"] == b""
    got = _raw(sock, "GET", "/_ping")
    assert got["status"] == 200 and got["body"] == b"OK" and got["headers"]["Swarm"] == "active/manager"


def test_swarm_inspect_and_registry_auth_header(api):
    client, control, sock = api
    attrs = _request(sock, "GET", "/v1.41/swarm", None)["body"]
    cluster = control.pki.get_cluster(cpb.GetClusterRequest()).cluster
    assert attrs["ID"] == cluster.id and attrs["JoinTokens"]["Worker"].startswith("SWLTKN-")
    assert attrs["JoinTokens"]["Worker"] != attrs["JoinTokens"]["Manager"]
    assert _request(sock, "POST", "/swarm/leave", None)["status"] == 501
    auth = registry_auth(
        base64.urlsafe_b64encode(b'{"username":"u","password":"p","serveraddress":"reg:5000"}').decode().rstrip("=")
    )
    assert (auth.username, auth.password, auth.server_address) == ("u", "p", "reg:5000")
    with pytest.raises(errors.Invalid, match="X-Registry-Auth"):
        registry_auth("!!!")


def test_nodes_list_filter_and_inspect(api):
    client, _, _ = api
    nodes = client.nodes.list()
    assert {n.attrs["Description"]["Hostname"] for n in nodes} == {"manager-1", "worker-1"}
    workers = client.nodes.list(filters={"role": "worker"})
    assert [n.id for n in workers] == [WORKER]
    assert client.nodes.get("worker-1").attrs["Spec"]["Role"] == "worker"
    manager = client.nodes.list(filters={"role": "manager"})[0]
    assert manager.attrs["ManagerStatus"]["Leader"] is True


def test_service_create_goes_through_the_control_api(api):
    client, control, _ = api
    svc = client.services.create(
        "busybox:latest",
        command=["sleep", "60"],
        name="web",
        env=["A=1"],
        labels={"tier": "front"},
        mode=docker.types.ServiceMode("replicated", replicas=3),
    )
    held = control.services.get(cpb.GetServiceRequest(ref="web")).service
    assert held.id == svc.id and held.spec.replicated.replicas == 3
    assert list(held.spec.task.container.command) == ["sleep", "60"] and list(held.spec.task.container.env) == ["A=1"]
    spec = client.services.get(svc.id).attrs["Spec"]
    assert spec["Name"] == "web" and spec["Mode"] == {"Replicated": {"Replicas": 3}}
    assert spec["TaskTemplate"]["ContainerSpec"]["Image"] == "busybox:latest"
    assert [s.name for s in client.services.list(filters={"label": "tier=front"})] == ["web"]
    assert client.services.list(filters={"name": "nope"}) == []
    with pytest.raises(docker.errors.APIError) as e:
        client.services.create("busybox:latest", name="web")
    assert e.value.status_code == 409 and "already exists" in e.value.explanation


def test_update_with_version_and_stale_version(api):
    client, control, _ = api
    svc = client.services.create("busybox:latest", name="app")
    svc.reload()
    svc.update(image="busybox:1.36")
    held = control.services.get(cpb.GetServiceRequest(ref="app")).service
    assert held.spec.task.container.image == "busybox:1.36" and held.spec_version == 2
    # The version it was read at is stale now: docker's optimistic concurrency.
    r = requests.Session()
    stale = svc.attrs["Version"]["Index"]
    spec = client.services.get("app").attrs["Spec"]
    resp = _post(api[2], f"/v1.41/services/{svc.id}/update?version={stale}", spec)
    assert resp["status"] == 409 and "changed since it was read" in resp["body"]["message"]
    r.close()


def test_unsupported_field_is_refused_and_nothing_changes(api):
    client, control, sock = api
    body = {"Name": "priv", "TaskTemplate": {"ContainerSpec": {"Image": "busybox", "Privileges": {"NoNewPrivileges": True}}}}
    resp = _post(sock, "/v1.41/services/create", body)
    assert resp["status"] == 400
    assert "TaskTemplate.ContainerSpec.Privileges is not supported" in resp["body"]["message"]
    assert not control.services.list(cpb.ListServicesRequest()).services


def test_remove_and_not_found(api):
    client, control, _ = api
    svc = client.services.create("busybox:latest", name="gone")
    svc.remove()
    assert not control.services.list(cpb.ListServicesRequest()).services
    with pytest.raises(docker.errors.NotFound):
        client.services.get("gone")


def test_networks_overlay_only(api):
    client, control, _ = api
    net = client.networks.create("backend", driver="overlay", labels={"a": "b"})
    assert control.networks.get(cpb.GetNetworkRequest(ref="backend")).network.id == net.id
    assert [n.name for n in client.networks.list(names=["backend"])] == ["backend"]
    assert client.networks.get(net.id).attrs["Driver"] == "overlay"
    with pytest.raises(docker.errors.APIError) as e:
        client.networks.create("br", driver="bridge")
    assert e.value.status_code == 400 and "overlay" in e.value.explanation
    net.remove()
    assert not [n for n in control.networks.list(cpb.ListNetworksRequest()).networks if n.spec.name == "backend"]


def test_tasks_filters(api):
    client, control, sock = api
    svc = client.services.create("busybox:latest", name="t", mode=docker.types.ServiceMode("replicated", replicas=2))
    # No leader loop runs here: write the tasks the orchestrator would.
    held = control.services.get(cpb.GetServiceRequest(ref="t")).service
    from swarmlet.core import state as st

    tasks = [
        pb.Task(
            id=f"task{i}0000000000000000000",
            service_id=held.id,
            service_name="t",
            slot=i,
            node_id=WORKER,
            spec=held.spec.task,
            desired_state=pb.RUNNING,
            status=pb.TaskStatus(state=pb.RUNNING),
        )
        for i in (1, 2)
    ]
    control.services._a.propose([st.put(t, create=True) for t in tasks])
    assert len(svc.tasks()) == 2
    assert len(client.api.tasks(filters={"service": "t", "node": "worker-1", "desired-state": "running"})) == 2
    assert client.api.tasks(filters={"desired-state": "shutdown"}) == []
    one = client.api.inspect_task("task1")
    assert one["Slot"] == 1 and one["Status"]["State"] == "running" and one["DesiredState"] == "running"


def test_other_endpoints_answer_in_dockers_shape(api):
    _, _, sock = api
    for method, path, status in (
        ("GET", "/v1.41/containers/json", 501),
        ("POST", "/swarm/init", 501),
        ("GET", "/images/json", 501),
    ):
        resp = _request(sock, method, path, None)
        assert resp["status"] == status and "message" in resp["body"], (path, resp)
    assert "swarm objects only" in _request(sock, "GET", "/containers/json", None)["body"]["message"]


def test_worker_answers_503(tmp_path):
    sock = str(tmp_path / "w.sock")
    server = serve(sock, FakeNode(None, "c"))
    try:
        resp = _request(sock, "GET", "/services", None)
        assert resp["status"] == 503 and "not a swarm manager" in resp["body"]["message"]
    finally:
        server.stop()


def _post(sock: str, path: str, body: object) -> dict:
    return _request(sock, "POST", path, body)


def _unix_conn(sock: str) -> http.client.HTTPConnection:
    """An HTTP connection over the unix socket (docker-py hides status codes
    and headers)."""

    class Conn(http.client.HTTPConnection):
        def connect(self) -> None:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self.sock.connect(sock)

    return Conn("localhost", timeout=10)


def _raw(sock: str, method: str, path: str) -> dict:
    """Status, headers and the raw body of one bodyless request."""
    c = _unix_conn(sock)
    try:
        c.request(method, path)
        r = c.getresponse()
        return {"status": r.status, "headers": dict(r.getheaders()), "body": r.read()}
    finally:
        c.close()


def _request(sock: str, method: str, path: str, body: object | None) -> dict:
    """A raw HTTP request on the unix socket (docker-py hides status codes)."""
    c = _unix_conn(sock)
    try:
        data = json.dumps(body) if body is not None else None
        c.request(method, path, body=data, headers={"Content-Type": "application/json"})
        r = c.getresponse()
        raw = r.read()
        return {"status": r.status, "body": json.loads(raw) if raw else None}
    finally:
        c.close()


def test_secrets_and_configs(api):
    client, control, _ = api
    secret = client.secrets.create(name="pw", data=b"hunter2", labels={"app": "x"})
    assert control.secrets.get(cpb.GetSecretRequest(ref="pw")).secret.id == secret.id
    shown = client.secrets.get(secret.id).attrs
    assert shown["Spec"]["Name"] == "pw" and "Data" not in shown["Spec"]
    assert "hunter2" not in json.dumps(client.api.secrets()) and "aHVudGVyMg" not in json.dumps(client.api.secrets())
    assert [s.name for s in client.secrets.list(filters={"label": "app=x"})] == ["pw"]
    config = client.configs.create(name="conf", data=b"k=v")
    assert client.configs.get(config.id).attrs["Spec"]["Data"] == "az12"
    secret.remove()
    config.remove()
    assert not control.secrets.list(cpb.ListSecretsRequest()).secrets
    assert not control.configs.list(cpb.ListConfigsRequest()).configs


def test_events_as_dockers_json_lines(tmp_path):
    sock = str(tmp_path / "e.sock")
    node = FakeNode(None, "c")
    server = serve(sock, node)
    client = docker.DockerClient(base_url=f"unix://{sock}", version="1.41", timeout=10)
    try:
        got = list(client.events(decode=True, since=1_699_999_999, filters={"type": "service"}))
        assert got == [
            {
                "Type": "service",
                "Action": "create",
                "Actor": {"ID": "s1", "Attributes": {"name": "web"}},
                "scope": "swarm",
                "time": 1_700_000_000,
                "timeNano": 1_700_000_000_250_000_000,
            }
        ]
        assert node.asked.since == 1_699_999_999
        assert len(list(client.events(decode=True))) == 2
        # Only swarm-scope events exist here: a local-scope query ends with none.
        assert list(client.events(decode=True, until=1_700_000_002, filters={"scope": "local"})) == []
    finally:
        client.close()
        server.stop()


class _QuietNode(FakeNode):
    """A node whose event stream stays open (a `docker events` that follows)."""

    def events(self, request: epb.EventsRequest, context: object) -> Iterator[epb.Event]:
        context.wait()  # type: ignore[attr-defined]  # until the client is gone (StreamContext)
        return
        yield


def test_stop_with_an_open_stream_returns(tmp_path):
    import socket

    sock = str(tmp_path / "q.sock")
    server = serve(sock, _QuietNode(None, "c"))
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(sock)
    s.sendall(b"GET /v1.41/events HTTP/1.1\r\nHost: x\r\n\r\n")
    assert s.recv(1024).startswith(b"HTTP/1.1 200")
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 8
    s.close()
    assert not os.path.exists(sock) or not _connectable(sock)


def _connectable(path: str) -> bool:
    import socket

    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
        try:
            c.connect(path)
            return True
        except OSError:
            return False


# ---- GET /distribution (image resolution by the client) ----

APP = "127.0.0.1:5000/team/app:1"


def test_distribution_answers_the_registry_digest_in_dockers_shape(registry_api):
    client, _, sock, engine = registry_api
    digest = engine.add_to_registry(APP)
    # A registry host:port, slashes and a tag, with and without the version prefix.
    for path in (f"/distribution/{APP}/json", f"/v1.41/distribution/{APP}/json"):
        resp = _request(sock, "GET", path, None)
        assert resp["status"] == 200, resp
        assert resp["body"] == {
            "Descriptor": {"mediaType": FAKE_MANIFEST_TYPE, "digest": digest, "size": FAKE_MANIFEST_SIZE},
            "Platforms": [{"architecture": "amd64", "os": "linux"}],
        }
    # docker-py's call, as a client resolving an image does it.
    assert client.api.inspect_distribution(APP)["Descriptor"]["digest"] == digest
    pinned = f"{APP}@{digest}"
    assert _request(sock, "GET", f"/distribution/{pinned}/json", None)["body"]["Descriptor"]["digest"] == digest
    assert ("inspect_distribution", APP) in engine.calls


def test_distribution_refusals_keep_the_registrys_status(registry_api, caplog):
    client, _, sock, engine = registry_api
    resp = _request(sock, "GET", "/distribution/127.0.0.1:5000/nope:1/json", None)
    assert resp["status"] == 404 and "manifest unknown" in resp["body"]["message"]
    private = "127.0.0.1:5000/private/app:2"
    digest = engine.add_to_registry(private, credentials=("alice", "s3cret-pw"))
    with pytest.raises(docker.errors.APIError) as e:
        client.api.inspect_distribution(private, auth_config={})
    assert e.value.status_code == 401 and "no basic auth credentials" in e.value.explanation
    with pytest.raises(docker.errors.APIError) as e:
        client.api.inspect_distribution(private, auth_config={"username": "alice", "password": "wrong"})
    assert e.value.status_code == 401
    # X-Registry-Auth is passed to the registry lookup, and never logged.
    found = client.api.inspect_distribution(private, auth_config={"username": "alice", "password": "s3cret-pw"})
    assert found["Descriptor"]["digest"] == digest
    assert "s3cret-pw" not in caplog.text
    engine.fail("inspect_distribution", errors.PermissionDenied("denied: requested access to the resource is denied"))
    assert _request(sock, "GET", f"/distribution/{APP}/json", None)["status"] == 403
    bad = _request(sock, "GET", "/distribution/Not:A:Ref/json", None)
    assert bad["status"] == 400 and "invalid image reference" in bad["body"]["message"]
    engine.fail("inspect_distribution", EngineRefused("Get https://127.0.0.1:5000/v2/: connection refused"))
    down = _request(sock, "GET", f"/distribution/{APP}/json", None)
    assert down["status"] == 500 and "connection refused" in down["body"]["message"]
    garbled = _request_headers(sock, f"/distribution/{APP}/json", {"X-Registry-Auth": "!!!"})
    assert garbled["status"] == 400 and "X-Registry-Auth" in garbled["body"]["message"]


def test_distribution_without_an_engine_or_on_a_worker(api, tmp_path):
    _, _, sock = api
    resp = _request(sock, "GET", f"/distribution/{APP}/json", None)
    assert resp["status"] == 500 and "no engine" in resp["body"]["message"]
    wsock = str(tmp_path / "w.sock")
    server = serve(wsock, FakeNode(None, "c"))
    try:
        resp = _request(wsock, "GET", f"/distribution/{APP}/json", None)
        assert resp["status"] == 503 and "not a swarm manager" in resp["body"]["message"]
    finally:
        server.stop()


def test_cli_resolution_then_create_keeps_the_pin_and_platforms(registry_api):
    """What `docker service create` does without --no-resolve-image: ask
    /distribution, pin the image and copy the platforms into the spec."""
    client, control, sock, engine = registry_api
    digest = engine.add_to_registry(APP)
    found = client.api.inspect_distribution(APP)
    platforms = [{"Architecture": p["architecture"], "OS": p["os"]} for p in found["Platforms"]]
    body = {
        "Name": "pinned",
        "TaskTemplate": {"ContainerSpec": {"Image": f"{APP}@{digest}"}, "Placement": {"Platforms": platforms}},
        "Mode": {"Replicated": {"Replicas": 2}},
    }
    resp = _post(sock, "/v1.41/services/create", body)
    assert resp["status"] == 201, resp
    held = control.services.get(cpb.GetServiceRequest(ref="pinned")).service
    assert held.spec.task.container.image == f"{APP}@{digest}"
    assert [(p.os, p.architecture) for p in held.spec.task.placement.platforms] == [("linux", "amd64")]
    shown = client.services.get("pinned").attrs["Spec"]
    assert shown["TaskTemplate"]["ContainerSpec"]["Image"] == f"{APP}@{digest}"
    assert shown["TaskTemplate"]["Placement"]["Platforms"] == [{"Architecture": "amd64", "OS": "linux"}]


def _request_headers(sock: str, path: str, headers: dict[str, str]) -> dict:
    c = _unix_conn(sock)
    try:
        c.request("GET", path, headers=headers)
        r = c.getresponse()
        raw = r.read()
        return {"status": r.status, "body": json.loads(raw) if raw else None}
    finally:
        c.close()
