"""Daemon configurations for tests that run nodes on loopback in one process."""

from __future__ import annotations

import socket
from pathlib import Path

from swarmlet.node.config import DaemonConfig


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def config(tmp_path: Path, name: str) -> DaemonConfig:
    """A node named `name` on 127.0.0.1 with its own ports and state, whose
    Docker engine is absent."""
    return DaemonConfig(
        state_dir=str(tmp_path / name),
        socket=str(tmp_path / f"{name}.sock"),
        docker_host=f"unix://{tmp_path}/no-docker.sock",
        advertise_addr="127.0.0.1",
        join_port=free_port(),
        raft_port=free_port(),
        api_port=free_port(),
        hostname=name,
    )
