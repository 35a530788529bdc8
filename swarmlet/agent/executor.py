"""Converges one Docker engine to the set of tasks assigned to this node.

Level-triggered: every task has a record and a "dirty" flag. Anything that may
change what should happen to a task (a new assignment, a new desired state, a
Docker event, a resync after the event stream broke) only marks the task dirty;
a worker then runs `_reconcile`, which inspects the container and does whatever
the desired state calls for. Reconciling twice is harmless, so nothing has to
be remembered about *which* event happened, and a missed event is repaired by
the next resync.

Threads:
- workers (two pools): reconciles of different tasks run in parallel, those of
  one task never overlap (the dirty/busy flags). Tasks that are being stopped
  go to their own pool, so stop grace periods never hold up starts.
- the event watcher: Docker events for our containers -> mark dirty;
  reconnects and resyncs (lists the containers) when the stream breaks.
- the ticker: retries reconciles that failed on engine errors, and resyncs
  every RESYNC_PERIOD as a safety net.
- the reporter: coalesces status reports for REPORT_COALESCE seconds and calls
  `report` with no lock held.
"""

from __future__ import annotations

import logging
import queue
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import docker
import docker.errors
import requests
from docker.types import CancellableStream

from swarmlet.agent.runtime import containers as cm
from swarmlet.api import agent_pb2
from swarmlet.api import dispatcher_pb2 as dpb
from swarmlet.api import objects_pb2 as pb

log = logging.getLogger(__name__)

# Engine 20.10's version; later engines still serve it (their minimum is far lower).
DOCKER_API_VERSION = "1.41"
REPORT_COALESCE = 0.02
RESYNC_PERIOD = 30.0
RETRY_DELAY = 1.0
START_WORKERS = 8
STOP_WORKERS = 16
_NEVER = "0001-01-01T00:00:00Z"  # Docker's zero time: never started
# "die" covers OOM kills (the inspect says so) and "start" would only echo our
# own starts: neither "oom" nor "start" is needed.
_EVENTS = ["die", "destroy", "health_status"]

ReportFn = Callable[[list[dpb.TaskStatusReport]], None]


def _terminal(state: int) -> bool:
    return state >= pb.COMPLETE


@dataclass
class _Record:
    task_id: str
    task: pb.Task
    known: int = pb.NEW  # highest state reported by us or seen in the store
    assigned: bool = True  # in the set given to the last converge()
    container_id: str = ""
    handled_desired: int = -1  # desired state the last scheduled reconcile saw
    dirty: bool = False
    busy: bool = False
    failures: int = 0  # reconciles failed in a row (engine errors), retried


@dataclass
class _LogStream:
    container_id: str
    task_id: str
    stream: CancellableStream | None = None
    done: bool = False


class Executor:
    def __init__(
        self,
        docker_url: str,
        node_id: str,
        report: ReportFn,
        hostname: str | None = None,
        network=None,
    ) -> None:
        self._url = docker_url
        # Overlay wiring (agent/network.py); None: tasks get no networks wired.
        self.network = network
        self.node_id = node_id
        self._report_fn = report
        self._hostname = hostname
        # Enough pooled connections for every worker: urllib3 otherwise opens
        # and discards extra connections (and warns) under a burst of starts.
        # A fixed API version: negotiating it would contact the engine here,
        # and the agent must be constructible while its engine is still down.
        self._client = docker.APIClient(
            base_url=docker_url, version=DOCKER_API_VERSION, max_pool_size=START_WORKERS + STOP_WORKERS + 4
        )
        # Streams (events, followed logs) may stay quiet for hours: no read
        # timeout on them (see LIBRARIES.md).
        self._stream_client = docker.APIClient(base_url=docker_url, version=DOCKER_API_VERSION, timeout=None, max_pool_size=32)
        self._label_filter = f"{cm.LABEL_NODE_ID}={node_id}"

        self._lock = threading.Lock()
        # Notified whenever a reconcile ends: wait_idle() waits on it.
        self._idle = threading.Condition(self._lock)
        self._records: dict[str, _Record] = {}
        self._first_converge = threading.Event()
        self._listed = False  # the containers were listed once: reconciles may run
        self._retry: set[str] = set()
        self._resync_lock = threading.Lock()

        self._stopped = threading.Event()
        self._events_stream: CancellableStream | None = None
        self._reports: queue.Queue[dpb.TaskStatusReport | None] = queue.Queue()
        self._start_pool: ThreadPoolExecutor | None = None
        self._stop_pool: ThreadPoolExecutor | None = None
        self._threads: list[threading.Thread] = []

    # ------------------------------------------------------------------ life

    def start(self) -> None:
        if self.network is not None:
            self.network.start()
        self._start_pool = ThreadPoolExecutor(START_WORKERS, thread_name_prefix="exec-start")
        self._stop_pool = ThreadPoolExecutor(STOP_WORKERS, thread_name_prefix="exec-stop")
        for target, name in (
            (self._watch_events, "exec-events"),
            (self._tick, "exec-ticker"),
            (self._send_reports, "exec-reporter"),
        ):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        """Stops our threads; containers are left as they are, so restarting
        the agent does not disturb running tasks. Operations already running
        (e.g. a stop in its grace period) finish in the background."""
        with self._lock:  # no submit can race the pool shutdown below
            self._stopped.set()
        self._first_converge.set()  # wakes the watcher if it still waits
        stream = self._events_stream
        if stream is not None:
            try:
                stream.close()
            except Exception:  # already closed / engine gone
                pass
        self._reports.put(None)
        if self.network is not None:
            self.network.stop()
        for t in self._threads:
            t.join(timeout=5)
        for pool in (self._start_pool, self._stop_pool):
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no reconcile runs or is queued (e.g. every container is
        removed after converge([])). True if idle within `timeout`."""
        with self._idle:
            return self._idle.wait_for(lambda: not any(r.busy for r in self._records.values()), timeout)

    # -------------------------------------------------------------- converge

    def converge(self, tasks: list[pb.Task]) -> None:
        """Takes the full set of tasks assigned to this node and schedules
        whatever differs; returns at once. Cheap when nothing changed: it is
        called on every assignment message. The tasks are kept, not copied:
        callers must not mutate them afterwards."""
        with self._lock:
            if self._stopped.is_set():
                return
            ids = set()
            for t in tasks:
                ids.add(t.id)
                rec = self._records.get(t.id)
                if rec is None:
                    rec = self._records[t.id] = _Record(task_id=t.id, task=t)
                rec.task = t
                if not rec.assigned:
                    # Back in the set while its removal may still run: look
                    # at it again once that is done.
                    rec.assigned = True
                    rec.handled_desired = -1
                # The store may know more than this process (reports of a
                # previous agent run, or a state set by the manager).
                if t.status.state > rec.known:
                    rec.known = t.status.state
                if self._listed and t.desired_state != rec.handled_desired:
                    rec.handled_desired = t.desired_state
                    self._mark_dirty(rec)
            for rec in self._records.values():
                if rec.task_id not in ids and rec.assigned:
                    rec.assigned = False
                    if self._listed:
                        self._mark_dirty(rec)
        # The first converge lets the watcher list the containers (after its
        # event stream is open, so nothing falls between list and stream).
        self._first_converge.set()

    def _mark_dirty(self, rec: _Record) -> None:
        """Caller holds self._lock."""
        rec.dirty = True
        if not rec.busy and not self._stopped.is_set():
            rec.busy = True
            self._pool_for(rec).submit(self._run, rec)

    def _pool_for(self, rec: _Record) -> ThreadPoolExecutor:
        slow = not rec.assigned or rec.task.desired_state >= pb.SHUTDOWN
        pool = self._stop_pool if slow else self._start_pool
        assert pool is not None, "Executor.start() was not called"
        return pool

    def _run(self, rec: _Record) -> None:
        with self._lock:
            rec.dirty = False
        retry = False
        try:
            self._reconcile(rec)
        except (docker.errors.DockerException, requests.RequestException, OSError) as e:
            # Engine unreachable or a transient error: try again later rather
            # than declare a task failed on it. Logged once per streak: with
            # the engine down every task would log every second.
            (log.warning if rec.failures == 0 else log.debug)("task %s: reconcile failed, retrying: %s", rec.task_id, e)
            retry = True
        except Exception:
            log.exception("task %s: reconcile failed", rec.task_id)
            retry = True
        with self._lock:
            rec.failures = rec.failures + 1 if retry else 0
            if retry:
                self._retry.add(rec.task_id)
            if rec.dirty and not self._stopped.is_set():
                # Changes arrived meanwhile: another pass, possibly on the
                # other pool (the desired state may have changed).
                self._pool_for(rec).submit(self._run, rec)
                return
            rec.busy = False
            if not rec.assigned and not retry and self._records.get(rec.task_id) is rec:
                del self._records[rec.task_id]
            self._idle.notify_all()

    # ------------------------------------------------------------- reconcile

    def _reconcile(self, rec: _Record) -> None:
        with self._lock:
            task = rec.task
            assigned = rec.assigned
            cid = rec.container_id
        if not assigned:
            # Dropped from the set (the task was deleted, or it is an orphan
            # of a previous run): its container goes, logs with it.
            self._release_network(rec.task_id)
            if cid:
                self._remove(cid)
            return
        desired = task.desired_state
        if desired >= pb.SHUTDOWN:
            # Out of DNS and VIP backends first (the store already dropped
            # it), then its wiring goes with the container.
            self._release_network(rec.task_id)
        if desired >= pb.REMOVE:
            if cid:
                self._remove(cid)
            self._report(rec, pb.SHUTDOWN, "removed")
            return
        if desired >= pb.SHUTDOWN:
            info = self._inspect(cid) if cid else None
            if info is not None and info["State"]["Running"]:
                self._client.stop(cid, timeout=cm.stop_timeout(task))
            self._report(rec, pb.SHUTDOWN, "stopped")
            return
        if desired < pb.RUNNING:
            return  # not to be started yet
        with self._lock:
            known = rec.known
        if _terminal(known):
            return  # a task runs once; the orchestrator makes a new one
        info = self._inspect(cid) if cid else None
        if info is None:
            if cid or known >= pb.STARTING:
                # It was started once, and someone removed its container.
                self._report(rec, pb.FAILED, "container removed", err=f"container {cid or '(unknown)'} was removed")
                return
            self._create_and_start(rec, task)
            return
        state = info["State"]
        if state.get("Status") == "removing":
            return  # the destroy event follows
        if state["Running"]:
            self._observe_running(rec, task, info)
        elif state.get("StartedAt", _NEVER) == _NEVER and state.get("Status") == "created":
            # Created but never started (the agent stopped in between).
            self._start(rec, task, cid, self._has_healthcheck_from_config(info))
        else:
            self._release_network(rec.task_id)
            end = cm.exit_status(int(state.get("ExitCode", 0)), bool(state.get("OOMKilled")), state.get("Error", ""))
            self._report(rec, end.state, end.message, err=end.err, exit_code=end.exit_code)

    def _wire_network(self, task: pb.Task, pid: int) -> None:
        """Wire the container into its overlay networks before it is
        reported STARTING/RUNNING, so it is reachable when reported. Raises
        (the reconcile is retried) while a network is not ready."""
        if self.network is None or not task.networks or not pid:
            return
        self.network.attach(task, pid)

    def _release_network(self, task_id: str) -> None:
        if self.network is not None:
            self.network.release(task_id)

    def _observe_running(self, rec: _Record, task: pb.Task, info: dict[str, Any]) -> None:
        self._wire_network(task, int(info["State"].get("Pid") or 0))
        health = (info["State"].get("Health") or {}).get("Status")
        if health is None or health == "none":
            self._report(rec, pb.RUNNING, "started")
        elif health == "healthy":
            self._report(rec, pb.RUNNING, "healthy")
        elif health == "unhealthy":
            self._client.stop(info["Id"], timeout=cm.stop_timeout(task))
            self._report(rec, pb.FAILED, "unhealthy", err="container unhealthy")
        else:
            self._report(rec, pb.STARTING, "starting: waiting for the health check")

    def _has_healthcheck_from_config(self, info: dict[str, Any]) -> bool:
        # The container's config already merges the image's health check.
        return cm.healthcheck_enabled(pb.ContainerSpec(), (info.get("Config") or {}).get("Healthcheck"))

    def _create_and_start(self, rec: _Record, task: pb.Task) -> None:
        image = task.spec.container.image
        try:
            # Never pull: nodes have no registry; the image must be loaded.
            image_info = self._client.inspect_image(image)
        except docker.errors.NotFound:
            self._report(rec, pb.REJECTED, "rejected", err=f'image "{image}" not found on node {self.hostname()}')
            return
        health = cm.healthcheck_enabled(task.spec.container, (image_info.get("Config") or {}).get("Healthcheck"))
        kwargs = cm.create_container_kwargs(task, self.node_id)
        host_config = self._client.create_host_config(**cm.host_config_kwargs(task))
        try:
            cid = self._client.create_container(host_config=host_config, **kwargs)["Id"]
        except docker.errors.APIError as e:
            if e.status_code == 409:
                # The name exists: a create whose answer we lost, or one of a
                # previous agent run the listing missed. Adopt it if it is ours.
                other = self._inspect(kwargs["name"])
                labels = ((other or {}).get("Config") or {}).get("Labels") or {}
                if other is not None and labels.get(cm.LABEL_TASK_ID) == task.id:
                    with self._lock:
                        rec.container_id = other["Id"]
                        rec.dirty = True  # reconcile again with the container known
                    return
            self._report(rec, pb.REJECTED, "create failed", err=_docker_error(e))
            return
        with self._lock:
            rec.container_id = cid
        self._start(rec, task, cid, health)

    def _start(self, rec: _Record, task: pb.Task, cid: str, health: bool) -> None:
        try:
            self._client.start(cid)
        except docker.errors.NotFound:
            raise  # removed meanwhile: the retry's reconcile reports it
        except docker.errors.APIError as e:
            self._report(rec, pb.FAILED, "start failed", err=_docker_error(e))
            return
        if self.network is not None and task.networks:
            info = self._inspect(cid)
            if info is not None and info["State"]["Running"]:
                self._wire_network(task, int(info["State"].get("Pid") or 0))
        if health:
            self._report(rec, pb.STARTING, "started: waiting for the health check")
        else:
            # If it already died, the die event makes the next reconcile
            # report its end (RUNNING first is still true: it ran).
            self._report(rec, pb.RUNNING, "started")

    def _inspect(self, ref: str) -> dict[str, Any] | None:
        try:
            return self._client.inspect_container(ref)
        except docker.errors.NotFound:
            return None

    def _remove(self, cid: str) -> None:
        try:
            self._client.remove_container(cid, force=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as e:
            if e.status_code == 409 and "already in progress" in str(e):
                return  # a concurrent removal (e.g. by an operator)
            raise

    # --------------------------------------------------------------- reports

    def _report(self, rec: _Record, state: int, message: str, err: str = "", exit_code: int = 0) -> None:
        """Queues a status unless it would not move the task forward: states
        only increase, and nothing follows a terminal state."""
        with self._lock:
            if state <= rec.known or _terminal(rec.known):
                return
            rec.known = state
            status = pb.TaskStatus(
                timestamp=time.time(),
                state=state,  # type: ignore[arg-type]
                message=message,
                err=err,
                container_id=rec.container_id,
                exit_code=exit_code,
            )
        self._reports.put(dpb.TaskStatusReport(task_id=rec.task_id, status=status))

    def _send_reports(self) -> None:
        while True:
            first = self._reports.get()
            if first is None:
                self._flush_reports()
                return
            batch = [first]
            deadline = time.monotonic() + REPORT_COALESCE
            stop = False
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    item = self._reports.get(timeout=left)
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                batch.append(item)
            self._deliver(batch)
            if stop:
                self._flush_reports()
                return

    def _flush_reports(self) -> None:
        batch = []
        while True:
            try:
                item = self._reports.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                batch.append(item)
        if batch:
            self._deliver(batch)

    def _deliver(self, batch: list[dpb.TaskStatusReport]) -> None:
        # Only the latest status of a task matters to the manager (states
        # only increase), in the order the tasks last changed.
        latest: dict[str, dpb.TaskStatusReport] = {}
        for r in batch:
            latest.pop(r.task_id, None)
            latest[r.task_id] = r
        try:
            self._report_fn(list(latest.values()))
        except Exception:
            log.exception("task status report failed")

    # ------------------------------------------------------ events and resync

    def _watch_events(self) -> None:
        backoff = 0.1
        synced_once = False
        while not self._stopped.is_set():
            try:
                stream = self._stream_client.events(
                    decode=True,
                    filters={"type": "container", "label": self._label_filter, "event": _EVENTS},
                )
            except Exception as e:
                # Once per outage (the backoff resets on success), not every retry.
                (log.warning if backoff == 0.1 else log.debug)("docker events: %s; retrying", e)
                self._stopped.wait(backoff)
                backoff = min(backoff * 2, 2.0)
                continue
            self._events_stream = stream
            if self._stopped.is_set():
                stream.close()
                return
            try:
                if not synced_once:
                    while not self._first_converge.wait(0.5):
                        pass
                    if self._stopped.is_set():
                        return
                # The stream is open: whatever changes after this listing
                # arrives as an event, so no exit can be missed.
                self._resync()
                synced_once = True
                backoff = 0.1
                for ev in stream:
                    self._on_event(ev)
            except Exception as e:
                if not self._stopped.is_set():
                    log.warning("docker events stream broke: %s", e)
            finally:
                try:
                    stream.close()
                except Exception:
                    pass
            if not self._stopped.is_set():
                log.info("docker events stream ended; reconnecting")
                self._stopped.wait(backoff)
                backoff = min(backoff * 2, 2.0)

    def _on_event(self, ev: dict[str, Any]) -> None:
        attrs = (ev.get("Actor") or {}).get("Attributes") or {}
        if attrs.get(cm.LABEL_NODE_ID) != self.node_id:
            return
        task_id = attrs.get(cm.LABEL_TASK_ID)
        cid = (ev.get("Actor") or {}).get("ID", "")
        if not task_id:
            return
        with self._lock:
            rec = self._records.get(task_id)
            if rec is None:
                # Not assigned to us (anymore): an orphan. Before the first
                # listing the resync will see it anyway.
                if not self._listed or ev.get("Action") == "destroy":
                    return
                rec = self._records[task_id] = _Record(task_id=task_id, task=pb.Task(id=task_id), assigned=False)
            if not rec.container_id and cid and ev.get("Action") != "destroy":
                rec.container_id = cid
            self._mark_dirty(rec)

    def _resync(self) -> None:
        """Lists our containers and reconciles every task against them:
        adopts containers of assigned tasks, removes the others."""
        with self._resync_lock:
            listed = self._client.containers(all=True, filters={"label": self._label_filter})
            strays: list[str] = []
            with self._lock:
                self._listed = True
                found: dict[str, dict[str, Any]] = {}
                for c in listed:
                    labels = c.get("Labels") or {}
                    if labels.get(cm.LABEL_NODE_ID) != self.node_id:
                        continue
                    tid = labels.get(cm.LABEL_TASK_ID)
                    if not tid:
                        strays.append(c["Id"])
                        continue
                    prev = found.get(tid)
                    # Should a task have two containers, the running one is it.
                    if prev is None or (c.get("State") == "running" and prev.get("State") != "running"):
                        found[tid] = c
                for tid, c in found.items():
                    rec = self._records.get(tid)
                    if rec is None:
                        rec = self._records[tid] = _Record(task_id=tid, task=pb.Task(id=tid), assigned=False)
                    if not rec.container_id:
                        rec.container_id = c["Id"]
                for rec in list(self._records.values()):
                    if rec.assigned:
                        rec.handled_desired = rec.task.desired_state
                    self._mark_dirty(rec)
                self._retry.clear()
        for cid in strays:
            log.info("removing container %s: labelled for this node but with no task", cid[:12])
            try:
                self._remove(cid)
            except Exception as e:
                log.warning("removing %s: %s", cid[:12], e)

    def _tick(self) -> None:
        next_resync = time.monotonic() + RESYNC_PERIOD
        while not self._stopped.wait(RETRY_DELAY):
            with self._lock:
                retry, self._retry = self._retry, set()
                for tid in retry:
                    rec = self._records.get(tid)
                    if rec is not None:
                        self._mark_dirty(rec)
            if self._listed and time.monotonic() >= next_resync:
                next_resync = time.monotonic() + RESYNC_PERIOD
                try:
                    self._resync()
                except Exception as e:
                    log.warning("periodic resync failed: %s", e)

    # -------------------------------------------------------------- describe

    def hostname(self) -> str:
        if self._hostname is None:
            try:
                self._hostname = str(self._client.info().get("Name") or socket.gethostname())
            except Exception:
                return socket.gethostname()
        return self._hostname

    def describe(self) -> pb.NodeDescription:
        info = self._client.info()
        images: set[str] = set()
        for img in self._client.images():
            for tag in img.get("RepoTags") or []:
                if tag and tag != "<none>:<none>":
                    images.add(tag)
        if self._hostname is None:
            self._hostname = str(info.get("Name") or socket.gethostname())
        return pb.NodeDescription(
            hostname=self._hostname,
            resources=pb.Resources(
                nano_cpus=int(info.get("NCPU", 0)) * 1_000_000_000,
                memory_bytes=int(info.get("MemTotal", 0)),
            ),
            engine_version=str(info.get("ServerVersion", "")),
            os=str(info.get("OSType", "")),
            arch=str(info.get("Architecture", "")),
            images=sorted(images),
        )

    # ------------------------------------------------------------------ logs

    def logs(self, container_ids: list[str], follow: bool, tail: int, timestamps: bool) -> Iterator[agent_pb2.LogLine]:
        """Log lines of our containers, stdout and stderr told apart. Unknown
        containers, or containers of other nodes, are skipped. With several
        containers their lines interleave as they arrive. Closing the iterator
        closes the engine streams."""
        streams: list[_LogStream] = []
        for cid in container_ids:
            info = self._inspect(cid)
            labels = ((info or {}).get("Config") or {}).get("Labels") or {}
            if info is None or labels.get(cm.LABEL_NODE_ID) != self.node_id:
                log.info("logs: container %s is not one of this node's", cid)
                continue
            if (info.get("Config") or {}).get("Tty"):
                log.info("logs: container %s has a TTY; not supported", cid)
                continue
            streams.append(_LogStream(container_id=info["Id"], task_id=labels.get(cm.LABEL_TASK_ID, "")))
        if not streams:
            return
        out: queue.Queue[agent_pb2.LogLine | _LogStream] = queue.Queue(maxsize=1024)
        cancel = threading.Event()
        params = {
            "stdout": 1,
            "stderr": 1,
            "follow": 1 if follow else 0,
            "timestamps": 1 if timestamps else 0,
            "tail": "all" if tail < 0 else str(tail),
        }

        def pump(s: _LogStream) -> None:
            resp: requests.Response | None = None
            try:
                api = self._stream_client
                url = f"{api.base_url}/v{api.api_version}/containers/{s.container_id}/logs"
                resp = api.get(url, params=params, stream=True)
                resp.raise_for_status()
                s.stream = CancellableStream(iter(()), resp)
                if cancel.is_set():
                    return
                for kind, data in _frames(resp):
                    if cancel.is_set():
                        return
                    line = agent_pb2.LogLine(
                        container_id=s.container_id,
                        task_id=s.task_id,
                        node_id=self.node_id,
                        stream="stderr" if kind == 2 else "stdout",
                        data=data,
                    )
                    while not cancel.is_set():
                        try:
                            out.put(line, timeout=0.5)
                            break
                        except queue.Full:
                            continue
            except Exception as e:
                if not cancel.is_set():
                    log.warning("logs of %s: %s", s.container_id[:12], e)
            finally:
                s.done = True
                if resp is not None:
                    resp.close()
                while True:  # end marker, unless the consumer is gone
                    try:
                        out.put(s, timeout=0.5)
                        break
                    except queue.Full:
                        if cancel.is_set():
                            break

        threads = [threading.Thread(target=pump, args=(s,), daemon=True, name="exec-logs") for s in streams]
        for t in threads:
            t.start()
        remaining = len(streams)
        try:
            while remaining:
                item = out.get()
                if isinstance(item, _LogStream):
                    remaining -= 1
                    continue
                yield item
        finally:
            cancel.set()
            for s in streams:
                if s.stream is not None and not s.done:
                    try:
                        s.stream.close()
                    except Exception:
                        pass
            # Unblock pumps waiting on a full queue.
            while True:
                try:
                    out.get_nowait()
                except queue.Empty:
                    break


def _frames(resp: requests.Response) -> Iterator[tuple[int, bytes]]:
    """Docker's multiplexed stream: an 8-byte header (stream type, 3 zero
    bytes, big-endian payload length), then the payload."""
    raw = resp.raw
    while True:
        header = _read_exact(raw, 8)
        if len(header) < 8:
            return
        kind, length = struct.unpack(">BxxxL", header)
        if not length:
            continue
        data = _read_exact(raw, length)
        if len(data) < length:
            return
        yield kind, data


def _read_exact(raw: Any, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = raw.read(n - len(buf))
        if not chunk:
            break
        buf += chunk
    return buf


def _docker_error(e: docker.errors.APIError) -> str:
    return str(e.explanation or e)
