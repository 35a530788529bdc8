"""The join port's CA service under a token-guessing flood (issue 13): every
refusal is logged with the caller's address and never the token, and a
source that keeps failing is answered RESOURCE_EXHAUSTED without its token
being looked at. Joins that succeed cost nothing."""

from __future__ import annotations

import asyncio
import logging
import time

import grpc
import pytest

from swarmlet.api import ca_pb2
from swarmlet.manager import ca
from swarmlet.manager import ca_servicer as cs
from tests.unit.manager import helpers as h


class Aborted(Exception):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code = code


class Context:
    def __init__(self, peer: str) -> None:
        self._peer = peer

    def peer(self) -> str:
        return self._peer

    async def abort(self, code: grpc.StatusCode, details: str) -> None:  # grpc.aio's is a coroutine
        raise Aborted(code, details)

    def trailing_metadata(self) -> tuple[tuple[str, str], ...]:
        return ()

    def set_trailing_metadata(self, metadata: tuple[tuple[str, str], ...]) -> None:
        pass


@pytest.fixture
def servicer() -> tuple[cs.CAServicer, list[str]]:
    cluster = h.new_cluster()
    registered: list[str] = []

    def register(
        node_id: str, role: str, request: ca_pb2.IssueNodeCertificateRequest, peer_ip: str, issued: object = None
    ) -> list[str]:
        registered.append(node_id)
        return ["127.0.0.1:4244"]

    s = cs.CAServicer(lambda: cluster, register)
    s.cluster = cluster  # type: ignore[attr-defined]
    return s, registered


def request(token: str) -> ca_pb2.IssueNodeCertificateRequest:
    from swarmlet import tls

    return ca_pb2.IssueNodeCertificateRequest(
        token=token, csr_pem=tls.make_csr(tls.new_node_key()), hostname="h9", addr="10.0.0.9"
    )


def code_of(s: cs.CAServicer, req: ca_pb2.IssueNodeCertificateRequest, peer: str) -> grpc.StatusCode:
    try:
        asyncio.run(s.IssueNodeCertificate(req, Context(peer)))  # the servicer runs on grpc.aio (issue 15)
        return grpc.StatusCode.OK
    except Aborted as e:
        return e.code


def test_a_token_guessing_flood_is_limited_per_source_and_logged(servicer, caplog) -> None:
    s, registered = servicer
    cluster = s.cluster  # type: ignore[attr-defined]
    bad = cluster.worker_token[: cluster.worker_token.rindex("-") + 1] + "a" * 32
    with caplog.at_level(logging.WARNING, logger=cs.__name__):
        started = time.monotonic()
        codes = [code_of(s, request(bad), "ipv4:10.0.0.66:4000") for _ in range(300)]
        elapsed = time.monotonic() - started
    # The bucket refills at JOIN_RATE a second while the flood runs (seconds
    # on a loaded machine): what it may let through is bounded by that.
    allowed = cs.JOIN_BURST + cs.JOIN_RATE * elapsed + 1
    assert codes.count(grpc.StatusCode.PERMISSION_DENIED) <= allowed, (codes.count(grpc.StatusCode.PERMISSION_DENIED), elapsed)
    assert codes.count(grpc.StatusCode.RESOURCE_EXHAUSTED) >= 300 - allowed
    lines = [r.getMessage() for r in caplog.records]
    assert lines and all("10.0.0.66" in line for line in lines)
    assert any("invalid join token" in line for line in lines)
    assert not any(bad in line for line in lines), "a token must never be logged"
    assert len(lines) < 20, "refusals are logged, not one line each"
    # Another source is not affected, and a right token from it joins.
    assert code_of(s, request(cluster.worker_token), "ipv4:10.0.0.7:4000") == grpc.StatusCode.OK
    assert len(registered) == 1


def test_successful_joins_from_one_address_are_not_limited(servicer) -> None:
    s, registered = servicer
    cluster = s.cluster  # type: ignore[attr-defined]
    for _ in range(int(cs.JOIN_BURST) + 10):
        assert code_of(s, request(cluster.worker_token), "ipv4:127.0.0.1:4000") == grpc.StatusCode.OK
    assert len(registered) == int(cs.JOIN_BURST) + 10


def test_ca_issues_for_the_cluster_it_serves() -> None:
    # Sanity: the fixture's tokens pin its CA.
    cluster = h.new_cluster()
    assert ca.token_role(cluster, cluster.manager_token) == "manager"
