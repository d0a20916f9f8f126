"""Engine admission: bounded queries, back-pressure, an ingest lane and per-caller shares.

Every engine call of the service passes through the app's :class:`Gate` (the app's
store is a :class:`GatedStore` around the real one; ``migrate`` and the CLI use the real
store directly). Two lanes, each with its own slots:

- ``read``: queries, streams (one export window at a time) and commands. At most
  ``GATELOG_MAX_CONCURRENT_QUERIES`` run at once, and at most
  ``GATELOG_MAX_CONCURRENT_QUERIES_PER_USER`` of one caller (a signed-in user, or the
  client address of the public token lookup), and at most
  ``GATELOG_CONTENDED_QUERIES_PER_USER`` while another caller uses the engine (see
  :class:`Lane`). A call beyond them waits, first come first
  served among the callers still under their share, for at most
  ``GATELOG_QUERY_QUEUE_TIMEOUT_SECONDS`` (and no more than ``GATELOG_MAX_QUEUED_QUERIES``
  wait at all); then it is refused: 503 with ``Retry-After`` when the engine is full,
  429 with ``Retry-After`` when the caller's own share is.
- ``write``: inserts (ingest, the follower) and the queries ingest itself needs (the
  id lease), marked by :data:`~service.store.LANE`. Their own slots
  (``GATELOG_MAX_CONCURRENT_INGESTS``) and, in the embedded engine, their own threads,
  so no amount of read traffic queues a write behind reads. A write beyond them waits
  ``GATELOG_INGEST_QUEUE_TIMEOUT_SECONDS``, then is refused with 503 and
  ``Retry-After``: never dropped without an answer, never acknowledged unless stored.

Queries and streams also carry engine settings that bound them in the engine itself:
``max_execution_time`` (``GATELOG_QUERY_TIMEOUT_SECONDS``), ``max_memory_usage``
(``GATELOG_QUERY_MAX_MEMORY_BYTES``) and, for queries, ``max_result_bytes``
(``GATELOG_MAX_ANSWER_BYTES``); the engine cancels a query past them and
:func:`service.store.translate` turns that into a 503 (time, memory) or a 400 (answer
size) whose message says what to narrow. Commands (deletes, repairs, DDL) are not cut:
a statement stopped half-way would leave the rollups short.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from .errors import EngineUnavailable, RateLimited
from .settings import Settings
from .store import LANE, Params, Rows, Store

#: who the engine work of the current request is for (None: the service's own jobs)
CALLER: ContextVar[str | None] = ContextVar("gatelog_caller", default=None)
#: whether the current task holds a read slot now (an export's stream between blocks)
HOLDING: ContextVar[bool] = ContextVar("gatelog_holding", default=False)

READ, WRITE = "read", "write"
T = TypeVar("T")


class Overloaded(EngineUnavailable):
    """503: the engine's slots stayed full for the whole bounded wait."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.headers = {"Retry-After": str(retry_after)}


class CallerBusy(RateLimited):
    """429: the caller's own share of the engine stayed full for the whole wait."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.headers = {"Retry-After": str(retry_after)}


class LaneObserver(Protocol):
    """What a lane reports (the app's metrics implement it)."""

    def lane_queue_depth(self, lane: str, depth: int) -> None: ...
    def lane_busy(self, lane: str, busy: int) -> None: ...
    def lane_waited(self, lane: str, seconds: float) -> None: ...
    def lane_rejected(self, lane: str, reason: str) -> None: ...


class _Unobserved:
    def lane_queue_depth(self, lane: str, depth: int) -> None:
        pass

    def lane_busy(self, lane: str, busy: int) -> None:
        pass

    def lane_waited(self, lane: str, seconds: float) -> None:
        pass

    def lane_rejected(self, lane: str, reason: str) -> None:
        pass


@dataclass
class _Waiter:
    caller: str | None
    future: asyncio.Future[None]


class Lane:
    """Slots of one lane: at most ``capacity`` held, at most ``per_caller`` by one caller
    (0: no per-caller bound), and at most ``contended`` by one caller while another
    caller uses the lane (0: ``per_caller`` always); waiters are served in arrival
    order, skipping those whose caller is at its share.

    Another caller uses the lane when it holds a slot, waits for one, or released one
    less than ``recent_seconds`` ago (a dashboard polling one request after another is
    between two requests only for moments). Why: on two cores, a caller with k
    engine-wide queries running beside another caller's one multiplies that caller's
    latency by about 1 + k, so "one caller at most doubles another's latency" needs
    k = 1 while anyone else is there; alone, a caller's request may still run its
    statements side by side (a stat's windows)."""

    def __init__(
        self,
        name: str,
        capacity: int,
        per_caller: int,
        wait_seconds: float,
        max_queue: int,
        observer: LaneObserver | None = None,
        contended: int = 0,
        recent_seconds: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.capacity = max(1, capacity)
        self.per_caller = per_caller
        self.contended = contended
        self.recent_seconds = recent_seconds
        self.clock = clock
        self.wait_seconds = wait_seconds
        self.max_queue = max_queue
        self.observer: LaneObserver = observer or _Unobserved()
        self.held = 0
        self.by_caller: Counter[str] = Counter()
        self.last_seen: dict[str, float] = {}
        self.waiters: deque[_Waiter] = deque()

    @property
    def retry_after(self) -> int:
        return max(1, math.ceil(self.wait_seconds))

    def shared(self, caller: str | None) -> bool:
        """Whether a caller other than ``caller`` uses the lane: holds a slot, waits for
        one, or released one less than ``recent_seconds`` ago."""
        if any(other != caller for other in self.by_caller):
            return True
        if any(w.caller not in (None, caller) and not w.future.done() for w in self.waiters):
            return True
        since = self.clock() - self.recent_seconds
        found = False
        for other, seen in list(self.last_seen.items()):
            if seen < since:
                del self.last_seen[other]  # forgotten: keeps the map as small as the callers
            elif other != caller:
                found = True
        return found

    def share(self, caller: str) -> int:
        """How many slots ``caller`` may hold now (``per_caller``, or ``contended``
        while another caller uses the lane)."""
        if self.contended <= 0 or self.contended >= self.per_caller:
            return self.per_caller
        return self.contended if self.shared(caller) else self.per_caller

    def _eligible(self, caller: str | None) -> bool:
        if self.held >= self.capacity:
            return False
        if not self.per_caller or caller is None:
            return True
        return self.by_caller[caller] < self.share(caller)

    def _take(self, caller: str | None) -> None:
        self.held += 1
        if caller is not None:
            self.by_caller[caller] += 1
            self.last_seen[caller] = self.clock()

    def _report(self) -> None:
        self.observer.lane_queue_depth(self.name, len(self.waiters))
        self.observer.lane_busy(self.name, self.held)

    def release(self, caller: str | None) -> None:
        self.held -= 1
        if caller is not None:
            self.last_seen[caller] = self.clock()
            self.by_caller[caller] -= 1
            if self.by_caller[caller] <= 0:
                del self.by_caller[caller]
        self._dispatch()

    def _dispatch(self) -> None:
        """Hand free slots to the oldest waiters whose caller is under its share."""
        for waiter in list(self.waiters):
            if self.held >= self.capacity:
                break
            if waiter.future.done():  # cancelled
                self.waiters.remove(waiter)
                continue
            if self._eligible(waiter.caller):
                self.waiters.remove(waiter)
                self._take(waiter.caller)
                waiter.future.set_result(None)
        self._report()

    async def acquire(self, caller: str | None) -> None:
        # Nobody eligible is ever left waiting while a slot is free (release dispatches),
        # so taking a free slot at once keeps the order fair.
        if self._eligible(caller):
            self._take(caller)
            self._report()
            self.observer.lane_waited(self.name, 0.0)
            return
        if len(self.waiters) >= self.max_queue:
            self._refuse("queue_full", caller)
        waiter = _Waiter(caller, asyncio.get_running_loop().create_future())
        self.waiters.append(waiter)
        self._report()
        started = time.perf_counter()
        try:
            await asyncio.wait_for(asyncio.shield(waiter.future), self.wait_seconds)
        except TimeoutError:
            if not waiter.future.done():
                self._drop(waiter)
                own_share = self.held < self.capacity
                self._refuse("caller_share" if own_share else "queue_timeout", caller)
        except asyncio.CancelledError:
            if waiter.future.done() and not waiter.future.cancelled():
                self.release(caller)  # granted just as the caller went away
            else:
                self._drop(waiter)
            raise
        self.observer.lane_waited(self.name, time.perf_counter() - started)

    def _drop(self, waiter: _Waiter) -> None:
        if waiter in self.waiters:
            self.waiters.remove(waiter)
        waiter.future.cancel()
        self._report()

    def _refuse(self, reason: str, caller: str | None) -> None:
        self.observer.lane_rejected(self.name, reason)
        if reason == "caller_share":
            share = self.share(caller) if caller is not None else self.per_caller
            raise CallerBusy(
                f"too many of your requests are running at once (at most {share}"
                + (" while others use the engine" if share < self.per_caller else "")
                + "); wait for them to finish, then retry",
                self.retry_after,
            )
        what = "ingest" if self.name == WRITE else "query"
        raise Overloaded(
            f"the log engine is busy: no {what} slot came free in time; retry later",
            self.retry_after,
        )

    @asynccontextmanager
    async def slot(self, caller: str | None) -> AsyncIterator[None]:
        await self.acquire(caller)
        try:
            yield
        finally:
            self.release(caller)


class Gate:
    """The app's two lanes and the engine settings that bound each query."""

    def __init__(self, settings: Settings, observer: LaneObserver | None = None) -> None:
        self.read = Lane(
            READ,
            settings.max_concurrent_queries,
            settings.max_concurrent_queries_per_user,
            settings.query_queue_timeout_seconds,
            settings.max_queued_queries,
            observer,
            contended=settings.contended_queries_per_user,
        )
        self.write = Lane(
            WRITE,
            settings.max_concurrent_ingests,
            0,
            settings.ingest_queue_timeout_seconds,
            settings.max_queued_ingests,
            observer,
        )
        bounds: dict[str, Any] = {
            "max_execution_time": settings.query_timeout_seconds,
            "timeout_overflow_mode": "throw",
            "max_memory_usage": settings.query_max_memory_bytes,
            # a server cancels a read whose client gave up (our own timeout)
            "cancel_http_readonly_queries_on_client_close": 1,
        }
        self.stream_settings = bounds
        self.query_settings = {
            **bounds,
            "max_result_bytes": settings.max_answer_bytes,
            "result_overflow_mode": "throw",
        }

    def lane(self, kind: str) -> Lane:
        return self.write if kind == "insert" or LANE.get() == WRITE else self.read

    def bounds(self, kind: str) -> dict[str, Any]:
        """The engine settings bounding a read; ingest's own queries are not cut."""
        if LANE.get() == WRITE:
            return {}
        return self.stream_settings if kind == "stream" else self.query_settings

    @asynccontextmanager
    async def slot(self, kind: str, store: Store | None = None) -> AsyncIterator[None]:
        if store is not None:
            await store.connected()  # an unreachable engine fails calls before any wait
        async with self.lane(kind).slot(CALLER.get()):
            holding = HOLDING.set(True)
            try:
                yield
            finally:
                try:
                    HOLDING.reset(holding)
                except ValueError:  # left from another context (a generator closed late)
                    HOLDING.set(False)


class GatedStore(Store):
    """The app's view of the engine: the real store, every call admitted by the gate and
    every read bounded in the engine. Anything else is the real store's."""

    def __init__(self, inner: Store, gate: Gate) -> None:
        self.inner = inner
        self.gate = gate
        self.cluster = inner.cluster

    def __getattr__(self, name: str) -> Any:  # path, database, ... of the real store
        return getattr(self.inner, name)

    def add_observer(self, fn: Callable[[str, float], None]) -> None:
        self.inner.add_observer(fn)

    def remove_observer(self, fn: Callable[[str, float], None]) -> None:
        self.inner.remove_observer(fn)

    async def query(self, sql: str, params: Params = None, settings: Params = None) -> Rows:
        async with self.gate.slot("query", self.inner):
            return await self.inner.query(sql, params, _merged(self.gate.bounds("query"), settings))

    async def command(self, sql: str, params: Params = None, settings: Params = None) -> Any:
        async with self.gate.slot("command", self.inner):
            return await self.inner.command(sql, params, settings)

    async def insert(
        self,
        table: str,
        rows: Sequence[Sequence[Any]],
        columns: Sequence[str],
        settings: Params = None,
    ) -> None:
        async with self.gate.slot("insert", self.inner):
            await self.inner.insert(table, rows, columns, settings)

    async def insert_arrow(self, table: str, table_data: Any, settings: Params = None) -> None:
        async with self.gate.slot("insert", self.inner):
            await self.inner.insert_arrow(table, table_data, settings)

    async def insert_table(self, table: str, data: Any, settings: Params = None) -> None:
        async with self.gate.slot("insert", self.inner):
            await self.inner.insert_table(table, data, settings)

    async def stream(
        self, sql: str, params: Params = None, settings: Params = None
    ) -> AsyncIterator[list[tuple[Any, ...]]]:
        async with self.gate.slot("stream", self.inner):
            blocks = self.inner.stream(sql, params, _merged(self.gate.bounds("stream"), settings))
            try:
                async for block in blocks:
                    yield block
            finally:
                await blocks.aclose()  # type: ignore[attr-defined]

    async def work(self, fn: Callable[..., T], *args: Any) -> T:
        # In the caller's share: a heavy caller's Python work on its rows (an export
        # window's shaping and encoding) and its engine queries together hold at most
        # its slots, so it cannot take a core with each.
        if HOLDING.get():  # within a slot of this task already (a stream's blocks)
            return await asyncio.to_thread(fn, *args)
        async with self.gate.slot("query"):
            return await asyncio.to_thread(fn, *args)

    async def _run(self, kind: str, fn: Callable[[Any], Any]) -> Any:
        async with self.gate.slot(kind, self.inner):
            return await self.inner._run(kind, fn)

    async def ping(self) -> bool:
        # Not admitted: a probe must tell whether the engine answers, not wait for a slot.
        return await self.inner.ping()

    async def close(self) -> None:
        await self.inner.close()


def _merged(bounds: Mapping[str, Any], given: Params) -> dict[str, Any]:
    """The bounds under the caller's own settings (a caller may lift one on purpose)."""
    return {**bounds, **dict(given or {})}
