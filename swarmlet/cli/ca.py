"""`swarmlet ca`: show the cluster's root CA, or rotate it (as `docker swarm ca`).

Without options it prints the current root certificate (PEM) and, while a
rotation runs, how far it is. `--rotate` starts a rotation and follows it
until every node holds a certificate from the new root and the old root is
no longer trusted, then prints the new root; `--detach` returns at once.
"""

from __future__ import annotations

import time
from typing import Annotated

import typer

from swarmlet.api import control_pb2 as cpb
from swarmlet.cli.client import CLIError, DaemonClient, connect, handle_errors
from swarmlet.cli.options import FormatOpt, WaitFlags, check_format, flags
from swarmlet.cli.output import pem_json, rotation_progress_text

# How often the progress is read again.
POLL = 0.5


@handle_errors
@flags(wait=WaitFlags)
def ca(
    ctx: typer.Context,
    wait: WaitFlags,
    rotate: Annotated[
        bool, typer.Option("--rotate", help="Rotate the root CA: a new root, cross-signed, replaces the current one.")
    ] = False,
    fmt: FormatOpt = None,
) -> None:
    """Display or rotate the root CA (on a manager)."""
    check_format(fmt)
    limit = wait.limit()
    with connect(ctx) as d:
        if not rotate:
            status = d.call(d.stub.GetRootCA, cpb.GetRootCARequest())
            _show(status, fmt)
            return
        status = d.call(d.stub.RotateRootCA, cpb.RotateRootCARequest(), timeout=60)
        if wait.detach:
            if not wait.quiet:
                typer.echo(f"Root CA rotation started: new root sha256:{status.new_digest}.", err=True)
            _show(status, fmt)
            return
        status = _follow(d, status, quiet=wait.quiet, limit=limit)
    _show(status, fmt)


def _show(status: cpb.RootCAStatus, fmt: str | None) -> None:
    if fmt == "json":
        typer.echo(pem_json(status))
        return
    typer.echo(status.cert_pem.decode().rstrip("\n"))
    if status.rotating:
        # Progress on stderr: stdout stays the PEM (`swarmlet ca > root.pem`).
        typer.echo(rotation_progress_text(status), err=True)


def _follow(d: DaemonClient, started: cpb.RootCAStatus, quiet: bool, limit: float | None) -> cpb.RootCAStatus:
    """Poll until the rotation that `started` began is complete: the root is
    the new one (so the old one left every node's trust)."""
    target = started.new_digest
    deadline = None if limit is None else time.monotonic() + limit
    last = ""
    status = started
    while True:
        if status.digest == target and not status.rotating:
            if not quiet:
                typer.echo(f"root CA rotated: every node holds a certificate from the new root (sha256:{target})", err=True)
            return status
        if status.rotating and status.new_digest != target:
            raise CLIError(f"another root rotation replaced this one (now rotating to sha256:{status.new_digest})")
        line = rotation_progress_text(status)
        if not quiet and line != last:
            typer.echo(line, err=True)
            last = line
        if deadline is not None and time.monotonic() > deadline:
            raise CLIError(f"the root CA rotation is still in progress ({line}); it continues in the background")
        time.sleep(POLL)
        status = d.call(d.stub.GetRootCA, cpb.GetRootCARequest())


def register(app: typer.Typer) -> None:
    app.command("ca")(ca)
