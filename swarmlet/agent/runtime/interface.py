"""What the executor needs from a container engine, and nothing more.

The executor talks to an engine only through `ContainerRuntime`, in terms of
the small records below; runtime/docker.py implements it with the Docker SDK,
runtime/fake.py in memory (so the executor's decisions are unit-tested without
an engine). The records carry what the decisions read, already interpreted:
no engine-specific dict travels past the adapter.

Failures are kinds of swarmlet's one error vocabulary (errors.py), so the
executor can tell "retry later" from "this request can never work".
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from swarmlet import errors
from swarmlet.api import objects_pb2 as pb
from swarmlet.core import images as im

# ---- failures ----


class EngineUnavailable(errors.Unavailable):
    """The engine could not be reached or failed transiently: try again later."""


class ContainerNotFound(errors.NotFound):
    """No such container (it was removed, or never existed)."""


class NameInUse(errors.AlreadyExists):
    """A container of that name exists already (possibly from a create whose
    answer was lost)."""


class EngineRefused(errors.FailedPrecondition):
    """The engine answered this request with an error (a missing binary, a bad
    argument): the message is the engine's explanation, for the user."""


# ---- records ----


class State(enum.Enum):
    CREATED = "created"  # created, never started
    RUNNING = "running"
    EXITED = "exited"  # ran and ended (or could not be started after all)
    REMOVING = "removing"  # a removal is under way: a destroy event follows


class Health(enum.Enum):
    NONE = "none"  # no health check
    STARTING = "starting"
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"


@dataclass(frozen=True)
class Container:
    """One container as the engine sees it now."""

    id: str
    name: str
    labels: Mapping[str, str]
    state: State
    pid: int = 0  # of its main process while RUNNING; 0 otherwise
    health: Health = Health.NONE
    has_healthcheck: bool = False  # the container's (image's or spec's) check is active
    exit_code: int = 0
    oom_killed: bool = False
    error: str = ""  # the engine's reason when it could not run the process
    tty: bool = False


@dataclass(frozen=True)
class Listed:
    """One entry of a container listing."""

    id: str
    labels: Mapping[str, str]
    running: bool


@dataclass(frozen=True)
class Image:
    """An image present on the engine."""

    ref: str
    healthcheck: Sequence[str] = ()  # the image's health check test ([] when none)
    id: str = ""  # "sha256:..." (issue 9)
    size: int = 0


# Called with (bytes so far, bytes expected or 0) while an image moves.
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Event:
    """A container event: `action` is one of the actions asked for."""

    action: str
    container_id: str
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class LogChunk:
    stream: str  # "stdout" | "stderr"
    data: bytes


class EventStream(Protocol):
    """Blocking; `close()` from another thread ends the iteration (the
    iterator may then raise: that also means "ended")."""

    def __iter__(self) -> Iterator[Event]: ...

    def close(self) -> None: ...


class LogStream(Protocol):
    def __iter__(self) -> Iterator[LogChunk]: ...

    def close(self) -> None: ...


# ---- the interface ----

# Container events the executor reacts to. "die" covers OOM kills (the
# inspect says so); "start" would only echo our own starts.
WATCHED_ACTIONS = ("die", "destroy", "health_status")


class ContainerRuntime(Protocol):
    """A container engine as the executor uses it. Every method may raise
    EngineUnavailable; the others are listed where they matter."""

    def inspect(self, ref: str) -> Container | None:
        """By id or name; None if there is no such container."""
        ...

    def image(self, ref: str) -> Image | None:
        """The image if present on this engine: by reference (a digest
        reference matches the registry digests it was pulled by) or id."""
        ...

    def create(self, task: pb.Task, node_id: str, image: str = "") -> str:
        """Creates the task's container (runtime/containers.py says how: name,
        labels, limits, no network, no restart policy); returns its id.
        `image`: the local image (id) to run in place of the spec's reference
        (an image fetched from a peer is known by id only). Raises NameInUse,
        EngineRefused."""
        ...

    def start(self, container_id: str) -> None:
        """Raises ContainerNotFound, EngineRefused (the process could not run)."""
        ...

    def stop(self, container_id: str, timeout: int) -> None:
        """The stop signal, then a kill after `timeout` seconds; returns once
        the container stopped."""
        ...

    def remove(self, container_id: str) -> None:
        """Forcibly; a container already gone or being removed is not an error."""
        ...

    def exec(self, container_id: str, cmd: Sequence[str], timeout: float) -> int:
        """Run `cmd` in the running container; its exit code (-1 when it
        did not end within `timeout` seconds). Raises ContainerNotFound."""
        ...

    def list_containers(self, labels: Mapping[str, str]) -> list[Listed]:
        """All containers (running or not) carrying every one of `labels`."""
        ...

    def events(self, labels: Mapping[str, str], actions: Sequence[str]) -> EventStream:
        """A stream of the events `actions` of containers carrying `labels`,
        from now on, until closed."""
        ...

    def logs(
        self, container_id: str, follow: bool, tail: int, timestamps: bool, since: float = 0.0, until: float = 0.0
    ) -> LogStream:
        """The container's output; `tail` < 0 means all of it; `since` /
        `until` (unix seconds, 0 = unbounded) keep the lines written in that
        window. Raises ContainerNotFound."""
        ...

    def describe(self) -> pb.NodeDescription:
        """The engine's host: its name, resources, engine version, platform
        and the images present (tags, and records with ids and digests)."""
        ...

    # ---- images (issue 9) ----

    def pull(self, ref: str, auth: pb.RegistryAuth | None, progress: Progress) -> Image:
        """Pull `ref` from its registry with `auth` (None: anonymous, never
        the host's own docker config). Raises EngineRefused with the
        registry's words (access denied, manifest unknown, ...)."""
        ...

    def registry_digest(self, ref: str, auth: pb.RegistryAuth | None) -> str:
        """The manifest digest the registry holds for `ref` ("sha256:..."),
        asked through the engine without pulling. Raises EngineRefused with
        the registry's words."""
        ...

    def inspect_distribution(self, ref: str, auth: pb.RegistryAuth | None) -> im.Distribution:
        """What the registry holds for `ref` (descriptor and platforms),
        asked through the engine without pulling. The registry's refusals
        keep their kind: NotFound (no such manifest or repository),
        Unauthenticated (no or bad credentials), PermissionDenied, Invalid;
        anything else is EngineRefused."""
        ...

    def export_image(self, image_id: str) -> Iterator[bytes]:
        """The image as a `docker save` tar stream. Raises ContainerNotFound
        (no such image), EngineUnavailable."""
        ...

    def load_image(self, chunks: Iterable[bytes]) -> list[str]:
        """Load a `docker save` stream; returns what the engine says it
        loaded (references or ids). A stream that ends early or breaks loads
        nothing: the engine unpacks the whole archive before it registers an
        image. Raises EngineRefused."""
        ...

    def remove_image(self, image_id: str) -> bool:
        """Remove the image and its tags; False if it was not there. Raises
        EngineRefused (in use by a container)."""
        ...
