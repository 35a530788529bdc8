"""The node's extras in incremental sessions (merge of issues 9, 10, 13 into
issue 15): images, secrets, configs and certificate fields are sent when they
change, kept by the agent's Assembler otherwise, and never sent for tasks of
other nodes."""

from __future__ import annotations

from swarmlet.api import dispatcher_pb2 as dpb
from swarmlet.api import objects_pb2 as pb
from swarmlet.core import sessions as ss

HEADER = ss.Header(0.5, ("10.0.0.1:4244",), "n1", pb.NodeSpec.ACTIVE, pb.NodeSpec.WORKER)


def extras(secret_ids: list[str], trust: bytes = b"root") -> dpb.SessionMessage:
    m = dpb.SessionMessage(trust_pem=trust, cluster_id="c1")
    for sid in secret_ids:
        m.secrets.add(id=sid)
    return m


def test_extras_go_when_they_change_and_the_agent_keeps_them_otherwise() -> None:
    t1 = pb.Task(id="t1", node_id="n1", desired_state=pb.RUNNING)
    msgs, sent, _ = ss.update(None, HEADER, {"t1": t1}, [], "s1", extras=extras(["a"]))
    assert len(msgs) == 1 and not msgs[0].incremental and [s.id for s in msgs[0].secrets] == ["a"]
    agent = ss.Assembler()
    assert agent.add(msgs[0])

    # A task change alone: no extras in the message, the agent keeps its own.
    t2 = pb.Task(id="t2", node_id="n1", desired_state=pb.RUNNING)
    msgs, sent, _ = ss.update(sent, HEADER, {"t1": t1, "t2": t2}, [], "s1", extras=extras(["a"]))
    assert len(msgs) == 1 and msgs[0].incremental and not msgs[0].extras_changed and not msgs[0].secrets
    assert agent.add(msgs[0])
    full = agent.message(msgs[0])
    assert [t.id for t in full.tasks] == ["t1", "t2"] and [s.id for s in full.secrets] == ["a"]
    assert full.trust_pem == b"root" and full.cluster_id == "c1"

    # Nothing changed: nothing sent.
    msgs, sent, _ = ss.update(sent, HEADER, {"t1": t1, "t2": t2}, [], "s1", extras=extras(["a"]))
    assert msgs == []

    # A new root and a secret dropped: the extras go whole, and replace.
    msgs, sent, _ = ss.update(sent, HEADER, {"t1": t1, "t2": t2}, [], "s1", extras=extras([], trust=b"new root"))
    assert len(msgs) == 1 and msgs[0].extras_changed and not msgs[0].tasks
    assert agent.add(msgs[0])
    full = agent.message(msgs[0])
    assert not full.secrets and full.trust_pem == b"new root" and len(full.tasks) == 2
