"""The daemon's Prometheus endpoint (`swarmlet daemon --metrics-addr
HOST:PORT`, issue 16).

Served by prometheus-client's own HTTP server on a thread: the instruments
of swarmlet/metrics.py (latencies and counters recorded where things
happen), the process's CPU and memory, this node's own series below and, on a
manager, the cluster-wide series of manager/metrics.py. docs/operations.md
lists them all.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from socketserver import ThreadingMixIn
from typing import TYPE_CHECKING, Protocol
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from cryptography import x509
from prometheus_client import make_wsgi_app
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


class _Server(ThreadingMixIn, WSGIServer):
    """A thread per scrape, as prometheus-client's own server."""

    daemon_threads = True
    # handle_request() waits for a connection with no timeout: the serving
    # thread sleeps until a scrape arrives. prometheus-client's
    # start_http_server runs serve_forever, which wakes every 0.5 s to look
    # for a shutdown (measured: ~0.13 ms of the daemon's CPU a second on a
    # busy machine, for nothing).
    timeout = None


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002  (the base class's name)
        pass  # a scrape is no news


class MetricsServer:
    """The HTTP endpoint; stop() closes it."""

    def __init__(self, addr: str, node: MetricsNode) -> None:
        host, port = parse_metrics_addr(addr)
        self.registry = CollectorRegistry()
        self.registry.register(metrics.REGISTRY)
        self.registry.register(NodeCollector(node))
        self.registry.register(ClusterCollector(lambda: node.store))
        family, _, _, _, sockaddr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
        server_class = type("_Server", (_Server,), {"address_family": family})
        self._server: WSGIServer = make_server(str(sockaddr[0]), port, make_wsgi_app(self.registry), server_class, _Quiet)
        self.port: int = self._server.server_address[1]
        self._stopping = False
        self._thread = threading.Thread(target=self._serve, name="metrics-http", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stopping:
            self._server.handle_request()

    def stop(self) -> None:
        self._stopping = True
        # The serving thread waits in accept with no timeout: one connection,
        # closed at once, wakes it to see _stopping.
        host = str(self._server.server_address[0])
        wake = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
        try:
            with socket.create_connection((wake, self.port), timeout=2):
                pass
        except OSError:
            pass  # joined with a timeout below all the same (a daemon thread)
        self._thread.join(timeout=5)
        self._server.server_close()


def serve(addr: str, node: MetricsNode) -> MetricsServer:
    return MetricsServer(addr, node)
