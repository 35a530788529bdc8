"""Fixtures for the control API tests: one real manager (a pysyncobj store
on loopback that leads itself) holding a cluster with a manager and two
workers, and the control API over it."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from swarmlet.api import objects_pb2 as pb
from swarmlet.manager.control.api import ControlAPI
from swarmlet.manager.store import Store
from tests.unit.manager import helpers as h

WORKER1 = "worker1000000000000000000"
WORKER2 = "worker2000000000000000000"


@dataclass
class OneManager:
    store: Store
    control: ControlAPI
    cluster: pb.Cluster
    manager: pb.Node

    def version(self) -> int:
        return self.store.version


def _no_agents(addr: str) -> grpc.Channel:
    raise AssertionError(f"these tests reach no agent (asked for {addr})")


@pytest.fixture
def one_manager(tmp_path: Path) -> Iterator[OneManager]:
    store = h.leader_store(tmp_path)
    cluster = h.new_cluster()
    manager = h.manager_node(store.self_addr, "127.0.0.1:4244")
    h.seed(store, cluster, manager, h.worker_node(WORKER1, "worker-1"), h.worker_node(WORKER2, "worker-2"))
    try:
        yield OneManager(store, ControlAPI(store, _no_agents), cluster, manager)
    finally:
        store.close()
