"""Secrets and configs in the core: spec checks, a service's references,
who uses one, what a node receives, and the store's new tables."""

from __future__ import annotations

import pytest

from swarmlet import errors
from swarmlet.api import objects_pb2 as pb
from swarmlet.api import store_pb2 as spb
from swarmlet.core import cluster as cl
from swarmlet.core import secrets as sc
from swarmlet.core import state as st
from swarmlet.core import validation


def snapshot() -> st.Snapshot:
    snap = st.Snapshot()
    actions = [
        st.put(pb.Secret(id="s1", spec=pb.SecretSpec(name="db-pass", data=b"hunter2")), create=True),
        st.put(pb.Secret(id="s2", spec=pb.SecretSpec(name="api-key", data=b"k3y")), create=True),
        st.put(pb.Config(id="c1", spec=pb.ConfigSpec(name="app.conf", data=b"x=1")), create=True),
    ]
    assert st.apply_batch(snap, spb.StoreBatch(actions=actions)).ok
    return snap


def service_spec(*secrets: str, configs: tuple[str, ...] = ()) -> pb.ServiceSpec:
    spec = pb.ServiceSpec(name="web")
    spec.task.container.image = "img"
    for s in secrets:
        spec.task.container.secrets.add(secret_name=s)
    for c in configs:
        spec.task.container.configs.add(config_name=c)
    return spec


# ---- specs ----


@pytest.mark.parametrize(
    ("kind", "spec", "message"),
    [
        (sc.SECRET, pb.SecretSpec(data=b"x"), "a secret needs a name"),
        (sc.SECRET, pb.SecretSpec(name="bad name", data=b"x"), "invalid secret name 'bad name'"),
        (sc.SECRET, pb.SecretSpec(name="-dash", data=b"x"), "invalid secret name"),
        (sc.SECRET, pb.SecretSpec(name="trailing.", data=b"x"), "invalid secret name"),
        (sc.SECRET, pb.SecretSpec(name="a" * 65, data=b"x"), "invalid secret name"),
        (sc.SECRET, pb.SecretSpec(name="empty"), "the secret 'empty' is empty"),
        (sc.SECRET, pb.SecretSpec(name="blank", data=b" \n\t"), "only white space"),
        (sc.SECRET, pb.SecretSpec(name="big", data=b"x" * (500 * 1024 + 1)), "512001 bytes: the limit is 512000"),
        (sc.CONFIG, pb.ConfigSpec(name="big", data=b"x" * (500 * 1024 + 1)), "the config 'big' is 512001 bytes"),
        (sc.CONFIG, pb.ConfigSpec(name="c", data=b"x", labels={"": "v"}), "a config label needs a key"),
    ],
)
def test_bad_specs_are_refused(kind: sc.Kind, spec: pb.SecretSpec | pb.ConfigSpec, message: str) -> None:
    with pytest.raises(errors.Invalid, match=message):
        sc.validate_spec(kind, spec)


def test_good_specs_pass() -> None:
    sc.validate_spec(sc.SECRET, pb.SecretSpec(name="a", data=b"x" * (500 * 1024)))  # exactly the limit
    sc.validate_spec(sc.SECRET, pb.SecretSpec(name="db_pass.v2-1", data=b"p"))
    sc.validate_spec(sc.CONFIG, pb.ConfigSpec(name="nginx.conf", data=b"   "))  # a config may be white space


def test_names_are_unique_per_kind() -> None:
    snap = snapshot()
    with pytest.raises(errors.AlreadyExists, match="a secret named 'db-pass' already exists"):
        sc.check_name_free(sc.SECRET, snap, "db-pass")
    sc.check_name_free(sc.CONFIG, snap, "db-pass")  # another kind's name space


def test_redacted_copies_have_no_data() -> None:
    s = snapshot().secrets["s1"]
    r = sc.redacted(s)
    assert r.spec.data == b"" and r.spec.name == "db-pass" and s.spec.data == b"hunter2"
    assert b"hunter2" not in r.SerializeToString()


# ---- references ----


def test_references_resolve_to_ids_with_swarm_defaults() -> None:
    spec = service_spec("db-pass", configs=("app.conf",))
    spec.task.container.secrets.add(secret_name="s2", file=pb.FileTarget(name="keys/api", uid="1000", mode=0o400))
    validation.prepare_service_storage(spec, snapshot())
    s1, s2 = spec.task.container.secrets
    assert (s1.secret_id, s1.secret_name) == ("s1", "db-pass")
    assert (s1.file.name, s1.file.uid, s1.file.gid, s1.file.mode) == ("db-pass", "0", "0", 0o444)
    assert (s2.secret_id, s2.secret_name, s2.file.name, s2.file.uid, s2.file.mode) == ("s2", "api-key", "keys/api", "1000", 0o400)
    (c1,) = spec.task.container.configs
    assert (c1.config_id, c1.file.name, c1.file.mode) == ("c1", "/app.conf", 0o444)
    assert sc.SECRET.container_path(s1) == "/run/secrets/db-pass"
    assert sc.SECRET.container_path(s2) == "/run/secrets/keys/api"
    # Resolving twice changes nothing (an update sends the resolved spec back).
    again = pb.ServiceSpec()
    again.CopyFrom(spec)
    validation.prepare_service_storage(again, snapshot())
    assert again == spec


def _refused(spec: pb.ServiceSpec, exc: type[Exception], message: str) -> None:
    before = pb.ServiceSpec()
    before.CopyFrom(spec)
    with pytest.raises(exc, match=message):
        validation.prepare_service_storage(spec, snapshot())


def test_unknown_secret_or_config_is_refused() -> None:
    _refused(service_spec("nope"), errors.NotFound, "secret 'nope' not found: create it first")
    _refused(service_spec(configs=("nope",)), errors.NotFound, "config 'nope' not found")


@pytest.mark.parametrize(
    ("file", "message"),
    [
        (pb.FileTarget(name="../etc/passwd"), "must not contain '..'"),
        (pb.FileTarget(name="a", uid="root"), "uid 'root' must be a number"),
        (pb.FileTarget(name="a", gid="-1"), "gid '-1' must be a number"),
        (pb.FileTarget(name="a", mode=0o1777), "mode 1777 is not a file mode"),
        (pb.FileTarget(name="/"), "is a directory"),
    ],
)
def test_bad_secret_files_are_refused(file: pb.FileTarget, message: str) -> None:
    spec = service_spec()
    spec.task.container.secrets.add(secret_name="db-pass", file=file)
    _refused(spec, errors.Invalid, message)


def test_a_config_needs_an_absolute_target() -> None:
    spec = service_spec()
    spec.task.container.configs.add(config_name="app.conf", file=pb.FileTarget(name="etc/app.conf"))
    _refused(spec, errors.Invalid, "must be an absolute path")


def test_clashing_targets_are_refused() -> None:
    spec = service_spec()
    spec.task.container.secrets.add(secret_name="db-pass", file=pb.FileTarget(name="x"))
    spec.task.container.secrets.add(secret_name="api-key", file=pb.FileTarget(name="/run/secrets/x"))
    _refused(spec, errors.Invalid, "secret 'api-key' and secret 'db-pass' have the same target /run/secrets/x")
    spec = service_spec(configs=("app.conf",))
    spec.task.container.mounts.add(type=pb.Mount.TMPFS, target="/app.conf")
    _refused(spec, errors.Invalid, "config 'app.conf' and a mount have the same target /app.conf")


def test_the_same_secret_may_appear_at_two_targets() -> None:
    spec = service_spec()
    spec.task.container.secrets.add(secret_name="db-pass", file=pb.FileTarget(name="a"))
    spec.task.container.secrets.add(secret_name="db-pass", file=pb.FileTarget(name="b", mode=0o400))
    validation.prepare_service_storage(spec, snapshot())


# ---- use ----


def test_services_using_counts_specs_and_live_tasks() -> None:
    snap = snapshot()
    web = service_spec("db-pass")
    validation.prepare_service_storage(web, snap)
    old = pb.Task(id="t-old", service_id="svc2", service_name="api", desired_state=pb.SHUTDOWN)
    old.spec.CopyFrom(web.task)  # still stopping, with the secret it ran with
    done = pb.Task(id="t-done", service_id="svc3", service_name="gone", desired_state=pb.SHUTDOWN)
    done.spec.CopyFrom(web.task)
    done.status.state = pb.SHUTDOWN
    actions = [st.put(pb.Service(id="svc1", spec=web), create=True), st.put(old, create=True), st.put(done, create=True)]
    assert st.apply_batch(snap, spb.StoreBatch(actions=actions)).ok
    assert sc.services_using(sc.SECRET, snap, "s1") == ["api", "web"]
    assert sc.services_using(sc.SECRET, snap, "s2") == []
    with pytest.raises(errors.FailedPrecondition, match="secret 'db-pass' is in use by services api, web"):
        sc.check_removable(sc.SECRET, snap, snap.secrets["s1"])
    sc.check_removable(sc.SECRET, snap, snap.secrets["s2"])


def test_a_node_gets_only_what_its_live_tasks_use() -> None:
    snap = snapshot()
    spec = service_spec("db-pass", configs=("app.conf",))
    validation.prepare_service_storage(spec, snap)
    other = service_spec("api-key")
    validation.prepare_service_storage(other, snap)

    def task(tid: str, node: str, task_spec: pb.TaskSpec, desired: int, state: int) -> pb.Task:
        t = pb.Task(id=tid, service_id="x", node_id=node, desired_state=desired)  # type: ignore[arg-type]
        t.spec.CopyFrom(task_spec)
        t.status.state = state  # type: ignore[assignment]
        return t

    tasks = [
        task("a", "n1", spec.task, pb.RUNNING, pb.RUNNING),
        task("b", "n2", other.task, pb.SHUTDOWN, pb.RUNNING),  # being stopped: already has its files
        task("c", "n2", spec.task, pb.RUNNING, pb.FAILED),  # ended
        task("d", "n3", spec.task, pb.READY, pb.ASSIGNED),  # a stop-first update's task, not started yet
    ]
    assert st.apply_batch(snap, spb.StoreBatch(actions=[st.put(t, create=True) for t in tasks])).ok
    node = {n: pb.Node(id=n) for n in ("n1", "n2", "n3")}
    msg1 = cl.session_message(snap, node["n1"], "sess", [])
    assert [s.id for s in msg1.secrets] == ["s1"] and msg1.secrets[0].spec.data == b"hunter2"
    assert [c.id for c in msg1.configs] == ["c1"]
    msg2 = cl.session_message(snap, node["n2"], "sess", [])
    assert list(msg2.secrets) == [] and list(msg2.configs) == []
    assert [s.id for s in cl.session_message(snap, node["n3"], "sess", []).secrets] == ["s1"]


# ---- the store ----


def test_secrets_and_configs_are_store_tables() -> None:
    snap = snapshot()
    assert set(snap.secrets) == {"s1", "s2"} and set(snap.configs) == {"c1"}
    digest = st.state_digest(snap)
    r = st.apply_batch(snap, spb.StoreBatch(actions=[st.delete(spb.KIND_SECRET, "s2"), st.delete(spb.KIND_CONFIG, "c1")]))
    assert r.ok and set(snap.secrets) == {"s1"} and not snap.configs
    assert st.state_digest(snap) != digest
    # Versioned deletes and must-not-exist puts work as for every table.
    stale = st.apply_batch(snap, spb.StoreBatch(actions=[st.delete(spb.KIND_SECRET, "s1", expected_version=99)]))
    assert not stale.ok and "changed before delete" in stale.error
    dup = st.apply_batch(snap, spb.StoreBatch(actions=[st.put(pb.Secret(id="s1"), create=True)]))
    assert not dup.ok and "already exists" in dup.error
    copy = snap.shallow_copy()
    assert copy.secrets == snap.secrets and copy.secrets is not snap.secrets
