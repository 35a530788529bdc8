"""A pysyncobj Raft node that keeps what it acknowledges: `DurableSyncObj`.

pysyncobj 0.3.17 has no option for durability (../shared/LIBRARIES.md), so
this subclass replaces its storage with `raftlog`'s crash-safe files and
orders the few places where Raft needs disk before network:

1. Group commit. Entries are appended to the journal in memory while a tick
   runs; at the start of the next tick, before the leader counts matches for
   its commit index, one `sync()` (one write, one fdatasync) makes all of them
   durable. Under load every tick carries many entries, so the cost of a sync
   is shared; an idle tick costs nothing.
2. A follower's acknowledgement (pysyncobj's `next_node_idx` message) is held
   while the journal has entries not on disk, and sent right after that sync.
   The leader therefore never counts a copy that is not on its holder's disk.
3. The leader's own copy: `DurableJournal.setRaftCommitIndex`, which
   pysyncobj calls right before it applies newly committed entries, syncs
   first if the leader's journal is behind (only possible in the tick where a
   lone manager becomes leader).
4. Term and vote: written and fsync'd by `setCurrentTerm` before the vote or
   the message that carries the new term is sent.
5. Snapshots: our serializer writes and fsyncs the temporary file (pysyncobj
   renames it); the journal drops the entries it covers only after fsyncing
   the directory. A snapshot received from the leader is fsync'd before it is
   loaded, which is before pysyncobj clears the journal.
6. Snapshots sent to a follower (pysyncobj streams its dump file) travel in
   the clear inside the encrypted Raft transport, never as the file: each
   manager's file is encrypted with its own data key. `SealedSerializer`
   reads and decrypts the file for sending, and writes what it receives
   encrypted with this manager's key, in memory until then: no snapshot ever
   rests on disk in the clear.
7. Start-up: the files are read and checked before pysyncobj starts; a
   snapshot the journal does not continue, a damaged file, a missing term
   file: `RaftStateError`, and the manager does not start. A compaction cut
   short by a crash (snapshot renamed, journal not yet rewritten) is finished;
   pysyncobj's own files, left by an older swarmlet, are converted once
   (raftmigrate.py).
8. A failing disk at run time (full, I/O error): the node logs one CRITICAL
   line naming the file and stops taking part: its tick stops (no votes, no
   acknowledgements, no heartbeats) and `_isLeader()` is False from then on.
   To the others it looks like a hung manager: they drop its connections
   after connectionTimeout and elect a leader without it.

Internals of pysyncobj used here (checked by tests/unit/manager/test_raftnode.py
against the pinned version): the journal is the attribute `__raftLog` (we
provide it as a property, so pysyncobj's own MemoryJournal is discarded), and
acknowledgements go through the method `__sendNextNodeIdx`.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from pysyncobj import _RAFT_STATE, SyncObj, SyncObjConf, SyncObjConsumer
from pysyncobj.atomic_replace import atomicReplace
from pysyncobj.config import SERIALIZER_STATE
from pysyncobj.node import TCPNode
from pysyncobj.serializer import Serializer

from swarmlet.atrest import DataKey
from swarmlet.manager import raftlog, raftmigrate
from swarmlet.manager.raftlog import DurableJournal, Entry, RaftDiskError, RaftStateError
from swarmlet.manager.rafttransport import GuardedTransport, RaftKeyring

log = logging.getLogger(__name__)

_send_next_node_idx = SyncObj._SyncObj__sendNextNodeIdx


def _reconcile(journal: DurableJournal, snapshot: dict[str, Any] | None, snapshot_path: str) -> None:
    """Check that the journal continues the snapshot, and finish a compaction
    that a crash interrupted (the snapshot was saved, the journal still holds
    the entries it covers)."""
    entries: list[Entry] = journal[:]
    if snapshot is None:
        if entries and entries[0][1] > 1:
            raise RaftStateError(
                journal.path,
                f"starts at entry {entries[0][1]} but there is no snapshot {snapshot_path} to cover the entries before it",
            )
        return
    prev: Entry = snapshot["prev"]
    last: Entry = snapshot["last"]
    if not entries:
        return  # pysyncobj seeds the journal from the snapshot
    first = entries[0][1]
    if first > prev[1]:
        raise RaftStateError(
            snapshot_path, f"ends at entry {last[1]} but the journal starts at entry {first}: a newer snapshot is missing"
        )
    j = prev[1] - first
    if j + 1 < len(entries) and entries[j] == prev and entries[j + 1] == last:
        if j > 0:
            log.info("raft journal %s: dropping %d entries a snapshot covers (a compaction a crash interrupted)", journal.path, j)
            journal.deleteEntriesTo(j)
            journal.sync()
    # Otherwise the snapshot is newer than the journal (installed from the
    # leader just before a crash): pysyncobj replaces the journal by it.


class SealedSerializer(Serializer):  # type: ignore[misc]  # pysyncobj has no type hints
    """pysyncobj's Serializer for a file encrypted with this manager's data
    key: what it sends is the snapshot decrypted (`raftlog.encode_transfer`,
    carried by the encrypted transport), what it receives is kept in memory
    and written encrypted with this manager's key (`raftlog` file form)."""

    def __init__(self, file_name: str, batch: int, serializer: Any, deserializer: Any, key: DataKey) -> None:
        super().__init__(file_name, batch, False, serializer, deserializer, None)
        self._file = file_name
        self._batch = batch
        self._key = key
        self._outgoing: dict[Any, dict[str, Any]] = {}
        self._incoming: bytearray | None = None

    def checkSerializing(self) -> Any:
        status = super().checkSerializing()
        if status[0] == SERIALIZER_STATE.SUCCESS:
            self._outgoing = {}  # a new snapshot: transmissions start over
        return status

    def getTransmissionData(self, transmissionID: Any) -> Any:
        if self._Serializer__pid != 0:
            # As pysyncobj's own: a snapshot just written, whose compaction
            # checkSerializing has not done yet; send nothing this round.
            return None
        t = self._outgoing.get(transmissionID)
        if t is None:
            try:
                payload = raftlog.read_snapshot_file(self._file, self._key)
            except (OSError, RaftStateError):
                log.exception("snapshot for a follower: cannot read %s", self._file)
                return None
            t = self._outgoing[transmissionID] = {"data": raftlog.encode_transfer(payload), "sent": 0}
        first = t["sent"] == 0
        chunk = t["data"][t["sent"] : t["sent"] + self._batch]
        t["sent"] += len(chunk)
        last = len(chunk) == 0
        if last:
            self._outgoing.pop(transmissionID, None)
        return chunk, first, last

    def cancelTransmisstion(self, id: Any) -> None:
        self._outgoing.pop(id, None)
        super().cancelTransmisstion(id)

    def setTransmissionData(self, data: Any) -> bool:
        if data is None:
            return False
        chunk, first, last = data
        if first:
            self._incoming = bytearray()
        elif self._incoming is None:
            return False
        self._incoming += chunk
        if not last:
            return False
        received, self._incoming = bytes(self._incoming), None
        tmp = self._file + ".1.tmp"
        try:
            payload = raftlog.decode_snapshot(tmp, received, None)
            raftlog.write_snapshot_file(tmp, payload, self._key)
            atomicReplace(tmp, self._file)
        except (OSError, RaftStateError):
            log.exception("snapshot from the leader: cannot store it")
            return False
        return True


class DurableSyncObj(SyncObj):  # type: ignore[misc]  # pysyncobj has no type hints
    """SyncObj with `raftlog`'s files in `raft_dir`, encrypted with `key`
    (conf.journalFile, fullDumpFile, serializer and deserializer are set here),
    speaking over rafttransport's guarded transport with the keys of
    `keyring` (conf.password is not used: the key ring is the encryptor)."""

    def __init__(
        self,
        self_node: str,
        other_nodes: list[str],
        conf: SyncObjConf,
        consumers: list[SyncObjConsumer],
        raft_dir: str,
        key: DataKey,
        keyring: RaftKeyring,
        **kwargs: Any,
    ) -> None:
        # Attributes set before SyncObj.__init__ are invisible to its own
        # serialization (not that we use it: the serializer is ours).
        self._key = key
        self._keyring = keyring
        self._failure: RaftDiskError | None = None
        self._held_acks: list[tuple[Any, tuple[Any, ...], dict[str, Any]]] = []
        self._durable_consumers = list(consumers)
        self._snapshot_path = os.path.join(raft_dir, raftlog.SNAPSHOT_NAME)
        raftmigrate.migrate(raft_dir, key)  # files of a swarmlet from before raftlog, if any
        self._journal = DurableJournal(raft_dir, key)
        self._preloaded: tuple[tuple[int, int, int], dict[str, Any]] | None = None
        snapshot = None
        if os.path.exists(self._snapshot_path):
            snapshot = raftlog.read_snapshot_file(self._snapshot_path, key)
            if raftlog.snapshot_is_plaintext(self._snapshot_path):
                # Written before encryption at rest: replace it encrypted.
                tmp = self._snapshot_path + ".tmp"
                raftlog.write_snapshot_file(tmp, snapshot, key)
                os.rename(tmp, self._snapshot_path)
                raftlog.fsync_dir(raft_dir)
            self._preloaded = (self._file_key(self._snapshot_path), snapshot)
        _reconcile(self._journal, snapshot, self._snapshot_path)
        conf.journalFile = None  # pysyncobj builds a MemoryJournal; the property below hides it
        conf.fullDumpFile = self._snapshot_path
        conf.serializer = self._write_snapshot
        conf.deserializer = self._read_snapshot
        conf.useFork = False
        conf.password = None  # the key ring below encrypts (pysyncobj's own Fernet is never built)
        self._serializer = SealedSerializer(
            self._snapshot_path, conf.logCompactionBatchSize, self._write_snapshot, self._read_snapshot, key
        )
        super().__init__(self_node, other_nodes, conf=conf, consumers=consumers, transportClass=GuardedTransport, **kwargs)
        self._journal.sync_on_commit = self._isLeader

    # pysyncobj builds its Serializer in __init__ and keeps it in
    # self.__serializer: this property hands it ours instead.
    @property
    def _SyncObj__serializer(self) -> SealedSerializer:
        return self._serializer

    @_SyncObj__serializer.setter
    def _SyncObj__serializer(self, value: Any) -> None:
        pass

    @property
    def encryptor(self) -> RaftKeyring:
        # pysyncobj's transport encrypts whenever this is set; ours gives each
        # connection a cipher over the key ring.
        return self._keyring

    # pysyncobj assigns its journal to self.__raftLog in __init__ and reads it
    # from there: a property with that mangled name gives it ours instead.
    @property
    def _SyncObj__raftLog(self) -> DurableJournal:
        return self._journal

    @_SyncObj__raftLog.setter
    def _SyncObj__raftLog(self, value: Any) -> None:
        pass

    # ---- acknowledgements wait for the disk

    # A held acknowledgement is, to the leader, a message that took a little
    # longer: Raft is safe under any delay. One whose next index was left to
    # be computed is computed when sent, from a log that is then all on disk.
    def _SyncObj__sendNextNodeIdx(self, node: Any, *args: Any, **kwargs: Any) -> None:
        if self._failure is not None:
            return
        if self._journal.dirty or self._held_acks:
            self._held_acks.append((node, args, kwargs))
        else:
            _send_next_node_idx(self, node, *args, **kwargs)

    def _release_acks(self) -> None:
        held, self._held_acks = self._held_acks, []
        for node, args, kwargs in held:
            _send_next_node_idx(self, node, *args, **kwargs)

    def _onTick(self, timeToWait: float = 0.0) -> None:
        if self._failure is not None:
            time.sleep(timeToWait)  # stopped: see _fail
            return
        try:
            self._journal.sync()  # group commit: everything added since the last tick
            self._release_acks()
            super()._onTick(timeToWait)
        except RaftDiskError as e:
            self._fail(e)

    # ---- snapshots

    @staticmethod
    def _file_key(path: str) -> tuple[int, int, int]:
        st = os.stat(path)
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    def _write_snapshot(self, tmp_path: str, data: tuple[Entry, Entry, set[Any]]) -> None:
        # pysyncobj calls this on the tick thread with (last applied entry, the
        # one before, members); the consumers hold exactly that applied state.
        last, prev, cluster = data
        payload = {
            "last": tuple(last),
            "prev": tuple(prev),
            "cluster": sorted(str(n.id) for n in cluster),
            "consumers": [c._serialize() for c in self._durable_consumers],
        }
        try:
            raftlog.write_snapshot_file(tmp_path, payload, self._key)
        except OSError as e:
            # pysyncobj only logs a failed snapshot and retries on every tick.
            self._fail(RaftDiskError(tmp_path, e))
            raise

    def _read_snapshot(self, path: str) -> tuple[Entry, Entry, list[TCPNode]]:
        # pysyncobj calls this at start-up and after receiving a snapshot from
        # the leader (then the file was renamed without fsync): make it
        # durable before pysyncobj replaces the journal by it.
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            raftlog.fsync_dir(os.path.dirname(path))
        except OSError as e:
            self._fail(RaftDiskError(path, e))
            raise
        try:
            if self._preloaded is not None and self._preloaded[0] == self._file_key(path):
                payload = self._preloaded[1]
            else:
                payload = raftlog.read_snapshot_file(path, self._key)
            self._preloaded = None
            for consumer, state in zip(self._durable_consumers, payload["consumers"], strict=True):
                consumer._deserialize(state)
        except Exception as e:
            # pysyncobj would log this and go on with whatever state it has:
            # a voter without its state. Stop instead.
            self._fail(RaftDiskError(path, OSError(0, f"the snapshot cannot be loaded: {e}")))
            raise
        return payload["last"], payload["prev"], [TCPNode(a) for a in payload["cluster"]]

    # ---- a failed disk: stop taking part

    def _fail(self, err: RaftDiskError) -> None:
        if self._failure is not None:
            return
        self._failure = err
        log.critical("%s", err)
        was_leader = SyncObj._isLeader(self)
        self._held_acks = []
        # From now on _onTick does nothing. Not destroy(): that would detach
        # the consumers, and the store still reads its state machine.
        callback = self.conf.onStateChanged
        if was_leader and callback is not None:
            callback(_RAFT_STATE.LEADER, _RAFT_STATE.FOLLOWER)

    @property
    def failure(self) -> RaftDiskError | None:
        """Why this node stopped taking part in Raft, if it did."""
        return self._failure

    @property
    def journal(self) -> DurableJournal:
        return self._journal

    def _isLeader(self) -> bool:
        return self._failure is None and bool(super()._isLeader())

    def _getLeader(self) -> Any:
        return None if self._failure is not None else super()._getLeader()

    def getStatus(self) -> dict[str, Any]:
        status: dict[str, Any] = super().getStatus()
        if self._failure is not None:
            status["disk_error"] = str(self._failure)
        return status
