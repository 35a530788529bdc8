"""The daemon's Prometheus endpoint (`swarmlet daemon --metrics-addr
HOST:PORT`, issue 16).

Served by prometheus-client's own HTTP server on a thread: the instruments
of swarmlet/metrics.py (latencies and counters recorded where things
happen), the process's CPU and memory, this node's own series below and, on a
manager, the cluster-wide series of manager/metrics.py. docs/operations.md
lists them all.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Protocol

from cryptography import x509
from prometheus_client import start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from swarmlet import metrics
from swarmlet.agent.session import AgentSession
from swarmlet.manager.metrics import ClusterCollector
from swarmlet.node.config import parse_metrics_addr
from swarmlet.node.membership import Membership

if TYPE_CHECKING:  # a worker's daemon never loads the store (pysyncobj)
    from swarmlet.manager.store import Store


class MetricsNode(Protocol):
    """What the node's series read from the daemon."""

    membership: Membership
    store: Store | None
    session: AgentSession | None


class NodeCollector(Collector):
    """Series every node reports about itself."""

    def __init__(self, node: MetricsNode) -> None:
        self._node = node

    def collect(self) -> Iterator[GaugeMetricFamily]:
        m = self._node.membership
        state, creds = m.node, m.creds
        info = GaugeMetricFamily(
            "swarmlet_node_info", "1, labelled with this node's id, hostname and role", labels=["node_id", "hostname", "role"]
        )
        if state is not None:
            info.add_metric([state.node_id, self._hostname(), state.role], 1.0)
        yield info
        if creds is not None:
            cert = x509.load_pem_x509_certificate(creds.cert_pem)
            left = cert.not_valid_after_utc.timestamp() - time.time()
            yield GaugeMetricFamily(
                "swarmlet_node_certificate_expiry_seconds", "Seconds until this node's certificate expires", value=left
            )
        session = self._node.session
        yield GaugeMetricFamily(
            "swarmlet_agent_session_connected",
            "1 while this node's agent has a session with a manager",
            value=1.0 if session is not None and session.connected.is_set() else 0.0,
        )

    def _hostname(self) -> str:
        return self._node.membership.hostname


class MetricsServer:
    """The HTTP endpoint; stop() closes it."""

    def __init__(self, addr: str, node: MetricsNode) -> None:
        host, port = parse_metrics_addr(addr)
        self.registry = CollectorRegistry()
        self.registry.register(metrics.REGISTRY)
        self.registry.register(NodeCollector(node))
        self.registry.register(ClusterCollector(lambda: node.store))
        self._server, self._thread = start_http_server(port, addr=host, registry=self.registry)
        self.port = self._server.server_address[1]

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def serve(addr: str, node: MetricsNode) -> MetricsServer:
    return MetricsServer(addr, node)
