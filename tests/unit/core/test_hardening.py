"""Issue 13 in the pure core: bounded input (core/bounds.py), ports and
subnets the cluster keeps for itself (core/reserved.py), what managers accept
from nodes (core/trust.py) and every object of a backup checked on restore
(core/validation.validate_restored)."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest

from swarmlet import errors
from swarmlet.api import objects_pb2 as pb
from swarmlet.api import store_pb2 as spb
from swarmlet.core import allocator as al
from swarmlet.core import bounds, trust
from swarmlet.core import state as st
from swarmlet.core import validation as v

# ---------------------------------------------------------------- helpers


def spec(name: str = "web") -> pb.ServiceSpec:
    s = pb.ServiceSpec(name=name)
    s.task.container.image = "busybox:latest"
    s.replicated.replicas = 1
    return s


def node(nid: str, host: str, addr: str, api: str = "", raft: str = "", subnets: tuple[str, ...] = ()) -> pb.Node:
    return pb.Node(
        id=nid,
        description=pb.NodeDescription(hostname=host, engine_subnets=list(subnets)),
        status=pb.NodeStatus(state=pb.NodeStatus.READY, addr=addr),
        api_addr=api,
        raft_addr=raft,
    )


def snapshot(*objects: object) -> st.Snapshot:
    snap = st.Snapshot()
    result = st.apply_batch(snap, spb.StoreBatch(actions=[st.put(o, create=True) for o in objects]))  # type: ignore[arg-type]
    assert result.ok, result.error
    return snap


# ---------------------------------------------------------------- bounds


@pytest.mark.parametrize(
    ("change", "words"),
    [
        (lambda s: s.labels.update({"big": "x" * (2_500_000)}), "value of 'big' is 2.4MiB, more than the limit"),
        (lambda s: s.labels.update({f"k{i}": "v" for i in range(bounds.MAX_LABELS + 1)}), "more than the limit of 128"),
        (lambda s: s.task.container.env.extend([f"K{i}=v" for i in range(bounds.MAX_ENV + 1)]), "environment variables"),
        (lambda s: s.task.container.args.extend(["a" * (bounds.MAX_ARG + 1)]), r"arguments \[0\]"),
        (lambda s: s.task.placement.constraints.extend(["node.role==worker"] * 65), "placement constraints"),
        (lambda s: s.task.container.healthcheck.test.extend(["CMD-SHELL", "x" * 9000]), "health command words"),
        (lambda s: setattr(s.task.container, "image", "i" * 600), "the image name"),
        (lambda s: s.task.container.env.extend([f"K{i}={'v' * 1000}" for i in range(300)]), "the service spec is"),
    ],
)
def test_oversized_input_is_refused_naming_what_and_the_limit(change: Callable[[pb.ServiceSpec], None], words: str) -> None:
    s = spec()
    change(s)
    with pytest.raises(v.InvalidSpec, match=words):
        v.validate_service_spec(s)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, 1e15, -1.0])
@pytest.mark.parametrize(
    ("field", "flag"),
    [
        (lambda s, x: setattr(s.task.container, "stop_grace_period", x), "--stop-grace-period"),
        (lambda s, x: setattr(s.task.container.healthcheck, "interval", x), "--health-interval"),
        (lambda s, x: setattr(s.update, "monitor", x), "--update-monitor"),
        (lambda s, x: setattr(s.task.restart, "delay", x), "--restart-delay"),
        (lambda s, x: setattr(s.rollback, "delay", x), "--rollback-delay"),
    ],
)
def test_durations_are_finite_and_bounded(field: Callable[[pb.ServiceSpec, float], None], flag: str, value: float) -> None:
    s = spec()
    field(s, value)
    with pytest.raises(v.InvalidSpec, match=flag):
        v.validate_service_spec(s)


def test_a_nan_failure_ratio_is_refused() -> None:
    s = spec()
    s.update.max_failure_ratio = math.nan
    with pytest.raises(v.InvalidSpec, match="max-failure-ratio"):
        v.validate_service_spec(s)


def test_a_spec_at_the_limits_is_accepted() -> None:
    s = spec()
    s.labels.update({f"k{i}": "v" * 100 for i in range(100)})
    s.task.container.env.extend([f"K{i}=v" for i in range(500)])
    s.task.container.stop_grace_period = bounds.MAX_DURATION
    v.validate_service_spec(s)


def test_node_labels_are_bounded() -> None:
    with pytest.raises(v.InvalidSpec, match="node labels"):
        v.validate_node_labels({"k": "v" * (bounds.MAX_LABEL_VALUE + 1)})


@pytest.mark.parametrize("name", ["a/b", "a\nb", "a b", "x" * 300])
def test_a_hostname_with_separators_or_too_long_is_refused(name: str) -> None:
    with pytest.raises(errors.Invalid):
        bounds.check_hostname(name)


# ---------------------------------------------------------------- reserved ports and subnets


@pytest.mark.parametrize(("port", "proto", "words"), [(4243, "tcp", "Raft"), (4242, "tcp", "join"), (4789, "udp", "VXLAN")])
def test_swarmlets_own_ports_cannot_be_published(port: int, proto: str, words: str) -> None:
    s = spec()
    s.endpoint.ports.add(target_port=80, published_port=port, protocol=pb.PortConfig.UDP if proto == "udp" else pb.PortConfig.TCP)
    with pytest.raises(v.InvalidSpec, match=f"port {port}/{proto} is reserved by swarmlet.*{words}"):
        v.prepare_service_networking(s, st.Snapshot())


def test_a_port_a_node_listens_on_cannot_be_published_but_4789_tcp_can() -> None:
    snap = snapshot(node("n1", "h1", "10.0.0.1", api="10.0.0.1:5544", raft="10.0.0.1:5543"))
    s = spec()
    s.endpoint.ports.add(target_port=80, published_port=5544)
    with pytest.raises(v.InvalidSpec, match="node API port of node h1"):
        v.prepare_service_networking(s, snap)
    ok = spec("ok")
    ok.endpoint.ports.add(target_port=80, published_port=4789)  # tcp: not the VXLAN port
    v.prepare_service_networking(ok, snap)


@pytest.mark.parametrize(
    ("subnet", "words"),
    [
        ("0.0.0.0/0", "too large"),
        ("127.0.0.0/8", "loopback"),
        ("224.0.0.0/24", "multicast"),
        ("169.254.0.0/16", "link-local"),
        ("198.18.5.0/24", "contains the address 198.18.5.1 of node h1 \\(the underlay network\\)"),
        ("172.31.1.0/24", "overlaps the Docker engine network 172.31.1.0/24 of node h1"),
    ],
)
def test_overlay_subnets_the_cluster_uses_itself_are_refused(subnet: str, words: str) -> None:
    snap = snapshot(node("n1", "h1", "198.18.5.1", subnets=("172.31.1.0/24",)))
    with pytest.raises(v.InvalidSpec, match=words):
        v.validate_network_spec(pb.NetworkSpec(name="net", subnet=subnet), snap)
    v.validate_network_spec(pb.NetworkSpec(name="fine", subnet="10.20.0.0/24"), snap)


def test_the_allocator_never_hands_out_a_nodes_own_subnet() -> None:
    snap = snapshot(
        pb.Cluster(id="c", spec=pb.ClusterSpec(default_address_pool=["10.0.0.0/22"], default_subnet_size=24)),
        node("n1", "h1", "10.0.0.5", subnets=("10.0.1.0/24",)),
        pb.Network(id="net1", spec=pb.NetworkSpec(name="a", driver="overlay")),
    )
    plan = al.allocate(snap, lambda: "x")
    nets = [a.put.network for a in plan.actions if a.WhichOneof("action") == "put" and a.put.WhichOneof("object") == "network"]
    assert [n.subnet for n in nets] == ["10.0.2.0/24"]


def test_an_address_pool_over_special_ranges_is_refused() -> None:
    with pytest.raises(al.AllocationError, match="overlaps loopback"):
        al.parse_pool(["127.0.0.0/8"], 24)
    with pytest.raises(al.AllocationError, match="too large"):
        al.parse_pool(["0.0.0.0/0"], 24)


# ---------------------------------------------------------------- what nodes report


def test_a_node_reports_only_addresses_it_is_known_by() -> None:
    ok = trust.accept_addresses("10.0.0.7", "10.0.0.7:4244", "10.0.0.7:4243", "192.168.1.9", ["10.0.0.7"])
    assert ok == ("10.0.0.7", "10.0.0.7:4244", "10.0.0.7:4243")
    assert trust.accept_addresses("192.168.1.9", "", "", "192.168.1.9", ["10.0.0.7"])[0] == "192.168.1.9"
    with pytest.raises(trust.Refused, match="neither the address in the node's certificate"):
        trust.accept_addresses("10.0.0.1", "", "", "192.168.1.9", ["10.0.0.7"])
    with pytest.raises(trust.Refused, match="not an IP address"):
        trust.accept_addresses("evil.example\n", "", "", "10.0.0.7", [])
    with pytest.raises(trust.Refused, match="API address"):
        trust.accept_addresses("10.0.0.7", "10.0.0.8:4244", "", "10.0.0.7", [])
    with pytest.raises(trust.Refused, match="Raft address"):
        trust.accept_addresses("10.0.0.7", "", "10.0.0.7:99999", "10.0.0.7", [])


def test_a_node_keeps_the_hostname_it_joined_with_and_bounded_values() -> None:
    stored = node("n1", "h2", "10.0.0.2")
    claimed = pb.NodeDescription(hostname="h1", images=["busybox:latest"], engine_subnets=["172.17.0.0/16"])
    assert trust.accept_description(claimed, stored).hostname == "h2"
    with pytest.raises(trust.Refused, match="images"):
        trust.accept_description(pb.NodeDescription(images=["x"] * (trust.MAX_IMAGES + 1)), stored)
    with pytest.raises(trust.Refused, match="resources"):
        trust.accept_description(pb.NodeDescription(resources=pb.Resources(nano_cpus=-1)), stored)
    with pytest.raises(trust.Refused, match="engine subnet"):
        trust.accept_description(pb.NodeDescription(engine_subnets=["nope"]), stored)


def test_public_view_shows_no_secret() -> None:
    c = pb.Cluster(
        id="c",
        worker_token="SWLTKN-w",
        manager_token="SWLTKN-m",
        raft_secret=b"s" * 32,
        raft_secret_previous=b"p" * 32,
        unlock_key="SWLKEY-1-x",
        root_ca=pb.RootCA(cert_pem=b"CERT", key_pem=b"KEY", digest="d"),
    )
    out = trust.public_view(c).SerializeToString()
    for secret in (b"SWLTKN-w", b"SWLTKN-m", b"s" * 32, b"p" * 32, b"SWLKEY", b"KEY"):
        assert secret not in out.replace(b"CERT", b"")
    assert trust.public_view(c).root_ca.cert_pem == b"CERT"


def test_a_rotation_keeps_the_old_secret_until_it_is_retired() -> None:
    c = pb.Cluster(id="c", raft_secret=b"a" * 32)
    r = trust.with_rotated_raft_secret(c, b"b" * 32, "demoted", 5.0)
    assert (r.raft_secret, r.raft_secret_previous, r.raft_secret_epoch, r.raft_secret_rotation) == (
        b"b" * 32,
        b"a" * 32,
        1,
        "demoted",
    )
    done = trust.with_raft_secret_retired(r)
    assert done.raft_secret_previous == b"" and done.raft_secret == b"b" * 32


# ---------------------------------------------------------------- restore


def restorable() -> st.Snapshot:
    svc = pb.Service(id="s1", spec=spec("web"))
    return snapshot(
        pb.Cluster(id="c1", spec=pb.ClusterSpec(heartbeat_period=0.5, node_down_after=3)),
        node("n1", "h1", "10.0.0.1", api="10.0.0.1:4244"),
        svc,
        pb.Task(id="t1", service_id="s1", service_name="web", spec=svc.spec.task),
        pb.Network(id="net1", spec=pb.NetworkSpec(name="front", subnet="10.1.0.0/24")),
    )


@pytest.mark.parametrize(
    ("damage", "words"),
    [
        (lambda s: setattr(s.services["s1"].spec, "name", "a/b"), "service s1: invalid service name"),
        (lambda s: setattr(s.services["s1"].spec, "name", "a\nb"), "service s1: invalid service name"),
        (lambda s: setattr(s.tasks["t1"].spec.container, "stop_grace_period", math.nan), "task t1: --stop-grace-period"),
        (lambda s: s.services["s1"].spec.task.container.env.extend(["K=v"] * 10_000), "service s1:.*environment"),
        (lambda s: setattr(s.nodes["n1"].description, "hostname", "h1\nevil"), "node n1: hostname"),
        (lambda s: setattr(s.nodes["n1"], "api_addr", "not-an-ip:4244"), "node n1: API address"),
        (lambda s: setattr(s.clusters["c1"].spec, "heartbeat_period", math.inf), "cluster c1: heartbeat period"),
        (lambda s: setattr(s.networks["net1"].spec, "name", "../x"), "network net1: invalid network name"),
        (lambda s: s.services.__setitem__("bad id/x", s.services["s1"]), "service id"),
    ],
)
def test_a_crafted_backup_object_is_refused_on_restore(damage: Callable[[st.Snapshot], None], words: str) -> None:
    snap = restorable()
    v.validate_restored(snap)
    damage(snap)
    with pytest.raises(v.InvalidSpec, match=words):
        v.validate_restored(snap)
