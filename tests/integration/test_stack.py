"""Stacks on the multi-host testbed: a multi-service application from a
Compose file (two overlay networks, a published port and a target-only port
(given a port from Swarm's dynamic range) both reached through the routing
mesh on a node that runs none of its tasks, a placement constraint,
interpolation), re-deployed with one changed image (a rolling update, the
other services untouched: the target-only port keeps its assigned port),
pruned, and removed (an external network stays);
then a stack with a named volume, a secret from a file, an external secret,
a config, user/working_dir/cap_add, checked in the real containers, a
changed secret file refused, and `stack rm` removing its secrets and configs;
then a stack whose services find each other by their short names and a
Compose network alias, through the embedded DNS of a real container.
h1 (manager), h2, h3 form the cluster; h3 is labelled zone=b.

Tests run in file order and share the cluster and the stack.
"""

from __future__ import annotations

import json
import socket

import docker.errors
import grpc
import pytest

from swarmlet.api import control_pb2 as cpb
from swarmlet.api import control_pb2_grpc
from swarmlet.api import objects_pb2 as pb
from tests.waiting import wait_for

IMAGE = "swarmlet-test:busybox"
V2 = "swarmlet-test:stack-v2"
DEADLINE = 120

STACK = """\
version: "3.8"
x-img: &img
  image: ${IMAGE:?set IMAGE}
services:
  web:
    <<: *img
    command: ["sh", "-c", "mkdir -p /www && hostname > /www/index.html && httpd -p 6379 -h /www && exec httpd -f -p 80 -h /www"]
    ports: ["${WEB_PORT:-18080}:80", "6379"]
    networks: [front, back]
    deploy:
      replicas: 2
      placement:
        constraints: ["node.labels.zone==b"]
      update_config: {parallelism: 1, monitor: 1s}
  worker:
    <<: *img
    command: sleep 3600
    networks: [back]
    stop_grace_period: 1s
  cache:
    <<: *img
    command: sleep 3600
    deploy: {mode: global}
networks:
  front: {}
  back: {}
  shared:
    external: true
    name: corp
"""


def api(host) -> control_pb2_grpc.ControlStub:
    return control_pb2_grpc.ControlStub(grpc.insecure_channel(f"unix://{host.swarmlet_sock}"))


def ok(testbed, host, *args, timeout: float = 240):
    r = testbed.cli(host, *args, timeout=timeout)
    assert r.returncode == 0, f"swarmlet {' '.join(args)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"
    return r


def fails(testbed, host, *args, timeout: float = 60):
    r = testbed.cli(host, *args, timeout=timeout)
    assert r.returncode != 0, f"swarmlet {' '.join(args)} should have failed:\n{r.stdout}\n{r.stderr}"
    return r


def services(manager) -> dict[str, pb.Service]:
    return {s.service.spec.name: s.service for s in api(manager).ListServices(cpb.ListServicesRequest()).services}


def networks(manager) -> set[str]:
    return {n.spec.name for n in api(manager).ListNetworks(cpb.ListNetworksRequest()).networks}


def running(manager, service: str) -> list[pb.Task]:
    ts = api(manager).ListTasks(cpb.ListTasksRequest(service_ref=service)).tasks
    return [t for t in ts if t.desired_state == pb.RUNNING and t.status.state == pb.RUNNING]


def http_get(ip: str, port: int) -> str:
    with socket.create_connection((ip, port), timeout=3) as s:
        s.sendall(b"GET / HTTP/1.0\r\n\r\n")
        data = b""
        while chunk := s.recv(4096):
            data += chunk
    return data.decode(errors="replace").split("\r\n\r\n", 1)[-1].strip()


@pytest.fixture(scope="module")
def cluster(testbed, tmp_path_factory):
    h1, h2, h3, _ = testbed.hosts[:4]
    for h in (h1, h2, h3):
        testbed.docker(h).images.get(IMAGE).tag("swarmlet-test", "stack-v2")
    ok(testbed, h1, "init", "--advertise-addr", h1.ip)
    token = ok(testbed, h1, "join-token", "worker", "-q").stdout.strip()
    for h in (h2, h3):
        ok(testbed, h, "join", "--token", token, f"{h1.ip}:4242")
    wait_for(lambda: len(api(h1).ListNodes(cpb.ListNodesRequest()).nodes) == 3, 60, "3 nodes")
    ok(testbed, h1, "node", "update", "--label-add", "zone=b", h3.name)
    ok(testbed, h1, "network", "create", "--driver", "overlay", "corp")
    d = tmp_path_factory.mktemp("stack")
    (d / ".env").write_text(f"IMAGE={IMAGE}\n")
    path = d / "stack.yml"
    path.write_text(STACK)
    return h1, h2, h3, path


def test_bad_file_changes_nothing(testbed, cluster):
    h1, _, _, path = cluster
    bad = path.with_name("bad.yml")
    bad.write_text(STACK.replace("replicas: 2", "replicas: two"))
    r = fails(testbed, h1, "stack", "deploy", "-c", str(bad), "app")
    assert "bad.yml:11: services.web.deploy.replicas: expected an integer" in r.stderr
    assert not any(n.startswith("app_") for n in networks(h1)) and not services(h1)


def test_deploy_creates_everything_and_serves_through_the_mesh(testbed, cluster):
    h1, h2, h3, path = cluster
    ok(testbed, h1, "stack", "deploy", "-c", str(path), "--detach=false", "app")
    svcs = services(h1)
    assert set(svcs) == {"app_web", "app_worker", "app_cache"}
    assert all(s.spec.labels["com.docker.stack.namespace"] == "app" for s in svcs.values())
    assert {"app_front", "app_back", "app_default", "corp"} <= networks(h1)
    web = running(h1, "app_web")
    assert len(web) == 2 and {t.node_id for t in web} == {
        n.id for n in api(h1).ListNodes(cpb.ListNodesRequest()).nodes if n.description.hostname == h3.name
    }
    assert len(running(h1, "app_cache")) == 3  # global: one per node
    # h1 runs no web task; its published port still answers (routing mesh).
    wait_for(lambda: _answers(h1.ip, 18080), DEADLINE, "the stack's published port answers on h1")
    # The target-only "6379" got a published port from Swarm's dynamic
    # range, shown by `service inspect` and `stack services`, and served by
    # the routing mesh on h1 too.
    assigned = _published(svcs["app_web"], 6379)
    assert 30000 <= assigned <= 32767 and _published(svcs["app_web"], 80) == 18080
    (shown,) = json.loads(ok(testbed, h1, "service", "inspect", "app_web").stdout)
    assert {(p["target_port"], p["published_port"]) for p in shown["spec"]["endpoint"]["ports"]} == {
        (80, 18080),
        (6379, assigned),
    }
    listed = json.loads(ok(testbed, h1, "stack", "services", "--format", "json", "app").stdout)["services"]
    (web_listed,) = [s["service"] for s in listed if s["service"]["spec"]["name"] == "app_web"]
    assert {(p["target_port"], p["published_port"]) for p in web_listed["spec"]["endpoint"]["ports"]} == {
        (80, 18080),
        (6379, assigned),
    }
    wait_for(lambda: _answers(h1.ip, assigned), DEADLINE, f"the target-only port's published port {assigned} answers on h1")
    out = ok(testbed, h1, "stack", "ls").stdout
    assert "app" in out and "3" in out
    assert len(ok(testbed, h1, "stack", "services", "-q", "app").stdout.split()) == 3
    ps = ok(testbed, h1, "stack", "ps", "app").stdout
    assert "app_web.1" in ps and "app_worker.1" in ps


def _published(svc: pb.Service, target: int) -> int:
    (port,) = [p.published_port for p in svc.spec.endpoint.ports if p.target_port == target]
    return port


def _answers(ip: str, port: int) -> bool:
    try:
        return bool(http_get(ip, port))
    except OSError:
        return False


def test_redeploy_updates_only_what_changed(testbed, cluster):
    h1, _, _, path = cluster
    before = services(h1)
    ok(testbed, h1, "stack", "deploy", "-c", str(path), "app")  # unchanged: nothing moves
    same = services(h1)
    assert {k: v.meta.version for k, v in same.items()} == {k: v.meta.version for k, v in before.items()}
    changed = path.with_name("v2.yml")
    changed.write_text(STACK.replace("  worker:\n    <<: *img\n", f"  worker:\n    image: {V2}\n"))
    r = ok(testbed, h1, "stack", "deploy", "-c", str(changed), "--detach=false", "app")
    assert "Updating service app_worker" in r.stdout and "app_web" not in r.stdout.replace("app_worker", "")
    after = services(h1)
    assert after["app_worker"].spec.task.container.image == V2
    assert after["app_worker"].spec_version == before["app_worker"].spec_version + 1
    for name in ("app_web", "app_cache"):
        assert after[name].meta.version == before[name].meta.version, f"{name} was touched"
    assert _published(after["app_web"], 6379) == _published(before["app_web"], 6379)
    wait_for(lambda: [t.spec.container.image for t in running(h1, "app_worker")] == [V2], DEADLINE, "worker runs v2")


def test_prune_removes_services_that_left_the_file(testbed, cluster):
    h1, _, _, path = cluster
    smaller = path.with_name("smaller.yml")
    smaller.write_text(STACK.replace("  cache:\n    <<: *img\n    command: sleep 3600\n    deploy: {mode: global}\n", ""))
    ok(testbed, h1, "stack", "deploy", "-c", str(smaller), "app")  # without --prune: cache stays
    assert "app_cache" in services(h1)
    r = ok(testbed, h1, "stack", "deploy", "-c", str(smaller), "--prune", "app")
    assert "Removing service app_cache" in r.stdout
    assert "app_cache" not in services(h1)


def test_rm_removes_what_the_stack_created_and_keeps_external(testbed, cluster):
    h1, h2, h3, _ = cluster
    ok(testbed, h1, "stack", "rm", "app")
    assert not services(h1)
    left = networks(h1)
    assert "corp" in left and not any(n.startswith("app_") for n in left)
    wait_for(
        lambda: (
            not any(testbed.docker(h).api.containers(filters={"label": ["com.docker.stack.namespace=app"]}) for h in (h1, h2, h3))
        ),
        DEADLINE,
        "every container of the stack gone",
    )
    assert "nothing found in stack: app" in fails(testbed, h1, "stack", "rm", "app").stderr


STORE = """\
version: "3.8"
services:
  app:
    image: ${IMAGE:?set IMAGE}
    command: sleep 3600
    user: "1000"
    working_dir: /tmp
    cap_add: [NET_ADMIN]
    stop_grace_period: 1s
    volumes: [data:/data]
    secrets:
      - {source: pw, target: db_pw, mode: 0444}
      - corp
    configs:
      - {source: conf, target: /etc/app.conf}
volumes:
  data:
    labels: {tier: test}
secrets:
  pw: {file: ./pw.txt}
  corp: {external: true, name: corp-pw}
configs:
  conf: {file: ./app.conf}
"""


def _store_containers(testbed, hosts) -> list[tuple[object, dict]]:
    out = []
    for h in hosts:
        api_ = testbed.docker(h).api
        for c in api_.containers(filters={"label": ["swarmlet.service.name=store_app"]}):
            try:
                out.append((h, api_.inspect_container(c["Id"])))
            except docker.errors.NotFound:
                continue  # removed between the listing and the inspect: gone
    return out


def test_volume_secret_config_and_options_reach_the_containers_and_rm_removes_them(testbed, cluster):
    h1, h2, h3, path = cluster
    d = path.with_name("store")
    d.mkdir()
    (d / ".env").write_text(f"IMAGE={IMAGE}\n")
    (d / "pw.txt").write_text("s3cret-from-file\n")
    (d / "app.conf").write_text("port=8080\n")
    (d / "corp.txt").write_text("corp-secret\n")
    f = d / "stack.yml"
    f.write_text(STORE)
    ok(testbed, h1, "secret", "create", "corp-pw", str(d / "corp.txt"))
    r = ok(testbed, h1, "stack", "deploy", "-c", str(f), "--resolve-image", "never", "--detach=false", "store")
    assert "Creating secret store_pw" in r.stdout and "Creating config store_conf" in r.stdout
    secrets = {s.spec.name: s for s in api(h1).ListSecrets(cpb.ListSecretsRequest()).secrets}
    assert secrets["store_pw"].spec.labels["com.docker.stack.namespace"] == "store"
    assert "s3cret" not in str(secrets["store_pw"])  # the digest label is no copy of the data
    found = wait_for(lambda: _store_containers(testbed, (h1, h2, h3)), DEADLINE, "the store_app container")
    ((host, c),) = found
    assert c["Config"]["User"] == "1000" and c["Config"]["WorkingDir"] == "/tmp"
    assert "CAP_NET_ADMIN" in (c["HostConfig"]["CapAdd"] or [])
    (vol,) = [m for m in c["Mounts"] if m["Destination"] == "/data"]
    assert (vol["Type"], vol["Name"]) == ("volume", "store_data")
    assert testbed.docker(host).volumes.get("store_data").attrs["Labels"]["tier"] == "test"
    box = testbed.docker(host).containers.get(c["Id"])
    assert box.exec_run(["cat", "/run/secrets/db_pw"]).output.decode() == "s3cret-from-file\n"
    assert box.exec_run(["cat", "/run/secrets/corp"]).output.decode() == "corp-secret\n"
    assert box.exec_run(["cat", "/etc/app.conf"]).output.decode() == "port=8080\n"

    # Unchanged: the service is untouched (references compare as the manager resolved them).
    before = services(h1)["store_app"]
    ok(testbed, h1, "stack", "deploy", "-c", str(f), "--resolve-image", "never", "store")
    assert services(h1)["store_app"].meta.version == before.meta.version
    # A changed secret file is refused, naming the file; nothing changes.
    (d / "pw.txt").write_text("another\n")
    r = fails(testbed, h1, "stack", "deploy", "-c", str(f), "store")
    assert f"the file {d / 'pw.txt'} changed since it was deployed" in r.stderr
    assert services(h1)["store_app"].meta.version == before.meta.version

    r = ok(testbed, h1, "stack", "rm", "store")
    assert "Removing secret store_pw" in r.stdout and "Removing config store_conf" in r.stdout
    assert "store_app" not in services(h1)
    assert not any(n.startswith("store_") for n in networks(h1))
    left = {s.spec.name for s in api(h1).ListSecrets(cpb.ListSecretsRequest()).secrets}
    assert "store_pw" not in left and "corp-pw" in left  # the external secret stays
    assert not [c.spec.name for c in api(h1).ListConfigs(cpb.ListConfigsRequest()).configs if c.spec.name.startswith("store_")]
    wait_for(lambda: not _store_containers(testbed, (h1, h2, h3)), DEADLINE, "the store_app container gone")


NAMES = """\
version: "3.8"
services:
  db:
    image: ${IMAGE:?set IMAGE}
    command: sleep 3600
    stop_grace_period: 1s
    networks:
      back:
        aliases: [primary]
  client:
    image: ${IMAGE:?set IMAGE}
    command: sleep 3600
    stop_grace_period: 1s
    networks: [back]
networks:
  back: {}
"""


def _resolves_to(testbed, host, cid: str, name: str, want: str) -> bool:
    """`name` answered by the embedded DNS (127.0.0.11) with `want` inside the container."""
    api_ = testbed.docker(host).api
    ex = api_.exec_create(cid, ["nslookup", name, "127.0.0.11"])
    out = api_.exec_start(ex["Id"]).decode(errors="replace")
    answer = out.split("Name:", 1)[-1] if "Name:" in out else ""
    return api_.exec_inspect(ex["Id"])["ExitCode"] == 0 and want in answer


def test_services_resolve_each_other_by_short_name_and_compose_alias(testbed, cluster):
    h1, _, _, path = cluster
    d = path.with_name("names")
    d.mkdir()
    (d / ".env").write_text(f"IMAGE={IMAGE}\n")
    f = d / "stack.yml"
    f.write_text(NAMES)
    ok(testbed, h1, "stack", "deploy", "-c", str(f), "--resolve-image", "never", "--detach=false", "names")
    svcs = services(h1)
    # What the manager stored: the file's alias, then the short name (as docker).
    assert [list(a.aliases) for a in svcs["names_db"].spec.networks] == [["primary", "db"]]
    assert [list(a.aliases) for a in svcs["names_client"].spec.networks] == [["client"]]
    back = next(n.id for n in api(h1).ListNetworks(cpb.ListNetworksRequest()).networks if n.spec.name == "names_back")
    vip = next(v.addr for v in svcs["names_db"].virtual_ips if v.network_id == back)
    (task,) = wait_for(lambda: running(h1, "names_client"), DEADLINE, "the client's task running")
    nodes = {n.id: n.description.hostname for n in api(h1).ListNodes(cpb.ListNodesRequest()).nodes}
    host = next(h for h in testbed.hosts if h.name == nodes[task.node_id])
    cid = task.status.container_id
    for name in ("db", "primary", "names_db"):
        wait_for(
            lambda name=name: _resolves_to(testbed, host, cid, name, vip),
            60,
            f"{name!r} resolves to names_db's VIP {vip} in the client container",
        )
    ok(testbed, h1, "stack", "rm", "names")
    assert not any(n.startswith("names_") for n in services(h1))
