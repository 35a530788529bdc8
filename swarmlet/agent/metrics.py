"""The agent's measurements (issue 16): engine calls timed where the
executor makes them, by wrapping the runtime it is given, so neither the
executor nor the Docker adapter carries metrics code."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any, TypeVar

from swarmlet import metrics

R = TypeVar("R")

# The runtime methods that change containers: what "container operation
# latency" means to an operator.
TIMED_OPERATIONS = ("create", "start", "stop", "remove")


def _timed(operation: str, call: Callable[..., Any]) -> Callable[..., Any]:
    hist = metrics.CONTAINER_OPERATION.labels(operation)
    errors = metrics.CONTAINER_OPERATION_ERRORS.labels(operation)

    @functools.wraps(call)
    def timed(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return call(*args, **kwargs)
        except Exception:
            errors.inc()
            raise
        finally:
            hist.observe(time.perf_counter() - start)

    return timed


def timed_runtime(runtime: R) -> R:
    """`runtime` with its container operations timed into
    swarmlet_agent_container_operation_seconds{operation}. Every other method
    is the runtime's own, whatever runtime it is."""
    for op in TIMED_OPERATIONS:
        setattr(runtime, op, _timed(op, getattr(runtime, op)))
    return runtime
