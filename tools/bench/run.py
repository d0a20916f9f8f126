"""The benchmark suite: ``python -m tools.bench.run [--rows N] [--quick]`` (or ``python -m service
bench``).

On generated data (30 days by default) it measures, in one run:

1. every endpoint of this build through real HTTP against ``python -m service serve``
   (a subprocess on the same data): median, p95 and p99 latency with one client and with
   16 concurrent clients;
2. the engine's own time: inside each request (a ``Server-Timing`` header, see
   ``tools/bench/serve.py``), so the service's overhead (HTTP, auth, JSON) is latency minus that,
   per request; and in-process with the service's own query functions, the same way as
   the baseline below;
3. the same question asked of new-api's own ClickHouse design (``logs_newapi``: monthly
   partitions, ``ORDER BY (created_at, request_id)``, no skip indexes, no rollups) with
   the SQL new-api sends, on the same engine and the same rows, reported as a ratio;
4. ingest rows/s through ``POST /api/internal/logs`` and through ``python -m service
   import`` from a new-api SQLite database;
5. stat latency over 1, 7 and 30 days, and the delete of a month of logs (partition drops
   against new-api's ``ALTER TABLE ... DELETE``).

chDB locks a data directory to one process, so each phase that opens the engine runs in
its own process, one after the other: generate, engine timings, the service, the
import (into a fresh directory), the delete. Results go to ``bench/results/`` as JSON and
a markdown table with the machine described.

Cases live in one table (:data:`CASES`); an endpoint that this build does not answer
(404/405) is reported as absent, so cases for endpoints still on other branches can sit
in the table already.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

# A checkout's root (results and data under bench/ there); an installed copy works in the cwd.
_CHECKOUT = Path(__file__).resolve().parents[2]
ROOT = _CHECKOUT if (_CHECKOUT / "schema").is_dir() else Path.cwd()
RESULTS = ROOT / "bench" / "results"
SECRET = "bench-secret-" + "x" * 32
DAY = 86400


# -- what the run is about -------------------------------------------------------------------


@dataclass
class Plan:
    rows: int
    days: int
    seed: int
    end: int
    data_dir: str
    repeats: int  # sequential requests per case (one client)
    concurrent_requests: int  # requests per client with 16 clients
    clients: int
    engine_repeats: int
    ingest_rows: int
    ingest_batch: int
    import_rows: int
    quick: bool


@dataclass
class Context:
    """Who and what the cases ask about, derived from the generator's world."""

    end: int
    heavy_user: int
    heavy_username: str
    typical_user: int
    typical_username: str
    token_id: int
    token_key: str
    token_user: int


def context_of(plan: Plan) -> Context:
    from tools.generate import Spec, World, token_key

    world = World(Spec(plan.rows, plan.days, plan.seed, plan.end))
    order = np.argsort(-world.user_p)
    heavy = int(order[0])
    typical = int(order[len(order) // 2])
    # the first enabled token of the busiest user that has one (its busiest token)
    owner, token = heavy, int(world.token_first[heavy])
    for user in order.tolist():
        first = int(world.token_first[user])
        enabled = [t for t in range(first, first + int(world.token_count[user]))
                   if world.token_status[t] == 1]  # fmt: skip
        if enabled:
            owner, token = int(user), enabled[0]
            break
    return Context(
        end=world.spec.end,
        heavy_user=heavy + 1,
        heavy_username=world.usernames[heavy],
        typical_user=typical + 1,
        typical_username=world.usernames[typical],
        token_id=token + 1,
        token_key=token_key(plan.seed, token + 1),
        token_user=owner + 1,
    )


# -- the cases -------------------------------------------------------------------------------

Engine = Callable[[Any, Context], Awaitable[Any]]


@dataclass
class Case:
    name: str
    what: str
    path: Callable[[Context], str]  # HTTP path and query
    role: str  # admin | user | public
    engine: Engine | None  # this service's query, in-process
    newapi: str | None  # key of bench.newapi.QUERIES
    newapi_params: Callable[[Context], dict[str, Any]] = lambda ctx: {}
    scans: bool = False  # new-api's design scans for this one (target: 10x)


def _filter(**fields: Any) -> Any:
    from service.params import LogFilter

    return LogFilter(**fields)


async def _list(store: Any, flt: Any, fields: str, size: int = 20, page: int = 1) -> Any:
    from service.logs import ADMIN_FIELDS, USER_FIELDS, list_page
    from service.params import Page

    chosen = ADMIN_FIELDS if fields == "admin" else USER_FIELDS
    return await list_page(store, flt, Page(page, size), chosen, user_view=fields != "admin")


async def _search(store: Any, flt: Any, keyword: str, fields: str) -> Any:
    from service.logs import ADMIN_FIELDS, USER_FIELDS, search
    from service.params import Page

    chosen = ADMIN_FIELDS if fields == "admin" else USER_FIELDS
    return await search(store, flt, keyword, Page(1, 100), chosen, user_view=fields != "admin")


async def _token(store: Any, ctx: Context) -> Any:
    from service.logs import find_token, token_logs
    from service.params import Page
    from service.tokenhash import hash_key

    token = await find_token(store, hash_key(ctx.token_key))
    return await token_logs(store, token or {"id": 0, "user_id": 0}, Page(1, 100))


async def _stat(store: Any, ctx: Context, days: int, user: int | None) -> Any:
    """The stat as the endpoint answers it (service.stats: the rollup levels), at the
    data's end; a user's stat with its all-time and today figures."""
    from service.stats import self_stat, stat

    flt = _filter(start=ctx.end - days * DAY, end=ctx.end, type=2)
    if user is None:
        return await stat(store, flt, ctx.end)
    flt.user_id = user
    return await self_stat(store, flt, user, ctx.end, "UTC")


def _range(days: int) -> Callable[[Context], str]:
    return lambda ctx: f"start_timestamp={ctx.end - days * DAY}&end_timestamp={ctx.end}"


def _stat_params(days: int, who: str = "") -> Callable[[Context], dict[str, Any]]:
    def params(ctx: Context) -> dict[str, Any]:
        out: dict[str, Any] = {"start": ctx.end - days * DAY, "end": ctx.end,
                               "recent": ctx.end - 60}  # fmt: skip
        if who:
            out["username"] = ctx.heavy_username
        return out

    return params


CASES: list[Case] = [
    Case("list_all", "admin list, newest 20, no filter", lambda c: "/api/log/?p=1&page_size=20",
         "admin", lambda s, c: _list(s, _filter(), "admin"), "list_all"),
    Case("list_all_p50", "admin list, page 50 (20 a page), no filter",
         lambda c: "/api/log/?p=50&page_size=20", "admin",
         lambda s, c: _list(s, _filter(), "admin", page=50), "list_all_p50"),
    Case("list_all_filtered", "admin list: consume, one model, last day",
         lambda c: f"/api/log/?type=2&model_name=gpt-4o&{_range(1)(c)}", "admin",
         lambda s, c: _list(s, _filter(type=2, model_name="gpt-4o", start=c.end - DAY,
                                       end=c.end), "admin"),
         "list_all_filtered",
         lambda c: {"type": 2, "model": "gpt-4o", "start": c.end - DAY, "end": c.end}),
    Case("list_self_heavy", "user list, the busiest user, newest 20", lambda c: "/api/log/self",
         "user", lambda s, c: _list(s, _filter(user_id=c.heavy_user), "user"), "list_self",
         lambda c: {"user": c.heavy_user}, scans=True),
    Case("list_self_typical", "user list, a median user, newest 20", lambda c: "/api/log/self",
         "typical", lambda s, c: _list(s, _filter(user_id=c.typical_user), "user"), "list_self",
         lambda c: {"user": c.typical_user}, scans=True),
    Case("list_self_7d", "user list, busiest user, last 7 days",
         lambda c: f"/api/log/self?{_range(7)(c)}", "user",
         lambda s, c: _list(s, _filter(user_id=c.heavy_user, start=c.end - 7 * DAY, end=c.end),
                            "user"),
         "list_self_range",
         lambda c: {"user": c.heavy_user, "start": c.end - 7 * DAY, "end": c.end}, scans=True),
    Case("search_type", "admin search by type (keyword 'error')",
         lambda c: "/api/log/search?keyword=error", "admin",
         lambda s, c: _search(s, _filter(), "error", "admin"), "search",
         lambda c: {"type": 5, "prefix": "error%"}),
    Case("search_text", "admin search by text ('rate limit'; new-api: prefix only)",
         lambda c: "/api/log/search?keyword=rate%20limit", "admin",
         lambda s, c: _search(s, _filter(), "rate limit", "admin"), "search",
         lambda c: {"type": -1, "prefix": "rate limit%"}),
    Case("search_self", "user search by type (consume), busiest user",
         lambda c: "/api/log/self/search?keyword=2", "user",
         lambda s, c: _search(s, _filter(user_id=c.heavy_user), "2", "user"), "search_self",
         lambda c: {"user": c.heavy_user, "type": 2}, scans=True),
    Case("token_lookup", "public token lookup, 100 newest",
         lambda c: f"/api/log/token?key=sk-{c.token_key}&page_size=100", "public",
         _token, "token", lambda c: {"token": c.token_id}, scans=True),
    Case("stat_1d", "admin stat, last day", lambda c: f"/api/log/stat?type=2&{_range(1)(c)}",
         "admin", lambda s, c: _stat(s, c, 1, None), "stat", _stat_params(1)),
    Case("stat_7d", "admin stat, last 7 days", lambda c: f"/api/log/stat?type=2&{_range(7)(c)}",
         "admin", lambda s, c: _stat(s, c, 7, None), "stat", _stat_params(7)),
    Case("stat_30d", "admin stat, last 30 days",
         lambda c: f"/api/log/stat?type=2&{_range(30)(c)}", "admin",
         lambda s, c: _stat(s, c, 30, None), "stat", _stat_params(30), scans=True),
    Case("self_stat_30d", "user stat, busiest user, 30 days",
         lambda c: f"/api/log/self/stat?type=2&{_range(30)(c)}", "user",
         lambda s, c: _stat(s, c, 30, c.heavy_user), "stat_self", _stat_params(30, "self"),
         scans=True),
]  # fmt: skip


# -- phases that open the engine (each in its own process) ----------------------------------


async def _timed(call: Callable[[], Awaitable[Any]], repeats: int) -> list[float]:
    await call()  # warm: first touch of the parts and marks
    out = []
    for _ in range(repeats):
        started = time.perf_counter()
        await call()
        out.append((time.perf_counter() - started) * 1000)
    return out


async def engine_phase(plan: Plan, ctx: Context) -> dict[str, Any]:
    from service.migrate import migrate
    from service.store import ChdbStore
    from tools.bench import newapi

    # Both designs as a long-running server has them: the engine's default settings (the
    # query condition cache on), every table's parts merged (see settle()).
    store = ChdbStore(plan.data_dir)
    engine_store = store
    try:
        await migrate(engine_store)
        # every pool thread opens its engine handle once: not inside a timing
        await asyncio.gather(*(store.query("SELECT 1") for _ in range(32)))
        await drop_ingested(store, ctx)
        have = (await store.query(f"SELECT count() FROM {newapi.CLICKHOUSE_TABLE}")).scalar() \
            if await _exists(store, newapi.CLICKHOUSE_TABLE) else -1  # fmt: skip
        rows = (await store.query("SELECT count() FROM logs")).scalar()
        if rows != plan.rows:
            raise RuntimeError(f"{plan.data_dir} holds {rows} logs, not {plan.rows}: remove it")
        if have != rows:
            await store.command(f"DROP TABLE IF EXISTS {newapi.CLICKHOUSE_TABLE}")
            await store.command(newapi.CLICKHOUSE_DDL)
            await store.command(
                newapi.CLICKHOUSE_FILL, settings={"max_partitions_per_insert_block": 0}
            )
        settled = await settle(store)
        out: dict[str, Any] = {"rows": rows, "cases": {}, "settle": settled,
                               "tables": await table_sizes(store)}  # fmt: skip
        for case in _progress(CASES, "engine timings", plan):
            entry: dict[str, Any] = {}
            if case.engine is not None:
                engine: Engine = case.engine

                async def ours(engine: Engine = engine) -> Any:
                    return await engine(store, ctx)

                entry["gatelog"] = await _timed(ours, plan.engine_repeats)
            if case.newapi is not None:
                statements = newapi.QUERIES[case.newapi]
                params = case.newapi_params(ctx)

                async def baseline(statements: tuple[str, ...] = statements,
                                   params: dict[str, Any] = params) -> Any:  # fmt: skip
                    return await asyncio.gather(*(store.query(sql, params) for sql in statements))

                entry["newapi"] = await _timed(baseline, plan.engine_repeats)
            out["cases"][case.name] = entry
        return out
    finally:
        await engine_store.close()


async def settle(store: Any) -> dict[str, Any]:
    """Merge every table's parts, as a long-running server's background merges have them
    after a bulk load: ``OPTIMIZE TABLE ... FINAL`` on each MergeTree table (new-api's
    design and gatelog's own raw table and rollups alike) that has a partition of more
    than one active part. Returns the seconds it took and the active parts left."""
    started = time.perf_counter()
    found = await store.query(
        "SELECT table FROM system.parts WHERE database = currentDatabase() AND active "
        "GROUP BY table, partition_id HAVING count() > 1"
    )
    tables = sorted({str(t) for (t,) in found.rows} - {"schema_migrations"})
    for table in tables:
        await store.command(f"OPTIMIZE TABLE `{table}` FINAL")
    parts = await store.query(
        "SELECT table, count(), uniqExact(partition_id) FROM system.parts "
        "WHERE database = currentDatabase() AND active GROUP BY table ORDER BY table"
    )
    return {"seconds": time.perf_counter() - started, "optimized": tables,
            "parts": {str(t): {"parts": int(n), "partitions": int(p)}
                      for t, n, p in parts.rows}}  # fmt: skip


async def table_sizes(store: Any) -> dict[str, dict[str, int]]:
    """Rows and bytes on disk (compressed) of each table, from the active parts."""
    found = await store.query(
        "SELECT table, sum(rows), sum(bytes_on_disk), sum(data_uncompressed_bytes) "
        "FROM system.parts WHERE database = currentDatabase() AND active "
        "GROUP BY table ORDER BY table"
    )
    return {str(t): {"rows": int(r), "bytes_on_disk": int(b), "uncompressed": int(u)}
            for t, r, b, u in found.rows}  # fmt: skip


async def _exists(store: Any, table: str) -> bool:
    found = await store.query(
        "SELECT count() FROM system.tables WHERE database = currentDatabase() "
        "AND name = {t:String}",
        {"t": table},
    )
    return bool(found.scalar())


def ingest_day(ctx: Context) -> int:
    """Ingested rows go two days after the data's end: a partition of their own."""
    return (ctx.end // DAY + 3) * DAY


async def drop_ingested(store: Any, ctx: Context) -> None:
    """Remove what the HTTP ingest added, so the data is the same on the next run."""
    parts = await store.query(
        "SELECT DISTINCT table, partition_id FROM system.parts "
        "WHERE database = currentDatabase() AND active AND match(partition_id, '^[0-9]{8}$') "
        "AND partition_id >= {after:String}",
        {"after": time.strftime("%Y%m%d", time.gmtime((ctx.end // DAY + 1) * DAY))},
    )
    # the raw table and every rollup fed from it (their day partitions share the ids)
    for table, partition in parts.rows:
        await store.command(f"ALTER TABLE `{table}` DROP PARTITION ID {{p:String}}",
                            {"p": partition})  # fmt: skip
    # The day levels partitioned by month hold those days beside the data's own: delete
    # their rows (left there, they made every total and the page bounds of the next run
    # count the ingested rows that `logs` no longer has).
    from service.stats import ROLLUPS

    after = (ctx.end // DAY + 1) * DAY
    for rollup in ROLLUPS:
        if rollup.by_month:
            await store.command(
                f"ALTER TABLE `{rollup.table}` DELETE "
                f"WHERE {rollup.time} >= toDateTime({{after:UInt32}}, 'UTC')",
                {"after": after},
                settings={"mutations_sync": 2},
            )


async def _copy(store: Any, table: str, copy: str) -> None:
    """``copy``: the same table with the same parts (hard links), to delete from."""
    await store.command(f"DROP TABLE IF EXISTS {copy}")
    await store.command(f"CREATE TABLE {copy} AS {table}")
    parts = await store.query(
        "SELECT DISTINCT partition_id FROM system.parts WHERE database = currentDatabase() "
        "AND table = {t:String} AND active",
        {"t": table},
    )
    for (partition,) in parts.rows:
        await store.command(
            f"ALTER TABLE {copy} ATTACH PARTITION ID {{p:String}} FROM {table}", {"p": partition}
        )


async def delete_phase(plan: Plan, ctx: Context) -> dict[str, Any]:
    """Delete everything before the start of the data's last day (about a month of logs)
    from copies of both tables: gatelog drops whole day partitions; new-api's design runs
    its ``ALTER TABLE ... DELETE`` mutation. The bench's data stays as it was."""
    from service.settings import Settings
    from service.store import ChdbStore
    from tools.bench import newapi

    store = ChdbStore(plan.data_dir)
    ours, theirs = "logs_bench_delete", f"{newapi.CLICKHOUSE_TABLE}_bench_delete"
    try:
        await drop_ingested(store, ctx)
        await _copy(store, "logs", ours)
        await _copy(store, newapi.CLICKHOUSE_TABLE, theirs)
        cutoff = (ctx.end - 1) // DAY * DAY
        params = {"cutoff": cutoff}
        count_ours = (
            f"SELECT countIf(created_at < toDateTime({{cutoff:UInt32}}, 'UTC')) FROM {ours}"
        )
        count_theirs = f"SELECT countIf(created_at < {{cutoff:Int64}}) FROM {theirs}"
        before = (await store.query(count_ours, params)).scalar()
        before_newapi = (await store.query(count_theirs, params)).scalar()
        started = time.perf_counter()
        parts = await store.query(
            "SELECT DISTINCT partition_id FROM system.parts WHERE database = currentDatabase() "
            "AND table = {t:String} AND active AND max_time < toDateTime({cutoff:UInt32}, 'UTC')",
            {**params, "t": ours},
        )
        # several partitions per ALTER (the service's delete_partitions_per_statement)
        ids = [str(p) for (p,) in parts.rows]
        per = Settings().delete_partitions_per_statement
        for first in range(0, len(ids), per):
            batch = ids[first : first + per]
            drops = ", ".join(f"DROP PARTITION ID {{p{i}:String}}" for i in range(len(batch)))
            await store.command(
                f"ALTER TABLE {ours} {drops}", {f"p{i}": p for i, p in enumerate(batch)}
            )
        took = time.perf_counter() - started
        started = time.perf_counter()
        statement = newapi.QUERIES["delete"][0].replace(newapi.CLICKHOUSE_TABLE, theirs)
        await store.command(statement, {"before": cutoff}, settings={"mutations_sync": 2})
        took_newapi = time.perf_counter() - started
        left = (await store.query(count_ours, params)).scalar()
        left_newapi = (await store.query(count_theirs, params)).scalar()
        return {
            "cutoff": cutoff,
            "days": len(parts.rows),
            "rows": before,
            "rows_newapi": before_newapi,
            "left": left,
            "left_newapi": left_newapi,
            "gatelog_s": took,
            "newapi_s": took_newapi,
        }
    finally:
        for table in (ours, theirs):
            await store.command(f"DROP TABLE IF EXISTS {table}")
        await store.close()


# -- the service over HTTP ------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def headers_for(role: str, ctx: Context) -> dict[str, str]:
    from service.auth import ROLE_ADMIN, ROLE_USER, issue_token
    from service.settings import Settings

    settings = Settings(jwt_secret=SECRET)
    if role == "public":
        return {}
    if role == "admin":
        token = issue_token(settings, sub=1, username="root", role=ROLE_ADMIN, ttl=86400)
    elif role == "writer":
        token = issue_token(settings, sub=0, username="gateway", role=ROLE_USER,
                            scope="logs:write", ttl=86400)  # fmt: skip
    else:
        user, name = ((ctx.typical_user, ctx.typical_username) if role == "typical"
                      else (ctx.heavy_user, ctx.heavy_username))  # fmt: skip
        token = issue_token(settings, sub=user, username=name, role=ROLE_USER, ttl=86400)
    return {"Authorization": f"Bearer {token}"}


class Service:
    """The service (``tools/bench/serve.py``: the real app plus an engine-time header) on the
    bench's data directory, on a free port."""

    def __init__(self, data_dir: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {
            **os.environ,
            "GATELOG_DATA_DIR": data_dir,
            "GATELOG_JWT_SECRET": SECRET,
            "GATELOG_TOKEN_LOOKUP_RATE": "0",
            # the 16 clients share one caller's token: the per-caller share of the
            # engine (service/gate.py) would answer 429 past its queue timeout; the bench
            # measures the engine path's throughput, so one caller may use every slot
            # and waits in line instead of being refused
            "GATELOG_MAX_CONCURRENT_QUERIES_PER_USER": "4",
            "GATELOG_MAX_CONCURRENT_QUERIES": "4",
            "GATELOG_QUERY_QUEUE_TIMEOUT_SECONDS": "600",
            "GATELOG_LOG_LEVEL": "WARNING",
            "PYTHONPATH": str(ROOT),
        }
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the service
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tools.bench.serve", "--port", str(self.port)],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=self.log,
        )  # fmt: skip

    async def ready(self, session: Any, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.log.seek(0)
                raise RuntimeError(f"the service exited: {self.log.read().decode()[-2000:]}")
            try:
                async with session.get(self.url + "/readyz") as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            await asyncio.sleep(0.2)
        raise TimeoutError("the service did not become ready")

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


def summary(ms: list[float]) -> dict[str, float]:
    if not ms:
        return {}
    values = np.array(ms)
    return {
        "n": len(ms),
        "p50": float(np.percentile(values, 50)),
        "p95": float(np.percentile(values, 95)),
        "p99": float(np.percentile(values, 99)),
    }


async def http_phase(plan: Plan, ctx: Context) -> dict[str, Any]:
    import aiohttp

    from tools.bench import newapi

    service = Service(plan.data_dir)
    out: dict[str, Any] = {"cases": {}, "ingest": {}}
    try:
        connector = aiohttp.TCPConnector(limit=plan.clients + 4)
        async with aiohttp.ClientSession(connector=connector) as session:
            await service.ready(session)
            for case in _progress(CASES, "HTTP cases", plan):
                url = service.url + case.path(ctx)
                headers = headers_for(case.role, ctx)
                async with session.get(url, headers=headers) as probe:
                    status = probe.status
                    body = await probe.json(content_type=None)
                # the router's own answer for a route this build does not have
                absent = body.get("message") in ("not found", "method not allowed")
                if status in (404, 405) and absent:
                    out["cases"][case.name] = {"absent": True}
                    continue
                if status != 200:
                    raise RuntimeError(f"{case.name}: HTTP {status} for {url}")
                side = None
                if case.newapi is not None:
                    side = {"statements": list(newapi.QUERIES[case.newapi]),
                            "params": case.newapi_params(ctx)}  # fmt: skip
                single = await _requests(session, url, headers, 1, plan.repeats, side)
                many = await _requests(session, url, headers, plan.clients,
                                       plan.concurrent_requests)  # fmt: skip
                out["cases"][case.name] = {"one": single, "many": many}
            out["ingest"] = await _ingest(session, service.url, plan, ctx)
    finally:
        service.stop()
    return out


def _engine_ms(response: Any) -> float:
    found = re.search(r"engine;dur=([\d.]+)", response.headers.get("Server-Timing", ""))
    return float(found.group(1)) if found else float("nan")


async def _requests(session: Any, url: str, headers: dict[str, str], clients: int,
                    each: int, side: dict[str, Any] | None = None) -> dict[str, Any]:  # fmt: skip
    """``clients`` clients sending ``each`` requests; with ``side`` (new-api's statements
    and parameters), each request is followed by new-api's statements run in the
    service's process (``POST /bench/baseline``), so both are timed side by side."""
    latencies: list[float] = []
    engine: list[float] = []
    baseline: list[float] = []
    base_url = url.split("/api/", 1)[0] + "/bench/baseline"

    async def client() -> None:
        for _ in range(each):
            started = time.perf_counter()
            async with session.get(url, headers=headers) as response:
                await response.read()
                if response.status != 200:
                    raise RuntimeError(f"HTTP {response.status} for {url}")
                timing = response.headers.get("Server-Timing", "")
            latencies.append((time.perf_counter() - started) * 1000)
            found = re.search(r"engine;dur=([\d.]+)", timing)
            engine.append(float(found.group(1)) if found else float("nan"))
            if side is not None:
                async with session.post(base_url, json=side) as response:
                    await response.read()
                    if response.status != 200:
                        raise RuntimeError(f"baseline: HTTP {response.status} for {url}")
                    baseline.append(_engine_ms(response))

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    wall = time.perf_counter() - started
    overhead = [total - inside for total, inside in zip(latencies, engine, strict=True)]
    out = {
        **summary(latencies),
        "rps": len(latencies) / wall,
        "engine_p50": float(np.median(engine)),
        "overhead_p50": float(np.median(overhead)),
    }
    if baseline:
        out["newapi_p50"] = float(np.median(baseline))
    return out


async def _ingest(session: Any, base: str, plan: Plan, ctx: Context) -> dict[str, Any]:
    """Fresh generated rows (another seed, after the data's end) as JSON batches."""
    from tools.generate import Spec, World

    world = World(Spec(plan.ingest_rows, 1, plan.seed + 1000, ingest_day(ctx)))
    rows: list[dict[str, Any]] = []
    for _, table in world.batches():
        rows.extend(table.drop(["id"]).to_pylist())
    bodies = [
        json.dumps(rows[i : i + plan.ingest_batch], ensure_ascii=False).encode()
        for i in range(0, len(rows), plan.ingest_batch)
    ]
    headers = {**headers_for("writer", ctx), "Content-Type": "application/json"}
    out: dict[str, Any] = {"rows": len(rows), "batch": plan.ingest_batch}
    for clients in (1, 4):
        queue = list(bodies)
        stored = 0

        async def sender(queue: list[bytes] = queue) -> None:
            nonlocal stored
            while queue:
                body = queue.pop()
                async with session.post(base + "/api/internal/logs", data=body,
                                        headers=headers) as response:  # fmt: skip
                    answer = await response.json()
                    if response.status != 200:
                        raise RuntimeError(f"ingest: HTTP {response.status}: {answer}")
                    stored += int(answer["data"])

        started = time.perf_counter()
        await asyncio.gather(*(sender() for _ in range(clients)))
        seconds = time.perf_counter() - started
        # the next round sends the same rows a second later: new rows, not a retry
        out[f"clients_{clients}"] = {"rows": stored, "seconds": seconds,
                                     "rows_per_s": stored / seconds}  # fmt: skip
        for row in rows:
            row["created_at"] += 1
        bodies = [
            json.dumps(rows[i : i + plan.ingest_batch], ensure_ascii=False).encode()
            for i in range(0, len(rows), plan.ingest_batch)
        ]
    return out


# -- import ---------------------------------------------------------------------------------


def import_phase(plan: Plan, work: Path) -> dict[str, Any]:
    """A new-api SQLite database with the first ``import_rows`` generated rows, imported
    by the operator's command into an empty data directory."""
    from tools.bench import newapi
    from tools.generate import Spec, World

    world = World(Spec(plan.rows, plan.days, plan.seed, plan.end))
    path = work / "one-api.db"
    path.unlink(missing_ok=True)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA journal_mode = OFF")
    conn.execute("PRAGMA synchronous = OFF")
    ddl = [s for s in newapi.SQL_DDL["sqlite"] if s.startswith("CREATE TABLE")]
    newapi.create(conn, "sqlite", ddl)
    written = 0
    bar = _bar(plan.import_rows, "new-api SQLite", plan)
    for _, table in world.batches():
        take = min(table.num_rows, plan.import_rows - written)
        if take <= 0:
            break
        newapi.insert(conn, "sqlite", "logs", newapi.LOG_COLUMNS,
                      newapi.log_rows(table.slice(0, take)))  # fmt: skip
        written += take
        bar.update(take)
    bar.close()
    tokens = [(int(t), int(u), k, int(s), n) for t, u, k, s, n in zip(
        world.token_ids, world.token_user, world.token_keys(), world.token_status,
        world.token_names, strict=True)]  # fmt: skip
    newapi.insert(conn, "sqlite", "tokens", ("id", "user_id", "key", "status", "name"), tokens)
    conn.close()
    target = work / "import-data"
    shutil.rmtree(target, ignore_errors=True)
    env = {**os.environ, "GATELOG_DATA_DIR": str(target), "GATELOG_LOG_LEVEL": "WARNING",
           "PYTHONPATH": str(ROOT)}  # fmt: skip
    command = [sys.executable, "-m", "service", "import", "--from", f"sqlite:///{path}"]
    if plan.quick:
        command.append("--no-progress")
    done = subprocess.run(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True,
                          check=True)  # fmt: skip
    found = re.search(r"imported (\d+) logs .* in ([\d.]+) s \(([\d,]+) rows/s\)", done.stdout)
    if not found:
        raise RuntimeError(f"unexpected import output: {done.stdout}")
    shutil.rmtree(target, ignore_errors=True)
    path.unlink(missing_ok=True)
    return {
        "rows": int(found.group(1)),
        "seconds": float(found.group(2)),
        "rows_per_s": float(found.group(3).replace(",", "")),
        "source": "sqlite",
    }


# -- the whole run ---------------------------------------------------------------------------


def generate_phase(plan: Plan) -> dict[str, Any]:
    marker = Path(plan.data_dir) / "bench-data.json"
    wanted = {"rows": plan.rows, "days": plan.days, "seed": plan.seed, "end": plan.end}
    if marker.exists():
        known: dict[str, Any] = json.loads(marker.read_text())
        if known.get("spec") == wanted:
            return known
    shutil.rmtree(plan.data_dir, ignore_errors=True)
    env = {**os.environ, "GATELOG_DATA_DIR": plan.data_dir, "GATELOG_LOG_LEVEL": "WARNING",
           "PYTHONPATH": str(ROOT)}  # fmt: skip
    command = [sys.executable, "-m", "service", "generate", "--rows", str(plan.rows),
               "--days", str(plan.days), "--seed", str(plan.seed),
               "--end", str(plan.end)]  # fmt: skip
    if plan.quick:
        command.append("--no-progress")
    done = subprocess.run(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True,
                          check=True)  # fmt: skip
    found = re.search(r"in ([\d.]+) s: ([\d,]+) rows/s", done.stdout)
    info = {
        "spec": wanted,
        "seconds": float(found.group(1)) if found else None,
        "rows_per_s": float(found.group(2).replace(",", "")) if found else None,
    }
    marker.write_text(json.dumps(info))
    return info


def run_phase_process(phase: str, plan: Plan, ctx: Context) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile("r", suffix=".json", delete=False) as out:
        path = out.name
    try:
        subprocess.run(
            [sys.executable, "-m", "tools.bench.run", "--phase", phase, "--plan",
             json.dumps(asdict(plan)), "--context", json.dumps(asdict(ctx)), "--phase-out", path],
            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, check=True,
        )  # fmt: skip
        result: dict[str, Any] = json.loads(Path(path).read_text())
        return result
    finally:
        os.unlink(path)


def machine() -> dict[str, Any]:
    import chdb

    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = "unknown"
    try:
        total = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f"{total / 1024 / 1024:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "memory": memory,
        "os": platform.platform(),
        "python": platform.python_version(),
        "chdb": getattr(chdb, "__version__", "?"),
        "engine": getattr(chdb, "engine_version", "?"),
        "load_average_at_start": os.getloadavg(),
    }


def orchestrate(plan: Plan, out_dir: Path) -> dict[str, Any]:
    started = time.time()
    described = machine()  # its load average: at the start (the end is added below)
    generated = generate_phase(plan)
    ctx = context_of(plan)
    engine = run_phase_process("engine", plan, ctx)
    http = asyncio.run(http_phase(plan, ctx))
    with tempfile.TemporaryDirectory(prefix="gatelog-bench-import-") as work:
        imported = import_phase(plan, Path(work))
    deleted = run_phase_process("delete", plan, ctx)
    result = {
        "date": time.strftime("%Y-%m-%d", time.gmtime(started)),
        "plan": asdict(plan),
        "context": {k: v for k, v in asdict(ctx).items() if k != "token_key"},
        "machine": described,
        "generate": generated,
        "engine": engine,
        "http": http,
        "import": imported,
        "delete": deleted,
        "seconds": time.time() - started,
        "load_average_at_end": os.getloadavg(),
    }
    result["summary"] = summarise(result)
    out_dir.mkdir(parents=True, exist_ok=True)
    # the start's time of day too: a second run on the same day must not overwrite the first
    clock = time.strftime("%H%M", time.gmtime(started))
    stem = f"{result['date']}-{clock}-{_rows_label(plan.rows)}"
    (out_dir / f"{stem}.json").write_text(json.dumps(result, indent=1, ensure_ascii=False))
    (out_dir / f"{stem}.md").write_text(markdown(result))
    return result


def _rows_label(rows: int) -> str:
    if rows % 1_000_000 == 0:
        return f"{rows // 1_000_000}M"
    if rows % 1000 == 0:
        return f"{rows // 1000}k"
    return str(rows)


# -- the report -------------------------------------------------------------------------------


def required_ratio(baseline_ms: float) -> float:
    """The issue's margin over the baseline: 10x where it scans (50 ms or more), 3x at
    20-50 ms, 1.2x under 20 ms (an HTTP hop and the engine's fixed cost dominate)."""
    if baseline_ms >= 50:
        return 10.0
    if baseline_ms >= 20:
        return 3.0
    return 1.2


def summarise(result: dict[str, Any]) -> dict[str, Any]:
    """Per case: HTTP and engine medians, overhead, new-api's median and the ratio; and
    the targets of the issue, met or missed by how much."""
    cases: dict[str, Any] = {}
    for case in CASES:
        http = result["http"]["cases"].get(case.name, {})
        engine = result["engine"]["cases"].get(case.name, {})
        ours = float(np.median(engine["gatelog"])) if engine.get("gatelog") else None
        theirs = float(np.median(engine["newapi"])) if engine.get("newapi") else None
        row: dict[str, Any] = {
            "what": case.what,
            "absent": bool(http.get("absent")),
            "scans": case.scans,
            "engine_ms": ours,
            "newapi_ms": theirs,
        }
        if "one" in http:
            row["newapi_side_ms"] = http["one"].get("newapi_p50")
            row["one"] = http["one"]
            row["many"] = http["many"]
            # client latency minus the engine's time inside the same request
            row["overhead_ms"] = http["one"].get("overhead_p50")
            row["engine_in_service_ms"] = http["one"].get("engine_p50")
        row["speedup"] = theirs / ours if ours and theirs else None
        cases[case.name] = row
    targets: list[dict[str, Any]] = []

    def target(what: str, measured: str, met: bool, by: str) -> None:
        targets.append({"target": what, "measured": measured, "met": met,
                        "by": None if met else by})  # fmt: skip

    for name, row in cases.items():
        http_ms = row.get("one", {}).get("p50")
        # new-api's engine time measured side by side with the HTTP requests (the same
        # moments of a busy machine); the engine phase's figure where there is none
        theirs = row.get("newapi_side_ms") or row["newapi_ms"]
        if theirs is None or http_ms is None:
            continue
        want = required_ratio(theirs)
        got = theirs / http_ms
        row["http_ratio"] = got
        target(f"{name}: HTTP p50 at least {want:g}x ahead of new-api's engine "
               f"({_ms(theirs)} ms)", f"{got:.2f}x", got >= want,
               f"{want / got:.1f}x short")  # fmt: skip
    one_day = cases["stat_1d"].get("one", {}).get("p50")
    month = cases["stat_30d"].get("one", {}).get("p50")
    if one_day and month:
        target("stat over 30 days within 1.5x of 1 day (HTTP p50)", f"{month / one_day:.1f}x",
               month <= 1.5 * one_day, f"{month / one_day / 1.5:.1f}x over")  # fmt: skip
    for name in ("list_self_heavy", "stat_30d"):
        many = cases[name].get("many")
        if many:
            target(f"{name}: at least 200 req/s with 16 clients", f"{many['rps']:.0f}",
                   many["rps"] >= 200, f"{200 / many['rps']:.1f}x short")  # fmt: skip
    overheads = [r["overhead_ms"] for r in cases.values() if r.get("overhead_ms") is not None]
    if overheads:
        median = float(np.median(overheads))
        target("median service overhead over the engine <= 1 ms", f"{median:.1f} ms",
               median <= 1.0, f"{median - 1:.1f} ms over")  # fmt: skip
    rates = result["http"]["ingest"]
    ingest = max((v["rows_per_s"] for k, v in rates.items() if k.startswith("clients_")),
                 default=0.0)  # fmt: skip
    target("ingest >= 150k rows/s over HTTP", f"{ingest:,.0f}", ingest >= 150_000,
           f"{150_000 / max(ingest, 1):.1f}x short")  # fmt: skip
    rate = result["import"]["rows_per_s"]
    target("import >= 400k rows/s", f"{rate:,.0f}", rate >= 400_000,
           f"{400_000 / max(rate, 1):.1f}x short")  # fmt: skip
    gone = result["delete"]["gatelog_s"]
    target("a month deleted in under 2 s", f"{gone:.2f} s", gone < 2.0, f"{gone - 2:.1f} s over")
    theirs = result["delete"]["newapi_s"]
    target(
        "the month's delete faster than new-api's ALTER TABLE ... DELETE",
        f"{gone:.2f} s vs {theirs:.2f} s",
        gone < theirs,
        f"{gone / theirs:.1f}x slower",
    )
    return {"cases": cases, "targets": targets}


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.1f}" if value < 100 else f"{value:.0f}"


def markdown(result: dict[str, Any]) -> str:
    plan, m, s = result["plan"], result["machine"], result["summary"]
    lines = [
        f"# gatelog benchmark: {plan['rows']:,} rows over {plan['days']} days",
        "",
        f"{result['date']}; {m['cores']} cores ({m['cpu']}), {m['memory']}; {m['os']}; "
        f"Python {m['python']}, chDB {m['chdb']} (engine {m['engine']}); load average at "
        f"start {', '.join(f'{x:.1f}' for x in m['load_average_at_start'])}, at the end "
        f"{', '.join(f'{x:.1f}' for x in result.get('load_average_at_end', ()))} (a shared "
        "machine). "
        f"Embedded engine. Run: `python -m tools.bench.run --rows {plan['rows']}` "
        f"({result['seconds'] / 60:.0f} min).",
        "",
        "Latency in ms. *HTTP*: through the service (`tools/bench/serve.py`), p50 / p95 / p99, "
        "one client "
        f"({plan['repeats']} requests) and {plan['clients']} concurrent clients "
        f"({plan['clients']} x {plan['concurrent_requests']}). *engine in request*: engine "
        "time inside the request (p50, one client). *engine*: the service's own "
        "query functions called in-process (median), the same way as new-api's; both "
        "designs with the engine's default settings (query condition cache on) and every "
        "table's parts merged (`OPTIMIZE TABLE ... FINAL` after the load). *overhead*: "
        "median over requests of the client's latency minus the engine time inside that "
        "request (one client). *new-api*: the SQL new-api sends, on its own ClickHouse "
        "design, same engine and rows (median), in the engine phase; *new-api side by "
        "side*: the same statements run in the service's process right after each of "
        "its one-client requests (median engine time), so both are timed at the same "
        "moments. *x*: new-api engine / gatelog engine (engine phase); *x HTTP*: new-api "
        "side by side / gatelog HTTP p50 (the targets).",
        "",
        f"| case | HTTP 1 client | HTTP {plan['clients']} clients | req/s ({plan['clients']}) "
        "| engine in request | overhead | engine | new-api | new-api side by side | x "
        "| x HTTP |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, row in s["cases"].items():
        if row["absent"]:
            http1 = http16 = rps = "not in this build"
            overhead = inside = "-"
        else:
            one, many = row["one"], row["many"]
            http1 = f"{_ms(one['p50'])} / {_ms(one['p95'])} / {_ms(one['p99'])}"
            http16 = f"{_ms(many['p50'])} / {_ms(many['p95'])} / {_ms(many['p99'])}"
            rps = f"{many['rps']:.0f}"
            overhead = _ms(row.get("overhead_ms"))
            inside = _ms(row.get("engine_in_service_ms"))
        speed = f"{row['speedup']:.1f}" if row["speedup"] else "-"
        via_http = f"{row['http_ratio']:.2f}" if row.get("http_ratio") else "-"
        lines.append(
            f"| {name}: {row['what']} | {http1} | {http16} | {rps} | {inside} | {overhead} "
            f"| {_ms(row['engine_ms'])} | {_ms(row['newapi_ms'])} "
            f"| {_ms(row.get('newapi_side_ms'))} | {speed} | {via_http} |"
        )
    ing, imp, gen, dele = (result["http"]["ingest"], result["import"], result["generate"],
                           result["delete"])  # fmt: skip
    lines += [
        "",
        "| write path | rows | rows/s |",
        "|---|---|---|",
    ]
    for key in ("clients_1", "clients_4"):
        if key in ing:
            lines.append(
                f"| `POST /api/internal/logs`, {key.split('_')[1]} client(s), batches of "
                f"{ing['batch']:,} | {ing[key]['rows']:,} | {ing[key]['rows_per_s']:,.0f} |"
            )
    lines.append(f"| `python -m service import` from new-api SQLite | {imp['rows']:,} "
                 f"| {imp['rows_per_s']:,.0f} |")  # fmt: skip
    if gen.get("rows_per_s"):
        lines.append(f"| `python -m service generate` | {plan['rows']:,} "
                     f"| {gen['rows_per_s']:,.0f} |")  # fmt: skip
    lines += [
        "",
        f"Delete of everything before the data's last day ({dele['days']} day partitions, "
        f"{dele['rows']:,} rows): gatelog (partition drops) {dele['gatelog_s']:.2f} s; "
        f"new-api's design (`ALTER TABLE ... DELETE`, {dele['rows_newapi']:,} rows) "
        f"{dele['newapi_s']:.2f} s; rows left before the cutoff: {dele['left']} and "
        f"{dele['left_newapi']}.",
        "",
        "Tables after the load, every table's parts merged "
        f"({result['engine']['settle']['seconds']:.0f} s of `OPTIMIZE ... FINAL`): "
        + "; ".join(
            f"`{t}` {v['rows']:,} rows, {v['bytes_on_disk'] / 2**20:,.1f} MiB on disk"
            for t, v in result["engine"]["tables"].items()
        )
        + ".",
        "",
        "| target | measured | met |",
        "|---|---|---|",
    ]
    for t in s["targets"]:
        met = "yes" if t["met"] else f"no ({t['by']})"
        lines.append(f"| {t['target']} | {t['measured']} | {met} |")
    return "\n".join(lines) + "\n"


# -- command line ----------------------------------------------------------------------------


def _progress(items: list[Case], what: str, plan: Plan) -> Any:
    from tqdm import tqdm

    return tqdm(items, desc=what, unit="case", disable=plan.quick, file=sys.stderr)


def _bar(total: int, what: str, plan: Plan) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=what, unit="rows", unit_scale=True, disable=plan.quick,
                file=sys.stderr)  # fmt: skip


def default_end() -> int:
    """The data ends four days ago (on a whole minute): the ingest phase writes the
    day after it plus two (:func:`ingest_day`), and ingest refuses rows stamped later
    than now plus its clock skew."""
    return (int(time.time()) // 60 + 1) * 60 - 4 * DAY


def make_plan(args: argparse.Namespace) -> Plan:
    quick = bool(args.quick)
    rows = args.rows or (4000 if quick else 1_000_000)
    if args.fast:  # the reads on the kept data, few repetitions: for iterating
        return Plan(
            rows=rows, days=args.days, seed=args.seed,
            end=args.end or default_end(),
            data_dir=args.data_dir or str(ROOT / "bench" / "data" / _rows_label(rows)),
            repeats=15, concurrent_requests=4, clients=16, engine_repeats=7,
            ingest_rows=20_000, ingest_batch=5_000, import_rows=min(rows, 100_000),
            quick=True,
        )  # fmt: skip
    end = args.end or default_end()
    data_dir = args.data_dir or (
        tempfile.mkdtemp(prefix="gatelog-bench-") if quick
        else str(ROOT / "bench" / "data" / _rows_label(rows))
    )  # fmt: skip
    return Plan(
        rows=rows, days=args.days, seed=args.seed, end=end, data_dir=data_dir,
        repeats=5 if quick else 50, concurrent_requests=2 if quick else 10,
        clients=4 if quick else 16, engine_repeats=3 if quick else 20,
        ingest_rows=2000 if quick else 200_000, ingest_batch=500 if quick else 10_000,
        import_rows=min(rows, 2_000_000), quick=quick,
    )  # fmt: skip


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m tools.bench.run", description=__doc__.split("\n")[0]
    )
    p.add_argument("--rows", type=int, help="generated rows (default 1,000,000)")
    p.add_argument("--days", type=int, default=30)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument(
        "--end", type=int, help="the data's end (default: four days ago); reuse needs the same"
    )
    p.add_argument("--data-dir", help="engine data for the run (default bench/data/<rows>)")
    p.add_argument("--out", help="where results go (default bench/results)")
    p.add_argument("--quick", action="store_true", help="a small smoke run (a few thousand rows)")
    p.add_argument(
        "--fast",
        action="store_true",
        help="few repetitions on the kept data of --rows (for iterating)",
    )
    p.add_argument("--phase", help=argparse.SUPPRESS)
    p.add_argument("--plan", help=argparse.SUPPRESS)
    p.add_argument("--context", help=argparse.SUPPRESS)
    p.add_argument("--phase-out", help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.phase:
        plan = Plan(**json.loads(args.plan))
        ctx = Context(**json.loads(args.context))
        phases = {"engine": engine_phase, "delete": delete_phase}
        result = asyncio.run(phases[args.phase](plan, ctx))
        Path(args.phase_out).write_text(json.dumps(result))
        return 0
    plan = make_plan(args)
    if (args.fast or not args.quick) and not args.end:
        # reuse generated data across runs: keep the end time with the data
        marker = Path(plan.data_dir) / "bench-data.json"
        if marker.exists():
            spec = json.loads(marker.read_text()).get("spec", {})
            if spec.get("rows") == plan.rows and spec.get("seed") == plan.seed:
                plan.end = int(spec["end"])
    out = Path(args.out) if args.out else RESULTS
    try:
        result = orchestrate(plan, out)
    finally:
        if args.quick and not args.data_dir:
            shutil.rmtree(plan.data_dir, ignore_errors=True)
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
