"""The daemon's configuration rules (DaemonConfig.validated)."""

from __future__ import annotations

import dataclasses
import socket

import pytest

from swarmlet import errors
from swarmlet.node.config import ConfigError, DaemonConfig, parse_election_timeout


def cfg(**kw: object) -> DaemonConfig:
    return DaemonConfig(**{"advertise_addr": "10.1.2.3", **kw})  # type: ignore[arg-type]


def test_defaults_validate_and_fill_in_the_host() -> None:
    c = cfg(log_level="DEBUG").validated()
    assert c.log_level == "debug"
    assert c.hostname == socket.gethostname()
    assert c.advertise_addr == "10.1.2.3"
    assert c.validated() == c  # idempotent: run_daemon validates what the CLI validated


def test_raft_timings_carry_the_election_window() -> None:
    t = cfg(election_timeout_min=1.0, election_timeout_max=2.0, leader_fallback_timeout=3.0).validated().raft_timings()
    assert (t.raft_min_timeout, t.raft_max_timeout, t.leader_fallback_timeout) == (1.0, 2.0, 3.0)


@pytest.mark.parametrize(
    ("kw", "option", "text"),
    [
        ({"log_level": "loud"}, "--log-level", "'loud' is not one of debug, info, warning, error, critical"),
        ({"api_port": 4242}, "--listen-port", "--listen-port, --api-port and --raft-port must differ"),
        ({"raft_port": 0}, "--raft-port", "port 0 is not in 1-65535"),
        ({"election_timeout_min": 0.05}, "--election-timeout", "must exceed 3 x append period"),
        ({"election_timeout_min": 1.0, "election_timeout_max": 0.5}, "--election-timeout", "max must be >= min"),
        ({"leader_fallback_timeout": 0.01}, "--election-timeout", "leader fallback timeout"),
        ({"advertise_addr": "::1"}, "--advertise-addr", "expected an IPv4 address"),
        ({"metrics_addr": "9323"}, "--metrics-addr", "is not HOST:PORT"),
        ({"metrics_addr": "0.0.0.0:http"}, "--metrics-addr", "is not a port number"),
        ({"metrics_addr": "0.0.0.0:70000"}, "--metrics-addr", "port 70000 is not in 1-65535"),
        ({"metrics_addr": "localhost:9323"}, "--metrics-addr", "is not an IPv4 address"),
        ({"event_history": -1}, "--event-history", "is negative"),
        ({"advertise_addr": "no-such-if0"}, "--advertise-addr", "expected an IP address or a network interface name"),
    ],
)
def test_bad_settings_name_their_option(kw: dict[str, object], option: str, text: str) -> None:
    with pytest.raises(ConfigError) as e:
        cfg(**kw).validated()
    assert e.value.option == option
    assert text in str(e.value)
    assert isinstance(e.value, errors.Invalid)


def test_empty_advertise_address_is_discovered(monkeypatch: pytest.MonkeyPatch) -> None:
    from swarmlet.node import addresses

    monkeypatch.setattr(addresses, "default_advertise_addr", lambda: "192.0.2.7")
    assert cfg(advertise_addr="").validated().advertise_addr == "192.0.2.7"
    monkeypatch.setattr(addresses, "default_advertise_addr", lambda: None)
    with pytest.raises(ConfigError, match="no non-loopback IPv4 address found: pass --advertise-addr"):
        cfg(advertise_addr="").validated()


def test_config_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg().advertise_addr = "10.9.9.9"  # type: ignore[misc]


@pytest.mark.parametrize(("text", "window"), [("0.4:0.8", (0.4, 0.8)), ("1", (1.0, 1.0)), ("2:3.5", (2.0, 3.5))])
def test_election_timeout_grammar(text: str, window: tuple[float, float]) -> None:
    assert parse_election_timeout(text) == window


@pytest.mark.parametrize("text", ["", "a:b", ":0.8", "1:2:3"])
def test_bad_election_timeout(text: str) -> None:
    with pytest.raises(ConfigError, match="is not MIN:MAX in seconds") as e:
        parse_election_timeout(text)
    assert e.value.option == "--election-timeout"
