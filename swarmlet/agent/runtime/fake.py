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

import itertools
import queue
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace

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
    State,
)
from swarmlet.api import objects_pb2 as pb

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
        self._ctrs: dict[str, _Ctr] = {}
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

    # ---- the test's side ----

    def add_image(self, ref: str, healthcheck: Sequence[str] = ()) -> None:
        with self._lock:
            self._images[ref] = tuple(healthcheck)

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
            hc = self._images.get(ref)
            return Image(ref=ref, healthcheck=hc) if hc is not None else None

    def create(self, task: pb.Task, node_id: str) -> str:
        name = cm.container_name(task, node_id)
        with self._lock:
            self._enter("create", name)
            if self._lookup(name) is not None:
                raise NameInUse(f'Conflict. The container name "/{name}" is already in use')
            image = task.spec.container.image
            if image not in self._images:
                raise EngineRefused(f"No such image: {image}")
            cid = self._new_id()
            self._ctrs[cid] = _Ctr(
                Container(
                    id=cid,
                    name=name,
                    labels=cm.container_labels(task, node_id),
                    state=State.CREATED,
                    has_healthcheck=cm.healthcheck_enabled(task.spec.container, self._images[image]),
                )
            )
            return cid

    def start(self, container_id: str) -> None:
        with self._lock:
            self._enter("start", container_id)
            ctr = self._find(container_id)
            if ctr.c.state is State.RUNNING:
                return
            health = Health.STARTING if ctr.c.has_healthcheck else Health.NONE
            ctr.c = replace(ctr.c, state=State.RUNNING, pid=next(self._pids), health=health, exit_code=0)

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
            return pb.NodeDescription(
                hostname=self.hostname,
                resources=pb.Resources(nano_cpus=2_000_000_000, memory_bytes=1 << 30),
                engine_version="fake",
                os="linux",
                arch="x86_64",
                images=sorted(self._images),
            )

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


def _matches(have: Mapping[str, str], want: Mapping[str, str]) -> bool:
    return all(have.get(k) == v for k, v in want.items())
