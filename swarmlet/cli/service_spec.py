"""The `service create` and `service update` flags -> ServiceSpec.

Pure (no daemon, no clock): bad values raise typer.BadParameter naming the
flag, so the commands fail with a usage error before anything is sent. The
flags both commands share are applied by the same functions here; what the
manager decides (validation, default update policies) stays with it.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Mapping, Sequence

import typer

from swarmlet.api import objects_pb2 as pb
from swarmlet.cli import service_options
from swarmlet.cli.options import given, parsed
from swarmlet.cli.parse import parse_cpus, parse_duration, parse_env, parse_kv_list, parse_publish, parse_size
from swarmlet.cli.service_flags import (
    ContainerCreateFlags,
    ContainerFlags,
    ContainerUpdateFlags,
    HealthFlags,
    NetworkFlags,
    ResourceFlags,
    RestartFlags,
    RollbackPolicy,
    UpdatePolicy,
)
from swarmlet.core import constraints
from swarmlet.core.updater import DEFAULT_CONFIG

UC = pb.UpdateConfig

RESTART_CONDITIONS = {
    "none": pb.RestartPolicy.NONE,
    "on-failure": pb.RestartPolicy.ON_FAILURE,
    "any": pb.RestartPolicy.ANY,
}
_ACTIONS = {"pause": UC.PAUSE, "continue": UC.CONTINUE, "rollback": UC.ROLLBACK}
_ORDERS = {"stop-first": UC.STOP_FIRST, "start-first": UC.START_FIRST}
_ENDPOINT_MODES = {"vip": pb.EndpointSpec.VIP, "dnsrr": pb.EndpointSpec.DNSRR}

# Docker's client-side defaults for a new service (the manager takes a spec
# as given): restart any failure after 5 s, give a container 10 s to stop.
_DEFAULT_RESTART_DELAY = 5.0
_DEFAULT_STOP_GRACE = 10.0


def canonical_constraint(expr: str, hint: str) -> str:
    """Check one placement constraint with the scheduler's own grammar and
    return it as "key==value" (key as the grammar names it, value as typed),
    so that --constraint-rm finds what --constraint added however it was spaced."""
    try:
        c = constraints.parse_constraint(expr)
    except constraints.ConstraintError as e:
        raise typer.BadParameter(str(e), param_hint=hint) from None
    op = "==" if c.equal else "!="
    key = f"{c.field}.{c.label}" if c.field in ("node.labels", "engine.labels") else c.field
    typed = c.expr.partition(op)[2].strip()
    return f"{key}{op}{typed}"


# ---- flags both commands share ---------------------------------------------------


def apply_resources(task: pb.TaskSpec, f: ResourceFlags) -> None:
    res = task.resources
    for value, parser, target, field, hint in (
        (f.reserve_cpu, parse_cpus, res.reservations, "nano_cpus", "--reserve-cpu"),
        (f.reserve_memory, parse_size, res.reservations, "memory_bytes", "--reserve-memory"),
        (f.limit_cpu, parse_cpus, res.limits, "nano_cpus", "--limit-cpu"),
        (f.limit_memory, parse_size, res.limits, "memory_bytes", "--limit-memory"),
    ):
        if value is not None:
            setattr(target, field, parsed(parser, value, hint))
    for kind, r in (("cpu", "nano_cpus"), ("memory", "memory_bytes")):
        lim, rsv = getattr(res.limits, r), getattr(res.reservations, r)
        if lim and rsv > lim:
            raise typer.BadParameter(f"--reserve-{kind} must not exceed --limit-{kind}", param_hint=f"--reserve-{kind}")
    if not res.limits.ByteSize() and not res.reservations.ByteSize():
        task.ClearField("resources")


def apply_restart(task: pb.TaskSpec, f: RestartFlags) -> None:
    rp = task.restart
    if f.condition is not None:
        cond = RESTART_CONDITIONS.get(f.condition.lower())
        if cond is None:
            raise typer.BadParameter(f"{f.condition!r} is not one of none, on-failure, any", param_hint="--restart-condition")
        rp.condition = cond
    if f.delay is not None:
        rp.delay = parsed(parse_duration, f.delay, "--restart-delay")
    if f.max_attempts is not None:
        if f.max_attempts < 0:
            raise typer.BadParameter("must not be negative", param_hint="--restart-max-attempts")
        rp.max_attempts = f.max_attempts
    if f.window is not None:
        rp.window = parsed(parse_duration, f.window, "--restart-window")


def apply_health(c: pb.ContainerSpec, f: HealthFlags) -> None:
    """--no-healthcheck, or the --health-* flags given. Without --health-cmd
    the image's own test is kept and only the timings change (Docker's
    behaviour): an empty test with has_healthcheck set."""
    any_health = f.cmd is not None or f.retries is not None or any(v is not None for v in f.timings().values())
    if f.disable and any_health:
        raise typer.BadParameter("--no-healthcheck conflicts with the --health-* options", param_hint="--no-healthcheck")
    if f.disable:
        c.has_healthcheck = True
        c.healthcheck.Clear()
        c.healthcheck.test.append("NONE")
        return
    if not any_health:
        return
    h = c.healthcheck
    if list(h.test[:1]) == ["NONE"]:
        h.Clear()  # re-enabling: the image's test unless --health-cmd gives one
    c.has_healthcheck = True
    if f.cmd is not None:
        if not f.cmd.strip():
            raise typer.BadParameter("must not be empty", param_hint="--health-cmd")
        del h.test[:]
        h.test.extend(["CMD-SHELL", f.cmd])
    if f.interval is not None:
        h.interval = parsed(parse_duration, f.interval, "--health-interval")
    if f.timeout is not None:
        h.timeout = parsed(parse_duration, f.timeout, "--health-timeout")
    if f.start_period is not None:
        h.start_period = parsed(parse_duration, f.start_period, "--health-start-period")
    if f.retries is not None:
        if f.retries < 0:
            raise typer.BadParameter("must not be negative", param_hint="--health-retries")
        h.retries = f.retries


def apply_policy(spec: pb.ServiceSpec, p: UpdatePolicy | RollbackPolicy) -> None:
    """Set the given --update-* (or --rollback-*) flags on the spec's policy,
    starting from the manager's defaults when the spec has none yet. With no
    flag given the spec is left alone: the manager fills in its defaults."""
    if not given(p):
        return
    name = "update" if isinstance(p, UpdatePolicy) else "rollback"
    cfg = getattr(spec, name)
    if not spec.HasField(name):
        cfg.CopyFrom(DEFAULT_CONFIG)
    if p.parallelism is not None:
        if p.parallelism < 0:
            raise typer.BadParameter("must not be negative", param_hint=f"--{name}-parallelism")
        cfg.parallelism = p.parallelism
    if p.delay is not None:
        cfg.delay = parsed(parse_duration, p.delay, f"--{name}-delay")
    if p.monitor is not None:
        cfg.monitor = parsed(parse_duration, p.monitor, f"--{name}-monitor")
    if p.failure_action is not None:
        choices = dict(_ACTIONS)
        if name == "rollback":
            del choices["rollback"]  # a rollback is not itself rolled back
        action = choices.get(p.failure_action.lower())
        if action is None:
            raise typer.BadParameter(
                f"{p.failure_action!r} is not one of {', '.join(choices)}", param_hint=f"--{name}-failure-action"
            )
        cfg.failure_action = action
    if p.max_failure_ratio is not None:
        if not 0.0 <= p.max_failure_ratio <= 1.0:
            raise typer.BadParameter("must be between 0 and 1", param_hint=f"--{name}-max-failure-ratio")
        cfg.max_failure_ratio = p.max_failure_ratio
    if p.order is not None:
        order = _ORDERS.get(p.order.lower())
        if order is None:
            raise typer.BadParameter(f"{p.order!r} is not one of stop-first, start-first", param_hint=f"--{name}-order")
        cfg.order = order
    if isinstance(p, UpdatePolicy):
        if p.canary is not None:
            if p.canary < 0:
                raise typer.BadParameter("must not be negative", param_hint="--update-canary")
            cfg.canary = p.canary
        if p.auto_promote is not None:
            cfg.auto_promote = p.auto_promote


def apply_stop_grace(c: pb.ContainerSpec, value: str | None) -> None:
    if value is not None:
        c.stop_grace_period = parsed(parse_duration, value, "--stop-grace-period")


# ---- service create --------------------------------------------------------------


def apply_networking(spec: pb.ServiceSpec, f: NetworkFlags) -> None:
    for n in f.networks or []:
        if not n.strip():
            raise typer.BadParameter("empty network name", param_hint="--network")
        spec.networks.add(target=n.strip())
    if f.endpoint_mode is not None:
        mode = _ENDPOINT_MODES.get(f.endpoint_mode.lower())
        if mode is None:
            raise typer.BadParameter(f"{f.endpoint_mode!r} is not one of vip, dnsrr", param_hint="--endpoint-mode")
        spec.endpoint.mode = mode
    for item in f.publish or []:
        spec.endpoint.ports.extend(parsed(parse_publish, item, "--publish"))


def build_spec(
    *,
    image: str,
    args: Sequence[str] = (),
    name: str = "",
    replicas: int | None = None,
    mode: str | None = None,
    env: Sequence[str] = (),
    labels: Sequence[str] = (),
    container_labels: Sequence[str] = (),
    placement: Sequence[str] = (),
    entrypoint: str | None = None,
    stop_grace_period: str | None = None,
    resources: ResourceFlags | None = None,
    restart: RestartFlags | None = None,
    health: HealthFlags | None = None,
    update: UpdatePolicy | None = None,
    rollback: RollbackPolicy | None = None,
    network: NetworkFlags | None = None,
    environ: Mapping[str, str] | None = None,
    container: ContainerFlags | None = None,
    create_opts: ContainerCreateFlags | None = None,
    env_file_lines: Sequence[str] = (),
) -> pb.ServiceSpec:
    """`service create` flags -> ServiceSpec. IMAGE [ARG...] follow Docker: the
    args replace the image's CMD, --entrypoint (split like a shell would)
    replaces its ENTRYPOINT."""
    if not image.strip():
        raise typer.BadParameter("an image is required", param_hint="IMAGE")
    container = container or ContainerFlags()
    spec = pb.ServiceSpec(name=name)
    service_options.apply_mode(spec, mode, replicas, container.max_concurrent)
    for item in labels:
        spec.labels.update(parsed(lambda v: parse_kv_list([v], what="label"), item, "--label"))

    task = spec.task
    c = task.container
    c.image = image.strip()
    c.args.extend(args)
    if entrypoint is not None:
        try:
            c.command.extend(shlex.split(entrypoint))
        except ValueError as e:
            raise typer.BadParameter(f"cannot split {entrypoint!r}: {e}", param_hint="--entrypoint") from None
    for item in env:
        c.env.extend(parsed(lambda v: parse_env([v], environ or {}), item, "--env"))
    for item in container_labels:
        c.labels.update(parsed(lambda v: parse_kv_list([v], what="container label"), item, "--container-label"))
    c.stop_grace_period = _DEFAULT_STOP_GRACE
    apply_stop_grace(c, stop_grace_period)
    apply_health(c, health or HealthFlags())
    apply_resources(task, resources or ResourceFlags())
    task.restart.condition = pb.RestartPolicy.ANY
    task.restart.delay = _DEFAULT_RESTART_DELAY
    apply_restart(task, restart or RestartFlags())
    for expr in placement:
        task.placement.constraints.append(canonical_constraint(expr, "--constraint"))
    apply_policy(spec, update or UpdatePolicy())
    apply_policy(spec, rollback or RollbackPolicy())
    apply_networking(spec, network or NetworkFlags())
    service_options.apply_container(spec, container, create=True)
    service_options.apply_create(spec, create_opts or ContainerCreateFlags(), env_file_lines, environ or {})
    service_options.job_defaults(spec, restart is not None and restart.condition is not None)
    return spec


# ---- service update --------------------------------------------------------------


def apply_flags(
    spec: pb.ServiceSpec,
    *,
    image: str | None = None,
    args: str | None = None,
    env_add: Sequence[str] = (),
    env_rm: Sequence[str] = (),
    replicas: int | None = None,
    constraint_add: Sequence[str] = (),
    constraint_rm: Sequence[str] = (),
    stop_grace_period: str | None = None,
    force: bool = False,
    resources: ResourceFlags | None = None,
    restart: RestartFlags | None = None,
    health: HealthFlags | None = None,
    update: UpdatePolicy | None = None,
    rollback: RollbackPolicy | None = None,
    environ: Mapping[str, str] | None = None,
    container: ContainerFlags | None = None,
    changes: ContainerUpdateFlags | None = None,
) -> pb.ServiceSpec:
    """A copy of `spec` with the `service update` flags applied: each flag
    changes only what it names."""
    out = pb.ServiceSpec()
    out.CopyFrom(spec)
    task = out.task
    c = task.container
    if image is not None:
        if not image.strip():
            raise typer.BadParameter("must not be empty", param_hint="--image")
        c.image = image.strip()
    if args is not None:
        try:
            parts = shlex.split(args)
        except ValueError as e:
            raise typer.BadParameter(f"cannot split {args!r}: {e}", param_hint="--args") from None
        del c.args[:]
        c.args.extend(parts)
    if env_rm or env_add:
        added = [parsed(lambda v: parse_env([v], environ or {}), e, "--env-add") for e in env_add]
        drop = set(env_rm) | {kv.split("=", 1)[0] for items in added for kv in items}
        kept = [e for e in c.env if e.split("=", 1)[0] not in drop]
        del c.env[:]
        c.env.extend(kept)
        for items in added:
            c.env.extend(items)
    if replicas is not None:
        if out.WhichOneof("mode") not in ("replicated", "replicated_job"):
            raise typer.BadParameter("only replicated services and replicated jobs have replicas", param_hint="--replicas")
        if replicas < 0:
            raise typer.BadParameter("must not be negative", param_hint="--replicas")
        if out.WhichOneof("mode") == "replicated_job":
            out.replicated_job.total_completions = replicas
        else:
            out.replicated.replicas = replicas
    if constraint_rm or constraint_add:
        gone = {canonical_constraint(x, "--constraint-rm") for x in constraint_rm}
        kept = [x for x in task.placement.constraints if x not in gone]
        for x in constraint_add:
            x = canonical_constraint(x, "--constraint-add")
            if x not in kept:
                kept.append(x)
        del task.placement.constraints[:]
        task.placement.constraints.extend(kept)
    apply_resources(task, resources or ResourceFlags())
    apply_restart(task, restart or RestartFlags())
    apply_stop_grace(c, stop_grace_period)
    apply_health(c, health or HealthFlags())
    if force:
        # A changed task spec with nothing else different: every task is replaced.
        task.force_update += 1
    apply_policy(out, update or UpdatePolicy())
    apply_policy(out, rollback or RollbackPolicy())
    service_options.apply_container(out, container or ContainerFlags(), create=False)
    service_options.apply_update(out, changes or ContainerUpdateFlags())
    if service_options.is_job(out) and (given(update or UpdatePolicy()) or given(rollback or RollbackPolicy())):
        raise typer.BadParameter("update and rollback configuration is not supported for jobs", param_hint="--update-*")
    return out


def apply_network_changes(
    spec: pb.ServiceSpec, add: Sequence[str], rm: Sequence[str], lookup: Callable[[str], pb.Network]
) -> pb.ServiceSpec:
    """A copy of `spec` attached to the `add` networks and detached from the `rm`
    ones (names or ids; `lookup` resolves them through the daemon). Networks
    live outside the task spec, but each task carries its own attachments, so
    the tasks are redeployed (as with --force) to pick the change up."""
    out = pb.ServiceSpec()
    out.CopyFrom(spec)
    attached = [a.target for a in out.networks]
    for ref in rm:
        net = lookup(ref)
        if net.id not in attached:
            raise typer.BadParameter(f"the service is not attached to network {ref!r}", param_hint="--network-rm")
        attached.remove(net.id)
    for ref in add:
        net = lookup(ref)
        if net.id in attached:
            raise typer.BadParameter(f"the service is already attached to network {ref!r}", param_hint="--network-add")
        attached.append(net.id)
    del out.networks[:]
    for nid in attached:
        out.networks.add(target=nid)
    out.task.force_update += 1
    return out
