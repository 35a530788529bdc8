"""The task vocabulary: each predicate over every (desired, observed) state
pair, building a task, grouping tasks into slots."""

from __future__ import annotations

import pytest

from swarmlet.api import objects_pb2 as pb
from swarmlet.core import tasks as tk
from tests.core_sim import Sim

STATES = [s for s in pb.TaskState.values() if s != pb.REMOVE]  # REMOVE is a desired state only
DESIRED = [pb.READY, pb.RUNNING, pb.SHUTDOWN, pb.REMOVE]


def task(desired: int = pb.RUNNING, state: int = pb.RUNNING, node: str = "n1", **kw) -> pb.Task:
    t = pb.Task(id=kw.pop("tid", "t"), desired_state=desired, node_id=node, **kw)
    t.status.state = state
    return t


# ---- predicates: each against its definition in words, over all pairs ----


@pytest.mark.parametrize("desired", DESIRED)
@pytest.mark.parametrize("state", STATES)
def test_predicates_over_every_state_pair(desired: int, state: int) -> None:
    t = task(desired, state)
    ended = state in (pb.COMPLETE, pb.SHUTDOWN, pb.FAILED, pb.REJECTED, pb.ORPHANED)
    wants_to_run = desired in (pb.READY, pb.RUNNING)
    assert tk.is_terminal(t) == ended
    assert tk.wanted(t) == wants_to_run
    assert tk.active(t) == (wants_to_run and not ended)
    assert tk.awaiting_placement(t) == (wants_to_run and state in (pb.NEW, pb.PENDING))
    assert tk.dispatched(t) == (state >= pb.ASSIGNED)
    assert tk.placed(t) == (wants_to_run and not ended and state >= pb.ASSIGNED)
    assert tk.serving(t) == (desired == pb.RUNNING and state == pb.RUNNING)
    assert tk.holds_addresses(t) == (not ended and desired != pb.REMOVE)


def test_without_a_node_nothing_is_dispatched_placed_or_serving() -> None:
    t = task(pb.RUNNING, pb.RUNNING, node="")
    assert not tk.dispatched(t) and not tk.placed(t) and not tk.serving(t)
    assert tk.wanted(t) and tk.active(t)


def test_the_three_former_is_live_differ_where_they_should() -> None:
    # Stopping (desired SHUTDOWN, still running): not wanted, keeps addresses.
    stopping = task(pb.SHUTDOWN, pb.RUNNING)
    assert not tk.wanted(stopping) and not tk.active(stopping) and tk.holds_addresses(stopping)
    # Ended but not yet shut down by the orchestrator: wanted, not active.
    crashed = task(pb.RUNNING, pb.FAILED)
    assert tk.wanted(crashed) and not tk.active(crashed) and not tk.holds_addresses(crashed)
    # Stop-first update's new task: wanted (desired READY), placed, not serving.
    parked = task(pb.READY, pb.ASSIGNED)
    assert tk.wanted(parked) and tk.placed(parked) and not tk.serving(parked)


def test_runs_current_spec_by_version_or_content() -> None:
    svc = pb.Service(id="s", spec_version=3)
    svc.spec.task.container.image = "img:2"
    same_version = task(spec_version=3)
    same_content = task(spec_version=1)
    same_content.spec.container.image = "img:2"
    old = task(spec_version=2)
    old.spec.container.image = "img:1"
    assert tk.runs_current_spec(same_version, svc)
    assert tk.runs_current_spec(same_content, svc)
    assert not tk.runs_current_spec(old, svc)


def test_age_key_orders_by_creation_then_attempt_then_id() -> None:
    a = task(tid="b", attempt=0)
    a.meta.created_at = 1.0
    b = task(tid="a", attempt=1)
    b.meta.created_at = 1.0
    c = task(tid="a", attempt=0)
    c.meta.created_at = 2.0
    d = task(tid="z", attempt=1)
    d.meta.created_at = 1.0
    assert [t.id + str(t.attempt) for t in sorted([c, d, b, a], key=tk.age_key)] == ["b0", "a1", "z1", "a0"]


def test_task_error_words() -> None:
    t = task(state=pb.FAILED)
    assert tk.task_error(t) == "failed"
    t.status.message = "started"
    t.status.exit_code = 3
    assert tk.task_error(t) == "started (exit code 3)"
    t.status.err = "task: non-zero exit code 3"
    assert tk.task_error(t) == "task: non-zero exit code 3"  # not said twice


def test_new_task() -> None:
    svc = pb.Service(id="s", spec_version=4)
    svc.spec.name = "web"
    svc.spec.task.container.image = "img"
    t = tk.new_task(svc, "t9", 50.0, slot=2, attempt=3, avoid=["n1"])
    assert (t.id, t.service_id, t.service_name, t.slot, t.node_id, t.spec_version) == ("t9", "s", "web", 2, "", 4)
    assert (t.desired_state, t.status.state, t.status.message, t.status.timestamp) == (pb.RUNNING, pb.NEW, "created", 50.0)
    assert (t.attempt, list(t.avoid_nodes), t.meta.created_at) == (3, ["n1"], 50.0)
    assert t.spec == svc.spec.task
    g = tk.new_task(svc, "t10", 51.0, slot=0, node_id="n2", desired=pb.READY, message="created by the rolling update")
    assert (g.node_id, g.desired_state, g.status.message, g.attempt) == ("n2", pb.READY, "created by the rolling update", 0)


# ---- slots ----


def test_replicated_slots_include_surplus_ones_unwanted() -> None:
    sim = Sim()
    svc = sim.add_service("s", replicas=2)
    ts = [task(tid="a", slot=1), task(tid="b", slot=3), task(tid="c", slot=3)]
    slots = tk.group_slots(svc, ts, sim.snap.nodes)
    assert [(s.slot, s.want, s.may_create, [t.id for t in s.tasks]) for s in slots] == [
        (1, True, True, ["a"]),
        (2, True, True, []),
        (3, False, False, ["b", "c"]),
    ]
    assert [s.slot for s in tk.expected_slots(svc, ts, sim.snap.nodes)] == [1, 2]


def test_global_slots_follow_node_fitness() -> None:
    sim = Sim()
    sim.add_node("active")
    sim.add_node("paused", availability=pb.NodeSpec.PAUSE)
    sim.add_node("paused-idle", availability=pb.NodeSpec.PAUSE)
    sim.add_node("drained", availability=pb.NodeSpec.DRAIN)
    sim.add_node("down", state=pb.NodeStatus.DOWN)
    sim.add_node("other", labels={"zone": "b"})
    svc = sim.add_service("g", global_=True, constraints=["node.labels.zone!=b"])
    ts = [
        task(tid="on-paused", slot=0, node="paused"),
        task(tid="on-removed", slot=0, node="gone"),
        task(tid="stray", slot=2, node="active"),
    ]
    slots = {s.node_id: s for s in tk.group_slots(svc, ts, sim.snap.nodes)}
    fit = {nid: (s.want, s.may_create) for nid, s in slots.items()}
    assert fit == {
        "active": (True, True),
        "paused": (True, False),  # keeps its task, gets no new one
        "paused-idle": (True, False),
        "drained": (False, False),
        "down": (False, False),
        "other": (False, False),  # constraint not met
        "gone": (False, False),  # a removed node
        "": (False, False),  # tasks bound to no node of a global service
    }
    assert [t.id for t in slots[""].tasks] == ["stray"]
    assert [t.id for t in slots["gone"].tasks] == ["on-removed"]
    # A user waits for a task where one will be created, or on a paused node
    # that still runs one.
    assert [s.node_id for s in tk.expected_slots(svc, ts, sim.snap.nodes)] == ["active", "paused"]


def test_global_service_with_unparsable_constraints_belongs_nowhere() -> None:
    sim = Sim()
    sim.add_node("n1")
    svc = sim.add_service("g", global_=True, constraints=["bogus"])
    assert [(s.want, s.may_create) for s in tk.group_slots(svc, [], sim.snap.nodes)] == [(False, False)]


def test_service_mode() -> None:
    sim = Sim()
    assert tk.service_mode(sim.add_service("r", replicas=1)) == "replicated"
    assert tk.service_mode(sim.add_service("g", global_=True)) == "global"


def test_global_service_runs_only_where_the_image_platform_fits() -> None:
    sim = Sim()
    sim.add_node("amd", arch="x86_64")
    sim.add_node("arm", arch="aarch64")
    svc = sim.add_service("g", global_=True)
    svc.spec.task.placement.platforms.add(os="linux", architecture="amd64")
    fit = {s.node_id: (s.want, s.may_create) for s in tk.group_slots(svc, [], sim.snap.nodes)}
    assert fit == {"amd": (True, True), "arm": (False, False)}
