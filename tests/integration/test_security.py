"""Issue 13 (part B) on the testbed: real daemons, real Raft across
processes, real mTLS, real engines.

h1, h2, h3 form an autolocked cluster of three managers; h4 stays outside
until the restore at the end. Tests run in file order and share the cluster:
bounded input and reserved ports/subnets first, then the join port and the
Raft port under floods, a locked manager, a demotion that rotates the Raft
secret under writes, a large encrypted backup restored on h4, and last the
search for secrets in every state file, log and backup (by then each manager
has written a Raft snapshot).
"""

from __future__ import annotations

import base64
import json
import os
import socket
import stat
import struct
import subprocess
import threading

import grpc
import pytest

from swarmlet import tls
from swarmlet.api import ca_pb2, ca_pb2_grpc
from swarmlet.api import control_pb2 as cpb
from swarmlet.api import control_pb2_grpc as cpb_grpc
from swarmlet.api import objects_pb2 as pb
from swarmlet.manager import backup as bk
from swarmlet.manager import rafttransport as rt
from tests.integration.test_cluster import IMAGE, api, fails, nodes_by_name, ok
from tests.unit.manager.test_rafttransport import Peer
from tests.waiting import wait_for

PASSPHRASE = "correct horse battery staple"


def cli_with_input(testbed, host, stdin: str, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI with something on standard input (a key): testbed.cli gives none."""
    cmd = [testbed.python, "-m", "swarmlet", "-H", f"unix://{host.swarmlet_sock}", *args]
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=120, env=testbed._swarmlet_env(), cwd=root)


def rss_of(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def info(host) -> cpb.InfoResponse:
    return api(host).Info(cpb.InfoRequest(), timeout=10)


def create_retrying(testbed, host, name: str, timeout: float = 60) -> None:
    """`service create` of an empty service, retried over a leader election
    (a loaded CI machine may hold one at any moment)."""

    def attempt() -> bool:
        r = testbed.cli(host, "service", "create", "--detach", "--name", name, "--replicas", "0", IMAGE, "sleep", "1")
        return r.returncode == 0 or "already exists" in r.stderr

    wait_for(attempt, timeout, f"service {name} created", interval=1.0)


def decrypted_backup(testbed, host, tmp_path, name: str):
    path = tmp_path / name
    key = tmp_path / "passphrase"
    key.write_text(PASSPHRASE + "\n")
    ok(testbed, host, "cluster", "backup", "--key-file", str(key), str(path))
    data = path.read_bytes()
    return path, data, bk.decode(data, PASSPHRASE)


@pytest.fixture(scope="module")
def cluster(testbed):
    h1, h2, h3, h4 = testbed.hosts[:4]
    r = ok(testbed, h1, "init", "--autolock", "--advertise-addr", h1.ip)
    unlock = next(w for w in r.stdout.split() if w.startswith("SWLKEY-1-"))
    token = ok(testbed, h1, "join-token", "manager", "-q").stdout.strip()
    for h in (h2, h3):
        ok(testbed, h, "join", "--token", token, f"{h1.ip}:4242")
    wait_for(
        lambda: len(nodes_by_name(h1)) == 3 and all(n.status.state == pb.NodeStatus.READY for n in nodes_by_name(h1).values()),
        60,
        "3 managers READY",
    )
    return h1, h2, h3, h4, unlock


# ---------------------------------------------------------------- bounded input


def test_oversized_or_infinite_input_is_refused_and_changes_nothing(testbed, cluster):
    h1 = cluster[0]
    big = "x" * 2_500_000  # issue 14's label that jammed a node
    r = fails(testbed, h1, "service", "create", "--name", "big", "--label", f"big={big[:100_000]}", IMAGE, "sleep", "1")
    assert "more than the limit" in r.stderr and "big" in r.stderr
    r = fails(testbed, h1, "service", "create", "--name", "inf", "--stop-grace-period", "99999999999h", IMAGE, "sleep", "1")
    assert "--stop-grace-period" in r.stderr and "limit" in r.stderr
    spec = pb.ServiceSpec(name="nan")
    spec.task.container.image = IMAGE
    spec.replicated.replicas = 1
    spec.task.container.healthcheck.interval = float("inf")
    with pytest.raises(grpc.RpcError) as e:
        api(h1).CreateService(cpb.CreateServiceRequest(spec=spec), timeout=30)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "--health-interval" in e.value.details()
    assert list(api(h1).ListServices(cpb.ListServicesRequest()).services) == []


def test_swarmlets_own_ports_and_subnets_are_refused(testbed, cluster):
    h1 = cluster[0]
    for publish, words in (("4243:80", "the Raft port"), ("4242:80", "the join port"), ("4789:80/udp", "VXLAN")):
        r = fails(testbed, h1, "service", "create", "--name", "p", "-p", publish, IMAGE, "sleep", "1")
        assert "reserved by swarmlet" in r.stderr and words in r.stderr, r.stderr
    for subnet, words in (
        ("0.0.0.0/0", "too large"),
        ("127.0.0.0/8", "loopback"),
        (f"{h1.ip.rsplit('.', 1)[0]}.0/24", "(the underlay network)"),
        ("172.31.2.0/24", "Docker engine network 172.31.2.0/24 of node h2"),
    ):
        r = fails(testbed, h1, "network", "create", "--subnet", subnet, "n")
        assert words in r.stderr, r.stderr
    assert "n" not in ok(testbed, h1, "network", "ls").stdout.split()
    ok(testbed, h1, "network", "create", "--subnet", "10.77.0.0/24", "fine")
    ok(testbed, h1, "network", "rm", "fine")


# ---------------------------------------------------------------- ports under floods


def test_join_token_guessing_is_limited_per_source_and_logged(testbed, cluster):
    h1 = cluster[0]
    token = ok(testbed, h1, "join-token", "worker", "-q").stdout.strip()
    digest, _ = tls.parse_token(token)
    addr = f"{h1.ip}:4242"
    ca_pem = tls.fetch_remote_ca(addr, digest)
    bad = token[: token.rindex("-") + 1] + "a" * 32
    codes = []
    with grpc.secure_channel(addr, tls.channel_credentials(ca_pem), options=tls.CHANNEL_OPTIONS) as ch:
        stub = ca_pb2_grpc.CAStub(ch)
        req = ca_pb2.IssueNodeCertificateRequest(token=bad, csr_pem=tls.make_csr(tls.new_node_key()), hostname="x")
        for _ in range(300):
            try:
                stub.IssueNodeCertificate(req, timeout=10)
                codes.append(grpc.StatusCode.OK)
            except grpc.RpcError as e:
                codes.append(e.code())
    assert grpc.StatusCode.OK not in codes
    assert codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED) >= 250, codes[:30]
    log = open(h1.log_path).read()
    refusals = [line for line in log.splitlines() if "join refused from" in line]
    assert refusals and "invalid join token" in log
    assert bad not in log and bad.rsplit("-", 1)[1] not in log


def test_a_1gib_length_prefix_to_the_raft_port_leaves_memory_flat(testbed, cluster):
    h1 = cluster[0]
    pid = testbed._swarmlet_pid(h1)
    assert pid
    before = rss_of(pid)
    chunk = b"\0" * (1 << 20)
    sent = 0
    with socket.create_connection((h1.ip, 4243), timeout=10) as s:
        try:
            s.sendall(struct.pack("i", 1 << 30))
            while sent < 512 << 20:
                s.sendall(chunk)
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            pass
    # The daemon has dealt with the frame once it logged its refusal.
    refused = "a frame of 1073741824 bytes announced before authentication"
    wait_for(lambda: refused in open(h1.log_path).read(), 30, "the daemon refusing the frame")
    grown = rss_of(pid) - before
    assert sent < 32 << 20, f"the daemon kept reading {sent >> 20} MiB of a frame it can never accept"
    assert grown < 32 << 20, f"the daemon's memory grew by {grown >> 20} MiB"
    create_retrying(testbed, h1, "after-flood")


# ---------------------------------------------------------------- autolock


def test_a_restarted_manager_is_locked_and_refuses_work_until_unlocked(testbed, cluster):
    h1, h2, _, _, unlock = cluster
    testbed.kill_swarmlet(h2)
    testbed.start_swarmlet(h2)
    i = info(h2)
    assert i.state == "locked" and "swarmlet unlock" in i.error
    r = fails(testbed, h2, "service", "ls")
    assert "This manager is locked" in r.stderr
    # The others carry on meanwhile (two of three managers).
    create_retrying(testbed, h1, "while-locked")
    wrong = cli_with_input(testbed, h2, "SWLKEY-1-" + "A" * 52 + "\n", "unlock")
    assert wrong.returncode != 0 and "invalid unlock key" in wrong.stderr
    assert info(h2).state == "locked"
    right = cli_with_input(testbed, h2, unlock + "\n", "unlock")
    assert right.returncode == 0, right.stderr
    wait_for(lambda: "while-locked" in ok(testbed, h2, "service", "ls").stdout, 60, "the unlocked manager caught up")
    assert info(h2).state == "active"


# ---------------------------------------------------------------- the Raft secret


def test_a_demotion_rotates_the_raft_secret_without_a_failed_write(testbed, cluster, tmp_path):
    h1, h2, h3, _, _ = cluster
    _, _, before = decrypted_backup(testbed, h1, tmp_path, "before.swl")
    old = before.cluster.raft_secret
    stub = api(h1)
    failures: list[str] = []
    done = threading.Event()
    writes = [0]

    def writer() -> None:
        while not done.is_set():
            spec = pb.ServiceSpec(name=f"w{writes[0]}")
            spec.task.container.image = IMAGE
            spec.replicated.replicas = 0
            try:
                stub.CreateService(cpb.CreateServiceRequest(spec=spec), timeout=30)
                writes[0] += 1
            except grpc.RpcError as e:
                failures.append(f"{e.code()}: {e.details()}")

    t = threading.Thread(target=writer)
    t.start()
    try:
        wait_for(lambda: writes[0] >= 3, 60, "the writer under way")
        ok(testbed, h1, "node", "demote", "h3")
        wait_for(
            lambda: (
                "complete" in ok(testbed, h1, "cluster", "raft-secret").stdout
                and "epoch: 1" in ok(testbed, h1, "cluster", "raft-secret").stdout
            ),
            60,
            "the rotation completed",
        )
        after = writes[0]
        wait_for(lambda: writes[0] >= after + 3, 60, "writes going on after the rotation")
    finally:
        done.set()
        t.join(60)
    assert not failures, failures[:5]
    assert writes[0] > 5
    status = ok(testbed, h1, "cluster", "raft-secret").stdout
    assert "demoted" in status
    # The secret h3 held opens no Raft port any more; the new one does.
    with pytest.raises((ConnectionResetError, OSError, AssertionError)):
        Peer(4243, rt._fernet(old), host=h1.ip).close()
    _, _, after = decrypted_backup(testbed, h1, tmp_path, "after.swl")
    assert after.cluster.raft_secret != old and after.cluster.raft_secret_epoch == 1
    Peer(4243, rt._fernet(after.cluster.raft_secret), host=h1.ip).close()
    wait_for(lambda: nodes_by_name(h1)["h3"].role == pb.NodeSpec.WORKER, 60, "h3 a worker")
    # On demand too.
    r = ok(testbed, h1, "cluster", "raft-secret", "--rotate", timeout=240)
    assert "epoch: 2" in r.stdout and "complete" in r.stdout


# ---------------------------------------------------------------- backups


def test_a_large_encrypted_backup_restores_on_a_fresh_host(testbed, cluster, tmp_path):
    h1, _, _, h4, unlock = cluster
    stub = api(h1)
    for i in range(20):  # 20 x ~230 KiB of labels: a backup over gRPC's default 4 MiB
        spec = pb.ServiceSpec(name=f"big{i}")
        spec.task.container.image = IMAGE
        spec.replicated.replicas = 0
        spec.labels.update({f"k{j}": "v" * 4000 for j in range(58)})
        stub.CreateService(cpb.CreateServiceRequest(spec=spec), timeout=30)
    path = tmp_path / "big.swl"
    out = ok(testbed, h1, "cluster", "backup", str(path)).stdout
    # Autolocked: encrypted with the unlock key, no new key printed.
    assert "unlock key" in out and "SWLBKP" not in out
    assert path.stat().st_size > 4 << 20
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    r = fails(testbed, h4, "cluster", "restore", "--key-file", "/dev/null", str(path))
    assert "this backup is encrypted" in r.stderr and info(h4).state == "inactive"
    keyfile = tmp_path / "unlock"
    keyfile.write_text(unlock + "\n")
    ok(testbed, h4, "cluster", "restore", "--key-file", str(keyfile), str(path), timeout=240)
    wait_for(lambda: info(h4).is_leader, 60, "the restored manager leads")
    big = [("grpc.max_receive_message_length", 64 << 20)]
    with grpc.insecure_channel(f"unix://{h4.swarmlet_sock}", options=big) as ch:
        listed = cpb_grpc.ControlStub(ch).ListServices(cpb.ListServicesRequest(), timeout=30).services
    assert {f"big{i}" for i in range(20)} <= {s.service.spec.name for s in listed}
    ok(testbed, h4, "leave", "--force")


# ---------------------------------------------------------------- secrets at rest


def _forms(secret: bytes) -> list[bytes]:
    return [secret, secret.hex().encode(), base64.b64encode(secret), base64.urlsafe_b64encode(secret)]


def test_no_secret_in_clear_in_state_files_logs_inspect_or_backups(testbed, cluster, tmp_path):
    h1, h2, h3, h4, unlock = cluster
    managers = (h1, h2)
    # Every manager writes a Raft snapshot within a minute of starting.
    wait_for(
        lambda: all(os.path.exists(os.path.join(h.state_dir, "raft", "snapshot")) for h in managers),
        120,
        "a Raft snapshot on each manager",
    )
    backup_path, backup_data, snap = decrypted_backup(testbed, h1, tmp_path, "final.swl")
    c = snap.cluster
    assert c is not None and c.spec.autolock
    tokens = [ok(testbed, h1, "join-token", role, "-q").stdout.strip() for role in ("worker", "manager")]
    secrets = {
        "CA key": c.root_ca.key_pem,
        "CA key body": c.root_ca.key_pem.split(b"\n")[1],
        "worker token": tokens[0].encode(),
        "worker token secret": tokens[0].rsplit("-", 1)[1].encode(),
        "manager token secret": tokens[1].rsplit("-", 1)[1].encode(),
        "unlock key": unlock.encode(),
    }
    for i, form in enumerate(_forms(c.raft_secret)):
        secrets[f"raft secret ({i})"] = form
    files: dict[str, bytes] = {str(backup_path): backup_data}
    for h in (h1, h2, h3, h4):
        for d, _, names in os.walk(h.state_dir):
            for n in names:
                with open(os.path.join(d, n), "rb") as f:
                    files[os.path.join(d, n)] = f.read()
        with open(h.log_path, "rb") as f:
            files[h.log_path] = f.read()
    for h in managers:
        assert any(p.startswith(h.state_dir) and p.endswith("/raft/wal") for p in files)
    # What users see: inspect and listings.
    files["node inspect"] = ok(testbed, h1, "node", "inspect", "h1").stdout.encode()
    files["node ls"] = ok(testbed, h1, "node", "ls", "--format", "json").stdout.encode()
    files["info"] = ok(testbed, h1, "info", "--format", "json").stdout.encode()
    for where, data in files.items():
        for what, secret in secrets.items():
            assert secret not in data, f"{what} in clear in {where}"
    # And the CLI socket is root's alone.
    assert stat.S_IMODE(os.stat(h1.swarmlet_sock).st_mode) == 0o600
    assert json.loads(backup_data.partition(b"\n")[0])["encryption"]["key"] == "passphrase"
