"""`swarmlet daemon`: run this host's daemon.

The only CLI module that imports swarmlet.node (import-linter allows exactly
these imports): the daemon's configuration is checked by the node's own rules
(node/config.py, DaemonConfig.validated), which this command only turns into
usage errors naming the flag. The imports happen inside the command so every
other command starts fast and works on machines without the daemon's
dependencies (docker, pysyncobj, pyroute2).
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from typing import Annotated

import typer

from swarmlet.cli.client import CLIError, handle_errors
from swarmlet.cli.options import AdvertiseAddrOpt, parsed
from swarmlet.cli.parse import parse_duration


@handle_errors
def daemon(
    state_dir: Annotated[
        str, typer.Option("--state-dir", metavar="DIR", help="Where the node keeps its state.")
    ] = "/var/lib/swarmlet",
    socket_: Annotated[
        str, typer.Option("--socket", metavar="PATH", help="Unix socket for the CLI.")
    ] = "/run/swarmlet/swarmlet.sock",
    docker_host: Annotated[
        str, typer.Option("--docker-host", metavar="URL", help="Docker engine to run tasks on.")
    ] = "unix:///var/run/docker.sock",
    advertise_addr: AdvertiseAddrOpt = None,
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
    node_generic_resource: Annotated[
        list[str] | None,
        typer.Option(
            "--node-generic-resource",
            metavar="KIND=VALUE",
            help="A user-defined resource this node offers to services' --generic-resource: "
            "a count (gpu=2) or one named unit (gpu=GPU-1); repeatable.",
        ),
    ] = None,
    metrics_addr: Annotated[
        str,
        typer.Option(
            "--metrics-addr",
            metavar="HOST:PORT",
            help="Serve Prometheus metrics at http://HOST:PORT/metrics (default: off).",
        ),
    ] = "",
    event_history: Annotated[
        int,
        typer.Option(
            "--event-history",
            metavar="N",
            min=0,
            help="Events a manager keeps for `events --since` and for resuming streams (0: none).",
        ),
    ] = 10_000,
    min_cert_expiry: Annotated[
        str,
        typer.Option(
            "--min-cert-expiry",
            metavar="DURATION",
            hidden=True,
            help="Shortest node certificate lifetime 'cluster update --cert-expiry' accepts here (default 1h; for tests).",
        ),
    ] = "1h",
    docker_api_socket: Annotated[
        str,
        typer.Option(
            "--docker-api-socket",
            metavar="PATH",
            help="Serve Docker's Engine API (v1.41, swarm objects only) on this unix socket, for the docker CLI "
            "and docker-py (managers answer; default: off).",
        ),
    ] = "",
) -> None:
    """Run the swarmlet daemon (agent, and manager once the node is one)."""
    # Imported here, not at the top: every other command would otherwise pay
    # for loading the whole daemon (grpc server, pysyncobj, docker SDK).
    try:
        from swarmlet.node.config import ConfigError, DaemonConfig, parse_election_timeout
        from swarmlet.node.daemon import run_daemon
    except ImportError as e:
        raise CLIError(f"the daemon cannot start: {e}") from None
    min_expiry = parsed(parse_duration, min_cert_expiry, "--min-cert-expiry")
    try:
        e_min, e_max = parse_election_timeout(election_timeout)
        cfg = DaemonConfig(
            state_dir=state_dir,
            socket=socket_,
            docker_host=docker_host,
            advertise_addr=advertise_addr or "",
            join_port=listen_port,
            raft_port=raft_port,
            api_port=api_port,
            log_level=log_level,
            election_timeout_min=e_min,
            election_timeout_max=e_max,
            leader_fallback_timeout=leader_fallback,
            node_generic_resources=tuple(node_generic_resource or ()),
            metrics_addr=metrics_addr,
            event_history=event_history,
            min_cert_expiry=min_expiry,
            docker_api_socket=docker_api_socket,
        ).validated()
    except ConfigError as e:
        raise typer.BadParameter(str(e), param_hint=e.option) from None
    if os.environ.get(NO_EXEC_ENV) or not _started_as_swarmlet():
        raise typer.Exit(run_daemon(cfg) or 0)
    # The daemon runs for months: it should not carry the CLI's libraries
    # (typer, and the pydantic typer uses: ~9 MB; issue 15). Same pid, the
    # flags checked above handed over in the environment.
    env = dict(os.environ, **{CONFIG_ENV: json.dumps(dataclasses.asdict(cfg))})
    env.setdefault("MALLOC_ARENA_MAX", "2")  # a threaded daemon's arenas (~3 MB)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, "-m", "swarmlet.node", "swarmlet", *sys.argv[1:]], env)


# The environment variable that carries the checked configuration to
# `python -m swarmlet.node` (node/__main__.py), and one that keeps the daemon
# in this process instead (tests).
CONFIG_ENV = "SWARMLET_DAEMON_CONFIG"
NO_EXEC_ENV = "SWARMLET_DAEMON_NO_EXEC"


def _started_as_swarmlet() -> bool:
    """Whether this process is the `swarmlet` program (console script or
    `python -m swarmlet`), not a host that runs the CLI in-process (tests):
    only then may the daemon command replace the process."""
    argv = sys.orig_argv
    return argv[1:3] == ["-m", "swarmlet"] or (len(argv) > 1 and os.path.basename(argv[1]) == "swarmlet")


def register(app: typer.Typer) -> None:
    app.command("daemon")(daemon)
