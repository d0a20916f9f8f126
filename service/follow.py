"""Follow a gateway's database: keep importing its new logs (``GATELOG_FOLLOW_FROM`` in
``serve``, or ``import --from URL --follow`` as its own process).

Each poll is a resumable import (:func:`service.importer.run_import`): it continues after
the last id stored, under the import's progress state and deduplication tokens, so every
row arrives exactly once, also across restarts. The tokens table is re-read at least
every ``TOKEN_INTERVAL`` seconds (``GATELOG_FOLLOW_TOKENS_INTERVAL_SECONDS``), so a key
disabled or deleted in the gateway stops working here within a minute. Deleting rows in
the gateway deletes nothing here (the follower only adds; gatelog's own retention
removes old logs).

A source that is down is logged (its name, never its password) and tried again at the
next interval; the service stays ready meanwhile, and follows again by itself.

Rows committed out of id order (a long transaction in the gateway's database finishing
after a later id) are missed by an id-based follower; the gateway writes one row per
short transaction, so in practice ids commit in order.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from .importer import Source, SourceError, run_import
from .store import Store

log = logging.getLogger(__name__)

#: the longest time between two reads of the gateway's tokens table
TOKEN_INTERVAL = 30.0


class Follower:
    def __init__(
        self,
        store: Store,
        source: Source,
        *,
        interval: float = 2.0,
        token_interval: float = TOKEN_INTERVAL,
        clock: Callable[[], float] = time.time,
        registry: object | None = None,
    ) -> None:
        self.store = store
        self.source = source
        self.interval = interval
        self.token_interval = token_interval
        self.clock = clock
        self.started = clock()
        self.last_caught_up: float | None = None
        self.last_tokens: float | None = None
        self.rows = 0
        self.rate = 0.0
        self.failures = 0
        if registry is not None:
            self._register(registry)

    def _register(self, registry: object) -> None:
        from prometheus_client import Counter, Gauge

        lag = Gauge(
            "gatelog_follow_lag_seconds",
            "seconds since the follower last caught up with the gateway's database",
            registry=registry,  # type: ignore[arg-type]
        )
        lag.set_function(self.lag)
        self._rows_total = Counter(
            "gatelog_follow_rows",
            "log rows brought in by the follower",
            registry=registry,  # type: ignore[arg-type]
        )
        rate = Gauge(
            "gatelog_follow_rows_per_second",
            "rows per second of the follower's last poll",
            registry=registry,  # type: ignore[arg-type]
        )
        rate.set_function(lambda: self.rate)

    def lag(self) -> float:
        since = self.started if self.last_caught_up is None else self.last_caught_up
        return max(0.0, self.clock() - since)

    async def poll(self) -> int:
        """Import what is new; the tokens too when they are due. Raises SourceError."""
        now = self.clock()
        tokens = self.last_tokens is None or now - self.last_tokens >= self.token_interval
        result = await run_import(self.store, self.source, progress=False, tokens=tokens)
        if tokens:
            self.last_tokens = now
        self.last_caught_up = now
        self.rows += result.logs
        self.rate = result.logs / max(result.seconds, 1e-6)
        if hasattr(self, "_rows_total"):
            self._rows_total.inc(result.logs)
        return result.logs

    async def run(self) -> None:
        """Poll every interval until cancelled; failures are logged and retried."""
        while True:
            try:
                count = await self.poll()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - a follower keeps following
                self.failures += 1
                log.warning(
                    "follow %s: %s; retrying in %.0f s",
                    self.source.name,
                    _reason(exc),
                    self.interval,
                )
            else:
                if count:
                    log.info("follow %s: %d new logs", self.source.name, count)
            await asyncio.sleep(self.interval)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, SourceError):
        return str(exc)
    return type(exc).__name__
