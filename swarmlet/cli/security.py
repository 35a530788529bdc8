"""Secrets, from the CLI (issue 13): `unlock`, `unlock-key`, autolock for
`cluster update`, the Raft secret's rotation, and reading keys for encrypted
backups. Keys are read from a prompt that does not echo, from standard input
when it is not a terminal, or from a file: never from the command line, where
`ps` and shell history would keep them."""

from __future__ import annotations

import getpass
import json
import sys
import time
from typing import Annotated

import typer

from swarmlet.api import control_pb2 as cpb
from swarmlet.cli.client import DaemonClient, connect, handle_errors
from swarmlet.cli.options import AutolockFlags, FormatOpt, check_format
from swarmlet.cli.output import to_json, unlock_message

# How often `cluster raft-secret --rotate` looks at the rotation, and for how long.
ROTATION_POLL = 0.5
ROTATION_WAIT = 180.0


def read_secret(prompt: str, key_file: str | None) -> str:
    """A key or passphrase: from `key_file` ('-': standard input), else from
    standard input when it is not a terminal, else a prompt without echo."""
    if key_file == "-" or (key_file is None and not sys.stdin.isatty()):
        return sys.stdin.readline().rstrip("\r\n")
    if key_file is not None:
        try:
            with open(key_file, encoding="utf-8") as f:
                return f.readline().rstrip("\r\n")
        except OSError as e:
            raise typer.BadParameter(f"cannot read {key_file}: {e.strerror}", param_hint="--key-file") from None
    return getpass.getpass(prompt)


@handle_errors
def unlock(ctx: typer.Context) -> None:
    """Unlock a locked manager (autolock) with the swarm's unlock key."""
    key = read_secret("Please enter unlock key: ", None)
    if not key.strip():
        raise typer.BadParameter("an unlock key is required", param_hint="KEY")
    with connect(ctx) as d:
        d.call(d.stub.Unlock, cpb.UnlockRequest(unlock_key=key.strip()), timeout=120)
    typer.echo("This manager is unlocked.")


@handle_errors
def unlock_key(
    ctx: typer.Context,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only display the key.")] = False,
    rotate: Annotated[bool, typer.Option("--rotate", help="Rotate the unlock key.")] = False,
) -> None:
    """Show (or rotate) the swarm's unlock key."""
    with connect(ctx) as d:
        resp = d.call(d.stub.UnlockKey, cpb.UnlockKeyRequest(rotate=rotate))
    if quiet:
        typer.echo(resp.unlock_key)
        return
    if rotate:
        typer.echo(
            "Successfully rotated manager unlock key. Keep the previous key a little while: a manager that was down "
            "during the rotation still needs it.\n"
        )
    typer.echo(unlock_message(resp.unlock_key))


def apply_autolock(d: DaemonClient, flags: AutolockFlags) -> str | None:
    """`cluster update --autolock=...`: the message to print, or None when the
    flag was not given."""
    want = flags.wanted()
    if want is None:
        return None
    resp = d.call(d.stub.SetAutolock, cpb.SetAutolockRequest(autolock=want))
    if want:
        return "Autolock is on.\n\n" + unlock_message(resp.unlock_key)
    return "Autolock is off: managers restart without the unlock key."


def format_raft_secret(s: cpb.RaftSecretStatus) -> str:
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(s.rotated_at)) if s.rotated_at else "never"
    lines = [f"Raft secret epoch: {s.epoch}", f"Last rotation:     {when}" + (f" ({s.reason})" if s.reason else "")]
    if s.rotating:
        waiting = f": waiting for {', '.join(s.waiting_for)}" if s.waiting_for else ""
        lines.append(f"Rotation:          in progress (the previous secret is still accepted){waiting}")
    else:
        lines.append("Rotation:          complete (only the current secret is accepted)")
    return "\n".join(lines)


@handle_errors
def raft_secret(
    ctx: typer.Context,
    rotate: Annotated[bool, typer.Option("--rotate", help="Replace the Raft secret now, without downtime.")] = False,
    detach: Annotated[bool, typer.Option("--detach", "-d", help="Do not wait for every manager to take the new secret.")] = False,
    fmt: FormatOpt = None,
) -> None:
    """Show the Raft secret's rotation state (never the secret), or rotate it."""
    check_format(fmt)
    with connect(ctx) as d:
        if rotate:
            status = d.call(d.stub.RotateRaftSecret, cpb.RotateRaftSecretRequest())
            if not detach:
                status = _follow_rotation(d, status)
        else:
            status = d.call(d.stub.GetRaftSecretStatus, cpb.RaftSecretStatusRequest())
    if fmt == "json":
        typer.echo(to_json(status))
    else:
        typer.echo(format_raft_secret(status))


def _follow_rotation(d: DaemonClient, status: cpb.RaftSecretStatus) -> cpb.RaftSecretStatus:
    deadline = time.monotonic() + ROTATION_WAIT
    shown = ""
    while status.rotating and time.monotonic() < deadline:
        line = f"rotating to epoch {status.epoch}: " + (
            f"waiting for {', '.join(status.waiting_for)}" if status.waiting_for else "every manager has it, retiring the old one"
        )
        if line != shown:
            typer.echo(line, err=True)
            shown = line
        time.sleep(ROTATION_POLL)
        status = d.call(d.stub.GetRaftSecretStatus, cpb.RaftSecretStatusRequest())
    return status


def backup_header(data: bytes) -> dict[str, object]:
    """The JSON header line of a backup file ({} if it has none)."""
    try:
        header = json.loads(data.partition(b"\n")[0])
    except ValueError:
        return {}
    return header if isinstance(header, dict) else {}


def backup_key_words(kind: str) -> str:
    return {
        "unlock-key": "the swarm's unlock key",
        "backup-key": "the backup key printed when it was taken",
        "passphrase": "its passphrase",
    }.get(kind, "its key")


def register(app: typer.Typer) -> None:
    app.command("unlock")(unlock)
    app.command("unlock-key")(unlock_key)
