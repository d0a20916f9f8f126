"""A per-key fixed-window-with-carry-over (sliding) rate limiter, in memory.

Used against key guessing on the public token lookup: each client IP gets ``rate``
requests per minute. Memory is bounded: idle keys are forgotten, and past
``max_keys`` clients the oldest are dropped.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable


class RateLimiter:
    def __init__(
        self,
        rate_per_minute: int,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 100_000,
    ) -> None:
        self.rate = rate_per_minute
        self.clock = clock
        self.max_keys = max_keys
        # key -> (window start, count in this window, count in the previous window)
        self._windows: OrderedDict[str, tuple[float, int, int]] = OrderedDict()

    def allow(self, key: str) -> tuple[bool, float]:
        """(allowed, seconds until the next request would be allowed)."""
        if self.rate <= 0:
            return True, 0.0
        now = self.clock()
        window = now - now % 60.0
        start, current, previous = self._windows.pop(key, (window, 0, 0))
        if start != window:
            previous = current if window - start == 60.0 else 0
            current, start = 0, window
        # Sliding estimate: the previous window's count weighs by how much of it overlaps.
        weight = 1.0 - (now - window) / 60.0
        estimate = previous * weight + current
        allowed = estimate < self.rate
        if allowed:
            current += 1
        self._windows[key] = (start, current, previous)
        while len(self._windows) > self.max_keys:
            self._windows.popitem(last=False)
        retry = 0.0 if allowed else max(1.0, 60.0 - (now - window))
        return allowed, retry
