"""`swarmlet cluster ...`: cluster-wide operations, backup and restore, and
the cluster's secrets (autolock, the Raft secret)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from typing import Annotated

import typer

from swarmlet.api import control_pb2 as cpb
from swarmlet.cli import security
from swarmlet.cli.client import connect, handle_errors
from swarmlet.cli.options import AdvertiseAddrOpt, AutolockFlags, KeyFileOpt, flags, given
from swarmlet.cli.swarm import MEMBERSHIP_TIMEOUT, join_command

app = typer.Typer(help="Cluster-wide operations: backup and restore, settings, secrets.", no_args_is_help=True)


def write_private(path: str, data: bytes) -> None:
    """Write `path` so that nobody else can read or redirect it, whatever
    sits in its directory (issue 13: a pre-existing `F.tmp` made the backup,
    which holds the CA key, world-readable; a symlinked one made root write
    elsewhere): a new temporary file in the same directory, created
    exclusively (O_EXCL, never following a link) with mode 0600, fsync'd,
    then renamed over `path` (a rename replaces a link, never follows it)."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


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


@app.command("update")
@flags(autolock=AutolockFlags)
@handle_errors
def update(ctx: typer.Context, autolock: AutolockFlags) -> None:
    """Change cluster settings."""
    if not given(autolock):
        raise typer.BadParameter("nothing to update: give a setting such as --autolock=true", param_hint="OPTIONS")
    with connect(ctx) as d:
        message = security.apply_autolock(d, autolock)
    if message:
        typer.echo(message)


app.command("raft-secret")(security.raft_secret)
