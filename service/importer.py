"""``python -m service import --from URL``: bring an existing new-api / one-api database in.

Sources: ``sqlite:///path/to/one-api.db``, ``postgresql://user:pw@host:port/db`` (or
``postgres://``) and ``mysql://user:pw@host:port/db`` (MySQL or MariaDB), read with
well-kept drivers (the standard library's sqlite3, psycopg 3, PyMySQL).

What is read, with the gateway's own column names (spec/reference-behaviour.md; GORM
derives them from ``model/log.go``, ``model/token.go``, ``model/channel.go``):

- ``logs``: every column gatelog stores. Columns an older gateway lacks (one-api has no
  ``group``, ``ip``, ``other``; ``request_id`` came late) take their defaults; one-api's
  ``elapsed_time`` (milliseconds) becomes ``use_time`` (seconds). NULLs become defaults.
- ``channels`` (when present): ``channel_name`` exists in ``logs`` only as an empty
  read-only GORM column; the gateway fills it from ``channels`` when it answers, and so
  does the import, once (a non-empty ``logs.channel_name`` is kept when ``channels`` has
  no such id).
- ``tokens``: upserted by id with the key stored only as its hash. A soft-deleted token
  (``deleted_at`` set) is imported as disabled, so its key finds nothing, as in the
  gateway.

How: logs are read in id order, in windows of ids ``(from, to]``, each turned into an
Arrow table (PostgreSQL sends CSV through ``COPY``, parsed by pyarrow; SQLite answers
through its ADBC driver as Arrow columns when ``adbc-driver-sqlite`` is installed, the
tools extra; MySQL, and SQLite without that driver, are read in batches and transposed
into columns) and stored with the engine's bulk path
(:mod:`service.bulk`), keeping the original ids. Reading the next window overlaps the
engine's insert of the current one. A progress bar shows rows/s and the ETA.

Re-running and resuming: ``import_progress`` records, per source, the window being
inserted (``pending``) and then the id everything up to which is stored (``done``). The
next run replays a pending window with the same deduplication token, so nothing lands
twice, then continues after the last done id: a finished import re-run only brings the
rows added since. A source is recognised by its URL without the password (or by
``--source-name``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import io
import os
import signal
import sqlite3
import sys
import time
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit, urlunsplit

import pyarrow as pa
import pyarrow.compute as pc

from . import columns
from .bulk import arrow_table, arrow_type, insert_table, progress_bar
from .commands import Command, with_store
from .ingest import day_chunks
from .settings import Settings
from .store import Store

DEFAULT_BATCH_IDS = 100_000


class SourceError(Exception):
    """The source cannot be read as a gateway database; the message says why."""


# Target column -> (Arrow type, default), in the engine's `logs` column order.
LOG_COLUMNS: tuple[tuple[str, pa.DataType, Any], ...] = tuple(
    (c.name, arrow_type(c), c.default) for c in columns.LOGS
)
# Read from the source as integers (bools as 0/1) or text; converted to the types above.
_READ_AS_INT = {name for name, kind, _ in LOG_COLUMNS if not pa.types.is_string(kind)}


@dataclass(frozen=True)
class Source:
    url: str
    kind: str  # sqlite | postgresql | mysql
    name: str  # the URL without its password: what identifies the source

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(self.name.encode()).hexdigest()[:16]


def parse_source(url: str, name: str | None = None) -> Source:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "sqlite":
        # sqlite:///abs/path (also sqlite:////abs/path); sqlite://rel/path or sqlite:rel
        raw = unquote(url.split(":", 1)[1])
        path = "/" + raw.lstrip("/") if raw.startswith("///") else raw.removeprefix("//")
        if not path.strip("/"):
            raise SourceError("sqlite URL without a path: use sqlite:///path/to/one-api.db")
        path = os.path.abspath(path)
        return Source(path, "sqlite", name or f"sqlite://{path}")
    if scheme in ("postgresql", "postgres", "mysql", "mariadb", "mysql+pymysql"):
        kind = "postgresql" if scheme.startswith("postgres") else "mysql"
        host = parts.hostname or "localhost"
        netloc = f"{parts.username}@{host}" if parts.username else host
        if parts.port:
            netloc += f":{parts.port}"
        shown = urlunsplit((kind, netloc, parts.path, "", ""))
        return Source(url, kind, name or shown)
    raise SourceError(
        f"unsupported source {scheme or url!r}: use sqlite:///path, postgresql://... or mysql://..."
    )


# -- readers ---------------------------------------------------------------------------------


class Reader(ABC):
    """One source database, read with its own driver (blocking; run on a thread)."""

    quote = '"'
    placeholder = "?"

    @abstractmethod
    def tables(self) -> set[str]: ...

    @abstractmethod
    def columns(self, table: str) -> set[str]: ...

    @abstractmethod
    def rows(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]: ...

    def close(self) -> None:
        self.conn.close()

    conn: Any

    def q(self, name: str) -> str:
        return f"{self.quote}{name}{self.quote}"

    def scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        found = self.rows(sql, params)
        return found[0][0] if found else None

    # What each target column is read as, given the columns the source has.
    def log_select(self) -> tuple[str, list[str]]:
        have = self.columns("logs")
        missing = {"id", "user_id", "created_at", "type"} - have
        if missing:
            raise SourceError(
                f"table logs lacks {', '.join(sorted(missing))}: not a new-api/one-api database"
            )
        exprs: list[str] = []
        names: list[str] = []
        for name, _kind, default in LOG_COLUMNS:
            source = name
            if name == "use_time" and name not in have and "elapsed_time" in have:
                exprs.append(self.int_expr(f"{self.q('elapsed_time')} / 1000"))
                names.append(name)
                continue
            if source not in have:
                exprs.append(self.int_literal(default) if name in _READ_AS_INT else "''")
            elif name == "is_stream":
                exprs.append(self.bool_expr(self.q(source)))
            elif name in _READ_AS_INT:
                exprs.append(self.int_expr(self.q(source)))
            else:
                exprs.append(self.text_expr(self.q(source)))
            names.append(name)
        return ", ".join(exprs), names

    def int_expr(self, column: str) -> str:
        return f"COALESCE(CAST({column} AS BIGINT), 0)"

    def int_literal(self, value: int) -> str:
        return str(int(value))

    def bool_expr(self, column: str) -> str:
        return f"CASE WHEN {column} THEN 1 ELSE 0 END"

    def text_expr(self, column: str) -> str:
        return f"COALESCE({column}, '')"

    def logs_window(self, select: str, names: list[str], lo: int, hi: int) -> pa.Table:
        p = self.placeholder
        sql = (
            f"SELECT {select} FROM {self.q('logs')} "
            f"WHERE {self.q('id')} > {p} AND {self.q('id')} <= {p} ORDER BY {self.q('id')}"
        )
        return rows_to_table(self.rows(sql, (lo, hi)), names)

    def channels(self) -> dict[int, str]:
        if "channels" not in self.tables():
            return {}
        rows = self.rows(f"SELECT {self.q('id')}, {self.q('name')} FROM {self.q('channels')}", ())
        return {int(i): str(n or "") for i, n in rows}

    def tokens(self, batch: int = 50_000) -> Iterator[list[tuple[Any, ...]]]:
        """(id, key, name, user_id, status, deleted) in id order, in batches."""
        if "tokens" not in self.tables():
            return
        have = self.columns("tokens")
        deleted = (
            f"CASE WHEN {self.q('deleted_at')} IS NULL THEN 0 ELSE 1 END"
            if "deleted_at" in have
            else "0"
        )
        status = self.int_expr(self.q("status")) if "status" in have else "1"
        name = self.text_expr(self.q("name")) if "name" in have else "''"
        p = self.placeholder
        last = 0
        while True:
            rows = self.rows(
                f"SELECT {self.q('id')}, {self.text_expr(self.q('key'))}, {name}, "
                f"{self.int_expr(self.q('user_id'))}, {status}, {deleted} "
                f"FROM {self.q('tokens')} WHERE {self.q('id')} > {p} "
                f"ORDER BY {self.q('id')} LIMIT {int(batch)}",
                (last,),
            )
            if not rows:
                return
            yield rows
            last = int(rows[-1][0])


def rows_to_table(rows: list[tuple[Any, ...]], names: list[str]) -> pa.Table:
    """Row tuples to a table of the source's integer and text columns."""
    if not rows:
        return pa.table(
            {n: pa.array([], pa.int64() if n in _READ_AS_INT else pa.string()) for n in names}
        )
    columns = list(zip(*rows, strict=True))
    return pa.table(
        {
            n: pa.array(col, pa.int64() if n in _READ_AS_INT else pa.string())
            for n, col in zip(names, columns, strict=True)
        }
    )


class SqliteReader(Reader):
    """The standard library's sqlite3 for the small reads; the log windows through
    SQLite's ADBC driver (``adbc-driver-sqlite``, in the tools extra) when it is
    installed: the same SQL, evaluated by SQLite itself, returned as Arrow columns
    without a Python object per value (measured 2.9x the fetchall path on new-api's
    schema, docs/benchmarks.md)."""

    def __init__(self, source: Source) -> None:
        path = source.url
        try:
            self.conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False)
            self.conn.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
        except sqlite3.Error as exc:
            raise SourceError(f"cannot open SQLite database {path}: {exc}") from None
        self.arrow: Any = None
        try:
            import adbc_driver_sqlite.dbapi as adbc
        except ImportError:  # the sqlite3 path below reads the same rows
            return
        self.arrow = adbc.connect(f"file:{path}?mode=ro")

    def text_expr(self, column: str) -> str:
        # A text column of SQLite may hold a number: read as its text (a columnar reader
        # needs one type per column).
        return f"COALESCE(CAST({column} AS TEXT), '')"

    def logs_window(self, select: str, names: list[str], lo: int, hi: int) -> pa.Table:
        if self.arrow is None:
            return super().logs_window(select, names, lo, hi)
        sql = f'SELECT {select} FROM "logs" WHERE "id" > ? AND "id" <= ? ORDER BY "id"'
        cursor = self.arrow.cursor()
        try:
            cursor.execute(sql, (lo, hi))
            table = cursor.fetch_arrow_table()
        finally:
            cursor.close()
        schema = pa.schema([(n, pa.int64() if n in _READ_AS_INT else pa.string()) for n in names])
        return table.rename_columns(names).cast(schema)

    def close(self) -> None:
        if self.arrow is not None:
            self.arrow.close()
        super().close()

    def tables(self) -> set[str]:
        rows = self.rows("SELECT name FROM sqlite_master WHERE type = 'table'", ())
        return {r[0] for r in rows}

    def columns(self, table: str) -> set[str]:
        return {r[1] for r in self.rows(f"PRAGMA table_info({self.q(table)})", ())}

    def int_expr(self, column: str) -> str:
        return f"COALESCE(CAST({column} AS INTEGER), 0)"

    def rows(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        return list(self.conn.execute(sql, tuple(params)).fetchall())


class ServerReader(Reader):
    """A database server's reader: DB-API cursors, the tables of the connection's schema
    found in ``information_schema``."""

    placeholder = "%s"
    #: which of information_schema's rows belong to the connection's schema
    schema_condition: str

    def tables(self) -> set[str]:
        rows = self.rows(
            f"SELECT table_name FROM information_schema.tables WHERE {self.schema_condition}", ()
        )
        return {r[0] for r in rows}

    def columns(self, table: str) -> set[str]:
        rows = self.rows(
            "SELECT column_name FROM information_schema.columns "
            f"WHERE table_name = %s AND {self.schema_condition}",
            (table,),
        )
        return {r[0] for r in rows}

    def rows(self, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
        with self.conn.cursor() as cur:
            cur.execute(sql, tuple(params))
            return list(cur.fetchall())


class PostgresReader(ServerReader):
    schema_condition = "table_schema = ANY(current_schemas(false))"

    def __init__(self, source: Source) -> None:
        import psycopg

        url = source.url.replace("postgres://", "postgresql://", 1)
        try:
            self.conn = psycopg.connect(url, autocommit=True)
        except psycopg.Error as exc:
            raise SourceError(f"cannot connect to PostgreSQL {source.name}: {exc}") from None

    def logs_window(self, select: str, names: list[str], lo: int, hi: int) -> pa.Table:
        """``COPY ... TO STDOUT`` as CSV, parsed by pyarrow: no Python object per value."""
        import pyarrow.csv as csv

        sql = (
            f"COPY (SELECT {select} FROM logs WHERE id > %s AND id <= %s ORDER BY id) "
            "TO STDOUT WITH (FORMAT csv)"
        )
        buffer = io.BytesIO()
        with self.conn.cursor() as cur, cur.copy(sql, (lo, hi)) as copy:
            for chunk in copy:
                buffer.write(chunk)
        if buffer.tell() == 0:
            return rows_to_table([], names)
        buffer.seek(0)
        return csv.read_csv(
            buffer,
            read_options=csv.ReadOptions(column_names=names, block_size=1 << 24),
            parse_options=csv.ParseOptions(newlines_in_values=True),
            convert_options=csv.ConvertOptions(
                column_types={n: pa.int64() if n in _READ_AS_INT else pa.string() for n in names},
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )


class MysqlReader(ServerReader):
    quote = "`"
    schema_condition = "table_schema = DATABASE()"

    def __init__(self, source: Source) -> None:
        import pymysql

        parts = urlsplit(source.url)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        options: dict[str, Any] = {
            "host": parts.hostname or "localhost",
            "port": parts.port or 3306,
            "user": unquote(parts.username or "root"),
            "password": unquote(parts.password or ""),
            "database": parts.path.strip("/") or None,
            "charset": query.get("charset", "utf8mb4"),
            "autocommit": True,
        }
        if "unix_socket" in query:
            options["unix_socket"] = query["unix_socket"]
        try:
            self.conn = pymysql.connect(**options)
        except pymysql.MySQLError as exc:
            raise SourceError(f"cannot connect to MySQL {source.name}: {exc}") from None

    def int_expr(self, column: str) -> str:
        return f"COALESCE(CAST({column} AS SIGNED), 0)"

    def bool_expr(self, column: str) -> str:
        return f"CASE WHEN {column} <> 0 THEN 1 ELSE 0 END"


def open_reader(source: Source) -> Reader:
    readers: dict[str, Callable[[Source], Reader]] = {
        "sqlite": SqliteReader,
        "postgresql": PostgresReader,
        "mysql": MysqlReader,
    }
    return readers[source.kind](source)


# -- conversion ------------------------------------------------------------------------------


def to_engine(raw: pa.Table, channels: dict[int, str]) -> pa.Table:
    """The source's columns, typed for the engine, with ``channel_name`` filled in."""
    columns: dict[str, Any] = {}
    for name, kind, _default in LOG_COLUMNS:
        column = raw.column(name)
        if pa.types.is_boolean(kind):
            columns[name] = pc.not_equal(column, 0)
        elif kind != column.type:
            columns[name] = pc.cast(column, kind)  # overflow raises: no silent wrap-around
        else:
            columns[name] = column
    columns["channel_name"] = channel_names(
        columns["channel_id"], columns["channel_name"], channels
    )
    return pa.table(columns)


def channel_names(ids: Any, stored: Any, channels: dict[int, str]) -> Any:
    """The name of each row's channel from ``channels``; else what the row had."""
    if not channels:
        return stored
    known = pa.array(list(channels), pa.int64())
    names = pa.array(list(channels.values()), pa.string())
    position = pc.index_in(pc.cast(ids, pa.int64()), value_set=known)
    found = names.take(position)  # null where the id is unknown
    return pc.coalesce(found, stored)


# -- the import ------------------------------------------------------------------------------


@dataclass
class Progress:
    state: str  # "" (never imported) | "pending" | "done"
    batch_from: int
    batch_to: int
    rows: int


async def read_progress(store: Store, source: Source) -> Progress:
    rows = await store.query(
        "SELECT argMax(state, version), argMax(batch_from, version), argMax(batch_to, version),"
        " argMax(rows, version), count() FROM import_progress WHERE source = {source:String}",
        {"source": source.name},
    )
    state, lo, hi, done, seen = rows.rows[0]
    if not seen:
        return Progress("", 0, 0, 0)
    return Progress(str(state), int(lo), int(hi), int(done))


async def write_progress(store: Store, source: Source, progress: Progress) -> None:
    await store.insert(
        "import_progress",
        [
            [
                source.name,
                source.name,
                progress.state,
                progress.batch_from,
                progress.batch_to,
                progress.rows,
                time.time_ns(),
                int(time.time()),
            ]
        ],
        ("source", "url", "state", "batch_from", "batch_to", "rows", "version", "updated_at"),
        settings={"async_insert": 0},
    )


@dataclass
class Result:
    logs: int
    tokens: int
    seconds: float
    first_id: int
    last_id: int
    resumed_after: int


async def insert_window(store: Store, table: pa.Table, token: str) -> None:
    """One window of ids into ``logs``. Old history is sparse, so a window can span
    hundreds of days, and the engine refuses an insert that creates more than 100
    partitions (a day each): such a window goes in chunks of at most 90 days, each with
    a token of its own derived from the window's (a window of fewer days keeps the
    window's token, as before). The chunks are cut the same way on a resumed run, so a
    replayed window stores nothing twice."""
    chunks = day_chunks(table)
    if len(chunks) == 1:
        await insert_table(store, "logs", table, token)
        return
    for number, chunk in enumerate(chunks):
        await insert_table(store, "logs", chunk, f"{token}:days{number}")


def _close_opened(opening: asyncio.Future[Reader]) -> None:
    if not opening.cancelled() and opening.exception() is None:
        opening.result().close()


async def _opened(loop: asyncio.AbstractEventLoop, source: Source) -> Reader:
    """The source's reader, opened on a worker thread. A caller cancelled meanwhile (a
    follower stopping with the service) leaves the thread to finish opening it: the
    reader is then closed as soon as it is open, not left to the garbage collector with
    its connections."""
    opening = loop.run_in_executor(None, open_reader, source)
    try:
        return await asyncio.shield(opening)
    except asyncio.CancelledError:
        opening.add_done_callback(_close_opened)
        raise


async def run_import(
    store: Store,
    source: Source,
    *,
    batch_ids: int = DEFAULT_BATCH_IDS,
    progress: bool = True,
    tokens: bool = True,
    stop_after_batches: int | None = None,
) -> Result:
    """Import ``source`` into ``store``. ``stop_after_batches`` ends early (tests of resume)."""
    loop = asyncio.get_running_loop()
    reader = await _opened(loop, source)
    started = time.perf_counter()
    # the next window's read, running on a worker thread while the last one is inserted
    pending: asyncio.Future[pa.Table] | None = None
    try:
        tables = await loop.run_in_executor(None, reader.tables)
        if "logs" not in tables:
            raise SourceError(f"{source.name} has no logs table: not a new-api/one-api database")
        select, names = await loop.run_in_executor(None, reader.log_select)
        channels = await loop.run_in_executor(None, reader.channels)

        def read(lo: int, hi: int) -> pa.Table:
            return to_engine(reader.logs_window(select, names, lo, hi), channels)

        def token(lo: int, hi: int) -> str:
            return f"import:{source.fingerprint}:{lo}-{hi}"

        state = await read_progress(store, source)
        imported = state.rows
        if state.state == "pending":
            # The last run stopped inside this window: replay it under the same token.
            table = await loop.run_in_executor(None, read, state.batch_from, state.batch_to)
            await insert_window(store, table, token(state.batch_from, state.batch_to))
            imported += table.num_rows
            state = Progress("done", state.batch_from, state.batch_to, imported)
            await write_progress(store, source, state)
        resumed_after = state.batch_to
        top = int(await loop.run_in_executor(None, reader.scalar, "SELECT MAX(id) FROM logs") or 0)
        bottom = await loop.run_in_executor(
            None, reader.scalar, _id_query(reader, "MIN"), (resumed_after,)
        )
        lo = max(resumed_after, int(bottom or 1) - 1)
        total = await loop.run_in_executor(
            None, reader.scalar, _id_query(reader, "COUNT"), (resumed_after,)
        )
        windows = []
        while lo < top:
            hi = min(lo + batch_ids, top)
            windows.append((lo, hi))
            lo = hi
        if stop_after_batches is not None:
            windows = windows[:stop_after_batches]
        bar = progress_bar(int(total or 0), f"import {source.name}", progress)
        logs = 0
        first_id = last_id = 0
        try:
            for number, (lo, hi) in enumerate(windows):
                if pending is None:
                    pending = loop.run_in_executor(None, read, lo, hi)
                table = await pending
                pending = None
                if number + 1 < len(windows):
                    pending = loop.run_in_executor(None, read, *windows[number + 1])
                await write_progress(store, source, Progress("pending", lo, hi, imported))
                await insert_window(store, table, token(lo, hi))
                imported += table.num_rows
                logs += table.num_rows
                await write_progress(store, source, Progress("done", lo, hi, imported))
                if table.num_rows:
                    ids = table.column("id")
                    first_id = first_id or int(ids[0].as_py())
                    last_id = int(ids[-1].as_py())
                bar.update(table.num_rows)
        finally:
            if pending is not None:
                await asyncio.gather(pending, return_exceptions=True)
            bar.close()
        token_count = await _import_tokens(store, reader, source) if tokens else 0
        return Result(
            logs, token_count, time.perf_counter() - started, first_id, last_id, resumed_after
        )
    finally:
        if pending is not None and not pending.done():
            # cancelled while a read still runs on its thread: close when it ends
            pending.add_done_callback(lambda _: reader.close())
        else:
            reader.close()


def _id_query(reader: Reader, aggregate: str) -> str:
    what = "COUNT(*)" if aggregate == "COUNT" else f"{aggregate}({reader.q('id')})"
    return f"SELECT {what} FROM {reader.q('logs')} WHERE {reader.q('id')} > {reader.placeholder}"


async def _import_tokens(store: Store, reader: Reader, source: Source) -> int:
    from .tokenhash import hash_key

    loop = asyncio.get_running_loop()
    version = time.time_ns()
    batches = await loop.run_in_executor(None, lambda: list(reader.tokens()))
    count = 0
    for number, rows in enumerate(batches):
        ids, keys, names, users, status, deleted = (list(c) for c in zip(*rows, strict=True))
        table = arrow_table(
            columns.TOKENS,
            {
                "id": ids,
                "key_hash": [hash_key(str(k)) for k in keys],
                "name": [str(n) for n in names],
                "user_id": users,
                # a soft-deleted token finds nothing, like a disabled one
                "status": [2 if d else int(s) for s, d in zip(status, deleted, strict=True)],
                "version": [version] * len(ids),
            },
        )
        count += await insert_table(
            store, "tokens", table, f"import:{source.fingerprint}:tokens:{version}:{number}"
        )
    return count


def _args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--from",
        dest="source",
        required=True,
        metavar="URL",
        help="sqlite:///path/one-api.db, postgresql://user:pw@host:5432/db or "
        "mysql://user:pw@host:3306/db",
    )
    p.add_argument(
        "--batch-ids",
        type=int,
        default=DEFAULT_BATCH_IDS,
        help=f"ids per batch (default {DEFAULT_BATCH_IDS})",
    )
    p.add_argument("--source-name", help="name that identifies the source for resuming")
    p.add_argument("--no-tokens", action="store_true", help="skip the tokens table")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument(
        "--follow",
        action="store_true",
        help="after the import, keep importing new logs every GATELOG_FOLLOW_INTERVAL_SECONDS "
        "(and the tokens at least every 30 s) until stopped",
    )
    p.add_argument(
        "--metrics-port",
        type=int,
        metavar="PORT",
        help="with --follow: serve the follower's Prometheus metrics "
        "(gatelog_follow_lag_seconds, gatelog_follow_rows_total, "
        "gatelog_follow_rows_per_second) at http://GATELOG_HOST:PORT/metrics",
    )


def cmd_import(args: argparse.Namespace, settings: Settings) -> int:
    from .follow import Follower

    if args.batch_ids < 1:
        print("gatelog: --batch-ids must be positive", file=sys.stderr)
        return 2
    try:
        source = parse_source(args.source, args.source_name)
    except SourceError as exc:
        print(f"gatelog: {exc}", file=sys.stderr)
        return 2

    if args.metrics_port is not None and not (args.follow and 0 < args.metrics_port < 65536):
        print("gatelog: --metrics-port needs --follow and a port from 1 to 65535", file=sys.stderr)
        return 2
    if args.follow:
        interval = settings.follow_interval_seconds
        registry = None
        if args.metrics_port is not None:
            from prometheus_client import CollectorRegistry, start_http_server

            registry = CollectorRegistry()
            try:
                start_http_server(args.metrics_port, addr=settings.host, registry=registry)
            except OSError as exc:
                print(
                    f"gatelog: cannot serve metrics on port {args.metrics_port}: {exc.strerror}",
                    file=sys.stderr,
                )
                return 2

        async def follow(store: Store) -> None:
            follower = Follower(
                store,
                source,
                interval=interval,
                token_interval=settings.follow_tokens_interval_seconds,
                registry=registry,
            )
            task = asyncio.ensure_future(follower.run())
            # SIGTERM (an orchestrator's stop) and Ctrl-C end the follower between two
            # awaits; the engine is closed after it. A poll cut short is finished by the
            # next start from the import's progress state, nothing stored twice.
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(signum, task.cancel)
            with contextlib.suppress(asyncio.CancelledError):
                await task

        print(f"following {source.name} every {interval:g} s", flush=True)
        with_store(settings, follow, migrate=True)
        print(f"stopped following {source.name}", flush=True)
        return 0

    def work(store: Store) -> Awaitable[Result]:
        return run_import(
            store,
            source,
            batch_ids=args.batch_ids,
            progress=not args.no_progress,
            tokens=not args.no_tokens,
        )

    try:
        result = with_store(settings, work, migrate=True)
    except SourceError as exc:
        print(f"gatelog: {exc}", file=sys.stderr)
        return 1
    where = f" after id {result.resumed_after}" if result.resumed_after else ""
    rate = result.logs / max(result.seconds, 1e-9)
    print(
        f"imported {result.logs} logs{where} and {result.tokens} tokens from {source.name} "
        f"in {result.seconds:.1f} s ({rate:,.0f} rows/s)"
    )
    return 0


COMMAND = Command(
    "import", "import logs and tokens from a new-api / one-api database", cmd_import, _args
)
