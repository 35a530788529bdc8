"""Checks on user input before anything is proposed: a bad spec gets a clear
error naming what is wrong and changes nothing."""

from __future__ import annotations

import re

from swarmlet.api import objects_pb2 as pb
from swarmlet.manager import constraints as cons
from swarmlet.manager import state as st
from swarmlet.manager.updater import validate_config as validate_update_config

_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$")
MAX_REPLICAS = 10000


class InvalidSpec(ValueError):
    pass


def _fmt_bytes(n: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return f"{n}B"


def validate_service_spec(spec: pb.ServiceSpec) -> None:
    """Syntax and ranges: no cluster state needed."""
    if not spec.name:
        raise InvalidSpec("a service needs a name (--name)")
    if not _NAME_RE.match(spec.name):
        raise InvalidSpec(
            f"invalid service name {spec.name!r}: use 1-63 letters, digits, '_', '.' or '-', starting with a letter or digit"
        )
    c = spec.task.container
    if not c.image:
        raise InvalidSpec("a service needs an image")
    if spec.WhichOneof("mode") == "replicated" and spec.replicated.replicas > MAX_REPLICAS:
        raise InvalidSpec(f"--replicas {spec.replicated.replicas} is more than the limit of {MAX_REPLICAS}")
    for e in c.env:
        if "=" not in e or e.startswith("="):
            raise InvalidSpec(f"invalid environment variable {e!r}: expected KEY=VALUE")
    for expr in spec.task.placement.constraints:
        try:
            cons.parse_constraint(expr)
        except ValueError as e:
            raise InvalidSpec(str(e)) from None
    r = spec.task.resources
    for what, v in (("--reserve-cpu", r.reservations.nano_cpus), ("--limit-cpu", r.limits.nano_cpus),
                    ("--reserve-memory", r.reservations.memory_bytes), ("--limit-memory", r.limits.memory_bytes)):
        if v < 0:
            raise InvalidSpec(f"{what} cannot be negative")
    if r.limits.memory_bytes and r.limits.memory_bytes < 6 * 1024 * 1024:
        raise InvalidSpec("--limit-memory must be at least 6MiB (Docker's minimum)")
    if r.limits.nano_cpus and r.reservations.nano_cpus > r.limits.nano_cpus:
        raise InvalidSpec("--reserve-cpu is larger than --limit-cpu")
    if r.limits.memory_bytes and r.reservations.memory_bytes > r.limits.memory_bytes:
        raise InvalidSpec("--reserve-memory is larger than --limit-memory")
    rp = spec.task.restart
    if rp.delay < 0 or rp.window < 0:
        raise InvalidSpec("restart delay and window cannot be negative")
    if c.stop_grace_period < 0:
        raise InvalidSpec("--stop-grace-period cannot be negative")
    for flag in ("update", "rollback"):
        try:
            validate_update_config(getattr(spec, flag), flag)
        except ValueError as e:
            raise InvalidSpec(str(e)) from None
    if spec.update.canary and spec.WhichOneof("mode") == "global":
        raise InvalidSpec("--update-canary is for replicated services only")


def check_schedulable(spec: pb.ServiceSpec, snap: st.Snapshot) -> None:
    """Refuse a spec that no node of the cluster could ever run: no node
    matches the constraints, the reservations exceed every matching node's
    total capacity, or no node has the image (images cannot be pulled here).
    Availability and status are ignored: a drained or down node may return."""
    nodes = list(snap.nodes.values())
    if not nodes:
        raise InvalidSpec("the cluster has no nodes")
    parsed = [cons.parse_constraint(c) for c in spec.task.placement.constraints]
    matching = [n for n in nodes if cons.matches(parsed, n)]
    if not matching:
        raise InvalidSpec(
            f"no node satisfies the constraints {list(spec.task.placement.constraints)} "
            f"(checked {len(nodes)} node{'s' if len(nodes) != 1 else ''})"
        )
    res = spec.task.resources.reservations

    def fits(n: pb.Node) -> bool:
        cap = n.description.resources
        if res.nano_cpus and cap.nano_cpus and res.nano_cpus > cap.nano_cpus:
            return False
        if res.memory_bytes and cap.memory_bytes and res.memory_bytes > cap.memory_bytes:
            return False
        return True

    if not any(fits(n) for n in matching):
        biggest_mem = max(n.description.resources.memory_bytes for n in matching)
        biggest_cpu = max(n.description.resources.nano_cpus for n in matching) / 1e9
        raise InvalidSpec(
            f"no node can ever satisfy the reservations (cpu {res.nano_cpus / 1e9:g}, memory {_fmt_bytes(res.memory_bytes)}); "
            f"the largest node has {biggest_cpu:g} CPUs and {_fmt_bytes(biggest_mem)}"
        )
    image = spec.task.container.image
    described = [n for n in matching if n.description.images]
    if described and len(described) == len(matching) and not any(_has_image(n, image) for n in described):
        raise InvalidSpec(
            f"image {image!r} is not present on any node that could run the service; "
            "swarmlet does not pull images: load it into each node's engine (docker load)"
        )


def _has_image(node: pb.Node, image: str) -> bool:
    want = image if ":" in image.rsplit("/", 1)[-1] else image + ":latest"
    return any(i == image or i == want for i in node.description.images)
