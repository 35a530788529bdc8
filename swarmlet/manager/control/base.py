"""What every resource of the control API shares: linearizable reads and
single-batch writes on the store, with store failures turned into the error
vocabulary users see."""

from __future__ import annotations

from swarmlet import errors
from swarmlet.api import store_pb2 as spb
from swarmlet.core import state as st
from swarmlet.manager.store import ConflictError, NotLeader, QuorumLost, Store, StoreError


def user_error(e: StoreError) -> errors.SwarmletError:
    """The user-facing error for a write or read the store could not do."""
    if isinstance(e, ConflictError):
        return errors.Conflict(f"concurrent change, try again: {e}")
    if isinstance(e, QuorumLost):
        return errors.Unavailable(str(e))
    if isinstance(e, NotLeader):
        return errors.Unavailable(f"the swarm has no leader right now: {e}")
    return errors.Unavailable(str(e))


class StoreAccess:
    """A control API resource's handle on the store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def snap(self) -> st.Snapshot:
        """A snapshot holding every write acknowledged before this call, on
        any manager: a no-op is committed through the leader first (a read on
        a manager that cannot reach a majority fails, as in swarm)."""
        try:
            self.store.barrier()
        except StoreError as e:
            raise user_error(e) from None
        return self.store.snapshot()

    def propose(self, actions: list[spb.StoreAction], timeout: float = 5.0) -> None:
        """Commit one batch. On a follower the store forwards it to the leader
        (pysyncobj's forwarding over the encrypted Raft transport) and returns
        once it is committed AND applied here, so the reply reads its own write."""
        try:
            self.store.propose(actions, timeout=timeout)
        except StoreError as e:
            raise user_error(e) from None

    def local(self) -> st.Snapshot:
        """This manager's applied state, without a barrier (for callers that
        must not wait on a commit, e.g. right after a membership change)."""
        return self.store.snapshot()
