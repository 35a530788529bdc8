"""An in-memory container engine for unit tests of the executor.

It keeps what the executor can observe of a real engine: containers with
names, labels and states, exit codes, health, pids, logs, and the events
("die", "destroy", "health_status") a change emits. A test plays the parts of
the containers' processes and of an operator (`exit`, `set_health`,
`write_log`, `add_container`, `remove`), and of a failing engine (`fail`,
`set_down`); those parts work while the engine is "down". It runs nothing and
decides nothing: integration tests keep the real engine.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import queue
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace

from swarmlet import errors
from swarmlet.agent.runtime import containers as cm
from swarmlet.agent.runtime.interface import (
    Container,
    ContainerNotFound,
    EngineRefused,
    EngineUnavailable,
    Event,
    Health,
    Image,
    Listed,
    LogChunk,
    NameInUse,
    Progress,
    State,
)
from swarmlet.api import objects_pb2 as pb
from swarmlet.core import images as im

# What the fake registry answers for any manifest (a docker schema 2 one).
FAKE_MANIFEST_TYPE = "application/vnd.docker.distribution.manifest.v2+json"
FAKE_MANIFEST_SIZE = 528
STOP_EXIT_CODE = 137  # as if the stop signal went unanswered and the kill ended it


@dataclass
class _Ctr:
    c: Container
    logs: list[LogChunk] = field(default_factory=list)


class _Stream:
    """An event or log stream: items pushed by the fake, ended by close()."""

    _END = object()

    def __init__(self) -> None:
        self._q: queue.Queue[object] = queue.Queue()
        self.closed = threading.Event()

    def push(self, item: object) -> None:
        if not self.closed.is_set():
            self._q.put(item)

    def end(self) -> None:
        self._q.put(self._END)

    def close(self) -> None:
        self.closed.set()
        self._q.put(self._END)

    def _items(self) -> Iterator[object]:
        while True:
            item = self._q.get()
            if item is self._END:
                return
            yield item


class _EventStream(_Stream):
    def __init__(self, labels: Mapping[str, str], actions: Sequence[str]) -> None:
        super().__init__()
        self.labels = dict(labels)
        self.actions = set(actions)

    def __iter__(self) -> Iterator[Event]:
        for item in self._items():
            assert isinstance(item, Event)
            yield item


class _LogStream(_Stream):
    def __iter__(self) -> Iterator[LogChunk]:
        for item in self._items():
            assert isinstance(item, LogChunk)
            yield item


class FakeRuntime:
    def __init__(self, hostname: str = "fake-host", images: Mapping[str, Sequence[str]] | None = None) -> None:
        self.hostname = hostname
        self._lock = threading.Lock()
        self._images: dict[str, tuple[str, ...]] = {ref: tuple(hc) for ref, hc in (images or {}).items()}
        # ref -> (digest, health check, credentials or None): what pull finds.
        self.registry: dict[str, tuple[str, tuple[str, ...], tuple[str, str] | None]] = {}
        self._pulled_digests: dict[str, set[str]] = {}
        self.pull_delay = 0.0  # seconds a pull takes between its progress reports
        self._ctrs: dict[str, _Ctr] = {}
        # container id -> the task it was created for, as given to create()
        self.created_tasks: dict[str, pb.Task] = {}
        # exit code of exec() per container (default 0), and the commands run
        self.exec_codes: dict[str, int] = {}
        self.exec_default = 0
        self.execs: list[tuple[str, list[str]]] = []
        self._ids = itertools.count(1)
        self._pids = itertools.count(1000)
        self._events: list[_EventStream] = []
        self._followers: dict[str, list[_LogStream]] = {}
        self._failures: dict[str, list[Exception]] = {}
        self._down = False
        # Held stops block until the test releases them (a long grace period).
        self.stops_released = threading.Event()
        self.stops_released.set()
        self.calls: list[tuple[str, str]] = []  # (method, argument), in order
        self.mounts: dict[str, list[pb.Mount]] = {}  # container id -> the mounts it was created with

    # ---- the test's side ----

    def add_image(self, ref: str, healthcheck: Sequence[str] = ()) -> None:
        with self._lock:
            self._images[ref] = tuple(healthcheck)

    # ---- images (issue 9): a registry the fake engine pulls from ----

    def add_to_registry(
        self, ref: str, digest: str = "", healthcheck: Sequence[str] = (), credentials: tuple[str, str] | None = None
    ) -> str:
        """`ref` ("name:tag") is in the fake registry; with `credentials`
        (user, password) only those may pull it. Returns its digest."""
        digest = digest or "sha256:" + hashlib.sha256(ref.encode()).hexdigest()
        with self._lock:
            self.registry[ref] = (digest, tuple(healthcheck), credentials)
        return digest

    def remove_from_registry(self, ref: str) -> None:
        with self._lock:
            self.registry.pop(ref, None)

    def fail(self, method: str, error: Exception, times: int = 1) -> None:
        """The next `times` calls of `method` raise `error`."""
        with self._lock:
            self._failures.setdefault(method, []).extend([error] * times)

    def set_down(self, down: bool) -> None:
        """An unreachable engine: every call fails, open event streams end."""
        with self._lock:
            self._down = down
            streams, self._events = (self._events, []) if down else ([], self._events)
        for s in streams:
            s.end()

    def add_container(self, name: str, labels: Mapping[str, str]) -> str:
        """A container made behind the executor's back (an operator's
        `docker create`, or an agent run that left no trace of it)."""
        with self._lock:
            cid = self._new_id()
            self._ctrs[cid] = _Ctr(Container(id=cid, name=name, labels=dict(labels), state=State.CREATED))
            return cid

    def following(self, ref: str) -> int:
        """How many followed log streams of the container are open."""
        with self._lock:
            ctr = self._find(ref)
            return sum(1 for s in self._followers.get(ctr.c.id, []) if not s.closed.is_set())

    def exit(self, ref: str, code: int = 0, oom_killed: bool = False) -> None:
        """The container's process ends on its own."""
        self._end(ref, code, oom_killed)

    def set_health(self, ref: str, health: Health) -> None:
        with self._lock:
            ctr = self._find(ref)
            ctr.c = replace(ctr.c, health=health)
            self._emit("health_status", ctr.c)

    def write_log(self, ref: str, stream: str, data: bytes) -> None:
        chunk = LogChunk(stream=stream, data=data)
        with self._lock:
            ctr = self._find(ref)
            ctr.logs.append(chunk)
            for s in self._followers.get(ctr.c.id, []):
                s.push(chunk)

    def containers(self) -> list[Container]:
        with self._lock:
            return [ctr.c for ctr in self._ctrs.values()]

    def open_event_streams(self) -> int:
        with self._lock:
            return sum(1 for s in self._events if not s.closed.is_set())

    def count(self, method: str) -> int:
        with self._lock:
            return sum(1 for m, _ in self.calls if m == method)

    # ---- ContainerRuntime ----

    def inspect(self, ref: str) -> Container | None:
        with self._lock:
            self._enter("inspect", ref)
            ctr = self._lookup(ref)
            return ctr.c if ctr is not None else None

    def image(self, ref: str) -> Image | None:
        with self._lock:
            self._enter("image", ref)
            key = self._image_key(ref)
            if key is None:
                return None
            return Image(ref=ref, healthcheck=self._images[key], id=image_id_of(key))

    def _image_key(self, ref: str) -> str | None:
        """The stored reference `ref` names: itself, its id, or a digest
        reference of an image pulled by digest."""
        if ref in self._images:
            return ref
        for key in self._images:
            if image_id_of(key) == ref or ref in self._pulled_digests.get(key, ()):
                return key
        return None

    def create(self, task: pb.Task, node_id: str, image: str = "") -> str:
        name = cm.container_name(task, node_id)
        with self._lock:
            self._enter("create", name)
            if self._lookup(name) is not None:
                raise NameInUse(f'Conflict. The container name "/{name}" is already in use')
            image = self._image_key(image or task.spec.container.image) or image or task.spec.container.image
            if image not in self._images:
                raise EngineRefused(f"No such image: {image}")
            for m in task.spec.container.mounts:  # as the engine checks binds, on the host it runs on
                if m.type == pb.Mount.BIND and not os.path.exists(m.source):
                    raise EngineRefused(f'invalid mount config for type "bind": bind source path does not exist: {m.source}')
            cid = self._new_id()
            self.mounts[cid] = list(task.spec.container.mounts)
            self._ctrs[cid] = _Ctr(
                Container(
                    id=cid,
                    name=name,
                    labels=cm.container_labels(task, node_id),
                    state=State.CREATED,
                    has_healthcheck=cm.healthcheck_enabled(task.spec.container, self._images[image]),
                )
            )
            self.created_tasks[cid] = task
            return cid

    def start(self, container_id: str) -> None:
        with self._lock:
            self._enter("start", container_id)
            ctr = self._find(container_id)
            if ctr.c.state is State.RUNNING:
                return
            health = Health.STARTING if ctr.c.has_healthcheck else Health.NONE
            ctr.c = replace(ctr.c, state=State.RUNNING, pid=next(self._pids), health=health, exit_code=0)

    def exec(self, container_id: str, cmd: Sequence[str], timeout: float) -> int:
        with self._lock:
            self._enter("exec", container_id)
            ctr = self._find(container_id)
            if ctr.c.state is not State.RUNNING:
                raise EngineRefused(f"container {container_id} is not running")
            self.execs.append((container_id, list(cmd)))
            return self.exec_codes.get(container_id, self.exec_default)

    def stop(self, container_id: str, timeout: int) -> None:
        with self._lock:
            self._enter("stop", container_id)
            self._find(container_id)
        self.stops_released.wait()
        self._end(container_id, STOP_EXIT_CODE, False)

    def remove(self, container_id: str) -> None:
        with self._lock:
            self._enter("remove", container_id)
            ctr = self._lookup(container_id)
            if ctr is None:
                return
            del self._ctrs[ctr.c.id]
            if ctr.c.state is State.RUNNING:
                self._emit("die", replace(ctr.c, state=State.EXITED, exit_code=STOP_EXIT_CODE))
            self._emit("destroy", ctr.c)
            for s in self._followers.pop(ctr.c.id, []):
                s.end()

    def list_containers(self, labels: Mapping[str, str]) -> list[Listed]:
        with self._lock:
            self._enter("list_containers", "")
            return [
                Listed(id=ctr.c.id, labels=dict(ctr.c.labels), running=ctr.c.state is State.RUNNING)
                for ctr in self._ctrs.values()
                if _matches(ctr.c.labels, labels)
            ]

    def events(self, labels: Mapping[str, str], actions: Sequence[str]) -> _EventStream:
        with self._lock:
            self._enter("events", "")
            s = _EventStream(labels, actions)
            self._events.append(s)
            return s

    def logs(
        self, container_id: str, follow: bool, tail: int, timestamps: bool, since: float = 0.0, until: float = 0.0
    ) -> _LogStream:
        # The fake keeps no times for its lines: since/until are not applied.
        with self._lock:
            self._enter("logs", container_id)
            ctr = self._find(container_id)
            s = _LogStream()
            chunks = ctr.logs if tail < 0 else ctr.logs[len(ctr.logs) - tail :] if tail else []
            for chunk in chunks:
                s.push(chunk)
            if follow and ctr.c.state is State.RUNNING:
                self._followers.setdefault(ctr.c.id, []).append(s)
            else:
                s.end()
            return s

    def describe(self) -> pb.NodeDescription:
        with self._lock:
            self._enter("describe", "")
            desc = pb.NodeDescription(
                hostname=self.hostname,
                resources=pb.Resources(nano_cpus=2_000_000_000, memory_bytes=1 << 30),
                engine_version="fake",
                os="linux",
                arch="x86_64",
                images=sorted(k for k in self._images if not k.startswith("sha256:")),
            )
            for key in sorted(self._images):
                desc.image_records.add(
                    id=image_id_of(key),
                    tags=[] if key.startswith("sha256:") else [key],
                    digests=sorted(self._pulled_digests.get(key, ())),
                )
            return desc

    def pull(self, ref: str, auth: pb.RegistryAuth | None, progress: Progress) -> Image:
        with self._lock:
            self._enter("pull", ref)
            name, _, digest = ref.partition("@")
            entry = self.registry.get(name)
            if entry is None or (digest and entry[0] != digest):
                repo = name.rsplit(":", 1)[0]
                raise EngineRefused(f"pull access denied for {repo}, repository does not exist or may require 'docker login'")
            want, hc, credentials = entry
            if credentials is not None and (auth is None or (auth.username, auth.password) != credentials):
                raise EngineRefused(f'Head "https://registry/v2/{name}/manifests": no basic auth credentials')
            self._images[name] = hc
            self._pulled_digests.setdefault(name, set()).add(f"{name.rsplit(':', 1)[0]}@{want}")
        progress(50, 100)
        time.sleep(self.pull_delay)
        progress(100, 100)
        return Image(ref=ref, healthcheck=hc, id=image_id_of(name))

    def registry_digest(self, ref: str, auth: pb.RegistryAuth | None) -> str:
        with self._lock:
            self._enter("registry_digest", ref)
            entry = self.registry.get(ref.partition("@")[0])
            if entry is None:
                raise EngineRefused(f"{ref}: manifest unknown")
            if entry[2] is not None and (auth is None or (auth.username, auth.password) != entry[2]):
                raise EngineRefused(f"{ref}: no basic auth credentials")
            return entry[0]

    def inspect_distribution(self, ref: str, auth: pb.RegistryAuth | None) -> im.Distribution:
        """A single linux/amd64 manifest per registry entry, refused as a
        registry refuses (404 unknown, 401 without the credentials)."""
        with self._lock:
            self._enter("inspect_distribution", ref)
            entry = self.registry.get(ref.partition("@")[0])
            if entry is None:
                raise errors.NotFound(f"{ref}: manifest unknown")
            if entry[2] is not None and (auth is None or (auth.username, auth.password) != entry[2]):
                raise errors.Unauthenticated(f"{ref}: no basic auth credentials")
            return im.Distribution(
                media_type=FAKE_MANIFEST_TYPE,
                digest=entry[0],
                size=FAKE_MANIFEST_SIZE,
                platforms=(im.DistributionPlatform(os="linux", architecture="amd64"),),
            )

    def export_image(self, image_id: str) -> Iterator[bytes]:
        with self._lock:
            self._enter("export_image", image_id)
            key = self._image_key(image_id)
            if key is None:
                raise ContainerNotFound(f"no such image: {image_id}")
            payload = f"FAKE-IMAGE\n{key}\n".encode() + b"x" * 1000
        return iter([payload[:500], payload[500:]])

    def load_image(self, chunks: Iterable[bytes]) -> list[str]:
        data = b"".join(chunks)  # may raise: the stream broke, nothing is loaded
        with self._lock:
            self._enter("load_image", "")
            head = data.split(b"\n", 2)
            if len(head) < 3 or head[0] != b"FAKE-IMAGE" or len(data) != len(head[0]) + len(head[1]) + 2 + 1000:
                raise EngineRefused("unexpected EOF")
            key = head[1].decode()
            self._images.setdefault(key, ())
            return [key]

    def remove_image(self, image_id: str) -> bool:
        with self._lock:
            self._enter("remove_image", image_id)
            key = self._image_key(image_id)
            if key is None:
                return False
            del self._images[key]
            return True

    # ---- inside (callers hold self._lock) ----

    def _enter(self, method: str, arg: str) -> None:
        self.calls.append((method, arg))
        if self._down:
            raise EngineUnavailable(f"{method}: engine unreachable")
        pending = self._failures.get(method)
        if pending:
            raise pending.pop(0)

    def _new_id(self) -> str:
        return f"{next(self._ids):064x}"  # as long as Docker's

    def _lookup(self, ref: str) -> _Ctr | None:
        ctr = self._ctrs.get(ref)
        if ctr is not None:
            return ctr
        return next((c for c in self._ctrs.values() if c.c.name == ref), None)

    def _find(self, ref: str) -> _Ctr:
        ctr = self._lookup(ref)
        if ctr is None:
            raise ContainerNotFound(f"No such container: {ref}")
        return ctr

    def _end(self, ref: str, code: int, oom_killed: bool) -> None:
        with self._lock:
            ctr = self._find(ref)
            if ctr.c.state is not State.RUNNING:
                return
            ctr.c = replace(ctr.c, state=State.EXITED, pid=0, exit_code=code, oom_killed=oom_killed)
            self._emit("die", ctr.c)
            for s in self._followers.pop(ctr.c.id, []):
                s.end()

    def _emit(self, action: str, c: Container) -> None:
        ev = Event(action=action, container_id=c.id, labels=dict(c.labels))
        for s in self._events:
            if action in s.actions and _matches(c.labels, s.labels):
                s.push(ev)


def image_id_of(ref: str) -> str:
    """The fake engine's id of an image: derived from its reference."""
    if ref.startswith("sha256:"):
        return ref
    return "sha256:" + hashlib.sha256(b"image:" + ref.encode()).hexdigest()


def _matches(have: Mapping[str, str], want: Mapping[str, str]) -> bool:
    return all(have.get(k) == v for k, v in want.items())
