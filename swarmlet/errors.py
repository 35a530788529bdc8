"""The one error vocabulary of swarmlet.

Validation, the store, the control API and the daemon raise these; none of
them knows about gRPC. The API edge (swarmlet/rpc.py) maps each kind to a
gRPC status code once, and maps status codes back to these kinds for callers
of other nodes' APIs. A message is written for the user: it names what is
wrong and, where there is one, the way out.
"""

from __future__ import annotations


class SwarmletError(Exception):
    """Base of every error a user or a caller may see."""


class Invalid(SwarmletError, ValueError):
    """The input itself is wrong (a bad flag, spec, name, token or file):
    retrying the same input can never work."""


class NotFound(SwarmletError, LookupError):
    """A referenced object (service, node, network, task...) does not exist."""


class AlreadyExists(SwarmletError):
    """An object with this name or id exists already."""


class FailedPrecondition(SwarmletError):
    """The input is well formed but the cluster is not in a state that allows
    it (a node that is not down, a network in use, a spec no node can run)."""


class Unavailable(SwarmletError):
    """The operation could not be done now (no leader, no quorum, a node out
    of reach): the same call may succeed later. `retry` is False when trying
    again soon cannot help until an operator acts (the managers lost quorum):
    clients then report at once instead of retrying."""

    def __init__(self, message: str = "", retry: bool = True) -> None:
        super().__init__(message)
        self.retry = retry


class OutcomeUnknown(Unavailable):
    """A write was handed to Raft but no answer says whether it was applied
    (the commit took too long, the leader changed or quorum was lost after it
    was sent): it MAY HAVE BEEN APPLIED. Its message says so. Retrying the
    same request with the same request id is safe (applied at most once);
    a new request is not (issue 14)."""


class Conflict(SwarmletError):
    """Someone else changed the object between read and write (optimistic
    concurrency): read again and retry."""


class ResourceExhausted(Unavailable):
    """Too many requests from one source (a rate limit): the same call may
    succeed after a pause."""


class PermissionDenied(SwarmletError):
    """The caller is authenticated but not allowed to do this (a worker
    calling a manager-only API, a removed node)."""


class Unauthenticated(SwarmletError):
    """The caller proved no identity (no or a bad certificate or token)."""


class Internal(SwarmletError):
    """A bug or an unexpected failure inside swarmlet."""
