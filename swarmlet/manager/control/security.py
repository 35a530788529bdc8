"""Secrets of the cluster (issue 13): autolock and the unlock key, the Raft
secret's rotation, and encrypted backups.

- `set_autolock` (`cluster update --autolock=true|false`) and `unlock_key`
  (`swarmlet unlock-key [--rotate]`) change the replicated cluster object;
  every manager's key keeper then wraps (or unwraps) its own data key.
- `rotate_raft_secret` (`swarmlet cluster raft-secret --rotate`, and after
  every demotion) replaces the Raft secret; the key keeper on the leader
  retires the previous one once every manager has the new one.
- `backup` encrypts with the unlock key when the swarm is autolocked, with a
  passphrase or backup key the user gives, or else with a new backup key
  returned (and shown) once.
"""

from __future__ import annotations

import logging
import secrets
import time

from swarmlet import atrest, errors
from swarmlet.api import control_pb2 as cpb
from swarmlet.api import objects_pb2 as pb
from swarmlet.core import lookup, trust
from swarmlet.core import state as st
from swarmlet.manager import backup as bk
from swarmlet.manager.control.base import StoreAccess
from swarmlet.manager.store import StoreError

log = logging.getLogger(__name__)

NOT_AUTOLOCKED = "no unlock key is set: the swarm is not autolocked (turn it on with 'swarmlet cluster update --autolock=true')"


class SecurityControl:
    def __init__(self, access: StoreAccess) -> None:
        self._a = access

    def _cluster(self) -> pb.Cluster:
        cluster = self._a.snap().cluster
        if cluster is None:
            raise errors.FailedPrecondition("the cluster is not initialised")
        return cluster

    def _put(self, new: pb.Cluster) -> pb.Cluster:
        self._a.propose([st.put(new)])
        cluster = self._a.local().cluster
        assert cluster is not None
        return cluster

    # ---- autolock ----
    def set_autolock(self, req: cpb.SetAutolockRequest) -> cpb.UnlockKeyResponse:
        cluster = self._cluster()
        new = pb.Cluster()
        new.CopyFrom(cluster)
        if req.autolock:
            new.spec.autolock = True
            new.unlock_key = cluster.unlock_key or atrest.new_unlock_key()
        else:
            new.spec.autolock = False
            new.unlock_key = ""
        if new != cluster:
            cluster = self._put(new)
            log.info("autolock turned %s", "on" if req.autolock else "off")
        return cpb.UnlockKeyResponse(unlock_key=cluster.unlock_key if cluster.spec.autolock else "")

    def unlock_key(self, req: cpb.UnlockKeyRequest) -> cpb.UnlockKeyResponse:
        cluster = self._cluster()
        if not cluster.spec.autolock or not cluster.unlock_key:
            raise errors.FailedPrecondition(NOT_AUTOLOCKED)
        if req.rotate:
            new = pb.Cluster()
            new.CopyFrom(cluster)
            new.unlock_key = atrest.new_unlock_key()
            cluster = self._put(new)
            log.info("unlock key rotated")
        return cpb.UnlockKeyResponse(unlock_key=cluster.unlock_key)

    # ---- the Raft secret ----
    def rotate(self, reason: str) -> pb.Cluster:
        """Replace the Raft secret now (versioned write: a concurrent change
        makes it fail with Conflict, nothing half-done)."""
        cluster = self._cluster()
        new = trust.with_rotated_raft_secret(cluster, secrets.token_bytes(32), reason, time.time())
        cluster = self._put(new)
        log.info("raft secret rotated to epoch %d (%s)", cluster.raft_secret_epoch, reason)
        return cluster

    def rotate_raft_secret(self, req: cpb.RotateRaftSecretRequest) -> cpb.RaftSecretStatus:
        self.rotate("rotated on demand")
        return self.raft_secret_status(cpb.RaftSecretStatusRequest())

    def raft_secret_status(self, req: cpb.RaftSecretStatusRequest) -> cpb.RaftSecretStatus:
        cluster = self._cluster()
        out = cpb.RaftSecretStatus(
            epoch=cluster.raft_secret_epoch,
            rotating=bool(cluster.raft_secret_previous),
            rotated_at=cluster.raft_secret_rotated_at,
            reason=cluster.raft_secret_rotation,
        )
        store = self._a.store
        if out.rotating and store.is_leader():
            out.waiting_for.extend(store.members_behind(store.commit_index()))
        return out

    def manager_removed(self, node: pb.Node) -> None:
        """After a demotion: the node held the Raft secret, which lets its
        holder talk to Raft. Rotate it (the demotion itself stands if this
        fails: the reason is logged and a rotation can be asked for)."""
        reason = f"manager {lookup.node_name(node)} demoted"
        for attempt in range(3):
            try:
                self.rotate(reason)
                return
            except (errors.Conflict, errors.Unavailable, StoreError) as e:
                log.warning("raft secret rotation after a demotion failed (attempt %d): %s", attempt + 1, e)
                time.sleep(0.2)
        log.error("raft secret NOT rotated after %s: run 'swarmlet cluster raft-secret --rotate'", reason)

    # ---- backups ----
    def backup(self, req: cpb.BackupRequest) -> cpb.BackupResponse:
        """A consistent copy of the replicated state (a read barrier first, so
        it holds every acknowledged write), encrypted."""
        snap = self._a.snap()
        cluster = snap.cluster
        generated = ""
        if req.key.strip():
            secret = req.key if atrest.key_kind(req.key) == atrest.KIND_PASSPHRASE else req.key.strip()
            kind = atrest.key_kind(secret)
        elif cluster is not None and cluster.spec.autolock and cluster.unlock_key:
            secret, kind = cluster.unlock_key, atrest.KIND_UNLOCK
        else:
            secret = generated = atrest.new_backup_key()
            kind = atrest.KIND_BACKUP
        return cpb.BackupResponse(data=bk.encode(snap, kind, secret), generated_key=generated, key_kind=kind)
