"""Images across the cluster (issue 9): pinning a service's image when it is
created or its image changes, and `image ls / rm / push / load`.

The manager asks its own engine (the node's Docker Engine, handed in by the
daemon) for a tag's registry digest, as Swarm's CLI does through its
engine; what the answer means is decided in core/images.py. Transfers are
carried out by the nodes (agent/images.py): the manager only orders them,
as a relay chain, and follows their progress.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Protocol

import grpc

from swarmlet import errors
from swarmlet.api import agent_pb2, agent_pb2_grpc
from swarmlet.api import control_pb2 as cpb
from swarmlet.api import objects_pb2 as pb
from swarmlet.core import images as im
from swarmlet.core import lookup
from swarmlet.core import state as st
from swarmlet.manager.control.base import StoreAccess

log = logging.getLogger(__name__)

FETCH_TIMEOUT = 3600.0


class _HasId(Protocol):
    @property
    def id(self) -> str: ...


class ImageEngine(Protocol):
    """What the manager needs of its node's engine (agent/runtime/docker.py
    provides it; the manager never imports the agent)."""

    def registry_digest(self, ref: str, auth: pb.RegistryAuth | None) -> str: ...
    def inspect_distribution(self, ref: str, auth: pb.RegistryAuth | None) -> im.Distribution: ...
    def image(self, ref: str) -> _HasId | None: ...
    def load_image(self, chunks: Iterable[bytes]) -> list[str]: ...


class ImageControl:
    def __init__(
        self,
        access: StoreAccess,
        agent_channel: Callable[[str], grpc.Channel],
        engine: ImageEngine | None = None,
        node_id: Callable[[], str] = lambda: "",
    ) -> None:
        self._a = access
        self._agent_channel = agent_channel
        self._engine = engine
        self._node_id = node_id

    # ---- pinning ----

    def pin(self, spec: pb.ServiceSpec, auth: pb.RegistryAuth | None, snap: st.Snapshot) -> list[str]:
        """Pin the spec's image in place (a registry digest, else the id of
        the image the engines hold); returns the warnings for the user.
        Raises for an image that can never be found."""
        c = spec.task.container
        ref = im.parse(c.image)
        c.image_id = ""
        if self._engine is None:
            return [f"image {ref} was not pinned: this manager has no engine to ask its registry"]
        try:
            digest = self._engine.registry_digest(str(ref), auth)
        except errors.SwarmletError as e:
            local = self._engine_image_id(str(ref))
            res = im.pin_without_registry(snap, ref, str(e), local)
        else:
            if ref.digest and digest != ref.digest:
                # A reference with a digest names a manifest; the lookup's
                # answer for it is the same digest (or its list's).
                res = im.Resolution(image=str(ref))
            else:
                res = im.pin_from_registry(ref, digest)
        c.image = res.image
        c.image_id = res.image_id
        return [res.warning] if res.warning else []

    def inspect_distribution(self, ref: str, auth: pb.RegistryAuth | None) -> im.Distribution:
        """What the registry holds for `ref`, asked as pinning asks it
        (through this manager's engine, with `auth` or anonymously), for
        clients that resolve images themselves (the Engine API's GET
        /distribution). Raises the registry's refusal by kind: NotFound,
        Unauthenticated, PermissionDenied; Invalid for a bad reference."""
        parsed = im.parse(ref)
        if self._engine is None:
            raise errors.FailedPrecondition(f"cannot look {parsed} up: this manager has no engine to ask its registry")
        return self._engine.inspect_distribution(str(parsed), auth)

    def _engine_image_id(self, ref: str) -> str:
        try:
            img = self._engine.image(ref) if self._engine is not None else None
        except errors.SwarmletError:
            return ""
        return img.id if img is not None else ""

    # ---- image ls / rm ----

    def list_images(self, req: cpb.ListImagesRequest) -> cpb.ListImagesResponse:
        snap = self._a.snap()
        out = cpb.ListImagesResponse()
        for node in sorted(snap.nodes.values(), key=lambda n: (n.description.hostname, n.id)):
            for rec in node.description.image_records:
                out.images.add(node_id=node.id, node_name=lookup.node_name(node), image=rec)
        return out

    def remove_image(self, req: cpb.RemoveImageRequest) -> cpb.RemoveImageResponse:
        """Remove the image from every node holding it, unless a live task
        uses it (naming its services)."""
        snap = self._a.snap()
        found: dict[str, pb.ImageRecord] = {}
        where: dict[str, list[pb.Node]] = {}
        for node in snap.nodes.values():
            rec = im.find_local(node.description.image_records, req.ref)
            if rec is not None:
                found[rec.id] = rec
        # By id on every node: a node that received it from a peer may hold
        # it under no tag.
        for node in snap.nodes.values():
            for rec in node.description.image_records:
                if rec.id in found:
                    where.setdefault(rec.id, []).append(node)
        if not found:
            raise errors.NotFound(f"no node holds image {req.ref!r} (see `swarmlet image ls`)")
        if len(found) > 1:
            raise errors.FailedPrecondition(
                f"{req.ref!r} names {len(found)} different images on different nodes: remove one by id ({', '.join(i[:19] for i in sorted(found))})"
            )
        image_id, rec = next(iter(found.items()))
        users = im.services_using(snap, image_id, im.record_refs(rec))
        if users:
            raise errors.FailedPrecondition(
                f"image {req.ref} is in use by service{'s' if len(users) > 1 else ''} {', '.join(users)}: remove or update "
                f"{'them' if len(users) > 1 else 'it'} first"
            )
        out = cpb.RemoveImageResponse()
        for node in sorted(where[image_id], key=lambda n: lookup.node_name(n)):
            name = lookup.node_name(node)
            try:
                if not node.api_addr:
                    raise errors.Unavailable("node has no API address yet")
                stub = agent_pb2_grpc.AgentStub(self._agent_channel(node.api_addr))
                stub.RemoveImage(agent_pb2.NodeRemoveImageRequest(image_id=image_id), timeout=60)
                out.removed_from.append(name)
            except grpc.RpcError as e:
                out.errors.append(f"{name}: {e.details()}")
            except errors.SwarmletError as e:
                out.errors.append(f"{name}: {e}")
        return out

    # ---- image push / load ----

    def push(self, req: cpb.PushImageRequest, context: grpc.ServicerContext | None = None) -> Iterator[cpb.ImageTransferProgress]:
        """Put an image of this manager's engine on every ready node, as a
        relay chain: each node receives from the one before it while it
        passes the bytes on, so the source sends the image once."""
        if self._engine is None:
            raise errors.FailedPrecondition("this manager has no engine to push from")
        try:
            img = self._engine.image(req.ref)
        except errors.SwarmletError as e:
            raise errors.Unavailable(f"this manager's engine: {e}") from None
        if img is None:
            raise errors.NotFound(f"image {req.ref!r} is not in this manager's engine (load it there, or use `image load`)")
        yield from self._distribute(img.id, context)

    def load(
        self, chunks: Iterator[cpb.LoadImageChunk], context: grpc.ServicerContext | None = None
    ) -> Iterator[cpb.ImageTransferProgress]:
        """Load a `docker save` archive into this manager's engine, then push
        every image it held."""
        if self._engine is None:
            raise errors.FailedPrecondition("this manager has no engine to load into")
        loaded = self._engine.load_image(c.data for c in chunks)
        ids: list[str] = []
        for ref in loaded:
            found = self._engine.image(ref)
            if found is not None and found.id not in ids:
                ids.append(found.id)
        if not ids:
            raise errors.Invalid("the archive held no image")
        me = self._a.snap().nodes.get(self._node_id())
        for image_id in ids:
            yield cpb.ImageTransferProgress(
                node_id=me.id if me else "", node_name=lookup.node_name(me) if me else "", state="loaded", image_id=image_id
            )
            yield from self._distribute(image_id, context)

    def _distribute(self, image_id: str, context: grpc.ServicerContext | None) -> Iterator[cpb.ImageTransferProgress]:
        snap = self._a.snap()
        me = snap.nodes.get(self._node_id())
        if me is None or not me.api_addr:
            raise errors.Unavailable("this manager's own node record has no API address yet")
        targets: list[pb.Node] = []
        for node in sorted(snap.nodes.values(), key=lambda n: (lookup.node_name(n), n.id)):
            if node.id == me.id:
                continue
            if node.status.state != pb.NodeStatus.READY or not node.api_addr:
                yield self._line(
                    node, image_id, "skipped", error=f"node is {pb.NodeStatus.State.Name(node.status.state).lower()}"
                )
                continue
            if any(r.id == image_id for r in node.description.image_records):
                yield self._line(node, image_id, "present")
                continue
            targets.append(node)
        updates: queue.Queue[cpb.ImageTransferProgress | None] = queue.Queue()
        chain = [me.api_addr] + [n.api_addr for n in targets]
        for i, node in enumerate(targets):
            # Upstream first (the relay), then the nodes before it, the source last.
            sources = list(reversed(chain[: i + 1]))
            threading.Thread(
                target=self._fetch_on, args=(node, image_id, sources, updates), name="image-push", daemon=True
            ).start()
        remaining = len(targets)
        while remaining:
            item = updates.get()
            if item is None:
                remaining -= 1
                continue
            if context is None or context.is_active():
                yield item

    def _fetch_on(
        self, node: pb.Node, image_id: str, sources: list[str], updates: queue.Queue[cpb.ImageTransferProgress | None]
    ) -> None:
        names = {}
        snap = self._a.local()
        for n in snap.nodes.values():
            names[n.api_addr] = lookup.node_name(n)
        try:
            updates.put(self._line(node, image_id, "waiting", source=names.get(sources[0], sources[0])))
            stub = agent_pb2_grpc.AgentStub(self._agent_channel(node.api_addr))
            for p in stub.FetchImage(agent_pb2.FetchImageRequest(image_id=image_id, sources=sources), timeout=FETCH_TIMEOUT):
                source = p.source.removeprefix("peer ")
                updates.put(self._line(node, image_id, p.state, p.current, p.total, names.get(source, source), p.error))
        except grpc.RpcError as e:
            updates.put(self._line(node, image_id, "failed", error=str(e.details())))
        except Exception as e:  # one node's failure is a line, not the end of the push
            updates.put(self._line(node, image_id, "failed", error=str(e)))
        finally:
            updates.put(None)

    @staticmethod
    def _line(
        node: pb.Node, image_id: str, state: str, current: int = 0, total: int = 0, source: str = "", error: str = ""
    ) -> cpb.ImageTransferProgress:
        return cpb.ImageTransferProgress(
            node_id=node.id,
            node_name=lookup.node_name(node),
            state=state,
            current=current,
            total=total,
            source=source,
            error=error,
            image_id=image_id,
        )
