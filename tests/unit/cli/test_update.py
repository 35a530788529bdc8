"""`service update` flags -> spec (pure), and the update progress verdict."""

from __future__ import annotations

import pytest
import typer

from swarmlet.api import objects_pb2 as pb
from swarmlet.cli.update import Policy, apply_flags, evaluate_update

US = pb.UpdateStatus
UC = pb.UpdateConfig


def base() -> pb.ServiceSpec:
    s = pb.ServiceSpec(name="web")
    s.replicated.replicas = 2
    c = s.task.container
    c.image = "img:1"
    c.env.extend(["A=1", "B=2"])
    s.task.placement.constraints.append("node.role==worker")
    return s


def test_flags_change_only_what_they_name():
    s = base()
    out = apply_flags(
        s,
        image="img:2",
        env_add=["B=3", "C=4"],
        env_rm=["A"],
        replicas=5,
        constraint_add=["node.labels.zone==a"],
        constraint_rm=["node.role==worker"],
        limit_memory="64M",
        args="sh -c 'echo hi'",
    )
    assert out.task.container.image == "img:2"
    assert list(out.task.container.env) == ["B=3", "C=4"]
    assert out.replicated.replicas == 5
    assert list(out.task.placement.constraints) == ["node.labels.zone==a"]
    assert out.task.resources.limits.memory_bytes == 64 << 20
    assert list(out.task.container.args) == ["sh", "-c", "echo hi"]
    assert s == base()  # the input is untouched


def test_force_changes_the_task_spec_and_nothing_else():
    out = apply_flags(base(), force=True)
    assert out.task != base().task and out.task.force_update == 1
    out.task.force_update = 0
    assert out == base()


def test_health_flags():
    out = apply_flags(base(), no_healthcheck=True)
    assert out.task.container.has_healthcheck and list(out.task.container.healthcheck.test) == ["NONE"]
    out = apply_flags(out, health_cmd="true", health_interval="1s", health_retries=2)
    h = out.task.container.healthcheck
    assert list(h.test) == ["CMD-SHELL", "true"] and h.interval == 1.0 and h.retries == 2
    with pytest.raises(typer.BadParameter):
        apply_flags(base(), no_healthcheck=True, health_cmd="true")


def test_policy_flags_start_from_swarm_defaults():
    out = apply_flags(
        base(),
        update=Policy(parallelism=5, monitor="1s", order="start-first", canary=2, auto_promote=True),
        rollback=Policy(failure_action="continue"),
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


@pytest.mark.parametrize(
    "policy,prefix",
    [
        (Policy(failure_action="explode"), "update"),
        (Policy(failure_action="rollback"), "rollback"),  # a rollback is not rolled back
        (Policy(max_failure_ratio=1.5), "update"),
        (Policy(order="sideways"), "update"),
        (Policy(delay="5"), "update"),
    ],
)
def test_bad_policy_flags(policy, prefix):
    with pytest.raises(typer.BadParameter):
        apply_flags(base(), **{prefix: policy})


def _svc(state: int, message: str = "", started: float = 10.0, **kw) -> pb.Service:
    s = pb.Service(id="s", spec=base(), spec_version=2)
    s.update_status.CopyFrom(US(state=state, started_at=started, message=message, **kw))
    return s


def _task(slot: int, state: int, version: int = 2) -> pb.Task:
    t = pb.Task(id=f"t{slot}", service_id="s", slot=slot, spec_version=version, desired_state=pb.RUNNING)
    t.status.state = state
    return t


def test_update_verdicts():
    tasks = [_task(1, pb.RUNNING), _task(2, pb.STARTING)]
    v = evaluate_update(_svc(US.UPDATING), tasks, 10.0)
    assert not v.done and "overall progress: 1 out of 2 tasks" in v.lines[0]
    v = evaluate_update(_svc(US.COMPLETED), tasks, 10.0)
    assert (v.done, v.exit_code) == (True, 0)
    v = evaluate_update(_svc(US.PAUSED, "update paused: 1 of 2 new tasks failed"), tasks, 10.0)
    assert v.done and v.exit_code == 1 and "1 of 2 new tasks failed" in v.final
    v = evaluate_update(_svc(US.ROLLBACK_COMPLETED, "update rolled back: x"), tasks, 10.0)
    assert v.exit_code == 1 and "rolled back" in v.final
    assert evaluate_update(_svc(US.ROLLBACK_COMPLETED), tasks, 10.0, rollback_cmd=True).exit_code == 0
    v = evaluate_update(_svc(US.UPDATING, "2 canaries healthy", canaries_ready=True), tasks, 10.0)
    assert v.done and v.exit_code == 0
    # An older update's status is not ours: keep waiting.
    assert not evaluate_update(_svc(US.COMPLETED, started=5.0), tasks, 10.0).done
