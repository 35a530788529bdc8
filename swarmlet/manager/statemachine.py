"""The replicated state machine under the store: pysyncobj applies every
committed Raft entry here, on every manager, on its tick thread.

An entry is a serialized `StoreBatch`; `state.apply_batch` turns it into the
next immutable snapshot. Kept apart from the Raft handle (store.py) so that
what is replicated and how it is snapshotted read in one place.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any

from google.protobuf.message import Message
from pysyncobj import SyncObjConsumer, replicated

from swarmlet import metrics
from swarmlet.api import store_pb2 as spb
from swarmlet.compat import restore_inet_ntop
from swarmlet.core import changes as ch
from swarmlet.core import state as st
from swarmlet.manager.events import EventLog

restore_inet_ntop()  # pysyncobj breaks socket.inet_ntop on import (see compat.py)

log = logging.getLogger(__name__)

# Bound on request ids remembered for idempotent retries. Only clients' writes
# carry one (store.propose), so this is the last 4096 client writes.
MAX_REQUEST_IDS = 4096
# Bound on the per-version record of changes (readers further behind than
# this plan from scratch).
MAX_CHANGE_RECORDS = 4096

# Version of the snapshot layout `serialize` writes (pysyncobj pickles the
# dict; everything inside it is plain bytes, ints and strings).
SNAPSHOT_FORMAT = 1


class StateMachine(SyncObjConsumer):  # type: ignore[misc]  # pysyncobj has no type hints
    """The replicated part. Attributes set before SyncObjConsumer.__init__ are
    not serialized by pysyncobj; we serialize ourselves anyway (protobuf bytes,
    not pickled objects)."""

    def __init__(self, on_change: Callable[[st.Snapshot], None], events: EventLog | None = None) -> None:
        self._on_change = on_change
        self._events = events  # fed every applied batch (issue 16: the event stream)
        self._snap = st.Snapshot()
        self._applied_ids: OrderedDict[str, spb.StoreResult] = OrderedDict()
        # (version, what that version's batch wrote), oldest first; applied
        # on the tick thread, read by the leader loop and the dispatcher.
        self._changes: deque[tuple[int, ch.Changes]] = deque(maxlen=MAX_CHANGE_RECORDS)
        self._changes_lock = threading.Lock()
        # Entries applied and their bytes since this process started: the
        # replicated payload rate (issue 15's benchmark reads it from Info).
        self.applied_entries = 0
        self.applied_bytes = 0
        super().__init__()

    @property
    def snapshot(self) -> st.Snapshot:
        """The latest applied state (immutable: every apply makes a new one)."""
        return self._snap

    def result_of(self, request_id: str) -> spb.StoreResult | None:
        """The result of the applied batch that carried `request_id`, if it
        is still remembered (the last MAX_REQUEST_IDS client writes)."""
        return self._applied_ids.get(request_id)

    @replicated  # type: ignore[untyped-decorator]
    def apply(self, data: bytes) -> bytes:
        # Runs on the tick thread of every manager. Must never raise: pysyncobj
        # would re-apply the entry on every tick and wedge the node.
        self.applied_entries += 1
        self.applied_bytes += len(data)
        try:
            batch = spb.StoreBatch.FromString(data)
        except Exception as e:  # a corrupt entry is refused, not fatal
            return spb.StoreResult(ok=False, error=f"undecodable batch: {e}").SerializeToString()
        if not batch.actions and not batch.request_id:
            # A read barrier: committing it proves leadership and that every
            # earlier entry is applied here. It changes nothing, so it does not
            # bump the version (a read must not look like a write).
            return spb.StoreResult(ok=True, version=self._snap.version).SerializeToString()
        if batch.request_id and batch.request_id in self._applied_ids:
            return self._applied_ids[batch.request_id].SerializeToString()
        new = self._snap.shallow_copy()
        started = time.perf_counter()
        try:
            result = st.apply_batch(new, batch)
        except Exception as e:  # defensive: apply_batch is written not to raise
            log.exception("apply_batch raised")
            result = spb.StoreResult(ok=False, error=f"internal error: {e}", version=self._snap.version)
        metrics.RAFT_APPLY.observe(time.perf_counter() - started)
        if result.ok:
            with self._changes_lock:
                self._changes.append((new.version, ch.of_batch(batch)))
            if self._events is not None:
                self._events.feed(self._snap, new, batch)
            self._snap = new
        if batch.request_id:
            self._applied_ids[batch.request_id] = result
            while len(self._applied_ids) > MAX_REQUEST_IDS:
                self._applied_ids.popitem(last=False)
        if result.ok:
            self._notify()
        return result.SerializeToString()

    def changes_since(self, version: int, upto: int) -> ch.Changes:
        """Everything written after `version` up to version `upto` (that of a
        snapshot the caller holds); EVERYTHING when the record does not reach
        back that far or forward that far (a snapshot was installed since)."""
        if version == upto:
            return ch.NOTHING
        with self._changes_lock:
            if version > upto or not self._changes or self._changes[0][0] > version + 1 or self._changes[-1][0] < upto:
                return ch.EVERYTHING
            parts = [c for v, c in self._changes if version < v <= upto]
        if len(parts) != upto - version:
            return ch.EVERYTHING
        return ch.union(parts)

    def _notify(self) -> None:
        try:
            self._on_change(self._snap)
        except Exception:
            log.exception("store change callback failed")

    # pysyncobj calls these two to write and load its full dump.
    def _serialize(self) -> dict[str, Any]:
        snap = self._snap
        return {
            "format": SNAPSHOT_FORMAT,
            "version": snap.version,
            "tables": {
                table: {oid: obj.SerializeToString() for oid, obj in getattr(snap, table).items()} for table in st.TABLE_TYPES
            },
            "applied_ids": [(k, v.SerializeToString()) for k, v in self._applied_ids.items()],
        }

    def _deserialize(self, data: dict[str, Any]) -> None:
        snap = st.Snapshot(version=data["version"])
        for table, cls in st.TABLE_TYPES.items():
            raw_table: dict[str, bytes] = data["tables"].get(table, {})
            setattr(snap, table, {oid: _decode(cls, raw) for oid, raw in raw_table.items()})
        with self._changes_lock:
            self._changes.clear()  # what changed before the snapshot is unknown
            self._snap = snap
        self._applied_ids = OrderedDict((k, spb.StoreResult.FromString(v)) for k, v in data["applied_ids"])
        if self._events is not None:
            self._events.reset(snap.version)
        self._on_change(snap)


def _decode(cls: type[Message], raw: bytes) -> Message:
    return cls.FromString(raw)
