"""`swarmlet`: the typer application, its global options and the `daemon` command.

Cluster membership commands live in cluster.py, `node ...` in node.py and
`service ...` in service.py; this module wires them together.
"""

from __future__ import annotations

import fcntl
import ipaddress
import socket
import struct
from typing import Annotated

import typer

from swarmlet.cli import cluster, network, node, service
from swarmlet.cli.client import DEFAULT_HOST, HOST_ENV, CLIError, GlobalOptions, handle_errors, socket_path
from swarmlet.cli.parse import parse_ip

app = typer.Typer(
    name="swarmlet",
    help="swarmlet: a Docker-Swarm-like container orchestrator.",
    no_args_is_help=True,
    add_completion=False,
    # Expected errors are printed as one line by handle_errors; whatever escapes is a
    # bug, and local variables in its traceback could include join tokens.
    pretty_exceptions_show_locals=False,
)


def _check_host(value: str) -> str:
    try:
        socket_path(value)
    except ValueError as e:
        raise typer.BadParameter(str(e)) from None
    return value


@app.callback()
def root(
    ctx: typer.Context,
    host: Annotated[
        str,
        typer.Option(
            "-H",
            "--host",
            metavar="URL",
            envvar=HOST_ENV,
            help="Daemon socket to connect to (only unix:// is supported).",
            callback=_check_host,
        ),
    ] = DEFAULT_HOST,
) -> None:
    """swarmlet: a Docker-Swarm-like container orchestrator."""
    ctx.obj = GlobalOptions(host=host)


# ---- advertise address ---------------------------------------------------------------

_SIOCGIFFLAGS = 0x8913
_SIOCGIFADDR = 0x8915
_IFF_UP = 0x1
_IFF_LOOPBACK = 0x8
# Bridges and tunnels that Docker, libvirt, CNI or swarmlet's own overlays create: their
# addresses are host-local, so a peer could not reach us there.
_VIRTUAL_PREFIXES = (
    "docker",
    "br-",
    "veth",
    "virbr",
    "vxlan",
    "vx-",
    "cni",
    "flannel",
    "cali",
    "tun",
    "tap",
    "wg",
    "swl",
    "lxc",
    "kube",
)


def interface_ipv4(name: str) -> str | None:
    """The IPv4 address of an interface that is up and not loopback, else None.
    ioctl reads the kernel's state and sends nothing on the network."""
    req = struct.pack("256s", name.encode()[:15])
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            flags = struct.unpack_from("H", fcntl.ioctl(s.fileno(), _SIOCGIFFLAGS, req), 16)[0]
        except OSError:
            return None
        if not flags & _IFF_UP or flags & _IFF_LOOPBACK:
            return None
        try:
            res = fcntl.ioctl(s.fileno(), _SIOCGIFADDR, req)
        except OSError:  # EADDRNOTAVAIL: no IPv4 address on it
            return None
    return socket.inet_ntoa(res[20:24])


def default_advertise_addr() -> str | None:
    """The first non-loopback IPv4 address, preferring physical-looking interfaces
    (in kernel index order) over bridges/tunnels and link-local addresses."""
    try:
        names = [name for _, name in sorted(socket.if_nameindex())]
    except OSError:
        return None
    fallback: str | None = None
    for name in names:
        addr = interface_ipv4(name)
        if addr is None or ipaddress.IPv4Address(addr).is_loopback:
            continue
        virtual = name.startswith(_VIRTUAL_PREFIXES) or ipaddress.IPv4Address(addr).is_link_local
        if not virtual:
            return addr
        fallback = fallback or addr
    return fallback


def resolve_advertise_addr(text: str) -> str:
    """--advertise-addr accepts an IP address or, like Docker, an interface name."""
    try:
        return parse_ip(text)
    except ValueError:
        pass
    try:
        names = {name for _, name in socket.if_nameindex()}
    except OSError:
        names = set()
    if text in names:
        addr = interface_ipv4(text)
        if addr is None:
            raise ValueError(f"interface {text!r} is down or has no IPv4 address")
        return addr
    raise ValueError(f"invalid advertise address {text!r}: expected an IP address or a network interface name")


# ---- daemon --------------------------------------------------------------------------

_LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


@app.command("daemon")
@handle_errors
def daemon_cmd(
    state_dir: Annotated[
        str, typer.Option("--state-dir", metavar="DIR", help="Where the node keeps its state.")
    ] = "/var/lib/swarmlet",
    socket_: Annotated[
        str, typer.Option("--socket", metavar="PATH", help="Unix socket for the CLI.")
    ] = "/run/swarmlet/swarmlet.sock",
    docker_host: Annotated[
        str, typer.Option("--docker-host", metavar="URL", help="Docker engine to run tasks on.")
    ] = "unix:///var/run/docker.sock",
    advertise_addr: Annotated[
        str | None,
        typer.Option(
            "--advertise-addr",
            metavar="IP",
            help="IP (or interface) other nodes reach this one at (default: the first non-loopback IPv4 address).",
        ),
    ] = None,
    listen_port: Annotated[
        int, typer.Option("--listen-port", min=1, max=65535, metavar="PORT", help="Join / CA port (TLS).")
    ] = 4242,
    api_port: Annotated[
        int, typer.Option("--api-port", min=1, max=65535, metavar="PORT", help="Node API port (mutual TLS).")
    ] = 4244,
    raft_port: Annotated[int, typer.Option("--raft-port", min=1, max=65535, metavar="PORT", help="Raft port (managers).")] = 4243,
    log_level: Annotated[
        str, typer.Option("--log-level", metavar="LEVEL", help="debug, info, warning, error or critical.")
    ] = "info",
    election_timeout: Annotated[
        str,
        typer.Option(
            "--election-timeout",
            metavar="MIN:MAX",
            help="Raft election timeout window in seconds (managers): a follower that hears no leader for a random time in it starts an election.",
        ),
    ] = "0.4:0.8",
    leader_fallback: Annotated[
        float,
        typer.Option(
            "--leader-fallback-timeout",
            metavar="SECONDS",
            min=0.1,
            help="A leader that cannot reach a majority for this long steps down.",
        ),
    ] = 1.5,
) -> None:
    """Run the swarmlet daemon (agent, and manager once the node is one)."""
    level = log_level.lower()
    if level not in _LOG_LEVELS:
        raise typer.BadParameter(f"{log_level!r} is not one of {', '.join(_LOG_LEVELS)}", param_hint="--log-level")
    try:
        lo_s, _, hi_s = election_timeout.partition(":")
        e_min, e_max = float(lo_s), float(hi_s or lo_s)
    except ValueError:
        raise typer.BadParameter(f"{election_timeout!r} is not MIN:MAX in seconds", param_hint="--election-timeout") from None
    from swarmlet.manager.store import RaftTimings

    try:
        RaftTimings(raft_min_timeout=e_min, raft_max_timeout=e_max, leader_fallback_timeout=leader_fallback).validate()
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--election-timeout") from None
    if len({listen_port, api_port, raft_port}) != 3:
        raise typer.BadParameter("--listen-port, --api-port and --raft-port must differ")
    if advertise_addr is None:
        addr = default_advertise_addr()
        if addr is None:
            raise CLIError("no non-loopback IPv4 address found: pass --advertise-addr")
    else:
        try:
            addr = resolve_advertise_addr(advertise_addr)
        except ValueError as e:
            raise typer.BadParameter(str(e), param_hint="--advertise-addr") from None
    # Imported here so the CLI works on machines without the daemon's dependencies
    # (docker, pysyncobj, pyroute2) and every other command starts fast.
    try:
        from swarmlet.node.daemon import DaemonConfig, run_daemon
    except ImportError as e:
        raise CLIError(f"the daemon cannot start: {e}") from None
    cfg = DaemonConfig(
        state_dir=state_dir,
        socket=socket_,
        docker_host=docker_host,
        advertise_addr=addr,
        join_port=listen_port,
        raft_port=raft_port,
        api_port=api_port,
        log_level=level,
        election_timeout_min=e_min,
        election_timeout_max=e_max,
        leader_fallback_timeout=leader_fallback,
    )
    code = run_daemon(cfg)
    raise typer.Exit(code or 0)


cluster.register(app)
app.add_typer(node.app, name="node")
app.add_typer(service.app, name="service")
app.add_typer(network.app, name="network")


def main() -> None:
    app(prog_name="swarmlet")
