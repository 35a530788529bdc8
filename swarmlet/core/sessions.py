"""What a node's session carries, message by message (issue 15).

A session's first message (or first run of messages) carries everything the
node converges to; later ones only what changed for that node: tasks new or
changed in what the agent reads of them, ids of tasks no longer assigned,
the node's networks when they changed, and the node's extras (images and
registry credentials of its tasks, the secrets and configs they use, the
certificate fields) when they changed. A task whose only change is its status
(the agent's own report coming back) is not sent again. No message grows past
`MESSAGE_BUDGET` bytes: a big update goes as a run of messages, all but the
last marked `more` (the agent converges once it has the whole run), and a
task too big to be carried at all is left out and reported, so that no node
is ever sent a message it cannot receive (issue 14 saw a 5.27 MB message jam
a node).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from swarmlet.api import dispatcher_pb2 as dpb
from swarmlet.api import objects_pb2 as pb

# Target size of one session message; gRPC refuses to receive more than
# 4 MiB by default, and big messages delay the small ones behind them.
MESSAGE_BUDGET = 1 << 20
# A task bigger than this cannot be sent to its node at all (the message
# around it must stay under the 4 MiB receive limit).
MAX_TASK_BYTES = 3 << 20

# States the managers set on their own (not reported by the agent): the agent
# must hear of them.
_MANAGER_STATES = frozenset({pb.ORPHANED})


@dataclass(frozen=True)
class Header:
    """The per-node fields every message carries."""

    heartbeat_period: float
    managers: tuple[str, ...]
    node_id: str
    availability: int
    desired_role: int


# The SessionMessage fields that are a node's "extras": set together, sent
# together (extras_changed) when any of them changed.
EXTRA_FIELDS = (
    "images",
    "registry_auths",
    "secrets",
    "configs",
    "trust_pem",
    "signing_key_id",
    "cert_expiry",
    "revoked_certs",
    "manager_ids",
    "cluster_id",
)


@dataclass
class Sent:
    """What a session has sent its agent so far."""

    tasks: dict[str, pb.Task] = field(default_factory=dict)
    networks: bytes = b""
    header: Header | None = None
    extras: bytes = b""


def agent_view_changed(old: pb.Task, new: pb.Task) -> bool:
    """Whether the agent must see `new` again, having seen `old`: anything it
    reads changed, i.e. anything but the status it reported itself and the
    store's bookkeeping."""
    if old.desired_state != new.desired_state or old.spec_version != new.spec_version or old.node_id != new.node_id:
        return True
    if new.status.state != old.status.state and new.status.state in _MANAGER_STATES:
        return True
    a, b = pb.Task(), pb.Task()
    a.CopyFrom(old)
    b.CopyFrom(new)
    for t in (a, b):
        t.ClearField("status")
        t.ClearField("meta")
        t.running_at = 0
    return a != b


def update(
    sent: Sent | None,
    header: Header,
    tasks: Mapping[str, pb.Task],
    networks: Sequence[dpb.NetworkAssignment],
    session_id: str,
    budget: int = MESSAGE_BUDGET,
    max_task: int = MAX_TASK_BYTES,
    extras: dpb.SessionMessage | None = None,
) -> tuple[list[dpb.SessionMessage], Sent, list[pb.Task]]:
    """The messages that bring the agent from `sent` (None: a new session)
    to `tasks`, `networks` and `extras` (a message with only EXTRA_FIELDS
    set); what it will then have been sent; and the tasks too big to send at
    all (not in the messages, for the caller to refuse)."""
    net_bytes = b"".join(n.SerializeToString(deterministic=True) for n in networks)
    extras = extras if extras is not None else dpb.SessionMessage()
    extra_bytes = extras.SerializeToString(deterministic=True)
    too_big = [tasks[k] for k in sorted(tasks) if tasks[k].ByteSize() > max_task]
    skip = {t.id for t in too_big}
    new_sent = Sent({k: t for k, t in tasks.items() if k not in skip}, net_bytes, header, extra_bytes)
    if sent is None:
        upserts = [tasks[k] for k in sorted(new_sent.tasks)]
        removed: list[str] = []
        net_changed = extras_changed = True
    else:
        upserts = []
        for k in sorted(new_sent.tasks):
            t, before = tasks[k], sent.tasks.get(k)
            if before is None or (before is not t and agent_view_changed(before, t)):
                upserts.append(t)
        removed = sorted(k for k in sent.tasks if k not in new_sent.tasks)
        net_changed = net_bytes != sent.networks
        extras_changed = extra_bytes != sent.extras
        if not upserts and not removed and not net_changed and not extras_changed and header == sent.header:
            return [], new_sent, too_big
    first = _message(header, session_id, incremental=sent is not None)
    first.removed_tasks.extend(removed)
    if net_changed:
        first.networks.extend(networks)
        first.networks_changed = True
    if extras_changed:
        first.MergeFrom(extras)
        first.extras_changed = True
    out = [first]
    size = first.ByteSize()
    for t in upserts:
        n = t.ByteSize() + 8
        if size + n > budget and out[-1].tasks:
            out[-1].more = True
            out.append(_message(header, session_id, incremental=True))
            size = out[-1].ByteSize()
        out[-1].tasks.append(t)
        size += n
    return out, new_sent, too_big


def _message(h: Header, session_id: str, incremental: bool) -> dpb.SessionMessage:
    return dpb.SessionMessage(
        session_id=session_id,
        heartbeat_period=h.heartbeat_period,
        managers=list(h.managers),
        node_id=h.node_id,
        availability=h.availability,  # type: ignore[arg-type]
        desired_role=h.desired_role,  # type: ignore[arg-type]
        incremental=incremental,
    )


class Assembler:
    """The agent's side: folds a session's messages back into the full set
    (tasks by id, networks) and says when a run of messages is complete."""

    def __init__(self) -> None:
        self.tasks: dict[str, pb.Task] = {}
        self.networks: list[dpb.NetworkAssignment] = []
        self.extras = dpb.SessionMessage()

    def add(self, msg: dpb.SessionMessage) -> bool:
        """Take one message; True when the agent should converge now (the
        last message of a run)."""
        if not msg.incremental:
            self.tasks = {}
            self.networks = []
        for k in msg.removed_tasks:
            self.tasks.pop(k, None)
        for t in msg.tasks:
            self.tasks[t.id] = t
        if msg.networks_changed or not msg.incremental:
            self.networks = list(msg.networks)
        if msg.extras_changed or not msg.incremental:
            self.extras = extras_of(msg)
        return not msg.more

    def task_list(self) -> list[pb.Task]:
        return [self.tasks[k] for k in sorted(self.tasks)]

    def message(self, last: dpb.SessionMessage) -> dpb.SessionMessage:
        """The whole state as one message: `last`'s header, every task and
        network, and the extras last sent."""
        out = dpb.SessionMessage(
            session_id=last.session_id,
            heartbeat_period=last.heartbeat_period,
            managers=list(last.managers),
            node_id=last.node_id,
            availability=last.availability,
            desired_role=last.desired_role,
            tasks=self.task_list(),
            networks=self.networks,
        )
        out.MergeFrom(self.extras)
        return out


def extras_of(msg: dpb.SessionMessage) -> dpb.SessionMessage:
    """Only the EXTRA_FIELDS of `msg`."""
    out = dpb.SessionMessage()
    for name in EXTRA_FIELDS:
        value = getattr(msg, name)
        if isinstance(value, (str, bytes, float)):
            setattr(out, name, value)
        else:
            getattr(out, name).extend(value)
    return out
