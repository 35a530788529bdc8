"""Overlay networks on the multi-host testbed: real kernel VXLAN between the
host namespaces, real container namespaces, the embedded DNS, VIPs and the
routing mesh. h1 (manager), h2, h3 form the cluster.

Tests run in file order and share the cluster and its services.
"""

from __future__ import annotations

import json
import socket

import grpc
import pytest

from swarmlet.api import control_pb2 as cpb
from swarmlet.api import control_pb2_grpc
from swarmlet.api import objects_pb2 as pb
from tests.waiting import wait_for

IMAGE = "swarmlet-test:busybox"
HTTPD = "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 80 -h /www"
DEADLINE = 90  # 2 shared cores, several testbeds at once: generous


def api(host) -> control_pb2_grpc.ControlStub:
    return control_pb2_grpc.ControlStub(grpc.insecure_channel(f"unix://{host.swarmlet_sock}"))


def ok(testbed, host, *args, timeout: float = 180):
    r = testbed.cli(host, *args, timeout=timeout)
    assert r.returncode == 0, f"swarmlet {' '.join(args)} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"
    return r


def fails(testbed, host, *args, timeout: float = 60):
    r = testbed.cli(host, *args, timeout=timeout)
    assert r.returncode != 0, f"swarmlet {' '.join(args)} should have failed:\n{r.stdout}\n{r.stderr}"
    return r


def nodes_by_name(manager) -> dict[str, pb.Node]:
    return {n.description.hostname: n for n in api(manager).ListNodes(cpb.ListNodesRequest()).nodes}


def running(manager, service: str) -> list[pb.Task]:
    ts = api(manager).ListTasks(cpb.ListTasksRequest(service_ref=service)).tasks
    return [t for t in ts if t.desired_state == pb.RUNNING and t.status.state == pb.RUNNING]


def container_of(testbed, host, service: str) -> str:
    cs = testbed.docker(host).api.containers(filters={"label": [f"swarmlet.service.name={service}"]})
    assert cs, f"no running container of {service} on {host.name}"
    return cs[0]["Id"]


def sh(testbed, host, cid: str, script: str) -> tuple[int, str]:
    api_ = testbed.docker(host).api
    ex = api_.exec_create(cid, ["sh", "-c", script])
    out = api_.exec_start(ex["Id"]).decode(errors="replace")
    return api_.exec_inspect(ex["Id"])["ExitCode"], out


def fetch_in(testbed, host, cid: str, target: str) -> str:
    """One HTTP GET from inside the container; the body ('' on failure)."""
    _, out = sh(testbed, host, cid, f'printf "GET / HTTP/1.0\\r\\n\\r\\n" | nc -w 3 {target} 80 2>/dev/null | tail -n 1')
    return out.strip()


def resolve_in(testbed, host, cid: str, name: str) -> list[str]:
    code, out = sh(testbed, host, cid, f"nslookup {name} 127.0.0.11")
    if code != 0:
        return []
    addrs = []
    seen_name = False
    for line in out.splitlines():
        if line.startswith("Name:"):
            seen_name = True
        elif seen_name and line.startswith("Address"):
            addrs.append(line.split()[-1])
    return sorted(addrs)


def http_get(ip: str, port: int) -> str:
    with socket.create_connection((ip, port), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.0\r\n\r\n")
        data = b""
        while chunk := s.recv(4096):
            data += chunk
    return data.decode(errors="replace").split("\r\n\r\n", 1)[-1].strip()


def links(testbed, host) -> set[str]:
    r = testbed.exec_in(host, ["ip", "-o", "link", "show"])
    return {line.split(":")[1].strip().split("@")[0] for line in r.stdout.splitlines()}


def our_links(testbed, host) -> set[str]:
    return {n for n in links(testbed, host) if n.startswith(("swb", "swv", "swt"))}


@pytest.fixture(scope="module")
def cluster(testbed):
    h1, h2, h3, _ = testbed.hosts[:4]
    ok(testbed, h1, "init", "--advertise-addr", h1.ip)
    token = ok(testbed, h1, "join-token", "worker", "-q").stdout.strip()
    for h in (h2, h3):
        ok(testbed, h, "join", "--token", token, f"{h1.ip}:4242")
    wait_for(
        lambda: len(nodes_by_name(h1)) == 3 and all(n.status.state == pb.NodeStatus.READY for n in nodes_by_name(h1).values()),
        60,
        "3 nodes READY",
    )
    return h1, h2, h3


def test_network_create_ls_inspect_and_bad_input(testbed, cluster):
    h1, _, _ = cluster
    ok(testbed, h1, "network", "create", "--driver", "overlay", "--label", "tier=front", "front")
    ok(testbed, h1, "network", "create", "--subnet", "10.77.0.0/24", "back")
    nets = {n["spec"]["name"]: n for n in json.loads(ok(testbed, h1, "network", "ls", "--format", "json").stdout)["networks"]}
    wait_for(lambda: all(n.vni for n in api(h1).ListNetworks(cpb.ListNetworksRequest()).networks), 30, "networks allocated")
    nets = {n.spec.name: n for n in api(h1).ListNetworks(cpb.ListNetworksRequest()).networks}
    assert nets["back"].subnet == "10.77.0.0/24" and nets["back"].gateway == "10.77.0.1"
    assert nets["front"].subnet.endswith("/24") and nets["front"].vni != nets["back"].vni
    assert nets["front"].spec.labels["tier"] == "front"
    # Bad input: clear errors, nothing created.
    assert "overlaps" in fails(testbed, h1, "network", "create", "--subnet", "10.77.0.128/25", "clash").stderr
    assert "too small" in fails(testbed, h1, "network", "create", "--subnet", "10.78.0.0/31", "tiny").stderr
    assert "already exists" in fails(testbed, h1, "network", "create", "front").stderr
    r = fails(testbed, h1, "service", "create", "--name", "lost", "--network", "nowhere", IMAGE)
    assert "network 'nowhere' not found" in r.stderr
    ok(testbed, h1, "network", "create", "--subnet", "10.79.0.0/29", "small")
    r = fails(testbed, h1, "service", "create", "--name", "crowd", "--network", "small", "--replicas", "6", IMAGE)
    assert "too small" in r.stderr
    ok(testbed, h1, "network", "rm", "small")
    names = {n.spec.name for n in api(h1).ListNetworks(cpb.ListNetworksRequest()).networks}
    assert names == {"front", "back"}
    assert not api(h1).ListServices(cpb.ListServicesRequest()).services


def test_client_reaches_replicas_on_other_hosts_by_name(testbed, cluster):
    h1, h2, h3 = cluster
    ok(
        testbed,
        h1,
        "service",
        "create",
        "--name",
        "web",
        "--network",
        "front",
        "--replicas",
        "2",
        "--constraint",
        "node.hostname!=h1",
        "--publish",
        "published=8080,target=80",
        IMAGE,
        "sh",
        "-c",
        HTTPD,
    )
    ok(
        testbed,
        h1,
        "service",
        "create",
        "--name",
        "client",
        "--network",
        "front",
        "--constraint",
        "node.hostname==h1",
        IMAGE,
        "sleep",
        "3600",
    )
    assert sorted(nodes_by_name(h1)[n].id for n in ("h2", "h3")) == sorted(t.node_id for t in running(h1, "web"))
    cid = container_of(testbed, h1, "client")
    web = api(h1).GetService(cpb.GetServiceRequest(ref="web")).service
    vip = web.virtual_ips[0].addr
    wait_for(lambda: resolve_in(testbed, h1, cid, "web") == [vip], DEADLINE, "web resolves to its VIP")
    task_ips = sorted(a.addr for t in running(h1, "web") for a in t.networks if a.network_id == web.spec.networks[0].target)
    wait_for(lambda: resolve_in(testbed, h1, cid, "tasks.web") == task_ips, DEADLINE, "tasks.web resolves to the task IPs")
    hostnames = {testbed.docker(h).api.inspect_container(container_of(testbed, h, "web"))["Config"]["Hostname"] for h in (h2, h3)}
    seen: set[str] = set()
    wait_for(
        lambda: seen.add(fetch_in(testbed, h1, cid, "web")) or seen >= hostnames,
        DEADLINE,
        "requests to web by name reach both replicas",
    )
    assert seen - {""} == hostnames


def test_published_port_served_on_a_node_without_a_task(testbed, cluster):
    h1, h2, h3 = cluster
    assert not testbed.docker(h1).api.containers(filters={"label": ["swarmlet.service.name=web"]})
    hostnames = {testbed.docker(h).api.inspect_container(container_of(testbed, h, "web"))["Config"]["Hostname"] for h in (h2, h3)}
    got: set[str] = set()

    def served() -> bool:
        try:
            got.add(http_get(h1.ip, 8080))
        except OSError:
            return False
        return got >= hostnames

    wait_for(served, DEADLINE, "port 8080 of h1 (no web task) reaches both replicas")
    for h in (h2, h3):
        assert http_get(h.ip, 8080) in hostnames
    r = fails(testbed, h1, "service", "create", "--name", "web2", "-p", "8080:80", IMAGE)
    assert "port 8080/tcp is already published by service 'web'" in r.stderr


def test_networks_are_isolated(testbed, cluster):
    h1, h2, h3 = cluster
    ok(
        testbed,
        h1,
        "service",
        "create",
        "--name",
        "secret",
        "--network",
        "back",
        "--constraint",
        "node.hostname==h2",
        IMAGE,
        "sh",
        "-c",
        HTTPD,
    )
    secret_ip = running(h1, "secret")[0].networks[0].addr
    cid = container_of(testbed, h1, "client")
    assert resolve_in(testbed, h1, cid, "secret") == []
    assert resolve_in(testbed, h1, cid, "tasks.secret") == []
    assert fetch_in(testbed, h1, cid, secret_ip) == ""
    # ...while the network itself works for its own members.
    ok(
        testbed,
        h1,
        "service",
        "create",
        "--name",
        "insider",
        "--network",
        "back",
        "--constraint",
        "node.hostname==h3",
        IMAGE,
        "sleep",
        "3600",
    )
    icid = container_of(testbed, h3, "insider")
    wait_for(lambda: fetch_in(testbed, h3, icid, "secret") != "", DEADLINE, "secret reachable on its own network")
    assert resolve_in(testbed, h3, icid, "web") == []


def test_service_update_network_add_and_rm(testbed, cluster):
    h1, h2, h3 = cluster
    back = api(h1).GetNetwork(cpb.GetNetworkRequest(ref="back")).network.id
    r = fails(testbed, h1, "service", "update", "--network-rm", "back", "client")
    assert "not attached" in r.stderr
    ok(testbed, h1, "service", "update", "--update-monitor", "1s", "--network-add", "back", "client")
    wait_for(
        lambda: [t for t in running(h1, "client") if any(a.network_id == back for a in t.networks)],
        DEADLINE,
        "the new client task is attached to back",
    )
    cid = wait_for(lambda: len(running(h1, "client")) == 1 and container_of(testbed, h1, "client"), DEADLINE, "one client")
    wait_for(lambda: fetch_in(testbed, h1, cid, "secret") != "", DEADLINE, "client reaches secret on back by name")
    ok(testbed, h1, "service", "update", "--update-monitor", "1s", "--network-rm", "back", "client")
    wait_for(
        lambda: running(h1, "client") and not any(a.network_id == back for t in running(h1, "client") for a in t.networks),
        DEADLINE,
        "the client task left back",
    )
    cid = wait_for(lambda: len(running(h1, "client")) == 1 and container_of(testbed, h1, "client"), DEADLINE, "one client")
    wait_for(lambda: resolve_in(testbed, h1, cid, "secret") == [], DEADLINE, "secret no longer resolves for client")
    wait_for(lambda: fetch_in(testbed, h1, cid, "web") != "", DEADLINE, "client still reaches web on front")


def test_scale_to_zero_and_back(testbed, cluster):
    h1, h2, h3 = cluster
    cid = container_of(testbed, h1, "client")
    ok(testbed, h1, "service", "scale", "web=0")
    wait_for(lambda: resolve_in(testbed, h1, cid, "tasks.web") == [], DEADLINE, "no task IPs for web")
    assert fetch_in(testbed, h1, cid, "web") == ""
    ok(testbed, h1, "service", "scale", "web=2")
    wait_for(lambda: len(running(h1, "web")) == 2, DEADLINE, "2 web tasks running")
    web = api(h1).GetService(cpb.GetServiceRequest(ref="web")).service
    task_ips = sorted(a.addr for t in running(h1, "web") for a in t.networks if a.network_id == web.spec.networks[0].target)
    wait_for(lambda: resolve_in(testbed, h1, cid, "tasks.web") == task_ips, DEADLINE, "tasks.web follows the new tasks")
    wait_for(lambda: fetch_in(testbed, h1, cid, "web") != "", DEADLINE, "the VIP reaches the new tasks")


def test_agent_restart_converges_without_leaks(testbed, cluster):
    h1, h2, h3 = cluster
    before = our_links(testbed, h2)
    assert any(n.startswith("swt") for n in before)
    testbed.kill_swarmlet(h2)
    testbed.start_swarmlet(h2)
    wait_for(lambda: nodes_by_name(h1)["h2"].status.state == pb.NodeStatus.READY, DEADLINE, "h2 back")
    cid = container_of(testbed, h1, "client")
    wait_for(
        lambda: fetch_in(testbed, h1, cid, "tasks.web") != "" and our_links(testbed, h2) == before,
        DEADLINE,
        "same links on h2 after its agent restarted, web still served",
    )


def test_network_rm_refused_while_used_then_nothing_leaks(testbed, cluster):
    h1, h2, h3 = cluster
    r = fails(testbed, h1, "network", "rm", "back")
    assert "in use by services insider, secret" in r.stderr
    vnis = {n.spec.name: n.vni for n in api(h1).ListNetworks(cpb.ListNetworksRequest()).networks}
    for s in ("secret", "insider", "client", "web"):
        ok(testbed, h1, "service", "rm", s)
    ok(testbed, h1, "network", "rm", "back", "front")
    gone = {f"swb{vnis['back']}", f"swv{vnis['back']}", f"swb{vnis['front']}", f"swv{vnis['front']}"}

    def clean() -> bool:
        return all(
            not (our_links(testbed, h) & gone) and not {n for n in our_links(testbed, h) if n.startswith("swt")}
            for h in (h1, h2, h3)
        )

    wait_for(clean, DEADLINE, "no bridge, VXLAN or veth of removed networks and services on any host")
