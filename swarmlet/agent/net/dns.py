"""The embedded DNS server: one UDP socket at 127.0.0.11:53 inside each
wired container's network namespace, all served by one thread of the agent.

A socket belongs to the namespace it was created in, whatever thread uses it
later: a short-lived thread enters the container's namespace (setns only
changes the calling thread), creates and binds the socket, and exits. The
socket also keeps that namespace alive, so it must be closed when the task
ends (the network agent does that on release).

Names are answered from the network agent's view of the replicated state
(`resolve` says how); anything else is forwarded, from a socket in the
agent's namespace, to the task's own --dns servers if it has some, else to
the resolvers of the agent's own /etc/resolv.conf.

Forwarding is bounded (issue 13): at most `MAX_PENDING_FORWARDS` queries wait
for an upstream answer at once (beyond that a query is answered SERVFAIL at
once, so a flood from one container costs nothing but SERVFAILs), and an
upstream reply counts only if it comes from the server asked (a connected
socket: the kernel drops anything else) and carries the query's id and
question (an off-path spoofer must guess both).
"""

from __future__ import annotations

import ctypes
import logging
import os
import random
import selectors
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor

from swarmlet.api import dispatcher_pb2 as dpb
from swarmlet.api import objects_pb2 as pb

log = logging.getLogger(__name__)

DNS_ADDR = "127.0.0.11"
CLONE_NEWNET = 0x40000000
TYPE_A = 1
TYPE_AAAA = 28
CLASS_IN = 1
RCODE_SERVFAIL = 2
RCODE_NXDOMAIN = 3
TTL = 1  # seconds: answers follow scaling within a second
FORWARD_TIMEOUT = 2.0
FORWARD_THREADS = 4
MAX_PENDING_FORWARDS = 64

# (task_id, name, qtype) -> addresses, or None when the name is not the cluster's
Lookup = Callable[[str, str, int], list[str] | None]
# task_id -> the task's --dns servers (empty: the host's resolvers)
Upstreams = Callable[[str], list[str]]
Peer = tuple[str, int]

_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"setns: {os.strerror(e)}")


def socket_in_netns(pid: int, addr: tuple[str, int]) -> socket.socket:
    """A bound UDP socket inside the network namespace of process `pid`."""
    out: dict[str, socket.socket | BaseException] = {}

    def run() -> None:
        try:
            with open(f"/proc/{pid}/ns/net", "rb") as f:
                _setns(f.fileno())
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(addr)
            s.setblocking(False)
            out["sock"] = s
        except BaseException as e:  # reported to the caller
            out["err"] = e

    # This thread ends in the container's namespace: it must not be reused.
    t = threading.Thread(target=run, name="dns-netns", daemon=True)
    t.start()
    t.join()
    sock, err = out.get("sock"), out.get("err")
    if isinstance(err, BaseException):
        raise err
    assert isinstance(sock, socket.socket)
    return sock


# ---- a minimal DNS codec: one question, A answers ----


def parse_query(data: bytes) -> tuple[int, int, str, int, bytes]:
    """(id, flags, name, qtype, raw question). Raises ValueError."""
    if len(data) < 12:
        raise ValueError("short packet")
    qid, flags, qd = struct.unpack(">HHH", data[:6])
    if qd != 1:
        raise ValueError("expected one question")
    labels, i = [], 12
    while True:
        if i >= len(data):
            raise ValueError("truncated name")
        n = data[i]
        i += 1
        if n == 0:
            break
        if n & 0xC0:
            raise ValueError("compressed name in question")
        labels.append(data[i : i + n].decode("ascii", "replace"))
        i += n
    if i + 4 > len(data):
        raise ValueError("truncated question")
    qtype, _qclass = struct.unpack(">HH", data[i : i + 4])
    return qid, flags, ".".join(labels).lower(), qtype, data[12 : i + 4]


def build_answer(qid: int, qflags: int, question: bytes, addrs: list[str], rcode: int = 0) -> bytes:
    flags = 0x8000 | 0x0400 | (qflags & 0x0100) | 0x0080 | rcode  # QR, AA, RD copied, RA
    out = [struct.pack(">HHHHHH", qid, flags, 1, len(addrs), 0, 0), question]
    for a in addrs:
        out.append(struct.pack(">HHHIH", 0xC00C, TYPE_A, CLASS_IN, TTL, 4) + socket.inet_aton(a))
    return b"".join(out)


def resolve(
    assignments: Mapping[str, dpb.NetworkAssignment], network_ids: Iterable[str], name: str, qtype: int
) -> list[str] | None:
    """The answer to a query from a task on `network_ids` (its networks):
    a service's VIP (its tasks' addresses in dnsrr mode), `tasks.<service>`
    its tasks' addresses; A records only (an AAAA query for a cluster name
    gets an empty answer). None if the name is not the cluster's. The
    ingress network carries no names."""
    want_tasks = name.startswith("tasks.")
    svc_name = name[len("tasks.") :] if want_tasks else name
    found = False
    out: list[str] = []
    for nid in network_ids:
        a = assignments.get(nid)
        if a is None or a.network.spec.ingress:
            continue
        for s in a.services:
            if s.name.lower() != svc_name and svc_name not in (a.lower() for a in s.aliases):
                continue
            found = True
            if not want_tasks and s.mode == pb.EndpointSpec.VIP and s.vip:
                out.append(s.vip)
            else:
                out.extend(b.addr for b in s.backends)
    if not found:
        return None
    return out if qtype == TYPE_A else []


def host_resolvers(path: str = "/etc/resolv.conf") -> list[str]:
    out = []
    try:
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 2 and parts[0] == "nameserver" and parts[1] != DNS_ADDR:
                    out.append(parts[1])
    except OSError:
        pass
    return out


class DnsServer:
    def __init__(self, lookup: Lookup, upstreams: Upstreams | None = None) -> None:
        self._lookup = lookup
        self._upstreams = upstreams
        self._sel = selectors.DefaultSelector()
        self._lock = threading.Lock()
        self._socks: dict[str, socket.socket] = {}
        self._forwarders = ThreadPoolExecutor(FORWARD_THREADS, thread_name_prefix="dns-fwd")
        self._pending = 0  # forwards queued or running (under _lock)
        self._stop = threading.Event()
        # A socketpair wakes the select loop when sockets come and go.
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._sel.register(self._wake_r, selectors.EVENT_READ, None)
        self._thread = threading.Thread(target=self._serve, name="dns", daemon=True)
        self._thread.start()

    def serving(self, task_id: str) -> bool:
        with self._lock:
            return task_id in self._socks

    def add(self, task_id: str, pid: int) -> None:
        with self._lock:
            if task_id in self._socks:
                return
        s = socket_in_netns(pid, (DNS_ADDR, 53))
        with self._lock:
            self._socks[task_id] = s
            self._sel.register(s, selectors.EVENT_READ, task_id)
        self._wake_w.send(b"x")

    def remove(self, task_id: str) -> None:
        with self._lock:
            s = self._socks.pop(task_id, None)
            if s is not None:
                try:
                    self._sel.unregister(s)
                except (KeyError, ValueError):
                    pass
                s.close()
        self._wake_w.send(b"x")

    def task_ids(self) -> list[str]:
        with self._lock:
            return list(self._socks)

    def stop(self) -> None:
        self._stop.set()
        self._wake_w.send(b"x")
        for tid in self.task_ids():
            self.remove(tid)
        self._forwarders.shutdown(wait=False, cancel_futures=True)

    def _serve(self) -> None:
        while not self._stop.is_set():
            for key, _ in self._sel.select(timeout=1.0):
                if key.data is None:
                    try:
                        self._wake_r.recv(4096)
                    except BlockingIOError:
                        pass
                    continue
                sock: socket.socket = key.fileobj  # type: ignore[assignment]
                try:
                    data, peer = sock.recvfrom(4096)
                except (BlockingIOError, OSError):
                    continue
                self._handle(key.data, sock, data, peer)

    def _handle(self, task_id: str, sock: socket.socket, data: bytes, peer: Peer) -> None:
        try:
            qid, flags, name, qtype, question = parse_query(data)
        except ValueError:
            return
        try:
            addrs = self._lookup(task_id, name, qtype)
        except Exception:
            log.exception("dns lookup of %s failed", name)
            addrs = None
        if addrs is not None:
            random.shuffle(addrs)
            reply = build_answer(qid, flags, question, addrs if qtype == TYPE_A else [])
            self._send(sock, reply, peer)
            return
        servers: list[str] = []
        if self._upstreams is not None:
            try:
                servers = self._upstreams(task_id)
            except Exception:
                log.exception("dns servers of task %s", task_id)
        with self._lock:
            full = self._pending >= MAX_PENDING_FORWARDS
            if not full:
                self._pending += 1
        if full:
            self._send(sock, build_answer(qid, flags, question, [], rcode=RCODE_SERVFAIL), peer)
            return
        self._forwarders.submit(self._forward_counted, sock, data, peer, qid, flags, question, servers)

    def _forward_counted(
        self, sock: socket.socket, data: bytes, peer: Peer, qid: int, flags: int, question: bytes, servers: list[str]
    ) -> None:
        try:
            self._forward(sock, data, peer, qid, flags, question, servers)
        finally:
            with self._lock:
                self._pending -= 1

    @staticmethod
    def _send(sock: socket.socket, reply: bytes, peer: Peer) -> None:
        try:
            sock.sendto(reply, peer)
        except OSError:
            pass  # the container went away

    def _forward(
        self, sock: socket.socket, data: bytes, peer: Peer, qid: int, flags: int, question: bytes, servers: list[str]
    ) -> None:
        for server in servers or host_resolvers():
            try:
                reply = forward_query(server, data, qid, question, FORWARD_TIMEOUT)
            except OSError:
                continue
            if reply is not None:
                self._send(sock, reply, peer)
                return
        self._send(sock, build_answer(qid, flags, question, [], rcode=RCODE_SERVFAIL), peer)


def reply_matches(reply: bytes, qid: int, question: bytes) -> bool:
    """A reply to our query: a response (QR set) with its id and question."""
    if len(reply) < 12 + len(question):
        return False
    rid, rflags, qd = struct.unpack(">HHH", reply[:6])
    return rid == qid and bool(rflags & 0x8000) and qd == 1 and reply[12 : 12 + len(question)].lower() == question.lower()


def forward_query(server: str, data: bytes, qid: int, question: bytes, timeout: float, port: int = 53) -> bytes | None:
    """Ask one upstream server; its reply, or None if none that matches
    came in time. The socket is connected, so the kernel delivers only
    datagrams from (server, port); a reply with another id or question is
    ignored (and we keep waiting until the deadline)."""
    family = socket.AF_INET6 if ":" in server else socket.AF_INET
    deadline = time.monotonic() + timeout
    with socket.socket(family, socket.SOCK_DGRAM) as up:
        up.connect((server, port))
        up.send(data)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            up.settimeout(left)
            try:
                reply = up.recv(4096)
            except TimeoutError:
                return None
            if reply_matches(reply, qid, question):
                return reply
