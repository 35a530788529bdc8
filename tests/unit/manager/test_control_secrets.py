"""Secrets and configs in the control API on a real one-manager store: the
data goes in once and no reply carries it back; references resolve; a refused
write changes nothing; a secret in use cannot be removed."""

from __future__ import annotations

import pytest

from swarmlet import errors
from swarmlet.api import control_pb2 as cpb
from swarmlet.api import objects_pb2 as pb
from swarmlet.core import state as st
from tests.unit.manager import helpers as h
from tests.unit.manager.conftest import OneManager

PLAINTEXT = b"s3cr3t-plaintext-4f9a1c"


def refused(m: OneManager, kind: type[errors.SwarmletError], match: str, call: object, *args: object) -> None:
    before = m.store.state_digest()
    with pytest.raises(kind, match=match):
        call(*args)  # type: ignore[operator]
    assert m.store.state_digest() == before


def new_secret(m: OneManager, name: str, data: bytes = PLAINTEXT) -> pb.Secret:
    secret: pb.Secret = m.control.secrets.create(
        cpb.CreateSecretRequest(spec=pb.SecretSpec(name=name, data=data, labels={"env": "prod"}))
    ).secret
    return secret


def test_secret_data_is_stored_and_never_returned(one_manager: OneManager) -> None:
    m = one_manager
    s = new_secret(m, "db-pass")
    assert s.spec.name == "db-pass" and s.spec.labels["env"] == "prod" and s.meta.version
    assert m.store.snapshot().secrets[s.id].spec.data == PLAINTEXT  # it is kept...
    replies = [
        s,
        m.control.secrets.get(cpb.GetSecretRequest(ref="db-pass")).secret,
        m.control.secrets.get(cpb.GetSecretRequest(ref=s.id[:6])).secret,
        m.control.secrets.list(cpb.ListSecretsRequest()),
    ]
    for r in replies:  # ...and never shown
        assert PLAINTEXT not in r.SerializeToString()
    assert [x.spec.name for x in m.control.secrets.list(cpb.ListSecretsRequest()).secrets] == ["db-pass"]


def test_bad_secrets_are_refused_and_change_nothing(one_manager: OneManager) -> None:
    m = one_manager
    new_secret(m, "db-pass")
    create = m.control.secrets.create
    for spec, kind, match in (
        (pb.SecretSpec(name="db-pass", data=b"x"), errors.AlreadyExists, "a secret named 'db-pass' already exists"),
        (pb.SecretSpec(name="big", data=b"x" * (500 * 1024 + 1)), errors.Invalid, "the limit is 512000 bytes"),
        (pb.SecretSpec(name="empty"), errors.Invalid, "is empty"),
        (pb.SecretSpec(name="no/slash", data=b"x"), errors.Invalid, "invalid secret name"),
    ):
        refused(m, kind, match, create, cpb.CreateSecretRequest(spec=spec))
    refused(m, errors.NotFound, "secret 'nope' not found", m.control.secrets.get, cpb.GetSecretRequest(ref="nope"))


def test_configs_show_their_data_on_inspect_only(one_manager: OneManager) -> None:
    m = one_manager
    c = m.control.configs.create(cpb.CreateConfigRequest(spec=pb.ConfigSpec(name="app.conf", data=b"x=1\n"))).config
    assert c.spec.data == b"x=1\n"
    assert m.control.configs.get(cpb.GetConfigRequest(ref="app.conf")).config.spec.data == b"x=1\n"
    (listed,) = m.control.configs.list(cpb.ListConfigsRequest()).configs
    assert listed.spec.name == "app.conf" and listed.spec.data == b""
    refused(
        m,
        errors.AlreadyExists,
        "a config named 'app.conf' already exists",
        m.control.configs.create,
        cpb.CreateConfigRequest(spec=pb.ConfigSpec(name="app.conf", data=b"y")),
    )


def test_services_refer_by_name_and_removal_waits_for_them(one_manager: OneManager) -> None:
    m = one_manager
    s = new_secret(m, "db-pass")
    c = m.control.configs.create(cpb.CreateConfigRequest(spec=pb.ConfigSpec(name="app.conf", data=b"x"))).config
    spec = h.service_spec("web")
    spec.task.container.secrets.add(secret_name="db-pass", file=pb.FileTarget(uid="1000", mode=0o400))
    spec.task.container.configs.add(config_name="app.conf", file=pb.FileTarget(name="/etc/app.conf"))
    web = m.control.services.create(cpb.CreateServiceRequest(spec=spec)).service
    (ref,) = web.spec.task.container.secrets
    assert (ref.secret_id, ref.file.name, ref.file.uid, ref.file.gid, ref.file.mode) == (s.id, "db-pass", "1000", "0", 0o400)
    assert web.spec.task.container.configs[0].config_id == c.id
    assert PLAINTEXT not in m.control.services.get(cpb.GetServiceRequest(ref="web")).SerializeToString()

    refused(
        m,
        errors.FailedPrecondition,
        "secret 'db-pass' is in use by service web",
        m.control.secrets.remove,
        cpb.RemoveSecretRequest(ref="db-pass"),
    )
    refused(
        m,
        errors.FailedPrecondition,
        "config 'app.conf' is in use by service web",
        m.control.configs.remove,
        cpb.RemoveConfigRequest(ref=c.id),
    )
    m.control.services.remove(cpb.RemoveServiceRequest(ref="web"))
    assert m.control.secrets.remove(cpb.RemoveSecretRequest(ref="db-pass")).id == s.id
    assert m.control.configs.remove(cpb.RemoveConfigRequest(ref="app.conf")).id == c.id
    snap = m.store.snapshot()
    assert not snap.secrets and not snap.configs


def test_a_service_naming_an_unknown_secret_is_refused(one_manager: OneManager) -> None:
    m = one_manager
    spec = h.service_spec("web")
    spec.task.container.secrets.add(secret_name="nope")
    refused(m, errors.NotFound, "secret 'nope' not found", m.control.services.create, cpb.CreateServiceRequest(spec=spec))
    spec = h.service_spec("web")
    spec.task.container.mounts.add(type=pb.Mount.BIND, source="/srv")
    refused(m, errors.Invalid, "a bind mount needs a target", m.control.services.create, cpb.CreateServiceRequest(spec=spec))


def test_rotation_is_an_update_and_rollback_needs_the_old_secret(one_manager: OneManager) -> None:
    m = one_manager
    old = new_secret(m, "pw-v1")
    new = new_secret(m, "pw-v2", b"next-value")
    spec = h.service_spec("web")
    spec.task.container.secrets.add(secret_name="pw-v1", file=pb.FileTarget(name="pw"))
    web = m.control.services.create(cpb.CreateServiceRequest(spec=spec)).service
    rotated = pb.ServiceSpec()
    rotated.CopyFrom(web.spec)
    del rotated.task.container.secrets[:]
    rotated.task.container.secrets.add(secret_name="pw-v2", file=pb.FileTarget(name="pw"))
    web2 = m.control.services.update(cpb.UpdateServiceRequest(ref="web", version=web.meta.version, spec=rotated)).service
    assert web2.spec.task.container.secrets[0].secret_id == new.id
    assert web2.update_status.state == pb.UpdateStatus.UPDATING  # a changed task spec: a rolling update
    # The old secret is only in the previous spec: it may go, and then a
    # rollback is refused with the reason instead of rejecting every task.
    m.control.secrets.remove(cpb.RemoveSecretRequest(ref=old.id))
    refused(
        m,
        errors.NotFound,
        "secret 'pw-v1' not found",
        m.control.services.rollback,
        cpb.RollbackServiceRequest(ref="web"),
    )
    assert st.state_digest(m.store.snapshot())  # the store still answers
