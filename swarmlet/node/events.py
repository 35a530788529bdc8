"""`Control.Events` on the local API (issue 16): the cluster's event stream
for this node's CLI, from whichever manager can give it.

A manager's daemon streams from its own history first; a worker's daemon
streams from a manager over mutual TLS (ClusterEvents.Watch). When the source
fails (the manager dies, is cut off, or no longer holds the history a resume
needs), the next manager is asked to continue strictly after the last
position delivered: the CLI sees no gap and no duplicate. Every stream starts
with a progress marker carrying its starting position, so even a failover
before the first event loses nothing.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Protocol

import grpc

from swarmlet import errors, rpc
from swarmlet.agent.session import AgentSession
from swarmlet.api import events_pb2 as epb
from swarmlet.api import events_pb2_grpc as egrpc
from swarmlet.core import events as ev
from swarmlet.manager.events import watch
from swarmlet.node.membership import NOT_IN_CLUSTER, Membership

if TYPE_CHECKING:  # a worker's daemon never loads the store (pysyncobj)
    from swarmlet.manager.store import Store

log = logging.getLogger(__name__)

# A stream gives up once no manager could continue it for this long.
GIVE_UP_AFTER = 60.0
_BACKOFF = (0.1, 0.2, 0.5, 1.0)

# (description, open(request) -> events)
Source = tuple[str, Callable[[epb.EventsRequest], Iterator[epb.Event]]]


def relay(
    req: epb.EventsRequest,
    sources: Callable[[], list[Source]],
    active: Callable[[], bool],
    give_up_after: float = GIVE_UP_AFTER,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[epb.Event]:
    """The events of `req` from the first source that can give them, moving
    to the next one (and resuming after the last position delivered) when a
    source fails. A bad request (errors.Invalid) ends it at once; so does
    `give_up_after` seconds without any source answering."""
    last: ev.Position | None = None
    turn = 0
    failing_since: float | None = None
    reasons: dict[str, str] = {}
    while active():
        found = sources()
        if not found:
            raise errors.Unavailable("no manager is known to this node: cannot stream events")
        name, open_ = found[turn % len(found)]
        r = req if last is None else ev.resume_request(req, last)
        try:
            for e in open_(r):
                last = ev.position(e)
                failing_since = None
                yield e
            return  # the stream ended by itself: `until` was reached
        except grpc.RpcError as e:
            err = rpc.from_rpc_error(e)
        except errors.SwarmletError as e:
            err = e
        if isinstance(err, errors.Invalid) or not active():
            raise err
        reasons[name] = str(err)
        log.info("event stream from %s ended (%s): trying the next manager", name, err)
        now = time.monotonic()
        failing_since = failing_since or now
        if now - failing_since > give_up_after:
            detail = "; ".join(f"{k}: {v}" for k, v in reasons.items())
            raise errors.Unavailable(f"no manager could continue the event stream ({detail})")
        turn += 1
        if turn % len(found) == 0:
            sleep(_BACKOFF[min(turn // len(found) - 1, len(_BACKOFF) - 1)])


def remote_source(addr: str, channel: Callable[[str], grpc.Channel], context: grpc.ServicerContext) -> Source:
    """Streaming from the manager at `addr` (its mutual-TLS API port)."""

    def open_(req: epb.EventsRequest) -> Iterator[epb.Event]:
        ch = channel(addr)
        call = egrpc.ClusterEventsStub(ch).Watch(req)
        context.add_callback(call.cancel)
        try:
            yield from call
        finally:
            call.cancel()
            ch.close()

    return (f"manager {addr}", open_)


def ordered_managers(managers: list[str], first: str | None, own: str) -> list[str]:
    """The managers to ask, the one this node's session is with first (the
    leader), this node itself left out (it is asked through its store)."""
    rest = [m for m in managers if m != own]
    if first in rest:
        rest.remove(first)
        rest.insert(0, first)
    return rest


class EventsNode(Protocol):
    """What serving the local stream needs of the daemon."""

    membership: Membership
    store: Store | None
    session: AgentSession | None

    def agent_channel(self, addr: str) -> grpc.Channel: ...


def serve(node: EventsNode, req: epb.EventsRequest, context: grpc.ServicerContext) -> Iterator[epb.Event]:
    """Control.Events for this node's CLI: this manager's own history first
    (on a manager), then the other managers, the session's first."""
    m = node.membership
    if m.node is None:
        raise errors.FailedPrecondition(NOT_IN_CLUSTER)

    def sources() -> list[Source]:
        out: list[Source] = []
        store = node.store
        if store is not None:
            out.append(("this manager", lambda r: watch(store.events, r, context)))
        session, state = node.session, m.node
        first = session.connected_to if session is not None else None
        for addr in ordered_managers(list(state.managers) if state is not None else [], first, m.addrs.api):
            out.append(remote_source(addr, node.agent_channel, context))
        return out

    yield from relay(req, sources, context.is_active)
