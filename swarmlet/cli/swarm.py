"""This node in the swarm: init, join, join-token, leave, info (top-level
commands, registered by main.py)."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from swarmlet.api import control_pb2 as cpb
from swarmlet.cli.client import connect, handle_errors
from swarmlet.cli.options import AdvertiseAddrOpt, check_format, parsed
from swarmlet.cli.output import format_timestamp, to_json, unlock_message
from swarmlet.cli.parse import parse_duration, parse_host_port

DEFAULT_JOIN_PORT = 4242

# Init, join and restore start Raft, issue certificates and wait for the first commits.
MEMBERSHIP_TIMEOUT = 120.0


def join_command(token: str, addr: str) -> str:
    return f"swarmlet join --token {token} {addr}"


@handle_errors
def init(
    ctx: typer.Context,
    advertise_addr: AdvertiseAddrOpt = None,
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
    dispatcher_heartbeat: Annotated[
        str | None,
        typer.Option(
            "--dispatcher-heartbeat",
            metavar="DURATION",
            help="How often agents heartbeat (default 500ms); a node is down after 3 missed ones (at least 3s).",
        ),
    ] = None,
    autolock: Annotated[
        bool, typer.Option("--autolock", help="Require the unlock key to start a manager after a restart.")
    ] = False,
) -> None:
    """Initialize a swarm with this node as its first manager."""
    req = cpb.InitRequest(
        advertise_addr=advertise_addr or "",
        listen_port=str(listen_port) if listen_port else "",
        force_new_cluster=force_new_cluster,
        default_address_pool=default_addr_pool or [],
        default_subnet_size=default_addr_pool_mask_length or 0,
        dispatcher_heartbeat=parsed(parse_duration, dispatcher_heartbeat, "--dispatcher-heartbeat")
        if dispatcher_heartbeat
        else 0.0,
        autolock=autolock,
    )
    with connect(ctx) as d:
        resp = d.call(d.stub.Init, req, timeout=MEMBERSHIP_TIMEOUT)
    typer.echo(
        f"Swarm initialized: current node ({resp.node_id}) is now a manager.\n\n"
        "To add a worker to this swarm, run the following command:\n\n"
        f"    {join_command(resp.worker_token, resp.api_addr)}\n\n"
        "To add a manager to this swarm, run 'swarmlet join-token manager' and follow the instructions.\n"
    )
    if resp.unlock_key:
        typer.echo(unlock_message(resp.unlock_key))


@handle_errors
def join(
    ctx: typer.Context,
    remote: Annotated[str, typer.Argument(metavar="HOST:PORT", help="A manager's address (port defaults to 4242).")],
    token: Annotated[str, typer.Option("--token", metavar="TOKEN", help="Join token (worker or manager).")] = "",
    advertise_addr: AdvertiseAddrOpt = None,
) -> None:
    """Join a swarm as a worker or a manager (the token decides)."""
    if not token.strip():
        raise typer.BadParameter("a join token is required (see 'swarmlet join-token' on a manager)", param_hint="--token")
    addr = parsed(lambda text: parse_host_port(text, default_port=DEFAULT_JOIN_PORT), remote, "HOST:PORT")
    req = cpb.JoinRequest(token=token.strip(), remote_addr=addr, advertise_addr=advertise_addr or "")
    with connect(ctx) as d:
        resp = d.call(d.stub.Join, req, timeout=MEMBERSHIP_TIMEOUT)
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
        d.call(d.stub.Leave, cpb.LeaveRequest(force=force), timeout=MEMBERSHIP_TIMEOUT)
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
        if is_manager and info.state == "active":  # a locked manager knows nothing yet
            lines.append(f" Managers: {info.managers_count}")
            lines.append(f" Nodes: {info.nodes}")
            lines.append(f" Services: {info.services}")
            lines.append(f" Tasks: {info.tasks}")
        if info.addr:
            lines.append(f" Node Address: {info.addr}")
        if info.cert_not_after:
            lines.append(f" Certificate Expiry: {format_timestamp(info.cert_not_after)}")
        if info.cert_warning:
            lines.append(f" Certificate Warning: {info.cert_warning}")
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
    check_format(fmt)
    with connect(ctx) as d:
        resp = d.call(d.stub.Info, cpb.InfoRequest())
    typer.echo(to_json(resp) if fmt == "json" else format_info(resp))


def register(app: typer.Typer) -> None:
    app.command("init")(init)
    app.command("join")(join)
    app.command("join-token")(join_token)
    app.command("leave")(leave)
    app.command("info")(info)
