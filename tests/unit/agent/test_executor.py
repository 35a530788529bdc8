"""The executor without Docker: its decisions (decisions.decide, a pure
function), and the executor itself driven against the in-memory engine
(runtime/fake.py). tests/integration/test_executor.py runs the same executor
against a real engine."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest

from swarmlet.agent import decisions as d
from swarmlet.agent import executor as executor_mod
from swarmlet.agent.executor import Executor
from swarmlet.agent.net.wiring import NetworkNotReady
from swarmlet.agent.runtime import containers as cm
from swarmlet.agent.runtime.fake import FakeRuntime, image_id_of
from swarmlet.agent.runtime.interface import Container, EngineRefused, EngineUnavailable, Health, Listed, State
from swarmlet.api import dispatcher_pb2 as dpb
from swarmlet.api import objects_pb2 as pb
from tests.waiting import wait_for

NODE = "node1"
IMAGE = "busybox:test"
HEALTHY_IMAGE = "busybox:checked"


def task(tid: str = "t1", desired: int = pb.RUNNING, image: str = IMAGE, slot: int = 1, state: int = pb.ASSIGNED) -> pb.Task:
    t = pb.Task(id=tid, service_id="s1", service_name="web", slot=slot, node_id=NODE, desired_state=desired)  # type: ignore[arg-type]
    t.status.state = state  # type: ignore[assignment]
    t.spec.container.image = image
    return t


def with_desired(t: pb.Task, desired: int) -> pb.Task:
    out = pb.Task()
    out.CopyFrom(t)
    out.desired_state = desired  # type: ignore[assignment]
    return out


def ctr(state: State, health: Health = Health.NONE, **kw: object) -> Container:
    return Container(
        id="c1", name="web.1.t1", labels={}, state=state, health=health, pid=42 if state is State.RUNNING else 0, **kw
    )  # type: ignore[arg-type]


# ------------------------------------------------------------------ decisions


def test_decide_start_paths() -> None:
    t = task()
    assert d.decide(t, True, pb.ASSIGNED, "", None) == d.Create()
    assert d.decide(t, True, pb.ASSIGNED, "c1", ctr(State.CREATED, has_healthcheck=True)) == d.Start(health=True)
    assert d.decide(t, True, pb.ASSIGNED, "c1", ctr(State.CREATED)) == d.Start(health=False)
    # Not to be started yet, and never again once ended.
    assert isinstance(d.decide(task(desired=pb.READY), True, pb.ASSIGNED, "", None), d.Idle)
    for ended in (pb.COMPLETE, pb.FAILED, pb.REJECTED):
        assert isinstance(d.decide(t, True, ended, "c1", ctr(State.EXITED)), d.Idle)


def test_decide_running_is_gated_by_health() -> None:
    t = task()
    assert d.decide(t, True, pb.ASSIGNED, "c1", ctr(State.RUNNING)) == d.Report(d.Status(pb.RUNNING, "started"), wire=True)
    assert d.decide(t, True, pb.STARTING, "c1", ctr(State.RUNNING, Health.STARTING)) == d.Report(d.STARTING, wire=True)
    assert d.decide(t, True, pb.STARTING, "c1", ctr(State.RUNNING, Health.HEALTHY)) == d.Report(
        d.Status(pb.RUNNING, "healthy"), wire=True
    )
    # Unhealthy: stopped and failed; it keeps its wiring until the store says it ended.
    assert d.decide(t, True, pb.STARTING, "c1", ctr(State.RUNNING, Health.UNHEALTHY)) == d.Stop(d.UNHEALTHY, release=False)


def test_decide_ended_containers() -> None:
    t = task()
    done = d.decide(t, True, pb.RUNNING, "c1", ctr(State.EXITED, exit_code=0))
    assert done == d.Report(d.Status(pb.COMPLETE, "finished"), release=True)
    failed = d.decide(t, True, pb.RUNNING, "c1", ctr(State.EXITED, exit_code=3))
    assert failed == d.Report(d.Status(pb.FAILED, "exited", err="task: non-zero exit (3)", exit_code=3), release=True)
    # A container being removed: wait for its destroy event.
    assert isinstance(d.decide(t, True, pb.RUNNING, "c1", ctr(State.REMOVING)), d.Idle)


def test_decide_container_removed_behind_our_back() -> None:
    t = task()
    gone = d.decide(t, True, pb.RUNNING, "c1", None)
    assert isinstance(gone, d.Report) and gone.status.state == pb.FAILED and "c1" in gone.status.err
    # The store says it started once (an earlier agent run), its container is unknown.
    unknown = d.decide(t, True, pb.STARTING, "", None)
    assert isinstance(unknown, d.Report) and unknown.status.err == "container (unknown) was removed"


def test_decide_shutdown_and_removal() -> None:
    t = task()
    down = with_desired(t, pb.SHUTDOWN)
    assert d.decide(down, True, pb.RUNNING, "c1", ctr(State.RUNNING)) == d.Stop(d.STOPPED, release=True)
    assert d.decide(down, True, pb.RUNNING, "c1", ctr(State.EXITED)) == d.Report(d.STOPPED, release=True)
    assert d.decide(down, True, pb.ASSIGNED, "", None) == d.Report(d.STOPPED, release=True)
    # Shutdown wins over "ended": an ended task's container still stops.
    assert d.decide(down, True, pb.FAILED, "c1", ctr(State.RUNNING)) == d.Stop(d.STOPPED, release=True)
    assert d.decide(with_desired(t, pb.REMOVE), True, pb.RUNNING, "c1", ctr(State.RUNNING)) == d.Remove(d.REMOVED)
    # Dropped from the assignment: removed without a report.
    assert d.decide(t, False, pb.RUNNING, "c1", ctr(State.RUNNING)) == d.Remove()


def test_exit_status() -> None:
    assert d.exit_status(0) == d.Status(pb.COMPLETE, "finished")
    assert d.exit_status(3) == d.Status(pb.FAILED, "exited", err="task: non-zero exit (3)", exit_code=3)
    oom = d.exit_status(137, oom_killed=True)
    assert oom.state == pb.FAILED and "OOM" in oom.err and oom.err.startswith("task: non-zero exit (137)")
    # Killed by the OOM killer even with a zero exit code: a failure.
    assert d.exit_status(0, oom_killed=True).state == pb.FAILED
    assert d.exit_status(127, error="exec: not found").err == "task: non-zero exit (127): exec: not found"


def test_by_task_prefers_the_running_container_and_finds_strays() -> None:
    def listed(cid: str, running: bool, **labels: str) -> Listed:
        return Listed(id=cid, labels=labels, running=running)

    node = {cm.LABEL_NODE_ID: NODE}
    found, strays = d.by_task(
        [
            listed("old", False, **node, **{cm.LABEL_TASK_ID: "t1"}),
            listed("new", True, **node, **{cm.LABEL_TASK_ID: "t1"}),
            listed("later", False, **node, **{cm.LABEL_TASK_ID: "t1"}),
            listed("t2c", False, **node, **{cm.LABEL_TASK_ID: "t2"}),
            listed("stray", True, **node),
            listed("elsewhere", True, **{cm.LABEL_NODE_ID: "node2", cm.LABEL_TASK_ID: "t3"}),
        ],
        NODE,
    )
    assert found == {"t1": "new", "t2": "t2c"}
    assert strays == ["stray"]


# ------------------------------------------------------------------ executor


class Reports:
    """What the executor reports, collected thread-safely."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.batches: list[list[dpb.TaskStatusReport]] = []

    def __call__(self, batch: list[dpb.TaskStatusReport]) -> None:
        with self._lock:
            self.batches.append(list(batch))

    def of(self, task_id: str) -> list[pb.TaskStatus]:
        with self._lock:
            return [r.status for b in self.batches for r in b if r.task_id == task_id]

    def states(self, task_id: str) -> list[int]:
        return [s.state for s in self.of(task_id)]

    def wait_state(self, task_id: str, state: int, timeout: float = 5) -> pb.TaskStatus:
        def reached() -> pb.TaskStatus | None:
            got = self.of(task_id)
            return got[-1] if got and got[-1].state >= state else None

        st = wait_for(reached, timeout, f"{task_id} reported {pb.TaskState.Name(state)}; got {self.states(task_id)}", 0.01)
        assert st.state == state, f"{task_id}: {pb.TaskState.Name(st.state)} {st.err!r}"
        return st


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    # The ticker's period: how soon a failed reconcile is tried again.
    monkeypatch.setattr(executor_mod, "RETRY_DELAY", 0.05)


@pytest.fixture()
def engine() -> FakeRuntime:
    return FakeRuntime(hostname="engine-host", images={IMAGE: (), HEALTHY_IMAGE: ("CMD", "true")})


@pytest.fixture()
def reports() -> Reports:
    return Reports()


def run_executor(engine: FakeRuntime, reports: Reports, **kw: object) -> Executor:
    ex = Executor(engine, NODE, reports, **kw)  # type: ignore[arg-type]
    ex.start()
    return ex


@pytest.fixture()
def executor(engine: FakeRuntime, reports: Reports) -> Iterator[Executor]:
    ex = run_executor(engine, reports)
    yield ex
    ex.stop()


def only_container(engine: FakeRuntime) -> Container:
    (c,) = engine.containers()
    return c


def test_starts_a_task_once(engine: FakeRuntime, executor: Executor, reports: Reports) -> None:
    t = task()
    executor.converge([t])
    st = reports.wait_state("t1", pb.RUNNING)
    c = only_container(engine)
    assert st.container_id == c.id and st.message == "started"
    assert c.state is State.RUNNING and c.name == "web.1.t1"
    assert c.labels[cm.LABEL_TASK_ID] == "t1" and c.labels[cm.LABEL_NODE_ID] == NODE
    # The same set again and again (as every assignment message) changes nothing.
    for _ in range(5):
        executor.converge([t])
    assert executor.wait_idle(2)
    assert engine.count("create") == 1 and engine.count("start") == 1
    assert reports.states("t1") == [pb.RUNNING]


def test_running_only_once_healthy(engine: FakeRuntime, executor: Executor, reports: Reports) -> None:
    executor.converge([task(image=HEALTHY_IMAGE)])
    st = reports.wait_state("t1", pb.STARTING)
    assert st.message == "started: waiting for the health check"
    # Another look (an event) while the check has not passed: still not RUNNING.
    looks = engine.count("inspect")
    engine.set_health(st.container_id, Health.STARTING)
    wait_for(lambda: engine.count("inspect") > looks, 2, "the container looked at again")
    assert executor.wait_idle(2)
    assert reports.states("t1") == [pb.STARTING]
    engine.set_health(st.container_id, Health.HEALTHY)
    assert reports.wait_state("t1", pb.RUNNING).message == "healthy"


def test_spec_healthcheck_gates_running_too(engine: FakeRuntime, executor: Executor, reports: Reports) -> None:
    t = task()
    t.spec.container.has_healthcheck = True
    t.spec.container.healthcheck.test.extend(["CMD-SHELL", "test -f /ready"])
    executor.converge([t])
    reports.wait_state("t1", pb.STARTING)


def test_unhealthy_task_fails_and_stops(engine: FakeRuntime, executor: Executor, reports: Reports) -> None:
    executor.converge([task(image=HEALTHY_IMAGE)])
    cid = reports.wait_state("t1", pb.STARTING).container_id
    engine.set_health(cid, Health.UNHEALTHY)
    st = reports.wait_state("t1", pb.FAILED)
    assert st.err == "container unhealthy"
    wait_for(lambda: only_container(engine).state is State.EXITED, 2, "the unhealthy container stopped")
    assert reports.states("t1") == [pb.STARTING, pb.FAILED]


def test_failed_exit_is_reported_and_not_restarted(engine: FakeRuntime, executor: Executor, reports: Reports) -> None:
    t = task()
    executor.converge([t])
    cid = reports.wait_state("t1", pb.RUNNING).container_id
    engine.exit(cid, 3)
    st = reports.wait_state("t1", pb.FAILED)
    assert (st.exit_code, st.err, st.container_id) == (3, "task: non-zero exit (3)", cid)
    # A task runs once: the orchestrator makes a new task to run again.
    executor.converge([t])
    assert executor.wait_idle(2)
    assert engine.count("start") == 1 and only_container(engine).state is State.EXITED


def test_exit_zero_completes(engine: FakeRuntime, executor: Executor, reports: Reports) -> None:
    executor.converge([task()])
    cid = reports.wait_state("t1", pb.RUNNING).container_id
    engine.exit(cid, 0)
    st = reports.wait_state("t1", pb.COMPLETE)
    assert st.exit_code == 0 and st.err == ""


def test_oom_kill_fails(engine: FakeRuntime, executor: Executor, reports: Reports) -> None:
    executor.converge([task()])
    cid = reports.wait_state("t1", pb.RUNNING).container_id
    engine.exit(cid, 137, oom_killed=True)
    assert "OOM" in reports.wait_state("t1", pb.FAILED).err


def test_missing_image_is_pulled_and_a_failed_pull_rejects(engine: FakeRuntime, executor: Executor, reports: Reports) -> None:
    # Issue 9: PREPARING while the image is fetched; the registry's own words
    # when it cannot be.
    executor.converge([task(image="busybox:absent")])
    st = reports.wait_state("t1", pb.REJECTED)
    assert st.err.startswith("pull access denied for busybox")
    assert engine.containers() == []
    engine.add_to_registry("busybox:new")
    engine.pull_delay = 0.2  # so that the reports in between are not coalesced away
    executor.converge([task("t2", image="busybox:new", slot=2)])
    reports.wait_state("t2", pb.RUNNING)
    pulls = [s for s in reports.of("t2") if s.state == pb.PREPARING and s.HasField("pull")]
    assert pulls and pulls[0].pull.source == "registry" and (pulls[0].pull.current, pulls[0].pull.total) == (50, 100)


def test_pull_policy_never_names_the_configured_hostname(engine: FakeRuntime, reports: Reports) -> None:
    ex = run_executor(engine, reports, hostname="configured")
    try:
        t = task(image="busybox:absent")
        t.spec.container.pull = pb.PULL_NEVER
        ex.converge([t])
        st = reports.wait_state("t1", pb.REJECTED)
        assert st.err == 'image "busybox:absent" not found on node configured: the pull policy is never'
        assert pb.PREPARING not in reports.states("t1")
        assert engine.count("pull") == 0
        assert ex.describe().hostname == "configured"
    finally:
        ex.stop()


def test_pull_policy_always_pulls_a_present_image(engine: FakeRuntime, executor: Executor, reports: Reports) -> None:
    engine.add_to_registry(IMAGE)
    t = task()
    t.spec.container.pull = pb.PULL_ALWAYS
    executor.converge([t])
    reports.wait_state("t1", pb.RUNNING)
    assert engine.count("pull") == 1


def test_pull_policy_always_falls_back_to_the_local_image(engine: FakeRuntime, executor: Executor, reports: Reports) -> None:
    # As Swarm: a failed pull under --pull always runs the image this engine
    # holds; with no local image the registry's words reject the task.
    t = task()
    t.spec.container.pull = pb.PULL_ALWAYS
    executor.converge([t])  # IMAGE is local, and the registry does not have it
    reports.wait_state("t1", pb.RUNNING)
    assert engine.count("pull") == 1
    absent = task("t2", image="busybox:absent", slot=2)
    absent.spec.container.pull = pb.PULL_ALWAYS
    executor.converge([t, absent])
    assert reports.wait_state("t2", pb.REJECTED).err.startswith("pull access denied for busybox")
    # An image pinned to an id only engines hold: no registry has it, the
    # engine does.
    pinned = task("t3", slot=3)
    pinned.spec.container.pull = pb.PULL_ALWAYS
    pinned.spec.container.image_id = image_id_of(IMAGE)
    executor.converge([t, absent, pinned])
    reports.wait_state("t3", pb.RUNNING)


def test_private_image_needs_the_services_credentials(engine: FakeRuntime, executor: Executor, reports: Reports) -> None:
    engine.add_to_registry("reg:5000/private:1", credentials=("alice", "s3cret"))
    executor.converge([task(image="reg:5000/private:1")])
    assert "no basic auth credentials" in reports.wait_state("t1", pb.REJECTED).err
    # Credentials come with the session, for the services this node runs.
    auth = pb.RegistryAuth(server_address="reg:5000", username="alice", password="s3cret")
    executor.image_hints([], [dpb.ServiceRegistryAuth(service_id="s1", auth=auth)])
    executor.converge([task("t2", image="reg:5000/private:1", slot=2)])
    reports.wait_state("t2", pb.RUNNING)


def test_create_refused_rejects_and_start_refused_fails(engine: FakeRuntime, executor: Executor, reports: Reports) -> None:
    engine.fail("create", EngineRefused("invalid mount config"))
    executor.converge([task("t1")])
    st = reports.wait_state("t1", pb.REJECTED)
    assert (st.message, st.err) == ("create failed", "invalid mount config")
    engine.fail("start", EngineRefused('exec: "/no/such/binary": not found'))
    executor.converge([task("t1"), task("t2", slot=2)])
    st = reports.wait_state("t2", pb.FAILED)
    assert (st.message, st.err) == ("start failed", 'exec: "/no/such/binary": not found')


def test_engine_errors_are_retried(engine: FakeRuntime, executor: Executor, reports: Reports) -> None:
    engine.fail("create", EngineUnavailable("engine restarting"), times=2)
    engine.fail("start", EngineUnavailable("connection reset"), times=1)
    executor.converge([task()])
    st = reports.wait_state("t1", pb.RUNNING)
    # Two failed creates, then one container: created once, started on the second try.
    assert engine.count("create") == 3 and engine.count("start") == 2
    assert only_container(engine).id == st.container_id
    assert reports.states("t1") == [pb.RUNNING]


def test_engine_down_then_back(engine: FakeRuntime, executor: Executor, reports: Reports) -> None:
    executor.converge([task("t1")])
    cid = reports.wait_state("t1", pb.RUNNING).container_id
    wait_for(lambda: engine.open_event_streams() == 1, 2, "events stream open")
    engine.set_down(True)
    executor.converge([task("t1"), task("t2", slot=2)])
    tried = engine.count("image")
    wait_for(lambda: engine.count("image") >= tried + 2, 2, "t2 retried while the engine is down")
    assert reports.states("t2") == []
    # It died while the engine was unreachable: no event will ever say so.
    engine.exit(cid, 1)
    engine.set_down(False)
    assert reports.wait_state("t1", pb.FAILED).exit_code == 1  # found by the listing after reconnecting
    reports.wait_state("t2", pb.RUNNING)
    assert engine.open_event_streams() == 1


def test_shutdown_stops_and_keeps_then_remove_removes(engine: FakeRuntime, executor: Executor, reports: Reports) -> None:
    t = task()
    executor.converge([t])
    reports.wait_state("t1", pb.RUNNING)
    executor.converge([with_desired(t, pb.SHUTDOWN)])
    assert reports.wait_state("t1", pb.SHUTDOWN).message == "stopped"
    assert only_container(engine).state is State.EXITED  # kept, for its logs
    executor.converge([with_desired(t, pb.REMOVE)])
    wait_for(lambda: engine.containers() == [], 2, "container removed")
    # The stop's exit is not a failure, and the removal adds nothing.
    assert reports.states("t1") == [pb.RUNNING, pb.SHUTDOWN]


def test_task_dropped_from_the_set_is_removed(engine: FakeRuntime, executor: Executor, reports: Reports) -> None:
    keep, drop = task("keep"), task("drop", slot=2)
    executor.converge([keep, drop])
    reports.wait_state("keep", pb.RUNNING)
    reports.wait_state("drop", pb.RUNNING)
    executor.converge([keep])
    assert executor.wait_idle(2)
    assert [c.labels[cm.LABEL_TASK_ID] for c in engine.containers()] == ["keep"]
    assert reports.states("drop") == [pb.RUNNING]  # removed without a report: the store deleted it
    executor.converge([])
    assert executor.wait_idle(2) and engine.containers() == []


def test_slow_stops_neither_delay_starts_nor_count_as_idle(engine: FakeRuntime, executor: Executor, reports: Reports) -> None:
    slow = [task(f"slow{i}", slot=i) for i in range(1, 4)]
    executor.converge(slow)
    for t in slow:
        reports.wait_state(t.id, pb.RUNNING)
    engine.stops_released.clear()  # every stop now lasts until released
    fresh = [task(f"fresh{i}", slot=10 + i) for i in range(1, 4)]
    executor.converge([with_desired(t, pb.SHUTDOWN) for t in slow] + fresh)
    for t in fresh:
        reports.wait_state(t.id, pb.RUNNING)
    assert not executor.wait_idle(0.1)  # the stops are still under way
    assert all(reports.states(t.id) == [pb.RUNNING] for t in slow)
    engine.stops_released.set()
    for t in slow:
        reports.wait_state(t.id, pb.SHUTDOWN)
    assert executor.wait_idle(2)


def test_reports_are_coalesced(engine: FakeRuntime, executor: Executor, reports: Reports) -> None:
    tasks = [task(f"t{i}", slot=i) for i in range(1, 31)]
    executor.converge(tasks)
    for t in tasks:
        reports.wait_state(t.id, pb.RUNNING)
    assert len(reports.batches) < 30


def test_new_executor_adopts_and_removes_orphans(engine: FakeRuntime, reports: Reports) -> None:
    a, b, dies, orphan = (task(f"t{i}", slot=i) for i in (1, 2, 3, 4))
    first = run_executor(engine, reports)
    first.converge([a, b, dies, orphan])
    ids = {t.id: reports.wait_state(t.id, pb.RUNNING).container_id for t in (a, b, dies, orphan)}
    first.stop()

    # While no agent runs: one container dies; the orchestrator replaced
    # `orphan` elsewhere; a container of ours lost its task label; another
    # node's container must be left alone.
    engine.exit(ids[dies.id], 137)
    other = engine.add_container("other", {cm.LABEL_NODE_ID: "node2", cm.LABEL_TASK_ID: "x"})
    engine.add_container("stray", {cm.LABEL_NODE_ID: NODE})

    again = Reports()
    second = run_executor(engine, again)
    try:
        # As the session would: the store's view (RUNNING for all of them).
        stored = [task(t.id, slot=t.slot, state=pb.RUNNING) for t in (a, b, dies)]
        second.converge(stored)
        st = again.wait_state(dies.id, pb.FAILED)
        assert st.exit_code == 137 and st.container_id == ids[dies.id]
        assert second.wait_idle(2)
        mine = {c.labels.get(cm.LABEL_TASK_ID): c for c in engine.containers() if c.labels.get(cm.LABEL_NODE_ID) == NODE}
        assert set(mine) == {a.id, b.id, dies.id}
        for t in (a, b):
            assert mine[t.id].id == ids[t.id] and mine[t.id].state is State.RUNNING
            assert again.states(t.id) == []  # already RUNNING in the store: nothing new
        assert engine.count("create") == 4  # the first run's only
        assert engine.inspect(other) is not None
    finally:
        second.stop()

    # A store that lags (statuses never arrived) gets RUNNING again, for the
    # same containers.
    third_reports = Reports()
    third = run_executor(engine, third_reports)
    try:
        third.converge([a, b])
        for t in (a, b):
            assert third_reports.wait_state(t.id, pb.RUNNING).container_id == ids[t.id]
        wait_for(lambda: engine.inspect(ids[dies.id]) is None, 2, "the dropped task's container removed")
    finally:
        third.stop()


def test_container_created_but_never_started_is_started(engine: FakeRuntime, executor: Executor, reports: Reports) -> None:
    # As if the previous agent stopped between create and start.
    t = task()
    cid = engine.create(t, NODE)
    executor.converge([t])
    assert reports.wait_state("t1", pb.RUNNING).container_id == cid
    assert [c.id for c in engine.containers()] == [cid]


def test_name_in_use_adopts_our_own_container(engine: FakeRuntime, executor: Executor, reports: Reports) -> None:
    executor.converge([])
    wait_for(lambda: engine.count("list_containers") >= 1, 2, "the first listing")
    # Created after the listing, and no event tells (a create whose answer was lost).
    t = task()
    cid = engine.create(t, NODE)
    executor.converge([t])
    assert reports.wait_state("t1", pb.RUNNING).container_id == cid
    assert [c.id for c in engine.containers()] == [cid]


def test_name_in_use_by_another_task_rejects(engine: FakeRuntime, executor: Executor, reports: Reports) -> None:
    t = task()
    engine.add_container(cm.container_name(t, NODE), {"someone": "else"})
    executor.converge([t])
    st = reports.wait_state("t1", pb.REJECTED)
    assert st.message == "create failed" and "already in use" in st.err


def test_container_removed_by_an_operator_fails_the_task(engine: FakeRuntime, executor: Executor, reports: Reports) -> None:
    executor.converge([task()])
    cid = reports.wait_state("t1", pb.RUNNING).container_id
    engine.remove(cid)
    assert reports.wait_state("t1", pb.FAILED).err == f"container {cid} was removed"


class RecordingNetwork:
    """The executor's side of the wiring, recorded: which containers were
    wired (by pid) and released, and NetworkNotReady until `ready`."""

    def __init__(self) -> None:
        self.ready = threading.Event()
        self.attempts = 0
        self.attached: list[tuple[str, int]] = []
        self.released: list[str] = []
        self.updates: list[tuple[list[str], list[str]]] = []

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def update(self, networks: list[dpb.NetworkAssignment], tasks: list[pb.Task]) -> None:
        self.updates.append(([a.network.id for a in networks], [t.id for t in tasks]))

    def attach(self, task: pb.Task, pid: int) -> None:
        self.attempts += 1
        if not self.ready.is_set():
            raise NetworkNotReady("network net1 is not assigned to this node yet")
        self.attached.append((task.id, pid))

    def release(self, task_id: str) -> None:
        self.released.append(task_id)


def test_wired_before_reported_and_released_on_shutdown(engine: FakeRuntime, reports: Reports) -> None:
    net = RecordingNetwork()
    ex = run_executor(engine, reports, network=net)
    try:
        t = task()
        t.networks.add(network_id="net1", addr="10.0.1.5")
        a = dpb.NetworkAssignment()
        a.network.id = "net1"
        ex.assign([t], [a])
        assert net.updates == [(["net1"], ["t1"])]  # networks first, with the tasks
        wait_for(lambda: net.attempts >= 3, 2, "wiring retried while the network is not ready")
        assert reports.states("t1") == []  # not reachable yet: not reported
        assert engine.count("start") == 1
        net.ready.set()
        reports.wait_state("t1", pb.RUNNING)
        pid = only_container(engine).pid
        assert net.attached == [("t1", pid)]
        ex.converge([with_desired(t, pb.SHUTDOWN)])
        reports.wait_state("t1", pb.SHUTDOWN)
        assert set(net.released) == {"t1"}
    finally:
        ex.stop()


def test_logs_of_our_containers(engine: FakeRuntime, executor: Executor, reports: Reports) -> None:
    executor.converge([task("t1"), task("t2", slot=2)])
    c1 = reports.wait_state("t1", pb.RUNNING).container_id
    c2 = reports.wait_state("t2", pb.RUNNING).container_id
    engine.write_log(c1, "stdout", b"hello\n")
    engine.write_log(c1, "stderr", b"oops\n")
    engine.write_log(c2, "stdout", b"two\n")
    other = engine.create(task("x", slot=7), "node2")
    lines = list(executor.logs([c1, c2, other, "nope"], follow=False, tail=-1, timestamps=False))
    got = sorted((ln.task_id, ln.stream, ln.data) for ln in lines)
    assert got == [("t1", "stderr", b"oops\n"), ("t1", "stdout", b"hello\n"), ("t2", "stdout", b"two\n")]
    assert all(ln.node_id == NODE and ln.container_id in (c1, c2) for ln in lines)
    assert [ln.data for ln in executor.logs([c1], follow=False, tail=1, timestamps=False)] == [b"oops\n"]
    assert list(executor.logs(["nope"], follow=False, tail=-1, timestamps=False)) == []


def test_followed_logs_stream_and_close(engine: FakeRuntime, executor: Executor, reports: Reports) -> None:
    executor.converge([task()])
    cid = reports.wait_state("t1", pb.RUNNING).container_id
    engine.write_log(cid, "stdout", b"first\n")
    it = executor.logs([cid], follow=True, tail=-1, timestamps=False)
    assert next(it).data == b"first\n"
    engine.write_log(cid, "stdout", b"second\n")
    assert next(it).data == b"second\n"
    it.close()  # type: ignore[attr-defined]
    # A followed stream of a container that ends, ends.
    got: list[bytes] = []
    follower = threading.Thread(target=lambda: got.extend(ln.data for ln in executor.logs([cid], True, 0, False)))
    follower.start()
    wait_for(lambda: engine.following(cid) == 1, 2, "the log stream followed")
    engine.write_log(cid, "stdout", b"last\n")
    engine.exit(cid, 0)
    follower.join(2)
    assert not follower.is_alive() and got == [b"last\n"]


def test_describe_is_the_engines(engine: FakeRuntime, executor: Executor) -> None:
    desc = executor.describe()
    assert desc.hostname == "engine-host" and desc.engine_version == "fake"
    assert list(desc.images) == sorted([IMAGE, HEALTHY_IMAGE])
