"""The chDB-backed ClickHouse HTTP test server, driven by clickhouse-connect's real async client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import lz4.frame
import pyarrow as pa
import pytest
import pytest_asyncio
from chdb.session import Session
from chdb.state.sqlitelike import Connection
from clickhouse_connect import get_async_client
from clickhouse_connect.driver.asyncclient import AsyncClient
from clickhouse_connect.driver.exceptions import DatabaseError, OperationalError

from tests.support.chhttp import ClickHouseHTTPServer, _decode_body


@pytest.fixture(scope="module")
def chdb_path(engine: Any) -> Iterator[str]:
    # chDB allows one data path per process: the server shares the session engine's path.
    path = str(engine.path)
    anchor = Connection(path)
    yield path
    anchor.close()


@pytest_asyncio.fixture
async def server(chdb_path: str) -> AsyncIterator[ClickHouseHTTPServer]:
    async with ClickHouseHTTPServer(chdb_path) as srv:
        yield srv


@pytest_asyncio.fixture
async def client(server: ClickHouseHTTPServer) -> AsyncIterator[AsyncClient]:
    ch = await get_async_client(
        host="127.0.0.1", port=server.port, compress="lz4", username="default", password="ignored"
    )
    yield ch
    await ch.close()


@pytest.mark.asyncio
async def test_handshake_ping_and_command(client: AsyncClient) -> None:
    assert (client.server_version or "").startswith("2")
    assert await client.ping()
    assert await client.command("SELECT 1") == 1
    assert await client.command("SELECT version(), timezone()") == [
        client.server_version,
        await client.command("SELECT timezone()"),
    ]


@pytest.mark.asyncio
async def test_query_with_server_side_parameters(client: AsyncClient) -> None:
    text = "it's a\ttab \\ and a quote"
    result = await client.query(
        "SELECT {x:UInt32} * 2 AS y, {s:String} AS s", parameters={"x": 21, "s": text}
    )
    assert result.column_names == ("y", "s")
    assert result.result_rows == [(42, text)]


@pytest.mark.asyncio
async def test_insert_of_200k_rows_with_lz4_keeps_every_frame(client: AsyncClient) -> None:
    await client.command("CREATE TABLE big (id UInt64, s String) ENGINE = MergeTree ORDER BY id")
    n = 200_000  # > 65,536 rows: clickhouse-connect sends several LZ4 frames
    ids = list(range(n))
    summary = await client.insert(
        "big", [ids, [str(i) for i in ids]], column_names=["id", "s"], column_oriented=True
    )
    assert client.write_compression == "lz4"
    assert summary.written_rows == n
    result = await client.query("SELECT count(), sum(id), max(s = toString(id)) FROM big")
    assert result.result_rows == [(n, n * (n - 1) // 2, 1)]


@pytest.mark.asyncio
async def test_datetime_utc_round_trip(client: AsyncClient) -> None:
    await client.command("CREATE TABLE times (ts DateTime('UTC')) ENGINE = MergeTree ORDER BY ts")
    when = datetime(2024, 3, 31, 1, 30, 15, tzinfo=UTC)
    await client.insert("times", [[when]], column_names=["ts"])
    ((value, epoch),) = (
        await client.query("SELECT ts, toUnixTimestamp(ts) FROM times")
    ).result_rows
    assert epoch == int(when.timestamp())
    assert value.replace(tzinfo=UTC) == when  # naive values are UTC here


@pytest.mark.asyncio
async def test_deduplication_token_stores_a_retried_batch_once(client: AsyncClient) -> None:
    await client.command(
        "CREATE TABLE dedup (id UInt32) ENGINE = MergeTree ORDER BY id "
        "SETTINGS non_replicated_deduplication_window = 100"
    )
    rows = [[i] for i in range(10)]
    for _ in range(2):
        await client.insert("dedup", rows, settings={"insert_deduplication_token": "t1"})
    assert await client.command("SELECT count() FROM dedup") == 10
    await client.insert("dedup", rows, settings={"insert_deduplication_token": "t2"})
    assert await client.command("SELECT count() FROM dedup") == 20


@pytest.mark.asyncio
async def test_insert_arrow(client: AsyncClient) -> None:
    await client.command(
        "CREATE TABLE arrow_in (id UInt64, s String) ENGINE = MergeTree ORDER BY id"
    )
    table = pa.table({"id": pa.array([1, 2, 3], pa.uint64()), "s": ["a", "b", "c"]})
    await client.insert_arrow("arrow_in", table)
    result = await client.query("SELECT id, s FROM arrow_in ORDER BY id")
    assert result.result_rows == [(1, "a"), (2, "b"), (3, "c")]


@pytest.mark.asyncio
async def test_settings_and_database_apply_to_one_request_only(
    client: AsyncClient, server: ClickHouseHTTPServer
) -> None:
    query = "SELECT getSetting('max_threads')"
    assert await client.command(query, settings={"max_threads": 3}) == 3
    assert await client.command(query) != 3
    await client.command("CREATE DATABASE other")
    await client.command("CREATE TABLE other.only_here (x UInt8) ENGINE = Memory")
    other = await get_async_client(host="127.0.0.1", port=server.port, database="other")
    try:
        assert await other.command("EXISTS TABLE only_here") == 1
    finally:
        await other.close()


@pytest.mark.asyncio
async def test_sql_errors_raise_database_error_with_code(client: AsyncClient) -> None:
    with pytest.raises(DatabaseError) as unknown_table:
        await client.query("SELECT * FROM no_such_table")
    assert unknown_table.value.code == 60
    with pytest.raises(DatabaseError) as syntax:
        await client.command("SELEC 1")
    assert syntax.value.code == 62
    assert "DB::Exception" in str(syntax.value)


@pytest.mark.asyncio
async def test_stopped_server_fails_and_restart_on_same_port_recovers(
    client: AsyncClient, server: ClickHouseHTTPServer
) -> None:
    port = server.port
    assert await client.command("SELECT 1") == 1
    await server.stop()
    with pytest.raises(OperationalError):
        await client.query("SELECT 1")
    assert not await client.ping()
    assert await server.start() == port
    assert (await client.query("SELECT 2")).result_rows == [(2,)]


@pytest.mark.asyncio
async def test_server_over_an_existing_chdb_session(chdb_path: str) -> None:
    session: Any = Session(chdb_path)  # type: ignore[no-untyped-call]  # 2nd handle, same path
    try:
        session.query("CREATE TABLE from_session (x UInt8) ENGINE = MergeTree ORDER BY x")
        session.query("INSERT INTO from_session VALUES (7)")
        async with ClickHouseHTTPServer(session) as srv:
            ch = await get_async_client(host="127.0.0.1", port=srv.port)
            try:
                assert await ch.command("SELECT x FROM from_session") == 7
            finally:
                await ch.close()
    finally:
        session.close()


def test_decode_body_reads_every_lz4_frame() -> None:
    frames = lz4.frame.compress(b"first ") + lz4.frame.compress(b"second")
    assert _decode_body(frames, "lz4") == b"first second"


@pytest.mark.asyncio
async def test_the_deployed_account_has_exactly_its_grants(chdb_path: str) -> None:
    """users.d/gatelog.xml read by the server: the password is checked, and the
    statements the grants do not cover are refused as ClickHouse refuses them."""
    from tests.support.chhttp import DEPLOY_USERS, users_from_xml

    users = users_from_xml(DEPLOY_USERS / "gatelog.xml", {"gatelog": "pw"})
    assert users["gatelog"].database == "gatelog"
    async with ClickHouseHTTPServer(chdb_path, users=users) as srv:
        with pytest.raises(DatabaseError) as refused:
            await get_async_client(host="127.0.0.1", port=srv.port, username="gatelog",
                                   password="nope")  # fmt: skip
        assert getattr(refused.value, "code", None) == 516
        ch = await get_async_client(
            host="127.0.0.1", port=srv.port, username="gatelog", password="pw", database="gatelog"
        )
        try:
            await ch.command(
                "CREATE TABLE IF NOT EXISTS grants_probe (x UInt8) ENGINE = MergeTree ORDER BY x"
            )
            await ch.command("INSERT INTO grants_probe VALUES (1)")
            assert await ch.command("SELECT count() FROM grants_probe") == 1
            assert await ch.command("SELECT count() > 0 FROM system.tables") == 1
            await ch.command("ALTER TABLE grants_probe DELETE WHERE x = 1")
            await ch.command("ALTER TABLE grants_probe DROP PARTITION ID 'all'")
            for statement in (
                "TRUNCATE TABLE grants_probe",
                "ALTER TABLE grants_probe DROP COLUMN x",
                "ALTER TABLE grants_probe RENAME COLUMN x TO y",
                "OPTIMIZE TABLE grants_probe FINAL",
                "SELECT count() FROM default.grants_elsewhere",
                "CREATE DATABASE other_db",
            ):
                with pytest.raises(DatabaseError) as denied:
                    await ch.command(statement)
                assert getattr(denied.value, "code", None) == 497, statement
            assert len(users["gatelog"].denied) == 6
        finally:
            await ch.close()
    Connection(chdb_path).query("DROP TABLE IF EXISTS gatelog.grants_probe")


@pytest.mark.asyncio
async def test_the_deployed_account_can_apply_the_whole_schema(chdb_path: str) -> None:
    """The migrator runs as the service's account (the init container, `serve`'s start):
    every schema file, its ALTERs and DROPs included, is within users.d's grants, and a
    second run applies nothing."""
    from service.migrate import load, migrate
    from service.store import HttpStore
    from tests.support.chhttp import DEPLOY_USERS, users_from_xml

    admin = Connection(chdb_path)
    admin.query("DROP DATABASE IF EXISTS gatelog")
    admin.query("CREATE DATABASE gatelog")
    users = users_from_xml(DEPLOY_USERS / "gatelog.xml", {"gatelog": "pw"})
    try:
        async with ClickHouseHTTPServer(chdb_path, users=users) as srv:
            http = HttpStore(f"http://gatelog:pw@127.0.0.1:{srv.port}/gatelog", timeout=30.0)
            try:
                applied = await migrate(http)
                assert applied == [m.version for m in load()]
                assert await migrate(http) == []
            finally:
                await http.close()
        assert users["gatelog"].denied == []
        # the schema's last files took effect: the retired day levels are gone
        left = admin.query(
            "SELECT name FROM system.tables WHERE database = 'gatelog' AND name LIKE 'logs_day%' "
            "ORDER BY name",
            "CSV",
        )
        assert left.bytes().decode().split() == [
            '"logs_day_m"',
            '"logs_day_m_mv"',
            '"logs_day_site_m"',
            '"logs_day_site_m_mv"',
        ]
    finally:
        admin.query("DROP DATABASE IF EXISTS gatelog")
        admin.query("CREATE DATABASE gatelog")
