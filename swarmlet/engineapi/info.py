"""The system endpoints' JSON (/_ping, /version, /info, /swarm), built from
what the daemon and the control API answer (no I/O beyond the host facts
of `platform`)."""

from __future__ import annotations

import platform
from dataclasses import dataclass, field
from typing import Any

from swarmlet.api import control_pb2 as cpb
from swarmlet.api import objects_pb2 as pb
from swarmlet.engineapi.convert import NS, Json, timestamp

API_VERSION = "1.41"
MIN_API_VERSION = "1.24"
# What swarmlet reports as its engine version: its own, marked as swarmlet.
SERVER_VERSION = "swarmlet-0.1.0"
PING_HEADERS = {
    "API-Version": API_VERSION,
    "OSType": "linux",
    "Docker-Experimental": "false",
    "Cache-Control": "no-cache, no-store, must-revalidate",
    "Pragma": "no-cache",
}
DATA_PATH_PORT = 4789  # the VXLAN port swarmlet's overlays use (as Swarm's default)
# Docker's defaults for settings swarmlet leaves unset (0 in its ClusterSpec).
DEFAULT_NODE_CERT_EXPIRY = 90 * 24 * 3600.0
DEFAULT_SUBNET_SIZE = 24
DEFAULT_POOL = ["10.0.0.0/8"]


@dataclass
class ClusterView:
    """What a manager knows of the cluster for /info."""

    cluster: pb.Cluster | None
    nodes: list[pb.Node] = field(default_factory=list)


def version() -> Json:
    arch = _arch()
    return {
        "Platform": {"Name": "swarmlet"},
        "Components": [
            {
                "Name": "Engine",
                "Version": SERVER_VERSION,
                "Details": {"ApiVersion": API_VERSION, "MinAPIVersion": MIN_API_VERSION},
            }
        ],
        "Version": SERVER_VERSION,
        "ApiVersion": API_VERSION,
        "MinAPIVersion": MIN_API_VERSION,
        "GitCommit": "",
        "GoVersion": "",
        "Os": "linux",
        "Arch": arch,
        "KernelVersion": platform.release(),
    }


def _arch() -> str:
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


def cluster_to_docker(c: pb.Cluster) -> Json:
    """Docker's ClusterInfo: the part of /swarm and /info's Swarm.Cluster
    swarmlet has."""
    s = c.spec
    return {
        "ID": c.id,
        "Version": {"Index": c.meta.version},
        "CreatedAt": timestamp(c.meta.created_at),
        "UpdatedAt": timestamp(c.meta.updated_at or c.meta.created_at),
        "Spec": {
            "Name": "default",
            "Labels": {},
            "Orchestration": {"TaskHistoryRetentionLimit": s.task_history_limit},
            "Raft": {},
            "Dispatcher": {"HeartbeatPeriod": int(s.heartbeat_period * NS)},
            "CAConfig": {"NodeCertExpiry": int((s.node_cert_expiry or DEFAULT_NODE_CERT_EXPIRY) * NS)},
            "TaskDefaults": {},
            "EncryptionConfig": {"AutoLockManagers": s.autolock},
        },
        "TLSInfo": {"TrustRoot": c.root_ca.cert_pem.decode()},
        "RootRotationInProgress": c.root_ca.HasField("rotation"),
        "DefaultAddrPool": list(s.default_address_pool) or DEFAULT_POOL,
        "SubnetSize": s.default_subnet_size or DEFAULT_SUBNET_SIZE,
        "DataPathPort": DATA_PATH_PORT,
    }


def swarm_to_docker(c: pb.Cluster, worker_token: str, manager_token: str) -> Json:
    """GET /swarm: the cluster and its join tokens (for `swarmlet join`)."""
    out = cluster_to_docker(c)
    out["JoinTokens"] = {"Worker": worker_token, "Manager": manager_token}
    return out


def info(node: cpb.InfoResponse, view: ClusterView | None) -> Json:
    """GET /info: an engine without containers or images, with the Swarm
    section docker's clients read (NodeID, LocalNodeState, ControlAvailable,
    Cluster)."""
    nodes = view.nodes if view is not None else []
    me = next((n for n in nodes if n.id == node.node_id), None)
    swarm: dict[str, Any] = {
        "NodeID": node.node_id,
        "NodeAddr": node.addr,
        "LocalNodeState": node.state if node.state in ("inactive", "active", "pending", "error", "locked") else "error",
        "ControlAvailable": node.role == "manager" and view is not None,
        "Error": node.error,
        "RemoteManagers": [{"NodeID": n.id, "Addr": n.manager_status.raft_addr} for n in nodes if n.role == pb.NodeSpec.MANAGER]
        or None,
    }
    if view is not None:
        swarm["Nodes"] = len(nodes)
        swarm["Managers"] = sum(1 for n in nodes if n.role == pb.NodeSpec.MANAGER)
        if view.cluster is not None:
            swarm["Cluster"] = cluster_to_docker(view.cluster)
    desc = me.description if me is not None else pb.NodeDescription()
    return {
        "ID": node.node_id,
        "Containers": 0,
        "ContainersRunning": 0,
        "ContainersPaused": 0,
        "ContainersStopped": 0,
        "Images": 0,
        "Driver": "",
        "Name": desc.hostname or platform.node(),
        "ServerVersion": SERVER_VERSION,
        "OperatingSystem": desc.os or "linux",
        "OSType": "linux",
        "Architecture": desc.arch or _arch(),
        "NCPU": desc.resources.nano_cpus // NS,
        "MemTotal": desc.resources.memory_bytes,
        "KernelVersion": platform.release(),
        "Labels": [f"{k}={v}" for k, v in sorted(desc.engine_labels.items())],
        "ExperimentalBuild": False,
        "Swarm": swarm,
        "Warnings": None,
    }
