"""`ControlAPI`: every resource of the control API over one store."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

from swarmlet.core import pki
from swarmlet.manager.control.base import StoreAccess
from swarmlet.manager.control.cluster import ClusterControl
from swarmlet.manager.control.images import ImageControl, ImageEngine
from swarmlet.manager.control.logs import LogControl
from swarmlet.manager.control.networks import NetworkControl
from swarmlet.manager.control.nodes import NodeControl
from swarmlet.manager.control.pki import PKIControl
from swarmlet.manager.control.routes import ROUTES
from swarmlet.manager.control.secrets import ConfigControl, SecretControl
from swarmlet.manager.control.security import SecurityControl
from swarmlet.manager.control.services import ServiceControl
from swarmlet.manager.control.tasks import TaskControl
from swarmlet.manager.store import Store


class ControlAPI:
    """Every resource of the control API over one store."""

    def __init__(
        self,
        store: Store,
        agent_channel: Callable[[str], grpc.Channel],
        engine: ImageEngine | None = None,
        node_id: Callable[[], str] = lambda: "",
        min_cert_expiry: float = pki.MIN_CERT_EXPIRY,
    ) -> None:
        access = StoreAccess(store)
        # Issue 9: `engine` is this node's Docker Engine (registry lookups).
        self.images = ImageControl(access, agent_channel, engine, node_id)
        self.services = ServiceControl(access, self.images)
        self.tasks = TaskControl(access)
        self.nodes = NodeControl(access)
        self.networks = NetworkControl(access)
        self.security = SecurityControl(access)
        self.cluster = ClusterControl(access, on_manager_removed=self.security.manager_removed)
        self.logs = LogControl(access, agent_channel)
        self.secrets = SecretControl(access)
        self.configs = ConfigControl(access)
        self.pki = PKIControl(access, min_cert_expiry)

    def handler(self, rpc_name: str) -> Callable[[Any], Any]:
        """The method answering the unary Control RPC `rpc_name` (request ->
        response)."""
        resource, method = ROUTES[rpc_name]
        found: Callable[[Any], Any] = getattr(getattr(self, resource), method)
        return found
