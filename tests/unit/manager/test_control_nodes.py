"""The nodes resource of the control API on a real one-manager store."""

from __future__ import annotations

import pytest

from swarmlet import errors
from swarmlet.api import control_pb2 as cpb
from swarmlet.api import objects_pb2 as pb
from swarmlet.core import state as st
from tests.unit.manager import helpers as h
from tests.unit.manager.conftest import WORKER1, WORKER2, OneManager


def test_list_shows_the_leader_from_this_managers_raft_view(one_manager: OneManager) -> None:
    m = one_manager
    out = m.control.nodes.list(cpb.ListNodesRequest())
    assert [n.description.hostname for n in out.nodes] == ["manager-1", "worker-1", "worker-2"]
    assert out.leader_id == h.MANAGER_ID
    manager = out.nodes[0].manager_status
    assert manager.leader and manager.reachability == pb.ManagerStatus.REACHABLE
    # The view is computed, not stored.
    assert not m.store.snapshot().nodes[h.MANAGER_ID].manager_status.leader


def test_get_by_hostname_id_or_prefix(one_manager: OneManager) -> None:
    nodes = one_manager.control.nodes
    for ref in ("worker-1", WORKER1, WORKER1[:7]):
        assert nodes.get(cpb.GetNodeRequest(ref=ref)).node.id == WORKER1
    with pytest.raises(errors.FailedPrecondition, match="ambiguous"):
        nodes.get(cpb.GetNodeRequest(ref="worker"))
    with pytest.raises(errors.NotFound, match="node 'nope' not found"):
        nodes.get(cpb.GetNodeRequest(ref="nope"))


def test_update_availability_and_labels(one_manager: OneManager) -> None:
    m = one_manager
    req = cpb.UpdateNodeRequest(
        ref="worker-1", set_availability=True, availability=pb.NodeSpec.DRAIN, label_add={"zone": "a", "disk": "ssd"}
    )
    out = m.control.nodes.update(req).node
    assert out.spec.availability == pb.NodeSpec.DRAIN
    assert dict(out.spec.labels) == {"zone": "a", "disk": "ssd"}
    m.control.nodes.update(cpb.UpdateNodeRequest(ref="worker-1", label_rm=["disk"]))
    assert dict(m.store.snapshot().nodes[WORKER1].spec.labels) == {"zone": "a"}


def test_update_refuses_bad_input_and_changes_nothing(one_manager: OneManager) -> None:
    m = one_manager
    before = m.store.state_digest()
    with pytest.raises(errors.Invalid, match="unknown availability"):
        m.control.nodes.update(cpb.UpdateNodeRequest(ref="worker-1", set_availability=True, availability=42))
    with pytest.raises(errors.Invalid, match="a label needs a key"):
        m.control.nodes.update(cpb.UpdateNodeRequest(ref="worker-1", label_add={"": "x"}))
    # One good change and one bad one in the same request: neither applies.
    with pytest.raises(errors.NotFound, match="node worker-1 has no label 'zone'"):
        m.control.nodes.update(cpb.UpdateNodeRequest(ref="worker-1", label_add={"disk": "ssd"}, label_rm=["zone"]))
    assert m.store.state_digest() == before


def test_remove_needs_a_down_worker_or_force(one_manager: OneManager) -> None:
    m = one_manager
    remove = m.control.nodes.remove
    with pytest.raises(errors.FailedPrecondition, match="is a manager: demote it first"):
        remove(cpb.RemoveNodeRequest(ref="manager-1", force=True))
    with pytest.raises(errors.FailedPrecondition, match="is not down and can't be removed"):
        remove(cpb.RemoveNodeRequest(ref="worker-1"))
    assert set(m.store.snapshot().nodes) == {h.MANAGER_ID, WORKER1, WORKER2}

    assert remove(cpb.RemoveNodeRequest(ref="worker-1", force=True)).id == WORKER1
    down = pb.Node()
    down.CopyFrom(m.store.snapshot().nodes[WORKER2])
    down.status.state = pb.NodeStatus.DOWN
    m.store.propose([st.put(down)])
    assert remove(cpb.RemoveNodeRequest(ref="worker-2")).id == WORKER2
    assert set(m.store.snapshot().nodes) == {h.MANAGER_ID}
