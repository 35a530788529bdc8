"""`swarmlet stack ...`: deploy, update and remove whole applications from
Compose files (as `docker stack`). The files are read, interpolated, merged
and checked here, on the client, as docker does; the manager sees ordinary
network and service requests, each object labelled with its stack."""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from typing import Annotated

import typer
import yaml

from swarmlet.api import control_pb2 as cpb
from swarmlet.api import objects_pb2 as pb
from swarmlet.cli import tasks
from swarmlet.cli.client import CLIError, DaemonClient, connect, handle_errors
from swarmlet.cli.compose import stack as compose
from swarmlet.cli.compose import yamlpos
from swarmlet.cli.compose.check import ComposeError
from swarmlet.cli.compose.services import NAMESPACE_LABEL
from swarmlet.cli.options import FormatOpt, IdsOpt, TaskListFlags, check_format, flags
from swarmlet.cli.output import SERVICE_HEADERS, format_table, service_rows, to_json
from swarmlet.cli.progress import watch, watch_update
from swarmlet.core.updater import with_defaults

app = typer.Typer(help="Manage stacks (applications described by Compose files).", no_args_is_help=True)

ComposeFileOpt = Annotated[
    list[str],
    typer.Option("--compose-file", "-c", metavar="FILE", help="Compose file; repeat to merge several, in order."),
]


def _load(name: str, files: list[str]) -> compose.Stack:
    try:
        stack = compose.load(name, files)
    except ComposeError as e:
        raise CLIError(str(e)) from None
    for w in stack.warnings:
        typer.echo(w, err=True)
    return stack


def _in_stack(labels: Mapping[str, str], name: str) -> bool:
    return labels.get(NAMESPACE_LABEL) == name


def _comparable(spec: pb.ServiceSpec, network_ids: dict[str, str]) -> pb.ServiceSpec:
    """The spec as the manager stores it (defaults filled, network names
    resolved to ids), so an unchanged service compares equal."""
    out = pb.ServiceSpec()
    out.CopyFrom(spec)
    with_defaults(out)
    for att in out.networks:
        att.target = network_ids.get(att.target, att.target)
    return out


@app.command("deploy")
@handle_errors
def deploy(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="STACK")],
    compose_file: ComposeFileOpt,
    prune: Annotated[bool, typer.Option("--prune", help="Remove services that are no longer in the files.")] = False,
    detach: Annotated[
        str,
        typer.Option(
            "--detach",
            "-d",
            metavar="BOOL",
            is_flag=False,
            flag_value="true",
            help="Exit at once (true, the default) or wait for every service to converge (--detach=false).",
        ),
    ] = "true",
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress output.")] = False,
) -> None:
    """Deploy a new stack or update an existing one."""
    if detach.lower() not in ("true", "false", "1", "0"):
        raise typer.BadParameter(f"{detach!r}: use true or false", param_hint="--detach")
    wait = detach.lower() in ("false", "0")
    stack = _load(name, compose_file)
    with connect(ctx) as d:
        ids = _networks(d, stack)
        created, updated = _services(d, stack, ids, prune)
        if not wait:
            return
        failed = 0
        for svc_id, label in created:
            typer.echo(f"{label}: converging")
            failed += watch(d, svc_id, quiet=quiet) != 0
        for svc_id, label, started in updated:
            typer.echo(f"{label}: updating")
            failed += watch_update(d, svc_id, started, quiet=quiet) != 0
    if failed:
        raise CLIError(f"{failed} service{'s' if failed != 1 else ''} of stack {name} did not converge")


def _networks(d: DaemonClient, stack: compose.Stack) -> dict[str, str]:
    """Create the stack's missing networks; name -> id of every network."""
    existing = {n.spec.name: n for n in d.call(d.stub.ListNetworks, cpb.ListNetworksRequest()).networks}
    for net in stack.networks.values():
        have = existing.get(net.name)
        if net.external:
            if have is None:
                raise CLIError(f"network {net.name!r} is declared as external, but could not be found")
            continue
        if have is not None:
            if not _in_stack(have.spec.labels, stack.name):
                raise CLIError(f"network {net.name!r} exists and is not part of stack {stack.name}: rename it in the file")
            continue
        typer.echo(f"Creating network {net.name}")
        existing[net.name] = d.call(d.stub.CreateNetwork, cpb.CreateNetworkRequest(spec=net.spec)).network
    return {name: n.id for name, n in existing.items()}


def _services(
    d: DaemonClient, stack: compose.Stack, network_ids: dict[str, str], prune: bool
) -> tuple[list[tuple[str, str]], list[tuple[str, str, float]]]:
    summaries = d.call(d.stub.ListServices, cpb.ListServicesRequest()).services
    current = {s.service.spec.name: s.service for s in summaries}
    created: list[tuple[str, str]] = []
    updated: list[tuple[str, str, float]] = []
    for key in sorted(stack.services):
        spec = stack.services[key]
        have = current.get(spec.name)
        if have is None:
            typer.echo(f"Creating service {spec.name}")
            svc = d.call(d.stub.CreateService, cpb.CreateServiceRequest(spec=spec)).service
            created.append((svc.id, spec.name))
            continue
        if not _in_stack(have.spec.labels, stack.name):
            raise CLIError(f"service {spec.name!r} exists and is not part of stack {stack.name}")
        if _comparable(spec, network_ids) == have.spec:
            continue  # unchanged: untouched (no new version, no update)
        typer.echo(f"Updating service {spec.name} (id: {have.id})")
        started = time.time()
        d.call(d.stub.UpdateService, cpb.UpdateServiceRequest(ref=have.id, version=have.meta.version, spec=spec))
        updated.append((have.id, spec.name, started))
    if prune:
        wanted = {s.name for s in stack.services.values()}
        for name, svc in sorted(current.items()):
            if _in_stack(svc.spec.labels, stack.name) and name not in wanted:
                typer.echo(f"Removing service {name}")
                d.call(d.stub.RemoveService, cpb.RemoveServiceRequest(ref=svc.id))
    return created, updated


def _stack_services(d: DaemonClient, name: str) -> list[cpb.ServiceSummary]:
    summaries = d.call(d.stub.ListServices, cpb.ListServicesRequest()).services
    return [s for s in summaries if _in_stack(s.service.spec.labels, name)]


@app.command("ls")
@handle_errors
def ls(ctx: typer.Context, fmt: FormatOpt = None) -> None:
    """List stacks."""
    check_format(fmt)
    with connect(ctx) as d:
        summaries = d.call(d.stub.ListServices, cpb.ListServicesRequest()).services
    counts: dict[str, int] = {}
    for s in summaries:
        ns = s.service.spec.labels.get(NAMESPACE_LABEL)
        if ns:
            counts[ns] = counts.get(ns, 0) + 1
    if fmt == "json":
        typer.echo(to_json([{"Name": n, "Services": c} for n, c in sorted(counts.items())]))
    else:
        typer.echo(format_table(["NAME", "SERVICES"], [[n, str(c)] for n, c in sorted(counts.items())]))


@app.command("services")
@handle_errors
def services(
    ctx: typer.Context, name: Annotated[str, typer.Argument(metavar="STACK")], quiet: IdsOpt = False, fmt: FormatOpt = None
) -> None:
    """List the services of a stack."""
    check_format(fmt)
    with connect(ctx) as d:
        summaries = _stack_services(d, name)
    if not summaries and fmt is None and not quiet:
        typer.echo(f"Nothing found in stack: {name}", err=True)
        return
    if fmt == "json":
        typer.echo(to_json(cpb.ListServicesResponse(services=summaries)))
    elif quiet:
        for s in summaries:
            typer.echo(s.service.id)
    else:
        typer.echo(format_table(SERVICE_HEADERS, service_rows(summaries)))


@app.command("ps")
@handle_errors
@flags(listing=TaskListFlags)
def ps(ctx: typer.Context, name: Annotated[str, typer.Argument(metavar="STACK")], listing: TaskListFlags) -> None:
    """List the tasks of a stack."""
    filters = tasks.check(listing)
    with connect(ctx) as d:
        summaries = _stack_services(d, name)
        if not summaries:
            raise CLIError(f"nothing found in stack: {name}")
        tasks.show(d, (cpb.ListTasksRequest(service_ref=s.service.id) for s in summaries), listing, filters)


@app.command("rm")
@handle_errors
def rm(ctx: typer.Context, names: Annotated[list[str], typer.Argument(metavar="STACK")]) -> None:
    """Remove one or more stacks: their services, then their networks (external
    networks are not the stack's and stay)."""
    missing = []
    with connect(ctx) as d:
        for name in names:
            summaries = _stack_services(d, name)
            nets = [n for n in d.call(d.stub.ListNetworks, cpb.ListNetworksRequest()).networks if _in_stack(n.spec.labels, name)]
            if not summaries and not nets:
                missing.append(name)
                continue
            for s in sorted(summaries, key=lambda s: s.service.spec.name):
                typer.echo(f"Removing service {s.service.spec.name}")
                d.call(d.stub.RemoveService, cpb.RemoveServiceRequest(ref=s.service.id))
            for n in sorted(nets, key=lambda n: n.spec.name):
                typer.echo(f"Removing network {n.spec.name}")
                d.call(d.stub.RemoveNetwork, cpb.RemoveNetworkRequest(ref=n.id))
    if missing:
        raise CLIError(f"nothing found in stack: {', '.join(missing)}")


@app.command("config")
@handle_errors
def config(ctx: typer.Context, compose_file: ComposeFileOpt) -> None:
    """Print the merged, interpolated Compose model of the files."""
    try:
        tree, _ = compose.read_files(compose_file)
    except ComposeError as e:
        raise CLIError(str(e)) from None
    model = yamlpos.plain({k: v for k, v in tree.items() if not k.startswith("x-")})
    sys.stdout.write(yaml.safe_dump(model, sort_keys=False, default_flow_style=False))
