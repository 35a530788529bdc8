"""The testbed itself (scripts/testbed.py), engines only: 2 hosts, prefix "st",
subnet 198.18.2.0/24. Tests run in file order; the last one tears down.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import testbed as testbed_lib  # on sys.path via conftest.py

from tests.waiting import wait_for

PREFIX = "st"
IMAGE = testbed_lib.IMAGE_TAG
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def bed() -> Iterator[testbed_lib.Testbed]:
    reason = testbed_lib.missing_prerequisites()
    if reason:
        pytest.skip(f"testbed unavailable: {reason}")
    tb = testbed_lib.Testbed(prefix=PREFIX, subnet_index=2)
    try:
        tb.up(2, swarmlet=False)
        yield tb
    finally:
        tb.down()


def pings(tb: testbed_lib.Testbed, src: testbed_lib.Host, dst: testbed_lib.Host) -> bool:
    return tb.exec_in(src, ["ping", "-c", "1", "-W", "1", dst.ip]).returncode == 0


def test_hosts_are_named_and_addressed(bed: testbed_lib.Testbed) -> None:
    h1, h2 = bed.hosts
    assert (h1.name, h1.netns, h1.ip) == ("h1", "sth1", "198.18.2.1")
    assert (h2.docker_url, h2.swarmlet_sock) == ("unix:///run/st-docker-h2.sock", "/run/st-swarmlet-h2.sock")
    out = bed.exec_in(h2, ["ip", "-4", "-o", "addr", "show", "dev", "eth0"]).stdout
    assert "198.18.2.2/24" in out


def test_engines_answer_with_their_own_hostname(bed: testbed_lib.Testbed) -> None:
    for host in bed.hosts:
        client = bed.docker(host)
        assert client.ping()
        assert client.info()["Name"] == host.name


def test_image_present_in_every_engine(bed: testbed_lib.Testbed) -> None:
    ids = {bed.docker(host).images.get(IMAGE).id for host in bed.hosts}
    assert len(ids) == 1, f"engines hold different images: {ids}"


def test_hosts_reach_each_other_over_the_underlay(bed: testbed_lib.Testbed) -> None:
    h1, h2 = bed.hosts
    assert pings(bed, h1, h2)
    assert pings(bed, h2, h1)


def test_container_runs_the_image_inside_its_host(bed: testbed_lib.Testbed) -> None:
    client = bed.docker(bed.hosts[1])
    assert client.containers.run(IMAGE, ["echo", "hello from h2"], remove=True) == b"hello from h2\n"
    # A host-network container sees the host's namespace, not the machine's.
    out = client.containers.run(IMAGE, ["ip", "-4", "addr", "show", "eth0"], network_mode="host", remove=True)
    assert b"198.18.2.2/24" in out


def test_cut_is_silent_and_heal_restores(bed: testbed_lib.Testbed) -> None:
    h1, h2 = bed.hosts
    bed.cut(h2)
    try:
        assert not pings(bed, h1, h2)
        assert bed.docker(h2).ping(), "a cut host keeps running"
    finally:
        bed.heal(h2)
    wait_for(lambda: pings(bed, h1, h2), 10, "h2 reachable again after heal")


def test_status_cli_reports_hosts(bed: testbed_lib.Testbed) -> None:
    out = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "testbed.py"), "status", "--prefix", PREFIX],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "198.18.2.1" in out and "198.18.2.2" in out
    assert out.count("up unix:///run/st-docker-h") == 2


def _leftovers() -> list[str]:
    found = []
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    found += [f"netns {line.split()[0]}" for line in netns.splitlines() if line.startswith(f"{PREFIX}h")]
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    for line in links.splitlines():
        name = line.split(":")[1].strip().split("@")[0]
        if name == f"{PREFIX}br0" or (name.startswith(f"{PREFIX}v") and name[len(PREFIX) + 1 :].isdigit()):
            found.append(f"link {name}")
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(a.startswith(f"/run/{PREFIX}-docker-h".encode()) or a.startswith(f"unix:///run/{PREFIX}-".encode()) for a in argv):
            found.append(f"process {pid}: {b' '.join(argv)[:100]!r}")
    with open("/proc/self/mountinfo") as f:
        found += [
            f"mount {line.split()[4]}"
            for line in f
            if f"/swarmlet-testbed/{PREFIX}/" in line.split()[4] or f"/run/{PREFIX}-" in line.split()[4]
        ]
    rule = ["iptables", "-w", "5", "-C", "FORWARD", "-i", f"{PREFIX}br0", "-o", f"{PREFIX}br0", "-j", "ACCEPT"]
    if subprocess.run(rule, capture_output=True).returncode == 0:
        found.append("iptables rule")
    found += [f"file /run/{name}" for name in os.listdir("/run") if name.startswith(f"{PREFIX}-")]
    if Path(testbed_lib.DEFAULT_ROOT / PREFIX).exists():
        found.append(f"dir {testbed_lib.DEFAULT_ROOT / PREFIX}")
    return found


def test_down_leaves_nothing_behind(bed: testbed_lib.Testbed) -> None:
    # Something to clean: a running container, a host-network one, a stray process in a host.
    client = bed.docker(bed.hosts[0])
    client.containers.run(IMAGE, detach=True)
    client.containers.run(IMAGE, ["sleep", "600"], network_mode="host", detach=True)
    stray = subprocess.Popen(["nsenter", f"--net=/run/netns/{bed.hosts[1].netns}", "sleep", "600"])
    try:
        assert _leftovers(), "the testbed should be visible before down"
        bed.down()
        assert _leftovers() == []
        assert stray.wait(timeout=10) != 0, "a process inside a host namespace is killed"
    finally:
        stray.kill()
        stray.wait()


def test_down_clears_half_built_leftovers() -> None:
    # What a crash during `up` can leave: a namespace, a veth, a bridge, files.
    subprocess.run(["ip", "netns", "add", f"{PREFIX}h7"], check=True)
    subprocess.run(["ip", "link", "add", f"{PREFIX}br0", "type", "bridge"], check=True)
    subprocess.run(["ip", "link", "add", f"{PREFIX}v9", "type", "veth", "peer", "name", f"{PREFIX}p9"], check=True)
    Path(f"/run/{PREFIX}-docker-h3").mkdir()
    (testbed_lib.DEFAULT_ROOT / PREFIX / f"{PREFIX}h3").mkdir(parents=True)
    testbed_lib.Testbed(prefix=PREFIX, subnet_index=2).down()
    assert _leftovers() == []
