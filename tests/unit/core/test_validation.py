"""Input checks before anything is proposed: service specs, "can never run
here", networks, published ports and network capacity. Each refusal is the
right kind of error and names what is wrong."""

from __future__ import annotations

import pytest

from swarmlet import errors
from swarmlet.api import objects_pb2 as pb
from swarmlet.core import allocator as al
from swarmlet.core import state as st
from swarmlet.core import validation as v
from tests.core_sim import CPU, GiB, Sim


def spec(name: str = "web", image: str = "busybox:latest", replicas: int = 1) -> pb.ServiceSpec:
    s = pb.ServiceSpec(name=name)
    s.task.container.image = image
    s.replicated.replicas = replicas
    return s


# ---- the spec alone ----


def test_a_good_spec_passes() -> None:
    v.validate_service_spec(spec())


@pytest.mark.parametrize(
    "change, words",
    [
        (lambda s: setattr(s, "name", ""), "needs a name"),
        (lambda s: setattr(s, "name", "-web"), "invalid service name '-web'"),
        (lambda s: setattr(s, "name", "a" * 64), "invalid service name"),
        (lambda s: s.task.container.ClearField("image"), "needs an image"),
        (lambda s: setattr(s.replicated, "replicas", v.MAX_REPLICAS + 1), "more than the limit"),
        (lambda s: s.task.container.env.append("NOVALUE"), "expected KEY=VALUE"),
        (lambda s: s.task.container.env.append("=x"), "expected KEY=VALUE"),
        (lambda s: s.task.placement.constraints.append("zone=a"), "invalid constraint 'zone=a'"),
        (lambda s: setattr(s.task.resources.reservations, "nano_cpus", -1), "--reserve-cpu cannot be negative"),
        (lambda s: setattr(s.task.resources.limits, "memory_bytes", 1 << 20), "at least 6MiB"),
        (lambda s: setattr(s.task.restart, "delay", -1.0), "cannot be negative"),
        (lambda s: setattr(s.task.container, "stop_grace_period", -1.0), "--stop-grace-period"),
        (lambda s: setattr(s.update, "monitor", -1.0), "--update-monitor cannot be negative"),
        (lambda s: setattr(s.rollback, "max_failure_ratio", 2.0), "--rollback-max-failure-ratio"),
    ],
)
def test_bad_specs_are_invalid(change, words: str) -> None:
    s = spec()
    change(s)
    with pytest.raises(v.InvalidSpec, match=words.replace("(", r"\(").replace(")", r"\)")) as e:
        v.validate_service_spec(s)
    assert isinstance(e.value, errors.Invalid)


def test_reservation_above_limit() -> None:
    s = spec()
    s.task.resources.limits.nano_cpus = CPU
    s.task.resources.reservations.nano_cpus = 2 * CPU
    with pytest.raises(v.InvalidSpec, match="--reserve-cpu is larger than --limit-cpu"):
        v.validate_service_spec(s)
    s = spec()
    s.task.resources.limits.memory_bytes = GiB
    s.task.resources.reservations.memory_bytes = 2 * GiB
    with pytest.raises(v.InvalidSpec, match="--reserve-memory is larger than --limit-memory"):
        v.validate_service_spec(s)


def test_canary_is_for_replicated_services() -> None:
    s = spec()
    getattr(s, "global").SetInParent()
    s.update.canary = 1
    with pytest.raises(v.InvalidSpec, match="replicated services only"):
        v.validate_service_spec(s)


# ---- can it ever run in this cluster ----


def test_schedulable_needs_a_node_matching_the_constraints() -> None:
    sim = Sim()
    with pytest.raises(v.Unschedulable, match="the cluster has no nodes"):
        v.check_schedulable(spec(), sim.snap)
    sim.add_node("a", labels={"zone": "a"})
    s = spec()
    s.task.placement.constraints.append("node.labels.zone==b")
    with pytest.raises(v.Unschedulable, match=r"no node satisfies the constraints \['node.labels.zone==b'\] \(checked 1 node\)"):
        v.check_schedulable(s, sim.snap)
    # Availability and status do not matter: a drained node may return.
    sim.add_node("b", labels={"zone": "b"}, availability=pb.NodeSpec.DRAIN, state=pb.NodeStatus.DOWN)
    v.check_schedulable(s, sim.snap)


def test_schedulable_reservations_against_an_empty_node() -> None:
    sim = Sim()
    sim.add_node("small", cpus=2, mem=2 * GiB)
    sim.add_node("big", cpus=4, mem=4 * GiB)
    s = spec()
    s.task.resources.reservations.memory_bytes = 4 * GiB  # fits big exactly
    v.check_schedulable(s, sim.snap)
    s.task.resources.reservations.memory_bytes = 5 * GiB
    with pytest.raises(v.Unschedulable, match=r"the largest node has 4 CPUs and 4.0GiB"):
        v.check_schedulable(s, sim.snap)
    s.task.resources.reservations.memory_bytes = 0
    s.task.resources.reservations.nano_cpus = 8 * CPU
    with pytest.raises(v.Unschedulable, match="no node can ever satisfy the reservations"):
        v.check_schedulable(s, sim.snap)
    # A node that reports no capacity does not limit.
    sim.add_node("unknown")
    v.check_schedulable(s, sim.snap)


def test_image_no_node_holds_is_schedulable() -> None:
    # Issue 9: nodes pull, so an image no node holds is no refusal.
    sim = Sim()
    n = pb.Node()
    n.CopyFrom(sim.add_node("n1"))
    n.description.images.append("busybox:latest")
    sim.apply([st.put(n)])
    v.check_schedulable(spec(image="nginx:1"), sim.snap)


@pytest.mark.parametrize(
    "image, why",
    [
        ("Busybox", "lowercase"),
        ("busybox:", "invalid tag"),
        ("busybox@sha256:1234", "64 lowercase hex"),
        ("bad_host:5000:x/y", "invalid"),
        ("a" * 10_000, "more than the limit of 512B"),
        ("x/" + "a" * 300, "longer than 255"),
    ],
)
def test_malformed_image_reference(image: str, why: str) -> None:
    with pytest.raises(v.InvalidSpec, match=why):
        v.validate_service_spec(spec(image=image))


# ---- networks and ports ----


def with_network(sim: Sim, name: str = "backend", subnet: str = "", allocate: bool = True) -> pb.Network:
    n = pb.Network(id=f"id-{name}", spec=pb.NetworkSpec(name=name, driver="overlay", subnet=subnet))
    sim.apply([st.put(n, create=True)])
    if allocate:
        sim.round()
    return sim.snap.networks[n.id]


def test_networks_resolve_by_name_in_place() -> None:
    sim = Sim()
    net = with_network(sim)
    s = spec()
    s.networks.add(target="backend")
    v.prepare_service_networking(s, sim.snap)
    assert [a.target for a in s.networks] == [net.id]


@pytest.mark.parametrize(
    "setup, err, words",
    [
        (lambda s: s.networks.add(target="nope"), errors.NotFound, "network 'nope' not found"),
        (lambda s: (s.networks.add(target="backend"), s.networks.add(target="id-backend")), v.InvalidSpec, "given twice"),
        (lambda s: s.endpoint.ports.add(target_port=0, published_port=80), v.InvalidSpec, "target port 0 out of range"),
        (lambda s: s.endpoint.ports.add(target_port=80, published_port=70000), v.InvalidSpec, "published port 70000"),
        (
            lambda s: (
                s.endpoint.ports.add(target_port=80, published_port=8080),
                s.endpoint.ports.add(target_port=81, published_port=8080),
            ),
            v.InvalidSpec,
            "port 8080/tcp is published twice",
        ),
        (
            lambda s: (
                setattr(s.endpoint, "mode", pb.EndpointSpec.DNSRR),
                s.endpoint.ports.add(target_port=80, published_port=8080),
            ),
            v.InvalidSpec,
            "dnsrr cannot publish ports in ingress mode",
        ),
    ],
)
def test_bad_networking(setup, err: type[Exception], words: str) -> None:
    sim = Sim()
    with_network(sim)
    s = spec()
    setup(s)
    with pytest.raises(err, match=words):
        v.prepare_service_networking(s, sim.snap)


def test_the_ingress_network_is_not_attached_by_hand() -> None:
    sim = Sim()
    sim.add_node("n1")
    pub = spec("pub")
    pub.endpoint.ports.add(target_port=80, published_port=8080)
    sim.apply([st.put(pb.Service(id="pub", spec=pub), create=True)])
    sim.round()
    ing = al.ingress_network(sim.snap)
    assert ing is not None
    s = spec()
    s.networks.add(target=ing.spec.name)
    with pytest.raises(v.InvalidSpec, match="routing-mesh network"):
        v.prepare_service_networking(s, sim.snap)


def test_a_port_is_published_once_in_the_cluster() -> None:
    sim = Sim()
    other = spec("other")
    other.endpoint.ports.add(target_port=80, published_port=8080, publish_mode=pb.PortConfig.HOST)
    sim.apply([st.put(pb.Service(id="o", spec=other), create=True)])
    s = spec()
    s.endpoint.ports.add(target_port=81, published_port=8080)
    with pytest.raises(errors.FailedPrecondition, match="port 8080/tcp is already published by service 'other'"):
        v.prepare_service_networking(s, sim.snap)
    # Another protocol, or the service itself being updated, is fine.
    s.endpoint.ports[0].protocol = pb.PortConfig.UDP
    v.prepare_service_networking(s, sim.snap)
    v.prepare_service_networking(other, sim.snap, service_id="o")


def test_capacity_counts_addresses_held_by_other_services() -> None:
    sim = Sim()
    sim.add_node("n1")
    net = with_network(sim, subnet="10.9.0.0/29")  # 8 - network, broadcast, gateway = 5 addresses
    s = spec(replicas=4)
    s.networks.add(target=net.id)
    v.check_capacity(s, sim.snap)  # 4 tasks + a VIP
    s.replicated.replicas = 5
    with pytest.raises(
        errors.FailedPrecondition, match=r"network 'backend' \(10.9.0.0/29\) is too small: 5 replicas and a VIP need 6"
    ):
        v.check_capacity(s, sim.snap)
    # Two tasks of another service hold addresses (and it has a VIP): 2 left.
    used = spec("used", replicas=2)
    used.networks.add(target=net.id)
    sim.apply([st.put(pb.Service(id="used", spec=used), create=True)])
    sim.round()
    s.replicated.replicas = 1
    v.check_capacity(s, sim.snap)
    s.replicated.replicas = 2
    with pytest.raises(errors.FailedPrecondition, match="2 are free"):
        v.check_capacity(s, sim.snap)
    # Updating that service itself does not count its own addresses.
    used.replicated.replicas = 4
    v.check_capacity(used, sim.snap, service_id="used")
    # dnsrr needs no VIP.
    s.endpoint.mode = pb.EndpointSpec.DNSRR
    v.check_capacity(s, sim.snap)


def test_capacity_of_a_network_not_allocated_yet_uses_its_spec() -> None:
    sim = Sim()
    net = with_network(sim, subnet="10.9.0.0/30", allocate=False)  # 1 address
    s = spec(replicas=1)
    s.networks.add(target=net.id)
    s.endpoint.mode = pb.EndpointSpec.DNSRR
    v.check_capacity(s, sim.snap)
    s.replicated.replicas = 2
    with pytest.raises(errors.FailedPrecondition, match="too small"):
        v.check_capacity(s, sim.snap)


def test_network_specs() -> None:
    sim = Sim()
    with_network(sim, subnet="10.1.0.0/24")
    for bad, err, words in [
        (pb.NetworkSpec(name=""), v.InvalidSpec, "needs a name"),
        (pb.NetworkSpec(name="a b"), v.InvalidSpec, "invalid network name"),
        (pb.NetworkSpec(name="ing", ingress=True), v.InvalidSpec, "created by the cluster"),
        (pb.NetworkSpec(name="backend"), errors.AlreadyExists, "already exists"),
        (pb.NetworkSpec(name="x", driver="bridge"), al.AllocationError, "unknown network driver"),
        (pb.NetworkSpec(name="x", gateway="10.2.0.1"), al.AllocationError, "--gateway needs --subnet"),
        (pb.NetworkSpec(name="x", subnet="10.1.0.128/25"), al.AllocationError, "overlaps subnet 10.1.0.0/24"),
        (pb.NetworkSpec(name="x", subnet="10.2.0.0/31"), al.AllocationError, "too small"),
        (pb.NetworkSpec(name="x", subnet="10.2.0.0/24", gateway="10.3.0.1"), al.AllocationError, "not a host address"),
    ]:
        with pytest.raises(err, match=words):
            v.validate_network_spec(bad, sim.snap)
        assert issubclass(err, (errors.Invalid, errors.AlreadyExists))
    v.validate_network_spec(pb.NetworkSpec(name="x", subnet="10.2.0.0/24", gateway="10.2.0.254"), sim.snap)


def test_a_network_in_use_is_not_removable() -> None:
    sim = Sim()
    net = with_network(sim)
    v.check_network_removable(sim.snap, net)
    for name in ("b-svc", "a-svc"):
        s = spec(name)
        s.networks.add(target=net.id)
        sim.apply([st.put(pb.Service(id=name, spec=s), create=True)])
    assert v.services_using(sim.snap, net.id) == ["a-svc", "b-svc"]
    with pytest.raises(errors.FailedPrecondition, match="in use by services a-svc, b-svc: remove them first"):
        v.check_network_removable(sim.snap, net)
