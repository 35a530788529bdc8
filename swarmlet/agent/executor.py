"""Converges one container engine to the set of tasks assigned to this node.

Level-triggered: anything that may change what should happen to a task (a
new assignment, a new desired state, an engine event, a resync after the
event stream broke) only marks the task dirty (tasks.py); a worker then
inspects its container, asks `decisions.decide` what to do, and does it here.
Reconciling twice is harmless, so nothing has to be remembered about *which*
event happened, and a missed event is repaired by the next resync.

Threads:
- workers (two pools, tasks.py): reconciles of different tasks run in
  parallel, those of one task never overlap; stops have their own pool, so
  stop grace periods never hold up starts.
- the event watcher (watch.py): engine events for our containers -> mark
  dirty; reconnects and resyncs (lists the containers) when the stream breaks.
- the ticker: retries reconciles that failed (engine errors, a network not
  assigned yet), and resyncs every RESYNC_PERIOD as a safety net.
- the reporter (reports.py): coalesced status reports, sent with no lock held.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Protocol

from swarmlet import errors
from swarmlet.agent import decisions as d
from swarmlet.agent import startprobe
from swarmlet.agent import taskfiles as tf
from swarmlet.agent.images import ImageStore, ImageUnavailable
from swarmlet.agent.logs import task_logs
from swarmlet.agent.reports import Reporter, ReportFn
from swarmlet.agent.runtime import containers as cm
from swarmlet.agent.runtime.interface import (
    Container,
    ContainerNotFound,
    ContainerRuntime,
    EngineRefused,
    Event,
    Health,
    Image,
    NameInUse,
)
from swarmlet.agent.tasks import Record, TaskTable
from swarmlet.agent.watch import EventWatcher
from swarmlet.api import agent_pb2
from swarmlet.api import dispatcher_pb2 as dpb
from swarmlet.api import objects_pb2 as pb
from swarmlet.core import templates

log = logging.getLogger(__name__)

RESYNC_PERIOD = 30.0
RETRY_DELAY = 1.0


class Network(Protocol):
    """What the executor needs of the overlay wiring (net/wiring.py)."""

    def start(self) -> None: ...
    def stop(self) -> None: ...
    def update(self, networks: list[dpb.NetworkAssignment], tasks: list[pb.Task]) -> None: ...
    def attach(self, task: pb.Task, pid: int) -> None: ...
    def release(self, task_id: str) -> None: ...


class Executor:
    def __init__(
        self,
        runtime: ContainerRuntime,
        node_id: str,
        report: ReportFn,
        hostname: str | None = None,
        network: Network | None = None,
        images: ImageStore | None = None,
        files: tf.TaskFiles | None = None,
        generic_resources: Sequence[pb.GenericResource] = (),
    ) -> None:
        self.runtime = runtime
        # Overlay wiring; None: tasks get no networks wired.
        self.network = network
        # Issue 9: the node's images (fetch from peers or registries, serve peers).
        self.images = images if images is not None else ImageStore(runtime, hostname=self.hostname)
        # Secrets and configs (taskfiles.py); None: tasks using one are rejected.
        self.files = files
        self.node_id = node_id
        # What this node advertises beyond its engine (daemon --node-generic-resource).
        self.generic_resources = list(generic_resources)
        self._hostname = hostname
        self._platform: tuple[str, str] | None = None  # (os, arch) of the engine, once known
        self._labels = {cm.LABEL_NODE_ID: node_id}
        self._tasks = TaskTable(self._reconcile)
        self._first_converge = threading.Event()
        self._resync_lock = threading.Lock()
        self._stopped = threading.Event()
        self._reporter = Reporter(report)
        # --health-start-interval, run by the agent (startprobe.py)
        self._probes = startprobe.StartProbes(runtime, self._probe_passed)
        self._watcher = EventWatcher(runtime, self._labels, self._resync, self._on_event, self._first_converge, self._stopped)
        self._threads: list[threading.Thread] = []

    # ------------------------------------------------------------------ life

    def start(self) -> None:
        if self.network is not None:
            self.network.start()
        self._tasks.start()
        self._reporter.start()
        for target, name in ((self._watcher.run, "exec-events"), (self._tick, "exec-ticker")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        """Stops our threads; containers are left as they are, so restarting
        the agent does not disturb running tasks. Operations already running
        (e.g. a stop in its grace period) finish in the background."""
        self._tasks.stop()
        self._stopped.set()
        self._first_converge.set()  # wakes the watcher if it still waits
        self._watcher.close()
        self._probes.stop()
        self._reporter.stop()
        if self.network is not None:
            self.network.stop()
        for t in self._threads:
            t.join(timeout=5)

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no reconcile runs or is queued (e.g. every container is
        removed after converge([])). True if idle within `timeout`."""
        return self._tasks.wait_idle(timeout)

    # -------------------------------------------------------------- converge

    def assign(
        self,
        tasks: list[pb.Task],
        networks: list[dpb.NetworkAssignment],
        secrets: Sequence[pb.Secret] = (),
        configs: Sequence[pb.Config] = (),
    ) -> None:
        """An assignment from the dispatcher: this node's networks, secrets
        and configs, then its tasks (those first: a task needs them)."""
        if self.network is not None:
            self.network.update(networks, tasks)
        if self.files is not None:
            self.files.update(secrets, configs)
            # Files of tasks gone from the set or ended (the store says so).
            self.files.sweep({t.id for t in tasks if not d.terminal(t.status.state)})
        self.converge(tasks)

    def converge(self, tasks: list[pb.Task]) -> None:
        """Takes the full set of tasks assigned to this node and schedules
        whatever differs; returns at once. Cheap when nothing changed: it is
        called on every assignment message. The tasks are kept, not copied:
        callers must not mutate them afterwards."""
        self._tasks.converge(tasks)
        # The first converge lets the watcher list the containers.
        self._first_converge.set()

    # ------------------------------------------------------------- reconcile

    def _reconcile(self, rec: Record) -> None:
        v = self._tasks.view(rec)
        task, cid = v.task, v.container_id
        observed = self.runtime.inspect(cid) if cid else None
        if observed is not None and observed.health is Health.STARTING and self._probes.passed(rec.task_id):
            # Our start-interval probe passed before the engine's first check.
            observed = replace(observed, health=Health.HEALTHY)
        match d.decide(task, v.assigned, v.known, cid, observed):
            case d.Idle():
                return
            case d.Remove(status=status):
                self._release(rec.task_id)
                if cid:
                    self.runtime.remove(cid)
                if self.files is not None:
                    self.files.release(rec.task_id)
                if status is not None:
                    self._report(rec, status)
            case d.Stop(status=status, release=release):
                if release:
                    self._release(rec.task_id)
                self.runtime.stop(cid, cm.stop_timeout(task))
                self._report(rec, status)
            case d.Report(status=status, wire=wire, release=release):
                if release:
                    self._release(rec.task_id)
                if wire and observed is not None:
                    self._wire(task, observed)
                if status.state == pb.STARTING and observed is not None:
                    self._ensure_probe(task, observed.id)
                self._report(rec, status)
            case d.Start(health=health):
                try:  # its files again: a reboot empties the tmpfs
                    self._engine_task(task)
                except errors.SwarmletError as e:
                    self._report(rec, d.start_refused(str(e)))
                    return
                self._start(rec, task, cid, health)
            case d.Create():
                self._create_and_start(rec, task)

    def _create_and_start(self, rec: Record, task: pb.Task) -> None:
        image = self._prepare_image(rec, task)
        if image is None:
            return
        health = cm.healthcheck_enabled(task.spec.container, image.healthcheck)
        try:
            engine_task = self._engine_task(task)
        except errors.SwarmletError as e:
            self._report(rec, d.create_refused(str(e)))
            return
        try:
            cid = self.runtime.create(engine_task, self.node_id, image=image.id)
        except NameInUse as e:
            # A create whose answer we lost, or one of a previous agent run
            # the listing missed: adopt it if it is ours.
            other = self.runtime.inspect(cm.container_name(task, self.node_id))
            if other is not None and other.labels.get(cm.LABEL_TASK_ID) == task.id:
                self._tasks.set_container(rec, other.id, again=True)
                return
            self._report(rec, d.create_refused(str(e)))
            return
        except EngineRefused as e:
            self._report(rec, d.create_refused(str(e)))
            return
        self._tasks.set_container(rec, cid)
        self._start(rec, task, cid, health)

    def _prepare_image(self, rec: Record, task: pb.Task) -> Image | None:
        """The local image to run (issue 9), fetched first if need be, with
        PREPARING and its progress reported; None once the task is rejected."""
        c = task.spec.container
        local = self.images.local(task)
        match d.image_step(c.pull, local.id if local is not None else "", c.image, self.hostname()):
            case d.UseImage():
                return local
            case d.RejectImage(status=status):
                self._report(rec, status)
                return None
            case d.FetchImage():
                self._report(rec, d.PREPARING)
        try:
            return self.images.fetch(task, lambda cur, total, source: self._pull_progress(rec, c.image, cur, total, source))
        except ImageUnavailable as e:
            self._report(rec, d.fetch_failed(str(e)))
            return None

    def _pull_progress(self, rec: Record, image: str, current: int, total: int, source: str) -> None:
        """A PREPARING report with the fetch's progress (same state: it only
        refreshes the status while the task is still preparing)."""
        if self._tasks.view(rec).known != pb.PREPARING:
            return
        msg = pb.TaskStatus(
            timestamp=time.time(),
            state=pb.PREPARING,
            message=f"preparing: fetching the image from {source}",
            pull=pb.ImagePullProgress(image=image, current=current, total=total, source=source),
        )
        self._reporter.put(dpb.TaskStatusReport(task_id=rec.task_id, status=msg))

    def _expanded(self, task: pb.Task) -> pb.Task:
        """The task with Swarm's placeholders ({{.Node.Hostname}}, ...) in
        --env and --hostname replaced by their values on this node."""
        c = task.spec.container
        if not any("{{" in e for e in c.env) and "{{" not in c.hostname:
            return task
        os_name, arch = self.platform()
        ctx = templates.task_context(task, self.node_id, self.hostname(), os_name, arch)
        return templates.expand_task(task, ctx)

    def _start(self, rec: Record, task: pb.Task, cid: str, health: bool) -> None:
        try:
            self.runtime.start(cid)
        except ContainerNotFound:
            raise  # removed meanwhile: the retry's reconcile reports it
        except EngineRefused as e:
            self._report(rec, d.start_refused(str(e)))
            return
        if self.network is not None and task.networks:
            observed = self.runtime.inspect(cid)
            if observed is not None:
                self._wire(task, observed)
        if health:
            self._ensure_probe(task, cid)
        self._report(rec, d.after_start(health))

    def _ensure_probe(self, task: pb.Task, cid: str) -> None:
        """Start-interval probes for a starting container whose spec asks for them."""
        c = task.spec.container
        if not (c.has_healthcheck and startprobe.wanted(c.healthcheck)):
            return
        test: list[str] = list(c.healthcheck.test)
        if not test:
            image = self.runtime.image(c.image)
            test = list(image.healthcheck) if image is not None else []
        self._probes.ensure(task.id, cid, test, c.healthcheck)

    def _probe_passed(self, task_id: str) -> None:
        self._tasks.touched(task_id, "", destroyed=False)

    def _wire(self, task: pb.Task, observed: Container) -> None:
        """Into its overlay networks before it is reported STARTING/RUNNING,
        so it is reachable when reported. Raises (the reconcile is retried)
        while a network is not ready."""
        if self.network is not None and task.networks and observed.pid:
            self.network.attach(task, observed.pid)

    def _release(self, task_id: str) -> None:
        self._probes.forget(task_id)
        if self.network is not None:
            self.network.release(task_id)

    def _engine_task(self, task: pb.Task) -> pb.Task:
        """The task as the engine creates it: Swarm's placeholders in --env
        and --hostname replaced by this node's values (issue 11), mount
        templates expanded and secret and config files written and mounted
        (issue 10, taskfiles.py)."""
        task = self._expanded(task)
        if not tf.needs_preparing(task):
            return task
        os_name, arch = self.platform()
        ctx = templates.task_context(task, self.node_id, self.hostname(), os_name, arch)
        return tf.engine_task(task, ctx, self.files)

    def _report(self, rec: Record, status: d.Status) -> None:
        """Queues a status unless it would not move the task forward."""
        if self.files is not None and d.terminal(status.state):
            self.files.release(rec.task_id)  # its container has stopped: its files are of no use
        cid = self._tasks.advance(rec, status.state)
        if cid is None:
            return
        msg = pb.TaskStatus(
            timestamp=time.time(),
            state=status.state,  # type: ignore[arg-type]
            message=status.message,
            err=status.err,
            container_id=cid,
            exit_code=status.exit_code,
        )
        self._reporter.put(dpb.TaskStatusReport(task_id=rec.task_id, status=msg))

    # ------------------------------------------------------ events and resync

    def _on_event(self, ev: Event) -> None:
        task_id = ev.labels.get(cm.LABEL_TASK_ID)
        if ev.labels.get(cm.LABEL_NODE_ID) == self.node_id and task_id:
            self._tasks.touched(task_id, ev.container_id, destroyed=ev.action == "destroy")

    def _resync(self) -> None:
        """Lists our containers and reconciles every task against them:
        adopts containers of assigned tasks, removes the others."""
        with self._resync_lock:
            found, strays = d.by_task(self.runtime.list_containers(self._labels), self.node_id)
            self._tasks.listing(found)
        for cid in strays:
            log.info("removing container %s: labelled for this node but with no task", cid[:12])
            try:
                self.runtime.remove(cid)
            except Exception as e:
                log.warning("removing %s: %s", cid[:12], e)

    def _tick(self) -> None:
        next_resync = time.monotonic() + RESYNC_PERIOD
        while not self._stopped.wait(RETRY_DELAY):
            self._tasks.retry_failed()
            if self._tasks.listed and time.monotonic() >= next_resync:
                next_resync = time.monotonic() + RESYNC_PERIOD
                try:
                    self._resync()
                except Exception as e:
                    log.warning("periodic resync failed: %s", e)

    # ------------------------------------------------------ describe and logs

    def hostname(self) -> str:
        """The configured name, else the engine's (asked once), else this
        host's while the engine cannot say."""
        if self._hostname is None:
            try:
                self._hostname = self.runtime.describe().hostname
            except errors.SwarmletError:
                return socket.gethostname()
        return self._hostname

    def image_hints(self, sources: list[dpb.ImageSource], auths: list[dpb.ServiceRegistryAuth]) -> None:
        """From the session: where images are, and the credentials of the
        services this node runs."""
        self.images.hints(sources, auths)

    def platform(self) -> tuple[str, str]:
        """(os, arch) of the engine, asked once ("" while it cannot say)."""
        if self._platform is None:
            try:
                self.describe()
            except errors.SwarmletError:
                return ("", "")
        return self._platform or ("", "")

    def describe(self) -> pb.NodeDescription:
        desc = self.runtime.describe()
        self.images.annotate(desc)
        if self._hostname is None:
            self._hostname = desc.hostname
        desc.hostname = self._hostname
        self._platform = (desc.os, desc.arch)
        for g in self.generic_resources:
            desc.resources.generic.add().CopyFrom(g)
        return desc

    def logs(
        self, container_ids: list[str], follow: bool, tail: int, timestamps: bool, since: float = 0.0, until: float = 0.0
    ) -> Iterator[agent_pb2.LogLine]:
        """See logs.task_logs."""
        return task_logs(self.runtime, self.node_id, container_ids, follow, tail, timestamps, since, until)
