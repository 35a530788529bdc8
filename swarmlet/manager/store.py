"""The replicated store: a manager's handle on Raft (pysyncobj) and the state
machine under it (statemachine.py).

Every change is one `StoreBatch` (serialized protobuf bytes) appended to the Raft
log and applied by `state.apply_batch` on every manager. Readers get an
immutable snapshot (copy-on-write), so they never lock against the tick thread.

Traps of pysyncobj handled here and in statemachine.py (LIBRARIES.md):
- its port unpickles what arrives: always encrypted (Fernet keys derived
  from the cluster's Raft secret, rafttransport.RaftKeyring), with frames and
  unauthenticated connections capped (rafttransport.py);
- its files are pickles in the clear: ours are encrypted with the manager's
  data key (raftlog.py, swarmlet/atrest.py);
- it never fsyncs: raftnode.DurableSyncObj keeps journal, term and snapshot
  in fsync'd, checksummed files (and refuses to start on damaged ones);
- a replicated method that raises wedges the node: `apply_batch` never raises;
- a sync call from the tick thread deadlocks: we propose with a callback and
  wait on an Event from the caller's thread;
- a timed-out proposal may still apply later: batches carry a request id and
  the state machine ignores an id it has already applied.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

from pysyncobj import FAIL_REASON, SyncObjConf

from swarmlet import errors, metrics
from swarmlet.api import store_pb2 as spb
from swarmlet.atrest import DataKey
from swarmlet.compat import restore_inet_ntop
from swarmlet.core import changes as ch
from swarmlet.core import state as st
from swarmlet.core.cluster import majority
from swarmlet.manager.events import DEFAULT_HISTORY, EventLog
from swarmlet.manager.statemachine import StateMachine
from swarmlet.manager.timings import RaftTimings

restore_inet_ntop()  # pysyncobj breaks socket.inet_ntop on import (see compat.py)

from swarmlet.manager.raftnode import DurableSyncObj  # noqa: E402  (after restore_inet_ntop, like pysyncobj)
from swarmlet.manager.rafttransport import RaftKeyring  # noqa: E402

log = logging.getLogger(__name__)


class StoreError(errors.Unavailable):
    """A proposal was not committed; `retryable` tells whether to try again."""

    def __init__(self, message: str, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


class NotLeader(StoreError):
    """No leader took the write: it was not applied."""


class OutcomeUnknown(errors.OutcomeUnknown, StoreError):
    """The write was handed to Raft but whether it commits is unknown (the
    commit took too long, the leader changed or quorum was lost after it was
    sent): it may have been applied, or may still be. A retry with the same
    request id is applied at most once."""

    def __init__(self, why: str) -> None:
        StoreError.__init__(self, f"{why}; the write may have been applied (its outcome is unknown)", retryable=True)


class ConflictError(errors.Conflict, StoreError):
    """Committed, but a precondition of the batch failed (nothing applied)."""

    def __init__(self, message: str) -> None:
        StoreError.__init__(self, message, retryable=False)


class NameTaken(ConflictError):
    """Committed, but the batch would have given an object (a service,
    network, secret or config: state.UNIQUE_NAME_TABLES) a name another one
    of its kind holds (nothing applied)."""

    def __init__(self, kind: str, name: str) -> None:
        super().__init__(f"a {kind} named {name!r} already exists")
        self.kind = kind
        self.name = name


class QuorumLost(StoreError):
    """Fewer than a majority of the managers are reachable: nothing can be
    committed until `missing` more of them come back (or the cluster is
    recovered with `init --force-new-cluster`)."""

    def __init__(self, reachable: int, members: int) -> None:
        self.reachable = reachable
        self.members = members
        self.missing = members // 2 + 1 - reachable
        super().__init__(
            f"the swarm has lost quorum: {reachable} of {members} managers reachable, "
            f"{self.missing} more needed for a majority. Bring the missing managers back, or recover with "
            "'swarmlet init --force-new-cluster' on a surviving manager",
            retryable=True,
        )


def check_result(result: spb.StoreResult) -> None:
    """Raise NameTaken or ConflictError for a committed batch whose
    precondition failed (nothing of it was applied)."""
    if result.ok:
        return
    if result.taken_name:
        raise NameTaken(st.kind_word(result.taken_kind), result.taken_name)
    raise ConflictError(result.error)


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
        event_history: int = DEFAULT_HISTORY,
        *,
        data_key: DataKey,
        raft_secret_epoch: int = 0,
    ) -> None:
        self.self_addr = self_addr
        t = timings or RaftTimings()
        t.validate()
        self.timings = t
        # Membership changes on this manager, one at a time (pysyncobj's own
        # one-change guard is dead code).
        self._membership_lock = threading.Lock()
        raft_dir = os.path.join(state_dir, "raft")
        os.makedirs(raft_dir, mode=0o700, exist_ok=True)
        os.chmod(raft_dir, 0o700)  # journal and dump are pickles: root only
        self._cond = threading.Condition()
        self._version = 0
        self._leader_since: float | None = None
        self._ready_term: int | None = None  # see ensure_leader_ready
        self._readying: threading.Thread | None = None  # see leader_ready
        # The event stream's history (issue 16), fed by the state machine.
        self.events = EventLog(event_history)
        self._sm = StateMachine(self._changed, self.events)
        # Raises errors.Invalid for a secret shorter than 32 bytes.
        self.keyring = RaftKeyring(raft_secret, raft_secret_epoch)
        conf = SyncObjConf(
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
            logCompactionMinEntries=t.compaction_min_entries,
            logCompactionMinTime=t.compaction_min_time,
            bindAddress=bind_addr or self_addr,
            onStateChanged=self._state_changed,
            # A command submitted while no leader is known fails at once instead
            # of queueing (we wait for an election ourselves, with a deadline).
            commandsWaitLeader=False,
        )
        # Journal, term file and snapshot: fsync'd, checksummed, encrypted
        # files in raft_dir (raftnode.py); raises raftlog.RaftStateError if
        # they are damaged or do not decrypt with data_key.
        self._obj = DurableSyncObj(self_addr, partners, conf, [self._sm], raft_dir, data_key, self.keyring)

    # ---- reads ----
    def snapshot(self) -> st.Snapshot:
        """The latest applied state. Treat it as read-only."""
        return self._sm.snapshot

    @property
    def version(self) -> int:
        return self._sm.snapshot.version

    def changes_since(self, version: int, upto: int) -> ch.Changes:
        """What the batches after `version` up to `upto` wrote (see
        statemachine.StateMachine.changes_since)."""
        return self._sm.changes_since(version, upto)

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

    def ensure_leader_ready(self, timeout: float = 5.0) -> bool:
        """True if this manager leads AND has applied every entry committed
        before its term began; the first call of a term commits a barrier of
        the term to make sure (later calls answer at once). A new leader's
        log holds every committed entry, but it applies them only as it
        learns they are committed: until then its snapshot lags, and acting
        on it would plan rounds and judge agents against an old state (issue
        14: a leader whose state was behind refused every agent as "not a
        member"). The leader loop and the dispatcher wait for this."""
        if not self.is_leader():
            return False
        term = self._obj._getTerm()
        if self._ready_term == term:
            return True
        try:
            self.barrier(timeout)
        except StoreError:
            return False
        # Still the leader of the same term: it led throughout, so the
        # barrier was its own entry, applied after everything before it.
        if self.is_leader() and self._obj._getTerm() == term:
            self._ready_term = term
            return True
        return False

    def leader_ready(self) -> bool:
        """ensure_leader_ready's answer without waiting, for callers that must
        not block (the dispatcher's event loop): a leader whose term is not
        known ready yet answers False and has the term's barrier committed on
        a thread of its own (the leader loop usually got there first)."""
        if not self.is_leader():
            return False
        if self._ready_term == self._obj._getTerm():
            return True
        with self._cond:
            if self._readying is None or not self._readying.is_alive():
                self._readying = threading.Thread(target=self.ensure_leader_ready, name="leader-ready", daemon=True)
                self._readying.start()
        return False

    def wait_leader(self, timeout: float) -> bool:
        """Block until this manager leads, at most `timeout` seconds; True if
        it does. Woken by pysyncobj's state-change callback, not by polling."""
        with self._cond:
            return self._cond.wait_for(self.is_leader, timeout)

    def leader_addr(self) -> str | None:
        leader = self._obj._getLeader()
        return None if leader is None else str(leader)

    def is_ready(self) -> bool:
        return bool(self._obj.isReady())

    def members(self) -> list[str]:
        """Raft addresses of every voting member, this one included, as this
        manager currently sees the membership."""
        return sorted([self.self_addr] + [str(n.address) for n in self._obj.otherNodes])

    def reachable(self) -> set[str]:
        """Members this manager has a live Raft connection to (itself included)."""
        out = {self.self_addr}
        for n in self._obj.otherNodes:
            if self._obj.isNodeConnected(n):
                out.add(str(n.address))
        return out

    def quorum_view(self) -> tuple[int, int]:
        """(reachable members, members) from this manager's connections."""
        members = len(self._obj.otherNodes) + 1
        return len(self.reachable()), members

    def wait_writable(self, timeout: float) -> None:
        """Return once a leader is known and a majority is reachable, else raise
        QuorumLost (a majority is not reachable) or NotLeader (an election is
        still running). Waits at most `timeout`: long enough for an election,
        short enough that a write on a cluster without quorum fails fast."""
        deadline = time.monotonic() + timeout
        while True:
            reachable, members = self.quorum_view()
            if self.leader_addr() is not None and reachable >= majority(members):
                return
            if time.monotonic() >= deadline:
                if reachable < majority(members):
                    raise QuorumLost(reachable, members)
                raise NotLeader("no leader has been elected yet; try again")
            time.sleep(0.02)

    def election_window(self) -> float:
        """How long an election normally takes: the wait before declaring a
        write impossible."""
        return 2 * self.timings.raft_max_timeout + 0.5

    def status(self) -> dict[str, Any]:
        s = self._obj.getStatus()
        out: dict[str, Any] = {k: (str(v) if not isinstance(v, (int, float, bool, str, type(None))) else v) for k, v in s.items()}
        out["applied_entries"], out["applied_bytes"] = self._sm.applied_entries, self._sm.applied_bytes
        return out

    # ---- writes ----
    def propose(
        self, actions: list[spb.StoreAction], timeout: float = 5.0, request_id: str = "", recreate: bool = False
    ) -> spb.StoreResult:
        """Commit one batch. Raises NotLeader/StoreError if it was not
        committed (nothing applied), OutcomeUnknown if it may have been,
        ConflictError (NameTaken) if it was committed but a precondition
        failed (then nothing of it was applied).

        `request_id` is a client's id for the write (control API requests
        carry one): the state machine applies a batch with an id it already
        applied at most once and answers it with the first result, so a
        client may retry a write whose outcome it does not know. The
        leader's own rounds and status reports carry none (they are never
        retried as such) and so do not crowd clients' ids out of the bounded
        table of remembered ids.

        `recreate`: the batch re-seeds a fresh Raft with existing objects
        (restore, force-new-cluster); their names are not checked again."""
        batch = spb.StoreBatch(actions=actions, timestamp=time.time(), request_id=request_id, recreate=recreate)
        with metrics.RAFT_COMMIT.time():
            return self._submit(batch, timeout)

    def propose_many(self, batches: list[list[spb.StoreAction]], timeout: float = 10.0) -> list[StoreError | None]:
        """Commit several batches, each its own Raft entry, appended together
        (pipelined) rather than one commit round trip after the other. Returns,
        per batch, None if it was committed and applied, else its error."""
        if len(batches) == 1:
            try:
                self.propose(batches[0], timeout)
                return [None]
            except StoreError as e:
                return [e]
        start = time.monotonic()
        self.wait_writable(min(timeout, self.election_window()))
        dones: list[tuple[threading.Event, dict[str, Any]]] = []
        for actions in batches:
            batch = spb.StoreBatch(actions=actions, timestamp=time.time(), request_id="")
            done = threading.Event()
            out: dict[str, Any] = {}

            def callback(result: Any, err: Any, done: threading.Event = done, out: dict[str, Any] = out) -> None:
                out["result"], out["err"] = result, err
                done.set()

            self._sm.apply(batch.SerializeToString(), callback=callback)
            dones.append((done, out))
        results: list[StoreError | None] = []
        for done, out in dones:
            left = max(0.0, timeout - (time.monotonic() - start))
            if not done.wait(left):
                results.append(OutcomeUnknown(f"the write was not committed within {timeout:.1f}s"))
                continue
            try:
                self._result(out["err"], out["result"])
                results.append(None)
            except StoreError as e:
                results.append(e)
        return results

    def applied_result(self, request_id: str) -> spb.StoreResult | None:
        """The result of the applied write that carried `request_id`, or None
        if none did (as far as this manager has applied: read after a barrier)."""
        return self._sm.result_of(request_id) if request_id else None

    def barrier(self, timeout: float = 5.0) -> int:
        """Commit a no-op through the leader and wait until it is applied here.
        Afterwards this manager's snapshot holds every write acknowledged before
        the call (a linearizable read point). Returns the store version."""
        return self._submit(spb.StoreBatch(timestamp=0.0), timeout).version

    def _submit(self, batch: spb.StoreBatch, timeout: float) -> spb.StoreResult:
        start = time.monotonic()
        self.wait_writable(min(timeout, self.election_window()))
        timeout = max(0.5, timeout - (time.monotonic() - start))
        data = batch.SerializeToString()
        done = threading.Event()
        out: dict[str, Any] = {}

        def callback(result: Any, err: Any) -> None:
            out["result"], out["err"] = result, err
            done.set()

        self._sm.apply(data, callback=callback)
        # From here on the write may be in a leader's log: a failure that is
        # not a clear refusal is OutcomeUnknown (issue 14: writes that were
        # applied were reported as failed).
        # Wait for the commit, but give up early once a majority has been out of
        # reach for a whole election window: without quorum the write cannot
        # commit, and the caller should hear so now rather than at the timeout.
        deadline = time.monotonic() + timeout
        lost_since: float | None = None
        while not done.wait(0.1):
            now = time.monotonic()
            reachable, members = self.quorum_view()
            if reachable < majority(members):
                lost_since = lost_since or now
                if now - lost_since >= self.election_window():
                    raise OutcomeUnknown(str(QuorumLost(reachable, members)))
            else:
                lost_since = None
            if now >= deadline:
                if reachable < majority(members):
                    raise OutcomeUnknown(str(QuorumLost(reachable, members)))
                raise OutcomeUnknown(f"the write was not committed within {timeout:.1f}s")
        return self._result(out["err"], out["result"])

    @staticmethod
    def _result(err: int, raw: Any) -> spb.StoreResult:
        """The outcome of a proposal from pysyncobj's callback."""
        if err == FAIL_REASON.SUCCESS:
            result = spb.StoreResult.FromString(raw)
            check_result(result)
            return result
        if err in (FAIL_REASON.MISSING_LEADER, FAIL_REASON.NOT_LEADER):
            # Refused before any log held it (no leader known; the manager it
            # was forwarded to no longer leads).
            raise NotLeader(f"no leader accepted the write (reason {err}); it was not applied")
        if err == FAIL_REASON.DISCARDED:
            raise StoreError("a new leader replaced the write in the log before it committed; it was not applied")
        if err in (FAIL_REASON.LEADER_CHANGED, FAIL_REASON.UNKNOWN_OUTCOME):
            # Forwarded to a leader that may have appended it before losing
            # leadership (or answered too late to follow): a later leader may
            # still commit it.
            raise OutcomeUnknown(f"the leader changed while the write was in flight (reason {err})")
        raise StoreError(f"the write was refused (reason {err}); it was not applied")

    # ---- membership (leader or forwarded; one change at a time) ----
    def change_membership(self, op: str, addr: str, timeout: float = 10.0, wait_commit: bool = True) -> bool:
        """Add ("add") or remove ("remove") a voting member and wait until the
        change is committed. The caller serializes changes across managers
        (controlapi's marker on the Cluster object); this lock serializes them
        on this manager. A barrier first makes sure any change a previous leader
        left in the log is committed before the next one is appended.

        Adding a member to a cluster of one or two cannot commit until the new
        member runs (the new majority includes it): with wait_commit=False the
        call returns once the change is in this manager's log, and the result
        is False when it was not committed yet (True when it was)."""
        if op not in ("add", "remove"):
            raise ValueError(f"unknown membership operation {op!r}")
        with self._membership_lock:
            if op == "add" and addr in self.members():
                return True
            if op == "remove" and addr not in self.members():
                return True
            deadline = time.monotonic() + timeout
            while True:
                self.barrier(max(0.5, deadline - time.monotonic()))
                if (op == "add") == (addr in self.members()):
                    return True  # done meanwhile (by the membership repair, say)
                err = self._change_once(op, addr, deadline, wait_commit, timeout)
                if err is None:
                    return False  # appended, not committed yet (wait_commit=False)
                if err == FAIL_REASON.SUCCESS or (op == "add") == (addr in self.members()):
                    return True
                if err != FAIL_REASON.REQUEST_DENIED or time.monotonic() > deadline:
                    raise StoreError(f"the membership change ({op} {addr}) failed (reason {err})")
                # REQUEST_DENIED: another change is in flight (pysyncobj takes
                # one at a time; the leader's membership repair may be
                # finishing one): wait for it to commit and try again.
                time.sleep(0.1)

    def _change_once(self, op: str, addr: str, deadline: float, wait_commit: bool, timeout: float) -> int | None:
        """Hand one membership change to pysyncobj; its outcome code, or None
        when wait_commit is False and it is in this manager's log uncommitted."""
        done = threading.Event()
        out: dict[str, Any] = {}

        def callback(result: Any, err: Any) -> None:
            out["err"] = err
            done.set()

        if op == "add":
            self._obj.addNodeToCluster(addr, callback=callback)
        else:
            self._obj.removeNodeFromCluster(addr, callback=callback)
        while not done.wait(0.02):
            if not wait_commit and (op == "add") == (addr in self.members()):
                return None  # appended here; commits once the new member answers
            if time.monotonic() > deadline:
                raise StoreError(f"the membership change ({op} {addr}) was not committed within {timeout:.0f}s")
        return int(out["err"])

    def transfer_leadership(self, timeout: float = 5.0) -> str | None:
        """Hand leadership to the most caught-up follower (needed before the
        leader can be removed). Returns the new leader's address."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.is_leader():
                leader = self.leader_addr()
                if leader is not None and leader != self.self_addr:
                    return leader
            else:
                self._obj.transferLeadership()
            time.sleep(0.1)
        raise StoreError("leadership could not be transferred (no caught-up follower?)")

    def force_compaction(self) -> None:
        """Snapshot and truncate the journal now (tests, backups)."""
        self._obj.forceLogCompaction()

    # ---- for the key keeper (Raft secret rotation) ----
    def commit_index(self) -> int:
        return int(self._obj.raftCommitIndex)

    def members_behind(self, index: int) -> list[str]:
        """On the leader: the other members whose log does not reach `index`
        yet (match index below it, or not connected)."""
        status = self._obj.getStatus()
        behind = []
        for n in self._obj.otherNodes:
            match = int(status.get(f"match_idx_server_{n.id}", 0))
            if match < index or not self._obj.isNodeConnected(n):
                behind.append(str(n.address))
        return sorted(behind)

    def log_length(self) -> int:
        return int(self._obj.getStatus()["log_len"])

    def state_digest(self) -> str:
        """sha256 of the applied state: every object's deterministic bytes and
        the version. Two managers that applied the same log agree on it."""
        return st.state_digest(self.snapshot())

    def close(self) -> None:
        try:
            self._obj.destroy_synchronous()
        except Exception:
            log.exception("closing the raft node")
        self.events.close()
