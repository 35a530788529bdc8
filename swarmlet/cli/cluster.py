"""`swarmlet cluster ...`: cluster-wide operations: settings (inspect,
update), backup and restore, and the cluster's secrets (autolock, the Raft
secret)."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from swarmlet.api import control_pb2 as cpb
from swarmlet.cli import security
from swarmlet.cli.client import connect, handle_errors
from swarmlet.cli.options import (
    AdvertiseAddrOpt,
    AutolockFlags,
    ClusterSettingsFlags,
    FormatOpt,
    KeyFileOpt,
    PrettyOpt,
    check_pretty,
    flags,
    given,
    optional,
)
from swarmlet.cli.output import format_cluster_pretty, pem_json
from swarmlet.cli.parse import parse_duration
from swarmlet.cli.swarm import MEMBERSHIP_TIMEOUT, join_command
from swarmlet.fsutil import write_atomic

app = typer.Typer(help="Cluster-wide operations: settings, backup and restore, secrets.", no_args_is_help=True)


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
@flags(settings=ClusterSettingsFlags, autolock=AutolockFlags)
def update(ctx: typer.Context, settings: ClusterSettingsFlags, autolock: AutolockFlags) -> None:
    """Update the cluster's settings (as 'docker swarm update')."""
    if not given(settings) and not given(autolock):
        raise typer.BadParameter(
            "nothing to update: use --dispatcher-heartbeat, --node-down-after, --task-history-limit, --cert-expiry or --autolock"
        )
    # Every flag is parsed before anything changes.
    heartbeat = optional(parse_duration, settings.dispatcher_heartbeat, "--dispatcher-heartbeat")
    down_after = optional(parse_duration, settings.node_down_after, "--node-down-after")
    expiry = optional(parse_duration, settings.cert_expiry, "--cert-expiry")
    if settings.task_history_limit is not None and settings.task_history_limit < 0:
        raise typer.BadParameter("must not be negative", param_hint="--task-history-limit")
    autolock.wanted()  # a bad --autolock value is refused here
    message = None
    with connect(ctx) as d:
        if given(settings):
            cluster = d.call(d.stub.GetCluster, cpb.GetClusterRequest()).cluster
            spec = cluster.spec
            if heartbeat is not None:
                spec.heartbeat_period = heartbeat
            if down_after is not None:
                spec.node_down_after = down_after
            if settings.task_history_limit is not None:
                spec.task_history_limit = settings.task_history_limit
            if expiry is not None:
                spec.node_cert_expiry = expiry
            d.call(d.stub.UpdateCluster, cpb.UpdateClusterRequest(spec=spec, version=cluster.meta.version))
        message = security.apply_autolock(d, autolock)
    typer.echo("Swarm updated.")
    if message:
        typer.echo(message)


def write_private(path: str, data: bytes) -> None:
    """Write `path` so that nobody else can read or redirect it, whatever
    sits in its directory (issue 13: a pre-existing `F.tmp` made the backup,
    which holds the CA key, world-readable; a symlinked one made root write
    elsewhere): fsutil.write_atomic makes the temporary file exclusively
    (O_EXCL, never following a link) with mode 0600 before writing, fsyncs
    it and renames it over `path` (a rename replaces a link, never follows it)."""
    write_atomic(path, data, 0o600)


@app.command("backup")
@handle_errors
def backup(
    ctx: typer.Context,
    path: Annotated[str, typer.Argument(metavar="FILE", help="Where to write the backup (encrypted; mode 0600).")],
    key_file: KeyFileOpt = None,
) -> None:
    """Write a consistent, encrypted snapshot of the cluster state to FILE
    (on a manager). The key: the passphrase or backup key in --key-file;
    else the swarm's unlock key when it is autolocked; else a new backup key,
    printed once."""
    key = security.read_secret("", key_file) if key_file is not None else ""
    with connect(ctx) as d:
        resp = d.call(d.stub.Backup, cpb.BackupRequest(key=key), timeout=120)
    try:
        write_private(path, resp.data)
    except OSError as e:
        raise typer.BadParameter(f"cannot write {path}: {e.strerror}", param_hint="FILE") from None
    header = security.backup_header(resp.data)
    counts = header.get("counts") or {}
    assert isinstance(counts, dict)
    typer.echo(
        f"Backup written to {path}: {counts.get('services', 0)} services, {counts.get('tasks', 0)} tasks, "
        f"{counts.get('nodes', 0)} nodes (store version {header.get('store_version')})."
    )
    if resp.generated_key:
        typer.echo(
            "It is encrypted with this backup key, shown only now: keep it apart from the file; "
            "'swarmlet cluster restore' needs it.\n\n"
            f"    {resp.generated_key}\n"
        )
    else:
        typer.echo(f"It is encrypted with {security.backup_key_words(resp.key_kind)}: 'swarmlet cluster restore' needs it.")


@app.command("restore")
@handle_errors
def restore(
    ctx: typer.Context,
    path: Annotated[str, typer.Argument(metavar="FILE", help="A file written by 'swarmlet cluster backup'.")],
    advertise_addr: AdvertiseAddrOpt = None,
    key_file: KeyFileOpt = None,
) -> None:
    """Bring up a one-manager cluster on this fresh host from a backup."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise typer.BadParameter(f"cannot read {path}: {e.strerror}", param_hint="FILE") from None
    key = ""
    encryption = security.backup_header(data).get("encryption")
    if isinstance(encryption, dict):
        kind = str(encryption.get("key", ""))
        key = security.read_secret(f"Backup key ({security.backup_key_words(kind)}): ", key_file)
    req = cpb.RestoreRequest(data=data, advertise_addr=advertise_addr or "", key=key)
    with connect(ctx) as d:
        resp = d.call(d.stub.Restore, req, timeout=MEMBERSHIP_TIMEOUT)
    typer.echo(
        f"Cluster {resp.cluster_id} restored: current node ({resp.node_id}) is its only manager.\n\n"
        "To add a worker to this swarm, run the following command:\n\n"
        f"    {join_command(resp.worker_token, resp.api_addr)}\n"
    )


app.command("raft-secret")(security.raft_secret)
