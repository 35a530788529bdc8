"""Real TLS and real gRPC on 127.0.0.1: one server with a join port (server
TLS only) and an API port (mutual TLS), the CA service, and the join-time CA
fetch."""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from concurrent import futures
from dataclasses import dataclass, field

import grpc
import pytest
from cryptography import x509

from swarmlet import errors, tls
from swarmlet.aioserver import AioServer
from swarmlet.api import ca_pb2, ca_pb2_grpc
from swarmlet.api import objects_pb2 as pb
from swarmlet.core import pki
from swarmlet.ids import new_id
from swarmlet.manager import ca, ca_servicer

WHOAMI = "/test.Probe/WhoAmI"  # anonymous: reports what peer_identity sees
SECRET = "/test.Probe/Secret"  # guarded by ClientCertRequired
SECRET_STREAM = "/test.Probe/SecretStream"
RPC_TIMEOUT = 5.0


async def _whoami(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    ident = tls.peer_identity(context)
    return b"none" if ident is None else f"{ident.node_id}/{ident.role}/{ident.cluster_id}".encode()


async def _stream(request: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
    yield b"one"
    yield b"two"


HANG_ENDED = threading.Event()
GATE = threading.Event()


async def _gated(request: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
    # the second message only once the test opens the gate
    yield b"one"
    await asyncio.to_thread(GATE.wait, RPC_TIMEOUT)
    yield b"two"


async def _hang(request: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
    # a long-lived stream, like an agent session: ends only when the peer goes
    yield b"start"
    try:
        await asyncio.Event().wait()
    finally:  # cancelled when the RPC terminates (peer gone)
        HANG_ENDED.set()


async def _secret(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    return b"secret:" + request


async def _registered(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
    return b"registered"


_PROBE = grpc.method_handlers_generic_handler(
    "test.Probe",
    {
        "WhoAmI": grpc.unary_unary_rpc_method_handler(_whoami),
        "Hang": grpc.unary_stream_rpc_method_handler(_hang),
        "Secret": grpc.unary_unary_rpc_method_handler(_secret),
        "SecretStream": grpc.unary_stream_rpc_method_handler(_stream),
        "Gated": grpc.unary_stream_rpc_method_handler(_gated),
    },
)


@dataclass
class Manager:
    root: pb.RootCA
    cluster: pb.Cluster
    creds: tls.NodeCredentials
    join_port: int
    api_port: int
    registered: list[tuple[str, str, ca_pb2.IssueNodeCertificateRequest, str]] = field(default_factory=list)
    cluster_visible: bool = True
    register_error: Exception | None = None

    @property
    def join_addr(self) -> str:
        return f"127.0.0.1:{self.join_port}"

    @property
    def api_addr(self) -> str:
        return f"127.0.0.1:{self.api_port}"


@pytest.fixture(scope="module")
def manager() -> Iterator[Manager]:
    root = ca.create_root_ca()
    cluster = pb.Cluster(
        id="cluster1",
        root_ca=root,
        worker_token=ca.new_join_token(root.digest),
        manager_token=ca.new_join_token(root.digest),
    )
    key_pem, cert_pem = ca.issue_local_certificate(root, new_id(), "manager", cluster.id, "127.0.0.1")
    creds = tls.NodeCredentials.from_pems(key_pem, cert_pem, root.cert_pem)
    m = Manager(root, cluster, creds, 0, 0)

    def get_cluster() -> pb.Cluster | None:
        return m.cluster if m.cluster_visible else None

    def register_node(
        node_id: str, role: str, req: ca_pb2.IssueNodeCertificateRequest, peer_ip: str, issued: pb.NodeCertificate
    ) -> list[str]:
        if m.register_error is not None:
            raise m.register_error
        m.registered.append((node_id, role, req, peer_ip))
        return [m.api_addr]

    # The node-facing server as the daemon runs it (grpc.aio).
    server = AioServer(tls.SERVER_OPTIONS, [tls.ClientCertRequired(anonymous=(tls.CA_ISSUE_METHOD, WHOAMI))])
    server.call(lambda: server.server.add_generic_rpc_handlers((_PROBE,)))
    # generated servicers register their methods this way (grpcio >= 1.63)
    server.call(
        lambda: server.server.add_registered_method_handlers(
            "test.Registered", {"Secret": grpc.unary_unary_rpc_method_handler(_registered)}
        )
    )
    server.call(lambda: ca_pb2_grpc.add_CAServicer_to_server(ca_servicer.CAServicer(get_cluster, register_node), server.server))
    m.join_port = server.add_port("127.0.0.1:0", creds.server_credentials(require_client_auth=False))
    m.api_port = server.add_port("127.0.0.1:0", creds.server_credentials(require_client_auth=True))
    server.start()
    try:
        yield m
    finally:
        server.stop(None)


@pytest.fixture(autouse=True)
def _reset(manager: Manager) -> None:
    manager.cluster_visible = True
    manager.register_error = None


def _channel(addr: str, creds: grpc.ChannelCredentials) -> grpc.Channel:
    return grpc.secure_channel(addr, creds, options=tls.CHANNEL_OPTIONS)


def _call(addr: str, creds: grpc.ChannelCredentials, method: str = WHOAMI, body: bytes = b"") -> bytes:
    with _channel(addr, creds) as ch:
        return ch.unary_unary(method)(body, timeout=RPC_TIMEOUT)


def _node(m: Manager, role: str = "worker", root: pb.RootCA | None = None) -> tls.NodeCredentials:
    root = root or m.root
    node_id = new_id()
    key_pem, cert_pem = ca.issue_local_certificate(root, node_id, role, m.cluster.id, "127.0.0.1")
    return tls.NodeCredentials.from_pems(key_pem, cert_pem, root.cert_pem)


# ---------------------------------------------------------------- mTLS port


def test_api_port_reports_the_client_identity(manager: Manager) -> None:
    node = _node(manager)
    got = _call(manager.api_addr, node.channel_credentials())
    assert got == f"{node.node_id}/worker/cluster1".encode()


def test_api_port_serves_guarded_methods_to_certified_clients(manager: Manager) -> None:
    creds = _node(manager, "manager").channel_credentials()
    assert _call(manager.api_addr, creds, SECRET, b"x") == b"secret:x"
    with _channel(manager.api_addr, creds) as ch:
        assert list(ch.unary_stream(SECRET_STREAM)(b"", timeout=RPC_TIMEOUT)) == [b"one", b"two"]


def test_api_port_refuses_clients_without_certificate(manager: Manager) -> None:
    with pytest.raises(grpc.RpcError) as exc:
        _call(manager.api_addr, tls.channel_credentials(manager.root.cert_pem))
    assert exc.value.code() == grpc.StatusCode.UNAVAILABLE


def test_api_port_refuses_certificates_from_another_ca(manager: Manager) -> None:
    other_root = ca.create_root_ca()
    intruder = _node(manager, "manager", root=other_root)
    # trusts the real root (so the server check passes) but presents a cert
    # issued by another CA with the same identity fields
    creds = tls.channel_credentials(manager.root.cert_pem, intruder.key_pem, intruder.cert_pem)
    with pytest.raises(grpc.RpcError) as exc:
        _call(manager.api_addr, creds, SECRET)
    assert exc.value.code() == grpc.StatusCode.UNAVAILABLE


def test_client_refuses_a_server_from_another_ca(manager: Manager) -> None:
    other = _node(manager, root=ca.create_root_ca())
    with pytest.raises(grpc.RpcError) as exc:
        _call(manager.join_addr, tls.channel_credentials(other.ca_pem))
    assert exc.value.code() == grpc.StatusCode.UNAVAILABLE


# ---------------------------------------------------------------- join port


def test_join_port_has_no_identity(manager: Manager) -> None:
    assert _call(manager.join_addr, tls.channel_credentials(manager.root.cert_pem)) == b"none"


def test_join_port_ignores_client_certificates(manager: Manager) -> None:
    # even a valid certificate does not authenticate on the join port (the
    # server never asks for it), and a forged one cannot sneak in either
    forged = _node(manager, "manager", root=ca.create_root_ca())
    for node in (_node(manager, "manager"), forged):
        creds = tls.channel_credentials(manager.root.cert_pem, node.key_pem, node.cert_pem)
        assert _call(manager.join_addr, creds) == b"none"


def test_join_port_refuses_guarded_methods(manager: Manager) -> None:
    creds = tls.channel_credentials(manager.root.cert_pem)
    with pytest.raises(grpc.RpcError) as exc:
        _call(manager.join_addr, creds, SECRET)
    assert exc.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "node certificate" in exc.value.details()
    with _channel(manager.join_addr, creds) as ch, pytest.raises(grpc.RpcError) as exc:
        list(ch.unary_stream(SECRET_STREAM)(b"", timeout=RPC_TIMEOUT))
    assert exc.value.code() == grpc.StatusCode.UNAUTHENTICATED


def test_registered_methods_are_guarded_too(manager: Manager) -> None:
    with _channel(manager.join_addr, tls.channel_credentials(manager.root.cert_pem)) as ch:
        with pytest.raises(grpc.RpcError) as exc:
            ch.unary_unary("/test.Registered/Secret", _registered_method=True)(b"", timeout=RPC_TIMEOUT)
    assert exc.value.code() == grpc.StatusCode.UNAUTHENTICATED
    node = _node(manager)
    with _channel(manager.api_addr, node.channel_credentials()) as ch:
        assert ch.unary_unary("/test.Registered/Secret", _registered_method=True)(b"", timeout=RPC_TIMEOUT) == b"registered"


# ---------------------------------------------------------------- fetch_remote_ca


def test_fetch_remote_ca(manager: Manager) -> None:
    pem = tls.fetch_remote_ca(manager.join_addr, manager.root.digest)
    assert tls.ca_digest(pem) == manager.root.digest
    assert x509.load_pem_x509_certificate(pem) == x509.load_pem_x509_certificate(manager.root.cert_pem)


def test_fetch_remote_ca_digest_mismatch(manager: Manager) -> None:
    wrong = ca.create_root_ca().digest
    with pytest.raises(tls.CAMismatchError) as exc:
        tls.fetch_remote_ca(manager.join_addr, wrong)
    assert str(exc.value) == (
        f"the manager's CA does not match the join token (expected digest {wrong}, got {manager.root.digest})"
    )
    assert isinstance(exc.value, tls.JoinError)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_fetch_remote_ca_closed_port() -> None:
    addr = f"127.0.0.1:{_free_port()}"
    start = time.monotonic()
    with pytest.raises(tls.ManagerUnreachableError, match=f"^cannot reach manager at {addr}: .*refused"):
        tls.fetch_remote_ca(addr, "0" * 64, timeout=2.0)
    assert time.monotonic() - start < 1.0


def test_fetch_remote_ca_honours_the_timeout() -> None:
    # accepts TCP (backlog) but never speaks TLS
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        addr = f"127.0.0.1:{silent.getsockname()[1]}"
        start = time.monotonic()
        with pytest.raises(tls.ManagerUnreachableError, match=f"^cannot reach manager at {addr}: timed out after 0.5s"):
            tls.fetch_remote_ca(addr, "0" * 64, timeout=0.5)
        assert time.monotonic() - start < 2.0


def test_fetch_remote_ca_needs_the_ca_in_the_chain(manager: Manager) -> None:
    # a server that sends only its node certificate
    creds = grpc.ssl_server_credentials([(manager.creds.key_pem, manager.creds.cert_pem)])
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    port = server.add_secure_port("127.0.0.1:0", creds)
    server.start()
    try:
        with pytest.raises(tls.NoCAInChainError, match="did not send its CA certificate"):
            tls.fetch_remote_ca(f"127.0.0.1:{port}", manager.root.digest)
    finally:
        server.stop(None)


# ---------------------------------------------------------------- CA.IssueNodeCertificate


def _join(m: Manager, token: str, csr_pem: bytes | None = None, key_pem: bytes | None = None):
    """What a joining node does: CA from the handshake (pinned by the token),
    then IssueNodeCertificate on the join port."""
    digest, _ = tls.parse_token(token)
    ca_pem = tls.fetch_remote_ca(m.join_addr, digest)
    if csr_pem is None:
        csr_pem = tls.make_csr(key_pem or tls.new_node_key())
    req = ca_pb2.IssueNodeCertificateRequest(
        token=token, csr_pem=csr_pem, hostname="host-b", addr="127.0.0.1", api_addr="127.0.0.1:9999"
    )
    with _channel(m.join_addr, tls.channel_credentials(ca_pem)) as ch:
        return ca_pb2_grpc.CAStub(ch).IssueNodeCertificate(req, timeout=RPC_TIMEOUT), ca_pem


def test_issue_node_certificate_end_to_end(manager: Manager) -> None:
    key_pem = tls.new_node_key()
    resp, ca_pem = _join(manager, manager.cluster.worker_token, key_pem=key_pem)
    assert resp.role == "worker"
    assert len(resp.node_id) == 25
    assert resp.ca_cert_pem == manager.root.cert_pem == ca_pem
    assert list(resp.managers) == [manager.api_addr]
    node_id, role, req, peer_ip = manager.registered[-1]
    assert (node_id, role, req.hostname, req.api_addr, peer_ip) == (
        resp.node_id,
        "worker",
        "host-b",
        "127.0.0.1:9999",
        "127.0.0.1",
    )

    creds = tls.NodeCredentials.from_pems(key_pem, resp.cert_pem, resp.ca_cert_pem)
    assert creds.identity == tls.Identity(resp.node_id, "worker", "cluster1")
    assert _call(manager.api_addr, creds.channel_credentials()) == f"{resp.node_id}/worker/cluster1".encode()
    assert _call(manager.api_addr, creds.channel_credentials(), SECRET, b"y") == b"secret:y"


def test_issue_node_certificate_manager_token(manager: Manager) -> None:
    resp, _ = _join(manager, manager.cluster.manager_token)
    assert resp.role == "manager"
    cert = x509.load_pem_x509_certificate(resp.cert_pem)
    dns = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    assert "swarmlet-manager" in dns


def _join_error(m: Manager, token: str, **kw) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as exc:
        _join(m, token, **kw)
    return exc.value


def test_issue_node_certificate_wrong_token(manager: Manager) -> None:
    before = len(manager.registered)
    err = _join_error(manager, ca.new_join_token(manager.root.digest))
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    assert err.details() == "invalid join token"
    assert len(manager.registered) == before


def test_issue_node_certificate_token_of_another_cluster(manager: Manager) -> None:
    # the joiner pins the right CA but the token names another one: call the
    # CA directly (fetch_remote_ca would already refuse)
    bad = ca.new_join_token(ca.create_root_ca().digest)
    req = ca_pb2.IssueNodeCertificateRequest(token=bad, csr_pem=tls.make_csr(tls.new_node_key()))
    with _channel(manager.join_addr, tls.channel_credentials(manager.root.cert_pem)) as ch:
        with pytest.raises(grpc.RpcError) as exc:
            ca_pb2_grpc.CAStub(ch).IssueNodeCertificate(req, timeout=RPC_TIMEOUT)
    assert exc.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert exc.value.details() == "join token was issued by a different cluster CA"


def test_issue_node_certificate_bad_csr(manager: Manager) -> None:
    before = len(manager.registered)
    err = _join_error(manager, manager.cluster.worker_token, csr_pem=b"garbage")
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "certificate signing request" in err.details()
    assert len(manager.registered) == before


def test_issue_node_certificate_without_cluster(manager: Manager) -> None:
    manager.cluster_visible = False
    err = _join_error(manager, manager.cluster.worker_token)
    assert err.code() == grpc.StatusCode.UNAVAILABLE


def test_issue_node_certificate_registration_errors(manager: Manager) -> None:
    manager.register_error = errors.FailedPrecondition("not the leader")
    err = _join_error(manager, manager.cluster.worker_token)
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert err.details() == "cannot register the node: not the leader"

    manager.register_error = RuntimeError("store exploded")
    err = _join_error(manager, manager.cluster.worker_token)
    assert err.code() == grpc.StatusCode.INTERNAL
    assert "store exploded" in err.details()


class BlackHoleProxy:
    """TCP relay that can turn into a black hole: the connections stay open
    but nothing gets through any more, like a peer whose host died."""

    def __init__(self, target_port: int) -> None:
        self._target = target_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.frozen = threading.Event()
        self._socks: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                down, _ = self._listener.accept()
            except OSError:
                return
            up = socket.create_connection(("127.0.0.1", self._target))
            self._socks += [down, up]
            for src, dst in ((down, up), (up, down)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        while True:
            try:
                data = src.recv(65536)
                if not data:
                    if not self.frozen.is_set():
                        dst.shutdown(socket.SHUT_WR)
                    return
                if not self.frozen.is_set():
                    dst.sendall(data)
            except OSError:
                return

    def close(self) -> None:
        self._listener.close()
        for s in self._socks:
            s.close()


def test_keepalive_notices_a_dead_peer_within_seconds(manager: Manager) -> None:
    proxy = BlackHoleProxy(manager.api_port)
    HANG_ENDED.clear()
    try:
        with _channel(f"127.0.0.1:{proxy.port}", _node(manager).channel_credentials()) as ch:
            stream = ch.unary_stream("/test.Probe/Hang")(b"", timeout=12)
            assert next(stream) == b"start"
            time.sleep(3)  # idle longer than keepalive_time: pings must not upset the server
            proxy.frozen.set()
            start = time.monotonic()
            with pytest.raises(grpc.RpcError) as exc:
                next(stream)
            assert exc.value.code() == grpc.StatusCode.UNAVAILABLE
            assert time.monotonic() - start < 6  # ~3 s: keepalive_time + ping timeout
            # the server's own keepalive ends its side of the stream as well
            assert HANG_ENDED.wait(6)
    finally:
        proxy.close()


def test_peer_host_parsing() -> None:
    class Ctx:
        def __init__(self, peer: str) -> None:
            self._peer = peer

        def peer(self) -> str:
            return self._peer

    assert tls.peer_host(Ctx("ipv4:10.0.0.1:5555")) == "10.0.0.1"  # type: ignore[arg-type]
    assert tls.peer_host(Ctx("ipv6:[fd00::1]:5555")) == "fd00::1"  # type: ignore[arg-type]
    assert tls.peer_host(Ctx("unix:/tmp/sock")) == ""  # type: ignore[arg-type]


def test_split_host_port() -> None:
    assert tls.split_host_port("10.0.0.1:4242", 1) == ("10.0.0.1", 4242)
    assert tls.split_host_port("10.0.0.1", 4242) == ("10.0.0.1", 4242)
    assert tls.split_host_port("[fd00::1]:4242", 1) == ("fd00::1", 4242)
    assert tls.split_host_port("fd00::1", 7) == ("fd00::1", 7)
    for bad in ("10.0.0.1:x", ":4242", "[fd00::1", "h:70000"):
        with pytest.raises(ValueError):
            tls.split_host_port(bad, 1)


# ---------------------------------------------------------------- issue 13: managers only, authorization, renewal


def _join_port_server(creds: tls.NodeCredentials, calls: list[str]) -> tuple[grpc.Server, str]:
    """A CA service on a join port, as a worker posing as a manager would run it."""

    class Fake(ca_pb2_grpc.CAServicer):  # type: ignore[misc]
        def IssueNodeCertificate(self, request: ca_pb2.IssueNodeCertificateRequest, context: grpc.ServicerContext) -> object:
            calls.append(request.token)
            return ca_pb2.IssueNodeCertificateResponse()

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    ca_pb2_grpc.add_CAServicer_to_server(Fake(), server)
    port = server.add_secure_port("127.0.0.1:0", creds.server_credentials(require_client_auth=False))
    server.start()
    return server, f"127.0.0.1:{port}"


def test_a_worker_certificate_cannot_pose_as_a_manager_to_a_joining_node(manager: Manager) -> None:
    worker = _node(manager, "worker")
    calls: list[str] = []
    server, addr = _join_port_server(worker, calls)
    try:
        with pytest.raises(tls.NotAManagerError) as e:
            tls.fetch_remote_ca(addr, manager.root.digest)
        assert str(e.value) == (
            f"the server at {addr} is not a manager of this cluster (it presented the certificate of a worker node, "
            f"{worker.node_id}): refusing to send it the join token"
        )
        # And the channel a joiner sends its token on refuses it too, by name.
        req = ca_pb2.IssueNodeCertificateRequest(token=manager.cluster.worker_token)
        with grpc.secure_channel(addr, tls.channel_credentials(manager.root.cert_pem), options=tls.MANAGER_CHANNEL_OPTIONS) as ch:
            with pytest.raises(grpc.RpcError) as err:
                ca_pb2_grpc.CAStub(ch).IssueNodeCertificate(req, timeout=RPC_TIMEOUT)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert calls == [], "the token reached the fake manager"
    finally:
        server.stop(None)


def test_fetch_remote_ca_accepts_a_manager_of_a_rotating_root(manager: Manager) -> None:
    rotating = ca.start_rotation(manager.root, now=1.0)
    key, chain = ca.issue_local_certificate(rotating, new_id(), "manager", manager.cluster.id, "127.0.0.1")
    creds = tls.NodeCredentials.from_pems(key, chain, pki.trust_pem(rotating))
    server, addr = _join_port_server(creds, [])
    try:
        # A token of before the rotation pins the old root; a new one the new root.
        assert tls.fetch_remote_ca(addr, manager.root.digest) == manager.root.cert_pem
        assert tls.fetch_remote_ca(addr, rotating.rotation.digest) == rotating.rotation.cert_pem
    finally:
        server.stop(None)


def _guarded_server(creds: tls.NodeCredentials, authorize: tls.Authorize) -> tuple[AioServer, str]:
    # The node-facing server as the daemon runs it (grpc.aio, issue 15).
    server = AioServer(tls.SERVER_OPTIONS, [tls.ClientCertRequired(anonymous=(WHOAMI,), authorize=authorize)])
    server.call(lambda: server.server.add_generic_rpc_handlers((_PROBE,)))
    port = server.add_port("127.0.0.1:0", creds.server_credentials(require_client_auth=True))
    server.start()
    return server, f"127.0.0.1:{port}"


def test_every_call_is_authorized_and_streams_again_before_each_message(manager: Manager) -> None:
    allowed: set[str] = set()
    seen: list[tuple[str, str]] = []

    def authorize(method: str, peer: tls.Peer) -> None:
        seen.append((method, peer.identity.node_id))
        if peer.cert.serial not in allowed:
            raise errors.PermissionDenied(f"certificate {peer.cert.serial} refused")

    server, addr = _guarded_server(manager.creds, authorize)
    node = _node(manager)
    try:
        with pytest.raises(grpc.RpcError) as e:
            _call(addr, node.channel_credentials(), SECRET, b"x")
        assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert e.value.details() == f"certificate {node.cert_info.serial} refused"
        allowed.add(node.cert_info.serial)
        assert _call(addr, node.channel_credentials(), SECRET, b"x") == b"secret:x"
        with _channel(addr, node.channel_credentials()) as ch:
            GATE.clear()
            stream = ch.unary_stream("/test.Probe/Gated")(b"", timeout=RPC_TIMEOUT)
            assert next(stream) == b"one"
            allowed.clear()  # revoked while the stream is open
            GATE.set()
            with pytest.raises(grpc.RpcError) as e:
                next(stream)
            assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
        assert (SECRET, node.node_id) in seen
        assert all(method != WHOAMI for method, _ in seen)  # anonymous methods are not asked about
    finally:
        server.stop(None)


def test_servers_present_a_renewed_certificate_from_the_next_handshake(manager: Manager) -> None:
    current = [_node(manager, "manager")]
    server = AioServer(tls.SERVER_OPTIONS)  # the node-facing server is grpc.aio (issue 15)
    server.call(lambda: server.server.add_generic_rpc_handlers((_PROBE,)))
    port = server.add_port("127.0.0.1:0", tls.dynamic_server_credentials(lambda: current[0], require_client_auth=True))
    server.start()
    addr = f"127.0.0.1:{port}"
    try:
        client = _node(manager)
        assert _call(addr, client.channel_credentials()) == f"{client.node_id}/worker/cluster1".encode()
        # A new root: the server trusts it from its next handshake on.
        other = ca.create_root_ca()
        key, cert = ca.issue_local_certificate(other, new_id(), "manager", "cluster1", "127.0.0.1")
        current[0] = tls.NodeCredentials.from_pems(key, cert, other.cert_pem)
        newcomer = _node(manager, root=other)
        assert _call(addr, newcomer.channel_credentials()) == f"{newcomer.node_id}/worker/cluster1".encode()
        with pytest.raises(grpc.RpcError):
            _call(addr, client.channel_credentials())
    finally:
        server.stop(None)


def test_certificate_info_names_serial_lifetime_and_issuer(manager: Manager) -> None:
    node = _node(manager)
    info = node.cert_info
    cert = x509.load_pem_x509_certificate(node.cert_pem)
    assert info.serial == format(cert.serial_number, "x")
    assert info.not_after == cert.not_valid_after_utc.timestamp()
    assert info.issuer_key_id == manager.root.key_id == tls.key_id(manager.root.cert_pem)


def test_a_save_interrupted_after_its_commit_is_finished_by_load(manager: Manager, tmp_path) -> None:
    """Renewals replace the key and certificate while the node runs: a crash
    mid-way must not leave the key of one set with the certificate of another."""
    old, new = _node(manager), _node(manager)
    d = tmp_path / "certs"
    old.save(d)
    new.save(d / "next.tmp")  # staged, not committed: dropped
    assert tls.NodeCredentials.load(d) == old and not (d / "next.tmp").exists()
    # Committed, then cut off after the key was moved into place.
    new.save(d / "next")
    os.replace(d / "next" / tls.KEY_FILE, d / tls.KEY_FILE)
    assert tls.NodeCredentials.load(d) == new and not (d / "next").exists()
