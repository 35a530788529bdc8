"""The networks resource of the control API on a real one-manager store."""

from __future__ import annotations

import pytest

from swarmlet import errors
from swarmlet.api import control_pb2 as cpb
from swarmlet.api import objects_pb2 as pb
from swarmlet.core import state as st
from tests.unit.manager import helpers as h
from tests.unit.manager.conftest import WORKER1, OneManager


def create(m: OneManager, name: str, subnet: str = "") -> pb.Network:
    network: pb.Network = m.control.networks.create(
        cpb.CreateNetworkRequest(spec=pb.NetworkSpec(name=name, subnet=subnet))
    ).network
    return network


def test_create_list_and_refusals(one_manager: OneManager) -> None:
    m = one_manager
    front = create(m, "front", "10.5.0.0/24")
    create(m, "back")
    assert front.spec.driver == "overlay"
    assert m.store.snapshot().networks[front.id] == front
    assert [n.spec.name for n in m.control.networks.list(cpb.ListNetworksRequest()).networks] == ["back", "front"]

    before = m.store.state_digest()
    with pytest.raises(errors.AlreadyExists, match="a network named 'front' already exists"):
        m.control.networks.create(cpb.CreateNetworkRequest(spec=pb.NetworkSpec(name="front")))
    for spec, match in (
        (pb.NetworkSpec(name="bad name"), "invalid network name"),
        (pb.NetworkSpec(name="mesh", ingress=True), "created by the cluster"),
        (pb.NetworkSpec(name="other", subnet="10.5.0.128/25"), "overlaps subnet 10.5.0.0/24"),
        (pb.NetworkSpec(name="other", driver="bridge"), "only 'overlay' is supported"),
    ):
        with pytest.raises(errors.Invalid, match=match):
            m.control.networks.create(cpb.CreateNetworkRequest(spec=spec))
    assert m.store.state_digest() == before


def test_inspect_shows_endpoints_and_peers(one_manager: OneManager) -> None:
    m = one_manager
    net = create(m, "front", "10.5.0.0/24")
    spec = h.service_spec("web")
    spec.networks.add(target="front")
    web = m.control.services.create(cpb.CreateServiceRequest(spec=spec)).service
    assert web.spec.networks[0].target == net.id  # the name was resolved
    task = pb.Task(
        id="task1",
        service_id=web.id,
        service_name="web",
        slot=1,
        node_id=WORKER1,
        desired_state=pb.RUNNING,
        status=pb.TaskStatus(state=pb.RUNNING),
        networks=[pb.NetworkAttachment(network_id=net.id, addr="10.5.0.3")],
    )
    m.store.propose([st.put(task, create=True)])

    out = m.control.networks.get(cpb.GetNetworkRequest(ref="front"))
    assert out.network.id == net.id
    assert [(e.task_id, e.service_name, e.addr, e.node_name) for e in out.endpoints] == [("task1", "web", "10.5.0.3", "worker-1")]
    assert [(p.node_id, p.node_name) for p in out.peers] == [(WORKER1, "worker-1")]


def test_remove_refuses_a_network_in_use(one_manager: OneManager) -> None:
    m = one_manager
    net = create(m, "front")
    spec = h.service_spec("web")
    spec.networks.add(target="front")
    m.control.services.create(cpb.CreateServiceRequest(spec=spec))
    before = m.store.state_digest()
    with pytest.raises(errors.FailedPrecondition, match="network 'front' is in use by service web: remove it first"):
        m.control.networks.remove(cpb.RemoveNetworkRequest(ref="front"))
    assert m.store.state_digest() == before

    m.control.services.remove(cpb.RemoveServiceRequest(ref="web"))
    assert m.control.networks.remove(cpb.RemoveNetworkRequest(ref="front")).id == net.id
    assert net.id not in m.store.snapshot().networks
    with pytest.raises(errors.NotFound, match="network 'front' not found"):
        m.control.networks.remove(cpb.RemoveNetworkRequest(ref="front"))
