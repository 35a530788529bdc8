"""Writes of unknown outcome retried with their request id (cli/retry.py,
issue 14), end to end: the CLI against a Control service on a unix socket
whose failures are scripted the way a manager answers (swarmlet.rpc's
trailing metadata)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from typer.testing import CliRunner

from swarmlet import errors, rpc
from swarmlet.api import control_pb2 as cpb
from swarmlet.api import control_pb2_grpc
from swarmlet.api import objects_pb2 as pb
from swarmlet.cli import retry
from swarmlet.cli.main import app

runner = CliRunner()


class Flaky(control_pb2_grpc.ControlServicer):  # type: ignore[misc]
    """CreateService fails with the scripted errors first, then applies the
    request (once per request id, as the managers do)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.failures: list[errors.SwarmletError] = []
        self.requests: list[cpb.CreateServiceRequest] = []
        self.applied: dict[str, pb.Service] = {}
        self.apply_before_failing = False  # the first failure comes after the write applied

    def CreateService(self, request: cpb.CreateServiceRequest, context: grpc.ServicerContext) -> cpb.ServiceResponse:
        with self.lock:
            self.requests.append(request)
            if self.apply_before_failing and not self.applied:
                self.applied[request.request_id] = pb.Service(id="svc-1", spec=request.spec)
            if self.failures:
                rpc.abort(context, self.failures.pop(0))
            svc = self.applied.setdefault(request.request_id, pb.Service(id=f"svc-{len(self.applied) + 1}", spec=request.spec))
            return cpb.ServiceResponse(service=svc)


@pytest.fixture
def flaky(tmp_path: Path) -> Iterator[tuple[Flaky, str]]:
    servicer = Flaky()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    control_pb2_grpc.add_ControlServicer_to_server(servicer, server)
    host = f"unix://{tmp_path}/swarmlet.sock"
    server.add_insecure_port(host)
    server.start()
    try:
        yield servicer, host
    finally:
        server.stop(None)


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(retry, "FIRST_DELAY", 0.01)
    monkeypatch.setattr(retry, "MAX_DELAY", 0.02)


def create(host: str, *extra: str):  # noqa: ANN201 - typer's Result
    return runner.invoke(app, ["-H", host, "service", "create", "--detach", *extra, "--name", "web", "busybox", "sleep", "9"])


def test_a_write_of_unknown_outcome_is_retried_with_the_same_request_id(flaky: tuple[Flaky, str]) -> None:
    fake, host = flaky
    fake.apply_before_failing = True  # the first attempt applied; its answer was lost
    fake.failures = [errors.OutcomeUnknown("the leader changed; the write may have been applied")]
    r = create(host)
    assert r.exit_code == 0, r.output
    ids = {req.request_id for req in fake.requests}
    assert len(fake.requests) == 2 and len(ids) == 1 and "" not in ids
    assert list(fake.applied.values())[0].id == "svc-1" and len(fake.applied) == 1


def test_no_leader_yet_is_retried_until_one_answers(flaky: tuple[Flaky, str]) -> None:
    fake, host = flaky
    fake.failures = [errors.Unavailable("the swarm has no leader right now")] * 3
    r = create(host)
    assert r.exit_code == 0, r.output
    assert len(fake.requests) == 4 and len({req.request_id for req in fake.requests}) == 1


def test_lost_quorum_is_reported_at_once(flaky: tuple[Flaky, str]) -> None:
    fake, host = flaky
    fake.failures = [errors.Unavailable("the swarm has lost quorum: 1 of 3 managers reachable", retry=False)]
    r = create(host)
    assert r.exit_code == 1
    assert len(fake.requests) == 1
    assert "lost quorum" in r.output and "may have been applied" not in r.output


def test_a_refusal_after_an_unknown_outcome_still_says_it_may_have_been_applied(flaky: tuple[Flaky, str]) -> None:
    fake, host = flaky
    fake.failures = [
        errors.OutcomeUnknown("the write was not committed within 5.0s; the write may have been applied"),
        errors.Unavailable("the swarm has lost quorum: 1 of 3 managers reachable", retry=False),
    ]
    r = create(host)
    assert r.exit_code == 1 and len(fake.requests) == 2
    assert "lost quorum" in r.output and "an earlier attempt may have been applied" in r.output, r.output


def test_an_answer_is_never_retried(flaky: tuple[Flaky, str]) -> None:
    fake, host = flaky
    fake.failures = [errors.AlreadyExists("a service named 'web' already exists")]
    r = create(host)
    assert r.exit_code == 1 and len(fake.requests) == 1
    assert "already exists" in r.output and "may have been applied" not in r.output


def test_retries_stop_after_the_window(flaky: tuple[Flaky, str], monkeypatch: pytest.MonkeyPatch) -> None:
    fake, host = flaky
    monkeypatch.setattr(retry, "RETRY_WINDOW", 0.3)
    fake.failures = [errors.OutcomeUnknown("the write may have been applied")] * 1000
    r = runner.invoke(app, ["-H", host, "service", "create", "--detach", "--name", "web", "busybox"])
    assert r.exit_code == 1 and "may have been applied" in r.output
    assert 2 <= len(fake.requests) < 100


def test_judging_transport_failures() -> None:
    class Failed(grpc.RpcError, grpc.Call):  # type: ignore[misc]
        def __init__(self, code: grpc.StatusCode, details: str, md: tuple = ()) -> None:
            self._code, self._details, self._md = code, details, md

        def code(self) -> grpc.StatusCode:
            return self._code

        def details(self) -> str:
            return self._details

        def trailing_metadata(self) -> tuple:
            return self._md

    never_sent = retry.judge(Failed(grpc.StatusCode.UNAVAILABLE, "failed to connect to all addresses"))
    assert never_sent == retry.Outcome(maybe_applied=False, retry=False)
    cut_off = retry.judge(Failed(grpc.StatusCode.UNAVAILABLE, "Socket closed"))
    assert cut_off == retry.Outcome(maybe_applied=True, retry=True)
    late = retry.judge(Failed(grpc.StatusCode.DEADLINE_EXCEEDED, "Deadline Exceeded"))
    assert late == retry.Outcome(maybe_applied=True, retry=True)
    assert not retry.idempotent(cpb.ListServicesRequest()) and retry.idempotent(cpb.ScaleServiceRequest())


def test_secret_config_and_cluster_writes_are_retried_with_an_id_role_changes_are_not() -> None:
    for request in (
        cpb.CreateSecretRequest(),
        cpb.RemoveSecretRequest(),
        cpb.CreateConfigRequest(),
        cpb.RemoveConfigRequest(),
        cpb.UpdateClusterRequest(),
    ):
        assert retry.idempotent(request), type(request).__name__
    # A demotion is several writes around a Raft membership change: no one
    # batch's id makes it safe to send again (docs/operations.md).
    assert not retry.idempotent(cpb.ChangeRoleRequest())
