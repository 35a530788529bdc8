"""The Raft port (4243/tcp), hardened: pysyncobj's TCP transport with caps in
front of it and a key ring that lets the Raft secret change without downtime.

pysyncobj 0.3.17 (LIBRARIES.md) reads a 32-bit, sender-chosen frame length
and buffers that many bytes, by `bytes +=` on its tick thread (quadratic
copying), before anything is decrypted; it never caps connections that have
not authenticated, and it serves "readonly" followers (which receive the whole
log) and admin commands (add/remove members) to any peer that knows the
password. This module subclasses its classes (no global patch; `DurableSyncObj`
passes `GuardedTransport` as pysyncobj's `transportClass`):

- `GuardedTcpConnection`: a frame announced longer than `MAX_FRAME_PREAUTH`
  before the peer proved it holds the key (its first frame decrypted), or
  longer than `MAX_FRAME` after, or negative, closes the connection at once:
  nothing of it is buffered. The read buffer is a bytearray consumed in place,
  and reading stops once a whole frame is buffered (the rest waits in the
  kernel), so memory stays bounded by one frame per connection.
- `GuardedTransport`: at most `MAX_UNAUTHENTICATED` incoming connections may be
  unauthenticated at once (the oldest is dropped for a new one), each for at
  most `AUTH_DEADLINE` seconds; "readonly" peers and admin commands are refused
  (swarmlet uses neither). Refusals are logged, at most once a second.
- `RaftKeyring` / `ConnectionCipher`: the Fernet keys derived from the Raft
  secret. A connection speaks the current key; it accepts the current and the
  previous one. A connection a peer opened is answered in the key the peer
  used, and an outgoing connection that never authenticated retries with the
  next accepted key: so a manager that has not yet applied a rotation and one
  that has still understand each other until the previous secret is retired
  (manager/keykeeper.py drives the rotation).

The attribute names below (`_TcpConnection__readBuffer`, ...) are
pysyncobj's name-mangled privates, checked against the pinned version by
tests/unit/manager/test_rafttransport.py.
"""

from __future__ import annotations

import base64
import errno
import functools
import logging
import socket
import struct
import threading
import time
import zlib
from typing import Any

import pysyncobj.pickle as pysyncobj_pickle
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from pysyncobj.dns_resolver import globalDnsResolver
from pysyncobj.poller import POLL_EVENT_TYPE
from pysyncobj.tcp_connection import TcpConnection
from pysyncobj.tcp_server import TcpServer
from pysyncobj.transport import TCPTransport

from swarmlet import errors

log = logging.getLogger(__name__)

# A frame before the peer authenticated: the key exchange is ~200 bytes.
MAX_FRAME_PREAUTH = 4096
# An authenticated frame: append-entries batches are ~1 MiB (store.py sets
# appendEntriesBatchSizeBytes), Fernet adds a third; forwarded commands are
# single store batches, bounded by the input limits of core/limits.py.
MAX_FRAME = 64 << 20
MAX_UNAUTHENTICATED = 16
AUTH_DEADLINE = 5.0
MIN_RAFT_SECRET = 32

_HEADER = struct.Struct("i")  # pysyncobj's: native signed 32-bit
_INFO = b"swarmlet-raft-transport-v2"


def check_raft_secret(secret: bytes) -> None:
    """Refuse a Raft secret too short to be one (an empty file would give a
    fixed, public key)."""
    if len(secret) < MIN_RAFT_SECRET:
        raise errors.Invalid(f"the Raft secret is {len(secret)} bytes long: at least {MIN_RAFT_SECRET} are required")


@functools.lru_cache(maxsize=16)
def _fernet(secret: bytes) -> Fernet:
    # Cached: the same secret is the same key object, so a connection keeps
    # its established key across key ring updates that still accept it.
    check_raft_secret(secret)
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(secret)
    return Fernet(base64.urlsafe_b64encode(key))


class _Refusals:
    """Logs refusals on the Raft port, at most one line a second (a flood must
    not flood the log), with the count of those not logged."""

    def __init__(self) -> None:
        self._last = 0.0
        self._quiet = 0

    def note(self, peer: str, why: str) -> None:
        now = time.monotonic()
        if now - self._last < 1.0:
            self._quiet += 1
            return
        extra = f" ({self._quiet} more refusals not logged)" if self._quiet else ""
        self._last, self._quiet = now, 0
        log.warning("raft port: closed a connection from %s: %s%s", peer or "?", why, extra)


REFUSALS = _Refusals()


class RaftKeyring:
    """The transport keys of one manager: `current` (spoken on new
    connections) and the accepted ones (current first, then the previous
    secret while a rotation is being completed). Swapped atomically by the
    key keeper's thread; read by pysyncobj's tick thread."""

    def __init__(self, secret: bytes, epoch: int = 0) -> None:
        self._lock = threading.Lock()
        self._state: tuple[int, bytes, Fernet, tuple[Fernet, ...]] = (0, b"", _fernet(secret), ())
        self.set(epoch, secret)

    def set(self, epoch: int, current: bytes, previous: bytes = b"") -> None:
        cur = _fernet(current)
        accepted = (cur, _fernet(previous)) if previous and previous != current else (cur,)
        with self._lock:
            self._state = (epoch, current, cur, accepted)

    @property
    def epoch(self) -> int:
        return self._state[0]

    @property
    def secret(self) -> bytes:
        return self._state[1]

    @property
    def current(self) -> Fernet:
        return self._state[2]

    @property
    def accepted(self) -> tuple[Fernet, ...]:
        return self._state[3]


class ConnectionCipher:
    """What pysyncobj's TcpConnection calls `encryptor`, per connection."""

    def __init__(self, ring: RaftKeyring, outgoing: bool) -> None:
        self._ring = ring
        self._outgoing = outgoing
        self._send: Fernet | None = None
        self._matched: Fernet | None = None
        self._attempt = 0
        self.authenticated = False

    def new_attempt(self) -> None:
        """An outgoing connection (re)connects: if the last attempt never
        heard the peer in a key we know, try the next accepted key."""
        if not self.authenticated and self._send is not None:
            self._attempt += 1
        accepted = self._ring.accepted
        self._send = accepted[self._attempt % len(accepted)]
        self.authenticated = False

    def _send_key(self) -> Fernet:
        accepted = self._ring.accepted
        if self._send is None or not any(k is self._send for k in accepted):
            self._send = self._ring.current  # never sent yet, or its key retired
        return self._send

    def encrypt_at_time(self, data: bytes, current_time: int) -> bytes:
        token: bytes = self._send_key().encrypt_at_time(data, current_time)
        return token

    def _candidates(self) -> list[Fernet]:
        accepted = list(self._ring.accepted)
        first = [k for k in (self._matched, self._send) if k is not None and any(k is a for a in accepted)]
        return first + [k for k in accepted if not any(k is f for f in first)]

    def extract_timestamp(self, token: bytes) -> int:
        for k in self._candidates():
            try:
                ts: int = k.extract_timestamp(token)
                self._matched = k
                return ts
            except InvalidToken:
                continue
        raise InvalidToken

    def decrypt(self, token: bytes) -> bytes:
        for k in self._candidates():
            try:
                data: bytes = k.decrypt(token)
            except InvalidToken:
                continue
            if not self.authenticated:
                self.authenticated = True
                if not self._outgoing:
                    self._send = k  # answer in the key the peer spoke
            return data
        raise InvalidToken


def _peer_of(sock: socket.socket | None) -> str:
    try:
        host, port = sock.getpeername()[:2] if sock is not None else ("", 0)
        return f"{host}:{port}"
    except OSError:
        return ""


class GuardedTcpConnection(TcpConnection):  # type: ignore[misc]  # pysyncobj has no type hints
    """pysyncobj's connection with bounded frames (see the module doc)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.opened_at = time.monotonic()
        self._TcpConnection__readBuffer = bytearray()

    @property
    def peer(self) -> str:
        return _peer_of(self._TcpConnection__socket)

    def _authenticated(self) -> bool:
        cipher = self.encryptor
        return isinstance(cipher, ConnectionCipher) and cipher.authenticated

    def connect(self, host: str, port: int) -> bool:
        cipher = self.encryptor
        if isinstance(cipher, ConnectionCipher):
            cipher.new_attempt()
        ok: bool = super().connect(host, port)
        self._TcpConnection__readBuffer = bytearray()
        self.opened_at = time.monotonic()
        return ok

    def disconnect(self) -> None:
        super().disconnect()
        self._TcpConnection__readBuffer = bytearray()

    def _buffer(self) -> bytearray:
        buf = self._TcpConnection__readBuffer
        if not isinstance(buf, bytearray):  # reset by pysyncobj to bytes()
            buf = self._TcpConnection__readBuffer = bytearray(buf)
        return buf

    def _frame_refused(self, length: int) -> str | None:
        limit = MAX_FRAME if self._authenticated() else MAX_FRAME_PREAUTH
        if length < 0:
            return f"a frame of negative length {length}"
        if length > limit:
            state = "after" if self._authenticated() else "before"
            return f"a frame of {length} bytes announced {state} authentication (limit {limit})"
        return None

    def _refuse(self, why: str) -> None:
        REFUSALS.note(self.peer, why)
        self.disconnect()

    def _TcpConnection__processRead(self) -> bool:
        buf = self._buffer()
        if len(buf) >= _HEADER.size:
            (length,) = _HEADER.unpack_from(buf)
            if len(buf) >= _HEADER.size + max(length, 0):
                return False  # a whole frame is here: parse it before reading more
        sock = self._TcpConnection__socket
        try:
            incoming = sock.recv(self._TcpConnection__recvBufferSize)
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.EWOULDBLOCK):
                self.disconnect()
            return False
        if sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
            self.disconnect()
            return False
        if not incoming:
            self.disconnect()
            return False
        buf += incoming
        if len(buf) >= _HEADER.size:
            (length,) = _HEADER.unpack_from(buf)
            why = self._frame_refused(length)
            if why is not None:
                self._refuse(why)
                return False
        return True

    def _TcpConnection__processParseMessage(self) -> Any:
        buf = self._buffer()
        if len(buf) < _HEADER.size:
            return None
        (length,) = _HEADER.unpack_from(buf)
        why = self._frame_refused(length)
        if why is not None:
            self._refuse(why)
            return None
        end = _HEADER.size + length
        if len(buf) < end:
            return None
        data = bytes(buf[_HEADER.size : end])
        try:
            cipher = self.encryptor
            if cipher is None:
                raise ValueError("no encryption: refused")
            stamp = cipher.extract_timestamp(data)
            last = int(getattr(self, "recvLastTimestamp", 0))
            if stamp < last:
                raise ValueError("a replayed frame")
            self.recvLastTimestamp = stamp
            data = cipher.decrypt(data)
            message = pysyncobj_pickle.loads(zlib.decompress(data))
            if self.recvRandKey:
                rand_key, message = message
                if rand_key != self.recvRandKey:
                    raise ValueError("a frame of another connection")
        except Exception as e:  # whatever the peer sent, it is not one of us
            self._refuse(f"a frame that does not authenticate ({type(e).__name__})")
            return None
        del buf[:end]
        return message


class GuardedTcpServer(TcpServer):  # type: ignore[misc]
    """pysyncobj's server, making GuardedTcpConnections."""

    def _TcpServer__onNewConnection(self, descr: int, event: int) -> None:
        if event & POLL_EVENT_TYPE.READ:
            try:
                sock, _ = self._TcpServer__socket.accept()
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self._TcpServer__sendBufferSize)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self._TcpServer__recvBufferSize)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.setblocking(False)
                conn = GuardedTcpConnection(
                    poller=self._TcpServer__poller,
                    socket=sock,
                    timeout=self._TcpServer__connectionTimeout,
                    sendBufferSize=self._TcpServer__sendBufferSize,
                    recvBufferSize=self._TcpServer__recvBufferSize,
                    keepalive=self._TcpServer__keepalive,
                )
                self._TcpServer__onNewConnectionCallback(conn)
            except OSError as e:
                if e.errno not in (errno.EAGAIN, errno.EWOULDBLOCK):
                    self.unbind()
                    return
        if event & POLL_EVENT_TYPE.ERROR:
            self.unbind()


class GuardedTransport(TCPTransport):  # type: ignore[misc]
    """pysyncobj's TCP transport over the guarded classes above. The SyncObj's
    `encryptor` is the manager's RaftKeyring."""

    def _ring(self) -> RaftKeyring:
        ring = self._syncObj.encryptor
        assert isinstance(ring, RaftKeyring), "DurableSyncObj provides the key ring"
        return ring

    def _createServer(self) -> None:
        conf = self._syncObj.conf
        bind = conf.bindAddress or self._selfNode.address
        host, port = bind.rsplit(":", 1)
        if host != "0.0.0.0":
            host = globalDnsResolver().resolve(host)
        self._server = GuardedTcpServer(
            self._syncObj._poller,
            host,
            port,
            onNewConnection=self._onNewIncomingConnection,
            sendBufferSize=conf.sendBufferSize,
            recvBufferSize=conf.recvBufferSize,
            connectionTimeout=conf.connectionTimeout,
        )

    def _onNewIncomingConnection(self, conn: GuardedTcpConnection) -> None:
        unknown = sorted(self._unknownConnections, key=lambda c: getattr(c, "opened_at", 0.0))
        while len(unknown) >= MAX_UNAUTHENTICATED:
            oldest = unknown.pop(0)
            REFUSALS.note(getattr(oldest, "peer", ""), f"more than {MAX_UNAUTHENTICATED} unauthenticated connections")
            self._unknownConnections.discard(oldest)
            oldest.disconnect()
        super()._onNewIncomingConnection(conn)
        conn.encryptor = ConnectionCipher(self._ring(), outgoing=False)

    def _onIncomingMessageReceived(self, conn: GuardedTcpConnection, message: Any) -> None:
        if conn.sendRandKey and (isinstance(message, list) or message == "readonly"):
            # swarmlet uses neither admin commands nor read-only followers.
            REFUSALS.note(conn.peer, "an admin command or a read-only follower (refused)")
            self._unknownConnections.discard(conn)
            conn.disconnect()
            return
        super()._onIncomingMessageReceived(conn, message)

    def _onTick(self) -> None:
        super()._onTick()
        now = time.monotonic()
        for conn in list(self._unknownConnections):
            if now - getattr(conn, "opened_at", now) > AUTH_DEADLINE:
                REFUSALS.note(getattr(conn, "peer", ""), f"not authenticated within {AUTH_DEADLINE:g}s")
                self._unknownConnections.discard(conn)
                conn.disconnect()

    def addNode(self, node: Any) -> None:
        self._nodes.add(node)
        self._nodeAddrToNode[node.address] = node
        if self._shouldConnect(node):
            conf = self._syncObj.conf
            conn = GuardedTcpConnection(
                poller=self._syncObj._poller,
                timeout=conf.connectionTimeout,
                sendBufferSize=conf.sendBufferSize,
                recvBufferSize=conf.recvBufferSize,
                keepalive=conf.tcp_keepalive,
            )
            conn.encryptor = ConnectionCipher(self._ring(), outgoing=True)
            conn.setOnConnectedCallback(functools.partial(self._onOutgoingConnected, conn))
            conn.setOnMessageReceivedCallback(functools.partial(self._onMessageReceived, node))
            conn.setOnDisconnectedCallback(functools.partial(self._onDisconnected, conn))
            self._connections[node] = conn


__all__ = [
    "AUTH_DEADLINE",
    "MAX_FRAME",
    "MAX_FRAME_PREAUTH",
    "MAX_UNAUTHENTICATED",
    "ConnectionCipher",
    "GuardedTransport",
    "RaftKeyring",
    "check_raft_secret",
]
