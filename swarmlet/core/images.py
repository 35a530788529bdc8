"""Image references and where images are in the cluster (issue 9). Pure.

A reference is docker's: `[registry[:port]/]path[:tag][@sha256:hex]`. The
manager pins a service's image to the registry's manifest digest
(`name:tag@sha256:...`), or, for an image no registry knows, to the engine
image id it found in the engines (ContainerSpec.image_id). Nodes report every
image they hold (NodeDescription.image_records: id, tags, digests); from
those reports this module says which image id a reference stands for and
which nodes hold it, so a node can fetch it from a peer instead of a
registry.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from swarmlet import errors
from swarmlet.api import objects_pb2 as pb
from swarmlet.core import state as st

DEFAULT_DOMAIN = "docker.io"
# The key docker's client config uses for Docker Hub's credentials.
DOCKER_HUB_AUTH_KEY = "https://index.docker.io/v1/"
MAX_NAME_LENGTH = 255  # docker's limit on the repository name
MAX_REFERENCE_LENGTH = 512

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[0-9a-fA-F:.]+\])(?::[0-9]+)?"
_PATH_RE = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*$")
_DOMAIN_RE = re.compile(rf"^{_DOMAIN}$")
_TAG_RE = re.compile(r"^[\w][\w.-]{0,127}$")
_DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
_ID_RE = re.compile(r"^(?:sha256:)?[0-9a-f]{12,64}$")


class InvalidReference(errors.Invalid):
    """Not a valid image reference."""


@dataclass(frozen=True)
class Reference:
    domain: str  # "docker.io" when none was given
    path: str  # "library/busybox" for docker.io's official images
    tag: str  # "" when none was given
    digest: str  # "sha256:..." or ""

    @property
    def name(self) -> str:
        """The repository name with its registry, as engines list it in
        RepoDigests (docker.io names in their short form)."""
        return familiar_name(self.domain, self.path)

    @property
    def tagged(self) -> str:
        """`name:tag` (tag "latest" when none was given and no digest pins it)."""
        tag = self.tag or ("" if self.digest else "latest")
        return f"{self.name}:{tag}" if tag else self.name

    def __str__(self) -> str:
        out = self.name
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out


def familiar_name(domain: str, path: str) -> str:
    if domain == DEFAULT_DOMAIN:
        return path.removeprefix("library/")
    return f"{domain}/{path}"


def parse(ref: str) -> Reference:
    """A reference as docker reads it; InvalidReference names what is wrong."""
    if not ref:
        raise InvalidReference("the image reference is empty")
    shown = ref if len(ref) <= 80 else ref[:60] + f"... ({len(ref)} characters)"
    if len(ref) > MAX_REFERENCE_LENGTH:
        raise InvalidReference(f"invalid image reference {shown!r}: longer than {MAX_REFERENCE_LENGTH} characters")
    rest, _, digest = ref.partition("@")
    if digest and not _DIGEST_RE.match(digest):
        raise InvalidReference(f"invalid image reference {shown!r}: the digest must be sha256: and 64 lowercase hex digits")
    name, tag = rest, ""
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > slash:
        name, tag = rest[:colon], rest[colon + 1 :]
        if not _TAG_RE.match(tag):
            raise InvalidReference(f"invalid image reference {shown!r}: invalid tag {tag!r}")
    if not name:
        raise InvalidReference(f"invalid image reference {shown!r}: no repository name")
    first, sep, remainder = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost" or first.startswith("[")):
        domain, path = first, remainder
        if not _DOMAIN_RE.match(domain):
            raise InvalidReference(f"invalid image reference {shown!r}: invalid registry host {domain!r}")
    else:
        domain, path = DEFAULT_DOMAIN, name
    if domain == DEFAULT_DOMAIN and "/" not in path:
        path = "library/" + path
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidReference(
            f"invalid image reference {shown!r}: the repository name is longer than {MAX_NAME_LENGTH} characters"
        )
    if not _PATH_RE.match(path):
        raise InvalidReference(
            f"invalid image reference {shown!r}: repository names use lowercase letters, digits and separators (. _ __ -)"
        )
    return Reference(domain=domain, path=path, tag=tag, digest=digest)


def is_image_id(ref: str) -> bool:
    """An engine image id or a prefix of one ("sha256:ab12...", "ab12cd34ef56")."""
    return bool(_ID_RE.match(ref))


def pinned(ref: Reference, digest: str) -> str:
    """`name:tag@digest`: the tag stays for people, the digest decides."""
    return str(Reference(domain=ref.domain, path=ref.path, tag=ref.tag or ("" if ref.digest else "latest"), digest=digest))


def auth_key(ref: Reference) -> str:
    """The key of the reference's registry in a docker client config."""
    return DOCKER_HUB_AUTH_KEY if ref.domain == DEFAULT_DOMAIN else ref.domain


def registry_host(ref: str) -> str:
    """The registry host of a reference ("docker.io" when none is named)."""
    return parse(ref).domain


# ---- where images are ----


def record_matches(rec: pb.ImageRecord, ref: Reference) -> bool:
    """Whether an engine's image is what `ref` names: its digest (a pinned
    reference) or, unpinned, its tag."""
    if ref.digest:
        return f"{ref.name}@{ref.digest}" in rec.digests
    return ref.tagged in rec.tags


def image_id_for(snap: st.Snapshot, spec: pb.ContainerSpec) -> str:
    """The engine image id a task's image stands for, as far as the nodes'
    reports say: the id the manager pinned, else the id of an image known by
    the reference's digest (content-addressed: every node agrees). An
    unpinned tag may stand for different images on different nodes: ""."""
    if spec.image_id:
        return spec.image_id
    try:
        ref = parse(spec.image)
    except InvalidReference:
        return ""
    if not ref.digest:
        return ""
    for node in snap.nodes.values():
        for rec in node.description.image_records:
            if record_matches(rec, ref):
                return rec.id
    return ""


def holders(snap: st.Snapshot, image_id: str, ready_only: bool = True) -> list[pb.Node]:
    """Nodes whose engine holds the image, by id (ready ones only by default)."""
    out = []
    for node in snap.nodes.values():
        if ready_only and node.status.state != pb.NodeStatus.READY:
            continue
        if any(rec.id == image_id for rec in node.description.image_records):
            out.append(node)
    return sorted(out, key=lambda n: n.id)


def find_local(records: Iterable[pb.ImageRecord], ref: str) -> pb.ImageRecord | None:
    """The image `ref` names among one engine's records: by tag, digest
    reference or id (prefix)."""
    recs = list(records)
    if is_image_id(ref):
        want = ref if ref.startswith("sha256:") else "sha256:" + ref
        found = [r for r in recs if r.id.startswith(want)]
        if len(found) == 1:
            return found[0]
    try:
        parsed = parse(ref)
    except InvalidReference:
        return None
    return next((r for r in recs if record_matches(r, parsed)), None)


def ids_by_tag(snap: st.Snapshot, ref: Reference) -> dict[str, list[pb.Node]]:
    """For an unpinned tag: the image ids the nodes hold under it, with who holds each."""
    out: dict[str, list[pb.Node]] = {}
    for node in snap.nodes.values():
        for rec in node.description.image_records:
            if record_matches(rec, ref):
                out.setdefault(rec.id, []).append(node)
    return out


def services_using(snap: st.Snapshot, image_id: str, refs: Iterable[str]) -> list[str]:
    """Names of the services with a live task whose image is `image_id` or
    one of `refs` (the references the image is known by)."""
    names = set()
    wanted_refs = set(refs)
    for t in snap.tasks.values():
        if t.desired_state > pb.RUNNING or t.status.state >= pb.COMPLETE:
            continue
        c = t.spec.container
        if c.image_id == image_id or c.image in wanted_refs or _ref_names(c.image) & wanted_refs:
            names.add(t.service_name)
    return sorted(names)


def _ref_names(image: str) -> set[str]:
    """The forms a task's reference may match a record by."""
    try:
        ref = parse(image)
    except InvalidReference:
        return set()
    out = {ref.tagged}
    if ref.digest:
        out.add(f"{ref.name}@{ref.digest}")
    return out


def record_refs(rec: pb.ImageRecord) -> list[str]:
    return list(rec.tags) + list(rec.digests)


def image_sources(snap: st.Snapshot, node_id: str, tasks: Iterable[pb.Task]) -> list[tuple[str, str, list[str]]]:
    """For each image of `tasks` (a node's assignment): (reference, image id
    or "", API addresses of other ready nodes holding it). The dispatcher
    sends this in the session, so the node can fetch from a peer."""
    seen: dict[str, tuple[str, str, list[str]]] = {}
    for t in tasks:
        if t.desired_state > pb.RUNNING or t.status.state >= pb.COMPLETE:
            continue
        c = t.spec.container
        key = f"{c.image}|{c.image_id}"
        if key in seen:
            continue
        image_id = image_id_for(snap, c)
        peers: list[str] = []
        if image_id:
            peers = [n.api_addr for n in holders(snap, image_id) if n.id != node_id and n.api_addr]
        seen[key] = (c.image, image_id, peers)
    return list(seen.values())


def service_auths(snap: st.Snapshot, tasks: Iterable[pb.Task]) -> Mapping[str, pb.RegistryAuth]:
    """The registry credentials of the services with a live task in `tasks`:
    a node gets only those of the services it runs."""
    out: dict[str, pb.RegistryAuth] = {}
    for t in tasks:
        if t.desired_state > pb.RUNNING or t.status.state >= pb.COMPLETE or t.service_id in out:
            continue
        svc = snap.services.get(t.service_id)
        if svc is not None and svc.HasField("registry_auth"):
            out[t.service_id] = svc.registry_auth
    return out


def redacted(svc: pb.Service) -> pb.Service:
    """The service as users may see it: without its registry credentials."""
    if not svc.HasField("registry_auth"):
        return svc
    out = pb.Service()
    out.CopyFrom(svc)
    out.ClearField("registry_auth")
    return out


# ---- what a registry says of a reference (issue 17: GET /distribution) ----


@dataclass(frozen=True)
class DistributionPlatform:
    """A platform of an image as the registry describes it (OCI's fields)."""

    os: str
    architecture: str
    variant: str = ""
    os_version: str = ""
    os_features: tuple[str, ...] = ()


@dataclass(frozen=True)
class Distribution:
    """A reference's manifest on its registry, without pulling it: its
    descriptor and the platforms it is built for (each entry of a manifest
    list, or the one of a single manifest)."""

    media_type: str
    digest: str
    size: int
    platforms: tuple[DistributionPlatform, ...] = ()


# ---- pinning a service's image (the manager's resolution) ----

UNKNOWN_HOST = "unknown host"
UNREACHABLE = "unreachable"
DENIED = "denied"
NOT_FOUND = "not found"
OTHER = "other"

_UNREACHABLE_WORDS = ("connection refused", "i/o timeout", "deadline exceeded", "network is unreachable", "no route to host")
_DENIED_WORDS = ("unauthorized", "authentication required", "denied", "no basic auth credentials", "forbidden")
_NOT_FOUND_WORDS = ("manifest unknown", "not found", "does not exist", "name unknown")


def classify_registry_error(message: str) -> str:
    """What a registry lookup's failure means, from the engine's words."""
    m = message.lower()
    if "lookup " in m and ("no such host" in m or "server misbehaving" in m or "unreachable" in m or "timeout" in m):
        return UNKNOWN_HOST
    if any(w in m for w in _UNREACHABLE_WORDS):
        return UNREACHABLE
    if any(w in m for w in _DENIED_WORDS):
        return DENIED
    if any(w in m for w in _NOT_FOUND_WORDS):
        return NOT_FOUND
    return OTHER


@dataclass(frozen=True)
class Resolution:
    """How a service's image is pinned: `image` (maybe with a registry
    digest), `image_id` (an engine-only image), and what the user is told."""

    image: str
    image_id: str = ""
    warning: str = ""


def pin_from_registry(ref: Reference, digest: str) -> Resolution:
    return Resolution(image=pinned(ref, digest))


def pin_without_registry(snap: st.Snapshot, ref: Reference, registry_error: str, manager_image_id: str = "") -> Resolution:
    """The registry could not pin `ref` (`registry_error`, the engine's
    words): pin it to the image the engines hold, warn that no registry has
    it; or refuse what can never work (a host that does not exist, a digest
    or tag that no registry and no engine has, a registry out of reach while
    no node holds the image); or, when the registry refused access, keep the
    reference unpinned (nodes may be given credentials: they will say)."""
    kind = classify_registry_error(registry_error)
    if kind == DENIED:
        # The registry has it but refused us: as in Swarm, the reference
        # stays unpinned and each node uses its own credentials' outcome
        # (those given with --with-registry-auth), not a copy of whatever
        # an engine happens to hold under that name.
        return Resolution(
            image=str(ref),
            warning=(
                f"image {ref} could not be accessed on a registry to record its digest ({registry_error}); "
                "nodes without it must pull it: give credentials with --with-registry-auth"
            ),
        )
    where = ids_by_tag(snap, ref) if not ref.digest else {}
    if ref.digest:
        # Already pinned: a node that pulled it by digest proves it exists.
        if any(record_matches(r, ref) for n in snap.nodes.values() for r in n.description.image_records):
            return Resolution(image=str(ref), warning=f"image {ref} could not be checked on its registry ({registry_error})")
    else:
        image_id = manager_image_id or _most_held(where)
        if image_id:
            holders_ = sorted(n.description.hostname or n.id for n in where.get(image_id, []))
            on = f" (on {', '.join(holders_)})" if holders_ else ""
            more = f"; other nodes hold other images under that tag: {len(where) - 1}" if len(where) > 1 else ""
            return Resolution(
                image=str(ref),
                image_id=image_id,
                warning=(
                    f"image {ref} could not be accessed on a registry to record its digest ({registry_error}); "
                    f"using the engines' image {image_id[:19]}{on}, which nodes fetch from each other{more}"
                ),
            )
    if kind == UNKNOWN_HOST:
        raise errors.Invalid(f"image {ref}: unknown registry host {ref.domain!r} ({registry_error})")
    if kind == NOT_FOUND:
        what = f"digest {ref.digest}" if ref.digest else f"tag {ref.tagged}"
        raise errors.NotFound(f"image {ref}: the registry has no {what} ({registry_error}) and no node holds it")
    if kind == UNREACHABLE:
        raise errors.FailedPrecondition(
            f"image {ref}: the registry {ref.domain} cannot be reached ({registry_error}) and no node holds the image"
        )
    return Resolution(
        image=str(ref),
        warning=(
            f"image {ref} could not be accessed on a registry to record its digest ({registry_error}); "
            "each node will access it on its own, possibly running different versions"
        ),
    )


def _most_held(where: Mapping[str, list[pb.Node]]) -> str:
    if not where:
        return ""
    return max(sorted(where), key=lambda i: len(where[i]))
