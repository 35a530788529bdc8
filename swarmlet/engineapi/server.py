"""Docker's Engine API (v1.41, swarm objects only) on a unix socket, served
by aiohttp on its own thread and event loop.

Every request is answered by the manager's control API, in-process, exactly
as the local API answers the swarmlet CLI (one write path: validation,
store batches and leader forwarding are the control API's). Its calls block
(Raft barriers and proposals), so they run on a small thread pool, never on
the event loop. Errors leave as docker's `{"message": ...}` with docker's
status codes; endpoints of a single engine (containers, images, volumes...)
answer 501 saying swarmlet serves swarm objects only.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import threading
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from swarmlet import errors
from swarmlet.api import control_pb2 as cpb
from swarmlet.api import objects_pb2 as pb
from swarmlet.engineapi import convert as cv
from swarmlet.engineapi import info as inf
from swarmlet.engineapi.base import EngineNode
from swarmlet.engineapi.events import EventRoutes
from swarmlet.engineapi.logs import LogRoutes
from swarmlet.engineapi.storage import StorageRoutes
from swarmlet.manager.control.api import ControlAPI

log = logging.getLogger("swarmlet.engineapi")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
STOP_TIMEOUT = 5.0
SWARM_ONLY = "swarmlet serves Docker's Engine API for swarm objects only (services, tasks, nodes, networks, swarm)"


def status_of(e: errors.SwarmletError) -> int:
    """Docker's status code for a swarmlet error."""
    if isinstance(e, errors.NotFound):
        return 404
    if isinstance(e, errors.Invalid):
        return 400
    if isinstance(e, errors.AlreadyExists | errors.Conflict):
        return 409
    if isinstance(e, errors.PermissionDenied):
        return 403
    if isinstance(e, errors.Unauthenticated):
        return 401
    if isinstance(e, errors.Unavailable):
        return 503
    if isinstance(e, errors.FailedPrecondition):
        # As dockerd: a node that is not a (reachable) manager answers 503.
        text = str(e)
        return 503 if ("not a swarm manager" in text or "not part of a swarm" in text or "locked" in text) else 400
    return 500


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"message": message}, status=status)


def registry_auth(header: str | None) -> pb.RegistryAuth | None:
    """docker's X-Registry-Auth: base64url JSON of the credentials."""
    if not header:
        return None
    try:
        raw = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))
    except (ValueError, TypeError):
        raise errors.Invalid("X-Registry-Auth: not base64-encoded JSON") from None
    if not isinstance(raw, dict):
        raise errors.Invalid("X-Registry-Auth: expected a JSON object")
    return pb.RegistryAuth(
        server_address=str(raw.get("serveraddress") or ""),
        username=str(raw.get("username") or ""),
        password=str(raw.get("password") or ""),
        identity_token=str(raw.get("identitytoken") or ""),
        registry_token=str(raw.get("registrytoken") or ""),
    )


class EngineAPI(StorageRoutes, LogRoutes, EventRoutes):
    """The routes. Each handler reads the request, runs control API calls on
    the pool (base.py) and answers docker's JSON."""

    @web.middleware
    async def errors_middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except errors.SwarmletError as e:
            return _error(status_of(e), str(e))
        except web.HTTPException as e:
            if e.status >= 400:
                return _error(e.status, SWARM_ONLY if e.status in (404, 405) else e.reason)
            raise
        except Exception:
            log.exception("engine API %s %s", request.method, request.path)
            return _error(500, "internal error (see the swarmlet daemon's log)")

    # ---- system ----
    async def ping(self, request: web.Request) -> web.Response:
        state = await self._run(self._node.info)
        swarm = "inactive" if state.state != "active" else f"active/{'manager' if state.role == 'manager' else 'worker'}"
        headers = {**inf.PING_HEADERS, "Swarm": swarm}
        return web.Response(text="OK", headers=headers, content_type="text/plain")

    async def version(self, request: web.Request) -> web.Response:
        return web.json_response(inf.version())

    async def info(self, request: web.Request) -> web.Response:
        return web.json_response(await self._run(lambda: inf.info(self._node.info(), self._cluster_or_none())))

    def _cluster_or_none(self) -> inf.ClusterView | None:
        try:
            control = self._control()
        except errors.SwarmletError:
            return None
        cluster = control.pki.get_cluster(cpb.GetClusterRequest()).cluster
        return inf.ClusterView(cluster, list(control.nodes.list(cpb.ListNodesRequest()).nodes))

    async def swarm(self, request: web.Request) -> web.Response:
        def get() -> Any:
            control = self._control()
            cluster = control.pki.get_cluster(cpb.GetClusterRequest()).cluster
            # As `swarmlet join-token` shows them (the socket is root only).
            tokens = {r: control.cluster.join_token(cpb.JoinTokenRequest(role=r), "").token for r in ("worker", "manager")}
            return inf.swarm_to_docker(cluster, tokens["worker"], tokens["manager"])

        return web.json_response(await self._run(get))

    async def swarm_refused(self, request: web.Request) -> web.Response:
        verb = request.match_info["verb"]
        return _error(501, f"POST /swarm/{verb} is not served here: use `swarmlet {verb.replace('update', 'cluster update')}`")

    async def unsupported(self, request: web.Request) -> web.Response:
        return _error(501, f"{request.method} {request.path}: {SWARM_ONLY}")

    # ---- nodes ----
    async def nodes(self, request: web.Request) -> web.Response:
        f = cv.parse_filters(request.query.get("filters"))
        cv.check_filter_keys(f, ("id", "name", "role", "membership", "label", "node.label"))
        nodes = await self._run(lambda: self._control().nodes.list(cpb.ListNodesRequest()).nodes)
        return web.json_response([cv.node_to_docker(n) for n in nodes if cv.node_matches(n, f)])

    async def node(self, request: web.Request) -> web.Response:
        ref = request.match_info["id"]
        n = await self._run(lambda: self._control().nodes.get(cpb.GetNodeRequest(ref=ref)).node)
        return web.json_response(cv.node_to_docker(n))

    async def node_update(self, request: web.Request) -> web.Response:
        ref, version, body = request.match_info["id"], self._version_param(request), await self._body(request)

        def update() -> None:
            control = self._control()
            node = control.nodes.get(cpb.GetNodeRequest(ref=ref)).node
            if version != node.meta.version:
                raise errors.Conflict(f"node {ref} changed since it was read (version {version}, now {node.meta.version})")
            control.nodes.update(cv.node_update_from_docker(node, body))

        await self._run(update)
        return web.Response(status=200)

    async def node_remove(self, request: web.Request) -> web.Response:
        ref, force = request.match_info["id"], _flag(request, "force")
        await self._run(lambda: self._control().nodes.remove(cpb.RemoveNodeRequest(ref=ref, force=force)))
        return web.Response(status=200)

    # ---- services ----
    def _prefixes(self, control: ControlAPI) -> dict[str, int]:
        return cv.subnet_prefixes(control.networks.list(cpb.ListNetworksRequest()).networks)

    async def services(self, request: web.Request) -> web.Response:
        f = cv.parse_filters(request.query.get("filters"))
        cv.check_filter_keys(f, ("id", "name", "label", "mode"))
        status = _flag(request, "status")

        def listed() -> list[Any]:
            control = self._control()
            prefixes = self._prefixes(control)
            out = []
            for s in control.services.list(cpb.ListServicesRequest()).services:
                if cv.service_matches(s.service, f):
                    counts = (s.running, s.desired, s.completed) if status else None
                    out.append(cv.service_to_docker(s.service, prefixes, counts))
            return out

        return web.json_response(await self._run(listed))

    async def service(self, request: web.Request) -> web.Response:
        ref = request.match_info["id"]

        def get() -> Any:
            control = self._control()
            return cv.service_to_docker(control.services.get(cpb.GetServiceRequest(ref=ref)).service, self._prefixes(control))

        return web.json_response(await self._run(get))

    async def service_create(self, request: web.Request) -> web.Response:
        spec = cv.service_spec_from_docker(await self._body(request))
        req = cpb.CreateServiceRequest(spec=spec)
        auth = registry_auth(request.headers.get("X-Registry-Auth"))
        if auth is not None:
            req.registry_auth.CopyFrom(auth)
        resp = await self._run(lambda: self._control().services.create(req))
        return web.json_response({"ID": resp.service.id, "Warnings": list(resp.warnings) or None}, status=201)

    async def service_update(self, request: web.Request) -> web.Response:
        ref, version = request.match_info["id"], self._version_param(request)
        body = await self._body(request)
        if request.query.get("rollback") == "previous":
            resp = await self._run(lambda: self._control().services.rollback(cpb.RollbackServiceRequest(ref=ref)))
            return web.json_response({"Warnings": list(resp.warnings) or None})
        spec = cv.service_spec_from_docker(body)
        req = cpb.UpdateServiceRequest(ref=ref, version=version, spec=spec)
        auth = registry_auth(request.headers.get("X-Registry-Auth"))
        if auth is not None:
            req.registry_auth.CopyFrom(auth)
            req.has_registry_auth = True

        def update() -> cpb.ServiceResponse:
            control = self._control()
            current = control.services.get(cpb.GetServiceRequest(ref=ref)).service
            cv.keep_swarmlet_only(req.spec, current.spec)
            return control.services.update(req)

        resp = await self._run(update)
        return web.json_response({"Warnings": list(resp.warnings) or None})

    async def service_remove(self, request: web.Request) -> web.Response:
        ref = request.match_info["id"]
        await self._run(lambda: self._control().services.remove(cpb.RemoveServiceRequest(ref=ref)))
        return web.Response(status=200)

    # ---- tasks ----
    async def tasks(self, request: web.Request) -> web.Response:
        f = cv.parse_filters(request.query.get("filters"))
        cv.check_filter_keys(f, ("id", "name", "service", "node", "desired-state", "label", "_up-to-date"))

        def listed() -> list[Any]:
            control = self._control()
            tasks = control.tasks.list(cpb.ListTasksRequest()).tasks
            services = {s.service.id: s.service for s in control.services.list(cpb.ListServicesRequest()).services}
            nodes = {n.id: n for n in control.nodes.list(cpb.ListNodesRequest()).nodes}
            service_ids = cv.resolve_refs(services, f.get("service"), lambda s: s.spec.name)
            node_ids = cv.resolve_refs(nodes, f.get("node"), lambda n: n.description.hostname)
            prefixes = self._prefixes(control)
            versions = {sid: s.spec_version for sid, s in services.items()}
            return [
                cv.task_to_docker(t, prefixes)
                for t in tasks
                if cv.task_matches(t, f, service_ids, node_ids, cv.task_name, versions)
            ]

        return web.json_response(await self._run(listed))

    async def task(self, request: web.Request) -> web.Response:
        ref = request.match_info["id"]

        def get() -> Any:
            control = self._control()
            tasks = {t.id: t for t in control.tasks.list(cpb.ListTasksRequest()).tasks}
            return cv.task_to_docker(cv.resolve_one(tasks, ref, "task"), self._prefixes(control))

        return web.json_response(await self._run(get))

    # ---- networks ----
    async def networks(self, request: web.Request) -> web.Response:
        f = cv.parse_filters(request.query.get("filters"))
        cv.check_filter_keys(f, ("id", "name", "driver", "scope", "type", "label"))
        nets = await self._run(lambda: self._control().networks.list(cpb.ListNetworksRequest()).networks)
        return web.json_response([cv.network_to_docker(n) for n in nets if cv.network_matches(n, f)])

    async def network(self, request: web.Request) -> web.Response:
        ref = request.match_info["id"]
        resp = await self._run(lambda: self._control().networks.get(cpb.GetNetworkRequest(ref=ref)))
        return web.json_response(cv.network_to_docker(resp.network))

    async def network_create(self, request: web.Request) -> web.Response:
        spec = cv.network_spec_from_docker(await self._body(request))
        resp = await self._run(lambda: self._control().networks.create(cpb.CreateNetworkRequest(spec=spec)))
        return web.json_response({"Id": resp.network.id, "Warning": ""}, status=201)

    async def network_remove(self, request: web.Request) -> web.Response:
        ref = request.match_info["id"]
        await self._run(lambda: self._control().networks.remove(cpb.RemoveNetworkRequest(ref=ref)))
        return web.Response(status=204)

    # ---- image resolution (docker's CLI pins the image digest itself) ----
    async def distribution(self, request: web.Request) -> web.Response:
        # The name is a whole reference: it may hold a registry host:port,
        # slashes, a tag and a digest (the route matches all of it).
        name = request.match_info["name"]
        auth = registry_auth(request.headers.get("X-Registry-Auth"))
        control = await self._run(self._control)
        try:
            found = await self._run(lambda: control.images.inspect_distribution(name, auth))
        except errors.FailedPrecondition as e:
            # Neither "no such image" nor a refusal of the credentials (the
            # registry unreachable, no engine to ask): dockerd answers 500.
            return _error(500, str(e))
        return web.json_response(cv.distribution_to_docker(found))

    # ---- the application ----
    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.errors_middleware], client_max_size=16 * 1024 * 1024)
        routes: list[tuple[str, str, Handler]] = [
            ("GET", "/_ping", self.ping),
            # docker's Go client pings with HEAD first. add_route("GET") does
            # not add HEAD (only add_get does), and the catch-all below would
            # answer it 501; aiohttp sends no body for HEAD.
            ("HEAD", "/_ping", self.ping),
            ("GET", "/version", self.version),
            ("GET", "/info", self.info),
            ("GET", "/swarm", self.swarm),
            ("GET", "/events", self.events),
            ("POST", "/swarm/{verb}", self.swarm_refused),
            ("GET", "/nodes", self.nodes),
            ("GET", "/nodes/{id}", self.node),
            ("POST", "/nodes/{id}/update", self.node_update),
            ("DELETE", "/nodes/{id}", self.node_remove),
            ("GET", "/services", self.services),
            ("POST", "/services/create", self.service_create),
            ("GET", "/services/{id}", self.service),
            ("POST", "/services/{id}/update", self.service_update),
            ("DELETE", "/services/{id}", self.service_remove),
            ("GET", "/services/{id}/logs", self.service_logs),
            ("GET", "/tasks", self.tasks),
            ("GET", "/tasks/{id}", self.task),
            ("GET", "/tasks/{id}/logs", self.task_logs),
            ("GET", "/networks", self.networks),
            ("POST", "/networks/create", self.network_create),
            ("GET", "/networks/{id}", self.network),
            ("DELETE", "/networks/{id}", self.network_remove),
            ("GET", "/distribution/{name:.+}/json", self.distribution),
            ("GET", "/{kind:secrets|configs}", self.storage_list),
            ("POST", "/{kind:secrets|configs}/create", self.storage_create),
            ("GET", "/{kind:secrets|configs}/{id}", self.storage_get),
            ("DELETE", "/{kind:secrets|configs}/{id}", self.storage_remove),
        ]
        for method, path, handler in routes:
            for prefix in ("", "/v{api_version:[0-9.]+}"):
                app.router.add_route(method, prefix + path, handler)
        # Everything else is not served here.
        app.router.add_route("*", "/{tail:.*}", self.unsupported)
        return app


def _flag(request: web.Request, name: str) -> bool:
    return request.query.get(name, "").lower() in ("1", "true")


class EngineAPIServer:
    """The server thread: start() binds the socket (0600), stop() closes it."""

    def __init__(self, path: str, node: EngineNode) -> None:
        self.path = path
        self._api = EngineAPI(node)
        self._loop = asyncio.new_event_loop()
        # Open log and event streams are cut at shutdown, not waited for.
        self._runner = web.AppRunner(self._api.app(), access_log=None, shutdown_timeout=1.0)
        self._thread = threading.Thread(target=self._loop.run_forever, name="engineapi", daemon=True)

    def start(self) -> None:
        self._loop.run_until_complete(self._runner.setup())
        site = web.UnixSite(self._runner, self.path)
        # The socket is as powerful as the CLI's: root only (docs/security.md).
        old_umask = os.umask(0o077)
        try:
            self._loop.run_until_complete(site.start())
        finally:
            os.umask(old_umask)
        os.chmod(self.path, 0o600)
        self._thread.start()
        log.info("Docker Engine API (swarm objects) on unix://%s", self.path)

    def stop(self) -> None:
        """Close the socket and the open streams. Never raises: the daemon's
        own shutdown comes after it."""
        if self._thread.is_alive():
            try:
                asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(timeout=STOP_TIMEOUT)
            except Exception as e:  # a stream that would not close in time: the loop stops anyway
                log.warning("engine API shutdown: %s", e or type(e).__name__)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=STOP_TIMEOUT)
        self._api.close()


def serve(path: str, node: EngineNode) -> EngineAPIServer:
    server = EngineAPIServer(path, node)
    server.start()
    return server
