"""`service create` / `service update` flags -> spec (pure)."""

from __future__ import annotations

import pytest
import typer

from swarmlet.api import objects_pb2 as pb
from swarmlet.cli.service_flags import HealthFlags, NetworkFlags, ResourceFlags, RestartFlags, RollbackPolicy, UpdatePolicy
from swarmlet.cli.service_spec import apply_flags, apply_network_changes, build_spec, canonical_constraint
from swarmlet.core.updater import DEFAULT_CONFIG

UC = pb.UpdateConfig


def base() -> pb.ServiceSpec:
    s = pb.ServiceSpec(name="web")
    s.replicated.replicas = 2
    c = s.task.container
    c.image = "img:1"
    c.env.extend(["A=1", "B=2"])
    s.task.placement.constraints.append("node.role==worker")
    return s


def test_flags_change_only_what_they_name() -> None:
    s = base()
    out = apply_flags(
        s,
        image="img:2",
        env_add=["B=3", "C=4"],
        env_rm=["A"],
        replicas=5,
        constraint_add=["node.labels.zone==a"],
        constraint_rm=["node.role == worker"],
        resources=ResourceFlags(limit_memory="64M"),
        args="sh -c 'echo hi'",
    )
    assert out.task.container.image == "img:2"
    assert list(out.task.container.env) == ["B=3", "C=4"]
    assert out.replicated.replicas == 5
    assert list(out.task.placement.constraints) == ["node.labels.zone==a"]
    assert out.task.resources.limits.memory_bytes == 64 << 20
    assert list(out.task.container.args) == ["sh", "-c", "echo hi"]
    assert s == base()  # the input is untouched


def test_no_flags_change_nothing() -> None:
    assert apply_flags(base()) == base()


def test_force_changes_the_task_spec_and_nothing_else() -> None:
    out = apply_flags(base(), force=True)
    assert out.task != base().task and out.task.force_update == 1
    out.task.force_update = 0
    assert out == base()


def test_health_flags() -> None:
    out = apply_flags(base(), health=HealthFlags(disable=True))
    assert out.task.container.has_healthcheck and list(out.task.container.healthcheck.test) == ["NONE"]
    out = apply_flags(out, health=HealthFlags(cmd="true", interval="1s", retries=2))
    h = out.task.container.healthcheck
    assert list(h.test) == ["CMD-SHELL", "true"] and h.interval == 1.0 and h.retries == 2
    with pytest.raises(typer.BadParameter):
        apply_flags(base(), health=HealthFlags(disable=True, cmd="true"))


def test_restart_flags_keep_what_is_not_given() -> None:
    s = base()
    s.task.restart.delay = 7.0
    out = apply_flags(s, restart=RestartFlags(condition="on-failure", max_attempts=3))
    r = out.task.restart
    assert (r.condition, r.delay, r.max_attempts) == (pb.RestartPolicy.ON_FAILURE, 7.0, 3)


def test_policy_flags_start_from_the_managers_defaults() -> None:
    out = apply_flags(
        base(),
        update=UpdatePolicy(parallelism=5, monitor="1s", order="start-first", canary=2, auto_promote=True),
        rollback=RollbackPolicy(failure_action="continue"),
    )
    u = out.update
    assert (u.parallelism, u.monitor, u.order, u.canary, u.auto_promote, u.failure_action) == (
        5,
        1.0,
        UC.START_FIRST,
        2,
        True,
        UC.PAUSE,
    )
    r = out.rollback
    assert (r.parallelism, r.monitor, r.failure_action) == (1, 5.0, UC.CONTINUE)
    # Defaults are the manager's (core.updater), not a copy kept by the CLI.
    r.failure_action = DEFAULT_CONFIG.failure_action
    assert r == DEFAULT_CONFIG


def test_zero_is_a_given_policy_flag() -> None:
    out = apply_flags(base(), update=UpdatePolicy(parallelism=0))
    assert out.HasField("update") and out.update.parallelism == 0


def test_no_policy_flag_leaves_the_policy_to_the_manager() -> None:
    spec = build_spec(image="nginx")
    assert not spec.HasField("update") and not spec.HasField("rollback")


@pytest.mark.parametrize(
    "kw",
    [
        {"update": UpdatePolicy(failure_action="explode")},
        {"rollback": RollbackPolicy(failure_action="rollback")},  # a rollback is not rolled back
        {"update": UpdatePolicy(max_failure_ratio=1.5)},
        {"update": UpdatePolicy(order="sideways")},
        {"update": UpdatePolicy(delay="5")},
        {"resources": ResourceFlags(reserve_cpu="2", limit_cpu="1")},
        {"restart": RestartFlags(condition="always")},
        {"constraint_add": ["node.colour==red"]},
    ],
)
def test_bad_update_flags(kw: dict[str, object]) -> None:
    with pytest.raises(typer.BadParameter):
        apply_flags(base(), **kw)  # type: ignore[arg-type]


def test_create_defaults() -> None:
    spec = build_spec(image=" nginx ", args=["-c", "x"])
    assert spec.replicated.replicas == 1 and spec.task.container.image == "nginx"
    assert list(spec.task.container.args) == ["-c", "x"]
    r = spec.task.restart
    assert (r.condition, r.delay, r.max_attempts, r.window) == (pb.RestartPolicy.ANY, 5.0, 0, 0.0)
    assert spec.task.container.stop_grace_period == 10.0
    assert not spec.task.container.has_healthcheck and not spec.task.HasField("resources")


def test_create_and_update_share_the_flag_rules() -> None:
    # The same flags give the same task spec whether a service is created with
    # them or updated to them.
    res = ResourceFlags(reserve_cpu="0.5", limit_memory="1G")
    rst = RestartFlags(condition="none", delay="2s", window="1m")
    hc = HealthFlags(cmd="true", timeout="3s")
    created = build_spec(image="nginx", resources=res, restart=rst, health=hc, stop_grace_period="30s")
    updated = apply_flags(build_spec(image="nginx"), resources=res, restart=rst, health=hc, stop_grace_period="30s")
    assert created == updated


def test_create_env_from_the_callers_environment() -> None:
    spec = build_spec(image="nginx", env=["A=1", "HOME", "UNSET"], environ={"HOME": "/root"})
    assert list(spec.task.container.env) == ["A=1", "HOME=/root"]


@pytest.mark.parametrize(
    "kw,hint",
    [
        ({"mode": "daemonset"}, "--mode"),
        ({"mode": "global", "replicas": 2}, "--replicas"),
        ({"entrypoint": "'unterminated"}, "--entrypoint"),
        ({"labels": ["=x"]}, "--label"),
        ({"placement": ["node.role=worker"]}, "--constraint"),
        ({"health": HealthFlags(disable=True, retries=1)}, "--no-healthcheck"),
    ],
)
def test_bad_create_flags_name_the_flag(kw: dict[str, object], hint: str) -> None:
    with pytest.raises(typer.BadParameter) as e:
        build_spec(image="nginx", **kw)  # type: ignore[arg-type]
    assert e.value.param_hint == hint


@pytest.mark.parametrize(
    "expr,canonical",
    [
        ("node.labels.zone==a", "node.labels.zone==a"),
        ("node.labels.Zone != b", "node.labels.Zone!=b"),
        ("node.hostname==host-1", "node.hostname==host-1"),
        ("node.role==worker", "node.role==worker"),
        ("node.role!=manager", "node.role!=manager"),
        ("NODE.ROLE==manager", "node.role==manager"),
        ("node.id==abc123", "node.id==abc123"),
        ("node.platform.os==linux", "node.platform.os==linux"),
        ("node.platform.arch!=x86_64", "node.platform.arch!=x86_64"),
        ("node.labels.a.b==c=d", "node.labels.a.b==c=d"),
    ],
)
def test_canonical_constraint(expr: str, canonical: str) -> None:
    assert canonical_constraint(expr, "--constraint") == canonical


@pytest.mark.parametrize(
    "expr,match",
    [
        ("node.role=worker", "expected KEY==VALUE"),
        ("node.role==boss", "worker or manager"),
        ("node.label.zone==a", "unknown key"),
        ("node.hostname==a==b", "more than one operator"),
    ],
)
def test_constraints_use_the_schedulers_grammar(expr: str, match: str) -> None:
    # The messages are core.constraints' own: one grammar for CLI and scheduler.
    with pytest.raises(typer.BadParameter, match=match) as e:
        canonical_constraint(expr, "--constraint-add")
    assert e.value.param_hint == "--constraint-add"


def test_create_networking_flags() -> None:
    spec = build_spec(
        image="nginx",
        network=NetworkFlags(
            networks=["front", " back "], endpoint_mode="dnsrr", publish=["8080:80", "published=53,target=53,protocol=udp"]
        ),
    )
    assert [n.target for n in spec.networks] == ["front", "back"]
    assert spec.endpoint.mode == pb.EndpointSpec.DNSRR
    assert [(p.published_port, p.target_port, p.protocol) for p in spec.endpoint.ports] == [
        (8080, 80, pb.PortConfig.TCP),
        (53, 53, pb.PortConfig.UDP),
    ]
    for bad, hint in (
        (NetworkFlags(networks=[" "]), "--network"),
        (NetworkFlags(endpoint_mode="magic"), "--endpoint-mode"),
        (NetworkFlags(publish=["http"]), "--publish"),
    ):
        with pytest.raises(typer.BadParameter) as e:
            build_spec(image="nginx", network=bad)
        assert e.value.param_hint == hint


def test_network_changes_redeploy_the_tasks() -> None:
    nets = {"front": pb.Network(id="n-front"), "back": pb.Network(id="n-back")}
    spec = base()
    spec.networks.add(target="n-front")
    out = apply_network_changes(spec, ["back"], ["front"], nets.__getitem__)
    assert [n.target for n in out.networks] == ["n-back"] and out.task.force_update == 1
    with pytest.raises(typer.BadParameter, match="not attached"):
        apply_network_changes(spec, [], ["back"], nets.__getitem__)
    with pytest.raises(typer.BadParameter, match="already attached"):
        apply_network_changes(spec, ["front"], [], nets.__getitem__)
