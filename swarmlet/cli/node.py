"""`swarmlet node ...`: list, inspect, update, remove nodes and list their tasks."""

from __future__ import annotations

import time
from typing import Annotated

import typer

from swarmlet.api import control_pb2 as cpb
from swarmlet.api import objects_pb2 as pb
from swarmlet.cli.client import CLIError, Daemon, connect, fail, handle_errors
from swarmlet.cli.output import (
    NODE_HEADERS,
    filter_tasks,
    format_node_pretty,
    format_table,
    format_task_list,
    node_rows,
    to_json,
)
from swarmlet.cli.parse import parse_kv, parse_task_filters

app = typer.Typer(help="Manage swarm nodes.", no_args_is_help=True)

FormatOpt = Annotated[str | None, typer.Option("--format", metavar="json", help="'json' for machine-readable output.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Only display IDs.")]

_AVAILABILITY = {
    "active": pb.NodeSpec.ACTIVE,
    "pause": pb.NodeSpec.PAUSE,
    "drain": pb.NodeSpec.DRAIN,
}


def check_format(fmt: str | None) -> None:
    if fmt not in (None, "json"):
        raise typer.BadParameter(f"unsupported format {fmt!r}: only 'json' is supported", param_hint="--format")


def self_id(d: Daemon) -> str:
    """This daemon's node id, for "self" and the '*' marker."""
    info = d.call(d.stub.Info, cpb.InfoRequest())
    if not info.node_id:
        raise CLIError("this node is not part of a swarm")
    return info.node_id


def resolve_ref(d: Daemon, ref: str, cached_self: list[str]) -> str:
    if ref != "self":
        return ref
    if not cached_self:
        cached_self.append(self_id(d))
    return cached_self[0]


@app.command("ls")
@handle_errors
def ls(ctx: typer.Context, quiet: QuietOpt = False, fmt: FormatOpt = None) -> None:
    """List nodes in the swarm."""
    check_format(fmt)
    with connect(ctx) as d:
        resp = d.call(d.stub.ListNodes, cpb.ListNodesRequest())
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
    pretty: Annotated[bool, typer.Option("--pretty", help="Human-readable output.")] = False,
) -> None:
    """Display detailed information on one or more nodes (JSON by default)."""
    check_format(fmt)
    if pretty and fmt:
        raise typer.BadParameter("--pretty and --format cannot be combined", param_hint="--pretty")
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
            typer.echo("\n\n".join(format_node_pretty(n, leader_id) for n in found))
    else:
        typer.echo(to_json(found))
    if errors:
        for e in errors[:-1]:
            typer.echo(f"Error: {e}", err=True)
        raise fail(errors[-1])


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
) -> None:
    """Update a node's availability or labels."""
    req = cpb.UpdateNodeRequest()
    if availability is not None:
        value = _AVAILABILITY.get(availability.lower())
        if value is None:
            raise typer.BadParameter(f"{availability!r} is not one of active, pause, drain", param_hint="--availability")
        req.set_availability = True
        req.availability = value
    for item in label_add or []:
        try:
            k, v = parse_kv(item, what="label")
        except ValueError as e:
            raise typer.BadParameter(str(e), param_hint="--label-add") from None
        req.label_add[k] = v
    for key in label_rm or []:
        if not key or "=" in key:
            raise typer.BadParameter(f"invalid label key {key!r}", param_hint="--label-rm")
        req.label_rm.append(key)
    if not (req.set_availability or req.label_add or req.label_rm):
        raise typer.BadParameter("nothing to update: use --availability, --label-add or --label-rm")
    with connect(ctx) as d:
        req.ref = resolve_ref(d, node_ref, [])
        d.call(d.stub.UpdateNode, req)
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
    if errors:
        for e in errors[:-1]:
            typer.echo(f"Error: {e}", err=True)
        raise fail(errors[-1])


def _change_role(ctx: typer.Context, nodes: list[str], role: int, force: bool, verb: str) -> None:
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
    if errors:
        for e in errors[:-1]:
            typer.echo(f"Error: {e}", err=True)
        raise fail(errors[-1])


@app.command("promote")
@handle_errors
def promote(ctx: typer.Context, nodes: Annotated[list[str], typer.Argument(metavar="NODE")]) -> None:
    """Promote one or more nodes to manager in the swarm."""
    _change_role(ctx, nodes, pb.NodeSpec.MANAGER, False, "promote")


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
    _change_role(ctx, nodes, pb.NodeSpec.WORKER, force, "demote")


@app.command("ps")
@handle_errors
def ps(
    ctx: typer.Context,
    nodes: Annotated[list[str] | None, typer.Argument(metavar="NODE", help="Nodes to list tasks of (default: self).")] = None,
    filters: Annotated[
        list[str] | None,
        typer.Option("--filter", "-f", metavar="KEY=VALUE", help="desired-state=, id=, name=, node=; repeatable."),
    ] = None,
    no_trunc: Annotated[bool, typer.Option("--no-trunc", help="Do not truncate output.")] = False,
    quiet: QuietOpt = False,
    fmt: FormatOpt = None,
) -> None:
    """List tasks running on one or more nodes (this node by default)."""
    check_format(fmt)
    try:
        parsed = parse_task_filters(filters or [])
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--filter") from None
    tasks: dict[str, pb.Task] = {}
    names: dict[str, str] = {}
    me: list[str] = []
    with connect(ctx) as d:
        for ref in nodes or ["self"]:
            resp = d.call(d.stub.ListTasks, cpb.ListTasksRequest(node_ref=resolve_ref(d, ref, me)))
            names.update(resp.node_names)
            for t in resp.tasks:
                tasks[t.id] = t
    selected = filter_tasks(tasks.values(), parsed, names)
    text = format_task_list(selected, names, time.time(), fmt=fmt, quiet=quiet, no_trunc=no_trunc)
    if text:
        typer.echo(text)
