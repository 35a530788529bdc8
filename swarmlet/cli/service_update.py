"""`swarmlet service update / rollback / promote` (registered on the `service`
app by service.py).

The flags are resolved client-side: the command reads the service, applies
the flags to its spec (service_spec.apply_flags, pure) and sends the whole new
spec with the version it read, so a concurrent change is refused rather than
overwritten. The manager decides whether that starts a rolling update."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from swarmlet.api import control_pb2 as cpb
from swarmlet.api import objects_pb2 as pb
from swarmlet.cli.client import DaemonClient, connect, handle_errors
from swarmlet.cli.options import ImageFlags, StopGraceOpt, WaitFlags, flags
from swarmlet.cli.progress import watch, watch_update
from swarmlet.cli.service_flags import (
    ContainerFlags,
    ContainerUpdateFlags,
    HealthFlags,
    ResourceFlags,
    RestartFlags,
    RollbackPolicy,
    StorageUpdateFlags,
    UpdatePolicy,
)
from swarmlet.cli.service_images import apply_pull, credentials, show_warnings
from swarmlet.cli.service_options import is_job
from swarmlet.cli.service_spec import apply_flags, apply_network_changes
from swarmlet.cli.storage import apply_storage_changes

ServiceArg = Annotated[str, typer.Argument(metavar="SERVICE")]


@handle_errors
@flags(
    resources=ResourceFlags,
    restart=RestartFlags,
    health=HealthFlags,
    update=UpdatePolicy,
    rollback=RollbackPolicy,
    images=ImageFlags,
    storage=StorageUpdateFlags,
    container=ContainerFlags,
    changes=ContainerUpdateFlags,
    wait=WaitFlags,
)
def update(
    ctx: typer.Context,
    service_ref: ServiceArg,
    resources: ResourceFlags,
    restart: RestartFlags,
    health: HealthFlags,
    update: UpdatePolicy,
    rollback: RollbackPolicy,
    images: ImageFlags,
    storage: StorageUpdateFlags,
    container: ContainerFlags,
    changes: ContainerUpdateFlags,
    wait: WaitFlags,
    image: Annotated[str | None, typer.Option("--image", metavar="IMAGE", help="Service image tag.")] = None,
    args: Annotated[str | None, typer.Option("--args", metavar="ARGS", help="Service command args (split like a shell).")] = None,
    env_add: Annotated[
        list[str] | None, typer.Option("--env-add", metavar="K=V", help="Add or update an environment variable.")
    ] = None,
    env_rm: Annotated[list[str] | None, typer.Option("--env-rm", metavar="K", help="Remove an environment variable.")] = None,
    replicas: Annotated[int | None, typer.Option("--replicas", min=0, metavar="N", help="Number of tasks.")] = None,
    constraint_add: Annotated[
        list[str] | None, typer.Option("--constraint-add", metavar="EXPR", help="Add a placement constraint.")
    ] = None,
    constraint_rm: Annotated[
        list[str] | None, typer.Option("--constraint-rm", metavar="EXPR", help="Remove a placement constraint.")
    ] = None,
    stop_grace_period: StopGraceOpt = None,
    force: Annotated[bool, typer.Option("--force", help="Replace every task even if nothing changed.")] = False,
    network_add: Annotated[
        list[str] | None,
        typer.Option("--network-add", metavar="NETWORK", help="Attach the service to a network (tasks are replaced)."),
    ] = None,
    network_rm: Annotated[
        list[str] | None,
        typer.Option("--network-rm", metavar="NETWORK", help="Detach the service from a network (tasks are replaced)."),
    ] = None,
    to_previous: Annotated[
        bool, typer.Option("--rollback", help="Roll back to the previous spec (as `service rollback`).")
    ] = False,
) -> None:
    """Update a service: a changed task spec is rolled out by the update policy."""
    limit = wait.limit()
    with connect(ctx) as d:
        before = d.call(d.stub.GetService, cpb.GetServiceRequest(ref=service_ref)).service
        spec = apply_flags(
            before.spec,
            image=image,
            args=args,
            env_add=env_add or [],
            env_rm=env_rm or [],
            replicas=replicas,
            constraint_add=constraint_add or [],
            constraint_rm=constraint_rm or [],
            stop_grace_period=stop_grace_period,
            force=force,
            resources=resources,
            restart=restart,
            health=health,
            update=update,
            rollback=rollback,
            environ=os.environ,
            container=container,
            changes=changes,
        )
        spec = apply_storage_changes(spec, storage)
        if to_previous:
            # docker's `service update --rollback`: the previous spec, under
            # the rollback policy; nothing else may change at the same time.
            if spec != before.spec or network_add or network_rm:
                raise typer.BadParameter("cannot be combined with flags that change the service", param_hint="--rollback")
            svc = d.call(d.stub.RollbackService, cpb.RollbackServiceRequest(ref=before.id)).service
            typer.echo(svc.spec.name)
            if wait.detach:
                return
            code = _watch_rollback(d, svc, wait.quiet, limit)
            if code:
                raise typer.Exit(code)
            return
        if network_add or network_rm:
            spec = apply_network_changes(
                spec,
                network_add or [],
                network_rm or [],
                lambda ref: d.call(d.stub.GetNetwork, cpb.GetNetworkRequest(ref=ref)).network,
            )
        apply_pull(spec, images)
        req = cpb.UpdateServiceRequest(
            ref=before.id, version=before.meta.version, spec=spec, no_resolve_image=images.no_resolve_image
        )
        auth = credentials(spec.task.container.image, images)
        if auth is not None:
            req.has_registry_auth = True
            req.registry_auth.CopyFrom(auth)
        resp = d.call(d.stub.UpdateService, req)
        svc = resp.service
        show_warnings(resp.warnings)
        typer.echo(svc.spec.name)
        if wait.detach:
            return
        if svc.update_status.started_at != before.update_status.started_at:
            code = watch_update(d, svc.id, svc.update_status.started_at, quiet=wait.quiet, timeout=limit)
        else:  # nothing to roll out (e.g. only --replicas): follow convergence
            code = watch(d, svc.id, quiet=wait.quiet, timeout=limit)
    if code:
        raise typer.Exit(code)


@handle_errors
@flags(wait=WaitFlags)
def rollback(ctx: typer.Context, service_ref: ServiceArg, wait: WaitFlags) -> None:
    """Revert a service to its previous spec, under its rollback policy."""
    limit = wait.limit()
    with connect(ctx) as d:
        svc = d.call(d.stub.RollbackService, cpb.RollbackServiceRequest(ref=service_ref)).service
        typer.echo(svc.spec.name)
        if wait.detach:
            return
        code = _watch_rollback(d, svc, wait.quiet, limit)
    if code:
        raise typer.Exit(code)


@handle_errors
@flags(wait=WaitFlags)
def promote(ctx: typer.Context, service_ref: ServiceArg, wait: WaitFlags) -> None:
    """Promote a canary update: continue the rolling update past the canaries."""
    limit = wait.limit()
    with connect(ctx) as d:
        svc = d.call(d.stub.PromoteService, cpb.PromoteServiceRequest(ref=service_ref)).service
        typer.echo(svc.spec.name)
        if wait.detach:
            return
        code = watch_update(d, svc.id, svc.update_status.started_at, quiet=wait.quiet, timeout=limit)
    if code:
        raise typer.Exit(code)


def _watch_rollback(d: DaemonClient, svc: pb.Service, quiet: bool, limit: float | None) -> int:
    """Follow a rollback: a job is not rolled, it runs again (follow it to
    completion); a service's rollback is followed as an update."""
    if is_job(svc.spec):
        return watch(d, svc.id, quiet=quiet, timeout=limit)
    return watch_update(d, svc.id, svc.update_status.started_at, quiet=quiet, rollback_cmd=True, timeout=limit)


def register(app: typer.Typer) -> None:
    app.command("update")(update)
    app.command("rollback")(rollback)
    app.command("promote")(promote)
