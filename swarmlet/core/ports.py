"""Published ports of services (issue 11): which combinations conflict, and
the published port a service gets when it names only the target (`-p 80`,
Compose's `"6379"`), taken from 30000-32767 as Swarm does and kept across
updates that still name only that target, as Swarm keeps it.

Ingress-mode ports answer on every node, so one is the cluster's: no other
service may publish it, in either mode. A host-mode port is held only on the
nodes that run a task publishing it, so several services may publish the
same host-mode port; the scheduler places at most one such task per node
(scheduler/filters.HostPorts)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from swarmlet import errors
from swarmlet.api import objects_pb2 as pb

DYNAMIC_FIRST = 30000
DYNAMIC_LAST = 32767

_INGRESS = pb.PortConfig.INGRESS


def proto_name(p: pb.PortConfig) -> str:
    return pb.PortConfig.Protocol.Name(p.protocol).lower()


def _key(p: pb.PortConfig) -> tuple[int, int]:
    return (p.published_port, p.protocol)


def conflict(mine: pb.PortConfig, theirs: pb.PortConfig) -> bool:
    """Two services cannot both publish these: the same port and protocol,
    unless both are host-mode."""
    return _key(mine) == _key(theirs) and (mine.publish_mode == _INGRESS or theirs.publish_mode == _INGRESS)


def check_conflicts(ports: Iterable[pb.PortConfig], others: Iterable[pb.Service]) -> None:
    """Refuse a port another service already publishes in a way that clashes."""
    mine = [p for p in ports if p.published_port]
    for other in others:
        for q in other.spec.endpoint.ports:
            for p in mine:
                if conflict(p, q):
                    mode = (
                        ""
                        if q.publish_mode == _INGRESS and p.publish_mode == _INGRESS
                        else " (an ingress port is open on every node)"
                    )
                    raise errors.FailedPrecondition(
                        f"port {q.published_port}/{proto_name(q)} is already published by service {other.spec.name!r}{mode}"
                    )


def keep_assigned(ports: Sequence[pb.PortConfig], current: Sequence[pb.PortConfig]) -> None:
    """Give every port without a published port the one the service already
    holds (in `current`, its stored ports) for the same target, protocol and
    mode, if that one is from 30000-32767 and the new ports do not publish it
    themselves (in place; each held port is given once). As Swarm's port
    allocator keeps a dynamically assigned port while the spec still names
    only its target, a spec sent again unchanged (a re-deployed stack, an
    update through docker's API) neither moves the port nor differs from the
    stored one. The stored spec holds the assigned number, not whether it was
    assigned, so a port from the dynamic range stands for an assigned one."""
    explicit = {_key(p) for p in ports if p.published_port}
    held = [q for q in current if DYNAMIC_FIRST <= q.published_port <= DYNAMIC_LAST and _key(q) not in explicit]
    for p in ports:
        if p.published_port:
            continue
        for i, q in enumerate(held):
            if (q.target_port, q.protocol, q.publish_mode) == (p.target_port, p.protocol, p.publish_mode):
                p.published_port = q.published_port
                del held[i]
                break


def assign(ports: Sequence[pb.PortConfig], others: Iterable[pb.Service], current: Sequence[pb.PortConfig] = ()) -> None:
    """Give every port without a published port one from 30000-32767 (in
    place): the one the service holds already (`current`, see keep_assigned),
    else the lowest not published by any service for its protocol, nor by
    this spec. Raises FailedPrecondition when the range is used up."""
    keep_assigned(ports, current)
    todo = [p for p in ports if not p.published_port]
    if not todo:
        return
    taken: set[tuple[int, int]] = {_key(q) for s in others for q in s.spec.endpoint.ports}
    taken |= {_key(p) for p in ports if p.published_port}
    for p in todo:
        for port in range(DYNAMIC_FIRST, DYNAMIC_LAST + 1):
            if (port, p.protocol) not in taken:
                p.published_port = port
                taken.add(_key(p))
                break
        else:
            raise errors.FailedPrecondition(
                f"no published port left in {DYNAMIC_FIRST}-{DYNAMIC_LAST} for target port {p.target_port}/{proto_name(p)}"
            )
