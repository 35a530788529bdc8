"""Pure mapping from a task to its container: name, labels, the arguments
of a Docker container create, the stop timeout, whether a health check gates
RUNNING. No engine calls here (runtime/docker.py makes them), so all of it is
unit-tested without an engine.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from swarmlet.agent.runtime.mounts import engine_mounts
from swarmlet.api import objects_pb2 as pb
from swarmlet.core import generic as gen

LABEL_TASK_ID = "swarmlet.task.id"
LABEL_SERVICE_ID = "swarmlet.service.id"
LABEL_SERVICE_NAME = "swarmlet.service.name"
LABEL_NODE_ID = "swarmlet.node.id"
LABEL_SLOT = "swarmlet.slot"

DEFAULT_STOP_GRACE_PERIOD = 10.0
_NANO = 1_000_000_000


def container_name(task: pb.Task, node_id: str) -> str:
    """`{service}.{slot}.{task}`; global services have no slot (0), so the node
    id takes its place, as in Swarm. The task id makes names unique, so a
    replacement task never collides with the container of the one it replaces."""
    middle = str(task.slot) if task.slot else node_id
    return f"{task.service_name}.{middle}.{task.id}"


def container_labels(task: pb.Task, node_id: str) -> dict[str, str]:
    """The spec's labels plus ours. Ours are applied last: a user label must
    not be able to make a container look like it belongs to another task or
    node (the executor removes containers by these labels)."""
    labels = dict(task.spec.container.labels)
    labels.update(
        {
            LABEL_TASK_ID: task.id,
            LABEL_SERVICE_ID: task.service_id,
            LABEL_SERVICE_NAME: task.service_name,
            LABEL_NODE_ID: node_id,
            LABEL_SLOT: str(task.slot),
        }
    )
    return labels


def _nanos(seconds: float) -> int:
    return int(round(seconds * _NANO))


def healthcheck_config(hc: pb.HealthConfig) -> dict[str, Any]:
    """Docker's HealthConfig (durations in nanoseconds). Zero fields are left
    out so Docker applies its defaults (or the image's values); an empty test
    keeps the image's test, ["NONE"] disables it."""
    out: dict[str, Any] = {}
    if hc.test:
        out["test"] = list(hc.test)
    if hc.interval > 0:
        out["interval"] = _nanos(hc.interval)
    if hc.timeout > 0:
        out["timeout"] = _nanos(hc.timeout)
    if hc.retries > 0:
        out["retries"] = int(hc.retries)
    if hc.start_period > 0:
        out["start_period"] = _nanos(hc.start_period)
    return out


def create_container_kwargs(task: pb.Task, node_id: str) -> dict[str, Any]:
    """Keyword arguments for `APIClient.create_container` (without host_config,
    see `host_config_kwargs`)."""
    c = task.spec.container
    kwargs: dict[str, Any] = {
        "image": c.image,
        "name": container_name(task, node_id),
        "labels": container_labels(task, node_id),
        "detach": True,
    }
    # Swarm semantics: `command` replaces the image's ENTRYPOINT, `args` its
    # CMD. Setting an entrypoint without args drops the image's CMD (the
    # engine does that), which is what Swarm does too.
    if c.command:
        kwargs["entrypoint"] = list(c.command)
    if c.args:
        kwargs["command"] = list(c.args)
    if c.env:
        kwargs["environment"] = list(c.env)
    if c.has_healthcheck:
        kwargs["healthcheck"] = healthcheck_config(c.healthcheck)
    kwargs.update(service_options_create(task))
    return kwargs


def host_config_kwargs(task: pb.Task) -> dict[str, Any]:
    """Keyword arguments for `APIClient.create_host_config`."""
    limits = task.spec.resources.limits
    kwargs: dict[str, Any] = {
        # Overlay interfaces are wired by the agent into the container's own
        # namespace later; Docker's bridge would only add an unwanted route.
        "network_mode": "none",
        # The orchestrator restarts tasks (as new tasks); a Docker restart
        # would resurrect a task the cluster already counts as ended.
        "restart_policy": {"Name": "no"},
    }
    if task.networks:
        # The agent's embedded DNS server answers there, inside the
        # container's own namespace (see agent/net/dns.py).
        kwargs["dns"] = ["127.0.0.11"]
    if limits.nano_cpus > 0:
        kwargs["nano_cpus"] = int(limits.nano_cpus)
    if limits.memory_bytes > 0:
        kwargs["mem_limit"] = int(limits.memory_bytes)
    if task.spec.container.mounts:  # issue 10: volumes, binds, tmpfs, secret and config files
        kwargs["mounts"] = engine_mounts(task.spec.container.mounts)
    kwargs.update(service_options_host(task))
    return kwargs


def stop_timeout(task: pb.Task) -> int:
    """Seconds Docker waits after the stop signal before SIGKILL. The API takes
    whole seconds: round up so a grace period is never shortened."""
    grace = task.spec.container.stop_grace_period
    if grace <= 0:
        grace = DEFAULT_STOP_GRACE_PERIOD
    return max(1, math.ceil(grace))


def healthcheck_active(test: Sequence[str]) -> bool:
    """Whether a health check test (Docker's `Test`) checks anything: empty
    means none, ["NONE"] disables the image's."""
    return bool(test) and test[0] != "NONE"


def healthcheck_enabled(spec: pb.ContainerSpec, image_healthcheck: Sequence[str]) -> bool:
    """Whether the task's container will have a health check: the spec's
    test, or else the image's. Then the task is RUNNING only once the engine
    reports it healthy."""
    if spec.has_healthcheck and spec.healthcheck.test:
        return healthcheck_active(list(spec.healthcheck.test))
    return healthcheck_active(image_healthcheck)


# ---- service options (issue 11) ----


def service_options_create(task: pb.Task) -> dict[str, Any]:
    """The container options of `docker service create` that go into the
    container's config (templates already expanded by the executor)."""
    c = task.spec.container
    out: dict[str, Any] = {}
    if c.user:
        out["user"] = c.user
    if c.dir:
        out["working_dir"] = c.dir
    if c.hostname:
        out["hostname"] = c.hostname
    if c.tty:
        out["tty"] = True
    if c.stop_signal:
        out["stop_signal"] = c.stop_signal
    resource_env = gen.env(task.assigned_generic)
    if resource_env:
        # As Swarm: the units the scheduler gave the task, for the program.
        out["environment"] = list(c.env) + resource_env
    return out


def service_options_host(task: pb.Task) -> dict[str, Any]:
    """The options that go into the container's host config."""
    c = task.spec.container
    out: dict[str, Any] = {}
    if c.init:
        out["init"] = True
    if c.read_only:
        out["read_only"] = True
    if c.cap_add:
        out["cap_add"] = list(c.cap_add)
    if c.cap_drop:
        out["cap_drop"] = list(c.cap_drop)
    if c.sysctls:
        out["sysctls"] = dict(c.sysctls)
    if c.ulimits:
        out["ulimits"] = [{"Name": u.name, "Soft": int(u.soft), "Hard": int(u.hard)} for u in c.ulimits]
    if c.groups:
        out["group_add"] = list(c.groups)
    dns = c.dns_config
    if dns.nameservers and not task.networks:
        # With overlay networks the container asks the embedded DNS server
        # (127.0.0.11), which forwards other names to these servers.
        out["dns"] = list(dns.nameservers)
    if dns.search:
        out["dns_search"] = list(dns.search)
    if dns.options:
        out["dns_opt"] = list(dns.options)
    if c.hosts:
        out["extra_hosts"] = [f"{name}:{line.split()[0]}" for line in c.hosts for name in line.split()[1:]]
    ld = task.spec.log_driver
    if ld.name:
        out["log_config"] = {"Type": ld.name, "Config": dict(ld.options)}
    if task.spec.resources.limits.pids:
        out["pids_limit"] = int(task.spec.resources.limits.pids)
    return out
