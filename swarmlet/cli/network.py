"""`swarmlet network ...`: create, list, inspect and remove overlay networks;
and the parsing of the networking flags of `service create`."""

from __future__ import annotations

from typing import Annotated

import typer

from swarmlet.api import control_pb2 as cpb
from swarmlet.api import objects_pb2 as pb
from swarmlet.cli.client import CLIError, connect, fail, handle_errors
from swarmlet.cli.output import format_table, to_json, trunc_id
from swarmlet.cli.parse import parse_kv

app = typer.Typer(help="Manage overlay networks.", no_args_is_help=True)

FormatOpt = Annotated[str | None, typer.Option("--format", metavar="json", help="'json' for machine-readable output.")]


def _check_format(fmt: str | None) -> None:
    if fmt not in (None, "json"):
        raise typer.BadParameter(f"unsupported format {fmt!r}: only 'json' is supported", param_hint="--format")


# ---- service flags (pure: unit-tested) ----

_PROTOCOLS = {"tcp": pb.PortConfig.TCP, "udp": pb.PortConfig.UDP}
_PUBLISH_MODES = {"ingress": pb.PortConfig.INGRESS, "host": pb.PortConfig.HOST}
_ENDPOINT_MODES = {"vip": pb.EndpointSpec.VIP, "dnsrr": pb.EndpointSpec.DNSRR}


def _port_number(text: str, what: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise ValueError(f"{what} {text!r} is not a number") from None
    if not 1 <= n <= 65535:
        raise ValueError(f"{what} {n} out of range (1-65535)")
    return n


def parse_publish(text: str) -> pb.PortConfig:
    """`published=8080,target=80[,protocol=udp][,mode=host]` or the short
    `8080:80[/udp]`. Raises ValueError naming the problem."""
    p = pb.PortConfig()
    if "=" in text:
        seen: set[str] = set()
        for part in text.split(","):
            k, sep, v = part.partition("=")
            k = k.strip().lower()
            if not sep or not v:
                raise ValueError(f"invalid field {part!r}: expected KEY=VALUE")
            if k in seen:
                raise ValueError(f"{k} given twice")
            seen.add(k)
            if k == "published":
                p.published_port = _port_number(v, "published port")
            elif k == "target":
                p.target_port = _port_number(v, "target port")
            elif k == "protocol":
                if v.lower() not in _PROTOCOLS:
                    raise ValueError(f"protocol {v!r}: use tcp or udp")
                p.protocol = _PROTOCOLS[v.lower()]
            elif k == "mode":
                if v.lower() not in _PUBLISH_MODES:
                    raise ValueError(f"mode {v!r}: use ingress or host")
                p.publish_mode = _PUBLISH_MODES[v.lower()]
            else:
                raise ValueError(f"unknown field {k!r}: use published, target, protocol, mode")
        if "target" not in seen:
            raise ValueError("target=PORT is required")
        if "published" not in seen:
            raise ValueError("published=PORT is required (swarmlet does not pick published ports)")
        return p
    ports, _, proto = text.partition("/")
    if proto:
        if proto.lower() not in _PROTOCOLS:
            raise ValueError(f"protocol {proto!r}: use tcp or udp")
        p.protocol = _PROTOCOLS[proto.lower()]
    published, sep, target = ports.partition(":")
    if not sep:
        raise ValueError(f"invalid port {text!r}: expected PUBLISHED:TARGET[/PROTOCOL] or published=,target=")
    p.published_port = _port_number(published, "published port")
    p.target_port = _port_number(target, "target port")
    return p


def apply_networking(spec: pb.ServiceSpec, networks: list[str], endpoint_mode: str | None, publish: list[str]) -> None:
    """Adds the networking flags to a spec; typer.BadParameter names the flag."""
    for n in networks:
        if not n.strip():
            raise typer.BadParameter("empty network name", param_hint="--network")
        spec.networks.add(target=n.strip())
    if endpoint_mode is not None:
        mode = _ENDPOINT_MODES.get(endpoint_mode.lower())
        if mode is None:
            raise typer.BadParameter(f"{endpoint_mode!r} is not one of vip, dnsrr", param_hint="--endpoint-mode")
        spec.endpoint.mode = mode
    for item in publish:
        try:
            spec.endpoint.ports.append(parse_publish(item))
        except ValueError as e:
            raise typer.BadParameter(str(e), param_hint="--publish") from None


# ---- commands ----


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
        try:
            k, v = parse_kv(item, what="label")
        except ValueError as e:
            raise typer.BadParameter(str(e), param_hint="--label") from None
        spec.labels[k] = v
    with connect(ctx) as d:
        net = d.call(d.stub.CreateNetwork, cpb.CreateNetworkRequest(spec=spec)).network
    typer.echo(net.id)


NETWORK_HEADERS = ["NETWORK ID", "NAME", "DRIVER", "SCOPE", "SUBNET", "VNI"]


def network_rows(nets: list[pb.Network]) -> list[list[str]]:
    return [
        [
            trunc_id(n.id),
            n.spec.name,
            n.spec.driver or "overlay",
            "swarm",
            n.subnet or (f"(error: {n.error})" if n.error else "(allocating)"),
            str(n.vni or ""),
        ]
        for n in nets
    ]


@app.command("ls")
@handle_errors
def ls(
    ctx: typer.Context,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only display IDs.")] = False,
    fmt: FormatOpt = None,
) -> None:
    """List networks."""
    _check_format(fmt)
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
    if errors:
        for e in errors[:-1]:
            typer.echo(f"Error: {e}", err=True)
        raise fail(errors[-1])


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
    if errors:
        for e in errors[:-1]:
            typer.echo(f"Error: {e}", err=True)
        raise fail(errors[-1])
