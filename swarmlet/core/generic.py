"""Generic resources (Swarm's user-defined resources): what a node
advertises (`swarmlet daemon --node-generic-resource gpu=2`, or named units
`--node-generic-resource gpu=GPU-1`), what a service reserves
(`--generic-resource gpu=1`), and how the units given to a task reach its
container (DOCKER_RESOURCE_GPU=GPU-1, as Swarm sets it).

Pure: the grammar, node capacity, and the environment of a task.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from swarmlet import errors
from swarmlet.api import objects_pb2 as pb

_KIND_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,62}$")
ENV_PREFIX = "DOCKER_RESOURCE_"


class GenericResourceError(errors.Invalid):
    """A malformed generic resource."""


def _split(text: str, what: str) -> tuple[str, str]:
    kind, sep, value = text.strip().partition("=")
    kind, value = kind.strip(), value.strip()
    if not sep or not value:
        raise GenericResourceError(f"invalid {what} {text!r}: expected KIND=VALUE (e.g. gpu=2)")
    if not _KIND_RE.match(kind):
        raise GenericResourceError(
            f"invalid {what} {text!r}: the kind must start with a letter and hold only letters, digits, '_', '.' or '-'"
        )
    return kind, value


def parse_node_resource(text: str) -> pb.GenericResource:
    """`gpu=2` (a count) or `gpu=GPU-1` (one named unit)."""
    kind, value = _split(text, "node generic resource")
    if value.isdigit():
        n = int(value)
        if n <= 0:
            raise GenericResourceError(f"invalid node generic resource {text!r}: the count must be positive")
        return pb.GenericResource(kind=kind, discrete_value=n)
    if any(c.isspace() or c in ",=" for c in value):
        raise GenericResourceError(f"invalid node generic resource {text!r}: a named unit has no spaces, ',' or '='")
    return pb.GenericResource(kind=kind, named_value=value)


def parse_request(text: str) -> pb.GenericResource:
    """A service's reservation: `gpu=1` (a positive count)."""
    kind, value = _split(text, "generic resource")
    if not value.isdigit() or int(value) <= 0:
        raise GenericResourceError(f"invalid generic resource {text!r}: the value must be a positive count (e.g. {kind}=1)")
    return pb.GenericResource(kind=kind, discrete_value=int(value))


def check_request(resources: Iterable[pb.GenericResource]) -> None:
    seen: set[str] = set()
    for g in resources:
        if not _KIND_RE.match(g.kind):
            raise GenericResourceError(f"invalid generic resource kind {g.kind!r}")
        if g.named_value or g.discrete_value <= 0:
            raise GenericResourceError(f"generic resource {g.kind}: a reservation is a positive count")
        if g.kind in seen:
            raise GenericResourceError(f"generic resource {g.kind} given twice")
        seen.add(g.kind)


def capacity(node: pb.Node) -> dict[str, int]:
    """Units of each kind a node has: its counts plus one per named unit."""
    out: dict[str, int] = {}
    for g in node.description.resources.generic:
        out[g.kind] = out.get(g.kind, 0) + (1 if g.named_value else int(g.discrete_value))
    return out


def named_units(node: pb.Node, kind: str) -> list[str]:
    return [g.named_value for g in node.description.resources.generic if g.kind == kind and g.named_value]


def requests(t: pb.Task) -> tuple[tuple[str, int], ...]:
    """A task's reservation as (kind, count), in kind order (hashable)."""
    if not t.spec.resources.reservations.generic:
        return ()
    return tuple(sorted((g.kind, int(g.discrete_value)) for g in t.spec.resources.reservations.generic))


def env(assigned: Sequence[pb.GenericResource]) -> list[str]:
    """DOCKER_RESOURCE_<KIND>=<units>: named units joined by ',', or the count."""
    named: dict[str, list[str]] = {}
    counts: dict[str, int] = {}
    for g in assigned:
        if g.named_value:
            named.setdefault(g.kind, []).append(g.named_value)
        else:
            counts[g.kind] = counts.get(g.kind, 0) + int(g.discrete_value)
    out = [f"{ENV_PREFIX}{k.upper()}={','.join(v)}" for k, v in sorted(named.items())]
    out += [f"{ENV_PREFIX}{k.upper()}={n}" for k, n in sorted(counts.items())]
    return out


def fmt(resources: Iterable[pb.GenericResource]) -> str:
    """For inspect --pretty: gpu=2, gpu=GPU-1."""
    return ", ".join(f"{g.kind}={g.named_value or g.discrete_value}" for g in resources)
