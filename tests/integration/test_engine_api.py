"""Docker's Engine API served by a swarmlet manager (issue 17), driven by
clients no one here wrote: Debian's docker CLI (20.10, API 1.41) with
`-H unix://PATH`, and docker-py. h1 (manager, serving the API), h2 and h3
(workers) form the cluster; services run as real containers on their engines.

Tests run in file order and share the cluster.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import time

import docker
import grpc
import pytest

from swarmlet.api import control_pb2 as cpb
from swarmlet.api import control_pb2_grpc
from swarmlet.api import objects_pb2 as pb
from tests.waiting import wait_for

IMAGE = "swarmlet-test:busybox"
V2 = "swarmlet-test:engine-v2"
DOCKER = "/usr/bin/docker"  # Debian's docker.io client (20.10, API 1.41)
DEADLINE = 120


def api(host) -> control_pb2_grpc.ControlStub:
    return control_pb2_grpc.ControlStub(grpc.insecure_channel(f"unix://{host.swarmlet_sock}"))


def ok(testbed, host, *args, timeout: float = 120):
    r = testbed.cli(host, *args, timeout=timeout)
    assert r.returncode == 0, f"swarmlet {' '.join(args)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"
    return r


@pytest.fixture(scope="module")
def cluster(testbed, tmp_path_factory):
    """The cluster, with h1's daemon serving the Engine API; a docker CLI
    runner bound to it (its own empty config dir)."""
    if not os.access(DOCKER, os.X_OK):
        pytest.skip(f"{DOCKER} (Debian's docker.io client) is not installed")
    h1, h2, h3, _ = testbed.hosts[:4]
    d = tmp_path_factory.mktemp("engineapi")
    sock = str(d / "docker-api.sock")
    # h2 serves it too: a worker (refused), later a follower manager.
    for h, path in ((h1, sock), (h2, str(d / "docker-api-h2.sock"))):
        testbed.kill_swarmlet(h, 15)
        testbed.start_swarmlet(h, ["--docker-api-socket", path])
    for h in (h1, h2, h3):
        testbed.docker(h).images.get(IMAGE).tag("swarmlet-test", "engine-v2")
    ok(testbed, h1, "init", "--advertise-addr", h1.ip)
    token = ok(testbed, h1, "join-token", "worker", "-q").stdout.strip()
    for h in (h2, h3):
        ok(testbed, h, "join", "--token", token, f"{h1.ip}:4242")
    wait_for(lambda: len(api(h1).ListNodes(cpb.ListNodesRequest()).nodes) == 3, 60, "3 nodes")
    config = tmp_path_factory.mktemp("docker-config")

    def run(*args: str, check: bool = True, timeout: float = 60, at: str = sock) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "DOCKER_CONFIG": str(config)}
        env.pop("DOCKER_HOST", None)
        r = subprocess.run([DOCKER, "-H", f"unix://{at}", *args], capture_output=True, text=True, timeout=timeout, env=env)
        if check:
            assert r.returncode == 0, f"docker {' '.join(args)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"
        return r

    return h1, h2, h3, sock, run


def info_of(host) -> cpb.InfoResponse | None:
    try:
        return api(host).Info(cpb.InfoRequest(), timeout=10)
    except grpc.RpcError:
        return None


def running(manager, service: str) -> list[pb.Task]:
    ts = api(manager).ListTasks(cpb.ListTasksRequest(service_ref=service)).tasks
    return [t for t in ts if t.desired_state == pb.RUNNING and t.status.state == pb.RUNNING]


def running_n(manager, service: str, n: int) -> list[pb.Task] | None:
    ts = running(manager, service)
    return ts if len(ts) == n else None


def engine_images(testbed, tasks: list[pb.Task]) -> set[str]:
    """The images of the tasks' running containers, as their engines run
    them: tags of the image id each runs (swarmlet pins tasks to the id)."""
    hosts = {h.name: h for h in testbed.hosts}
    nodes = {n.id: n.description.hostname for n in api(testbed.hosts[0]).ListNodes(cpb.ListNodesRequest()).nodes}
    out = set()
    for t in tasks:
        c = testbed.docker(hosts[nodes[t.node_id]]).containers.get(t.status.container_id)
        assert c.status == "running"
        out.update(c.image.tags)
    return out


def test_socket_is_root_only_and_version_negotiates_141(cluster):
    _, _, _, sock, run = cluster
    assert os.stat(sock).st_mode & 0o777 == 0o600
    v = json.loads(run("version", "--format", "{{json .Server}}").stdout)
    assert v["ApiVersion"] == "1.41"
    info = json.loads(run("info", "--format", "{{json .Swarm}}").stdout)
    assert info["LocalNodeState"] == "active" and info["ControlAvailable"] is True and info["Cluster"]["ID"]


def test_node_ls(cluster):
    h1, h2, h3, _, run = cluster
    out = run("node", "ls").stdout
    lines = out.strip().splitlines()[1:]
    assert len(lines) == 3, out
    me = next(line for line in lines if h1.name in line)
    assert "*" in me and "Leader" in me and "Ready" in me, out
    rows = [json.loads(line) for line in run("node", "ls", "--format", "{{json .}}").stdout.splitlines()]
    assert {r["Hostname"] for r in rows} == {h1.name, h2.name, h3.name}
    workers = run("node", "ls", "--filter", "role=worker", "-q").stdout.split()
    assert len(workers) == 2


def test_service_create_converges_on_the_engines(testbed, cluster):
    h1, _, _, _, run = cluster
    run("service", "create", "--detach", "--name", "web", "--replicas", "2", "--env", "A=1", IMAGE, "sleep", "3600")
    tasks = wait_for(lambda: running_n(h1, "web", 2), DEADLINE, "2 web tasks running")
    assert IMAGE in engine_images(testbed, tasks)
    svc = api(h1).GetService(cpb.GetServiceRequest(ref="web")).service
    assert list(svc.spec.task.container.env) == ["A=1"] and list(svc.spec.task.container.args) == ["sleep", "3600"]


def test_events(cluster):
    _, _, _, _, run = cluster
    # Until a little later: the stream replays the history, then ends once
    # the clock passes `until`.
    until = f"{time.time() + 3:.0f}"
    out = run("events", "--since", "10m", "--until", until, "--filter", "type=service", "--format", "{{json .}}").stdout
    events = [json.loads(line) for line in out.splitlines()]
    created = [e for e in events if e["Action"] == "create" and e["Actor"]["Attributes"]["name"] == "web"]
    assert len(created) == 1 and created[0]["scope"] == "swarm", events
    assert all(e["Type"] == "service" for e in events)


def test_service_ls_and_ps(cluster):
    h1, _, _, _, run = cluster
    rows = [json.loads(line) for line in run("service", "ls", "--format", "{{json .}}").stdout.splitlines()]
    (web,) = [r for r in rows if r["Name"] == "web"]
    assert web["Mode"] == "replicated" and web["Replicas"] == "2/2" and web["Image"] == IMAGE, rows
    ps = [json.loads(line) for line in run("service", "ps", "web", "--format", "{{json .}}").stdout.splitlines()]
    assert len(ps) == 2 and {p["Name"] for p in ps} == {"web.1", "web.2"}, ps
    assert all(p["DesiredState"] == "Running" and p["CurrentState"].startswith("Running") for p in ps), ps
    hostnames = {n.description.hostname for n in api(h1).ListNodes(cpb.ListNodesRequest()).nodes}
    assert {p["Node"] for p in ps} <= hostnames


def test_service_inspect_has_dockers_fields(cluster):
    _, _, _, _, run = cluster
    (svc,) = json.loads(run("service", "inspect", "web").stdout)
    assert {"ID", "Version", "CreatedAt", "UpdatedAt", "Spec", "Endpoint"} <= set(svc)
    spec = svc["Spec"]
    assert spec["Name"] == "web" and spec["Mode"] == {"Replicated": {"Replicas": 2}}
    c = spec["TaskTemplate"]["ContainerSpec"]
    assert c["Image"] == IMAGE and c["Args"] == ["sleep", "3600"] and c["Env"] == ["A=1"]
    assert spec["UpdateConfig"]["Order"] == "stop-first" and spec["EndpointSpec"]["Mode"] == "vip"
    assert isinstance(svc["Version"]["Index"], int) and svc["CreatedAt"].endswith("Z")
    pretty = run("service", "inspect", "--pretty", "web").stdout
    assert "Name:\t\tweb" in pretty and "Replicas:\t2" in pretty, pretty


def _key_paths(value: object, prefix: str = "") -> set[str]:
    """Every key path of a JSON value ("Spec.TaskTemplate.ContainerSpec.Image");
    list items share their list's path."""
    out: set[str] = set()
    if isinstance(value, dict):
        for k, v in value.items():
            path = f"{prefix}.{k}" if prefix else k
            out.add(path)
            out |= _key_paths(v, path)
    elif isinstance(value, list):
        for v in value:
            out |= _key_paths(v, prefix)
    return out


# Paths Docker Swarm's inspect has and swarmlet's does not, on purpose
# (docs/engine-api.md): Docker's own annotations of the image it resolved on
# a registry, which swarmlet keeps in its manager's pin.
SWARM_ONLY_PATHS = {"Spec.Labels.com.docker.stack.image"}


def test_service_inspect_parses_with_docker_swarms_fields(testbed, cluster):
    """The same `service create` on a real Docker Swarm (h4's engine, outside
    swarmlet's cluster): every field Docker's inspect shows, swarmlet's shows."""
    _, _, _, _, run = cluster
    h4 = testbed.hosts[3]
    env = {**os.environ, "DOCKER_HOST": h4.docker_url}

    def swarm(*args: str) -> str:
        r = subprocess.run([DOCKER, *args], capture_output=True, text=True, timeout=120, env=env)
        assert r.returncode == 0, f"docker {' '.join(args)} on h4: {r.stderr}"
        return r.stdout

    swarm("swarm", "init", "--advertise-addr", h4.ip)
    try:
        swarm(
            "service",
            "create",
            "--detach",
            "--no-resolve-image",
            "--name",
            "web",
            "--replicas",
            "2",
            "--env",
            "A=1",
            IMAGE,
            "sleep",
            "3600",
        )
        (theirs,) = json.loads(swarm("service", "inspect", "web"))
    finally:
        swarm("swarm", "leave", "--force")
    (ours,) = json.loads(run("service", "inspect", "web").stdout)
    assert {
        "Spec.TaskTemplate.ContainerSpec.Image",
        "Spec.UpdateConfig.Order",
        "Spec.EndpointSpec.Mode",
        "Endpoint.Spec",
    } <= _key_paths(theirs)
    missing = _key_paths(theirs) - _key_paths(ours) - SWARM_ONLY_PATHS
    assert not missing, f"fields of Docker Swarm's inspect missing from swarmlet's: {sorted(missing)}"
    assert ours["Spec"]["TaskTemplate"]["ContainerSpec"] == {
        **theirs["Spec"]["TaskTemplate"]["ContainerSpec"],
        "StopGracePeriod": ours["Spec"]["TaskTemplate"]["ContainerSpec"]["StopGracePeriod"],
    }


def test_service_update_image_rolls(testbed, cluster):
    h1, _, _, _, run = cluster
    before = {t.id for t in running(h1, "web")}
    run("service", "update", "--detach", "--image", V2, "web")

    def rolled() -> list[pb.Task] | None:
        ts = running(h1, "web")
        return ts if len(ts) == 2 and all(t.spec.container.image == V2 for t in ts) else None

    tasks = wait_for(rolled, DEADLINE, "web rolled to the new image")
    assert not before & {t.id for t in tasks}
    # V2 is another tag of the same image: what changed is the spec the
    # new tasks (new containers) were made from.
    assert V2 in engine_images(testbed, tasks)
    (svc,) = json.loads(run("service", "inspect", "web").stdout)
    assert svc["PreviousSpec"]["TaskTemplate"]["ContainerSpec"]["Image"] == IMAGE
    assert svc["UpdateStatus"]["State"] in ("updating", "completed")


def test_service_scale(cluster):
    h1, _, _, _, run = cluster
    run("service", "scale", "--detach", "web=3")
    wait_for(lambda: running_n(h1, "web", 3), DEADLINE, "web scaled to 3")
    assert api(h1).GetService(cpb.GetServiceRequest(ref="web")).service.spec.replicated.replicas == 3


def test_create_waits_for_convergence_and_logs(cluster):
    """Without --detach the CLI follows the tasks (GET /tasks, /nodes) until
    the service converged; then `service logs` prints each line with its task."""
    h1, _, _, _, run = cluster
    r = run("service", "create", "--name", "talk", IMAGE, "sh", "-c", "echo hello from talk; exec sleep 3600", timeout=DEADLINE)
    assert "converged" in (r.stdout + r.stderr), r.stdout + r.stderr
    assert running_n(h1, "talk", 1)

    def logged() -> str | None:
        out = run("service", "logs", "talk").stdout
        return out if "hello from talk" in out else None

    out = wait_for(logged, 60, "the task's output in docker service logs")
    line = next(line for line in out.splitlines() if "hello from talk" in line)
    hostnames = {n.description.hostname for n in api(h1).ListNodes(cpb.ListNodesRequest()).nodes}
    assert line.startswith("talk.1.") and line.split("|")[1].strip() == "hello from talk", line
    assert line.split("@")[1].split()[0] in hostnames, line
    run("service", "rm", "talk")


def test_node_update_labels(cluster):
    h1, _, h3, _, run = cluster
    run("node", "update", "--label-add", "zone=b", h3.name)
    node = api(h1).GetNode(cpb.GetNodeRequest(ref=h3.name)).node
    assert dict(node.spec.labels) == {"zone": "b"}
    assert run("node", "ls", "--filter", "node.label=zone=b", "--format", "{{.Hostname}}").stdout.split() == [h3.name]
    r = run("node", "promote", h3.name, check=False)
    assert r.returncode != 0 and "swarmlet node promote" in r.stderr, r.stderr


def test_unsupported_option_is_refused_and_creates_nothing(cluster):
    h1, _, _, _, run = cluster
    r = run("service", "create", "--detach", "--isolation", "process", "--name", "bad", IMAGE, check=False)
    assert r.returncode != 0
    assert "TaskTemplate.ContainerSpec.Isolation is not supported by swarmlet" in r.stderr, r.stderr
    assert "bad" not in {s.service.spec.name for s in api(h1).ListServices(cpb.ListServicesRequest()).services}


def test_network_create_ls_rm(cluster):
    h1, _, _, _, run = cluster
    net_id = run("network", "create", "-d", "overlay", "--attachable", "backend").stdout.strip()
    assert api(h1).GetNetwork(cpb.GetNetworkRequest(ref="backend")).network.id == net_id
    listed = run("network", "ls", "--filter", "driver=overlay", "--format", "{{.Name}} {{.Scope}}").stdout.splitlines()
    assert "backend swarm" in listed, listed
    inspected = json.loads(run("network", "inspect", "backend").stdout)[0]
    assert inspected["Driver"] == "overlay" and inspected["Attachable"] is True
    run("network", "rm", "backend")
    assert "backend" not in {n.spec.name for n in api(h1).ListNetworks(cpb.ListNetworksRequest()).networks}


def test_secret_and_config_commands(testbed, cluster, tmp_path):
    h1, _, _, _, run = cluster
    f = tmp_path / "pw"
    f.write_text("s3cr3t-value")
    secret_id = run("secret", "create", "--label", "app=x", "pw", str(f)).stdout.strip()
    assert api(h1).GetSecret(cpb.GetSecretRequest(ref="pw")).secret.id == secret_id
    assert run("secret", "ls", "--filter", "label=app=x", "--format", "{{.Name}}").stdout.split() == ["pw"]
    shown = run("secret", "inspect", "pw").stdout
    assert json.loads(shown)[0]["Spec"]["Name"] == "pw" and "s3cr3t" not in shown and "czNjcjN0" not in shown
    f.write_text("key=value\n")
    run("config", "create", "conf", str(f))
    assert "key=value" in run("config", "inspect", "--pretty", "conf").stdout
    run("secret", "rm", "pw")
    run("config", "rm", "conf")
    assert not api(h1).ListSecrets(cpb.ListSecretsRequest()).secrets
    assert not api(h1).ListConfigs(cpb.ListConfigsRequest()).configs


def test_single_engine_endpoints_answer_in_dockers_shape(cluster):
    _, _, _, _, run = cluster
    r = run("ps", check=False)
    assert r.returncode != 0 and "swarm objects only" in r.stderr, r.stderr


def test_docker_py(testbed, cluster):
    h1, _, _, sock, _ = cluster
    client = docker.DockerClient(base_url=f"unix://{sock}", timeout=30)
    try:
        assert len(client.nodes.list()) == 3
        assert len(client.nodes.list(filters={"role": "manager"})) == 1
        svc = client.services.create(IMAGE, command=["sleep", "3600"], name="py", mode=docker.types.ServiceMode("replicated", 1))
        assert {s.name for s in client.services.list()} >= {"web", "py"}
        tasks = wait_for(lambda: running_n(h1, "py", 1), DEADLINE, "py's task running")
        assert IMAGE in engine_images(testbed, tasks)
        wait_for(lambda: any(t["Status"]["State"] == "running" for t in svc.tasks()), DEADLINE, "docker-py sees the task")
        svc.remove()
    finally:
        client.close()


REG_USER = "engineapi-user"
REG_PASSWORD = "Pw-5d0b2c8e-engine-api-test-only"


def _status_of(call) -> int:
    """The HTTP status a docker-py call answered with (200 when it worked)."""
    try:
        call()
    except docker.errors.APIError as e:
        assert e.explanation, "an error in docker's shape has a message"
        return int(e.status_code or 0)
    return 200


def test_service_create_resolves_the_image_on_the_registry(testbed, cluster, tmp_path):
    """Without --no-resolve-image, docker's CLI asks GET /distribution (with
    --with-registry-auth, its config's credentials as X-Registry-Auth) and
    creates the service pinned to the registry's digest, with the image's
    platforms; refusals come back with the status h1's own dockerd gives."""
    h1, _, _, sock, _ = cluster
    reg = testbed.start_registry(REG_USER, REG_PASSWORD)
    repo, creds = f"{reg}/engineapi/app", {"username": REG_USER, "password": REG_PASSWORD}
    ref = f"{repo}:v1"
    engine = testbed.docker(h1)
    engine.images.get(IMAGE).tag(repo, "v1")
    for line in engine.api.push(repo, "v1", stream=True, decode=True, auth_config=creds):
        assert "error" not in line, line
    digest = engine.api.inspect_distribution(ref, auth_config=creds)["Descriptor"]["digest"]
    assert digest.startswith("sha256:")

    config = tmp_path / "docker-config"
    config.mkdir()
    auth = base64.b64encode(f"{REG_USER}:{REG_PASSWORD}".encode()).decode()
    (config / "config.json").write_text(json.dumps({"auths": {reg: {"auth": auth}}}))
    env = {**os.environ, "DOCKER_CONFIG": str(config)}
    env.pop("DOCKER_HOST", None)
    args = [
        "service",
        "create",
        "--detach",
        "--with-registry-auth",
        "--name",
        "resolved",
        "--replicas",
        "2",
        ref,
        "sleep",
        "3600",
    ]
    r = subprocess.run([DOCKER, "-H", f"unix://{sock}", *args], capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 0, r.stderr
    assert "could not be accessed on a registry" not in r.stderr, r.stderr  # the CLI's warning when /distribution fails

    out = subprocess.run(
        [DOCKER, "-H", f"unix://{sock}", "service", "inspect", "resolved"], capture_output=True, text=True, timeout=60, env=env
    )
    assert out.returncode == 0, out.stderr
    assert REG_PASSWORD not in out.stdout
    (svc,) = json.loads(out.stdout)
    assert svc["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"] == f"{ref}@{digest}"
    assert {"Architecture": "amd64", "OS": "linux"} in svc["Spec"]["TaskTemplate"]["Placement"]["Platforms"]
    tasks = wait_for(lambda: running_n(h1, "resolved", 2), DEADLINE, "2 resolved tasks running")
    assert all(t.spec.container.image == f"{ref}@{digest}" for t in tasks)

    client = docker.APIClient(base_url=f"unix://{sock}", version="1.41", timeout=60)
    try:
        assert client.inspect_distribution(ref, auth_config=creds)["Descriptor"]["digest"] == digest
        # The registry's refusals: what h1's dockerd answers, swarmlet answers.
        for name, auth_config in ((ref, {}), (f"{repo}:nosuch", creds)):
            want = _status_of(lambda n=name, a=auth_config: engine.api.inspect_distribution(n, auth_config=a))
            assert want >= 400
            assert _status_of(lambda n=name, a=auth_config: client.inspect_distribution(n, auth_config=a)) == want, name
    finally:
        client.close()
    r = subprocess.run([DOCKER, "-H", f"unix://{sock}", "service", "rm", "resolved"], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr


def test_service_rm_removes_the_containers(testbed, cluster):
    h1, _, _, _, run = cluster
    tasks = running(h1, "web")
    assert len(tasks) == 3
    run("service", "rm", "web")
    assert "web" not in {s.service.spec.name for s in api(h1).ListServices(cpb.ListServicesRequest()).services}
    hosts = {h.name: h for h in testbed.hosts}
    nodes = {n.id: n.description.hostname for n in api(h1).ListNodes(cpb.ListNodesRequest()).nodes}

    def gone() -> bool:
        for t in tasks:
            try:
                testbed.docker(hosts[nodes[t.node_id]]).containers.get(t.status.container_id)
                return False
            except docker.errors.NotFound:
                continue
        return True

    wait_for(gone, DEADLINE, "web's containers removed from the engines")
    assert "web" not in run("service", "ls", "--format", "{{.Name}}").stdout.split()


STACK = f"""\
version: "3.8"
services:
  front:
    image: {IMAGE}
    command: sleep 3600
    deploy:
      replicas: 2
  back:
    image: {IMAGE}
    command: sleep 3600
"""


def test_docker_stack_deploy_and_rm(testbed, cluster, tmp_path):
    h1, _, _, _, run = cluster
    path = tmp_path / "stack.yml"
    path.write_text(STACK)
    run("stack", "deploy", "-c", str(path), "--resolve-image", "never", "app")
    svcs = {s.service.spec.name: s.service for s in api(h1).ListServices(cpb.ListServicesRequest()).services}
    assert {"app_front", "app_back"} <= set(svcs)
    assert svcs["app_front"].spec.labels["com.docker.stack.namespace"] == "app"
    assert "app_default" in {n.spec.name for n in api(h1).ListNetworks(cpb.ListNetworksRequest()).networks}
    front = wait_for(lambda: running_n(h1, "app_front", 2), DEADLINE, "app_front's 2 tasks running")
    wait_for(lambda: running_n(h1, "app_back", 1), DEADLINE, "app_back's task running")
    # The stack names each service by its short name on the stack's network
    # (a network alias): `back` resolves from a front container.
    hosts = {h.name: h for h in testbed.hosts}
    nodes = {n.id: n.description.hostname for n in api(h1).ListNodes(cpb.ListNodesRequest()).nodes}
    container = testbed.docker(hosts[nodes[front[0].node_id]]).containers.get(front[0].status.container_id)
    vip = next(v.addr for v in svcs["app_back"].virtual_ips)

    def resolves() -> bool:
        code, out = container.exec_run(["nslookup", "back"])
        return code == 0 and vip in out.decode()

    wait_for(resolves, 60, f"`back` resolves to app_back's VIP {vip} in a front container")
    assert "app" in run("stack", "ls", "--format", "{{.Name}} {{.Services}}").stdout.splitlines()[0].split()
    assert run("stack", "ls", "--format", "{{.Name}} {{.Services}}").stdout.split() == ["app", "2"]
    ps = run("stack", "ps", "app", "--format", "{{.Name}} {{.DesiredState}}").stdout.splitlines()
    assert sorted(line for line in ps if line.endswith("Running")) == [
        "app_back.1 Running",
        "app_front.1 Running",
        "app_front.2 Running",
    ], ps
    run("stack", "rm", "app")
    wait_for(
        lambda: (
            not {"app_front", "app_back"}
            & {s.service.spec.name for s in api(h1).ListServices(cpb.ListServicesRequest()).services}
        ),
        30,
        "the stack's services removed",
    )
    wait_for(
        lambda: "app_default" not in {n.spec.name for n in api(h1).ListNetworks(cpb.ListNetworksRequest()).networks},
        DEADLINE,
        "the stack's network removed",
    )


def test_worker_refuses_and_a_follower_manager_serves(testbed, cluster):
    """A worker's socket answers with swarm's "not a manager" error; once
    promoted, the same socket serves, its writes forwarded to the leader
    (h1) through the control API."""
    h1, h2, _, sock, run = cluster
    h2_sock = os.path.join(os.path.dirname(sock), "docker-api-h2.sock")
    r = run("service", "ls", check=False, at=h2_sock)
    assert r.returncode != 0 and "not a swarm manager" in r.stderr, r.stderr
    ok(testbed, h1, "node", "promote", h2.name)
    # The daemon re-executes itself as a manager (same flags): its sockets
    # come back.
    # The worker process writes the manager role to its node record before it
    # re-executes, so the role alone can be answered by the worker about to
    # exit: a Raft status is only answered by the manager process.
    h2_info = wait_for(
        lambda: i if (i := info_of(h2)) is not None and i.role == "manager" and i.raft_status else None,
        60,
        "h2's daemon runs as a manager (its Raft store answers)",
    )
    assert not h2_info.is_leader

    def answers() -> str | None:
        r = run("info", "--format", "{{json .Swarm}}", check=False, at=h2_sock)
        return r.stdout if r.returncode == 0 else None

    info = json.loads(wait_for(answers, 30, "h2's Engine API answers info"))
    assert info["ControlAvailable"] is True
    run("service", "create", "--detach", "--name", "viaf", IMAGE, "sleep", "3600", at=h2_sock)
    assert "viaf" in {s.service.spec.name for s in api(h1).ListServices(cpb.ListServicesRequest()).services}
    wait_for(lambda: running_n(h1, "viaf", 1), DEADLINE, "viaf's task running")
    run("service", "rm", "viaf", at=h2_sock)
