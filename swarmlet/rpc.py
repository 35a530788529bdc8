"""The gRPC edge: swarmlet's errors <-> gRPC status codes, in one place.

Servicers wrap their methods with `@edge` so that a `swarmlet.errors` error
raised anywhere below becomes the matching status; clients of another node's
API turn a failed call back into the same vocabulary with `from_rpc_error`.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import grpc

from swarmlet import errors

# Trailing metadata key on a follower dispatcher's refusal: the leader's api
# address, so an agent goes straight there instead of trying every manager.
LEADER_HINT_KEY = "swarmlet-leader"

# Trailing metadata on an UNAVAILABLE answer (issue 14), for clients that
# retry writes with a request id (cli/retry.py): OUTCOME_KEY = "unknown" when
# the write may have been applied (errors.OutcomeUnknown); RETRY_KEY = "no"
# when retrying soon cannot help (errors.Unavailable(retry=False)).
OUTCOME_KEY = "swarmlet-outcome"
RETRY_KEY = "swarmlet-retry"

_TO_CODE: tuple[tuple[type[errors.SwarmletError], grpc.StatusCode], ...] = (
    (errors.Invalid, grpc.StatusCode.INVALID_ARGUMENT),
    (errors.NotFound, grpc.StatusCode.NOT_FOUND),
    (errors.AlreadyExists, grpc.StatusCode.ALREADY_EXISTS),
    (errors.FailedPrecondition, grpc.StatusCode.FAILED_PRECONDITION),
    (errors.Conflict, grpc.StatusCode.ABORTED),
    (errors.ResourceExhausted, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (errors.Unavailable, grpc.StatusCode.UNAVAILABLE),
    (errors.PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
    (errors.Unauthenticated, grpc.StatusCode.UNAUTHENTICATED),
    (errors.Internal, grpc.StatusCode.INTERNAL),
)

_FROM_CODE: dict[grpc.StatusCode, type[errors.SwarmletError]] = {code: cls for cls, code in _TO_CODE}
_FROM_CODE[grpc.StatusCode.DEADLINE_EXCEEDED] = errors.Unavailable
_FROM_CODE[grpc.StatusCode.RESOURCE_EXHAUSTED] = errors.ResourceExhausted
_FROM_CODE[grpc.StatusCode.CANCELLED] = errors.Unavailable
_FROM_CODE[grpc.StatusCode.UNIMPLEMENTED] = errors.FailedPrecondition


def status_code(e: BaseException) -> grpc.StatusCode:
    """The status for an error: the first kind in its class hierarchy that has
    one (so a store error that is both a Conflict and a store failure answers
    as the more specific kind listed first in its bases)."""
    for klass in type(e).__mro__:
        for kind, code in _TO_CODE:
            if klass is kind:
                return code
    return grpc.StatusCode.UNKNOWN


def abort(context: grpc.ServicerContext, e: errors.SwarmletError, prefix: str = "") -> NoReturn:
    """End the call with the status for `e`; its message is `prefix` + the
    error's own (to say which step failed without changing the kind)."""
    if isinstance(e, errors.Unavailable):
        metadata = [(RETRY_KEY, "yes" if e.retry else "no")]
        if isinstance(e, errors.OutcomeUnknown):
            metadata.append((OUTCOME_KEY, "unknown"))
        # Keep what the servicer set already (a dispatcher's leader hint).
        context.set_trailing_metadata(tuple(context.trailing_metadata() or ()) + tuple(metadata))
    context.abort(status_code(e), f"{prefix}{e}")
    raise AssertionError("context.abort returned")  # it always raises


F = TypeVar("F", bound=Callable[..., Any])


def edge(method: F) -> F:
    """Decorate a servicer method (unary or streaming, `(self, request,
    context)`; plain or async for grpc.aio): a SwarmletError raised inside
    aborts the call with its status code and message; anything else
    propagates (gRPC answers UNKNOWN and the server logs it)."""
    if inspect.isasyncgenfunction(method):

        @functools.wraps(method)
        async def astream(self: Any, request: Any, context: Any) -> Any:
            try:
                async for item in method(self, request, context):
                    yield item
            except errors.SwarmletError as e:
                await context.abort(status_code(e), str(e))

        return astream  # type: ignore[return-value]

    if inspect.iscoroutinefunction(method):

        @functools.wraps(method)
        async def aunary(self: Any, request: Any, context: Any) -> Any:
            try:
                return await method(self, request, context)
            except errors.SwarmletError as e:
                await context.abort(status_code(e), str(e))

        return aunary  # type: ignore[return-value]

    if inspect.isgeneratorfunction(method):

        @functools.wraps(method)
        def stream(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
            try:
                yield from method(self, request, context)
            except errors.SwarmletError as e:
                abort(context, e)

        return stream  # type: ignore[return-value]

    @functools.wraps(method)
    def unary(self: Any, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            return method(self, request, context)
        except errors.SwarmletError as e:
            abort(context, e)

    return unary  # type: ignore[return-value]


def unreachable(e: grpc.RpcError) -> bool:
    """The call failed because the other node could not be reached (or
    answered that it cannot serve now), not because it refused the request."""
    return hasattr(e, "code") and e.code() == grpc.StatusCode.UNAVAILABLE


def from_rpc_error(e: grpc.RpcError, prefix: str = "") -> errors.SwarmletError:
    """The swarmlet error for a failed call to another node's API."""
    code = e.code() if hasattr(e, "code") else grpc.StatusCode.UNKNOWN
    details = e.details() if hasattr(e, "details") else str(e)
    kind = _FROM_CODE.get(code, errors.Internal)
    return kind(f"{prefix}{details}")
