"""The agent's executor against a real Docker engine (the `engine` fixture).

Each test uses its own service name and removes its containers; waits are
deadlines on observable facts (reports, container states), never sleeps.
SWARMLET_TEST_DOCKER_URL points the tests at another engine that has the
test image (handy while developing next to other testbeds).
"""

from __future__ import annotations

import contextlib
import io
import os
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import docker
import docker.errors
import pytest

from swarmlet.agent.executor import Executor
from swarmlet.agent.runtime import containers as cm
from swarmlet.agent.runtime.docker import DockerRuntime
from swarmlet.agent.runtime.interface import (
    WATCHED_ACTIONS,
    ContainerNotFound,
    EngineRefused,
    Event,
    LogChunk,
    NameInUse,
    State,
)
from swarmlet.api import dispatcher_pb2 as dpb
from swarmlet.api import objects_pb2 as pb
from tests.waiting import wait_for

IMAGE = "swarmlet-test:busybox"
NODE = "node-exec-test"


@pytest.fixture(scope="module")
def client(request: pytest.FixtureRequest) -> docker.DockerClient:
    url = os.environ.get("SWARMLET_TEST_DOCKER_URL")
    if url:
        return docker.DockerClient(base_url=url)
    engine: docker.DockerClient = request.getfixturevalue("engine")
    return engine


def _url(client: docker.DockerClient) -> str:
    # DockerClient keeps only "http+docker://localhost" as base_url; the
    # socket path lives on its unix adapter.
    return "unix://" + client.api._custom_adapter.socket_path


class Reports:
    """Collects what the executor reports, thread-safely."""

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

    def last(self, task_id: str) -> pb.TaskStatus | None:
        got = self.of(task_id)
        return got[-1] if got else None

    def wait_state(self, task_id: str, state: int, timeout: float = 15) -> pb.TaskStatus:
        def reached() -> pb.TaskStatus | None:
            last = self.last(task_id)
            return last if last is not None and last.state >= state else None

        st = wait_for(reached, timeout, f"task {task_id} reported {pb.TaskState.Name(state)}; got {self.states(task_id)}")
        assert st.state == state, f"{task_id}: expected {pb.TaskState.Name(state)}, got {pb.TaskState.Name(st.state)} {st.err!r}"
        return st


def make_task(
    service: str,
    slot: int,
    args: list[str] | None = None,
    image: str = IMAGE,
    desired: int = pb.RUNNING,
) -> pb.Task:
    t = pb.Task(
        id=f"{service}-{slot}-{uuid.uuid4().hex[:8]}",
        service_id=f"sid-{service}",
        service_name=service,
        slot=slot,
        node_id=NODE,
        desired_state=desired,  # type: ignore[arg-type]
    )
    t.status.state = pb.ASSIGNED
    t.spec.container.image = image
    t.spec.container.labels["test"] = service
    if args:
        t.spec.container.args.extend(args)
    return t


def service_name() -> str:
    return "svc" + uuid.uuid4().hex[:8]


@dataclass
class Ctr:
    id: str
    name: str
    labels: dict[str, str]
    status: str


def containers_of(client: docker.DockerClient, service: str) -> list[Ctr]:
    # One list call (containers.list() inspects each, which races removals).
    listed = client.api.containers(all=True, filters={"label": f"{cm.LABEL_SERVICE_NAME}={service}"})
    return [Ctr(c["Id"], c["Names"][0].lstrip("/"), c["Labels"], c["State"]) for c in listed]


@pytest.fixture()
def service(client: docker.DockerClient) -> Iterator[str]:
    name = service_name()
    yield name
    for c in containers_of(client, name):
        try:
            client.api.remove_container(c.id, force=True)
        except docker.errors.NotFound:
            pass


@pytest.fixture()
def reports() -> Reports:
    return Reports()


@pytest.fixture()
def executor(client: docker.DockerClient, reports: Reports) -> Iterator[Executor]:
    ex = Executor(DockerRuntime(_url(client)), NODE, reports, hostname="test-host")
    ex.start()
    yield ex
    ex.stop()


def with_desired(task: pb.Task, desired: int) -> pb.Task:
    t = pb.Task()
    t.CopyFrom(task)
    t.desired_state = desired  # type: ignore[assignment]
    return t


def test_runs_tasks_with_labels_and_names(
    client: docker.DockerClient, executor: Executor, reports: Reports, service: str
) -> None:
    tasks = [make_task(service, i) for i in (1, 2, 3)]
    executor.converge(tasks)
    for t in tasks:
        st = reports.wait_state(t.id, pb.RUNNING)
        assert st.container_id and st.message == "started"
    # The same set over and over (as the session does) changes nothing.
    for _ in range(10):
        executor.converge(tasks)
    got = containers_of(client, service)
    assert len(got) == 3
    by_task = {c.labels[cm.LABEL_TASK_ID]: c for c in got}
    for t in tasks:
        c = by_task[t.id]
        assert c.status == "running"
        assert c.name == f"{service}.{t.slot}.{t.id}"
        assert c.labels[cm.LABEL_NODE_ID] == NODE
        assert c.labels[cm.LABEL_SERVICE_ID] == t.service_id
        assert c.labels[cm.LABEL_SLOT] == str(t.slot)
        assert c.labels["test"] == service
        assert c.id == reports.last(t.id).container_id
        host_config = client.api.inspect_container(c.id)["HostConfig"]
        assert host_config["NetworkMode"] == "none"
        assert host_config["RestartPolicy"]["Name"] == "no"
        assert reports.states(t.id) == [pb.RUNNING]  # once, not on every converge
    executor.converge(tasks)
    assert len(containers_of(client, service)) == 3


def test_killed_container_fails_with_exit_code(
    client: docker.DockerClient, executor: Executor, reports: Reports, service: str
) -> None:
    t = make_task(service, 1)
    executor.converge([t])
    cid = reports.wait_state(t.id, pb.RUNNING).container_id
    client.api.kill(cid)
    st = reports.wait_state(t.id, pb.FAILED)
    assert st.exit_code == 137
    assert st.err == "task: non-zero exit (137)"
    assert st.container_id == cid
    # A failed task is not restarted by the executor (the orchestrator makes
    # a new task): the container stays exited.
    executor.converge([t])
    assert client.api.inspect_container(cid)["State"]["Status"] == "exited"


def test_exit_zero_completes(executor: Executor, reports: Reports, service: str) -> None:
    t = make_task(service, 1, args=["true"])
    executor.converge([t])
    st = reports.wait_state(t.id, pb.COMPLETE)
    assert st.exit_code == 0 and st.err == ""


def test_non_zero_exit(executor: Executor, reports: Reports, service: str) -> None:
    t = make_task(service, 1, args=["sh", "-c", "exit 3"])
    executor.converge([t])
    st = reports.wait_state(t.id, pb.FAILED)
    assert st.exit_code == 3 and st.err == "task: non-zero exit (3)"


def test_missing_image_rejected(client: docker.DockerClient, executor: Executor, reports: Reports, service: str) -> None:
    t = make_task(service, 1, image="swarmlet-test:does-not-exist")
    t.spec.container.pull = pb.PULL_NEVER  # issue 9: otherwise it is pulled (and no registry is reachable here)
    executor.converge([t])
    st = reports.wait_state(t.id, pb.REJECTED)
    assert st.err == 'image "swarmlet-test:does-not-exist" not found on node test-host: the pull policy is never'
    assert containers_of(client, service) == []


def test_bad_command_fails_to_start(executor: Executor, reports: Reports, service: str) -> None:
    t = make_task(service, 1, args=["/no/such/binary"])
    executor.converge([t])
    st = reports.wait_state(t.id, pb.FAILED)
    assert "no/such/binary" in st.err


def test_shutdown_stops_and_keeps_then_remove_removes(
    client: docker.DockerClient, executor: Executor, reports: Reports, service: str
) -> None:
    t = make_task(service, 1)
    executor.converge([t])
    cid = reports.wait_state(t.id, pb.RUNNING).container_id
    executor.converge([with_desired(t, pb.SHUTDOWN)])
    reports.wait_state(t.id, pb.SHUTDOWN)
    assert client.api.inspect_container(cid)["State"]["Status"] == "exited"  # kept for its logs
    executor.converge([with_desired(t, pb.REMOVE)])

    def gone() -> bool:
        return containers_of(client, service) == []

    wait_for(gone, 10, "container removed")
    assert reports.states(t.id) == [pb.RUNNING, pb.SHUTDOWN]  # the stop's exit is not a failure


def test_remove_of_a_running_task(client: docker.DockerClient, executor: Executor, reports: Reports, service: str) -> None:
    t = make_task(service, 1)
    executor.converge([t])
    reports.wait_state(t.id, pb.RUNNING)
    executor.converge([with_desired(t, pb.REMOVE)])
    reports.wait_state(t.id, pb.SHUTDOWN)
    wait_for(lambda: containers_of(client, service) == [], 10, "container removed")


def test_task_dropped_from_the_set_is_removed(
    client: docker.DockerClient, executor: Executor, reports: Reports, service: str
) -> None:
    keep, drop = make_task(service, 1), make_task(service, 2)
    executor.converge([keep, drop])
    reports.wait_state(keep.id, pb.RUNNING)
    reports.wait_state(drop.id, pb.RUNNING)
    executor.converge([keep])

    def only_keep() -> bool:
        return [c.labels[cm.LABEL_TASK_ID] for c in containers_of(client, service)] == [keep.id]

    wait_for(only_keep, 10, "the dropped task's container removed")


def test_new_executor_adopts_and_removes_orphans(client: docker.DockerClient, reports: Reports, service: str) -> None:
    url = _url(client)
    a, b, dies, orphan = (make_task(service, i) for i in (1, 2, 3, 4))
    first = Executor(DockerRuntime(url), NODE, reports)
    first.start()
    first.converge([a, b, dies, orphan])
    ids = {t.id: reports.wait_state(t.id, pb.RUNNING).container_id for t in (a, b, dies, orphan)}
    first.stop()

    # While no agent runs: one task's container dies; the orchestrator
    # replaced `orphan` elsewhere, so the next set no longer has it.
    client.api.kill(ids[dies.id])
    client.api.wait(ids[dies.id], timeout=10)
    # An unrelated container of another node must be left alone.
    other = client.containers.create(
        IMAGE, labels={cm.LABEL_NODE_ID: "some-other-node", cm.LABEL_TASK_ID: "x"}, network_mode="none"
    )
    try:
        again = Reports()
        second = Executor(DockerRuntime(url), NODE, again)
        second.start()
        try:
            # As the session would: the store's view (RUNNING for all of them).
            stored = []
            for t in (a, b, dies):
                s = pb.Task()
                s.CopyFrom(t)
                s.status.state = pb.RUNNING
                s.status.container_id = ids[t.id]
                stored.append(s)
            second.converge(stored)
            st = again.wait_state(dies.id, pb.FAILED)
            assert st.exit_code == 137 and st.container_id == ids[dies.id]

            def orphan_removed() -> bool:
                return orphan.id not in {c.labels[cm.LABEL_TASK_ID] for c in containers_of(client, service)}

            wait_for(orphan_removed, 10, "orphan removed")
            got = {c.labels[cm.LABEL_TASK_ID]: c for c in containers_of(client, service)}
            assert set(got) == {a.id, b.id, dies.id}
            for t in (a, b):
                assert got[t.id].id == ids[t.id] and got[t.id].status == "running"
                # Already RUNNING in the store: nothing new to report.
                assert again.states(t.id) == []
            assert client.api.inspect_container(other.id)["State"]["Status"] == "created"
        finally:
            second.stop()

        # A store that lags (statuses never arrived) gets RUNNING again, for
        # the same container.
        third_reports = Reports()
        third = Executor(DockerRuntime(url), NODE, third_reports)
        third.start()
        try:
            third.converge([a, b])
            for t in (a, b):
                assert third_reports.wait_state(t.id, pb.RUNNING).container_id == ids[t.id]
            wait_for(lambda: len(containers_of(client, service)) == 2, 10, "dropped `dies` container removed")
        finally:
            third.stop()
    finally:
        other.remove(force=True)


def test_container_created_but_never_started_is_started(
    client: docker.DockerClient, executor: Executor, reports: Reports, service: str
) -> None:
    # As if the previous agent stopped between create and start.
    t = make_task(service, 1)
    host_config = client.api.create_host_config(**cm.host_config_kwargs(t))
    cid = client.api.create_container(host_config=host_config, **cm.create_container_kwargs(t, NODE))["Id"]
    executor.converge([t])
    assert reports.wait_state(t.id, pb.RUNNING).container_id == cid
    assert [c.id for c in containers_of(client, service)] == [cid]


def _healthy_task(service: str, test: list[str], args: list[str]) -> pb.Task:
    t = make_task(service, 1, args=args)
    c = t.spec.container
    c.has_healthcheck = True
    c.healthcheck.test.extend(test)
    c.healthcheck.interval = 0.2
    c.healthcheck.timeout = 2
    c.healthcheck.retries = 2
    return t


def test_failing_healthcheck_fails_the_task(
    client: docker.DockerClient, executor: Executor, reports: Reports, service: str
) -> None:
    t = _healthy_task(service, ["CMD", "false"], ["sleep", "3600"])
    executor.converge([t])
    st = reports.wait_state(t.id, pb.FAILED, timeout=20)
    assert st.err == "container unhealthy"
    assert reports.states(t.id) == [pb.STARTING, pb.FAILED]
    assert client.api.inspect_container(st.container_id)["State"]["Running"] is False


def test_running_only_once_healthy(client: docker.DockerClient, executor: Executor, reports: Reports, service: str) -> None:
    t = _healthy_task(service, ["CMD-SHELL", "test -f /ready"], ["sh", "-c", "sleep 1.5; touch /ready; exec sleep 3600"])
    # Failures within the start period do not count, as for a slow server.
    t.spec.container.healthcheck.start_period = 10
    started = time.monotonic()
    executor.converge([t])
    cid = reports.wait_state(t.id, pb.STARTING).container_id
    reports.wait_state(t.id, pb.RUNNING, timeout=20)
    assert time.monotonic() - started >= 1.5
    assert client.api.inspect_container(cid)["State"]["Health"]["Status"] == "healthy"
    assert reports.states(t.id) == [pb.STARTING, pb.RUNNING]


def test_limits_applied(client: docker.DockerClient, executor: Executor, reports: Reports, service: str) -> None:
    t = make_task(service, 1)
    t.spec.resources.limits.nano_cpus = 500_000_000
    t.spec.resources.limits.memory_bytes = 64 << 20
    t.spec.container.env.append("GREETING=hi")
    executor.converge([t])
    cid = reports.wait_state(t.id, pb.RUNNING).container_id
    info = client.api.inspect_container(cid)
    assert info["HostConfig"]["NanoCpus"] == 500_000_000
    assert info["HostConfig"]["Memory"] == 64 << 20
    assert "GREETING=hi" in info["Config"]["Env"]


def test_logs(client: docker.DockerClient, executor: Executor, reports: Reports, service: str) -> None:
    t = make_task(service, 1, args=["sh", "-c", "echo hello; echo oops >&2; sleep 3600"])
    executor.converge([t])
    cid = reports.wait_state(t.id, pb.RUNNING).container_id

    def both() -> list[Any]:
        lines = list(executor.logs([cid], follow=False, tail=-1, timestamps=False))
        return lines if len(lines) >= 2 else []

    lines = wait_for(both, 10, "two log lines")
    by_stream = {ln.stream: ln.data for ln in lines}
    assert by_stream == {"stdout": b"hello\n", "stderr": b"oops\n"}
    assert all(ln.task_id == t.id and ln.node_id == NODE and ln.container_id == cid for ln in lines)
    # Unknown containers are skipped, not fatal.
    assert list(executor.logs(["nope"], follow=False, tail=-1, timestamps=False)) == []


def test_followed_logs_stream_and_close(executor: Executor, reports: Reports, service: str) -> None:
    t = make_task(service, 1, args=["sh", "-c", "i=0; while true; do echo line$i; i=$((i+1)); sleep 0.2; done"])
    executor.converge([t])
    cid = reports.wait_state(t.id, pb.RUNNING).container_id
    it = executor.logs([cid], follow=True, tail=0, timestamps=True)
    got = []
    deadline = time.monotonic() + 10
    for line in it:
        got.append(line)
        if len(got) == 3 or time.monotonic() > deadline:
            break
    it.close()  # type: ignore[attr-defined]
    assert len(got) == 3
    assert all(ln.stream == "stdout" and b" line" in ln.data for ln in got)  # timestamp, then the text


def test_quiet_followed_logs_can_be_closed(executor: Executor, reports: Reports, service: str) -> None:
    t = make_task(service, 1, args=["sh", "-c", "echo once; sleep 3600"])
    executor.converge([t])
    cid = reports.wait_state(t.id, pb.RUNNING).container_id
    it = executor.logs([cid], follow=True, tail=-1, timestamps=False)
    first = wait_for(lambda: next(it), 10, "first followed line")
    assert first.data == b"once\n"
    start = time.monotonic()
    it.close()  # type: ignore[attr-defined]
    assert time.monotonic() - start < 2


def test_events_stream_reconnects_without_missing_an_exit(
    client: docker.DockerClient, executor: Executor, reports: Reports, service: str
) -> None:
    t = make_task(service, 1)
    executor.converge([t])
    cid = reports.wait_state(t.id, pb.RUNNING).container_id
    watcher = executor._watcher
    stream = wait_for(lambda: watcher.stream, 5, "events stream open")
    stream.close()  # as if the engine connection broke
    client.api.kill(cid)  # before or after the reconnect: either way seen
    st = reports.wait_state(t.id, pb.FAILED)
    assert st.exit_code == 137
    wait_for(lambda: watcher.stream is not stream, 5, "events stream reopened")


def test_describe(client: docker.DockerClient, executor: Executor) -> None:
    d = executor.describe()
    info = client.info()
    assert d.hostname == "test-host"
    assert d.resources.nano_cpus == info["NCPU"] * 1_000_000_000
    assert d.resources.memory_bytes == info["MemTotal"]
    assert d.engine_version == info["ServerVersion"]
    assert d.os == "linux" and d.arch
    assert IMAGE in d.images


@pytest.fixture()
def term_image(client: docker.DockerClient) -> Iterator[str]:
    """The test image, but stopped with SIGTERM, which a PID 1 `sleep`
    ignores: every stop lasts the whole grace period."""
    tag = "swarmlet-test:busybox-term-" + uuid.uuid4().hex[:6]
    client.images.build(fileobj=io.BytesIO(f"FROM {IMAGE}\nSTOPSIGNAL SIGTERM\n".encode()), tag=tag, rm=True)
    yield tag
    client.images.remove(tag, force=True)


def test_slow_stops_do_not_delay_starts(
    client: docker.DockerClient, executor: Executor, reports: Reports, service: str, term_image: str
) -> None:
    slow = [make_task(service, i, image=term_image) for i in range(1, 11)]
    for t in slow:
        t.spec.container.stop_grace_period = 8  # room for five starts on two busy cores
    executor.converge(slow)
    for t in slow:
        reports.wait_state(t.id, pb.RUNNING)
    stopping = [with_desired(t, pb.SHUTDOWN) for t in slow]
    fresh = [make_task(service, i) for i in range(11, 16)]
    begin = time.monotonic()
    executor.converge(stopping + fresh)
    for t in fresh:
        reports.wait_state(t.id, pb.RUNNING)
    # The order is the check, not a clock: had the starts waited for the
    # stops, every slow task would have reported SHUTDOWN by now.
    for t in slow:
        assert reports.last(t.id).state == pb.RUNNING, "starts waited for the stops"
    for t in slow:
        reports.wait_state(t.id, pb.SHUTDOWN)
    assert time.monotonic() - begin >= 8


def test_thirty_containers_start_quickly(client: docker.DockerClient, executor: Executor, reports: Reports, service: str) -> None:
    tasks = [make_task(service, i) for i in range(1, 31)]
    start = time.monotonic()
    executor.converge(tasks)
    for t in tasks:
        reports.wait_state(t.id, pb.RUNNING, timeout=60)
    took = time.monotonic() - start
    print(f"\n30 containers RUNNING in {took:.2f}s")
    assert len(containers_of(client, service)) == 30
    # Batched: far fewer report calls than statuses.
    assert len(reports.batches) < 30
    executor.converge([with_desired(t, pb.REMOVE) for t in tasks])
    wait_for(lambda: containers_of(client, service) == [], 60, "30 containers removed")


def test_docker_runtime_records(client: docker.DockerClient, service: str) -> None:
    """The adapter's records and errors, as the executor relies on them."""
    runtime = DockerRuntime(_url(client))
    assert runtime.image("swarmlet-test:does-not-exist") is None
    assert runtime.image(IMAGE) is not None
    t = make_task(service, 1, args=["sh", "-c", "echo out; exec sleep 3600"])
    cid = runtime.create(t, NODE)
    c = runtime.inspect(cid)
    assert c is not None and c.state is State.CREATED and c.name == cm.container_name(t, NODE) and c.pid == 0
    assert c.labels[cm.LABEL_TASK_ID] == t.id and not c.has_healthcheck
    with pytest.raises(NameInUse):
        runtime.create(t, NODE)
    assert runtime.inspect(c.name) == c  # by name too
    runtime.start(cid)
    running = runtime.inspect(cid)
    assert running is not None and running.state is State.RUNNING and running.pid > 0
    assert [(x.id, x.running) for x in runtime.list_containers({cm.LABEL_SERVICE_NAME: service})] == [(cid, True)]
    chunks = wait_for(lambda: list(runtime.logs(cid, follow=False, tail=-1, timestamps=False)), 10, "output")
    assert chunks == [LogChunk("stdout", b"out\n")]
    runtime.stop(cid, timeout=1)
    ended = runtime.inspect(cid)
    assert ended is not None and ended.state is State.EXITED and ended.exit_code == 137
    runtime.remove(cid)
    runtime.remove(cid)  # already gone: not an error
    assert runtime.inspect(cid) is None
    with pytest.raises(ContainerNotFound):
        runtime.start(cid)
    bad = make_task(service, 2, args=["/no/such/binary"])
    bad_id = runtime.create(bad, NODE)
    with pytest.raises(EngineRefused, match="no/such/binary"):
        runtime.start(bad_id)
    desc = runtime.describe()
    assert desc.hostname and IMAGE in desc.images


def test_docker_runtime_events(client: docker.DockerClient, service: str) -> None:
    runtime = DockerRuntime(_url(client))
    t = _healthy_task(service, ["CMD", "true"], ["sleep", "3600"])
    stream = runtime.events({cm.LABEL_SERVICE_NAME: service}, WATCHED_ACTIONS)
    got: list[Event] = []

    def read() -> None:
        # A closed stream may end by raising: the interface allows it.
        with contextlib.suppress(Exception):
            for e in stream:
                got.append(e)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        cid = runtime.create(t, NODE)
        runtime.start(cid)
        wait_for(lambda: any(e.action == "health_status" for e in got), 15, "a health event")
        runtime.remove(cid)
        wait_for(lambda: [e.action for e in got][-2:] == ["die", "destroy"], 10, "die and destroy")
        assert {e.container_id for e in got} == {cid}
        assert all(e.labels.get(cm.LABEL_TASK_ID) == t.id for e in got)
    finally:
        stream.close()
    reader.join(5)
    assert not reader.is_alive()
