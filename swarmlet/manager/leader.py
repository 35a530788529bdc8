"""The leader's control loop: plan a round with the pure core, propose it,
repeat when the state changes (or when a timed decision comes due: restart
delays and update monitor periods are time-based).

Rounds are incremental (core/planner.IncrementalPlanner): each plans only
what changed since the last committed round, with the same actions a full
round would plan. A big plan is cut into Raft entries capped by count and by
bytes and proposed together, so a backlog of 10,000 tasks is placed in one
round rather than one slice per round (issue 15)."""

from __future__ import annotations

import logging
import threading
import time

from swarmlet import metrics
from swarmlet.core import planner
from swarmlet.ids import new_id
from swarmlet.manager.store import ConflictError, Store

log = logging.getLogger(__name__)

# One Raft entry: at most this many actions and this many bytes. pysyncobj is
# slow with entries far beyond its append batch (1 MiB as we configure it) and
# 16-256 KB entries replicate fastest (LIBRARIES.md).
MAX_ACTIONS_PER_BATCH = 2000
MAX_BYTES_PER_BATCH = 256 * 1024
# How long a round's proposals may take to commit.
PROPOSE_TIMEOUT = 10.0


class LeaderLoop:
    def __init__(self, store: Store, idle_period: float = 0.25) -> None:
        self._store = store
        self._idle = idle_period
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="leader-loop", daemon=True)
        self._planner = planner.IncrementalPlanner()
        self.rounds = 0

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def join(self, timeout: float) -> bool:
        """Wait for the loop to end after stop(); False if it is still in a
        round (a proposal waits at most its own timeout)."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def planner(self) -> planner.IncrementalPlanner:
        return self._planner

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self._store.ensure_leader_ready():
                # A new leader (this one again, later) knows nothing of the
                # rounds in between: its first round plans everything.
                self._planner.failed()
                self._stop.wait(0.1)
                continue
            snap = self._store.snapshot()
            changes = self._store.changes_since(self._planner.version, snap.version)
            started = time.perf_counter()
            try:
                # plan never mutates the snapshot (copy-on-write), so no copy.
                plan = self._planner.round(snap, changes, time.time(), new_id)
            except Exception:
                log.exception("planning failed")
                self._planner.failed()
                self._stop.wait(1.0)
                continue
            metrics.observe_round(time.perf_counter() - started, plan.actions)
            if plan.error:
                log.error("%s", plan.error)
            if not plan.actions:
                wait = self._idle
                # A restart delay or an update's monitor period ending is a change too.
                if plan.wake_at is not None:
                    wait = max(0.01, min(wait, plan.wake_at - time.time() + 0.005))
                self._store.wait_for_change(snap.version, timeout=wait)
                continue
            chunks = planner.chunk_actions(plan.actions, MAX_ACTIONS_PER_BATCH, MAX_BYTES_PER_BATCH)
            errors = self._store.propose_many(chunks, timeout=PROPOSE_TIMEOUT)
            self.rounds += 1
            failed = [e for e in errors if e is not None]
            if not failed:
                continue
            self._planner.failed()
            if all(isinstance(e, ConflictError) for e in failed):
                # Someone wrote in between: re-plan on the fresh state.
                log.debug("round conflicted: %s", failed[0])
            else:
                log.warning("round not committed (%d of %d entries): %s", len(failed), len(chunks), failed[0])
                self._stop.wait(0.2)
