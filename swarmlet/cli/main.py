"""`swarmlet`: the typer application, its global options, and the commands of
every noun. Each noun lives in its own module (swarm, cluster, daemon, node,
service, network, stack); none of them imports this one.

The nouns are loaded only when used (issue 15: scripts call the CLI in loops).
`swarmlet --help` lists them from the table below without importing any of
them (nor grpc, nor the generated API modules); `swarmlet node ls` imports
the node module alone. tests/unit/cli/test_main.py checks that the table's
words are the commands' own.
"""

from __future__ import annotations

import importlib
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from swarmlet.cli import coercion
from swarmlet.cli.host import DEFAULT_HOST, HOST_ENV, GlobalOptions, socket_path

# Plain option values are coerced without pydantic (coercion.py): before any
# command, this one's -H included, parses a value.
coercion.install()

# name -> (module, short help), in the order `--help` lists them. A module
# with `register(app)` adds top-level commands; one with `app` is a noun;
# "module:attr" names a noun's typer app when it is not `app`.
COMMANDS: dict[str, tuple[str, str]] = {
    "daemon": ("swarmlet.cli.daemon", "Run the swarmlet daemon (agent, and manager once the node is one)."),
    "init": ("swarmlet.cli.swarm", "Initialize a swarm with this node as its first manager."),
    "join": ("swarmlet.cli.swarm", "Join a swarm as a worker or a manager (the token decides)."),
    "join-token": ("swarmlet.cli.swarm", "Show (or rotate) the join token for workers or managers."),
    "leave": ("swarmlet.cli.swarm", "Leave the swarm."),
    "info": ("swarmlet.cli.swarm", "Show this node's view of the swarm."),
    "cluster": ("swarmlet.cli.cluster", "Cluster-wide operations: settings, backup and restore, secrets."),
    "node": ("swarmlet.cli.node", "Manage swarm nodes."),
    "service": ("swarmlet.cli.service", "Manage swarm services."),
    "network": ("swarmlet.cli.network", "Manage overlay networks."),
    "image": ("swarmlet.cli.image", "Manage images across the swarm's nodes."),
    "secret": (
        "swarmlet.cli.secret:secret_app",
        "Manage secrets: credentials services receive as files, kept in memory on nodes.",
    ),
    "config": ("swarmlet.cli.secret:config_app", "Manage configs: files services receive, not secret."),
    "events": ("swarmlet.cli.events", "Stream the cluster's events (from the replicated state, on any node)."),
    "ca": ("swarmlet.cli.ca", "Display or rotate the root CA (on a manager)."),  # issue 13, part A
    "unlock": ("swarmlet.cli.security", "Unlock a locked manager (autolock) with the swarm's unlock key."),  # issue 13, part B
    "unlock-key": ("swarmlet.cli.security", "Show (or rotate) the swarm's unlock key."),
    "stack": ("swarmlet.cli.stack", "Manage stacks (applications described by Compose files)."),
}


def load_command(name: str) -> Any:
    """The click command `name`, from its module (imported now)."""
    module_name, _, attr = COMMANDS[name][0].partition(":")
    module = importlib.import_module(module_name)
    if attr:  # a noun whose typer app has another name than `app`
        return typer.main.get_command(getattr(module, attr))
    if hasattr(module, "register"):
        sub = typer.Typer()
        module.register(sub)
        group = typer.main.get_group(sub)
        return group.commands[name]
    return typer.main.get_command(module.app)


class LazyGroup(TyperGroup):
    """The root group: commands come from COMMANDS, imported on first use."""

    def list_commands(self, ctx: Any) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            cmd = load_command(cmd_name)
            cmd.name = cmd_name
            self.commands[cmd_name] = cmd
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, help_) for name, (_, help_) in COMMANDS.items()])


app = typer.Typer(
    name="swarmlet",
    cls=LazyGroup,
    help="swarmlet: a Docker-Swarm-like container orchestrator.",
    no_args_is_help=True,
    add_completion=False,
    # Plain help for the root: rich would format (and so import) every command.
    rich_markup_mode=None,
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


def main() -> None:
    app(prog_name="swarmlet")
