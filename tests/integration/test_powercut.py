"""Power cuts of managers (issue 14): nothing acknowledged is lost.

Three hosts, all managers, each daemon's state directory on its own
loop-mounted ext4 image (scripts/powercut.py). A writer creates services
through every manager and records each acknowledged create; then power is cut
(processes frozen, each image copied as its device holds it, processes
killed, the copies checked by e2fsck and mounted back) and the daemons are
restarted. Afterwards every manager runs, all agree (state digests), and
every acknowledged service exists exactly once.

Cut: all three managers at once; the leader alone; a majority (the leader and
one follower) while the third keeps running. Then a full disk under the
leader (it stops taking part, the others carry on), and a damaged journal
(the daemon refuses to start with a clear message; the documented recovery
brings the host back).

Tests run in file order and share the cluster; each leaves 3 live managers.
"""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

import grpc
import powercut  # scripts/powercut.py: scripts/ is on the path (conftest.py)
import pytest
import testbed as testbed_lib

from swarmlet.api import control_pb2 as cpb
from swarmlet.api import objects_pb2 as pb
from tests.integration.test_cluster import IMAGE, api, ok
from tests.integration.test_ha import digests_agree, info, leader_of, manager_status, service_names
from tests.waiting import wait_for

PREFIX = os.environ.get("SWARMLET_TESTBED_PREFIX", "sl")
SUBNET = int(os.environ.get("SWARMLET_TESTBED_SUBNET", "0"))

# Acknowledged creates wanted before each cut: enough that a loss shows.
WRITES_BEFORE_CUT = 40


def _pid(host) -> int:
    pid = int((Path(host.host_dir) / "swarmlet.pid").read_text())
    os.kill(pid, 0)  # alive (raises otherwise)
    return pid


class Writer:
    """One thread per manager, each creating services through its manager's
    own socket and recording the names it got an acknowledgement for."""

    def __init__(self, bed, managers, tag: str) -> None:
        self.bed, self.tag = bed, tag
        self.acked: list[str] = []
        self.failed = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, args=(m,), daemon=True) for m in managers]

    def _run(self, host) -> None:
        i = 0
        stub = api(host)
        while not self._stop.is_set():
            name = f"{self.tag}-{host.name}-{i}"
            i += 1
            spec = pb.ServiceSpec(
                name=name,
                task=pb.TaskSpec(container=pb.ContainerSpec(image=IMAGE, command=["sleep", "1"])),
                replicated=pb.ReplicatedService(replicas=0),
            )
            try:
                stub.CreateService(cpb.CreateServiceRequest(spec=spec), timeout=10)
            except grpc.RpcError:
                with self._lock:
                    self.failed += 1  # not acknowledged: it may or may not exist
                self._stop.wait(0.2)
                stub = api(host)  # the daemon may have been restarted
                continue
            with self._lock:
                self.acked.append(name)
            self._stop.wait(0.02)

    def count(self) -> int:
        with self._lock:
            return len(self.acked)

    def __enter__(self) -> Writer:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(30)


def check_nothing_lost(managers, writer: Writer) -> None:
    digests_agree(managers, timeout=90)
    for m in managers:
        names = service_names(m)
        lost = [n for n in writer.acked if n not in names]
        doubled = sorted({n for n in names if names.count(n) > 1})
        assert not lost, f"{m.name}: {len(lost)} of {len(writer.acked)} acknowledged creates lost: {lost[:10]}"
        assert not doubled, f"{m.name}: services twice: {doubled}"


@pytest.fixture(scope="module")
def bed():
    """Three hosts (no swarmlet yet): the state directories get their disks first."""
    reason = testbed_lib.missing_prerequisites()
    if reason:
        pytest.skip(f"testbed unavailable: {reason}")
    for tool in ("mkfs.ext4", "e2fsck", "mount", "cp"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    bed = testbed_lib.Testbed(prefix=PREFIX, subnet_index=SUBNET)
    try:
        bed.up(3, swarmlet=False)
        yield bed
    finally:
        bed.down()  # unmounts everything under its base, the disks included


@pytest.fixture(scope="module")
def cluster(bed):
    disks = {}
    for h in bed.hosts:
        disk = powercut.Disk(Path(bed.base) / "disks" / f"{h.name}.img", Path(h.state_dir))
        disk.create()
        disks[h.name] = disk
        bed.start_swarmlet(h)
    h1, h2, h3 = bed.hosts
    ok(bed, h1, "init", "--advertise-addr", h1.ip)
    token = ok(bed, h1, "join-token", "manager", "-q").stdout.strip()
    for h in (h2, h3):
        ok(bed, h, "join", "--token", token, f"{h1.ip}:4242")
    managers = (h1, h2, h3)
    wait_for(
        lambda: manager_status(bed, h1) == {"h1": "Leader", "h2": "REACHABLE", "h3": "REACHABLE"},
        60,
        "3 managers, h1 leading, the others reachable",
        interval=0.5,
    )
    # No os.sync() here: node.json, raft_secret and the certificates are
    # written with fsync (node/files.py), so a cut right after the join keeps them.
    return managers, disks, token


def cut_and_restart(bed, disks, victims) -> None:
    reports = powercut.power_cut([(_pid(h), disks[h.name]) for h in victims])
    for h in victims:
        bed.start_swarmlet(h)  # fails fast, with the log's tail, if the daemon exits
    for h in victims:
        wait_for(lambda h=h: (i := info(h)) is not None and i.state == "active", 60, f"{h.name} serves again ({reports})")


def writes_then_cut(bed, cluster, tag: str, pick) -> None:
    managers, disks, _ = cluster
    with Writer(bed, managers, tag) as writer:
        wait_for(lambda: writer.count() >= WRITES_BEFORE_CUT, 120, f"{WRITES_BEFORE_CUT} acknowledged creates")
        victims = pick(managers)
        cut_and_restart(bed, disks, victims)
        wait_for(lambda: leader_of(managers) is not None, 60, "a leader after the cut")
        at_restart = writer.count()
        wait_for(lambda: writer.count() >= at_restart + 10, 60, "writes acknowledged again after the cut")
    assert writer.count() >= WRITES_BEFORE_CUT + 10
    check_nothing_lost(managers, writer)


def test_power_cut_of_every_manager_at_once(bed, cluster):
    writes_then_cut(bed, cluster, "all", lambda managers: list(managers))


def test_power_cut_of_the_leader_alone(bed, cluster):
    def leader(managers):
        return [wait_for(lambda: leader_of(managers), 30, "a leader")]

    writes_then_cut(bed, cluster, "leader", leader)


def test_power_cut_of_a_majority_while_the_minority_runs(bed, cluster):
    def majority(managers):
        lead = wait_for(lambda: leader_of(managers), 30, "a leader")
        follower = next(m for m in managers if m is not lead)
        return [lead, follower]

    writes_then_cut(bed, cluster, "majority", majority)


def test_a_full_disk_under_the_leader_stops_it_and_the_others_carry_on(bed, cluster):
    managers, disks, _ = cluster
    lead = wait_for(lambda: leader_of(managers), 30, "a leader")
    rest = [m for m in managers if m is not lead]
    log_start = Path(lead.log_path).stat().st_size
    fillers: list[Path] = []
    try:
        with Writer(bed, managers, "full") as writer:
            wait_for(lambda: writer.count() >= 10, 60, "writes acknowledged")
            fillers = powercut.fill(Path(lead.state_dir))
            new = wait_for(lambda: leader_of(rest), 60, "a leader among the others")
            assert new is not lead
            before = writer.count()
            wait_for(lambda: writer.count() >= before + 10, 60, "writes acknowledged without the full manager")
            with open(lead.log_path, "rb") as f:
                f.seek(log_start)
                tail = f.read().decode(errors="replace")
            assert "stopped taking part in Raft" in tail and "the disk is full" in tail, tail[-3000:]
            assert "Traceback" not in tail, tail[-3000:]
            assert bed.swarmlet_running(lead), "the daemon keeps running (and saying why)"
            assert not info(lead).is_leader
            # The operator frees space and restarts the daemon: it catches up.
            for f in fillers:
                f.unlink()
            fillers = []
            bed.kill_swarmlet(lead)
            bed.start_swarmlet(lead)
            wait_for(lambda: (i := info(lead)) is not None and i.state == "active", 60, f"{lead.name} back")
    finally:
        for f in fillers:
            f.unlink(missing_ok=True)
    check_nothing_lost(managers, writer)


def test_a_damaged_journal_refuses_to_start_and_the_documented_recovery_works(bed, cluster):
    managers, disks, token = cluster
    lead = wait_for(lambda: leader_of(managers), 30, "a leader")
    victim = next(m for m in managers if m is not lead)
    with Writer(bed, [lead], "damage") as writer:
        wait_for(lambda: writer.count() >= 10, 60, "writes acknowledged")
    bed.kill_swarmlet(victim)
    wal = Path(victim.state_dir) / "raft" / "wal"
    data = bytearray(wal.read_bytes())
    assert len(data) > 600, len(data)
    data[len(data) // 2 : len(data) // 2 + 64] = os.urandom(64)  # bytes that were written, then damaged
    wal.write_bytes(bytes(data))
    log_start = Path(victim.log_path).stat().st_size
    with pytest.raises(testbed_lib.TestbedError):
        bed.start_swarmlet(victim, timeout=30)  # exits instead of serving
    with open(victim.log_path, "rb") as f:
        f.seek(log_start)
        tail = f.read().decode(errors="replace")
    assert f"raft state file {wal}" in tail and "will not start" in tail, tail[-3000:]
    assert "Traceback" not in tail, tail[-3000:]

    # docs/operations.md, "Durability": demote and remove it on a healthy
    # manager, move its state aside, start the daemon, join again.
    ok(bed, lead, "node", "demote", victim.name)
    ok(bed, lead, "node", "rm", "--force", victim.name)
    aside = Path(victim.state_dir) / "broken"
    aside.mkdir()
    for entry in Path(victim.state_dir).iterdir():
        if entry.name not in ("broken", "lost+found"):
            entry.rename(aside / entry.name)
    bed.start_swarmlet(victim)
    ok(bed, victim, "join", "--token", token, f"{lead.ip}:4242")
    wait_for(
        lambda: sorted(manager_status(bed, lead).values()) == ["Leader", "REACHABLE", "REACHABLE"],
        60,
        "three managers again",
        interval=0.5,
    )
    check_nothing_lost(managers, writer)
