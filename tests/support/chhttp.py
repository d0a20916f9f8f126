"""A ClickHouse HTTP interface served over chDB, for tests.

This is a test double of the *transport* only: it speaks enough of ClickHouse's HTTP protocol
for clickhouse-connect's (async) HTTP client, while every statement runs on a real chDB engine,
so SQL, types, parameters, settings and insert deduplication behave as the engine makes them.

Each request gets its own chDB handle on the same data path (cheap once the engine is up), so
URL settings (``SET``) and ``database`` (``USE``) never leak between requests, and requests run
in parallel on worker threads (chDB releases the GIL). Not supported: sessions (``session_id``
is ignored), external data tables, progress headers, streaming of large results.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import re
import uuid
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import lz4.frame
from aiohttp import web
from chdb.session import Session
from chdb.state.sqlitelike import Connection

# URL parameters that steer the HTTP layer (or bind query parameters) rather than being settings.
_NOT_A_SETTING_RE = re.compile(
    r"query|database|default_format|user|password|quota_key|role|query_id|session_\w+"
    r"|(de)?compress|buffer_size|wait_end_of_query|client_protocol_version"
    r"|enable_http_compression|param_\w+"
)
# The data of `INSERT ... FORMAT X` starts after the format name and at most one newline.
_INSERT_RE = re.compile(rb"\s*INSERT\b.*?(\bFORMAT\s+(\w+))[ \t]*(?:\r?\n)?", re.I | re.S)
_OUTPUT_FORMAT_RE = re.compile(r"\bFORMAT\s+(\w+)[\s;]*$", re.I)
_RETURNS_ROWS_RE = re.compile(
    r"(?:\s|--[^\n]*\n|/\*.*?\*/|\()*(SELECT|WITH|SHOW|DESC|DESCRIBE|EXISTS|EXPLAIN|CHECK)\b",
    re.I | re.S,
)
_CODE_RE = re.compile(r"Code: (\d+)\.")
# ClickHouse answers some error codes with 4xx (see HTTPHandler); everything else is a 500.
_HTTP_STATUS = dict.fromkeys((6, 26, 27, 36, 46, 47, 53, 62, 115, 456), 400) | {
    60: 404,
    81: 404,
    516: 403,
}
_CONTENT_TYPES = {
    "TabSeparated": "text/tab-separated-values; charset=UTF-8",
    "JSON": "application/json; charset=UTF-8",
}


@dataclass
class _Outcome:
    body: bytes
    summary: dict[str, str]
    fmt: str | None  # output format, only for statements that return rows


def _decode_body(data: bytes, encoding: str) -> bytes:
    """Undo a request Content-Encoding. clickhouse-connect sends one LZ4 frame per block."""
    if encoding in ("", "identity"):
        return data
    if encoding == "lz4":
        parts = []
        while data:
            decoder = lz4.frame.LZ4FrameDecompressor()
            parts.append(decoder.decompress(data))
            if not decoder.eof:
                raise ValueError("Code: 271. DB::Exception: truncated LZ4 frame in request body")
            data = decoder.unused_data
        return b"".join(parts)
    if encoding == "gzip":
        return gzip.decompress(data)
    if encoding == "deflate":
        return zlib.decompress(data)
    if encoding == "zstd":
        from backports import zstd  # installed with clickhouse-connect on Python < 3.14

        return zstd.decompress(data)
    raise ValueError(f"Code: 1. DB::Exception: Unknown Content-Encoding: {encoding}")


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _connect_target(db: Session | Connection) -> str:
    """The string to open more handles on the engine an existing handle belongs to."""
    path: str = db.query("SELECT getServerSetting('path')", "TabSeparated").bytes().decode().strip()
    try:
        Connection(path).close()
    except Exception:  # an in-memory engine reports a temporary directory as its path
        return ":memory:"
    return path


class ClickHouseHTTPServer:
    """Serve ClickHouse's HTTP interface on 127.0.0.1, executing on chDB.

    ``db`` is a data path (opened here and kept open until :meth:`close`), or an open chDB
    ``Session``/``Connection`` owned by the caller. :meth:`start` and :meth:`stop` may be called
    repeatedly; after the first start the same port is reused, to simulate an engine outage.
    """

    def __init__(
        self, db: str | os.PathLike[str] | Session | Connection, host: str = "127.0.0.1"
    ) -> None:
        self.host = host
        self.port = 0
        self._owned: Connection | None = None
        if isinstance(db, (str, os.PathLike)):
            self._target = os.fspath(db)
            self._owned = Connection(self._target)  # keeps the engine up between requests
        else:
            self._target = _connect_target(db)
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self, port: int | None = None) -> int:
        """Listen on ``port`` (default: the previous one, or an ephemeral one); return it."""
        if self._runner is not None:
            raise RuntimeError("server already started")
        app = web.Application(client_max_size=1 << 31)
        app.router.add_get("/ping", self._ping)
        app.router.add_route("*", "/", self._handle)
        # Keep request bodies as sent: Content-Encoding is handled here, incl. lz4.
        runner = web.AppRunner(app, auto_decompress=False, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        try:
            site = web.TCPSite(
                runner, self.host, self.port if port is None else port, reuse_address=True
            )
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.port = int(runner.addresses[0][1])
        return self.port

    async def stop(self) -> None:
        """Stop listening and drop open connections; the engine and its data stay."""
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    def close(self) -> None:
        """Release the handle opened by the constructor (after :meth:`stop`)."""
        if self._owned is not None:
            self._owned.close()
            self._owned = None

    async def __aenter__(self) -> ClickHouseHTTPServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
        self.close()

    async def _ping(self, request: web.Request) -> web.Response:
        return web.Response(text="Ok.\n")

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        params: dict[str, str] = dict(request.query)
        body = b""
        if request.content_type == "multipart/form-data":  # form-encoded query and parameters
            form = await request.post()
            params.update({k: v for k, v in form.items() if isinstance(v, str)})
        else:
            body = await request.content.read()
        query_id = params.get("query_id") or str(uuid.uuid4())
        headers = {"X-ClickHouse-Query-Id": query_id}
        try:
            body = _decode_body(body, request.headers.get("Content-Encoding", "").lower())
            sql = b"\n".join(part for part in (params.get("query", "").encode(), body) if part)
            if not sql.strip():
                return web.Response(text="Ok.\n", headers=headers)
            out = await asyncio.to_thread(self._execute, sql, params)
        except Exception as ex:  # every engine error becomes an HTTP error
            message = str(ex)
            match = _CODE_RE.search(message)
            code = int(match.group(1)) if match else 1001
            text = message[match.start() :] if match else f"Code: 1001. DB::Exception: {message}"
            headers["X-ClickHouse-Exception-Code"] = str(code)
            return web.Response(
                status=_HTTP_STATUS.get(code, 500),
                headers=headers,
                body=text.rstrip("\n").encode() + b"\n",
                content_type="text/plain",
                charset="utf-8",
            )
        headers["X-ClickHouse-Summary"] = json.dumps(out.summary)
        headers["Content-Type"] = _CONTENT_TYPES.get(out.fmt or "", "application/octet-stream")
        if out.fmt is not None:
            headers["X-ClickHouse-Format"] = out.fmt
        payload = out.body
        accepted = request.headers.get("Accept-Encoding", "")
        # enable_http_compression defaults to 1 in this engine (and on recent servers).
        if payload and params.get("enable_http_compression", "1") != "0":
            if "lz4" in accepted:
                payload, headers["Content-Encoding"] = lz4.frame.compress(payload), "lz4"
            elif "gzip" in accepted:
                payload, headers["Content-Encoding"] = gzip.compress(payload), "gzip"
        return web.Response(body=payload, headers=headers)

    def _execute(self, sql: bytes, params: Mapping[str, str]) -> _Outcome:
        """Run one request's statement on a fresh handle (in a worker thread)."""
        binds = {k[6:]: v for k, v in params.items() if k.startswith("param_")}
        settings = {k: v for k, v in params.items() if not _NOT_A_SETTING_RE.fullmatch(k)}
        conn = Connection(self._target)
        try:
            for name, value in settings.items():
                if not re.fullmatch(r"\w+", name):
                    raise ValueError(f"Code: 115. DB::Exception: Unknown setting '{name}'")
                conn.query(f"SET {name} = {_quote(value)}")
            if params.get("database"):
                conn.query("USE `" + params["database"].replace("`", "\\`") + "`")
            insert = _INSERT_RE.match(sql)
            if insert is not None:
                query, fmt = sql[: insert.start(1)].decode(), insert.group(2).decode()
                inserter: Any = conn.send_insert(query, fmt)
                with inserter:
                    inserter.append(sql[insert.end() :])
                    done = inserter.finish()
                summary = _summary((0, 0), (done.rows_written, done.bytes_written), done.elapsed)
                return _Outcome(b"", summary, None)
            text = sql.decode()
            fmt_match = _OUTPUT_FORMAT_RE.search(text)
            fmt = fmt_match.group(1) if fmt_match else params.get("default_format", "TabSeparated")
            res: Any = conn.query(text, fmt, params=binds)
            read = (res.rows_read(), res.bytes_read())
            summary = _summary(read, (res.rows_written(), res.bytes_written()), res.elapsed())
            rows = _RETURNS_ROWS_RE.match(text) is not None
            return _Outcome(res.bytes(), summary, fmt if rows else None)
        finally:
            conn.close()


def _summary(read: tuple[int, int], written: tuple[int, int], elapsed: float) -> dict[str, str]:
    keys = ("read_rows", "read_bytes", "written_rows", "written_bytes")
    counts = {key: str(value) for key, value in zip(keys, (*read, *written), strict=True)}
    return counts | {"elapsed_ns": str(int(elapsed * 1e9))}
