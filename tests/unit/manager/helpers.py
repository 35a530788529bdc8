"""Building blocks for the manager's tests: real pysyncobj stores on
loopback, a cluster object with a real root CA, node records, service specs.
Fixtures using them are in conftest.py."""

from __future__ import annotations

import hashlib
import socket
import time
from pathlib import Path

from swarmlet.api import objects_pb2 as pb
from swarmlet.atrest import DataKey
from swarmlet.core import cluster as cl
from swarmlet.core import state as st
from swarmlet.ids import new_id
from swarmlet.manager import ca
from swarmlet.manager.store import RaftTimings, Store
from tests.waiting import wait_for

RAFT_SECRET = b"r" * 32
# A manager's data key in tests: each state directory its own (as each
# manager has its own), the same across restarts.
DATA_KEY = DataKey(b"d" * 32)


def data_key_for(state_dir: object) -> DataKey:
    return DataKey(hashlib.sha256(str(state_dir).encode()).digest())


MANAGER_ID = "manager0000000000000000000"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start_store(state_dir: Path, addr: str = "", partners: list[str] | None = None, timings: RaftTimings | None = None) -> Store:
    """A manager's store on loopback (it elects itself when it has no partners)."""
    addr = addr or f"127.0.0.1:{free_port()}"
    return Store(addr, partners or [], str(state_dir), RAFT_SECRET, timings=timings, data_key=data_key_for(state_dir))


def leader_store(state_dir: Path) -> Store:
    s = start_store(state_dir)
    wait_for(s.is_leader, 10, "a one-manager store elects itself")
    # ... and has committed its term's barrier: the dispatcher serves agents
    # only then (Store.leader_ready).
    wait_for(s.ensure_leader_ready, 10, "the new leader caught up")
    return s


def new_cluster(spec: pb.ClusterSpec | None = None) -> pb.Cluster:
    """A cluster object as `init` writes it: a fresh root CA and join tokens."""
    root = ca.create_root_ca()
    return pb.Cluster(
        id=new_id(),
        spec=spec if spec is not None else cl.initial_spec(),
        root_ca=root,
        worker_token=ca.new_join_token(root.digest),
        manager_token=ca.new_join_token(root.digest),
        raft_secret=RAFT_SECRET,
    )


def manager_node(raft_addr: str, api_addr: str, node_id: str = MANAGER_ID, hostname: str = "manager-1") -> pb.Node:
    node = pb.Node(
        id=node_id,
        spec=pb.NodeSpec(desired_role=pb.NodeSpec.MANAGER, availability=pb.NodeSpec.ACTIVE),
        description=pb.NodeDescription(hostname=hostname),
        status=pb.NodeStatus(state=pb.NodeStatus.READY, addr="127.0.0.1", timestamp=time.time()),
        api_addr=api_addr,
        raft_addr=raft_addr,
    )
    return cl.as_manager(node)


def worker_node(node_id: str, hostname: str, state: int = pb.NodeStatus.READY, labels: dict[str, str] | None = None) -> pb.Node:
    return pb.Node(
        id=node_id,
        role=pb.NodeSpec.WORKER,
        spec=pb.NodeSpec(desired_role=pb.NodeSpec.WORKER, availability=pb.NodeSpec.ACTIVE, labels=labels or {}),
        description=pb.NodeDescription(hostname=hostname),
        status=pb.NodeStatus(state=state, addr="127.0.0.1", timestamp=time.time()),
    )


def seed(store: Store, cluster: pb.Cluster, *nodes: pb.Node) -> None:
    """Write the cluster object and nodes as one batch."""
    store.propose([st.put(cluster, create=True)] + [st.put(n, create=True) for n in nodes])


def service_spec(name: str, replicas: int = 1, image: str = "busybox:latest") -> pb.ServiceSpec:
    spec = pb.ServiceSpec(name=name)
    spec.task.container.image = image
    spec.replicated.replicas = replicas
    return spec
