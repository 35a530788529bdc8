"""`swarmlet node ...`: list, inspect, update, remove nodes and list their tasks."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from swarmlet.api import control_pb2 as cpb
from swarmlet.api import objects_pb2 as pb
from swarmlet.cli import tasks
from swarmlet.cli.client import CLIError, DaemonClient, connect, handle_errors, report_errors
from swarmlet.cli.listing import NodeFilterOpt, filter_nodes
from swarmlet.cli.options import FormatOpt, IdsOpt, PrettyOpt, TaskListFlags, check_format, check_pretty, flags, parsed
from swarmlet.cli.output import NODE_HEADERS, format_node_pretty, format_table, node_rows, to_json
from swarmlet.cli.parse import parse_kv

app = typer.Typer(help="Manage swarm nodes.", no_args_is_help=True)

_ROLES = {"worker": pb.NodeSpec.WORKER, "manager": pb.NodeSpec.MANAGER}

_AVAILABILITY = {
    "active": pb.NodeSpec.ACTIVE,
    "pause": pb.NodeSpec.PAUSE,
    "drain": pb.NodeSpec.DRAIN,
}


def self_id(d: DaemonClient) -> str:
    """This daemon's node id, for "self" and the '*' marker."""
    node_id: str = d.call(d.stub.Info, cpb.InfoRequest()).node_id
    if not node_id:
        raise CLIError("this node is not part of a swarm")
    return node_id


def resolve_ref(d: DaemonClient, ref: str, cached_self: list[str]) -> str:
    if ref != "self":
        return ref
    if not cached_self:
        cached_self.append(self_id(d))
    return cached_self[0]


@app.command("ls")
@handle_errors
def ls(ctx: typer.Context, quiet: IdsOpt = False, fmt: FormatOpt = None, filters: NodeFilterOpt = None) -> None:
    """List nodes in the swarm."""
    check_format(fmt)
    wanted = filter_nodes(filters or [])
    with connect(ctx) as d:
        resp = d.call(d.stub.ListNodes, cpb.ListNodesRequest())
        kept = [n for n in resp.nodes if wanted(n)]
        del resp.nodes[:]
        resp.nodes.extend(kept)
        if fmt == "json":
            typer.echo(to_json(resp))
            return
        if quiet:
            for n in sorted(resp.nodes, key=lambda n: (n.description.hostname, n.id)):
                typer.echo(n.id)
            return
        try:
            me = d.call(d.stub.Info, cpb.InfoRequest()).node_id
        except CLIError:
            me = ""  # the marker is cosmetic; the listing already succeeded
    typer.echo(format_table(NODE_HEADERS, node_rows(resp.nodes, resp.leader_id, me)))


@app.command("inspect")
@handle_errors
def inspect(
    ctx: typer.Context,
    nodes: Annotated[list[str], typer.Argument(metavar="NODE", help="Node id, id prefix, hostname or 'self'.")],
    fmt: FormatOpt = None,
    pretty: PrettyOpt = False,
) -> None:
    """Display detailed information on one or more nodes (JSON by default)."""
    check_pretty(pretty, fmt)
    found: list[pb.Node] = []
    errors: list[str] = []
    leader_id = ""
    me: list[str] = []
    with connect(ctx) as d:
        for ref in nodes:
            try:
                found.append(d.call(d.stub.GetNode, cpb.GetNodeRequest(ref=resolve_ref(d, ref, me))).node)
            except CLIError as e:
                errors.append(e.message)
        if pretty and any(n.role == pb.NodeSpec.MANAGER for n in found):
            leader_id = d.call(d.stub.ListNodes, cpb.ListNodesRequest()).leader_id
    if pretty:
        if found:
            now = time.time()
            typer.echo("\n\n".join(format_node_pretty(n, leader_id, now) for n in found))
    else:
        typer.echo(to_json(found))
    report_errors(errors)


@app.command("update")
@handle_errors
def update(
    ctx: typer.Context,
    node_ref: Annotated[str, typer.Argument(metavar="NODE")],
    availability: Annotated[
        str | None, typer.Option("--availability", metavar="active|pause|drain", help="active, pause or drain.")
    ] = None,
    label_add: Annotated[
        list[str] | None, typer.Option("--label-add", metavar="K=V", help="Add or update a node label (KEY=VALUE); repeatable.")
    ] = None,
    label_rm: Annotated[
        list[str] | None, typer.Option("--label-rm", metavar="KEY", help="Remove a node label if it exists; repeatable.")
    ] = None,
    role: Annotated[
        str | None, typer.Option("--role", metavar="worker|manager", help="Promote or demote the node (as node promote/demote).")
    ] = None,
) -> None:
    """Update a node's availability, labels or role."""
    req = cpb.UpdateNodeRequest()
    new_role = None
    if role is not None:
        new_role = _ROLES.get(role.lower())
        if new_role is None:
            raise typer.BadParameter(f"{role!r} is not one of worker, manager", param_hint="--role")
    if availability is not None:
        value = _AVAILABILITY.get(availability.lower())
        if value is None:
            raise typer.BadParameter(f"{availability!r} is not one of active, pause, drain", param_hint="--availability")
        req.set_availability = True
        req.availability = value
    for item in label_add or []:
        k, v = parsed(lambda text: parse_kv(text, what="label"), item, "--label-add")
        req.label_add[k] = v
    for key in label_rm or []:
        if not key or "=" in key:
            raise typer.BadParameter(f"invalid label key {key!r}", param_hint="--label-rm")
        req.label_rm.append(key)
    if not (req.set_availability or req.label_add or req.label_rm or new_role is not None):
        raise typer.BadParameter("nothing to update: use --availability, --label-add, --label-rm or --role")
    with connect(ctx) as d:
        req.ref = resolve_ref(d, node_ref, [])
        if req.set_availability or req.label_add or req.label_rm:
            d.call(d.stub.UpdateNode, req)
        if new_role is not None:
            # The role goes through the same membership change as promote/demote.
            d.call(d.stub.ChangeRole, cpb.ChangeRoleRequest(ref=req.ref, role=new_role), timeout=60)
    typer.echo(node_ref)


@app.command("rm")
@handle_errors
def rm(
    ctx: typer.Context,
    nodes: Annotated[list[str], typer.Argument(metavar="NODE")],
    force: Annotated[bool, typer.Option("--force", "-f", help="Remove the node even if it is not down.")] = False,
) -> None:
    """Remove one or more nodes from the swarm."""
    errors: list[str] = []
    with connect(ctx) as d:
        for ref in nodes:
            try:
                d.call(d.stub.RemoveNode, cpb.RemoveNodeRequest(ref=ref, force=force))
                typer.echo(ref)
            except CLIError as e:
                errors.append(e.message)
    report_errors(errors)


def _change_role(ctx: typer.Context, nodes: list[str], role: pb.NodeSpec.Role, force: bool) -> None:
    errors: list[str] = []
    with connect(ctx) as d:
        for ref in nodes:
            try:
                resp = d.call(
                    d.stub.ChangeRole, cpb.ChangeRoleRequest(ref=resolve_ref(d, ref, []), role=role, force=force), timeout=60
                )
                name = resp.node.description.hostname or ref
                if role == pb.NodeSpec.MANAGER:
                    typer.echo(f"Node {name} promoted to a manager in the swarm.")
                else:
                    typer.echo(f"Manager {name} demoted in the swarm.")
            except CLIError as e:
                errors.append(e.message)
    report_errors(errors)


@app.command("promote")
@handle_errors
def promote(ctx: typer.Context, nodes: Annotated[list[str], typer.Argument(metavar="NODE")]) -> None:
    """Promote one or more nodes to manager in the swarm."""
    _change_role(ctx, nodes, pb.NodeSpec.MANAGER, False)


@app.command("demote")
@handle_errors
def demote(
    ctx: typer.Context,
    nodes: Annotated[list[str], typer.Argument(metavar="NODE")],
    force: Annotated[
        bool, typer.Option("--force", "-f", help="Demote even if the remaining managers would lose quorum.")
    ] = False,
) -> None:
    """Demote one or more managers to worker in the swarm."""
    _change_role(ctx, nodes, pb.NodeSpec.WORKER, force)


@app.command("ps")
@handle_errors
@flags(listing=TaskListFlags)
def ps(
    ctx: typer.Context,
    listing: TaskListFlags,
    nodes: Annotated[list[str] | None, typer.Argument(metavar="NODE", help="Nodes to list tasks of (default: self).")] = None,
) -> None:
    """List tasks running on one or more nodes (this node by default)."""
    filters = tasks.check(listing)
    me: list[str] = []
    with connect(ctx) as d:
        tasks.show(d, (cpb.ListTasksRequest(node_ref=resolve_ref(d, ref, me)) for ref in nodes or ["self"]), listing, filters)
