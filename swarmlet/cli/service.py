"""`swarmlet service ...`: create, list, inspect, scale, remove services, their
tasks and their logs; update, rollback and promote come from service_update.py."""

from __future__ import annotations

import os
import sys
import time
from typing import Annotated

import typer

from swarmlet.api import control_pb2 as cpb
from swarmlet.api import objects_pb2 as pb
from swarmlet.cli import service_update, tasks
from swarmlet.cli.client import CLIError, DaemonClient, connect, handle_errors, report_errors
from swarmlet.cli.listing import ServiceFilterOpt, filter_services
from swarmlet.cli.options import (
    FormatOpt,
    IdsOpt,
    ImageFlags,
    PrettyOpt,
    StopGraceOpt,
    TaskListFlags,
    WaitFlags,
    check_format,
    check_pretty,
    flags,
    parsed,
)
from swarmlet.cli.output import (
    SERVICE_HEADERS,
    format_service_pretty,
    format_table,
    message_to_dict,
    service_rows,
    to_json,
    trunc_id,
)
from swarmlet.cli.parse import parse_scale, parse_tail, parse_time
from swarmlet.cli.progress import watch
from swarmlet.cli.service_flags import (
    ContainerCreateFlags,
    ContainerFlags,
    HealthFlags,
    NetworkFlags,
    ResourceFlags,
    RestartFlags,
    RollbackPolicy,
    StorageFlags,
    UpdatePolicy,
)
from swarmlet.cli.service_images import apply_pull, credentials, show_warnings
from swarmlet.cli.service_options import read_env_files
from swarmlet.cli.service_spec import build_spec
from swarmlet.cli.storage import apply_storage

app = typer.Typer(help="Manage swarm services.", no_args_is_help=True)


@app.command("create", context_settings={"allow_interspersed_args": False})
@handle_errors
@flags(
    resources=ResourceFlags,
    restart=RestartFlags,
    health=HealthFlags,
    update=UpdatePolicy,
    rollback=RollbackPolicy,
    network=NetworkFlags,
    images=ImageFlags,
    storage=StorageFlags,
    container=ContainerFlags,
    create_opts=ContainerCreateFlags,
    wait=WaitFlags,
)
def create(
    ctx: typer.Context,
    image: Annotated[str, typer.Argument(metavar="IMAGE", help="Image to run.")],
    resources: ResourceFlags,
    restart: RestartFlags,
    health: HealthFlags,
    update: UpdatePolicy,
    rollback: RollbackPolicy,
    network: NetworkFlags,
    images: ImageFlags,
    storage: StorageFlags,
    container: ContainerFlags,
    create_opts: ContainerCreateFlags,
    wait: WaitFlags,
    args: Annotated[
        list[str] | None,
        typer.Argument(metavar="ARG", help="Replaces the image's CMD (flags go before IMAGE)."),
    ] = None,
    name: Annotated[str, typer.Option("--name", metavar="NAME", help="Service name.")] = "",
    replicas: Annotated[int | None, typer.Option("--replicas", min=0, metavar="N", help="Number of tasks (default 1).")] = None,
    mode: Annotated[
        str | None,
        typer.Option("--mode", metavar="MODE", help="replicated, global, replicated-job or global-job (default replicated)."),
    ] = None,
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
    entrypoint: Annotated[
        str | None, typer.Option("--entrypoint", metavar="CMD", help="Overwrite the image's ENTRYPOINT.")
    ] = None,
    stop_grace_period: StopGraceOpt = None,
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
        placement=constraint or [],
        entrypoint=entrypoint,
        stop_grace_period=stop_grace_period,
        resources=resources,
        restart=restart,
        health=health,
        update=update,
        rollback=rollback,
        network=network,
        environ=os.environ,
        container=container,
        create_opts=create_opts,
        env_file_lines=read_env_files(create_opts.env_file or []),
    )
    apply_pull(spec, images)
    apply_storage(spec, storage)
    limit = wait.limit()  # a bad value fails before anything is created
    req = cpb.CreateServiceRequest(spec=spec, no_resolve_image=images.no_resolve_image)
    auth = credentials(spec.task.container.image, images)
    if auth is not None:
        req.registry_auth.CopyFrom(auth)
    with connect(ctx) as d:
        resp = d.call(d.stub.CreateService, req)
        svc = resp.service
        show_warnings(resp.warnings)
        typer.echo(svc.id)
        if wait.detach:
            return
        code = watch(d, svc.id, quiet=wait.quiet, timeout=limit)
    if code:
        raise typer.Exit(code)


@app.command("ls")
@handle_errors
def ls(ctx: typer.Context, quiet: IdsOpt = False, fmt: FormatOpt = None, filters: ServiceFilterOpt = None) -> None:
    """List services."""
    check_format(fmt)
    wanted = filter_services(filters or [])
    with connect(ctx) as d:
        resp = d.call(d.stub.ListServices, cpb.ListServicesRequest())
    ordered = sorted((s for s in resp.services if wanted(s.service)), key=lambda s: (s.service.spec.name, s.service.id))
    if fmt == "json":
        typer.echo(to_json(cpb.ListServicesResponse(services=ordered)))
    elif quiet:
        for s in ordered:
            typer.echo(s.service.id)
    else:
        typer.echo(format_table(SERVICE_HEADERS, service_rows(ordered)))


@app.command("ps")
@handle_errors
@flags(listing=TaskListFlags)
def ps(
    ctx: typer.Context,
    services: Annotated[list[str], typer.Argument(metavar="SERVICE", help="Service name, id or id prefix.")],
    listing: TaskListFlags,
) -> None:
    """List the tasks of one or more services, with their history."""
    filters = tasks.check(listing)
    with connect(ctx) as d:
        tasks.show(d, (cpb.ListTasksRequest(service_ref=ref) for ref in services), listing, filters)


@app.command("inspect")
@handle_errors
def inspect(
    ctx: typer.Context,
    services: Annotated[list[str], typer.Argument(metavar="SERVICE")],
    fmt: FormatOpt = None,
    pretty: PrettyOpt = False,
) -> None:
    """Display detailed information on one or more services (JSON by default)."""
    check_pretty(pretty, fmt)
    found: list[tuple[pb.Service, str]] = []
    errors: list[str] = []
    with connect(ctx) as d:
        for ref in services:
            try:
                svc = d.call(d.stub.GetService, cpb.GetServiceRequest(ref=ref)).service
            except CLIError as e:
                errors.append(e.message)
                continue
            found.append((svc, _stuck(d, svc.id)))
    if pretty:
        if found:
            typer.echo("\n\n".join(format_service_pretty(s, stuck) for s, stuck in found))
    else:
        # The service object, plus why it cannot converge ("" when nothing
        # says so), from the planner's views (Control.ServiceProgress).
        typer.echo(to_json([message_to_dict(s) | {"stuck": stuck} for s, stuck in found]))
    report_errors(errors)


def _stuck(d: DaemonClient, service_id: str) -> str:
    try:
        resp: cpb.ServiceProgressResponse = d.call(d.stub.ServiceProgress, cpb.ServiceProgressRequest(ref=service_id))
        return resp.stuck
    except CLIError:
        return ""  # removed in between: the service itself is still shown


@app.command("scale")
@handle_errors
@flags(wait=WaitFlags)
def scale(
    ctx: typer.Context,
    targets: Annotated[list[str], typer.Argument(metavar="SERVICE=REPLICAS")],
    wait: WaitFlags,
) -> None:
    """Scale one or more replicated services."""
    pairs = [parsed(parse_scale, t, "SERVICE=REPLICAS") for t in targets]
    limit = wait.limit()
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
            if not wait.detach and watch(d, svc.id, quiet=wait.quiet, timeout=limit):
                failed = True
    report_errors(errors)
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
    report_errors(errors)


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
    ref: Annotated[str, typer.Argument(metavar="SERVICE|TASK")],
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Follow log output (tasks started later too).")] = False,
    tail: Annotated[
        str, typer.Option("--tail", "-n", metavar="N", help="Number of lines from the end of the logs, or 'all'.")
    ] = "all",
    timestamps: Annotated[bool, typer.Option("--timestamps", "-t", help="Show timestamps.")] = False,
    since: Annotated[
        str | None,
        typer.Option("--since", metavar="TIME", help="Show logs since TIME (timestamp, RFC 3339, or a duration ago like 10m)."),
    ] = None,
    until: Annotated[
        str | None, typer.Option("--until", metavar="TIME", help="Show logs before TIME (same forms as --since).")
    ] = None,
    details: Annotated[
        bool, typer.Option("--details", help="Show extra details (the task's node, service and task ids).")
    ] = False,
    no_trunc: Annotated[bool, typer.Option("--no-trunc", help="Do not truncate ids.")] = False,
    no_task_ids: Annotated[bool, typer.Option("--no-task-ids", help="Do not include task ids.")] = False,
    raw: Annotated[bool, typer.Option("--raw", help="Do not prefix lines with their task.")] = False,
) -> None:
    """Fetch the logs of a service's tasks, or of one task."""
    n = parsed(parse_tail, tail, "--tail")
    now = time.time()
    req = cpb.ServiceLogsRequest(
        ref=ref,
        follow=follow,
        tail=n,
        timestamps=timestamps,
        since=parsed(lambda t: parse_time(t, now), since, "--since") if since else 0.0,
        until=parsed(lambda t: parse_time(t, now), until, "--until") if until else 0.0,
        details=details,
    )
    with connect(ctx) as d:
        try:
            for line in d.stream(d.stub.ServiceLogs, req):
                text = line.data.decode("utf-8", errors="replace")
                if not text:
                    continue
                out = format_log_lines(line, text, raw=raw, no_trunc=no_trunc, task_ids=not no_task_ids)
                stream = sys.stderr if line.stream == "stderr" else sys.stdout
                stream.write(out)
                stream.flush()
        except KeyboardInterrupt:
            return


def format_log_lines(line: cpb.ServiceLogLine, text: str, *, raw: bool, no_trunc: bool, task_ids: bool) -> str:
    """A chunk of a task's output as printed: each line with its task's prefix
    (and its details, as docker prints them, before the message)."""
    extra = f"{line.details} " if line.details else ""
    if raw:
        return "".join(extra + part + ("" if part.endswith("\n") else "\n") for part in text.splitlines(keepends=True))
    prefix = log_prefix(line, line.service_name, no_trunc, task_ids) + "    | " + extra
    return "".join(prefix + part + ("" if part.endswith("\n") else "\n") for part in text.splitlines(keepends=True))


service_update.register(app)
