"""Polling with a deadline: the only way tests wait for something to happen.

A bare sleep either wastes time or is too short on a loaded CI machine; a
deadline with a message says what did not happen and what was seen instead.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_for(predicate: Callable[[], T], timeout: float, message: str, interval: float = 0.1) -> T:
    """Call predicate until it returns something truthy and return that value.

    Raises AssertionError naming `message` and the last value seen once
    `timeout` seconds have passed. Exceptions from predicate propagate: a
    predicate that can fail transiently should catch what it expects itself.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"timed out after {timeout:g}s waiting for: {message} (last value: {value!r})")
        time.sleep(min(interval, remaining))
