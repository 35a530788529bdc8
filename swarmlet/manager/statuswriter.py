"""One writer thread that coalesces status reports into store batches.

Agents report task and node status all the time; one Raft entry per report
would turn a thousand reports into a thousand commit round trips. Callers
queue merge actions (task status, node status: they never conflict with each
other), and the writer proposes whatever has accumulated as one batch, up to
`max_batch` actions and `max_bytes` bytes (DESIGN.md, "batch, don't
chatter"; issue 15: Raft entries capped by bytes too). Callers on an event
loop take a future (`submit_future`) instead of blocking.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field

from swarmlet.api import store_pb2 as spb
from swarmlet.manager.store import Store, StoreError

log = logging.getLogger(__name__)

# Actions per proposed batch: one Raft entry stays well under pysyncobj's
# append batch size (LIBRARIES.md).
MAX_BATCH = 2000
MAX_BYTES = 256 * 1024


@dataclass
class _Waiter:
    """The outcome of one submit call, set by the writer."""

    remaining: int  # actions of the call not yet proposed (writer thread only)
    done: threading.Event = field(default_factory=threading.Event)
    error: str = ""
    future: Future[None] | None = None

    def finish(self) -> None:
        self.done.set()
        if self.future is not None and not self.future.done():
            if self.error:
                self.future.set_exception(StoreError(self.error))
            else:
                self.future.set_result(None)


class StatusWriter:
    def __init__(self, store: Store, max_batch: int = MAX_BATCH, max_bytes: int = MAX_BYTES) -> None:
        self._store = store
        self._max_batch = max_batch
        self._max_bytes = max_bytes
        self._cond = threading.Condition()
        # Each queued action with the waiter of the call that queued it (the
        # same waiter for every action of one call).
        self._pending: list[tuple[spb.StoreAction, _Waiter]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="status-writer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()

    def submit(self, actions: list[spb.StoreAction], wait: float) -> None:
        """Queue merge actions; with wait > 0, block until they are committed
        (raising StoreError if they were not, or not within `wait` seconds)."""
        if not actions:
            return
        waiter = _Waiter(remaining=len(actions))
        with self._cond:
            self._pending.extend((a, waiter) for a in actions)
            self._cond.notify()
        if wait <= 0:
            return
        if not waiter.done.wait(wait):
            raise StoreError("status write timed out")
        if waiter.error:
            raise StoreError(waiter.error)

    def submit_future(self, actions: list[spb.StoreAction]) -> Future[None]:
        """Queue merge actions; the future ends once they are committed (or
        with the StoreError that kept them out)."""
        fut: Future[None] = Future()
        if not actions:
            fut.set_result(None)
            return fut
        waiter = _Waiter(remaining=len(actions), future=fut)
        with self._cond:
            self._pending.extend((a, waiter) for a in actions)
            self._cond.notify()
        return fut

    def _take(self) -> list[tuple[spb.StoreAction, _Waiter]]:
        """The next batch off the queue: by count and by bytes (an action
        over the byte cap goes alone). Called with the lock held."""
        n, size = 0, 0
        for a, _ in self._pending[: self._max_batch]:
            size += a.ByteSize() + 4
            if n and size > self._max_bytes:
                break
            n += 1
        batch, self._pending = self._pending[:n], self._pending[n:]
        return batch

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._cond:
                while not self._pending and not self._stop.is_set():
                    self._cond.wait(0.5)
                batch = self._take()
            if not batch:
                continue
            # Merge actions from many agents never conflict: the batch applies
            # whole or not at all.
            error = ""
            try:
                self._store.propose([a for a, _ in batch])
            except StoreError as e:
                error = str(e)
                log.debug("status batch of %d actions not committed: %s", len(batch), e)
            for _, waiter in batch:
                # A call whose actions straddle two batches is done after the
                # second, and failed if either failed.
                waiter.error = waiter.error or error
                waiter.remaining -= 1
                if waiter.remaining == 0:
                    waiter.finish()
