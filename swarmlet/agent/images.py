"""A node's images (issue 9): which local image a task runs, fetching a
missing one from a peer or a registry, serving images to peers, relaying.

Peer transfer: the peer's engine export (`docker save`) streams over the
nodes' mutual-TLS API into this engine's import. What arrives is written to a
spool file while it is loaded, so this node can pass the same bytes on to
the next node before it has them all (a relay chain: N nodes finish in about
one transfer's time). An image is used only once the engine holds it under
the image id the cluster expects (the config digest: content-addressed, and
the engine checks every layer against it on import), so a transfer cut
halfway loads nothing that runs: the engine unpacks the whole archive before
it registers an image, and the id is checked after.
"""

from __future__ import annotations

import logging
import os
import queue
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import grpc

from swarmlet import errors, metrics
from swarmlet.agent.runtime.interface import ContainerNotFound, ContainerRuntime, EngineRefused, Image
from swarmlet.api import agent_pb2, agent_pb2_grpc
from swarmlet.api import dispatcher_pb2 as dpb
from swarmlet.api import objects_pb2 as pb

log = logging.getLogger(__name__)

CHUNK = 1 << 20
# A transfer that moves no byte for this long is cut: try the next source.
STALL_TIMEOUT = 15.0
# How long an export waits for a transfer of the image to start here (the
# relay chain is ordered at once; the upstream node may not have begun yet).
RELAY_WAIT = 10.0
PROGRESS_EVERY = 0.5
# A transfer from peers that failed (cut, refused) is tried again after these
# pauses before the task is rejected on this node.
PEER_RETRY_DELAYS = (2.0, 5.0, 10.0)

# (bytes so far, bytes expected or 0, where from)
FetchProgress = Callable[[int, int, str], None]


class ImageUnavailable(errors.FailedPrecondition):
    """No source could provide the image: the message says why, in the
    registry's words where a registry answered."""


@dataclass(frozen=True)
class Source:
    """Where the cluster says a task's image can be found."""

    image_id: str
    peers: tuple[str, ...]


class _Spool:
    """Bytes of one image in transit: written once, read by the engine's
    import and by any number of relays, each at its own pace. The file is
    unlinked at once; it lives while the spool is open."""

    def __init__(self, image_id: str, record: pb.ImageRecord | None = None) -> None:
        self.image_id = image_id
        self.record = record or pb.ImageRecord(id=image_id)
        self.total = 0
        self._file = tempfile.TemporaryFile(prefix="swarmlet-image-")
        self._cond = threading.Condition()
        self._size = 0
        self._done = False
        self._error = ""
        self._readers = 0
        self._writer_open = True

    def write(self, data: bytes) -> None:
        os.pwrite(self._file.fileno(), data, self._size)
        with self._cond:
            self._size += len(data)
            self._cond.notify_all()

    def finish(self, error: str = "") -> None:
        with self._cond:
            self._done = True
            self._error = error
            self._writer_open = False
            self._cond.notify_all()
        self._maybe_close()

    @property
    def size(self) -> int:
        return self._size

    def read(self, stall: float = STALL_TIMEOUT) -> Iterator[bytes]:
        """Everything written, in order, as it arrives; raises if the
        transfer failed (the reader then has an incomplete stream)."""
        with self._cond:
            self._readers += 1
        try:
            offset = 0
            while True:
                with self._cond:
                    if not self._cond.wait_for(lambda at=offset: self._size > at or self._done, timeout=stall):  # type: ignore[misc]
                        raise errors.Unavailable(f"image {self.image_id[:19]}: transfer stalled")
                    size, done, error = self._size, self._done, self._error
                if error:
                    raise errors.Unavailable(f"image {self.image_id[:19]}: transfer failed: {error}")
                if offset < size:
                    data = os.pread(self._file.fileno(), min(CHUNK, size - offset), offset)
                    offset += len(data)
                    yield data
                elif done:
                    return
        finally:
            with self._cond:
                self._readers -= 1
            self._maybe_close()

    def _maybe_close(self) -> None:
        with self._cond:
            if self._writer_open or self._readers:
                return
        self._file.close()


class ImageStore:
    """The images of one node, as the executor and the node API use them."""

    def __init__(
        self,
        runtime: ContainerRuntime,
        channel: Callable[[str], grpc.Channel] | None = None,
        hostname: Callable[[], str] = lambda: "",
    ) -> None:
        self.runtime = runtime
        self._channel = channel
        self._hostname = hostname
        self._lock = threading.Lock()
        self._sources: dict[str, Source] = {}  # task image reference -> where it is
        self._auths: dict[str, pb.RegistryAuth] = {}  # service id -> credentials
        self._learned: dict[str, set[str]] = {}  # image id -> digest references verified via peers
        self._spools: dict[str, _Spool] = {}  # image id -> transfer into this node
        self._spool_started = threading.Condition(self._lock)
        self._fetch_locks: dict[str, threading.Lock] = {}

    # ---- what the session tells ----

    def hints(self, sources: list[dpb.ImageSource], auths: list[dpb.ServiceRegistryAuth]) -> None:
        with self._lock:
            self._sources = {s.ref: Source(s.image_id, tuple(s.peers)) for s in sources}
            self._auths = {a.service_id: a.auth for a in auths}

    def annotate(self, desc: pb.NodeDescription) -> None:
        """Add the digests this node learned from verified peer transfers to
        its description (the engine only knows digests of what it pulled)."""
        with self._lock:
            learned = {k: set(v) for k, v in self._learned.items()}
        for rec in desc.image_records:
            extra = learned.get(rec.id, set()) - set(rec.digests)
            if extra:
                rec.digests.extend(sorted(extra))

    # ---- the task's image ----

    def wanted_id(self, task: pb.Task) -> str:
        c = task.spec.container
        if c.image_id:
            return c.image_id
        with self._lock:
            src = self._sources.get(c.image)
        return src.image_id if src is not None else ""

    def local(self, task: pb.Task) -> Image | None:
        """The image this engine holds for the task: by the id the cluster
        expects when it knows one, else by reference."""
        want = self.wanted_id(task)
        if want:
            found = self.runtime.image(want)
            if found is not None:
                return found
            if task.spec.container.image_id:
                return None  # pinned to an id this engine lacks: a same-named tag is not it
        found = self.runtime.image(task.spec.container.image)
        if found is not None and want and found.id != want:
            return None
        return found

    def fetch(self, task: pb.Task, progress: FetchProgress) -> Image:
        """Bring the task's image into this engine: from a peer holding the
        id the cluster expects, else (unless the spec pins an engine-only
        id) from the registry. Raises ImageUnavailable."""
        c = task.spec.container
        want = self.wanted_id(task)
        key = want or c.image
        with self._lock:
            lock = self._fetch_locks.setdefault(key, threading.Lock())
            src = self._sources.get(c.image)
            auth = self._auths.get(task.service_id)
        with lock:  # one fetch of an image at a time; the others then find it
            if c.pull != pb.PULL_ALWAYS:
                found = self.local(task)
                if found is not None:
                    return found
            peer_error = ""
            if want and c.pull != pb.PULL_ALWAYS:
                for attempt, pause in enumerate((*PEER_RETRY_DELAYS, None)):
                    with self._lock:  # the session may have new holders by now
                        src = self._sources.get(c.image, src)
                    peers = [p for p in (src.peers if src else ()) if p]
                    if not peers:
                        break
                    try:
                        self.fetch_from(want, peers, progress)
                        found = self.runtime.image(want)
                        if found is not None:
                            return found
                    except ImageUnavailable as e:
                        peer_error = str(e)
                        if pause is None:
                            break
                        log.warning(
                            "image %s: attempt %d from peers failed, retrying in %gs: %s", want[:19], attempt + 1, pause, e
                        )
                        progress(0, 0, f"peers (retrying: {e})")
                        time.sleep(pause)
            try:
                if c.image_id:
                    # Known only to engines: no registry can have it.
                    why = peer_error or "no ready node holds it"
                    raise ImageUnavailable(f"image {c.image} ({c.image_id[:19]}) is in no registry and {why}")
                return self._pull(task, auth, want, progress, peer_error)
            except ImageUnavailable as e:
                # As Swarm's agent: `--pull always` asks for the newest
                # image, but a registry that cannot give it does not stop a
                # task whose image this engine already holds. local() only
                # answers the id the cluster expects when it knows one, so
                # a pinned digest still runs identical bits.
                found = self.local(task) if c.pull == pb.PULL_ALWAYS else None
                if found is None:
                    raise
                log.warning("image %s: the pull failed, running the local image %s: %s", c.image, found.id[:19], e)
                return found

    def _pull(self, task: pb.Task, auth: pb.RegistryAuth | None, want: str, progress: FetchProgress, peer_error: str) -> Image:
        ref = task.spec.container.image
        last = [0.0]
        with metrics.image_fetch("registry") as fetch:

            def report(cur: int, total: int) -> None:
                fetch.reached(cur)  # every report, not only the ones shown
                now = time.monotonic()
                if now - last[0] >= PROGRESS_EVERY or (total and cur >= total):
                    last[0] = now
                    progress(cur, total, "registry")

            try:
                image = self.runtime.pull(ref, auth, report)
            except EngineRefused as e:
                more = f" (peers: {peer_error})" if peer_error else ""
                raise ImageUnavailable(f"{e}{more}") from None
            if want and image.id != want:
                raise ImageUnavailable(f"the registry's {ref} is image {image.id[:19]}, not {want[:19]} as the cluster expects")
            return image

    # ---- peers ----

    def fetch_from(self, image_id: str, sources: list[str], progress: FetchProgress) -> str:
        """Receive `image_id` from the first source that has it (API
        addresses, in order); returns the source used, "" if it was here
        already. Raises ImageUnavailable naming what each source said."""
        if self.runtime.image(image_id) is not None:
            return ""
        if self._channel is None:
            raise ImageUnavailable("this node cannot reach its peers")
        tried: list[str] = []
        for addr in sources:
            try:
                self._receive(image_id, addr, progress)
                return addr
            except (errors.SwarmletError, grpc.RpcError, OSError) as e:
                detail = e.details() if isinstance(e, grpc.RpcError) else str(e)
                log.warning("image %s from %s: %s", image_id[:19], addr, detail)
                tried.append(f"{addr}: {detail}")
        raise ImageUnavailable(f"no peer could provide image {image_id[:19]} ({'; '.join(tried) or 'no peer holds it'})")

    def _receive(self, image_id: str, addr: str, progress: FetchProgress) -> None:
        with self._lock:
            if image_id in self._spools:
                raise errors.Unavailable(f"image {image_id[:19]} is being received already")
            spool = self._spools[image_id] = _Spool(image_id)
            self._spool_started.notify_all()
        try:
            # Measured from here: a refusal above (already under way) moved nothing.
            with metrics.image_fetch("peer") as fetch:
                self._stream_into(spool, addr, progress, fetch)
        finally:
            # Kept until the engine is done with it: a relay asking meanwhile
            # reads the spool rather than wait for the engine.
            with self._lock:
                self._spools.pop(image_id, None)
        with self._lock:
            self._learned.setdefault(image_id, set()).update(spool.record.digests)
        log.info("image %s received from %s (%d bytes)", image_id[:19], addr, spool.size)

    def _stream_into(self, spool: _Spool, addr: str, progress: FetchProgress, fetch: metrics.ImageFetch) -> None:
        """The peer's export into the spool, the spool into the engine at
        the same time; then the check that the engine holds the image."""
        image_id = spool.image_id
        assert self._channel is not None
        call = agent_pb2_grpc.AgentStub(self._channel(addr)).ExportImage(agent_pb2.ExportImageRequest(image_id=image_id))
        loaded: queue.Queue[BaseException | list[str]] = queue.Queue()

        def load() -> None:
            try:
                loaded.put(self.runtime.load_image(spool.read()))
            except BaseException as e:  # handed to the receiving thread
                loaded.put(e)

        threading.Thread(target=load, name="image-load", daemon=True).start()
        stop = threading.Event()
        last_chunk = [time.monotonic()]

        stalled = threading.Event()

        def watchdog() -> None:
            # A cut link may leave the stream silent for minutes: end it.
            while not stop.wait(1.0):
                if time.monotonic() - last_chunk[0] > STALL_TIMEOUT:
                    stalled.set()
                    call.cancel()
                    return

        threading.Thread(target=watchdog, name="image-watchdog", daemon=True).start()
        source = f"peer {addr}"
        error = ""
        try:
            last_report = 0.0
            for chunk in call:
                last_chunk[0] = time.monotonic()
                if chunk.HasField("image"):
                    if chunk.image.id != image_id:
                        raise errors.FailedPrecondition(f"the peer offered image {chunk.image.id[:19]}, not {image_id[:19]}")
                    spool.record = chunk.image
                if chunk.total:
                    spool.total = chunk.total
                if chunk.data:
                    spool.write(chunk.data)
                    fetch.add(len(chunk.data))
                now = time.monotonic()
                if now - last_report >= PROGRESS_EVERY:
                    last_report = now
                    progress(spool.size, spool.total, source)
            if spool.size == 0:
                raise errors.Unavailable("the peer sent nothing")
        except BaseException as e:
            error = (e.details() if isinstance(e, grpc.RpcError) else str(e)) or type(e).__name__
            if stalled.is_set():
                error = f"transfer stalled: nothing received for {STALL_TIMEOUT:g}s after {spool.size} bytes"
                raise errors.Unavailable(error) from None
            raise
        finally:
            stop.set()
            spool.finish(error)
            result = loaded.get()  # the engine import ends too (an aborted upload loads nothing)
        if isinstance(result, BaseException):
            raise errors.Unavailable(f"the engine refused the image from {addr}: {result}")
        progress(spool.size, spool.total or spool.size, source)
        # Used only once the engine holds exactly the expected id.
        if self.runtime.image(image_id) is None:
            raise errors.FailedPrecondition(f"the transfer from {addr} did not yield image {image_id[:19]}: discarded")

    def export(self, image_id: str) -> Iterator[agent_pb2.ImageChunk]:
        """The image for a peer: from this engine, or relayed from a
        transfer into this node that is under way (or starts soon)."""
        spool = self._spool_for(image_id, wait=0)
        if spool is None:
            img = self.runtime.image(image_id)
            if img is not None:
                yield from self._export_engine(image_id, img)
                return
            spool = self._spool_for(image_id, wait=RELAY_WAIT)
            if spool is None:
                img = self.runtime.image(image_id)
                if img is None:
                    raise errors.NotFound(f"node {self._hostname()} does not hold image {image_id[:19]}")
                yield from self._export_engine(image_id, img)
                return
        first = True
        for data in spool.read():
            if first:
                yield agent_pb2.ImageChunk(data=data, image=spool.record, total=spool.total)
                first = False
            else:
                yield agent_pb2.ImageChunk(data=data)

    def _spool_for(self, image_id: str, wait: float) -> _Spool | None:
        with self._lock:
            self._spool_started.wait_for(lambda: image_id in self._spools, timeout=wait)
            return self._spools.get(image_id)

    def _export_engine(self, image_id: str, img: Image) -> Iterator[agent_pb2.ImageChunk]:
        record = self._record(image_id)
        # Saved by a tag, the archive carries the tag to the receiver (by id
        # it would arrive untagged); the receiver checks the id either way.
        by = record.tags[0] if record.tags else image_id
        try:
            stream = self.runtime.export_image(by)
        except ContainerNotFound:
            raise errors.NotFound(f"node {self._hostname()} does not hold image {image_id[:19]}") from None
        first = True
        for data in stream:
            if first:
                # The saved archive is a little larger than the image's size.
                yield agent_pb2.ImageChunk(data=data, image=record, total=img.size)
                first = False
            else:
                yield agent_pb2.ImageChunk(data=data)

    def _record(self, image_id: str) -> pb.ImageRecord:
        desc = self.runtime.describe()
        self.annotate(desc)
        for rec in desc.image_records:
            if rec.id == image_id:
                return rec
        return pb.ImageRecord(id=image_id)

    def remove(self, image_id: str) -> bool:
        removed = self.runtime.remove_image(image_id)
        with self._lock:
            self._learned.pop(image_id, None)
        return removed
