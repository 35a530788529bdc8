"""`swarmlet service ...`: create, list, inspect, scale, remove services, their tasks
and their logs."""

from __future__ import annotations

import os
import shlex
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, TypeVar

import typer

from swarmlet.api import control_pb2 as cpb
from swarmlet.api import objects_pb2 as pb
from swarmlet.cli.client import CLIError, Daemon, connect, fail, handle_errors
from swarmlet.cli.network import apply_networking
from swarmlet.cli.output import (
    SERVICE_HEADERS,
    filter_tasks,
    format_service_pretty,
    format_table,
    format_task_list,
    service_rows,
    to_json,
    trunc_id,
)
from swarmlet.cli.parse import (
    check_constraint,
    parse_cpus,
    parse_duration,
    parse_env,
    parse_kv_list,
    parse_scale,
    parse_size,
    parse_tail,
    parse_task_filters,
)
from swarmlet.cli.progress import watch

app = typer.Typer(help="Manage swarm services.", no_args_is_help=True)

FormatOpt = Annotated[str | None, typer.Option("--format", metavar="json", help="'json' for machine-readable output.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Only display IDs.")]
DetachOpt = Annotated[
    bool, typer.Option("--detach", "-d", help="Exit immediately instead of waiting for the service to converge.")
]
TimeoutOpt = Annotated[
    str | None, typer.Option("--timeout", hidden=True, metavar="DURATION", help="Give up waiting for convergence after DURATION.")
]

_RESTART_CONDITIONS = {
    "none": pb.RestartPolicy.NONE,
    "on-failure": pb.RestartPolicy.ON_FAILURE,
    "any": pb.RestartPolicy.ANY,
}

T = TypeVar("T")


def check_format(fmt: str | None) -> None:
    if fmt not in (None, "json"):
        raise typer.BadParameter(f"unsupported format {fmt!r}: only 'json' is supported", param_hint="--format")


def _parsed(parser: Callable[[str], T], value: str, hint: str) -> T:
    """Run a parse.py parser; its ValueError becomes a usage error on `hint`."""
    try:
        return parser(value)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint=hint) from None


def _opt(parser: Callable[[str], T], value: str | None, hint: str) -> T | None:
    return None if value is None else _parsed(parser, value, hint)


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
    constraints: Sequence[str] = (),
    reserve_cpu: str | None = None,
    reserve_memory: str | None = None,
    limit_cpu: str | None = None,
    limit_memory: str | None = None,
    restart_condition: str = "any",
    restart_delay: str = "5s",
    restart_max_attempts: int = 0,
    restart_window: str | None = None,
    stop_grace_period: str = "10s",
    entrypoint: str | None = None,
    health_cmd: str | None = None,
    health_interval: str | None = None,
    health_timeout: str | None = None,
    health_retries: int | None = None,
    health_start_period: str | None = None,
    no_healthcheck: bool = False,
    environ: Mapping[str, str] | None = None,
) -> pb.ServiceSpec:
    """`service create` flags -> ServiceSpec. Bad values raise typer.BadParameter
    naming the flag. IMAGE [ARG...] follow Docker: the args replace the image's CMD,
    --entrypoint (split like a shell would) replaces its ENTRYPOINT."""
    if not image.strip():
        raise typer.BadParameter("an image is required", param_hint="IMAGE")
    mode_name = (mode or "replicated").lower()
    if mode_name not in ("replicated", "global"):
        raise typer.BadParameter(f"{mode!r} is not one of replicated, global", param_hint="--mode")
    if mode_name == "global" and replicas is not None:
        raise typer.BadParameter(
            "cannot be combined with --mode global (a global service runs one task per node)",
            param_hint="--replicas",
        )
    if replicas is not None and replicas < 0:
        raise typer.BadParameter("must not be negative", param_hint="--replicas")

    spec = pb.ServiceSpec(name=name)
    if mode_name == "global":
        # "global" is a Python keyword, so the generated field is only reachable by name.
        getattr(spec, "global").SetInParent()
    else:
        spec.replicated.replicas = 1 if replicas is None else replicas
    for item in labels:
        spec.labels.update(_parsed(lambda v: parse_kv_list([v], what="label"), item, "--label"))

    task = spec.task
    c = task.container
    c.image = image.strip()
    c.args.extend(args)
    if entrypoint is not None:
        try:
            c.command.extend(shlex.split(entrypoint))
        except ValueError as e:
            raise typer.BadParameter(f"cannot split {entrypoint!r}: {e}", param_hint="--entrypoint") from None
    env_values = os.environ if environ is None else environ
    for item in env:
        c.env.extend(_parsed(lambda v: parse_env([v], env_values), item, "--env"))
    for item in container_labels:
        c.labels.update(_parsed(lambda v: parse_kv_list([v], what="container label"), item, "--container-label"))
    c.stop_grace_period = _parsed(parse_duration, stop_grace_period, "--stop-grace-period")

    health_opts = {
        "--health-interval": health_interval,
        "--health-timeout": health_timeout,
        "--health-start-period": health_start_period,
    }
    any_health = health_cmd is not None or health_retries is not None or any(v is not None for v in health_opts.values())
    if no_healthcheck and any_health:
        raise typer.BadParameter("--no-healthcheck conflicts with the --health-* options", param_hint="--no-healthcheck")
    if no_healthcheck:
        c.has_healthcheck = True
        c.healthcheck.test.append("NONE")
    elif any_health:
        # Without --health-cmd the image's own test is kept and only the timings
        # change (Docker's behaviour): an empty test with has_healthcheck set.
        c.has_healthcheck = True
        h = c.healthcheck
        if health_cmd is not None:
            if not health_cmd.strip():
                raise typer.BadParameter("must not be empty", param_hint="--health-cmd")
            h.test.extend(["CMD-SHELL", health_cmd])
        h.interval = _opt(parse_duration, health_interval, "--health-interval") or 0.0
        h.timeout = _opt(parse_duration, health_timeout, "--health-timeout") or 0.0
        h.start_period = _opt(parse_duration, health_start_period, "--health-start-period") or 0.0
        if health_retries is not None:
            if health_retries < 0:
                raise typer.BadParameter("must not be negative", param_hint="--health-retries")
            h.retries = health_retries

    res = task.resources
    res.reservations.nano_cpus = _opt(parse_cpus, reserve_cpu, "--reserve-cpu") or 0
    res.reservations.memory_bytes = _opt(parse_size, reserve_memory, "--reserve-memory") or 0
    res.limits.nano_cpus = _opt(parse_cpus, limit_cpu, "--limit-cpu") or 0
    res.limits.memory_bytes = _opt(parse_size, limit_memory, "--limit-memory") or 0
    for kind, r in (("cpu", "nano_cpus"), ("memory", "memory_bytes")):
        lim, rsv = getattr(res.limits, r), getattr(res.reservations, r)
        if lim and rsv > lim:
            raise typer.BadParameter(f"--reserve-{kind} must not exceed --limit-{kind}", param_hint=f"--reserve-{kind}")
    if not res.limits.ByteSize() and not res.reservations.ByteSize():
        task.ClearField("resources")

    cond = _RESTART_CONDITIONS.get(restart_condition.lower())
    if cond is None:
        raise typer.BadParameter(f"{restart_condition!r} is not one of none, on-failure, any", param_hint="--restart-condition")
    if restart_max_attempts < 0:
        raise typer.BadParameter("must not be negative", param_hint="--restart-max-attempts")
    task.restart.condition = cond
    task.restart.delay = _parsed(parse_duration, restart_delay, "--restart-delay")
    task.restart.max_attempts = restart_max_attempts
    task.restart.window = _opt(parse_duration, restart_window, "--restart-window") or 0.0

    for expr in constraints:
        task.placement.constraints.append(_parsed(check_constraint, expr, "--constraint"))
    return spec


def _wait(d: Daemon, service_id: str, quiet: bool, timeout: str | None) -> int:
    limit = _opt(parse_duration, timeout, "--timeout")
    return watch(d, service_id, quiet=quiet, timeout=limit)


@app.command("create", context_settings={"allow_interspersed_args": False})
@handle_errors
def create(
    ctx: typer.Context,
    image: Annotated[str, typer.Argument(metavar="IMAGE", help="Image to run.")],
    args: Annotated[
        list[str] | None,
        typer.Argument(metavar="ARG", help="Replaces the image's CMD (flags go before IMAGE)."),
    ] = None,
    name: Annotated[str, typer.Option("--name", metavar="NAME", help="Service name.")] = "",
    replicas: Annotated[int | None, typer.Option("--replicas", min=0, metavar="N", help="Number of tasks (default 1).")] = None,
    mode: Annotated[str | None, typer.Option("--mode", metavar="MODE", help="replicated or global (default replicated).")] = None,
    env: Annotated[
        list[str] | None, typer.Option("--env", "-e", metavar="K=V", help="Set an environment variable (K=V).")
    ] = None,
    label: Annotated[list[str] | None, typer.Option("--label", "-l", metavar="K=V", help="Service label (K=V).")] = None,
    container_label: Annotated[
        list[str] | None, typer.Option("--container-label", metavar="K=V", help="Container label (K=V).")
    ] = None,
    constraint: Annotated[
        list[str] | None,
        typer.Option("--constraint", metavar="EXPR", help="Placement constraint, e.g. node.role==worker, node.labels.zone!=a."),
    ] = None,
    reserve_cpu: Annotated[str | None, typer.Option("--reserve-cpu", metavar="CPUS", help="Reserve CPUs, e.g. 0.5.")] = None,
    reserve_memory: Annotated[
        str | None, typer.Option("--reserve-memory", metavar="BYTES", help="Reserve memory, e.g. 64M.")
    ] = None,
    limit_cpu: Annotated[str | None, typer.Option("--limit-cpu", metavar="CPUS", help="Limit CPUs.")] = None,
    limit_memory: Annotated[str | None, typer.Option("--limit-memory", metavar="BYTES", help="Limit memory, e.g. 1.5G.")] = None,
    restart_condition: Annotated[
        str, typer.Option("--restart-condition", metavar="COND", help="none, on-failure or any.")
    ] = "any",
    restart_delay: Annotated[
        str, typer.Option("--restart-delay", metavar="DURATION", help="Delay between restart attempts.")
    ] = "5s",
    restart_max_attempts: Annotated[
        int, typer.Option("--restart-max-attempts", min=0, metavar="N", help="Maximum restarts before giving up (0 = unlimited).")
    ] = 0,
    restart_window: Annotated[
        str | None, typer.Option("--restart-window", metavar="DURATION", help="Window used to evaluate the restart policy.")
    ] = None,
    stop_grace_period: Annotated[
        str, typer.Option("--stop-grace-period", metavar="DURATION", help="Time to wait before force killing a container.")
    ] = "10s",
    entrypoint: Annotated[
        str | None, typer.Option("--entrypoint", metavar="CMD", help="Overwrite the image's ENTRYPOINT.")
    ] = None,
    health_cmd: Annotated[str | None, typer.Option("--health-cmd", metavar="CMD", help="Command run to check health.")] = None,
    health_interval: Annotated[
        str | None, typer.Option("--health-interval", metavar="DURATION", help="Time between checks.")
    ] = None,
    health_timeout: Annotated[
        str | None, typer.Option("--health-timeout", metavar="DURATION", help="Maximum time a check may run.")
    ] = None,
    health_retries: Annotated[
        int | None, typer.Option("--health-retries", min=0, metavar="N", help="Consecutive failures to report unhealthy.")
    ] = None,
    health_start_period: Annotated[
        str | None, typer.Option("--health-start-period", metavar="DURATION", help="Start period before failures count.")
    ] = None,
    no_healthcheck: Annotated[bool, typer.Option("--no-healthcheck", help="Disable any image HEALTHCHECK.")] = False,
    update_parallelism: Annotated[
        int | None, typer.Option("--update-parallelism", min=0, metavar="N", help="Tasks updated at once (0 = all; default 1).")
    ] = None,
    update_delay: Annotated[
        str | None, typer.Option("--update-delay", metavar="DURATION", help="Delay between updates (default 0s).")
    ] = None,
    update_failure_action: Annotated[
        str | None, typer.Option("--update-failure-action", metavar="ACTION", help="pause, continue or rollback (default pause).")
    ] = None,
    update_monitor: Annotated[
        str | None, typer.Option("--update-monitor", metavar="DURATION", help="Time a new task must stay healthy (default 5s).")
    ] = None,
    update_max_failure_ratio: Annotated[
        float | None, typer.Option("--update-max-failure-ratio", metavar="RATIO", help="Failure rate tolerated (default 0).")
    ] = None,
    update_order: Annotated[
        str | None, typer.Option("--update-order", metavar="ORDER", help="stop-first or start-first (default stop-first).")
    ] = None,
    update_canary: Annotated[
        int | None, typer.Option("--update-canary", min=0, metavar="N", help="Canary tasks an update starts first.")
    ] = None,
    update_auto_promote: Annotated[
        bool | None,
        typer.Option("--update-auto-promote/--no-update-auto-promote", help="Promote healthy canaries automatically."),
    ] = None,
    rollback_parallelism: Annotated[int | None, typer.Option("--rollback-parallelism", min=0, metavar="N")] = None,
    rollback_delay: Annotated[str | None, typer.Option("--rollback-delay", metavar="DURATION")] = None,
    rollback_failure_action: Annotated[
        str | None, typer.Option("--rollback-failure-action", metavar="ACTION", help="pause or continue.")
    ] = None,
    rollback_monitor: Annotated[str | None, typer.Option("--rollback-monitor", metavar="DURATION")] = None,
    rollback_max_failure_ratio: Annotated[float | None, typer.Option("--rollback-max-failure-ratio", metavar="RATIO")] = None,
    rollback_order: Annotated[str | None, typer.Option("--rollback-order", metavar="ORDER")] = None,
    detach: DetachOpt = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Suppress progress output.")] = False,
    timeout: TimeoutOpt = None,
    network: Annotated[
        list[str] | None, typer.Option("--network", metavar="NETWORK", help="Attach to an overlay network; repeatable.")
    ] = None,
    endpoint_mode: Annotated[
        str | None,
        typer.Option("--endpoint-mode", metavar="vip|dnsrr", help="Name resolves to a VIP (default) or to the task IPs."),
    ] = None,
    publish: Annotated[
        list[str] | None,
        typer.Option(
            "--publish",
            "-p",
            metavar="SPEC",
            help="published=8080,target=80,protocol=tcp|udp,mode=ingress|host (protocol and mode optional), or 8080:80 or 8080:80/udp; repeatable.",
        ),
    ] = None,
) -> None:
    """Create a new service."""
    spec = build_spec(
        image=image,
        args=args or [],
        name=name,
        replicas=replicas,
        mode=mode,
        env=env or [],
        labels=label or [],
        container_labels=container_label or [],
        constraints=constraint or [],
        reserve_cpu=reserve_cpu,
        reserve_memory=reserve_memory,
        limit_cpu=limit_cpu,
        limit_memory=limit_memory,
        restart_condition=restart_condition,
        restart_delay=restart_delay,
        restart_max_attempts=restart_max_attempts,
        restart_window=restart_window,
        stop_grace_period=stop_grace_period,
        entrypoint=entrypoint,
        health_cmd=health_cmd,
        health_interval=health_interval,
        health_timeout=health_timeout,
        health_retries=health_retries,
        health_start_period=health_start_period,
        no_healthcheck=no_healthcheck,
    )
    from swarmlet.cli.update import Policy, apply_policy, default_config

    for name, policy in (
        (
            "update",
            Policy(
                update_parallelism,
                update_delay,
                update_failure_action,
                update_monitor,
                update_max_failure_ratio,
                update_order,
                update_canary,
                update_auto_promote,
            ),
        ),
        (
            "rollback",
            Policy(
                rollback_parallelism,
                rollback_delay,
                rollback_failure_action,
                rollback_monitor,
                rollback_max_failure_ratio,
                rollback_order,
            ),
        ),
    ):
        getattr(spec, name).CopyFrom(default_config())
        apply_policy(getattr(spec, name), policy, name)
    apply_networking(spec, network or [], endpoint_mode, publish or [])
    _opt(parse_duration, timeout, "--timeout")  # fail on a bad value before creating anything
    with connect(ctx) as d:
        svc = d.call(d.stub.CreateService, cpb.CreateServiceRequest(spec=spec)).service
        typer.echo(svc.id)
        if detach:
            return
        code = _wait(d, svc.id, quiet, timeout)
    if code:
        raise typer.Exit(code)


@app.command("ls")
@handle_errors
def ls(ctx: typer.Context, quiet: QuietOpt = False, fmt: FormatOpt = None) -> None:
    """List services."""
    check_format(fmt)
    with connect(ctx) as d:
        resp = d.call(d.stub.ListServices, cpb.ListServicesRequest())
    ordered = sorted(resp.services, key=lambda s: (s.service.spec.name, s.service.id))
    if fmt == "json":
        typer.echo(to_json(cpb.ListServicesResponse(services=ordered)))
    elif quiet:
        for s in ordered:
            typer.echo(s.service.id)
    else:
        typer.echo(format_table(SERVICE_HEADERS, service_rows(ordered)))


@app.command("ps")
@handle_errors
def ps(
    ctx: typer.Context,
    services: Annotated[list[str], typer.Argument(metavar="SERVICE", help="Service name, id or id prefix.")],
    filters: Annotated[
        list[str] | None,
        typer.Option("--filter", "-f", metavar="KEY=VALUE", help="desired-state=, id=, name=, node=; repeatable."),
    ] = None,
    no_trunc: Annotated[bool, typer.Option("--no-trunc", help="Do not truncate output.")] = False,
    quiet: QuietOpt = False,
    fmt: FormatOpt = None,
) -> None:
    """List the tasks of one or more services, with their history."""
    check_format(fmt)
    try:
        parsed = parse_task_filters(filters or [])
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--filter") from None
    tasks: dict[str, pb.Task] = {}
    names: dict[str, str] = {}
    with connect(ctx) as d:
        for ref in services:
            resp = d.call(d.stub.ListTasks, cpb.ListTasksRequest(service_ref=ref))
            names.update(resp.node_names)
            for t in resp.tasks:
                tasks[t.id] = t
    selected = filter_tasks(tasks.values(), parsed, names)
    text = format_task_list(selected, names, time.time(), fmt=fmt, quiet=quiet, no_trunc=no_trunc)
    if text:
        typer.echo(text)


@app.command("inspect")
@handle_errors
def inspect(
    ctx: typer.Context,
    services: Annotated[list[str], typer.Argument(metavar="SERVICE")],
    fmt: FormatOpt = None,
    pretty: Annotated[bool, typer.Option("--pretty", help="Human-readable output.")] = False,
) -> None:
    """Display detailed information on one or more services (JSON by default)."""
    check_format(fmt)
    if pretty and fmt:
        raise typer.BadParameter("--pretty and --format cannot be combined", param_hint="--pretty")
    found: list[pb.Service] = []
    errors: list[str] = []
    with connect(ctx) as d:
        for ref in services:
            try:
                found.append(d.call(d.stub.GetService, cpb.GetServiceRequest(ref=ref)).service)
            except CLIError as e:
                errors.append(e.message)
    if pretty:
        if found:
            typer.echo("\n\n".join(format_service_pretty(s) for s in found))
    else:
        typer.echo(to_json(found))
    _report(errors)


def _report(errors: list[str]) -> None:
    """Per-item failures of a multi-argument command: all printed, exit 1 at the end
    (the other items were still processed, as Docker does)."""
    if errors:
        for e in errors[:-1]:
            typer.echo(f"Error: {e}", err=True)
        raise fail(errors[-1])


@app.command("scale")
@handle_errors
def scale(
    ctx: typer.Context,
    targets: Annotated[list[str], typer.Argument(metavar="SERVICE=REPLICAS")],
    detach: DetachOpt = False,
    timeout: TimeoutOpt = None,
) -> None:
    """Scale one or more replicated services."""
    pairs = [_parsed(parse_scale, t, "SERVICE=REPLICAS") for t in targets]
    _opt(parse_duration, timeout, "--timeout")
    errors: list[str] = []
    failed = False
    with connect(ctx) as d:
        for ref, n in pairs:
            try:
                svc = d.call(d.stub.ScaleService, cpb.ScaleServiceRequest(ref=ref, replicas=n)).service
            except CLIError as e:
                errors.append(e.message)
                continue
            typer.echo(f"{ref} scaled to {n}")
            if not detach and _wait(d, svc.id, False, timeout):
                failed = True
    _report(errors)
    if failed:
        raise typer.Exit(1)


@app.command("rm")
@handle_errors
def rm(ctx: typer.Context, services: Annotated[list[str], typer.Argument(metavar="SERVICE")]) -> None:
    """Remove one or more services."""
    errors: list[str] = []
    with connect(ctx) as d:
        for ref in services:
            try:
                d.call(d.stub.RemoveService, cpb.RemoveServiceRequest(ref=ref))
                typer.echo(ref)
            except CLIError as e:
                errors.append(e.message)
    _report(errors)


def log_prefix(line: cpb.ServiceLogLine, service_name: str, no_trunc: bool, task_ids: bool = True) -> str:
    """Docker's context column: name.slot.taskid@node (global tasks: name.nodeid...)."""
    slot = str(line.slot) if line.slot else trunc_id(line.node_id, no_trunc)
    head = f"{service_name}.{slot}"
    if task_ids:
        head += f".{trunc_id(line.task_id, no_trunc)}"
    return f"{head}@{line.node_name or trunc_id(line.node_id, no_trunc)}"


@app.command("logs")
@handle_errors
def logs(
    ctx: typer.Context,
    service_ref: Annotated[str, typer.Argument(metavar="SERVICE")],
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Follow log output.")] = False,
    tail: Annotated[
        str, typer.Option("--tail", "-n", metavar="N", help="Number of lines from the end of the logs, or 'all'.")
    ] = "all",
    timestamps: Annotated[bool, typer.Option("--timestamps", "-t", help="Show timestamps.")] = False,
    no_trunc: Annotated[bool, typer.Option("--no-trunc", help="Do not truncate ids.")] = False,
    no_task_ids: Annotated[bool, typer.Option("--no-task-ids", help="Do not include task ids.")] = False,
    raw: Annotated[bool, typer.Option("--raw", help="Do not prefix lines with their task.")] = False,
) -> None:
    """Fetch the logs of a service's tasks."""
    n = _parsed(parse_tail, tail, "--tail")
    with connect(ctx) as d:
        # Resolve first: a clear "not found" before streaming, and the name for prefixes.
        svc = d.call(d.stub.GetService, cpb.GetServiceRequest(ref=service_ref)).service
        req = cpb.ServiceLogsRequest(ref=svc.id, follow=follow, tail=n, timestamps=timestamps)
        try:
            for line in d.stream(d.stub.ServiceLogs, req):
                text = line.data.decode("utf-8", errors="replace")
                if not text:
                    continue
                err = line.stream == "stderr"
                if raw:
                    out = text if text.endswith("\n") else text + "\n"
                else:
                    prefix = log_prefix(line, svc.spec.name, no_trunc, not no_task_ids) + "    | "
                    out = "".join(
                        prefix + part + ("" if part.endswith("\n") else "\n") for part in text.splitlines(keepends=True)
                    )
                stream = sys.stderr if err else sys.stdout
                stream.write(out)
                stream.flush()
        except KeyboardInterrupt:
            return


# `service update / rollback / promote` live in update.py and register on `app`.
from swarmlet.cli import update as _update  # noqa: E402,F401
