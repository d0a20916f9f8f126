"""The storage layer: one small interface, two backends, one error translation.

- :class:`ChdbStore`: the embedded engine (chDB through clickhouse-connect's ``chdb``
  interface). chDB releases the GIL, so its calls run on a thread pool, one client
  handle per thread, and queries use both cores.
- :class:`HttpStore`: a ClickHouse server through clickhouse-connect's async HTTP client.

Both take the same SQL with ``{name:Type}`` parameters. Driver errors are translated
here, into :class:`~service.errors.EngineUnavailable` (503) or
:class:`~service.errors.EngineError` (our bug: 500), so nothing above this module sees
a driver exception.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import tempfile
import threading
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

from clickhouse_connect.driver.exceptions import ClickHouseError, OperationalError

from .cluster import CLUSTER_SETTINGS
from .errors import BadRequest, EngineError, EngineUnavailable
from .failures import check_data_dir
from .settings import Settings, SettingsError

log = logging.getLogger(__name__)
T = TypeVar("T")
#: the lane of the current engine work: "write" for ingest's own calls (inserts and
#: the queries they need, such as the id lease), which then never queue behind reads;
#: "probe" for /readyz, on a thread of its own
LANE: ContextVar[str] = ContextVar("gatelog_lane", default="read")
Params = Mapping[str, Any] | None

EMBEDDED_DATABASE = "gatelog"

# Settings we rely on, set explicitly because chDB's defaults differ from a server's
# (engine notes: chDB reports async_insert=1, best_effort time parsing).
SESSION_SETTINGS: dict[str, Any] = {
    "async_insert": 0,
    "date_time_input_format": "basic",
    "insert_deduplicate": 1,
    "mutations_sync": 2,
    "lightweight_deletes_sync": 2,
    "deduplicate_blocks_in_dependent_materialized_views": 1,
    # An insert into `logs` feeds five materialized views; run them on the free cores
    # instead of one after the other: 1.2x the engine's insert rate into the schema
    # (bench/write.py, docs/benchmarks.md "Write path"). Queries are unaffected.
    "parallel_view_processing": 1,
}

# Server error codes that mean "overloaded or unavailable now", not "our SQL is wrong".
UNAVAILABLE_CODES = frozenset(
    {
        159,  # TIMEOUT_EXCEEDED
        202,  # TOO_MANY_SIMULTANEOUS_QUERIES
        209,  # SOCKET_TIMEOUT
        210,  # NETWORK_ERROR
        241,  # MEMORY_LIMIT_EXCEEDED
        242,  # TABLE_IS_READ_ONLY
        252,  # TOO_MANY_PARTS
        319,  # UNKNOWN_STATUS_OF_INSERT
        394,  # QUERY_WAS_CANCELLED
        999,  # KEEPER_EXCEPTION
    }
)
# Codes that mean the data we were given cannot be stored as typed: the client's fault.
BAD_DATA_CODES = frozenset({6, 27, 38, 41, 53, 69, 70, 72, 117, 321})
# A query the engine cancelled at a bound of ours (service/gate.py): what to narrow.
_NARROW = (
    "narrow it: a shorter time range (start_timestamp, end_timestamp), more filters "
    "(username, token_name, model_name, channel, type), a longer keyword or a smaller page"
)
BOUND_MESSAGES = {
    159: "the query took longer than the query timeout (GATELOG_QUERY_TIMEOUT_SECONDS); " + _NARROW,
    241: "the query needed more memory than a query may use (GATELOG_QUERY_MAX_MEMORY_BYTES); "
    + _NARROW,
}
_CODE_IN_TEXT = re.compile(r"\bCode: (\d+)\.")
TOO_MANY_BYTES = 396  # TOO_MANY_ROWS_OR_BYTES: max_result_bytes, set on queries only
ANSWER_TOO_LARGE = (
    "the answer would be larger than an answer may be (GATELOG_MAX_ANSWER_BYTES): ask for "
    "fewer rows (page_size) or narrow the filters"
)


@dataclass(frozen=True)
class Rows:
    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]]

    def dicts(self) -> list[dict[str, Any]]:
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]

    def scalar(self) -> Any:
        return self.rows[0][0] if self.rows else None


class QueryBound(EngineUnavailable):
    """The engine cancelled a query at one of our bounds (``code``: 159 time, 241
    memory); a caller that can ask for less (an export window) may retry smaller."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def translate(exc: BaseException) -> Exception:
    """Map a driver exception onto the project's own error types.

    The engine's error code decides when there is one: an error a server writes into a
    stream it had started (clickhouse-connect raises it as an OperationalError) means what
    its code means; an OperationalError without a code is the transport failing."""
    code = getattr(exc, "code", None)
    if code is None:  # an error met mid-stream carries its code in the text only
        found = _CODE_IN_TEXT.search(str(exc))
        code = int(found.group(1)) if found and int(found.group(1)) in BOUND_MESSAGES else None
    if code in BOUND_MESSAGES:
        return QueryBound(BOUND_MESSAGES[code], code)
    if code == TOO_MANY_BYTES:
        return BadRequest(ANSWER_TOO_LARGE)
    if code in UNAVAILABLE_CODES:
        return EngineUnavailable("the log engine is overloaded or unavailable, retry later")
    if code in BAD_DATA_CODES:
        return BadRequest("the engine rejected a value: it does not fit its column type")
    if code is None and isinstance(exc, OperationalError):
        return EngineUnavailable("the log engine is unavailable, retry later")
    if isinstance(exc, ConnectionError | TimeoutError | asyncio.TimeoutError):
        return EngineUnavailable("the log engine is unavailable, retry later")
    text = str(exc)
    if "EmbeddedServer" in text or "Connection refused" in text or "Cannot connect" in text:
        return EngineUnavailable("the log engine is unavailable, retry later")
    return EngineError(text, code)


@contextmanager
def translated() -> Iterator[None]:
    try:
        yield
    except ClickHouseError as exc:
        raise translate(exc) from exc
    except (ConnectionError, TimeoutError, OSError) as exc:
        raise translate(exc) from exc


class Store(ABC):
    """What handlers and jobs use. Values go in ``params``, never into ``sql``."""

    #: the ClickHouse cluster (``GATELOG_CLICKHOUSE_CLUSTER``), None on a single node;
    #: reads and writes use the same table names either way (see service/cluster.py)
    cluster: str | None = None
    #: an ad-hoc hook ``(kind, seconds)`` called after each engine call (tests use it)
    observer: Callable[[str, float], None] | None = None
    #: long-lived hooks of the same shape (each app's metrics), see add_observer
    _observers: tuple[Callable[[str, float], None], ...] = ()

    async def work(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)``, Python work on rows the engine returned, on a worker thread.
        The app's gated store runs it inside the caller's share of the engine
        (:class:`service.gate.GatedStore`), so a caller's CPU in the service counts
        with its engine work."""
        return await asyncio.to_thread(fn, *args)

    def add_observer(self, fn: Callable[[str, float], None]) -> None:
        self._observers = (*self._observers, fn)

    def remove_observer(self, fn: Callable[[str, float], None]) -> None:
        self._observers = tuple(o for o in self._observers if o != fn)

    async def query(self, sql: str, params: Params = None, settings: Params = None) -> Rows:
        result = await self._call(
            "query", sql, parameters=dict(params or {}), settings=dict(settings or {})
        )
        return Rows(tuple(result.column_names), list(result.result_rows))

    async def command(self, sql: str, params: Params = None, settings: Params = None) -> Any:
        return await self._call(
            "command", sql, parameters=dict(params or {}), settings=dict(settings or {})
        )

    async def insert(
        self,
        table: str,
        rows: Sequence[Sequence[Any]],
        columns: Sequence[str],
        settings: Params = None,
    ) -> None:
        await self._call(
            "insert", table, rows, column_names=list(columns), settings=dict(settings or {})
        )

    async def insert_arrow(self, table: str, table_data: Any, settings: Params = None) -> None:
        await self._call("insert_arrow", table, table_data, settings=dict(settings or {}))

    async def insert_table(self, table: str, data: Any, settings: Params = None) -> None:
        """The pyarrow Table ``data`` into ``table`` (its columns by name) by the backend's
        fastest path: here the driver's Arrow insert."""
        await self.insert_arrow(table, data, settings)

    async def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """Call ``method`` of the backend's clickhouse-connect client, errors translated
        and the call observed."""
        kind = "insert" if method.startswith("insert") else method
        return await self._run(kind, lambda client: getattr(client, method)(*args, **kwargs))

    @abstractmethod
    async def _run(self, kind: str, fn: Callable[[Any], Any]) -> Any:
        """Run ``fn(client)`` on the backend (sync client on a thread, or awaited)."""

    @abstractmethod
    def stream(
        self,
        sql: str,
        params: Mapping[str, Any] | None = None,
        settings: Mapping[str, Any] | None = None,
    ) -> AsyncIterator[list[tuple[Any, ...]]]:
        """Row blocks of a query, without holding the whole result in memory."""

    async def connected(self) -> None:
        """Wait until the backend can take a call (a server's client is connected);
        raises EngineUnavailable when it cannot. The gate waits here before taking a
        slot, so requests facing an unreachable engine fail together, holding none."""
        await asyncio.sleep(0)  # the embedded engine is always there

    @abstractmethod
    async def ping(self) -> bool: ...

    @abstractmethod
    async def close(self) -> None: ...

    def _observe(self, kind: str, started: float) -> None:
        seconds = time.perf_counter() - started
        if self.observer is not None:
            self.observer(kind, seconds)
        for fn in self._observers:
            fn(kind, seconds)


class ChdbStore(Store):
    """The embedded engine: chDB in this process, its calls on a thread pool."""

    def __init__(
        self,
        path: str,
        threads: int = 4,
        database: str = EMBEDDED_DATABASE,
        write_threads: int = 2,
    ) -> None:
        import clickhouse_connect

        check_data_dir(path.split("?", 1)[0])
        self.path = path
        self.database = database
        self._local = threading.local()
        self._clients: list[Any] = []
        self._lock = threading.Lock()
        # Lanes of threads: inserts never queue behind reads, and a readiness probe never
        # queues behind either (see service/gate.py for the slots in front of them).
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="chdb")
        self._write_pool = ThreadPoolExecutor(
            max_workers=max(1, write_threads), thread_name_prefix="chdb-write"
        )
        self._probe_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chdb-probe")
        with translated():
            boot = clickhouse_connect.get_client(interface="chdb", path=path)
            boot.command(f"CREATE DATABASE IF NOT EXISTS {database}")
        self._clients.append(boot)

    def _client(self) -> Any:
        client = getattr(self._local, "client", None)
        if client is None:
            import clickhouse_connect

            client = clickhouse_connect.get_client(
                interface="chdb", path=self.path, database=self.database, settings=SESSION_SETTINGS
            )
            self._local.client = client
            with self._lock:
                self._clients.append(client)
        return client

    async def _run(self, kind: str, fn: Callable[[Any], T]) -> T:
        started = time.perf_counter()

        def call() -> T:
            with translated():
                return fn(self._client())

        if kind == "ping" or LANE.get() == "probe":
            pool = self._probe_pool
        elif kind == "insert" or LANE.get() == "write":
            pool = self._write_pool
        else:
            pool = self._pool
        try:
            return await asyncio.get_running_loop().run_in_executor(pool, call)
        finally:
            self._observe("query" if kind == "ping" else kind, started)

    async def insert_table(self, table: str, data: Any, settings: Params = None) -> None:
        """The batch as an Arrow IPC file in memory-backed storage, read by the engine
        itself (``INSERT ... SELECT FROM file()``): no row objects, no copy through the
        driver (spec/engine-notes.md: file formats are chDB's fastest insert path)."""
        import pyarrow.feather as feather

        columns = ", ".join(_ident(name) for name in data.column_names)
        path = os.path.join(spool_dir(), f"gatelog-insert-{uuid.uuid4().hex}.arrow")
        sql = (
            f"INSERT INTO {_ident(table)} ({columns}) "
            f"SELECT {columns} FROM file({{path:String}}, 'Arrow')"
        )

        def write_and_insert(client: Any) -> Any:
            feather.write_feather(data, path, compression="uncompressed")
            return client.command(sql, parameters={"path": path}, settings=dict(settings or {}))

        try:
            await self._run("insert", write_and_insert)  # the write lane, like every insert
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

    async def stream(
        self, sql: str, params: Params = None, settings: Params = None
    ) -> AsyncIterator[list[tuple[Any, ...]]]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=4)
        done = object()
        cancelled = threading.Event()

        def produce(client: Any) -> None:
            def put(item: Any) -> None:
                asyncio.run_coroutine_threadsafe(queue.put(item), loop).result()

            try:
                with client.query_row_block_stream(
                    sql, parameters=dict(params or {}), settings=dict(settings or {})
                ) as blocks:
                    for block in blocks:
                        if cancelled.is_set():
                            return
                        put(list(block))
                put(done)
            except BaseException as exc:  # handed to the consumer, which raises it
                if not cancelled.is_set():
                    put(exc)

        task = asyncio.ensure_future(self._run("stream", produce))
        try:
            while True:
                item = await queue.get()
                if item is done:
                    break
                if isinstance(item, BaseException):
                    raise translate(item) if isinstance(item, ClickHouseError) else item
                yield item
        finally:
            cancelled.set()
            while not queue.empty():
                queue.get_nowait()
            if not task.done():
                # Unblock a producer waiting on a full queue, then let it finish.
                with _suppress():
                    while not task.done():
                        while not queue.empty():
                            queue.get_nowait()
                        await asyncio.sleep(0.001)
            await asyncio.gather(task, return_exceptions=True)

    async def ping(self) -> bool:
        try:
            rows = await self._run("ping", lambda client: client.query("SELECT 1").result_rows)
            return bool(rows and rows[0][0] == 1)
        except (EngineUnavailable, EngineError):
            return False

    async def close(self) -> None:
        for pool in (self._pool, self._write_pool, self._probe_pool):
            pool.shutdown(wait=True)
        with self._lock:
            for client in self._clients:
                with _suppress():
                    client.close()
            self._clients.clear()


class HttpStore(Store):
    """A ClickHouse server through clickhouse-connect's async HTTP client.

    The client is created lazily and recreated after a failed start, so the service
    comes up while the engine is down and recovers without a restart.
    """

    def __init__(self, url: str, timeout: float = 30.0, cluster: str | None = None) -> None:
        self.url = url
        self.timeout = timeout
        self.cluster = cluster
        self._client: Any = None
        self._connecting: asyncio.Future[Any] | None = None

    @property
    def database(self) -> str:
        return urlsplit(self.url).path.strip("/") or "default"

    async def _get(self) -> Any:
        """The client, created once. Callers that arrive while it is being created share
        that one attempt and its outcome: with the engine down or hung, N waiting
        requests all fail after one timeout, not one timeout after another."""
        if self._client is not None:
            return self._client
        if self._connecting is None:
            attempt = asyncio.ensure_future(self._connect())
            self._connecting = attempt

            def done(future: asyncio.Future[Any]) -> None:
                self._connecting = None
                if not future.cancelled():
                    future.exception()  # retrieved: a failure is raised to every caller

            attempt.add_done_callback(done)
        # A caller that gives up (cancelled) does not cancel the attempt for the others.
        return await asyncio.shield(self._connecting)

    async def connected(self) -> None:
        try:
            await self._get()
        except TimeoutError as exc:
            raise translate(exc) from exc

    async def _connect(self) -> Any:
        import clickhouse_connect

        parts = urlsplit(self.url)
        with translated():
            client = await asyncio.wait_for(
                clickhouse_connect.get_async_client(
                    host=parts.hostname or "localhost",
                    port=parts.port or (8443 if parts.scheme == "https" else 8123),
                    username=parts.username or "default",
                    password=parts.password or "",
                    database=self.database,
                    secure=parts.scheme == "https",
                    compress="lz4",
                    connect_timeout=min(self.timeout, 5.0),
                    send_receive_timeout=self.timeout,
                    settings=self._settings(),
                    autogenerate_session_id=False,
                ),
                timeout=self.timeout,
            )
        self._client = client
        return client

    def _settings(self) -> dict[str, Any]:
        if self.cluster is None:
            return SESSION_SETTINGS
        return {**SESSION_SETTINGS, **CLUSTER_SETTINGS}

    async def _run(self, kind: str, call: Callable[[Any], Awaitable[T]]) -> T:
        started = time.perf_counter()
        try:
            client = await self._get()
            with translated():
                return await asyncio.wait_for(call(client), timeout=self.timeout)
        except TimeoutError as exc:
            raise translate(exc) from exc
        finally:
            self._observe(kind, started)

    async def stream(
        self, sql: str, params: Params = None, settings: Params = None
    ) -> AsyncIterator[list[tuple[Any, ...]]]:
        client = await self._get()
        with translated():
            stream = await client.query_row_block_stream(
                sql, parameters=dict(params or {}), settings=dict(settings or {})
            )
            async with stream:
                async for block in stream:
                    yield list(block)

    async def ping(self) -> bool:
        try:
            client = await self._get()
            return bool(await asyncio.wait_for(client.ping(), timeout=min(self.timeout, 5.0)))
        except (TimeoutError, EngineUnavailable, EngineError, ClickHouseError, OSError):
            return False

    async def close(self) -> None:
        if self._client is not None:
            with _suppress():
                await self._client.close()
            self._client = None


# Identifiers only: column and table names of our own schema, quoted (`group` is reserved).
_SAFE = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_")


def _ident(name: str) -> str:
    if not name or not set(name) <= _SAFE:
        raise ValueError(f"not a plain column name: {name!r}")
    return f"`{name}`"


def spool_dir() -> str:
    """Where insert files go: memory-backed when the machine has it."""
    shm = "/dev/shm"
    if os.path.isdir(shm) and os.access(shm, os.W_OK):
        return shm
    return tempfile.gettempdir()


@contextmanager
def _suppress() -> Iterator[None]:
    try:
        yield
    except Exception:  # closing a broken handle must not mask the real outcome
        log.debug("ignored error while closing", exc_info=True)


def open_store(settings: Settings) -> Store:
    if settings.clickhouse_url:
        # The client waits past the query timeout, so the server cancels a slow query
        # (and says so) before the client gives up on it.
        timeout = settings.engine_timeout_seconds
        if settings.query_timeout_seconds:
            timeout = max(timeout, settings.query_timeout_seconds + 5.0)
        return HttpStore(
            settings.clickhouse_url, timeout=timeout, cluster=settings.clickhouse_cluster
        )
    if settings.clickhouse_cluster:
        raise SettingsError(
            "GATELOG_CLICKHOUSE_CLUSTER needs a ClickHouse server: set GATELOG_CLICKHOUSE_URL "
            "(the embedded engine is a single node)"
        )
    return ChdbStore(
        settings.data_dir,
        threads=max(settings.engine_threads, settings.max_concurrent_queries),
        write_threads=max(1, settings.max_concurrent_ingests),
    )
