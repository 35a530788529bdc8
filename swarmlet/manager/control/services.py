"""Services: create, inspect, list, scale, update, roll back, promote, remove,
and their progress. Every write is validated first, then proposed as one
store batch (nothing is half-done)."""

from __future__ import annotations

import time

from swarmlet import errors
from swarmlet.api import control_pb2 as cpb
from swarmlet.api import objects_pb2 as pb
from swarmlet.api import store_pb2 as spb
from swarmlet.core import lookup, updater, validation, views
from swarmlet.core import state as st
from swarmlet.ids import new_id
from swarmlet.manager.control.base import StoreAccess


class ServiceControl:
    def __init__(self, access: StoreAccess) -> None:
        self._a = access

    def _reply(self, svc: pb.Service) -> cpb.ServiceResponse:
        return cpb.ServiceResponse(service=self._a.snap().services.get(svc.id, svc))

    def _named(self, name: str) -> cpb.ServiceResponse:
        """The service named `name` (names are unique), as a create's reply."""
        return cpb.ServiceResponse(service=lookup.service(self._a.snap(), name))

    def create(self, req: cpb.CreateServiceRequest) -> cpb.ServiceResponse:
        spec = pb.ServiceSpec()
        spec.CopyFrom(req.spec)
        if spec.WhichOneof("mode") is None:
            spec.replicated.replicas = 1
        validation.validate_service_spec(spec)
        snap = self._a.snap()
        if self._a.replayed(req.request_id):
            return self._named(spec.name)
        if any(s.spec.name == spec.name for s in snap.services.values()):
            raise errors.AlreadyExists(f"a service named {spec.name!r} already exists")
        validation.check_schedulable(spec, snap)
        updater.with_defaults(spec)
        validation.prepare_service_networking(spec, snap)
        svc = pb.Service(id=new_id(), spec=spec, spec_version=1)
        self._a.propose([st.put(svc, create=True)], request_id=req.request_id)
        # By name: an earlier attempt of this call (same request id) that was
        # still in flight may be the one that applied, under its own id.
        return self._named(spec.name)

    def get(self, req: cpb.GetServiceRequest) -> cpb.ServiceResponse:
        return cpb.ServiceResponse(service=lookup.service(self._a.snap(), req.ref))

    def list(self, req: cpb.ListServicesRequest) -> cpb.ListServicesResponse:
        snap = self._a.snap()
        out = cpb.ListServicesResponse()
        for svc in sorted(snap.services.values(), key=lambda s: s.spec.name):
            running, desired = views.replica_counts(snap, svc)
            out.services.add(service=svc, running=running, desired=desired)
        return out

    def scale(self, req: cpb.ScaleServiceRequest) -> cpb.ServiceResponse:
        snap = self._a.snap()
        svc = lookup.service(snap, req.ref)
        if self._a.replayed(req.request_id):
            return self._reply(svc)
        if svc.spec.WhichOneof("mode") != "replicated":
            raise errors.FailedPrecondition(f"service {svc.spec.name} is global: it cannot be scaled")
        if req.replicas > validation.MAX_REPLICAS:
            raise errors.Invalid(f"{req.replicas} replicas is more than the limit of {validation.MAX_REPLICAS}")
        new = pb.Service()
        new.CopyFrom(svc)
        new.spec.replicated.replicas = req.replicas
        validation.check_capacity(new.spec, snap, svc.id)
        self._a.propose([st.put(new)], request_id=req.request_id)
        return self._reply(new)

    def update(self, req: cpb.UpdateServiceRequest) -> cpb.ServiceResponse:
        """Replace the spec (the client sends the whole new one). A changed
        task spec starts a rolling update, run by the leader's updater."""
        snap = self._a.snap()
        svc = lookup.service(snap, req.ref)
        if self._a.replayed(req.request_id):
            return self._reply(svc)
        if req.version and req.version != svc.meta.version:
            raise errors.Conflict(
                f"service {svc.spec.name} changed since it was read (version {req.version}, now "
                f"{svc.meta.version}): run the update again"
            )
        spec = pb.ServiceSpec()
        spec.CopyFrom(req.spec)
        if spec.name != svc.spec.name:
            raise errors.Invalid("renaming a service is not supported")
        if spec.WhichOneof("mode") != svc.spec.WhichOneof("mode"):
            raise errors.Invalid(f"service {svc.spec.name} is {svc.spec.WhichOneof('mode')}: the mode cannot be changed")
        validation.validate_service_spec(spec)
        if spec.task != svc.spec.task:
            validation.check_schedulable(spec, snap)
        updater.with_defaults(spec)
        validation.prepare_service_networking(spec, snap, service_id=svc.id)
        new = updater.updated_service(svc, spec, time.time())
        self._a.propose([st.put(new)], request_id=req.request_id)
        return self._reply(new)

    def rollback(self, req: cpb.RollbackServiceRequest) -> cpb.ServiceResponse:
        svc = lookup.service(self._a.snap(), req.ref)
        if self._a.replayed(req.request_id):
            return self._reply(svc)
        if not svc.HasField("previous_spec"):
            raise errors.FailedPrecondition(
                f"service {svc.spec.name} has no previous spec to roll back to (it was never updated)"
            )
        new = updater.rollback_service(svc, time.time(), "manually requested rollback")
        self._a.propose([st.put(new)], request_id=req.request_id)
        return self._reply(new)

    def promote(self, req: cpb.PromoteServiceRequest) -> cpb.ServiceResponse:
        svc = lookup.service(self._a.snap(), req.ref)
        if self._a.replayed(req.request_id):
            return self._reply(svc)
        try:
            new = updater.promoted_service(svc, time.time())
        except ValueError as e:
            raise errors.FailedPrecondition(str(e)) from None
        self._a.propose([st.put(new)], request_id=req.request_id)
        return self._reply(new)

    def remove(self, req: cpb.RemoveServiceRequest) -> cpb.RemoveServiceResponse:
        snap = self._a.snap()
        if self._a.replayed(req.request_id):
            return cpb.RemoveServiceResponse(id=req.ref)  # gone already: the ref is all we have
        svc = lookup.service(snap, req.ref)
        # The orchestrator sees the service gone and removes its tasks.
        self._a.propose([st.delete(spb.KIND_SERVICE, svc.id)], request_id=req.request_id)
        return cpb.RemoveServiceResponse(id=svc.id)

    def progress(self, req: cpb.ServiceProgressRequest) -> cpb.ServiceProgressResponse:
        snap = self._a.snap()
        svc = lookup.service(snap, req.ref)
        return views.service_progress(snap, svc.id, time.time())
