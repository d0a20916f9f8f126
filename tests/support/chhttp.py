"""A ClickHouse HTTP interface served over chDB, for tests.

This is a test double of the *transport* only: it speaks enough of ClickHouse's HTTP protocol
for clickhouse-connect's (async) HTTP client, while every statement runs on a real chDB engine,
so SQL, types, parameters, settings and insert deduplication behave as the engine makes them.

Each request gets its own chDB handle on the same data path (cheap once the engine is up), so
URL settings (``SET``) and ``database`` (``USE``) never leak between requests, and requests run
in parallel on worker threads (chDB releases the GIL). Not supported: sessions (``session_id``
is ignored), external data tables, progress headers, streaming of large results.

Two things a real server does that chDB alone cannot show, for tests of the service:

- :meth:`ClickHouseHTTPServer.inject` makes chosen statements fail with a chosen engine
  code, either before the answer (an HTTP error status, as ClickHouse maps the code) or in
  the middle of it (status 200 and part of the rows sent, then the exception written into
  the stream, as a server does when a query fails while its result is being sent).
- ``users`` (see :func:`users_from_xml`, which reads ``deploy/clickhouse/users.d/``) makes
  the server check each request's user and password and the statement against that user's
  grants, answering ClickHouse's own codes (516 authentication failed, 497 access denied).
"""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import re
import secrets
import uuid
import xml.etree.ElementTree as ET
import zlib
from base64 import b64decode
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
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
# ClickHouse answers some error codes with other statuses than 500 (its
# exceptionCodeToHTTPStatus); everything else is a 500.
_HTTP_STATUS = (
    dict.fromkeys((6, 25, 26, 27, 36, 38, 41, 44, 53, 62, 72, 321, 427, 456), 400)
    | dict.fromkeys((46, 47, 50, 60, 73, 81, 115), 404)
    | dict.fromkeys((192, 193, 497, 516), 403)
    | {194: 401, 159: 408, 209: 503, 48: 501}
)
ACCESS_DENIED = 497
AUTHENTICATION_FAILED = 516
# The privilege a statement needs (the first pattern that matches its start), for grants.
_PRIVILEGES = [
    (re.compile(r"(SELECT|WITH|SHOW|DESC|DESCRIBE|EXISTS|EXPLAIN)\b"), "SELECT"),
    (re.compile(r"INSERT\b"), "INSERT"),
    (re.compile(r"CREATE\s+DATABASE\b"), "CREATE DATABASE"),
    (re.compile(r"CREATE\s+(TEMPORARY\s+)?TABLE\b"), "CREATE TABLE"),
    (re.compile(r"CREATE\s+(MATERIALIZED\s+)?VIEW\b"), "CREATE VIEW"),
    (re.compile(r"DELETE\s+FROM\b"), "ALTER DELETE"),
    # ClickHouse checks DROP PARTITION against ALTER DELETE.
    (re.compile(r"ALTER\s+TABLE\s+\S+(\s+ON\s+CLUSTER\s+\S+)?\s+(DELETE|DROP\s+PARTITION)\b"),
     "ALTER DELETE"),
    (re.compile(r"DROP\s+TABLE\b"), "DROP TABLE"),
    (re.compile(r"DROP\s+VIEW\b"), "DROP VIEW"),
    # other ALTERs by their first command (the schema never mixes kinds in one file)
    *((re.compile(rf"ALTER\s+TABLE\s+\S+(\s+ON\s+CLUSTER\s+\S+)?\s+{command}\b"),
       "ALTER " + command.replace("\\s+", " "))
      for command in (r"MODIFY\s+SETTING", r"ADD\s+COLUMN", r"MODIFY\s+COLUMN", r"ADD\s+INDEX",
                      r"ADD\s+PROJECTION", r"DROP\s+PROJECTION", r"MATERIALIZE\s+PROJECTION")),
]  # fmt: skip
_TARGET_RE = re.compile(
    r"(?:INTO|TABLE|VIEW|DATABASE|FROM|EXISTS)\s+(?:IF\s+(?:NOT\s+)?EXISTS\s+)?"
    r"(`[^`]+`|\w+)(?:\.(`[^`]+`|\w+))?",
    re.I,
)
_CONTENT_TYPES = {
    "TabSeparated": "text/tab-separated-values; charset=UTF-8",
    "JSON": "application/json; charset=UTF-8",
}


@dataclass
class _Outcome:
    body: bytes
    summary: dict[str, str]
    fmt: str | None  # output format, only for statements that return rows


@dataclass
class Fault:
    """A failure :meth:`ClickHouseHTTPServer.inject` plants: statements whose SQL matches
    ``match`` (a regex, searched) fail with ``code``; the first ``skip`` matching ones
    still succeed, then ``times`` fail (0: all). ``when`` is ``"before"`` (an error status,
    nothing sent) or ``"during"`` (200, part of the answer, then the exception in the
    stream: tagged as servers from 25.11 do, or with ``tagged=False`` plain text after the
    data as older ones do). ``hits`` counts the statements it failed."""

    code: int
    match: str = ""
    when: str = "before"
    skip: int = 0
    times: int = 1
    message: str = "injected by the test server"
    tagged: bool = True
    hits: int = 0
    seen: int = 0

    def claims(self, sql: str) -> bool:
        if not re.search(self.match, sql, re.S):
            return False
        self.seen += 1
        if self.seen <= self.skip or (self.times and self.hits >= self.times):
            return False
        self.hits += 1
        return True

    @property
    def text(self) -> str:
        return f"Code: {self.code}. DB::Exception: {self.message}. (INJECTED)"


@dataclass
class User:
    """A user the server knows: its password and what it was granted on which database
    (``privileges`` the statement kinds of ``_PRIVILEGES``; ``"ALL"`` for everything)."""

    password: str
    database: str = "*"
    privileges: frozenset[str] = frozenset({"ALL"})
    denied: list[str] = field(default_factory=list)  # statements refused, for tests


def users_from_xml(path: str | os.PathLike[str], passwords: Mapping[str, str]) -> dict[str, User]:
    """The users of a ClickHouse ``users.d`` file with their ``GRANT ... ON db.*`` grants;
    passwords (the file takes them from the environment) are given by name."""
    users: dict[str, User] = {}
    for node in ET.parse(path).getroot().iterfind("users/*"):
        privileges: set[str] = set()
        database = "*"
        for grant in node.iterfind("grants/query"):
            found = re.fullmatch(r"\s*GRANT\s+(.+?)\s+ON\s+(\w+|\*)\.\*\s*", grant.text or "")
            if found is None:
                raise ValueError(f"{path}: a grant this server cannot read: {grant.text!r}")
            privileges |= {p.strip().upper() for p in found.group(1).split(",")}
            database = found.group(2)
        users[node.tag] = User(passwords[node.tag], database, frozenset(privileges))
    return users


DEPLOY_USERS = Path(__file__).resolve().parents[2] / "deploy" / "clickhouse" / "users.d"


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
        self,
        db: str | os.PathLike[str] | Session | Connection,
        host: str = "127.0.0.1",
        users: Mapping[str, User] | None = None,
    ) -> None:
        self.host = host
        self.port = 0
        #: None: any user and password pass (and may do anything); else checked
        self.users = dict(users) if users is not None else None
        self.faults: list[Fault] = []
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

    def inject(self, code: int, **how: Any) -> Fault:
        """Fail statements with engine error ``code`` from now on (see :class:`Fault`)."""
        fault = Fault(code, **how)
        self.faults.append(fault)
        return fault

    def _fault_for(self, sql: str) -> Fault | None:
        for fault in self.faults:
            if fault.claims(sql):
                return fault
        return None

    def _authorize(self, request: web.Request, params: Mapping[str, str], sql: str) -> None:
        """Raise ClickHouse's error if the request's user may not run ``sql``."""
        if self.users is None:
            return
        name = request.headers.get("X-ClickHouse-User") or params.get("user") or "default"
        password = request.headers.get("X-ClickHouse-Key") or params.get("password") or ""
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            name, _, password = b64decode(auth[6:]).decode().partition(":")
        user = self.users.get(name)
        if user is None or not secrets.compare_digest(user.password, password):
            raise ValueError(
                f"Code: {AUTHENTICATION_FAILED}. DB::Exception: {name}: Authentication failed: "
                "password is incorrect, or there is no user with such name."
            )
        if "ALL" in user.privileges:
            return
        statement = re.sub(r"^(\s|--[^\n]*\n|/\*.*?\*/)*", "", sql, flags=re.S)
        need = next((p for rx, p in _PRIVILEGES if rx.match(statement.upper())), None)
        target = _TARGET_RE.search(statement)
        database = params.get("database") or "default"
        if target is not None and (target.group(2) or need == "CREATE DATABASE"):
            database = target.group(1).strip("`")  # db.table, or the database created
        if need == "SELECT" and (database == "system" or target is None):
            return  # reading system tables, or no table at all, needs no grant
        if need in user.privileges and user.database in ("*", database):
            return
        user.denied.append(statement)
        raise ValueError(
            f"Code: {ACCESS_DENIED}. DB::Exception: {name}: Not enough privileges. To execute "
            f"this query, it's necessary to have the grant {need or statement.split()[0]} ON "
            f"{database}.*"
        )

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
        fault: Fault | None = None
        try:
            body = _decode_body(body, request.headers.get("Content-Encoding", "").lower())
            sql = b"\n".join(part for part in (params.get("query", "").encode(), body) if part)
            if not sql.strip():
                return web.Response(text="Ok.\n", headers=headers)
            text = sql.decode(errors="replace")
            self._authorize(request, params, text)
            fault = self._fault_for(text)
            if fault is not None and fault.when == "before":
                raise ValueError(fault.text)
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
        if fault is not None:  # during: part of the answer, then the exception
            return await self._fail_during(request, fault, headers, payload, params, accepted)
        # enable_http_compression defaults to 1 in this engine (and on recent servers).
        if payload and params.get("enable_http_compression", "1") != "0":
            if "lz4" in accepted:
                payload, headers["Content-Encoding"] = lz4.frame.compress(payload), "lz4"
            elif "gzip" in accepted:
                payload, headers["Content-Encoding"] = gzip.compress(payload), "gzip"
        return web.Response(body=payload, headers=headers)

    async def _fail_during(
        self,
        request: web.Request,
        fault: Fault,
        headers: dict[str, str],
        payload: bytes,
        params: Mapping[str, str],
        accepted: str,
    ) -> web.StreamResponse:
        """Status 200 and the first half of the answer, flushed; then the exception."""
        tag = secrets.token_hex(8) if fault.tagged else ""
        if tag:
            headers["X-ClickHouse-Exception-Tag"] = tag
            message = fault.text + "\n"
            error = (
                f"__exception__\r\n{tag}\r\n{message}{len(message)} {tag}\r\n__exception__\r\n"
            ).encode()
        else:
            error = ("\n" + fault.text + "\n").encode()
        head, tail = payload[: len(payload) // 2], error
        compress: Callable[[bytes, bool], bytes] | None = None
        if params.get("enable_http_compression", "1") != "0" and "lz4" in accepted:
            headers["Content-Encoding"] = "lz4"
            packer = lz4.frame.LZ4FrameCompressor(auto_flush=True)  # one frame, sent as written
            started = [False]

            def compress(data: bytes, last: bool) -> bytes:
                out = b"" if started[0] else packer.begin()
                started[0] = True
                return out + packer.compress(data) + (packer.flush() if last else b"")

        response = web.StreamResponse(headers=headers)
        await response.prepare(request)
        await response.write(compress(head, False) if compress else head)
        await response.write(compress(tail, True) if compress else tail)
        await response.write_eof()
        return response

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
