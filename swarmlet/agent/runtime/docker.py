"""The Docker Engine as a ContainerRuntime: every Docker SDK call of the agent
is in this module. It turns the engine's answers into the interface's records
and its failures into the interface's errors; what to create for a task comes
from runtime/containers.py.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import docker
import docker.errors
import requests
from docker.types import CancellableStream

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

# Engine 20.10's version; later engines still serve it (their minimum is far lower).
DOCKER_API_VERSION = "1.41"
_NEVER = "0001-01-01T00:00:00Z"  # Docker's zero time: never started
# Enough pooled connections for the executor's workers (8 starting, 16
# stopping, a few more): urllib3 otherwise opens and discards extra
# connections (and warns) under a burst of starts.
_POOL_SIZE = 32


def _explanation(e: docker.errors.APIError) -> str:
    return str(e.explanation or e)


@contextlib.contextmanager
def _calling(what: str) -> Iterator[None]:
    """Engine failures as the interface's errors. Callers catch what means
    something for their call (a 404, a 409) inside this."""
    try:
        yield
    except docker.errors.NotFound as e:
        raise ContainerNotFound(f"{what}: {_explanation(e)}") from e
    except docker.errors.APIError as e:
        raise EngineRefused(_explanation(e)) from e
    except (docker.errors.DockerException, requests.RequestException, OSError) as e:
        raise EngineUnavailable(f"{what}: {e}") from e


class DockerRuntime:
    def __init__(self, url: str) -> None:
        self.url = url
        # A fixed API version: negotiating it would contact the engine here,
        # and the agent must be constructible while its engine is still down.
        self._client = docker.APIClient(base_url=url, version=DOCKER_API_VERSION, max_pool_size=_POOL_SIZE)
        # Streams (events, followed logs) may stay quiet for hours: no read
        # timeout on them (see LIBRARIES.md).
        self._stream_client = docker.APIClient(base_url=url, version=DOCKER_API_VERSION, timeout=None, max_pool_size=_POOL_SIZE)

    # ---- containers ----

    def inspect(self, ref: str) -> Container | None:
        with _calling(f"inspect {ref}"):
            try:
                info: dict[str, Any] = self._client.inspect_container(ref)
            except docker.errors.NotFound:
                return None
        return _container(info)

    def image(self, ref: str) -> Image | None:
        with _calling(f"inspect image {ref}"):
            try:
                info: dict[str, Any] = self._client.inspect_image(ref)
            except docker.errors.NotFound:
                return None
            except docker.errors.APIError as e:
                if e.status_code == 400:  # a reference the engine cannot parse: not here
                    return None
                raise
        test = ((info.get("Config") or {}).get("Healthcheck") or {}).get("Test") or []
        return Image(ref=ref, healthcheck=tuple(test), id=str(info.get("Id") or ""), size=int(info.get("Size") or 0))

    def create(self, task: pb.Task, node_id: str, image: str = "") -> str:
        kwargs = cm.create_container_kwargs(task, node_id)
        if image:
            kwargs["image"] = image
        with _calling(f"create {kwargs['name']}"):
            host_config = self._client.create_host_config(**cm.host_config_kwargs(task))
            try:
                return str(self._client.create_container(host_config=host_config, **kwargs)["Id"])
            except docker.errors.APIError as e:
                if e.status_code == 409:
                    raise NameInUse(_explanation(e)) from e
                # A 404 here (the image went since it was checked) is a
                # refusal of this create, not a missing container.
                raise EngineRefused(_explanation(e)) from e

    def start(self, container_id: str) -> None:
        with _calling(f"start {container_id[:12]}"):
            self._client.start(container_id)

    def stop(self, container_id: str, timeout: int) -> None:
        with _calling(f"stop {container_id[:12]}"):
            self._client.stop(container_id, timeout=timeout)

    def remove(self, container_id: str) -> None:
        with _calling(f"remove {container_id[:12]}"):
            try:
                self._client.remove_container(container_id, force=True)
            except docker.errors.NotFound:
                pass
            except docker.errors.APIError as e:
                if e.status_code == 409 and "already in progress" in str(e):
                    return  # a concurrent removal (e.g. by an operator)
                raise

    def exec(self, container_id: str, cmd: Sequence[str], timeout: float) -> int:
        with _calling(f"exec in {container_id[:12]}"):
            ex = self._client.exec_create(container_id, list(cmd), stdout=False, stderr=False)
            self._client.exec_start(ex["Id"], detach=True)
            deadline = time.monotonic() + timeout
            while True:
                info = self._client.exec_inspect(ex["Id"])
                if not info.get("Running"):
                    return int(info.get("ExitCode") or 0)
                if time.monotonic() >= deadline:
                    return -1  # as docker counts a check that timed out: a failure
                time.sleep(0.05)

    def list_containers(self, labels: Mapping[str, str]) -> list[Listed]:
        with _calling("list containers"):
            listed = self._client.containers(all=True, filters={"label": _label_filter(labels)})
        return [Listed(id=c["Id"], labels=dict(c.get("Labels") or {}), running=c.get("State") == "running") for c in listed]

    def events(self, labels: Mapping[str, str], actions: Sequence[str]) -> _Events:
        with _calling("events"):
            raw = self._stream_client.events(
                decode=True, filters={"type": "container", "label": _label_filter(labels), "event": list(actions)}
            )
        return _Events(raw)

    def logs(self, container_id: str, follow: bool, tail: int, timestamps: bool, since: float = 0.0, until: float = 0.0) -> _Logs:
        params = {
            "stdout": 1,
            "stderr": 1,
            "follow": 1 if follow else 0,
            "timestamps": 1 if timestamps else 0,
            "tail": "all" if tail < 0 else str(tail),
        }
        # Issue 16: the engine reads "seconds.nanoseconds", as the docker CLI sends them.
        if since > 0:
            params["since"] = f"{since:.9f}"
        if until > 0:
            params["until"] = f"{until:.9f}"
        api = self._stream_client
        # The SDK's own logs() cannot be closed while it waits on a quiet
        # container: the raw response can.
        with _calling(f"logs of {container_id[:12]}"):
            resp = api.get(f"{api.base_url}/v{api.api_version}/containers/{container_id}/logs", params=params, stream=True)
            try:
                resp.raise_for_status()
            except requests.HTTPError as e:
                try:
                    docker.errors.create_api_error_from_http_exception(e)  # raises the APIError for the status
                finally:
                    resp.close()
        return _Logs(resp)

    # ---- the host ----

    def describe(self) -> pb.NodeDescription:
        with _calling("info"):
            info: dict[str, Any] = self._client.info()
            listed = self._client.images()
            networks = self._client.networks()
        images = {tag for img in listed for tag in (img.get("RepoTags") or []) if tag and tag != "<none>:<none>"}
        desc = pb.NodeDescription(
            hostname=str(info.get("Name") or socket.gethostname()),
            resources=pb.Resources(
                nano_cpus=int(info.get("NCPU", 0)) * 1_000_000_000,
                memory_bytes=int(info.get("MemTotal", 0)),
            ),
            engine_version=str(info.get("ServerVersion", "")),
            os=str(info.get("OSType", "")),
            arch=str(info.get("Architecture", "")),
            images=sorted(images),
            engine_labels=_engine_labels(info.get("Labels")),
            engine_subnets=_engine_subnets(networks),
        )
        desc.image_records.extend(_image_record(img) for img in sorted(listed, key=lambda i: str(i.get("Id"))))
        return desc

    # ---- images (issue 9) ----

    def pull(self, ref: str, auth: pb.RegistryAuth | None, progress: Progress) -> Image:
        repo, tag = _repo_and_tag(ref)
        tracker = _PullTracker(progress)
        with _calling(f"pull {ref}"):
            # auth_config={} is "anonymous": None would make the SDK read this
            # host's own ~/.docker/config.json.
            try:
                stream = self._stream_client.pull(repo, tag=tag, stream=True, decode=True, auth_config=_auth_config(auth))
                for event in stream:
                    if event.get("error"):
                        raise EngineRefused(str((event.get("errorDetail") or {}).get("message") or event["error"]))
                    tracker.update(event)
            except docker.errors.APIError as e:  # a 404 is the registry's "no such image", not a container
                raise EngineRefused(_explanation(e)) from e
        found = self.image(ref)
        if found is None:
            raise EngineRefused(f"pulled {ref}, but the engine does not show it")
        return found

    def registry_digest(self, ref: str, auth: pb.RegistryAuth | None) -> str:
        try:
            digest = self.inspect_distribution(ref, auth).digest
        except errors.SwarmletError as e:
            if isinstance(e, EngineUnavailable):
                raise
            # Pinning reads the registry's words, whatever their status.
            raise EngineRefused(str(e)) from e
        if not digest:
            raise EngineRefused(f"the registry gave no digest for {ref}")
        return digest

    def inspect_distribution(self, ref: str, auth: pb.RegistryAuth | None) -> im.Distribution:
        with _calling(f"registry lookup of {ref}"):
            try:
                info: dict[str, Any] = self._client.inspect_distribution(ref, auth_config=_auth_config(auth))
            except docker.errors.APIError as e:
                # The engine passes the registry's status on (401, 403, 404):
                # the Engine API answers with the same one.
                kind = _REGISTRY_STATUS.get(e.status_code or 0, EngineRefused)
                raise kind(_explanation(e)) from e
        return _distribution(info)

    def export_image(self, image_id: str) -> Iterator[bytes]:
        api = self._stream_client
        with _calling(f"export of image {image_id[:19]}"):
            resp = api.get(f"{api.base_url}/v{api.api_version}/images/{image_id}/get", stream=True)
            if resp.status_code == 404:
                resp.close()
                raise ContainerNotFound(f"no such image: {image_id}")
            try:
                resp.raise_for_status()
            except requests.HTTPError as e:
                resp.close()
                raise EngineRefused(f"export of {image_id}: {e}") from e
        return _iter_body(resp, f"export of image {image_id[:19]}")

    def load_image(self, chunks: Iterable[bytes]) -> list[str]:
        loaded: list[str] = []
        with _calling("image load"):
            for event in self._stream_client.load_image(chunks):
                if event.get("error"):
                    raise EngineRefused(str((event.get("errorDetail") or {}).get("message") or event["error"]))
                text = str(event.get("stream") or "").strip()
                for prefix in ("Loaded image ID: ", "Loaded image: "):
                    if text.startswith(prefix):
                        loaded.append(text[len(prefix) :].strip())
        return loaded

    def remove_image(self, image_id: str) -> bool:
        with _calling(f"remove image {image_id[:19]}"):
            try:
                self._client.remove_image(image_id, force=True, noprune=False)
            except docker.errors.NotFound:
                return False
        return True


_REGISTRY_STATUS: dict[int, type[errors.SwarmletError]] = {
    400: errors.Invalid,
    401: errors.Unauthenticated,
    403: errors.PermissionDenied,
    404: errors.NotFound,
}


def _distribution(info: Mapping[str, Any]) -> im.Distribution:
    d = info.get("Descriptor") or {}
    platforms = tuple(
        im.DistributionPlatform(
            os=str(p.get("os") or ""),
            architecture=str(p.get("architecture") or ""),
            variant=str(p.get("variant") or ""),
            os_version=str(p.get("os.version") or ""),
            os_features=tuple(str(f) for f in p.get("os.features") or ()),
        )
        for p in info.get("Platforms") or ()
        if isinstance(p, Mapping)
    )
    return im.Distribution(
        media_type=str(d.get("mediaType") or ""),
        digest=str(d.get("digest") or ""),
        size=int(d.get("size") or 0),
        platforms=platforms,
    )


def _image_record(img: Mapping[str, Any]) -> pb.ImageRecord:
    tags = [t for t in (img.get("RepoTags") or []) if t and t != "<none>:<none>"]
    digests = [d for d in (img.get("RepoDigests") or []) if d and not d.startswith("<none>")]
    return pb.ImageRecord(id=str(img.get("Id") or ""), tags=sorted(tags), digests=sorted(digests), size=int(img.get("Size") or 0))


def _repo_and_tag(ref: str) -> tuple[str, str]:
    """The engine's pull takes a repository and a tag, which may be a digest
    (a pinned reference's tag is then only for people)."""
    name, _, digest = ref.partition("@")
    if digest:
        slash, colon = name.rfind("/"), name.rfind(":")
        return (name[:colon] if colon > slash else name), digest
    slash, colon = name.rfind("/"), name.rfind(":")
    if colon > slash:
        return name[:colon], name[colon + 1 :]
    return name, "latest"


def _auth_config(auth: pb.RegistryAuth | None) -> dict[str, str]:
    if auth is None:
        return {}
    fields = {
        "username": auth.username,
        "password": auth.password,
        "serveraddress": auth.server_address,
        "identitytoken": auth.identity_token,
        "registrytoken": auth.registry_token,
    }
    return {k: v for k, v in fields.items() if v}


class _PullTracker:
    """Bytes of a pull from the engine's per-layer progress events."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._layers: dict[str, tuple[int, int]] = {}  # layer -> (current, total)

    def update(self, event: Mapping[str, Any]) -> None:
        layer = str(event.get("id") or "")
        status = str(event.get("status") or "")
        if not layer or status.startswith(("Pulling from", "Digest:", "Status:")):
            return
        detail = event.get("progressDetail") or {}
        cur, total = self._layers.get(layer, (0, 0))
        if status == "Downloading" and detail.get("total"):
            cur, total = int(detail.get("current") or 0), int(detail["total"])
        elif status in ("Download complete", "Pull complete", "Already exists", "Verifying Checksum"):
            cur = total
        self._layers[layer] = (cur, total)
        self._progress(sum(c for c, _ in self._layers.values()), sum(t for _, t in self._layers.values()))


def _iter_body(resp: requests.Response, what: str) -> Iterator[bytes]:
    """A streamed response body; a broken connection is EngineUnavailable."""
    try:
        for chunk in resp.iter_content(chunk_size=1 << 20):
            if chunk:
                yield chunk
    except (requests.RequestException, OSError) as e:
        raise EngineUnavailable(f"{what}: {e}") from e
    finally:
        resp.close()


def _engine_labels(raw: Any) -> dict[str, str]:
    """`docker info`'s Labels ("k=v" strings, from dockerd --label) as a map."""
    out: dict[str, str] = {}
    for item in raw or []:
        k, _, v = str(item).partition("=")
        if k:
            out[k] = v
    return out


def _engine_subnets(networks: list[dict[str, Any]]) -> list[str]:
    """Subnets of the engine's own networks (docker0 and the like): overlay
    subnets must not take them (issue 13, core/reserved.py)."""
    out = set()
    for net in networks:
        for cfg in (net.get("IPAM") or {}).get("Config") or []:
            subnet = cfg.get("Subnet")
            if subnet:
                out.add(str(subnet))
    return sorted(out)


def _label_filter(labels: Mapping[str, str]) -> list[str]:
    return [f"{k}={v}" for k, v in sorted(labels.items())]


def _health(state: Mapping[str, Any]) -> Health:
    status = (state.get("Health") or {}).get("Status")
    if status is None or status == "none":
        return Health.NONE
    if status == "healthy":
        return Health.HEALTHY
    if status == "unhealthy":
        return Health.UNHEALTHY
    return Health.STARTING


def _container(info: Mapping[str, Any]) -> Container:
    state = info.get("State") or {}
    config = info.get("Config") or {}
    status = state.get("Status")
    if status == "removing":
        kind = State.REMOVING
    elif state.get("Running"):
        kind = State.RUNNING
    elif status == "created" and state.get("StartedAt", _NEVER) == _NEVER:
        kind = State.CREATED
    else:
        kind = State.EXITED
    return Container(
        id=str(info["Id"]),
        name=str(info.get("Name") or "").lstrip("/"),
        labels=dict(config.get("Labels") or {}),
        state=kind,
        pid=int(state.get("Pid") or 0) if kind is State.RUNNING else 0,
        health=_health(state),
        # The container's config already merges the image's health check.
        has_healthcheck=cm.healthcheck_active((config.get("Healthcheck") or {}).get("Test") or []),
        exit_code=int(state.get("ExitCode") or 0),
        oom_killed=bool(state.get("OOMKilled")),
        error=str(state.get("Error") or ""),
        tty=bool(config.get("Tty")),
    )


class _Events:
    def __init__(self, raw: CancellableStream) -> None:
        self._raw = raw

    def __iter__(self) -> Iterator[Event]:
        for ev in self._raw:
            actor = ev.get("Actor") or {}
            action = str(ev.get("Action") or "")
            # Health events read "health_status: healthy".
            yield Event(
                action=action.split(":", 1)[0],
                container_id=str(actor.get("ID") or ""),
                labels=dict(actor.get("Attributes") or {}),
            )

    def close(self) -> None:
        with contextlib.suppress(Exception):  # already closed, engine gone
            self._raw.close()


class _Logs:
    """Docker's multiplexed stream: an 8-byte header (stream type, 3 zero
    bytes, big-endian payload length), then the payload."""

    def __init__(self, resp: requests.Response) -> None:
        self._resp = resp
        self._stream = CancellableStream(iter(()), resp)

    def __iter__(self) -> Iterator[LogChunk]:
        raw = self._resp.raw
        while True:
            header = _read_exact(raw, 8)
            if len(header) < 8:
                return
            kind, length = struct.unpack(">BxxxL", header)
            if not length:
                continue
            data = _read_exact(raw, length)
            if len(data) < length:
                return
            yield LogChunk(stream="stderr" if kind == 2 else "stdout", data=data)

    def close(self) -> None:
        # From another thread too: shutting the socket down unblocks a read.
        with contextlib.suppress(Exception):
            self._stream.close()
        with contextlib.suppress(Exception):
            self._resp.close()


def _read_exact(raw: Any, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = raw.read(n - len(buf))
        if not chunk:
            break
        buf += chunk
    return buf
