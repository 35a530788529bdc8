"""The leader's control loop: plan a round with the pure core, propose it as
one replicated batch, repeat when the state changes (or periodically, since
restart delays are time-based)."""

from __future__ import annotations

import logging
import threading
import time

from swarmlet import metrics
from swarmlet.core import planner
from swarmlet.core.planner import split_plan
from swarmlet.ids import new_id
from swarmlet.manager.store import ConflictError, Store, StoreError

log = logging.getLogger(__name__)

# A batch is one Raft entry; pysyncobj is slow with entries far beyond its
# batch size (LIBRARIES.md), so a big round is proposed in slices. The loop is
# level-triggered: whatever a slice leaves out is planned again next round.
MAX_ACTIONS_PER_BATCH = 2000


class LeaderLoop:
    def __init__(self, store: Store, idle_period: float = 0.25) -> None:
        self._store = store
        self._idle = idle_period
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="leader-loop", daemon=True)
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

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self._store.ensure_leader_ready():
                self._stop.wait(0.1)
                continue
            snap = self._store.snapshot()
            started = time.perf_counter()
            try:
                # plan never mutates the snapshot (copy-on-write), so no copy.
                plan = planner.plan(snap, time.time(), new_id)
            except Exception:
                log.exception("planning failed")
                self._stop.wait(1.0)
                continue
            metrics.observe_round(time.perf_counter() - started, plan.actions)
            if plan.error:
                log.error("%s", plan.error)
            actions = plan.actions
            if not actions:
                wait = self._idle
                # A restart delay or an update's monitor period ending is a change too.
                if plan.wake_at is not None:
                    wait = max(0.01, min(wait, plan.wake_at - time.time() + 0.005))
                self._store.wait_for_change(snap.version, timeout=wait)
                continue
            actions = split_plan(snap, actions, MAX_ACTIONS_PER_BATCH)
            try:
                self._store.propose(actions, timeout=10.0)
                self.rounds += 1
            except ConflictError as e:
                # Someone wrote in between: re-plan on the fresh state.
                log.debug("round conflicted: %s", e)
            except StoreError as e:
                log.warning("round not committed: %s", e)
                self._stop.wait(0.2)
