"""`swarmlet cluster ...`: cluster-wide operations: settings (inspect,
update), backup and restore."""

from __future__ import annotations

import json
import os
import time
from typing import Annotated

import typer

from swarmlet.api import control_pb2 as cpb
from swarmlet.cli.client import connect, handle_errors
from swarmlet.cli.options import (
    AdvertiseAddrOpt,
    ClusterSettingsFlags,
    FormatOpt,
    PrettyOpt,
    check_pretty,
    flags,
    given,
    optional,
)
from swarmlet.cli.output import format_cluster_pretty, pem_json
from swarmlet.cli.parse import parse_duration
from swarmlet.cli.swarm import MEMBERSHIP_TIMEOUT, join_command

app = typer.Typer(help="Cluster-wide operations: settings, backup and restore.", no_args_is_help=True)


@app.command("inspect")
@handle_errors
def inspect(ctx: typer.Context, fmt: FormatOpt = None, pretty: PrettyOpt = False) -> None:
    """Display the cluster's settings and root CA (JSON by default; never its secrets)."""
    check_pretty(pretty, fmt)
    with connect(ctx) as d:
        cluster = d.call(d.stub.GetCluster, cpb.GetClusterRequest()).cluster
    typer.echo(format_cluster_pretty(cluster, time.time()) if pretty else pem_json(cluster))


@app.command("update")
@handle_errors
@flags(settings=ClusterSettingsFlags)
def update(ctx: typer.Context, settings: ClusterSettingsFlags) -> None:
    """Update the cluster's settings (as 'docker swarm update')."""
    if not given(settings):
        raise typer.BadParameter(
            "nothing to update: use --dispatcher-heartbeat, --node-down-after, --task-history-limit or --cert-expiry"
        )
    heartbeat = optional(parse_duration, settings.dispatcher_heartbeat, "--dispatcher-heartbeat")
    down_after = optional(parse_duration, settings.node_down_after, "--node-down-after")
    expiry = optional(parse_duration, settings.cert_expiry, "--cert-expiry")
    with connect(ctx) as d:
        cluster = d.call(d.stub.GetCluster, cpb.GetClusterRequest()).cluster
        spec = cluster.spec
        if heartbeat is not None:
            spec.heartbeat_period = heartbeat
        if down_after is not None:
            spec.node_down_after = down_after
        if settings.task_history_limit is not None:
            if settings.task_history_limit < 0:
                raise typer.BadParameter("must not be negative", param_hint="--task-history-limit")
            spec.task_history_limit = settings.task_history_limit
        if expiry is not None:
            spec.node_cert_expiry = expiry
        d.call(d.stub.UpdateCluster, cpb.UpdateClusterRequest(spec=spec, version=cluster.meta.version))
    typer.echo("Swarm updated.")


@app.command("backup")
@handle_errors
def backup(
    ctx: typer.Context,
    path: Annotated[str, typer.Argument(metavar="FILE", help="Where to write the backup (it holds the CA key: keep it secret).")],
) -> None:
    """Write a consistent snapshot of the cluster state to FILE (on a manager)."""
    with connect(ctx) as d:
        resp = d.call(d.stub.Backup, cpb.BackupRequest(), timeout=120)
    tmp = path + ".tmp"
    # The file holds the root CA key and join tokens: owner-only from the start.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(resp.data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    header = json.loads(resp.data.partition(b"\n")[0])
    counts = header.get("counts", {})
    typer.echo(
        f"Backup written to {path}: {counts.get('services', 0)} services, {counts.get('tasks', 0)} tasks, "
        f"{counts.get('nodes', 0)} nodes (store version {header.get('store_version')})."
    )


@app.command("restore")
@handle_errors
def restore(
    ctx: typer.Context,
    path: Annotated[str, typer.Argument(metavar="FILE", help="A file written by 'swarmlet cluster backup'.")],
    advertise_addr: AdvertiseAddrOpt = None,
) -> None:
    """Bring up a one-manager cluster on this fresh host from a backup."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise typer.BadParameter(f"cannot read {path}: {e.strerror}", param_hint="FILE") from None
    with connect(ctx) as d:
        resp = d.call(
            d.stub.Restore, cpb.RestoreRequest(data=data, advertise_addr=advertise_addr or ""), timeout=MEMBERSHIP_TIMEOUT
        )
    typer.echo(
        f"Cluster {resp.cluster_id} restored: current node ({resp.node_id}) is its only manager.\n\n"
        "To add a worker to this swarm, run the following command:\n\n"
        f"    {join_command(resp.worker_token, resp.api_addr)}\n"
    )
