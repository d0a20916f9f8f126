"""``attach-newapi``: new-api's own ClickHouse log table (its DDL, ``id`` 0 in every row)
feeds gatelog's ``logs`` on the same engine: the rows already there are imported, every
later insert arrives through the materialized view, each exactly once, with unique
time-ordered ids of at most 2^53 - 1 and channel names from a channels table."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import pytest

from service.attach import Table, attach, view_name
from service.ids import NodeIds
from service.settings import SettingsError
from service.store import ChdbStore

# new-api's table as its LOG_SQL_DSN=clickhouse:// code creates it (spec/newapi-compat.md)
NEWAPI_DDL = """
CREATE TABLE newapi.logs (
    id Int64 DEFAULT 0, user_id Int32 DEFAULT 0, created_at Int64 DEFAULT 0,
    type Int32 DEFAULT 0, content String DEFAULT '', username String DEFAULT '',
    token_name String DEFAULT '', model_name String DEFAULT '', quota Int32 DEFAULT 0,
    prompt_tokens Int32 DEFAULT 0, completion_tokens Int32 DEFAULT 0,
    use_time Int32 DEFAULT 0, is_stream UInt8 DEFAULT 0, channel_id Int32 DEFAULT 0,
    token_id Int32 DEFAULT 0, `group` String DEFAULT '', ip String DEFAULT '',
    request_id String DEFAULT '', upstream_request_id String DEFAULT '',
    other String DEFAULT ''
)
ENGINE = MergeTree() PARTITION BY toYYYYMM(toDateTime(created_at))
ORDER BY (created_at, request_id)
TTL toDateTime(created_at) + INTERVAL 3650 DAY DELETE
"""
COLUMNS = (
    "id", "user_id", "created_at", "type", "content", "username", "token_name", "model_name",
    "quota", "prompt_tokens", "completion_tokens", "use_time", "is_stream", "channel_id",
    "token_id", "group", "ip", "request_id", "upstream_request_id", "other",
)  # fmt: skip
CHANNELS = {1: "OpenAI 官方", 2: "Claude"}
SOURCE = Table("newapi", "logs")
CHANNEL_TABLE = Table("newapi", "channels")


def gateway_row(n: int, created_at: int) -> dict[str, Any]:
    return {
        "id": 0, "user_id": 7 + n % 3, "created_at": created_at, "type": [2, 2, 2, 5][n % 4],
        "content": f"call {n}", "username": f"user{n % 3}", "token_name": f"t{n % 2}",
        "model_name": ["gpt-4o", "claude"][n % 2], "quota": 100 + n,
        "prompt_tokens": 10 * n, "completion_tokens": n, "use_time": n % 7,
        "is_stream": n % 2, "channel_id": [1, 2, 9][n % 3], "token_id": 30 + n % 2,
        "group": "default", "ip": "", "request_id": f"req-{n}",
        "upstream_request_id": f"up-{n}" if n % 2 else "", "other": '{"frt":120}',
    }  # fmt: skip


def expected(row: dict[str, Any]) -> tuple[Any, ...]:
    return (
        row["user_id"], row["created_at"], row["type"], row["content"], row["username"],
        row["token_name"], row["model_name"], row["quota"], row["prompt_tokens"],
        row["completion_tokens"], row["use_time"], bool(row["is_stream"]), row["channel_id"],
        CHANNELS.get(row["channel_id"], ""), row["token_id"], row["group"], row["ip"],
        row["request_id"], row["upstream_request_id"], row["other"],
    )  # fmt: skip


GATELOG_SELECT = (
    "SELECT id, user_id, toUnixTimestamp(created_at), type, content, username, token_name, "
    "model_name, quota, prompt_tokens, completion_tokens, use_time, is_stream, channel_id, "
    "channel_name, token_id, `group`, ip, request_id, upstream_request_id, other FROM logs"
)


async def insert(store: ChdbStore, rows: list[dict[str, Any]]) -> None:
    await store.insert(
        "newapi.logs",
        [[r[c] for c in COLUMNS] for r in rows],
        COLUMNS,
        settings={"async_insert": 0},
    )


@pytest.fixture
def gateway(store: ChdbStore) -> Iterator[ChdbStore]:
    async def up() -> None:
        await store.command("CREATE DATABASE IF NOT EXISTS newapi")
        await store.command("DROP TABLE IF EXISTS newapi.logs")
        await store.command("DROP TABLE IF EXISTS newapi.channels")
        await store.command(NEWAPI_DDL)
        await store.command(
            "CREATE TABLE newapi.channels (id Int64, name String) ENGINE = MergeTree ORDER BY id"
        )
        await store.insert("newapi.channels", [list(c) for c in CHANNELS.items()], ("id", "name"))

    async def down() -> None:
        await store.command(f"DROP VIEW IF EXISTS `{view_name(SOURCE)}`")
        await store.command("DROP DATABASE IF EXISTS newapi")

    asyncio.run(up())
    yield store
    asyncio.run(down())


def test_attach_imports_then_follows_every_insert_exactly_once(gateway: ChdbStore) -> None:
    now = int(time.time())

    async def body() -> None:
        # before: three days of rows, 150 of them in one second (more than 64 per ms)
        before = [gateway_row(n, now - 86400 * (n % 3) - 1000 - n) for n in range(60)]
        before += [gateway_row(1000 + n, now - 500) for n in range(150)]
        await insert(gateway, before)
        done = await attach(gateway, SOURCE, CHANNEL_TABLE, settle=0)
        assert done.state == "done" and done.rows == len(before)
        cut = done.cutover
        # after: one INSERT per row, as the gateway writes, then one block of 300
        after = [gateway_row(2000 + n, cut + n) for n in range(5)]
        for row in after:
            await insert(gateway, [row])
        block = [gateway_row(3000 + n, cut + 10) for n in range(300)]
        await insert(gateway, block)
        after += block

        got = (await gateway.query(GATELOG_SELECT)).rows
        everything = before + after
        assert sorted(r[1:] for r in got) == sorted(expected(r) for r in everything)
        by_request = {r[18]: r[0] for r in got}
        assert len({r[0] for r in got}) == len(everything)  # unique
        assert all(0 < r[0] <= 2**53 - 1 for r in got)
        # imported ids follow created_at; the view's come after them, in insertion order
        imported = sorted((r[2], r[0]) for r in got if r[2] < cut)
        assert [i for _, i in imported] == sorted(i for _, i in imported)
        assert max(i for _, i in imported) < min(r[0] for r in got if r[2] >= cut)
        singles = [by_request[r["request_id"]] for r in after[:5]]
        assert singles == sorted(singles) and singles[-1] < min(
            by_request[r["request_id"]] for r in block
        )
        # one node for every id of the attach, and no gatelog process gets it
        nodes = {(r[0] >> 6) & 63 for r in got}
        assert len(nodes) == 1
        source = NodeIds(lambda: gateway)
        try:
            await source.take(1)
            assert source.node not in nodes
        finally:
            await source.close()
        # the rollups saw every row once
        consume = [r for r in everything if r["type"] == 2]
        sums = await gateway.query(
            "SELECT sum(requests), sum(quota), sum(prompt_tokens) FROM logs_minute WHERE type = 2"
        )
        assert tuple(sums.rows[0]) == (
            len(consume),
            sum(r["quota"] for r in consume),
            sum(r["prompt_tokens"] for r in consume),
        )
        # a re-run changes nothing; the view keeps bringing rows
        again = await attach(gateway, SOURCE, CHANNEL_TABLE, settle=0)
        assert (again.cutover, again.rows) == (cut, done.rows)
        await insert(gateway, [gateway_row(9999, cut + 20)])
        count = (await gateway.query("SELECT count() FROM logs")).scalar()
        assert count == len(everything) + 1

    asyncio.run(body())


def test_attach_without_a_channels_table_leaves_names_empty(gateway: ChdbStore) -> None:
    async def body() -> None:
        done = await attach(gateway, SOURCE, None, settle=0)
        await insert(gateway, [gateway_row(1, done.cutover + 1)])
        rows = (await gateway.query("SELECT channel_id, channel_name FROM logs")).rows
        assert [tuple(r) for r in rows] == [(2, "")]

    asyncio.run(body())


@pytest.mark.parametrize(
    ("text", "fragment"),
    [("logs", "DATABASE.TABLE"), ("a.b; DROP TABLE x", "DATABASE.TABLE"), ("a.`b`", "TABLE")],
)
def test_bad_table_names_are_refused(text: str, fragment: str) -> None:
    with pytest.raises(SettingsError, match=fragment):
        Table.parse(text, "--table")


def test_a_missing_or_foreign_table_is_refused(gateway: ChdbStore) -> None:
    async def body() -> None:
        with pytest.raises(SettingsError, match="not found"):
            await attach(gateway, Table("newapi", "nothing"), settle=0)
        with pytest.raises(SettingsError, match="needs the columns id and name"):
            await attach(gateway, SOURCE, Table("newapi", "logs"), settle=0)
        views = await gateway.query(
            "SELECT count() FROM system.tables WHERE name = {n:String}", {"n": view_name(SOURCE)}
        )
        assert views.scalar() == 0

    asyncio.run(body())


async def test_attach_through_the_http_client(gateway: ChdbStore) -> None:
    """The command's statements (the view's DDL, the parameterised day inserts) work
    through the HTTP client a ClickHouse server deployment uses. The account is an
    operator's: the deployed gatelog account reads only gatelog.*, and attaching needs
    SELECT on the gateway's tables granted besides (docs/newapi.md)."""
    from service.store import HttpStore
    from tests.support.chhttp import ClickHouseHTTPServer, User

    server = ClickHouseHTTPServer(gateway.path, users={"operator": User("secret")})
    port = await server.start()
    backend = HttpStore(f"http://operator:secret@127.0.0.1:{port}/{gateway.database}")
    try:
        await _attach_and_follow(gateway, backend)
    finally:
        await backend.close()
        await server.stop()
        server.close()


async def _attach_and_follow(gateway: ChdbStore, backend: Any) -> None:
    now = int(time.time())
    before = [gateway_row(n, now - 3600 * n - 100) for n in range(1, 30)]
    await insert(gateway, before)
    done = await attach(backend, SOURCE, CHANNEL_TABLE, settle=0)
    assert done.rows == len(before)
    after = [gateway_row(100 + n, done.cutover + n) for n in range(3)]
    for row in after:
        await insert(gateway, [row])
    got = (await backend.query(GATELOG_SELECT)).rows
    assert sorted(tuple(r[1:]) for r in got) == sorted(expected(r) for r in before + after)
    assert len({r[0] for r in got}) == len(got)
