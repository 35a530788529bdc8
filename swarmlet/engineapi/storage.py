"""The Engine API's /secrets and /configs (issue 10's objects): list,
inspect, create, delete through the control API. A secret's data goes in and
never comes out."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from swarmlet.api import control_pb2 as cpb
from swarmlet.api import objects_pb2 as pb
from swarmlet.engineapi import convert as cv
from swarmlet.engineapi.base import Base


class StorageRoutes(Base):
    def _resource(self, request: web.Request) -> tuple[str, Any]:
        kind = request.match_info["kind"]  # "secrets" | "configs"
        return kind, getattr(self._control(), kind)

    async def storage_list(self, request: web.Request) -> web.Response:
        f = cv.parse_filters(request.query.get("filters"))
        cv.check_filter_keys(f, ("id", "name", "names", "label"))

        def listed() -> list[Any]:
            kind, res = self._resource(request)
            req = cpb.ListSecretsRequest() if kind == "secrets" else cpb.ListConfigsRequest()
            objs = res.list(req).secrets if kind == "secrets" else res.list(req).configs
            return [cv.secret_or_config_to_docker(o) for o in objs if cv.named_matches(o, f)]

        return web.json_response(await self._run(listed))

    async def storage_get(self, request: web.Request) -> web.Response:
        ref = request.match_info["id"]

        def get() -> Any:
            kind, res = self._resource(request)
            if kind == "secrets":
                return cv.secret_or_config_to_docker(res.get(cpb.GetSecretRequest(ref=ref)).secret)
            return cv.secret_or_config_to_docker(res.get(cpb.GetConfigRequest(ref=ref)).config)

        return web.json_response(await self._run(get))

    async def storage_create(self, request: web.Request) -> web.Response:
        kind = request.match_info["kind"]
        name, labels, data = cv.secret_or_config_spec_from_docker(await self._body(request), kind[:-1].capitalize())

        def create() -> str:
            _, res = self._resource(request)
            if kind == "secrets":
                spec = pb.SecretSpec(name=name, labels=labels, data=data)
                return str(res.create(cpb.CreateSecretRequest(spec=spec)).secret.id)
            cspec = pb.ConfigSpec(name=name, labels=labels, data=data)
            return str(res.create(cpb.CreateConfigRequest(spec=cspec)).config.id)

        return web.json_response({"ID": await self._run(create)}, status=201)

    async def storage_remove(self, request: web.Request) -> web.Response:
        ref = request.match_info["id"]

        def remove() -> None:
            kind, res = self._resource(request)
            res.remove(cpb.RemoveSecretRequest(ref=ref) if kind == "secrets" else cpb.RemoveConfigRequest(ref=ref))

        await self._run(remove)
        return web.Response(status=204)
