"""Issue 14, on real pysyncobj stores (loopback, one process): names unique
under concurrent creates through different managers, client request ids
applied once, and honest errors for writes of unknown outcome."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from pysyncobj import FAIL_REASON

from swarmlet import errors, rpc
from swarmlet.api import control_pb2 as cpb
from swarmlet.api import objects_pb2 as pb
from swarmlet.api import store_pb2 as spb
from swarmlet.core import secrets as sc
from swarmlet.core import state as st
from swarmlet.ids import new_id
from swarmlet.manager import store as store_mod
from swarmlet.manager.control.base import StoreAccess, user_error
from swarmlet.manager.store import ConflictError, NameTaken, NotLeader, OutcomeUnknown, Store, StoreError
from tests.unit.manager import helpers as h
from tests.unit.manager.conftest import OneManager
from tests.unit.manager.test_store_ha import Cluster


def service(name: str) -> pb.Service:
    return pb.Service(id=new_id(), spec=h.service_spec(name, replicas=0))


@pytest.fixture
def cluster3(tmp_path: Path):
    c = Cluster(tmp_path, 3)
    c.leader()
    yield c
    c.close()


def secret(name: str) -> pb.Secret:
    return pb.Secret(id=new_id(), spec=pb.SecretSpec(name=name, data=b"s3cr3t"))


def race_one_name(stores: list[Store], name: str, make: Callable[[str], pb.Service | pb.Secret], kind: str) -> list[str]:
    """Create an object named `name` through every store at once, as the
    control API proposes it (each after its own snapshot check); each
    store's outcome: "ok" or "taken"."""
    start = threading.Barrier(len(stores))
    results: list[str] = []

    def create(s: Store) -> None:
        start.wait()
        try:
            s.propose([st.put(make(name), create=True)], request_id=f"{name}-{s.self_addr}")
            results.append("ok")
        except NameTaken as e:
            assert e.name == name and e.kind == kind
            assert str(e) == f"a {kind} named {name!r} already exists"
            results.append("taken")

    threads = [threading.Thread(target=create, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return results


def test_concurrent_creates_of_one_name_through_every_manager_give_one_service(cluster3: Cluster) -> None:
    stores = cluster3.live()
    for round_no in range(10):
        results = race_one_name(stores, f"web-{round_no}", service, "service")
        assert sorted(results) == ["ok", "taken", "taken"], results
    cluster3.digests_agree()
    for s in stores:
        names = [svc.spec.name for svc in s.snapshot().services.values()]
        assert sorted(names) == sorted(f"web-{i}" for i in range(10))


def test_concurrent_secret_creates_through_every_manager_give_one_secret(cluster3: Cluster) -> None:
    stores = cluster3.live()
    for round_no in range(5):
        results = race_one_name(stores, f"db-pass-{round_no}", secret, "secret")
        assert sorted(results) == ["ok", "taken", "taken"], results
    cluster3.digests_agree()
    for s in stores:
        names = sorted(x.spec.name for x in s.snapshot().secrets.values())
        assert names == [f"db-pass-{i}" for i in range(5)]


def test_only_clients_request_ids_are_remembered(one_manager: OneManager) -> None:
    s = one_manager.store
    s.propose([st.put(service("internal"), create=True)])
    assert not s._sm._applied_ids  # the leader's rounds and status reports carry none
    first = s.propose([st.put(service("a"), create=True)], request_id="client-1")
    # A retry of the same call (new object ids, same request id) is not applied again.
    again = s.propose([st.put(service("b"), create=True)], request_id="client-1")
    assert again.version == first.version
    names = sorted(svc.spec.name for svc in s.snapshot().services.values())
    assert names == ["a", "internal"]
    assert s.applied_result("client-1") == first
    assert s.applied_result("never-sent") is None and s.applied_result("") is None


@pytest.mark.parametrize(
    ("reason", "kind", "unknown"),
    [
        (FAIL_REASON.MISSING_LEADER, NotLeader, False),
        (FAIL_REASON.NOT_LEADER, NotLeader, False),
        (FAIL_REASON.DISCARDED, StoreError, False),
        (FAIL_REASON.QUEUE_FULL, StoreError, False),
        (FAIL_REASON.REQUEST_DENIED, StoreError, False),
        (FAIL_REASON.LEADER_CHANGED, OutcomeUnknown, True),
        (FAIL_REASON.UNKNOWN_OUTCOME, OutcomeUnknown, True),
    ],
)
def test_each_failure_says_whether_the_write_may_have_been_applied(reason: int, kind: type, unknown: bool) -> None:
    with pytest.raises(kind) as info:
        Store._result(reason, None)
    message = str(info.value)
    assert ("may have been applied" in message) == unknown, message
    assert ("it was not applied" in message) == (not unknown), message
    assert isinstance(user_error(info.value), errors.OutcomeUnknown) == unknown


def test_a_committed_failure_is_a_conflict_or_a_taken_name() -> None:
    taken = spb.StoreResult(ok=False, error="x", taken_kind=spb.KIND_NETWORK, taken_name="backend")
    with pytest.raises(NameTaken, match="a network named 'backend' already exists"):
        Store._result(FAIL_REASON.SUCCESS, taken.SerializeToString())
    with pytest.raises(ConflictError) as info:
        Store._result(FAIL_REASON.SUCCESS, spb.StoreResult(ok=False, error="changed").SerializeToString())
    assert not isinstance(info.value, NameTaken)
    assert isinstance(user_error(NameTaken("service", "web")), errors.AlreadyExists)
    for kind, word in ((spb.KIND_SECRET, "secret"), (spb.KIND_CONFIG, "config")):
        taken = spb.StoreResult(ok=False, error="x", taken_kind=kind, taken_name="db-pass")
        with pytest.raises(NameTaken, match=f"a {word} named 'db-pass' already exists"):
            Store._result(FAIL_REASON.SUCCESS, taken.SerializeToString())


def test_a_write_sent_just_before_quorum_was_lost_may_have_been_applied(cluster3: Cluster, monkeypatch) -> None:
    leader = cluster3.leader()
    others = [a for a, s in cluster3.stores.items() if s is not leader]
    for addr in others:
        cluster3.stop(addr)
    # The leader has not noticed yet (in the real race it had not): the write
    # goes into its log, and then no majority can commit it.
    monkeypatch.setattr(leader, "wait_writable", lambda timeout: None)
    with pytest.raises(OutcomeUnknown) as info:
        leader.propose([st.put(service("late"), create=True)], timeout=3.0, request_id="late-1")
    message = str(info.value)
    assert "lost quorum" in message and "may have been applied" in message, message
    monkeypatch.undo()
    # The managers come back: whether the write survived depends on who is
    # elected (the old leader has it in its log, the others do not); every
    # manager agrees either way.
    for addr in others:
        cluster3.start(addr)
    cluster3.leader()
    cluster3.digests_agree()


def test_control_api_create_retried_with_its_request_id_answers_the_first_attempt(one_manager: OneManager) -> None:
    services = one_manager.control.services
    req = cpb.CreateServiceRequest(spec=h.service_spec("web", replicas=0), request_id="cli-1")
    first = services.create(req).service
    # The client did not hear the answer and sends the same request again.
    again = services.create(req).service
    assert again.id == first.id
    assert [s.spec.name for s in one_manager.store.snapshot().services.values()] == ["web"]
    # Another call (its own id) for the same name is refused, as before.
    with pytest.raises(errors.AlreadyExists):
        services.create(cpb.CreateServiceRequest(spec=h.service_spec("web", replicas=0), request_id="cli-2"))


def test_control_api_retry_of_a_write_that_lost_the_race_gets_the_same_refusal(one_manager: OneManager) -> None:
    # The first attempt of cli-3 was committed and refused (the name was taken
    # at apply time): its retry is answered with that refusal, not applied.
    store = one_manager.store
    store.propose([st.put(service("db"), create=True)], request_id="other")
    with pytest.raises(NameTaken):
        store.propose([st.put(service("db"), create=True)], request_id="cli-3")
    access = StoreAccess(store)
    access.snap()
    with pytest.raises(errors.AlreadyExists, match="a service named 'db' already exists"):
        access.replayed("cli-3")
    assert access.replayed("other") and not access.replayed("cli-4")


def test_control_api_retried_remove_and_update_are_answered_not_refused(one_manager: OneManager) -> None:
    services = one_manager.control.services
    svc = services.create(cpb.CreateServiceRequest(spec=h.service_spec("api", replicas=0))).service
    spec = pb.ServiceSpec()
    spec.CopyFrom(svc.spec)
    spec.task.container.env.append("A=1")
    update = cpb.UpdateServiceRequest(ref="api", version=svc.meta.version, spec=spec, request_id="u-1")
    updated = services.update(update).service
    # Retried: the version it was read at is stale now, yet it was applied once.
    assert services.update(update).service.meta.version == updated.meta.version
    remove = cpb.RemoveServiceRequest(ref="api", request_id="r-1")
    services.remove(remove)
    assert services.remove(remove).id == "api"
    with pytest.raises(errors.NotFound):
        services.remove(cpb.RemoveServiceRequest(ref="api", request_id="r-2"))


def test_network_create_retried_with_its_request_id_answers_the_first_attempt(one_manager: OneManager) -> None:
    networks = one_manager.control.networks
    req = cpb.CreateNetworkRequest(spec=pb.NetworkSpec(name="backend"), request_id="n-1")
    first = networks.create(req).network
    assert networks.create(req).network.id == first.id
    assert len(one_manager.store.snapshot().networks) == 1


def test_secret_create_retried_with_its_request_id_answers_the_first_attempt(one_manager: OneManager) -> None:
    secrets = one_manager.control.secrets
    req = cpb.CreateSecretRequest(spec=pb.SecretSpec(name="db-pass", data=b"hunter2"), request_id="sec-1")
    first = secrets.create(req).secret
    # The client did not hear the answer and sends the same request again:
    # answered with the secret the first attempt created (never its data).
    again = secrets.create(req).secret
    assert again.id == first.id and not again.spec.data
    assert [x.spec.name for x in one_manager.store.snapshot().secrets.values()] == ["db-pass"]
    # Another call (its own id) for the same name is refused, as before.
    with pytest.raises(errors.AlreadyExists, match="a secret named 'db-pass' already exists"):
        secrets.create(cpb.CreateSecretRequest(spec=pb.SecretSpec(name="db-pass", data=b"x"), request_id="sec-2"))


def test_config_create_retried_with_its_request_id_answers_the_first_attempt(one_manager: OneManager) -> None:
    configs = one_manager.control.configs
    req = cpb.CreateConfigRequest(spec=pb.ConfigSpec(name="app.conf", data=b"a=1"), request_id="cfg-1")
    first = configs.create(req).config
    assert configs.create(req).config.id == first.id
    assert len(one_manager.store.snapshot().configs) == 1


def test_a_secret_create_that_passed_a_stale_name_check_is_refused_at_apply(
    one_manager: OneManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What two managers racing see: each checked the name against a snapshot
    # without the other's secret. The write itself is refused, with the same
    # answer the early check gives.
    secrets = one_manager.control.secrets
    secrets.create(cpb.CreateSecretRequest(spec=pb.SecretSpec(name="token", data=b"a"), request_id="t-1"))
    monkeypatch.setattr(sc, "check_name_free", lambda kind, snap, name: None)
    with pytest.raises(errors.AlreadyExists, match="a secret named 'token' already exists"):
        secrets.create(cpb.CreateSecretRequest(spec=pb.SecretSpec(name="token", data=b"b"), request_id="t-2"))
    with pytest.raises(errors.AlreadyExists, match="a config named 'token' already exists"):
        for rid in ("c-1", "c-2"):
            one_manager.control.configs.create(
                cpb.CreateConfigRequest(spec=pb.ConfigSpec(name="token", data=b"c"), request_id=rid)
            )
    snap = one_manager.store.snapshot()
    assert len(snap.secrets) == 1 and len(snap.configs) == 1


def test_secret_and_config_removes_retried_are_answered_not_refused(one_manager: OneManager) -> None:
    control = one_manager.control
    control.secrets.create(cpb.CreateSecretRequest(spec=pb.SecretSpec(name="old", data=b"a")))
    control.configs.create(cpb.CreateConfigRequest(spec=pb.ConfigSpec(name="old", data=b"a")))
    rm_secret = cpb.RemoveSecretRequest(ref="old", request_id="rs-1")
    control.secrets.remove(rm_secret)
    assert control.secrets.remove(rm_secret).id == "old"  # not "secret 'old' not found"
    rm_config = cpb.RemoveConfigRequest(ref="old", request_id="rc-1")
    control.configs.remove(rm_config)
    assert control.configs.remove(rm_config).id == "old"
    with pytest.raises(errors.NotFound):
        control.secrets.remove(cpb.RemoveSecretRequest(ref="old", request_id="rs-2"))


def test_cluster_update_retried_is_answered_not_refused_as_changed(one_manager: OneManager) -> None:
    pki = one_manager.control.pki
    cluster = pki.get_cluster(cpb.GetClusterRequest()).cluster
    spec = pb.ClusterSpec()
    spec.CopyFrom(cluster.spec)
    spec.task_history_limit = cluster.spec.task_history_limit + 3
    update = cpb.UpdateClusterRequest(spec=spec, version=cluster.meta.version, request_id="cu-1")
    updated = pki.update_cluster(update).cluster
    # Retried: the version it was read at is stale now, yet it was applied once.
    again = pki.update_cluster(update).cluster
    assert again.meta.version == updated.meta.version and again.spec.task_history_limit == spec.task_history_limit
    with pytest.raises(errors.Conflict, match="changed since they were read"):
        pki.update_cluster(cpb.UpdateClusterRequest(spec=spec, version=cluster.meta.version, request_id="cu-2"))


def test_the_name_ingress_is_reserved(one_manager: OneManager) -> None:
    with pytest.raises(errors.AlreadyExists, match="reserved"):
        one_manager.control.networks.create(cpb.CreateNetworkRequest(spec=pb.NetworkSpec(name="ingress")))


class _Context:
    """What rpc.abort needs of a grpc.ServicerContext."""

    def __init__(self) -> None:
        self.metadata: tuple[tuple[str, str], ...] = (("swarmlet-leader", "10.0.0.1:4244"),)
        self.code: grpc.StatusCode | None = None

    def trailing_metadata(self) -> tuple[tuple[str, str], ...]:
        return self.metadata

    def set_trailing_metadata(self, md: tuple[tuple[str, str], ...]) -> None:
        self.metadata = md

    def abort(self, code: grpc.StatusCode, details: str) -> None:
        self.code = code
        raise RuntimeError(details)


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (errors.OutcomeUnknown("x"), {rpc.RETRY_KEY: "yes", rpc.OUTCOME_KEY: "unknown"}),
        (errors.Unavailable("x"), {rpc.RETRY_KEY: "yes"}),
        (errors.Unavailable("x", retry=False), {rpc.RETRY_KEY: "no"}),
        (errors.Conflict("x"), {}),
    ],
)
def test_the_edge_tells_clients_whether_to_retry_and_what_may_have_happened(error: errors.SwarmletError, expected: dict) -> None:
    ctx = _Context()
    with pytest.raises(RuntimeError):
        rpc.abort(ctx, error)  # type: ignore[arg-type]
    md = dict(ctx.metadata)
    assert md.pop("swarmlet-leader") == "10.0.0.1:4244"  # a leader hint set before stays
    assert md == expected
    assert ctx.code == (grpc.StatusCode.UNAVAILABLE if isinstance(error, errors.Unavailable) else grpc.StatusCode.ABORTED)


def test_quorum_loss_before_sending_is_reported_as_not_worth_retrying() -> None:
    e = user_error(store_mod.QuorumLost(1, 3))
    assert isinstance(e, errors.Unavailable) and not isinstance(e, errors.OutcomeUnknown)
    assert e.retry is False
