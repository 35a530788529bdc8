"""Volumes, secrets and configs on the multi-host testbed (issue 10): real
engines, real containers, real tmpfs.

h1 is the manager, h2..h4 workers; every service is pinned to h2, so h3 and
h4 are nodes with no task using the secrets. Tests run in file order on one
cluster. The plaintext searches read every file under each host's directory
(state dir, engine data root, logs) and exec root without crossing into
other filesystems (the tmpfs that holds the secrets is memory), the daemons'
memory, and the managers' Raft files and a backup.
"""

from __future__ import annotations

import os
import secrets as pysecrets
import stat
import subprocess
import time
from pathlib import Path

import pytest

from swarmlet.api import control_pb2 as cpb
from swarmlet.api import objects_pb2 as pb
from tests.integration.test_cluster import api, containers, fails, nodes_by_name, ok, running_tasks, tasks
from tests.integration.test_ha import info
from tests.waiting import wait_for

IMAGE = "swarmlet-test:busybox"
# Random per run: a hit can only come from this run's secret.
PLAINTEXT = ("kv-secret-" + pysecrets.token_hex(16)).encode()
ROTATED = ("kv-rotated-" + pysecrets.token_hex(16)).encode()
CONFIG_TEXT = b"listen 8080\nworkers 4\n"
MISSING_BIND = "/srv/swarmlet-kv-missing-source"
SLOW = 180


# ---- helpers ----


@pytest.fixture(scope="module")
def cluster(testbed):
    hosts = testbed.hosts[:4]
    h1 = hosts[0]
    ok(testbed, h1, "init", "--advertise-addr", h1.ip)
    token = ok(testbed, h1, "join-token", "worker", "-q").stdout.strip()
    for h in hosts[1:]:
        ok(testbed, h, "join", "--token", token, f"{h1.ip}:4242")
    wait_for(
        lambda: len(nodes_by_name(h1)) == 4 and all(n.status.state == pb.NodeStatus.READY for n in nodes_by_name(h1).values()),
        60,
        "4 nodes READY",
    )
    return hosts


def cli_with_input(testbed, host, data: bytes, *args: str) -> subprocess.CompletedProcess[bytes]:
    cmd = [testbed.python, "-m", "swarmlet", "-H", f"unix://{host.swarmlet_sock}", *args]
    return subprocess.run(cmd, input=data, capture_output=True, timeout=60, env=testbed._swarmlet_env())


def the_container(testbed, host, service: str):
    """The one running container of `service` on `host`."""
    found = wait_for(lambda: containers(testbed, host, service), SLOW, f"a running container of {service} on {host.name}")
    assert len(found) == 1, found
    return testbed.docker(host).containers.get(found[0].id)


def run_in(container, *cmd: str, user: str = "") -> tuple[int, str]:
    r = container.exec_run(list(cmd), user=user)
    return r.exit_code, r.output.decode(errors="replace")


def converged(testbed, host, name: str, n: int = 1) -> list[pb.Task]:
    return wait_for(lambda: len(running_tasks(host, name)) == n and running_tasks(host, name), SLOW, f"{name}: {n} running")


def files_holding(needle: bytes, roots: list[str], skip: tuple[str, ...] = ()) -> list[str]:
    """Regular files under `roots` whose bytes contain `needle`, without
    crossing into other filesystems (as `find -xdev`): what is on the disk.
    Directories in `skip` are searched by a test of their own."""
    hits = []
    for root in roots:
        if not os.path.isdir(root):
            continue
        dev = os.stat(root).st_dev
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = [
                d for d in dirnames if os.lstat(os.path.join(dirpath, d)).st_dev == dev and os.path.join(dirpath, d) not in skip
            ]
            for name in filenames:
                path = os.path.join(dirpath, name)
                try:
                    info = os.lstat(path)
                    if not stat.S_ISREG(info.st_mode) or info.st_dev != dev:
                        continue
                    with open(path, "rb") as f:
                        tail = b""
                        while chunk := f.read(1 << 20):
                            if needle in tail + chunk:
                                hits.append(path)
                                break
                            tail = chunk[-len(needle) :]
                except OSError:
                    continue  # gone meanwhile (a log rotated, a layer removed)
    return hits


def disk_of(host) -> list[str]:
    """Everything a host keeps on disk: its directory (swarmlet state dir,
    engine data root, both logs) and the engine's exec root."""
    return [host.host_dir, host.exec_root]


def daemon_memory_holds(host, needle: bytes) -> bool:
    """Whether the swarmlet daemon's process memory (heap and anonymous
    mappings) holds `needle`: what a node keeps in memory."""
    pid = int((Path(host.host_dir) / "swarmlet.pid").read_text().strip())
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", buffering=0) as mem:
        for line in maps:
            parts = line.split()
            addr, perms = parts[0], parts[1]
            path = parts[5] if len(parts) > 5 else ""
            if not perms.startswith("r") or (path and path not in ("[heap]", "[stack]")):
                continue
            lo, hi = (int(x, 16) for x in addr.split("-"))
            tail = b""
            try:
                for start in range(lo, hi, 16 << 20):  # in bounded pieces: a region may be large
                    mem.seek(start)
                    chunk = tail + mem.read(min(16 << 20, hi - start))
                    if needle in chunk:
                        return True
                    tail = chunk[-len(needle) :]
            except (OSError, OverflowError, ValueError):
                continue
    return False


def mount_type(path: str) -> str | None:
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            if left.split()[4] == path:
                return right.split()[0]
    return None


def digest(host) -> str:
    return api(host).Info(cpb.InfoRequest()).state_digest


# ---- bad input ----


def test_bad_input_is_refused_and_changes_nothing(testbed, cluster, tmp_path):
    h1 = cluster[0]
    r = cli_with_input(testbed, h1, b"first-value", "secret", "create", "dup", "-")
    assert r.returncode == 0, r.stderr
    before = digest(h1)
    big = tmp_path / "big"
    big.write_bytes(b"x" * (500 * 1024 + 1))
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    for args, message in (
        (("secret", "create", "big", str(big)), "the limit is 512000 bytes"),
        (("secret", "create", "empty", str(empty)), "is empty"),
        (("secret", "create", "bad/name", str(big)), "invalid secret name"),
        (("config", "create", "bad.", str(empty)), "invalid config name"),
        (("service", "create", "--name", "x", "--secret", "nope", IMAGE), "secret 'nope' not found"),
        (("service", "create", "--name", "x", "--config", "source=nope,target=/x", IMAGE), "config 'nope' not found"),
        (("service", "create", "--name", "x", "--mount", "type=volume,source=data", IMAGE), "target is required"),
        (("service", "create", "--name", "x", "--mount", "type=nfs,target=/x", IMAGE), "unknown mount type 'nfs'"),
        (("service", "create", "--name", "x", "--mount", "type=bind,source=rel,target=/x", IMAGE), "must be an absolute path"),
    ):
        r = fails(testbed, h1, *args)
        assert message in r.stderr, (args, r.stderr)
    r = cli_with_input(testbed, h1, b"second", "secret", "create", "dup", "-")
    assert r.returncode != 0 and b"a secret named 'dup' already exists" in r.stderr, r.stderr
    assert digest(h1) == before
    ok(testbed, h1, "secret", "rm", "dup")


# ---- volumes and tmpfs ----


def test_volume_keeps_data_across_a_killed_container_and_an_update(testbed, cluster):
    h1, h2 = cluster[0], cluster[1]
    ok(
        testbed,
        h1,
        "service",
        "create",
        "--name",
        "vol",
        "--constraint",
        "node.hostname==h2",
        "--restart-delay",
        "1s",
        "--mount",
        "type=volume,source={{.Service.Name}}-data-{{.Task.Slot}},target=/data",
        "--mount",
        "type=tmpfs,target=/scratch,tmpfs-size=8m",
        IMAGE,
        timeout=SLOW,
    )
    (first,) = converged(testbed, h1, "vol")
    c = the_container(testbed, h2, "vol")
    # The tmpfs: empty, of the asked size, memory.
    assert run_in(c, "ls", "-A", "/scratch") == (0, "")
    code, mounts = run_in(c, "cat", "/proc/mounts")
    (line,) = [ln for ln in mounts.splitlines() if " /scratch " in ln]
    assert line.startswith("tmpfs /scratch tmpfs") and "size=8192k" in line, line
    # The volume: named by the template, created on demand by h2's engine.
    assert testbed.docker(h2).volumes.get("vol-data-1").attrs["Driver"] == "local"
    assert run_in(c, "sh", "-c", "echo kept-by-the-volume > /data/f && echo gone > /scratch/g")[0] == 0

    c.kill()
    replaced = wait_for(
        lambda: [t for t in running_tasks(h1, "vol") if t.id != first.id], SLOW, "a replacement task running after the kill"
    )
    assert replaced[0].node_id == first.node_id
    c2 = the_container(testbed, h2, "vol")
    assert c2.id != c.id
    assert run_in(c2, "cat", "/data/f") == (0, "kept-by-the-volume\n")
    assert run_in(c2, "ls", "-A", "/scratch") == (0, "")  # a tmpfs starts empty every time

    ok(testbed, h1, "service", "update", "--env-add", "V=2", "--update-monitor", "1s", "vol", timeout=SLOW)
    converged(testbed, h1, "vol")
    c3 = wait_for(lambda: (c := the_container(testbed, h2, "vol")).id != c2.id and c, SLOW, "the updated task's container")
    assert run_in(c3, "cat", "/data/f") == (0, "kept-by-the-volume\n")
    ok(testbed, h1, "service", "rm", "vol")
    wait_for(lambda: not containers(testbed, h2, "vol", all_=True), SLOW, "vol's containers removed")
    # The named volume outlives the service, as in Swarm (data is never dropped behind a user's back).
    assert testbed.docker(h2).volumes.get("vol-data-1")


def test_a_missing_bind_source_rejects_the_task_with_the_reason(testbed, cluster):
    h1 = cluster[0]
    assert not os.path.exists(MISSING_BIND)
    ok(
        testbed,
        h1,
        "service",
        "create",
        "--detach",
        "--name",
        "bind",
        "--constraint",
        "node.hostname==h2",
        "--mount",
        f"type=bind,source={MISSING_BIND},target=/x",
        IMAGE,
    )
    reason = f"bind source path does not exist: {MISSING_BIND}"
    wait_for(
        lambda: any(t.status.state == pb.REJECTED and reason in t.status.err for t in tasks(h1, "bind")),
        SLOW,
        "a task rejected for its bind source",
    )
    table = ok(testbed, h1, "service", "ps", "--no-trunc", "bind").stdout
    assert reason in table and "Rejected" in table, table
    ok(testbed, h1, "service", "rm", "bind")


# ---- secrets and configs ----


def test_a_secret_and_a_config_inside_the_container(testbed, cluster):
    h1, h2 = cluster[0], cluster[1]
    r = cli_with_input(testbed, h1, PLAINTEXT, "secret", "create", "db-pass", "-")
    assert r.returncode == 0, r.stderr
    r = cli_with_input(testbed, h1, CONFIG_TEXT, "config", "create", "app.conf", "-")
    assert r.returncode == 0, r.stderr
    ok(
        testbed,
        h1,
        "service",
        "create",
        "--name",
        "sec",
        "--constraint",
        "node.hostname==h2",
        "--update-monitor",
        "1s",
        "--secret",
        "source=db-pass,target=db-pass,uid=1000,mode=0400",
        "--config",
        "source=app.conf,target=/etc/app/app.conf,mode=0440",
        IMAGE,
        timeout=SLOW,
    )
    converged(testbed, h1, "sec")
    c = the_container(testbed, h2, "sec")
    assert run_in(c, "stat", "-c", "%a %u %g", "/run/secrets/db-pass") == (0, "400 1000 0\n")
    assert run_in(c, "cat", "/run/secrets/db-pass", user="1000") == (0, PLAINTEXT.decode())
    assert run_in(c, "cat", "/run/secrets/db-pass", user="1001")[0] != 0  # mode 0400: the owner only
    code, out = run_in(c, "sh", "-c", "echo x > /run/secrets/db-pass")
    assert code != 0 and "Read-only file system" in out, out
    assert run_in(c, "cat", "/etc/app/app.conf") == (0, CONFIG_TEXT.decode())
    assert run_in(c, "stat", "-c", "%a", "/etc/app/app.conf") == (0, "440\n")
    # The file the container sees lives in h2's secrets tmpfs (memory).
    sources = [m["Source"] for m in c.attrs["Mounts"] if m["Destination"] == "/run/secrets/db-pass"]
    secrets_dir = os.path.join(h2.state_dir, "secrets")
    assert len(sources) == 1 and sources[0].startswith(secrets_dir + "/")
    assert mount_type(secrets_dir) == "tmpfs"


def test_the_secret_is_shown_nowhere(testbed, cluster):
    h1, h2 = cluster[0], cluster[1]
    for args in (
        ("secret", "inspect", "db-pass"),
        ("secret", "inspect", "--pretty", "db-pass"),
        ("secret", "ls", "--format", "json"),
        ("service", "inspect", "sec"),
        ("service", "inspect", "--pretty", "sec"),
        ("service", "ps", "--format", "json", "sec"),
    ):
        out = ok(testbed, h1, *args).stdout
        assert "db-pass" in out and PLAINTEXT.decode() not in out, args
    # The event history, on the manager and relayed by a worker: the secret's
    # events name it (the search sees them), never its data.
    for host in (h1, h2):
        out = ok(testbed, host, "events", "--since", "1", "--until", f"{time.time():.6f}", "--format", "json").stdout
        assert "db-pass" in out and PLAINTEXT.decode() not in out, host.name
    assert CONFIG_TEXT.decode() in ok(testbed, h1, "config", "inspect", "--pretty", "app.conf").stdout
    c = the_container(testbed, h2, "sec")
    assert PLAINTEXT.decode() not in str(c.attrs)  # the engine's own view of the container


def test_the_plaintext_is_on_no_nodes_disk(testbed, cluster):
    hosts = cluster
    # The search finds what is there (a marker written to a state dir)...
    marker = ("kv-marker-" + pysecrets.token_hex(8)).encode()
    probe = Path(hosts[1].state_dir) / "probe"
    probe.write_bytes(b"before " + marker + b" after")
    try:
        assert files_holding(marker, disk_of(hosts[1])) == [str(probe)]
    finally:
        probe.unlink()
    # ...and the secret is on no host's disk, manager or worker, running it or
    # not. A manager's Raft files hold the replicated state: their encryption
    # at rest is issue 13B's, searched by test_the_plaintext_is_in_no_raft_file_and_no_backup.
    for h in hosts:
        assert files_holding(PLAINTEXT, disk_of(h), skip=(os.path.join(h.state_dir, "raft"),)) == [], h.name


def test_a_node_with_no_task_using_the_secret_does_not_have_it(testbed, cluster):
    h1, h2, h3, h4 = cluster
    assert daemon_memory_holds(h2, PLAINTEXT)  # the node running the task holds it (the search works)
    for h in (h3, h4):
        assert not daemon_memory_holds(h, PLAINTEXT), h.name
        secrets_dir = Path(h.state_dir) / "secrets"
        assert not secrets_dir.exists() or not any(secrets_dir.iterdir()), h.name


def test_rotation_through_a_rolling_update(testbed, cluster):
    h1, h2 = cluster[0], cluster[1]
    r = cli_with_input(testbed, h1, ROTATED, "secret", "create", "db-pass-v2", "-")
    assert r.returncode == 0, r.stderr
    old = the_container(testbed, h2, "sec")
    (old_task,) = running_tasks(h1, "sec")
    r = ok(
        testbed,
        h1,
        "service",
        "update",
        "--secret-rm",
        "db-pass",
        "--secret-add",
        "source=db-pass-v2,target=db-pass,uid=1000,mode=0400",
        "sec",
        timeout=SLOW,
    )
    assert "update completed" in r.stdout, r.stdout
    (new_task,) = converged(testbed, h1, "sec")
    assert new_task.id != old_task.id
    c = wait_for(lambda: (c := the_container(testbed, h2, "sec")).id != old.id and c, SLOW, "the new task's container")
    assert run_in(c, "cat", "/run/secrets/db-pass", user="1000") == (0, ROTATED.decode())
    # The old task's files left with it: only the live task has files on h2.
    secrets_dir = Path(h2.state_dir) / "secrets"
    wait_for(lambda: {p.name for p in secrets_dir.iterdir()} == {new_task.id}, 30, "only the new task's files on h2")
    assert files_holding(PLAINTEXT, [str(secrets_dir)]) == []


def test_secret_rm_is_refused_while_in_use(testbed, cluster):
    h1, h2 = cluster[0], cluster[1]
    r = fails(testbed, h1, "secret", "rm", "db-pass-v2")
    assert "secret 'db-pass-v2' is in use by service sec" in r.stderr, r.stderr
    r = fails(testbed, h1, "config", "rm", "app.conf")
    assert "in use by service sec" in r.stderr
    assert "db-pass-v2" in ok(testbed, h1, "secret", "ls").stdout
    ok(testbed, h1, "secret", "rm", "db-pass")  # the rotated-out one is free
    ok(testbed, h1, "service", "rm", "sec")
    wait_for(lambda: not containers(testbed, h2, "sec", all_=True), SLOW, "sec's containers removed")
    ok(testbed, h1, "secret", "rm", "db-pass-v2")
    ok(testbed, h1, "config", "rm", "app.conf")
    assert ok(testbed, h1, "secret", "ls", "-q").stdout.strip() == ""
    # Gone from the node once no task there needs it.
    secrets_dir = Path(h2.state_dir) / "secrets"
    wait_for(lambda: not any(secrets_dir.iterdir()), 30, "h2's secrets tmpfs empty")


def test_the_plaintext_is_in_no_raft_file_and_no_backup(testbed, cluster, tmp_path):
    h1, h3 = cluster[0], cluster[2]
    r = cli_with_input(testbed, h1, PLAINTEXT, "secret", "create", "at-rest", "-")
    assert r.returncode == 0, r.stderr
    ok(testbed, h1, "node", "promote", "h3")  # a second manager: its files come from replication
    wait_for(
        lambda: (i := info(h3)) is not None and i.role == "manager" and i.state_digest == digest(h1),
        SLOW,
        "h3 a manager with the same state",
    )
    backup = tmp_path / "backup.swl"
    ok(testbed, h1, "cluster", "backup", str(backup))
    assert backup.stat().st_size > 0
    raft_files = [str(p) for h in (h1, h3) for p in (Path(h.state_dir) / "raft").rglob("*") if p.is_file()]
    assert raft_files, "no Raft files to search"
    found = files_holding(PLAINTEXT, [str(Path(h.state_dir) / "raft") for h in (h1, h3)])
    found += files_holding(PLAINTEXT, [str(tmp_path)])
    assert found == [], f"plaintext in {found}"


def test_logs_never_show_the_secret(testbed, cluster):
    for h in cluster:
        for log in (h.log_path, h.dockerd_log_path):
            assert PLAINTEXT not in Path(log).read_bytes(), log
            assert ROTATED not in Path(log).read_bytes(), log
