"""The daemon's configuration (its command line) and the rules it must obey.

`DaemonConfig.validated()` is the one check: the `daemon` command and
`run_daemon` both rely on it. A ConfigError names the command-line option it
is about, so the CLI can print it as a usage error for that option.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import socket
from dataclasses import dataclass

from swarmlet import errors
from swarmlet.api import objects_pb2 as pb
from swarmlet.core import generic as gen
from swarmlet.core import pki
from swarmlet.manager.events import DEFAULT_HISTORY
from swarmlet.manager.timings import RaftTimings
from swarmlet.node import addresses

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


class ConfigError(errors.Invalid):
    """A daemon setting is wrong; `option` is the command-line flag it comes from."""

    def __init__(self, message: str, option: str) -> None:
        super().__init__(message)
        self.option = option


@dataclass(frozen=True)
class DaemonConfig:
    state_dir: str = "/var/lib/swarmlet"
    socket: str = "/run/swarmlet/swarmlet.sock"
    docker_host: str = "unix:///var/run/docker.sock"
    # An IPv4 address or an interface name; empty: discovered (addresses.py).
    advertise_addr: str = ""
    join_port: int = 4242
    raft_port: int = 4243
    api_port: int = 4244
    log_level: str = "info"
    # Empty: the host's name.
    hostname: str = ""
    # Raft election timeout window and leader step-down (seconds); see
    # docs/operations.md ("Raft timing").
    election_timeout_min: float = 0.4
    election_timeout_max: float = 0.8
    leader_fallback_timeout: float = 1.5
    # --node-generic-resource KIND=COUNT or KIND=NAME (issue 11), as typed.
    node_generic_resources: tuple[str, ...] = ()

    # Issue 16: the Prometheus endpoint ("" = none) and how many events a
    # manager keeps for `swarmlet events --since` and resumes (0 = none).
    metrics_addr: str = ""
    event_history: int = DEFAULT_HISTORY

    # The shortest node certificate lifetime `cluster update --cert-expiry`
    # accepts on this manager (seconds): an hour, as in Swarm; tests lower it.
    min_cert_expiry: float = pki.MIN_CERT_EXPIRY

    # Issue 17: a unix socket serving Docker's Engine API for swarm objects
    # on a manager ("" = none; swarmlet/engineapi/).
    docker_api_socket: str = ""

    def generic_resources(self) -> list[pb.GenericResource]:
        """What this node advertises (checked by `validated`)."""
        return [gen.parse_node_resource(r) for r in self.node_generic_resources]

    def raft_timings(self) -> RaftTimings:
        return RaftTimings(
            raft_min_timeout=self.election_timeout_min,
            raft_max_timeout=self.election_timeout_max,
            leader_fallback_timeout=self.leader_fallback_timeout,
        )

    def validated(self) -> DaemonConfig:
        """A checked copy with the advertise address resolved to an IPv4
        address, the log level in lower case and the hostname filled in.
        Raises ConfigError. Calling it on its own result changes nothing."""
        level = self.log_level.lower()
        if level not in LOG_LEVELS:
            raise ConfigError(f"{self.log_level!r} is not one of {', '.join(LOG_LEVELS)}", "--log-level")
        for option, port in (("--listen-port", self.join_port), ("--raft-port", self.raft_port), ("--api-port", self.api_port)):
            if not 1 <= port <= 65535:
                raise ConfigError(f"port {port} is not in 1-65535", option)
        if len({self.join_port, self.api_port, self.raft_port}) != 3:
            raise ConfigError("--listen-port, --api-port and --raft-port must differ", "--listen-port")
        if not 1.0 <= self.min_cert_expiry <= pki.MIN_CERT_EXPIRY:
            raise ConfigError(f"must be between 1s and {pki.MIN_CERT_EXPIRY:g}s", "--min-cert-expiry")
        try:
            self.raft_timings().validate()
        except ValueError as e:
            raise ConfigError(str(e), "--election-timeout") from None
        if self.metrics_addr:
            try:
                parse_metrics_addr(self.metrics_addr)
            except ValueError as e:
                raise ConfigError(str(e), "--metrics-addr") from None
        if self.event_history < 0:
            raise ConfigError(f"{self.event_history} is negative (0 keeps no event history)", "--event-history")
        try:
            self.generic_resources()
        except gen.GenericResourceError as e:
            raise ConfigError(str(e), "--node-generic-resource") from None
        try:
            addr = addresses.choose_advertise_addr(self.advertise_addr)
        except errors.Invalid as e:
            raise ConfigError(str(e), "--advertise-addr") from None
        return dataclasses.replace(self, log_level=level, advertise_addr=addr, hostname=self.hostname or socket.gethostname())


def parse_election_timeout(text: str) -> tuple[float, float]:
    """`--election-timeout MIN:MAX` (or one number for both), in seconds."""
    try:
        lo, _, hi = text.partition(":")
        return float(lo), float(hi or lo)
    except ValueError:
        raise ConfigError(f"{text!r} is not MIN:MAX in seconds", "--election-timeout") from None


def parse_metrics_addr(text: str) -> tuple[str, int]:
    """ "HOST:PORT" (HOST an IPv4 address, empty or 0.0.0.0 for every
    address) -> (host, port). Raises ValueError naming what is wrong."""
    host, sep, port_text = text.rpartition(":")
    if not sep:
        raise ValueError(f"{text!r} is not HOST:PORT (e.g. 0.0.0.0:9323)")
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"{port_text!r} in {text!r} is not a port number") from None
    if not 1 <= port <= 65535:
        raise ValueError(f"port {port} is not in 1-65535")
    host = host or "0.0.0.0"
    try:
        ipaddress.IPv4Address(host)
    except ValueError:
        raise ValueError(f"{host!r} in {text!r} is not an IPv4 address") from None
    return host, port
