"""The replicated store: a pysyncobj state machine over `state.Snapshot`.

Every change is one `StoreBatch` (serialized protobuf bytes) appended to the Raft
log and applied by `state.apply_batch` on every manager. Readers get an
immutable snapshot (copy-on-write), so they never lock against the tick thread.

Traps of pysyncobj handled here (../shared/LIBRARIES.md):
- its port unpickles what arrives: a password is mandatory (Fernet);
- both journalFile and fullDumpFile are set, or compaction + restart loses state;
- a replicated method that raises wedges the node: `apply_batch` never raises;
- a sync call from the tick thread deadlocks: we propose with a callback and
  wait on an Event from the caller's thread;
- a timed-out proposal may still apply later: batches carry a request id and
  the state machine ignores an id it has already applied.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable

from pysyncobj import FAIL_REASON, SyncObj, SyncObjConf, SyncObjConsumer, replicated

from swarmlet.compat import restore_inet_ntop

restore_inet_ntop()  # pysyncobj breaks socket.inet_ntop on import (see compat.py)

from swarmlet.api import objects_pb2 as pb
from swarmlet.api import store_pb2 as spb
from swarmlet.manager import state as st

log = logging.getLogger(__name__)

# Bound on request ids remembered for idempotent retries.
_MAX_REQUEST_IDS = 4096

_TABLE_TYPES = {"nodes": pb.Node, "services": pb.Service, "tasks": pb.Task, "clusters": pb.Cluster, "networks": pb.Network}


class StoreError(Exception):
    """A proposal was not committed; `retryable` tells whether to try again."""

    def __init__(self, message: str, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


class NotLeader(StoreError):
    pass


class ConflictError(StoreError):
    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=False)


@dataclass
class RaftTimings:
    """Raft timing knobs (seconds). Smaller means faster failover and faster
    commits; raft_min_timeout must stay above 3 x append_entries_period."""

    tick_period: float = 0.005
    append_entries_period: float = 0.02
    raft_min_timeout: float = 0.4
    raft_max_timeout: float = 0.8
    leader_fallback_timeout: float = 2.0


def raft_password(raft_secret: bytes) -> str:
    """The Raft transport password, derived from the cluster's secret so that
    it never travels or rests in the clear under its own name."""
    return hmac.new(raft_secret, b"swarmlet-raft-transport-v1", hashlib.sha256).hexdigest()


class _StateMachine(SyncObjConsumer):
    """The replicated part. Attributes set before SyncObjConsumer.__init__ are
    not serialized by pysyncobj; we serialize ourselves anyway (protobuf bytes,
    not pickled objects)."""

    def __init__(self, on_change: Callable[[st.Snapshot], None]) -> None:
        self._on_change = on_change
        self._snap = st.Snapshot()
        self._applied_ids: OrderedDict[str, spb.StoreResult] = OrderedDict()
        super().__init__()

    @replicated
    def apply(self, data: bytes) -> bytes:
        # Runs on the tick thread of every manager. Must never raise.
        try:
            batch = spb.StoreBatch.FromString(data)
        except Exception as e:  # a corrupt entry is refused, not fatal
            return spb.StoreResult(ok=False, error=f"undecodable batch: {e}").SerializeToString()
        if batch.request_id and batch.request_id in self._applied_ids:
            return self._applied_ids[batch.request_id].SerializeToString()
        new = self._snap.shallow_copy()
        try:
            result = st.apply_batch(new, batch)
        except Exception as e:  # defensive: apply_batch is written not to raise
            log.exception("apply_batch raised")
            result = spb.StoreResult(ok=False, error=f"internal error: {e}", version=self._snap.version)
        if result.ok:
            self._snap = new
        if batch.request_id:
            self._applied_ids[batch.request_id] = result
            while len(self._applied_ids) > _MAX_REQUEST_IDS:
                self._applied_ids.popitem(last=False)
        if result.ok:
            try:
                self._on_change(self._snap)
            except Exception:
                log.exception("store change callback failed")
        return result.SerializeToString()

    def _serialize(self) -> dict:
        snap = self._snap
        return {
            "format": 1,
            "version": snap.version,
            "tables": {
                table: {oid: obj.SerializeToString() for oid, obj in getattr(snap, table).items()}
                for table in _TABLE_TYPES
            },
            "applied_ids": [(k, v.SerializeToString()) for k, v in self._applied_ids.items()],
        }

    def _deserialize(self, data: dict) -> None:
        snap = st.Snapshot(version=data["version"])
        for table, cls in _TABLE_TYPES.items():
            setattr(snap, table, {oid: cls.FromString(raw) for oid, raw in data["tables"].get(table, {}).items()})
        self._snap = snap
        self._applied_ids = OrderedDict((k, spb.StoreResult.FromString(v)) for k, v in data["applied_ids"])
        self._on_change(snap)


class Store:
    """A manager's handle on the replicated state."""

    def __init__(
        self,
        self_addr: str,
        partners: list[str],
        state_dir: str,
        raft_secret: bytes,
        timings: RaftTimings | None = None,
        bind_addr: str | None = None,
    ) -> None:
        self.self_addr = self_addr
        t = timings or RaftTimings()
        raft_dir = os.path.join(state_dir, "raft")
        os.makedirs(raft_dir, mode=0o700, exist_ok=True)
        os.chmod(raft_dir, 0o700)  # journal and dump are pickles: root only
        self._cond = threading.Condition()
        self._version = 0
        self._leader_since: float | None = None
        self._sm = _StateMachine(self._changed)
        conf = SyncObjConf(
            password=raft_password(raft_secret),
            journalFile=os.path.join(raft_dir, "journal"),
            fullDumpFile=os.path.join(raft_dir, "dump"),
            autoTickPeriod=t.tick_period,
            appendEntriesPeriod=t.append_entries_period,
            raftMinTimeout=t.raft_min_timeout,
            raftMaxTimeout=t.raft_max_timeout,
            connectionTimeout=max(t.raft_max_timeout, 1.0),
            connectionRetryTime=0.5,
            leaderFallbackTimeout=t.leader_fallback_timeout,
            dynamicMembershipChange=True,
            useFork=False,  # forking a process with gRPC threads is unsafe
            appendEntriesBatchSizeBytes=1 << 20,
            sendBufferSize=1 << 20,
            recvBufferSize=1 << 20,
            logCompactionMinEntries=2000,
            logCompactionMinTime=60,
            bindAddress=bind_addr or self_addr,
            onStateChanged=self._state_changed,
        )
        self._obj = SyncObj(self_addr, partners, conf=conf, consumers=[self._sm])

    # ---- reads ----
    def snapshot(self) -> st.Snapshot:
        """The latest applied state. Treat it as read-only."""
        return self._sm._snap

    @property
    def version(self) -> int:
        return self._sm._snap.version

    def wait_for_change(self, version: int, timeout: float) -> int:
        """Block until the store's version differs from `version` or timeout."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._version == version:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            return self._version

    def _changed(self, snap: st.Snapshot) -> None:
        with self._cond:
            self._version = snap.version
            self._cond.notify_all()

    def _state_changed(self, old: int, new: int) -> None:
        with self._cond:
            self._leader_since = time.monotonic() if self.is_leader() else None
            self._cond.notify_all()

    # ---- leadership ----
    def is_leader(self) -> bool:
        return bool(self._obj._isLeader())

    def leader_addr(self) -> str | None:
        leader = self._obj._getLeader()
        return None if leader is None else str(leader)

    def is_ready(self) -> bool:
        return bool(self._obj.isReady())

    def status(self) -> dict:
        s = self._obj.getStatus()
        return {k: (str(v) if not isinstance(v, (int, float, bool, str, type(None))) else v) for k, v in s.items()}

    # ---- writes ----
    def propose(self, actions: list[spb.StoreAction], timeout: float = 5.0, request_id: str | None = None) -> spb.StoreResult:
        """Commit one batch. Raises NotLeader/StoreError if it was not
        committed, ConflictError if it was committed but a precondition failed
        (then nothing of it was applied)."""
        batch = spb.StoreBatch(actions=actions, timestamp=time.time(), request_id=request_id or uuid.uuid4().hex)
        data = batch.SerializeToString()
        done = threading.Event()
        out: dict = {}

        def callback(result, err):
            out["result"], out["err"] = result, err
            done.set()

        self._sm.apply(data, callback=callback)
        if not done.wait(timeout):
            raise StoreError(f"the write was not committed within {timeout:.1f}s (no quorum?)")
        err = out["err"]
        if err != FAIL_REASON.SUCCESS:
            if err in (FAIL_REASON.MISSING_LEADER, FAIL_REASON.NOT_LEADER, FAIL_REASON.LEADER_CHANGED):
                raise NotLeader(f"no leader accepted the write (reason {err})")
            raise StoreError(f"the write failed (reason {err})")
        result = spb.StoreResult.FromString(out["result"])
        if not result.ok:
            raise ConflictError(result.error)
        return result

    def close(self) -> None:
        try:
            self._obj.destroy_synchronous()
        except Exception:
            log.exception("closing the raft node")
