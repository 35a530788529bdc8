"""Writes whose outcome the client may not learn, retried safely (issue 14).

A write to the cluster can fail without a clear answer: the commit took too
long, the leader changed or lost quorum after it had the write, the daemon
died mid-call. The write may then have been applied, or may still be. The
control API's single-batch writes carry a `request_id` (which ones, and why
the others do not: docs/operations.md); the managers apply a request id at
most once and answer a retry as they answered the first attempt. So the CLI
gives each such call one id and retries it, with that id, while the failure
says trying again soon can help, for at most RETRY_WINDOW seconds. A write
without a request id is never retried.

Whether a failure may have left the write applied comes from the server's
trailing metadata (rpc.OUTCOME_KEY, set for errors.OutcomeUnknown), or from
the transport: a call that never connected did nothing; a call cut off after
it was sent, or past its deadline, may have done anything. Once any attempt
may have been applied, the final error says so even if a later attempt was
refused outright: a refusal of the retry says nothing about the first.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc

from swarmlet import rpc

# No new attempt starts later than this after the first one (seconds).
RETRY_WINDOW = 15.0
FIRST_DELAY = 0.2
MAX_DELAY = 2.0
MAYBE_APPLIED = "may have been applied"

Resp = TypeVar("Resp")


def idempotent(request: Any) -> bool:
    """True for a write request that carries a request id (control.proto)."""
    descriptor = getattr(request, "DESCRIPTOR", None)
    return descriptor is not None and "request_id" in descriptor.fields_by_name


@dataclass(frozen=True)
class Outcome:
    """What one failed attempt tells: may it have been applied, and is another
    attempt worth making."""

    maybe_applied: bool
    retry: bool


def judge(e: grpc.RpcError) -> Outcome:
    code = e.code() if isinstance(e, grpc.Call) else None
    details = (e.details() if isinstance(e, grpc.Call) else "") or ""
    metadata = dict(e.trailing_metadata() or ()) if isinstance(e, grpc.Call) else {}
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return Outcome(maybe_applied=True, retry=True)
    if code == grpc.StatusCode.UNAVAILABLE:
        if rpc.RETRY_KEY in metadata:  # the server's own verdict
            return Outcome(maybe_applied=metadata.get(rpc.OUTCOME_KEY) == "unknown", retry=metadata[rpc.RETRY_KEY] != "no")
        if "failed to connect" in details:
            return Outcome(maybe_applied=False, retry=False)  # never reached the daemon
        return Outcome(maybe_applied=True, retry=True)  # cut off after it was sent
    # Anything else is an answer (refused, invalid, conflict...) or the
    # caller's own cancellation: no retry. An answer means this attempt did
    # not apply; a cancellation leaves it unknown.
    return Outcome(maybe_applied=code == grpc.StatusCode.CANCELLED, retry=False)


class WriteFailed(Exception):
    """Every attempt failed; `error` is the last attempt's, `maybe_applied`
    whether any attempt may have been applied."""

    def __init__(self, error: grpc.RpcError, maybe_applied: bool, attempts: int) -> None:
        super().__init__(str(error))
        self.error = error
        self.maybe_applied = maybe_applied
        self.attempts = attempts


def call_write(
    method: Callable[..., Resp],
    request: Any,
    timeout: float | None,
    window: float | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    observe: Callable[[Outcome], None] | None = None,
) -> Resp:
    """Call the write RPC `method`, giving `request` a request id if it has
    none, and retry it with that id while that can help (see the module doc).
    Raises WriteFailed. `window` defaults to RETRY_WINDOW; `observe` sees
    the outcome of every failed attempt (the fault campaign counts them)."""
    window = RETRY_WINDOW if window is None else window
    if not request.request_id:
        request.request_id = uuid.uuid4().hex
    start = clock()
    delay = FIRST_DELAY
    maybe_applied = False
    attempts = 0
    while True:
        attempts += 1
        try:
            return method(request, timeout=timeout)
        except grpc.RpcError as e:
            outcome = judge(e)
            if observe is not None:
                observe(outcome)
            maybe_applied = maybe_applied or outcome.maybe_applied
            if not outcome.retry or clock() + delay - start > window:
                raise WriteFailed(e, maybe_applied, attempts) from None
        sleep(delay)
        delay = min(delay * 2, MAX_DELAY)


def maybe_applied_note(message: str) -> str:
    """`message` of a failed write that may have been applied, saying so once."""
    if MAYBE_APPLIED in message:
        return message
    return f"{message} (an earlier attempt {MAYBE_APPLIED}: check before running the command again)"
