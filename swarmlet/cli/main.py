"""`swarmlet`: the typer application, its global options, and the commands of
every noun registered on it. Each noun lives in its own module (swarm, cluster,
daemon, node, service, network, stack); none of them imports this one."""

from __future__ import annotations

from typing import Annotated

import typer

from swarmlet.cli import ca, cluster, daemon, events, image, network, node, secret, security, service, stack, swarm
from swarmlet.cli.client import DEFAULT_HOST, HOST_ENV, GlobalOptions, socket_path

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


daemon.register(app)
swarm.register(app)
events.register(app)
ca.register(app)  # issue 13, part A
security.register(app)  # issue 13, part B
app.add_typer(cluster.app, name="cluster")
app.add_typer(node.app, name="node")
app.add_typer(service.app, name="service")
app.add_typer(network.app, name="network")
app.add_typer(image.app, name="image")
app.add_typer(secret.secret_app, name="secret")
app.add_typer(secret.config_app, name="config")
app.add_typer(stack.app, name="stack")


def main() -> None:
    app(prog_name="swarmlet")
