"""Names of services, networks, secrets and configs are unique when a batch
is APPLIED (issue 14): the check runs in state.apply_batch, on every manager
alike, so two creates checked against the same snapshot cannot both win."""

from __future__ import annotations

from swarmlet.api import objects_pb2 as pb
from swarmlet.api import store_pb2 as spb
from swarmlet.core import state as st


def service(sid: str, name: str) -> pb.Service:
    return pb.Service(id=sid, spec=pb.ServiceSpec(name=name))


def network(nid: str, name: str) -> pb.Network:
    return pb.Network(id=nid, spec=pb.NetworkSpec(name=name))


def secret(sid: str, name: str) -> pb.Secret:
    return pb.Secret(id=sid, spec=pb.SecretSpec(name=name, data=b"x"))


def config(cid: str, name: str) -> pb.Config:
    return pb.Config(id=cid, spec=pb.ConfigSpec(name=name, data=b"x"))


def apply(snap: st.Snapshot, *actions: spb.StoreAction) -> spb.StoreResult:
    return st.apply_batch(snap, spb.StoreBatch(actions=list(actions), timestamp=1.0))


def test_a_second_service_of_one_name_fails_the_batch_and_says_which() -> None:
    snap = st.Snapshot()
    assert apply(snap, st.put(service("s1", "web"), create=True)).ok
    # Checked against the same (empty) snapshot, both creates looked fine;
    # the second to be applied fails, whole.
    r = apply(snap, st.put(service("s2", "web"), create=True), st.put(service("s3", "db"), create=True))
    assert not r.ok
    assert (r.taken_kind, r.taken_name) == (spb.KIND_SERVICE, "web")
    assert r.error == "a service named 'web' already exists"
    assert set(snap.services) == {"s1"} and snap.version == 1


def test_networks_too_and_the_two_tables_do_not_mix() -> None:
    snap = st.Snapshot()
    assert apply(snap, st.put(network("n1", "backend"), create=True), st.put(service("s1", "backend"), create=True)).ok
    r = apply(snap, st.put(network("n2", "backend"), create=True))
    assert (r.ok, r.taken_kind, r.taken_name) == (False, spb.KIND_NETWORK, "backend")


def test_two_creates_of_one_name_in_one_batch_fail() -> None:
    snap = st.Snapshot()
    r = apply(snap, st.put(service("s1", "web"), create=True), st.put(service("s2", "web"), create=True))
    assert not r.ok and r.taken_name == "web"
    assert not snap.services


def test_a_rename_onto_a_taken_name_fails() -> None:
    snap = st.Snapshot()
    apply(snap, st.put(service("s1", "web"), create=True), st.put(service("s2", "db"), create=True))
    renamed = service("s2", "web")
    renamed.meta.version = 1
    r = apply(snap, st.put(renamed))
    assert not r.ok and r.taken_name == "web"


def test_removing_and_recreating_a_name_in_one_batch_is_fine() -> None:
    snap = st.Snapshot()
    apply(snap, st.put(service("s1", "web"), create=True))
    assert apply(snap, st.delete(spb.KIND_SERVICE, "s1"), st.put(service("s2", "web"), create=True)).ok
    assert [s.id for s in snap.services.values()] == ["s2"]


def test_updates_of_services_that_already_share_a_name_still_apply() -> None:
    # A state written before names were checked may hold duplicates: they can
    # still be updated (the leader's rounds do) and removed, just not renamed
    # onto each other or joined by a third.
    snap = st.Snapshot(version=1)
    for sid in ("s1", "s2"):
        snap.services[sid] = service(sid, "web")
        snap.services[sid].meta.version = 1
    update = service("s1", "web")
    update.meta.version = 1
    update.spec_version = 2
    assert apply(snap, st.put(update)).ok
    assert not apply(snap, st.put(service("s3", "web"), create=True)).ok
    assert apply(snap, st.delete(spb.KIND_SERVICE, "s2")).ok


def test_the_check_is_part_of_check_batch_for_planners() -> None:
    snap = st.Snapshot()
    apply(snap, st.put(service("s1", "web"), create=True))
    batch = spb.StoreBatch(actions=[st.put(service("s2", "web"), create=True)])
    try:
        st.check_batch(snap, batch)
    except st.NameTaken as e:
        assert (e.table, e.name) == ("services", "web")
    else:
        raise AssertionError("check_batch accepted a taken name")


def test_a_second_secret_of_one_name_is_refused_at_apply() -> None:
    # Two `secret create db-pass` through two managers: each checked the name
    # against a snapshot without the other, and both batches were committed.
    # The one applied second fails, whole, on every manager alike.
    snap = st.Snapshot()
    assert apply(snap, st.put(secret("x1", "db-pass"), create=True)).ok
    r = apply(snap, st.put(secret("x2", "db-pass"), create=True))
    assert (r.ok, r.taken_kind, r.taken_name) == (False, spb.KIND_SECRET, "db-pass")
    assert r.error == "a secret named 'db-pass' already exists"
    assert set(snap.secrets) == {"x1"} and snap.version == 1


def test_configs_too_and_each_kind_has_its_own_names() -> None:
    snap = st.Snapshot()
    assert apply(snap, st.put(config("c1", "app.conf"), create=True), st.put(secret("x1", "app.conf"), create=True)).ok
    r = apply(snap, st.put(config("c2", "app.conf"), create=True))
    assert (r.ok, r.taken_kind, r.taken_name) == (False, spb.KIND_CONFIG, "app.conf")
    assert r.error == "a config named 'app.conf' already exists"
    # A service or network may share a secret's or config's name (as in Swarm).
    assert apply(snap, st.put(service("s1", "app.conf"), create=True), st.put(network("n1", "app.conf"), create=True)).ok


def test_removing_a_secret_and_creating_its_name_again_is_fine() -> None:
    snap = st.Snapshot()
    apply(snap, st.put(secret("x1", "token"), create=True))
    assert apply(snap, st.delete(spb.KIND_SECRET, "x1")).ok
    assert apply(snap, st.put(secret("x2", "token"), create=True)).ok
    assert list(snap.secrets) == ["x2"]


def test_recreating_state_that_already_shares_names_is_not_refused() -> None:
    # Restore and force-new-cluster re-seed a fresh Raft with the objects as
    # they were: a state from before names were checked at apply time may
    # hold two secrets (or services) of one name, and refusing it would leave
    # the recovery with nothing.
    snap = st.Snapshot()
    dupes = [
        st.put(secret("x1", "token"), create=True),
        st.put(secret("x2", "token"), create=True),
        st.put(service("s1", "web"), create=True),
        st.put(service("s2", "web"), create=True),
    ]
    assert not st.apply_batch(snap, spb.StoreBatch(actions=dupes)).ok
    assert st.apply_batch(snap, spb.StoreBatch(actions=dupes, recreate=True)).ok
    assert set(snap.secrets) == {"x1", "x2"} and set(snap.services) == {"s1", "s2"}
    # Only that batch: an ordinary create of the name is still refused.
    assert not apply(snap, st.put(secret("x3", "token"), create=True)).ok
