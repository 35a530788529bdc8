"""The embedded DNS server's pure parts (agent/net/dns.py): the codec, the
names it answers from the network view, the host's resolvers."""

from __future__ import annotations

import socket
import struct
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from swarmlet.agent.net import dns
from swarmlet.api import dispatcher_pb2 as dpb
from swarmlet.api import objects_pb2 as pb


def _query(name: str, qtype: int = dns.TYPE_A) -> bytes:
    q = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0" + struct.pack(">HH", qtype, 1)
    return struct.pack(">HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0) + q


def test_dns_codec_round_trip() -> None:
    qid, flags, name, qtype, question = dns.parse_query(_query("Tasks.Web"))
    assert (qid, name, qtype) == (0x1234, "tasks.web", dns.TYPE_A)
    reply = dns.build_answer(qid, flags, question, ["10.0.0.5", "10.0.0.6"])
    rid, rflags, qd, an = struct.unpack(">HHHH", reply[:8])
    assert (rid, qd, an) == (0x1234, 1, 2) and rflags & 0x8000 and rflags & 0x0100
    assert reply.endswith(socket.inet_aton("10.0.0.6"))
    nx = dns.build_answer(qid, flags, question, [], rcode=dns.RCODE_SERVFAIL)
    assert struct.unpack(">H", nx[2:4])[0] & 0xF == dns.RCODE_SERVFAIL


@pytest.mark.parametrize(
    "packet,why",
    [
        (b"\0" * 5, "short packet"),
        (struct.pack(">HHHHHH", 1, 0, 2, 0, 0, 0), "expected one question"),
        (_query("web")[:-2], "truncated question"),
        (struct.pack(">HHHHHH", 1, 0, 1, 0, 0, 0) + b"\xc0\x0c", "compressed name"),
    ],
)
def test_dns_codec_refuses_malformed_queries(packet: bytes, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        dns.parse_query(packet)


def _view() -> dict[str, dpb.NetworkAssignment]:
    front = dpb.NetworkAssignment()
    front.network.id = "front"
    web = front.services.add(name="web", vip="10.0.1.2", mode=pb.EndpointSpec.VIP)
    web.backends.add(addr="10.0.1.5")
    web.backends.add(addr="10.0.1.6")
    rr = front.services.add(name="rr", mode=pb.EndpointSpec.DNSRR)
    rr.backends.add(addr="10.0.1.9")
    front.services.add(name="idle", vip="10.0.1.3", mode=pb.EndpointSpec.VIP)
    back = dpb.NetworkAssignment()
    back.network.id = "back"
    back.services.add(name="db", vip="10.0.2.2", mode=pb.EndpointSpec.VIP).backends.add(addr="10.0.2.5")
    ingress = dpb.NetworkAssignment()
    ingress.network.id = "ingress"
    ingress.network.spec.ingress = True
    ingress.services.add(name="web", vip="10.255.0.2", mode=pb.EndpointSpec.VIP)
    return {a.network.id: a for a in (front, back, ingress)}


def test_resolve_vip_tasks_and_dnsrr() -> None:
    view = _view()
    on_front = ["front", "ingress"]
    assert dns.resolve(view, on_front, "web", dns.TYPE_A) == ["10.0.1.2"]  # the VIP, not the ingress one
    assert sorted(dns.resolve(view, on_front, "tasks.web", dns.TYPE_A) or []) == ["10.0.1.5", "10.0.1.6"]
    assert dns.resolve(view, on_front, "rr", dns.TYPE_A) == ["10.0.1.9"]
    # A service with no running task still exists: an empty answer, not "not ours".
    assert dns.resolve(view, on_front, "tasks.idle", dns.TYPE_A) == []
    # Names of a network the task is not on are not the cluster's for it.
    assert dns.resolve(view, on_front, "db", dns.TYPE_A) is None
    assert dns.resolve(view, ["back"], "db", dns.TYPE_A) == ["10.0.2.2"]
    assert dns.resolve(view, on_front, "example.com", dns.TYPE_A) is None
    # Ours, but only A records exist.
    assert dns.resolve(view, on_front, "web", dns.TYPE_AAAA) == []
    # A network whose assignment has not arrived answers nothing.
    assert dns.resolve(view, ["gone"], "web", dns.TYPE_A) is None


def test_resolve_network_aliases() -> None:
    # Issue 17: docker stack deploy names app_web "web" on the stack's networks.
    view = _view()
    view["front"].services.add(name="app_web", vip="10.0.1.7", mode=pb.EndpointSpec.VIP, aliases=["Web2"]).backends.add(
        addr="10.0.1.8"
    )
    assert dns.resolve(view, ["front"], "web2", dns.TYPE_A) == ["10.0.1.7"]
    assert dns.resolve(view, ["front"], "tasks.web2", dns.TYPE_A) == ["10.0.1.8"]
    assert dns.resolve(view, ["back"], "web2", dns.TYPE_A) is None  # only on the network it was given for


def test_host_resolvers_skip_our_own_address(tmp_path: Path) -> None:
    conf = tmp_path / "resolv.conf"
    conf.write_text(f"# comment\nnameserver 192.0.2.53\nnameserver {dns.DNS_ADDR}\nsearch example\nnameserver 2001:db8::53\n")
    assert dns.host_resolvers(str(conf)) == ["192.0.2.53", "2001:db8::53"]
    assert dns.host_resolvers(str(tmp_path / "missing")) == []


# ---- forwarding (issue 13): bounded, and only the upstream's own replies


def _upstream(answer: Callable[[bytes, tuple[str, int], socket.socket], None]) -> tuple[socket.socket, int]:
    up = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    up.bind(("127.0.0.1", 0))

    def serve() -> None:
        try:
            data, peer = up.recvfrom(4096)
        except OSError:
            return
        answer(data, peer, up)

    threading.Thread(target=serve, daemon=True).start()
    return up, up.getsockname()[1]


def test_a_spoofed_or_mismatched_reply_is_ignored_and_the_real_one_taken() -> None:
    query = _query("example.org")
    qid, flags, _, _, question = dns.parse_query(query)
    real = dns.build_answer(qid, flags, question, ["192.0.2.1"])

    def answer(data: bytes, peer: tuple[str, int], up: socket.socket) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as spoofer:  # another source port: dropped by the kernel
            spoofer.sendto(dns.build_answer(qid, flags, question, ["6.6.6.6"]), peer)
        up.sendto(dns.build_answer(qid ^ 1, flags, question, ["6.6.6.7"]), peer)  # wrong id
        up.sendto(dns.build_answer(qid, flags, _query("evil.org")[12:], ["6.6.6.8"]), peer)  # wrong question
        up.sendto(real, peer)

    up, port = _upstream(answer)
    try:
        assert dns.forward_query("127.0.0.1", query, qid, question, 2.0, port=port) == real
    finally:
        up.close()


def test_no_matching_reply_times_out() -> None:
    query = _query("example.org")
    qid, _, _, _, question = dns.parse_query(query)
    up, port = _upstream(lambda data, peer, sock: sock.sendto(b"\0" * 20, peer))
    try:
        assert dns.forward_query("127.0.0.1", query, qid, question, 0.5, port=port) is None
    finally:
        up.close()


def test_forwards_in_flight_are_bounded_and_the_rest_get_servfail(monkeypatch) -> None:
    release = threading.Event()
    forwarded: list[bytes] = []

    def slow_forward(self, sock, data, peer, qid, flags, question, servers) -> None:
        forwarded.append(data)
        release.wait(10)

    monkeypatch.setattr(dns.DnsServer, "_forward", slow_forward)
    server = dns.DnsServer(lambda task, name, qtype: None)
    sent: list[bytes] = []

    class Sock:
        def sendto(self, data: bytes, peer: object) -> None:
            sent.append(data)

    try:
        for _ in range(dns.MAX_PENDING_FORWARDS + 50):
            server._handle("t", Sock(), _query("example.org"), ("127.0.0.1", 5353))  # type: ignore[arg-type]
        assert len(sent) == 50
        assert all(struct.unpack(">H", r[2:4])[0] & 0xF == dns.RCODE_SERVFAIL for r in sent)
    finally:
        release.set()
        server.stop()
