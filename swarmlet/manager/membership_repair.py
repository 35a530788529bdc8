"""The leader's repair of Raft membership (issue 14).

A promotion writes the node as a manager, then adds it to Raft; a demotion
removes it from Raft, then writes it as a worker. A leader that dies between
the two steps, or before its Raft change commits, leaves the store and the
Raft membership disagreeing: the fault campaign found a promoted node
running as a manager that Raft had dropped with the uncommitted change, for
good. Every few seconds the leader compares them and finishes the change
(control.cluster.ClusterControl.repair_membership)."""

from __future__ import annotations

import logging
import threading

from swarmlet import errors
from swarmlet.manager.control.cluster import ClusterControl
from swarmlet.manager.store import Store

log = logging.getLogger(__name__)

REPAIR_PERIOD = 2.0


class MembershipRepair:
    def __init__(self, store: Store, cluster: ClusterControl, period: float = REPAIR_PERIOD) -> None:
        self._store = store
        self._cluster = cluster
        self._period = period
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="membership-repair", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self._period):
            if not self._store.ensure_leader_ready():
                continue
            try:
                for line in self._cluster.repair_membership():
                    log.warning("raft membership repair: %s", line)
            except errors.SwarmletError as e:
                log.info("raft membership repair postponed: %s", e)
            except Exception:
                log.exception("raft membership repair failed")
