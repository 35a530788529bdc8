"""Status reports out of the executor, coalesced.

Reports queued within REPORT_COALESCE seconds of the first go out as one
call, holding only the latest status of each task (states only increase);
the call is made by this thread, with no lock of the executor held.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable

from swarmlet.api import dispatcher_pb2 as dpb

log = logging.getLogger(__name__)

REPORT_COALESCE = 0.02

ReportFn = Callable[[list[dpb.TaskStatusReport]], None]


class Reporter:
    def __init__(self, deliver: ReportFn, coalesce: float = REPORT_COALESCE) -> None:
        self._deliver_fn = deliver
        self._coalesce = coalesce
        self._q: queue.Queue[dpb.TaskStatusReport | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="exec-reporter", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def put(self, report: dpb.TaskStatusReport) -> None:
        self._q.put(report)

    def stop(self, timeout: float = 5.0) -> None:
        """Delivers what is queued, then ends the thread."""
        self._q.put(None)
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            first = self._q.get()
            if first is None:
                self._flush()
                return
            batch = [first]
            deadline = time.monotonic() + self._coalesce
            stop = False
            while (left := deadline - time.monotonic()) > 0:
                try:
                    item = self._q.get(timeout=left)
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                batch.append(item)
            self._deliver(batch)
            if stop:
                self._flush()
                return

    def _flush(self) -> None:
        batch = []
        while True:
            try:
                item = self._q.get_nowait()
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
            self._deliver_fn(list(latest.values()))
        except Exception:
            log.exception("task status report failed")
