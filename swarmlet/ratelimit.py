"""Token buckets per key (a source address, a node id), with bounded memory:
how the join port, the dispatcher and the DNS forwarder keep one noisy or
hostile peer from taking everyone's share (issue 13)."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict


class RateLimiter:
    """`burst` events at once per key, refilled at `rate` per second. The
    least recently seen keys are forgotten beyond `max_keys` (a flood of
    sources cannot grow the table without bound)."""

    def __init__(self, rate: float, burst: float, max_keys: int = 4096) -> None:
        self.rate = rate
        self.burst = burst
        self._max_keys = max_keys
        self._lock = threading.Lock()
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # key -> (tokens, at)

    def allow(self, key: str, now: float | None = None) -> bool:
        """Take one token for `key`; False when its bucket is empty."""
        return self.retry_after(key, now) == 0.0

    def retry_after(self, key: str, now: float | None = None, take: bool = True) -> float:
        """0.0 and a token taken (unless `take` is False: only looking), or
        how many seconds until one is free."""
        t = time.monotonic() if now is None else now
        with self._lock:
            tokens, at = self._buckets.pop(key, (self.burst, t))
            tokens = min(self.burst, tokens + (t - at) * self.rate)
            wait = 0.0
            if tokens >= 1.0:
                tokens -= 1.0 if take else 0.0
            else:
                wait = (1.0 - tokens) / self.rate if self.rate > 0 else float("inf")
            self._buckets[key] = (tokens, t)
            while len(self._buckets) > self._max_keys:
                self._buckets.popitem(last=False)
            return wait
