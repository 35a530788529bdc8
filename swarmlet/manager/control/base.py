"""What every resource of the control API shares: linearizable reads and
single-batch writes on the store, with store failures turned into the error
vocabulary users see."""

from __future__ import annotations

from swarmlet import errors
from swarmlet.api import store_pb2 as spb
from swarmlet.core import state as st
from swarmlet.manager.store import (
    ConflictError,
    NameTaken,
    NotLeader,
    OutcomeUnknown,
    QuorumLost,
    Store,
    StoreError,
    check_result,
)


def user_error(e: StoreError) -> errors.SwarmletError:
    """The user-facing error for a write or read the store could not do.
    Issue 14: a write that may have been applied says so (OutcomeUnknown);
    every other failure of a write means it was not applied."""
    if isinstance(e, NameTaken):
        return errors.AlreadyExists(str(e))
    if isinstance(e, ConflictError):
        return errors.Conflict(f"concurrent change, try again: {e}")
    if isinstance(e, OutcomeUnknown):
        return errors.OutcomeUnknown(str(e))
    if isinstance(e, QuorumLost):
        # Waiting will not help until an operator brings managers back.
        return errors.Unavailable(str(e), retry=False)
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

    def propose(self, actions: list[spb.StoreAction], timeout: float = 5.0, request_id: str = "") -> None:
        """Commit one batch. On a follower the store forwards it to the leader
        (pysyncobj's forwarding over the encrypted Raft transport) and returns
        once it is committed AND applied here, so the reply reads its own write.
        `request_id`: the client's id for the call (a retry is applied once)."""
        try:
            self.store.propose(actions, timeout=timeout, request_id=request_id)
        except StoreError as e:
            raise user_error(e) from None

    def replayed(self, request_id: str) -> bool:
        """True if a write with this client request id was applied already: the
        call is a retry of one whose answer the client never got, and is to be
        answered from the current state without writing again. If that write
        failed its precondition, its error is raised again. Call after snap()
        (its barrier makes every earlier attempt that committed visible here;
        one still in flight is applied at most once by the state machine)."""
        result = self.store.applied_result(request_id)
        if result is None:
            return False
        try:
            check_result(result)
        except StoreError as e:
            raise user_error(e) from None
        return True

    def local(self) -> st.Snapshot:
        """This manager's applied state, without a barrier (for callers that
        must not wait on a commit, e.g. right after a membership change)."""
        return self.store.snapshot()
