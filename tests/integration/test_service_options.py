"""The rest of a Swarm service (issue 11) on the multi-host testbed: container
options inspected in the engines, templates expanded on the nodes, updates
without rm + create, published ports (assigned, ranges, sctp, host mode one
per node), placement preferences, max per node, engine labels, generic
resources, jobs, listings, and bad input that changes nothing.

Three hosts: h1 (manager, engine zone=a), h2 and h3 (workers, engine
zone=b); h2 advertises two named GPUs, h3 one counted GPU. Tests run in file
order on one cluster and remove their services.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
from collections import Counter
from collections.abc import Iterator

import docker.errors
import pytest

from swarmlet.api import control_pb2 as cpb
from swarmlet.api import objects_pb2 as pb
from tests.integration.conftest import PREFIX, SUBNET, testbed_lib
from tests.integration.test_cluster import api, fails, nodes_by_name, ok, tasks
from tests.integration.test_overlay import http_get, sh
from tests.waiting import wait_for

IMAGE = "swarmlet-test:busybox"
SLOW = 120  # deadlines, generous: two cores shared by several testbeds


@pytest.fixture(scope="module")
def bed() -> Iterator[testbed_lib.Testbed]:
    reason = testbed_lib.missing_prerequisites()
    if reason:
        pytest.skip(f"testbed unavailable: {reason}")
    tb = testbed_lib.Testbed(prefix=PREFIX, subnet_index=SUBNET)
    try:
        h1, h2, h3 = tb.up(3, swarmlet=False, engine_labels={1: ["zone=a"], 2: ["zone=b", "disk=ssd"], 3: ["zone=b"]})
        tb.start_swarmlet(h1)
        tb.start_swarmlet(h2, ["--node-generic-resource", "gpu=GPU-1", "--node-generic-resource", "gpu=GPU-2"])
        tb.start_swarmlet(h3, ["--node-generic-resource", "gpu=1"])
        ok(tb, h1, "init", "--advertise-addr", h1.ip)
        token = ok(tb, h1, "join-token", "worker", "-q").stdout.strip()
        for h in (h2, h3):
            ok(tb, h, "join", "--token", token, f"{h1.ip}:4242")
        wait_for(
            lambda: (
                len(nodes_by_name(h1)) == 3
                and all(n.status.state == pb.NodeStatus.READY and n.description.engine_labels for n in nodes_by_name(h1).values())
            ),
            60,
            "3 nodes READY with their engine labels",
        )
        yield tb
    finally:
        tb.down()


def hosts(tb: testbed_lib.Testbed) -> list[testbed_lib.Host]:
    return tb.hosts[:3]


def running(tb: testbed_lib.Testbed, name: str) -> list[pb.Task]:
    return [t for t in tasks(tb.hosts[0], name) if t.desired_state == pb.RUNNING and t.status.state == pb.RUNNING]


def engine_containers(tb: testbed_lib.Testbed, name: str) -> list[tuple[testbed_lib.Host, dict]]:
    """(host, docker inspect) of the running containers of a service."""
    out = []
    for h in hosts(tb):
        api_ = tb.docker(h).api
        for c in api_.containers(filters={"label": [f"swarmlet.service.name={name}"]}):
            try:
                out.append((h, api_.inspect_container(c["Id"])))
            except docker.errors.NotFound:
                continue  # removed between the listing and the inspect: gone
    return out


def node_name(tb: testbed_lib.Testbed, node_id: str) -> str:
    return next(name for name, n in nodes_by_name(tb.hosts[0]).items() if n.id == node_id)


def rm(tb: testbed_lib.Testbed, *names: str) -> None:
    ok(tb, tb.hosts[0], "service", "rm", *names)
    wait_for(lambda: not any(engine_containers(tb, n) for n in names), SLOW, f"containers of {names} gone")


# ---- container options --------------------------------------------------------------


def test_container_options_reach_the_engine(bed: testbed_lib.Testbed, tmp_path) -> None:
    h1 = bed.hosts[0]
    env_file = tmp_path / "env"
    env_file.write_text("# from a file\nFROM_FILE=yes\nOVERRIDE=file\n")
    ok(
        bed,
        h1,
        "service",
        "create",
        "--detach",
        "--name",
        "opts",
        "--label",
        "tier=front",
        "--user",
        "1000:1000",
        "--workdir",
        "/tmp",
        "--hostname",
        "{{.Service.Name}}-{{.Task.Slot}}-{{.Node.Hostname}}",
        "--init",
        "--read-only",
        "--cap-add",
        "net_admin",
        "--cap-drop",
        "CHOWN",
        "--sysctl",
        "net.ipv4.ip_forward=1",
        "--ulimit",
        "nofile=1024:2048",
        "--stop-signal",
        "SIGQUIT",
        "--group",
        "123",
        "--tty",
        "--dns-search",
        "example.test",
        "--dns-option",
        "ndots:2",
        "--dns",
        bed.bridge_ip,
        "--host",
        "db.local:10.1.2.3",
        "--env-file",
        str(env_file),
        "-e",
        "OVERRIDE=flag",
        "-e",
        'WHERE={{.Node.Hostname}}/{{.Node.Platform.OS}}/{{index .Service.Labels "tier"}}/{{.Task.Name}}',
        "--log-driver",
        "json-file",
        "--log-opt",
        "max-size=1m",
        "--limit-pids",
        "64",
        IMAGE,
        "sleep",
        "3600",
    )
    wait_for(lambda: running(bed, "opts"), SLOW, "opts running")
    (t,) = running(bed, "opts")
    ((host, info),) = engine_containers(bed, "opts")
    where = node_name(bed, t.node_id)
    assert host.name == where
    cfg, hc = info["Config"], info["HostConfig"]
    assert (cfg["User"], cfg["WorkingDir"], cfg["Tty"], cfg["StopSignal"]) == ("1000:1000", "/tmp", True, "SIGQUIT")
    # Templates, expanded by the node that runs the task.
    assert cfg["Hostname"] == f"opts-1-{where}"
    env = dict(e.split("=", 1) for e in cfg["Env"])
    assert env["WHERE"] == f"{where}/linux/front/opts.1.{t.id}"
    assert (env["FROM_FILE"], env["OVERRIDE"]) == ("yes", "flag")
    assert hc["Init"] is True and hc["ReadonlyRootfs"] is True
    assert (hc["CapAdd"], hc["CapDrop"]) == (["CAP_NET_ADMIN"], ["CAP_CHOWN"])
    assert hc["Sysctls"] == {"net.ipv4.ip_forward": "1"}
    assert hc["Ulimits"] == [{"Name": "nofile", "Soft": 1024, "Hard": 2048}]
    assert hc["GroupAdd"] == ["123"]
    assert (hc["Dns"], hc["DnsSearch"], hc["DnsOptions"]) == ([bed.bridge_ip], ["example.test"], ["ndots:2"])
    assert hc["ExtraHosts"] == ["db.local:10.1.2.3"]
    assert hc["LogConfig"] == {"Type": "json-file", "Config": {"max-size": "1m"}}
    assert hc["PidsLimit"] == 64
    # And what the process sees.
    code, out = sh(bed, host, info["Id"], "id; hostname; cat /etc/resolv.conf /etc/hosts; ulimit -n; touch /x 2>&1; echo $?")
    assert code == 0, out
    assert "uid=1000 gid=1000 groups=123" in out
    assert f"opts-1-{where}" in out and "search example.test" in out and "options ndots:2" in out
    assert "10.1.2.3\tdb.local" in out and "Read-only file system" in out


def test_update_changes_options_in_place(bed: testbed_lib.Testbed) -> None:
    h1 = bed.hosts[0]
    before = api(h1).GetService(cpb.GetServiceRequest(ref="opts")).service
    ok(
        bed,
        h1,
        "service",
        "update",
        "--label-add",
        "owner=ops",
        "--label-rm",
        "tier",
        "--container-label-add",
        "team=blue",
        "--cap-drop",
        "NET_ADMIN",
        "--host-rm",
        "db.local",
        "--host-add",
        "cache:10.9.9.9",
        "--sysctl-rm",
        "net.ipv4.ip_forward",
        "--ulimit-add",
        "nproc=100",
        "--no-read-only",
        "--entrypoint",
        "/bin/sleep",
        "--args",
        "3601",
        "--update-monitor",
        "1s",
        "opts",
        timeout=SLOW,
    )
    after = api(h1).GetService(cpb.GetServiceRequest(ref="opts")).service
    assert after.id == before.id  # the same service: no rm + create
    assert dict(after.spec.labels) == {"owner": "ops"}
    ((_, info),) = wait_for(
        lambda: [(h, i) for h, i in engine_containers(bed, "opts") if i["Config"]["Labels"].get("team") == "blue"] or None,
        SLOW,
        "the updated container",
    )
    cfg, hc = info["Config"], info["HostConfig"]
    # --cap-drop of an added capability only un-adds it.
    assert not hc["CapAdd"] and hc["CapDrop"] == ["CAP_CHOWN"]
    assert hc["ExtraHosts"] == ["cache:10.9.9.9"] and not hc.get("Sysctls")
    assert {u["Name"] for u in hc["Ulimits"]} == {"nofile", "nproc"} and hc["ReadonlyRootfs"] is False
    assert cfg["Entrypoint"] == ["/bin/sleep"] and cfg["Cmd"] == ["3601"]
    # --rollback, as `docker service update --rollback`: the previous spec again.
    ok(bed, h1, "service", "update", "--rollback", "opts", timeout=SLOW)
    rolled = api(h1).GetService(cpb.GetServiceRequest(ref="opts")).service
    assert dict(rolled.spec.labels) == {"tier": "front"} and list(rolled.spec.task.container.cap_add) == ["CAP_NET_ADMIN"]
    wait_for(
        lambda: [i for _, i in engine_containers(bed, "opts") if i["HostConfig"]["CapAdd"] == ["CAP_NET_ADMIN"]],
        SLOW,
        "the rolled-back container",
    )
    rm(bed, "opts")


def test_health_start_interval_is_run_by_the_agent(bed: testbed_lib.Testbed) -> None:
    """Engine 20.10 ignores the option (API 1.44): the agent probes during
    the start period, so the task is RUNNING while the engine itself still
    says "starting" (its first check is due only after 5 minutes)."""
    h1 = bed.hosts[0]
    ok(
        bed,
        h1,
        "service",
        "create",
        "--detach",
        "--name",
        "quick",
        "--health-cmd",
        "true",
        "--health-interval",
        "5m",
        "--health-start-period",
        "1m",
        "--health-start-interval",
        "200ms",
        IMAGE,
    )
    wait_for(lambda: running(bed, "quick"), SLOW, "quick RUNNING")
    ((_, info),) = engine_containers(bed, "quick")
    assert info["State"]["Health"]["Status"] == "starting"
    rm(bed, "quick")


class FakeDns:
    """A DNS server that answers every A query with one address: the
    upstream a task's --dns names (in the root namespace, on the underlay)."""

    def __init__(self, addr: str, answer: str) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((addr, 53))
        self.sock.settimeout(0.5)
        self.answer = socket.inet_aton(answer)
        self.queries: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self.sock.recvfrom(4096)
            except OSError:
                continue
            i, labels = 12, []
            while data[i]:
                labels.append(data[i + 1 : i + 1 + data[i]].decode())
                i += data[i] + 1
            self.queries.append(".".join(labels))
            head = data[:2] + struct.pack(">HHHHH", 0x8180, 1, 1, 0, 0)
            self.sock.sendto(head + data[12 : i + 5] + struct.pack(">HHHIH", 0xC00C, 1, 1, 5, 4) + self.answer, peer)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


def test_dns_servers_are_the_embedded_dns_upstreams(bed: testbed_lib.Testbed) -> None:
    h1 = bed.hosts[0]
    dns = FakeDns(bed.bridge_ip, "203.0.113.7")
    try:
        ok(bed, h1, "network", "create", "backend")
        ok(bed, h1, "service", "create", "--detach", "--name", "resolver", "--network", "backend", "--dns", bed.bridge_ip, IMAGE)
        wait_for(lambda: running(bed, "resolver"), SLOW, "resolver running")
        ((host, info),) = engine_containers(bed, "resolver")
        # The container asks the embedded server; it answers cluster names itself...
        code, out = sh(bed, host, info["Id"], "cat /etc/resolv.conf; nslookup resolver 127.0.0.11")
        assert "nameserver 127.0.0.11" in out and code == 0, out
        # ... and forwards the others to the task's --dns server.
        code, out = sh(bed, host, info["Id"], "nslookup outside.example 127.0.0.11")
        assert code == 0 and "203.0.113.7" in out, out
        assert "outside.example" in dns.queries
    finally:
        dns.close()
    rm(bed, "resolver")


# ---- published ports ----------------------------------------------------------------------


def test_published_ports_assigned_ranges_sctp(bed: testbed_lib.Testbed) -> None:
    h1, h2, _ = hosts(bed)
    ok(
        bed,
        h1,
        "service",
        "create",
        "--detach",
        "--name",
        "web",
        "--replicas",
        "2",
        "-p",
        "80",
        "-p",
        "9080-9081:80-81",
        "-p",
        "7000:7000/sctp",
        IMAGE,
        "httpd",
        "-f",
        "-p",
        "80",
    )
    svc = json.loads(ok(bed, h1, "service", "inspect", "web").stdout)[0]
    ports = [(p["published_port"], p["target_port"], p["protocol"]) for p in svc["spec"]["endpoint"]["ports"]]
    assert ports == [(30000, 80, "TCP"), (9080, 80, "TCP"), (9081, 81, "TCP"), (7000, 7000, "SCTP")]
    wait_for(lambda: len(running(bed, "web")) == 2, SLOW, "web running")
    # The assigned port and the range answer on any node (the routing mesh).
    wait_for(lambda: _answers(h2.ip, 30000) and _answers(h1.ip, 9080), SLOW, "ports 30000 and 9080 served")
    # This kernel has no SCTP stack to carry traffic: the routing mesh's rule is what can be checked.
    rules = bed.exec_in(h2, ["iptables", "-t", "nat", "-S", "SWARMLET-INGRESS"]).stdout
    assert "-p sctp -m sctp --dport 7000" in rules and "--dport 9081" in rules
    # --publish-rm / --publish-add without rm + create.
    ok(bed, h1, "service", "update", "--detach", "--publish-rm", "80", "--publish-add", "8088:80", "web")
    svc = json.loads(ok(bed, h1, "service", "inspect", "web").stdout)[0]
    assert [p["published_port"] for p in svc["spec"]["endpoint"]["ports"]] == [9081, 7000, 8088]
    wait_for(lambda: _answers(h2.ip, 8088), SLOW, "port 8088 served after --publish-add")
    rm(bed, "web")


def _answers(ip: str, port: int) -> bool:
    try:
        return bool(http_get(ip, port) is not None)
    except OSError:
        return False


def test_host_mode_ports_one_task_per_node(bed: testbed_lib.Testbed) -> None:
    h1 = bed.hosts[0]
    ok(
        bed,
        h1,
        "service",
        "create",
        "--detach",
        "--name",
        "edge",
        "--replicas",
        "4",
        "-p",
        "published=8081,target=80,mode=host",
        IMAGE,
        "httpd",
        "-f",
        "-p",
        "80",
    )
    wait_for(lambda: len(running(bed, "edge")) == 3, SLOW, "3 edge tasks running")
    assert Counter(t.node_id for t in running(bed, "edge")).most_common(1)[0][1] == 1
    pending = [t for t in tasks(h1, "edge") if t.status.state == pb.PENDING]
    assert len(pending) == 1 and "host-mode port 8081/tcp in use" in pending[0].status.err
    # Another service may publish the same host port (per node, not the cluster's): it waits for a free node.
    r = ok(bed, h1, "service", "create", "--detach", "--name", "edge2", "-p", "published=8081,target=80,mode=host", IMAGE)
    assert r.returncode == 0
    wait_for(
        lambda: [t for t in tasks(h1, "edge2") if "host-mode port 8081/tcp in use" in t.status.err],
        SLOW,
        "edge2 pending on the host port",
    )
    # Each node answers on 8081 with its own task (host mode: no routing mesh).
    for h in hosts(bed):
        wait_for(lambda h=h: _answers(h.ip, 8081), SLOW, f"{h.name}:8081 served")
    rm(bed, "edge", "edge2")


# ---- placement ----------------------------------------------------------------------------


def test_placement_preferences_max_per_node_engine_labels(bed: testbed_lib.Testbed) -> None:
    h1 = bed.hosts[0]
    ok(
        bed,
        h1,
        "service",
        "create",
        "--detach",
        "--name",
        "spread",
        "--replicas",
        "6",
        "--placement-pref",
        "spread=engine.labels.zone",
        IMAGE,
    )
    wait_for(lambda: len(running(bed, "spread")) == 6, SLOW, "6 spread tasks running")
    per_host = Counter(node_name(bed, t.node_id) for t in running(bed, "spread"))
    # zone a is h1 alone, zone b is h2 and h3: half the tasks each.
    assert per_host["h1"] == 3 and per_host["h2"] + per_host["h3"] == 3
    ok(bed, h1, "service", "create", "--detach", "--name", "capped", "--replicas", "4", "--replicas-max-per-node", "1", IMAGE)
    wait_for(lambda: len(running(bed, "capped")) == 3, SLOW, "3 capped tasks running")
    prog = api(h1).ServiceProgress(cpb.ServiceProgressRequest(ref="capped"))
    assert "max replicas per node (1) reached" in prog.stuck
    assert "(max 1 per node)" in ok(bed, h1, "service", "ls").stdout
    ok(bed, h1, "service", "create", "--detach", "--name", "ssd", "--constraint", "engine.labels.disk==ssd", IMAGE)
    wait_for(lambda: running(bed, "ssd"), SLOW, "ssd running")
    assert {node_name(bed, t.node_id) for t in running(bed, "ssd")} == {"h2"}
    rm(bed, "spread", "capped", "ssd")


def test_generic_resources(bed: testbed_lib.Testbed) -> None:
    h1 = bed.hosts[0]
    ok(bed, h1, "service", "create", "--detach", "--name", "gpu", "--replicas", "4", "--generic-resource", "gpu=1", IMAGE)
    wait_for(lambda: len(running(bed, "gpu")) == 3, SLOW, "3 gpu tasks running (h2 has 2, h3 has 1)")
    assert Counter(node_name(bed, t.node_id) for t in running(bed, "gpu")) == {"h2": 2, "h3": 1}
    envs = sorted(
        e for h, info in engine_containers(bed, "gpu") for e in info["Config"]["Env"] if e.startswith("DOCKER_RESOURCE_GPU=")
    )
    assert envs == ["DOCKER_RESOURCE_GPU=1", "DOCKER_RESOURCE_GPU=GPU-1", "DOCKER_RESOURCE_GPU=GPU-2"]
    prog = api(h1).ServiceProgress(cpb.ServiceProgressRequest(ref="gpu"))
    assert "insufficient gpu (needs 1)" in prog.stuck
    r = fails(bed, h1, "service", "create", "--name", "tpu", "--generic-resource", "tpu=1", IMAGE)
    assert "no node advertises it" in r.stderr
    rm(bed, "gpu")


# ---- jobs -----------------------------------------------------------------------------------


def test_replicated_job_completes_and_runs_again_on_force(bed: testbed_lib.Testbed) -> None:
    h1 = bed.hosts[0]
    r = ok(
        bed,
        h1,
        "service",
        "create",
        "--name",
        "batch",
        "--mode",
        "replicated-job",
        "--replicas",
        "4",
        "--max-concurrent",
        "2",
        IMAGE,
        "sh",
        "-c",
        "sleep 1",
        timeout=SLOW,
    )
    assert "job progress: 4 out of 4 tasks completed" in r.stdout and "job complete" in r.stdout
    ts = tasks(h1, "batch")
    assert len(ts) == 4 and all(t.status.state == pb.COMPLETE and t.desired_state == pb.COMPLETE for t in ts)
    ps = ok(bed, h1, "service", "ps", "batch").stdout
    assert ps.count("Complete") == 8  # desired and current state of each task
    assert "replicated-job   0/2 (4/4 completed)" in ok(bed, h1, "service", "ls").stdout
    ok(bed, h1, "service", "update", "--force", "batch", timeout=SLOW)
    ts = tasks(h1, "batch")
    assert Counter(t.job_iteration for t in ts) == {0: 4, 1: 4}
    assert all(t.status.state == pb.COMPLETE for t in ts)
    rm(bed, "batch")


def test_global_job_and_failing_job(bed: testbed_lib.Testbed) -> None:
    h1 = bed.hosts[0]
    ok(bed, h1, "service", "create", "--name", "everywhere", "--mode", "global-job", IMAGE, "true", timeout=SLOW)
    assert sorted(node_name(bed, t.node_id) for t in tasks(h1, "everywhere") if t.status.state == pb.COMPLETE) == [
        "h1",
        "h2",
        "h3",
    ]
    r = fails(
        bed,
        h1,
        "service",
        "create",
        "--name",
        "broken",
        "--mode",
        "replicated-job",
        "--restart-condition",
        "none",
        IMAGE,
        "sh",
        "-c",
        "exit 3",
        timeout=SLOW,
    )
    assert "restart condition is none" in r.stderr and "exit" in r.stderr
    rm(bed, "everywhere", "broken")


# ---- listings ------------------------------------------------------------------------


def test_listings_filter(bed: testbed_lib.Testbed) -> None:
    h1, h2, _ = hosts(bed)
    ok(bed, h1, "service", "create", "--detach", "--name", "front", "--label", "tier=web", IMAGE)
    ok(bed, h1, "service", "create", "--detach", "--name", "agent", "--mode", "global", IMAGE)
    assert ok(bed, h1, "service", "ls", "-q", "--filter", "mode=global").stdout.split() == [_sid(h1, "agent")]
    listed = json.loads(ok(bed, h1, "service", "ls", "--format", "json", "--filter", "label=tier=web").stdout)["services"]
    assert [s["service"]["spec"]["name"] for s in listed] == ["front"]
    assert ok(bed, h1, "service", "ls", "--filter", "name=fr").stdout.count("\n") == 2  # header + front
    by_name = nodes_by_name(h1)
    zone_b = ok(bed, h1, "node", "ls", "-q", "--filter", "label=zone=b").stdout.split()
    assert sorted(zone_b) == sorted([by_name["h2"].id, by_name["h3"].id])
    ok(bed, h1, "node", "update", "--label-add", "rack=r1", "h3")
    assert ok(bed, h1, "node", "ls", "-q", "--filter", "node.label=rack").stdout.split() == [nodes_by_name(h1)["h3"].id]
    assert ok(bed, h1, "node", "ls", "-q", "-f", "role=manager").stdout.split() == [nodes_by_name(h1)["h1"].id]
    assert "invalid filter" in fails(bed, h1, "node", "ls", "--filter", "color=red").stderr
    rm(bed, "front", "agent")


def _flat(text: str) -> str:
    """A message as one line, without the frame typer draws around usage errors."""
    return " ".join(text.translate({ord(c): " " for c in "│╭╮╰╯─"}).split())


def _sid(manager, name: str) -> str:
    return api(manager).GetService(cpb.GetServiceRequest(ref=name)).service.id


# ---- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args,words",
    [
        (["--cap-add", "CAP_TELEPORT"], "unknown capability 'CAP_TELEPORT'"),
        (["--ulimit", "nofile=many"], "invalid ulimit 'nofile=many'"),
        (["--sysctl", "vm.swappiness=10"], "sysctl vm.swappiness is not namespaced"),
        (["--sysctl", "net.core.somaxconn"], "expected KEY=VALUE"),
        (["-e", "X={{.Node.Name}}"], "unknown template field {{.Node.Name}}"),
        (["--hostname", "{{.Task.Nope}}"], "unknown template field {{.Task.Nope}}"),
        (["--mode", "replicated-job", "--restart-condition", "any"], "cannot use --restart-condition any"),
        (["--placement-pref", "spread=node.id"], "invalid placement preference"),
    ],
)
def test_bad_input_is_refused_and_creates_nothing(bed: testbed_lib.Testbed, args: list[str], words: str) -> None:
    h1 = bed.hosts[0]
    before = ok(bed, h1, "service", "ls", "-q").stdout
    r = fails(bed, h1, "service", "create", "--name", "bad", *args, IMAGE)
    assert words in _flat(r.stderr), r.stderr
    assert ok(bed, h1, "service", "ls", "-q").stdout == before
