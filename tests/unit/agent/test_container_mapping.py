"""Task -> Docker container mapping (pure: no engine)."""

from __future__ import annotations

from swarmlet.agent.runtime import containers as cm
from swarmlet.api import objects_pb2 as pb


def _task(**container: object) -> pb.Task:
    t = pb.Task(id="t1abc", service_id="s1", service_name="web", slot=3, node_id="n1")
    t.spec.container.image = "swarmlet-test:busybox"
    for k, v in container.items():
        if isinstance(v, list):
            getattr(t.spec.container, k).extend(v)
        elif isinstance(v, dict):
            getattr(t.spec.container, k).update(v)
        else:
            setattr(t.spec.container, k, v)
    return t


def test_names_replicated_and_global() -> None:
    assert cm.container_name(_task(), "n1") == "web.3.t1abc"
    g = _task()
    g.slot = 0
    assert cm.container_name(g, "node9") == "web.node9.t1abc"


def test_labels_ours_win_over_the_spec() -> None:
    t = _task(labels={"app": "x", cm.LABEL_TASK_ID: "spoofed", cm.LABEL_NODE_ID: "other"})
    labels = cm.container_labels(t, "n1")
    assert labels == {
        "app": "x",
        cm.LABEL_TASK_ID: "t1abc",
        cm.LABEL_SERVICE_ID: "s1",
        cm.LABEL_SERVICE_NAME: "web",
        cm.LABEL_NODE_ID: "n1",
        cm.LABEL_SLOT: "3",
    }


def test_minimal_create_kwargs_keep_image_defaults() -> None:
    kw = cm.create_container_kwargs(_task(), "n1")
    assert kw["image"] == "swarmlet-test:busybox"
    assert kw["name"] == "web.3.t1abc"
    assert kw["detach"] is True
    # Nothing set means the image's entrypoint, CMD, env and health check apply.
    for absent in ("entrypoint", "command", "environment", "healthcheck"):
        assert absent not in kw


def test_command_args_env() -> None:
    kw = cm.create_container_kwargs(_task(command=["sh", "-c"], args=["echo hi"], env=["A=1", "B=two"]), "n1")
    assert kw["entrypoint"] == ["sh", "-c"]
    assert kw["command"] == ["echo hi"]
    assert kw["environment"] == ["A=1", "B=two"]
    kw = cm.create_container_kwargs(_task(args=["sleep", "5"]), "n1")
    assert "entrypoint" not in kw and kw["command"] == ["sleep", "5"]


def test_healthcheck_in_nanoseconds() -> None:
    t = _task(has_healthcheck=True)
    hc = t.spec.container.healthcheck
    hc.test.extend(["CMD-SHELL", "true"])
    hc.interval = 0.5
    hc.timeout = 2
    hc.retries = 3
    hc.start_period = 1.25
    kw = cm.create_container_kwargs(t, "n1")
    assert kw["healthcheck"] == {
        "test": ["CMD-SHELL", "true"],
        "interval": 500_000_000,
        "timeout": 2_000_000_000,
        "retries": 3,
        "start_period": 1_250_000_000,
    }


def test_healthcheck_none_disables_and_zeroes_are_left_out() -> None:
    t = _task(has_healthcheck=True)
    t.spec.container.healthcheck.test.append("NONE")
    assert cm.create_container_kwargs(t, "n1")["healthcheck"] == {"test": ["NONE"]}
    # A set but empty config: the image's test with Docker's default timings.
    assert cm.create_container_kwargs(_task(has_healthcheck=True), "n1")["healthcheck"] == {}
    # A config present but not flagged is ignored (proto3 cannot tell otherwise).
    t = _task()
    t.spec.container.healthcheck.test.extend(["CMD", "false"])
    assert "healthcheck" not in cm.create_container_kwargs(t, "n1")


def test_host_config_defaults_and_limits() -> None:
    t = _task()
    assert cm.host_config_kwargs(t) == {"network_mode": "none", "restart_policy": {"Name": "no"}}
    t.spec.resources.limits.nano_cpus = 500_000_000
    t.spec.resources.limits.memory_bytes = 64 << 20
    t.spec.resources.reservations.nano_cpus = 2_000_000_000  # scheduling only: not a limit
    hc = cm.host_config_kwargs(t)
    assert hc["nano_cpus"] == 500_000_000
    assert hc["mem_limit"] == 64 << 20
    assert hc["network_mode"] == "none"


def test_stop_timeout() -> None:
    assert cm.stop_timeout(_task()) == 10
    assert cm.stop_timeout(_task(stop_grace_period=3)) == 3
    assert cm.stop_timeout(_task(stop_grace_period=0.2)) == 1  # never shortened to 0
    assert cm.stop_timeout(_task(stop_grace_period=2.5)) == 3


def test_healthcheck_enabled() -> None:
    plain = pb.ContainerSpec()
    assert not cm.healthcheck_enabled(plain, ())
    assert cm.healthcheck_enabled(plain, ["CMD", "true"])
    assert not cm.healthcheck_enabled(plain, ["NONE"])
    own = pb.ContainerSpec(has_healthcheck=True, healthcheck=pb.HealthConfig(test=["CMD-SHELL", "x"]))
    assert cm.healthcheck_enabled(own, ())
    off = pb.ContainerSpec(has_healthcheck=True, healthcheck=pb.HealthConfig(test=["NONE"]))
    assert not cm.healthcheck_enabled(off, ["CMD", "true"])
    # Only timings set: the image's test stays in force.
    timing = pb.ContainerSpec(has_healthcheck=True, healthcheck=pb.HealthConfig(interval=1))
    assert cm.healthcheck_enabled(timing, ["CMD", "true"])
    assert not cm.healthcheck_enabled(timing, ())


def test_healthcheck_active() -> None:
    assert cm.healthcheck_active(["CMD-SHELL", "true"])
    assert not cm.healthcheck_active([])
    assert not cm.healthcheck_active(["NONE"])
