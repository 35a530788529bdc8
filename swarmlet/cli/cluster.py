"""Cluster membership commands: init, join, join-token, leave, info."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from swarmlet.api import control_pb2 as cpb
from swarmlet.cli.client import connect, handle_errors
from swarmlet.cli.output import to_json
from swarmlet.cli.parse import parse_host_port

DEFAULT_JOIN_PORT = 4242

# Init and join start Raft, issue certificates and wait for the first commits.
_MEMBERSHIP_TIMEOUT = 120.0


def _advertise(value: str | None) -> str:
    if not value:
        return ""
    # main imports this module, so import its helper at call time.
    from swarmlet.cli.main import resolve_advertise_addr

    try:
        return resolve_advertise_addr(value)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--advertise-addr") from None


def join_command(token: str, addr: str) -> str:
    return f"swarmlet join --token {token} {addr}"


def _check_format(fmt: str | None) -> None:
    if fmt not in (None, "json"):
        raise typer.BadParameter(f"unsupported format {fmt!r}: only 'json' is supported", param_hint="--format")


@handle_errors
def init(
    ctx: typer.Context,
    advertise_addr: Annotated[
        str | None, typer.Option("--advertise-addr", metavar="IP", help="IP (or interface) other nodes reach this one at.")
    ] = None,
    listen_port: Annotated[
        int | None, typer.Option("--listen-port", min=1, max=65535, metavar="PORT", help="Port nodes join through.")
    ] = None,
    force_new_cluster: Annotated[
        bool, typer.Option("--force-new-cluster", help="Recover: force a new cluster from this node's state.")
    ] = False,
    default_addr_pool: Annotated[
        list[str] | None,
        typer.Option(
            "--default-addr-pool", metavar="CIDR", help="Pool overlay subnets come from (default 10.0.0.0/8); repeatable."
        ),
    ] = None,
    default_addr_pool_mask_length: Annotated[
        int | None,
        typer.Option(
            "--default-addr-pool-mask-length", min=8, max=30, metavar="N", help="Prefix length of allocated subnets (default 24)."
        ),
    ] = None,
) -> None:
    """Initialize a swarm with this node as its first manager."""
    req = cpb.InitRequest(
        advertise_addr=_advertise(advertise_addr),
        listen_port=str(listen_port) if listen_port else "",
        force_new_cluster=force_new_cluster,
        default_address_pool=default_addr_pool or [],
        default_subnet_size=default_addr_pool_mask_length or 0,
    )
    with connect(ctx) as d:
        resp = d.call(d.stub.Init, req, timeout=_MEMBERSHIP_TIMEOUT)
    typer.echo(
        f"Swarm initialized: current node ({resp.node_id}) is now a manager.\n\n"
        "To add a worker to this swarm, run the following command:\n\n"
        f"    {join_command(resp.worker_token, resp.api_addr)}\n\n"
        "To add a manager to this swarm, run 'swarmlet join-token manager' and follow the instructions.\n"
    )


@handle_errors
def join(
    ctx: typer.Context,
    remote: Annotated[str, typer.Argument(metavar="HOST:PORT", help="A manager's address (port defaults to 4242).")],
    token: Annotated[str, typer.Option("--token", metavar="TOKEN", help="Join token (worker or manager).")] = "",
    advertise_addr: Annotated[
        str | None, typer.Option("--advertise-addr", metavar="IP", help="IP (or interface) other nodes reach this one at.")
    ] = None,
) -> None:
    """Join a swarm as a worker or a manager (the token decides)."""
    if not token.strip():
        raise typer.BadParameter("a join token is required (see 'swarmlet join-token' on a manager)", param_hint="--token")
    try:
        addr = parse_host_port(remote, default_port=DEFAULT_JOIN_PORT)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="HOST:PORT") from None
    req = cpb.JoinRequest(token=token.strip(), remote_addr=addr, advertise_addr=_advertise(advertise_addr))
    with connect(ctx) as d:
        resp = d.call(d.stub.Join, req, timeout=_MEMBERSHIP_TIMEOUT)
    role = (resp.role or "worker").lower()
    typer.echo(f"This node joined a swarm as a {role}.")


@handle_errors
def join_token(
    ctx: typer.Context,
    role: Annotated[str, typer.Argument(metavar="worker|manager", help="Which token.")],
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only display the token.")] = False,
    rotate: Annotated[bool, typer.Option("--rotate", help="Rotate the join token.")] = False,
) -> None:
    """Show (or rotate) the join token for workers or managers."""
    role = role.lower()
    if role not in ("worker", "manager"):
        raise typer.BadParameter(f"unknown role {role!r}: expected worker or manager", param_hint="ROLE")
    with connect(ctx) as d:
        resp = d.call(d.stub.JoinToken, cpb.JoinTokenRequest(role=role, rotate=rotate))
    if quiet:
        typer.echo(resp.token)
        return
    if rotate:
        typer.echo(f"Successfully rotated {role} join token.\n")
    typer.echo(f"To add a {role} to this swarm, run the following command:\n\n    {join_command(resp.token, resp.api_addr)}\n")


@handle_errors
def leave(
    ctx: typer.Context,
    force: Annotated[bool, typer.Option("--force", "-f", help="Leave even if this is a manager (may break the quorum).")] = False,
) -> None:
    """Leave the swarm."""
    with connect(ctx) as d:
        d.call(d.stub.Leave, cpb.LeaveRequest(force=force), timeout=_MEMBERSHIP_TIMEOUT)
    typer.echo("Node left the swarm.")


def format_info(info: cpb.InfoResponse) -> str:
    """The human `info` summary (pure, for tests)."""
    lines = [f"Swarm: {info.state or 'inactive'}"]
    if info.node_id:
        lines.append(f" NodeID: {info.node_id}")
    if info.error:
        lines.append(f" Error: {info.error}")
    if info.state == "active" or info.cluster_id:
        is_manager = info.role.lower() == "manager"
        lines.append(f" Role: {info.role.lower() or 'worker'}")
        lines.append(f" Is Manager: {str(is_manager).lower()}")
        if is_manager:
            lines.append(f" Is Leader: {str(info.is_leader).lower()}")
        if info.cluster_id:
            lines.append(f" ClusterID: {info.cluster_id}")
        if is_manager:
            lines.append(f" Managers: {info.managers_count}")
            lines.append(f" Nodes: {info.nodes}")
            lines.append(f" Services: {info.services}")
            lines.append(f" Tasks: {info.tasks}")
        if info.addr:
            lines.append(f" Node Address: {info.addr}")
        if info.state_digest:
            lines.append(f" State Digest: {info.state_digest} (store version {info.store_version})")
        if info.managers:
            lines.append(" Manager Addresses:")
            lines.extend(f"  {m}" for m in info.managers)
        if info.raft_status:
            lines.append(" Raft:")
            lines.extend(_raft_lines(info.raft_status))
    if info.docker_host:
        lines.append(f"Docker Host: {info.docker_host}")
    return "\n".join(lines)


def _raft_lines(raw: str) -> list[str]:
    try:
        status: Any = json.loads(raw)
    except ValueError:
        return [f"  {raw}"]
    if not isinstance(status, dict):
        return [f"  {status}"]
    out: list[str] = []

    def walk(d: dict[str, Any], indent: int) -> None:
        for k in sorted(d):
            v = d[k]
            if isinstance(v, dict):
                out.append(" " * indent + f"{k}:")
                walk(v, indent + 1)
            else:
                if isinstance(v, bool):
                    v = str(v).lower()
                out.append(" " * indent + f"{k}: {v}")

    walk(status, 2)
    return out


@handle_errors
def info(
    ctx: typer.Context,
    fmt: Annotated[str | None, typer.Option("--format", "-f", metavar="json", help="'json' for machine-readable output.")] = None,
) -> None:
    """Show this node's view of the swarm."""
    _check_format(fmt)
    with connect(ctx) as d:
        resp = d.call(d.stub.Info, cpb.InfoRequest())
    typer.echo(to_json(resp) if fmt == "json" else format_info(resp))


cluster_app = typer.Typer(help="Cluster-wide operations: backup and restore.", no_args_is_help=True)


@cluster_app.command("backup")
@handle_errors
def backup(
    ctx: typer.Context,
    path: Annotated[str, typer.Argument(metavar="FILE", help="Where to write the backup (it holds the CA key: keep it secret).")],
) -> None:
    """Write a consistent snapshot of the cluster state to FILE (on a manager)."""
    import os

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


@cluster_app.command("restore")
@handle_errors
def restore(
    ctx: typer.Context,
    path: Annotated[str, typer.Argument(metavar="FILE", help="A file written by 'swarmlet cluster backup'.")],
    advertise_addr: Annotated[
        str | None, typer.Option("--advertise-addr", metavar="IP", help="IP (or interface) other nodes reach this one at.")
    ] = None,
) -> None:
    """Bring up a one-manager cluster on this fresh host from a backup."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise typer.BadParameter(f"cannot read {path}: {e.strerror}", param_hint="FILE") from None
    with connect(ctx) as d:
        resp = d.call(
            d.stub.Restore, cpb.RestoreRequest(data=data, advertise_addr=_advertise(advertise_addr)), timeout=_MEMBERSHIP_TIMEOUT
        )
    typer.echo(
        f"Cluster {resp.cluster_id} restored: current node ({resp.node_id}) is its only manager.\n\n"
        "To add a worker to this swarm, run the following command:\n\n"
        f"    {join_command(resp.worker_token, resp.api_addr)}\n"
    )


def register(app: typer.Typer) -> None:
    app.add_typer(cluster_app, name="cluster")
    app.command("init")(init)
    app.command("join")(join)
    app.command("join-token")(join_token)
    app.command("leave")(leave)
    app.command("info")(info)
