"""`swarmlet network ...`: create, list, inspect and remove overlay networks."""

from __future__ import annotations

from typing import Annotated

import typer

from swarmlet.api import control_pb2 as cpb
from swarmlet.api import objects_pb2 as pb
from swarmlet.cli.client import CLIError, connect, handle_errors, report_errors
from swarmlet.cli.options import FormatOpt, IdsOpt, check_format, parsed
from swarmlet.cli.output import NETWORK_HEADERS, format_table, network_rows, to_json
from swarmlet.cli.parse import parse_kv

app = typer.Typer(help="Manage overlay networks.", no_args_is_help=True)


@app.command("create")
@handle_errors
def create(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME")],
    driver: Annotated[str, typer.Option("--driver", "-d", metavar="DRIVER", help="Only 'overlay'.")] = "overlay",
    subnet: Annotated[
        str | None, typer.Option("--subnet", metavar="CIDR", help="Subnet (default: a /24 from the cluster's pool).")
    ] = None,
    gateway: Annotated[
        str | None, typer.Option("--gateway", metavar="IP", help="Gateway (default: the subnet's first address).")
    ] = None,
    attachable: Annotated[
        bool, typer.Option("--attachable", help="Allow standalone containers to attach (recorded only).")
    ] = False,
    label: Annotated[list[str] | None, typer.Option("--label", metavar="K=V", help="Network label; repeatable.")] = None,
) -> None:
    """Create an overlay network."""
    if driver != "overlay":
        raise typer.BadParameter(f"{driver!r}: only the overlay driver is supported", param_hint="--driver")
    spec = pb.NetworkSpec(name=name, driver=driver, subnet=subnet or "", gateway=gateway or "", attachable=attachable)
    for item in label or []:
        k, v = parsed(lambda text: parse_kv(text, what="label"), item, "--label")
        spec.labels[k] = v
    with connect(ctx) as d:
        net = d.call(d.stub.CreateNetwork, cpb.CreateNetworkRequest(spec=spec)).network
    typer.echo(net.id)


@app.command("ls")
@handle_errors
def ls(
    ctx: typer.Context,
    quiet: IdsOpt = False,
    fmt: FormatOpt = None,
) -> None:
    """List networks."""
    check_format(fmt)
    with connect(ctx) as d:
        resp = d.call(d.stub.ListNetworks, cpb.ListNetworksRequest())
    if fmt == "json":
        typer.echo(to_json(resp))
    elif quiet:
        for n in resp.networks:
            typer.echo(n.id)
    else:
        typer.echo(format_table(NETWORK_HEADERS, network_rows(list(resp.networks))))


@app.command("inspect")
@handle_errors
def inspect(
    ctx: typer.Context,
    networks: Annotated[list[str], typer.Argument(metavar="NETWORK", help="Network id, id prefix or name.")],
) -> None:
    """Subnet, VNI, and per-node peers and endpoints of networks (JSON)."""
    found = []
    errors: list[str] = []
    with connect(ctx) as d:
        for ref in networks:
            try:
                found.append(d.call(d.stub.GetNetwork, cpb.GetNetworkRequest(ref=ref)))
            except CLIError as e:
                errors.append(e.message)
    typer.echo(to_json(found))
    report_errors(errors)


@app.command("rm")
@handle_errors
def rm(
    ctx: typer.Context,
    networks: Annotated[list[str], typer.Argument(metavar="NETWORK")],
) -> None:
    """Remove networks (refused while a service uses one)."""
    errors: list[str] = []
    with connect(ctx) as d:
        for ref in networks:
            try:
                d.call(d.stub.RemoveNetwork, cpb.RemoveNetworkRequest(ref=ref))
                typer.echo(ref)
            except CLIError as e:
                errors.append(e.message)
    report_errors(errors)
