"""The Raft port (swarmlet/manager/rafttransport.py) against real stores on
loopback: frames announced too long are refused before anything is buffered,
unauthenticated connections are capped in number and time, key holders may
neither follow read-only nor send admin commands, and the key ring lets the
Raft secret change under running managers."""

from __future__ import annotations

import os
import pickle
import socket
import struct
import threading
import time
import zlib

import pytest
from cryptography.fernet import Fernet
from pysyncobj import SyncObj, SyncObjConf
from pysyncobj.tcp_connection import TcpConnection
from pysyncobj.tcp_server import TcpServer

from swarmlet import errors
from swarmlet.api import objects_pb2 as pb
from swarmlet.core import state as st
from swarmlet.manager import rafttransport as rt
from swarmlet.manager.store import Store
from tests.unit.manager import helpers as h
from tests.waiting import wait_for

SECRET = h.RAFT_SECRET


def rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def port_of(store: Store) -> int:
    return int(store.self_addr.rsplit(":", 1)[1])


@pytest.fixture
def store(tmp_path):
    s = h.leader_store(tmp_path)
    yield s
    s.close()


def flood(port: int, header: bytes, total: int) -> int:
    """Send `header` then up to `total` bytes; how many went out before the
    peer closed the connection."""
    chunk = b"\0" * (1 << 20)
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        try:
            s.sendall(header)
            while sent < total:
                s.sendall(chunk)
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            pass
    return sent


def closed_by_peer(sock: socket.socket, timeout: float) -> bool:
    sock.settimeout(timeout)
    try:
        return sock.recv(1) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False


# ---------------------------------------------------------------- pysyncobj internals


def test_pysyncobj_internals_this_relies_on_are_there() -> None:
    # An upgrade that renames these would silently bypass the caps.
    for name in ("_TcpConnection__processRead", "_TcpConnection__processParseMessage"):
        assert callable(getattr(TcpConnection, name, None)), name
    assert callable(getattr(TcpServer, "_TcpServer__onNewConnection", None))
    conn = rt.GuardedTcpConnection(poller=None)
    for name in ("_TcpConnection__readBuffer", "_TcpConnection__socket", "_TcpConnection__recvBufferSize"):
        assert hasattr(conn, name), name
    server = rt.GuardedTcpServer(None, "127.0.0.1", 0, lambda c: None)
    for name in ("_TcpServer__socket", "_TcpServer__poller", "_TcpServer__onNewConnectionCallback", "_TcpServer__keepalive"):
        assert hasattr(server, name), name


# ---------------------------------------------------------------- frames


def test_a_1gib_length_prefix_is_refused_at_once_and_memory_stays_flat(store: Store) -> None:
    before = rss()
    sent = flood(port_of(store), struct.pack("i", 1 << 30), 256 << 20)
    grown = rss() - before
    assert sent < 32 << 20, f"the daemon kept reading {sent >> 20} MiB of a frame it can never accept"
    assert grown < 32 << 20, f"memory grew by {grown >> 20} MiB"
    # The store still works.
    store.propose([st.put(pb.Task(id="t1", service_id="s"), create=True)])


def test_bare_pysyncobj_buffers_whatever_length_a_stranger_announces(tmp_path) -> None:
    """The control case: pysyncobj's own transport keeps reading."""
    port = h.free_port()
    obj = SyncObj(f"127.0.0.1:{port}", [], conf=SyncObjConf(password="x" * 32, autoTickPeriod=0.01))
    try:
        wait_for(obj._isLeader, 10, "the bare node leads")
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(struct.pack("i", 1 << 30) + b"\0" * (8 << 20))
            assert not closed_by_peer(s, 1.0), "pysyncobj keeps the connection, buffering toward 1 GiB"
    finally:
        obj.destroy_synchronous()


@pytest.mark.parametrize("length", [-1, rt.MAX_FRAME_PREAUTH + 1, rt.MAX_FRAME + 1])
def test_a_frame_over_the_limit_before_authentication_closes_the_connection(store: Store, length: int) -> None:
    with socket.create_connection(("127.0.0.1", port_of(store)), timeout=5) as s:
        s.sendall(struct.pack("i", length) + b"x" * 64)
        assert closed_by_peer(s, 5)


def test_garbage_that_does_not_decrypt_closes_the_connection(store: Store) -> None:
    data = zlib.compress(pickle.dumps("hello"))
    with socket.create_connection(("127.0.0.1", port_of(store)), timeout=5) as s:
        s.sendall(struct.pack("i", len(data)) + data)
        assert closed_by_peer(s, 5)


# ---------------------------------------------------------------- unauthenticated connections


def test_unauthenticated_connections_are_capped_and_time_out(store: Store, monkeypatch) -> None:
    monkeypatch.setattr(rt, "AUTH_DEADLINE", 1.0)
    socks = [socket.create_connection(("127.0.0.1", port_of(store)), timeout=5) for _ in range(rt.MAX_UNAUTHENTICATED + 8)]
    try:
        # The oldest were dropped for the newest: never more than the cap open.
        closed = [s for s in socks[:8] if closed_by_peer(s, 3)]
        assert len(closed) == 8
        # The rest are dropped once the deadline passes.
        assert all(closed_by_peer(s, 5) for s in socks[8:])
    finally:
        for s in socks:
            s.close()
    store.propose([st.put(pb.Task(id="t1", service_id="s"), create=True)])


# ---------------------------------------------------------------- key holders


class Peer:
    """A client that speaks pysyncobj's encrypted handshake with `key`."""

    def __init__(self, port: int, key: Fernet, host: str = "127.0.0.1") -> None:
        self.key = key
        self.sock = socket.create_connection((host, port), timeout=5)
        self.mine = os.urandom(32)
        self.send(self.mine)
        theirs = self.recv()
        assert isinstance(theirs, tuple) and theirs[0] == self.mine
        self.theirs = theirs[1]

    def send(self, message: object) -> None:
        data = self.key.encrypt_at_time(zlib.compress(pickle.dumps(message)), int(time.monotonic()))
        self.sock.sendall(struct.pack("i", len(data)) + data)

    def recv(self) -> object:
        head = self._exact(4)
        (n,) = struct.unpack("i", head)
        return pickle.loads(zlib.decompress(self.key.decrypt(self._exact(n))))

    def _exact(self, n: int) -> bytes:
        buf = b""
        while len(buf) < n:
            part = self.sock.recv(n - len(buf))
            if not part:
                raise ConnectionResetError("closed")
            buf += part
        return buf

    def close(self) -> None:
        self.sock.close()


@pytest.mark.parametrize("message", ["readonly", ["status"], ["add", "127.0.0.1:1"]])
def test_read_only_followers_and_admin_commands_are_refused_even_with_the_key(store: Store, message: object) -> None:
    peer = Peer(port_of(store), rt._fernet(SECRET))
    try:
        peer.send((peer.theirs, message))
        assert closed_by_peer(peer.sock, 5)
    finally:
        peer.close()
    assert store.members() == [store.self_addr]


def test_bare_pysyncobj_streams_its_log_to_any_read_only_follower(tmp_path) -> None:
    """The control case: with the password, 'readonly' receives the log."""
    from pysyncobj.encryptor import getEncryptor

    port = h.free_port()
    obj = SyncObj(f"127.0.0.1:{port}", [], conf=SyncObjConf(password="pw", autoTickPeriod=0.01, appendEntriesPeriod=0.05))
    try:
        wait_for(obj._isLeader, 10, "the bare node leads")
        peer = Peer(port, getEncryptor("pw"))
        peer.send((peer.theirs, "readonly"))
        got = peer.recv()
        assert isinstance(got, tuple) and got[1]["type"] == "append_entries"
        peer.close()
    finally:
        obj.destroy_synchronous()


# ---------------------------------------------------------------- the key ring


def test_a_secret_shorter_than_32_bytes_is_refused(tmp_path) -> None:
    with pytest.raises(errors.Invalid, match="at least 32"):
        rt.RaftKeyring(b"")
    with pytest.raises(errors.Invalid, match="at least 32"):
        Store(f"127.0.0.1:{h.free_port()}", [], str(tmp_path), b"short", data_key=h.DATA_KEY)


def test_the_secret_changes_under_running_managers_without_a_failed_write(tmp_path) -> None:
    addrs = [f"127.0.0.1:{h.free_port()}" for _ in range(3)]
    stores = [
        Store(a, [p for p in addrs if p != a], str(tmp_path / a.replace(":", "_")), SECRET, data_key=h.data_key_for(a))
        for a in addrs
    ]
    new = b"n" * 32
    failures: list[BaseException] = []
    done = threading.Event()

    def writer() -> None:
        i = 0
        while not done.is_set():
            leader = next((s for s in stores if s.is_leader()), None)
            if leader is None:
                time.sleep(0.02)
                continue
            try:
                leader.propose([st.put(pb.Task(id=f"w{i}", service_id="s"), create=True)], timeout=5)
                i += 1
            except Exception as e:  # noqa: BLE001  (any failed write fails the test)
                failures.append(e)

    try:
        wait_for(lambda: sum(s.is_leader() for s in stores) == 1, 20, "a leader")
        t = threading.Thread(target=writer)
        t.start()
        time.sleep(0.5)
        # One manager at a time takes the new secret (as they apply the
        # rotation), still accepting the old one...
        for s in stores:
            s.keyring.set(1, new, SECRET)
            time.sleep(0.3)
        # ...then each retires the old one.
        for s in stores:
            s.keyring.set(1, new)
            time.sleep(0.3)
        time.sleep(0.5)
        done.set()
        t.join(10)
        assert not failures, failures[:3]
        leader = next(s for s in stores if s.is_leader())
        wait_for(lambda: len(leader.reachable()) == 3, 10, "every manager connected with the new secret")
        count = len(leader.snapshot().tasks)
        assert count > 10
        # The old secret no longer opens the port.
        peer_failed = False
        try:
            Peer(port_of(leader), rt._fernet(SECRET)).close()
        except (ConnectionResetError, OSError):
            peer_failed = True
        assert peer_failed
    finally:
        done.set()
        for s in stores:
            s.close()
