"""Which daemon the CLI talks to (the -H/--host option and SWARMLET_HOST),
apart from the gRPC client (client.py) so that `swarmlet --help` need not
load grpc (issue 15: CLI start-up)."""

from __future__ import annotations

import os
from dataclasses import dataclass

import typer

DEFAULT_HOST = "unix:///run/swarmlet/swarmlet.sock"
HOST_ENV = "SWARMLET_HOST"


def socket_path(host: str) -> str:
    """ "unix:///run/swarmlet/swarmlet.sock" -> "/run/swarmlet/swarmlet.sock".
    Only unix sockets: the daemon never serves its CLI API over TCP (the network
    ports are mutual TLS between nodes), so any other scheme is a mistake."""
    scheme, sep, rest = host.partition("://")
    if not sep:
        raise ValueError(f"invalid host {host!r}: expected unix:///path/to/swarmlet.sock")
    if scheme.lower() != "unix":
        raise ValueError(f"unsupported host {host!r}: only unix:// sockets are supported (e.g. {DEFAULT_HOST})")
    if not rest:
        raise ValueError(f"invalid host {host!r}: missing socket path after unix://")
    return os.path.abspath(rest)


@dataclass
class GlobalOptions:
    host: str = DEFAULT_HOST


def global_options(ctx: typer.Context | None) -> GlobalOptions:
    """The root callback's options; falls back to the environment when a command is
    invoked without the root (e.g. a sub-app in a test)."""
    if ctx is not None:
        root = ctx.find_root()
        if isinstance(root.obj, GlobalOptions):
            return root.obj
    return GlobalOptions(host=os.environ.get(HOST_ENV) or DEFAULT_HOST)
