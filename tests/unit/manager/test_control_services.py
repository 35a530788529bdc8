"""The services resource of the control API on a real one-manager store:
every write is validated first and proposed whole; a refused one changes
nothing."""

from __future__ import annotations

import pytest

from swarmlet import errors
from swarmlet.api import control_pb2 as cpb
from swarmlet.api import objects_pb2 as pb
from swarmlet.core import state as st
from swarmlet.core import updater
from tests.unit.manager import helpers as h
from tests.unit.manager.conftest import WORKER1, OneManager


def create(m: OneManager, spec: pb.ServiceSpec) -> pb.Service:
    service: pb.Service = m.control.services.create(cpb.CreateServiceRequest(spec=spec)).service
    return service


def refused(m: OneManager, kind: type[errors.SwarmletError], match: str, call: object, *args: object) -> None:
    """`call(*args)` raises `kind` with a message matching `match`, and the
    store is exactly as before."""
    before = m.store.state_digest()
    with pytest.raises(kind, match=match):
        call(*args)  # type: ignore[operator]
    assert m.store.state_digest() == before


def test_create_stores_the_service_with_defaults(one_manager: OneManager) -> None:
    spec = h.service_spec("web")
    spec.ClearField("replicated")  # no mode given: one replica, as in swarm
    svc = create(one_manager, spec)
    stored = one_manager.store.snapshot().services[svc.id]
    assert stored == svc
    assert svc.spec.replicated.replicas == 1
    assert svc.spec_version == 1
    assert svc.spec.update == updater.DEFAULT_CONFIG and svc.spec.rollback == updater.DEFAULT_CONFIG


def test_create_refuses_bad_input_and_changes_nothing(one_manager: OneManager) -> None:
    m = one_manager
    create(m, h.service_spec("web"))
    make = m.control.services.create
    refused(
        m,
        errors.AlreadyExists,
        "a service named 'web' already exists",
        make,
        cpb.CreateServiceRequest(spec=h.service_spec("web")),
    )
    refused(m, errors.Invalid, "invalid service name", make, cpb.CreateServiceRequest(spec=h.service_spec("no spaces")))
    refused(m, errors.Invalid, "needs an image", make, cpb.CreateServiceRequest(spec=h.service_spec("api", image="")))
    placed = h.service_spec("api")
    placed.task.placement.constraints.append("node.labels.zone==mars")
    refused(m, errors.FailedPrecondition, "no node satisfies the constraints", make, cpb.CreateServiceRequest(spec=placed))
    on_network = h.service_spec("api")
    on_network.networks.add(target="nowhere")
    refused(m, errors.NotFound, "network 'nowhere' not found", make, cpb.CreateServiceRequest(spec=on_network))


def test_get_and_list(one_manager: OneManager) -> None:
    m = one_manager
    web = create(m, h.service_spec("web", replicas=3))
    create(m, h.service_spec("api"))
    assert m.control.services.get(cpb.GetServiceRequest(ref="web")).service.id == web.id
    assert m.control.services.get(cpb.GetServiceRequest(ref=web.id[:6])).service.id == web.id
    listed = m.control.services.list(cpb.ListServicesRequest()).services
    assert [(s.service.spec.name, s.running, s.desired) for s in listed] == [("api", 0, 1), ("web", 0, 3)]
    with pytest.raises(errors.NotFound, match="service 'db' not found"):
        m.control.services.get(cpb.GetServiceRequest(ref="db"))


def test_scale(one_manager: OneManager) -> None:
    m = one_manager
    web = create(m, h.service_spec("web"))
    out = m.control.services.scale(cpb.ScaleServiceRequest(ref="web", replicas=4)).service
    assert out.spec.replicated.replicas == 4
    assert m.store.snapshot().services[web.id].spec.replicated.replicas == 4
    scale = m.control.services.scale
    refused(m, errors.Invalid, "more than the limit", scale, cpb.ScaleServiceRequest(ref="web", replicas=10_001))
    refused(m, errors.NotFound, "not found", scale, cpb.ScaleServiceRequest(ref="db", replicas=1))
    everywhere = h.service_spec("agent")
    everywhere.ClearField("replicated")
    getattr(everywhere, "global").SetInParent()
    create(m, everywhere)
    refused(
        m,
        errors.FailedPrecondition,
        "is global: scale can only be used with replicated or replicated-job mode",
        scale,
        cpb.ScaleServiceRequest(ref="agent", replicas=2),
    )


def test_update_starts_a_rolling_update_and_rollback_restores(one_manager: OneManager) -> None:
    m = one_manager
    web = create(m, h.service_spec("web", image="busybox:1"))
    new_spec = pb.ServiceSpec()
    new_spec.CopyFrom(web.spec)
    new_spec.task.container.image = "busybox:2"
    updated = m.control.services.update(cpb.UpdateServiceRequest(ref="web", spec=new_spec, version=web.meta.version)).service
    assert updated.spec.task.container.image == "busybox:2"
    assert updated.previous_spec.task.container.image == "busybox:1"
    assert updated.spec_version == 2
    assert updated.update_status.state == pb.UpdateStatus.UPDATING

    back = m.control.services.rollback(cpb.RollbackServiceRequest(ref="web")).service
    assert back.spec.task.container.image == "busybox:1"
    assert back.spec_version == 3
    assert back.update_status.state == pb.UpdateStatus.ROLLBACK_STARTED
    assert m.store.snapshot().services[web.id] == back


def test_update_refuses_bad_input_and_changes_nothing(one_manager: OneManager) -> None:
    m = one_manager
    web = create(m, h.service_spec("web"))
    update = m.control.services.update

    def request(change: str, version: int = 0) -> cpb.UpdateServiceRequest:
        spec = pb.ServiceSpec()
        spec.CopyFrom(web.spec)
        if change == "rename":
            spec.name = "web2"
        elif change == "mode":
            spec.ClearField("replicated")
            getattr(spec, "global").SetInParent()
        elif change == "image":
            spec.task.container.image = ""
        return cpb.UpdateServiceRequest(ref="web", spec=spec, version=version)

    refused(m, errors.Invalid, "renaming a service is not supported", update, request("rename"))
    refused(m, errors.Invalid, "the mode cannot be changed", update, request("mode"))
    refused(m, errors.Invalid, "needs an image", update, request("image"))
    # The client read version 1 of the service; someone wrote since.
    m.control.services.scale(cpb.ScaleServiceRequest(ref="web", replicas=2))
    refused(m, errors.Conflict, "changed since it was read", update, request("none", version=web.meta.version))


def test_rollback_and_promote_need_something_to_act_on(one_manager: OneManager) -> None:
    m = one_manager
    create(m, h.service_spec("web"))
    rollback, promote = m.control.services.rollback, m.control.services.promote
    refused(m, errors.FailedPrecondition, "no previous spec to roll back to", rollback, cpb.RollbackServiceRequest(ref="web"))
    refused(m, errors.FailedPrecondition, "no canary update in progress", promote, cpb.PromoteServiceRequest(ref="web"))


def test_remove(one_manager: OneManager) -> None:
    m = one_manager
    web = create(m, h.service_spec("web"))
    assert m.control.services.remove(cpb.RemoveServiceRequest(ref="web")).id == web.id
    assert web.id not in m.store.snapshot().services
    refused(m, errors.NotFound, "service 'web' not found", m.control.services.remove, cpb.RemoveServiceRequest(ref="web"))


def test_progress_answers_one_slot_per_replica(one_manager: OneManager) -> None:
    m = one_manager
    web = create(m, h.service_spec("web", replicas=2))
    # Slot 1 runs the current spec; slot 2 has no task yet.
    task = pb.Task(
        id="task1",
        service_id=web.id,
        service_name="web",
        slot=1,
        node_id=WORKER1,
        spec=web.spec.task,
        spec_version=web.spec_version,
        desired_state=pb.RUNNING,
        status=pb.TaskStatus(state=pb.RUNNING, message="started"),
    )
    m.store.propose([st.put(task, create=True)])

    out = m.control.services.progress(cpb.ServiceProgressRequest(ref="web"))
    assert isinstance(out, cpb.ServiceProgressResponse)
    assert out.service.id == web.id
    assert (out.desired, out.running, out.converged) == (2, 1, False)
    assert [(s.slot, s.has_task, s.settled) for s in out.slots] == [(1, True, True), (2, False, False)]
    first = out.slots[0]
    assert (first.task_id, first.node_id, first.node_name, first.state, first.current) == (
        "task1",
        WORKER1,
        "worker-1",
        pb.RUNNING,
        True,
    )
    with pytest.raises(errors.NotFound):
        m.control.services.progress(cpb.ServiceProgressRequest(ref="db"))
