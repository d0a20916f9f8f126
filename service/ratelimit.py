"""A per-key fixed-window-with-carry-over (sliding) rate limiter, in memory.

Used against key guessing on the public token lookup: each client IP gets ``rate``
requests per minute. Memory is bounded: idle keys are forgotten, and past
``max_keys`` clients the oldest are dropped.
"""

from __future__ import annotations

import ipaddress
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(cidrs: Iterable[str]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(cidr.strip(), strict=False) for cidr in cidrs)


def client_ip(remote: str | None, forwarded_for: str | None, trusted: tuple[Network, ...]) -> str:
    """The client's address: the peer, unless the peer is a trusted proxy; then the
    right-most address in X-Forwarded-For that is not itself a trusted proxy."""
    peer = remote or ""
    if not trusted or not forwarded_for or not _within(peer, trusted):
        return peer
    hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
    for hop in reversed(hops):
        if not _within(hop, trusted):
            return hop
    return hops[0] if hops else peer


def _within(address: str, networks: tuple[Network, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


class RateLimiter:
    def __init__(
        self,
        rate_per_minute: int,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 100_000,
        trusted: tuple[Network, ...] = (),
    ) -> None:
        self.rate = rate_per_minute
        self.trusted = trusted
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
