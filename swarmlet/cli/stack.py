"""`swarmlet stack ...`: deploy, update and remove whole applications from
Compose files (as `docker stack`). The files are read, interpolated, merged
and checked here, on the client, as docker does; the manager sees ordinary
network and service requests, each object labelled with its stack."""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated

import typer
import yaml

from swarmlet import errors
from swarmlet.api import control_pb2 as cpb
from swarmlet.api import objects_pb2 as pb
from swarmlet.cli import stack_files, tasks
from swarmlet.cli.client import CLIError, DaemonClient, connect, handle_errors
from swarmlet.cli.compose import stack as compose
from swarmlet.cli.compose import yamlpos
from swarmlet.cli.compose.check import ComposeError
from swarmlet.cli.compose.services import IMAGE_LABEL, NAMESPACE_LABEL
from swarmlet.cli.options import FormatOpt, IdsOpt, ImageFlags, TaskListFlags, check_format, flags
from swarmlet.cli.output import SERVICE_HEADERS, format_table, service_rows, to_json
from swarmlet.cli.progress import watch, watch_update
from swarmlet.cli.service_images import credentials, show_warnings
from swarmlet.core import mounts, ports
from swarmlet.core import secrets as sc
from swarmlet.core import state as st
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


def _comparable(spec: pb.ServiceSpec, have: pb.ServiceSpec, network_ids: dict[str, str], files: st.Snapshot) -> pb.ServiceSpec:
    """The spec as the manager would store it over `have` (defaults filled,
    network names resolved to ids, secret and config references resolved, a
    target-only port given the published port the service holds for it), so
    an unchanged service compares equal."""
    out = pb.ServiceSpec()
    out.CopyFrom(spec)
    with_defaults(out)
    ports.keep_assigned(out.endpoint.ports, have.endpoint.ports)
    for att in out.networks:
        att.target = network_ids.get(att.target, att.target)
    try:
        sc.resolve_references(out, files, mounts.validate(out.task.container.mounts))
    except errors.SwarmletError:
        pass  # the manager will say what is wrong
    return out


def _keep_pin(spec: pb.ServiceSpec, have: pb.ServiceSpec) -> None:
    """As docker's --resolve-image changed: an image the file did not change
    keeps the reference and id the manager pinned it to."""
    c = spec.task.container
    if have.labels.get(IMAGE_LABEL) == c.image:
        c.image = have.task.container.image
        c.image_id = have.task.container.image_id


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
    with_registry_auth: Annotated[
        bool,
        typer.Option(
            "--with-registry-auth",
            help="Send registry credentials (from the docker client config) to the nodes that run the tasks.",
        ),
    ] = False,
    resolve_image: Annotated[
        str,
        typer.Option(
            "--resolve-image",
            metavar="WHEN",
            help="always (pin every image to its registry digest again), changed (new or changed images only; "
            "the default) or never.",
        ),
    ] = "changed",
) -> None:
    """Deploy a new stack or update an existing one."""
    if detach.lower() not in ("true", "false", "1", "0"):
        raise typer.BadParameter(f"{detach!r}: use true or false", param_hint="--detach")
    if resolve_image not in RESOLVE_MODES:
        raise typer.BadParameter(
            f"expected one of {', '.join(RESOLVE_MODES)}, got {resolve_image!r}", param_hint="--resolve-image"
        )
    wait = detach.lower() in ("false", "0")
    stack = _load(name, compose_file)
    images = ImageFlags(with_registry_auth=with_registry_auth, no_resolve_image=resolve_image == "never")
    with connect(ctx) as d:
        # Every check first (a refused file changes nothing), then the objects
        # services need, then the services.
        secrets = stack_files.check(d, name, stack.objects.secrets, "secret")
        configs = stack_files.check(d, name, stack.objects.configs, "config")
        ids = _networks(d, stack)
        stack_files.create(d, stack.objects.secrets, "secret", secrets)
        stack_files.create(d, stack.objects.configs, "config", configs)
        files = stack_files.snapshot(secrets, configs)
        created, updated = _services(d, stack, _Deploy(ids, files, images, resolve_image == "always"), prune)
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


RESOLVE_MODES = ("always", "changed", "never")


@dataclass(frozen=True)
class _Deploy:
    """What every service of one deploy is compared and sent with."""

    network_ids: dict[str, str]
    files: st.Snapshot  # the secrets and configs, to resolve references as the manager does
    images: ImageFlags
    resolve_always: bool


def _services(
    d: DaemonClient, stack: compose.Stack, how: _Deploy, prune: bool
) -> tuple[list[tuple[str, str]], list[tuple[str, str, float]]]:
    summaries = d.call(d.stub.ListServices, cpb.ListServicesRequest()).services
    current = {s.service.spec.name: s.service for s in summaries}
    created: list[tuple[str, str]] = []
    updated: list[tuple[str, str, float]] = []
    for key in sorted(stack.services):
        spec = stack.services[key]
        have = current.get(spec.name)
        auth = credentials(spec.task.container.image, how.images)
        if have is None:
            typer.echo(f"Creating service {spec.name}")
            req = cpb.CreateServiceRequest(spec=spec, no_resolve_image=how.images.no_resolve_image)
            if auth is not None:
                req.registry_auth.CopyFrom(auth)
            reply = d.call(d.stub.CreateService, req)
            show_warnings(reply.warnings)
            created.append((reply.service.id, spec.name))
            continue
        if not _in_stack(have.spec.labels, stack.name):
            raise CLIError(f"service {spec.name!r} exists and is not part of stack {stack.name}")
        repin = how.resolve_always and have.spec.task.container.image != spec.task.container.image
        if not repin:
            _keep_pin(spec, have.spec)
        if not repin and _comparable(spec, have.spec, how.network_ids, how.files) == have.spec:
            continue  # unchanged: untouched (no new version, no update)
        typer.echo(f"Updating service {spec.name} (id: {have.id})")
        started = time.time()
        ureq = cpb.UpdateServiceRequest(
            ref=have.id, version=have.meta.version, spec=spec, no_resolve_image=how.images.no_resolve_image
        )
        if auth is not None:
            ureq.has_registry_auth = True
            ureq.registry_auth.CopyFrom(auth)
        ureply = d.call(d.stub.UpdateService, ureq)
        show_warnings(ureply.warnings)
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
    """Remove one or more stacks: their services, secrets and configs, then
    their networks (external networks, secrets and configs are not the
    stack's and stay; volumes stay on the nodes, as with docker)."""
    missing = []
    with connect(ctx) as d:
        for name in names:
            summaries = _stack_services(d, name)
            nets = [n for n in d.call(d.stub.ListNetworks, cpb.ListNetworksRequest()).networks if _in_stack(n.spec.labels, name)]
            for s in sorted(summaries, key=lambda s: s.service.spec.name):
                typer.echo(f"Removing service {s.service.spec.name}")
                d.call(d.stub.RemoveService, cpb.RemoveServiceRequest(ref=s.service.id))
            files = stack_files.remove(d, name, "secret") + stack_files.remove(d, name, "config")
            if not summaries and not nets and not files:
                missing.append(name)
                continue
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
