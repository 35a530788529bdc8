"""Services: create, inspect, list, scale, update, roll back, promote, remove,
and their progress. Every write is validated first, then proposed as one
store batch (nothing is half-done)."""

from __future__ import annotations

import time

from swarmlet import errors
from swarmlet.api import control_pb2 as cpb
from swarmlet.api import objects_pb2 as pb
from swarmlet.api import store_pb2 as spb
from swarmlet.core import images, lookup, updater, validation, views
from swarmlet.core import service_options as opts
from swarmlet.core import state as st
from swarmlet.core import tasks as tk
from swarmlet.ids import new_id
from swarmlet.manager.control.base import StoreAccess
from swarmlet.manager.control.images import ImageControl


class ServiceControl:
    def __init__(self, access: StoreAccess, image_control: ImageControl | None = None) -> None:
        self._a = access
        self._images = image_control

    def _reply(self, svc: pb.Service, warnings: list[str] | None = None) -> cpb.ServiceResponse:
        # Never the registry credentials (issue 9): they go only to nodes.
        shown = images.redacted(self._a.snap().services.get(svc.id, svc))
        return cpb.ServiceResponse(service=shown, warnings=warnings or [])

    def _pin(self, spec: pb.ServiceSpec, auth: pb.RegistryAuth | None, snap: st.Snapshot, no_resolve: bool) -> list[str]:
        """Issue 9: the image pinned to its registry digest (or the engines'
        image id), unless --no-resolve-image."""
        if no_resolve or self._images is None:
            spec.task.container.image_id = ""
            return []
        return self._images.pin(spec, auth, snap)

    def _named(self, name: str, warnings: list[str] | None = None) -> cpb.ServiceResponse:
        """The service named `name` (names are unique), as a create's reply."""
        return self._reply(lookup.service(self._a.snap(), name), warnings)

    def create(self, req: cpb.CreateServiceRequest) -> cpb.ServiceResponse:
        spec = pb.ServiceSpec()
        spec.CopyFrom(req.spec)
        if spec.WhichOneof("mode") is None:
            spec.replicated.replicas = 1
        opts.normalise_job(spec)
        validation.validate_service_spec(spec)
        snap = self._a.snap()
        if self._a.replayed(req.request_id):
            return self._named(spec.name)
        if any(s.spec.name == spec.name for s in snap.services.values()):
            raise errors.AlreadyExists(f"a service named {spec.name!r} already exists")
        validation.check_schedulable(spec, snap)
        updater.with_defaults(spec)
        validation.prepare_service_networking(spec, snap)
        validation.prepare_service_storage(spec, snap)
        auth = req.registry_auth if req.HasField("registry_auth") else None
        warnings = self._pin(spec, auth, snap, req.no_resolve_image)
        svc = pb.Service(id=new_id(), spec=spec, spec_version=1)
        if auth is not None:
            svc.registry_auth.CopyFrom(auth)
        if tk.is_job(svc):
            svc.job_status.last_execution = time.time()
        self._a.propose([st.put(svc, create=True)], request_id=req.request_id)
        # By name: an earlier attempt of this call (same request id) that was
        # still in flight may be the one that applied, under its own id.
        return self._named(spec.name, warnings)

    def get(self, req: cpb.GetServiceRequest) -> cpb.ServiceResponse:
        return cpb.ServiceResponse(service=images.redacted(lookup.service(self._a.snap(), req.ref)))

    def list(self, req: cpb.ListServicesRequest) -> cpb.ListServicesResponse:
        snap = self._a.snap()
        out = cpb.ListServicesResponse()
        for svc in sorted(snap.services.values(), key=lambda s: s.spec.name):
            running, desired = views.replica_counts(snap, svc)
            s = out.services.add(service=images.redacted(svc), running=running, desired=desired)
            if tk.is_job(svc):
                s.completed, s.total = views.job_counts(snap, svc, time.time())
        return out

    def scale(self, req: cpb.ScaleServiceRequest) -> cpb.ServiceResponse:
        snap = self._a.snap()
        svc = lookup.service(snap, req.ref)
        if self._a.replayed(req.request_id):
            return self._reply(svc)
        mode = tk.service_mode(svc)
        if mode not in ("replicated", "replicated-job"):
            raise errors.FailedPrecondition(
                f"service {svc.spec.name} is {mode}: scale can only be used with replicated or replicated-job mode"
            )
        if req.replicas > validation.MAX_REPLICAS:
            raise errors.Invalid(f"{req.replicas} replicas is more than the limit of {validation.MAX_REPLICAS}")
        new = pb.Service()
        new.CopyFrom(svc)
        if mode == "replicated-job":
            # As Swarm: the completions wanted; an update, so the job runs again.
            spec = pb.ServiceSpec()
            spec.CopyFrom(svc.spec)
            spec.replicated_job.total_completions = req.replicas
            new = updater.updated_service(svc, spec, time.time())
        else:
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
            raise errors.Invalid(f"service {svc.spec.name} is {tk.service_mode(svc)}: the mode cannot be changed")
        opts.normalise_job(spec)
        validation.validate_service_spec(spec)
        warnings: list[str] = []
        if spec.task.container.image != svc.spec.task.container.image:
            # A new image (or the same tag again: `--image x:1` re-resolves
            # what x:1 is now) is pinned afresh.
            auth = req.registry_auth if req.has_registry_auth else (svc.registry_auth if svc.HasField("registry_auth") else None)
            warnings = self._pin(spec, auth, snap, req.no_resolve_image)
        elif spec.task.container.image_id != svc.spec.task.container.image_id:
            spec.task.container.image_id = svc.spec.task.container.image_id  # only the manager pins
        if req.has_registry_auth and req.registry_auth != svc.registry_auth:
            # As in Swarm, where the credentials are part of the task spec:
            # new credentials replace the tasks (those rejected without them too).
            spec.task.force_update += 1
        if spec.task != svc.spec.task:
            validation.check_schedulable(spec, snap)
        updater.with_defaults(spec)
        validation.prepare_service_networking(spec, snap, service_id=svc.id)
        validation.prepare_service_storage(spec, snap)
        new = updater.updated_service(svc, spec, time.time())
        if req.has_registry_auth:
            new.ClearField("registry_auth")
            if req.HasField("registry_auth") and req.registry_auth != pb.RegistryAuth():
                new.registry_auth.CopyFrom(req.registry_auth)
        self._a.propose([st.put(new)], request_id=req.request_id)
        return self._reply(new, warnings)

    def rollback(self, req: cpb.RollbackServiceRequest) -> cpb.ServiceResponse:
        snap = self._a.snap()
        svc = lookup.service(snap, req.ref)
        if self._a.replayed(req.request_id):
            return self._reply(svc)
        if not svc.HasField("previous_spec"):
            raise errors.FailedPrecondition(
                f"service {svc.spec.name} has no previous spec to roll back to (it was never updated)"
            )
        # A secret or config the previous spec names may have been removed since.
        validation.prepare_service_storage(pb.ServiceSpec(task=svc.previous_spec.task), snap)
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
