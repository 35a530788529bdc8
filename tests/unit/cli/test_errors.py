"""The CLI against no daemon and with bad flags: one clear line, non-zero exit, no
traceback."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from swarmlet.cli.main import app

runner = CliRunner()


def _flat(text: str) -> str:
    """Rich draws usage errors in a box that wraps lines: compare on plain words."""
    return re.sub(r"\s+", " ", re.sub(r"[│╭╮╰╯─]", " ", text)).strip()


def _invoke(args: list[str], host: str | None = None) -> Result:
    env = {"SWARMLET_HOST": host} if host else {}
    return runner.invoke(app, args, env=env)


def _assert_clean(result: Result) -> None:
    assert "Traceback" not in result.output
    # SystemExit is how typer exits; anything else escaped a command
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)


@pytest.fixture
def no_daemon(tmp_path: Path) -> str:
    return f"unix://{tmp_path}/missing.sock"


DAEMON_COMMANDS = [
    ["info"],
    ["init"],
    ["join", "--token", "SWMTKN-x", "10.0.0.1:4242"],
    ["join-token", "worker"],
    ["leave"],
    ["node", "ls"],
    ["node", "inspect", "n1"],
    ["node", "ps"],
    ["node", "rm", "n1"],
    ["node", "update", "--availability", "drain", "n1"],
    ["service", "ls"],
    ["service", "ps", "web"],
    ["service", "inspect", "web"],
    ["service", "rm", "web"],
    ["service", "scale", "-d", "web=2"],
    ["service", "logs", "web"],
    ["service", "create", "-d", "--name", "web", "nginx"],
]


@pytest.mark.parametrize("args", DAEMON_COMMANDS, ids=lambda a: " ".join(a[:2]))
def test_no_daemon_is_one_clear_line(args: list[str], no_daemon: str) -> None:
    result = _invoke(args, host=no_daemon)
    _assert_clean(result)
    assert result.exit_code == 1
    assert result.stderr.strip() == (f"Error: Cannot connect to the swarmlet daemon at {no_daemon}: is the daemon running?")


def test_socket_without_listener(tmp_path: Path) -> None:
    path = tmp_path / "dead.sock"
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(path))  # exists, but nobody accepts
    try:
        result = _invoke(["-H", f"unix://{path}", "service", "ls"])
    finally:
        s.close()
    _assert_clean(result)
    assert result.exit_code == 1
    assert "Cannot connect to the swarmlet daemon" in result.stderr


@pytest.mark.parametrize("host", ["tcp://10.0.0.1:4242", "http://localhost", "ssh://h", "/run/x.sock", "unix://"])
def test_unsupported_host(host: str) -> None:
    result = _invoke(["-H", host, "info"])
    _assert_clean(result)
    assert result.exit_code == 2
    assert "unix://" in _flat(result.output)


def test_unsupported_host_from_environment() -> None:
    result = _invoke(["node", "ls"], host="tcp://10.0.0.1:2375")
    _assert_clean(result)
    assert result.exit_code == 2
    assert "only unix:// sockets are supported" in _flat(result.output)


BAD_FLAGS = [
    (["service", "create", "--replicas", "2", "--mode", "global", "nginx"], "--mode global"),
    (["service", "create", "--mode", "daemonset", "nginx"], "replicated, global"),
    (["service", "create", "--reserve-memory", "12Q", "nginx"], "invalid size '12Q'"),
    (["service", "create", "--limit-memory", "lots", "nginx"], "invalid size"),
    (["service", "create", "--reserve-cpu", "half", "nginx"], "invalid CPU count"),
    (["service", "create", "--reserve-cpu", "2", "--limit-cpu", "1", "nginx"], "must not exceed --limit-cpu"),
    (["service", "create", "--restart-delay", "5", "nginx"], "missing unit"),
    (["service", "create", "--stop-grace-period", "soon", "nginx"], "invalid duration"),
    (["service", "create", "--restart-condition", "always", "nginx"], "none, on-failure, any"),
    (["service", "create", "--constraint", "node.role=worker", "nginx"], "invalid constraint"),
    (["service", "create", "--constraint", "node.colour==red", "nginx"], "unknown key"),
    (["service", "create", "--no-healthcheck", "--health-cmd", "true", "nginx"], "conflicts"),
    (["service", "create", "--env", "=x", "nginx"], "invalid environment variable"),
    (["service", "create", "--label", "=x", "nginx"], "invalid label"),
    (["service", "create", "--replicas", "-1", "nginx"], "--replicas"),
    (["service", "create", "--replicas", "many", "nginx"], "--replicas"),
    (["service", "create", "--timeout", "forever", "nginx"], "invalid duration"),
    (["service", "create", "--name", "web"], "IMAGE"),
    (["service", "scale", "web"], "SERVICE=REPLICAS"),
    (["service", "scale", "web=two"], "not a whole number"),
    (["service", "ps", "-f", "colour=red", "web"], "supported filters"),
    (["service", "ls", "--format", "yaml"], "only 'json'"),
    (["service", "logs", "--tail", "some", "web"], "--tail"),
    (["service", "inspect", "--pretty", "--format", "json", "web"], "cannot be combined"),
    (["node", "update", "n1"], "nothing to update"),
    (["node", "update", "--availability", "sleep", "n1"], "active, pause, drain"),
    (["node", "update", "--label-add", "=v", "n1"], "invalid label"),
    (["node", "ps", "-f", "desired-state=dreaming"], "desired-state"),
    (["node", "ls", "--format", "table"], "only 'json'"),
    (["join", "--token", "t", "10.0.0.1:99999"], "invalid port"),
    (["join", "--token", "t", "tcp://10.0.0.1:4242"], "without a scheme"),
    (["join", "10.0.0.1:4242"], "join token is required"),
    (["join", "--token", "t"], "HOST:PORT"),
    (["join-token", "admin"], "worker or manager"),
    (["init", "--listen-port", "70000"], "--listen-port"),
    (["info", "--format", "yaml"], "only 'json'"),
    (["daemon", "--log-level", "loud"], "--log-level"),
    (["daemon", "--listen-port", "4243"], "must differ"),
    (["daemon", "--election-timeout", "soon"], "is not MIN:MAX"),
    (["daemon", "--election-timeout", "0.8:0.4"], "--election-timeout"),
    (["daemon", "--advertise-addr", "not-an-ip-or-iface"], "invalid advertise address"),
    (["service", "frobnicate"], "No such command"),
    (["service", "create", "--bogus", "nginx"], "No such option"),
]


@pytest.mark.parametrize("args,message", BAD_FLAGS, ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_bad_flags_are_usage_errors(args: list[str], message: str, no_daemon: str) -> None:
    result = _invoke(args, host=no_daemon)
    _assert_clean(result)
    assert result.exit_code == 2, result.output
    assert message in _flat(result.output)
    # rejected before any connection attempt
    assert "Cannot connect" not in result.output


def test_create_passes_command_flags_to_the_container(no_daemon: str) -> None:
    # "-c" and "--version" belong to the container's command, not to swarmlet: the
    # command gets as far as connecting to the (missing) daemon.
    result = _invoke(["service", "create", "-d", "--name", "x", "alpine", "sh", "-c", "echo hi --version"], host=no_daemon)
    _assert_clean(result)
    assert result.exit_code == 1
    assert "Cannot connect" in result.stderr


def test_help_works() -> None:
    for args in (["--help"], ["service", "create", "--help"], ["node", "--help"], ["daemon", "--help"]):
        result = _invoke(args)
        assert result.exit_code == 0, (args, result.output)
    text = _flat(_invoke(["service", "create", "--help"]).output)
    for flag in ("--reserve-memory", "--constraint", "--restart-condition", "--health-cmd", "--detach"):
        assert flag in text
    assert "--timeout" not in text  # hidden


def test_no_args_shows_help() -> None:
    result = _invoke([])
    assert "Usage" in result.output
    assert "Traceback" not in result.output


def test_python_dash_m_swarmlet() -> None:
    proc = subprocess.run([sys.executable, "-m", "swarmlet", "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "service" in proc.stdout and "join-token" in proc.stdout


def test_daemon_command_builds_config(monkeypatch: pytest.MonkeyPatch) -> None:
    from swarmlet.node import daemon as node_daemon
    from swarmlet.node.config import DaemonConfig

    seen: list[DaemonConfig] = []

    def run_daemon(cfg: DaemonConfig) -> int:
        seen.append(cfg)
        return 3

    monkeypatch.setattr(node_daemon, "run_daemon", run_daemon)
    result = _invoke(
        [
            "daemon",
            "--state-dir",
            "/tmp/s",
            "--socket",
            "/tmp/s.sock",
            "--advertise-addr",
            "10.1.2.3",
            "--raft-port",
            "5243",
            "--log-level",
            "DEBUG",
            "--election-timeout",
            "0.5:1",
        ]
    )
    assert result.exit_code == 3, result.output
    [cfg] = seen
    assert (cfg.state_dir, cfg.socket, cfg.docker_host) == ("/tmp/s", "/tmp/s.sock", "unix:///var/run/docker.sock")
    assert (cfg.advertise_addr, cfg.join_port, cfg.raft_port, cfg.api_port) == ("10.1.2.3", 4242, 5243, 4244)
    assert cfg.log_level == "debug"  # checked and normalised by the node's own rules
    assert (cfg.election_timeout_min, cfg.election_timeout_max, cfg.leader_fallback_timeout) == (0.5, 1.0, 1.5)
    assert cfg == cfg.validated()
