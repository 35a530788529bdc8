"""Secrets and configs: create, inspect, list, remove. The checks and the
rules on references are in core/secrets.py.

A secret's data enters here once (create) and never comes back out: every
reply carries `secrets.redacted` copies, and nothing here logs. It reaches a
node only through the dispatcher, for a task that uses it.
"""

from __future__ import annotations

from swarmlet.api import control_pb2 as cpb
from swarmlet.api import objects_pb2 as pb
from swarmlet.api import store_pb2 as spb
from swarmlet.core import secrets as sc
from swarmlet.core import state as st
from swarmlet.ids import new_id
from swarmlet.manager.control.base import StoreAccess


class SecretControl:
    def __init__(self, access: StoreAccess) -> None:
        self._a = access

    def create(self, req: cpb.CreateSecretRequest) -> cpb.SecretResponse:
        sc.validate_spec(sc.SECRET, req.spec)
        snap = self._a.snap()
        if not self._a.replayed(req.request_id):
            # This check is for its message; the one that holds is made when
            # the batch is applied, on every manager (state.UNIQUE_NAME_TABLES):
            # of two racing creates of one name, the second fails there.
            sc.check_name_free(sc.SECRET, snap, req.spec.name)
            secret = pb.Secret(id=new_id(), spec=req.spec)
            self._a.propose([st.put(secret, create=True)], request_id=req.request_id)
        # By name (unique): an earlier attempt of this call (same request id)
        # may be the one that applied, under its own id.
        return cpb.SecretResponse(secret=sc.redacted(sc.find_secret(self._a.snap(), req.spec.name)))

    def get(self, req: cpb.GetSecretRequest) -> cpb.SecretResponse:
        return cpb.SecretResponse(secret=sc.redacted(sc.find_secret(self._a.snap(), req.ref)))

    def list(self, req: cpb.ListSecretsRequest) -> cpb.ListSecretsResponse:
        secrets = sorted(self._a.snap().secrets.values(), key=lambda s: (s.spec.name, s.id))
        return cpb.ListSecretsResponse(secrets=[sc.redacted(s) for s in secrets])

    def remove(self, req: cpb.RemoveSecretRequest) -> cpb.RemoveSecretResponse:
        snap = self._a.snap()
        if self._a.replayed(req.request_id):
            return cpb.RemoveSecretResponse(id=req.ref)  # gone already: the ref is all we have
        secret = sc.find_secret(snap, req.ref)
        sc.check_removable(sc.SECRET, snap, secret)
        # Versioned: a service that starts using it meanwhile makes this fail.
        self._a.propose([st.delete(spb.KIND_SECRET, secret.id, secret.meta.version)], request_id=req.request_id)
        return cpb.RemoveSecretResponse(id=secret.id)


class ConfigControl:
    def __init__(self, access: StoreAccess) -> None:
        self._a = access

    def create(self, req: cpb.CreateConfigRequest) -> cpb.ConfigResponse:
        sc.validate_spec(sc.CONFIG, req.spec)
        snap = self._a.snap()
        if not self._a.replayed(req.request_id):
            sc.check_name_free(sc.CONFIG, snap, req.spec.name)  # for its message, as for secrets
            config = pb.Config(id=new_id(), spec=req.spec)
            self._a.propose([st.put(config, create=True)], request_id=req.request_id)
        return cpb.ConfigResponse(config=sc.find_config(self._a.snap(), req.spec.name))  # by name, as for secrets

    def get(self, req: cpb.GetConfigRequest) -> cpb.ConfigResponse:
        return cpb.ConfigResponse(config=sc.find_config(self._a.snap(), req.ref))

    def list(self, req: cpb.ListConfigsRequest) -> cpb.ListConfigsResponse:
        configs = sorted(self._a.snap().configs.values(), key=lambda c: (c.spec.name, c.id))
        return cpb.ListConfigsResponse(configs=[sc.without_data(c) for c in configs])

    def remove(self, req: cpb.RemoveConfigRequest) -> cpb.RemoveConfigResponse:
        snap = self._a.snap()
        if self._a.replayed(req.request_id):
            return cpb.RemoveConfigResponse(id=req.ref)  # gone already
        config = sc.find_config(snap, req.ref)
        sc.check_removable(sc.CONFIG, snap, config)
        self._a.propose([st.delete(spb.KIND_CONFIG, config.id, config.meta.version)], request_id=req.request_id)
        return cpb.RemoveConfigResponse(id=config.id)
