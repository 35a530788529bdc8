#!/usr/bin/env python3
"""A multi-host swarmlet testbed on one machine.

Each "host" is a network namespace wired to an underlay bridge in the root
namespace, with its own dockerd (and, optionally, its own swarmlet daemon),
both started through ``nsenter --net`` so they keep the root mount namespace
(``ip netns exec`` remounts /sys, which breaks dockerd's cgroup detection).

Used three ways:

* CLI: ``python scripts/testbed.py up --hosts 3 [--prefix sl] [--subnet-index 0]
  [--no-swarmlet]``, ``down [--prefix sl]``, ``status [--prefix sl]``;
* importable module (pytest fixtures, benchmarks): put ``scripts/`` on
  ``sys.path`` and ``import testbed``;
* ``Testbed(prefix).attach()`` from another process to drive a testbed that
  ``up`` left running.

Everything a testbed owns is named after its prefix (netns ``{p}h{i}``, links
``{p}v{i}`` and ``{p}br0``, sockets ``/run/{p}-*``, files under
``/var/lib/swarmlet-testbed/{p}``) and every pid it starts is recorded in a
file, so ``down`` works from any process and after a crash, and ``up`` always
starts by clearing leftovers of its own prefix.
"""

from __future__ import annotations

import argparse
import ctypes
import dataclasses
import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:  # the SDK is imported lazily so `down` works without it
    import docker

SCRIPTS_DIR = Path(__file__).resolve().parent
REPO_ROOT = SCRIPTS_DIR.parent
DEFAULT_ROOT = Path("/var/lib/swarmlet-testbed")
IMAGE_TAG = "swarmlet-test:busybox"
DOCKERFILE = SCRIPTS_DIR / "testimage" / "Dockerfile"
BUSYBOX = Path("/bin/busybox")
MARKER = ".swarmlet-testbed"
STATE_FILE = "testbed.json"
REQUIRED_TOOLS = ("dockerd", "containerd", "runc", "nsenter", "unshare", "hostname", "ip", "iptables", "ping")

# Prefixes become parts of interface names (max 15 chars: "{p}br0", "{p}v250")
# and of regexes and paths, so keep them short and plain.
_PREFIX_RE = re.compile(r"^[a-z][a-z0-9]{0,7}$")

T = TypeVar("T")


class TestbedError(RuntimeError):
    """Raised when the testbed cannot be brought up."""

    __test__ = False  # not a pytest test class, despite its name


class CliError(subprocess.CalledProcessError):
    """A failed swarmlet CLI call whose message carries its output."""

    def __str__(self) -> str:
        return f"{super().__str__()}\nstdout:\n{self.stdout}\nstderr:\n{self.stderr}"


@dataclasses.dataclass(frozen=True)
class Host:
    """One simulated host; every path and address of it is fixed by (prefix, index)."""

    index: int
    name: str  # "h1"
    netns: str  # "slh1"
    ip: str  # underlay address, "198.18.0.1"
    root_veth: str  # the underlay veth end on the bridge: down = host cut off
    docker_url: str  # "unix:///run/sl-docker-h1.sock"
    docker_sock: str
    exec_root: str
    swarmlet_sock: str
    host_dir: str  # BASE/{netns}
    state_dir: str  # swarmlet --state-dir
    log_path: str  # swarmlet daemon stdout/stderr
    dockerd_log_path: str


def missing_prerequisites() -> str | None:
    """Why a testbed cannot run here (for pytest skips), or None if it can."""
    if os.geteuid() != 0:
        return "the testbed needs root (network namespaces, bridges, dockerd)"
    missing = [tool for tool in REQUIRED_TOOLS if shutil.which(tool) is None]
    if missing:
        return f"not installed: {', '.join(missing)} (run scripts/install.sh)"
    if not BUSYBOX.is_file():
        return f"{BUSYBOX} is missing (install busybox-static: scripts/install.sh)"
    return None


# --------------------------------------------------------------------------
# small process / kernel helpers


def _run(
    cmd: Sequence[str], check: bool = True, input: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(cmd), input=input, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise TestbedError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


def _poll(
    predicate: Callable[[], T],
    timeout: float,
    what: str,
    fail_fast: Callable[[], str | None] | None = None,
    interval: float = 0.05,
) -> T:
    """Poll until predicate() is truthy; fail_fast() may explain an early, certain failure."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if fail_fast is not None:
            problem = fail_fast()
            if problem:
                raise TestbedError(f"{what}: {problem}")
        if time.monotonic() >= deadline:
            raise TestbedError(f"{what}: not within {timeout:.0f}s")
        time.sleep(interval)


def _proc_argv(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, ppid) of a process, or None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name in parentheses may contain spaces: split after the last ')'
    fields = text[text.rindex(")") + 2 :].split()
    return fields[0], int(fields[1])


def _alive(pid: int) -> bool:
    stat = _proc_stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")


def _all_pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit()]


def _descendants(roots: Iterable[int]) -> set[int]:
    children: dict[int, list[int]] = {}
    for pid in _all_pids():
        stat = _proc_stat(pid)
        if stat is not None:
            children.setdefault(stat[1], []).append(pid)
    found: set[int] = set()
    todo = list(roots)
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def _kill_and_wait(pids: Iterable[int], sig: int, timeout: float, reap: Callable[[int], object] = lambda pid: None) -> set[int]:
    """Signal pids and wait until they are gone (zombies count as gone); returns survivors.

    reap(pid) lets the caller collect its own children; nothing else is
    waited for here, so other code's subprocess handles keep their status.
    """
    pending = {pid for pid in pids if pid != os.getpid()}
    for pid in pending:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    while pending:
        for pid in list(pending):
            reap(pid)
            if not _alive(pid):
                pending.discard(pid)
        if not pending or time.monotonic() >= deadline:
            break
        time.sleep(0.02)
    return pending


def _netns_inode(path: str) -> int | None:
    try:
        return os.stat(path).st_ino
    except OSError:
        return None


def _pids_in_netns(inode: int) -> set[int]:
    found = set()
    for pid in _all_pids():
        try:
            if os.stat(f"/proc/{pid}/ns/net").st_ino == inode:
                found.add(pid)
        except OSError:
            continue
    return found


def _unescape_mount(path: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), path)


def _mounts_under(roots: Sequence[str]) -> list[str]:
    points = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = _unescape_mount(line.split()[4])
            if any(point == root or point.startswith(root.rstrip("/") + "/") for root in roots):
                points.append(point)
    return points


_libc = ctypes.CDLL(None, use_errno=True)
_MNT_DETACH = 2


def _umount_all(roots: Sequence[str]) -> None:
    """Unmount everything at or below roots, deepest first (stacked mounts too)."""
    for _ in range(20):
        points = _mounts_under(roots)
        if not points:
            return
        for point in sorted(set(points), key=lambda p: p.count("/"), reverse=True):
            if _libc.umount2(point.encode(), 0) != 0:
                # busy: detach it now, the kernel frees it once unused
                _libc.umount2(point.encode(), _MNT_DETACH)


def _unix_connectable(path: str) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        try:
            sock.connect(path)
        except OSError:
            return False
    return True


def _docker_ping(sock_path: str) -> bool:
    """True once the engine's API answers; raw HTTP keeps this independent of the SDK."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(2.0)
        try:
            sock.connect(sock_path)
            sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            reply = b""
            while chunk := sock.recv(4096):
                reply += chunk
        except OSError:
            return False
    return reply.startswith(b"HTTP/1.") and b" 200 " in reply.split(b"\r\n", 1)[0]


def _tcp_answers_in(netns: str, host: str, port: int) -> bool:
    """Whether host:port accepts a TCP connection, seen from inside netns."""
    probe = f"import socket; socket.create_connection(({host!r}, {port}), timeout=1).close()"
    return _run(["nsenter", f"--net=/run/netns/{netns}", sys.executable, "-c", probe], check=False, timeout=10).returncode == 0


def _tail(path: str, lines: int = 25) -> str:
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return f"(no log at {path})"
    return f"--- last lines of {path}:\n" + "\n".join(text.splitlines()[-lines:])


def _image_key() -> str:
    # The cached tar is valid for exactly this Dockerfile and this busybox binary.
    digest = hashlib.sha256()
    for part in (IMAGE_TAG.encode(), DOCKERFILE.read_bytes(), BUSYBOX.read_bytes()):
        digest.update(hashlib.sha256(part).digest())
    return digest.hexdigest()


# --------------------------------------------------------------------------


class Testbed:
    """N hosts as network namespaces on an underlay bridge, each with dockerd (+ swarmlet)."""

    __test__ = False  # not a pytest test class, despite its name

    def __init__(self, prefix: str = "sl", subnet_index: int = 0, base: str | None = None) -> None:
        if not _PREFIX_RE.match(prefix):
            raise ValueError(f"prefix must match {_PREFIX_RE.pattern}: {prefix!r}")
        if not 0 <= subnet_index <= 255:
            raise ValueError(f"subnet index out of range: {subnet_index}")
        self.prefix = prefix
        self.subnet_index = subnet_index
        self.base = Path(base) if base else DEFAULT_ROOT / prefix
        self.bridge = f"{prefix}br0"
        self.python = sys.executable
        self.hosts: list[Host] = []
        self.timings: dict[str, float] = {}
        self._children: dict[int, subprocess.Popen[bytes]] = {}
        self.engine_labels: dict[int, list[str]] = {}
        self._clients: dict[str, docker.DockerClient] = {}

    # ---- naming

    @property
    def bridge_ip(self) -> str:
        return f"198.18.{self.subnet_index}.254"

    @property
    def image_tar(self) -> Path:
        return self.base.parent / "image-busybox.tar"

    def host(self, index: int) -> Host:
        """The Host record for index (1-based); pure naming, nothing is checked."""
        if not 1 <= index <= 250:
            raise ValueError(f"host index out of range: {index}")
        p, ns = self.prefix, f"{self.prefix}h{index}"
        host_dir = self.base / ns
        return Host(
            index=index,
            name=f"h{index}",
            netns=ns,
            ip=f"198.18.{self.subnet_index}.{index}",
            root_veth=f"{p}v{index}",
            docker_url=f"unix:///run/{p}-docker-h{index}.sock",
            docker_sock=f"/run/{p}-docker-h{index}.sock",
            exec_root=f"/run/{p}-docker-h{index}",
            swarmlet_sock=f"/run/{p}-swarmlet-h{index}.sock",
            host_dir=str(host_dir),
            state_dir=str(host_dir / "state"),
            log_path=str(host_dir / "swarmlet.log"),
            dockerd_log_path=str(host_dir / "dockerd.log"),
        )

    def _resolve(self, host: Host | str | int) -> Host:
        if isinstance(host, Host):
            return host
        if isinstance(host, int):
            return self.host(host)
        match = re.fullmatch(rf"(?:{self.prefix})?h(\d+)", host)
        if not match:
            raise ValueError(f"not a host of testbed {self.prefix!r}: {host!r}")
        return self.host(int(match.group(1)))

    # ---- bring-up

    def up(
        self,
        n: int,
        swarmlet: bool = True,
        default_route: bool = False,
        timeout: float = 120.0,
        engine_labels: dict[int, list[str]] | None = None,
    ) -> list[Host]:
        """Bring up n hosts (after clearing leftovers of this prefix) and return them.

        default_route adds a route via the bridge address; off by default so
        nothing in a host can reach past the underlay. engine_labels: host
        index -> the engine's own labels ("k=v", dockerd --label).
        """
        self.engine_labels = dict(engine_labels or {})
        problem = missing_prerequisites()
        if problem:
            raise TestbedError(problem)
        if not 1 <= n <= 250:
            raise ValueError(f"host count out of range: {n}")
        started = time.monotonic()
        self.down()
        self.timings = {"cleanup": time.monotonic() - started}

        self.base.mkdir(parents=True, exist_ok=True)
        (self.base / MARKER).write_text("created by scripts/testbed.py; removed by its down\n")
        self.hosts = [self.host(i) for i in range(1, n + 1)]
        self._write_state(n, swarmlet)

        mark = time.monotonic()
        self._setup_network(default_route)
        self.timings["network"] = time.monotonic() - mark

        mark = time.monotonic()
        for host in self.hosts:
            self._start_dockerd(host)
        deadline = time.monotonic() + timeout
        # Engines boot as separate processes; the image work overlaps with
        # the later ones booting: build in h1 as soon as it answers.
        with ThreadPoolExecutor(max_workers=n) as pool:
            ready = [pool.submit(self._wait_dockerd, host, deadline) for host in self.hosts]
            ready[0].result()
            self.timings["dockerd_h1"] = time.monotonic() - mark
            built_in_h1 = self._ensure_image_tar(self.hosts[0])
            self.timings["image_tar"] = time.monotonic() - mark

            def load(host: Host) -> None:
                self._wait_dockerd(host, deadline)
                self._load_image(host)

            loads = [pool.submit(load, host) for host in self.hosts if not (built_in_h1 and host is self.hosts[0])]
            for future in ready + loads:
                future.result()
        self.timings["dockerd_and_image"] = time.monotonic() - mark

        if swarmlet:
            mark = time.monotonic()
            for host in self.hosts:
                self._spawn_swarmlet(host, ())
            swarmlet_deadline = time.monotonic() + timeout
            for host in self.hosts:
                self._wait_swarmlet(host, swarmlet_deadline)
            self.timings["swarmlet"] = time.monotonic() - mark
        self.timings["total"] = time.monotonic() - started
        return self.hosts

    def attach(self) -> list[Host]:
        """Adopt a testbed that `up` (maybe in another process) left running."""
        state = self._read_state()
        if state is None:
            raise TestbedError(f"no testbed with prefix {self.prefix!r} under {self.base}")
        self.subnet_index = int(state["subnet_index"])
        self.hosts = [self.host(i) for i in range(1, int(state["n"]) + 1)]
        return self.hosts

    def _write_state(self, n: int, swarmlet: bool) -> None:
        state = {"prefix": self.prefix, "subnet_index": self.subnet_index, "n": n, "swarmlet": swarmlet, "python": self.python}
        (self.base / STATE_FILE).write_text(json.dumps(state, indent=1) + "\n")

    def _read_state(self) -> dict[str, object] | None:
        try:
            return json.loads((self.base / STATE_FILE).read_text())
        except (OSError, ValueError):
            return None

    def _setup_network(self, default_route: bool) -> None:
        # One `ip -batch` for the root namespace and one per host namespace
        # (batch lines cannot carry -n) instead of ~7 processes per host.
        root = [
            f"link add name {self.bridge} type bridge",
            f"addr add {self.bridge_ip}/24 dev {self.bridge}",
            f"link set {self.bridge} up",
        ]
        for host in self.hosts:
            Path(host.host_dir).mkdir(parents=True, exist_ok=True)
            root += [
                f"netns add {host.netns}",
                f"link add {host.root_veth} type veth peer name eth0 netns {host.netns}",
                f"link set {host.root_veth} master {self.bridge} up",
            ]
        _run(["ip", "-batch", "-"], input="\n".join(root) + "\n")
        for host in self.hosts:
            inside = ["link set lo up", f"addr add {host.ip}/24 dev eth0", "link set eth0 up"]
            if default_route:
                inside.append(f"route add default via {self.bridge_ip}")
            _run(["ip", "-n", host.netns, "-batch", "-"], input="\n".join(inside) + "\n")
        # A dockerd in the root namespace sets the FORWARD policy to DROP,
        # which would also drop bridged underlay traffic (br_netfilter).
        rule = ["FORWARD", "-i", self.bridge, "-o", self.bridge, "-j", "ACCEPT"]
        if _run(["iptables", "-w", "5", "-C", *rule], check=False).returncode != 0:
            _run(["iptables", "-w", "5", "-I", *rule])

    @staticmethod
    def _in_host(host: Host, cmd: list[str]) -> list[str]:
        """cmd run as a daemon of host: in its network namespace, named after it.

        Its own UTS namespace gives it the hostname "h1", ... (node names in
        swarmlet and Swarm), not the machine's. No step forks (nsenter and
        unshare exec, sh execs), so the spawned pid is the daemon's own.
        """
        return [
            "nsenter",
            f"--net=/run/netns/{host.netns}",
            "unshare",
            "--uts",
            "sh",
            "-c",
            'hostname "$0" && exec "$@"',
            host.name,
            *cmd,
        ]

    def _start_dockerd(self, host: Host) -> None:
        host_dir = Path(host.host_dir)
        host_dir.mkdir(parents=True, exist_ok=True)
        # An empty config file isolates the engine from /etc/docker/daemon.json.
        config = host_dir / "daemon.json"
        labels = self.engine_labels.get(host.index)
        config.write_text(json.dumps({"labels": labels} if labels else {}) + "\n")
        cmd = self._in_host(
            host,
            [
                "dockerd",
                "--config-file",
                str(config),
                "--data-root",
                str(host_dir / "docker"),
                "--exec-root",
                host.exec_root,
                "-H",
                host.docker_url,
                "--pidfile",
                str(host_dir / "dockerd.pid"),
                "--iptables=false",
                "--ip-masq=false",
                "--bip",
                f"172.31.{host.index}.1/24",
                # On shutdown dockerd waits this long for containers: keep `down` fast.
                "--shutdown-timeout",
                "2",
                # Issue 9: the test registry (start_registry) speaks plain HTTP
                # on the underlay; engines trust it as an insecure registry.
                "--insecure-registry",
                f"198.18.{self.subnet_index}.0/24",
            ],
        )
        self._spawn(cmd, host.dockerd_log_path, host_dir / "dockerd.spawn.pid")

    def _spawn(self, cmd: list[str], log_path: str, pidfile: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        with open(log_path, "ab") as log:
            # A new session: a Ctrl-C meant for the CLI must not kill the hosts.
            proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True, env=env, cwd=str(REPO_ROOT)
            )
        self._children[proc.pid] = proc
        pidfile.write_text(f"{proc.pid}\n")
        return proc

    def _exited(self, pidfile: Path, log_path: str) -> Callable[[], str | None]:
        def check() -> str | None:
            pid = self._read_pid(pidfile)
            if pid is not None and not _alive(pid):
                self._reap_child(pid)
                return f"process {pid} exited\n{_tail(log_path)}"
            return None

        return check

    def _wait_dockerd(self, host: Host, deadline: float) -> None:
        _poll(
            lambda: _docker_ping(host.docker_sock),
            max(0.0, deadline - time.monotonic()),
            f"dockerd of {host.name} ({host.docker_url})",
            fail_fast=self._exited(Path(host.host_dir) / "dockerd.spawn.pid", host.dockerd_log_path),
        )

    # ---- the test image

    def _ensure_image_tar(self, host: Host) -> bool:
        """Make the cached image tar current; True if it was (re)built in host's engine."""
        tar, key_file = self.image_tar, self.image_tar.with_suffix(".tar.key")
        tar.parent.mkdir(parents=True, exist_ok=True)
        key = _image_key()
        # Testbeds of several prefixes may come up at once: build only once.
        with open(tar.parent / "image.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                if tar.is_file() and key_file.is_file() and key_file.read_text().strip() == key:
                    return False
                client = self.docker(host)
                with tempfile.TemporaryDirectory(prefix="swarmlet-image-") as ctx:
                    shutil.copy2(DOCKERFILE, Path(ctx) / "Dockerfile")
                    shutil.copy2(BUSYBOX, Path(ctx) / "busybox")
                    # The API's build endpoint is the legacy (non-BuildKit) builder.
                    client.images.build(path=ctx, tag=IMAGE_TAG, rm=True, forcerm=True, pull=False)
                fd, tmp = tempfile.mkstemp(dir=tar.parent, prefix=".image-", suffix=".tar")
                try:
                    with os.fdopen(fd, "wb") as out:
                        for chunk in client.api.get_image(IMAGE_TAG):
                            out.write(chunk)
                    os.replace(tmp, tar)  # readers never see a partial tar
                except BaseException:
                    Path(tmp).unlink(missing_ok=True)
                    raise
                key_file.write_text(key + "\n")
                return True
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _load_image(self, host: Host) -> None:
        client = self.docker(host)
        with open(self.image_tar, "rb") as tar:
            client.images.load(tar)
        client.images.get(IMAGE_TAG)  # raises if the load did not tag it

    # ---- swarmlet daemons

    def _swarmlet_env(self) -> dict[str, str]:
        env = os.environ.copy()
        # The repo's own package first, whether or not it is pip-installed.
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def _spawn_swarmlet(self, host: Host, extra_args: Sequence[str]) -> None:
        Path(host.state_dir).mkdir(parents=True, exist_ok=True)
        # A stale socket from a killed daemon would make the wait pass at once.
        Path(host.swarmlet_sock).unlink(missing_ok=True)
        cmd = self._in_host(
            host,
            [
                self.python,
                "-m",
                "swarmlet",
                "daemon",
                "--state-dir",
                host.state_dir,
                "--socket",
                host.swarmlet_sock,
                "--docker-host",
                host.docker_url,
                "--advertise-addr",
                host.ip,
                *extra_args,
            ],
        )
        self._spawn(cmd, host.log_path, Path(host.host_dir) / "swarmlet.pid", env=self._swarmlet_env())

    def _wait_swarmlet(self, host: Host, deadline: float) -> None:
        _poll(
            lambda: _unix_connectable(host.swarmlet_sock),
            max(0.0, deadline - time.monotonic()),
            f"swarmlet daemon of {host.name} ({host.swarmlet_sock})",
            fail_fast=self._exited(Path(host.host_dir) / "swarmlet.pid", host.log_path),
        )

    def start_swarmlet(self, host: Host | str | int, extra_args: Sequence[str] = (), timeout: float = 60.0) -> None:
        """(Re)start host's swarmlet daemon with its usual state dir; wait for its socket."""
        host = self._resolve(host)
        if self.swarmlet_running(host):
            raise TestbedError(f"swarmlet daemon of {host.name} is already running")
        self._spawn_swarmlet(host, extra_args)
        self._wait_swarmlet(host, time.monotonic() + timeout)

    def _swarmlet_pid(self, host: Host) -> int | None:
        pid = self._read_pid(Path(host.host_dir) / "swarmlet.pid")
        # Guard against pid reuse: the process must still be this host's daemon.
        if pid is not None and host.swarmlet_sock in _proc_argv(pid) and _alive(pid):
            return pid
        return None

    def swarmlet_running(self, host: Host | str | int) -> bool:
        return self._swarmlet_pid(self._resolve(host)) is not None

    def kill_swarmlet(self, host: Host | str | int, sig: int = signal.SIGKILL, timeout: float = 30.0) -> None:
        """Send sig to host's daemon and wait until it is gone (no-op if not running)."""
        host = self._resolve(host)
        pid = self._swarmlet_pid(host)
        if pid is None:
            return
        if _kill_and_wait([pid], sig, timeout, self._reap_child):
            raise TestbedError(f"swarmlet daemon of {host.name} (pid {pid}) survived signal {sig}")
        self._forget(pid)

    def _reap_child(self, pid: int) -> None:
        proc = self._children.get(pid)
        if proc is not None:
            proc.poll()

    def _forget(self, pid: int) -> None:
        proc = self._children.pop(pid, None)
        if proc is not None:
            proc.wait()

    @staticmethod
    def _read_pid(pidfile: Path) -> int | None:
        try:
            return int(pidfile.read_text().strip())
        except (OSError, ValueError):
            return None

    # ---- using the hosts

    def docker(self, host: Host | str | int) -> docker.DockerClient:
        """A (cached) docker SDK client for host's engine."""
        import docker as docker_sdk

        host = self._resolve(host)
        client = self._clients.get(host.name)
        if client is None:
            client = docker_sdk.DockerClient(base_url=host.docker_url, version="auto", timeout=120)
            self._clients[host.name] = client
        return client

    def cli(
        self, host: Host | str | int, *args: str, check: bool = False, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run the swarmlet CLI against host's daemon socket; text output."""
        host = self._resolve(host)
        cmd = [self.python, "-m", "swarmlet", "-H", f"unix://{host.swarmlet_sock}", *args]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=self._swarmlet_env(), cwd=str(REPO_ROOT))
        if check and proc.returncode != 0:
            raise CliError(proc.returncode, cmd, proc.stdout, proc.stderr)
        return proc

    def exec_in(self, host: Host | str | int, cmd: Sequence[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run cmd inside host's network namespace; text output, never raises on failure."""
        host = self._resolve(host)
        return subprocess.run(
            ["nsenter", f"--net=/run/netns/{host.netns}", *cmd], capture_output=True, text=True, timeout=timeout
        )

    def cut(self, host: Host | str | int) -> None:
        """Silently cut host off the underlay (its processes keep running)."""
        _run(["ip", "link", "set", self._resolve(host).root_veth, "down"])

    def heal(self, host: Host | str | int) -> None:
        _run(["ip", "link", "set", self._resolve(host).root_veth, "up"])

    # ---- faults (issue 14: the fault campaign, scripts/chaos.py)

    def swarmlet_pid(self, host: Host | str | int) -> int | None:
        """The pid of host's swarmlet daemon, or None if it is not running."""
        return self._swarmlet_pid(self._resolve(host))

    def pause_swarmlet(self, host: Host | str | int) -> None:
        """SIGSTOP host's daemon: a frozen process (a VM stall, a long GC)."""
        pid = self.swarmlet_pid(host)
        if pid is not None:
            os.kill(pid, signal.SIGSTOP)

    def resume_swarmlet(self, host: Host | str | int) -> None:
        pid = self.swarmlet_pid(host)
        if pid is not None:
            os.kill(pid, signal.SIGCONT)

    def _dockerd_pid(self, host: Host) -> int | None:
        pid = self._read_pid(Path(host.host_dir) / "dockerd.spawn.pid")
        # The spawn chain execs: the recorded pid is dockerd itself.
        if pid is not None and host.docker_url in _proc_argv(pid) and _alive(pid):
            return pid
        return None

    def kill_dockerd(self, host: Host | str | int, timeout: float = 30.0) -> None:
        """SIGKILL host's dockerd (its containerd and containers are left as
        a crash leaves them; the next dockerd deals with them)."""
        host = self._resolve(host)
        client = self._clients.pop(host.name, None)
        if client is not None:
            client.close()
        pid = self._dockerd_pid(host)
        if pid is not None and _kill_and_wait([pid], signal.SIGKILL, timeout, self._reap_child):
            raise TestbedError(f"dockerd of {host.name} (pid {pid}) survived SIGKILL")
        if pid is not None:
            self._forget(pid)

    def start_dockerd(self, host: Host | str | int, timeout: float = 60.0) -> None:
        """(Re)start host's dockerd and wait until its API answers."""
        host = self._resolve(host)
        if self._dockerd_pid(host) is not None:
            raise TestbedError(f"dockerd of {host.name} is already running")
        Path(host.docker_sock).unlink(missing_ok=True)
        self._start_dockerd(host)
        self._wait_dockerd(host, time.monotonic() + timeout)

    def partition(self, host: Host | str | int) -> None:
        """Drop everything host sends or receives on the underlay, by
        iptables in its own namespace (its processes keep running)."""
        for rule in (["INPUT", "-i", "eth0", "-j", "DROP"], ["OUTPUT", "-o", "eth0", "-j", "DROP"]):
            proc = self.exec_in(host, ["iptables", "-w", "10", "-I", *rule])
            if proc.returncode != 0:
                raise TestbedError(f"partition of {self._resolve(host).name}: {proc.stderr.strip()}")

    def unpartition(self, host: Host | str | int) -> None:
        """Undo every partition() of host (no-op if there is none)."""
        for rule in (["INPUT", "-i", "eth0", "-j", "DROP"], ["OUTPUT", "-o", "eth0", "-j", "DROP"]):
            for _ in range(10):
                if self.exec_in(host, ["iptables", "-w", "10", "-D", *rule]).returncode != 0:
                    break

    # ---- teardown

    def _leftover_indexes(self) -> set[int]:
        """Host indexes of this prefix that exist in any form (a crash may leave any subset)."""
        found = {host.index for host in self.hosts}
        state = self._read_state()
        if state:
            found.update(range(1, int(state.get("n", 0)) + 1))
        ns_re = re.compile(rf"^{self.prefix}h(\d+)$")
        for line in _run(["ip", "netns", "list"], check=False).stdout.splitlines():
            if line.split() and (m := ns_re.match(line.split()[0])):
                found.add(int(m.group(1)))
        link_re = re.compile(rf"^{self.prefix}v(\d+)$")
        for line in _run(["ip", "-o", "link", "show"], check=False).stdout.splitlines():
            name = line.split(":")[1].strip().split("@")[0] if ":" in line else ""
            if m := link_re.match(name):
                found.add(int(m.group(1)))
        run_re = re.compile(rf"^{self.prefix}-(?:docker|swarmlet)-h(\d+)")
        for name in os.listdir("/run"):
            if m := run_re.match(name):
                found.add(int(m.group(1)))
        if self.base.is_dir():
            for name in os.listdir(self.base):
                if m := ns_re.match(name):
                    found.add(int(m.group(1)))
        return {i for i in found if 1 <= i <= 250}

    def _owned_pids(self) -> tuple[set[int], set[int], set[int]]:
        """(swarmlet daemons, docker engine processes, containerd shims) of this prefix.

        Matched on exact argv elements naming this prefix's sockets and exec
        roots, so a shell that merely mentions them is never hit.
        """
        p = re.escape(self.prefix)
        engine_arg = re.compile(rf"^(unix://)?/run/{p}-docker-h\d+(\.sock|/.*)?$")
        swarmlet_arg = re.compile(rf"^/run/{p}-swarmlet-h\d+\.sock$")
        swarmlets, engines, shims = set(), set(), set()
        for pid in _all_pids():
            argv = _proc_argv(pid)
            if not argv or pid == os.getpid():
                continue
            exe = os.path.basename(argv[0])
            if "daemon" in argv and "swarmlet" in argv and any(swarmlet_arg.match(a) for a in argv):
                swarmlets.add(pid)
            elif exe in ("dockerd", "containerd") or exe.startswith("containerd-shim"):
                if any(engine_arg.match(a) for a in argv):
                    engines.add(pid)
                    if exe.startswith("containerd-shim"):
                        shims.add(pid)
        return swarmlets, engines, shims

    def down(self) -> None:
        """Remove everything of this prefix, whatever state a previous run left it in."""
        for client in self._clients.values():
            try:
                client.close()
            except Exception:  # a dead engine must not stop the teardown
                pass
        self._clients.clear()
        indexes = self._leftover_indexes()
        hosts = [self.host(i) for i in sorted(indexes)]

        # 0. the test registry (issue 9), if one was started (before any
        # child is waited for below).
        self._registry_down()

        # 1. swarmlet daemons first, so none restarts containers behind us.
        swarmlets, _, _ = self._owned_pids()
        for host in hosts:
            pid = self._swarmlet_pid(host)
            if pid is not None:
                swarmlets.add(pid)
        _kill_and_wait(swarmlets, signal.SIGKILL, 10, self._reap_child)

        # 2. container processes (children of the shims), then the engines:
        # dockerd cleans its own mounts when it can stop gracefully.
        _, engines, shims = self._owned_pids()
        _kill_and_wait(_descendants(shims) - engines, signal.SIGKILL, 10, self._reap_child)
        dockerds = {pid for pid in engines if os.path.basename((_proc_argv(pid) or [""])[0]) == "dockerd"}
        _kill_and_wait(dockerds, signal.SIGTERM, 15, self._reap_child)
        _, engines, shims = self._owned_pids()
        _kill_and_wait(engines | _descendants(shims), signal.SIGKILL, 10, self._reap_child)

        # 3. anything else still inside the namespaces (exec_in leftovers,
        # host-network containers, helpers a daemon started).
        for host in hosts:
            inode = _netns_inode(f"/run/netns/{host.netns}")
            if inode is not None:
                _kill_and_wait(_pids_in_netns(inode), signal.SIGKILL, 10, self._reap_child)
        for pid in list(self._children):
            self._forget(pid)

        # 4. mounts (overlays, shm, container netns files), then namespaces and links.
        exec_roots = [host.exec_root for host in hosts]
        _umount_all([str(self.base), *exec_roots])
        for host in hosts:
            if os.path.exists(f"/run/netns/{host.netns}"):
                if _run(["ip", "netns", "del", host.netns], check=False).returncode != 0:
                    _umount_all([f"/run/netns/{host.netns}"])
                    Path(f"/run/netns/{host.netns}").unlink(missing_ok=True)
            # Usually gone with the namespace; not if the namespace is stuck.
            _run(["ip", "link", "del", host.root_veth], check=False)
        _run(["ip", "link", "del", self.bridge], check=False)
        rule = ["FORWARD", "-i", self.bridge, "-o", self.bridge, "-j", "ACCEPT"]
        if shutil.which("iptables"):
            for _ in range(10):  # every copy an interrupted `up` may have inserted
                if _run(["iptables", "-w", "5", "-D", *rule], check=False).returncode != 0:
                    break

        # 5. files: container cgroups the killed shims could not remove, then
        # the sockets, exec roots and the base directory.
        self._remove_container_cgroups(hosts)
        for host in hosts:
            for path in (host.docker_sock, host.swarmlet_sock, f"/run/{self.prefix}-docker-h{host.index}.pid"):
                Path(path).unlink(missing_ok=True)
            shutil.rmtree(host.exec_root, ignore_errors=True)
        # Only ever delete a directory this tool created (base may be user-given).
        if (self.base / MARKER).is_file() or self.base.parent == DEFAULT_ROOT:
            shutil.rmtree(self.base, ignore_errors=True)
        self.hosts = []

    def _remove_container_cgroups(self, hosts: Sequence[Host]) -> None:
        ids: set[str] = set()
        for host in hosts:
            containers = Path(host.host_dir) / "docker" / "containers"
            if containers.is_dir():
                ids.update(name for name in os.listdir(containers) if re.fullmatch(r"[0-9a-f]{64}", name))
        if not ids:
            return
        cgroup_root = Path("/sys/fs/cgroup")
        parents = [cgroup_root / "docker"] + [d / "docker" for d in cgroup_root.iterdir() if d.is_dir()]
        for parent in parents:
            for cid in ids:
                try:
                    (parent / cid).rmdir()  # only succeeds when empty, which is the point
                except OSError:
                    pass

    # ---- a real registry (issue 9) ----
    # Distribution 2.8 (Debian's docker-registry) with htpasswd auth, in its
    # own namespace on the underlay (198.18.N.250:5000), so its link can be
    # shaped with tc like a far registry's. Plain HTTP: the engines are
    # started with --insecure-registry for the underlay's /24.

    @property
    def registry_netns(self) -> str:
        return f"{self.prefix}reg"

    @property
    def registry_veth(self) -> str:
        return f"{self.prefix}vreg"

    @property
    def registry_addr(self) -> str:
        return f"198.18.{self.subnet_index}.250:5000"

    def start_registry(self, user: str, password: str, timeout: float = 30.0) -> str:
        """Start (or restart, keeping its storage) the registry; returns host:port."""
        for tool in ("docker-registry", "htpasswd"):
            if shutil.which(tool) is None:
                raise TestbedError(f"{tool} is not installed (run scripts/install.sh)")
        reg_dir = self.base / "registry"
        reg_dir.mkdir(parents=True, exist_ok=True)
        if not os.path.exists(f"/run/netns/{self.registry_netns}"):
            ip = self.registry_addr.split(":")[0]
            _run(
                ["ip", "-batch", "-"],
                input=(
                    f"netns add {self.registry_netns}\n"
                    f"link add {self.registry_veth} type veth peer name eth0 netns {self.registry_netns}\n"
                    f"link set {self.registry_veth} master {self.bridge} up\n"
                ),
            )
            _run(
                ["ip", "-n", self.registry_netns, "-batch", "-"],
                input=f"link set lo up\naddr add {ip}/24 dev eth0\nlink set eth0 up\n",
            )
        hashed = _run(["htpasswd", "-Bbn", user, password]).stdout
        (reg_dir / "htpasswd").write_text(hashed)
        (reg_dir / "config.yml").write_text(
            "version: 0.1\n"
            "log:\n  level: warn\n"
            f"storage:\n  filesystem:\n    rootdirectory: {reg_dir / 'data'}\n  delete:\n    enabled: true\n"
            f"http:\n  addr: {self.registry_addr}\n"
            f"auth:\n  htpasswd:\n    realm: swarmlet-test\n    path: {reg_dir / 'htpasswd'}\n"
        )
        self.stop_registry()
        cmd = ["nsenter", f"--net=/run/netns/{self.registry_netns}", "docker-registry", "serve", str(reg_dir / "config.yml")]
        self._spawn(cmd, str(reg_dir / "registry.log"), reg_dir / "registry.pid")
        host, port = self.registry_addr.split(":")

        _poll(
            lambda: _tcp_answers_in(self.registry_netns, host, int(port)),
            timeout,
            f"registry at {self.registry_addr}",
            fail_fast=self._exited(reg_dir / "registry.pid", str(reg_dir / "registry.log")),
        )
        return self.registry_addr

    def stop_registry(self) -> None:
        """Stop the registry process (its namespace and storage stay)."""
        pid = self._read_pid(self.base / "registry" / "registry.pid")
        if pid is not None and any(a == "docker-registry" or a.endswith("/docker-registry") for a in _proc_argv(pid)):
            _kill_and_wait([pid], signal.SIGKILL, 10, self._reap_child)
            self._forget(pid)

    def registry_running(self) -> bool:
        pid = self._read_pid(self.base / "registry" / "registry.pid")
        return pid is not None and _alive(pid) and any("docker-registry" in a for a in _proc_argv(pid))

    def _registry_down(self) -> None:
        self.stop_registry()
        inode = _netns_inode(f"/run/netns/{self.registry_netns}")
        if inode is not None:
            _kill_and_wait(_pids_in_netns(inode), signal.SIGKILL, 10, self._reap_child)
            _run(["ip", "netns", "del", self.registry_netns], check=False)
        _run(["ip", "link", "del", self.registry_veth], check=False)

    def shape(self, netns: str, rate: str = "1gbit") -> None:
        """Limit what `netns` sends on its underlay link (its uploads) to
        `rate`, as a far registry's link would be (tc tbf)."""
        _run(
            [
                "nsenter",
                f"--net=/run/netns/{netns}",
                "tc",
                "qdisc",
                "replace",
                "dev",
                "eth0",
                "root",
                "tbf",
                "rate",
                rate,
                "burst",
                "256kb",
                "latency",
                "50ms",
            ]
        )

    def unshape(self, netns: str) -> None:
        _run(["nsenter", f"--net=/run/netns/{netns}", "tc", "qdisc", "del", "dev", "eth0", "root"], check=False)

    # ---- status

    def status(self) -> str:
        """A human-readable table of this prefix's hosts and what runs in them."""
        state = self._read_state()
        if state is not None:
            self.subnet_index = int(state["subnet_index"])
        hosts = [self.host(i) for i in sorted(self._leftover_indexes())]
        if not hosts:
            return f"testbed {self.prefix}: nothing is up"
        links = _run(["ip", "-o", "link", "show"], check=False).stdout
        netns = {line.split()[0] for line in _run(["ip", "netns", "list"], check=False).stdout.splitlines() if line.split()}

        def link_state(name: str) -> str:
            for line in links.splitlines():
                if f": {name}:" in line or f": {name}@" in line:
                    flags = line[line.index("<") + 1 : line.index(">")].split(",")
                    return "up" if "UP" in flags else "DOWN (cut)"
            return "missing"

        out = [
            f"testbed {self.prefix}: base {self.base}, bridge {self.bridge} "
            f"({self.bridge_ip}/24) {link_state(self.bridge)}, image tar "
            f"{self.image_tar if self.image_tar.is_file() else 'not built'}"
        ]
        rows = [("HOST", "NETNS", "IP", "LINK", "DOCKERD", "SWARMLET")]
        for host in hosts:
            rows.append(
                (
                    host.name,
                    host.netns if host.netns in netns else f"{host.netns} (missing)",
                    host.ip,
                    link_state(host.root_veth),
                    f"{'up' if _docker_ping(host.docker_sock) else 'down'} {host.docker_url}",
                    f"{'up' if self.swarmlet_running(host) else 'down'} unix://{host.swarmlet_sock}",
                )
            )
        widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
        out += ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)).rstrip() for row in rows]
        return "\n".join(out)


# --------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("up", "down", "status"):
        cmd = sub.add_parser(name)
        cmd.add_argument("--prefix", default="sl")
        cmd.add_argument("--base", default=None, help="default /var/lib/swarmlet-testbed/PREFIX")
        if name == "up":
            cmd.add_argument("--hosts", type=int, default=3)
            cmd.add_argument("--subnet-index", type=int, default=0)
            cmd.add_argument("--no-swarmlet", action="store_true", help="engines only, no swarmlet daemons")
            cmd.add_argument("--default-route", action="store_true", help="route via the bridge address")
            cmd.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args(argv)

    bed = Testbed(prefix=args.prefix, subnet_index=getattr(args, "subnet_index", 0), base=args.base)
    if args.command == "down":
        bed.down()
        print(f"testbed {args.prefix}: down")
        return 0
    if args.command == "status":
        print(bed.status())
        return 0
    try:
        bed.up(args.hosts, swarmlet=not args.no_swarmlet, default_route=args.default_route, timeout=args.timeout)
    except TestbedError as exc:
        print(f"testbed {args.prefix}: up failed: {exc}", file=sys.stderr)
        print(f"(leftovers stay for inspection; remove them with: {sys.argv[0]} down --prefix {args.prefix})", file=sys.stderr)
        return 1
    print(bed.status())
    print("timings: " + ", ".join(f"{k} {v:.2f}s" for k, v in bed.timings.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
