"""The executor's table of tasks and the level-triggered scheduling of their
reconciles.

Every task has a record and a "dirty" flag. Whatever may change what should
happen to a task only marks it dirty; a worker then runs the reconcile
callback for it. Reconciles of different tasks run in parallel, those of one
task never overlap (dirty/busy): a task marked while busy gets another pass
when the current one ends. Tasks being stopped or removed go to their own
pool, so stop grace periods never hold up starts. A reconcile that raises is
retried (`retry_failed`, called by the executor's ticker).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from swarmlet import errors
from swarmlet.agent.decisions import terminal
from swarmlet.api import objects_pb2 as pb

log = logging.getLogger(__name__)

START_WORKERS = 8
STOP_WORKERS = 16


@dataclass
class Record:
    task_id: str
    task: pb.Task
    known: int = pb.NEW  # highest state reported by us or seen in the store
    assigned: bool = True  # in the set given to the last converge()
    container_id: str = ""
    handled_desired: int = -1  # desired state the last scheduled reconcile saw
    dirty: bool = False
    busy: bool = False
    failures: int = 0  # reconciles failed in a row, retried


@dataclass(frozen=True)
class View:
    """A record's fields as one reconcile reads them."""

    task: pb.Task
    assigned: bool
    container_id: str
    known: int


class TaskTable:
    def __init__(self, reconcile: Callable[[Record], None]) -> None:
        self._reconcile = reconcile
        self._lock = threading.Lock()
        # Notified whenever a reconcile ends: wait_idle() waits on it.
        self._idle = threading.Condition(self._lock)
        self._records: dict[str, Record] = {}
        self._retry: set[str] = set()
        # The containers were listed once: before that, an assigned task's
        # container may exist unknown to us, so nothing is reconciled.
        self.listed = False
        self._stopped = False
        self._start_pool: ThreadPoolExecutor | None = None
        self._stop_pool: ThreadPoolExecutor | None = None

    def start(self) -> None:
        self._start_pool = ThreadPoolExecutor(START_WORKERS, thread_name_prefix="exec-start")
        self._stop_pool = ThreadPoolExecutor(STOP_WORKERS, thread_name_prefix="exec-stop")

    def stop(self) -> None:
        """No new reconciles; those running finish in the background."""
        with self._lock:  # no submit can race the pool shutdown below
            self._stopped = True
        for pool in (self._start_pool, self._stop_pool):
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)

    def wait_idle(self, timeout: float) -> bool:
        """Until no reconcile runs or is queued. True if idle within `timeout`."""
        with self._idle:
            return self._idle.wait_for(lambda: not any(r.busy for r in self._records.values()), timeout)

    # ---- inputs ----

    def converge(self, tasks: list[pb.Task]) -> None:
        """The full set of tasks assigned to this node: marks what differs.
        The tasks are kept, not copied."""
        with self._lock:
            if self._stopped:
                return
            ids = set()
            for t in tasks:
                ids.add(t.id)
                rec = self._records.get(t.id)
                if rec is None:
                    rec = self._records[t.id] = Record(task_id=t.id, task=t)
                rec.task = t
                if not rec.assigned:
                    # Back in the set while its removal may still run: look
                    # at it again once that is done.
                    rec.assigned = True
                    rec.handled_desired = -1
                # The store may know more than this process (reports of a
                # previous agent run, or a state set by the manager).
                rec.known = max(rec.known, t.status.state)
                if self.listed and t.desired_state != rec.handled_desired:
                    rec.handled_desired = t.desired_state
                    self._mark(rec)
            for rec in self._records.values():
                if rec.task_id not in ids and rec.assigned:
                    rec.assigned = False
                    if self.listed:
                        self._mark(rec)

    def touched(self, task_id: str, container_id: str, destroyed: bool) -> None:
        """An engine event about the container of `task_id`."""
        with self._lock:
            rec = self._records.get(task_id)
            if rec is None:
                # Not assigned to us (anymore): an orphan. Before the first
                # listing the resync will see it anyway.
                if not self.listed or destroyed:
                    return
                rec = self._records[task_id] = Record(task_id=task_id, task=pb.Task(id=task_id), assigned=False)
            if not rec.container_id and container_id and not destroyed:
                rec.container_id = container_id
            self._mark(rec)

    def listing(self, containers: dict[str, str]) -> None:
        """A listing of the engine's containers (task id -> container id):
        adopts those of our tasks, takes the others as orphans, and looks at
        every task again."""
        with self._lock:
            self.listed = True
            for tid, cid in containers.items():
                rec = self._records.get(tid)
                if rec is None:
                    rec = self._records[tid] = Record(task_id=tid, task=pb.Task(id=tid), assigned=False)
                if not rec.container_id:
                    rec.container_id = cid
            for rec in list(self._records.values()):
                if rec.assigned:
                    rec.handled_desired = rec.task.desired_state
                self._mark(rec)
            self._retry.clear()

    def retry_failed(self) -> None:
        with self._lock:
            retry, self._retry = self._retry, set()
            for tid in retry:
                rec = self._records.get(tid)
                if rec is not None:
                    self._mark(rec)

    # ---- for the reconcile ----

    def view(self, rec: Record) -> View:
        with self._lock:
            return View(rec.task, rec.assigned, rec.container_id, rec.known)

    def set_container(self, rec: Record, container_id: str, again: bool = False) -> None:
        """The task's container is `container_id`; `again`: reconcile once
        more, now that it is known."""
        with self._lock:
            rec.container_id = container_id
            if again:
                rec.dirty = True

    def advance(self, rec: Record, state: int) -> str | None:
        """Records `state` as known if it moves the task forward (states only
        increase, nothing follows a terminal state); returns the task's
        container id then, else None."""
        with self._lock:
            if state <= rec.known or terminal(rec.known):
                return None
            rec.known = state
            return rec.container_id

    # ---- scheduling ----

    def _mark(self, rec: Record) -> None:
        """Caller holds self._lock."""
        rec.dirty = True
        if not rec.busy and not self._stopped:
            rec.busy = True
            self._pool_for(rec).submit(self._run, rec)

    def _pool_for(self, rec: Record) -> ThreadPoolExecutor:
        slow = not rec.assigned or rec.task.desired_state >= pb.SHUTDOWN
        pool = self._stop_pool if slow else self._start_pool
        assert pool is not None, "TaskTable.start() was not called"
        return pool

    def _run(self, rec: Record) -> None:
        with self._lock:
            rec.dirty = False
        retry = False
        try:
            self._reconcile(rec)
        except (errors.SwarmletError, OSError) as e:
            # The engine unreachable, a transient error, a network not
            # assigned yet, a namespace gone while being wired: try again
            # later rather than declare the task failed on it. Logged once
            # per streak: with the engine down every task would log every
            # second.
            (log.warning if rec.failures == 0 else log.debug)("task %s: reconcile failed, retrying: %s", rec.task_id, e)
            retry = True
        except Exception:
            log.exception("task %s: reconcile failed", rec.task_id)
            retry = True
        with self._lock:
            rec.failures = rec.failures + 1 if retry else 0
            if retry:
                self._retry.add(rec.task_id)
            if rec.dirty and not self._stopped:
                # Changes arrived meanwhile: another pass, possibly on the
                # other pool (the desired state may have changed).
                self._pool_for(rec).submit(self._run, rec)
                return
            rec.busy = False
            if not rec.assigned and not retry and self._records.get(rec.task_id) is rec:
                del self._records[rec.task_id]
            self._idle.notify_all()
