"""Keeps a manager's keys in step with the replicated cluster object (issue 13).

Every manager runs one `KeyKeeper` thread. On each store change (and once a
second) it:

1. sets the Raft transport's key ring from the cluster's Raft secret: the
   current one spoken, the previous one still accepted while a rotation
   completes; and saves the current one to the manager's (sealed) secret file.
   Epochs only move forward: a manager whose local state is older than the
   secret it fetched (below) keeps the newer one until its log catches up.
2. wraps its data key as the cluster says: by the unlock key when autolock is
   on (and again when the key is rotated), in the clear when it is off.
3. on the leader, completes a rotation: once every manager's Raft log holds
   the entry that rotated the secret (its match index), and a moment later
   (followers apply on the next append), or after `RETIRE_GRACE` whatever
   happens, the previous secret is retired and only the new one opens the
   Raft port. A demoted manager's old secret is then worthless.
4. on a manager that has partners but no live Raft connection for
   `CATCH_UP_AFTER` seconds (it was down during a rotation that has since
   completed), fetches the current secret from another manager's
   Dispatcher.RaftSecret over mutual TLS, which answers managers only.

Secrets never appear in its log lines.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from swarmlet.api import objects_pb2 as pb
from swarmlet.core import state as st
from swarmlet.core import trust
from swarmlet.manager.store import Store, StoreError

log = logging.getLogger(__name__)

RETIRE_GRACE = 60.0  # seconds after a rotation: the previous secret is retired even if a manager lags
SETTLE = 1.0  # after every manager holds the rotation entry, before retiring
CATCH_UP_AFTER = 3.0
CATCH_UP_EVERY = 5.0
PERIOD = 1.0


@dataclass(frozen=True)
class FetchedSecret:
    epoch: int
    current: bytes
    previous: bytes


SaveSecret = Callable[[bytes, int], None]
WrapKey = Callable[[str | None], None]
FetchSecret = Callable[[], FetchedSecret | None]


class KeyKeeper:
    def __init__(self, store: Store, save_secret: SaveSecret, wrap_key: WrapKey, fetch_secret: FetchSecret | None = None) -> None:
        self._store = store
        self._save_secret = save_secret
        self._wrap_key = wrap_key
        self._fetch = fetch_secret
        self._stop = threading.Event()
        self._wrapped_with: str | None | bool = False  # False: not written yet by this keeper
        self._saved = (store.keyring.epoch, store.keyring.secret)
        self._ring_previous: bytes | None = None  # None: not set from the cluster yet
        self._retire_target: tuple[int, int, float] | None = None  # (epoch, commit index, when all caught up)
        self._isolated_since: float | None = None
        self._last_fetch = 0.0
        self._thread = threading.Thread(target=self._run, name="key-keeper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        version = -1
        while not self._stop.is_set():
            try:
                self.sync(self._store.snapshot(), time.time())
            except Exception:
                log.exception("keeping the manager's keys in step failed; retrying")
            version = self._store.wait_for_change(version if version >= 0 else self._store.version, PERIOD)

    # ---- one pass (tests call it directly) ----
    def sync(self, snap: st.Snapshot, now: float) -> None:
        # First: a manager cut off by a rotation may hold no state at all yet.
        self._maybe_catch_up()
        cluster = snap.cluster
        if cluster is None:
            return
        self._sync_raft_keys(cluster)
        self._sync_wrap(cluster)
        if self._store.is_leader():
            self._maybe_retire(cluster, now)
        else:
            self._retire_target = None

    def _sync_raft_keys(self, cluster: pb.Cluster) -> None:
        ring = self._store.keyring
        if cluster.raft_secret_epoch < ring.epoch or len(cluster.raft_secret) < 32:
            return  # our log is behind what we already know: keep the newer key
        previous = cluster.raft_secret_previous
        if ring.epoch != cluster.raft_secret_epoch or ring.secret != cluster.raft_secret or self._ring_previous != previous:
            if ring.epoch != cluster.raft_secret_epoch:
                log.info(
                    "raft secret: now at epoch %d (%s)", cluster.raft_secret_epoch, cluster.raft_secret_rotation or "rotated"
                )
            ring.set(cluster.raft_secret_epoch, cluster.raft_secret, previous)
            self._ring_previous = previous
        self._persist(cluster.raft_secret_epoch, cluster.raft_secret)

    def _persist(self, epoch: int, secret: bytes) -> None:
        if self._saved != (epoch, secret):
            self._save_secret(secret, epoch)
            self._saved = (epoch, secret)

    def _sync_wrap(self, cluster: pb.Cluster) -> None:
        want = cluster.unlock_key if cluster.spec.autolock and cluster.unlock_key else None
        if want != self._wrapped_with:
            self._wrap_key(want)
            if self._wrapped_with is not False or want:
                log.info(
                    "data key %s", "wrapped by the swarm's unlock key (autolock)" if want else "stored unwrapped (autolock off)"
                )
            self._wrapped_with = want

    def _maybe_retire(self, cluster: pb.Cluster, now: float) -> None:
        if not cluster.raft_secret_previous:
            self._retire_target = None
            return
        epoch = cluster.raft_secret_epoch
        if self._retire_target is None or self._retire_target[0] != epoch:
            # Everything up to this index, the rotation entry included, is
            # committed here: a manager whose log reaches it has the new key.
            self._retire_target = (epoch, self._store.commit_index(), 0.0)
        _, index, caught_up_at = self._retire_target
        lagging = self._store.members_behind(index)
        if lagging:
            if now - cluster.raft_secret_rotated_at < RETIRE_GRACE:
                return
            log.warning(
                "raft secret: retiring the previous secret although %d manager(s) did not catch up within %.0fs "
                "(they fetch the new one from another manager when they return)",
                len(lagging),
                RETIRE_GRACE,
            )
        elif not caught_up_at:
            self._retire_target = (epoch, index, now)
            return
        elif now - caught_up_at < SETTLE:
            return
        try:
            self._store.propose([st.put(trust.with_raft_secret_retired(cluster))], timeout=5.0)
            log.info("raft secret: rotation to epoch %d complete, the previous secret is retired", epoch)
        except StoreError as e:
            log.debug("raft secret: retiring postponed: %s", e)

    def _maybe_catch_up(self) -> None:
        if self._fetch is None:
            return
        now = time.monotonic()
        reachable, members = self._store.quorum_view()
        if members <= 1 or reachable > 1:
            self._isolated_since = None
            return
        if self._isolated_since is None:
            self._isolated_since = now
            return
        if now - self._isolated_since < CATCH_UP_AFTER or now - self._last_fetch < CATCH_UP_EVERY:
            return
        self._last_fetch = now
        got = self._fetch()
        ring = self._store.keyring
        if got is None or got.epoch <= ring.epoch:
            return
        log.warning("raft secret: this manager missed rotations (epoch %d, now %d): took the current one", ring.epoch, got.epoch)
        ring.set(got.epoch, got.current, got.previous)
        self._ring_previous = got.previous
        self._persist(got.epoch, got.current)
